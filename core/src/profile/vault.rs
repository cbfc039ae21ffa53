//! The vault header and how a vault key is obtained: Argon2id from a
//! passphrase (desktop) or a random key kept by a [`SecretStore`] (phones).
//!
//! The header is the one plaintext meta value of a profile. It holds only
//! the KDF parameters or the keystore item name, and the master key sealed
//! under the vault key.

use base64::Engine;
use serde::{Deserialize, Serialize};

use zeroize::Zeroizing;

use super::{ProfileError, Result, SecretStore, META_VAULT};
use crate::crypto::{derive_vault_key, KdfParams, SymmetricKey};
use crate::ids::RecordId;
use crate::store::{Store, WriteBatch};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD_NO_PAD;

/// How to unlock (or, at creation, protect) a profile.
pub enum Unlock<'a> {
    /// Desktop: a passphrase stretched with Argon2id. `params` is used only at
    /// creation (None = [`KdfParams::recommended`]); opening reads the stored ones.
    Passphrase {
        passphrase: &'a [u8],
        params: Option<KdfParams>,
    },
    /// Phones: a random vault key held by the platform keystore.
    SecretStore(&'a dyn SecretStore),
    /// A vault key obtained earlier for this very store with
    /// [`vault_key`] (a long-running process that reopens many stores
    /// unlocked by one passphrase runs Argon2 once per store, not once per
    /// open). Opens only; a key that does not open the master key is
    /// [`ProfileError::WrongKey`]. Never creates a vault.
    Key(&'a VaultKey),
}

/// A vault key, derived from a passphrase (or read from a keystore) for one
/// store's header: see [`Unlock::Key`]. Zeroized on drop; `Debug` is
/// redacted. It opens that store as the passphrase does: keep it only in
/// memory, and only where the passphrase itself is kept.
pub struct VaultKey(SymmetricKey);

impl std::fmt::Debug for VaultKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("VaultKey(<redacted>)")
    }
}

/// The vault key of the profile or identity store `store`, as `how`
/// gives it (a passphrase: Argon2id with the store's own parameters and
/// salt). Not checked here: opening with [`Unlock::Key`] checks it.
pub fn vault_key<S: Store>(store: &S, how: Unlock<'_>) -> Result<VaultKey> {
    Ok(VaultKey(unlock(&VaultHeader::stored(store)?, how)?))
}

impl std::fmt::Debug for Unlock<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unlock::Passphrase { .. } => f.write_str("Unlock::Passphrase(..)"),
            Unlock::SecretStore(_) => f.write_str("Unlock::SecretStore(..)"),
            Unlock::Key(_) => f.write_str("Unlock::Key(..)"),
        }
    }
}

/// Which kind of vault key protects a profile.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum VaultKind {
    Passphrase { kdf: KdfParams },
    SecretStore { item: String },
}

/// The plaintext vault header stored in meta `vault`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VaultHeader {
    pub version: u8,
    #[serde(flatten)]
    pub kind: VaultKind,
    wrapped_master: String,
}

impl VaultHeader {
    pub(super) fn with_wrapped_master(mut self, sealed: Vec<u8>) -> Self {
        self.wrapped_master = B64.encode(sealed);
        self
    }

    pub(super) fn wrapped_master(&self) -> Result<Vec<u8>> {
        B64.decode(&self.wrapped_master)
            .map_err(|_| ProfileError::Corrupt("vault header"))
    }

    pub(super) fn to_bytes(&self) -> Result<Vec<u8>> {
        serde_json::to_vec(self).map_err(|_| ProfileError::Corrupt("vault header"))
    }

    /// The header of `store` (none: [`ProfileError::NotInitialised`]).
    fn stored<S: Store>(store: &S) -> Result<Self> {
        Self::from_bytes(
            &store
                .get_meta(META_VAULT)?
                .ok_or(ProfileError::NotInitialised)?,
        )
    }

    pub(super) fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let header: Self =
            serde_json::from_slice(bytes).map_err(|_| ProfileError::Corrupt("vault header"))?;
        if header.version != 1 {
            return Err(ProfileError::Corrupt("vault header version"));
        }
        Ok(header)
    }
}

fn keystore_item(record: &RecordId) -> String {
    format!("satchel.vault-key.{record}")
}

/// A new header (without the wrapped master yet) and the vault key.
pub(super) fn create(record: &RecordId, unlock: Unlock<'_>) -> Result<(VaultHeader, SymmetricKey)> {
    match unlock {
        Unlock::Passphrase { passphrase, params } => {
            let kdf = match params {
                Some(p) => p,
                None => KdfParams::recommended()?,
            };
            let key = derive_vault_key(passphrase, &kdf)?;
            let header = VaultHeader {
                version: 1,
                kind: VaultKind::Passphrase { kdf },
                wrapped_master: String::new(),
            };
            Ok((header, key))
        }
        Unlock::SecretStore(store) => {
            let key = SymmetricKey::generate()?;
            let item = keystore_item(record);
            store.put(&item, key.expose())?;
            let header = VaultHeader {
                version: 1,
                kind: VaultKind::SecretStore { item },
                wrapped_master: String::new(),
            };
            Ok((header, key))
        }
        // A derived key is bound to an existing header's salt: a new vault
        // needs a passphrase or a keystore.
        Unlock::Key(_) => Err(ProfileError::WrongKey),
    }
}

