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

/// Whether the relay should get traffic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = Ready))]
pub struct ReadyResponse {
    /// `ready` (200), or `not_ready` (503) when any check below fails.
    pub status: String,
    /// `sqlite` or `postgres`.
    pub storage: String,
    /// The database answered a trivial query.
    pub database: bool,
    /// The schema is migrated to the version this relay knows (it opens
    /// storage only after migrating, so this is the version it serves).
    pub schema_version: u32,
    /// Change notifications from other instances arrive (PostgreSQL: the
    /// `LISTEN` connection is up; SQLite: always).
    pub notifications: bool,
    /// The relay is shutting down (stop sending it new requests).
    pub draining: bool,
}

/// `GET /v1/ready`
pub struct Ready;

impl Endpoint for Ready {
    const METHOD: Method = Method::Get;
    const PATH: &'static str = "/v1/ready";
    const SUMMARY: &'static str = "Readiness";
    const DESCRIPTION: &'static str = "For load balancers and orchestrators: 200 when storage answers, migrations are done, change notifications are connected and the relay is not shutting down; else 503 with the same body. `/v1/health` only says the process is alive.";
    const TAG: &'static str = "ops";
    const AUTHENTICATED: bool = false;
    const RESPONSES: &'static [(u16, &'static str)] =
        &[(200, "ready"), (503, "not ready (see the flags)")];
    type Path<'a> = ();
    type Query = ();
    type Request = ();
    type Response = ReadyResponse;
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
