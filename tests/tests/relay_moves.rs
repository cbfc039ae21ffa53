//! Moving a record between relays with the CLI, as a patient would:
//! `satchel relays move --to URL` uploads everything the device holds to
//! the new relay, names it in the access log, and retires the old relay
//! once the new one acknowledged every envelope. A fresh device then
//! restores the whole record from the new relay alone with the recovery
//! key, and the old relay refuses the record's devices.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::path::Path;

use satchel_tests::world::{add, list, share, world, PASS};
use satchel_tests::{run, satchel, Relay};
use serde_json::{json, Value};

/// Add `n` conditions in one FHIR Bundle file.
fn add_conditions(home: &Path, n: u32) {
    let entries: Vec<Value> = (0..n)
        .map(|i| {
            json!({"resource": {
                "resourceType": "Condition",
                "code": {"text": format!("condition {i}")},
                "onsetDateTime": format!("2019-04-{:02}", i % 28 + 1)
            }})
        })
        .collect();
    let bundle = json!({"resourceType": "Bundle", "type": "collection", "entry": entries});
    let file = home.with_extension("bundle.json");
    std::fs::write(&file, serde_json::to_vec(&bundle).unwrap()).unwrap();
    run(satchel(home, PASS).arg("add").arg(&file), true);
}

/// Two days of heart rate and steps, imported as wearables samples.
fn add_wearables(home: &Path) {
    let mut csv = String::from("metric,start,end,value,unit,source\n");
    for day in ["2024-02-01", "2024-02-02"] {
        for h in 0..24 {
            csv.push_str(&format!(
                "heart-rate,{day}T{h:02}:00:00Z,,{},/min,Watch\n",
                60 + h
            ));
            csv.push_str(&format!(
                "steps,{day}T{h:02}:00:00Z,{day}T{h:02}:30:00Z,{},count,Watch\n",
                100 + h
            ));
        }
    }
    let file = home.with_extension("samples.csv");
    std::fs::write(&file, csv).unwrap();
    run(
        satchel(home, PASS)
            .args(["wearables", "import"])
            .arg(&file)
            .arg("--json"),
        true,
    );
}

fn json_of(home: &Path, args: &[&str]) -> Value {
    let out = run(satchel(home, PASS).args(args), true);
    serde_json::from_slice(&out.stdout).unwrap()
}

fn sorted_entries(home: &Path) -> Vec<Value> {
    let mut entries = list(home);
    entries.sort_by_key(|e| e["id"].as_str().unwrap().to_string());
    entries
}

fn heart_rate(home: &Path) -> Value {
    json_of(
        home,
        &[
            "wearables",
            "summary",
            "--metric",
            "heart-rate",
            "--from",
            "2024-02-01",
            "--to",
            "2024-02-02",
            "--every",
            "hour",
            "--json",
        ],
    )
}

fn sync_with(home: &Path, relay: &str) -> std::process::Output {
    satchel(home, PASS)
        .args(["sync", "--server", relay])
        .output()
        .unwrap()
}

