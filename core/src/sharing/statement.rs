//! Access statements: their JSON form, signatures and the verification of a
//! record's whole log.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::crypto::{verify_signature, Identity, IdentityCard};
use crate::ids::{IdentityId, RecordId};

/// Domain-separation prefix of statement signatures.
pub const STATEMENT_DOMAIN: &[u8] = b"satchel/v1/statement";

/// Why a statement or log was refused. No health data: ids and kinds only.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SharingError {
    #[error("access statement {index}: not a valid statement")]
    Malformed { index: usize },
    #[error("access statement {index}: signature does not verify")]
    BadSignature { index: usize },
    #[error("access statement {index}: signed by {by}, who may not make it")]
    NotAllowed { index: usize, by: IdentityId },
    #[error("access statement {index}: belongs to another record")]
    WrongRecord { index: usize },
}

/// What a statement says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum AccessStatement {
    /// `by`, an owner device, adds `device` as another device of the owner.
    AddDevice {
        record_id: RecordId,
        device: IdentityCard,
        by: IdentityId,
        at_ms: i64,
    },
}

impl AccessStatement {
    /// The identity that must have signed it.
    pub fn by(&self) -> IdentityId {
        match self {
            AccessStatement::AddDevice { by, .. } => *by,
        }
    }

    fn record_id(&self) -> RecordId {
        match self {
            AccessStatement::AddDevice { record_id, .. } => *record_id,
        }
    }

    /// Sign as `signer` (who must be `self.by()`).
    pub fn sign(&self, signer: &Identity) -> SignedStatement {
        let bytes = serde_json::to_vec(self).unwrap_or_default();
        let mut msg = STATEMENT_DOMAIN.to_vec();
        msg.extend_from_slice(&bytes);
        SignedStatement {
            statement: bytes,
            signature: signer.sign(&msg).to_vec(),
        }
    }
}

/// A statement as exchanged: the exact JSON bytes and an Ed25519 signature
/// over `STATEMENT_DOMAIN || bytes`. Serialised with base64 fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedStatement {
    #[serde(with = "crate::crypto::encoding::b64")]
    pub statement: Vec<u8>,
    #[serde(with = "crate::crypto::encoding::b64")]
    pub signature: Vec<u8>,
}

impl SignedStatement {
    /// Parse and check the signature (not whether the signer may make it).
    pub fn verify(&self, index: usize) -> Result<AccessStatement, SharingError> {
        let parsed: AccessStatement = serde_json::from_slice(&self.statement)
            .map_err(|_| SharingError::Malformed { index })?;
        let mut msg = STATEMENT_DOMAIN.to_vec();
        msg.extend_from_slice(&self.statement);
        verify_signature(&parsed.by(), &msg, &self.signature)
            .map_err(|_| SharingError::BadSignature { index })?;
        Ok(parsed)
    }
}

/// The members of a record as established by its verified log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Members {
    /// The owner's devices, with their cards (the creator's card may be
    /// unknown to a device that only knows its id).
    pub owner_devices: BTreeMap<IdentityId, Option<IdentityCard>>,
}

impl Members {
    /// Whether `id` may write `section` (version 1: owner devices only).
    pub fn may_write(&self, id: &IdentityId, _section: &str) -> bool {
        self.owner_devices.contains_key(id)
    }
}

/// Verify a record's log in order, starting from its creator device.
pub fn verify_log(
    record: RecordId,
    creator: IdentityId,
    log: &[SignedStatement],
) -> Result<Members, SharingError> {
    let mut members = Members {
        owner_devices: BTreeMap::from([(creator, None)]),
    };
    for (index, signed) in log.iter().enumerate() {
        let statement = signed.verify(index)?;
        if statement.record_id() != record {
            return Err(SharingError::WrongRecord { index });
        }
        let by = statement.by();
        match statement {
            AccessStatement::AddDevice { device, .. } => {
                if !members.owner_devices.contains_key(&by) {
                    return Err(SharingError::NotAllowed { index, by });
                }
                device
                    .verify()
                    .map_err(|_| SharingError::Malformed { index })?;
                members.owner_devices.insert(device.id(), Some(device));
            }
        }
    }
    Ok(members)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::crypto::Role;

    fn add(record: RecordId, by: &Identity, device: &Identity) -> SignedStatement {
        AccessStatement::AddDevice {
            record_id: record,
            device: device.card().clone(),
            by: by.id(),
            at_ms: 1,
        }
        .sign(by)
    }

    #[test]
    fn chain_from_creator() {
        let record = RecordId::random();
        let a = Identity::generate("a", Role::PatientDevice, None).unwrap();
        let b = Identity::generate("b", Role::PatientDevice, None).unwrap();
        let c = Identity::generate("c", Role::PatientDevice, None).unwrap();
        let log = vec![add(record, &a, &b), add(record, &b, &c)];
        let members = verify_log(record, a.id(), &log).unwrap();
        assert!(members.may_write(&c.id(), "labs"));
        // Out of order: c added by b before b is a member.
        let err = verify_log(record, a.id(), &[log[1].clone(), log[0].clone()]).unwrap_err();
        assert!(matches!(err, SharingError::NotAllowed { index: 0, .. }));
        // Another record's statement.
        let other = vec![add(RecordId::random(), &a, &b)];
        assert!(matches!(
            verify_log(record, a.id(), &other),
            Err(SharingError::WrongRecord { index: 0 })
        ));
        // Tampered bytes.
        let mut bad = log[0].clone();
        let n = bad.statement.len() - 3;
        bad.statement[n] ^= 1;
        assert!(verify_log(record, a.id(), &[bad]).is_err());
        // Round trip through JSON.
        let json = serde_json::to_string(&log[0]).unwrap();
        assert_eq!(
            serde_json::from_str::<SignedStatement>(&json).unwrap(),
            log[0]
        );
    }
}
