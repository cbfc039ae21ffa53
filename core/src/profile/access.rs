//! The access log on a device: keeping the verified log, learning the
//! section keys wrapped to this device (and older epochs through the key
//! chain), and making statements: another device, a grant, a revocation
//! with key rotation, a recovery key.
//!
//! Statements are made on top of the log this device holds and must be
//! accepted by the relay (which appends only on top of the same head)
//! before they take effect here: [`Profile::apply_access`] with the
//! accepted statement. New keys made for a rotation are kept at once, so a
//! statement the relay refuses leaves only an unused key behind.

use super::vault::Vault;
use super::{seal_keyring, Profile, ProfileError, Result};
use crate::crypto::{wrap_key, Identity, IdentityCard, SectionKey, SymmetricKey};
use crate::ids::IdentityId;
use crate::record::Section;
use crate::sharing::{
    chain_aad, key_wrap_aad, verify_log, AccessChange, AccessStatement, GrantRole, KeyWrap,
    Members, Rotation, SignedStatement,
};
use crate::store::{Store, WriteBatch};

pub(super) const META_ACCESS_LOG: &str = "access-log";
pub(super) const META_ACCESS_CURSOR: &str = "sync/access";

/// How approving a grant changes an identity's existing grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantChange {
    pub role_before: GrantRole,
    /// Sections it would gain.
    pub gained: Vec<Section>,
    /// Sections it would lose (rotated, as a revocation does).
    pub lost: Vec<Section>,
}

/// What a device knows of its record's access log: the root it verifies
/// from (the creator device and, when known, its card) and the members the
/// verified log establishes.
pub(crate) struct AccessState {
    pub(crate) creator: IdentityId,
    pub(crate) creator_card: Option<IdentityCard>,
    pub(crate) members: Members,
}

impl AccessState {
    /// A record with an empty log.
    pub(crate) fn root(
        record: crate::ids::RecordId,
        creator: IdentityId,
        creator_card: Option<IdentityCard>,
    ) -> Self {
        let members = Members::root(record, creator, creator_card.as_ref());
        AccessState {
            creator,
            creator_card,
            members,
        }
    }

    /// Verify a whole log from this root (nothing changes here).
    pub(crate) fn verify(
        &self,
        log: &[SignedStatement],
    ) -> std::result::Result<Members, crate::sharing::SharingError> {
        verify_log(
            self.members.record,
            self.creator,
            self.creator_card.as_ref(),
            log,
        )
    }
}

/// The locally stored access log (empty if none).
pub(super) fn load_access_log<S: Store>(store: &S, vault: &Vault) -> Result<Vec<SignedStatement>> {
    if store.get_meta(META_ACCESS_LOG)?.is_none() {
        return Ok(Vec::new());
    }
    let bytes = vault.open_meta(store, META_ACCESS_LOG, "access log")?;
    serde_json::from_slice(&bytes).map_err(|_| ProfileError::Corrupt("access log"))
}

/// Sign `change` as `signer` on top of the verified log `members`, after
/// checking that the log's rule accepts it ([`verify_next`] on a copy): a
/// device never hands out a statement every verifier would refuse.
pub(crate) fn sign_change(
    signer: &Identity,
    members: &Members,
    change: AccessChange,
    at_ms: i64,
) -> Result<SignedStatement> {
    let signed = AccessStatement {
        record_id: members.record,
        by: signer.id(),
        at_ms,
        prev: members.head,
        change,
    }
    .sign(signer)?;
    let mut after = members.clone();
    crate::sharing::verify_next(&mut after, &signed)?;
    Ok(signed)
}

impl<S: Store> Profile<S> {
    /// The locally stored, verified access log.
    pub fn access_log(&self) -> Result<Vec<SignedStatement>> {
        load_access_log(&self.store, &self.vault)
    }

    /// The record's members, from the verified access log.
    pub fn members(&self) -> &Members {
        &self.access.members
    }

    /// The creator device's card, when this device knows it.
    pub fn creator_card(&self) -> Option<&IdentityCard> {
        self.access.creator_card.as_ref()
    }

    /// Whether this device is one of the owner's devices.
    pub fn is_owner_device(&self) -> bool {
        self.access
            .members
            .owner_devices
            .contains_key(&self.identity.id())
    }

