//! Sharing through profiles: grants, revocation with key rotation, a
//! manager acting for the owner, writers and forged writes. The relay is
//! played by [`Relay`] below (ordering and storage only; the relay's own
//! checks are tested in sync-server and tests/).
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;

use proptest::prelude::*;
use serde_json::json;

use super::*;
use crate::crypto::{Envelope, KdfParams, Role};
use crate::sharing::GrantRole;
use crate::store::MemoryStore;

fn unlock() -> Unlock<'static> {
    Unlock::Passphrase {
        passphrase: b"pw",
        params: Some(KdfParams::for_tests()),
    }
}

/// One resource per section used here.
fn resource(section: Section, n: usize) -> Value {
    match section {
        Section::Allergies => json!({"resourceType": "AllergyIntolerance", "id": format!("a{n}"),
            "code": {"text": format!("allergy {n}")}, "patient": {"reference": "Patient/p"}}),
        Section::Medications => {
            json!({"resourceType": "MedicationStatement", "id": format!("m{n}"),
            "status": "active", "medicationCodeableConcept": {"text": format!("med {n}")},
            "subject": {"reference": "Patient/p"}})
        }
        Section::Conditions => json!({"resourceType": "Condition", "id": format!("c{n}"),
            "code": {"text": format!("condition {n}")}, "subject": {"reference": "Patient/p"}}),
        Section::Immunizations => json!({"resourceType": "Immunization", "id": format!("i{n}"),
            "status": "completed", "vaccineCode": {"text": format!("vaccine {n}")},
            "patient": {"reference": "Patient/p"}, "occurrenceDateTime": "2020-01-01"}),
        _ => json!({"resourceType": "Observation", "id": format!("o{n}"), "status": "final",
            "code": {"text": format!("lab {n}")}, "subject": {"reference": "Patient/p"}}),
    }
}

const SECTIONS: [Section; 5] = [
    Section::Allergies,
    Section::Medications,
    Section::Conditions,
    Section::Immunizations,
    Section::Labs,
];

/// Stand-in for the relay's storage: statements and envelopes in order.
#[derive(Default)]
struct Relay {
    statements: Vec<crate::sharing::SignedStatement>,
    envelopes: Vec<(u64, String, Vec<u8>)>,
}

impl Relay {
    fn publish(&mut self, p: &mut Profile<MemoryStore>) {
        let out = p.outbox(10_000).unwrap();
        let mut acks = Vec::new();
        for item in out {
            let seq = self.envelopes.len() as u64 + 1;
            self.envelopes
                .push((seq, item.section.as_str().to_string(), item.envelope));
            acks.push((item.hash, seq));
        }
        p.acknowledge(&acks).unwrap();
    }

    /// Append a statement made by `p` and apply it there.
    fn statement(&mut self, p: &mut Profile<MemoryStore>, s: crate::sharing::SignedStatement) {
        self.statements.push(s);
        p.apply_access(self.statements.clone(), 0).unwrap();
    }

    /// Everything the relay holds, delivered to `p` whatever its grants
    /// (a member that holds every byte). Returns the merge reports.
    fn deliver_all(&self, p: &mut Profile<MemoryStore>) -> Vec<ApplyReport> {
        p.apply_access(self.statements.clone(), 0).unwrap();
        let sections: BTreeSet<String> = self.envelopes.iter().map(|e| e.1.clone()).collect();
        sections
            .iter()
            .map(|s| {
                let envs: Vec<(u64, Vec<u8>)> = self
                    .envelopes
                    .iter()
                    .filter(|e| &e.1 == s)
                    .map(|e| (e.0, e.2.clone()))
                    .collect();
                let next = envs.last().map_or(0, |e| e.0);
                p.apply_remote(s.parse().unwrap(), None, envs, next)
                    .unwrap()
            })
            .collect()
    }
}

fn owner() -> Profile<MemoryStore> {
    Profile::create(MemoryStore::new(), "Pat", unlock()).unwrap()
}

fn member(owner: &Profile<MemoryStore>, name: &str, role: Role) -> Profile<MemoryStore> {
    let id = Identity::generate(name, role, None).unwrap();
    Profile::create_member(MemoryStore::new(), unlock(), id, owner.member_info()).unwrap()
}

