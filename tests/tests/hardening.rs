//! The core's promises under attack and faults, end to end through the CLI
//! and a real `satchel-sync`: revocation, narrowing and expiry hold even
//! against a relay that ignores access rules (it serves every byte it ever
//! stored, read here straight from its database); a record is never
//! silently incomplete (a relay that withholds, damages or disguises
//! envelopes is reported, and the device recovers without user action once
//! the relay serves them); one oversized entry never stops a device from
//! syncing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use satchel_tests::world::*;
use satchel_tests::{link_devices, run, satchel, Relay};
use serde_json::{json, Value};

fn record_id(home: &Path) -> String {
    let out = run(satchel(home, PASS).args(["whoami", "--json"]), true);
    let me: Value = serde_json::from_slice(&out.stdout).unwrap();
    me["record_id"].as_str().unwrap().to_string()
}

fn meds_bundle(prefix: &str, n: usize) -> Value {
    let entries: Vec<Value> = (0..n)
        .map(|i| json!({"resource": {"resourceType": "MedicationStatement", "id": format!("{prefix}-{i}"),
            "status": "active", "medicationCodeableConcept": {"text": format!("{prefix} {i}")},
            "subject": {"reference": "Patient/p"}}}))
        .collect();
    json!({"resourceType": "Bundle", "type": "collection", "entry": entries})
}

/// Epochs of the envelopes of `section` the relay holds from `author_home`'s
/// identity (its device id from `whoami`).
fn epochs_by(relay: &Relay, section: &str, author: &str) -> Vec<u32> {
    relay_envelopes(relay, section)
        .into_iter()
        .filter_map(|(_, b)| satchel_core::crypto::Envelope::from_bytes(&b).ok())
        .filter(|e| e.header.author.to_string() == author)
        .map(|e| e.header.epoch)
        .collect()
}