    /// Whether this device may grant and revoke (owner device or manager).
    pub fn may_administer(&self) -> bool {
        self.access
            .members
            .may_administer(&self.identity.id(), super::now_ms())
    }

    /// Append statements fetched from the relay (after `access_cursor`),
    /// or a statement of this device's that the relay accepted. The whole
    /// log must verify from the creator, else nothing is kept. Learns every
    /// key wrapped to this device. Durable when this returns.
    pub fn apply_access(&mut self, fetched: Vec<SignedStatement>, new_cursor: u64) -> Result<()> {
        self.apply_statements(fetched, Some(new_cursor))
    }

    /// Append statements (and, from the relay, move its access cursor):
    /// see [`Self::apply_access`].
    pub(super) fn apply_statements(
        &mut self,
        fetched: Vec<SignedStatement>,
        new_cursor: Option<u64>,
    ) -> Result<()> {
        let mut log = self.access_log()?;
        let before = log.len();
        for statement in fetched {
            if !log.contains(&statement) {
                log.push(statement);
            }
        }
        let members = self.access.verify(&log).map_err(ProfileError::Sharing)?;
        let mut keys = self.keys.clone();
        let learned = super::keyring::learn(&mut keys, &self.identity, self.record.id, &log);
        let mut batch = WriteBatch::new();
        if log.len() != before {
            let json = serde_json::to_vec(&log).map_err(|_| ProfileError::Corrupt("access log"))?;
            batch.put_meta(META_ACCESS_LOG, self.vault.seal(META_ACCESS_LOG, &json)?);
        }
        if learned > 0 {
            batch.put_meta(super::META_KEYRING, seal_keyring(&self.vault, &keys)?);
        }
        if let Some(cursor) = new_cursor {
            batch.put_meta(META_ACCESS_CURSOR, cursor.to_be_bytes().to_vec());
        }
        self.store.commit(batch)?;
        self.access.members = members;
        self.keys = keys;
        // Nothing queued may leave under a key epoch that is no longer
        // current (a revocation or narrowing since it was sealed).
        let resealed = self.reseal_stale_outbox()?;
        if learned > 0 || resealed > 0 {
            // Sections that could not be opened before may open now (and
            // resealed envelopes are read back as stored).
            self.refresh()?;
        }
        Ok(())
    }

    /// Sign `change` on top of the verified log, after checking that the
    /// log's rule accepts it ([`verify_next`] on a copy of the members): a
    /// device never makes a statement that every verifier would refuse.
    fn statement(&self, change: AccessChange) -> Result<SignedStatement> {
        sign_change(
            &self.identity,
            &self.access.members,
            change,
            super::now_ms(),
        )
    }

    /// Wrap the current key of each of `sections` to `card`.
    fn wrap_current(&self, card: &IdentityCard, sections: &[Section]) -> Result<Vec<KeyWrap>> {
        super::keyring::wrap_current(&self.keys, &self.access.members, card, sections)
    }

    fn require_admin(&self) -> Result<()> {
        if self.may_administer() {
            Ok(())
        } else {
            Err(ProfileError::NotAllowed(
                "only the owner's devices and managers may change who has access",
            ))
        }
    }

    /// A signed statement adding `device` as another device of the owner,
    /// with every section's current key wrapped to it.
    pub fn add_device_statement(&self, device: &IdentityCard) -> Result<SignedStatement> {
        if !self.is_owner_device() {
            return Err(ProfileError::NotAllowed(
                "only the owner's devices may add devices",
            ));
        }
        let keys = self.wrap_current(device, &Section::ALL)?;
        self.statement(AccessChange::AddDevice {
            device: device.clone(),
            keys,
        })
    }

