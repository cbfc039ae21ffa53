//! Edge sync: devices of members of one record syncing directly over
//! loopback TCP, with no relay (issue 14). The relay tests here run real
//! `satchel-sync` processes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::TcpListener;
use std::thread;
use std::time::{Duration, Instant};

use satchel_core::crypto::{Identity, Role};
use satchel_core::nearby::net::{connect, serve_connection, serve_one};
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
            let (stream, _) = listener.accept().unwrap();
            serve_connection(shower, stream, pairing, Duration::from_secs(10), now_ms())
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

use proptest::prelude::*;
use satchel_core::crypto::{Envelope, EnvelopeHeader, SectionKey};
use satchel_core::protocol::direct::RefusalReason;
use satchel_core::protocol::LogName;
use satchel_core::record::Section;
use satchel_core::sharing::GrantRole;

/// One resource in each of these sections (written by the owner).
const GRANTABLE: [Section; 5] = [
    Section::Allergies,
    Section::Medications,
    Section::Conditions,
    Section::Immunizations,
    Section::Labs,
];

fn resource(section: Section, n: usize) -> Value {
    match section {
        Section::Allergies => json!({"resourceType": "AllergyIntolerance",
            "code": {"text": format!("allergy {n}")}, "patient": {"reference": "Patient/p"}}),
        Section::Medications => medication(n),
        Section::Conditions => json!({"resourceType": "Condition",
            "code": {"text": format!("condition {n}")}, "subject": {"reference": "Patient/p"}}),
        Section::Immunizations => json!({"resourceType": "Immunization",
            "status": "completed", "vaccineCode": {"text": format!("vaccine {n}")},
            "patient": {"reference": "Patient/p"}, "occurrenceDateTime": "2020-01-01"}),
        _ => lab(n),
    }
}

/// A member's device set up from the owner's record (no log, no keys yet).
fn member_device<S: Store>(
    owner: &Profile<S>,
    keys: &MemorySecretStore,
    name: &str,
    role: Role,
) -> (Profile<MemoryStore>, satchel_core::crypto::IdentityCard) {
    let id = Identity::generate(name, role, None).unwrap();
    let card = id.card().clone();
    let p = Profile::create_member(
        MemoryStore::new(),
        Unlock::SecretStore(keys),
        id,
        owner.member_info(),
    )
    .unwrap();
    (p, card)
}

fn grant<S: Store>(
    owner: &mut Profile<S>,
    card: &satchel_core::crypto::IdentityCard,
    role: GrantRole,
    sections: &[Section],
) {
    let st = owner
        .grant_statement(card, role, sections, None, "grant")
        .unwrap();
    owner.apply_access_direct(vec![st]).unwrap();
}