/// The device id of the patient's own home `home`.
fn identity_of(home: &Path) -> String {
    let store = satchel_core::store::SqliteStore::open(&home.join("satchel.db")).unwrap();
    let profile = satchel_core::profile::Profile::open(
        store,
        satchel_core::profile::Unlock::Passphrase {
            passphrase: PASS.as_bytes(),
            params: None,
        },
    )
    .unwrap();
    profile.device_id().to_string()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn push_after_revocation_reseals() {
    let w = world("pat");
    let pat = w.home("pat");
    let patient = json!({"resourceType": "Patient", "id": "p1",
        "name": [{"family": "Example", "given": ["Pat"]}], "birthDate": "1970-01-01"});
    assert!(add(&pat, &patient).status.success());
    assert!(add(&pat, &med("metformin")).status.success());
    assert!(sync(&pat, &w.relay).status.success());
    let gp = w.home("gp");
    share(
        &pat,
        &gp,
        "Dr GP",
        "provider",
        &w.relay,
        &[
            "--role",
            "provider",
            "--write",
            "--sections",
            "medications,demographics",
        ],
    );
    let carer = w.home("carer");
    share(
        &pat,
        &carer,
        "Jane",
        "carer",
        &w.relay,
        &["--role", "carer", "--sections", "medications"],
    );
    // The patient revokes the carer; the GP has not synced since.
    run(
        satchel(&pat, PASS).args(["revoke", "Jane", "--server", &w.relay.url()]),
        true,
    );
    const K: usize = 5;
    let file = w.root.join("push.json");
    std::fs::write(
        &file,
        serde_json::to_vec(&meds_bundle("pushed", K)).unwrap(),
    )
    .unwrap();
    let rid = record_id(&pat);
    run(
        satchel(&gp, PASS)
            .args([
                "provider",
                "push",
                "--server",
                &w.relay.url(),
                "--record",
                &rid,
            ])
            .arg(&file),
        true,
    );
    // Everything the GP's home sent is under the new epoch.
    let gp_id = open_shared(&gp).device_id().to_string();
    let epochs = epochs_by(&w.relay, "medications", &gp_id);
    assert!(!epochs.is_empty());
    assert!(
        epochs.iter().all(|e| *e == 1),
        "GP envelopes at epochs {epochs:?}"
    );
    // The patient has every pushed entry.
    assert!(sync(&pat, &w.relay).status.success());
    assert_eq!(list(&pat).len(), 2 + K);
    // The revoked carer, served everything by a relay that ignores
    // revocation, decrypts none of them.
    let read = entries_read_from_lenient_relay(&carer, &w.relay, "medications");
    assert_eq!(read, 0, "the revoked carer decrypted {read} of {K}");
}

#[test]
fn offline_device_reseals_after_revocation() {
    let w = world("pat");
    let pat = w.home("pat");
    assert!(add(&pat, &med("metformin")).status.success());
    assert!(sync(&pat, &w.relay).status.success());
    let tablet = w.home("tablet");
    link_devices(&pat, &tablet, PASS, &w.relay.url());
    let carer = w.home("carer");
    share(
        &pat,
        &carer,
        "Jane",
        "carer",
        &w.relay,
        &["--role", "carer", "--sections", "medications"],
    );
    assert!(sync(&tablet, &w.relay).status.success());
    // The tablet goes offline and adds entries; meanwhile the phone revokes.
    const K: usize = 4;
    for i in 0..K {
        assert!(add(&tablet, &med(&format!("offline medicine {i}")))
            .status
            .success());
    }
    run(
        satchel(&pat, PASS).args(["revoke", "Jane", "--server", &w.relay.url()]),
        true,
    );
    // Back online: its queued envelopes are sealed again before they leave.
    let out = sync(&tablet, &w.relay);
    assert!(out.status.success(), "{}", stderr(&out));
    let tablet_id = identity_of(&tablet);
    let epochs = epochs_by(&w.relay, "medications", &tablet_id);
    assert_eq!(epochs.len(), K, "{epochs:?}");
    assert!(epochs.iter().all(|e| *e == 1), "{epochs:?}");
    assert!(sync(&pat, &w.relay).status.success());
    assert_eq!(list(&pat).len(), 1 + K);
    assert_eq!(list(&tablet).len(), 1 + K);
    let read = entries_read_from_lenient_relay(&carer, &w.relay, "medications");
    assert_eq!(read, 0, "the revoked carer decrypted {read} of {K}");
}

#[test]
fn narrowed_grant_rotates_dropped_sections() {
    let w = world("pat");
    let pat = w.home("pat");
    assert!(add(&pat, &med("metformin")).status.success());
    assert!(add(&pat, &allergy("latex")).status.success());
    assert!(sync(&pat, &w.relay).status.success());
    let carer = w.home("carer");
    share(
        &pat,
        &carer,
        "Jane",
        "carer",
        &w.relay,
        &["--role", "carer", "--sections", "medications,allergies"],
    );
    assert_eq!(list(&carer).len(), 2);
    // Re-invited and approved for medications only: a change of her grant,
    // shown as such before approval.
    let out = invite_and_approve(
        &pat,
        &carer,
        "Jane",
        "carer",
        &w.relay,
        &["--role", "carer", "--sections", "medications"],
    );
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(shown.contains("CHANGES it"), "{shown}");
    assert!(shown.contains("Loses: allergies"), "{shown}");
    let grants = run(satchel(&pat, PASS).args(["grants", "--json"]), true);
    let grants: Vec<Value> = serde_json::from_slice(&grants.stdout).unwrap();
    let jane = grants.iter().find(|g| g["name"] == "Jane").unwrap();
    assert_eq!(jane["sections"], "medications", "{jane}");
    // New allergies, read by a relay that keeps serving her everything.
    const K: usize = 5;
    for i in 0..K {
        assert!(add(&pat, &allergy(&format!("new allergy {i}")))
            .status
            .success());
    }
    assert!(add(&pat, &med("new medicine")).status.success());
    assert!(sync(&pat, &w.relay).status.success());
    let read = entries_read_from_lenient_relay(&carer, &w.relay, "allergies");
    assert_eq!(
        read, 0,
        "the narrowed carer decrypted {read} of {K} allergies"
    );
    // What she keeps still works.
    let out = sync(&carer, &w.relay);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(list(&carer).iter().any(|e| e["summary"]
        .as_str()
        .unwrap_or_default()
        .contains("new medicine")
        || e.to_string().contains("new medicine")));
}

#[test]
fn expired_grant_reads_nothing_new_from_a_lenient_relay() {
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
            "3s",
        ],
    );
    assert_eq!(list(&consultant).len(), 1);
    std::thread::sleep(std::time::Duration::from_secs(4));
    const K: usize = 3;
    for i in 0..K {
        assert!(add(&pat, &allergy(&format!("after expiry {i}")))
            .status
            .success());
    }
    // The owner's next sync ends the expired grant with a key rotation
    // before anything new is uploaded.
    assert!(sync(&pat, &w.relay).status.success());
    let pat_id = identity_of(&pat);
    let epochs = epochs_by(&w.relay, "allergies", &pat_id);
    assert!(epochs.contains(&1), "{epochs:?}");
    assert_eq!(epochs.iter().filter(|e| **e == 1).count(), K, "{epochs:?}");
    let grants = run(satchel(&pat, PASS).args(["grants", "--json"]), true);
    let grants: Vec<Value> = serde_json::from_slice(&grants.stdout).unwrap();
    assert!(grants.iter().all(|g| g["name"] != "Dr Who"), "{grants:?}");
    let read = entries_read_from_lenient_relay(&consultant, &w.relay, "allergies");
    assert_eq!(read, 0, "the expired grantee decrypted {read} of {K}");
}

