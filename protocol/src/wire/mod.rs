//! The relay protocol on the wire (docs/protocol.md): one Rust type per
//! relay endpoint, shared by the device (`satchel-core`), the relay
//! (`satchel-sync-server`), the tests and the benches.
//!
//! This module owns, and is the only place in the workspace that spells
//! (tests aside):
//! - every route: its HTTP method and path template ([`Endpoint::METHOD`],
//!   [`Endpoint::PATH`]) and the builder of a concrete path from typed ids
//!   ([`Endpoint::path`], [`Endpoint::uri`] with the typed query);
//! - every JSON body, request and response, both `Serialize` and
//!   `Deserialize`, and the error body [`ErrorBody`];
//! - the one rule of login: what a device signs to get a token
//!   ([`auth::signing_message`], [`auth::TokenRequest::sign`]).
//!
//! Files: [`auth`] (challenge, token), [`records`] (registration, the
//! access log, members, audit, push channel), [`envelopes`] (upload, pull,
//! snapshot, feed), [`links`] (invite and device-link mailboxes), [`ops`]
//! (health, readiness, metrics, the OpenAPI document), [`replication`] (the
//! relay's own identity, and what replica relays ask of their upstream),
//! [`replica_batch`] (the binary body replicas fetch envelopes in),
//! [`share_links`] (SMART Health Links hosted blind, and the viewer's files). With the `openapi` feature,
//! [`openapi`] builds the relay's OpenAPI 3.1 document from these types
//! (utoipa; docs/adr/0008-protocol-crate.md).

pub mod auth;
pub mod envelopes;
pub mod links;
#[cfg(feature = "openapi")]
pub mod openapi;
pub mod ops;
pub mod records;
pub mod replica_batch;
pub mod replication;
pub mod share_links;

use serde::{Deserialize, Serialize};

use crate::ids::{LinkId, RecordId};

pub use auth::{
    Challenge, ChallengeRequest, ChallengeResponse, RevokeSessions, RevokeSessionsRequest,
    RevokeSessionsResponse, Token, TokenRequest, TokenResponse, AUTH_DOMAIN,
};
pub use envelopes::{
    Accepted, Feed, FeedResponse, FeedSection, Pull, PullResponse, PulledEnvelope, PulledSnapshot,
    Snapshot, SnapshotRequest, SnapshotResponse, Upload, UploadRequest, UploadResponse,
    UpstreamReach,
};
pub use links::{
    AcceptLink, CreateLink, CreateLinkRequest, GetLink, JoinLink, LinkAck, LinkCreated,
    LinkPayload, LinkState,
};
pub use ops::{Health, HealthResponse, Metrics, OpenApiDocument, Ready, ReadyResponse};
pub use records::{
    AccessEntry, AccessResponse, AppendStatement, Audit, AuditAction, AuditEvent, AuditResponse,
    MemberEntry, MemberRole, Members, MembersResponse, PushMessage, Register, RegisterRequest,
    RegisterResponse, ReportViews, ReportViewsRequest, ReportViewsResponse, SeqResponse,
    Statements, Subscribe, ViewReport,
};
pub use replication::{
    ForwardAudit, ForwardAuditRequest, ForwardAuditResponse, ForwardedAuditEvent, HeadsQuery,
    LogWant, RecordHeads, RecordsPageQuery, RelayIdentity, RelayIdentityResponse, ReplicaHeads,
    ReplicaHeadsResponse, ReplicaPull, ReplicaPullRequest, ReplicaRecords, ReplicaRecordsResponse,
};

/// Standard base64 with padding, as the protocol specifies.
pub use crate::crypto::encoding::b64;

/// The largest envelope (bytes) a relay accepts by default (protocol
/// version 1): devices refuse to make a bigger one.
pub const MAX_ENVELOPE_BYTES: usize = 4 * 1024 * 1024;

/// The HTTP methods the relay answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
    Put,
}

impl Method {
    /// The method's name (`GET`, `POST`, `PUT`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
        }
    }
}