/// Run `write` as a tampered client would: this profile's own view of its
/// grant is widened to a manager's for the call, so its client-side check
/// passes (the relay and the other devices still hold the real log).
fn tampered<T>(
    p: &mut Profile<MemoryStore>,
    write: impl FnOnce(&mut Profile<MemoryStore>) -> T,
) -> T {
    let honest = p.access.members.clone();
    let me = p.identity.id();
    if let Some(g) = p.access.members.grants.get_mut(&me) {
        g.role = GrantRole::Manager;
        g.sections
            .extend(Section::ALL.map(|s| s.as_str().to_string()));
    }
    let out = write(p);
    p.access.members = honest;
    out
}

/// The owner grants `to` `role` over `sections` (no expiry) through the relay.
fn grant(
    relay: &mut Relay,
    owner: &mut Profile<MemoryStore>,
    to: &Profile<MemoryStore>,
    role: GrantRole,
    sections: &[Section],
    label: &str,
) {
    let s = owner
        .grant_statement(to.identity_card(), role, sections, None, label)
        .unwrap();
    relay.statement(owner, s);
}

fn sections_seen(p: &Profile<MemoryStore>) -> BTreeSet<Section> {
    p.query(&Query::default())
        .iter()
        .map(|e| e.section)
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, .. ProptestConfig::default() })]

    /// Random grant matrices: each identity decrypts exactly the sections
    /// it was granted, nothing else, though it is handed every envelope.
    #[test]
    fn carer_sees_only_granted_sections(
        matrix in prop::collection::vec(prop::collection::btree_set(0usize..5, 0..=5), 1..4)
    ) {
        let mut relay = Relay::default();
        let mut pat = owner();
        let mut members = Vec::new();
        for (i, granted) in matrix.iter().enumerate() {
            let m = member(&pat, &format!("carer {i}"), Role::Carer);
            let sections: Vec<Section> = granted.iter().map(|k| SECTIONS[*k]).collect();
            if !sections.is_empty() {
                let s = pat
                    .grant_statement(m.identity_card(), GrantRole::Reader, &sections, None, "carer")
                    .unwrap();
                relay.statement(&mut pat, s);
            }
            members.push((m, sections.into_iter().collect::<BTreeSet<_>>()));
        }
        for (n, section) in SECTIONS.iter().enumerate() {
            pat.add_resources(vec![resource(*section, n)], None).unwrap();
        }
        relay.publish(&mut pat);
        for (m, granted) in &mut members {
            let reports = relay.deliver_all(m);
            prop_assert_eq!(&sections_seen(m), &*granted);
            let refused: usize = reports.iter().map(|r| r.rejected.len()).sum();
            prop_assert_eq!(refused, SECTIONS.len() - granted.len());
        }
    }
}

#[test]
fn revoked_reader_decrypts_nothing_written_after() {
    let mut relay = Relay::default();
    let mut pat = owner();
    let mut carer = member(&pat, "daughter", Role::Carer);
    grant(
        &mut relay,
        &mut pat,
        &carer,
        GrantRole::Reader,
        &[Section::Medications],
        "daughter",
    );
    pat.add_resources(vec![resource(Section::Medications, 1)], None)
        .unwrap();
    relay.publish(&mut pat);
    relay.deliver_all(&mut carer);
    assert_eq!(carer.query(&Query::default()).len(), 1);

    let s = pat.revoke_statement(&carer.device_id(), None).unwrap();
    relay.statement(&mut pat, s);
    assert_eq!(pat.members().epoch("medications"), 1);
    for n in 2..7 {
        pat.add_resources(vec![resource(Section::Medications, n)], None)
            .unwrap();
    }
    relay.publish(&mut pat);
    // The carer keeps its keys and is handed every byte.
    let reports = relay.deliver_all(&mut carer);
    assert_eq!(
        carer.query(&Query::default()).len(),
        1,
        "nothing new readable"
    );
    assert_eq!(reports.iter().map(|r| r.rejected.len()).sum::<usize>(), 5);
    // The owner's own other device, added after, reads everything through
    // the key chain.
    let mut tablet = member(&pat, "tablet", Role::PatientDevice);
    let s = pat.add_device_statement(tablet.identity_card()).unwrap();
    relay.statement(&mut pat, s);
    relay.deliver_all(&mut tablet);
    assert_eq!(tablet.query(&Query::default()).len(), 6);
}

