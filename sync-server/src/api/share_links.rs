//! SMART Health Links hosted blind (HL7 "SMART Health Cards and Links" IG,
//! STU1; `docs/protocol.md` "Share links").
//!
//! Owner side (bearer token, an owner device or a live manager of the
//! record): create a link under its handle, replace a live link's files,
//! revoke, list with every request for the files.
//!
//! Public side (no token: the link is the capability; CORS from any
//! origin): the manifest (`POST /shl/{shl_id}`), a `U` link's one file
//! (`GET /shl/{shl_id}?recipient=`), files named by `location`, and the
//! viewer's three static files.
//!
//! The relay checks the files' shape (JWE compact, `alg: dir`,
//! `enc: A256GCM`) and never anything inside. Passcodes are hashed with
//! Argon2id on the blocking pool and never kept, logged or echoed; the
//! recipient's name is stored for the patient and never logged.

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::rand::SecureRandom;
use satchel_protocol::ids::{IdentityId, RecordId, ShareLinkHandle};
use satchel_protocol::wire::share_links::{
    CreateShareLinkRequest, FileAtLocation, ManifestFile, ManifestRequest, ManifestResponse,
    Passcode, RecipientQuery, ReplaceShareLinkFilesRequest, ShareLinkChanged, ShareLinkCreated,
    ShareLinkFile, ShareLinkId, ShareLinkOpen, ShareLinkOpenKind, ShareLinkStatus,
    ShareLinksResponse, ShlFilePath, DEFAULT_PASSCODE_ATTEMPTS, JOSE_CONTENT_TYPE,
    MAX_PASSCODE_ATTEMPTS, MAX_PASSCODE_CHARS, MAX_RECIPIENT_CHARS, MAX_SHARE_LINK_FILES,
    MAX_SHARE_LINK_FILE_BYTES, SHARE_LINK_CONTENT_TYPES,
};
use satchel_protocol::wire::Endpoint;

use super::auth::Auth;
use super::error::{ApiError, ApiResult};
use super::extract::{parse_json, read_body, record_id, P, Q};
use super::records::require_member;
use super::AppState;
use crate::storage::{now_ms, NewShareLink, ShareFile, ShareLinkRow, ShareOpen, StorageError};

/// How the relay names itself in `location` URLs.
#[derive(Debug, Clone)]
pub enum PublicBase {
    /// `--public-url` (no trailing `/`).
    Fixed(String),
    /// From each request's `Host` header; `https` when the relay serves
    /// TLS itself.
    FromHost {
        /// The relay serves TLS.
        tls: bool,
    },
}

/// The one answer for a link that is unknown, malformed, revoked, expired,
/// used up or out of passcode attempts: the same for all, so a holder
/// learns nothing about which.
const GONE: ApiError = ApiError::NotFound("no such link");

/// Argon2id parameters for passcodes (OWASP's minimum: 19 MiB, 2 passes).
fn argon2() -> ApiResult<argon2::Argon2<'static>> {
    let params = argon2::Params::new(19 * 1024, 2, 1, None).map_err(|_| ApiError::Unavailable)?;
    Ok(argon2::Argon2::new(
        argon2::Algorithm::Argon2id,
        argon2::Version::V0x13,
        params,
    ))
}

fn random32() -> ApiResult<[u8; 32]> {
    let mut out = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut out)
        .map_err(|_| ApiError::Unavailable)?;
    Ok(out)
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// Hash a passcode (Argon2id, random 16-byte salt, PHC string) on the
/// blocking pool.
async fn hash_passcode(passcode: Passcode) -> ApiResult<String> {
    let salt: [u8; 16] = {
        let full = random32()?;
        let mut s = [0u8; 16];
        s.copy_from_slice(&full[..16]);
        s
    };
    tokio::task::spawn_blocking(move || {
        use argon2::PasswordHasher;
        argon2()?
            .hash_password_with_salt(passcode.0.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|_| ApiError::Unavailable)
    })
    .await
    .map_err(|_| ApiError::Unavailable)?
}

/// Whether `passcode` matches the stored PHC string (blocking pool).
async fn passcode_matches(passcode: Passcode, phc: String) -> ApiResult<bool> {
    tokio::task::spawn_blocking(move || {
        use argon2::PasswordVerifier;
        Ok(argon2()?
            .verify_password(passcode.0.as_bytes(), phc.as_str())
            .is_ok())
    })
    .await
    .map_err(|_| ApiError::Unavailable)?
}

