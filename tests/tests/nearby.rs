//! Edge sync: devices of members of one record syncing directly over
//! loopback TCP, with no relay (issue 14). The relay tests here run real
//! `satchel-sync` processes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::TcpListener;
use std::thread;
use std::time::{Duration, Instant};

use satchel_core::crypto::{Identity, Role};
use satchel_core::nearby::net::{connect, serve_one};
use satchel_core::nearby::pairing::PairingCode;
use satchel_core::nearby::session::{DirectReport, Pairing, SessionError};
use satchel_core::profile::{MemorySecretStore, Profile, Unlock};
use satchel_core::record::Query;
use satchel_core::store::{MemoryStore, Store};
use serde_json::{json, Value};

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn lab(i: usize) -> Value {
    json!({"resourceType": "Observation", "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": format!("{i}-0"), "display": "Glucose"}]},
        "effectiveDateTime": "2023-05-06", "valueQuantity": {"value": i, "unit": "mg/dL"}})
}

fn medication(i: usize) -> Value {
    json!({"resourceType": "MedicationStatement", "status": "active",
        "medicationCodeableConcept": {"text": format!("medicine {i}")},
        "subject": {"reference": "Patient/p"}})
}

/// Every visible entry: (id, current resource), sorted.
fn entries<S: Store>(p: &Profile<S>) -> Vec<(String, Value)> {
    let mut out: Vec<(String, Value)> = p
        .query(&Query::default())
        .into_iter()
        .map(|e| (e.id.to_string(), e.current.resource.clone()))
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// A second device of the owner of `owner`'s record, added (offline) by
/// `owner`: it holds nothing until it syncs.
fn owner_device(
    owner: &mut Profile<MemoryStore>,
    keys: &MemorySecretStore,
    name: &str,
) -> Profile<MemoryStore> {
    let id = Identity::generate(name, Role::PatientDevice, None).unwrap();
    let card = id.card().clone();
    let device = Profile::create_member(
        MemoryStore::new(),
        Unlock::SecretStore(keys),
        id,
        owner.member_info(),
    )
    .unwrap();
    let statement = owner.add_device_statement(&card).unwrap();
    owner.apply_access_direct(vec![statement]).unwrap();
    device
}

/// `shower` shows a pairing code and serves; `scanner` connects with it.
/// Returns (shower's report, scanner's report).
fn direct<A: Store, B: Store>(
    shower: &mut Profile<A>,
    scanner: &mut Profile<B>,
) -> (
    Result<DirectReport, SessionError>,
    Result<DirectReport, SessionError>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let code = PairingCode::new(listener.local_addr().unwrap(), shower.device_id()).unwrap();
    let pairing = Pairing {
        token: Some(code.token),
        device: None,
    };
    thread::scope(|s| {
        let server = s.spawn(|| {
            let mut failure = None;
            let served = serve_one(
                shower,
                &listener,
                pairing,
                Duration::from_secs(10),
                Instant::now() + Duration::from_secs(30),
                now_ms,
                |e| failure = Some(e.to_string()),
            )
            .unwrap();
            served.ok_or_else(|| {
                SessionError::Protocol(if failure.is_some() {
                    "failed"
                } else {
                    "no session"
                })
            })
        });
        let client = connect(scanner, &code, Duration::from_secs(10), now_ms());
        (server.join().unwrap(), client)
    })
}

#[test]
fn direct_sync_without_relay() {
    let keys = MemorySecretStore::new();
    let mut phone = Profile::create(MemoryStore::new(), "Pat", Unlock::SecretStore(&keys)).unwrap();
    let mut tablet = owner_device(&mut phone, &keys, "tablet");
    phone
        .add_resources(vec![lab(1), medication(1)], None)
        .unwrap();

    // First contact: the tablet learns the access log, its keys and the record.
    let (shown, scanned) = direct(&mut phone, &mut tablet);
    let (shown, scanned) = (shown.unwrap(), scanned.unwrap());
    assert!(scanned.statements_learned >= 1, "{scanned:?}");
    assert_eq!(scanned.merged, shown.sent);
    assert!(scanned.merged >= 2);
    assert_eq!(entries(&phone), entries(&tablet));
    assert_eq!(entries(&tablet).len(), 2);

    // Both edit offline, then sync directly (the tablet shows the code).
    phone.add_resources(vec![lab(2)], None).unwrap();
    tablet
        .add_resources(vec![medication(2), lab(3)], None)
        .unwrap();
    let (shown, scanned) = direct(&mut tablet, &mut phone);
    let (shown, scanned) = (shown.unwrap(), scanned.unwrap());
    assert!(!shown.in_sync && !scanned.in_sync);
    assert_eq!(entries(&phone), entries(&tablet));
    assert_eq!(entries(&phone).len(), 5);
    assert_eq!(shown.refused + scanned.refused, 0);

    // Already in sync: confirmed with nothing exchanged.
    let (shown, scanned) = direct(&mut phone, &mut tablet);
    let (shown, scanned) = (shown.unwrap(), scanned.unwrap());
    assert!(shown.in_sync && scanned.in_sync);
    assert_eq!(shown.sent + scanned.sent, 0);

    // A third device gets everything from the tablet (not the phone that
    // added it): the tablet first learns of it from the phone.
    let mut laptop = owner_device(&mut phone, &keys, "laptop");
    let (a, b) = direct(&mut phone, &mut tablet);
    assert_eq!(b.unwrap().statements_learned, 1);
    a.unwrap();
    let (a, b) = direct(&mut tablet, &mut laptop);
    a.unwrap();
    b.unwrap();
    assert_eq!(entries(&laptop), entries(&phone));
    assert_eq!(entries(&laptop).len(), 5);
}

/// A stream that keeps a copy of what was written to it.
struct Recording {
    inner: std::net::TcpStream,
    written: Vec<u8>,
}

impl std::io::Read for Recording {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.inner.read(buf)
    }
}

