//! Cryptography for Satchel: identities and their cards, envelope sealing
//! and signatures, key wrapping to recipients (HPKE), the at-rest symmetric
//! layer and passphrase-derived vault keys. Nothing else in the crate calls
//! `ring`, `hpke` or `argon2` directly.
//!
//! - [`identity`]: [`Identity`] (Ed25519 + X25519 secrets), [`IdentityCard`]
//!   (public, self-signed), fingerprints, [`verify_signature`].
//! - [`envelope`]: [`SectionKey`], [`EnvelopeHeader`], [`Envelope`]: the
//!   signed, encrypted unit of sync and of at-rest section data, with its
//!   byte layout.
//! - [`wrap`]: [`wrap_key`] / [`unwrap_key`]: HPKE (RFC 9180) base mode,
//!   DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, ChaCha20-Poly1305.
//! - [`symmetric`]: [`SymmetricKey`]: AES-256-GCM with a random nonce for the
//!   vault layer (vault key → master key → identity secrets, section keys).
//! - [`vault`]: [`KdfParams`], [`derive_vault_key`]: Argon2id.
//!
//! Rules kept throughout: secrets are zeroized on drop and never appear in
//! `Debug` output or error messages; all randomness comes from
//! `ring::rand::SystemRandom`; parsers of untrusted bytes never panic.
//! Design record: `docs/adr/0001-crypto-choices.md`.

pub(crate) mod encoding;
pub mod envelope;
mod error;
pub mod identity;
mod random;
pub mod symmetric;
pub mod vault;
pub mod wrap;

pub use envelope::{Envelope, EnvelopeHeader, SectionKey};
pub use error::{CryptoError, Result};
pub use identity::{verify_signature, Identity, IdentityCard, Role};
pub use symmetric::SymmetricKey;
pub use vault::{derive_vault_key, KdfParams};
pub use wrap::{unwrap_key, wrap_key, WrappedKey};

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::ids::RecordId;

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

    /// The whole hierarchy: passphrase → vault key → master key → identity
    /// secret and section key → envelope, then sharing the section key with
    /// a carer who opens the patient's envelope.
    #[test]
    fn key_hierarchy_end_to_end() {
        let params = KdfParams::for_tests();
        let vault = derive_vault_key(b"patient passphrase", &params).unwrap();
        let master = SymmetricKey::generate().unwrap();
        let wrapped_master = vault.seal(b"satchel/master-key", master.expose()).unwrap();

        let phone = Identity::generate("Pat's phone", Role::PatientDevice, None).unwrap();
        let wrapped_identity = master
            .seal(b"satchel/identity", &phone.to_secret_bytes())
            .unwrap();
        let section_key = SectionKey::generate().unwrap();
        let wrapped_section = master
            .seal(b"satchel/section-key/allergies/1", section_key.expose())
            .unwrap();

        let header = EnvelopeHeader {
            record_id: RecordId::random(),
            section: "allergies".into(),
            epoch: 1,
            author: phone.id(),
            seq: 1,
        };
        let wire = Envelope::seal(&section_key, header, b"CANARY-penicillin", &phone)
            .unwrap()
            .to_bytes();
        assert!(!wire.windows(6).any(|w| w == b"CANARY"));

        // Unlock again from the stored pieces only.
        let vault2 = derive_vault_key(b"patient passphrase", &params).unwrap();
        let master2 =
            SymmetricKey::from_slice(&vault2.open(b"satchel/master-key", &wrapped_master).unwrap())
                .unwrap();
        let phone2 = Identity::from_secret_bytes(
            &master2
                .open(b"satchel/identity", &wrapped_identity)
                .unwrap(),
        )
        .unwrap();
        assert_eq!(phone2.id(), phone.id());
        let section2 = SectionKey::from_slice(
            &master2
                .open(b"satchel/section-key/allergies/1", &wrapped_section)
                .unwrap(),
        )
        .unwrap();
        let env = Envelope::from_bytes(&wire).unwrap();
        assert_eq!(
            env.open(&section2).unwrap().as_slice(),
            b"CANARY-penicillin"
        );

        // Wrong passphrase fails cleanly at the first layer.
        let wrong = derive_vault_key(b"patient passphrasf", &params).unwrap();
        assert_eq!(
            wrong.open(b"satchel/master-key", &wrapped_master),
            Err(CryptoError::Decrypt)
        );

        // Share with a carer: wrap the section key to the carer's card.
        let carer = Identity::generate("Sam", Role::Carer, None).unwrap();
        let card: IdentityCard =
            serde_json::from_str(&serde_json::to_string(carer.card()).unwrap()).unwrap();
        let grant = wrap_key(&card, section2.expose(), b"allergies/1").unwrap();
        let carer_key =
            SectionKey::from_slice(&unwrap_key(&carer, &grant, b"allergies/1").unwrap()).unwrap();
        assert_eq!(
            env.open(&carer_key).unwrap().as_slice(),
            b"CANARY-penicillin"
        );
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
