//! A small world for end-to-end tests of sharing: a relay, homes driven
//! through the `satchel` binary, FHIR resources to add, the invite /
//! accept / approve dance, and a relay that ignores access rules (every
//! byte it ever stored, read straight from its database). Test support:
//! panics are how it reports failure.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use serde_json::{json, Value};

use crate::{run, satchel, Relay};

pub const PASS: &str = "sharing test passphrase";

pub fn init(home: &Path, name: &str) {
    run(satchel(home, PASS).args(["init", "--name", name]), true);
}

pub fn add(home: &Path, value: &Value) -> std::process::Output {
    let file = home.with_extension(format!("{}.json", rand_suffix()));
    std::fs::write(&file, serde_json::to_vec(value).unwrap()).unwrap();
    satchel(home, PASS).arg("add").arg(&file).output().unwrap()
}

pub fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

pub fn sync(home: &Path, relay: &Relay) -> std::process::Output {
    satchel(home, PASS)
        .args(["sync", "--server", &relay.url()])
        .output()
        .unwrap()
}

pub fn list(home: &Path) -> Vec<Value> {
    let out = run(satchel(home, PASS).args(["list", "--json"]), true);
    serde_json::from_slice(&out.stdout).unwrap()
}

pub fn med(text: &str) -> Value {
    json!({"resourceType": "MedicationStatement", "status": "active",
           "medicationCodeableConcept": {"text": text}, "subject": {"reference": "Patient/p"}})
}

pub fn allergy(text: &str) -> Value {
    json!({"resourceType": "AllergyIntolerance", "code": {"text": text}, "recordedDate": "2021-03-04"})
}

pub fn lab(display: &str) -> Value {
    json!({"resourceType": "Observation", "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "4548-4", "display": display}]},
        "effectiveDateTime": "2024-02-03"})
}

/// Invite from `by` with `flags`, accept in `who`'s home as `name`, and
/// approve with the fingerprint the invitee printed (a wrong one grants
/// nothing); the invitee does not sync yet. Returns the approval's output.
pub fn invite_and_approve(
    by: &Path,
    who: &Path,
    name: &str,
    role: &str,
    relay: &Relay,
    flags: &[&str],
) -> std::process::Output {
    let url = relay.url();
    let mut args = vec!["invite", "--server", url.as_str(), "--json"];
    args.extend_from_slice(flags);
    let out = run(satchel(by, PASS).args(&args), true);
    let invite: Value = serde_json::from_slice(&out.stdout).unwrap();
    let code = invite["code"].as_str().unwrap();
    let id = invite["invite"].as_str().unwrap();
    let out = run(
        satchel(who, PASS).args(["accept", code, "--name", name, "--role", role]),
        true,
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let fingerprint = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && l.chars().all(|c| c.is_ascii_digit() || c == ' '))
        .expect("accept printed the fingerprint")
        .to_string();
    let approve = |fingerprint: &str, expect_success: bool| {
        run(
            satchel(by, PASS).args([
                "approve",
                id,
                "--server",
                &url,
                "--fingerprint",
                fingerprint,
            ]),
            expect_success,
        )
    };
    approve("00000 00000 00000 00000 00000", false);
    approve(&fingerprint, true)
}

/// [`invite_and_approve`], then the invitee's first sync, which must succeed.
pub fn share(by: &Path, who: &Path, name: &str, role: &str, relay: &Relay, flags: &[&str]) {
    invite_and_approve(by, who, name, role, relay, flags);
    let out = sync(who, relay);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn sections_of(entries: &[Value]) -> std::collections::BTreeSet<String> {
    entries
        .iter()
        .map(|e| e["section"].as_str().unwrap().to_string())
        .collect()
}

pub struct World {
    _dir: tempfile::TempDir,
    pub relay: Relay,
    pub root: std::path::PathBuf,
}

pub fn world(patient: &str) -> World {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let relay = Relay::start(&root.join("relay"));
    init(&root.join(patient), "Pat Example");
    World {
        _dir: dir,
        relay,
        root,
    }
}

impl World {
    pub fn home(&self, name: &str) -> std::path::PathBuf {
        self.root.join(name)
    }
}

/// Every envelope of `section` the relay ever stored (its own database,
/// read directly), numbered in relay order: what a relay that ignores
/// revocation and expiry would serve to anyone.
pub fn relay_envelopes(relay: &Relay, section: &str) -> Vec<(u64, Vec<u8>)> {
    let db = rusqlite::Connection::open(relay.dir.join("relay.db")).expect("relay database");
    let mut raw: Vec<Vec<u8>> = db
        .prepare("SELECT bytes FROM envelopes ORDER BY seq")
        .expect("envelopes table")
        .query_map([], |r| r.get(0))
        .expect("envelopes")
        .map(|r| r.expect("envelope row"))
        .collect();
    raw.extend(
        db.prepare("SELECT bytes FROM snapshots")
            .expect("snapshots table")
            .query_map([], |r| r.get::<_, Vec<u8>>(0))
            .expect("snapshots")
            .map(|r| r.expect("snapshot row")),
    );
    raw.into_iter()
        .filter(|b| {
            satchel_core::crypto::Envelope::from_bytes(b).is_ok_and(|e| e.header.section == section)
        })
        .enumerate()
        .map(|(i, b)| (i as u64 + 1, b))
        .collect()
}

/// The first record shared with `home` (a carer's or provider's), opened
/// with the keys it holds.
pub fn open_shared(
    home: &Path,
) -> satchel_core::profile::Profile<satchel_core::store::SqliteStore> {
    let shared = std::fs::read_dir(home.join("shared"))
        .expect("a shared record")
        .map(|e| e.expect("directory entry").path())
        .find(|p| p.extension().is_some_and(|x| x == "db"))
        .expect("a shared record");
    let store = satchel_core::store::SqliteStore::open(&shared).expect("shared store");
    satchel_core::profile::Profile::open(
        store,
        satchel_core::profile::Unlock::Passphrase {
            passphrase: PASS.as_bytes(),
            params: None,
        },
    )
    .expect("open the shared record")
}

/// How many new entries `home`'s copy of a shared record gains when a
/// relay that ignores access rules serves it every envelope of `section`
/// it holds: what a revoked, narrowed or expired member could read.
pub fn entries_read_from_lenient_relay(home: &Path, relay: &Relay, section: &str) -> usize {
    // On a copy of the home, so the home itself is left as it was.
    let copy = tempfile::tempdir().expect("temp dir");
    let shared = copy.path().join("shared");
    std::fs::create_dir_all(&shared).expect("copy dir");
    for entry in std::fs::read_dir(home.join("shared")).expect("a shared record") {
        let path = entry.expect("directory entry").path();
        std::fs::copy(&path, shared.join(path.file_name().expect("file name"))).expect("copy");
    }
    let mut profile = open_shared(copy.path());
    let before = profile.query(&Default::default()).len();
    let envelopes = relay_envelopes(relay, section);
    let next = envelopes.len() as u64;
    profile
        .apply_remote(section.parse().expect("a log name"), None, envelopes, next)
        .expect("apply what the relay served");
    profile.query(&Default::default()).len() - before
}
