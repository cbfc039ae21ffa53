//! Operations endpoints: health (alive), readiness, Prometheus metrics, and the OpenAPI 3.1
//! document (generated from the wire types by
//! `satchel_protocol::wire::openapi`, checked against the route table by a
//! test).

use std::sync::OnceLock;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use satchel_protocol::wire::{HealthResponse, ReadyResponse};

use super::error::{ApiError, ApiResult};
use super::AppState;

/// The OpenAPI 3.1 description of every route, as served (pretty JSON),
/// generated once.
pub fn openapi_json() -> ApiResult<&'static str> {
    static DOC: OnceLock<Result<String, String>> = OnceLock::new();
    DOC.get_or_init(|| {
        satchel_protocol::wire::openapi::document()
            .to_pretty_json()
            .map_err(|e| e.to_string())
    })
    .as_deref()
    .map_err(|e| {
        tracing::error!(error = %e, "the OpenAPI document could not be serialised");
        ApiError::Unavailable
    })
}

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

/// `GET /v1/ready`: one trivial query plus two flags, cheap enough to
/// probe every second.
pub(super) async fn ready(State(state): State<AppState>) -> (StatusCode, Json<ReadyResponse>) {
    let database = state.storage.health().await.is_ok();
    let notifications = state.storage.notifications_live();
    let draining = *state.shutdown.borrow();
    let ok = database && notifications && !draining;
    (
        if ok {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        },
        Json(ReadyResponse {
            status: if ok { "ready" } else { "not_ready" }.to_owned(),
            storage: state.storage.kind().to_owned(),
            database,
            schema_version: state.storage.schema_version(),
            notifications,
            draining,
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
pub(super) async fn openapi() -> ApiResult<Response> {
    Ok((
        [(header::CONTENT_TYPE, "application/json")],
        openapi_json()?,
    )
        .into_response())
}