/// The caller must be an owner device or a live manager of `record` (the
/// rule of invite links, [`crate::storage::Rights::may_administer`]).
async fn require_admin(state: &AppState, record: RecordId, caller: IdentityId) -> ApiResult<()> {
    let mine = require_member(state, record, caller).await?;
    if !mine.may_administer(now_ms()) {
        return Err(ApiError::Forbidden(
            "only owner devices and managers can manage share links",
        ));
    }
    Ok(())
}

fn handle_of(text: &str) -> ApiResult<ShareLinkHandle> {
    text.parse()
        .map_err(|_| ApiError::bad("handle must be 64 lower-case hex characters"))
}

/// JWE compact serialization with `alg: dir`, `enc: A256GCM`: five
/// base64url segments, the encrypted key empty, the others not.
fn jwe_shape_ok(jwe: &str) -> bool {
    let parts: Vec<&str> = jwe.split('.').collect();
    let [header, key, iv, ciphertext, tag] = parts.as_slice() else {
        return false;
    };
    let b64url = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if !key.is_empty()
        || [header, iv, ciphertext, tag]
            .iter()
            .any(|s| s.is_empty() || !b64url(s))
    {
        return false;
    }
    let Ok(bytes) = URL_SAFE_NO_PAD.decode(header) else {
        return false;
    };
    let Ok(serde_json::Value::Object(h)) = serde_json::from_slice::<serde_json::Value>(&bytes)
    else {
        return false;
    };
    h.get("alg").and_then(|v| v.as_str()) == Some("dir")
        && h.get("enc").and_then(|v| v.as_str()) == Some("A256GCM")
}

/// The files of a create or replace request, checked.
fn check_files(files: Vec<ShareLinkFile>) -> ApiResult<Vec<ShareFile>> {
    if files.is_empty() {
        return Err(ApiError::rejected(0, "a link needs at least one file"));
    }
    if files.len() > MAX_SHARE_LINK_FILES {
        return Err(ApiError::too_large(
            MAX_SHARE_LINK_FILES,
            format!("a link carries at most {MAX_SHARE_LINK_FILES} files"),
        ));
    }
    for f in &files {
        if f.jwe.len() > MAX_SHARE_LINK_FILE_BYTES {
            return Err(ApiError::too_large(
                MAX_SHARE_LINK_FILE_BYTES,
                "a file is larger than the relay keeps",
            ));
        }
    }
    for (i, f) in files.iter().enumerate() {
        if !SHARE_LINK_CONTENT_TYPES.contains(&f.content_type.as_str()) {
            return Err(ApiError::rejected(
                i,
                "content_type must be application/fhir+json, application/smart-health-card or \
                 application/smart-api-access",
            ));
        }
        if !jwe_shape_ok(&f.jwe) {
            return Err(ApiError::rejected(
                i,
                "not a JWE compact serialization with alg dir and enc A256GCM",
            ));
        }
    }
    Ok(files
        .into_iter()
        .map(|f| ShareFile {
            content_type: f.content_type,
            jwe: f.jwe,
        })
        .collect())
}

/// Bodies of create and replace: files up to the relay's body limit.
async fn read_files_body<T: serde::de::DeserializeOwned>(
    state: &AppState,
    body: Body,
) -> ApiResult<T> {
    let bytes = read_body(body, state.limits.max_body_bytes()).await?;
    parse_json(&bytes)
}

