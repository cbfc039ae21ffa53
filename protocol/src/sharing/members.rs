//! The membership a verified log establishes, and the rules that verify it.
//!
//! Rules, checked statement by statement from the record's creator device:
//! - every statement names this record, chains onto the previous one and is
//!   signed by `by`;
//! - `add-device` and `add-recovery` are made by an owner device;
//! - `grant`, `add-replica` and `revoke` are made by an owner device or a
//!   live manager (not expired at the statement's time); a manager cannot
//!   revoke owner devices, an owner device cannot revoke itself, the
//!   creator cannot be revoked, and an owner device is never a grantee;
//! - a replica is a relay (card role `relay`), never an owner device or a
//!   grantee, and is never given a key (so its revocation rotates none);
//! - `retire-relay` is made by an owner device and names a relay's card:
//!   that relay refuses the record from then on ([`Members::relay_serves`],
//!   the rule every relay applies to itself) until an `add-replica` names
//!   it again;
//! - key wraps name a known section at its current epoch and go only to
//!   identities that can read that section once the statement applies;
//! - a revocation, and a grant that replaces an earlier grant with fewer
//!   sections, rotates every section the identity could read and no longer
//!   can, each to the next epoch (so a narrowed grantee, like a revoked
//!   one, cannot read what is written afterwards).

use std::collections::{BTreeMap, BTreeSet};

use crate::crypto::{IdentityCard, Role};
use crate::ids::{IdentityId, RecordId};
use crate::section::Section;

use super::rights::{self, MemberRole, Rights};
use super::statement::{AccessChange, GrantRole, KeyWrap, SignedStatement};
use super::SharingError;

/// A live (not revoked) grant. It may have expired: check with a time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub card: IdentityCard,
    pub role: GrantRole,
    /// Section names (every section for a manager).
    pub sections: BTreeSet<String>,
    pub expires_at_ms: Option<i64>,
    pub label: String,
    pub granted_by: IdentityId,
    pub granted_at_ms: i64,
}

impl Grant {
    /// Whether the grant is in force at `now_ms`.
    pub fn live_at(&self, now_ms: i64) -> bool {
        rights::live(MemberRole::of_grant(self.role), self.expires_at_ms, now_ms)
    }
}

/// A relay the log names as a replica of the record (until revoked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replica {
    pub card: IdentityCard,
    pub label: String,
    pub added_by: IdentityId,
    pub added_at_ms: i64,
}

/// A relay the record moved away from (`retire-relay`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetiredRelay {
    pub card: IdentityCard,
    /// The relay it moved to, when the statement names one.
    pub moved_to: Option<IdentityId>,
    pub retired_by: IdentityId,
    pub retired_at_ms: i64,
}

/// A relay's refusal to serve a record that moved away from it: shown to
/// the record's devices (403), and saying what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("this record has moved to another relay{}: this relay no longer serves it. Sync with the relay the record moved to (ask its owner for the address: `satchel relays add URL`)", .moved_to_label.as_deref().map(|l| format!(" ({l})")).unwrap_or_default())]
pub struct RecordMoved {
    /// The label the log gives the relay it moved to, when it names one.
    pub moved_to_label: Option<String>,
}

/// What one identity may do in a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// A device of the owner (or the recovery key): everything.
    Owner,
    /// A grantee.
    Granted(Box<Grant>),
    /// A replica relay: ciphertext only.
    Replica(Box<Replica>),
}