#[test]
fn record_moves_between_relays() {
    let mut w = world("pat");
    let pat = w.home("pat");
    let old_url = w.relay.url();
    add_conditions(&pat, 1_000);
    add_wearables(&pat);
    run(satchel(&pat, PASS).args(["relays", "add", &old_url]), true);
    run(satchel(&pat, PASS).arg("sync"), true);
    let carer = w.home("carer");
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
            "conditions",
            "--label",
            "Daughter",
        ],
    );
    // A GP writes too: the phone then holds an envelope it did not make,
    // which the move must carry as well.
    let gp = w.home("gp");
    share(
        &pat,
        &gp,
        "Dr Patel",
        "provider",
        &w.relay,
        &["--role", "provider", "--sections", "conditions", "--write"],
    );
    let note = json!({"resourceType": "Condition", "code": {"text": "seen by the GP"},
        "onsetDateTime": "2024-03-01"});
    assert!(add(&gp, &note).status.success());
    assert!(sync_with(&gp, &old_url).status.success());
    run(satchel(&pat, PASS).arg("sync"), true);
    let out = run(
        satchel(&pat, PASS).args(["recovery-key", "--server", &old_url]),
        true,
    );
    let key = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("SATCHEL-"))
        .expect("a recovery key")
        .to_string();
    let original = sorted_entries(&pat);
    assert_eq!(original.len(), 1_001);
    let original_heart_rate = heart_rate(&pat);
    assert_eq!(original_heart_rate.as_array().unwrap().len(), 48);

    // A relay whose fingerprint is not the one given: refused, nothing moved.
    let new = Relay::start(&w.home("new-relay"));
    let out = run(
        satchel(&pat, PASS).args([
            "relays",
            "move",
            "--to",
            &new.url(),
            "--fingerprint",
            "0000-0000",
        ]),
        false,
    );
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        err.contains("not the relay its operator described"),
        "{err}"
    );
    // The fingerprint it does show (what its operator would read out).
    let fingerprint = err
        .split("shows fingerprint ")
        .nth(1)
        .and_then(|rest| rest.split(", not").next())
        .expect("the error shows the relay's fingerprint");

    let moved = json_of(
        &pat,
        &[
            "relays",
            "move",
            "--to",
            &new.url(),
            "--fingerprint",
            fingerprint,
            "--json",
        ],
    );
    assert_eq!(moved["old_relay_refuses"], true, "{moved}");
    assert!(moved["uploaded"].as_u64().unwrap() > 0, "{moved}");
    let relays = json_of(&pat, &["relays", "list", "--json"]);
    let listed: Vec<&str> = relays
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["relay"].as_str().unwrap())
        .collect();
    assert_eq!(listed, [new.url().as_str()]);
    // The access log names the new relay (and the grant is still there).
    let grants = json_of(&pat, &["grants", "--json"]);
    let grants = grants.as_array().unwrap();
    assert!(grants
        .iter()
        .any(|g| g["role"] == "replica-relay" && g["label"] == new.url().as_str()));
    assert!(grants
        .iter()
        .any(|g| g["name"] == "Jane" && g["label"] == "Daughter"));
    assert!(grants
        .iter()
        .any(|g| g["role"] == "retired-relay" && g["live"] == false));
    // Running the move again changes nothing and succeeds.
    run(
        satchel(&pat, PASS).args(["relays", "move", "--from", &old_url, "--to", &new.url()]),
        true,
    );

    // The old relay refuses the record's devices, saying it moved; the
    // carer's copy is not marked as access ended.
    for home in [&pat, &carer] {
        let out = sync_with(home, &old_url);
        assert!(!out.status.success(), "the old relay must refuse");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("has moved to another relay"), "{err}");
        assert!(err.contains(&new.url()), "names where: {err}");
    }
    let shown = run(satchel(&carer, PASS).arg("list"), true);
    assert!(!String::from_utf8_lossy(&shown.stdout).contains("ACCESS ENDED"));
    // Both keep syncing with the new relay.
    run(satchel(&pat, PASS).args(["sync", "--json"]), true);
    assert!(sync_with(&carer, &new.url()).status.success());
    assert_eq!(list(&carer).len(), 1_001);

    // A fresh device restores from the new relay alone.
    let fresh = w.home("fresh");
    w.relay.kill();
    run(
        satchel(&fresh, PASS)
            .args(["restore", "--server", &new.url()])
            .env("SATCHEL_RECOVERY_KEY", &key),
        true,
    );
    assert_eq!(sorted_entries(&fresh), original);
    assert_eq!(heart_rate(&fresh), original_heart_rate);
    let fresh_grants = json_of(&fresh, &["grants", "--json"]);
    assert!(fresh_grants
        .as_array()
        .unwrap()
        .iter()
        .any(|g| g["name"] == "Jane" && g["label"] == "Daughter"));
}

