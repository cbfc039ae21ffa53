//! End-to-end sharing through the CLI and a real `satchel-sync`: invites,
//! approval by fingerprint, grants by section, expiry, revocation with key
//! rotation, a manager acting for the owner, forged writes, recovery and
//! the audit (exported as FHIR and validated with fhir.resources).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use satchel_tests::world::*;
use satchel_tests::{run, satchel, validate_fhir};
use serde_json::{json, Value};

#[test]
fn carer_list_shows_only_granted_sections_marked_with_whose_record() {
    let w = world("pat");
    let pat = w.home("pat");
    assert!(add(&pat, &med("metformin")).status.success());
    assert!(add(&pat, &allergy("penicillin")).status.success());
    assert!(add(&pat, &lab("HbA1c")).status.success());
    assert!(sync(&pat, &w.relay).status.success());
    let carer = w.home("daughter");
    share(
        &pat,
        &carer,
        "Jane",
        "carer",
        &w.relay,
        &[
            "--role",
            "carer",
            "--sections",
            "medications,allergies",
            "--label",
            "Daughter",
        ],
    );
    let seen = list(&carer);
    assert_eq!(
        sections_of(&seen),
        ["allergies", "medications"].map(String::from).into()
    );
    let table = run(satchel(&carer, PASS).arg("list"), true);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.contains("Record of Pat Example"), "{text}");
    assert!(
        text.contains("Shared with you: allergies, medications"),
        "{text}"
    );
    // The owner's grants table names her.
    let grants = run(satchel(&pat, PASS).args(["grants", "--json"]), true);
    let grants: Vec<Value> = serde_json::from_slice(&grants.stdout).unwrap();
    assert!(grants
        .iter()
        .any(|g| g["name"] == "Jane" && g["role"] == "reader" && g["label"] == "Daughter"));
}

#[test]
fn revoked_carer_reads_nothing_new() {
    let w = world("pat");
    let pat = w.home("pat");
    assert!(add(&pat, &med("metformin")).status.success());
    assert!(sync(&pat, &w.relay).status.success());
    let carer = w.home("carer");
    share(
        &pat,
        &carer,
        "Jane",
        "carer",
        &w.relay,
        &["--role", "carer", "--sections", "medications"],
    );
    assert_eq!(list(&carer).len(), 1);
    run(
        satchel(&pat, PASS).args(["revoke", "Jane", "--server", &w.relay.url()]),
        true,
    );
    const K: usize = 5;
    for i in 0..K {
        assert!(add(&pat, &med(&format!("new medicine {i}")))
            .status
            .success());
    }
    assert!(sync(&pat, &w.relay).status.success());
    // The relay refuses the revoked carer, and its list says the copy is
    // no longer updated.
    let out = sync(&carer, &w.relay);
    assert!(!out.status.success(), "a revoked carer must not sync");
    let shown = run(satchel(&carer, PASS).arg("list"), true);
    let shown = String::from_utf8_lossy(&shown.stdout);
    assert!(shown.contains("ACCESS ENDED"), "{shown}");
    assert!(shown.contains("no longer updated"), "{shown}");
    // It keeps every key it ever had and takes every byte the relay ever
    // stored, straight from the relay's database.
    assert_eq!(list(&carer).len(), 1);
    let read = entries_read_from_lenient_relay(&carer, &w.relay, "medications");
    assert_eq!(read, 0, "decrypted {read} of {K} new entries");
}

#[test]
fn expired_grant_denied() {
    let w = world("pat");
    let pat = w.home("pat");
    assert!(add(&pat, &allergy("latex")).status.success());
    assert!(sync(&pat, &w.relay).status.success());
    let consultant = w.home("consultant");
    share(
        &pat,
        &consultant,
        "Dr Who",
        "provider",
        &w.relay,
        &[
            "--role",
            "provider",
            "--sections",
            "allergies",
            "--expires",
            "4s",
        ],
    );
    assert_eq!(list(&consultant).len(), 1);
    std::thread::sleep(std::time::Duration::from_secs(5));
    assert!(add(&pat, &allergy("peanut")).status.success());
    assert!(sync(&pat, &w.relay).status.success());
    let out = sync(&consultant, &w.relay);
    assert!(!out.status.success(), "an expired grant must not sync");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("403") || err.to_lowercase().contains("forbidden") || err.contains("not"),
        "{err}"
    );
    assert_eq!(list(&consultant).len(), 1, "nothing after expiry");
}