/// The logs a device holds envelopes in.
fn logs_held<S: Store>(p: &Profile<S>) -> Vec<LogName> {
    LogName::all()
        .filter(|l| !p.log_hashes(*l).unwrap().is_empty())
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 6, .. ProptestConfig::default() })]

    /// Random grant matrices: a carer (reader of some sections) and a
    /// provider (writer of others) each sync directly with the phone and
    /// end with exactly the sections they may read; the provider's own
    /// writes reach the phone.
    #[test]
    fn direct_sync_respects_grants(
        reads in proptest::sample::subsequence(GRANTABLE.to_vec(), 0..=5),
        writes in proptest::sample::subsequence(GRANTABLE.to_vec(), 1..=5),
    ) {
        let keys = MemorySecretStore::new();
        let mut phone = Profile::create(MemoryStore::new(), "Pat", Unlock::SecretStore(&keys)).unwrap();
        for (n, s) in GRANTABLE.iter().enumerate() {
            phone.add_resources(vec![resource(*s, n)], None).unwrap();
        }
        let (mut carer, carer_card) = member_device(&phone, &keys, "carer", Role::Carer);
        let (mut gp, gp_card) = member_device(&phone, &keys, "gp", Role::Provider);
        if !reads.is_empty() {
            grant(&mut phone, &carer_card, GrantRole::Reader, &reads);
        }
        grant(&mut phone, &gp_card, GrantRole::Writer, &writes);

        let (a, b) = direct(&mut phone, &mut carer);
        if reads.is_empty() {
            // Never granted anything: refused, nothing received.
            prop_assert!(matches!(b, Err(SessionError::PeerRefused(RefusalReason::NotAMember))), "{b:?}");
            prop_assert!(a.is_err());
            prop_assert!(logs_held(&carer).is_empty());
        } else {
            a.unwrap();
            b.unwrap();
            let expect: Vec<LogName> = reads.iter().map(|s| LogName::Section(*s)).collect();
            let mut held = logs_held(&carer);
            held.sort();
            let mut expect_sorted = expect.clone();
            expect_sorted.sort();
            prop_assert_eq!(held, expect_sorted);
            for log in expect {
                prop_assert_eq!(carer.log_hashes(log).unwrap(), phone.log_hashes(log).unwrap());
            }
            prop_assert_eq!(entries(&carer).len(), reads.len());
        }

        // The provider receives what it may read, and what it writes arrives.
        let (a, b) = direct(&mut phone, &mut gp);
        a.unwrap();
        b.unwrap();
        let mut held = logs_held(&gp);
        held.sort();
        let mut expect: Vec<LogName> = writes.iter().map(|s| LogName::Section(*s)).collect();
        expect.sort();
        prop_assert_eq!(held, expect);
        gp.add_resources(vec![resource(writes[0], 100)], None).unwrap();
        let before = entries(&phone).len();
        let (a, b) = direct(&mut gp, &mut phone);
        let (a, b) = (a.unwrap(), b.unwrap());
        prop_assert!(b.merged >= 1);
        prop_assert_eq!(a.refused + b.refused, 0);
        prop_assert_eq!(entries(&phone).len(), before + 1);
    }
}

