//! Tests of the facade in-process (the Kotlin tests in android/src/test
//! drive the same calls across the FFI, with a relay).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use super::types::{access_events, AccessMap, ChangeEvent, EntryQuery};
use super::{SatchelError, SatchelHome, SecretStore};

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

fn med(text: &str) -> String {
    serde_json::json!({"resourceType": "MedicationStatement", "status": "active",
        "medicationCodeableConcept": {"text": text}, "subject": {"reference": "Patient/p"}})
    .to_string()
}

#[test]
fn facade_creates_adds_lists_and_reopens_with_the_keystore() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_string_lossy().to_string();
    let keys = Arc::new(MapStore::default());
    let home = SatchelHome::new(path.clone(), keys.clone()).unwrap();
    assert!(!home.has_record());
    let record = home.create_record("Alex".into()).unwrap();
    let added = record
        .add(format!("[{}, {}]", med("a"), med("b")), None)
        .unwrap();
    assert_eq!(added.len(), 2);
    assert!(added.iter().all(|a| a.section == "medications"));
    record.amend(added[0].id.clone(), med("a2")).unwrap();
    assert_eq!(record.history(added[0].id.clone()).unwrap().len(), 2);
    record.mark_entered_in_error(added[1].id.clone()).unwrap();
    assert_eq!(record.list(EntryQuery::default()).unwrap().len(), 1);
    drop(record);

    let again = SatchelHome::new(path, keys).unwrap().open_record().unwrap();
    let all = again
        .list(EntryQuery {
            include_entered_in_error: true,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(again.owner_name().unwrap(), "Alex");
    let summary = again.summary().unwrap();
    assert_eq!(summary[0].active, 1);
    assert_eq!(summary[0].entered_in_error, 1);
}

#[test]
fn facade_reports_wrong_and_missing_keys_and_bad_input_typed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_string_lossy().to_string();
    let keys = Arc::new(MapStore::default());
    let home = SatchelHome::new(path.clone(), keys.clone()).unwrap();
    let record = home.create_record("Bo".into()).unwrap();
    assert!(matches!(
        record.add("not json".into(), None),
        Err(SatchelError::InvalidInput { .. })
    ));
    assert!(matches!(
        record.list(EntryQuery {
            section: Some("nowhere".into()),
            ..Default::default()
        }),
        Err(SatchelError::InvalidInput { .. })
    ));
    drop(record);
    let name = keys.0.lock().unwrap().keys().next().unwrap().clone();
    let wrong = Arc::new(MapStore::default());
    wrong.put(name, vec![9; 32]).unwrap();
    let err = SatchelHome::new(path.clone(), wrong)
        .unwrap()
        .open_record()
        .unwrap_err();
    assert_eq!(err, SatchelError::WrongKey);
    let err = SatchelHome::new(path, Arc::new(MapStore::default()))
        .unwrap()
        .open_record()
        .unwrap_err();
    assert!(matches!(err, SatchelError::Keystore { .. }));
}

#[test]
fn facade_errors_and_events_carry_no_health_data() {
    let dir = tempfile::tempdir().unwrap();
    let home = SatchelHome::new(
        dir.path().to_string_lossy().to_string(),
        Arc::new(MapStore::default()),
    )
    .unwrap();
    let record = home.create_record("Cy".into()).unwrap();
    let secret = "secret-diagnosis-xyz";
    let bad = serde_json::json!({"resourceType": "Spaceship", "note": secret}).to_string();
    let err = record.add(bad, None).unwrap_err();
    assert!(!err.to_string().contains(secret));
    assert!(!format!("{err:?}").contains(secret));
}

fn map(entries: &[(&str, &[&str])]) -> AccessMap {
    entries
        .iter()
        .map(|(id, sections)| {
            (
                id.to_string(),
                (
                    format!("name-{id}"),
                    sections
                        .iter()
                        .map(|s| s.to_string())
                        .collect::<BTreeSet<_>>(),
                ),
            )
        })
        .collect()
}

#[test]
fn access_events_name_new_contributors_and_lost_sections() {
    let before = map(&[
        ("owner", &["allergies", "medications"]),
        ("carer", &["medications", "allergies"]),
    ]);
    let after = map(&[
        ("owner", &["allergies", "medications"]),
        ("carer", &["medications"]),
        ("gp", &["labs"]),
    ]);
    let events = access_events(&before, &after);
    assert_eq!(
        events,
        vec![
            ChangeEvent::NewContributor {
                identity: "gp".into(),
                display_name: "name-gp".into()
            },
            ChangeEvent::AccessRevoked {
                identity: "carer".into(),
                sections: vec!["allergies".into()]
            },
        ]
    );
    let gone = access_events(&after, &map(&[("owner", &["allergies", "medications"])]));
    assert_eq!(gone.len(), 2);
    assert!(access_events(&after, &after).is_empty());
}

