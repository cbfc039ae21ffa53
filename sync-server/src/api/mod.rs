//! The HTTP API (axum 0.8): every route of `docs/protocol.md`, the shared
//! [`AppState`], and the request middleware (global body limit, request
//! log, response metrics).
//!
//! - [`auth`]: challenge/token, the [`auth::Auth`] extractor, rate limits.
//! - [`records`]: record registration, access statements, members, and
//!   the per-route access checks.
//! - [`audit`]: the pull/push audit trail.
//! - [`envelopes`]: upload (with [`verify`]), pull, snapshot, feed.
//! - [`subscribe`]: the WebSocket push channel; [`fanout`]: changes handed
//!   to the subscribers of their record only.
//! - [`links`]: invite / device-link mailboxes.
//! - [`replication`]: this relay's identity card, and for a calling replica
//!   relay: the records that name it, their heads, their envelopes in
//!   batches, and the audit events it forwards.
//! - [`share_links`]: SMART Health Links hosted blind: the owners' routes,
//!   the public manifest / file routes (CORS from any origin, rate-limited
//!   per link and per client address) and the viewer's static files.
//! - [`ops`]: health, metrics, the OpenAPI document (generated from
//!   `satchel_protocol::wire`, where every route's method, path and bodies
//!   are defined).
//!
//! Handlers are thin: parse, authorize, call [`crate::storage::Storage`],
//! shape the JSON. Logs carry method, route template, status, latency,
//! identity and counts, never bodies.

pub mod audit;
pub mod auth;
pub mod envelopes;
pub mod error;
pub mod extract;
pub mod fanout;
#[doc(hidden)]
pub mod fuzzing;
pub mod links;
pub mod metrics;
pub mod ops;
pub mod records;
pub mod replication;
pub mod share_links;
pub mod subscribe;
pub mod verify;

use std::ops::Deref;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::handler::Handler;
use axum::http::{header, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{on, MethodFilter, MethodRouter};
use axum::Router;
use satchel_protocol::ids::IdentityId;
use satchel_protocol::wire::share_links::{
    CreateShareLink, DirectFile, FileAtLocation, ListShareLinks as ShareLinks, Manifest,
    ReplaceShareLinkFiles, RevokeShareLink, ViewerPage, ViewerScript, ViewerStyle,
};
use satchel_protocol::wire::{self, Endpoint, ErrorBody};
use tokio::sync::watch;

use crate::config::Limits;
use crate::storage::Storage;
use error::ApiError;

/// Shared state of one relay instance.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

/// What [`AppState`] holds.
pub struct Shared {
    /// The database.
    pub storage: Arc<dyn Storage>,
    /// Size and count limits.
    pub limits: Limits,
    /// Counters for `/metrics`.
    pub metrics: metrics::Metrics,
    /// Validated bearer tokens.
    pub tokens: auth::TokenCache,
    /// Rate limiters.
    pub limiters: auth::Limiters,
    /// Becomes `true` when the server is shutting down.
    pub shutdown: watch::Receiver<bool>,
    /// Verified access logs by record (see [`records::MembersCache`]).
    pub members: records::MembersCache,
    /// The relay's own card, when it has an identity ([`crate::identity`]).
    pub identity: OnceLock<satchel_protocol::crypto::IdentityCard>,
    /// Identities whose sessions were just revoked (WebSockets listen).
    pub revoked: tokio::sync::broadcast::Sender<IdentityId>,
    /// Subscribers indexed by record.
    pub fanout: Arc<fanout::Fanout>,
    /// Set when this relay replicates with upstream relays: when it last
    /// reached them, per record (told to devices in the feed).
    pub upstream_contact: OnceLock<Arc<crate::replication::contact::UpstreamContact>>,
    /// How share links' `location` URLs name this relay (unset: from the
    /// `Host` header over plain HTTP).
    pub public_base: OnceLock<share_links::PublicBase>,
}

impl Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl AppState {
    /// Assemble the state.
    pub fn new(
        storage: Arc<dyn Storage>,
        limits: Limits,
        rate: crate::config::RateLimit,
        shutdown: watch::Receiver<bool>,
        fanout_index: bool,
        members: records::MembersCache,
    ) -> Self {
        AppState(Arc::new(Shared {
            storage,
            limits,
            metrics: metrics::Metrics::default(),
            tokens: auth::TokenCache::default(),
            limiters: auth::Limiters::new(rate),
            shutdown,
            members,
            identity: OnceLock::new(),
            revoked: tokio::sync::broadcast::channel(REVOKED_CHANNEL_CAPACITY).0,
            fanout: Arc::new(fanout::Fanout::new(fanout_index)),
            upstream_contact: OnceLock::new(),
            public_base: OnceLock::new(),
        }))
    }

    /// Show `card` as this relay's identity (`GET /v1/relay`). Set once, at
    /// start.
    pub fn set_identity(&self, card: satchel_protocol::crypto::IdentityCard) {
        if self.identity.set(card).is_err() {
            tracing::warn!("the relay identity was already set; kept the first");
        }
    }

    /// End every session of `id` on this instance: forget its cached
    /// tokens, close its WebSockets.
    pub fn end_sessions(&self, id: IdentityId) {
        self.tokens.forget(id);
        let _ = self.revoked.send(id);
    }
}

/// Revocations a WebSocket may fall behind by before it is closed (to
/// reconnect and authenticate again).
const REVOKED_CHANNEL_CAPACITY: usize = 1024;

/// Per-request facts filled in by extractors and handlers, read by the
/// request log.
#[derive(Clone, Default)]
pub struct RequestInfo(Arc<InfoInner>);

#[derive(Default)]
struct InfoInner {
    identity: OnceLock<IdentityId>,
    count: AtomicU64,
}

impl RequestInfo {
    /// The authenticated caller.
    pub fn set_identity(&self, id: IdentityId) {
        let _ = self.0.identity.set(id);
    }

    /// Items handled (envelopes, statements).
    pub fn set_count(&self, n: usize) {
        self.0
            .count
            .store(u64::try_from(n).unwrap_or(u64::MAX), Ordering::Relaxed);
    }
}

/// One route of the table: the endpoint's method and path template (from
/// `satchel_protocol::wire`, the only place routes are spelled) and its
/// handler.
fn route<E: Endpoint, H: Handler<T, AppState>, T: 'static>(
    handler: H,
) -> (Method, &'static str, MethodRouter<AppState>) {
    let (method, filter) = match E::METHOD {
        wire::Method::Get => (Method::GET, MethodFilter::GET),
        wire::Method::Post => (Method::POST, MethodFilter::POST),
        wire::Method::Put => (Method::PUT, MethodFilter::PUT),
    };
    (method, E::PATH, on(filter, handler))
}

