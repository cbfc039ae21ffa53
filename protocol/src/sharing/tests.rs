use super::*;
use crate::crypto::{wrap_key, Identity, Role, SectionKey};
use crate::ids::RecordId;

struct Log {
    record: RecordId,
    creator: Identity,
    statements: Vec<SignedStatement>,
    members: Members,
}

impl Log {
    fn new() -> Self {
        let creator = Identity::generate("phone", Role::PatientDevice, None).unwrap();
        let record = RecordId::random();
        let members = Members::root(record, creator.id(), Some(creator.card()));
        Log {
            record,
            creator,
            statements: Vec::new(),
            members,
        }
    }

    fn make(&self, by: &Identity, change: AccessChange) -> SignedStatement {
        AccessStatement {
            record_id: self.record,
            by: by.id(),
            at_ms: 1_000,
            prev: self.members.head,
            change,
        }
        .sign(by)
        .unwrap()
    }

    fn push(&mut self, s: SignedStatement) -> Result<(), SharingError> {
        verify_next(&mut self.members, &s)?;
        self.statements.push(s);
        Ok(())
    }

    fn wrap(&self, to: &Identity, section: &str, epoch: u32) -> KeyWrap {
        let key = SectionKey::generate().unwrap();
        KeyWrap {
            section: section.into(),
            epoch,
            to: to.id(),
            key: wrap_key(
                to.card(),
                key.expose(),
                &key_wrap_aad(&self.record, section, epoch, &to.id()),
            )
            .unwrap(),
        }
    }

    fn grant(
        &self,
        by: &Identity,
        to: &Identity,
        role: GrantRole,
        sections: &[&str],
        expires: Option<i64>,
    ) -> SignedStatement {
        let keys = sections
            .iter()
            .map(|s| self.wrap(to, s, self.members.epoch(s)))
            .collect();
        self.make(
            by,
            AccessChange::Grant {
                grantee: to.card().clone(),
                role,
                sections: sections.iter().map(|s| s.to_string()).collect(),
                expires_at_ms: expires,
                label: "test".into(),
                keys,
                rotations: vec![],
            },
        )
    }

    fn rotation(&self, section: &str, to: &[&Identity]) -> Rotation {
        let epoch = self.members.epoch(section) + 1;
        Rotation {
            section: section.into(),
            epoch,
            chain: vec![1, 2, 3],
            keys: to.iter().map(|i| self.wrap(i, section, epoch)).collect(),
        }
    }
}

fn person(name: &str, role: Role) -> Identity {
    Identity::generate(name, role, None).unwrap()
}

#[test]
fn grants_give_exactly_their_sections_until_expiry() {
    let mut log = Log::new();
    let carer = person("carer", Role::Carer);
    let gp = person("gp", Role::Provider);
    let s = log.grant(
        &log.creator,
        &carer,
        GrantRole::Reader,
        &["medications", "allergies"],
        Some(5_000),
    );
    log.push(s).unwrap();
    let s = log.grant(&log.creator, &gp, GrantRole::Writer, &["labs"], None);
    log.push(s).unwrap();
    let m = &log.members;
    assert!(m.may_read(&carer.id(), "medications", 4_999));
    assert!(!m.may_read(&carer.id(), "medications", 5_000), "expired");
    assert!(!m.may_read(&carer.id(), "labs", 1));
    assert!(!m.may_write(&carer.id(), "medications", 1), "reader");
    assert!(m.may_write(&gp.id(), "labs", 1));
    assert!(
        !m.may_write(&gp.id(), "medications", 1),
        "outside its sections"
    );
    assert!(m.wrote_with(&gp.id(), "labs", 0));
    assert!(!m.may_administer(&gp.id(), 1));
    // The whole log verifies from scratch too.
    let again = verify_log(
        log.record,
        log.creator.id(),
        Some(log.creator.card()),
        &log.statements,
    )
    .unwrap();
    assert_eq!(&again, m);
}

