#![allow(clippy::unwrap_used)]

use serde_json::{json, Value};

use super::*;
use crate::record::Section;

const CANARY: &str = "CANARY-7f3a-health-data";

fn shape(rt: &str, path: &str, expected: &'static str) -> FhirError {
    FhirError::WrongShape {
        resource_type: rt.into(),
        path: path.into(),
        expected,
    }
}

fn assert_no_canary(e: &FhirError) {
    assert!(!e.to_string().contains(CANARY), "{e}");
    assert!(!format!("{e:?}").contains(CANARY), "{e:?}");
}

#[test]
fn resource_type_list_is_sorted_and_complete() {
    assert_eq!(R4_RESOURCE_TYPES.len(), 146);
    assert!(R4_RESOURCE_TYPES.windows(2).all(|w| w[0] < w[1]));
    for t in [
        "Patient",
        "Observation",
        "Bundle",
        "Binary",
        "Parameters",
        "VisionPrescription",
    ] {
        assert!(is_known_resource_type(t), "{t}");
    }
    for t in ["Resource", "DomainResource", "patient", "", "Foo"] {
        assert!(!is_known_resource_type(t), "{t}");
    }
}

#[test]
fn parse_resource_refuses_non_json_with_position_only() {
    let err =
        parse_resource(format!("{{\n  \"resourceType\": \"Patient\",\n  {CANARY}\n}}").as_bytes())
            .unwrap_err();
    assert!(matches!(err, FhirError::NotJson { line: 3, .. }), "{err:?}");
    assert!(err
        .to_string()
        .starts_with("not valid JSON: line 3 column "));
    assert_no_canary(&err);
}