#[test]
fn unauthorized_writer_rejected() {
    let w = world("pat");
    let pat = w.home("pat");
    assert!(sync(&pat, &w.relay).status.success());
    let carer = w.home("carer");
    share(
        &pat,
        &carer,
        "Reader",
        "carer",
        &w.relay,
        &["--role", "carer", "--sections", "medications"],
    );
    let gp = w.home("gp");
    share(
        &pat,
        &gp,
        "GP",
        "provider",
        &w.relay,
        &["--role", "provider", "--sections", "labs", "--write"],
    );
    // The reader holds the medications key: its client refuses to write
    // with it, before anything is stored or queued, so its sync still
    // works. (A tampered client's forged write is refused by the relay,
    // `reader_pulls_only_granted_sections_and_cannot_write` in
    // tests/tests/relay_sharing_api.rs, and by every device,
    // `writers_write_only_their_sections_and_readers_cannot_write`.)
    let out = add(&carer, &med("forged"));
    assert!(
        !out.status.success(),
        "a reader's client must refuse a write"
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("may not write the medications section"),
        "{err}"
    );
    assert!(!err.contains("forged"), "no clinical text in the error");
    assert!(sync(&carer, &w.relay).status.success());
    // The writer cannot write outside its sections (refused before
    // anything is stored) but can write labs.
    let out = add(&gp, &allergy("made up"));
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("may not write the allergies section"));
    assert!(add(&gp, &lab("HbA1c")).status.success());
    assert!(sync(&gp, &w.relay).status.success());
    assert!(sync(&pat, &w.relay).status.success());
    let seen = list(&pat);
    assert_eq!(sections_of(&seen), ["labs".to_string()].into());
}

#[test]
fn manager_can_grant_on_behalf() {
    let w = world("child");
    let child = w.home("child");
    assert!(add(&child, &allergy("egg")).status.success());
    assert!(sync(&child, &w.relay).status.success());
    let parent = w.home("parent");
    share(
        &child,
        &parent,
        "Parent",
        "manager",
        &w.relay,
        &["--role", "manager"],
    );
    // The manager invites the school nurse for allergies.
    let nurse = w.home("nurse");
    share(
        &parent,
        &nurse,
        "Nurse",
        "carer",
        &w.relay,
        &["--role", "carer", "--sections", "allergies"],
    );
    assert_eq!(sections_of(&list(&nurse)), ["allergies".to_string()].into());
    // The owner's devices see the manager's grant.
    assert!(sync(&child, &w.relay).status.success());
    let grants = run(satchel(&child, PASS).args(["grants", "--json"]), true);
    let grants: Vec<Value> = serde_json::from_slice(&grants.stdout).unwrap();
    assert!(grants.iter().any(|g| g["name"] == "Nurse"));
    assert!(grants
        .iter()
        .any(|g| g["name"] == "Parent" && g["role"] == "manager"));
}

#[test]
fn recovery_restores_record() {
    let w = world("pat");
    let pat = w.home("pat");
    for i in 0..3 {
        assert!(add(&pat, &med(&format!("medicine {i}"))).status.success());
    }
    assert!(add(&pat, &lab("HbA1c")).status.success());
    assert!(sync(&pat, &w.relay).status.success());
    let out = run(
        satchel(&pat, PASS).args(["recovery-key", "--server", &w.relay.url()]),
        true,
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let key = text
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("SATCHEL-"))
        .expect("a recovery key")
        .to_string();
    // A wrong key is a clear error and leaves nothing behind.
    let wrong = w.home("wrong");
    let mut bad = key.clone().into_bytes();
    let i = bad.len() - 3;
    bad[i] = if bad[i] == b'A' { b'B' } else { b'A' };
    let out = satchel(&wrong, PASS)
        .args(["restore", "--server", &w.relay.url()])
        .env("SATCHEL_RECOVERY_KEY", String::from_utf8(bad).unwrap())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(!wrong.join("satchel.db").exists());
    // The right key on a fresh home restores everything.
    let fresh = w.home("fresh");
    run(
        satchel(&fresh, PASS)
            .args(["restore", "--server", &w.relay.url()])
            .env("SATCHEL_RECOVERY_KEY", &key),
        true,
    );
    let mut a = list(&pat);
    let mut b = list(&fresh);
    a.sort_by_key(|e| e["id"].as_str().unwrap().to_string());
    b.sort_by_key(|e| e["id"].as_str().unwrap().to_string());
    assert_eq!(a, b);
}