/// The vault key for an existing header. A key that does not open the
/// master key is reported by the caller as [`ProfileError::WrongKey`].
pub(super) fn unlock(header: &VaultHeader, unlock: Unlock<'_>) -> Result<SymmetricKey> {
    match (&header.kind, unlock) {
        (VaultKind::Passphrase { kdf }, Unlock::Passphrase { passphrase, .. }) => {
            Ok(derive_vault_key(passphrase, kdf)?)
        }
        (VaultKind::SecretStore { item }, Unlock::SecretStore(store)) => {
            let bytes = store.get(item)?.ok_or(ProfileError::MissingVaultKey)?;
            SymmetricKey::from_slice(&bytes).map_err(|_| ProfileError::WrongKey)
        }
        // Whatever gave it: it opens the master key or it is the wrong key.
        (_, Unlock::Key(key)) => Ok(key.0.clone()),
        // A passphrase for a keystore profile, or the reverse: the caller
        // has the wrong kind of key.
        _ => Err(ProfileError::WrongKey),
    }
}

/// An unlocked vault: the master key, bound to the id its sealed values
/// name in their AAD (a record id, or an identity store's own id). The one
/// owner of the master key: everything sealed at rest goes through it.
pub(crate) struct Vault {
    master: SymmetricKey,
    binding: RecordId,
}

impl Vault {
    /// A new vault for `binding`: a random master key, sealed under the key
    /// `unlock` gives. Returns the vault and the header to store in meta
    /// `vault` (in the same batch as the first sealed values).
    pub(crate) fn create(binding: RecordId, unlock: Unlock<'_>) -> Result<(Vault, Vec<u8>)> {
        let master = SymmetricKey::generate()?;
        let (header, vault_key) = create(&binding, unlock)?;
        let header = header
            .with_wrapped_master(
                vault_key.seal(&super::aad(&binding, META_VAULT), master.expose())?,
            )
            .to_bytes()?;
        Ok((Vault { master, binding }, header))
    }

    /// Unlock the vault of `store` (bound to `binding`). Without a header:
    /// [`ProfileError::NotInitialised`]; a key that does not open it:
    /// [`ProfileError::WrongKey`], before anything is written.
    pub(crate) fn unlock<S: Store>(store: &S, binding: RecordId, how: Unlock<'_>) -> Result<Vault> {
        let header = VaultHeader::stored(store)?;
        let vault_key = unlock(&header, how)?;
        let master_bytes = vault_key
            .open(&super::aad(&binding, META_VAULT), &header.wrapped_master()?)
            .map_err(|_| ProfileError::WrongKey)?;
        let master = SymmetricKey::from_slice(&master_bytes)?;
        Ok(Vault { master, binding })
    }

    /// Seal `value` as the meta value `what`.
    pub(crate) fn seal(&self, what: &str, value: &[u8]) -> Result<Vec<u8>> {
        Ok(self.master.seal(&super::aad(&self.binding, what), value)?)
    }

    /// Open the sealed meta value `key` (missing or failing its check:
    /// [`ProfileError::Corrupt`] naming `what`).
    pub(crate) fn open_meta<S: Store>(
        &self,
        store: &S,
        key: &str,
        what: &'static str,
    ) -> Result<Zeroizing<Vec<u8>>> {
        let sealed = store.get_meta(key)?.ok_or(ProfileError::Corrupt(what))?;
        self.master
            .open(&super::aad(&self.binding, key), &sealed)
            .map_err(|_| ProfileError::Corrupt(what))
    }

    /// Store a small private value, sealed.
    pub(crate) fn put_private<S: Store>(
        &self,
        store: &mut S,
        name: &str,
        value: &[u8],
    ) -> Result<()> {
        let key = format!("private/{name}");
        let sealed = self.seal(&key, value)?;
        let mut batch = WriteBatch::new();
        batch.put_meta(key, sealed);
        store.commit(batch)?;
        Ok(())
    }

    /// Read a private value (`None` if never stored).
    pub(crate) fn get_private<S: Store>(
        &self,
        store: &S,
        name: &str,
    ) -> Result<Option<Zeroizing<Vec<u8>>>> {
        let key = format!("private/{name}");
        if store.get_meta(&key)?.is_none() {
            return Ok(None);
        }
        self.open_meta(store, &key, "private value").map(Some)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    fn pass(p: &[u8]) -> Unlock<'_> {
        Unlock::Passphrase {
            passphrase: p,
            params: Some(KdfParams::for_tests()),
        }
    }

    /// A vault opens with its key only, its sealed values are bound to its
    /// id, and private values round-trip.
    #[test]
    fn vault_unlocks_with_its_key_and_binds_its_values() {
        let binding = RecordId::random();
        let mut store = MemoryStore::new();
        assert!(matches!(
            Vault::unlock(&store, binding, pass(b"right")),
            Err(ProfileError::NotInitialised)
        ));
        let (vault, header) = Vault::create(binding, pass(b"right")).unwrap();
        let mut batch = WriteBatch::new();
        batch.put_meta(META_VAULT, header);
        store.commit(batch).unwrap();
        vault.put_private(&mut store, "note", b"secret").unwrap();
        assert_eq!(vault.get_private(&store, "missing").unwrap(), None);

        let again = Vault::unlock(&store, binding, pass(b"right")).unwrap();
        assert_eq!(
            again
                .get_private(&store, "note")
                .unwrap()
                .unwrap()
                .as_slice(),
            b"secret"
        );
        assert!(matches!(
            Vault::unlock(&store, binding, pass(b"wrong")),
            Err(ProfileError::WrongKey)
        ));
        // Bound to its id: the same key under another id opens nothing.
        assert!(matches!(
            Vault::unlock(&store, RecordId::random(), pass(b"right")),
            Err(ProfileError::WrongKey)
        ));
    }
}