impl std::io::Write for Recording {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.written.extend_from_slice(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// A hand-driven initiator handshake (the protocol's pattern and
/// prologue), to send what a well-behaved channel never would.
fn raw_handshake(stream: &mut std::net::TcpStream) -> snow::TransportState {
    use std::io::{Read, Write};
    let params: snow::params::NoiseParams = satchel_core::protocol::direct::NOISE_PATTERN
        .parse()
        .unwrap();
    let keys = snow::Builder::new(params.clone())
        .generate_keypair()
        .unwrap();
    let mut hs = snow::Builder::new(params)
        .local_private_key(&keys.private)
        .unwrap()
        .prologue(satchel_core::protocol::direct::PROLOGUE)
        .unwrap()
        .build_initiator()
        .unwrap();
    let mut buf = vec![0u8; 65535];
    let mut payload = vec![0u8; 65535];
    while !hs.is_handshake_finished() {
        if hs.is_my_turn() {
            let n = hs.write_message(&[], &mut buf).unwrap();
            stream.write_all(&(n as u16).to_be_bytes()).unwrap();
            stream.write_all(&buf[..n]).unwrap();
        } else {
            let mut len = [0u8; 2];
            stream.read_exact(&mut len).unwrap();
            let n = u16::from_be_bytes(len) as usize;
            stream.read_exact(&mut buf[..n]).unwrap();
            hs.read_message(&buf[..n], &mut payload).unwrap();
        }
    }
    hs.into_transport_mode().unwrap()
}

/// Everything the store holds that a session could change.
fn held<S: Store>(p: &Profile<S>) -> (Vec<[u8; 32]>, Vec<Vec<[u8; 32]>>) {
    let logs = satchel_core::protocol::LogName::all()
        .map(|l| p.log_hashes(l).unwrap())
        .collect();
    (p.access_hashes().unwrap(), logs)
}

#[test]
fn direct_channel_bad_input_ends_the_connection_only() {
    use std::io::Write;
    use std::net::TcpStream;
    let keys = MemorySecretStore::new();
    let mut phone = Profile::create(MemoryStore::new(), "Pat", Unlock::SecretStore(&keys)).unwrap();
    let mut tablet = owner_device(&mut phone, &keys, "tablet");
    phone.add_resources(vec![lab(1)], None).unwrap();
    let before = held(&phone);

    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let code = PairingCode::new(addr, phone.device_id()).unwrap();
    let pairing = Pairing {
        token: Some(code.token),
        device: None,
    };
    let failures = std::sync::Mutex::new(Vec::<String>::new());
    let stall = Duration::from_millis(600);
    let (served, after_bad) = thread::scope(|s| {
        let server = s.spawn(|| {
            let served = serve_one(
                &mut phone,
                &listener,
                pairing,
                stall,
                Instant::now() + Duration::from_secs(60),
                now_ms,
                |e| failures.lock().unwrap().push(e.to_string()),
            )
            .unwrap();
            let after = held(&phone);
            (served, after)
        });
        let wait_for = |n: usize| {
            let t = Instant::now();
            while failures.lock().unwrap().len() < n {
                assert!(t.elapsed() < Duration::from_secs(20), "no failure reported");
                thread::sleep(Duration::from_millis(10));
            }
        };
        // 1. Garbage instead of a handshake.
        let mut s1 = TcpStream::connect(addr).unwrap();
        s1.write_all(b"\x00\x05hello, is this a relay?").unwrap();
        wait_for(1);
        // 2. A truncated frame: a length, then the connection closes.
        let mut s2 = TcpStream::connect(addr).unwrap();
        s2.write_all(&[0x00, 0x40, 1, 2, 3]).unwrap();
        drop(s2);
        wait_for(2);
        // 3. An oversized message after a good handshake.
        let mut s3 = TcpStream::connect(addr).unwrap();
        let mut t = raw_handshake(&mut s3);
        let mut out = vec![0u8; 100];
        let n = t.write_message(&u32::MAX.to_be_bytes(), &mut out).unwrap();
        s3.write_all(&(n as u16).to_be_bytes()).unwrap();
        s3.write_all(&out[..n]).unwrap();
        wait_for(3);
        // 4. Garbage after the handshake.
        let mut s4 = TcpStream::connect(addr).unwrap();
        let _t = raw_handshake(&mut s4);
        s4.write_all(&[0x00, 0x20]).unwrap();
        s4.write_all(&[0xaa; 0x20]).unwrap();
        wait_for(4);
        // 5. A replayed handshake: a recorded initiator's bytes, sent again.
        let rec = Recording {
            inner: TcpStream::connect(addr).unwrap(),
            written: Vec::new(),
        };
        let channel = satchel_core::nearby::channel::Channel::initiate(rec).unwrap();
        let recorded = channel.into_inner().written;
        wait_for(5); // the recorded session closed after its handshake
        let mut s5 = TcpStream::connect(addr).unwrap();
        s5.write_all(&recorded).unwrap();
        wait_for(6);
        // 6. A peer that stalls mid-frame.
        let mut s6 = TcpStream::connect(addr).unwrap();
        s6.write_all(&[0x00]).unwrap();
        wait_for(7);
        // The listener still serves a real device.
        let client = connect(&mut tablet, &code, Duration::from_secs(10), now_ms());
        let (served, after) = server.join().unwrap();
        (served.map(|r| (r, client.unwrap())), after)
    });
    let failures = failures.into_inner().unwrap();
    println!("{failures:#?}");
    assert_eq!(failures.len(), 7, "{failures:?}");
    assert!(failures[0].contains("handshake failed"), "{}", failures[0]);
    assert!(
        failures[1].contains("closed the connection"),
        "{}",
        failures[1]
    );
    assert!(failures[2].contains("over the"), "{}", failures[2]);
    assert!(failures[3].contains("did not decrypt"), "{}", failures[3]);
    assert!(
        failures[4].contains("closed the connection"),
        "{}",
        failures[4]
    );
    assert!(failures[5].contains("handshake failed"), "{}", failures[5]);
    assert!(failures[6].contains("stopped answering"), "{}", failures[6]);
    let (served, scanned) = served.unwrap();
    assert_eq!(scanned.merged, served.sent);
    assert_eq!(entries(&tablet).len(), 1);
    // Nothing changed the phone's store: not the bad connections, nor the
    // good session (the tablet had nothing to give).
    assert_eq!(after_bad, before);
}
