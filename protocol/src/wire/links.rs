//! Invite and device-link mailboxes. The link id is derived from a secret
//! the relay never sees; the payloads are MACed and encrypted by the
//! devices. The creator opens the mailbox, one joiner drops its payload
//! once, the creator replies once, both poll with `GET`.

use serde::{Deserialize, Serialize};

use super::{b64, Endpoint, LinkPath, Method};
use crate::ids::{LinkId, RecordId};

/// Open a mailbox for a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = LinkCreate))]
pub struct CreateLinkRequest {
    /// The record the link admits to (the caller must be an owner device
    /// or a live manager of it).
    pub record_id: RecordId,
    /// Seconds until the mailbox expires (the relay's default when absent;
    /// at most the relay's maximum).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1))]
    pub expires_in: Option<u64>,
}

/// The opened mailbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LinkCreated {
    /// The mailbox's id.
    pub link_id: LinkId,
    /// Unix ms when it expires.
    pub expires_at_ms: i64,
}

/// An opaque payload for the other side (standard base64).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LinkPayload {
    /// MACed (and for the reply, encrypted) by the devices; the relay
    /// only bounds its size.
    #[serde(with = "b64")]
    #[cfg_attr(feature = "openapi", schema(value_type = String, format = Byte))]
    pub payload: Vec<u8>,
}

/// A join or accept was stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LinkAck {
    /// The mailbox's id.
    pub link_id: LinkId,
}

/// A mailbox as its creator or joiner reads it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = Link))]
pub struct LinkState {
    /// The record the link admits to.
    pub record_id: RecordId,
    /// The joiner's payload (standard base64), null until it joined.
    #[serde(default, with = "b64::opt")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = Byte))]
    pub join: Option<Vec<u8>>,
    /// The creator's reply (standard base64), null until it accepted.
    #[serde(default, with = "b64::opt")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>, format = Byte))]
    pub accept: Option<Vec<u8>>,
    /// Unix ms when the mailbox expires.
    pub expires_at_ms: i64,
}

/// `PUT /v1/links/{link_id}`
pub struct CreateLink;

impl Endpoint for CreateLink {
    const METHOD: Method = Method::Put;
    const PATH: &'static str = "/v1/links/{link_id}";
    const SUMMARY: &'static str =
        "Create a link mailbox (caller must be an owner device or a live manager of the record)";
    const TAG: &'static str = "links";
    const RESPONSES: &'static [(u16, &'static str)] = &[
        (201, "created"),
        (
            403,
            "the caller is not an owner device or a live manager of the record",
        ),
        (404, "no such record"),
        (409, "link id in use"),
    ];
    type Path<'a> = LinkPath;
    type Query = ();
    type Request = CreateLinkRequest;
    type Response = LinkCreated;
}

/// `GET /v1/links/{link_id}`
pub struct GetLink;

impl Endpoint for GetLink {
    const METHOD: Method = Method::Get;
    const PATH: &'static str = "/v1/links/{link_id}";
    const SUMMARY: &'static str = "Read a link mailbox (creator or joiner)";
    const TAG: &'static str = "links";
    const RESPONSES: &'static [(u16, &'static str)] = &[
        (200, "link"),
        (403, "neither creator nor joiner"),
        (404, "no such link, or expired"),
    ];
    type Path<'a> = LinkPath;
    type Query = ();
    type Request = ();
    type Response = LinkState;
}

/// `POST /v1/links/{link_id}/join`
pub struct JoinLink;

impl Endpoint for JoinLink {
    const METHOD: Method = Method::Post;
    const PATH: &'static str = "/v1/links/{link_id}/join";
    const SUMMARY: &'static str = "Join once with the joiner's payload";
    const TAG: &'static str = "links";
    const RESPONSES: &'static [(u16, &'static str)] = &[
        (200, "joined"),
        (404, "no such link, or expired"),
        (409, "already joined"),
        (413, "payload too large"),
    ];
    type Path<'a> = LinkPath;
    type Query = ();
    type Request = LinkPayload;
    type Response = LinkAck;
}

/// `POST /v1/links/{link_id}/accept`
pub struct AcceptLink;

impl Endpoint for AcceptLink {
    const METHOD: Method = Method::Post;
    const PATH: &'static str = "/v1/links/{link_id}/accept";
    const SUMMARY: &'static str = "Accept once with the creator's reply";
    const TAG: &'static str = "links";
    const RESPONSES: &'static [(u16, &'static str)] = &[
        (200, "accepted"),
        (403, "not the creator"),
        (404, "no such link, or expired"),
        (409, "not joined yet, or already accepted"),
        (413, "payload too large"),
    ];
    type Path<'a> = LinkPath;
    type Query = ();
    type Request = LinkPayload;
    type Response = LinkAck;
}