#[test]
fn writers_write_only_their_sections_and_readers_cannot_write() {
    let mut relay = Relay::default();
    let mut pat = owner();
    let mut gp = member(&pat, "GP", Role::Provider);
    let mut carer = member(&pat, "carer", Role::Carer);
    grant(
        &mut relay,
        &mut pat,
        &gp,
        GrantRole::Writer,
        &[Section::Labs],
        "GP",
    );
    grant(
        &mut relay,
        &mut pat,
        &carer,
        GrantRole::Reader,
        &[Section::Labs],
        "carer",
    );
    relay.deliver_all(&mut gp);
    relay.deliver_all(&mut carer);
    // The writer writes labs; its client refuses medications, and even a
    // tampered client could not seal them (no key).
    gp.add_resources(vec![resource(Section::Labs, 1)], Some("gp-system"))
        .unwrap();
    assert!(matches!(
        gp.add_resources(vec![resource(Section::Medications, 2)], None),
        Err(ImportError::Profile(ProfileError::ReadOnly("medications")))
    ));
    assert!(matches!(
        tampered(&mut gp, |p| p
            .add_resources(vec![resource(Section::Medications, 2)], None)),
        Err(ImportError::Profile(ProfileError::NoKey(_)))
    ));
    // The reader holds the labs key: its own client refuses to write...
    assert!(matches!(
        carer.add_resources(vec![resource(Section::Labs, 3)], None),
        Err(ImportError::Profile(ProfileError::ReadOnly("labs")))
    ));
    // ...so a tampered client that skips that check forges a write with it.
    tampered(&mut carer, |p| {
        p.add_resources(vec![resource(Section::Labs, 3)], None)
    })
    .unwrap();
    relay.publish(&mut gp);
    relay.publish(&mut carer);
    let reports = relay.deliver_all(&mut pat);
    let entries = pat.query(&Query::default());
    assert_eq!(entries.len(), 1, "only the writer's entry merges");
    assert_eq!(entries[0].current.author, gp.device_id());
    let refused: Vec<_> = reports.iter().flat_map(|r| r.rejected.clone()).collect();
    assert_eq!(refused.len(), 1);
    assert_eq!(refused[0].author, Some(carer.device_id()));
}

#[test]
fn manager_can_grant_and_revoke_on_behalf() {
    let mut relay = Relay::default();
    let mut pat = owner();
    let mut parent = member(&pat, "parent", Role::Manager);
    grant(
        &mut relay,
        &mut pat,
        &parent,
        GrantRole::Manager,
        &[],
        "parent",
    );
    relay.deliver_all(&mut parent);
    assert!(parent.may_administer());
    assert_eq!(parent.readable_sections().len(), Section::ALL.len());
    let mut nurse = member(&pat, "nurse", Role::Carer);
    let s = parent
        .grant_statement(
            nurse.identity_card(),
            GrantRole::Reader,
            &[Section::Immunizations],
            None,
            "school nurse",
        )
        .unwrap();
    relay.statement(&mut parent, s);
    pat.add_resources(vec![resource(Section::Immunizations, 1)], None)
        .unwrap();
    relay.publish(&mut pat);
    relay.deliver_all(&mut nurse);
    assert_eq!(nurse.query(&Query::default()).len(), 1);
    // The manager revokes; the owner follows the rotation.
    let s = parent.revoke_statement(&nurse.device_id(), None).unwrap();
    relay.statement(&mut parent, s);
    relay.deliver_all(&mut pat);
    assert_eq!(pat.members().epoch("immunizations"), 1);
    pat.add_resources(vec![resource(Section::Immunizations, 2)], None)
        .unwrap();
    relay.publish(&mut pat);
    relay.deliver_all(&mut nurse);
    relay.deliver_all(&mut parent);
    assert_eq!(nurse.query(&Query::default()).len(), 1);
    assert_eq!(
        parent
            .query(&Query::default())
            .iter()
            .filter(|e| e.section == Section::Immunizations)
            .count(),
        2
    );
    // A carer cannot grant.
    assert!(matches!(
        nurse.grant_statement(
            pat.identity_card(),
            GrantRole::Reader,
            &[Section::Labs],
            None,
            "x"
        ),
        Err(ProfileError::NotAllowed(_))
    ));
}

