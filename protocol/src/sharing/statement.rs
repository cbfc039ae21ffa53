//! Access statements: their JSON form, signatures and chaining.
//!
//! A statement is JSON bytes signed with Ed25519 by `by` over
//! `STATEMENT_DOMAIN || bytes`. Each names the SHA-256 of the previous
//! statement's bytes (`prev`; zeros for the first), so a record's log is one
//! chain: the relay appends only on top of the head it holds, and every
//! member verifies the same sequence.

use serde::{Deserialize, Serialize};

use crate::crypto::{verify_signature, IdentityCard, Signer, WrappedKey};
use crate::ids::{IdentityId, RecordId};
use crate::section::Section;

use super::SharingError;

/// Domain-separation prefix of statement signatures.
pub const STATEMENT_DOMAIN: &[u8] = b"satchel/v1/statement";

/// The access a grant gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GrantRole {
    /// Delegated full control (a parent, an attorney): reads and writes
    /// every section, may grant and revoke.
    Manager,
    /// Reads and writes the granted sections (a provider contributing).
    Writer,
    /// Reads the granted sections (a carer, a clinician).
    Reader,
}

impl GrantRole {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            GrantRole::Manager => "manager",
            GrantRole::Writer => "writer",
            GrantRole::Reader => "reader",
        }
    }

    /// Whether the role may write the sections it is granted.
    pub fn writes(self) -> bool {
        !matches!(self, GrantRole::Reader)
    }

    /// Whether the role may write `section` (a base section name) when it
    /// is granted. Demographics (the record's Patient) are written only by
    /// the patient's devices and managers: a writer granted demographics
    /// reads them (providers need the Patient to check that what they push
    /// is about this patient) but cannot change who the record is about.
    pub fn writes_section(self, section: &str) -> bool {
        match self {
            GrantRole::Manager => true,
            GrantRole::Writer => section != Section::Demographics.as_str(),
            GrantRole::Reader => false,
        }
    }
}

impl std::str::FromStr for GrantRole {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        match s {
            "manager" => Ok(GrantRole::Manager),
            "writer" => Ok(GrantRole::Writer),
            "reader" => Ok(GrantRole::Reader),
            _ => Err(()),
        }
    }
}

/// One section key wrapped (HPKE) to one member. The wrap binds
/// [`key_wrap_aad`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyWrap {
    pub section: String,
    pub epoch: u32,
    pub to: IdentityId,
    pub key: WrappedKey,
}

/// A section's key rotated to `epoch`: `chain` is the previous epoch's key
/// sealed under the new one (so holders of the new key can read history),
/// and `keys` wraps the new key to every remaining reader of the section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rotation {
    pub section: String,
    pub epoch: u32,
    #[serde(with = "crate::crypto::encoding::b64")]
    pub chain: Vec<u8>,
    pub keys: Vec<KeyWrap>,
}

/// What a statement changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum AccessChange {
    /// Another device of the owner (signed by an owner device). `keys`
    /// wraps the current key of every section to it.
    AddDevice {
        device: IdentityCard,
        #[serde(default)]
        keys: Vec<KeyWrap>,
    },
    /// A recovery key's identity, held on paper: an owner device that never
    /// syncs by itself. `sealed` holds the record's creator and the owner's
    /// name, sealed under a key derived from the recovery secret.
    AddRecovery {
        recovery: IdentityCard,
        #[serde(with = "crate::crypto::encoding::b64")]
        sealed: Vec<u8>,
        keys: Vec<KeyWrap>,
    },
    /// Give `grantee` a role on `sections` (a manager always gets every
    /// section). Replaces any earlier grant to the same identity; when that
    /// takes sections away, `rotations` rotates exactly those, as a
    /// revocation does.
    Grant {
        grantee: IdentityCard,
        role: GrantRole,
        sections: Vec<String>,
        expires_at_ms: Option<i64>,
        /// Shown to the owner and managers, and visible to the relay: a
        /// name, never clinical detail.
        label: String,
        keys: Vec<KeyWrap>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        rotations: Vec<Rotation>,
    },
    /// Name a relay (its card, role `relay`) as a replica of the record:
    /// it may hold, fetch and forward the record's ciphertext (envelopes,
    /// snapshots, this log) and is never given a key. Revoked like a grant
    /// (a `revoke` of its identity, with no rotations: it never held a
    /// key).
    AddReplica {
        relay: IdentityCard,
        /// Shown to the owner and managers, and visible to relays: where
        /// the replica runs ("Riverside clinic"), never clinical detail.
        label: String,
    },
    /// The record moved away from the relay of `relay` (its card, role
    /// `relay`): that relay refuses the record's members from then on
    /// ([`super::Members::relay_serves`]), and stops being a replica if it
    /// was one. `moved_to` names the relay it moved to when the log names
    /// it (an `add-replica`). Signed by an owner device only: where the
    /// record lives is the patient's decision. An `add-replica` of the
    /// same relay later takes it back.
    RetireRelay {
        relay: IdentityCard,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        moved_to: Option<IdentityId>,
    },
    /// Take `sections` (all when `None`) from `identity` (a grantee, a
    /// replica relay, or an owner device when signed by another owner
    /// device), rotating the key of every section it could read.
    Revoke {
        identity: IdentityId,
        sections: Option<Vec<String>>,
        rotations: Vec<Rotation>,
    },
}

