//! A home's own identity when it holds no record of its own: a carer's or
//! a provider's. The identity (and small private values such as pending
//! invites) live in their own store under the same vault scheme as a
//! profile; each record shared with the identity is a member profile in a
//! store of its own ([`Profile::create_member`]).

use super::vault::Vault;
use super::{Profile, ProfileError, Result, Unlock};
use super::{META_IDENTITY, META_RECORD, META_VAULT};
use crate::crypto::{Identity, IdentityCard, Role};
use crate::ids::{IdentityId, RecordId};
use crate::store::{Store, WriteBatch};
use crate::sync::link::{LinkCode, LinkError};
use crate::sync::sharing as net;
use crate::sync::RelayClient;
use std::time::Duration;

/// The private value holding answered, not yet approved invites (a JSON
/// list of codes, as given).
const PENDING_ACCEPTS: &str = "accepted-invites";

/// Why answering an invite failed: at the relay, or keeping it as pending.
#[derive(Debug, thiserror::Error)]
pub enum AnswerError {
    /// The relay or the invite refused.
    #[error(transparent)]
    Link(#[from] LinkError),
    /// The answer went out but could not be remembered here.
    #[error(transparent)]
    Profile(#[from] ProfileError),
}

/// What a member profile needs to know about the record it joins (sent by
/// the owner with the approval, or recovered from a recovery key).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct MemberInfo {
    pub record_id: RecordId,
    pub creator: IdentityId,
    pub creator_card: Option<IdentityCard>,
    pub owner_name: String,
}

/// An unlocked identity store.
pub struct IdentityVault<S: Store> {
    store: S,
    /// The master key, bound to a random id of this store (as a profile's
    /// is bound to its record id).
    vault: Vault,
    identity: Identity,
}

impl<S: Store> std::fmt::Debug for IdentityVault<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdentityVault")
            .field("identity", &self.identity.id())
            .finish_non_exhaustive()
    }
}

impl<S: Store> IdentityVault<S> {
    /// Create a new identity in an empty store.
    pub fn create(
        mut store: S,
        unlock: Unlock<'_>,
        display_name: &str,
        role: Role,
        organisation: Option<&str>,
    ) -> Result<Self> {
        if store.get_meta(META_VAULT)?.is_some() {
            return Err(ProfileError::AlreadyInitialised);
        }
        let identity = Identity::generate(display_name, role, organisation)?;
        let vault_id = RecordId::random();
        let (vault, header) = Vault::create(vault_id, unlock)?;
        let mut batch = WriteBatch::new();
        batch
            .put_meta(META_RECORD, vault_id.to_hex().into_bytes())
            .put_meta(
                META_IDENTITY,
                vault.seal(META_IDENTITY, &identity.to_secret_bytes())?,
            )
            .put_meta(META_VAULT, header);
        store.commit(batch)?;
        Ok(Self {
            store,
            vault,
            identity,
        })
    }