/// A provider's write grant that includes demographics lets it read the
/// record's Patient (to check what it pushes is about this patient) but
/// never write demographics: refused by its own client, and a tampered
/// client's write is not merged by the patient's device.
#[test]
fn writers_never_write_demographics() {
    let mut relay = Relay::default();
    let mut pat = owner();
    pat.add_resources(
        vec![
            json!({"resourceType": "Patient", "id": "p", "name": [{"family": "Example"}],
                    "birthDate": "1970-01-01"}),
        ],
        None,
    )
    .unwrap();
    relay.publish(&mut pat);
    let mut gp = member(&pat, "GP", Role::Provider);
    grant(
        &mut relay,
        &mut pat,
        &gp,
        GrantRole::Writer,
        &[Section::Demographics, Section::Labs],
        "GP",
    );
    relay.deliver_all(&mut gp);
    assert!(
        gp.record_patient().is_some(),
        "the provider reads the Patient"
    );
    let me = gp.device_id();
    assert!(gp.members().may_write(&me, "labs", i64::MAX - 1));
    assert!(!gp.members().may_write(&me, "demographics", 0));
    let other = json!({"resourceType": "Patient", "id": "q", "name": [{"family": "Other"}],
                       "birthDate": "1980-01-01"});
    assert!(matches!(
        gp.add_resources(vec![other.clone()], None),
        Err(ImportError::Profile(ProfileError::ReadOnly("demographics")))
    ));
    let patient = gp.record_patient().unwrap();
    assert!(matches!(
        gp.amend(&patient.id, other.clone()),
        Err(ProfileError::ReadOnly("demographics"))
    ));
    // A tampered provider client amends the Patient anyway: not merged.
    tampered(&mut gp, |p| p.amend(&patient.id, other)).unwrap();
    relay.publish(&mut gp);
    let reports = relay.deliver_all(&mut pat);
    let refused: Vec<_> = reports.iter().flat_map(|r| r.rejected.clone()).collect();
    assert_eq!(refused.len(), 1);
    assert_eq!(pat.history(&patient.id).unwrap().len(), 1);
}

/// Every entry shows its contributor from a verified signature: a change
/// envelope whose versions name someone other than its signer (a writer
/// passing its entry off as the patient's own) is refused whole by the
/// patient's device; the writer's honest entry merges.
#[test]
fn a_version_naming_another_author_is_not_merged() {
    let mut relay = Relay::default();
    let mut pat = owner();
    let mut gp = member(&pat, "GP", Role::Provider);
    grant(
        &mut relay,
        &mut pat,
        &gp,
        GrantRole::Writer,
        &[Section::Labs],
        "GP",
    );
    relay.deliver_all(&mut gp);
    gp.add_resources(vec![resource(Section::Labs, 1)], Some("gp-system"))
        .unwrap();
    relay.publish(&mut gp);
    // A tampered client writes a version that claims the patient's device
    // as its author, and seals it (signed by the GP) like any change.
    gp.record
        .section_mut(Section::Labs)
        .add_entry(crate::record::NewEntry {
            resource: resource(Section::Labs, 2),
            author: pat.device_id(),
            recorded_at_ms: 5,
            source_system: None,
            source_id: None,
        })
        .unwrap();
    gp.persist(crate::store::WriteBatch::new()).unwrap();
    relay.publish(&mut gp);
    let reports = relay.deliver_all(&mut pat);
    let refused: Vec<_> = reports.iter().flat_map(|r| r.rejected.clone()).collect();
    assert_eq!(refused.len(), 1);
    assert_eq!(
        refused[0].reason,
        "a version names another author than the envelope's signer"
    );
    assert_eq!(refused[0].author, Some(gp.device_id()));
    let entries = pat.query(&Query::default());
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].created_by, gp.device_id());
}

