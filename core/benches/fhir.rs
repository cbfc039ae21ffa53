//! FHIR benchmark (a bench binary that prints its figures).
//!
//! 1. Import of a 1,500-resource transaction Bundle (official FHIR R4
//!    examples, npm `hl7.fhir.r4.examples@4.0.1`, cycled with fresh ids,
//!    business identifiers and clinical dates over ten years, plus the
//!    Patient; `urn:uuid:` full URLs) through the streaming reader into an
//!    empty encrypted SQLite home: parse, check, wrong-patient check,
//!    de-duplication, write, seal, one durable commit. Target <= 1 s.
//! 2. Re-sending the same Bundle to the filled record (everything matches,
//!    nothing is written).
//! 3. IPS export (document Bundle) and collection export of that ten-year
//!    record. IPS target <= 100 ms.
//!
//! Run: `bash scripts/setup.sh && cargo bench -p satchel-core --bench fhir`
//! (examples from `SATCHEL_FHIR_EXAMPLES` or `.cache/npm/node_modules/hl7.fhir.r4.examples`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;
use support::{load_examples, DATE_FIELDS};

use std::time::{Duration, Instant};

use satchel_core::fhir;
use satchel_core::profile::{MemorySecretStore, Profile, Unlock};
use satchel_core::store::SqliteStore;
use serde_json::{json, Value};

const BUNDLE_SIZE: usize = 1_500;

/// A transaction Bundle: the Patient, then `n` examples cycled with fresh
/// ids, identifiers and dates spread over ten years, subjects pointing at
/// the Patient's full URL.
fn ten_year_bundle(examples: &[Value], n: usize) -> Value {
    let start = time::macros::datetime!(2016-01-01 08:00 UTC);
    let span = Duration::from_secs(10 * 365 * 24 * 3600);
    let patient_url = "urn:uuid:7c3e0d2a-0000-4000-8000-000000000000";
    let mut entries = vec![json!({"fullUrl": patient_url, "resource": {
        "resourceType": "Patient", "id": "bench-patient",
        "identifier": [{"system": "https://bench.example/mrn", "value": "1"}],
        "name": [{"family": "Bench", "given": ["Pat"]}], "birthDate": "1970-01-01"},
        "request": {"method": "PUT", "url": "Patient/bench-patient"}})];
    for i in 0..n {
        let mut r = examples[i % examples.len()].clone();
        let when = start + span.mul_f64(i as f64 / n as f64);
        let stamp = when
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap();
        let rt = r["resourceType"].as_str().unwrap().to_string();
        r["id"] = json!(format!("bench-{i}"));
        let obj = r.as_object_mut().unwrap();
        for f in DATE_FIELDS {
            if obj.contains_key(*f) {
                obj.insert((*f).to_string(), json!(stamp));
            }
        }
        if let Some(ids) = obj.get_mut("identifier").and_then(Value::as_array_mut) {
            for id in ids {
                if let Some(v) = id.get("value").and_then(Value::as_str) {
                    id["value"] = json!(format!("{v}-{i}"));
                }
            }
        }
        for key in ["subject", "patient"] {
            if obj.get(key).is_some_and(|s| s.get("reference").is_some()) {
                obj.insert(key.into(), json!({"reference": patient_url}));
            }
        }
        entries.push(json!({
            "fullUrl": format!("urn:uuid:7c3e0d2a-0000-4000-8000-{:012}", i + 1),
            "resource": r,
            "request": {"method": "PUT", "url": format!("{rt}/bench-{i}")}
        }));
    }
    json!({"resourceType": "Bundle", "type": "transaction", "entry": entries})
}

