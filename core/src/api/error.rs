//! The one error type of the mobile API. Few variants, each telling the app
//! what to do next; messages name resource types, indexes and ids, never
//! health data (they come from the core's errors, which follow that rule).

use crate::nearby::channel::ChannelError;
use crate::nearby::discovery::DiscoveryError;
use crate::nearby::session::SessionError;
use crate::profile::ProfileError;
use crate::sync::link::LinkError;
use crate::sync::sharing::RestoreError;
use crate::sync::{SyncError, TransportError};
use satchel_protocol::direct::RefusalReason;

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
    /// This device or member may not do that (no grant, revoked, not a
    /// manager), or, in a direct sync, either device refused the other (not
    /// a member, a wrong or used pairing code, another record or device).
    #[error("not allowed: {reason}")]
    NotAllowed { reason: String },
    /// The relay or the other device could not be reached, or the
    /// connection to it failed or timed out; local changes stay queued.
    /// Retry later.
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
            LinkError::TimedOut | LinkError::BadRelayIdentity => SatchelError::Relay {
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

/// The direct channel failed: the connection, the handshake or a message.
/// All of it is "try again" for the app.
impl From<ChannelError> for SatchelError {
    fn from(e: ChannelError) -> Self {
        SatchelError::Offline {
            reason: format!("direct sync: {e}"),
        }
    }
}

impl From<SessionError> for SatchelError {
    fn from(e: SessionError) -> Self {
        match e {
            SessionError::Channel(e) => e.into(),
            SessionError::Profile(e) => e.into(),
            SessionError::Protocol(_) => SatchelError::Offline {
                reason: format!("direct sync: {e}"),
            },
            // Diverging access logs: an integrity failure, not a refusal to retry.
            SessionError::PeerRefused(RefusalReason::Fork)
            | SessionError::Refused(RefusalReason::Fork) => SatchelError::Storage {
                reason: format!("direct sync: {e}"),
            },
            SessionError::PeerRefused(_) | SessionError::Refused(_) => SatchelError::NotAllowed {
                reason: format!("direct sync: {e}"),
            },
        }
    }
}

impl From<DiscoveryError> for SatchelError {
    fn from(e: DiscoveryError) -> Self {
        let reason = format!("local-network discovery: {e}");
        match e {
            DiscoveryError::Advert(_) => SatchelError::InvalidInput { reason },
            DiscoveryError::Daemon(_) => SatchelError::Offline { reason },
            _ => SatchelError::Storage { reason },
        }
    }
}

pub type Result<T> = std::result::Result<T, SatchelError>;
