//! Replication between relays: the relay's own identity, which a record's
//! access log names when it makes the relay a replica (`add-replica`,
//! docs/protocol.md "Replica relays").

use serde::{Deserialize, Serialize};

use crate::crypto::IdentityCard;

use super::{Endpoint, Method};

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
