//! Edge-sync benchmark (a bench binary that prints its figures).
//!
//! 1. The patient's phone holds the ten-year record (1,500 resources from
//!    the official FHIR R4 examples, as in the foundation benchmark) and one
//!    year of wearables (500,000 samples, as in the wearables benchmark), in
//!    an encrypted SQLite home.
//! 2. A fresh device of the patient (added by the phone, holding nothing)
//!    syncs with it directly over loopback TCP: the time from connecting
//!    to both ends done (handshake, access log, every envelope verified,
//!    decrypted, merged and stored durably), and the bytes on the wire
//!    against the sealed envelope bytes it received.
//! 3. The two devices, now in sync, sync again: the summary round trip
//!    (bytes both ways, time on the initiator) and the whole session.
//! 4. For comparison, in the same run: a fresh device linked through a real
//!    `satchel-sync` relay on loopback (release build) syncs the same
//!    record (the phone's upload not counted).
//!
//! Run: `bash scripts/setup.sh && cargo build --release -p satchel-sync-server && cargo bench -p satchel-core --bench nearby`

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::net::TcpListener;
use std::path::Path;
use std::time::{Duration, Instant};

use satchel_core::crypto::{Identity, KdfParams, Role};
use satchel_core::nearby::net::{connect, serve_connection};
use satchel_core::nearby::pairing::PairingCode;
use satchel_core::nearby::session::{DirectReport, Pairing};
use satchel_core::profile::{Profile, Unlock};
use satchel_core::protocol::LogName;
use satchel_core::store::{SqliteStore, Store};
use satchel_core::sync::{link, RelayClient};
use support::{load_examples, start_relay, ten_year_record, year_of_samples};

fn unlock() -> Unlock<'static> {
    Unlock::Passphrase {
        passphrase: b"bench passphrase",
        params: Some(KdfParams::for_tests()),
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Sealed bytes of every envelope a device holds, and how many.
fn sealed<S: Store>(p: &Profile<S>) -> (usize, usize) {
    let mut n = 0;
    let mut bytes = 0;
    for log in LogName::all() {
        for (_, e) in p.log_envelopes(log).unwrap() {
            n += 1;
            bytes += e.len();
        }
    }
    (n, bytes)
}

/// `shower` serves, `scanner` connects: (shower's, scanner's) reports and
/// the wall time from connecting to both ends done.
fn direct<A: Store + Send, B: Store>(
    shower: &mut Profile<A>,
    scanner: &mut Profile<B>,
) -> (DirectReport, DirectReport, Duration) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let code = PairingCode::new(listener.local_addr().unwrap(), shower.device_id()).unwrap();
    let pairing = Pairing {
        token: Some(code.token),
        device: None,
    };
    std::thread::scope(|s| {
        let server = s.spawn(|| {
            let (stream, _) = listener.accept().unwrap();
            serve_connection(shower, stream, pairing, Duration::from_secs(30), now_ms())
        });
        let t = Instant::now();
        let client = connect(scanner, &code, Duration::from_secs(30), now_ms()).unwrap();
        let served = server.join().unwrap().unwrap();
        (served, client, t.elapsed())
    })
}

