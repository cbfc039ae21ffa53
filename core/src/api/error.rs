//! The one error type of the mobile API. Few variants, each telling the app
//! what to do next; messages name resource types, indexes and ids, never
//! health data (they come from the core's errors, which follow that rule).

use crate::profile::ProfileError;
use crate::sync::link::LinkError;
use crate::sync::sharing::RestoreError;
use crate::sync::{SyncError, TransportError};

/// Everything that can go wrong in a call of the mobile API.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, uniffi::Error)]
pub enum SatchelError {
    /// The key from the keystore (or the recovery key) does not open this
    /// vault. Nothing was changed. Ask the user, or restore.
    #[error("wrong key: the vault could not be opened (nothing was changed)")]
    WrongKey,
    /// The platform keystore failed or holds no key for this profile.
    #[error("keystore: {reason}")]
    Keystore { reason: String },
    /// No record (or identity) here yet: create one, accept an invite or restore.
    #[error("not found: {reason}")]
    NotFound { reason: String },
    /// The input was refused (bad FHIR, unknown section, bad code); nothing changed.
    #[error("invalid input: {reason}")]
    InvalidInput { reason: String },
    /// This device or member may not do that (no grant, revoked, not a manager).
    #[error("not allowed: {reason}")]
    NotAllowed { reason: String },
    /// The relay could not be reached; local changes stay queued. Retry later.
    #[error("offline: {reason}")]
    Offline { reason: String },
    /// The relay refused or answered unexpectedly, or an invite timed out.
    #[error("relay: {reason}")]
    Relay { reason: String },
    /// Stored data failed an integrity check, or an internal failure.
    #[error("storage: {reason}")]
    Storage { reason: String },
}

impl SatchelError {
    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        SatchelError::NotFound {
            reason: message.into(),
        }
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        SatchelError::InvalidInput {
            reason: message.into(),
        }
    }

    pub(crate) fn storage(message: impl Into<String>) -> Self {
        SatchelError::Storage {
            reason: message.into(),
        }
    }
}

/// A foreign callback (SecretStore, ChangeListener) threw something that is
/// not a SatchelError.
impl From<uniffi::UnexpectedUniFFICallbackError> for SatchelError {
    fn from(e: uniffi::UnexpectedUniFFICallbackError) -> Self {
        SatchelError::Keystore { reason: e.reason }
    }
}

impl From<ProfileError> for SatchelError {
    fn from(e: ProfileError) -> Self {
        let message = e.to_string();
        match e {
            ProfileError::WrongKey => SatchelError::WrongKey,
            ProfileError::MissingVaultKey | ProfileError::SecretStore(_) => {
                SatchelError::Keystore { reason: message }
            }
            ProfileError::NotInitialised => SatchelError::NotFound { reason: message },
            ProfileError::AlreadyInitialised | ProfileError::Fhir(_) | ProfileError::Record(_) => {
                SatchelError::InvalidInput { reason: message }
            }
            ProfileError::NoKey(_) | ProfileError::NotAllowed(_) | ProfileError::ReadOnly(_) => {
                SatchelError::NotAllowed { reason: message }
            }
            _ => SatchelError::Storage { reason: message },
        }
    }
}

impl From<crate::store::StoreError> for SatchelError {
    fn from(e: crate::store::StoreError) -> Self {
        ProfileError::from(e).into()
    }
}

impl From<SyncError> for SatchelError {
    fn from(e: SyncError) -> Self {
        let message = e.to_string();
        match e {
            SyncError::Offline(_) => SatchelError::Offline { reason: message },
            SyncError::Refused { status, .. } if status == 401 || status == 403 => {
                SatchelError::NotAllowed { reason: message }
            }
            SyncError::Refused { .. } | SyncError::Protocol => {
                SatchelError::Relay { reason: message }
            }
        }
    }
}

impl From<TransportError> for SatchelError {
    fn from(e: TransportError) -> Self {
        match e {
            TransportError::Sync(e) => e.into(),
            TransportError::Profile(e) => e.into(),
            TransportError::BadUrl(_) | TransportError::Tls(_) => {
                SatchelError::invalid(e.to_string())
            }
        }
    }
}

impl From<crate::profile::AnswerError> for SatchelError {
    fn from(e: crate::profile::AnswerError) -> Self {
        match e {
            crate::profile::AnswerError::Link(e) => e.into(),
            crate::profile::AnswerError::Profile(e) => e.into(),
        }
    }
}

impl From<LinkError> for SatchelError {
    fn from(e: LinkError) -> Self {
        match e {
            LinkError::Transport(e) => e.into(),
            LinkError::Profile(e) => e.into(),
            LinkError::BadCode => SatchelError::invalid(e.to_string()),
            LinkError::BadProof => SatchelError::NotAllowed {
                reason: e.to_string(),
            },
            LinkError::TimedOut => SatchelError::Relay {
                reason: e.to_string(),
            },
            LinkError::Encode => SatchelError::Storage {
                reason: e.to_string(),
            },
        }
    }
}

impl From<RestoreError> for SatchelError {
    fn from(e: RestoreError) -> Self {
        match e {
            RestoreError::UnknownKey => SatchelError::WrongKey,
            RestoreError::Link(e) => e.into(),
            RestoreError::Profile(e) => e.into(),
        }
    }
}

impl From<crate::crypto::CryptoError> for SatchelError {
    fn from(e: crate::crypto::CryptoError) -> Self {
        ProfileError::from(e).into()
    }
}

pub type Result<T> = std::result::Result<T, SatchelError>;
