//! Seed inputs for every target, made with the real encoders from the
//! fixture (the protocol vectors' identities and keys) and the inputs the
//! tests use. `tests/examples/fuzz_seeds.rs` writes them to
//! `fuzz/corpus/<target>/`; the `fuzz_regressions` test replays them.

use serde_json::json;

use super::fixture::{fixture, medication};
use crate::crypto::{Envelope, EnvelopeHeader};
use crate::profile::payload;
use crate::record::{NewEntry, Section, SectionDoc};
use crate::sharing::RecoveryKey;
use crate::sync::link::LinkCode;
use crate::wearables::codec::{self, Point};
use crate::wearables::index::ChunkIndex;
use crate::wearables::Metric;

/// One seed input.
#[derive(Debug, Clone)]
pub struct Seed {
    /// The target it is for.
    pub target: &'static str,
    /// A file name for it (unique within the target).
    pub name: String,
    pub bytes: Vec<u8>,
}

/// Every seed, for every target. Deterministic except where the code
/// under test draws randomness itself (key wraps, link and recovery secrets).
// Built from fixed, valid inputs: a failure is a bug in the encoders.
#[allow(clippy::expect_used)]
pub fn seeds() -> Vec<Seed> {
    let f = fixture();
    let mut out = Vec::new();
    let mut add = |target: &'static str, name: &str, bytes: Vec<u8>| {
        out.push(Seed {
            target,
            name: name.to_string(),
            bytes,
        })
    };

    // Envelopes: a change and a snapshot of the fixture document, sealed as
    // a device seals them (payload framing inside).
    let seal = |seq: u64, plain: &[u8], salt: u8| {
        Envelope::seal_with_fixed_salt(
            &f.section_key,
            EnvelopeHeader {
                record_id: f.record,
                section: "medications".into(),
                epoch: 0,
                author: f.phone.id(),
                seq,
            },
            &payload::encode(plain),
            &f.phone,
            [salt; 32],
        )
        .expect("seal a fixture envelope")
        .to_bytes()
    };
    let change_env = seal(1, &f.section_changes[0], 1);
    let snapshot_env = seal(2, &f.section_doc, 2);
    add("envelope", "change", change_env.clone());
    add("envelope", "snapshot", snapshot_env.clone());

    add("payload", "raw", payload::encode(b"short"));
    add("payload", "lz4", payload::encode(&f.section_doc));

    // Access statements: each statement of the fixture log (the statement
    // target signs it itself), and the log as the relay serves it.
    for (i, s) in f.log.iter().enumerate() {
        add("statement", &format!("log-{i}"), s.statement.clone());
    }
    let entries: Vec<_> = f
        .log
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let mut v = serde_json::to_value(s).expect("statements serialize");
            v["seq"] = json!(i + 1);
            v
        })
        .collect();
    let log_json = json!({"statements": entries, "more": false}).to_string();
    add("access_log", "log", log_json.clone().into_bytes());

    // Wire bodies: one of each, as the relay sends them.
    let b64 = |b: &[u8]| {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode(b)
    };
    let bodies = [
        json!({"challenge": b64(&[0x22; 32]), "expires_in": 60}).to_string(),
        json!({"token": "ab".repeat(32), "expires_in": 900}).to_string(),
        log_json,
        json!({"accepted": [{"hash": "00".repeat(32), "seq": 7}], "duplicates": 0}).to_string(),
        json!({"sections": [{"section": "medications", "seq": 9}], "cursor": 9}).to_string(),
        json!({"snapshot": {"upto_seq": 3, "envelope": b64(&snapshot_env)},
               "envelopes": [{"seq": 4, "envelope": b64(&change_env)}], "next": 4, "more": false})
        .to_string(),
        json!({"error": "rate_limited", "message": "slow down", "retry_after_ms": 250}).to_string(),
        json!({"type": "changed", "section": "medications", "seq": 12}).to_string(),
        json!({"payload": b64(b"join")}).to_string(),
        json!({"record_id": f.record, "join": b64(b"j"), "accept": null, "expires_at_ms": 1})
            .to_string(),
    ];
    for (i, body) in bodies.iter().enumerate() {
        let mut bytes = vec![i as u8];
        bytes.extend_from_slice(body.as_bytes());
        add("wire_bodies", &format!("body-{i}"), bytes);
    }

    // Section documents: the changes that made the fixture document, a
    // concurrent change from another replica, and the saved document.
    for (i, c) in f.section_changes.iter().enumerate() {
        add("section_changes", &format!("own-{i}"), c.clone());
    }
    let mut peer =
        SectionDoc::load(Section::Medications, &f.section_doc).expect("the fixture document loads");
    peer.add_entry(NewEntry {
        resource: medication("Ibuprofen", "387207008"),
        author: f.carer.id(),
        recorded_at_ms: 1_700_000_010_000,
        source_system: None,
        source_id: None,
    })
    .expect("add to the fixture document");
    add("section_changes", "peer", peer.take_changes());
    add("section_load", "fixture", f.section_doc.clone());
    add("section_load", "peer", peer.save());
    let fresh = SectionDoc::new(Section::Medications).save();
    add("section_load", "empty", fresh);

    // Version scalars: the ones in the fixture document, as the index reads
    // them (a version is the only bytes value in the document).
    let versions = version_scalars(&f.section_doc);
    for (i, v) in versions.iter().enumerate() {
        add("version_header", &format!("v{i}"), v.clone());
        add("section_versions", &format!("v{i}"), v.clone());
    }

    // FHIR: resources and Bundles like the tests' (the demo's provider
    // files are added by the example that writes the corpus).
    let resource = medication("Metformin 500 mg", "109081006");
    let observation = json!({
        "resourceType": "Observation", "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}]},
        "effectivePeriod": {"start": "2024-05-01T10:00:00+01:00"},
        "valueQuantity": {"value": 72.5, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"}
    });
    let allergy = json!({
        "resourceType": "AllergyIntolerance", "clinicalStatus": {"coding": [{"code": "active"}]},
        "code": {"text": "Peanut"}, "recordedDate": "2023", "patient": {"reference": "Patient/p"}
    });
    let patient = json!({"resourceType": "Patient", "id": "p", "name": [{"family": "Test", "given": ["Alex"]}],
        "birthDate": "1970-01-01", "identifier": [{"system": "urn:example", "value": "1"}]});
    for (name, r) in [
        ("medication", &resource),
        ("observation", &observation),
        ("allergy", &allergy),
        ("patient", &patient),
    ] {
        add("fhir_resource", name, r.to_string().into_bytes());
    }
    let bundle = json!({"resourceType": "Bundle", "type": "collection", "entry": [
        {"fullUrl": "urn:uuid:1", "resource": patient},
        {"fullUrl": "urn:uuid:2", "resource": resource},
        {"resource": observation},
        {"search": {"mode": "outcome"}, "resource": {"resourceType": "OperationOutcome"}},
        {"resource": {"resourceType": "Bundle", "type": "transaction", "entry": [{"resource": allergy}]}}
    ]});
    add("fhir_bundle", "bundle", bundle.to_string().into_bytes());
    add("fhir_bundle", "resource", resource.to_string().into_bytes());

    // Wearables: an Apple Health export, a CSV file, a chunk and an index.
    add("apple_health", "export", APPLE_EXPORT.as_bytes().to_vec());
    add("wearables_csv", "samples", CSV.as_bytes().to_vec());
    let points: Vec<Point> = (0..50)
        .map(|i| Point {
            start_ms: 1_700_000_000_000 + i * 60_000,
            end_ms: 1_700_000_000_000 + i * 60_000,
            value: 60.0 + (i % 7) as f64,
        })
        .collect();
    let chunk = codec::encode(Metric::HeartRate, "Test watch", &points).expect("encode a chunk");
    add("wearable_chunk", "heart-rate", chunk);
    let mut index = ChunkIndex::new().expect("a chunk index");
    index
        .add(&[crate::wearables::index::ChunkEntry {
            hash: [7; 32],
            metric: Metric::HeartRate,
            author: f.phone.id(),
            written_at_ms: 1_700_000_000_000,
            first_start_ms: 1_700_000_000_000,
            last_start_ms: 1_700_002_940_000,
            count: 50,
            source: "Test watch".into(),
        }])
        .expect("index a chunk");
    add("wearables_index", "one", index.save());

    // Codes and ids typed or scanned from outside.
    let code = LinkCode::new("http://127.0.0.1:8787", f.record).expect("a link code");
    add(
        "link_code",
        "link",
        code.encode().expect("a link code encodes").into_bytes(),
    );
    add(
        "link_code",
        "invite",
        code.encode_as("satchel-invite:")
            .expect("an invite code encodes")
            .into_bytes(),
    );
    let key = RecoveryKey::generate(f.record).expect("a recovery key");
    add(
        "recovery_key",
        "printed",
        key.to_printable().as_bytes().to_vec(),
    );
    // What a nearby device sends or shows.
    {
        use crate::nearby::pairing::PairingCode;
        use satchel_protocol::direct::{Done, Envelopes, Message};
        use satchel_protocol::discovery::{discovery_key_for, seal_device_info, DeviceAdvert};
        let done = Message::Done(Done {
            stored: 3,
            known: 1,
            refused: 0,
        });
        add(
            "direct",
            "done",
            done.to_bytes().expect("a message encodes"),
        );
        let envelopes = Message::Envelopes(Envelopes {
            log: "medications".into(),
            envelopes: vec![vec![1, 2, 3]],
        });
        add(
            "direct",
            "envelopes",
            envelopes.to_bytes().expect("a message encodes"),
        );
        let code = PairingCode {
            addr: "192.168.1.20:50123".parse().expect("an address"),
            device: f.phone.id(),
            token: [7; 16],
        };
        add("direct", "pairing-code", code.to_string().into_bytes());
        let key = discovery_key_for(&f.record, &f.phone.id()).expect("a discovery key");
        let info = DeviceAdvert {
            identity: f.phone.id(),
            name: "Test phone".into(),
        };
        add(
            "direct",
            "device-info",
            seal_device_info(&key, 480_000, &info, [9; 12])
                .expect("device info seals")
                .into_bytes(),
        );
    }
    add("ids", "record", f.record.to_string().into_bytes());
    add("ids", "identity", f.phone.id().to_string().into_bytes());
    out
}