/// `satchel sync` with no `--server` syncs with every listed relay in
/// order; one that cannot be reached is reported and does not stop the
/// other, and what it missed stays owed to it alone until it is back.
#[test]
fn sync_reaches_every_listed_relay_and_survives_an_unreachable_one() {
    let w = world("pat");
    let pat = w.home("pat");
    let mut second = Relay::start(&w.home("second-relay"));
    let (first_url, second_url) = (w.relay.url(), second.url());
    for url in [&first_url, &second_url] {
        run(satchel(&pat, PASS).args(["relays", "add", url]), true);
    }
    add_conditions(&pat, 3);
    let unsent = |home: &Path| -> Vec<(String, u64)> {
        json_of(home, &["relays", "list", "--json"])
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["relay"].as_str().unwrap().to_string(),
                    r["unsent"].as_u64().unwrap(),
                )
            })
            .collect()
    };
    assert_eq!(
        unsent(&pat),
        [(first_url.clone(), 1), (second_url.clone(), 1)]
    );
    second.kill();
    let report = json_of(&pat, &["sync", "--json"]);
    let relays = report["relays"].as_array().unwrap();
    assert_eq!(relays.len(), 2, "{report}");
    assert_eq!(relays[0]["relay"], first_url.as_str());
    assert_eq!(relays[0]["reachable"], true, "{report}");
    assert_eq!(relays[0]["report"]["uploaded"], 1, "{report}");
    assert_eq!(relays[1]["reachable"], false, "{report}");
    assert_eq!(
        unsent(&pat),
        [(first_url.clone(), 0), (second_url.clone(), 1)]
    );
    // Back again: it gets what it missed, and the first relay nothing twice.
    second.restart();
    let report = json_of(&pat, &["sync", "--json"]);
    let relays = report["relays"].as_array().unwrap();
    assert_eq!(relays[0]["report"]["uploaded"], 0, "{report}");
    assert_eq!(relays[1]["report"]["uploaded"], 1, "{report}");
    assert_eq!(
        unsent(&pat),
        [(first_url.clone(), 0), (second_url.clone(), 0)]
    );
    // A statement made through the second relay (the recovery key) reaches
    // the first with the next sync: a device restored from the first
    // relay alone has the record.
    let out = run(
        satchel(&pat, PASS).args(["recovery-key", "--server", &second_url]),
        true,
    );
    let key = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("SATCHEL-"))
        .expect("a recovery key")
        .to_string();
    run(satchel(&pat, PASS).arg("sync"), true);
    let fresh = w.home("fresh");
    run(
        satchel(&fresh, PASS)
            .args(["restore", "--server", &first_url])
            .env("SATCHEL_RECOVERY_KEY", &key),
        true,
    );
    assert_eq!(sorted_entries(&fresh), sorted_entries(&pat));
}

/// A move interrupted after the new relay was named and given the access
/// log (before anything was uploaded) leaves the record where it was; run
/// again, it finishes.
#[test]
fn interrupted_move_finishes_when_run_again() {
    use satchel_core::profile::{Profile, Unlock};
    use satchel_core::store::SqliteStore;
    use satchel_core::sync::{moving, sharing, RelayClient};

    let w = world("pat");
    let pat = w.home("pat");
    let old_url = w.relay.url();
    add_conditions(&pat, 50);
    run(satchel(&pat, PASS).args(["relays", "add", &old_url]), true);
    run(satchel(&pat, PASS).arg("sync"), true);
    let out = run(
        satchel(&pat, PASS).args(["recovery-key", "--server", &old_url]),
        true,
    );
    let key = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("SATCHEL-"))
        .expect("a recovery key")
        .to_string();
    let new = Relay::start(&w.home("new-relay"));

    // Steps 1 and 2 of a move, then the process "dies".
    {
        let store = SqliteStore::open(&pat.join("satchel.db")).unwrap();
        let mut profile = Profile::open(
            store,
            Unlock::Passphrase {
                passphrase: PASS.as_bytes(),
                params: None,
            },
        )
        .unwrap();
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let mut old = RelayClient::new(&old_url).unwrap();
            let mut to = RelayClient::new(&new.url()).unwrap();
            let card = sharing::relay_identity(&mut to).await.unwrap();
            let named = moving::name_new_relay(&mut old, &mut profile, &card, "new relay")
                .await
                .unwrap();
            assert!(named);
            moving::copy_access_log(&mut to, &mut profile)
                .await
                .unwrap();
        });
    }
    // Nothing moved yet: the old relay still serves the record.
    assert!(sync_with(&pat, &old_url).status.success());
    let relays = json_of(&pat, &["relays", "list", "--json"]);
    assert_eq!(relays[0]["relay"], old_url.as_str());

    let moved = json_of(&pat, &["relays", "move", "--to", &new.url(), "--json"]);
    assert_eq!(moved["old_relay_refuses"], true, "{moved}");
    assert!(!sync_with(&pat, &old_url).status.success());
    let fresh = w.home("fresh");
    run(
        satchel(&fresh, PASS)
            .args(["restore", "--server", &new.url()])
            .env("SATCHEL_RECOVERY_KEY", &key),
        true,
    );
    assert_eq!(sorted_entries(&fresh), sorted_entries(&pat));
    assert_eq!(sorted_entries(&fresh).len(), 50);
}
