//! Replication between relays: the relay's own identity, which a record's
//! access log names when it makes the relay a replica (`add-replica`,
//! docs/protocol.md "Relay identity (replicas)"), and the records that
//! name the calling relay.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::crypto::IdentityCard;
use crate::ids::RecordId;

use super::{Endpoint, Method, QueryArgs};

/// A relay's identity card (role `relay`) and its fingerprint, for a
/// patient to check with the relay's operator before naming it a replica.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = RelayIdentity))]
pub struct RelayIdentityResponse {
    /// The relay's self-signed card.
    #[cfg_attr(feature = "openapi", schema(value_type = super::openapi::IdentityCardSchema))]
    pub card: IdentityCard,
    /// The card's fingerprint ([`IdentityCard::fingerprint`]), as the
    /// relay's operator reads it out.
    pub fingerprint: String,
}

/// `GET /v1/relay`
pub struct RelayIdentity;

impl Endpoint for RelayIdentity {
    const METHOD: Method = Method::Get;
    const PATH: &'static str = "/v1/relay";
    const SUMMARY: &'static str = "This relay's identity card";
    const DESCRIPTION: &'static str = "The card a record's access log names to make this relay a \
        replica of the record. Check the fingerprint with the relay's operator.";
    const TAG: &'static str = "replication";
    const AUTHENTICATED: bool = false;
    const RESPONSES: &'static [(u16, &'static str)] = &[
        (200, "the relay's card"),
        (
            404,
            "this relay has no identity (it was started without one)",
        ),
    ];
    type Path<'a> = ();
    type Query = ();
    type Request = ();
    type Response = RelayIdentityResponse;
}

/// `?after=RID&limit=M`: a page of records after a record id.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
pub struct RecordsPageQuery {
    /// Return records whose id sorts after this one (absent: from the
    /// start).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", param(value_type = Option<String>))]
    pub after: Option<RecordId>,
    /// The most records to return (default and cap 1000).
    #[serde(default)]
    #[cfg_attr(
        feature = "openapi",
        param(minimum = 1, maximum = 1000, default = 1000)
    )]
    pub limit: Option<u32>,
}

impl QueryArgs for RecordsPageQuery {
    fn query_string(&self) -> Option<String> {
        join_parts(page_parts(self.after, self.limit))
    }
}

/// `after=` and `limit=` of a page of records, as given.
fn page_parts(after: Option<RecordId>, limit: Option<u32>) -> Vec<String> {
    let mut parts = Vec::new();
    if let Some(after) = after {
        parts.push(format!("after={after}"));
    }
    if let Some(limit) = limit {
        parts.push(format!("limit={limit}"));
    }
    parts
}

fn join_parts(parts: Vec<String>) -> Option<String> {
    (!parts.is_empty()).then(|| parts.join("&"))
}

/// The records whose access log names the caller a replica.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = ReplicaRecords))]
pub struct ReplicaRecordsResponse {
    /// Record ids, in increasing order.
    pub records: Vec<RecordId>,
    /// More follow (ask again with `after` the last one).
    pub more: bool,
}

/// `GET /v1/replica/records`
pub struct ReplicaRecords;

impl Endpoint for ReplicaRecords {
    const METHOD: Method = Method::Get;
    const PATH: &'static str = "/v1/replica/records";
    const SUMMARY: &'static str = "Records that name the caller a replica";
    const DESCRIPTION: &'static str = "For a replica relay signed in with its identity: the \
        records whose verified access log names it (add-replica, not revoked), so that it \
        replicates each one.";
    const TAG: &'static str = "replication";
    const RESPONSES: &'static [(u16, &'static str)] = &[(200, "a page of record ids")];
    type Path<'a> = ();
    type Query = RecordsPageQuery;
    type Request = ();
    type Response = ReplicaRecordsResponse;
}

/// Where one record stands at the relay: the newest position of its access
/// log and of each log with envelopes. A replica compares them with its own
/// cursors and asks only for what moved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RecordHeads {
    /// The record.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub record: RecordId,
    /// The seq of its newest access statement (0: none).
    pub access: u64,
    /// Per log name, the seq of its newest envelope.
    pub logs: BTreeMap<String, u64>,
}

/// `?after=RID&limit=M&unless=DIGEST`: a page of heads; when the page's
/// digest equals `unless`, the records are left out (nothing moved since
/// the caller last read it).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
pub struct HeadsQuery {
    /// Records whose id sorts after this one (absent: from the start).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", param(value_type = Option<String>))]
    pub after: Option<RecordId>,
    /// The most records (default and cap 1000).
    #[serde(default)]
    #[cfg_attr(
        feature = "openapi",
        param(minimum = 1, maximum = 1000, default = 1000)
    )]
    pub limit: Option<u32>,
    /// The page's digest as the caller last read it.
    #[serde(default)]
    pub unless: Option<String>,
}

impl QueryArgs for HeadsQuery {
    fn query_string(&self) -> Option<String> {
        let mut parts = page_parts(self.after, self.limit);
        if let Some(unless) = &self.unless {
            parts.push(format!("unless={unless}"));
        }
        join_parts(parts)
    }
}

