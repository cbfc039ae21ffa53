//! Login: `POST /v1/auth/challenge` hands out 32 random bytes; the device
//! signs `satchel/v1/auth || challenge` with its identity key and trades
//! the signature for a bearer token at `POST /v1/auth/token`. The signing
//! rule lives here once ([`signing_message`], [`TokenRequest::sign`]): the
//! device's sync engine, device linking, the tests and the benches all use
//! it, and the relay verifies against the same [`signing_message`].

use serde::{Deserialize, Serialize};

use super::{b64, Endpoint, Method};
use crate::crypto::Signer;
use crate::ids::IdentityId;

/// Domain-separation prefix of the signed challenge.
pub const AUTH_DOMAIN: &[u8] = b"satchel/v1/auth";

/// What a device signs to log in with `challenge`:
/// `satchel/v1/auth || challenge`.
pub fn signing_message(challenge: &[u8]) -> Vec<u8> {
    let mut msg = Vec::with_capacity(AUTH_DOMAIN.len() + challenge.len());
    msg.extend_from_slice(AUTH_DOMAIN);
    msg.extend_from_slice(challenge);
    msg
}

/// Ask for a challenge to sign.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ChallengeRequest {
    /// The identity logging in (its Ed25519 public key, 64 hex characters).
    pub identity: IdentityId,
}

/// A fresh challenge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ChallengeResponse {
    /// 32 random bytes (standard base64), single use.
    #[serde(with = "b64")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = Byte))]
    pub challenge: Vec<u8>,
    /// Seconds the challenge stays valid.
    #[serde(default)]
    pub expires_in: u64,
}

/// A signed challenge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TokenRequest {
    /// The identity logging in (64 hex characters).
    pub identity: IdentityId,
    /// The challenge from `POST /v1/auth/challenge` (standard base64).
    #[serde(with = "b64")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = Byte))]
    pub challenge: Vec<u8>,
    /// Ed25519 signature of `satchel/v1/auth || challenge` by the
    /// identity's key (standard base64).
    #[serde(with = "b64")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = Byte))]
    pub signature: Vec<u8>,
}

impl TokenRequest {
    /// The request `identity` sends to trade `challenge` for a token.
    pub fn sign(signer: &impl Signer, challenge: &[u8]) -> Self {
        Self::signed(
            signer.signer_id(),
            challenge,
            &signer.sign_message(&signing_message(challenge)),
        )
    }

    /// The request for a signature made elsewhere (a device whose key signs
    /// [`signing_message`] outside the caller, as the sans-IO sync engine).
    pub fn signed(identity: IdentityId, challenge: &[u8], signature: &[u8]) -> Self {
        Self {
            identity,
            challenge: challenge.to_vec(),
            signature: signature.to_vec(),
        }
    }
}

/// A bearer token.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TokenResponse {
    /// The bearer token (64 hex characters) for `Authorization: Bearer`.
    pub token: String,
    /// Seconds the token stays valid.
    pub expires_in: u64,
}

impl std::fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenResponse")
            .field("token", &"..")
            .field("expires_in", &self.expires_in)
            .finish()
    }
}

/// `POST /v1/auth/challenge`
pub struct Challenge;

impl Endpoint for Challenge {
    const METHOD: Method = Method::Post;
    const PATH: &'static str = "/v1/auth/challenge";
    const SUMMARY: &'static str = "Get a single-use authentication challenge (60 s)";
    const TAG: &'static str = "auth";
    const AUTHENTICATED: bool = false;
    const RESPONSES: &'static [(u16, &'static str)] = &[
        (200, "challenge"),
        (429, "rate_limited"),
        (400, "bad_request"),
    ];
    type Path<'a> = ();
    type Query = ();
    type Request = ChallengeRequest;
    type Response = ChallengeResponse;
}

/// `POST /v1/auth/token`
pub struct Token;

impl Endpoint for Token {
    const METHOD: Method = Method::Post;
    const PATH: &'static str = "/v1/auth/token";
    const SUMMARY: &'static str = "Exchange a signed challenge for a bearer token (15 min)";
    const TAG: &'static str = "auth";
    const AUTHENTICATED: bool = false;
    const RESPONSES: &'static [(u16, &'static str)] = &[
        (200, "token"),
        (401, "wrong signature, or unknown/expired/used challenge"),
        (429, "rate_limited"),
        (400, "bad_request"),
    ];
    type Path<'a> = ();
    type Query = ();
    type Request = TokenRequest;
    type Response = TokenResponse;
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::crypto::{verify_signature, Identity, Role};

    #[test]
    fn a_signed_token_request_verifies_against_the_signing_message() {
        let id = Identity::generate("phone", Role::PatientDevice, None).unwrap();
        let challenge = [7u8; 32];
        let req = TokenRequest::sign(&id, &challenge);
        assert_eq!(req.identity, id.id());
        assert_eq!(req.challenge, challenge);
        let msg = signing_message(&challenge);
        assert!(msg.starts_with(b"satchel/v1/auth"));
        verify_signature(&id.id(), &msg, &req.signature).unwrap();
    }
}

/// End every session (bearer token) of one identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RevokeSessionsRequest {
    /// The device or member whose sessions end (64 hex characters): a
    /// member of the record.
    pub identity: IdentityId,
}

/// Sessions ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RevokeSessionsResponse {
    /// Tokens that were live and are now refused.
    pub revoked: u64,
}

/// `POST /v1/records/{rid}/sessions/revoke`
pub struct RevokeSessions;

impl Endpoint for RevokeSessions {
    const METHOD: Method = Method::Post;
    const PATH: &'static str = "/v1/records/{rid}/sessions/revoke";
    const SUMMARY: &'static str = "End every session of a member or device of the record";
    const DESCRIPTION: &'static str = "An owner device of the record ends every bearer token of one of the record's members (or of one of its own devices) at once: every relay instance refuses them within a second and closes their WebSockets (1008). The identity can log in again while it holds its key and its membership: revoke its access in the access log to keep it out.";
    const TAG: &'static str = "auth";
    const RESPONSES: &'static [(u16, &'static str)] = &[
        (200, "sessions ended"),
        (403, "the caller is not an owner device of the record"),
        (404, "no such record, or the identity is not a member"),
    ];
    type Path<'a> = super::RecordPath;
    type Query = ();
    type Request = RevokeSessionsRequest;
    type Response = RevokeSessionsResponse;
}