#[test]
fn parse_resource_checks_object_and_type() {
    assert_eq!(
        parse_resource(b"[1,2]").unwrap_err(),
        FhirError::NotAnObject
    );
    assert_eq!(
        parse_resource(b"\"Patient\"").unwrap_err(),
        FhirError::NotAnObject
    );
    assert_eq!(
        parse_resource(b"{}").unwrap_err(),
        FhirError::MissingResourceType
    );
    assert_eq!(
        parse_resource(br#"{"resourceType": "Patiente"}"#).unwrap_err(),
        FhirError::UnknownResourceType("Patiente".into())
    );
    let long = "A".repeat(100);
    let err = parse_resource(json!({ "resourceType": long }).to_string().as_bytes()).unwrap_err();
    assert_eq!(err, FhirError::UnknownResourceType("A".repeat(64)));
    // Non-letters: the value is not echoed.
    for bad in [
        json!(CANARY),
        json!(7),
        json!({"x": CANARY}),
        json!("Pat ient"),
    ] {
        let err = summarize(&json!({ "resourceType": bad })).unwrap_err();
        assert_eq!(err, FhirError::UnknownResourceType(String::new()));
        assert_eq!(err.to_string(), "invalid resourceType");
        assert_no_canary(&err);
    }
    let ok = parse_resource(br#"{"resourceType": "Patient", "id": "p1"}"#).unwrap();
    assert_eq!(ok, json!({"resourceType": "Patient", "id": "p1"}));
}

#[test]
fn resource_is_passed_through_untouched() {
    let text = r#"{"resourceType":"Observation","status":"final","zzz":1,"aaa":[true,null],
        "valueQuantity":{"value":1.000000000000000000001,"unit":"mg"},"code":{"text":"x"},
        "effectiveDateTime":"2020-02-02","_status":{"extension":[]}}"#;
    let parsed = parse_resource(text.as_bytes()).unwrap();
    let plain: Value = serde_json::from_str(text).unwrap();
    assert_eq!(parsed, plain);
    // Key order and number precision preserved.
    let out = serde_json::to_string(&parsed).unwrap();
    assert!(out.contains("1.000000000000000000001"));
    let keys: Vec<&String> = parsed.as_object().unwrap().keys().collect();
    assert_eq!(keys[2], "zzz");
    // Fields outside the indexed paths may have any shape.
    summarize(&json!({"resourceType": "Condition", "note": 5, "subject": "weird"})).unwrap();
}

#[test]
fn wrong_shapes_name_the_path() {
    let cases: Vec<(Value, FhirError)> = vec![
        (
            json!({"resourceType": "Observation", "code": {"coding": [{"system": 1, "code": CANARY}]}}),
            shape("Observation", "code.coding[0].system", "string"),
        ),
        (
            json!({"resourceType": "Observation", "code": [CANARY]}),
            shape("Observation", "code", "object"),
        ),
        (
            json!({"resourceType": "Condition", "code": {"coding": {"code": CANARY}}}),
            shape("Condition", "code.coding", "array"),
        ),
        (
            json!({"resourceType": "Condition", "code": {"coding": [{"code": "a"}, CANARY]}}),
            shape("Condition", "code.coding[1]", "object"),
        ),
        (
            json!({"resourceType": "Condition", "code": {"coding": [{"code": 5}]}}),
            shape("Condition", "code.coding[0].code", "string"),
        ),
        (
            json!({"resourceType": "Condition", "code": {"coding": [{"display": [CANARY]}]}}),
            shape("Condition", "code.coding[0].display", "string"),
        ),
        (
            json!({"resourceType": "Condition", "code": {"text": {"t": CANARY}}}),
            shape("Condition", "code.text", "string"),
        ),
        (
            json!({"resourceType": "Patient", "id": 12}),
            shape("Patient", "id", "string"),
        ),
        (
            json!({"resourceType": "Condition", "onsetDateTime": 2012}),
            shape("Condition", "onsetDateTime", "string"),
        ),
        (
            json!({"resourceType": "Condition", "onsetDateTime": CANARY}),
            shape("Condition", "onsetDateTime", "a FHIR date or dateTime"),
        ),
        (
            // Later candidates are checked too, even when an earlier one is present.
            json!({"resourceType": "Condition", "onsetDateTime": "2012", "recordedDate": "13/13/2012"}),
            shape("Condition", "recordedDate", "a FHIR date or dateTime"),
        ),
        (
            json!({"resourceType": "Observation", "effectivePeriod": CANARY}),
            shape("Observation", "effectivePeriod", "object"),
        ),
        (
            json!({"resourceType": "Observation", "effectivePeriod": {"start": false}}),
            shape("Observation", "effectivePeriod.start", "string"),
        ),
        (
            json!({"resourceType": "Observation", "category": {"coding": []}}),
            shape("Observation", "category", "array"),
        ),
        (
            json!({"resourceType": "Observation", "category": [{"coding": []}, {"coding": [{"code": 1}]}]}),
            shape("Observation", "category[1].coding[0].code", "string"),
        ),
        (
            json!({"resourceType": "Encounter", "type": {"text": CANARY}}),
            shape("Encounter", "type", "array"),
        ),
        (
            json!({"resourceType": "CarePlan", "category": [CANARY]}),
            shape("CarePlan", "category[0]", "object"),
        ),
        (
            json!({"resourceType": "DocumentReference", "type": [{"text": CANARY}]}),
            shape("DocumentReference", "type", "object"),
        ),
        (
            json!({"resourceType": "Immunization", "vaccineCode": CANARY}),
            shape("Immunization", "vaccineCode", "object"),
        ),
        (
            json!({"resourceType": "MedicationRequest", "medicationCodeableConcept": {"coding": [{"system": null}]}}),
            shape(
                "MedicationRequest",
                "medicationCodeableConcept.coding[0].system",
                "string",
            ),
        ),
        (
            json!({"resourceType": "Practitioner", "meta": CANARY}),
            shape("Practitioner", "meta", "object"),
        ),
        (
            json!({"resourceType": "Practitioner", "meta": {"lastUpdated": "yesterday"}}),
            shape(
                "Practitioner",
                "meta.lastUpdated",
                "a FHIR date or dateTime",
            ),
        ),
    ];
    for (resource, expected) in cases {
        let err = summarize(&resource).unwrap_err();
        assert_eq!(err, expected, "{resource}");
        assert_no_canary(&err);
        let err = parse_resource(resource.to_string().as_bytes()).unwrap_err();
        assert_eq!(err, expected);
    }
    assert_eq!(
        shape("Observation", "code.coding[0].system", "string").to_string(),
        "Observation.code.coding[0].system has the wrong shape: expected string"
    );
}

fn date_of(resource: Value) -> Option<String> {
    summarize(&resource).unwrap().date.map(|d| d.text)
}

#[test]
fn clinical_date_per_type() {
    let period = |s: &str| json!({"start": s, "end": "2099"});
    // (resource type, ordered candidates as (field, value)).
    let chains: Vec<(&str, Vec<(&str, Value)>)> = vec![
        (
            "Observation",
            vec![
                ("effectiveDateTime", json!("2001")),
                ("effectivePeriod", period("2002")),
                ("effectiveInstant", json!("2003-01-01T00:00:00Z")),
                ("issued", json!("2004-01-01T00:00:00Z")),
            ],
        ),
        (
            "Condition",
            vec![
                ("onsetDateTime", json!("2001")),
                ("onsetPeriod", period("2002")),
                ("recordedDate", json!("2003")),
            ],
        ),
        (
            "AllergyIntolerance",
            vec![
                ("onsetDateTime", json!("2001")),
                ("recordedDate", json!("2002")),
            ],
        ),
        (
            "Immunization",
            vec![
                ("occurrenceDateTime", json!("2001")),
                ("recorded", json!("2002")),
            ],
        ),
        (
            "Procedure",
            vec![
                ("performedDateTime", json!("2001")),
                ("performedPeriod", period("2002")),
            ],
        ),
        (
            "MedicationStatement",
            vec![
                ("effectiveDateTime", json!("2001")),
                ("effectivePeriod", period("2002")),
                ("dateAsserted", json!("2003")),
            ],
        ),
        ("MedicationRequest", vec![("authoredOn", json!("2001"))]),
        (
            "DiagnosticReport",
            vec![
                ("effectiveDateTime", json!("2001")),
                ("effectivePeriod", period("2002")),
                ("issued", json!("2003-01-01T00:00:00Z")),
            ],
        ),
        (
            "DocumentReference",
            vec![("date", json!("2001-01-01T00:00:00Z"))],
        ),
        ("Encounter", vec![("period", period("2001"))]),
        (
            "CarePlan",
            vec![("period", period("2001")), ("created", json!("2002"))],
        ),
        ("Consent", vec![("dateTime", json!("2001"))]),
        (
            "Practitioner",
            vec![
                ("date", json!("2001")),
                ("period", period("2002")),
                ("meta", json!({"lastUpdated": "2003-01-01T00:00:00Z"})),
            ],
        ),
    ];
    for (rt, chain) in chains {
        // With candidates i.. present, the i-th wins.
        for start in 0..chain.len() {
            let mut obj = serde_json::Map::new();
            obj.insert("resourceType".into(), json!(rt));
            for (field, value) in &chain[start..] {
                obj.insert((*field).into(), value.clone());
            }
            let expected = match &chain[start].1 {
                Value::String(s) => s.clone(),
                Value::Object(o) => o
                    .get("start")
                    .or_else(|| o.get("lastUpdated"))
                    .and_then(Value::as_str)
                    .unwrap()
                    .to_string(),
                _ => unreachable!(),
            };
            assert_eq!(
                date_of(Value::Object(obj)),
                Some(expected),
                "{rt} from {start}"
            );
        }
        assert_eq!(date_of(json!({"resourceType": rt})), None, "{rt}");
    }
    // Patient: birthDate is not a clinical date; other fields are not looked at.
    assert_eq!(
        date_of(json!({"resourceType": "Patient", "birthDate": "1970-01-01", "date": "2001"})),
        None
    );
    // Consent: only dateTime.
    assert_eq!(
        date_of(json!({"resourceType": "Consent", "date": "2001"})),
        None
    );
    let s = summarize(
        &json!({"resourceType": "Condition", "onsetDateTime": "2012-05-01T10:00:00+02:00"}),
    )
    .unwrap();
    let d = s.date.unwrap();
    assert_eq!(d.text, "2012-05-01T10:00:00+02:00");
    assert_eq!(d.start_ms, 1_335_859_200_000);
}

#[test]
fn codes_and_displays() {
    let obs = json!({
        "resourceType": "Observation",
        "id": "o1",
        "category": [{"coding": [{"system": VITAL_SIGNS_CATEGORY_SYSTEM, "code": "vital-signs", "display": "Vital Signs"}]}],
        "code": {
            "coding": [
                {"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"},
                {"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"},
                {"code": "hr"},
                {"system": "urn:x", "display": "no code"}
            ],
            "text": "Pulse"
        },
        "valueCodeableConcept": {"coding": [{"system": "urn:ignored", "code": "ignored"}]}
    });
    let s = summarize(&obs).unwrap();
    assert_eq!(s.resource_type, "Observation");
    assert_eq!(s.id.as_deref(), Some("o1"));
    assert_eq!(
        s.codes,
        vec![
            Coding {
                system: Some("http://loinc.org".into()),
                code: "8867-4".into()
            },
            Coding {
                system: None,
                code: "hr".into()
            },
            Coding {
                system: Some(VITAL_SIGNS_CATEGORY_SYSTEM.into()),
                code: "vital-signs".into()
            },
        ]
    );
    assert_eq!(
        s.displays,
        vec!["Heart rate", "no code", "Pulse", "Vital Signs"]
    );

    let per_type: Vec<(Value, &str)> = vec![
        (
            json!({"resourceType": "Condition", "code": {"coding": [{"code": "c"}]}}),
            "c",
        ),
        (
            json!({"resourceType": "Procedure", "code": {"coding": [{"code": "c"}]}}),
            "c",
        ),
        (
            json!({"resourceType": "AllergyIntolerance", "code": {"coding": [{"code": "c"}]}}),
            "c",
        ),
        (
            json!({"resourceType": "DiagnosticReport", "code": {"coding": [{"code": "c"}]}}),
            "c",
        ),
        (
            json!({"resourceType": "Immunization", "vaccineCode": {"coding": [{"code": "c"}]}}),
            "c",
        ),
        (
            json!({"resourceType": "MedicationStatement", "medicationCodeableConcept": {"coding": [{"code": "c"}]}}),
            "c",
        ),
        (
            json!({"resourceType": "MedicationRequest", "medicationCodeableConcept": {"coding": [{"code": "c"}]}}),
            "c",
        ),
        (
            json!({"resourceType": "DocumentReference", "type": {"coding": [{"code": "c"}]}}),
            "c",
        ),
        (
            json!({"resourceType": "Encounter", "type": [{"coding": [{"code": "c"}]}]}),
            "c",
        ),
        (
            json!({"resourceType": "CarePlan", "category": [{"coding": [{"code": "c"}]}]}),
            "c",
        ),
    ];
    for (r, code) in per_type {
        let s = summarize(&r).unwrap();
        assert_eq!(
            s.codes,
            vec![Coding {
                system: None,
                code: code.into()
            }],
            "{r}"
        );
    }
    // Not indexed for Patient.
    let s = summarize(
        &json!({"resourceType": "Patient", "maritalStatus": {"coding": [{"code": "M"}]}}),
    )
    .unwrap();
    assert!(s.codes.is_empty() && s.displays.is_empty());
}

#[test]
fn summary_debug_is_redacted() {
    let s = summarize(&json!({
        "resourceType": "Condition",
        "code": {"coding": [{"system": CANARY, "code": CANARY, "display": CANARY}], "text": CANARY},
        "onsetDateTime": "2012"
    }))
    .unwrap();
    let dbg = format!("{s:?} {:?}", s.codes);
    assert!(!dbg.contains(CANARY), "{dbg}");
    assert!(!dbg.contains("2012"), "{dbg}");
}

#[test]
fn section_mapping() {
    let table: Vec<(&str, Section)> = vec![
        ("Patient", Section::Demographics),
        ("RelatedPerson", Section::Demographics),
        ("AllergyIntolerance", Section::Allergies),
        ("MedicationStatement", Section::Medications),
        ("MedicationRequest", Section::Medications),
        ("MedicationAdministration", Section::Medications),
        ("MedicationDispense", Section::Medications),
        ("Medication", Section::Medications),
        ("Condition", Section::Conditions),
        ("Immunization", Section::Immunizations),
        ("ImmunizationRecommendation", Section::Immunizations),
        ("Procedure", Section::Procedures),
        ("Encounter", Section::Encounters),
        ("EpisodeOfCare", Section::Encounters),
        ("Observation", Section::Labs),
        ("DiagnosticReport", Section::Labs),
        ("Specimen", Section::Labs),
        ("DocumentReference", Section::Documents),
        ("Composition", Section::Documents),
        ("Consent", Section::Documents),
        ("Media", Section::Documents),
        ("Provenance", Section::Documents),
        ("AuditEvent", Section::Documents),
        ("CarePlan", Section::CarePlan),
        ("Goal", Section::CarePlan),
        ("CareTeam", Section::CarePlan),
        ("ServiceRequest", Section::CarePlan),
    ];
    for (rt, section) in &table {
        assert_eq!(
            section_for(&json!({"resourceType": rt})).unwrap(),
            *section,
            "{rt}"
        );
    }
    // Every other known type has no section.
    for rt in R4_RESOURCE_TYPES {
        if table.iter().any(|(t, _)| *t == rt) {
            continue;
        }
        let err = section_for(&json!({"resourceType": rt})).unwrap_err();
        assert_eq!(err, FhirError::NoSection(rt.to_string()));
    }
    assert_eq!(
        section_for(&json!({"resourceType": "Bundle"}))
            .unwrap_err()
            .to_string(),
        "resource type Bundle has no section in the record; see docs/sections.md"
    );
    // Nothing maps to wearables or notes.
    assert!(table.iter().all(|(_, s)| s.is_routed()));

    let vital = json!({"resourceType": "Observation", "category": [
        {"coding": [{"system": "urn:other", "code": "x"}]},
        {"coding": [{"system": "urn:other", "code": "vital-signs"},
                    {"system": VITAL_SIGNS_CATEGORY_SYSTEM, "code": "vital-signs"}]}
    ]});
    assert_eq!(section_for(&vital).unwrap(), Section::Vitals);
    let wrong_system = json!({"resourceType": "Observation", "category": [
        {"coding": [{"system": "urn:other", "code": "vital-signs"}]}]});
    assert_eq!(section_for(&wrong_system).unwrap(), Section::Labs);
    let laboratory = json!({"resourceType": "Observation", "category": [
        {"coding": [{"system": VITAL_SIGNS_CATEGORY_SYSTEM, "code": "laboratory"}]}]});
    assert_eq!(section_for(&laboratory).unwrap(), Section::Labs);
    let bad = json!({"resourceType": "Observation", "category": "vital-signs"});
    assert_eq!(
        section_for(&bad).unwrap_err(),
        shape("Observation", "category", "array")
    );
    assert_eq!(section_for(&json!([])).unwrap_err(), FhirError::NotAnObject);
    assert_eq!(
        section_for(&json!({})).unwrap_err(),
        FhirError::MissingResourceType
    );
}

#[test]
fn bundles_unpack() {
    let b = json!({"resourceType": "Bundle", "type": "collection", "entry": [
        {"fullUrl": "urn:uuid:1", "resource": {"resourceType": "Patient", "id": "p"}},
        {"resource": {"resourceType": "Condition", "id": "c"}}
    ]});
    let rs = bundle_resources(&b).unwrap();
    assert_eq!(rs.len(), 2);
    assert_eq!(rs[0], json!({"resourceType": "Patient", "id": "p"}));
    assert_eq!(rs[1]["resourceType"], "Condition");
    assert!(bundle_resources(&json!({"resourceType": "Bundle"}))
        .unwrap()
        .is_empty());
    assert_eq!(
        bundle_resources(&json!({"resourceType": "Bundle", "entry": {}})).unwrap_err(),
        shape("Bundle", "entry", "array")
    );
    assert_eq!(
        bundle_resources(&json!({"resourceType": "Bundle", "entry": [
            {"resource": {"resourceType": "Patient"}},
            {"request": {"method": "DELETE", "url": "Patient/1"}}
        ]}))
        .unwrap_err(),
        shape("Bundle", "entry[1].resource", "object")
    );
    assert_eq!(
        bundle_resources(&json!({"resourceType": "Bundle", "entry": [CANARY]})).unwrap_err(),
        shape("Bundle", "entry[0]", "object")
    );
    assert_eq!(
        bundle_resources(&json!({"resourceType": "Bundle", "entry": [{"resource": CANARY}]}))
            .unwrap_err(),
        shape("Bundle", "entry[0].resource", "object")
    );
    assert_eq!(
        bundle_resources(&json!({"resourceType": "Patient"})).unwrap_err(),
        shape("Patient", "resourceType", "Bundle")
    );
    assert_eq!(
        bundle_resources(&json!(1)).unwrap_err(),
        FhirError::NotAnObject
    );
}

/// Where the official R4 examples are (npm package hl7.fhir.r4.examples@4.0.1):
/// `$SATCHEL_FHIR_EXAMPLES`, else `/tmp/fx/node_modules/hl7.fhir.r4.examples`.
fn examples_dir() -> Option<std::path::PathBuf> {
    let dir = std::env::var_os("SATCHEL_FHIR_EXAMPLES")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| "/tmp/fx/node_modules/hl7.fhir.r4.examples".into());
    dir.is_dir().then_some(dir)
}

