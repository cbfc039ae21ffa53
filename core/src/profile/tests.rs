#![allow(clippy::unwrap_used)]

use serde_json::json;

use super::*;
use crate::crypto::KdfParams;
use crate::store::{MemoryStore, SqliteStore};

const LABS: LogName = LogName::Section(Section::Labs);
const ALLERGIES: LogName = LogName::Section(Section::Allergies);

fn pass_unlock(p: &[u8]) -> Unlock<'_> {
    Unlock::Passphrase {
        passphrase: p,
        params: Some(KdfParams::for_tests()),
    }
}

fn observation(code: &str, display: &str, date: &str) -> Value {
    json!({
        "resourceType": "Observation",
        "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": code, "display": display}]},
        "effectiveDateTime": date,
        "valueQuantity": {"value": 5.4, "unit": "%"}
    })
}

fn allergy(text: &str) -> Value {
    json!({
        "resourceType": "AllergyIntolerance",
        "id": "a1",
        "code": {"text": text},
        "patient": {"reference": "Patient/p"},
        "recordedDate": "2020-01-02"
    })
}

#[test]
fn create_then_open_with_passphrase_restores_everything() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.db");
    let (record, device, entry) = {
        let mut p =
            Profile::create(SqliteStore::open(&path).unwrap(), "Sam", pass_unlock(b"pw")).unwrap();
        let added = p
            .add_resources(vec![observation("4548-4", "HbA1c", "2024-05-01")], None)
            .unwrap();
        (p.record_id(), p.device_id(), added[0].entry)
    };
    let p = Profile::open(SqliteStore::open(&path).unwrap(), pass_unlock(b"pw")).unwrap();
    assert_eq!(p.record_id(), record);
    assert_eq!(p.device_id(), device);
    assert_eq!(p.owner_name(), "Sam");
    let e = p.entry(&entry).unwrap();
    assert_eq!(e.section, Section::Labs);
    assert_eq!(e.current.author, device);
}

#[test]
fn wrong_passphrase_is_wrong_key() {
    let store = MemoryStore::new();
    let p = Profile::create(store, "Sam", pass_unlock(b"right")).unwrap();
    let store = p.into_store();
    let err = Profile::open(store, pass_unlock(b"wrong")).unwrap_err();
    assert!(matches!(err, ProfileError::WrongKey), "{err}");
    assert!(err.to_string().contains("wrong passphrase"));
}

#[test]
fn a_derived_vault_key_opens_its_own_store_only() {
    let a = Profile::create(MemoryStore::new(), "Sam", pass_unlock(b"right")).unwrap();
    let rid = a.record_id();
    let a = a.into_store();
    let b = Profile::create(MemoryStore::new(), "Kim", pass_unlock(b"right"))
        .unwrap()
        .into_store();
    let key = vault_key(&a, pass_unlock(b"right")).unwrap();
    assert_eq!(format!("{key:?}"), "VaultKey(<redacted>)");
    let opened = Profile::open(a.clone(), Unlock::Key(&key)).unwrap();
    assert_eq!(opened.record_id(), rid);
    // Another store (its own salt), a key from a wrong passphrase, and a
    // new vault: refused.
    assert!(matches!(
        Profile::open(b, Unlock::Key(&key)),
        Err(ProfileError::WrongKey)
    ));
    let wrong = vault_key(&a, pass_unlock(b"wrong")).unwrap();
    assert!(matches!(
        Profile::open(a, Unlock::Key(&wrong)),
        Err(ProfileError::WrongKey)
    ));
    assert!(matches!(
        Profile::create(MemoryStore::new(), "Sam", Unlock::Key(&key)),
        Err(ProfileError::WrongKey)
    ));
}