/// The members of a record as established by its verified log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Members {
    pub record: RecordId,
    pub creator: IdentityId,
    /// The owner's devices (including recovery identities), with their
    /// cards (the creator's card is unknown to the log).
    pub owner_devices: BTreeMap<IdentityId, Option<IdentityCard>>,
    /// Recovery identities (a subset of `owner_devices`).
    pub recovery: BTreeSet<IdentityId>,
    /// Live grants by grantee.
    pub grants: BTreeMap<IdentityId, Grant>,
    /// Replica relays by relay identity.
    pub replicas: BTreeMap<IdentityId, Replica>,
    /// Relays the record moved away from, by relay identity.
    pub retired_relays: BTreeMap<IdentityId, RetiredRelay>,
    /// Everyone who ever held access and no longer does, with their card
    /// when known (for audit views).
    pub former: BTreeMap<IdentityId, Option<IdentityCard>>,
    /// Current key epoch per section (absent: 0).
    pub epochs: BTreeMap<String, u32>,
    /// Per (section, epoch): who could write while that epoch was current.
    pub writers: BTreeMap<(String, u32), BTreeSet<IdentityId>>,
    /// Number of statements and the hash of the last one (zeros if none).
    pub len: usize,
    pub head: [u8; 32],
}

impl Members {
    /// The members of a record with an empty log: its creator device
    /// (whose card, when known, must be the creator's and verify).
    pub fn root(
        record: RecordId,
        creator: IdentityId,
        creator_card: Option<&IdentityCard>,
    ) -> Self {
        let card = creator_card
            .filter(|c| c.id() == creator && c.verify().is_ok())
            .cloned();
        let mut m = Members {
            record,
            creator,
            owner_devices: BTreeMap::from([(creator, card)]),
            recovery: BTreeSet::new(),
            grants: BTreeMap::new(),
            replicas: BTreeMap::new(),
            retired_relays: BTreeMap::new(),
            former: BTreeMap::new(),
            epochs: BTreeMap::new(),
            writers: BTreeMap::new(),
            len: 0,
            head: [0; 32],
        };
        m.note_writers();
        m
    }

    /// Whether the relay with identity `relay` may serve this record: not
    /// when the log retires it (`retire-relay`, the record moved away).
    /// Every relay checks this for itself before serving a record.
    pub fn relay_serves(&self, relay: &IdentityId) -> Result<(), RecordMoved> {
        match self.retired_relays.get(relay) {
            None => Ok(()),
            Some(retired) => Err(RecordMoved {
                moved_to_label: retired
                    .moved_to
                    .and_then(|to| self.replicas.get(&to))
                    .map(|r| r.label.clone()),
            }),
        }
    }

    /// An identity's access, if it has any (expired grants included).
    pub fn access(&self, id: &IdentityId) -> Option<Access> {
        if self.owner_devices.contains_key(id) {
            return Some(Access::Owner);
        }
        if let Some(r) = self.replicas.get(id) {
            return Some(Access::Replica(Box::new(r.clone())));
        }
        self.grants
            .get(id)
            .cloned()
            .map(|g| Access::Granted(Box::new(g)))
    }

    /// The current epoch of a section's key.
    pub fn epoch(&self, section: &str) -> u32 {
        self.epochs.get(section).copied().unwrap_or(0)
    }

    /// `id`'s rights ([`Rights`]: role, sections, expiry), if it has any
    /// (expired grants included).
    pub fn rights(&self, id: &IdentityId) -> Option<Rights> {
        if self.owner_devices.contains_key(id) {
            return Some(Rights::owner_device());
        }
        if self.replicas.contains_key(id) {
            return Some(Rights::replica());
        }
        self.grants
            .get(id)
            .map(|g| Rights::granted(g.role, g.sections.clone(), g.expires_at_ms))
    }

    /// Role, held sections and expiry of `id`, borrowed (owner devices
    /// hold no listed sections: they hold every one).
    fn parts(&self, id: &IdentityId) -> Option<(MemberRole, &BTreeSet<String>, Option<i64>)> {
        static NONE: BTreeSet<String> = BTreeSet::new();
        if self.owner_devices.contains_key(id) {
            return Some((MemberRole::OwnerDevice, &NONE, None));
        }
        if self.replicas.contains_key(id) {
            return Some((MemberRole::Replica, &NONE, None));
        }
        self.grants
            .get(id)
            .map(|g| (MemberRole::of_grant(g.role), &g.sections, g.expires_at_ms))
    }