/// The fixed cases around the property: a forged write outside a grant is
/// refused, a revoked carer and an outsider receive no record byte.
#[test]
fn direct_sync_refuses_forged_writes_revoked_members_and_strangers() {
    let keys = MemorySecretStore::new();
    let mut phone = Profile::create(MemoryStore::new(), "Pat", Unlock::SecretStore(&keys)).unwrap();
    for (n, s) in GRANTABLE.iter().enumerate() {
        phone.add_resources(vec![resource(*s, n)], None).unwrap();
    }
    // A provider granted labs; its device misbehaves: it offers a
    // medications change (signed by it, sealed under a key of its own).
    let gp_id = Identity::generate("gp", Role::Provider, None).unwrap();
    let gp_card = gp_id.card().clone();
    grant(&mut phone, &gp_card, GrantRole::Writer, &[Section::Labs]);
    let forged = Envelope::seal(
        &SectionKey::generate().unwrap(),
        EnvelopeHeader {
            record_id: phone.record_id(),
            section: "medications".into(),
            epoch: 0,
            author: gp_id.id(),
            seq: 1,
        },
        b"a forged change",
        &gp_id,
    )
    .unwrap()
    .to_bytes();
    let before = entries(&phone);
    let meds = LogName::Section(Section::Medications);
    let meds_before = phone.log_hashes(meds).unwrap();
    // More envelopes than its own summary counted: the session ends.
    let (flood, _) = misbehaving_writer(
        &mut phone,
        &gp_id,
        meds,
        vec![forged.clone(), forged.clone()],
    );
    assert!(matches!(flood, Err(SessionError::Protocol(_))), "{flood:?}");
    assert_eq!(entries(&phone), before);
    let (served, peer_done) = misbehaving_writer(&mut phone, &gp_id, meds, vec![forged]);
    let peer_done = peer_done.expect("the phone answered Done");
    let served = served.unwrap();
    assert_eq!(served.refused, 1, "{served:?}");
    assert_eq!(served.merged, 0);
    assert_eq!(peer_done.refused, 1);
    assert_eq!(entries(&phone), before);
    assert_eq!(phone.log_hashes(meds).unwrap(), meds_before);

    // A carer granted, synced, then revoked: refused, nothing new received.
    let (mut carer, carer_card) = member_device(&phone, &keys, "carer", Role::Carer);
    grant(
        &mut phone,
        &carer_card,
        GrantRole::Reader,
        &[Section::Allergies],
    );
    let (a, b) = direct(&mut phone, &mut carer);
    a.unwrap();
    b.unwrap();
    let st = phone.revoke_statement(&carer_card.id(), None).unwrap();
    phone.apply_access_direct(vec![st]).unwrap();
    phone
        .add_resources(vec![resource(Section::Allergies, 99)], None)
        .unwrap();
    let held_before = held(&carer);
    let (a, b) = direct(&mut phone, &mut carer);
    assert!(
        matches!(a, Err(SessionError::Refused(RefusalReason::NotAMember))),
        "{a:?}"
    );
    assert!(
        matches!(b, Err(SessionError::PeerRefused(RefusalReason::NotAMember))),
        "{b:?}"
    );
    assert_eq!(held(&carer), held_before);
    // The same when the revoked carer is the one listening.
    let (a, b) = direct(&mut carer, &mut phone);
    assert!(a.is_err() && b.is_err());
    assert_eq!(held(&carer), held_before);

    // A stranger (a member of another record) is refused either way.
    let mut stranger =
        Profile::create(MemoryStore::new(), "Eve", Unlock::SecretStore(&keys)).unwrap();
    let (a, b) = direct(&mut phone, &mut stranger);
    assert!(
        matches!(
            b,
            Err(SessionError::PeerRefused(RefusalReason::OtherRecord))
        ),
        "{b:?}"
    );
    assert!(a.is_err());
    let (outsider, _) = {
        let id = Identity::generate("outsider", Role::Carer, None).unwrap();
        let card = id.card().clone();
        (
            Profile::create_member(
                MemoryStore::new(),
                Unlock::SecretStore(&keys),
                id,
                phone.member_info(),
            )
            .unwrap(),
            card,
        )
    };
    let mut outsider = outsider;
    let (a, b) = direct(&mut phone, &mut outsider);
    assert!(
        matches!(b, Err(SessionError::PeerRefused(RefusalReason::NotAMember))),
        "{b:?}"
    );
    assert!(a.is_err());
    assert!(logs_held(&outsider).is_empty());
    assert!(outsider.access_hashes().unwrap().is_empty());
}

/// A member device that follows the protocol by hand and offers `forged`
/// in `log`. Returns the phone's report and the phone's `Done`.
fn misbehaving_writer(
    phone: &mut Profile<MemoryStore>,
    identity: &Identity,
    log: LogName,
    forged: Vec<Vec<u8>>,
) -> (
    Result<DirectReport, SessionError>,
    Option<satchel_core::protocol::direct::Done>,
) {
    use satchel_core::nearby::channel::Channel;
    use satchel_core::protocol::direct::{
        proof_message, Envelopes, Hello, LogDigest, Message, Side, Summary, VERSION,
    };
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let record = phone.record_id();
    let access = phone.access_hashes().unwrap();
    thread::scope(|s| {
        let server = s.spawn(|| {
            let (stream, _) = listener.accept().unwrap();
            serve_connection(
                phone,
                stream,
                Pairing::default(),
                Duration::from_secs(10),
                now_ms(),
            )
        });
        let mut ch = Channel::initiate(std::net::TcpStream::connect(addr).unwrap()).unwrap();
        let proof = identity.sign(&proof_message(
            ch.handshake_hash(),
            Side::Initiator,
            &record,
        ));
        ch.send(&Message::Hello(Hello {
            version: VERSION,
            card: identity.card().to_bytes(),
            record,
            proof: proof.to_vec(),
            access_len: access.len() as u64,
            access_head: *access.last().unwrap(),
            token: None,
        }))
        .unwrap();
        assert!(matches!(ch.recv().unwrap(), Message::Hello(_)));
        ch.send(&Message::Access(vec![])).unwrap();
        assert!(matches!(ch.recv().unwrap(), Message::Access(_)));
        let hash = satchel_core::store::envelope_hash(&forged[0]);
        ch.send(&Message::Summary(Summary {
            logs: vec![LogDigest::of(&[hash]).summary(log)],
            have: vec![],
        }))
        .unwrap();
        assert!(matches!(ch.recv().unwrap(), Message::Summary(_)));
        ch.send(&Message::Envelopes(Envelopes {
            log: log.as_str().to_string(),
            envelopes: forged,
        }))
        .unwrap();
        // The phone may already have ended the session.
        let _ = ch.send(&Message::Want(vec![]));
        let done = loop {
            match ch.recv() {
                Ok(Message::Envelopes(_)) => continue,
                Ok(Message::Done(d)) => break Some(d),
                _ => break None,
            }
        };
        if let Some(d) = done {
            ch.send(&Message::Done(d)).unwrap();
        }
        (server.join().unwrap(), done)
    })
}

