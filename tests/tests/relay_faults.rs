//! Relay sync under faults: the relay killed mid-stream, tampered and
//! replayed envelopes. Drives the core API against real `satchel-sync`
//! processes on loopback.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use satchel_core::crypto::{Envelope, EnvelopeHeader, Identity, Role, SectionKey};
use satchel_core::profile::{MemorySecretStore, Profile, Unlock};
use satchel_core::record::Query;
use satchel_core::store::SqliteStore;
use satchel_core::sync::link;
use satchel_core::sync::RelayClient;
use satchel_tests::Relay;
use serde_json::json;

fn lab(i: usize) -> serde_json::Value {
    json!({"resourceType": "Observation", "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": format!("{i}-0"), "display": "Glucose"}]},
        "effectiveDateTime": "2023-05-06", "valueQuantity": {"value": i, "unit": "mg/dL"}})
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Link a second device in-process and let it pull everything.
fn second_device(
    rt: &tokio::runtime::Runtime,
    relay_url: &str,
    a: &mut Profile<SqliteStore>,
    b_path: &Path,
    keys: &MemorySecretStore,
) -> Profile<SqliteStore> {
    rt.block_on(async {
        let mut client_a = RelayClient::new(relay_url).unwrap();
        let mut client_b = RelayClient::new(relay_url).unwrap();
        let code = link::offer(&mut client_a, a).await.unwrap();
        let identity = Identity::generate("tablet", Role::PatientDevice, None).unwrap();
        let (card, bundle) = tokio::join!(
            link::complete(&mut client_a, a, &code, Duration::from_secs(30)),
            link::join(&mut client_b, &identity, &code, Duration::from_secs(30)),
        );
        card.unwrap();
        let mut b = Profile::join(
            SqliteStore::open(b_path).unwrap(),
            Unlock::SecretStore(keys),
            identity,
            bundle.unwrap(),
        )
        .unwrap();
        client_b.sync(&mut b).await.unwrap();
        b
    })
}

fn acknowledged_hashes(db: &Path) -> HashSet<Vec<u8>> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let mut stmt = conn
        .prepare("SELECT hash FROM section_log WHERE outbound = 1 AND server_seq IS NOT NULL")
        .unwrap();
    stmt.query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

fn all_hashes(db: &Path) -> HashSet<Vec<u8>> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let mut stmt = conn.prepare("SELECT hash FROM section_log").unwrap();
    stmt.query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// The relay is killed with SIGKILL at random points during a stream of
/// uploads and restarted; every acknowledged envelope is there afterwards and
/// a fresh device ends with every entry.
#[test]
fn server_kill_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut relay = Relay::start(&dir.path().join("relay"));
    let url = relay.url();
    let keys = MemorySecretStore::new();
    let a_path = dir.path().join("a.db");
    let mut a = Profile::create(
        SqliteStore::open(&a_path).unwrap(),
        "Kill",
        Unlock::SecretStore(&keys),
    )
    .unwrap();
    let rt = runtime();
    let mut client = RelayClient::new(&url).unwrap().with_max_attempts(3);

    // Random kill points from a seed printed for reproduction.
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    println!("kill schedule seed {seed}");
    let killer = std::thread::spawn(move || {
        let mut x = seed | 1;
        for _ in 0..6 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            std::thread::sleep(Duration::from_millis(100 + x % 400));
            relay.kill();
            std::thread::sleep(Duration::from_millis(50 + x % 150));
            relay.restart();
        }
        relay
    });

    // Keep the stream going for as long as the relay is being killed.
    let per_round = 4;
    let mut rounds = 0;
    let mut failures = 0;
    let mut retries = 0;
    while !killer.is_finished() || rounds < 20 {
        let batch = (0..per_round)
            .map(|i| lab(rounds * per_round + i))
            .collect();
        a.add_resources(batch, None).unwrap();
        match rt.block_on(client.sync(&mut a)) {
            Ok(report) => retries += report.retries,
            Err(_) => failures += 1,
        }
        rounds += 1;
        std::thread::sleep(Duration::from_millis(10));
    }
    let relay = killer.join().unwrap();
    // Finish syncing now the relay stays up.
    let mut client = client.with_max_attempts(10);
    rt.block_on(client.sync(&mut a)).unwrap();
    assert!(
        a.outbox(usize::MAX).unwrap().is_empty(),
        "changes left unsent"
    );
    println!(
        "{rounds} rounds: {failures} failed and {retries} requests were retried because of kills"
    );
    assert!(
        failures + retries as usize > 0,
        "no kill hit the upload stream"
    );

    let acked = acknowledged_hashes(&a_path);
    assert!(
        acked.len() >= rounds,
        "too few acknowledged envelopes: {}",
        acked.len()
    );
    let b_path = dir.path().join("b.db");
    let b = second_device(&rt, &relay.url(), &mut a, &b_path, &keys);
    let on_b = all_hashes(&b_path);
    let missing = acked.difference(&on_b).count();
    assert_eq!(
        missing, 0,
        "{missing} acknowledged envelopes are not on the relay"
    );
    let q = Query::default();
    assert_eq!(b.query(&q).len(), rounds * per_round);
    assert_eq!(b.query(&q), a.query(&q));
}