    /// Whether `id` may read `section` at `now_ms` ([`Rights::may_read`]).
    /// Log names with a `.` suffix (`wearables.chunks`) follow their base
    /// section.
    pub fn may_read(&self, id: &IdentityId, section: &str, now_ms: i64) -> bool {
        self.parts(id)
            .is_some_and(|(r, s, e)| rights::may_read(r, s, e, section, now_ms))
    }

    /// Whether `id` may upload envelopes to `section`'s log at `now_ms`
    /// ([`Rights::may_upload`]).
    pub fn may_upload(&self, id: &IdentityId, section: &str, now_ms: i64) -> bool {
        self.parts(id)
            .is_some_and(|(r, s, e)| rights::may_upload(r, s, e, section, now_ms))
    }

    /// Whether `id` may write `section` at `now_ms` ([`Rights::may_write`]).
    pub fn may_write(&self, id: &IdentityId, section: &str, now_ms: i64) -> bool {
        self.parts(id)
            .is_some_and(|(r, s, e)| rights::may_write(r, s, e, section, now_ms))
    }

    /// Whether `id` may grant and revoke (owner devices, live managers;
    /// [`Rights::may_administer`]).
    pub fn may_administer(&self, id: &IdentityId, now_ms: i64) -> bool {
        self.parts(id)
            .is_some_and(|(r, _, e)| rights::may_administer(r, e, now_ms))
    }

    /// Whether `id` could write `section` while key epoch `epoch` was
    /// current: the client-side test for merging an envelope (an author
    /// revoked since then still wrote legitimately before).
    pub fn wrote_with(&self, id: &IdentityId, section: &str, epoch: u32) -> bool {
        self.writers
            .get(&(base_section(section).to_string(), epoch))
            .is_some_and(|w| w.contains(id))
    }

    /// Whether `id` may upload a compaction snapshot (the whole section:
    /// owner devices and managers only).
    pub fn may_snapshot(&self, id: &IdentityId, now_ms: i64) -> bool {
        self.may_administer(id, now_ms)
    }

    /// Whether `id` is an owner device or a manager, whatever the time: the
    /// client-side test for merging a snapshot (the relay checked the time
    /// when it accepted it).
    pub fn is_owner_or_manager(&self, id: &IdentityId) -> bool {
        self.owner_devices.contains_key(id)
            || self
                .grants
                .get(id)
                .is_some_and(|g| g.role == GrantRole::Manager)
    }

    /// Who can read `section` now, ignoring expiry: the identities a rotated
    /// key must be wrapped to.
    pub fn readers(&self, section: &str) -> Vec<(IdentityId, Option<&IdentityCard>)> {
        let mut out: Vec<_> = self
            .owner_devices
            .iter()
            .map(|(id, card)| (*id, card.as_ref()))
            .collect();
        for (id, g) in &self.grants {
            if g.sections.contains(section) {
                out.push((*id, Some(&g.card)));
            }
        }
        out
    }

    /// The card of any identity the log knows.
    pub fn card(&self, id: &IdentityId) -> Option<&IdentityCard> {
        self.owner_devices
            .get(id)
            .and_then(Option::as_ref)
            .or_else(|| self.grants.get(id).map(|g| &g.card))
            .or_else(|| self.replicas.get(id).map(|r| &r.card))
            .or_else(|| self.former.get(id).and_then(Option::as_ref))
    }

    fn could_read_ignoring_expiry(&self, id: &IdentityId, section: &str) -> bool {
        self.owner_devices.contains_key(id)
            || self
                .grants
                .get(id)
                .is_some_and(|g| g.sections.contains(section))
    }