/// `PUT /v1/records/{rid}/share-links/{handle}`
pub(super) async fn create(
    State(state): State<AppState>,
    Auth(caller): Auth,
    P((rid, handle)): P<(String, String)>,
    body: Body,
) -> ApiResult<(StatusCode, Json<ShareLinkCreated>)> {
    let record = record_id(&rid)?;
    let handle = handle_of(&handle)?;
    let req: CreateShareLinkRequest = read_files_body(&state, body).await?;
    require_admin(&state, record, caller).await?;
    let now = now_ms();
    let bad = |m: &str| ApiError::rejected(0, m);
    if req.expires_at_ms.is_some_and(|e| e <= now) {
        return Err(bad("expires_at_ms must be in the future"));
    }
    if req.max_opens == Some(0) {
        return Err(bad("max_opens must be at least 1"));
    }
    if req.direct && (req.passcode.is_some() || req.files.len() != 1) {
        return Err(bad(
            "a direct (U) link has exactly one file and no passcode",
        ));
    }
    if req.attempts.is_some() && req.passcode.is_none() {
        return Err(bad("attempts are only for a link with a passcode"));
    }
    let attempts = match &req.passcode {
        Some(p) => {
            let chars = p.0.chars().count();
            if chars == 0 || chars > MAX_PASSCODE_CHARS {
                return Err(bad("the passcode must be 1 to 128 characters"));
            }
            let n = req.attempts.unwrap_or(DEFAULT_PASSCODE_ATTEMPTS);
            if n == 0 || n > MAX_PASSCODE_ATTEMPTS {
                return Err(bad("attempts must be between 1 and 100"));
            }
            Some(n)
        }
        None => None,
    };
    let files = check_files(req.files)?;
    let passcode_hash = match req.passcode {
        Some(p) => Some(hash_passcode(p).await?),
        None => None,
    };
    state
        .storage
        .create_share_link(
            NewShareLink {
                handle,
                record,
                created_by: caller,
                expires_at_ms: req.expires_at_ms,
                passcode_hash,
                attempts,
                max_opens: req.max_opens,
                direct: req.direct,
                files,
            },
            now,
        )
        .await
        .map_err(|e| match e {
            StorageError::Conflict(_) => ApiError::Conflict("handle in use".into()),
            StorageError::NotFound => ApiError::NotFound("no such record"),
            other => other.into(),
        })?;
    tracing::info!(
        identity = %caller.short(),
        link = %&handle.to_hex()[..8],
        "share link created"
    );
    Ok((
        StatusCode::CREATED,
        Json(ShareLinkCreated {
            handle,
            created_at_ms: now,
        }),
    ))
}

const NO_LIVE_LINK: &str = "no such link (or revoked, expired, used up)";

/// `PUT /v1/records/{rid}/share-links/{handle}/files`
pub(super) async fn replace_files(
    State(state): State<AppState>,
    Auth(caller): Auth,
    P((rid, handle)): P<(String, String)>,
    body: Body,
) -> ApiResult<Json<ShareLinkChanged>> {
    let record = record_id(&rid)?;
    let handle = handle_of(&handle)?;
    let req: ReplaceShareLinkFilesRequest = read_files_body(&state, body).await?;
    require_admin(&state, record, caller).await?;
    let files = check_files(req.files)?;
    let now = now_ms();
    state
        .storage
        .replace_share_link_files(record, handle, files, now)
        .await
        .map_err(|e| match e {
            StorageError::NotFound => ApiError::NotFound(NO_LIVE_LINK),
            other => other.into(),
        })?;
    Ok(Json(ShareLinkChanged { at_ms: now }))
}

/// `POST /v1/records/{rid}/share-links/{handle}/revoke`
pub(super) async fn revoke(
    State(state): State<AppState>,
    Auth(caller): Auth,
    P((rid, handle)): P<(String, String)>,
) -> ApiResult<Json<ShareLinkChanged>> {
    let record = record_id(&rid)?;
    let handle = handle_of(&handle)?;
    require_admin(&state, record, caller).await?;
    let at_ms = state
        .storage
        .revoke_share_link(record, handle, now_ms())
        .await
        .map_err(|e| match e {
            StorageError::NotFound => ApiError::NotFound("no such link"),
            other => other.into(),
        })?;
    tracing::info!(
        identity = %caller.short(),
        link = %&handle.to_hex()[..8],
        "share link revoked"
    );
    Ok(Json(ShareLinkChanged { at_ms }))
}

/// `GET /v1/records/{rid}/share-links`
pub(super) async fn list(
    State(state): State<AppState>,
    Auth(caller): Auth,
    P(rid): P<String>,
) -> ApiResult<Json<ShareLinksResponse>> {
    let record = record_id(&rid)?;
    require_admin(&state, record, caller).await?;
    let links = state.storage.list_share_links(record).await?;
    Ok(Json(ShareLinksResponse {
        links: links
            .into_iter()
            .map(|(l, opens)| status_of(l, opens))
            .collect(),
    }))
}

fn status_of(l: ShareLinkRow, opens: Vec<ShareOpen>) -> ShareLinkStatus {
    ShareLinkStatus {
        handle: l.handle,
        created_at_ms: l.created_at_ms,
        updated_at_ms: l.updated_at_ms,
        expires_at_ms: l.expires_at_ms,
        revoked_at_ms: l.revoked_at_ms,
        passcode: l.passcode_hash.is_some(),
        remaining_attempts: l.attempts_left,
        remaining_opens: l.opens_left,
        direct: l.direct,
        opens: opens
            .into_iter()
            .map(|o| ShareLinkOpen {
                at_ms: o.at_ms,
                recipient: o.recipient,
                kind: o.kind,
            })
            .collect(),
    }
}