    /// A signed grant of `role` on `sections` (every section for a
    /// manager) to `grantee`, with those sections' current keys wrapped to
    /// it. Replaces any earlier grant to the same identity; sections that
    /// grant had and this one drops are rotated, as a revocation does (see
    /// [`Profile::grant_change`] to show the change before making it).
    pub fn grant_statement(
        &mut self,
        grantee: &IdentityCard,
        role: GrantRole,
        sections: &[Section],
        expires_at_ms: Option<i64>,
        label: &str,
    ) -> Result<SignedStatement> {
        self.require_admin()?;
        if self
            .access
            .members
            .owner_devices
            .contains_key(&grantee.id())
        {
            return Err(ProfileError::NotAllowed(
                "that identity is one of the owner's devices",
            ));
        }
        let sections: Vec<Section> = if role == GrantRole::Manager {
            Section::ALL.to_vec()
        } else {
            let mut s = sections.to_vec();
            s.sort();
            s.dedup();
            s
        };
        if sections.is_empty() {
            return Err(ProfileError::NotAllowed(
                "a grant needs at least one section",
            ));
        }
        let names: Vec<String> = sections.iter().map(|s| s.as_str().to_string()).collect();
        let id = grantee.id();
        let dropped: Vec<Section> = self
            .access
            .members
            .grants
            .get(&id)
            .map(|g| {
                Section::ALL
                    .into_iter()
                    .filter(|s| g.sections.contains(s.as_str()) && !sections.contains(s))
                    .collect()
            })
            .unwrap_or_default();
        // Members once the grant applies: who keeps each dropped section.
        let mut after = self.access.members.clone();
        if let Some(g) = after.grants.get_mut(&id) {
            g.sections = names.iter().cloned().collect();
        }
        let rotations = self.rotate(&dropped, &after)?;
        // Wraps of the kept sections name their current epochs (unchanged
        // by the rotations, which touch only dropped sections).
        let keys = self.wrap_current(grantee, &sections)?;
        self.statement(AccessChange::Grant {
            grantee: grantee.clone(),
            role,
            sections: names,
            expires_at_ms,
            label: label.to_string(),
            keys,
            rotations,
        })
    }

    /// What approving a grant of `sections` to `grantee` would change for
    /// an identity that already holds a grant: the sections it would gain
    /// and lose (`None` for a new grantee).
    pub fn grant_change(
        &self,
        grantee: &IdentityId,
        role: GrantRole,
        sections: &[Section],
    ) -> Option<GrantChange> {
        let current = self.access.members.grants.get(grantee)?;
        let new: Vec<Section> = if role == GrantRole::Manager {
            Section::ALL.to_vec()
        } else {
            sections.to_vec()
        };
        Some(GrantChange {
            role_before: current.role,
            gained: new
                .iter()
                .filter(|s| !current.sections.contains(s.as_str()))
                .copied()
                .collect(),
            lost: Section::ALL
                .into_iter()
                .filter(|s| current.sections.contains(s.as_str()) && !new.contains(s))
                .collect(),
        })
    }

    /// New keys for `lost` sections (the next epoch each), wrapped to
    /// every identity that reads the section in `after`, with the old key
    /// chained under the new one. The keys are stored now and used once
    /// the statement carrying the rotations is applied.
    fn rotate(&mut self, lost: &[Section], after: &Members) -> Result<Vec<Rotation>> {
        if lost.is_empty() {
            return Ok(Vec::new());
        }
        let mut keys = self.keys.clone();
        let mut rotations = Vec::with_capacity(lost.len());
        for section in lost {
            let name = section.as_str();
            let (old_epoch, old_key) = self.section_key(*section)?;
            let epoch = old_epoch + 1;
            let new_key = SectionKey::generate()?;
            let chain = SymmetricKey::from_slice(new_key.expose())?
                .seal(&chain_aad(&self.record.id, name, epoch), old_key.expose())?;
            let mut wraps = Vec::new();
            for (to, card) in after.readers(name) {
                let Some(card) = card else {
                    return Err(ProfileError::NotAllowed(
                        "a remaining owner device's card is unknown here; rotate keys from the device that created the record",
                    ));
                };
                wraps.push(KeyWrap {
                    section: name.to_string(),
                    epoch,
                    to,
                    key: wrap_key(
                        card,
                        new_key.expose(),
                        &key_wrap_aad(&self.record.id, name, epoch, &to),
                    )?,
                });
            }
            keys.insert((*section, epoch), new_key);
            rotations.push(Rotation {
                section: name.to_string(),
                epoch,
                chain,
                keys: wraps,
            });
        }
        let mut batch = WriteBatch::new();
        batch.put_meta(super::META_KEYRING, seal_keyring(&self.vault, &keys)?);
        self.store.commit(batch)?;
        self.keys = keys;
        Ok(rotations)
    }

