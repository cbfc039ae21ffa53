//! Replication between relays: the relay's own identity, which a record's
//! access log names when it makes the relay a replica (`add-replica`,
//! docs/protocol.md "Relay identity (replicas)"), and the records that
//! name the calling relay.

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
        let mut parts = Vec::new();
        if let Some(after) = self.after {
            parts.push(format!("after={after}"));
        }
        if let Some(limit) = self.limit {
            parts.push(format!("limit={limit}"));
        }
        (!parts.is_empty()).then(|| parts.join("&"))
    }
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