/// Time this thread has spent on a CPU (ns), from the scheduler: with other
/// builds sharing the two cores, wall time alone overstates the cost.
fn cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Wall and on-CPU time of `f`.
fn timed<T>(f: impl FnOnce() -> T) -> (T, Duration, Duration) {
    let (c, t) = (cpu_ns(), Instant::now());
    let out = f();
    let wall = t.elapsed();
    (out, wall, Duration::from_nanos(cpu_ns().saturating_sub(c)))
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn stats(mut times: Vec<Duration>) -> String {
    times.sort();
    let p = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
    format!(
        "min {} median {} p90 {} ({} runs)",
        ms(times[0]),
        ms(p(0.5)),
        ms(p(0.9)),
        times.len()
    )
}

/// Wall and on-CPU figures of repeated runs.
#[derive(Default)]
struct Runs {
    wall: Vec<Duration>,
    cpu: Vec<Duration>,
}

impl Runs {
    fn push(&mut self, wall: Duration, cpu: Duration) {
        self.wall.push(wall);
        self.cpu.push(cpu);
    }

    fn report(self) -> String {
        format!("wall {}; on-CPU {}", stats(self.wall), stats(self.cpu))
    }
}

fn main() {
    let examples = load_examples();
    let bundle = ten_year_bundle(&examples, BUNDLE_SIZE);
    let bytes = serde_json::to_vec(&bundle).unwrap();
    println!(
        "fhir benchmark: a transaction Bundle of {} resources ({} distinct examples cycled, {:.1} MB of JSON)",
        BUNDLE_SIZE + 1,
        examples.len(),
        bytes.len() as f64 / 1e6
    );
    let source = Some("https://bench.example/fhir");

    // 1. Import into a fresh encrypted SQLite home, several times.
    let mut import = Runs::default();
    let mut kept = None;
    for _ in 0..5 {
        let dir = tempfile::tempdir().unwrap();
        let keystore = MemorySecretStore::new();
        let store = SqliteStore::open(&dir.path().join("satchel.db")).unwrap();
        let mut profile = Profile::create(store, "Bench", Unlock::SecretStore(&keystore)).unwrap();
        let (report, wall, cpu) = timed(|| {
            profile
                .import_reader(bytes.as_slice(), source, |_| {})
                .unwrap()
        });
        import.push(wall, cpu);
        assert_eq!(report.added.len(), BUNDLE_SIZE + 1, "{report:?}");
        kept = Some((dir, profile));
    }
    println!(
        "import, streamed, durable, into an empty record: {}  (target <= 1 s)",
        import.report()
    );
    let (_dir, mut profile) = kept.unwrap();

    // 2. Re-send of the same Bundle: all unchanged.
    let mut resend = Runs::default();
    for _ in 0..3 {
        let (report, wall, cpu) = timed(|| {
            profile
                .import_reader(bytes.as_slice(), source, |_| {})
                .unwrap()
        });
        resend.push(wall, cpu);
        assert_eq!(report.unchanged.len(), BUNDLE_SIZE + 1);
    }
    println!(
        "re-send of the same Bundle (all unchanged, nothing written): {}",
        resend.report()
    );

    // 3. Exports of the ten-year record.
    let mut ips = Runs::default();
    let mut ips_entries = 0;
    let mut ips_bytes = 0;
    for _ in 0..20 {
        let (out, wall, cpu) = timed(|| {
            let doc = profile.export_ips().unwrap();
            ips_entries = doc["entry"].as_array().unwrap().len();
            serde_json::to_vec(&doc).unwrap()
        });
        ips.push(wall, cpu);
        ips_bytes = out.len();
    }
    println!(
        "IPS export (document Bundle of {ips_entries} entries, {:.1} MB, serialised): {}  (target <= 100 ms)",
        ips_bytes as f64 / 1e6,
        ips.report()
    );
    let (mut read, mut build, mut ser) = (Runs::default(), Runs::default(), Runs::default());
    for _ in 0..20 {
        let (entries, wall, cpu) =
            timed(|| profile.visible_entries(Some(&fhir::ips::IpsSection::RECORD_SECTIONS)));
        read.push(wall, cpu);
        let patient = profile.record_patient().unwrap();
        let (doc, wall, cpu) = timed(|| {
            fhir::ips::ips_document(
                patient,
                entries,
                fhir::ips::DocumentIds {
                    bundle: [1; 16],
                    composition: [2; 16],
                },
                time::OffsetDateTime::now_utc(),
            )
        });
        build.push(wall, cpu);
        let (out, wall, cpu) = timed(|| serde_json::to_vec(&doc).unwrap());
        ser.push(wall, cpu);
        std::hint::black_box(out);
    }
    println!(
        "  reading its entries (parsed from the decrypted record): {}",
        read.report()
    );
    println!("  building the document: {}", build.report());
    println!("  serialising it: {}", ser.report());
    let mut collection = Runs::default();
    for _ in 0..20 {
        let (out, wall, cpu) =
            timed(|| serde_json::to_vec(&profile.export_fhir(None).unwrap()).unwrap());
        collection.push(wall, cpu);
        std::hint::black_box(out);
    }
    println!(
        "collection export (all sections, serialised): {}",
        collection.report()
    );
}
