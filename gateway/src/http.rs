//! The gateway's HTTP surface (axum): the FHIR routes, each checking the
//! bearer token and its scopes before calling [`Service`] on a blocking
//! thread; `GET /metadata`, `GET /health` and the SMART configuration are
//! open. Every error is an `OperationOutcome`; every answer
//! `application/fhir+json` and `Cache-Control: no-store`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::Value;

use crate::auth::{Access, Grant, TokenIssuer};
use crate::fhir::capability::capability_statement;
use crate::fhir::outcome::Outcome;
use crate::fhir::read;
use crate::fhir::write::{self, BundleKind};
use crate::service::Service;

/// The largest request body (a transaction of a few thousand resources).
pub const MAX_BODY: usize = 16 * 1024 * 1024;

/// What every route shares.
#[derive(Clone)]
pub struct AppState {
    pub service: Arc<Service>,
    pub auth: Arc<TokenIssuer>,
    /// The gateway's public base URL (no trailing slash).
    pub base: String,
}

fn fhir_json(status: u16, body: &Value) -> Response {
    let mut resp = (
        StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        body.to_string(),
    )
        .into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/fhir+json; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

impl IntoResponse for Outcome {
    fn into_response(self) -> Response {
        let mut resp = fhir_json(self.status, &self.resource());
        if self.status == 401 {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"satchel-gateway\""),
            );
        }
        resp
    }
}

type Answer = Result<Response, Outcome>;

/// The token's grant, or the outcome refusing the request.
fn grant(state: &AppState, headers: &HeaderMap) -> Result<Grant, Outcome> {
    let value = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    state
        .auth
        .authorize(value, crate::auth::now_ms())
        .map_err(|e| {
            Outcome::new(
                e.status(),
                if e.status() == 403 {
                    "forbidden"
                } else {
                    "login"
                },
                e.to_string(),
            )
        })
}

fn require(grant: &Grant, resource_type: &str, access: Access) -> Result<(), Outcome> {
    grant
        .require(resource_type, access)
        .map_err(|e| Outcome::forbidden(e.to_string()))
}

/// Run blocking record work off the async threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, Outcome> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| Outcome::internal("the request's worker stopped; nothing was written"))
}

fn parse_body(body: &Bytes) -> Result<Value, Outcome> {
    satchel_core::fhir::json::from_slice(body).map_err(|_| {
        Outcome::invalid(
            "the body is not FHIR JSON (one JSON object, no key twice); nothing was written",
        )
    })
}

fn params(query: Option<String>) -> Vec<(String, String)> {
    query
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect()
        })
        .unwrap_or_default()
}

fn check_type(resource_type: &str) -> Result<(), Outcome> {
    if satchel_core::fhir::is_known_resource_type(resource_type) {
        Ok(())
    } else {
        Err(Outcome::not_found(format!(
            "{} is not a FHIR R4 resource type",
            resource_type.chars().take(64).collect::<String>()
        )))
    }
}

async fn metadata(State(s): State<AppState>) -> Response {
    let token = format!("{}/auth/token", s.base);
    fhir_json(
        200,
        &capability_statement(&s.base, &token, env!("CARGO_PKG_VERSION")),
    )
}

async fn health() -> Response {
    (StatusCode::OK, "ok").into_response()
}

async fn status(State(s): State<AppState>, headers: HeaderMap) -> Answer {
    grant(&s, &headers)?;
    let body = serde_json::to_value(s.service.uploads.status())
        .map_err(|_| Outcome::internal("status could not be written"))?;
    Ok(fhir_json(200, &body))
}

async fn write_entries(
    s: &AppState,
    headers: &HeaderMap,
    kind: BundleKind,
    entries: Vec<write::WriteEntry>,
) -> Answer {
    let grant = grant(s, headers)?;
    for e in &entries {
        require(&grant, e.resource_type(), Access::Write)?;
    }
    let service = s.service.clone();
    let source = grant.client_id.clone();
    let results = blocking(move || service.write(kind, &entries, &source)).await?;
    Ok(fhir_json(200, &write::response_bundle(kind, &results)))
}

async fn post_root(State(s): State<AppState>, headers: HeaderMap, body: Bytes) -> Answer {
    let (kind, entries) = write::parse_bundle(parse_body(&body)?)?;
    write_entries(&s, &headers, kind, entries).await
}