/// One relay endpoint: method, path template, typed path parameters, typed
/// query, request body and response body. Implemented by a unit struct per
/// route (ruma style): `Upload::uri(&SectionPath::new(rid, "vitals"), &())`.
pub trait Endpoint {
    /// The HTTP method.
    const METHOD: Method;
    /// The path template, with `{rid}`, `{section}`, `{link_id}` for the
    /// path parameters (axum 0.8 syntax, also OpenAPI's).
    const PATH: &'static str;
    /// One-line summary (the OpenAPI operation's).
    const SUMMARY: &'static str;
    /// More about the operation ("" for nothing more).
    const DESCRIPTION: &'static str = "";
    /// OpenAPI tag.
    const TAG: &'static str;
    /// Whether the route takes a bearer token (`Authorization: Bearer`).
    /// Such routes may also answer 400, 401, 429 and 503.
    const AUTHENTICATED: bool = true;
    /// Every status this route answers with that is particular to it, and
    /// what it means: 1xx/2xx carry [`Endpoint::Response`], the others
    /// [`ErrorBody`].
    const RESPONSES: &'static [(u16, &'static str)];

    /// The typed path parameters.
    type Path<'a>: PathArgs;
    /// The typed query (`()` for none).
    type Query: QueryArgs;
    /// The JSON request body (`()` for none).
    type Request: Serialize + for<'de> Deserialize<'de>;
    /// The JSON response body.
    type Response: Serialize + for<'de> Deserialize<'de>;

    /// The concrete path (no query), e.g. `/v1/records/<rid>/access`.
    fn path(args: &Self::Path<'_>) -> String {
        args.render(Self::PATH)
    }

    /// The concrete path with its query string, if any.
    fn uri(args: &Self::Path<'_>, query: &Self::Query) -> String {
        let mut out = Self::path(args);
        if let Some(q) = query.query_string() {
            out.push('?');
            out.push_str(&q);
        }
        out
    }
}

/// Typed path parameters: fills a path template.
pub trait PathArgs {
    /// The template's parameter names, in order.
    const NAMES: &'static [&'static str];
    /// `template` with every parameter replaced.
    fn render(&self, template: &str) -> String;
}

impl PathArgs for () {
    const NAMES: &'static [&'static str] = &[];
    fn render(&self, template: &str) -> String {
        template.to_owned()
    }
}

/// `{rid}`: a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordPath(pub RecordId);

impl PathArgs for RecordPath {
    const NAMES: &'static [&'static str] = &["rid"];
    fn render(&self, template: &str) -> String {
        template.replace("{rid}", &self.0.to_hex())
    }
}

/// `{rid}` and `{section}`: one log of a record (a section's name, or
/// another log's such as `wearables.chunks`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SectionPath<'a> {
    pub record: RecordId,
    pub section: &'a str,
}

impl<'a> SectionPath<'a> {
    /// The log `section` of `record`.
    pub fn new(record: RecordId, section: &'a str) -> Self {
        Self { record, section }
    }
}

impl PathArgs for SectionPath<'_> {
    const NAMES: &'static [&'static str] = &["rid", "section"];
    fn render(&self, template: &str) -> String {
        template
            .replace("{rid}", &self.record.to_hex())
            .replace("{section}", self.section)
    }
}

/// `{link_id}`: an invite or device-link mailbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkPath(pub LinkId);

impl PathArgs for LinkPath {
    const NAMES: &'static [&'static str] = &["link_id"];
    fn render(&self, template: &str) -> String {
        template.replace("{link_id}", &self.0.to_hex())
    }
}

/// A typed query: its query string (without `?`), `None` when empty.
pub trait QueryArgs {
    fn query_string(&self) -> Option<String>;
}

impl QueryArgs for () {
    fn query_string(&self) -> Option<String> {
        None
    }
}

/// `?after=N`: a cursor (0: from the start).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
pub struct AfterQuery {
    /// Return what comes after this sequence number (0: from the start).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", param(minimum = 0, default = 0))]
    pub after: u64,
}

impl QueryArgs for AfterQuery {
    fn query_string(&self) -> Option<String> {
        Some(format!("after={}", self.after))
    }
}

/// `?after=N&limit=M`: a cursor and a page size.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
pub struct PageQuery {
    /// Return what comes after this sequence number (0: from the start).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", param(minimum = 0, default = 0))]
    pub after: u64,
    /// The most items to return (the relay's default when absent; larger
    /// values are capped at 1000).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", param(minimum = 1, maximum = 1000, default = 500))]
    pub limit: Option<u32>,
}

impl QueryArgs for PageQuery {
    fn query_string(&self) -> Option<String> {
        Some(match self.limit {
            Some(limit) => format!("after={}&limit={limit}", self.after),
            None => format!("after={}", self.after),
        })
    }
}