#[test]
fn facade_imports_exports_fhir_and_summarises_wearables() {
    let dir = tempfile::tempdir().unwrap();
    let home = SatchelHome::new(
        dir.path().to_string_lossy().to_string(),
        Arc::new(MapStore::default()),
    )
    .unwrap();
    let record = home.create_record("Alex".into()).unwrap();
    let patient = serde_json::json!({"resourceType": "Patient", "id": "p",
        "identifier": [{"system": "urn:test", "value": "1"}],
        "name": [{"family": "Morgan", "given": ["Alex"]}], "birthDate": "1980-01-01"});
    let bundle = serde_json::json!({"resourceType": "Bundle", "type": "collection", "entry": [
        {"fullUrl": "urn:uuid:6a0e8a2e-8d4e-4f7b-9b7e-1d2c3b4a5f60", "resource": patient},
        {"resource": {"resourceType": "MedicationStatement", "id": "m1", "status": "active",
            "medicationCodeableConcept": {"text": "metformin"},
            "subject": {"reference": "urn:uuid:6a0e8a2e-8d4e-4f7b-9b7e-1d2c3b4a5f60"}}}
    ]});
    let first = record
        .import_fhir(bundle.to_string(), Some("GP".into()))
        .unwrap();
    assert_eq!(first.added, 2);
    // Re-sent: nothing new.
    let again = record
        .import_fhir(bundle.to_string(), Some("GP".into()))
        .unwrap();
    assert_eq!((again.added, again.unchanged), (0, 2));
    // Someone else's Bundle: a typed refusal, no values in it.
    let other = bundle
        .to_string()
        .replace("\"value\":\"1\"", "\"value\":\"2\"");
    match record.import_fhir(other, Some("GP".into())) {
        Err(SatchelError::InvalidInput { reason }) => {
            assert!(reason.contains("does not match"), "{reason}");
            assert!(!reason.contains("Morgan"));
        }
        other => panic!("expected InvalidInput, got {other:?}"),
    }
    let exported: serde_json::Value =
        serde_json::from_str(&record.export_fhir(vec!["medications".into()]).unwrap()).unwrap();
    assert_eq!(exported["entry"].as_array().unwrap().len(), 1);
    let ips: serde_json::Value = serde_json::from_str(&record.export_ips().unwrap()).unwrap();
    assert_eq!(ips["type"], "document");

    let day = 86_400_000i64;
    let samples: Vec<super::clinical::WearableSample> = (0..48)
        .map(|i| super::clinical::WearableSample {
            metric: "heart-rate".into(),
            start_ms: i * 3_600_000,
            end_ms: i * 3_600_000,
            value: 60.0 + i as f64,
            unit: "/min".into(),
            source: "watch".into(),
        })
        .collect();
    let ingest = record.ingest_wearables(samples.clone()).unwrap();
    assert_eq!((ingest.stored, ingest.duplicates), (48, 0));
    assert_eq!(record.ingest_wearables(samples).unwrap().stored, 0);
    let days = record
        .wearable_summary("heart-rate".into(), 0, 2 * day, "day".into())
        .unwrap();
    assert_eq!(days.len(), 2);
    assert_eq!(days[0].count, 24);
    assert!(matches!(
        record.wearable_summary("no-such-metric".into(), 0, day, "day".into()),
        Err(SatchelError::InvalidInput { .. })
    ));
}

/// The mobile API holds relay addresses to the core's rule: plain
/// `http://` to a host other than this device is refused, saying what to
/// do, before anything is sent or changed.
#[test]
fn mobile_api_refuses_plain_http_off_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let home = SatchelHome::new(
        dir.path().to_string_lossy().to_string(),
        Arc::new(MapStore::default()),
    )
    .unwrap();
    let record = home.create_record("Di".into()).unwrap();
    record.add(med("a"), None).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for url in ["http://192.0.2.1:8787", "http://relay.example"] {
        let err = rt.block_on(record.sync(url.into())).unwrap_err();
        let SatchelError::InvalidInput { reason } = &err else {
            panic!("{url}: expected InvalidInput, got {err:?}");
        };
        assert!(
            reason.contains("refusing plain http://") && reason.contains("https://"),
            "{reason}"
        );
        let err = rt.block_on(record.audit(url.into())).unwrap_err();
        assert!(
            matches!(&err, SatchelError::InvalidInput { reason } if reason.contains("refusing plain http://")),
            "{err:?}"
        );
    }
    assert_eq!(record.list(EntryQuery::default()).unwrap().len(), 1);
}