    /// Take `sections` (all when `None`) from `identity`: an owner device
    /// leaves entirely; a grant loses those sections and ends when none
    /// remain. Whoever leaves is remembered in `former`. No checks: the
    /// caller decides whether the revocation is allowed.
    pub fn remove_access(&mut self, identity: &IdentityId, sections: Option<&[String]>) {
        if self.owner_devices.contains_key(identity) {
            let card = self.owner_devices.remove(identity).flatten();
            self.recovery.remove(identity);
            self.former.insert(*identity, card);
            return;
        }
        if let Some(replica) = self.replicas.remove(identity) {
            self.former.insert(*identity, Some(replica.card));
            return;
        }
        let Some(grant) = self.grants.get_mut(identity) else {
            return;
        };
        if let Some(list) = sections {
            for s in list {
                grant.sections.remove(s);
            }
        }
        if sections.is_none() || grant.sections.is_empty() {
            let card = grant.card.clone();
            self.grants.remove(identity);
            self.former.insert(*identity, Some(card));
        }
    }

    /// Record, for every section's current epoch, who may write now.
    fn note_writers(&mut self) {
        for section in Section::ALL {
            let name = section.as_str();
            let epoch = self.epoch(name);
            let mut ids: BTreeSet<IdentityId> = self.owner_devices.keys().copied().collect();
            ids.extend(
                self.grants
                    .iter()
                    .filter(|(_, g)| g.role.writes_section(name) && g.sections.contains(name))
                    .map(|(id, _)| *id),
            );
            self.writers
                .entry((name.to_string(), epoch))
                .or_default()
                .extend(ids);
        }
    }
}

/// The identity of a card that becomes an owner device (a device or a
/// recovery key): the card must verify, and it must not be a grantee's or
/// a replica's.
fn new_owner_identity(
    members: &Members,
    index: usize,
    card: &IdentityCard,
) -> Result<IdentityId, SharingError> {
    card.verify()
        .map_err(|_| SharingError::Malformed { index })?;
    let id = card.id();
    if members.grants.contains_key(&id) || members.replicas.contains_key(&id) {
        return Err(SharingError::Invalid {
            index,
            why: "a grantee or a replica cannot become an owner device or a recovery key",
        });
    }
    Ok(id)
}

/// The rule for a grant's or a replica's label: a short name, no control
/// characters.
fn check_label(index: usize, label: &str) -> Result<(), SharingError> {
    if label.len() > 200 || label.chars().any(char::is_control) {
        return Err(SharingError::Invalid {
            index,
            why: "label too long or has control characters",
        });
    }
    Ok(())
}

/// `wearables.chunks` → `wearables`.
pub fn base_section(section: &str) -> &str {
    section.split('.').next().unwrap_or(section)
}

fn known_section(name: &str) -> bool {
    name.parse::<Section>().is_ok()
}

/// Verify a record's log in order, starting from its creator device.
pub fn verify_log(
    record: RecordId,
    creator: IdentityId,
    creator_card: Option<&IdentityCard>,
    log: &[SignedStatement],
) -> Result<Members, SharingError> {
    let mut members = Members::root(record, creator, creator_card);
    for (index, signed) in log.iter().enumerate() {
        apply_statement(&mut members, index, signed)?;
    }
    Ok(members)
}

/// Verify one more statement on top of `members` (which it then reflects).
/// On error `members` is unchanged.
pub fn verify_next(members: &mut Members, signed: &SignedStatement) -> Result<(), SharingError> {
    let mut next = members.clone();
    apply_statement(&mut next, members.len, signed)?;
    *members = next;
    Ok(())
}

fn check_wraps(
    members: &Members,
    index: usize,
    wraps: &[KeyWrap],
    epoch_of: impl Fn(&str) -> u32,
) -> Result<(), SharingError> {
    for w in wraps {
        if !known_section(&w.section) {
            return Err(SharingError::Invalid {
                index,
                why: "key wrap for an unknown section",
            });
        }
        if w.epoch != epoch_of(&w.section) {
            return Err(SharingError::Invalid {
                index,
                why: "key wrap for a section epoch that is not current",
            });
        }
        if !members.could_read_ignoring_expiry(&w.to, &w.section) {
            return Err(SharingError::Invalid {
                index,
                why: "key wrapped to an identity that may not read the section",
            });
        }
    }
    Ok(())
}

