//! The identity proof: after the Noise handshake, each device signs the
//! handshake hash with its identity key (Ed25519), so the channel is bound
//! to the identity in its card. The proof names the signer's side, so the
//! initiator's proof cannot be reflected back as the responder's, and the
//! record, so a proof for one record is no proof for another.

use crate::crypto::{verify_signature, CryptoError, IdentityCard};
use crate::ids::RecordId;

/// Domain of the proof signature.
pub const PROOF_DOMAIN: &[u8] = b"satchel/v1/direct-proof\0";

/// Which end of the channel signs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Initiator,
    Responder,
}

impl Side {
    fn code(self) -> u8 {
        match self {
            Side::Initiator => 1,
            Side::Responder => 2,
        }
    }

    /// The other end.
    pub fn other(self) -> Side {
        match self {
            Side::Initiator => Side::Responder,
            Side::Responder => Side::Initiator,
        }
    }
}

/// What a side signs: `PROOF_DOMAIN || side (1 byte) || record id (16) ||
/// handshake hash`.
pub fn proof_message(handshake_hash: &[u8], side: Side, record: &RecordId) -> Vec<u8> {
    let mut m = Vec::with_capacity(PROOF_DOMAIN.len() + 1 + 16 + handshake_hash.len());
    m.extend_from_slice(PROOF_DOMAIN);
    m.push(side.code());
    m.extend_from_slice(record.as_bytes());
    m.extend_from_slice(handshake_hash);
    m
}

/// Check a card (its self-signature) and its proof for `side`.
pub fn verify_proof(
    card: &IdentityCard,
    handshake_hash: &[u8],
    side: Side,
    record: &RecordId,
    proof: &[u8],
) -> Result<(), CryptoError> {
    card.verify()?;
    verify_signature(
        &card.id(),
        &proof_message(handshake_hash, side, record),
        proof,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{Identity, Role};

    #[test]
    fn proof_binds_side_record_and_handshake() {
        let id = Identity::generate("A", Role::PatientDevice, None).unwrap();
        let record = RecordId::random();
        let hh = [7u8; 32];
        let sig = id.sign(&proof_message(&hh, Side::Initiator, &record));
        assert!(verify_proof(id.card(), &hh, Side::Initiator, &record, &sig).is_ok());
        assert!(verify_proof(id.card(), &hh, Side::Responder, &record, &sig).is_err());
        assert!(verify_proof(id.card(), &[8u8; 32], Side::Initiator, &record, &sig).is_err());
        let other = RecordId::random();
        assert!(verify_proof(id.card(), &hh, Side::Initiator, &other, &sig).is_err());
        let mallory = Identity::generate("M", Role::PatientDevice, None).unwrap();
        assert!(verify_proof(mallory.card(), &hh, Side::Initiator, &record, &sig).is_err());
    }
}
