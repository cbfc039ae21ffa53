//! The platform keystore as the app implements it (Android Keystore, iOS
//! Keychain) and its adapter to the core's [`crate::profile::SecretStore`].
//! The vault key passes through here once per open; nothing else does.

use std::sync::Arc;

use zeroize::Zeroizing;

use super::error::SatchelError;
use crate::profile::SecretStoreError;

/// Implemented by the app over the platform keystore. Items are small
/// (32-byte vault keys) and named `satchel.vault-key.<record id>`; an
/// implementation must keep them device-bound and out of backups.
#[uniffi::export(with_foreign)]
pub trait SecretStore: Send + Sync {
    /// The secret stored under `name`, or null when there is none.
    fn get(&self, name: String) -> Result<Option<Vec<u8>>, SatchelError>;
    /// Store (or replace) the secret under `name`.
    fn put(&self, name: String, secret: Vec<u8>) -> Result<(), SatchelError>;
    /// Remove the secret under `name` (no error when absent).
    fn delete(&self, name: String) -> Result<(), SatchelError>;
}

/// The app's keystore seen by the core.
pub(crate) struct ForeignSecretStore(pub Arc<dyn SecretStore>);

fn describe(e: SatchelError) -> SecretStoreError {
    SecretStoreError(match e {
        SatchelError::Keystore { reason } => reason,
        other => other.to_string(),
    })
}

impl crate::profile::SecretStore for ForeignSecretStore {
    fn get(&self, name: &str) -> Result<Option<Zeroizing<Vec<u8>>>, SecretStoreError> {
        self.0
            .get(name.to_string())
            .map(|v| v.map(Zeroizing::new))
            .map_err(describe)
    }

    fn put(&self, name: &str, secret: &[u8]) -> Result<(), SecretStoreError> {
        self.0
            .put(name.to_string(), secret.to_vec())
            .map_err(describe)
    }

    fn delete(&self, name: &str) -> Result<(), SecretStoreError> {
        self.0.delete(name.to_string()).map_err(describe)
    }
}