#[test]
fn audit_lists_views_and_contributions() {
    let w = world("pat");
    let pat = w.home("pat");
    assert!(add(&pat, &med("metformin")).status.success());
    assert!(sync(&pat, &w.relay).status.success());
    let carer = w.home("carer");
    share(
        &pat,
        &carer,
        "Jane",
        "carer",
        &w.relay,
        &["--role", "carer", "--sections", "medications"],
    );
    let gp = w.home("gp");
    share(
        &pat,
        &gp,
        "Dr Patel",
        "provider",
        &w.relay,
        &["--role", "provider", "--sections", "labs", "--write"],
    );
    assert!(add(&gp, &lab("HbA1c")).status.success());
    assert!(sync(&gp, &w.relay).status.success());
    assert!(sync(&pat, &w.relay).status.success());
    let fhir = w.root.join("audit.json");
    let out = run(
        satchel(&pat, PASS)
            .args(["audit", "--server", &w.relay.url(), "--json", "--fhir"])
            .arg(&fhir),
        true,
    );
    let audit: Value = serde_json::from_slice(&out.stdout).unwrap();
    let events = audit["events"].as_array().unwrap();
    assert!(events
        .iter()
        .any(|e| e["name"].as_str().unwrap().starts_with("Jane")
            && e["action"] == "pull"
            && e["section"] == "medications"));
    assert!(events
        .iter()
        .any(|e| e["name"].as_str().unwrap().starts_with("Dr Patel")
            && e["action"] == "push"
            && e["section"] == "labs"));
    let contributions = audit["contributions"].as_array().unwrap();
    assert!(contributions
        .iter()
        .any(|c| c["name"].as_str().unwrap().starts_with("Dr Patel") && c["section"] == "labs"));
    // A carer may not read the audit.
    let out = satchel(&carer, PASS)
        .args(["audit", "--server", &w.relay.url()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    // The FHIR export validates with fhir.resources (R4).
    let bundle: Value = serde_json::from_slice(&std::fs::read(&fhir).unwrap()).unwrap();
    let resources: Vec<Value> = bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["resource"].clone())
        .collect();
    assert!(resources.iter().any(|r| r["resourceType"] == "AuditEvent"));
    assert!(resources.iter().any(|r| r["resourceType"] == "Provenance"));
    validate_fhir(&resources);
    validate_fhir(&[bundle]);
}

fn patient(family: &str, birth: &str, id_value: &str) -> Value {
    json!({"resourceType": "Patient", "id": "p1",
           "identifier": [{"system": "https://fhir.nhs.uk/Id/nhs-number", "value": id_value}],
           "name": [{"family": family, "given": ["Pat"]}], "birthDate": birth})
}

fn provider_bundle(patient: Value) -> Value {
    json!({"resourceType": "Bundle", "type": "collection", "entry": [
        {"fullUrl": "urn:uuid:7f5c1c52-0d8f-4a4e-9b3e-2f1f8c6d0a01", "resource": patient},
        {"fullUrl": "urn:uuid:7f5c1c52-0d8f-4a4e-9b3e-2f1f8c6d0a02", "resource": {
            "resourceType": "Observation", "id": "hba1c-2026", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "4548-4", "display": "Hemoglobin A1c"}]},
            "subject": {"reference": "urn:uuid:7f5c1c52-0d8f-4a4e-9b3e-2f1f8c6d0a01"},
            "effectiveDateTime": "2026-03-04", "valueQuantity": {"value": 6.1, "unit": "%"}}}
    ]})
}

