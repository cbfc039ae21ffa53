//! Cryptography for Satchel: identities and their cards, envelope sealing
//! and signatures, key wrapping to recipients (HPKE), the at-rest symmetric
//! layer. Nothing else in the protocol calls `ring` or `hpke` directly but
//! [`crate::discovery`] (one ChaCha20-Poly1305 seal, so the advert format
//! reads in one file); the passphrase-derived vault key (Argon2id) is the
//! device's, in `satchel-core`.
//!
//! - [`identity`]: [`Identity`] (Ed25519 + X25519 secrets), [`IdentityCard`]
//!   (public, self-signed), fingerprints, [`verify_signature`].
//! - [`envelope`]: [`SectionKey`], [`EnvelopeHeader`], [`Envelope`]: the
//!   signed, encrypted unit of sync and of at-rest section data, with its
//!   byte layout.
//! - [`wrap`]: [`wrap_key`] / [`unwrap_key`]: HPKE (RFC 9180) base mode,
//!   DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, ChaCha20-Poly1305.
//! - [`kdf`]: [`kdf::hkdf_sha256`], the one HKDF call.
//! - [`symmetric`]: [`SymmetricKey`]: AES-256-GCM with a random nonce for the
//!   vault layer (vault key → master key → identity secrets, section keys).
//!
//! Rules kept throughout: secrets are zeroized on drop and never appear in
//! `Debug` output or error messages; all randomness comes from
//! `ring::rand::SystemRandom`; parsers of untrusted bytes never panic.
//! Design record: `docs/adr/0001-crypto-choices.md`.

pub mod encoding;
pub mod envelope;
mod error;
pub mod identity;
pub mod kdf;
pub mod random;
pub mod symmetric;
pub mod wrap;

pub use envelope::{Envelope, EnvelopeHeader, SectionKey};
pub use error::{CryptoError, Result};
pub use identity::{verify_signature, Identity, IdentityCard, Role, Signer};
pub use symmetric::SymmetricKey;
pub use wrap::{unwrap_key, wrap_key, WrappedKey};

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn public_types_are_send_and_sync() {
        assert_send_sync::<Identity>();
        assert_send_sync::<IdentityCard>();
        assert_send_sync::<SymmetricKey>();
        assert_send_sync::<SectionKey>();
        assert_send_sync::<Envelope>();
        assert_send_sync::<WrappedKey>();
        assert_send_sync::<CryptoError>();
    }

    #[test]
    fn error_messages_are_stable_and_secret_free() {
        assert_eq!(
            CryptoError::Decrypt.to_string(),
            "decryption failed: wrong key, or the data was tampered with"
        );
        assert_eq!(
            CryptoError::BadSignature.to_string(),
            "signature verification failed"
        );
        assert_eq!(
            CryptoError::Malformed("envelope").to_string(),
            "malformed envelope"
        );
        assert_eq!(
            CryptoError::UnsupportedVersion(2).to_string(),
            "unsupported format version 2"
        );
    }
}
