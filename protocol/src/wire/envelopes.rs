//! A section's envelope log: batch upload, pull after a cursor (with the
//! compaction snapshot), snapshot upload, and the per-record feed of
//! changed sections.

use serde::{Deserialize, Serialize};

use super::{b64, AfterQuery, Base64Text, Endpoint, Method, PageQuery, RecordPath, SectionPath};

/// A batch of envelopes for one section.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UploadRequest {
    /// The envelopes (standard base64 with padding each; at most 1000).
    /// The relay decodes and checks each in turn and refuses the batch at
    /// the first bad one (422 with its index).
    #[cfg_attr(feature = "openapi", schema(max_items = 1000))]
    pub envelopes: Vec<Base64Text>,
}

impl UploadRequest {
    /// The upload of `envelopes` (sealed envelope bytes).
    pub fn new<B: AsRef<[u8]>>(envelopes: &[B]) -> Self {
        Self {
            envelopes: envelopes
                .iter()
                .map(|e| Base64Text::encode(e.as_ref()))
                .collect(),
        }
    }
}

/// One stored envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Accepted {
    /// SHA-256 of the envelope bytes (64 hex characters).
    #[serde(with = "crate::crypto::encoding::hex_array")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, pattern = "^[0-9a-f]{64}$"))]
    pub hash: [u8; 32],
    /// Its position in the section's log.
    pub seq: u64,
}

/// The stored batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UploadResponse {
    /// One per envelope sent, in order: new ones and ones the relay
    /// already held (stored all the same, at their first position).
    pub accepted: Vec<Accepted>,
    /// How many of `accepted` the relay already held.
    #[serde(default)]
    pub duplicates: u64,
}

/// The section's compaction snapshot, when newer than the cursor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PulledSnapshot {
    /// The snapshot covers the log up to this position.
    pub upto_seq: u64,
    /// The snapshot envelope (standard base64).
    #[serde(with = "b64")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = Byte))]
    pub envelope: Vec<u8>,
}

/// One pulled envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PulledEnvelope {
    /// Its position in the section's log.
    pub seq: u64,
    /// The envelope (standard base64).
    #[serde(with = "b64")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = Byte))]
    pub envelope: Vec<u8>,
}

/// A page of a section's log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PullResponse {
    /// The snapshot, when it covers more than the cursor (null otherwise).
    pub snapshot: Option<PulledSnapshot>,
    /// Envelopes after the cursor (or after the snapshot), oldest first.
    pub envelopes: Vec<PulledEnvelope>,
    /// Cursor for the next call.
    pub next: u64,
    /// More envelopes follow.
    pub more: bool,
}

/// A compaction snapshot of a section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SnapshotRequest {
    /// The snapshot covers the log up to this position (at least 1, at
    /// most the newest envelope's).
    #[cfg_attr(feature = "openapi", schema(minimum = 1))]
    pub upto_seq: u64,
    /// The snapshot envelope (standard base64), signed by an owner device
    /// or a live manager.
    #[serde(with = "b64")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = Byte))]
    pub envelope: Vec<u8>,
}

/// The stored snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SnapshotResponse {
    /// What the stored snapshot covers.
    pub upto_seq: u64,
}

/// One changed section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FeedSection {
    /// The section.
    pub section: String,
    /// Its newest position.
    pub seq: u64,
}

/// Sections changed after a cursor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = Feed))]
pub struct FeedResponse {
    /// Changed sections the caller may read.
    pub sections: Vec<FeedSection>,
    /// Cursor for the next call.
    pub cursor: u64,
    /// Present when this relay is a replica (an edge relay) of the record's
    /// home relay: when it last exchanged the record with it. Absent: this
    /// relay is the record's home.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<UpstreamReach>,
}

/// When a replica relay last exchanged a record with its upstream (the
/// record's home relay): a copy read through it is current up to then.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UpstreamReach {
    /// Unix ms of the last complete exchange; absent: none since the relay
    /// started (its link may be down).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_reached_ms: Option<i64>,
}

/// `POST /v1/records/{rid}/sections/{section}/envelopes`
pub struct Upload;

impl Endpoint for Upload {
    const METHOD: Method = Method::Post;
    const PATH: &'static str = "/v1/records/{rid}/sections/{section}/envelopes";
    const SUMMARY: &'static str =
        "Upload a batch of envelopes (atomic, durable, idempotent by hash)";
    const TAG: &'static str = "envelopes";
    const RESPONSES: &'static [(u16, &'static str)] = &[
        (200, "stored"),
        (
            403,
            "the caller has no write access to the section now (not a member, revoked, expired, reader, or section not granted)",
        ),
        (404, "no such record"),
        (413, "batch too large (limit in bytes or count)"),
        (
            422,
            "an envelope failed verification, or its author has no write access to the section now (index of the first)",
        ),
    ];
    type Path<'a> = SectionPath<'a>;
    type Query = ();
    type Request = UploadRequest;
    type Response = UploadResponse;
}

/// `GET /v1/records/{rid}/sections/{section}/envelopes?after=N&limit=M`
pub struct Pull;

impl Endpoint for Pull {
    const METHOD: Method = Method::Get;
    const PATH: &'static str = "/v1/records/{rid}/sections/{section}/envelopes";
    const SUMMARY: &'static str =
        "Pull envelopes after a cursor (with the snapshot when it is newer)";
    const TAG: &'static str = "envelopes";
    const RESPONSES: &'static [(u16, &'static str)] = &[
        (200, "page"),
        (403, "the caller may not read the section now"),
        (404, "no such record"),
    ];
    type Path<'a> = SectionPath<'a>;
    type Query = PageQuery;
    type Request = ();
    type Response = PullResponse;
}

/// `PUT /v1/records/{rid}/sections/{section}/snapshot`
pub struct Snapshot;

impl Endpoint for Snapshot {
    const METHOD: Method = Method::Put;
    const PATH: &'static str = "/v1/records/{rid}/sections/{section}/snapshot";
    const SUMMARY: &'static str = "Upload a compaction snapshot";
    const TAG: &'static str = "envelopes";
    const RESPONSES: &'static [(u16, &'static str)] = &[
        (200, "replaced"),
        (400, "upto_seq < 1 or after the section's newest envelope"),
        (403, "the caller has no write access to the section now"),
        (404, "no such record"),
        (409, "the current snapshot's upto_seq is not smaller"),
        (413, "snapshot too large"),
        (
            422,
            "the snapshot failed verification, or its author is not an owner device or a live manager (index 0)",
        ),
    ];
    type Path<'a> = SectionPath<'a>;
    type Query = ();
    type Request = SnapshotRequest;
    type Response = SnapshotResponse;
}

/// `GET /v1/records/{rid}/feed?after=N`
pub struct Feed;

impl Endpoint for Feed {
    const METHOD: Method = Method::Get;
    const PATH: &'static str = "/v1/records/{rid}/feed";
    const SUMMARY: &'static str = "Sections changed after a cursor";
    const DESCRIPTION: &'static str = "Only sections the caller may read are listed.";
    const TAG: &'static str = "envelopes";
    const RESPONSES: &'static [(u16, &'static str)] = &[
        (200, "feed"),
        (403, "not a member, revoked, or the grant expired"),
        (404, "no such record"),
    ];
    type Path<'a> = RecordPath;
    type Query = AfterQuery;
    type Request = ();
    type Response = FeedResponse;
}