#[test]
fn secret_store_unlock_and_missing_key() {
    let keystore = MemorySecretStore::new();
    let p = Profile::create(MemoryStore::new(), "Sam", Unlock::SecretStore(&keystore)).unwrap();
    let store = p.into_store();
    let p = Profile::open(store, Unlock::SecretStore(&keystore)).unwrap();
    let store = p.into_store();
    // A passphrase for a keystore profile is the wrong kind of key.
    assert!(matches!(
        Profile::open(store.clone(), pass_unlock(b"x")),
        Err(ProfileError::WrongKey)
    ));
    // Another keystore (a different phone) has no key for it.
    let other = MemorySecretStore::new();
    assert!(matches!(
        Profile::open(store.clone(), Unlock::SecretStore(&other)),
        Err(ProfileError::MissingVaultKey)
    ));
    // A keystore holding a different key under that name: wrong key.
    let item = format!(
        "satchel.vault-key.{}",
        Profile::open(store.clone(), Unlock::SecretStore(&keystore))
            .unwrap()
            .record_id()
    );
    other.put(&item, &[7u8; 32]).unwrap();
    assert!(matches!(
        Profile::open(store, Unlock::SecretStore(&other)),
        Err(ProfileError::WrongKey)
    ));
}

#[test]
fn create_refuses_an_initialised_store() {
    let p = Profile::create(MemoryStore::new(), "Sam", pass_unlock(b"pw")).unwrap();
    let err = Profile::create(p.into_store(), "Eve", pass_unlock(b"pw")).unwrap_err();
    assert!(matches!(err, ProfileError::AlreadyInitialised));
}

#[test]
fn open_of_empty_store_is_not_initialised() {
    assert!(matches!(
        Profile::open(MemoryStore::new(), pass_unlock(b"pw")),
        Err(ProfileError::NotInitialised)
    ));
}

#[test]
fn one_bad_resource_refuses_the_whole_input() {
    let mut p = Profile::create(MemoryStore::new(), "Sam", pass_unlock(b"pw")).unwrap();
    let before = p.store().clone();
    let bad = json!({"resourceType": "Observation", "code": "not-a-concept"});
    let err = p
        .add_resources(vec![observation("1", "x", "2020"), bad], None)
        .unwrap_err();
    assert!(
        matches!(err, ImportError::InInput { index: 1, .. }),
        "{err}"
    );
    assert!(p.query(&Query::default()).is_empty());
    assert_eq!(p.store().last_seq().unwrap(), before.last_seq().unwrap());
    // A type no section holds, given on its own, is refused (in a Bundle
    // it is skipped and reported, as every import path does).
    let account = json!({"resourceType": "Account", "id": "x"});
    let err = p
        .add_resources(vec![allergy("Peanut"), account], None)
        .unwrap_err();
    assert!(err.to_string().contains("Account"), "{err}");
    assert!(p.query(&Query::default()).is_empty());
}

#[test]
fn amend_and_entered_in_error_survive_reopen_and_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.db");
    let keystore = MemorySecretStore::new();
    let (allergy_id, ids) = {
        let mut p = Profile::create(
            SqliteStore::open(&path).unwrap(),
            "Sam",
            Unlock::SecretStore(&keystore),
        )
        .unwrap();
        let a = p
            .add_resources(vec![allergy("Peanut")], Some("https://gp.example"))
            .unwrap()[0]
            .entry;
        let mut amended = allergy("Peanut");
        amended["criticality"] = json!("high");
        p.amend(&a, amended).unwrap();
        // Enough single writes to force several snapshots.
        let mut ids = Vec::new();
        for i in 0..(SNAPSHOT_EVERY * 2 + 5) {
            let day = format!("2021-01-{:02}", i % 28 + 1);
            ids.push(
                p.add_resources(vec![observation(&i.to_string(), "Glucose", &day)], None)
                    .unwrap()[0]
                    .entry,
            );
        }
        p.mark_entered_in_error(&ids[3]).unwrap();
        (a, ids)
    };
    let store = SqliteStore::open(&path).unwrap();
    assert!(store.load_section(LABS).unwrap().snapshot.is_some());
    assert!(store.load_section(LABS).unwrap().tail.len() < SNAPSHOT_EVERY);
    let p = Profile::open(store, Unlock::SecretStore(&keystore)).unwrap();
    let history = p.history(&allergy_id).unwrap();
    assert_eq!(history.len(), 2);
    assert_eq!(history[1].resource["criticality"], json!("high"));
    let visible = p.query(&Query {
        section: Some(Section::Labs),
        ..Query::default()
    });
    assert_eq!(visible.len(), ids.len() - 1);
    assert!(visible.iter().all(|e| e.id != ids[3]));
    let all = p.query(&Query {
        section: Some(Section::Labs),
        include_entered_in_error: true,
        ..Query::default()
    });
    assert_eq!(all.len(), ids.len());
    assert_eq!(p.history(&ids[3]).unwrap().len(), 2);
    let e = p.entry(&allergy_id).unwrap();
    assert_eq!(e.source_system.as_deref(), Some("https://gp.example"));
    assert_eq!(e.source_id.as_deref(), Some("AllergyIntolerance/a1"));
}