// ----- public side -----

/// Parse `{shl_id}` and take a token from the client's and the link's
/// buckets. A malformed id answers as an unknown one.
fn public_link(state: &AppState, peer: SocketAddr, text: &str) -> ApiResult<ShareLinkId> {
    state.limiters.check_share_ip(peer.ip(), state)?;
    let id = ShareLinkId::parse(text).ok_or(GONE)?;
    state.limiters.check_share_link(&id.handle(), state)?;
    Ok(id)
}

fn check_recipient(recipient: &str) -> ApiResult<()> {
    let chars = recipient.chars().count();
    if recipient.trim().is_empty() || chars > MAX_RECIPIENT_CHARS {
        return Err(ApiError::bad(format!(
            "recipient must be 1 to {MAX_RECIPIENT_CHARS} characters"
        )));
    }
    Ok(())
}

fn jose(jwe: String) -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static(JOSE_CONTENT_TYPE),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        jwe,
    )
        .into_response()
}

/// The base of absolute URLs this relay hands out: `--public-url`, else
/// `http(s)://` and the request's `Host` (checked to be an authority).
fn public_base(state: &AppState, headers: &HeaderMap) -> ApiResult<String> {
    match state.public_base.get() {
        Some(PublicBase::Fixed(base)) => Ok(base.clone()),
        other => {
            let tls = matches!(other, Some(PublicBase::FromHost { tls: true }));
            let host = headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .and_then(|h| h.parse::<axum::http::uri::Authority>().ok())
                .ok_or(ApiError::bad("a Host header is needed"))?;
            Ok(format!(
                "{}://{}",
                if tls { "https" } else { "http" },
                host.as_str()
            ))
        }
    }
}

/// `POST /shl/{shl_id}`
pub(super) async fn manifest(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    P(shl_id): P<String>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let id = public_link(&state, peer, &shl_id)?;
    let bytes = read_body(body, state.limits.small_body_bytes()).await?;
    let req: ManifestRequest = parse_json(&bytes)?;
    check_recipient(&req.recipient)?;
    if req
        .passcode
        .as_ref()
        .is_some_and(|p| p.0.chars().count() > MAX_PASSCODE_CHARS)
    {
        return Err(ApiError::bad("passcode too long"));
    }
    let base = public_base(&state, &headers)?;
    let handle = id.handle();
    let now = now_ms();
    let link = state
        .storage
        .share_link_by_handle(handle)
        .await?
        .filter(|l| l.live(now))
        .ok_or(GONE)?;
    if let Some(phc) = link.passcode_hash.clone() {
        let Some(passcode) = req.passcode.clone() else {
            // No guess was made: nothing is spent.
            return Err(ApiError::WrongPasscode {
                remaining_attempts: link.attempts_left.unwrap_or(0),
            });
        };
        // Reserve the attempt before the slow check, so concurrent guesses
        // cannot overrun the budget; give it back if the passcode is right.
        let left = state
            .storage
            .reserve_share_link_attempt(handle, now)
            .await?
            .ok_or(GONE)?;
        if passcode_matches(passcode, phc).await? {
            state.storage.release_share_link_attempt(handle).await?;
        } else {
            state
                .storage
                .record_share_link_open(
                    handle,
                    ShareOpen {
                        at_ms: now_ms(),
                        recipient: req.recipient,
                        kind: ShareLinkOpenKind::WrongPasscode,
                    },
                )
                .await?;
            return Err(ApiError::WrongPasscode {
                remaining_attempts: left,
            });
        }
    }
    let files = state
        .storage
        .open_share_link(
            handle,
            ShareOpen {
                at_ms: now_ms(),
                recipient: req.recipient,
                kind: ShareLinkOpenKind::Manifest,
            },
        )
        .await?
        .ok_or(GONE)?;
    let embed_max = req
        .embedded_length_max
        .unwrap_or(state.limits.share_embed_default_max);
    let mut tokens = Vec::new();
    let mut out = Vec::with_capacity(files.len());
    for (i, f) in files.into_iter().enumerate() {
        let len = u64::try_from(f.jwe.len()).unwrap_or(u64::MAX);
        if len <= embed_max {
            out.push(ManifestFile {
                content_type: f.content_type,
                embedded: Some(f.jwe),
                location: None,
            });
        } else {
            let token = URL_SAFE_NO_PAD.encode(random32()?);
            tokens.push((
                sha256(token.as_bytes()),
                u32::try_from(i).unwrap_or(u32::MAX),
            ));
            let path = FileAtLocation::path(&ShlFilePath {
                id: &id,
                token: &token,
            });
            out.push(ManifestFile {
                content_type: f.content_type,
                embedded: None,
                location: Some(format!("{base}{path}")),
            });
        }
    }
    if !tokens.is_empty() {
        let expires = now_ms().saturating_add(state.limits.share_location_lifetime_ms);
        state
            .storage
            .add_share_link_locations(handle, tokens, expires)
            .await?;
    }
    // The answer carries the files (or where to fetch them): never cached.
    Ok((
        [(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))],
        Json(ManifestResponse { files: out }),
    )
        .into_response())
}