/// A device that sealed changes before it heard of a revocation seals them
/// again under the new epoch when the access log arrives, before anything
/// is uploaded: the revoked reader, handed every byte, reads none of them.
#[test]
fn queued_changes_are_resealed_when_a_revocation_arrives() {
    let mut relay = Relay::default();
    let mut pat = owner();
    let mut tablet = member(&pat, "tablet", Role::PatientDevice);
    let s = pat.add_device_statement(tablet.identity_card()).unwrap();
    relay.statement(&mut pat, s);
    let mut carer = member(&pat, "daughter", Role::Carer);
    grant(
        &mut relay,
        &mut pat,
        &carer,
        GrantRole::Reader,
        &[Section::Medications],
        "daughter",
    );
    relay.deliver_all(&mut tablet);
    // Offline, the tablet writes under epoch 0.
    for n in 1..4 {
        tablet
            .add_resources(vec![resource(Section::Medications, n)], None)
            .unwrap();
    }
    let queued = tablet.outbox(100).unwrap();
    assert!(queued
        .iter()
        .all(|i| Envelope::from_bytes(&i.envelope).unwrap().header.epoch == 0));
    // Meanwhile the phone revokes the carer.
    let s = pat.revoke_statement(&carer.device_id(), None).unwrap();
    relay.statement(&mut pat, s);
    // The tablet learns of it: its queue is sealed again, same numbers.
    tablet.apply_access(relay.statements.clone(), 0).unwrap();
    let resealed = tablet.outbox(100).unwrap();
    assert_eq!(resealed.len(), queued.len());
    for (old, new) in queued.iter().zip(&resealed) {
        let (old, new) = (
            Envelope::from_bytes(&old.envelope).unwrap(),
            Envelope::from_bytes(&new.envelope).unwrap(),
        );
        assert_eq!(new.header.epoch, 1);
        assert_eq!(new.header.seq, old.header.seq);
    }
    // Still readable on the tablet (reopened from its store) and by the owner.
    tablet.refresh().unwrap();
    assert_eq!(tablet.query(&Query::default()).len(), 3);
    relay.publish(&mut tablet);
    relay.deliver_all(&mut pat);
    assert_eq!(pat.query(&Query::default()).len(), 3);
    // The revoked carer decrypts none of them.
    relay.deliver_all(&mut carer);
    assert_eq!(carer.query(&Query::default()).len(), 0);
}

#[test]
fn a_narrower_grant_is_shown_as_a_change_and_rotates_what_it_drops() {
    let mut relay = Relay::default();
    let mut pat = owner();
    let carer = member(&pat, "daughter", Role::Carer);
    assert_eq!(
        pat.grant_change(&carer.device_id(), GrantRole::Reader, &[Section::Labs]),
        None,
        "no grant yet: not a change"
    );
    grant(
        &mut relay,
        &mut pat,
        &carer,
        GrantRole::Reader,
        &[Section::Medications, Section::Allergies],
        "daughter",
    );
    let change = pat
        .grant_change(
            &carer.device_id(),
            GrantRole::Reader,
            &[Section::Medications, Section::Labs],
        )
        .unwrap();
    assert_eq!(change.gained, vec![Section::Labs]);
    assert_eq!(change.lost, vec![Section::Allergies]);
    grant(
        &mut relay,
        &mut pat,
        &carer,
        GrantRole::Reader,
        &[Section::Medications, Section::Labs],
        "daughter",
    );
    assert_eq!(pat.members().epoch("allergies"), 1);
    assert_eq!(pat.members().epoch("medications"), 0);
    assert!(!pat
        .members()
        .may_read(&carer.device_id(), "allergies", now_ms()));
}

/// A grant narrowed from two sections to one rotates the section taken
/// away; the readers who keep it (another carer, another owner device)
/// learn the new key from the grant statement's rotation and read what is
/// written afterwards; the narrowed carer does not.
#[test]
fn narrowed_grant_rotation_reaches_remaining_readers() {
    let mut relay = Relay::default();
    let mut pat = owner();
    let mut tablet = member(&pat, "tablet", Role::PatientDevice);
    let s = pat.add_device_statement(tablet.identity_card()).unwrap();
    relay.statement(&mut pat, s);
    let mut narrowed = member(&pat, "son", Role::Carer);
    let mut keeps = member(&pat, "daughter", Role::Carer);
    let both = [Section::Labs, Section::Allergies];
    grant(
        &mut relay,
        &mut pat,
        &narrowed,
        GrantRole::Reader,
        &both,
        "son",
    );
    grant(
        &mut relay,
        &mut pat,
        &keeps,
        GrantRole::Reader,
        &[Section::Labs],
        "daughter",
    );
    let s = pat
        .grant_statement(
            narrowed.identity_card(),
            GrantRole::Reader,
            &[Section::Allergies],
            None,
            "son",
        )
        .unwrap();
    relay.statement(&mut pat, s);
    assert_eq!(pat.members().epoch("labs"), 1);
    pat.add_resources(vec![resource(Section::Labs, 1)], None)
        .unwrap();
    relay.publish(&mut pat);
    for reader in [&mut keeps, &mut tablet] {
        let reports = relay.deliver_all(reader);
        assert_eq!(reports.iter().map(|r| r.rejected.len()).sum::<usize>(), 0);
        assert!(sections_seen(reader).contains(&Section::Labs));
    }
    relay.deliver_all(&mut narrowed);
    assert!(!sections_seen(&narrowed).contains(&Section::Labs));
}