/// A flipped bit, a truncated body, an envelope replayed into another
/// section or record, and a forged signature: refused by the relay (nothing
/// stored) and, when served by a malicious relay, by the client (nothing
/// merged).
#[test]
fn tampered_envelope_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start(&dir.path().join("relay"));
    let keys = MemorySecretStore::new();
    let rt = runtime();
    let mut a = Profile::create(
        SqliteStore::open(&dir.path().join("a.db")).unwrap(),
        "A",
        Unlock::SecretStore(&keys),
    )
    .unwrap();
    let mut other = Profile::create(
        SqliteStore::open(&dir.path().join("o.db")).unwrap(),
        "O",
        Unlock::SecretStore(&keys),
    )
    .unwrap();
    a.add_resources(vec![lab(1)], None).unwrap();
    let mut client = RelayClient::new(&relay.url()).unwrap();
    let mut other_client = RelayClient::new(&relay.url()).unwrap();
    rt.block_on(client.sync(&mut a)).unwrap();
    rt.block_on(other_client.sync(&mut other)).unwrap();

    // A genuine change of A's, stored on the relay, to tamper with.
    a.add_resources(vec![lab(2)], None).unwrap();
    let good = a.outbox(1).unwrap().remove(0).envelope;
    rt.block_on(client.sync(&mut a)).unwrap();
    let parsed = Envelope::from_bytes(&good).unwrap();
    let mut flipped = good.clone();
    let n = flipped.len() - 90;
    flipped[n] ^= 0x10;
    let truncated = good[..good.len() - 7].to_vec();
    let mut forged = parsed.clone();
    let mallory = Identity::generate("mallory", Role::Carer, None).unwrap();
    forged.signature = mallory.sign(b"anything");
    let forged = forged.to_bytes();
    // An outsider's well-signed envelope (not a member of A's record).
    let outsider = Envelope::seal(
        &SectionKey::generate().unwrap(),
        EnvelopeHeader {
            author: mallory.id(),
            ..parsed.header.clone()
        },
        b"\x00junk",
        &mallory,
    )
    .unwrap()
    .to_bytes();

    let token = client.token().unwrap().to_string();
    let other_token = other_client.token().unwrap().to_string();
    let post = |record: String, section: &str, env: &[u8], token: &str| -> u16 {
        rt.block_on(async {
            use base64::Engine;
            let body =
                json!({"envelopes": [base64::engine::general_purpose::STANDARD.encode(env)]});
            satchel_core::sync::tls::install_default_provider();
            reqwest::Client::new()
                .post(format!(
                    "{}/v1/records/{record}/sections/{section}/envelopes",
                    relay.url()
                ))
                .bearer_auth(token)
                .json(&body)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        })
    };
    let rec = a.record_id().to_string();
    let cases: Vec<(&str, String, &str, &[u8], &str)> = vec![
        ("flipped bit", rec.clone(), "labs", &flipped, &token),
        ("truncated", rec.clone(), "labs", &truncated, &token),
        (
            "replayed into another section",
            rec.clone(),
            "vitals",
            &good,
            &token,
        ),
        (
            "replayed into another record",
            other.record_id().to_string(),
            "labs",
            &good,
            &other_token,
        ),
        ("forged signature", rec.clone(), "labs", &forged, &token),
        ("outsider", rec.clone(), "labs", &outsider, &token),
    ];
    for (name, record, section, env, tok) in &cases {
        let status = post(record.clone(), section, env, tok);
        assert!(
            (400..500).contains(&status),
            "{name}: relay answered {status}"
        );
    }
    // Nothing of that was stored: the next round pulls nothing new.
    let before = a.query(&Query::default());
    let report = rt.block_on(client.sync(&mut a)).unwrap();
    assert_eq!(
        report.pulled, 0,
        "the relay served something it should have refused"
    );
    assert_eq!(a.query(&Query::default()), before);

    // The client, fed the same bytes by a malicious relay, merges none.
    let before = a.query(&Query {
        include_entered_in_error: true,
        ..Query::default()
    });
    let served = vec![
        (9001, flipped.clone()),
        (9002, truncated.clone()),
        (9003, forged.clone()),
        (9004, outsider.clone()),
    ];
    let report = a
        .apply_remote("labs".parse().unwrap(), None, served, 9004)
        .unwrap();
    assert_eq!(report.merged, 0);
    assert_eq!(report.rejected.len(), 4, "{:?}", report.rejected);
    let replay = a
        .apply_remote(
            "vitals".parse().unwrap(),
            None,
            vec![(9005, good.clone())],
            9005,
        )
        .unwrap();
    // Our own envelope is known by hash; replaying it elsewhere merges nothing new.
    assert_eq!(replay.merged, 0);
    let other_record = other
        .apply_remote(
            "labs".parse().unwrap(),
            None,
            vec![(9006, good.clone())],
            9006,
        )
        .unwrap();
    assert_eq!(other_record.merged, 0);
    assert_eq!(other_record.rejected.len(), 1);
    assert_eq!(
        a.query(&Query {
            include_entered_in_error: true,
            ..Query::default()
        }),
        before
    );
}

