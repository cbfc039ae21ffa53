//! The README's first command, end to end: `satchel demo --keep DIR` plays
//! the whole story through the CLI binaries (phone and tablet, GP and
//! hospital pushing FHIR, watch and glucose monitor, daughter as carer,
//! consultant for 7 days, the relay down while the GP's note reaches the
//! phone directly and then the daughter, revocation, audit). This test then carries on by
//! hand in the homes it kept, against a fresh `satchel-sync` on the relay's
//! database, and checks the story's outcome independently of the demo's own
//! checks.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

use satchel_tests::{bin, files_containing, run, satchel, Relay};
use serde_json::Value;

/// The passphrase the demo gives every home (it prints it for `--keep`).
const PASS: &str = "correct horse battery staple";

fn json(home: &Path, url: &str, args: &[&str]) -> Value {
    let out = run(
        satchel(home, PASS)
            .env("SATCHEL_SERVER", url)
            .args(args)
            .arg("--json"),
        true,
    );
    serde_json::from_slice(&out.stdout).expect("--json prints JSON")
}

fn entries(v: &Value) -> &[Value] {
    v.as_array().map_or(&[], Vec::as_slice)
}

fn mentions(v: &Value, word: &str) -> bool {
    entries(v)
        .iter()
        .any(|e| e["displays"].to_string().contains(word))
}