/// Every bytes scalar of a saved section document's versions list.
fn version_scalars(saved: &[u8]) -> Vec<Vec<u8>> {
    use automerge::{ReadDoc, ScalarValue, Value, ROOT};
    let Ok(doc) = automerge::Automerge::load(saved) else {
        return Vec::new();
    };
    let Ok(Some((Value::Object(_), list))) = doc.get(ROOT, "versions") else {
        return Vec::new();
    };
    (0..doc.length(&list))
        .filter_map(|i| match doc.get(&list, i) {
            Ok(Some((Value::Scalar(s), _))) => match s.as_ref() {
                ScalarValue::Bytes(b) => Some(b.clone()),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

const APPLE_EXPORT: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE HealthData [
<!ELEMENT HealthData (ExportDate,Me,(Record|Workout)*)>
]>
<HealthData locale="en_GB">
 <ExportDate value="2024-05-02 08:00:00 +0100"/>
 <Me HKCharacteristicTypeIdentifierDateOfBirth=""/>
 <Record type="HKQuantityTypeIdentifierHeartRate" sourceName="Test watch" unit="count/min" creationDate="2024-05-01 10:00:05 +0100" startDate="2024-05-01 10:00:00 +0100" endDate="2024-05-01 10:00:00 +0100" value="72"/>
 <Record type="HKQuantityTypeIdentifierStepCount" sourceName="Test phone" unit="count" startDate="2024-05-01 10:00:00 +0100" endDate="2024-05-01 10:05:00 +0100" value="312"/>
 <Record type="HKQuantityTypeIdentifierOxygenSaturation" sourceName="Test watch" unit="%" startDate="2024-05-01 10:00:00 +0100" endDate="2024-05-01 10:00:00 +0100" value="0.97"/>
 <Record type="HKQuantityTypeIdentifierBodyMass" sourceName="Scale" unit="lb" startDate="2024-05-01 07:00:00 +0100" endDate="2024-05-01 07:00:00 +0100" value="154.3"/>
 <Workout workoutActivityType="HKWorkoutActivityTypeRunning" duration="30" startDate="2024-05-01 18:00:00 +0100" endDate="2024-05-01 18:30:00 +0100">
  <WorkoutEvent type="HKWorkoutEventTypePause" date="2024-05-01 18:10:00 +0100"/>
 </Workout>
</HealthData>
"#;

const CSV: &str = "metric,start,end,value,unit,source
heart-rate,2024-05-01T10:00:00Z,,72,/min,Test watch
blood-glucose,2024-05-01T10:00:00+01:00,2024-05-01T10:00:00+01:00,5.4,mmol/L,Test monitor
steps,2024-05-01T10:00:00Z,2024-05-01T10:05:00Z,312,1,\"Test phone, pocket\"
";
