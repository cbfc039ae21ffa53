//! End-to-end relay sync: real `satchel-sync` processes on loopback, real
//! `satchel` CLI processes and the core API.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Stdio;

use satchel_tests::{files_containing, run, satchel, Relay};
use serde_json::{json, Value};

const PASS: &str = "sync test passphrase";

fn add(home: &Path, value: &Value) {
    let file = home.with_extension("input.json");
    std::fs::write(&file, serde_json::to_vec(value).unwrap()).unwrap();
    run(satchel(home, PASS).arg("add").arg(&file), true);
}

fn list_all(home: &Path) -> Vec<Value> {
    let out = run(satchel(home, PASS).args(["list", "--json", "--all"]), true);
    serde_json::from_slice(&out.stdout).unwrap()
}

fn history(home: &Path, id: &str) -> Value {
    let out = run(satchel(home, PASS).args(["history", id, "--json"]), true);
    serde_json::from_slice(&out.stdout).unwrap()
}

fn sync(home: &Path, relay: &Relay) {
    run(
        satchel(home, PASS).args(["sync", "--server", &relay.url()]),
        true,
    );
}

fn allergy(text: &str) -> Value {
    json!({"resourceType": "AllergyIntolerance", "code": {"text": text}, "recordedDate": "2021-03-04"})
}

fn lab(code: &str, display: &str, date: &str) -> Value {
    json!({"resourceType": "Observation", "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": code, "display": display}]},
        "effectiveDateTime": date})
}

fn link(a: &Path, b: &Path, relay: &Relay) {
    satchel_tests::link_devices(a, b, PASS, &relay.url());
}

/// Two devices of one patient edit the same sections while offline, then
/// sync through a real relay and end identical.
#[test]
fn two_devices_converge_offline() {
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start(&dir.path().join("relay"));
    let a = dir.path().join("phone");
    let b = dir.path().join("tablet");
    run(satchel(&a, PASS).args(["init", "--name", "Pat"]), true);
    add(&a, &allergy("Peanut"));
    add(&a, &lab("4548-4", "HbA1c", "2024-01-01"));
    sync(&a, &relay);
    link(&a, &b, &relay);
    assert_eq!(list_all(&b).len(), 2, "the new device received the record");

    // Offline on both: edits to the same sections, an amendment of the same
    // entry on both sides, and an entered-in-error.
    let shared = list_all(&a)
        .into_iter()
        .find(|e| e["section"] == "allergies")
        .unwrap();
    let shared_id = shared["id"].as_str().unwrap().to_string();
    add(&a, &allergy("Latex"));
    add(&a, &lab("2339-0", "Glucose", "2024-02-01"));
    add(&b, &allergy("Penicillin"));
    add(&b, &lab("2093-3", "Cholesterol", "2024-02-02"));
    let mut on_a = shared["resource"].clone();
    on_a["criticality"] = json!("high");
    let mut on_b = shared["resource"].clone();
    on_b["criticality"] = json!("low");
    for (home, body) in [(&a, &on_a), (&b, &on_b)] {
        let file = home.with_extension("amend.json");
        std::fs::write(&file, serde_json::to_vec(body).unwrap()).unwrap();
        run(
            satchel(home, PASS).args(["amend", &shared_id]).arg(&file),
            true,
        );
    }
    let lab_on_b = list_all(&b)
        .into_iter()
        .find(|e| e["section"] == "labs")
        .unwrap();
    run(
        satchel(&b, PASS).args(["entered-in-error", lab_on_b["id"].as_str().unwrap()]),
        true,
    );

    // Back online.
    sync(&a, &relay);
    sync(&b, &relay);
    sync(&a, &relay);

    let on_a = list_all(&a);
    let on_b = list_all(&b);
    assert_eq!(on_a.len(), 6);
    assert_eq!(on_a, on_b, "the two devices differ after syncing");
    for entry in &on_a {
        let id = entry["id"].as_str().unwrap();
        assert_eq!(history(&a, id), history(&b, id));
    }
    // Both concurrent amendments are kept as versions, and the entry is
    // flagged as a conflict on both devices (hazard H4).
    let h = history(&a, &shared_id);
    assert_eq!(h.as_array().unwrap().len(), 3);
    let marks: Vec<bool> = h
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["concurrent"].as_bool().unwrap())
        .collect();
    assert_eq!(marks, [false, true, true]);
    for home in [&a, &b] {
        let entry = list_all(home)
            .into_iter()
            .find(|e| e["id"] == shared_id.as_str())
            .unwrap();
        assert_eq!(entry["conflict"], true);
        let text = run(satchel(home, PASS).arg("list"), true);
        let text = String::from_utf8_lossy(&text.stdout);
        assert!(text.contains("CONFLICT"), "{text}");
        assert!(text.contains("satchel history"), "{text}");
    }
    // Settled by an amendment over the current version, on every device.
    let mut settled = shared["resource"].clone();
    settled["criticality"] = json!("high");
    let file = a.with_extension("settle.json");
    std::fs::write(&file, serde_json::to_vec(&settled).unwrap()).unwrap();
    run(
        satchel(&a, PASS).args(["amend", &shared_id]).arg(&file),
        true,
    );
    sync(&a, &relay);
    sync(&b, &relay);
    for home in [&a, &b] {
        let entry = list_all(home)
            .into_iter()
            .find(|e| e["id"] == shared_id.as_str())
            .unwrap();
        assert_eq!(entry["conflict"], false);
    }
}