fn carer_card(name: &str) -> satchel_core::crypto::IdentityCard {
    Identity::generate(name, Role::Carer, None)
        .unwrap()
        .card()
        .clone()
}

#[test]
fn access_log_fork_and_rollback_detected() {
    let keys = MemorySecretStore::new();
    let mut phone = Profile::create(MemoryStore::new(), "Pat", Unlock::SecretStore(&keys)).unwrap();
    let mut tablet = owner_device(&mut phone, &keys, "tablet");
    let mut laptop = owner_device(&mut phone, &keys, "laptop");
    for other in [&mut tablet, &mut laptop] {
        let (a, b) = direct(&mut phone, other);
        a.unwrap();
        b.unwrap();
    }
    assert_eq!(
        laptop.access_hashes().unwrap(),
        phone.access_hashes().unwrap()
    );

    // Behind is not a fork: the phone grants a carer, the tablet catches
    // up, and the phone's log is never replaced by the shorter one.
    grant(
        &mut phone,
        &carer_card("x"),
        GrantRole::Reader,
        &[Section::Labs],
    );
    let phone_log = phone.access_hashes().unwrap();
    let (a, b) = direct(&mut tablet, &mut phone);
    a.unwrap();
    b.unwrap();
    assert_eq!(phone.access_hashes().unwrap(), phone_log);
    assert_eq!(tablet.access_hashes().unwrap(), phone_log);
    assert!(phone.access_fork().unwrap().is_none());

    // The laptop, offline, grants someone else on top of the old head:
    // the same length, another head. Both devices refuse and remember it.
    grant(
        &mut laptop,
        &carer_card("y"),
        GrantRole::Reader,
        &[Section::Labs],
    );
    let laptop_log = laptop.access_hashes().unwrap();
    assert_eq!(laptop_log.len(), phone_log.len());
    let (a, b) = direct(&mut phone, &mut laptop);
    assert!(
        matches!(
            a,
            Err(SessionError::Refused(RefusalReason::Fork))
                | Err(SessionError::PeerRefused(RefusalReason::Fork))
        ),
        "{a:?}"
    );
    assert!(
        matches!(
            b,
            Err(SessionError::Refused(RefusalReason::Fork))
                | Err(SessionError::PeerRefused(RefusalReason::Fork))
        ),
        "{b:?}"
    );
    assert_eq!(phone.access_hashes().unwrap(), phone_log);
    assert_eq!(laptop.access_hashes().unwrap(), laptop_log);
    let seen = phone
        .access_fork()
        .unwrap()
        .expect("the phone shows the fork");
    assert_eq!(seen.peer, laptop.device_id());
    let seen = laptop
        .access_fork()
        .unwrap()
        .expect("the laptop shows the fork");
    assert_eq!(seen.peer, phone.device_id());

    // A longer diverging chain is no better: the tablet (at the phone's
    // head) is offered nothing and keeps its log; both see the fork.
    grant(
        &mut laptop,
        &carer_card("z"),
        GrantRole::Reader,
        &[Section::Labs],
    );
    let (a, b) = direct(&mut tablet, &mut laptop);
    assert!(a.is_err() && b.is_err(), "{a:?} {b:?}");
    assert_eq!(tablet.access_hashes().unwrap(), phone_log);
    assert!(tablet.access_fork().unwrap().is_some());
}