/// `?token=TOKEN`: the bearer token where no header can carry it (the
/// WebSocket upgrade).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
pub struct TokenQuery {
    /// The bearer token from `POST /v1/auth/token` (64 hex characters).
    pub token: String,
}

impl std::fmt::Debug for TokenQuery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenQuery(..)")
    }
}

impl QueryArgs for TokenQuery {
    fn query_string(&self) -> Option<String> {
        // Tokens are hex: nothing to escape.
        Some(format!("token={}", self.token))
    }
}

/// Standard base64 text (with padding) that the receiver decodes itself,
/// item by item, so that one bad item of a batch is refused by its index
/// (422) rather than failing the whole body (400).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Base64Text(String);

impl Base64Text {
    /// Encode `bytes`.
    pub fn encode(bytes: &[u8]) -> Self {
        use base64::Engine;
        Self(b64::ENGINE.encode(bytes))
    }

    /// Decode (standard alphabet, padding required).
    pub fn decode(&self) -> Result<Vec<u8>, base64::DecodeError> {
        use base64::Engine;
        b64::ENGINE.decode(&self.0)
    }

    /// The exact decoded length of well-formed text (computed before
    /// decoding, to refuse what is too large without decoding it).
    pub fn decoded_len(&self) -> usize {
        let pad = self.0.bytes().rev().take(2).filter(|&b| b == b'=').count();
        (self.0.len() / 4 * 3).saturating_sub(pad)
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for Base64Text {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Base64Text {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Base64Text({} chars)", self.0.len())
    }
}

/// Every refusal's body: `{"error": CODE, "message": TEXT, ...}`. Messages
/// are fixed or name fields; they never echo payload content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = Error))]
pub struct ErrorBody {
    /// The error code: `bad_request`, `unauthenticated`, `forbidden`,
    /// `not_found`, `request_timeout`, `conflict`, `payload_too_large`,
    /// `rejected`, `rate_limited`, `unavailable`, `storage_full` or
    /// `method_not_allowed`.
    pub error: String,
    /// What went wrong, for people (no content of the request).
    #[serde(default)]
    pub message: String,
    /// 413: the limit (bytes or count).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
    /// 422: index of the first bad item.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<u64>,
    /// 429: when to retry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
    /// 401 from a share link's manifest: wrong passcodes the link still
    /// survives (the SMART Health Links specification's name).
    #[serde(
        default,
        rename = "remainingAttempts",
        skip_serializing_if = "Option::is_none"
    )]
    pub remaining_attempts: Option<u32>,
}

impl ErrorBody {
    /// A body with a code and a message only.
    pub fn new(error: &str, message: impl Into<String>) -> Self {
        Self {
            error: error.to_owned(),
            message: message.into(),
            limit: None,
            index: None,
            retry_after_ms: None,
            remaining_attempts: None,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::ids::RecordId;

    #[test]
    fn paths_are_built_from_typed_ids() {
        let rid: RecordId = "f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff".parse().unwrap();
        assert_eq!(
            Statements::uri(&RecordPath(rid), &AfterQuery { after: 7 }),
            "/v1/records/f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff/access?after=7"
        );
        assert_eq!(
            Pull::uri(
                &SectionPath::new(rid, "vitals"),
                &PageQuery {
                    after: 3,
                    limit: Some(1000)
                }
            ),
            "/v1/records/f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff/sections/vitals/envelopes?after=3&limit=1000"
        );
        let link = LinkId(rid.0);
        assert_eq!(
            JoinLink::path(&LinkPath(link)),
            "/v1/links/f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff/join"
        );
        assert_eq!(Challenge::path(&()), "/v1/auth/challenge");
        assert_eq!(Upload::METHOD.as_str(), "POST");
    }

    #[test]
    fn error_body_omits_absent_fields() {
        let body = ErrorBody::new("forbidden", "no");
        assert_eq!(
            serde_json::to_string(&body).unwrap(),
            r#"{"error":"forbidden","message":"no"}"#
        );
        let back: ErrorBody = serde_json::from_str(r#"{"error":"x"}"#).unwrap();
        assert_eq!(back.message, "");
    }

    #[test]
    fn base64_text_is_decoded_on_demand() {
        let t = Base64Text::encode(b"hello");
        assert_eq!(t.decoded_len(), 5);
        assert_eq!(t.decode().unwrap(), b"hello");
        let bad: Base64Text = serde_json::from_str("\"not base64!\"").unwrap();
        assert!(bad.decode().is_err());
    }
}
