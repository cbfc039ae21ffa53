//! The vault header and how a vault key is obtained: Argon2id from a
//! passphrase (desktop) or a random key kept by a [`SecretStore`] (phones).
//!
//! The header is the one plaintext meta value of a profile. It holds only
//! the KDF parameters or the keystore item name, and the master key sealed
//! under the vault key.

use base64::Engine;
use serde::{Deserialize, Serialize};

use super::{ProfileError, Result, SecretStore};
use crate::crypto::{derive_vault_key, KdfParams, SymmetricKey};
use crate::ids::RecordId;

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
}

impl std::fmt::Debug for Unlock<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unlock::Passphrase { .. } => f.write_str("Unlock::Passphrase(..)"),
            Unlock::SecretStore(_) => f.write_str("Unlock::SecretStore(..)"),
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
        // A passphrase for a keystore profile, or the reverse: the caller
        // has the wrong kind of key.
        _ => Err(ProfileError::WrongKey),
    }
}