/// The sections `id` can read (expiry ignored).
fn readable_by(members: &Members, id: &IdentityId) -> BTreeSet<String> {
    Section::ALL
        .iter()
        .map(|s| s.as_str().to_string())
        .filter(|s| members.could_read_ignoring_expiry(id, s))
        .collect()
}

/// The one rule for taking sections away (a revocation, or a grant that
/// replaces a wider one): every section `id` could read (`before`) and no
/// longer can in `members` must rotate, exactly once, to the next epoch,
/// with the new key wrapped only to identities that may still read it.
fn apply_rotations(
    members: &mut Members,
    index: usize,
    id: &IdentityId,
    before: BTreeSet<String>,
    rotations: &[super::statement::Rotation],
) -> Result<(), SharingError> {
    let lost: BTreeSet<String> = before
        .into_iter()
        .filter(|s| !members.could_read_ignoring_expiry(id, s))
        .collect();
    let rotated: BTreeSet<String> = rotations.iter().map(|r| r.section.clone()).collect();
    if rotated != lost || rotated.len() != rotations.len() {
        return Err(SharingError::Invalid {
            index,
            why: "taking sections away must rotate exactly the sections taken away",
        });
    }
    let old_epochs = members.epochs.clone();
    for r in rotations {
        let current = old_epochs.get(&r.section).copied().unwrap_or(0);
        if r.epoch != current + 1 {
            return Err(SharingError::Invalid {
                index,
                why: "a rotation must move to the next epoch",
            });
        }
        members.epochs.insert(r.section.clone(), r.epoch);
    }
    let snapshot = members.clone();
    for r in rotations {
        check_wraps(&snapshot, index, &r.keys, |s| snapshot.epoch(s))?;
        if r.keys.iter().any(|w| w.section != r.section) {
            return Err(SharingError::Invalid {
                index,
                why: "a rotation wraps another section's key",
            });
        }
    }
    Ok(())
}