/// A page of heads of the records that name the caller a replica.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = ReplicaHeads))]
pub struct ReplicaHeadsResponse {
    /// In increasing record id order (empty when `unchanged`).
    pub records: Vec<RecordHeads>,
    /// More follow (ask again with `after` = `last`).
    pub more: bool,
    /// The page's last record.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub last: Option<RecordId>,
    /// A digest of the page (hex SHA-256 of its records as JSON), to send
    /// back as `unless`.
    pub digest: String,
    /// The page's digest is the one the caller sent: nothing in it moved
    /// and its records are left out.
    #[serde(default)]
    pub unchanged: bool,
}

/// `GET /v1/replica/heads`
pub struct ReplicaHeads;

impl Endpoint for ReplicaHeads {
    const METHOD: Method = Method::Get;
    const PATH: &'static str = "/v1/replica/heads";
    const SUMMARY: &'static str = "Where each record that names the caller a replica stands";
    const DESCRIPTION: &'static str = "For a replica relay: per record that names it, the newest \
        access statement's seq and each log's newest envelope seq, so that one request per \
        thousand records tells it what to fetch.";
    const TAG: &'static str = "replication";
    const RESPONSES: &'static [(u16, &'static str)] = &[(200, "a page of heads")];
    type Path<'a> = ();
    type Query = HeadsQuery;
    type Request = ();
    type Response = ReplicaHeadsResponse;
}

/// One log to fetch after a cursor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LogWant {
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub record: RecordId,
    /// The log's name.
    pub log: String,
    /// Envelopes after this seq.
    pub after: u64,
}

/// The logs a replica fetches in one request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReplicaPullRequest {
    /// At most [`ReplicaPullRequest::MAX_LOGS`] logs.
    pub logs: Vec<LogWant>,
}

impl ReplicaPullRequest {
    /// The most logs one request names.
    pub const MAX_LOGS: usize = 1000;
}

/// `POST /v1/replica/pull`: the answer is binary
/// ([`super::replica_batch`], `application/vnd.satchel.replica-batch`).
pub struct ReplicaPull;

impl Endpoint for ReplicaPull {
    const METHOD: Method = Method::Post;
    const PATH: &'static str = "/v1/replica/pull";
    const SUMMARY: &'static str = "Fetch many logs' envelopes at once (replica relays)";
    const DESCRIPTION: &'static str = "For a replica relay: envelopes (and snapshots) of the logs \
        named, each after its cursor, as one binary body (application/vnd.satchel.replica-batch: \
        the envelopes' exact bytes, docs/protocol.md \"Replication between relays\"). The answer \
        may stop early; logs not in it, or marked with more, are asked again.";
    const TAG: &'static str = "replication";
    const RESPONSES: &'static [(u16, &'static str)] = &[
        (200, "the batch"),
        (
            403,
            "a named record does not name the caller a replica (now)",
        ),
        (413, "more logs than one request may name"),
    ];
    type Path<'a> = ();
    type Query = ();
    type Request = ReplicaPullRequest;
    type Response = ();
}

/// A view or push recorded at a replica relay, forwarded to its upstream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ForwardedAuditEvent {
    /// Its position in the replica's own trail (what makes forwarding it
    /// again harmless).
    pub seq: u64,
    /// Unix ms, at the replica.
    pub at_ms: i64,
    /// Who pulled or pushed there.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub identity: crate::ids::IdentityId,
    pub action: super::AuditAction,
    pub section: String,
    pub count: u64,
}

/// The events a replica forwards for one record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ForwardAuditRequest {
    /// Oldest first; at most [`ForwardAuditRequest::MAX_EVENTS`].
    pub events: Vec<ForwardedAuditEvent>,
}

impl ForwardAuditRequest {
    /// The most events one request carries.
    pub const MAX_EVENTS: usize = 1000;
}

/// How many forwarded events were new.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ForwardAuditResponse {
    pub stored: u64,
}

/// `POST /v1/replica/records/{rid}/audit`
pub struct ForwardAudit;

impl Endpoint for ForwardAudit {
    const METHOD: Method = Method::Post;
    const PATH: &'static str = "/v1/replica/records/{rid}/audit";
    const SUMMARY: &'static str = "Forward a replica's audit events to the record's upstream";
    const DESCRIPTION: &'static str = "For a replica relay named by the record: pulls and pushes \
        recorded there, stored in this relay's trail tagged with the replica where they \
        happened (idempotent per replica and event seq).";
    const TAG: &'static str = "replication";
    const RESPONSES: &'static [(u16, &'static str)] = &[
        (200, "stored"),
        (403, "the record does not name the caller a replica (now)"),
        (404, "no such record"),
        (413, "more events than one request may carry"),
    ];
    type Path<'a> = super::RecordPath;
    type Query = ();
    type Request = ForwardAuditRequest;
    type Response = ForwardAuditResponse;
}