#[test]
fn only_owners_and_live_managers_administer() {
    let mut log = Log::new();
    let carer = person("carer", Role::Carer);
    let parent = person("parent", Role::Manager);
    let other = person("other", Role::Carer);
    let s = log.grant(
        &log.creator,
        &carer,
        GrantRole::Reader,
        &["allergies"],
        None,
    );
    log.push(s).unwrap();
    // A reader cannot grant.
    let s = log.grant(&carer, &other, GrantRole::Reader, &["allergies"], None);
    assert!(matches!(log.push(s), Err(SharingError::NotAllowed { .. })));
    // A manager can, on behalf of the owner; it holds every section.
    let s = log.grant(
        &log.creator,
        &parent,
        GrantRole::Manager,
        &["allergies"],
        None,
    );
    log.push(s).unwrap();
    assert!(log.members.may_read(&parent.id(), "labs", 1));
    let s = log.grant(&parent, &other, GrantRole::Reader, &["vitals"], None);
    log.push(s).unwrap();
    assert!(log.members.may_read(&other.id(), "vitals", 1));
    // A manager cannot revoke an owner device.
    let phone2 = person("tablet", Role::PatientDevice);
    let s = log.make(
        &log.creator,
        AccessChange::AddDevice {
            device: phone2.card().clone(),
            keys: vec![],
        },
    );
    log.push(s).unwrap();
    let s = log.make(
        &parent,
        AccessChange::Revoke {
            identity: phone2.id(),
            sections: None,
            rotations: vec![],
        },
    );
    assert!(matches!(log.push(s), Err(SharingError::Invalid { .. })));
}

#[test]
fn revocation_rotates_exactly_what_was_taken() {
    let mut log = Log::new();
    let carer = person("carer", Role::Carer);
    let s = log.grant(
        &log.creator,
        &carer,
        GrantRole::Reader,
        &["medications", "allergies"],
        None,
    );
    log.push(s).unwrap();
    // Missing a rotation: refused.
    let rot = log.rotation("medications", &[&log.creator]);
    let s = log.make(
        &log.creator,
        AccessChange::Revoke {
            identity: carer.id(),
            sections: None,
            rotations: vec![rot],
        },
    );
    assert!(matches!(log.push(s), Err(SharingError::Invalid { .. })));
    // A new key wrapped to the revoked carer: refused.
    let rots = vec![
        log.rotation("medications", &[&log.creator, &carer]),
        log.rotation("allergies", &[&log.creator]),
    ];
    let s = log.make(
        &log.creator,
        AccessChange::Revoke {
            identity: carer.id(),
            sections: None,
            rotations: rots,
        },
    );
    assert!(log.push(s).is_err());
    // Correct: both rotated to epoch 1, wrapped to the owner only.
    let rots = vec![
        log.rotation("medications", &[&log.creator]),
        log.rotation("allergies", &[&log.creator]),
    ];
    let s = log.make(
        &log.creator,
        AccessChange::Revoke {
            identity: carer.id(),
            sections: None,
            rotations: rots,
        },
    );
    log.push(s).unwrap();
    assert_eq!(log.members.epoch("medications"), 1);
    assert_eq!(log.members.epoch("labs"), 0);
    assert!(log.members.access(&carer.id()).is_none());
    assert!(log.members.former.contains_key(&carer.id()));
}

#[test]
fn chain_forks_and_tampering_are_refused() {
    let mut log = Log::new();
    let carer = person("carer", Role::Carer);
    let first = log.grant(
        &log.creator,
        &carer,
        GrantRole::Reader,
        &["allergies"],
        None,
    );
    let concurrent = log.grant(&log.creator, &carer, GrantRole::Reader, &["labs"], None);
    log.push(first).unwrap();
    // Made on the same head as `first`: a fork.
    assert!(matches!(
        log.push(concurrent),
        Err(SharingError::Fork { index: 1 })
    ));
    // Another record's statement.
    let mut other = Log::new();
    let foreign = other.grant(&other.creator, &carer, GrantRole::Reader, &["labs"], None);
    other.push(foreign.clone()).unwrap();
    assert!(verify_log(log.record, log.creator.id(), None, &[foreign]).is_err());
    // Flipped bytes.
    let mut bad = log.statements[0].clone();
    let n = bad.statement.len() / 2;
    bad.statement[n] ^= 1;
    assert!(verify_log(log.record, log.creator.id(), None, &[bad]).is_err());
    // JSON round trip of the wire form.
    let json = serde_json::to_string(&log.statements[0]).unwrap();
    assert_eq!(
        serde_json::from_str::<SignedStatement>(&json).unwrap(),
        log.statements[0]
    );
}