fn apply_statement(
    members: &mut Members,
    index: usize,
    signed: &SignedStatement,
) -> Result<(), SharingError> {
    let statement = signed.verify(index)?;
    if statement.record_id != members.record {
        return Err(SharingError::WrongRecord { index });
    }
    if statement.prev != members.head {
        return Err(SharingError::Fork { index });
    }
    let by = statement.by;
    let at = statement.at_ms;
    let is_owner = members.owner_devices.contains_key(&by);
    let not_allowed = SharingError::NotAllowed { index, by };
    match statement.change {
        AccessChange::AddDevice { device, keys } => {
            if !is_owner {
                return Err(not_allowed);
            }
            let id = new_owner_identity(members, index, &device)?;
            members.former.remove(&id);
            members.owner_devices.insert(id, Some(device));
            let snapshot = members.clone();
            check_wraps(&snapshot, index, &keys, |s| snapshot.epoch(s))?;
        }
        AccessChange::AddRecovery { recovery, keys, .. } => {
            if !is_owner {
                return Err(not_allowed);
            }
            let id = new_owner_identity(members, index, &recovery)?;
            members.owner_devices.insert(id, Some(recovery));
            members.recovery.insert(id);
            let snapshot = members.clone();
            check_wraps(&snapshot, index, &keys, |s| snapshot.epoch(s))?;
        }
        AccessChange::Grant {
            grantee,
            role,
            sections,
            expires_at_ms,
            label,
            keys,
            rotations,
        } => {
            if !members.may_administer(&by, at) {
                return Err(not_allowed);
            }
            grantee
                .verify()
                .map_err(|_| SharingError::Malformed { index })?;
            let id = grantee.id();
            if members.owner_devices.contains_key(&id) || members.replicas.contains_key(&id) {
                return Err(SharingError::Invalid {
                    index,
                    why: "an owner device or a replica cannot be a grantee",
                });
            }
            check_label(index, &label)?;
            let sections: BTreeSet<String> = if role == GrantRole::Manager {
                Section::ALL
                    .iter()
                    .map(|s| s.as_str().to_string())
                    .collect()
            } else {
                sections.into_iter().collect()
            };
            if sections.is_empty() || sections.iter().any(|s| !known_section(s)) {
                return Err(SharingError::Invalid {
                    index,
                    why: "a grant must name known sections",
                });
            }
            let before = readable_by(members, &id);
            members.former.remove(&id);
            members.grants.insert(
                id,
                Grant {
                    card: grantee,
                    role,
                    sections,
                    expires_at_ms,
                    label,
                    granted_by: by,
                    granted_at_ms: at,
                },
            );
            // A narrowed grant rotates what it takes away (first, so the
            // new grant's wraps name the current epochs).
            apply_rotations(members, index, &id, before, &rotations)?;
            let snapshot = members.clone();
            check_wraps(&snapshot, index, &keys, |s| snapshot.epoch(s))?;
        }
        AccessChange::AddReplica { relay, label } => {
            if !members.may_administer(&by, at) {
                return Err(not_allowed);
            }
            relay
                .verify()
                .map_err(|_| SharingError::Malformed { index })?;
            if relay.role != Role::Relay {
                return Err(SharingError::Invalid {
                    index,
                    why: "a replica must be a relay's card",
                });
            }
            let id = relay.id();
            if members.owner_devices.contains_key(&id) || members.grants.contains_key(&id) {
                return Err(SharingError::Invalid {
                    index,
                    why: "an owner device or a grantee cannot be a replica",
                });
            }
            check_label(index, &label)?;
            members.former.remove(&id);
            members.retired_relays.remove(&id);
            members.replicas.insert(
                id,
                Replica {
                    card: relay,
                    label,
                    added_by: by,
                    added_at_ms: at,
                },
            );
        }
        AccessChange::RetireRelay { relay, moved_to } => {
            if !is_owner {
                return Err(not_allowed);
            }
            relay
                .verify()
                .map_err(|_| SharingError::Malformed { index })?;
            if relay.role != Role::Relay {
                return Err(SharingError::Invalid {
                    index,
                    why: "only a relay's card can be retired",
                });
            }
            let id = relay.id();
            if moved_to == Some(id) {
                return Err(SharingError::Invalid {
                    index,
                    why: "a record cannot move to the relay it leaves",
                });
            }
            if let Some(replica) = members.replicas.remove(&id) {
                members.former.insert(id, Some(replica.card));
            }
            members.retired_relays.insert(
                id,
                RetiredRelay {
                    card: relay,
                    moved_to,
                    retired_by: by,
                    retired_at_ms: at,
                },
            );
        }
        AccessChange::Revoke {
            identity,
            sections,
            rotations,
        } => {
            if !members.may_administer(&by, at) {
                return Err(not_allowed);
            }
            let before = readable_by(members, &identity);
            if members.owner_devices.contains_key(&identity) {
                if !is_owner || identity == by || identity == members.creator {
                    return Err(SharingError::Invalid {
                        index,
                        why: "this owner device cannot be revoked by this signer",
                    });
                }
                if sections.is_some() {
                    return Err(SharingError::Invalid {
                        index,
                        why: "an owner device is revoked from every section",
                    });
                }
            } else if members.replicas.contains_key(&identity) {
                if sections.is_some() {
                    return Err(SharingError::Invalid {
                        index,
                        why: "a replica is revoked from every section",
                    });
                }
            } else if let Some(grant) = members.grants.get(&identity) {
                if sections.is_some() && grant.role == GrantRole::Manager {
                    return Err(SharingError::Invalid {
                        index,
                        why: "a manager is revoked from every section",
                    });
                }
            } else {
                return Err(SharingError::Invalid {
                    index,
                    why: "revokes an identity that has no access",
                });
            }
            members.remove_access(&identity, sections.as_deref());
            apply_rotations(members, index, &identity, before, &rotations)?;
        }
    }
    members.len = index + 1;
    members.head = signed.hash();
    members.note_writers();
    Ok(())
}
