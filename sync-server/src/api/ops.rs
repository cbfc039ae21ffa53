//! Operations endpoints: health, Prometheus metrics, and the OpenAPI 3
//! document (hand-written `openapi.json`, checked against the route table
//! by a test).

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use satchel_protocol::wire::HealthResponse;

use super::AppState;

/// The OpenAPI 3 description of every route.
pub const OPENAPI: &str = include_str!("openapi.json");

/// `GET /v1/health` body.
pub type Health = HealthResponse;

/// `GET /v1/health`
pub(super) async fn health(State(state): State<AppState>) -> (StatusCode, Json<Health>) {
    let ok = state.storage.health().await.is_ok();
    (
        if ok {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        },
        Json(Health {
            status: if ok { "ok" } else { "degraded" }.to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            storage: state.storage.kind().to_owned(),
        }),
    )
}

/// `GET /metrics`
pub(super) async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}

/// `GET /v1/openapi.json`
pub(super) async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}