/// Every route: (method, path template, handler). The router is built from
/// this table and the OpenAPI test checks the document against it.
pub fn routes() -> Vec<(Method, &'static str, MethodRouter<AppState>)> {
    vec![
        route::<wire::Challenge, _, _>(auth::challenge),
        route::<wire::Token, _, _>(auth::token),
        route::<wire::RevokeSessions, _, _>(auth::revoke_sessions),
        route::<wire::Register, _, _>(records::register),
        route::<wire::AppendStatement, _, _>(records::append_statement),
        route::<wire::Statements, _, _>(records::statements),
        route::<wire::Members, _, _>(records::members),
        route::<wire::Upload, _, _>(envelopes::upload),
        route::<wire::Pull, _, _>(envelopes::pull),
        route::<wire::Snapshot, _, _>(envelopes::snapshot),
        route::<wire::Feed, _, _>(envelopes::feed),
        route::<wire::Audit, _, _>(audit::audit),
        route::<wire::ReportViews, _, _>(audit::report_views),
        route::<wire::Subscribe, _, _>(subscribe::subscribe),
        route::<wire::CreateLink, _, _>(links::create),
        route::<wire::GetLink, _, _>(links::get),
        route::<wire::JoinLink, _, _>(links::join),
        route::<wire::AcceptLink, _, _>(links::accept),
        route::<wire::Health, _, _>(ops::health),
        route::<wire::RelayIdentity, _, _>(replication::relay_identity),
        route::<wire::ReplicaRecords, _, _>(replication::replica_records),
        route::<wire::ReplicaHeads, _, _>(replication::replica_heads),
        route::<wire::ReplicaPull, _, _>(replication::replica_pull),
        route::<wire::ForwardAudit, _, _>(replication::forward_audit),
        route::<ShareLinks, _, _>(share_links::list),
        route::<CreateShareLink, _, _>(share_links::create),
        route::<ReplaceShareLinkFiles, _, _>(share_links::replace_files),
        route::<RevokeShareLink, _, _>(share_links::revoke),
        route::<Manifest, _, _>(share_links::manifest),
        route::<DirectFile, _, _>(share_links::direct_file),
        route::<FileAtLocation, _, _>(share_links::file_at_location),
        route::<ViewerPage, _, _>(share_links::viewer_page),
        route::<ViewerScript, _, _>(share_links::viewer_script),
        route::<ViewerStyle, _, _>(share_links::viewer_style),
        route::<wire::Ready, _, _>(ops::ready),
        route::<wire::OpenApiDocument, _, _>(ops::openapi),
        route::<wire::Metrics, _, _>(ops::metrics),
    ]
}