    /// Unlock an existing identity store.
    pub fn open(store: S, unlock: Unlock<'_>) -> Result<Self> {
        if store.get_meta(META_VAULT)?.is_none() {
            return Err(ProfileError::NotInitialised);
        }
        let vault_id: RecordId = store
            .get_meta(META_RECORD)?
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|s| s.parse().ok())
            .ok_or(ProfileError::Corrupt("identity vault id"))?;
        let vault = Vault::unlock(&store, vault_id, unlock)?;
        let bytes = vault.open_meta(&store, META_IDENTITY, "identity")?;
        let identity = Identity::from_secret_bytes(&bytes)?;
        Ok(Self {
            store,
            vault,
            identity,
        })
    }

    /// The identity's public card.
    pub fn card(&self) -> &IdentityCard {
        self.identity.card()
    }

    /// Answer an invite with this identity (its card, signed): the first
    /// half of joining a record. Remembered as pending until
    /// [`Self::join_approved`] completes it or it is forgotten.
    pub async fn answer_invite(
        &mut self,
        client: &mut RelayClient,
        code: &LinkCode,
        code_text: &str,
    ) -> std::result::Result<(), AnswerError> {
        net::accept(client, &self.identity, code).await?;
        let mut pending = self.pending_accepts()?;
        let text = code_text.trim().to_string();
        if !pending.contains(&text) {
            pending.push(text);
            self.set_pending_accepts(&pending)?;
        }
        Ok(())
    }

    /// Wait up to `timeout` for the owner's approval of an answered invite;
    /// returns what the member profile needs ([`Self::join_approved`]).
    pub async fn await_approval(
        &self,
        client: &mut RelayClient,
        code: &LinkCode,
        timeout: Duration,
    ) -> std::result::Result<MemberInfo, LinkError> {
        net::await_approval(client, &self.identity, code, timeout).await
    }

    /// Set up the member profile of an approved record in `store` (this
    /// identity's copy of someone else's record) and forget the invite.
    pub fn join_approved<T: Store>(
        &mut self,
        store: T,
        unlock: Unlock<'_>,
        info: MemberInfo,
        code_text: &str,
    ) -> Result<Profile<T>> {
        let identity = Identity::from_secret_bytes(&self.identity.to_secret_bytes())?;
        let profile = Profile::create_member(store, unlock, identity, info)?;
        self.forget_pending_accept(code_text)?;
        Ok(profile)
    }

    /// Invites answered and not yet approved (their codes, as given).
    pub fn pending_accepts(&self) -> Result<Vec<String>> {
        match self.get_private(PENDING_ACCEPTS)? {
            None => Ok(Vec::new()),
            Some(bytes) => {
                serde_json::from_slice(&bytes).map_err(|_| ProfileError::Corrupt("pending invites"))
            }
        }
    }

    /// Forget an answered invite (approved, or refused by the relay).
    pub fn forget_pending_accept(&mut self, code_text: &str) -> Result<()> {
        let text = code_text.trim();
        let mut pending = self.pending_accepts()?;
        let before = pending.len();
        pending.retain(|c| c != text);
        if pending.len() != before {
            self.set_pending_accepts(&pending)?;
        }
        Ok(())
    }

    fn set_pending_accepts(&mut self, pending: &[String]) -> Result<()> {
        let bytes =
            serde_json::to_vec(pending).map_err(|_| ProfileError::Corrupt("pending invites"))?;
        self.put_private(PENDING_ACCEPTS, &bytes)
    }

    /// Store a small private value, sealed under the master key.
    pub fn put_private(&mut self, name: &str, value: &[u8]) -> Result<()> {
        self.vault.put_private(&mut self.store, name, value)
    }

    /// Read a private value.
    pub fn get_private(&self, name: &str) -> Result<Option<zeroize::Zeroizing<Vec<u8>>>> {
        self.vault.get_private(&self.store, name)
    }

    /// Remove a private value.
    pub fn delete_private(&mut self, name: &str) -> Result<()> {
        let mut batch = WriteBatch::new();
        batch.delete_meta(format!("private/{name}"));
        self.store.commit(batch)?;
        Ok(())
    }
}

impl<S: Store> Profile<S> {
    /// Set up a store for a record shared with `identity` (a carer's,
    /// provider's or manager's view of someone else's record). It holds no
    /// keys yet: they arrive wrapped in the access log on the first sync.
    pub fn create_member(
        store: S,
        unlock: Unlock<'_>,
        identity: Identity,
        info: MemberInfo,
    ) -> Result<Self> {
        let details = super::ProfileDetails {
            owner_name: info.owner_name,
            creator: info.creator,
            creator_card: info.creator_card,
        };
        Self::initialise(
            store,
            unlock,
            info.record_id,
            identity,
            details,
            super::Keyring::new(),
        )
    }

    /// What a member needs to know to join this record.
    pub fn member_info(&self) -> MemberInfo {
        MemberInfo {
            record_id: self.record.id,
            creator: self.access.creator,
            creator_card: self.access.creator_card.clone(),
            owner_name: self.owner_name.clone(),
        }
    }

    /// Store a small private value, sealed under the master key.
    pub fn put_private(&mut self, name: &str, value: &[u8]) -> Result<()> {
        self.vault.put_private(&mut self.store, name, value)
    }

    /// Read a private value.
    pub fn get_private(&self, name: &str) -> Result<Option<zeroize::Zeroizing<Vec<u8>>>> {
        self.vault.get_private(&self.store, name)
    }
}
