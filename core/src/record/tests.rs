#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use serde_json::{json, Value};

use super::*;
use crate::fhir::{Coding, VITAL_SIGNS_CATEGORY_SYSTEM};

const CANARY: &str = "CANARY-91be-health-data";

fn who(n: u8) -> IdentityId {
    IdentityId([n; 32])
}

fn condition(code: &str, date: &str) -> Value {
    json!({
        "resourceType": "Condition",
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": code, "display": format!("Display {code}")}],
                 "text": format!("Text {code}")},
        "onsetDateTime": date
    })
}

fn vital(code: &str, date: &str) -> Value {
    json!({
        "resourceType": "Observation",
        "status": "final",
        "category": [{"coding": [{"system": VITAL_SIGNS_CATEGORY_SYSTEM, "code": "vital-signs"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": code, "display": "Heart rate"}]},
        "effectiveDateTime": date,
        "valueQuantity": {"value": 72, "unit": "/min"}
    })
}

fn lab(code: &str, date: &str) -> Value {
    json!({
        "resourceType": "Observation",
        "status": "final",
        "category": [{"coding": [{"system": VITAL_SIGNS_CATEGORY_SYSTEM, "code": "laboratory"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": code, "display": "Haemoglobin"}]},
        "effectiveDateTime": date
    })
}

fn new_entry(resource: Value, author: u8, at: i64) -> NewEntry {
    NewEntry {
        resource,
        author: who(author),
        recorded_at_ms: at,
        source_system: None,
        source_id: None,
    }
}

fn ms(date: &str) -> i64 {
    crate::fhir::ClinicalDate::parse(date).unwrap().start_ms
}

// ----- Section ----------------------------------------------------------------

#[test]
fn section_names_round_trip() {
    let names: Vec<&str> = Section::ALL.iter().map(|s| s.as_str()).collect();
    assert_eq!(
        names,
        [
            "demographics",
            "allergies",
            "medications",
            "conditions",
            "immunizations",
            "procedures",
            "encounters",
            "vitals",
            "labs",
            "documents",
            "care-plan",
            "wearables",
            "notes"
        ]
    );
    for s in Section::ALL {
        assert_eq!(s.as_str().parse::<Section>().unwrap(), s);
        assert_eq!(s.to_string(), s.as_str());
        assert_eq!(
            serde_json::to_string(&s).unwrap(),
            format!("\"{}\"", s.as_str())
        );
        assert_eq!(
            serde_json::from_str::<Section>(&format!("\"{s}\"")).unwrap(),
            s
        );
    }
    let err = format!("x{CANARY}").parse::<Section>().unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("care-plan") && msg.contains("demographics") && msg.contains("notes"));
    assert!(!msg.contains(CANARY));
    assert!("CarePlan".parse::<Section>().is_err());
    let mut sorted = Section::ALL;
    sorted.sort();
    assert_eq!(sorted, Section::ALL);
}

// ----- adding and reading -----------------------------------------------------

#[test]
fn new_doc_is_empty() {
    let doc = SectionDoc::new(Section::Conditions);
    assert_eq!(doc.section(), Section::Conditions);
    assert!(doc.is_empty());
    assert!(doc.entries(true).is_empty());
    let s = doc.summary();
    assert_eq!(
        (s.active, s.entered_in_error, s.latest_date_ms),
        (0, 0, None)
    );
    assert!(doc.has_pending_changes(), "the genesis change is pending");
}

#[test]
fn add_entry_reads_back() {
    let mut doc = SectionDoc::new(Section::Conditions);
    let resource = condition("38341003", "2012-05-01");
    let id = doc
        .add_entry(NewEntry {
            resource: resource.clone(),
            author: who(1),
            recorded_at_ms: 1000,
            source_system: Some("https://hospital.example/fhir".into()),
            source_id: Some("cond-1".into()),
        })
        .unwrap();
    let e = doc.entry(id).unwrap();
    assert_eq!(e.id, id);
    assert_eq!(e.section, Section::Conditions);
    assert_eq!(e.resource_type, "Condition");
    assert_eq!(
        e.source_system.as_deref(),
        Some("https://hospital.example/fhir")
    );
    assert_eq!(e.source_id.as_deref(), Some("cond-1"));
    assert_eq!(e.created_by, who(1));
    assert_eq!(e.created_at_ms, 1000);
    assert_eq!(e.version_count, 1);
    assert_eq!(e.status, EntryStatus::Active);
    assert!(!e.is_hidden());
    assert_eq!(e.current.resource, resource);
    assert_eq!(e.current.author, who(1));
    assert_eq!(e.current.recorded_at_ms, 1000);
    assert_eq!(e.current.status, EntryStatus::Active);
    assert_eq!(e.current.date, Some(ms("2012-05-01")));
    assert_eq!(e.current.date_text.as_deref(), Some("2012-05-01"));
    assert_eq!(
        e.current.codes,
        vec![Coding {
            system: Some("http://snomed.info/sct".into()),
            code: "38341003".into()
        }]
    );
    assert_eq!(
        e.current.displays,
        vec!["Display 38341003", "Text 38341003"]
    );
    assert_eq!(doc.entries(false), vec![e.clone()]);
    assert_eq!(doc.history(id).unwrap(), vec![e.current]);
    assert_eq!(doc.len(), 1);
    assert!(doc.contains(id));
    assert!(doc.entry(EntryId::random()).is_none());
}

#[test]
fn add_entry_refuses_resources_of_other_sections() {
    let mut doc = SectionDoc::new(Section::Allergies);
    let _ = doc.take_changes();
    let heads = doc.heads();
    let err = doc
        .add_entry(new_entry(condition("1", "2012"), 1, 1))
        .unwrap_err();
    assert_eq!(
        err,
        RecordError::ResourceNotForSection {
            resource_type: "Condition".into(),
            section: Section::Allergies,
            belongs_in: Section::Conditions
        }
    );
    let err = doc
        .add_entry(new_entry(json!({"resourceType": "Practitioner"}), 1, 1))
        .unwrap_err();
    assert_eq!(
        err,
        RecordError::Fhir(FhirError::NoSection("Practitioner".into()))
    );
    let err = doc
        .add_entry(new_entry(
            json!({"resourceType": "AllergyIntolerance", "code": CANARY}),
            1,
            1,
        ))
        .unwrap_err();
    assert!(matches!(
        err,
        RecordError::Fhir(FhirError::WrongShape { .. })
    ));
    assert!(!err.to_string().contains(CANARY));
    // Nothing changed.
    assert_eq!(doc.heads(), heads);
    assert!(doc.take_changes().is_empty());
    assert!(doc.is_empty());

    let mut vitals = SectionDoc::new(Section::Vitals);
    assert!(matches!(
        vitals.add_entry(new_entry(lab("1", "2012"), 1, 1)),
        Err(RecordError::ResourceNotForSection {
            belongs_in: Section::Labs,
            ..
        })
    ));
    vitals
        .add_entry(new_entry(vital("1", "2012"), 1, 1))
        .unwrap();
}

#[test]
fn wearables_and_notes_take_explicit_adds() {
    let mut w = SectionDoc::new(Section::Wearables);
    w.add_entry(new_entry(vital("8867-4", "2024-01-01T08:00:00Z"), 1, 1))
        .unwrap();
    w.add_entry(new_entry(json!({"resourceType": "Device"}), 1, 1))
        .unwrap();
    assert_eq!(
        w.add_entry(new_entry(json!({"resourceType": "Bundle"}), 1, 1))
            .unwrap_err(),
        RecordError::Fhir(FhirError::NoSection("Bundle".into()))
    );
    let mut n = SectionDoc::new(Section::Notes);
    let id = n
        .add_entry(new_entry(
            json!({"resourceType": "DocumentReference", "status": "current", "date": "2024-02-02",
                   "content": [{"attachment": {"contentType": "text/plain", "data": "aGk="}}]}),
            1,
            5,
        ))
        .unwrap();
    assert_eq!(n.entry(id).unwrap().section, Section::Notes);
    // Amending keeps the resource type.
    assert_eq!(
        n.amend_entry(id, json!({"resourceType": "Basic"}), who(1), 6)
            .unwrap_err(),
        RecordError::WrongSection {
            entry: id,
            expected: Section::Notes
        }
    );
}

// ----- versions ----------------------------------------------------------------

#[test]
fn amend_appends_a_version() {
    let mut doc = SectionDoc::new(Section::Conditions);
    let id = doc
        .add_entry(new_entry(condition("1", "2012"), 1, 100))
        .unwrap();
    doc.amend_entry(id, condition("2", "2013"), who(2), 200)
        .unwrap();
    let e = doc.entry(id).unwrap();
    assert_eq!(e.version_count, 2);
    assert_eq!(e.current.resource, condition("2", "2013"));
    assert_eq!(e.current.author, who(2));
    assert_eq!(e.current.date, Some(ms("2013")));
    assert_eq!(e.created_by, who(1));
    assert_eq!(e.created_at_ms, 100);
    let h = doc.history(id).unwrap();
    assert_eq!(h.len(), 2);
    assert_eq!(h[0].resource, condition("1", "2012"));
    assert_eq!(h[1], e.current);
}

#[test]
fn amend_refuses_other_type_section_or_entry() {
    let mut doc = SectionDoc::new(Section::Vitals);
    let id = doc.add_entry(new_entry(vital("1", "2012"), 1, 1)).unwrap();
    assert_eq!(
        doc.amend_entry(id, lab("1", "2012"), who(1), 2)
            .unwrap_err(),
        RecordError::WrongSection {
            entry: id,
            expected: Section::Vitals
        }
    );
    assert_eq!(
        doc.amend_entry(id, condition("1", "2012"), who(1), 2)
            .unwrap_err(),
        RecordError::WrongSection {
            entry: id,
            expected: Section::Vitals
        }
    );
    let other = EntryId::random();
    assert_eq!(
        doc.amend_entry(other, vital("1", "2012"), who(1), 2)
            .unwrap_err(),
        RecordError::UnknownEntry(other)
    );
    assert!(matches!(
        doc.amend_entry(
            id,
            json!({"resourceType": "Observation", "code": 1}),
            who(1),
            2
        ),
        Err(RecordError::Fhir(FhirError::WrongShape { .. }))
    ));
    assert_eq!(
        doc.mark_entered_in_error(other, who(1), 2).unwrap_err(),
        RecordError::UnknownEntry(other)
    );
    assert_eq!(
        doc.history(other).unwrap_err(),
        RecordError::UnknownEntry(other)
    );
    assert_eq!(doc.entry(id).unwrap().version_count, 1);
}

#[test]
fn current_version_is_greatest_by_time_author_position() {
    let mut doc = SectionDoc::new(Section::Conditions);
    let id = doc
        .add_entry(new_entry(condition("v0", "2012"), 5, 100))
        .unwrap();
    // Earlier recorded_at: not current, sorted first in history.
    doc.amend_entry(id, condition("early", "2012"), who(9), 50)
        .unwrap();
    assert_eq!(
        doc.entry(id).unwrap().current.resource,
        condition("v0", "2012")
    );
    // Same time, greater author wins over smaller one.
    doc.amend_entry(id, condition("t200-b9", "2012"), who(9), 200)
        .unwrap();
    doc.amend_entry(id, condition("t200-a1", "2012"), who(1), 200)
        .unwrap();
    assert_eq!(
        doc.entry(id).unwrap().current.resource,
        condition("t200-b9", "2012")
    );
    // Same time and author: later list position wins.
    doc.amend_entry(id, condition("t200-b9-second", "2012"), who(9), 200)
        .unwrap();
    let e = doc.entry(id).unwrap();
    assert_eq!(e.current.resource, condition("t200-b9-second", "2012"));
    let order: Vec<String> = doc
        .history(id)
        .unwrap()
        .iter()
        .map(|v| v.codes[0].code.clone())
        .collect();
    assert_eq!(
        order,
        ["early", "v0", "t200-a1", "t200-b9", "t200-b9-second"]
    );
    assert_eq!(e.version_count, 5);
}

#[test]
fn entered_in_error_hides_and_is_sticky() {
    let mut doc = SectionDoc::new(Section::Conditions);
    let keep = doc
        .add_entry(new_entry(condition("keep", "2010"), 1, 1))
        .unwrap();
    let id = doc
        .add_entry(new_entry(condition("oops", "2012"), 1, 1))
        .unwrap();
    doc.mark_entered_in_error(id, who(2), 10).unwrap();
    assert_eq!(
        doc.entries(false).iter().map(|e| e.id).collect::<Vec<_>>(),
        vec![keep]
    );
    let e = doc.entry(id).unwrap();
    assert_eq!(e.status, EntryStatus::EnteredInError);
    assert!(e.is_hidden());
    assert_eq!(e.current.status, EntryStatus::EnteredInError);
    assert_eq!(e.current.author, who(2));
    // Resource and index copied from the current version.
    assert_eq!(e.current.resource, condition("oops", "2012"));
    assert_eq!(e.current.date, Some(ms("2012")));
    assert_eq!(e.current.codes[0].code, "oops");
    assert_eq!(doc.entries(true).len(), 2);
    assert_eq!(doc.history(id).unwrap().len(), 2);
    assert_eq!(
        doc.amend_entry(id, condition("x", "2012"), who(1), 20)
            .unwrap_err(),
        RecordError::AlreadyEnteredInError(id)
    );
    assert_eq!(
        doc.mark_entered_in_error(id, who(1), 20).unwrap_err(),
        RecordError::AlreadyEnteredInError(id)
    );
    let s = doc.summary();
    assert_eq!((s.active, s.entered_in_error), (1, 1));
    assert_eq!(s.latest_date_ms, Some(ms("2010")));

    // Sticky across a concurrent amend that sorts later.
    let mut a = SectionDoc::new(Section::Conditions);
    let id = a
        .add_entry(new_entry(condition("c", "2012"), 1, 1))
        .unwrap();
    let mut b = SectionDoc::load(Section::Conditions, &a.save()).unwrap();
    a.amend_entry(id, condition("amended", "2012"), who(1), 500)
        .unwrap();
    b.mark_entered_in_error(id, who(2), 100).unwrap();
    a.apply_changes(&b.take_changes()).unwrap();
    b.apply_changes(&a.take_changes()).unwrap();
    for doc in [&a, &b] {
        let e = doc.entry(id).unwrap();
        assert_eq!(e.status, EntryStatus::EnteredInError);
        assert_eq!(e.current.status, EntryStatus::Active);
        assert_eq!(e.current.resource, condition("amended", "2012"));
        assert_eq!(e.version_count, 3);
        assert!(doc.entries(false).is_empty());
    }
    assert_eq!(a.history(id).unwrap(), b.history(id).unwrap());
}

#[test]
fn concurrent_amends_are_all_kept() {
    let mut a = SectionDoc::new(Section::Conditions);
    let id = a
        .add_entry(new_entry(condition("c", "2012"), 1, 1))
        .unwrap();
    let base = a.save();
    let mut b = SectionDoc::load(Section::Conditions, &base).unwrap();
    let mut c = SectionDoc::load(Section::Conditions, &base).unwrap();
    a.amend_entry(id, condition("a", "2012"), who(1), 10)
        .unwrap();
    b.amend_entry(id, condition("b", "2012"), who(2), 10)
        .unwrap();
    c.amend_entry(id, condition("c2", "2012"), who(3), 5)
        .unwrap();
    let (ca, cb, cc) = (a.take_changes(), b.take_changes(), c.take_changes());
    for (doc, others) in [
        (&mut a, [&cb, &cc]),
        (&mut b, [&ca, &cc]),
        (&mut c, [&ca, &cb]),
    ] {
        for o in others {
            doc.apply_changes(o).unwrap();
        }
    }
    let h = a.history(id).unwrap();
    assert_eq!(h.len(), 4);
    assert_eq!(h, b.history(id).unwrap());
    assert_eq!(h, c.history(id).unwrap());
    let codes: Vec<&str> = h.iter().map(|v| v.codes[0].code.as_str()).collect();
    assert_eq!(codes, ["c", "c2", "a", "b"]);
    assert_eq!(
        a.entry(id).unwrap().current.resource,
        condition("b", "2012")
    );
    // Three changes over the same first version: a conflict, flagged the
    // same on every replica; the first version is not part of it.
    for doc in [&a, &b, &c] {
        assert!(doc.entry(id).unwrap().conflict);
    }
    let concurrent: Vec<bool> = h.iter().map(|v| v.concurrent).collect();
    assert_eq!(concurrent, [false, true, true, true]);
}

/// Hazard H4 (docs/clinical-safety.md): a medication changed on two devices
/// offline is flagged as a conflict once they merge; a change made after
/// seeing the other is not; the flag survives save and load, and marking
/// entered-in-error over a version others changed concurrently counts too.
#[test]
fn conflicting_medication_changes_are_flagged() {
    let med = |dose: &str| {
        json!({"resourceType": "MedicationStatement", "status": "active",
               "medicationCodeableConcept": {"text": "Warfarin"},
               "dosage": [{"text": dose}], "effectiveDateTime": "2026-01-01"})
    };
    let mut phone = SectionDoc::new(Section::Medications);
    let id = phone.add_entry(new_entry(med("3 mg daily"), 1, 1)).unwrap();
    let mut tablet = SectionDoc::load(Section::Medications, &phone.save()).unwrap();
    phone.take_changes();

    // Sequential: the tablet changes the dose after seeing the phone's version.
    tablet
        .amend_entry(id, med("4 mg daily"), who(2), 20)
        .unwrap();
    phone.apply_changes(&tablet.take_changes()).unwrap();
    assert!(!phone.entry(id).unwrap().conflict);
    phone
        .amend_entry(id, med("5 mg daily"), who(1), 30)
        .unwrap();
    tablet.apply_changes(&phone.take_changes()).unwrap();
    assert!(!tablet.entry(id).unwrap().conflict);
    assert!(tablet.history(id).unwrap().iter().all(|v| !v.concurrent));

    // Offline on both: the phone stops it, the tablet changes the dose.
    phone
        .amend_entry(
            id,
            json!({"resourceType": "MedicationStatement", "status": "stopped",
                   "medicationCodeableConcept": {"text": "Warfarin"},
                   "effectiveDateTime": "2026-01-01"}),
            who(1),
            40,
        )
        .unwrap();
    tablet
        .amend_entry(id, med("6 mg daily"), who(2), 41)
        .unwrap();
    let (from_phone, from_tablet) = (phone.take_changes(), tablet.take_changes());
    phone.apply_changes(&from_tablet).unwrap();
    tablet.apply_changes(&from_phone).unwrap();
    for doc in [&phone, &tablet] {
        let e = doc.entry(id).unwrap();
        assert!(e.conflict, "the concurrent changes are flagged");
        let h = doc.history(id).unwrap();
        assert_eq!(h.len(), 5, "neither change is lost");
        let concurrent: Vec<bool> = h.iter().map(|v| v.concurrent).collect();
        assert_eq!(concurrent, [false, false, false, true, true]);
    }
    let reloaded = SectionDoc::load(Section::Medications, &phone.save()).unwrap();
    assert!(reloaded.entry(id).unwrap().conflict);

    // The patient settles it by amending the current version: no longer a
    // conflict anywhere; the history keeps the concurrent marks.
    tablet
        .amend_entry(id, med("5 mg daily"), who(2), 50)
        .unwrap();
    phone.apply_changes(&tablet.take_changes()).unwrap();
    for doc in [&phone, &tablet] {
        assert!(!doc.entry(id).unwrap().conflict);
        let marks = doc
            .history(id)
            .unwrap()
            .iter()
            .filter(|v| v.concurrent)
            .count();
        assert_eq!(marks, 2);
    }

    // Entered-in-error over a version another device amended at the same time.
    let mut x = SectionDoc::new(Section::Medications);
    let id2 = x.add_entry(new_entry(med("1 mg"), 1, 1)).unwrap();
    let mut y = SectionDoc::load(Section::Medications, &x.save()).unwrap();
    x.take_changes();
    x.mark_entered_in_error(id2, who(1), 10).unwrap();
    y.amend_entry(id2, med("2 mg"), who(2), 11).unwrap();
    let (cx, cy) = (x.take_changes(), y.take_changes());
    x.apply_changes(&cy).unwrap();
    y.apply_changes(&cx).unwrap();
    assert!(x.entry(id2).unwrap().conflict && y.entry(id2).unwrap().conflict);
}

// ----- change exchange --------------------------------------------------------

#[test]
fn independently_created_sections_merge() {
    let mut a = SectionDoc::new(Section::Labs);
    let mut b = SectionDoc::new(Section::Labs);
    let ia = a.add_entry(new_entry(lab("a", "2012"), 1, 1)).unwrap();
    let ib = b.add_entry(new_entry(lab("b", "2013"), 2, 1)).unwrap();
    let (ca, cb) = (a.take_changes(), b.take_changes());
    a.apply_changes(&cb).unwrap();
    b.apply_changes(&ca).unwrap();
    assert_eq!(a.entries(true), b.entries(true));
    let ids: BTreeSet<EntryId> = a.entries(true).iter().map(|e| e.id).collect();
    assert_eq!(ids, BTreeSet::from([ia, ib]));
    let mut ha = a.heads();
    let mut hb = b.heads();
    ha.sort();
    hb.sort();
    assert_eq!(ha, hb);
}

#[test]
fn take_changes_returns_only_local_changes() {
    let mut a = SectionDoc::new(Section::Conditions);
    let base = a.save();
    assert!(a.take_changes().is_empty(), "save hands out everything");
    let mut b = SectionDoc::load(Section::Conditions, &base).unwrap();
    assert!(b.take_changes().is_empty());
    a.add_entry(new_entry(condition("1", "2012"), 1, 1))
        .unwrap();
    a.add_entry(new_entry(condition("2", "2012"), 1, 2))
        .unwrap();
    let from_a = a.take_changes();
    assert_eq!(wire::decode_changes(&from_a).unwrap().len(), 2);
    assert!(a.take_changes().is_empty());
    b.apply_changes(&from_a).unwrap();
    assert!(
        b.take_changes().is_empty(),
        "received changes are not echoed"
    );
    assert!(!b.has_pending_changes());
    b.add_entry(new_entry(condition("3", "2012"), 2, 3))
        .unwrap();
    let from_b = b.take_changes();
    assert_eq!(wire::decode_changes(&from_b).unwrap().len(), 1);
    a.apply_changes(&from_b).unwrap();
    assert_eq!(a.entries(true), b.entries(true));
    assert_eq!(a.len(), 3);
    // Applying our own changes back is a no-op.
    a.apply_changes(&from_a).unwrap();
    assert!(a.take_changes().is_empty());
}

#[test]
fn apply_accepts_duplicates_and_any_order() {
    let mut a = SectionDoc::new(Section::Conditions);
    let base = a.save();
    let id = a
        .add_entry(new_entry(condition("1", "2012"), 1, 1))
        .unwrap();
    let c1 = a.take_changes();
    a.amend_entry(id, condition("2", "2012"), who(1), 2)
        .unwrap();
    let c2 = a.take_changes();
    a.mark_entered_in_error(id, who(1), 3).unwrap();
    let c3 = a.take_changes();

    let mut b = SectionDoc::load(Section::Conditions, &base).unwrap();
    b.apply_changes(&c3).unwrap();
    b.apply_changes(&c2).unwrap();
    assert!(b.entry(id).is_none(), "held until the dependency arrives");
    assert!(!b.missing_deps().is_empty());
    // Held changes survive a save/load.
    let saved = b.save();
    let mut b = SectionDoc::load(Section::Conditions, &saved).unwrap();
    assert!(!b.missing_deps().is_empty());
    b.apply_changes(&c2).unwrap();
    b.apply_changes(&c1).unwrap();
    assert!(b.missing_deps().is_empty());
    b.apply_changes(&c1).unwrap();
    b.apply_changes(&[c3.clone(), c1.clone(), c2.clone()].concat())
        .unwrap();
    assert_eq!(b.entries(true), a.entries(true));
    assert_eq!(b.history(id).unwrap().len(), 3);
    assert!(b.take_changes().is_empty());
    // A full save is also accepted as changes.
    let mut c = SectionDoc::load(Section::Conditions, &base).unwrap();
    c.apply_changes(&a.save()).unwrap();
    assert_eq!(c.entries(true), a.entries(true));
}

#[test]
fn apply_refuses_bad_bytes_and_changes_nothing() {
    let mut a = SectionDoc::new(Section::Conditions);
    let base = a.save();
    a.add_entry(new_entry(condition("1", "2012"), 1, 1))
        .unwrap();
    a.add_entry(new_entry(condition("2", "2012"), 1, 1))
        .unwrap();
    let good = a.take_changes();
    let mut b = SectionDoc::load(Section::Conditions, &base).unwrap();
    let heads = b.heads();
    let mut flipped = good.clone();
    let last = flipped.len() - 3;
    flipped[last] ^= 0x55;
    let cases: Vec<Vec<u8>> = vec![
        b"not automerge at all".to_vec(),
        good[..good.len() - 1].to_vec(),
        [good.clone(), b"trailing".to_vec()].concat(),
        flipped,
    ];
    for bad in cases {
        let err = b.apply_changes(&bad).unwrap_err();
        assert!(matches!(err, RecordError::Automerge(_)), "{err}");
        assert_eq!(b.heads(), heads);
        assert!(b.is_empty());
    }
    // Changes of another section's document are refused.
    let mut other = SectionDoc::new(Section::Allergies);
    other
        .add_entry(new_entry(
            json!({"resourceType": "AllergyIntolerance"}),
            1,
            1,
        ))
        .unwrap();
    let err = b.apply_changes(&other.take_changes()).unwrap_err();
    assert!(matches!(err, RecordError::Automerge(_)));
    assert!(b.apply_changes(&other.save()).is_err());
    assert_eq!(b.heads(), heads);
    b.apply_changes(&good).unwrap();
    assert_eq!(b.len(), 2);
    assert!(b.apply_changes(&[]).is_ok());
}

#[test]
fn save_and_load_round_trip() {
    let mut a = SectionDoc::new(Section::Conditions);
    let id = a
        .add_entry(new_entry(condition("1", "2012"), 1, 1))
        .unwrap();
    a.amend_entry(id, condition("2", "2013"), who(2), 2)
        .unwrap();
    a.add_entry(new_entry(condition("3", "2014"), 1, 3))
        .unwrap();
    let bytes = a.save();
    let b = SectionDoc::load(Section::Conditions, &bytes).unwrap();
    assert_eq!(a.entries(true), b.entries(true));
    assert_eq!(a.history(id).unwrap(), b.history(id).unwrap());
    assert_eq!(a.summary(), b.summary());
    assert!(!b.has_pending_changes());
    for bad in [&b""[..], &b"garbage"[..], &bytes[..bytes.len() / 2]] {
        assert!(matches!(
            SectionDoc::load(Section::Conditions, bad),
            Err(RecordError::Automerge(_))
        ));
    }
    let err = SectionDoc::load(Section::Allergies, &bytes).unwrap_err();
    assert_eq!(
        err,
        RecordError::Automerge("not a document of the allergies section".into())
    );
    // A loaded document writes with a new actor: both sides keep writing.
    let mut b = b;
    let mut a2 = SectionDoc::load(Section::Conditions, &bytes).unwrap();
    b.add_entry(new_entry(condition("4", "2015"), 1, 4))
        .unwrap();
    a2.add_entry(new_entry(condition("5", "2015"), 1, 4))
        .unwrap();
    a2.apply_changes(&b.take_changes()).unwrap();
    b.apply_changes(&a2.take_changes()).unwrap();
    assert_eq!(a2.entries(true), b.entries(true));
    assert_eq!(b.len(), 4);
}

// ----- lookups, queries, summaries ----------------------------------------------

#[test]
fn find_by_source_prefers_visible_entries() {
    let mut doc = SectionDoc::new(Section::Conditions);
    let src = |id: &str| NewEntry {
        resource: condition("1", "2012"),
        author: who(1),
        recorded_at_ms: 1,
        source_system: Some("https://h.example".into()),
        source_id: Some(id.into()),
    };
    let first = doc.add_entry(src("x")).unwrap();
    assert_eq!(doc.find_by_source("https://h.example", "x"), Some(first));
    assert_eq!(doc.find_by_source("https://h.example", "y"), None);
    assert_eq!(doc.find_by_source("https://other.example", "x"), None);
    doc.mark_entered_in_error(first, who(1), 2).unwrap();
    assert_eq!(doc.find_by_source("https://h.example", "x"), Some(first));
    let second = doc.add_entry(src("x")).unwrap();
    assert_eq!(doc.find_by_source("https://h.example", "x"), Some(second));
}

#[test]
fn queries_use_the_index() {
    let mut doc = SectionDoc::new(Section::Conditions);
    let a = doc
        .add_entry(new_entry(condition("A", "2010-01-01"), 1, 1))
        .unwrap();
    let b = doc
        .add_entry(new_entry(condition("B", "2011-06-15T10:00:00Z"), 1, 1))
        .unwrap();
    let c = doc
        .add_entry(new_entry(condition("C", "2012"), 1, 1))
        .unwrap();
    let undated = doc
        .add_entry(new_entry(
            json!({"resourceType": "Condition", "code": {"text": "Undated thing"}}),
            1,
            1,
        ))
        .unwrap();
    let hidden = doc
        .add_entry(new_entry(condition("A", "2013"), 1, 1))
        .unwrap();
    doc.mark_entered_in_error(hidden, who(1), 2).unwrap();
    fn ids_of(doc: &SectionDoc, q: &Query) -> Vec<EntryId> {
        doc.query(q).iter().map(|e| e.id).collect()
    }
    let ids = |q: &Query| ids_of(&doc, q);

    assert_eq!(ids(&Query::default()), vec![c, b, a, undated]);
    assert_eq!(
        ids(&Query {
            include_entered_in_error: true,
            ..Query::default()
        }),
        vec![hidden, c, b, a, undated]
    );
    // Inclusive range; undated excluded.
    let q = Query {
        from_ms: Some(ms("2010-01-01")),
        to_ms: Some(ms("2011-06-15T10:00:00Z")),
        ..Query::default()
    };
    assert_eq!(ids(&q), vec![b, a]);
    assert_eq!(
        ids(&Query {
            from_ms: Some(ms("2011")),
            ..Query::default()
        }),
        vec![c, b]
    );
    assert_eq!(
        ids(&Query {
            to_ms: Some(ms("2010-01-01")),
            ..Query::default()
        }),
        vec![a]
    );
    // Codes, with or without system.
    assert_eq!(
        ids(&Query {
            code: Some((None, "A".into())),
            ..Query::default()
        }),
        vec![a]
    );
    assert_eq!(
        ids(&Query {
            code: Some((Some("http://snomed.info/sct".into()), "A".into())),
            ..Query::default()
        }),
        vec![a]
    );
    assert!(ids(&Query {
        code: Some((Some("http://loinc.org".into()), "A".into())),
        ..Query::default()
    })
    .is_empty());
    assert_eq!(
        ids(&Query {
            code: Some((None, "A".into())),
            include_entered_in_error: true,
            ..Query::default()
        }),
        vec![hidden, a]
    );
    // Text: case-insensitive substring of displays.
    assert_eq!(
        ids(&Query {
            text: Some("display b".into()),
            ..Query::default()
        }),
        vec![b]
    );
    assert_eq!(
        ids(&Query {
            text: Some("UNDATED".into()),
            ..Query::default()
        }),
        vec![undated]
    );
    assert_eq!(
        ids(&Query {
            text: Some("text".into()),
            ..Query::default()
        }),
        vec![c, b, a]
    );
    // Section filter.
    assert!(ids(&Query {
        section: Some(Section::Labs),
        ..Query::default()
    })
    .is_empty());
    assert_eq!(
        ids(&Query {
            section: Some(Section::Conditions),
            ..Query::default()
        })
        .len(),
        4
    );
    // The current version is what is matched.
    doc.amend_entry(a, condition("A2", "2009"), who(1), 5)
        .unwrap();
    assert!(ids_of(
        &doc,
        &Query {
            code: Some((None, "A".into())),
            ..Query::default()
        }
    )
    .is_empty());
    assert_eq!(
        ids_of(
            &doc,
            &Query {
                code: Some((None, "A2".into())),
                ..Query::default()
            }
        ),
        vec![a]
    );
}

#[test]
fn summary_counts_from_the_index() {
    let mut doc = SectionDoc::new(Section::Labs);
    doc.add_entry(new_entry(lab("1", "2010"), 1, 1)).unwrap();
    doc.add_entry(new_entry(lab("2", "2014-03-01"), 1, 1))
        .unwrap();
    doc.add_entry(new_entry(
        json!({"resourceType": "DiagnosticReport", "issued": "2011-01-01T00:00:00Z"}),
        1,
        1,
    ))
    .unwrap();
    let gone = doc.add_entry(new_entry(lab("3", "2020"), 1, 1)).unwrap();
    doc.mark_entered_in_error(gone, who(1), 2).unwrap();
    let s = doc.summary();
    assert_eq!(s.section, Section::Labs);
    assert_eq!(s.active, 3);
    assert_eq!(s.entered_in_error, 1);
    assert_eq!(s.latest_date_ms, Some(ms("2014-03-01")));
    assert_eq!(
        s.by_resource_type,
        BTreeMap::from([
            ("DiagnosticReport".to_string(), 1),
            ("Observation".to_string(), 2)
        ])
    );
}

#[test]
fn no_health_data_in_errors_or_debug() {
    let mut doc = SectionDoc::new(Section::Conditions);
    let resource = condition(CANARY, "2012");
    let id = doc
        .add_entry(NewEntry {
            resource: resource.clone(),
            author: who(1),
            recorded_at_ms: 1,
            source_system: None,
            source_id: None,
        })
        .unwrap();
    let mut errors = vec![
        doc.amend_entry(
            id,
            json!({"resourceType": "Condition", "code": {"text": [CANARY]}}),
            who(1),
            2,
        )
        .unwrap_err(),
        doc.amend_entry(
            id,
            json!({"resourceType": "AllergyIntolerance", "note": CANARY}),
            who(1),
            2,
        )
        .unwrap_err(),
        doc.add_entry(new_entry(json!({"resourceType": CANARY}), 1, 1))
            .unwrap_err(),
        doc.add_entry(new_entry(
            json!({"resourceType": "Condition", "onsetDateTime": CANARY}),
            1,
            1,
        ))
        .unwrap_err(),
        doc.apply_changes(CANARY.as_bytes()).unwrap_err(),
    ];
    doc.mark_entered_in_error(id, who(1), 3).unwrap();
    errors.push(doc.mark_entered_in_error(id, who(1), 4).unwrap_err());
    for e in &errors {
        assert!(!e.to_string().contains(CANARY), "{e}");
        assert!(!format!("{e:?}").contains(CANARY), "{e:?}");
    }
    let entry = doc.entry(id).unwrap();
    let query = Query {
        text: Some(CANARY.into()),
        code: Some((None, CANARY.into())),
        ..Query::default()
    };
    let dbg = format!(
        "{entry:?} {:?} {query:?} {doc:?} {:?}",
        doc.history(id).unwrap(),
        new_entry(resource, 1, 1)
    );
    assert!(!dbg.contains(CANARY), "{dbg}");
}

// ----- Record -------------------------------------------------------------------

#[test]
fn record_routes_and_reads_across_sections() {
    let mut r = Record::new(RecordId::random());
    let (s1, heart) = r
        .add(new_entry(vital("8867-4", "2020-01-01"), 1, 1))
        .unwrap();
    let (s2, hb) = r.add(new_entry(lab("718-7", "2021-01-01"), 1, 1)).unwrap();
    let (s3, cond) = r.add(new_entry(condition("1", "2019"), 1, 1)).unwrap();
    let (s4, pat) = r
        .add(new_entry(
            json!({"resourceType": "Patient", "birthDate": "1970"}),
            1,
            1,
        ))
        .unwrap();
    assert_eq!(
        (s1, s2, s3, s4),
        (
            Section::Vitals,
            Section::Labs,
            Section::Conditions,
            Section::Demographics
        )
    );
    assert_eq!(r.section_of(hb), Some(Section::Labs));
    assert_eq!(r.entry(heart).unwrap().section, Section::Vitals);

    // Refused resources create no section.
    assert!(r
        .add(new_entry(json!({"resourceType": "Practitioner"}), 1, 1))
        .is_err());
    assert!(r
        .add(new_entry(json!({"resourceType": "Bundle"}), 1, 1))
        .is_err());
    assert!(r
        .add(new_entry(
            json!({"resourceType": "AllergyIntolerance", "code": 1}),
            1,
            1
        ))
        .is_err());
    assert_eq!(
        r.sections.keys().copied().collect::<Vec<_>>(),
        vec![
            Section::Demographics,
            Section::Conditions,
            Section::Vitals,
            Section::Labs
        ]
    );

    r.amend(cond, condition("2", "2018"), who(2), 2).unwrap();
    assert_eq!(r.history(cond).unwrap().len(), 2);
    assert_eq!(
        r.amend(heart, lab("x", "2020"), who(2), 2).unwrap_err(),
        RecordError::WrongSection {
            entry: heart,
            expected: Section::Vitals
        }
    );
    r.mark_entered_in_error(hb, who(2), 3).unwrap();
    let missing = EntryId::random();
    assert_eq!(
        r.amend(missing, condition("1", "2012"), who(1), 1)
            .unwrap_err(),
        RecordError::UnknownEntry(missing)
    );
    assert_eq!(
        r.mark_entered_in_error(missing, who(1), 1).unwrap_err(),
        RecordError::UnknownEntry(missing)
    );
    assert_eq!(
        r.history(missing).unwrap_err(),
        RecordError::UnknownEntry(missing)
    );
    assert!(r.entry(missing).is_none());

    let ids = |q: &Query| r.query(q).iter().map(|e| e.id).collect::<Vec<_>>();
    assert_eq!(ids(&Query::default()), vec![heart, cond, pat]);
    assert_eq!(
        ids(&Query {
            include_entered_in_error: true,
            ..Query::default()
        }),
        vec![hb, heart, cond, pat]
    );
    assert_eq!(
        ids(&Query {
            section: Some(Section::Vitals),
            ..Query::default()
        }),
        vec![heart]
    );

    let summary = r.summary();
    assert_eq!(summary.len(), 4);
    assert_eq!(summary.iter().map(|s| s.active).sum::<usize>(), 3);
    assert_eq!(summary.iter().map(|s| s.entered_in_error).sum::<usize>(), 1);

    // Explicit adds for notes; routed sections still refuse strangers.
    let note = r
        .add_to(
            Section::Notes,
            new_entry(
                json!({"resourceType": "Basic", "code": {"text": "note"}}),
                1,
                1,
            ),
        )
        .unwrap();
    assert_eq!(r.section_of(note), Some(Section::Notes));
    assert!(matches!(
        r.add_to(Section::Labs, new_entry(condition("1", "2012"), 1, 1)),
        Err(RecordError::ResourceNotForSection { .. })
    ));
    let src = NewEntry {
        source_system: Some("s".into()),
        source_id: Some("i".into()),
        ..new_entry(condition("9", "2012"), 1, 1)
    };
    let (_, sourced) = r.add(src).unwrap();
    assert_eq!(
        r.find_by_source("s", "i"),
        Some((Section::Conditions, sourced))
    );

    // Loaded sections slot in.
    let bytes = r.section_mut(Section::Conditions).save();
    let mut r2 = Record::new(r.id);
    assert!(r2
        .insert_section(SectionDoc::load(Section::Conditions, &bytes).unwrap())
        .is_none());
    assert_eq!(r2.entry(cond), r.entry(cond));
}

#[test]
fn summary_of_a_large_section_is_fast() {
    let mut doc = SectionDoc::new(Section::Labs);
    for i in 0..1500i64 {
        let day = 1 + (i % 28);
        doc.add_entry(new_entry(
            lab(&format!("c{i}"), &format!("2020-02-{day:02}")),
            1,
            i,
        ))
        .unwrap();
    }
    let bytes = doc.save();
    let start = std::time::Instant::now();
    let loaded = SectionDoc::load(Section::Labs, &bytes).unwrap();
    let load_time = start.elapsed();
    let start = std::time::Instant::now();
    let summary = loaded.summary();
    let summary_time = start.elapsed();
    assert_eq!(summary.active, 1500);
    loaded.assert_index_consistent();
    println!(
        "1500 entries: {} bytes, load {load_time:?}, summary {summary_time:?}",
        bytes.len()
    );
    if !cfg!(debug_assertions) {
        assert!(
            summary_time.as_millis() < 50,
            "summary took {summary_time:?}"
        );
    }
}

// ----- convergence ----------------------------------------------------------------

#[derive(Debug, Clone)]
enum Step {
    Add {
        replica: usize,
        at: i64,
        code: u8,
    },
    Amend {
        replica: usize,
        pick: usize,
        at: i64,
        code: u8,
    },
    Mark {
        replica: usize,
        pick: usize,
        at: i64,
    },
    /// Take the replica's local changes and post them to every other replica.
    Send {
        replica: usize,
        duplicate: bool,
        hold: bool,
    },
    /// Deliver one pending message to a replica.
    Deliver {
        replica: usize,
        pick: usize,
    },
}

fn step(n: usize) -> impl Strategy<Value = Step> {
    // Few distinct times so that ties on recorded_at happen.
    let at = 0i64..6;
    prop_oneof![
        3 => (0..n, at.clone(), 0u8..4).prop_map(|(replica, at, code)| Step::Add { replica, at, code }),
        3 => (0..n, any::<usize>(), at.clone(), 0u8..4)
            .prop_map(|(replica, pick, at, code)| Step::Amend { replica, pick, at, code }),
        1 => (0..n, any::<usize>(), at).prop_map(|(replica, pick, at)| Step::Mark { replica, pick, at }),
        3 => (0..n, any::<bool>(), prop::bool::weighted(0.2))
            .prop_map(|(replica, duplicate, hold)| Step::Send { replica, duplicate, hold }),
        4 => (0..n, any::<usize>()).prop_map(|(replica, pick)| Step::Deliver { replica, pick }),
    ]
}

/// Replicas, steps, a shuffling seed, and how incoming changes are indexed
/// (`None`: as in production; `Some(true)`: always from patches;
/// `Some(false)`: always by rebuilding).
fn scenario() -> impl Strategy<Value = (usize, Vec<Step>, u64, Option<bool>)> {
    (2usize..=5).prop_flat_map(|n| {
        (
            Just(n),
            prop::collection::vec(step(n), 1..60),
            any::<u64>(),
            prop_oneof![Just(None), Just(Some(true)), Just(Some(false))],
        )
    })
}

/// What a replica wrote: (entry, author, recorded_at, status, resource).
type Written = (EntryId, IdentityId, i64, EntryStatus, Value);

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn replicas_converge((n, steps, seed, incremental) in scenario()) {
        doc::FORCE_INCREMENTAL.with(|f| f.set(incremental));
        let base = SectionDoc::new(Section::Conditions).save();
        let mut replicas: Vec<SectionDoc> =
            (0..n).map(|_| SectionDoc::load(Section::Conditions, &base).unwrap()).collect();
        // Per replica: messages in flight, and messages held back until the end.
        let mut inbox: Vec<Vec<Vec<u8>>> = vec![Vec::new(); n];
        let mut held: Vec<Vec<Vec<u8>>> = vec![Vec::new(); n];
        let mut created: BTreeSet<EntryId> = BTreeSet::new();
        let mut written: Vec<Written> = Vec::new();
        let author = |r: usize| IdentityId([u8::try_from(r).unwrap() + 1; 32]);
        let resource = |r: usize, code: u8, at: i64| {
            condition(&format!("r{r}-c{code}"), &format!("20{:02}", 10 + at))
        };

        for s in &steps {
            match s.clone() {
                Step::Add { replica, at, code } => {
                    let res = resource(replica, code, at);
                    let id = replicas[replica].add_entry(new_entry(res.clone(), u8::try_from(replica).unwrap() + 1, at)).unwrap();
                    created.insert(id);
                    written.push((id, author(replica), at, EntryStatus::Active, res));
                }
                Step::Amend { replica, pick, at, code } => {
                    let known = replicas[replica].entries(true);
                    if known.is_empty() { continue; }
                    let e = &known[pick % known.len()];
                    let res = resource(replica, code, at);
                    match replicas[replica].amend_entry(e.id, res.clone(), author(replica), at) {
                        Ok(()) => written.push((e.id, author(replica), at, EntryStatus::Active, res)),
                        Err(RecordError::AlreadyEnteredInError(_)) => prop_assert!(e.is_hidden()),
                        Err(other) => prop_assert!(false, "amend failed: {other}"),
                    }
                }
                Step::Mark { replica, pick, at } => {
                    let known = replicas[replica].entries(true);
                    if known.is_empty() { continue; }
                    let e = &known[pick % known.len()];
                    match replicas[replica].mark_entered_in_error(e.id, author(replica), at) {
                        Ok(()) => written.push((
                            e.id, author(replica), at, EntryStatus::EnteredInError, e.current.resource.clone(),
                        )),
                        Err(RecordError::AlreadyEnteredInError(_)) => prop_assert!(e.is_hidden()),
                        Err(other) => prop_assert!(false, "mark failed: {other}"),
                    }
                }
                Step::Send { replica, duplicate, hold } => {
                    let bytes = replicas[replica].take_changes();
                    if bytes.is_empty() { continue; }
                    for other in (0..n).filter(|o| *o != replica) {
                        let queue = if hold { &mut held[other] } else { &mut inbox[other] };
                        queue.push(bytes.clone());
                        if duplicate { inbox[other].push(bytes.clone()); }
                    }
                }
                Step::Deliver { replica, pick } => {
                    if inbox[replica].is_empty() { continue; }
                    let i = pick % inbox[replica].len();
                    let msg = inbox[replica].swap_remove(i);
                    replicas[replica].apply_changes(&msg).unwrap();
                    replicas[replica].assert_index_consistent();
                }
            }
        }
        // Flush: everyone sends what is left; everything is delivered, in a
        // seeded shuffled order, held messages included.
        for (r, replica) in replicas.iter_mut().enumerate() {
            let bytes = replica.take_changes();
            if bytes.is_empty() { continue; }
            for other in (0..n).filter(|o| *o != r) {
                inbox[other].push(bytes.clone());
            }
        }
        let mut rng = seed;
        for r in 0..n {
            let mut all: Vec<Vec<u8>> = inbox[r].drain(..).chain(held[r].drain(..)).collect();
            while !all.is_empty() {
                rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let i = usize::try_from(rng >> 33).unwrap() % all.len();
                let msg = all.swap_remove(i);
                replicas[r].apply_changes(&msg).unwrap();
            }
            prop_assert!(replicas[r].missing_deps().is_empty());
            replicas[r].assert_index_consistent();
            prop_assert!(replicas[r].take_changes().is_empty(), "no echo of received changes");
        }

        let reference = replicas[0].entries(true);
        let ids: BTreeSet<EntryId> = reference.iter().map(|e| e.id).collect();
        prop_assert_eq!(&ids, &created, "every entry ever created is present");
        for (r, replica) in replicas.iter().enumerate().skip(1) {
            prop_assert_eq!(&replica.entries(true), &reference, "replica {} entries differ", r);
            prop_assert_eq!(replica.summary(), replicas[0].summary());
        }
        for id in &created {
            let history = replicas[0].history(*id).unwrap();
            for replica in &replicas[1..] {
                prop_assert_eq!(&replica.history(*id).unwrap(), &history);
            }
            // Every version ever written, and nothing else.
            let mut got: Vec<(IdentityId, i64, EntryStatus, String)> = history
                .iter()
                .map(|v| (v.author, v.recorded_at_ms, v.status, v.resource.to_string()))
                .collect();
            let mut want: Vec<(IdentityId, i64, EntryStatus, String)> = written
                .iter()
                .filter(|w| w.0 == *id)
                .map(|w| (w.1, w.2, w.3, w.4.to_string()))
                .collect();
            got.sort();
            want.sort();
            prop_assert_eq!(got, want);
            // History order is (recorded_at, author, position).
            prop_assert!(history.windows(2).all(|w| (w[0].recorded_at_ms, w[0].author) <= (w[1].recorded_at_ms, w[1].author)));
            let entry = replicas[0].entry(*id).unwrap();
            prop_assert_eq!(
                entry.is_hidden(),
                history.iter().any(|v| v.status == EntryStatus::EnteredInError)
            );
            prop_assert_eq!(history.last(), Some(&entry.current));
        }
    }
}

#[test]
fn bulk_adds_are_one_change_and_all_or_nothing() {
    let mut r = Record::new(RecordId::random());
    let ids = r
        .add_many(vec![
            new_entry(condition("1", "2012"), 1, 1),
            new_entry(vital("2", "2012"), 1, 1),
            new_entry(condition("3", "2012"), 1, 1),
        ])
        .unwrap();
    assert_eq!(
        ids.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
        vec![Section::Conditions, Section::Vitals, Section::Conditions]
    );
    assert_eq!(r.entry(ids[2].1).unwrap().current.codes[0].code, "3");
    let conditions = r.section_mut(Section::Conditions);
    let bytes = conditions.take_changes();
    // Genesis + one change for both conditions.
    assert_eq!(wire::decode_changes(&bytes).unwrap().len(), 2);

    let before = r.query(&Query::default()).len();
    let err = r
        .add_many(vec![
            new_entry(condition("4", "2012"), 1, 1),
            new_entry(json!({"resourceType": "Practitioner"}), 1, 1),
        ])
        .unwrap_err();
    assert_eq!(
        err,
        RecordError::Fhir(FhirError::NoSection("Practitioner".into()))
    );
    assert_eq!(r.query(&Query::default()).len(), before);
    assert!(r.section_mut(Section::Conditions).take_changes().is_empty());
    assert!(r.add_many(Vec::new()).unwrap().is_empty());

    let mut doc = SectionDoc::new(Section::Conditions);
    assert!(doc
        .add_entries(vec![
            new_entry(condition("1", "2012"), 1, 1),
            new_entry(lab("1", "2012"), 1, 1)
        ])
        .is_err());
    assert!(doc.is_empty());
}