#[test]
fn official_examples_summarize() {
    let Some(dir) = examples_dir() else {
        println!("note: official FHIR R4 examples not found (set SATCHEL_FHIR_EXAMPLES); skipping");
        return;
    };
    let mut checked = 0usize;
    let mut in_bundles = 0usize;
    let mut failures = Vec::new();
    let check = |name: String, resource: &Value, failures: &mut Vec<String>| -> bool {
        let Some(rt) = resource.get("resourceType").and_then(Value::as_str) else {
            return false;
        };
        assert!(is_known_resource_type(rt), "{name}: {rt}");
        match section_for(resource) {
            Ok(_) => {
                if let Err(e) = summarize(resource) {
                    failures.push(format!("{name}: {e}"));
                }
                true
            }
            Err(FhirError::NoSection(_)) => false,
            Err(e) => {
                failures.push(format!("{name}: {e}"));
                true
            }
        }
    };
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        // Files are named <resourceType>-<id>.json: skip the bulk of
        // conformance resources (no section) without parsing them.
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy().to_string();
            let rt = name.split(['-', '.']).next().unwrap_or("").to_string();
            // (The multi-megabyte Bundles are conformance definitions.)
            let small = std::fs::metadata(p)
                .map(|m| m.len() < 1_000_000)
                .unwrap_or(false);
            (rt == "Bundle" && small)
                || rt == "Observation"
                || section_for(&serde_json::json!({"resourceType": rt})).is_ok()
        })
        .collect();
    paths.sort();
    for path in paths {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let bytes = std::fs::read(&path).unwrap();
        let Ok(value) = serde_json::from_slice::<Value>(&bytes) else {
            continue;
        };
        if value.get("resourceType").is_none() {
            continue; // package.json and friends
        }
        if check(name.clone(), &value, &mut failures) {
            checked += 1;
            // Bytes in, same value out.
            if section_for(&value).is_ok() {
                assert_eq!(parse_resource(&bytes).unwrap(), value, "{name}");
            }
        }
        if value["resourceType"] == "Bundle" {
            if let Ok(resources) = bundle_resources(&value) {
                for (i, r) in resources.iter().enumerate() {
                    if check(format!("{name} entry[{i}]"), r, &mut failures) {
                        in_bundles += 1;
                    }
                }
            }
        }
    }
    println!("checked {checked} supported-type examples and {in_bundles} bundled resources");
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(checked > 100, "only {checked} examples checked");
}