fn new_device(phone: &mut Profile<SqliteStore>, db: &Path) -> Profile<SqliteStore> {
    let id = Identity::generate("Patient device", Role::PatientDevice, None).unwrap();
    let card = id.card().clone();
    let device = Profile::create_member(
        SqliteStore::open(db).unwrap(),
        unlock(),
        id,
        phone.member_info(),
    )
    .unwrap();
    let st = phone.add_device_statement(&card).unwrap();
    phone.apply_access_direct(vec![st]).unwrap();
    device
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    // --- the phone's record -------------------------------------------------
    let examples = load_examples();
    let record = ten_year_record(&examples, 1_500);
    let samples = year_of_samples();
    let mut phone = Profile::create(
        SqliteStore::open(&dir.path().join("phone.db")).unwrap(),
        "Pat",
        unlock(),
    )
    .unwrap();
    for chunk in record.chunks(100) {
        phone
            .add_resources(chunk.to_vec(), Some("https://bench.example/fhir"))
            .unwrap();
    }
    phone.wearables_ingest(&samples).unwrap();
    let entries = phone.query(&Default::default()).len();
    let (envelopes, sealed_bytes) = sealed(&phone);
    println!(
        "nearby benchmark: the phone holds {entries} entries and {} wearable samples: {envelopes} sealed envelopes, {sealed_bytes} B",
        samples.len()
    );

    // --- for comparison: a fresh device through a relay --------------------
    // (first: the phone's devices below are added offline, which a relay
    // would then see as a fork of its log)
    let relay = start_relay(dir.path());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (upload, through_relay) = rt.block_on(async {
        let mut client_a = RelayClient::new(&relay.1).unwrap();
        let t = Instant::now();
        client_a.sync(&mut phone).await.unwrap();
        let upload = t.elapsed();
        let code = link::offer(&mut client_a, &mut phone).await.unwrap();
        let identity = Identity::generate("Patient device", Role::PatientDevice, None).unwrap();
        let mut client_b = RelayClient::new(&relay.1).unwrap();
        let (card, bundle) = tokio::join!(
            link::complete(&mut client_a, &mut phone, &code, Duration::from_secs(30)),
            link::join(&mut client_b, &identity, &code, Duration::from_secs(30))
        );
        card.unwrap();
        let store = SqliteStore::open(&dir.path().join("via-relay.db")).unwrap();
        let mut b = Profile::join(store, unlock(), identity, bundle.unwrap()).unwrap();
        let t = Instant::now();
        client_b.sync(&mut b).await.unwrap();
        let took = t.elapsed();
        assert_eq!(b.query(&Default::default()).len(), entries);
        (upload, took)
    });
    let relay_line = format!(
        "for comparison, a fresh device through the relay on loopback: {:.0} ms (one sync round; the phone's upload took {:.0} ms, not counted)",
        ms(through_relay),
        ms(upload)
    );
    // --- a fresh device, directly ------------------------------------------
    let mut runs = Vec::new();
    let mut last = None;
    for i in 0..3 {
        let mut fresh = new_device(&mut phone, &dir.path().join(format!("fresh{i}.db")));
        let (served, got, wall) = direct(&mut phone, &mut fresh);
        assert_eq!(got.refused, 0);
        assert_eq!(fresh.query(&Default::default()).len(), entries);
        let (n, b) = sealed(&fresh);
        assert_eq!(
            (n, b),
            (envelopes, sealed_bytes),
            "the fresh device holds every envelope"
        );
        runs.push(wall);
        last = Some((served, got, fresh));
    }
    runs.sort();
    let (served, got, mut fresh) = last.unwrap();
    println!(
        "fresh device, directly over loopback: median {:.0} ms (min {:.0}, max {:.0}; 3 runs) for {} envelopes   [target <= 500 ms]",
        ms(runs[1]),
        ms(runs[0]),
        ms(runs[2]),
        got.merged
    );
    println!(
        "  bytes on the wire: {} B to the fresh device, {} B from it = {:.3}x the sealed envelope bytes   [target <= 1.1x]",
        got.bytes_received,
        got.bytes_sent,
        got.bytes_received as f64 / sealed_bytes as f64
    );
    assert_eq!(served.sent as usize, envelopes);

    // --- already in sync ----------------------------------------------------
    let mut times = Vec::new();
    let mut bytes = 0;
    let mut walls = Vec::new();
    for _ in 0..20 {
        let (a, b, wall) = direct(&mut phone, &mut fresh);
        assert!(a.in_sync && b.in_sync);
        times.push(b.summary_time.unwrap());
        bytes = b.summary_bytes;
        walls.push(wall);
    }
    times.sort();
    walls.sort();
    println!(
        "in sync: the summary round trip {} B both ways, median {:.2} ms (max {:.2}; 20 runs)   [target <= 1 KiB, <= 10 ms]; the whole session (handshake, hellos, access, summaries) median {:.1} ms",
        bytes,
        ms(times[10]),
        ms(times[19]),
        ms(walls[10])
    );
    println!("{relay_line}");
}