async fn post_type(
    State(s): State<AppState>,
    Path(rt): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Answer {
    check_type(&rt)?;
    let entry = write::single(parse_body(&body)?, &rt, None)?;
    single_answer(&s, &headers, entry).await
}

async fn put_type_id(
    State(s): State<AppState>,
    Path((rt, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Answer {
    check_type(&rt)?;
    let entry = write::single(parse_body(&body)?, &rt, Some(&id))?;
    single_answer(&s, &headers, entry).await
}

/// A single create/update answers like a FHIR server: 201 or 200 with
/// `Location` and the resource as stored, or the entry's outcome.
async fn single_answer(s: &AppState, headers: &HeaderMap, entry: write::WriteEntry) -> Answer {
    let grant = grant(s, headers)?;
    require(&grant, entry.resource_type(), Access::Write)?;
    let service = s.service.clone();
    let source = grant.client_id.clone();
    let entries = vec![entry];
    let (mut results, entries) =
        blocking(move || (service.write(BundleKind::Batch, &entries, &source), entries)).await?;
    match results.pop() {
        Some(write::EntryResult::Written { created, location }) => {
            let mut body = entries.into_iter().next().map(|e| e.resource).unwrap_or(Value::Null);
            // The id this gateway gave it.
            let id = location.split('/').nth(1).unwrap_or_default().to_owned();
            body["id"] = Value::String(id);
            let mut resp = fhir_json(if created { 201 } else { 200 }, &body);
            if let Ok(v) = HeaderValue::from_str(&format!("{}/{location}", s.base)) {
                resp.headers_mut().insert(header::LOCATION, v);
            }
            Ok(resp)
        }
        Some(write::EntryResult::Failed(o)) => Err(o),
        Some(write::EntryResult::NotKept) => Err(Outcome::unprocessable(
            "not-supported",
            "no section of a patient record keeps this resource type on its own; send it in a transaction with the resources that reference it",
        )),
        Some(write::EntryResult::Matched { .. }) | None => Err(Outcome::unprocessable(
            "not-supported",
            "a Patient is matched, never written: the patient's own demographics stay theirs",
        )),
    }
}

async fn search_type(
    State(s): State<AppState>,
    Path(rt): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Answer {
    check_type(&rt)?;
    let grant = grant(&s, &headers)?;
    require(&grant, &rt, Access::Read)?;
    let params = params(query);
    let service = s.service.clone();
    if rt == "Patient" {
        let key = match params.as_slice() {
            [(k, v)] if k == "identifier" => v
                .split_once('|')
                .filter(|(a, b)| !a.is_empty() && !b.is_empty())
                .map(|(a, b)| (a.to_owned(), b.to_owned())),
            _ => None,
        }
        .ok_or_else(|| Outcome::invalid("a Patient search takes identifier=system|value (only)"))?;
        let found = blocking(move || service.find_patients(&key)).await??;
        let url = format!("{}/Patient?identifier={}", s.base, url_escape(&params[0].1));
        return Ok(fhir_json(
            200,
            &read::searchset(&url, found.len(), found, 0, read::MAX_COUNT),
        ));
    }
    let search = read::parse_search(&rt, &params)?;
    let (offset, count) = (search.offset, search.count);
    let self_url = {
        let kept: Vec<String> = params
            .iter()
            .filter(|(k, _)| k != "_offset")
            .map(|(k, v)| format!("{}={}", url_escape(k), url_escape(v)))
            .collect();
        format!("{}/{rt}?{}", s.base, kept.join("&"))
    };
    let (total, page) = blocking(move || service.search(&search)).await??;
    Ok(fhir_json(
        200,
        &read::searchset(&self_url, total, page, offset, count),
    ))
}

fn url_escape(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

async fn read_one(
    State(s): State<AppState>,
    Path((rt, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Answer {
    check_type(&rt)?;
    let grant = grant(&s, &headers)?;
    require(&grant, &rt, Access::Read)?;
    let service = s.service.clone();
    let found = blocking(move || service.read(&rt, &id)).await??;
    Ok(fhir_json(200, &found))
}

async fn summary(State(s): State<AppState>, Path(id): Path<String>, headers: HeaderMap) -> Answer {
    let grant = grant(&s, &headers)?;
    for t in [
        "Patient",
        "AllergyIntolerance",
        "MedicationStatement",
        "Condition",
    ] {
        require(&grant, t, Access::Read)?;
    }
    let rid = read::parse_patient(&id)
        .ok_or_else(|| Outcome::not_found("no Patient with that id is readable here"))?;
    let service = s.service.clone();
    let doc = blocking(move || service.summary(rid)).await??;
    Ok(fhir_json(200, &doc))
}

/// The gateway's routes (the auth routes merged in by the caller).
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/metadata", get(metadata))
        .route("/health", get(health))
        .route("/$status", get(status))
        .route("/", axum::routing::post(post_root))
        .route("/Patient/{id}/$summary", get(summary))
        .route("/{rt}", get(search_type).post(post_type))
        .route("/{rt}/{id}", get(read_one).put(put_type_id))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .with_state(state)
}