/// `GET /shl/{shl_id}?recipient=NAME`
pub(super) async fn direct_file(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    P(shl_id): P<String>,
    Q(query): Q<RecipientQuery>,
) -> ApiResult<Response> {
    let id = public_link(&state, peer, &shl_id)?;
    check_recipient(&query.recipient)?;
    let handle = id.handle();
    let now = now_ms();
    state
        .storage
        .share_link_by_handle(handle)
        .await?
        .filter(|l| l.direct && l.live(now))
        .ok_or(GONE)?;
    let files = state
        .storage
        .open_share_link(
            handle,
            ShareOpen {
                at_ms: now,
                recipient: query.recipient,
                kind: ShareLinkOpenKind::Direct,
            },
        )
        .await?
        .ok_or(GONE)?;
    let file = files.into_iter().next().ok_or(GONE)?;
    Ok(jose(file.jwe))
}

/// `GET /shl/{shl_id}/files/{token}`
pub(super) async fn file_at_location(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    P((shl_id, token)): P<(String, String)>,
) -> ApiResult<Response> {
    let id = public_link(&state, peer, &shl_id)?;
    if token.len() != 43
        || !token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(GONE);
    }
    let file = state
        .storage
        .share_link_location(id.handle(), sha256(token.as_bytes()), now_ms())
        .await?
        .ok_or(GONE)?;
    Ok(jose(file.jwe))
}

// ----- the viewer -----

const VIEWER_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src *; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'none'";

fn static_file(content_type: &'static str, text: &'static str, csp: bool) -> Response {
    let mut resp = (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            (
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            ),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
        ],
        text,
    )
        .into_response();
    if csp {
        resp.headers_mut().insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(VIEWER_CSP),
        );
    }
    resp
}

/// `GET /view`
pub(super) async fn viewer_page() -> Response {
    static_file(
        "text/html; charset=utf-8",
        include_str!("../viewer/index.html"),
        true,
    )
}

/// `GET /view/viewer.js`
pub(super) async fn viewer_script() -> Response {
    static_file(
        "text/javascript; charset=utf-8",
        include_str!("../viewer/viewer.js"),
        true,
    )
}

/// `GET /view/viewer.css`
pub(super) async fn viewer_style() -> Response {
    static_file(
        "text/css; charset=utf-8",
        include_str!("../viewer/viewer.css"),
        true,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        URL_SAFE_NO_PAD.encode(s)
    }

    #[test]
    fn only_jwe_compact_with_dir_and_a256gcm_is_accepted() {
        let h = b64(r#"{"alg":"dir","enc":"A256GCM","cty":"application/fhir+json"}"#);
        assert!(jwe_shape_ok(&format!("{h}..aaaa.bbbb.cccc")));
        assert!(!jwe_shape_ok(&format!("{h}.key.aaaa.bbbb.cccc")));
        assert!(!jwe_shape_ok(&format!("{h}..aaaa.bbbb")));
        assert!(!jwe_shape_ok(&format!("{h}..aa+a.bbbb.cccc")));
        assert!(!jwe_shape_ok(&format!("{h}...bbbb.cccc")));
        let other = b64(r#"{"alg":"RSA-OAEP","enc":"A256GCM"}"#);
        assert!(!jwe_shape_ok(&format!("{other}..aaaa.bbbb.cccc")));
        assert!(!jwe_shape_ok(&format!("{}..aaaa.bbbb.cccc", b64("[1]"))));
    }

    #[tokio::test]
    async fn passcodes_are_argon2id_phc_strings() {
        let phc = hash_passcode(Passcode("1234".into())).await.unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(!phc.contains("1234"));
        assert!(passcode_matches(Passcode("1234".into()), phc.clone())
            .await
            .unwrap());
        assert!(!passcode_matches(Passcode("1235".into()), phc)
            .await
            .unwrap());
    }
}