/// Move the relay's rows of `section` whose relay sequence is in `seqs`
/// into a side table (withheld), or back.
fn withhold(relay: &Relay, seqs: &[i64]) {
    let db = rusqlite::Connection::open(relay.dir.join("relay.db")).unwrap();
    db.execute_batch("CREATE TABLE IF NOT EXISTS withheld AS SELECT * FROM envelopes WHERE 0")
        .unwrap();
    for seq in seqs {
        db.execute(
            "INSERT INTO withheld SELECT * FROM envelopes WHERE seq = ?1",
            [seq],
        )
        .unwrap();
        db.execute("DELETE FROM envelopes WHERE seq = ?1", [seq])
            .unwrap();
    }
}

fn serve_withheld(relay: &Relay) {
    let db = rusqlite::Connection::open(relay.dir.join("relay.db")).unwrap();
    db.execute_batch("INSERT INTO envelopes SELECT * FROM withheld; DELETE FROM withheld")
        .unwrap();
}

/// Relay sequences of `section`'s envelopes by `author`, in order.
fn relay_seqs(relay: &Relay, section: &str, author: &str) -> Vec<i64> {
    let db = rusqlite::Connection::open(relay.dir.join("relay.db")).unwrap();
    let author = author
        .parse::<satchel_core::ids::IdentityId>()
        .unwrap()
        .as_bytes()
        .to_vec();
    let mut stmt = db
        .prepare("SELECT seq FROM envelopes WHERE section = ?1 AND author = ?2 ORDER BY seq")
        .unwrap();
    let seqs = stmt
        .query_map(rusqlite::params![section, &author[..]], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    seqs
}

#[test]
fn withheld_envelopes_are_reported_and_recovered() {
    let w = world("pat");
    let pat = w.home("pat");
    const N: usize = 6;
    for i in 0..N {
        assert!(add(&pat, &med(&format!("medicine {i}"))).status.success());
    }
    assert!(sync(&pat, &w.relay).status.success());
    // A second device of the patient writes after seeing all six: its
    // change depends on the last of them.
    let tablet = w.home("tablet");
    link_devices(&pat, &tablet, PASS, &w.relay.url());
    assert!(add(&tablet, &med("from the tablet")).status.success());
    assert!(sync(&tablet, &w.relay).status.success());
    // The relay withholds the phone's 2nd and 4th change (the middle) and
    // its 6th (the tail).
    let phone = identity_of(&pat);
    let seqs = relay_seqs(&w.relay, "medications", &phone);
    assert_eq!(seqs.len(), N, "{seqs:?}");
    withhold(&w.relay, &[seqs[1], seqs[3], seqs[5]]);
    let carer = w.home("carer");
    share_expecting_incomplete(&pat, &carer, &w.relay);
    let out = sync(&carer, &w.relay);
    assert!(!out.status.success(), "an incomplete sync must not exit 0");
    let err = stderr(&out);
    assert!(
        err.contains("incomplete: 2 changes from"),
        "middle gap reported: {err}"
    );
    assert!(
        err.contains("wait for earlier changes"),
        "tail reported: {err}"
    );
    let shown = run(satchel(&carer, PASS).arg("list"), true);
    let shown = String::from_utf8_lossy(&shown.stdout);
    assert!(shown.contains("medications INCOMPLETE"), "{shown}");
    assert!(shown.contains("INCOMPLETE: 2 changes from"), "{shown}");
    let entries = list(&carer);
    assert!(entries.len() < N + 1, "{}", entries.len());
    assert!(entries
        .iter()
        .all(|e| e["section_incomplete"] == json!(true)));
    // Exports say so too.
    let export = open_shared(&carer).export_fhir(None).unwrap();
    let tags = export["meta"]["tag"]
        .as_array()
        .expect("a completeness tag");
    assert!(
        tags.iter()
            .any(|t| t["code"] == "incomplete"
                && t["display"].as_str().unwrap().contains("medications")),
        "{tags:?}"
    );
    // The relay serves everything again: the next sync recovers it all,
    // with no user action but syncing.
    serve_withheld(&w.relay);
    let out = sync(&carer, &w.relay);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(list(&carer).len(), N + 1);
    let shown = run(satchel(&carer, PASS).arg("list"), true);
    assert!(!String::from_utf8_lossy(&shown.stdout).contains("INCOMPLETE"));
    assert!(open_shared(&carer).export_fhir(None).unwrap()["meta"]["tag"].is_null());
}

/// A carer for medications, not synced yet (with a relay that withholds,
/// its first sync is incomplete).
fn share_expecting_incomplete(by: &Path, who: &Path, relay: &Relay) {
    invite_and_approve(
        by,
        who,
        "Jane",
        "carer",
        relay,
        &["--role", "carer", "--sections", "medications"],
    );
}

#[test]
fn refused_envelope_is_fetched_again() {
    let w = world("pat");
    let pat = w.home("pat");
    for i in 0..3 {
        assert!(add(&pat, &med(&format!("medicine {i}"))).status.success());
    }
    assert!(sync(&pat, &w.relay).status.success());
    // The relay damages the middle envelope (a flipped bit in storage).
    let phone = identity_of(&pat);
    let seqs = relay_seqs(&w.relay, "medications", &phone);
    let db = rusqlite::Connection::open(w.relay.dir.join("relay.db")).unwrap();
    let original: Vec<u8> = db
        .query_row(
            "SELECT bytes FROM envelopes WHERE seq = ?1",
            [seqs[1]],
            |r| r.get(0),
        )
        .unwrap();
    let mut damaged = original.clone();
    let mid = damaged.len() - 80;
    damaged[mid] ^= 1;
    db.execute(
        "UPDATE envelopes SET bytes = ?1 WHERE seq = ?2",
        rusqlite::params![damaged, seqs[1]],
    )
    .unwrap();
    let carer = w.home("carer");
    share_expecting_incomplete(&pat, &carer, &w.relay);
    let out = sync(&carer, &w.relay);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("refused"), "{err}");
    // Refused again while the relay keeps serving it damaged.
    assert!(!sync(&carer, &w.relay).status.success());
    // Repaired on the relay: fetched again and merged.
    db.execute(
        "UPDATE envelopes SET bytes = ?1 WHERE seq = ?2",
        rusqlite::params![original, seqs[1]],
    )
    .unwrap();
    let out = sync(&carer, &w.relay);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(list(&carer).len(), 3);
}