// ----- with a relay ------------------------------------------------------

use satchel_core::sync::sharing as net;
use satchel_core::sync::RelayClient;
use satchel_tests::Relay;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn encounter(text: &str) -> Value {
    json!({"resourceType": "Encounter", "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "type": [{"text": text}],
        "subject": {"reference": "Patient/p"}, "period": {"start": "2026-12-01"}})
}

/// Who is granted: name, identity role, grant role, sections.
struct Grantee<'a>(&'a str, Role, GrantRole, &'a [Section]);

/// A member of `owner`'s record granted `role` on `sections` through the
/// relay, with its first sync done.
fn relay_member(
    rt: &tokio::runtime::Runtime,
    url: &str,
    owner: &mut Profile<MemoryStore>,
    owner_client: &mut RelayClient,
    keys: &MemorySecretStore,
    who: Grantee<'_>,
) -> (Profile<MemoryStore>, RelayClient) {
    let Grantee(name, role, grant_role, sections) = who;
    let id = Identity::generate(name, role, None).unwrap();
    let card = id.card().clone();
    let mut member = Profile::create_member(
        MemoryStore::new(),
        Unlock::SecretStore(keys),
        id,
        owner.member_info(),
    )
    .unwrap();
    rt.block_on(owner_client.sync(owner)).unwrap();
    let st = owner
        .grant_statement(&card, grant_role, sections, None, name)
        .unwrap();
    rt.block_on(net::post_statement(owner_client, owner, st))
        .unwrap();
    let mut client = RelayClient::new(url).unwrap();
    rt.block_on(client.sync(&mut member)).unwrap();
    (member, client)
}

#[test]
fn forwarded_note_reaches_carer() {
    let dir = tempfile::tempdir().unwrap();
    let mut relay = Relay::start(&dir.path().join("relay"));
    let url = relay.url();
    let rt = runtime();
    let keys = MemorySecretStore::new();
    let mut phone = Profile::create(MemoryStore::new(), "Pat", Unlock::SecretStore(&keys)).unwrap();
    let mut phone_client = RelayClient::new(&url).unwrap();
    rt.block_on(phone_client.sync(&mut phone)).unwrap();
    let (mut tablet, _) = relay_member(
        &rt,
        &url,
        &mut phone,
        &mut phone_client,
        &keys,
        Grantee(
            "Dr Ade",
            Role::Provider,
            GrantRole::Writer,
            &[Section::Encounters],
        ),
    );
    let (mut carer, mut carer_client) = relay_member(
        &rt,
        &url,
        &mut phone,
        &mut phone_client,
        &keys,
        Grantee(
            "Jane",
            Role::Carer,
            GrantRole::Reader,
            &[Section::Encounters],
        ),
    );

    // The relay is gone; the GP writes a consultation note offline and
    // syncs it to the patient's phone directly.
    relay.kill();
    tablet
        .add_resources(vec![encounter("home visit")], None)
        .unwrap();
    let (a, b) = direct(&mut phone, &mut tablet);
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a.merged, 1, "{a:?}");
    assert_eq!(b.sent, 1);
    let note = phone
        .query(&Query::default())
        .into_iter()
        .find(|e| e.section == Section::Encounters)
        .expect("the phone has the note");
    assert_eq!(note.current.author, tablet.device_id());
    assert_eq!(phone.outbox(100).unwrap().len(), 1, "queued for the relay");

    // The relay comes back: the phone forwards, the carer receives it with
    // the GP shown as contributor, on the record and in the relay's audit.
    relay.restart();
    rt.block_on(phone_client.sync(&mut phone)).unwrap();
    assert!(phone.outbox(100).unwrap().is_empty(), "acknowledged");
    rt.block_on(carer_client.sync(&mut carer)).unwrap();
    let seen: Vec<_> = carer
        .query(&Query::default())
        .into_iter()
        .filter(|e| e.section == Section::Encounters)
        .collect();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].current.author, tablet.device_id());
    assert_eq!(seen[0].current.resource, note.current.resource);
    let audit = rt
        .block_on(net::fetch_audit(&mut phone_client, &mut phone))
        .unwrap();
    let pushes: Vec<_> = audit
        .iter()
        .filter(|e| e.action == "push" && e.section == "encounters")
        .collect();
    assert_eq!(pushes.len(), 1, "{pushes:?}");
    assert_eq!(
        pushes[0].identity,
        tablet.device_id(),
        "the author, not the forwarder"
    );
}