/// After a full sync of a record holding a canary, the canary is in no byte
/// of the relay's database, WAL or log.
#[test]
fn server_holds_no_plaintext() {
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start(&dir.path().join("relay"));
    let a = dir.path().join("phone");
    let b = dir.path().join("tablet");
    run(
        satchel(&a, PASS).args(["init", "--name", "Canary Owner"]),
        true,
    );
    let canary = format!("CANARY-{}-sarcoidosis", std::process::id());
    add(&a, &allergy(&canary));
    add(&a, &lab("1-1", &canary, "2020-01-01"));
    sync(&a, &relay);
    link(&a, &b, &relay);
    assert_eq!(list_all(&b).len(), 2);
    sync(&b, &relay);
    drop(relay);
    let files = satchel_tests::snapshot_files(&dir.path().join("relay"));
    assert!(files.iter().any(|(p, _)| p.ends_with("relay.db")));
    assert!(
        files
            .iter()
            .any(|(p, b)| p.ends_with("relay.log") && !b.is_empty()),
        "the relay logged nothing"
    );
    for needle in [
        canary.as_bytes(),
        b"sarcoidosis".as_slice(),
        b"Canary Owner".as_slice(),
    ] {
        assert!(
            files_containing(&dir.path().join("relay"), needle).is_empty(),
            "plaintext on the relay"
        );
    }
}

/// `satchel sync --watch` stays subscribed: a change pushed by another
/// device reaches the watching device's store without another command.
#[test]
fn watch_receives_pushed_changes() {
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start(&dir.path().join("relay"));
    let a = dir.path().join("phone");
    let b = dir.path().join("tablet");
    run(satchel(&a, PASS).args(["init", "--name", "Pat"]), true);
    add(&a, &allergy("Peanut"));
    sync(&a, &relay);
    link(&a, &b, &relay);
    let mut watch = satchel(&b, PASS)
        .args(["sync", "--watch", "--server", &relay.url()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_secs(2));
    add(&a, &lab("2339-0", "Glucose", "2024-02-01"));
    sync(&a, &relay);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut seen = false;
    while std::time::Instant::now() < deadline {
        if list_all(&b).len() == 2 {
            seen = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    let _ = watch.kill();
    let _ = watch.wait();
    assert!(seen, "the watching device never received the pushed change");
}
