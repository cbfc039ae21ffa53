//! Records: registration with the first owner device, the signed access
//! log (append one statement, read after a position), the member list, the
//! audit trail, and the WebSocket push channel.

use serde::{Deserialize, Serialize};

use super::{AfterQuery, Endpoint, Method, PageQuery, RecordPath, TokenQuery};
use crate::crypto::IdentityCard;
use crate::ids::{IdentityId, RecordId};
use crate::sharing::SignedStatement;

/// Register a record with its first owner device.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RegisterRequest {
    /// The new record's id (32 hex characters).
    pub record_id: RecordId,
    /// The caller's own identity card: the record's first owner device.
    #[cfg_attr(feature = "openapi", schema(value_type = super::openapi::IdentityCardSchema))]
    pub owner: IdentityCard,
}

/// The registered record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RegisterResponse {
    /// The record's id.
    pub record_id: RecordId,
}

/// Where a statement sits in the access log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SeqResponse {
    /// The statement's position in the record's log.
    pub seq: u64,
}

/// One statement of the access log with its position.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AccessEntry {
    /// Position in the record's log (increasing).
    pub seq: u64,
    /// The signed statement (`statement`, `signature`, both base64).
    #[serde(flatten)]
    #[cfg_attr(feature = "openapi", schema(inline, value_type = super::openapi::SignedStatementSchema))]
    pub signed: SignedStatement,
}

/// A page of the access log.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = Statements))]
pub struct AccessResponse {
    /// Statements after the requested position, oldest first (at most 1000).
    pub statements: Vec<AccessEntry>,
    /// More statements follow: ask again after the last `seq`.
    #[serde(default)]
    pub more: bool,
}

/// A member's role on a record: the access log's own type.
pub use crate::sharing::MemberRole;

/// One member of a record.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MemberEntry {
    /// Identity id (Ed25519 public key, hex).
    pub identity: IdentityId,
    /// The member's role.
    pub role: MemberRole,
    /// Sections the member may read (every section for owner devices and
    /// managers).
    pub sections: Vec<String>,
    /// Unix ms when the grant stops (null: never).
    pub expires_at_ms: Option<i64>,
    /// The member's identity card.
    #[cfg_attr(feature = "openapi", schema(value_type = super::openapi::IdentityCardSchema))]
    pub card: IdentityCard,
}

/// The member list.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = Members))]
pub struct MembersResponse {
    /// The members the caller may see.
    pub members: Vec<MemberEntry>,
}

/// What an audit event records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum AuditAction {
    /// Envelopes were read.
    Pull,
    /// Envelopes were stored.
    Push,
    /// Entries were shown from a member's own decrypted copy (for example a
    /// provider's FHIR gateway answering a read), as that member reported
    /// with [`ReportViews`]: the relay cannot see such reads itself.
    View,
}

impl AuditAction {
    /// `pull`, `push` or `view`.
    pub const fn as_str(self) -> &'static str {
        match self {
            AuditAction::Pull => "pull",
            AuditAction::Push => "push",
            AuditAction::View => "view",
        }
    }
}

/// Entries of one section a member showed from its own copy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ViewReport {
    /// The section (views of sections the caller may not read are refused).
    pub section: String,
    /// How many entries were shown (at least 1).
    pub count: u64,
    /// Unix ms of the (first) showing, by the member's clock; at most
    /// [`ReportViewsRequest::MAX_CLOCK_AHEAD_MS`] ahead of the relay's.
    pub at_ms: i64,
}

/// Local views to add to the record's audit trail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReportViewsRequest {
    /// At most [`ReportViewsRequest::MAX_VIEWS`].
    pub views: Vec<ViewReport>,
}

impl ReportViewsRequest {
    /// The most views one request carries.
    pub const MAX_VIEWS: usize = 500;
    /// How far ahead of the relay's clock a view's time may be.
    pub const MAX_CLOCK_AHEAD_MS: i64 = 5 * 60 * 1000;
}

/// How many views were stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReportViewsResponse {
    /// Views stored.
    pub stored: u64,
    /// Views of sections the caller may not read now (its grant changed
    /// since): not stored.
    pub refused: u64,
}

/// One pull, push or reported view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditEvent {
    /// Position in the relay's audit trail.
    pub seq: u64,
    /// Unix ms.
    pub at_ms: i64,
    /// Who pulled or pushed.
    pub identity: IdentityId,
    /// Pull or push.
    pub action: AuditAction,
    /// The section.
    pub section: String,
    /// Envelopes returned (a snapshot counts one) or newly stored.
    pub count: u64,
    /// The replica relay where it happened (its identity; the record's
    /// access log names it with a label); absent: at this relay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub relay: Option<IdentityId>,
}

/// A page of the audit trail.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = Audit))]
pub struct AuditResponse {
    /// Events, oldest first.
    pub events: Vec<AuditEvent>,
    /// Cursor for the next call.
    pub next: u64,
    /// More events follow.
    pub more: bool,
}

/// A text frame of the push channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum PushMessage {
    /// A batch was stored in a section the subscriber may read.
    Changed {
        /// The section.
        section: String,
        /// Its newest position.
        seq: u64,
    },
    /// A frame type this version does not know (ignored).
    #[serde(other)]
    Other,
}

/// `POST /v1/records`
pub struct Register;

impl Endpoint for Register {
    const METHOD: Method = Method::Post;
    const PATH: &'static str = "/v1/records";
    const SUMMARY: &'static str = "Register a record with its first owner device (the caller)";
    const TAG: &'static str = "records";
    const RESPONSES: &'static [(u16, &'static str)] = &[
        (201, "created"),
        (200, "already registered by this owner device"),
        (403, "card is not the caller's"),
        (409, "registered by another owner"),
        (422, "owner card does not verify"),
    ];
    type Path<'a> = ();
    type Query = ();
    type Request = RegisterRequest;
    type Response = RegisterResponse;
}