/// A FHIR object naming a key twice is refused on every input path (add,
/// import, amend, the streaming Bundle reader, `fhir::parse_resource`), with
/// the JSON path of the key and no value, and nothing is stored.
#[test]
fn duplicate_json_keys_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_string_lossy().to_string();
    let home = SatchelHome::new(path, Arc::new(MapStore::default())).unwrap();
    let record = home.create_record("Dee".into()).unwrap();
    let kept = record.add(med("kept"), None).unwrap();
    let canary = "CANARY-7f3e";
    let med_with = |inner: &str| {
        format!(
            r#"{{"resourceType":"MedicationStatement","status":"active",{inner},"subject":{{"reference":"Patient/p"}}}}"#
        )
    };
    let top = med_with(&format!(
        r#""medicationCodeableConcept":{{"text":"x"}},"status":"{canary}""#
    ));
    let nested = med_with(&format!(
        r#""medicationCodeableConcept":{{"coding":[{{"system":"http://snomed.info/sct","code":"1","code":"{canary}"}}]}}"#
    ));
    let bundle = |entries: &str, extra: &str| {
        format!(r#"{{"resourceType":"Bundle","type":"collection"{extra},"entry":[{entries}]}}"#)
    };
    let good_entry = format!(r#"{{"resource":{}}}"#, med("fine"));
    let cases = [
        (top.clone(), "status"),
        (nested.clone(), "medicationCodeableConcept.coding[0].code"),
        (
            bundle(&format!(r#"{good_entry},{{"resource":{nested}}}"#), ""),
            "entry[1].resource.medicationCodeableConcept.coding[0].code",
        ),
        (
            bundle(
                &format!(r#"{{"resource":{},"resource":{}}}"#, med("a"), med(canary)),
                "",
            ),
            "entry[0].resource",
        ),
        (
            bundle(&good_entry, &format!(r#","type":"{canary}""#)),
            "type",
        ),
        (
            format!(
                r#"{{"resourceType":"Bundle","type":"collection","entry":[{good_entry}],"entry":[]}}"#
            ),
            "entry",
        ),
        (
            // A Bundle nested in a Bundle entry.
            bundle(
                &format!(
                    r#"{{"resource":{}}}"#,
                    bundle(&format!(r#"{{"resource":{top}}}"#), "")
                ),
                "",
            ),
            "entry[0].resource.entry[0].resource.status",
        ),
    ];
    let expect_refused = |result: Result<(), SatchelError>, path: &str| match result {
        Err(SatchelError::InvalidInput { reason }) => {
            assert!(
                reason.contains(&format!("duplicate JSON key at {path}:")),
                "{reason} should name {path}"
            );
            assert!(!reason.contains(canary), "{reason} leaks a value");
        }
        other => panic!("expected a refusal naming {path}, got {other:?}"),
    };
    for (json, path) in &cases {
        expect_refused(record.add(json.clone(), None).map(drop), path);
        let in_list = format!("[{}, {json}]", med("x"));
        expect_refused(record.add(in_list, None).map(drop), &format!("[1].{path}"));
        expect_refused(
            record
                .import_fhir(json.clone(), Some("https://gp.example".into()))
                .map(drop),
            path,
        );
        if !json.contains("\"Bundle\"") {
            expect_refused(record.amend(kept[0].id.clone(), json.clone()), path);
        }
        let direct = crate::fhir::parse_resource(json.as_bytes());
        assert!(
            matches!(&direct, Err(crate::fhir::FhirError::DuplicateKey(p)) if p == path),
            "{direct:?}"
        );
        let streamed = crate::fhir::import::collect_resources(json.as_bytes());
        assert!(
            matches!(&streamed, Err(crate::fhir::FhirError::DuplicateKey(p)) if p == path),
            "{streamed:?}"
        );
    }
    // Nothing was stored: one entry, one version, as before.
    let all = record
        .list(EntryQuery {
            include_entered_in_error: true,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(record.history(kept[0].id.clone()).unwrap().len(), 1);
    // The same inputs without the duplicate are accepted (the refusal is
    // about the duplicate, not the shape).
    record.add(bundle(&good_entry, ""), None).unwrap();
    assert_eq!(record.list(EntryQuery::default()).unwrap().len(), 2);
}

/// The relay list through the mobile API: in order, each once, kept across
/// reopening the record, and held to the address rule.
#[test]
fn mobile_api_keeps_an_ordered_relay_list() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_string_lossy().to_string();
    let keys = Arc::new(MapStore::default());
    let home = SatchelHome::new(path.clone(), keys.clone()).unwrap();
    let record = home.create_record("Di".into()).unwrap();
    assert!(record.relays().unwrap().is_empty());
    assert!(record.add_relay("https://b.example".into()).unwrap());
    assert!(record.add_relay("https://a.example".into()).unwrap());
    assert!(!record.add_relay("https://b.example".into()).unwrap());
    assert!(record.add_relay("http://192.0.2.1:8787".into()).is_err());
    assert_eq!(
        record.relays().unwrap(),
        ["https://b.example", "https://a.example"]
    );
    assert!(record.remove_relay("https://b.example".into()).unwrap());
    assert!(!record.remove_relay("https://b.example".into()).unwrap());
    drop(record);
    drop(home);
    let home = SatchelHome::new(path, keys).unwrap();
    let record = home.open_record().unwrap();
    assert_eq!(record.relays().unwrap(), ["https://a.example"]);
}