#[test]
fn narrowing_a_grant_rotates_exactly_the_dropped_sections() {
    let mut log = Log::new();
    let carer = person("carer", Role::Carer);
    let s = log.grant(
        &log.creator,
        &carer,
        GrantRole::Reader,
        &["medications", "allergies"],
        None,
    );
    log.push(s).unwrap();
    let narrowed = |log: &Log, rotations: Vec<Rotation>| {
        let keys = vec![log.wrap(&carer, "medications", log.members.epoch("medications"))];
        log.make(
            &log.creator,
            AccessChange::Grant {
                grantee: carer.card().clone(),
                role: GrantRole::Reader,
                sections: vec!["medications".into()],
                expires_at_ms: None,
                label: "test".into(),
                keys,
                rotations,
            },
        )
    };
    // Without a rotation of allergies: refused, on every verifier.
    let s = narrowed(&log, vec![]);
    assert!(matches!(log.push(s), Err(SharingError::Invalid { .. })));
    // Rotating the wrong section, or wrapping the new key to the carer: refused.
    let s = narrowed(&log, vec![log.rotation("medications", &[&log.creator])]);
    assert!(matches!(log.push(s), Err(SharingError::Invalid { .. })));
    let s = narrowed(
        &log,
        vec![log.rotation("allergies", &[&log.creator, &carer])],
    );
    assert!(matches!(log.push(s), Err(SharingError::Invalid { .. })));
    // Rotating exactly allergies, to the owner only: accepted.
    let s = narrowed(&log, vec![log.rotation("allergies", &[&log.creator])]);
    log.push(s).unwrap();
    assert_eq!(log.members.epoch("allergies"), 1);
    assert_eq!(log.members.epoch("medications"), 0);
    assert!(!log.members.may_read(&carer.id(), "allergies", 1));
    assert!(log.members.may_read(&carer.id(), "medications", 1));
    // Widening again needs no rotation.
    let s = log.grant(
        &log.creator,
        &carer,
        GrantRole::Reader,
        &["medications", "allergies"],
        None,
    );
    log.push(s).unwrap();
    assert_eq!(log.members.epoch("allergies"), 1);
}

fn add_replica(log: &Log, by: &Identity, relay: &Identity) -> SignedStatement {
    log.make(
        by,
        AccessChange::AddReplica {
            relay: relay.card().clone(),
            label: "clinic relay".into(),
        },
    )
}

#[test]
fn a_replica_forwards_every_log_but_never_authors_or_administers() {
    let mut log = Log::new();
    let relay = person("clinic relay", Role::Relay);
    let s = add_replica(&log, &log.creator, &relay);
    log.push(s).unwrap();
    let m = &log.members;
    let id = relay.id();
    assert!(matches!(m.access(&id), Some(Access::Replica(_))));
    for section in crate::Section::ALL {
        assert!(m.may_read(&id, section.as_str(), i64::MAX));
        assert!(m.may_upload(&id, section.as_str(), i64::MAX));
        assert!(!m.may_write(&id, section.as_str(), 1), "{section:?}");
        assert!(!m.wrote_with(&id, section.as_str(), 0), "never an author");
        assert!(
            m.readers(section.as_str()).iter().all(|(r, _)| *r != id),
            "never given a key"
        );
    }
    assert!(m.may_read(&id, "wearables.chunks", 1));
    assert!(!m.may_administer(&id, 1) && !m.may_snapshot(&id, 1));
    let rights = m.rights(&id).unwrap();
    assert!(rights.may_upload_snapshot(1) && !rights.may_snapshot(1));
    assert_eq!(m.card(&id), Some(relay.card()));
}

#[test]
fn only_administrators_name_replicas_and_only_relays_can_be_one() {
    let mut log = Log::new();
    let carer = person("carer", Role::Carer);
    let relay = person("relay", Role::Relay);
    let s = log.grant(&log.creator, &carer, GrantRole::Reader, &["vitals"], None);
    log.push(s).unwrap();
    let by_carer = add_replica(&log, &carer, &relay);
    assert!(matches!(
        log.push(by_carer),
        Err(SharingError::NotAllowed { .. })
    ));
    let not_a_relay = person("laptop", Role::PatientDevice);
    let s = add_replica(&log, &log.creator, &not_a_relay);
    assert!(matches!(log.push(s), Err(SharingError::Invalid { .. })));
    let grantee_as_replica = log.make(
        &log.creator,
        AccessChange::AddReplica {
            relay: carer.card().clone(),
            label: "x".into(),
        },
    );
    assert!(log.push(grantee_as_replica).is_err());
    let bad_label = log.make(
        &log.creator,
        AccessChange::AddReplica {
            relay: relay.card().clone(),
            label: "a\nb".into(),
        },
    );
    assert!(matches!(
        log.push(bad_label),
        Err(SharingError::Invalid { .. })
    ));
    let manager = person("parent", Role::Manager);
    let s = log.grant(&log.creator, &manager, GrantRole::Manager, &[], None);
    log.push(s).unwrap();
    let s = add_replica(&log, &manager, &relay);
    log.push(s).unwrap();
    // A replica is then neither an owner device nor a grantee.
    let s = log.grant(&log.creator, &relay, GrantRole::Reader, &["vitals"], None);
    assert!(log.push(s).is_err());
}

