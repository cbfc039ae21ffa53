//! The platform keystore seam. Apps implement [`SecretStore`] over the iOS
//! Keychain or the Android Keystore; the core asks it for the vault key and
//! never writes that key anywhere else.

use std::collections::HashMap;
use std::sync::Mutex;

use zeroize::Zeroizing;

/// A keystore failure, described by the platform (no secret material).
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct SecretStoreError(pub String);

/// Where the vault key lives on a phone: a small, named, device-bound secret
/// store. Implementations must keep the bytes out of backups and logs.
pub trait SecretStore: Send + Sync {
    /// The secret stored under `name`, if any.
    fn get(&self, name: &str) -> Result<Option<Zeroizing<Vec<u8>>>, SecretStoreError>;
    /// Store (or replace) the secret under `name`.
    fn put(&self, name: &str, secret: &[u8]) -> Result<(), SecretStoreError>;
    /// Remove the secret under `name` (no error when absent).
    fn delete(&self, name: &str) -> Result<(), SecretStoreError>;
}

/// A process-local [`SecretStore`] for tests and desktop sessions that keep
/// the key only for their lifetime.
#[derive(Default)]
pub struct MemorySecretStore {
    items: Mutex<HashMap<String, Zeroizing<Vec<u8>>>>,
}

impl MemorySecretStore {
    pub fn new() -> Self {
        Self::default()
    }
}

impl std::fmt::Debug for MemorySecretStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MemorySecretStore(..)")
    }
}

impl SecretStore for MemorySecretStore {
    fn get(&self, name: &str) -> Result<Option<Zeroizing<Vec<u8>>>, SecretStoreError> {
        let items = self
            .items
            .lock()
            .map_err(|_| SecretStoreError("lock poisoned".into()))?;
        Ok(items.get(name).cloned())
    }

    fn put(&self, name: &str, secret: &[u8]) -> Result<(), SecretStoreError> {
        let mut items = self
            .items
            .lock()
            .map_err(|_| SecretStoreError("lock poisoned".into()))?;
        items.insert(name.to_string(), Zeroizing::new(secret.to_vec()));
        Ok(())
    }

    fn delete(&self, name: &str) -> Result<(), SecretStoreError> {
        let mut items = self
            .items
            .lock()
            .map_err(|_| SecretStoreError("lock poisoned".into()))?;
        items.remove(name);
        Ok(())
    }
}