/// The HTTP API with its middleware.
pub fn router(state: AppState) -> Router {
    let mut by_path: Vec<(&'static str, MethodRouter<AppState>)> = Vec::new();
    for (_, path, handler) in routes() {
        match by_path.iter_mut().find(|(p, _)| *p == path) {
            Some((_, existing)) => {
                let merged = std::mem::take(existing).merge(handler);
                *existing = merged;
            }
            None => by_path.push((path, handler)),
        }
    }
    let mut router = Router::new();
    for (path, handler) in by_path {
        let handler = if PUBLIC_CORS_PATHS.contains(&path) {
            // Any origin may read a link it holds (the link is the
            // capability). An explicit fallback first, so the preflight
            // (OPTIONS) reaches the CORS layer, which answers it.
            handler
                .fallback(method_not_allowed)
                .layer(share_link_cors())
        } else {
            handler
        };
        router = router.route(path, handler);
    }
    router
        .fallback(|| async { ApiError::NotFound("no such route") })
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            request_layer,
        ))
        .with_state(state)
}

/// The public share-link routes, which answer any origin.
const PUBLIC_CORS_PATHS: [&str; 2] = [Manifest::PATH, FileAtLocation::PATH];

/// CORS for the public share-link routes: any origin, `GET`, `POST`,
/// `OPTIONS`, the `content-type` header; no credentials.
fn share_link_cors() -> tower_http::cors::CorsLayer {
    tower_http::cors::CorsLayer::new()
        .allow_origin(tower_http::cors::Any)
        .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
        .allow_headers([header::CONTENT_TYPE])
        .max_age(std::time::Duration::from_secs(600))
}

async fn method_not_allowed() -> Response {
    (
        axum::http::StatusCode::METHOD_NOT_ALLOWED,
        axum::Json(ErrorBody::new(
            "method_not_allowed",
            "method not allowed on this route",
        )),
    )
        .into_response()
}

/// Global body limit (by `Content-Length`; handlers enforce their own
/// tighter limits while reading), request log and response counters.
async fn request_layer(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().clone();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "<unmatched>".to_owned(), |p| p.as_str().to_owned());
    let info = RequestInfo::default();
    req.extensions_mut().insert(info.clone());
    let max = state.limits.max_body_bytes();
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let resp = match declared {
        Some(n) if n > u64::try_from(max).unwrap_or(u64::MAX) => {
            ApiError::too_large(max, "request body too large").into_response()
        }
        _ => next.run(req).await,
    };
    let status = resp.status().as_u16();
    state.metrics.response(status);
    let identity = info.0.identity.get().map(IdentityId::short);
    tracing::info!(
        %method,
        route = %route,
        status,
        latency_us = u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX),
        identity = identity.as_deref().unwrap_or("-"),
        count = info.0.count.load(Ordering::Relaxed),
        "request"
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_in_the_openapi_document() {
        let text = ops::openapi_json().unwrap();
        let doc: serde_json::Value = serde_json::from_str(text).unwrap();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
        let paths = doc["paths"].as_object().unwrap();
        let table = routes();
        for (method, path, _) in &table {
            let op = &paths
                .get(*path)
                .unwrap_or_else(|| panic!("{path} missing from openapi.json"))
                [method.as_str().to_ascii_lowercase()];
            assert!(op.is_object(), "{method} {path} missing from openapi.json");
            assert!(
                op["responses"].is_object(),
                "{method} {path} has no responses"
            );
        }
        // ...and the document describes nothing the router lacks.
        let documented: usize = paths.values().map(|p| p.as_object().unwrap().len()).sum();
        assert_eq!(documented, table.len());
        // Every $ref resolves.
        for piece in text.split("\"$ref\": \"#/components/schemas/").skip(1) {
            let name = &piece[..piece.find('"').unwrap()];
            assert!(doc["components"]["schemas"][name].is_object(), "{name}");
        }
    }
}