#[test]
fn a_revoked_replica_loses_everything_without_a_rotation() {
    let mut log = Log::new();
    let relay = person("relay", Role::Relay);
    let s = add_replica(&log, &log.creator, &relay);
    log.push(s).unwrap();
    let partial = log.make(
        &log.creator,
        AccessChange::Revoke {
            identity: relay.id(),
            sections: Some(vec!["vitals".into()]),
            rotations: vec![],
        },
    );
    assert!(matches!(
        log.push(partial),
        Err(SharingError::Invalid { .. })
    ));
    let with_rotation = log.make(
        &log.creator,
        AccessChange::Revoke {
            identity: relay.id(),
            sections: None,
            rotations: vec![log.rotation("vitals", &[&log.creator])],
        },
    );
    assert!(log.push(with_rotation).is_err(), "it held no key");
    let s = log.make(
        &log.creator,
        AccessChange::Revoke {
            identity: relay.id(),
            sections: None,
            rotations: vec![],
        },
    );
    log.push(s).unwrap();
    let m = &log.members;
    assert!(m.access(&relay.id()).is_none());
    assert!(!m.may_read(&relay.id(), "vitals", 1));
    assert!(!m.may_upload(&relay.id(), "vitals", 1));
    assert!(m.former.contains_key(&relay.id()));
    assert_eq!(m.epoch("vitals"), 0);
    // Named again later, it is a replica again.
    let s = add_replica(&log, &log.creator, &relay);
    log.push(s).unwrap();
    assert!(log.members.may_read(&relay.id(), "vitals", 1));
    let replay = verify_log(
        log.record,
        log.creator.id(),
        Some(log.creator.card()),
        &log.statements,
    )
    .unwrap();
    assert_eq!(replay, log.members);
}

fn retire(log: &Log, by: &Identity, relay: &Identity, to: Option<&Identity>) -> SignedStatement {
    log.make(
        by,
        AccessChange::RetireRelay {
            relay: relay.card().clone(),
            moved_to: to.map(Identity::id),
        },
    )
}

#[test]
fn a_retired_relay_refuses_the_record_and_says_where_it_moved() {
    let mut log = Log::new();
    let old = person("old relay", Role::Relay);
    let new = person("new relay", Role::Relay);
    assert!(log.members.relay_serves(&old.id()).is_ok());
    let s = add_replica(&log, &log.creator, &new);
    log.push(s).unwrap();
    let s = retire(&log, &log.creator, &old, Some(&new));
    log.push(s).unwrap();
    let refused = log.members.relay_serves(&old.id()).unwrap_err();
    assert_eq!(refused.moved_to_label.as_deref(), Some("clinic relay"));
    let message = refused.to_string();
    assert!(message.contains("moved") && message.contains("satchel relays add"));
    // The relay it moved to, and any other relay, still serve it.
    assert!(log.members.relay_serves(&new.id()).is_ok());
    assert!(log.members.relay_serves(&log.creator.id()).is_ok());
    // Moving back: naming the old relay again takes the retirement back.
    let s = add_replica(&log, &log.creator, &old);
    log.push(s).unwrap();
    assert!(log.members.relay_serves(&old.id()).is_ok());
}

#[test]
fn only_owner_devices_retire_relays_and_only_relays_can_be_retired() {
    let mut log = Log::new();
    let relay = person("relay", Role::Relay);
    let manager = person("parent", Role::Manager);
    let s = log.grant(&log.creator, &manager, GrantRole::Manager, &[], None);
    log.push(s).unwrap();
    let by_manager = retire(&log, &manager, &relay, None);
    assert!(matches!(
        log.push(by_manager),
        Err(SharingError::NotAllowed { .. })
    ));
    let device = person("laptop", Role::PatientDevice);
    let s = retire(&log, &log.creator, &device, None);
    assert!(matches!(log.push(s), Err(SharingError::Invalid { .. })));
    let s = retire(&log, &log.creator, &relay, Some(&relay));
    assert!(matches!(log.push(s), Err(SharingError::Invalid { .. })));
    assert!(log.members.relay_serves(&relay.id()).is_ok());
    // A replica that is retired stops being one.
    let s = add_replica(&log, &log.creator, &relay);
    log.push(s).unwrap();
    let s = retire(&log, &log.creator, &relay, None);
    log.push(s).unwrap();
    assert!(log.members.access(&relay.id()).is_none());
    let refused = log.members.relay_serves(&relay.id()).unwrap_err();
    assert_eq!(refused.moved_to_label, None);
}