#[test]
fn provider_push_reaches_patient() {
    let w = world("pat");
    let pat = w.home("pat");
    assert!(add(&pat, &patient("Example", "1970-01-01", "9000000009"))
        .status
        .success());
    assert!(sync(&pat, &w.relay).status.success());
    let gp = w.home("gp");
    // The provider's grant: write labs, and see demographics so pushes can
    // be checked against the record's patient.
    let url = w.relay.url();
    let out = run(
        satchel(&pat, PASS).args([
            "invite",
            "--server",
            &url,
            "--json",
            "--role",
            "provider",
            "--sections",
            "labs,demographics",
            "--write",
            "--label",
            "GP",
        ]),
        true,
    );
    let invite: Value = serde_json::from_slice(&out.stdout).unwrap();
    run(
        satchel(&gp, PASS).args([
            "accept",
            invite["code"].as_str().unwrap(),
            "--name",
            "Dr Okafor",
            "--role",
            "provider",
            "--organisation",
            "Riverside Medical Practice",
        ]),
        true,
    );
    run(
        satchel(&pat, PASS).args([
            "approve",
            invite["invite"].as_str().unwrap(),
            "--server",
            &url,
            "--yes",
        ]),
        true,
    );
    assert!(sync(&gp, &w.relay).status.success());
    let rid = {
        let out = run(satchel(&pat, PASS).args(["whoami", "--json"]), true);
        let me: Value = serde_json::from_slice(&out.stdout).unwrap();
        me["record_id"].as_str().unwrap().to_string()
    };
    // A Bundle about someone else is refused, and nothing reaches the patient.
    let wrong = w.root.join("wrong.json");
    std::fs::write(
        &wrong,
        serde_json::to_vec(&provider_bundle(patient(
            "Other",
            "1980-05-05",
            "9000000017",
        )))
        .unwrap(),
    )
    .unwrap();
    let out = satchel(&gp, PASS)
        .args(["provider", "push", "--server", &url, "--record", &rid])
        .arg(&wrong)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("does not match this record's patient"),
        "{err}"
    );
    assert!(
        !err.contains("Other") && !err.contains("9000000017"),
        "no values in errors: {err}"
    );
    // The right patient: pushed, signed by the provider.
    let right = w.root.join("right.json");
    std::fs::write(
        &right,
        serde_json::to_vec(&provider_bundle(patient(
            "Example",
            "1970-01-01",
            "9000000009",
        )))
        .unwrap(),
    )
    .unwrap();
    let out = run(
        satchel(&gp, PASS)
            .args([
                "provider", "push", "--server", &url, "--record", &rid, "--json",
            ])
            .arg(&right),
        true,
    );
    let pushed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(pushed["added"], 1, "{pushed}");
    // The patient's next sync shows it, contributed by the practice.
    assert!(sync(&pat, &w.relay).status.success());
    let entries = list(&pat);
    let lab = entries
        .iter()
        .find(|e| e["section"] == "labs")
        .expect("the pushed result reached the patient");
    assert_eq!(
        lab["contributed_by"], "Riverside Medical Practice (Dr Okafor)",
        "{lab}"
    );
    assert_eq!(
        entries
            .iter()
            .filter(|e| e["section"] == "demographics")
            .count(),
        1
    );
    let table = run(satchel(&pat, PASS).arg("list"), true);
    assert!(String::from_utf8_lossy(&table.stdout).contains("Riverside Medical Practice"));
    // And in the audit, as a contribution and a push.
    let out = run(
        satchel(&pat, PASS).args(["audit", "--server", &url, "--json"]),
        true,
    );
    let audit: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(audit["contributions"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["section"] == "labs" && c["name"].as_str().unwrap().contains("Dr Okafor")));
    assert!(audit["events"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["action"] == "push" && e["name"].as_str().unwrap().contains("Dr Okafor")));
}

#[test]
fn stale_copy_is_labelled_with_its_last_sync() {
    let w = world("pat");
    let pat = w.home("pat");
    assert!(add(&pat, &med("metformin")).status.success());
    let shown = run(satchel(&pat, PASS).arg("list"), true);
    assert!(String::from_utf8_lossy(&shown.stdout).contains("Never synced"));
    assert!(sync(&pat, &w.relay).status.success());
    let shown = run(satchel(&pat, PASS).arg("list"), true);
    let shown = String::from_utf8_lossy(&shown.stdout);
    assert!(shown.contains("Last synced: "), "{shown}");
    assert!(!shown.contains("ACCESS ENDED"), "{shown}");
}