/// `POST /v1/records/{rid}/access`
pub struct AppendStatement;

impl Endpoint for AppendStatement {
    const METHOD: Method = Method::Post;
    const PATH: &'static str = "/v1/records/{rid}/access";
    const SUMMARY: &'static str =
        "Append a signed access statement (add-device, add-recovery, grant, revoke)";
    const DESCRIPTION: &'static str = "Verified with core's sharing rules on top of the record's verified log. The statement's prev must be the hash of the log's last statement (zeros for the first); the append is compare-and-swap on that head.";
    const TAG: &'static str = "records";
    const RESPONSES: &'static [(u16, &'static str)] = &[
        (201, "appended"),
        (200, "the same statement was already in the log"),
        (
            403,
            "the signer (`by`) may not make this change (core NotAllowed)",
        ),
        (404, "no such record"),
        (
            409,
            "the statement's prev is not the log's head (the log changed): fetch the log, verify it and sign again",
        ),
        (
            422,
            "the statement failed verification (index 0; message names the rule)",
        ),
    ];
    type Path<'a> = RecordPath;
    type Query = ();
    type Request = SignedStatement;
    type Response = SeqResponse;
}

/// `GET /v1/records/{rid}/access?after=N`
pub struct Statements;

impl Endpoint for Statements {
    const METHOD: Method = Method::Get;
    const PATH: &'static str = "/v1/records/{rid}/access";
    const SUMMARY: &'static str = "Read the access log after a position";
    const TAG: &'static str = "records";
    const RESPONSES: &'static [(u16, &'static str)] = &[
        (200, "statements"),
        (403, "not a member, revoked, or the grant expired"),
        (404, "no such record"),
    ];
    type Path<'a> = RecordPath;
    type Query = AfterQuery;
    type Request = ();
    type Response = AccessResponse;
}

/// `GET /v1/records/{rid}/members`
pub struct Members;

impl Endpoint for Members {
    const METHOD: Method = Method::Get;
    const PATH: &'static str = "/v1/records/{rid}/members";
    const SUMMARY: &'static str = "List the record's members";
    const DESCRIPTION: &'static str = "Owner devices and live managers see every member; a writer or reader sees the owner devices and itself.";
    const TAG: &'static str = "records";
    const RESPONSES: &'static [(u16, &'static str)] = &[
        (200, "members"),
        (403, "not a member, revoked, or the grant expired"),
        (404, "no such record"),
    ];
    type Path<'a> = RecordPath;
    type Query = ();
    type Request = ();
    type Response = MembersResponse;
}

/// `GET /v1/records/{rid}/audit?after=N&limit=M`
pub struct Audit;

impl Endpoint for Audit {
    const METHOD: Method = Method::Get;
    const PATH: &'static str = "/v1/records/{rid}/audit";
    const SUMMARY: &'static str = "Audit trail of pulls and pushes";
    const DESCRIPTION: &'static str = "Readable by owner devices and live managers only.";
    const TAG: &'static str = "records";
    const RESPONSES: &'static [(u16, &'static str)] = &[
        (200, "audit events"),
        (403, "not an owner device or a live manager"),
        (404, "no such record"),
    ];
    type Path<'a> = RecordPath;
    type Query = PageQuery;
    type Request = ();
    type Response = AuditResponse;
}

/// `POST /v1/records/{rid}/audit/views`
pub struct ReportViews;

impl Endpoint for ReportViews {
    const METHOD: Method = Method::Post;
    const PATH: &'static str = "/v1/records/{rid}/audit/views";
    const SUMMARY: &'static str = "Report entries shown from the caller's own copy";
    const DESCRIPTION: &'static str =
        "For a live member: reads the relay cannot see (a provider's \
        FHIR gateway answering from its synced copy) are added to the audit trail as `view` \
        events of the caller; views of sections it may not read now are counted as refused and \
        not stored. A report retried after a lost answer may be stored twice: a view is never \
        under-reported.";
    const TAG: &'static str = "records";
    const RESPONSES: &'static [(u16, &'static str)] = &[
        (200, "stored"),
        (400, "a section, count or time is malformed"),
        (403, "not a live member"),
        (404, "no such record"),
        (413, "more views than one request may carry"),
    ];
    type Path<'a> = RecordPath;
    type Query = ();
    type Request = ReportViewsRequest;
    type Response = ReportViewsResponse;
}

/// `GET /v1/records/{rid}/subscribe?token=TOKEN` (WebSocket upgrade; the
/// frames are [`PushMessage`]s).
pub struct Subscribe;

impl Endpoint for Subscribe {
    const METHOD: Method = Method::Get;
    const PATH: &'static str = "/v1/records/{rid}/subscribe";
    const SUMMARY: &'static str =
        "WebSocket: text frames {\"type\":\"changed\",\"section\":NAME,\"seq\":N}; pings every 20 s";
    const DESCRIPTION: &'static str = "Frames only for sections the subscriber may read; access is re-checked per frame and a revoked or expired member is closed with code 1008.";
    const TAG: &'static str = "push";
    const AUTHENTICATED: bool = false;
    const RESPONSES: &'static [(u16, &'static str)] = &[
        (101, "switching protocols"),
        (400, "not a WebSocket request"),
        (401, "unauthenticated"),
        (403, "not a member, revoked, or the grant expired"),
        (404, "no such record"),
        (429, "rate_limited"),
    ];
    type Path<'a> = RecordPath;
    type Query = TokenQuery;
    type Request = ();
    type Response = PushMessage;
}