#[test]
fn same_envelope_two_paths_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start(&dir.path().join("relay"));
    let url = relay.url();
    let rt = runtime();
    let keys = MemorySecretStore::new();
    let mut phone = Profile::create(MemoryStore::new(), "Pat", Unlock::SecretStore(&keys)).unwrap();
    let mut phone_client = RelayClient::new(&url).unwrap();
    let (mut tablet, mut tablet_client) = relay_member(
        &rt,
        &url,
        &mut phone,
        &mut phone_client,
        &keys,
        Grantee(
            "Dr Ade",
            Role::Provider,
            GrantRole::Writer,
            &[Section::Labs],
        ),
    );
    let labs = LogName::Section(Section::Labs);

    // 1. Relay first, then directly: already held.
    phone.add_resources(vec![lab(1)], None).unwrap();
    rt.block_on(phone_client.sync(&mut phone)).unwrap();
    rt.block_on(tablet_client.sync(&mut tablet)).unwrap();
    let held = tablet.log_hashes(labs).unwrap();
    assert_eq!(held.len(), 1);
    let (a, b) = direct(&mut phone, &mut tablet);
    assert!(a.unwrap().in_sync && b.unwrap().in_sync);

    // 2. Directly first, then from the relay: stored once; the forwarded
    // copy leaves the outbox when the relay acknowledges it.
    phone.add_resources(vec![lab(2)], None).unwrap();
    rt.block_on(phone_client.sync(&mut phone)).unwrap();
    let (a, b) = direct(&mut phone, &mut tablet);
    a.unwrap();
    assert_eq!(b.unwrap().merged, 1);
    assert_eq!(tablet.log_hashes(labs).unwrap().len(), 2);
    assert_eq!(tablet.outbox(100).unwrap().len(), 1);
    let round = rt.block_on(tablet_client.sync(&mut tablet)).unwrap();
    assert!(tablet.outbox(100).unwrap().is_empty(), "{round:?}");
    assert_eq!(tablet.log_hashes(labs).unwrap().len(), 2);
    assert_eq!(entries(&tablet).len(), 2);

    // 3. The tablet's own write reaches the phone directly and the relay
    // from both: once everywhere, the phone's outbox and acks right.
    tablet.add_resources(vec![lab(3)], None).unwrap();
    let (a, b) = direct(&mut tablet, &mut phone);
    a.unwrap();
    assert_eq!(b.unwrap().merged, 1);
    rt.block_on(tablet_client.sync(&mut tablet)).unwrap();
    rt.block_on(phone_client.sync(&mut phone)).unwrap();
    assert!(phone.outbox(100).unwrap().is_empty());
    assert!(tablet.outbox(100).unwrap().is_empty());
    assert_eq!(phone.log_hashes(labs).unwrap().len(), 3);
    assert_eq!(tablet.log_hashes(labs).unwrap().len(), 3);
    assert_eq!(entries(&phone), entries(&tablet));
    // The relay holds each once: a fresh device pulls three.
    let (fresh, _) = relay_member(
        &rt,
        &url,
        &mut phone,
        &mut phone_client,
        &keys,
        Grantee("Dr Bo", Role::Provider, GrantRole::Reader, &[Section::Labs]),
    );
    assert_eq!(fresh.log_hashes(labs).unwrap().len(), 3);
}
