//! End-to-end tests of the foundation through the real `satchel` binary:
//! what reaches the disk, what a wrong passphrase does, how bad FHIR is refused.

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::path::Path;

use satchel_tests::{files_containing, run, satchel, snapshot_files};
use serde_json::{json, Value};

const PASS: &str = "a long test passphrase";

fn init(home: &Path) {
    run(
        satchel(home, PASS).args(["init", "--name", "Test Patient"]),
        true,
    );
}

fn add_json(home: &Path, value: &Value) -> std::process::Output {
    let file = home.join("input.json");
    std::fs::write(&file, serde_json::to_vec(value).unwrap()).unwrap();
    let out = satchel(home, PASS).arg("add").arg(&file).output().unwrap();
    std::fs::remove_file(&file).unwrap();
    out
}

fn list_json(home: &Path, extra: &[&str]) -> Vec<Value> {
    let out = run(
        satchel(home, PASS).args(["list", "--json"]).args(extra),
        true,
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn condition_with(text: &str) -> Value {
    json!({
        "resourceType": "Condition",
        "id": "c1",
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "195967001", "display": text}], "text": text},
        "note": [{"text": format!("patient reports {text}")}],
        "onsetDateTime": "2019-04-01"
    })
}

/// A unique canary in an entry reaches no byte of the database, its WAL or
/// any other file under the home directory, through adds, an amendment,
/// entered-in-error and enough writes to force a snapshot.
#[test]
fn canary_absent_from_disk() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    init(&home);
    let canary = format!("CANARY-{}-pulmonary", std::process::id());
    assert!(add_json(&home, &condition_with(&canary)).status.success());
    let entries = list_json(&home, &["--text", &canary]);
    assert_eq!(
        entries.len(),
        1,
        "the canary entry is readable through the CLI"
    );
    let id = entries[0]["id"].as_str().unwrap().to_string();
    let mut amended = condition_with(&canary);
    amended["clinicalStatus"] = json!({"text": format!("{canary} resolved")});
    std::fs::write(
        home.join("amend.json"),
        serde_json::to_vec(&amended).unwrap(),
    )
    .unwrap();
    run(
        satchel(&home, PASS)
            .args(["amend", &id])
            .arg(home.join("amend.json")),
        true,
    );
    std::fs::remove_file(home.join("amend.json")).unwrap();
    // Enough further writes to the same section to force a snapshot.
    let bundle = json!({"resourceType": "Bundle", "type": "collection",
        "entry": (0..40).map(|i| json!({"resource": condition_with(&format!("{canary}-{i}"))})).collect::<Vec<_>>()});
    assert!(add_json(&home, &bundle).status.success());
    for _ in 0..33 {
        assert!(add_json(&home, &condition_with(&canary)).status.success());
    }
    run(satchel(&home, PASS).args(["entered-in-error", &id]), true);
    assert_eq!(
        run(satchel(&home, PASS).args(["history", &id, "--json"]), true)
            .status
            .code(),
        Some(0)
    );

    let files = snapshot_files(&home);
    assert!(files.iter().any(|(p, _)| p.ends_with("satchel.db")));
    assert!(
        files_containing(&home, canary.as_bytes()).is_empty(),
        "canary found on disk"
    );
    // Not even a fragment long enough to be recognisable.
    assert!(files_containing(&home, b"pulmonary").is_empty());
    assert!(
        files_containing(&home, b"Test Patient").is_empty(),
        "owner name found on disk"
    );
}

/// A wrong passphrase is a clear error and leaves every byte of the store
/// (database, WAL, every other file) unchanged.
#[test]
fn wrong_passphrase_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    init(&home);
    assert!(add_json(&home, &condition_with("Asthma")).status.success());
    let before = snapshot_files(&home);
    for cmd in [
        vec!["list"],
        vec!["summary"],
        vec!["entered-in-error", "00000000000000000000000000000000"],
    ] {
        let out = run(satchel(&home, "not the passphrase").args(&cmd), false);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("wrong passphrase"),
            "unclear error for {cmd:?}: {stderr}"
        );
        assert_eq!(
            snapshot_files(&home),
            before,
            "bytes changed after a wrong passphrase ({cmd:?})"
        );
    }
    let out = add_json_with(&home, "not the passphrase", &condition_with("Eczema"));
    assert!(!out.status.success());
    assert_eq!(snapshot_files(&home), before);
    // The right passphrase still opens it, with the one entry.
    assert_eq!(list_json(&home, &[]).len(), 1);
}

fn add_json_with(home: &Path, pass: &str, value: &Value) -> std::process::Output {
    let file = home.parent().unwrap().join("input-other.json");
    std::fs::write(&file, serde_json::to_vec(value).unwrap()).unwrap();
    satchel(home, pass).arg("add").arg(&file).output().unwrap()
}

/// Not JSON, no resourceType, an unknown resource type, a known type with no
/// section, a resource of the wrong shape, and a Bundle hiding one bad
/// resource: each a clear error naming the problem, and the record unchanged.
#[test]
fn malformed_fhir_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    init(&home);
    assert!(add_json(&home, &condition_with("Asthma")).status.success());
    let before_list = list_json(&home, &["--all"]);
    let before_bytes = snapshot_files(&home);

    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "not JSON",
            b"{\"resourceType\": \"Observation\", ".to_vec(),
            "not valid JSON",
        ),
        ("not an object", b"[1, 2, 3]".to_vec(), "object"),
        (
            "no resourceType",
            br#"{"id": "x", "status": "final"}"#.to_vec(),
            "resourceType",
        ),
        (
            "unknown type",
            br#"{"resourceType": "Observasion"}"#.to_vec(),
            "Observasion",
        ),
        (
            "no section",
            br#"{"resourceType": "Account", "id": "a"}"#.to_vec(),
            "no section",
        ),
        (
            "wrong shape",
            br#"{"resourceType": "Observation", "status": "final", "code": "glucose"}"#.to_vec(),
            "code",
        ),
        (
            "wrong shape deep",
            br#"{"resourceType": "Condition", "code": {"coding": [{"system": 7, "code": "x"}]}}"#
                .to_vec(),
            "code.coding[0].system",
        ),
        (
            "bad date",
            br#"{"resourceType": "Condition", "onsetDateTime": "yesterday"}"#.to_vec(),
            "onsetDateTime",
        ),
        (
            "bundle with one bad resource",
            serde_json::to_vec(
                &json!({"resourceType": "Bundle", "type": "collection", "entry": [
                    {"resource": condition_with("Eczema")},
                    {"resource": {"resourceType": "Observation", "code": ["x"]}}
                ]}),
            )
            .unwrap(),
            "Observation",
        ),
    ];
    for (name, bytes, expect) in cases {
        let file = dir.path().join("bad.json");
        std::fs::write(&file, &bytes).unwrap();
        let out = run(satchel(&home, PASS).arg("add").arg(&file), false);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(expect),
            "{name}: error does not mention {expect:?}: {stderr}"
        );
        assert!(
            stderr.contains("nothing was added"),
            "{name}: error does not say nothing changed: {stderr}"
        );
        assert_eq!(
            snapshot_files(&home),
            before_bytes,
            "{name}: store bytes changed"
        );
    }
    assert_eq!(list_json(&home, &["--all"]), before_list);
}
