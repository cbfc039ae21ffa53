//! JSON bodies of the relay protocol (docs/protocol.md), client side.

use serde::{Deserialize, Serialize};

use crate::crypto::IdentityCard;
use crate::ids::{IdentityId, RecordId};
use crate::sharing::SignedStatement;

/// Standard base64 with padding, as the protocol specifies.
pub use crate::crypto::encoding::b64;

/// The largest envelope (bytes) a relay accepts by default (protocol
/// version 1): devices refuse to make a bigger one.
pub const MAX_ENVELOPE_BYTES: usize = 4 * 1024 * 1024;

#[derive(Debug, Clone, Serialize)]
pub struct ChallengeRequest {
    pub identity: IdentityId,
}

#[derive(Debug, Deserialize)]
pub struct ChallengeResponse {
    #[serde(with = "b64")]
    pub challenge: Vec<u8>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TokenRequest {
    pub identity: IdentityId,
    #[serde(with = "b64")]
    pub challenge: Vec<u8>,
    #[serde(with = "b64")]
    pub signature: Vec<u8>,
}

#[derive(Debug, Deserialize)]
pub struct TokenResponse {
    pub token: String,
    pub expires_in: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct RegisterRequest {
    pub record_id: RecordId,
    pub owner: IdentityCard,
}

#[derive(Debug, Deserialize)]
pub struct AccessEntry {
    pub seq: u64,
    #[serde(flatten)]
    pub signed: SignedStatement,
}

#[derive(Debug, Deserialize)]
pub struct AccessResponse {
    pub statements: Vec<AccessEntry>,
    #[serde(default)]
    pub more: bool,
}

#[derive(Debug, Serialize)]
pub struct UploadRequest {
    #[serde(with = "b64::vec")]
    pub envelopes: Vec<Vec<u8>>,
}

#[derive(Debug, Deserialize)]
pub struct Accepted {
    pub hash: String,
    pub seq: u64,
}

#[derive(Debug, Deserialize)]
pub struct UploadResponse {
    pub accepted: Vec<Accepted>,
}

#[derive(Debug, Deserialize)]
pub struct FeedSection {
    pub section: String,
    pub seq: u64,
}

#[derive(Debug, Deserialize)]
pub struct FeedResponse {
    pub sections: Vec<FeedSection>,
    pub cursor: u64,
}

#[derive(Debug, Deserialize)]
pub struct PulledSnapshot {
    pub upto_seq: u64,
    #[serde(with = "b64")]
    pub envelope: Vec<u8>,
}

#[derive(Debug, Deserialize)]
pub struct PulledEnvelope {
    pub seq: u64,
    #[serde(with = "b64")]
    pub envelope: Vec<u8>,
}

#[derive(Debug, Deserialize)]
pub struct PullResponse {
    pub snapshot: Option<PulledSnapshot>,
    pub envelopes: Vec<PulledEnvelope>,
    pub next: u64,
    pub more: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct SnapshotRequest {
    pub upto_seq: u64,
    #[serde(with = "b64")]
    pub envelope: Vec<u8>,
}

#[derive(Debug, Deserialize)]
pub struct ErrorBody {
    pub error: String,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub retry_after_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum PushMessage {
    Changed {
        section: String,
        seq: u64,
    },
    #[serde(other)]
    Other,
}

#[derive(Debug, Serialize)]
pub struct CreateLinkRequest {
    pub record_id: RecordId,
    pub expires_in: u64,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct LinkPayload {
    #[serde(with = "b64")]
    pub payload: Vec<u8>,
}

#[derive(Debug, Deserialize)]
pub struct LinkState {
    #[serde(default, with = "b64::opt")]
    pub join: Option<Vec<u8>>,
    #[serde(default, with = "b64::opt")]
    pub accept: Option<Vec<u8>>,
}