#[test]
fn demo_story_end_to_end() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("demo");
    let out = Command::new(bin("satchel"))
        .arg("demo")
        .arg("--keep")
        .arg(&dir)
        .env_remove("SATCHEL_HOME")
        .env_remove("SATCHEL_SERVER")
        .env_remove("SATCHEL_PASSPHRASE")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the demo failed\nstdout:\n{stdout}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for n in 1..=16 {
        assert!(stdout.contains(&format!("\n[{n}] ")), "step {n} missing");
    }
    assert!(stdout.contains("Demo complete: every step verified."));
    assert!(stdout.matches('✓').count() >= 20, "{stdout}");

    // Carry on by hand, as the demo tells the user to.
    let relay = Relay::start(&dir.join("relay"));
    let url = relay.url();
    let home = |name: &str| dir.join(name);
    let sync = |name: &str, ok: bool| {
        run(
            satchel(&home(name), PASS)
                .env("SATCHEL_SERVER", &url)
                .arg("sync"),
            ok,
        )
    };

    // The patient's two devices agree.
    sync("phone", true);
    sync("tablet", true);
    let phone = json(&home("phone"), &url, &["list", "--all"]);
    let tablet = json(&home("tablet"), &url, &["list", "--all"]);
    assert_eq!(phone, tablet);
    let visible = json(&home("phone"), &url, &["list"]);
    assert!(mentions(&visible, "Apixaban"));
    assert!(
        mentions(&visible, "Prednisolone"),
        "the hospital's discharge medication"
    );

    // The revoked daughter: refused by the relay; her copy has only the
    // three sections she was given and nothing written after revocation.
    let out = sync("daughter", false);
    assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"));
    let hers = json(&home("daughter"), &url, &["list"]);
    let sections: BTreeSet<&str> = entries(&hers)
        .iter()
        .filter_map(|e| e["section"].as_str())
        .collect();
    assert!(!sections.is_empty());
    assert!(sections.is_subset(&["medications", "allergies", "encounters"].into()));
    assert!(!mentions(&hers, "Apixaban"));

    // Step 10, edge sync: the GP's home-visit note, written while the relay
    // was down and carried to the relay by the phone, is in the phone's and
    // the daughter's copies, signed by the GP.
    for step in [
        "relay stopped",
        "GP's tablet and Alex's phone synced directly: 1 note",
        "relay back; the phone forwarded the note",
        "Sam, the carer, received the note from Dr Okafor",
    ] {
        assert!(stdout.contains(step), "{step:?} not in\n{stdout}");
    }
    let gp_key = json(&home("gp"), &url, &["whoami"])["identity"]["signing_key"].clone();
    assert!(gp_key.is_string());
    let note = |list: &Value| {
        entries(list)
            .iter()
            .find(|e| e["source_id"] == "Encounter/demo-home-visit")
            .cloned()
    };
    for (name, list) in [("phone", &visible), ("daughter", &hers)] {
        let n = note(list).unwrap_or_else(|| panic!("the note is not in the {name}'s copy"));
        assert_eq!(n["section"], "encounters");
        assert_eq!(n["created_by"], gp_key, "{name}: authored by the GP");
        assert!(
            n["contributed_by"]
                .as_str()
                .is_some_and(|c| c.contains("Dr Okafor")),
            "{name}: {n}"
        );
    }
    // The relay's audit: a push to encounters in the GP's name after the
    // daughter joined (the GP itself last reached the relay before that,
    // so this is the phone's forwarded copy, credited to its author).
    let audit = json(&home("phone"), &url, &["audit"]);
    let events = audit["events"].as_array().unwrap();
    let sam_joined = events
        .iter()
        .filter(|e| e["name"].as_str().is_some_and(|n| n.starts_with("Sam")))
        .filter_map(|e| e["at_ms"].as_i64())
        .min()
        .expect("Sam's first pull");
    assert!(
        events.iter().any(|e| e["identity"] == gp_key
            && e["action"] == "push"
            && e["section"] == "encounters"
            && e["at_ms"].as_i64().is_some_and(|t| t > sam_joined)),
        "{events:?}"
    );

    // The consultant still reads everything; then the patient takes that
    // back early too, and the consultant's next sync is refused.
    sync("consultant", true);
    let theirs = json(&home("consultant"), &url, &["list"]);
    assert_eq!(entries(&theirs).len(), entries(&visible).len());
    run(
        satchel(&home("phone"), PASS)
            .env("SATCHEL_SERVER", &url)
            .args(["revoke", "Dr Rivera"]),
        true,
    );
    sync("consultant", false);

    // The GP re-sends a corrected HbA1c: a new version, not a duplicate.
    let record = json(&home("phone"), &url, &["whoami"])["record_id"]
        .as_str()
        .unwrap()
        .to_string();
    let gp_bundle: Value =
        serde_json::from_slice(&std::fs::read(dir.join("inputs/gp.json")).unwrap()).unwrap();
    let mut hba1c = gp_bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["resource"].clone())
        .find(|r| r["id"] == "demo-hba1c")
        .expect("the GP bundle has an HbA1c");
    hba1c["valueQuantity"]["value"] = serde_json::json!(48.5);
    let patient = gp_bundle["entry"][0]["resource"].clone();
    let resend = dir.join("inputs/resend.json");
    std::fs::write(
        &resend,
        serde_json::to_vec(
            &serde_json::json!({"resourceType": "Bundle", "type": "collection",
            "entry": [{"resource": patient}, {"resource": hba1c}]}),
        )
        .unwrap(),
    )
    .unwrap();
    let pushed = json(
        &home("gp"),
        &url,
        &[
            "provider",
            "push",
            "--record",
            &record,
            resend.to_str().unwrap(),
        ],
    );
    assert_eq!(
        (pushed["added"].as_u64(), pushed["updated"].as_u64()),
        (Some(0), Some(1))
    );
    sync("phone", true);
    let after = json(&home("phone"), &url, &["list"]);
    assert_eq!(entries(&after).len(), entries(&visible).len());
    let hba1c_entry = entries(&after)
        .iter()
        .find(|e| e["source_id"] == "Observation/demo-hba1c")
        .expect("the HbA1c entry");
    assert_eq!(hba1c_entry["versions"], 2);

    // Only the owner reads the audit; it names both providers and both
    // readers.
    let out = run(
        satchel(&home("daughter"), PASS)
            .env("SATCHEL_SERVER", &url)
            .arg("audit"),
        false,
    );
    assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"));
    let audit = json(&home("phone"), &url, &["audit"]);
    let names: BTreeSet<String> = audit["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["name"].as_str())
        .map(str::to_string)
        .collect();
    for who in ["Sam", "Dr Rivera", "Dr Okafor", "Respiratory team"] {
        assert!(
            names.iter().any(|n| n.contains(who)),
            "{who} not in {names:?}"
        );
    }

    // Wearables: the month of samples is on both devices.
    let summary = |name: &str| {
        json(
            &home(name),
            &url,
            &[
                "wearables",
                "summary",
                "--metric",
                "blood-glucose",
                "--from",
                "2000-01-01",
                "--to",
                "2100-01-01",
                "--every",
                "week",
            ],
        )
    };
    let (a, b) = (summary("phone"), summary("tablet"));
    assert_eq!(a, b);
    let count: u64 = entries(&a).iter().filter_map(|w| w["count"].as_u64()).sum();
    assert_eq!(count, 30 * 24 * 12);

    // Nothing clinical at rest in any home or on the relay.
    drop(relay);
    for word in [
        "Salbutamol",
        "Penicillin",
        "Apixaban",
        "Prednisolone",
        "Hemoglobin A1c",
    ] {
        let hits: Vec<_> = files_containing(&dir, word.as_bytes())
            .into_iter()
            .filter(|p| !p.starts_with(dir.join("inputs")))
            .collect();
        assert!(hits.is_empty(), "{word} in {hits:?}");
    }
}