/// A section whose relay log grew long is compacted: the device that pulls
/// it uploads a snapshot, and a fresh device starts from that snapshot plus
/// the tail instead of every envelope, ending with the same record.
#[test]
fn fresh_device_starts_from_relay_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start(&dir.path().join("relay"));
    let keys = MemorySecretStore::new();
    let rt = runtime();
    let a_path = dir.path().join("a.db");
    let mut a = Profile::create(
        SqliteStore::open(&a_path).unwrap(),
        "A",
        Unlock::SecretStore(&keys),
    )
    .unwrap();
    let n = satchel_core::sync::engine::SNAPSHOT_EVERY as usize + 20;
    for i in 0..n {
        a.add_resources(vec![lab(i)], None).unwrap();
    }
    let mut client = RelayClient::new(&relay.url()).unwrap();
    let report = rt.block_on(client.sync(&mut a)).unwrap();
    assert_eq!(report.snapshots_uploaded, 1, "{report:?}");
    // Five more changes after the snapshot: the tail.
    for i in n..n + 5 {
        a.add_resources(vec![lab(i)], None).unwrap();
    }
    rt.block_on(client.sync(&mut a)).unwrap();
    let b_path = dir.path().join("b.db");
    let b = second_device(&rt, &relay.url(), &mut a, &b_path, &keys);
    let q = Query::default();
    assert_eq!(b.query(&q).len(), n + 5);
    assert_eq!(b.query(&q), a.query(&q));
    let received = all_hashes(&b_path).len();
    assert!(
        received < 20,
        "the fresh device pulled {received} envelopes instead of a snapshot and a tail"
    );
}
