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
fn owner_device(owner: &mut Profile<MemoryStore>, keys: &MemorySecretStore, name: &str) -> Profile<MemoryStore> {
    let id = Identity::generate(name, Role::PatientDevice, None).unwrap();
    let card = id.card().clone();
    let device =
        Profile::create_member(MemoryStore::new(), Unlock::SecretStore(keys), id, owner.member_info()).unwrap();
    let statement = owner.add_device_statement(&card).unwrap();
    owner.apply_access_direct(vec![statement]).unwrap();
    device
}

/// `shower` shows a pairing code and serves; `scanner` connects with it.
/// Returns (shower's report, scanner's report).
fn direct<A: Store, B: Store>(
    shower: &mut Profile<A>,
    scanner: &mut Profile<B>,
) -> (Result<DirectReport, SessionError>, Result<DirectReport, SessionError>) {
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
                SessionError::Protocol(if failure.is_some() { "failed" } else { "no session" })
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
    phone.add_resources(vec![lab(1), medication(1)], None).unwrap();

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
    tablet.add_resources(vec![medication(2), lab(3)], None).unwrap();
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
