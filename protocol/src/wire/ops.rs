//! Operations: health, Prometheus metrics, and the relay's OpenAPI
//! document (generated from this module's types, see [`super::openapi`]).

use serde::{Deserialize, Serialize};

use super::{Endpoint, Method};

/// The relay's health.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = Health))]
pub struct HealthResponse {
    /// `ok`, or `degraded` when the database does not answer (then 503).
    pub status: String,
    /// Relay version.
    pub version: String,
    /// `sqlite` or `postgres`.
    pub storage: String,
}

/// `GET /v1/health`
pub struct Health;

impl Endpoint for Health {
    const METHOD: Method = Method::Get;
    const PATH: &'static str = "/v1/health";
    const SUMMARY: &'static str = "Health";
    const TAG: &'static str = "ops";
    const AUTHENTICATED: bool = false;
    const RESPONSES: &'static [(u16, &'static str)] =
        &[(200, "ok"), (503, "database not answering")];
    type Path<'a> = ();
    type Query = ();
    type Request = ();
    type Response = HealthResponse;
}

/// `GET /v1/openapi.json`
pub struct OpenApiDocument;

impl Endpoint for OpenApiDocument {
    const METHOD: Method = Method::Get;
    const PATH: &'static str = "/v1/openapi.json";
    const SUMMARY: &'static str = "This document";
    const TAG: &'static str = "ops";
    const AUTHENTICATED: bool = false;
    const RESPONSES: &'static [(u16, &'static str)] = &[(200, "OpenAPI 3.1 JSON")];
    type Path<'a> = ();
    type Query = ();
    type Request = ();
    /// The document, any JSON.
    type Response = serde_json::Value;
}

/// `GET /metrics` (Prometheus text exposition format, not JSON).
pub struct Metrics;

impl Endpoint for Metrics {
    const METHOD: Method = Method::Get;
    const PATH: &'static str = "/metrics";
    const SUMMARY: &'static str = "Prometheus metrics (text exposition format)";
    const TAG: &'static str = "ops";
    const AUTHENTICATED: bool = false;
    const RESPONSES: &'static [(u16, &'static str)] = &[(200, "metrics")];
    type Path<'a> = ();
    type Query = ();
    type Request = ();
    /// The exposition text.
    type Response = String;
}