    /// A signed revocation of `sections` (all when `None`) from `identity`,
    /// rotating every section key it loses: a new epoch key, wrapped to
    /// every remaining reader, with the old key chained under it. The new
    /// keys are stored now; they are used once the statement is applied.
    pub fn revoke_statement(
        &mut self,
        identity: &IdentityId,
        sections: Option<&[Section]>,
    ) -> Result<SignedStatement> {
        self.require_admin()?;
        let members = &self.access.members;
        if members.replicas.contains_key(identity) {
            // A replica relay never held a key: nothing to rotate.
            if sections.is_some() {
                return Err(ProfileError::NotAllowed(
                    "a replica relay is removed from the whole record, not from some sections",
                ));
            }
            return self.statement(AccessChange::Revoke {
                identity: *identity,
                sections: None,
                rotations: Vec::new(),
            });
        }
        let readable: Vec<Section> = Section::ALL
            .into_iter()
            .filter(|s| {
                members.owner_devices.contains_key(identity)
                    || members
                        .grants
                        .get(identity)
                        .is_some_and(|g| g.sections.contains(s.as_str()))
            })
            .collect();
        if readable.is_empty() {
            return Err(ProfileError::NotAllowed(
                "that identity has no access to revoke",
            ));
        }
        let lost: Vec<Section> = match sections {
            None => readable,
            Some(list) => readable.into_iter().filter(|s| list.contains(s)).collect(),
        };
        // Members after the revocation, to know who keeps each section.
        let mut after = members.clone();
        let names: Option<Vec<String>> =
            sections.map(|list| list.iter().map(|s| s.as_str().to_string()).collect());
        after.remove_access(identity, names.as_deref());
        let rotations = self.rotate(&lost, &after)?;
        self.statement(AccessChange::Revoke {
            identity: *identity,
            sections: names,
            rotations,
        })
    }

    /// A signed statement naming the relay of `card` (role `relay`) a
    /// replica of the record: it may fetch and forward the record's
    /// ciphertext and is given no key. Owner devices and managers only.
    pub fn replica_statement(&self, card: &IdentityCard, label: &str) -> Result<SignedStatement> {
        self.require_admin()?;
        if card.role != crate::crypto::Role::Relay {
            return Err(ProfileError::NotAllowed(
                "only a relay's identity card can be named a replica",
            ));
        }
        self.statement(AccessChange::AddReplica {
            relay: card.clone(),
            label: label.to_string(),
        })
    }

    /// A signed `retire-relay` statement: the record moved away from the
    /// relay of `card` (to the relay `moved_to`, when named). Owner devices
    /// only; the rule is the protocol's ([`crate::sharing::Members::relay_serves`]).
    pub fn retire_relay_statement(
        &self,
        card: &IdentityCard,
        moved_to: Option<IdentityId>,
    ) -> Result<SignedStatement> {
        if !self.is_owner_device() {
            return Err(ProfileError::NotAllowed(
                "only the owner's devices can move the record",
            ));
        }
        self.statement(AccessChange::RetireRelay {
            relay: card.clone(),
            moved_to,
        })
    }

    /// A signed statement adding a recovery identity (derived from a
    /// recovery key) as an owner device, with every current key wrapped to
    /// it and `sealed` (the record's facts, sealed under the recovery key).
    pub fn recovery_statement(
        &self,
        recovery: &IdentityCard,
        sealed: Vec<u8>,
    ) -> Result<SignedStatement> {
        if !self.is_owner_device() {
            return Err(ProfileError::NotAllowed(
                "only the owner's devices may make a recovery key",
            ));
        }
        let keys = self.wrap_current(recovery, &Section::ALL)?;
        self.statement(AccessChange::AddRecovery {
            recovery: recovery.clone(),
            sealed,
            keys,
        })
    }

    /// Grantees whose grant has expired at `now_ms` but still stands in the
    /// log, when this device may administer (owner device or manager):
    /// each must be revoked, rotating its sections, so that what is written
    /// afterwards is unreadable to it even through a relay that ignores
    /// expiry.
    pub fn expired_grants(&self, now_ms: i64) -> Vec<IdentityId> {
        if !self
            .access
            .members
            .may_administer(&self.identity.id(), now_ms)
        {
            return Vec::new();
        }
        self.access
            .members
            .grants
            .iter()
            .filter(|(_, g)| !g.live_at(now_ms))
            .map(|(id, _)| *id)
            .collect()
    }

    /// Sections this device holds a current key for (what it can read).
    pub fn readable_sections(&self) -> Vec<Section> {
        Section::ALL
            .into_iter()
            .filter(|s| self.section_key(*s).is_ok())
            .collect()
    }
}
