//! Cryptography on the device: everything in [`satchel_protocol::crypto`]
//! (identities, envelopes, key wrapping, the symmetric layer), re-exported,
//! plus the passphrase-derived vault key ([`vault`]: Argon2id), which only
//! devices need. Nothing else in the crate calls `argon2` directly.

pub use satchel_protocol::crypto::*;

pub mod vault;

pub use vault::{derive_vault_key, KdfParams};

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::ids::RecordId;

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
}