#[test]
fn change_posing_as_snapshot_refused() {
    let w = world("pat");
    let pat = w.home("pat");
    for i in 0..4 {
        assert!(add(&pat, &med(&format!("medicine {i}"))).status.success());
    }
    assert!(sync(&pat, &w.relay).status.success());
    // The relay serves the owner's first (validly signed) change envelope
    // as the section's snapshot, claiming it covers everything so far.
    let phone = identity_of(&pat);
    let seqs = relay_seqs(&w.relay, "medications", &phone);
    let db = rusqlite::Connection::open(w.relay.dir.join("relay.db")).unwrap();
    let (record, first): (Vec<u8>, Vec<u8>) = db
        .query_row(
            "SELECT record_id, bytes FROM envelopes WHERE seq = ?1",
            [seqs[0]],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    let upto = *seqs.last().unwrap();
    db.execute(
        "INSERT OR REPLACE INTO snapshots (record_id, section, upto_seq, bytes) VALUES (?1, 'medications', ?2, ?3)",
        rusqlite::params![record, upto, first],
    )
    .unwrap();
    let carer = w.home("carer");
    share_expecting_incomplete(&pat, &carer, &w.relay);
    let out = sync(&carer, &w.relay);
    assert!(!out.status.success(), "a disguised snapshot must not pass");
    let err = stderr(&out);
    assert!(
        err.contains("a change envelope presented as a snapshot"),
        "{err}"
    );
    assert!(list(&carer).len() < 4);
    // Without the forged snapshot, everything arrives.
    db.execute("DELETE FROM snapshots WHERE section = 'medications'", [])
        .unwrap();
    let out = sync(&carer, &w.relay);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(list(&carer).len(), 4);
}

/// An Observation with `bytes` of incompressible text in a note.
fn big_observation(bytes: usize) -> Value {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let text: String = (0..bytes)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            char::from(b'a' + (state % 26) as u8)
        })
        .collect();
    json!({"resourceType": "Observation", "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "4548-4", "display": "HbA1c"}]},
        "effectiveDateTime": "2024-02-03", "note": [{"text": text}]})
}

