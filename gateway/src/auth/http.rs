//! The axum routes of SMART Backend Services: `GET
//! /.well-known/smart-configuration` and `POST /auth/token`. The only place
//! in the auth module that reads the clock.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::rejection::FormRejection;
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use serde_json::json;

use super::error::AuthError;
use super::issuer::{TokenIssuer, TokenRequest};

/// The path of the token endpoint.
pub const TOKEN_PATH: &str = "/auth/token";
/// The path of the SMART configuration document.
pub const SMART_CONFIGURATION_PATH: &str = "/.well-known/smart-configuration";

/// The routes, with the issuer as their state; merge into the gateway's
/// router.
pub fn routes(issuer: Arc<TokenIssuer>) -> Router {
    Router::new()
        .route(SMART_CONFIGURATION_PATH, get(smart_configuration))
        .route(TOKEN_PATH, post(token))
        .with_state(issuer)
}

/// Now, in milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

async fn smart_configuration(State(issuer): State<Arc<TokenIssuer>>) -> Response {
    Json(json!({
        "token_endpoint": issuer.token_url(),
        "token_endpoint_auth_methods_supported": ["private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": ["RS384", "ES384"],
        "grant_types_supported": ["client_credentials"],
        "scopes_supported": ["system/*.read", "system/*.write", "system/*.rs", "system/*.cu"],
        "capabilities": ["client-confidential-asymmetric"],
    }))
    .into_response()
}

async fn token(
    State(issuer): State<Arc<TokenIssuer>>,
    form: Result<Form<TokenRequest>, FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else {
        return no_store(oauth_error_body(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "the token request must be an application/x-www-form-urlencoded POST body",
        ));
    };
    match issuer.token(&form, now_ms()) {
        Ok(answer) => {
            tracing::info!(scope = %answer.scope, "access token issued");
            no_store((StatusCode::OK, Json(answer)).into_response())
        }
        Err(err) => {
            tracing::warn!(error = %err, "token request refused");
            no_store(error_response(&err))
        }
    }
}

/// An [`AuthError`] as an OAuth JSON answer: its status, `{"error",
/// "error_description"}`, and `WWW-Authenticate` for 401/403 on bearer
/// tokens.
pub fn error_response(err: &AuthError) -> Response {
    let status = StatusCode::from_u16(err.status()).unwrap_or(StatusCode::BAD_REQUEST);
    let mut response = oauth_error_body(status, err.oauth_error(), &err.to_string());
    if let Some(value) = err
        .www_authenticate()
        .and_then(|v| HeaderValue::from_str(&v).ok())
    {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, value);
    }
    response
}

fn oauth_error_body(status: StatusCode, error: &str, description: &str) -> Response {
    (
        status,
        Json(json!({ "error": error, "error_description": description })),
    )
        .into_response()
}

/// Token answers must not be cached (RFC 6749 section 5.1).
fn no_store(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}