impl AccessChange {
    /// The wire name of the kind.
    pub fn kind(&self) -> &'static str {
        match self {
            AccessChange::AddDevice { .. } => "add-device",
            AccessChange::AddRecovery { .. } => "add-recovery",
            AccessChange::Grant { .. } => "grant",
            AccessChange::AddReplica { .. } => "add-replica",
            AccessChange::RetireRelay { .. } => "retire-relay",
            AccessChange::Revoke { .. } => "revoke",
        }
    }
}

/// A statement: who changes what in which record's log, on top of which
/// head.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessStatement {
    pub record_id: RecordId,
    pub by: IdentityId,
    pub at_ms: i64,
    /// SHA-256 of the previous statement's bytes (zeros for the first).
    #[serde(with = "crate::crypto::encoding::hex_array")]
    pub prev: [u8; 32],
    pub change: AccessChange,
}

impl AccessStatement {
    /// Sign as `signer` (who must be `self.by`).
    pub fn sign(&self, signer: &impl Signer) -> Result<SignedStatement, SharingError> {
        let bytes = serde_json::to_vec(self).map_err(|_| SharingError::Encode)?;
        let signature = signer.sign_message(&signing_message(&bytes)).to_vec();
        Ok(SignedStatement {
            statement: bytes,
            signature,
        })
    }
}

fn signing_message(bytes: &[u8]) -> Vec<u8> {
    let mut msg = Vec::with_capacity(STATEMENT_DOMAIN.len() + bytes.len());
    msg.extend_from_slice(STATEMENT_DOMAIN);
    msg.extend_from_slice(bytes);
    msg
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
    /// SHA-256 of the statement bytes: what the next statement's `prev`
    /// names.
    pub fn hash(&self) -> [u8; 32] {
        statement_hash(&self.statement)
    }

    /// Parse and check the signature (not whether the signer may make it).
    pub fn verify(&self, index: usize) -> Result<AccessStatement, SharingError> {
        let parsed: AccessStatement = serde_json::from_slice(&self.statement)
            .map_err(|_| SharingError::Malformed { index })?;
        verify_signature(
            &parsed.by,
            &signing_message(&self.statement),
            &self.signature,
        )
        .map_err(|_| SharingError::BadSignature { index })?;
        Ok(parsed)
    }
}

/// SHA-256 of statement bytes.
pub fn statement_hash(bytes: &[u8]) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// What a section-key wrap binds: record, section, epoch and recipient.
pub fn key_wrap_aad(record: &RecordId, section: &str, epoch: u32, to: &IdentityId) -> Vec<u8> {
    format!("satchel/v1/section-key|{record}|{section}|{epoch}|{to}").into_bytes()
}

/// What a rotation's `chain` binds.
pub fn chain_aad(record: &RecordId, section: &str, epoch: u32) -> Vec<u8> {
    format!("satchel/v1/key-chain|{record}|{section}|{epoch}").into_bytes()
}
