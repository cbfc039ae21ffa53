//! JSON bodies of the relay protocol (docs/protocol.md), client side.

use serde::{Deserialize, Serialize};

use crate::crypto::IdentityCard;
use crate::ids::{IdentityId, RecordId};
use crate::sharing::SignedStatement;

/// Standard base64 with padding, as the protocol specifies.
pub mod b64 {
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};

    pub const ENGINE: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&ENGINE.encode(v))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        ENGINE.decode(s).map_err(serde::de::Error::custom)
    }

    pub mod vec {
        use super::ENGINE;
        use base64::Engine;
        use serde::{Deserialize, Deserializer, Serializer};

        pub fn serialize<S: Serializer>(v: &[Vec<u8>], s: S) -> Result<S::Ok, S::Error> {
            s.collect_seq(v.iter().map(|b| ENGINE.encode(b)))
        }
        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Vec<u8>>, D::Error> {
            let v = Vec::<String>::deserialize(d)?;
            v.into_iter()
                .map(|s| ENGINE.decode(s).map_err(serde::de::Error::custom))
                .collect()
        }
    }

    pub mod opt {
        use super::ENGINE;
        use base64::Engine;
        use serde::{Deserialize, Deserializer, Serializer};

        pub fn serialize<S: Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
            match v {
                Some(b) => s.serialize_some(&ENGINE.encode(b)),
                None => s.serialize_none(),
            }
        }
        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
            Option::<String>::deserialize(d)?
                .map(|s| ENGINE.decode(s).map_err(serde::de::Error::custom))
                .transpose()
        }
    }
}

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