#[test]
fn oversized_entry_refused_and_never_blocks_the_outbox() {
    let dir = tempfile::tempdir().unwrap();
    // A relay with a small envelope limit, so a change the device accepts
    // is one the relay refuses.
    let relay = Relay::start_on(
        &dir.path().join("relay"),
        "127.0.0.1:0",
        &["--max-envelope-bytes", "60000"],
    );
    let pat = dir.path().join("pat");
    init(&pat, "Pat Example");
    // Over what any relay accepts: refused at `add`, nothing changes.
    let out = add(&pat, &big_observation(6 * 1024 * 1024));
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("a relay accepts"), "{err}");
    assert!(err.contains("nothing was changed"), "{err}");
    assert!(list(&pat).is_empty());
    // Within the device's limit but over this relay's: set aside when the
    // relay refuses it; the changes after it still go.
    assert!(add(&pat, &big_observation(100_000)).status.success());
    assert!(add(&pat, &med("small and after")).status.success());
    assert!(add(&pat, &allergy("another section")).status.success());
    let out = satchel(&pat, PASS)
        .args(["sync", "--server", &relay.url()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("not sent: a change to labs"), "{err}");
    // Another device of the patient sees the two small entries.
    let tablet = dir.path().join("tablet");
    link_devices(&pat, &tablet, PASS, &relay.url());
    let seen = list(&tablet);
    assert_eq!(seen.len(), 2, "{seen:?}");
    // The set-aside entry stays on the phone, and later syncs work.
    assert_eq!(list(&pat).len(), 3);
    assert!(add(&pat, &med("later")).status.success());
    let out = satchel(&pat, PASS)
        .args(["sync", "--server", &relay.url(), "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["uploaded"], 1, "{report}");
    assert_eq!(report["set_aside"].as_array().unwrap().len(), 1, "{report}");
}