#[test]
fn model_round_trips_and_reads_typed_elements() {
    // From text, so that numbers keep their written form.
    let v: Value = serde_json::from_str(
        r#"{
        "resourceType": "Observation",
        "id": "o1",
        "meta": {"versionId": "3"},
        "identifier": [{"system": "urn:x", "value": "42", "use": "official"}],
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}]},
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": "2020-01-02",
        "valueQuantity": {"value": 72.000, "unit": "beats/minute"},
        "_status": {"extension": [{"url": "urn:e", "valueDecimal": 1.10}]}
    }"#,
    )
    .unwrap();
    let typed = model::Resource::from_value(v.clone()).unwrap();
    assert_eq!(typed.to_value(), v);
    assert_eq!(typed.resource_type(), "Observation");
    assert_eq!(typed.id(), Some("o1"));
    assert_eq!(
        typed.business_identifiers().collect::<Vec<_>>(),
        [("urn:x", "42")]
    );
    assert_eq!(typed.label(), Some("Heart rate"));
    assert_eq!(typed.value_text().as_deref(), Some("72.000 beats/minute"));
    assert_eq!(
        typed.subject().and_then(|r| r.reference.as_deref()),
        Some("Patient/p1")
    );
    // Numbers keep their text (arbitrary_precision).
    assert!(serde_json::to_string(&typed.to_value())
        .unwrap()
        .contains("1.10"));
    // Other types pass through whole.
    let other = json!({"resourceType": "Practitioner", "id": "x", "name": [{"family": "Who"}]});
    assert_eq!(
        model::Resource::from_value(other.clone())
            .unwrap()
            .to_value(),
        other
    );
    // A typed element of the wrong form is refused, naming no value.
    let bad = json!({"resourceType": "Patient", "birthDate": {"x": CANARY}});
    let err = model::Resource::from_value(bad).unwrap_err();
    assert_no_canary(&err);
    assert!(matches!(err, FhirError::WrongShape { .. }), "{err:?}");
}