#[test]
fn tampered_store_is_reported_not_loaded() {
    let mut p = Profile::create(MemoryStore::new(), "Sam", pass_unlock(b"pw")).unwrap();
    p.add_resources(vec![allergy("Peanut")], None).unwrap();
    let mut store = p.into_store();
    let log = store.load_section(ALLERGIES).unwrap();
    let mut env = log.tail[0].envelope.clone();
    let last = env.len() - 70;
    env[last] ^= 1;
    let mut b = WriteBatch::new();
    b.append(ALLERGIES, env);
    store.commit(b).unwrap();
    let err = Profile::open(store, pass_unlock(b"pw")).unwrap_err();
    assert!(matches!(err, ProfileError::Corrupt(_)), "{err}");
}

#[test]
fn errors_carry_no_health_data() {
    let mut p = Profile::create(MemoryStore::new(), "Sam", pass_unlock(b"pw")).unwrap();
    let canary = "CANARY-7f3a-bronchiectasis";
    let bad =
        json!({"resourceType": "Observation", "code": {"coding": [{"system": canary, "code": 5}]}});
    let err = p.add_resources(vec![bad], None).unwrap_err();
    assert!(!format!("{err} {err:?}").contains(canary));
}

/// Each relay keeps its own sync state and acknowledgements: switching
/// relays resets nothing, and a change one relay acknowledged is still
/// owed to the other. The relay list is ordered, each address once.
#[test]
fn sync_state_and_outbox_are_per_relay() {
    const A: &str = "https://a.example";
    const B: &str = "https://b.example";
    let mut p = Profile::create(MemoryStore::new(), "Sam", pass_unlock(b"pw")).unwrap();
    p.add_resources(vec![allergy("latex")], None).unwrap();
    let state = p.sync_state(A).unwrap();
    assert_eq!(state.feed_cursor, 0);
    let owed = p.outbox(10).unwrap();
    assert_eq!(owed.len(), 1);
    p.acknowledge(&[(owed[0].hash, 1)]).unwrap();
    p.set_feed_cursor(9).unwrap();
    p.mark_registered().unwrap();
    assert!(p.outbox(10).unwrap().is_empty());
    // Relay B: nothing acknowledged, nothing pulled, not registered.
    let state = p.sync_state(B).unwrap();
    assert_eq!((state.feed_cursor, state.registered), (0, false));
    assert_eq!(p.outbox(10).unwrap().len(), 1);
    assert_eq!(p.waiting_for(A).unwrap(), 0);
    assert_eq!(p.waiting_for(B).unwrap(), 1);
    p.set_feed_cursor(4).unwrap();
    // Back to A: its state as it was; then B's as it was.
    let state = p.sync_state(A).unwrap();
    assert_eq!((state.feed_cursor, state.registered), (9, true));
    assert!(p.outbox(10).unwrap().is_empty());
    assert_eq!(p.sync_state(B).unwrap().feed_cursor, 4);
    assert_eq!(p.current_relay().unwrap().as_deref(), Some(B));

    let (a, b) = (
        crate::sync::RelayUrl::parse(A).unwrap(),
        crate::sync::RelayUrl::parse(B).unwrap(),
    );
    assert!(p.add_relay(&a).unwrap());
    assert!(p.add_relay(&b).unwrap());
    assert!(!p.add_relay(&a).unwrap());
    assert_eq!(p.relays().unwrap(), [a.clone(), b.clone()]);
    let c = crate::sync::RelayUrl::parse("https://c.example").unwrap();
    p.replace_relay(&a, &c).unwrap();
    assert_eq!(p.relays().unwrap(), [c.clone(), b.clone()]);
    p.replace_relay(&c, &b).unwrap();
    assert_eq!(p.relays().unwrap(), std::slice::from_ref(&b), "listed once");
    assert!(p.remove_relay(&b).unwrap());
    assert!(p.relays().unwrap().is_empty());
}
