//! Mobile facade benchmark (a bench binary that prints its figures): the
//! in-process cost of `HealthRecord::list` of 1,500 entries through the
//! uniffi facade (conversion to the FFI records included, no FFI crossing),
//! to set against the Kotlin round trip of the same list
//! (android/src/test/kotlin/org/satchel/android/ListBench.kt).
//!
//! Run: `cargo bench -p satchel-core --bench mobile` (or `bash scripts/bench-mobile.sh`
//! for every mobile figure).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use satchel_core::api::{EntryQuery, SatchelError, SatchelHome, SecretStore};

const ENTRIES: usize = 1_500;
const RUNS: usize = 30;

#[derive(Default)]
struct MapStore(Mutex<BTreeMap<String, Vec<u8>>>);

impl SecretStore for MapStore {
    fn get(&self, name: String) -> Result<Option<Vec<u8>>, SatchelError> {
        Ok(self.0.lock().unwrap().get(&name).cloned())
    }
    fn put(&self, name: String, secret: Vec<u8>) -> Result<(), SatchelError> {
        self.0.lock().unwrap().insert(name, secret);
        Ok(())
    }
    fn delete(&self, name: String) -> Result<(), SatchelError> {
        self.0.lock().unwrap().remove(&name);
        Ok(())
    }
}

/// The same synthetic record as ListBench.kt.
fn resource(i: usize) -> String {
    let date = format!("{:04}-{:02}-{:02}", 2015 + i % 10, 1 + i % 12, 1 + i % 28);
    match i % 4 {
        0 => format!(
            r#"{{"resourceType":"MedicationStatement","status":"active","medicationCodeableConcept":{{"coding":[{{"system":"http://www.nlm.nih.gov/research/umls/rxnorm","code":"{}","display":"medicine {i} 500 mg tablet"}}]}},"subject":{{"reference":"Patient/p"}},"effectiveDateTime":"{date}"}}"#,
            860_975 + i
        ),
        1 => format!(
            r#"{{"resourceType":"AllergyIntolerance","code":{{"text":"allergen {i}"}},"recordedDate":"{date}"}}"#
        ),
        2 => format!(
            r#"{{"resourceType":"Observation","status":"final","category":[{{"coding":[{{"system":"http://terminology.hl7.org/CodeSystem/observation-category","code":"laboratory"}}]}}],"code":{{"coding":[{{"system":"http://loinc.org","code":"4548-4","display":"Hemoglobin A1c"}}]}},"effectiveDateTime":"{date}","valueQuantity":{{"value":{}.{},"unit":"%"}}}}"#,
            5 + i % 4,
            i % 10
        ),
        _ => format!(
            r#"{{"resourceType":"Condition","code":{{"text":"condition {i}"}},"subject":{{"reference":"Patient/p"}},"onsetDateTime":"{date}"}}"#
        ),
    }
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let home = SatchelHome::new(
        dir.path().to_string_lossy().to_string(),
        Arc::new(MapStore::default()),
    )
    .unwrap();
    let record = home.create_record("Bench".into()).unwrap();
    for start in (0..ENTRIES).step_by(100) {
        let batch: Vec<String> = (start..start + 100).map(resource).collect();
        record.add(format!("[{}]", batch.join(",")), None).unwrap();
    }
    assert_eq!(record.list(EntryQuery::default()).unwrap().len(), ENTRIES);
    for _ in 0..5 {
        record.list(EntryQuery::default()).unwrap();
    }
    let mut ms: Vec<f64> = (0..RUNS)
        .map(|_| {
            let t = Instant::now();
            let list = record.list(EntryQuery::default()).unwrap();
            let elapsed = t.elapsed().as_secs_f64() * 1e3;
            assert_eq!(list.len(), ENTRIES);
            elapsed
        })
        .collect();
    ms.sort_by(f64::total_cmp);
    println!(
        "rust HealthRecord::list() of {ENTRIES} entries in-process: min {:.2} ms, median {:.2} ms, p90 {:.2} ms over {RUNS} runs",
        ms[0],
        ms[RUNS / 2],
        ms[RUNS * 9 / 10]
    );
}