#[test]
fn streaming_reader_unpacks_bundles_and_refuses_clearly() {
    let bundle = json!({"resourceType": "Bundle", "type": "searchset", "entry": [
        {"fullUrl": "urn:uuid:a", "resource": {"resourceType": "Condition", "id": "c"}},
        {"search": {"mode": "outcome"}, "resource": {"resourceType": "OperationOutcome"}},
        {"resource": {"resourceType": "Bundle", "type": "collection", "entry": [
            {"resource": {"resourceType": "Observation"}}]}}
    ]});
    let mut progress = Vec::new();
    let kind = import::read_resources(bundle.to_string().as_bytes(), |r| {
        progress.push((r.index, r.in_bundle, r.full_url.clone()));
        Ok(())
    })
    .unwrap();
    assert_eq!(kind, import::InputKind::Bundle);
    assert_eq!(
        progress,
        [(0, true, Some("urn:uuid:a".to_string())), (1, true, None)]
    );
    // `type` after `entry` and a single resource both work.
    let late = r#"{"resourceType": "Bundle", "entry": [{"resource": {"resourceType": "Procedure"}}], "type": "transaction"}"#;
    let (kind, items) = import::collect_resources(late.as_bytes()).unwrap();
    assert_eq!((kind, items.len()), (import::InputKind::Bundle, 1));
    let (kind, items) =
        import::collect_resources(br#"{"resourceType": "Condition"}"#.as_slice()).unwrap();
    assert_eq!(
        (kind, items.len(), items[0].in_bundle),
        (import::InputKind::Resource, 1, false)
    );
    // Refusals.
    let history = json!({"resourceType": "Bundle", "type": "history", "entry": []}).to_string();
    assert_eq!(
        import::collect_resources(history.as_bytes()).unwrap_err(),
        FhirError::BundleType("history".into())
    );
    let delete = json!({"resourceType": "Bundle", "type": "transaction",
        "entry": [{"request": {"method": "DELETE", "url": "Condition/1"}}]})
    .to_string();
    assert!(matches!(
        import::collect_resources(delete.as_bytes()).unwrap_err(),
        FhirError::WrongShape { ref path, .. } if path == "entry[0].resource"
    ));
    assert!(matches!(
        import::collect_resources(b"[1]".as_slice()).unwrap_err(),
        FhirError::NotAnObject
    ));
    assert!(matches!(
        import::collect_resources(b"{\"resourceType\": ".as_slice()).unwrap_err(),
        FhirError::NotJson { .. }
    ));
}
