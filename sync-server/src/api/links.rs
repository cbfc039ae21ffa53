//! Invite and device-link mailboxes. The link id is derived from a secret
//! the relay never sees; the payloads are MACed / encrypted by the clients.
//! The creator (an owner device or a live manager) opens the mailbox, one joiner drops its
//! payload once, the creator replies once, both poll with `GET`.

use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use satchel_protocol::wire::{CreateLinkRequest, LinkAck, LinkCreated, LinkPayload, LinkState};

use super::auth::Auth;
use super::error::{ApiError, ApiResult};
use super::extract::{link_id, read_json, P};
use super::records::require_member;
use super::AppState;
use crate::storage::now_ms;

/// `PUT /v1/links/{link_id}`
pub(super) async fn create(
    State(state): State<AppState>,
    Auth(caller): Auth,
    P(id): P<String>,
    body: Body,
) -> ApiResult<(StatusCode, Json<LinkCreated>)> {
    let link = link_id(&id)?;
    let req: CreateLinkRequest = read_json(body, state.limits.small_body_bytes()).await?;
    let ttl = req.expires_in.unwrap_or(state.limits.link_default_ttl_secs);
    if ttl == 0 || ttl > state.limits.link_max_ttl_secs {
        return Err(ApiError::bad(format!(
            "expires_in must be between 1 and {} seconds",
            state.limits.link_max_ttl_secs
        )));
    }
    let mine = require_member(&state, req.record_id, caller).await?;
    let now = now_ms();
    if !mine.may_administer(now) {
        return Err(ApiError::Forbidden(
            "only owner devices and managers can open invite links",
        ));
    }
    let expires_at_ms = now.saturating_add(i64::try_from(ttl * 1000).unwrap_or(i64::MAX));
    state
        .storage
        .create_link(&id, req.record_id, caller, expires_at_ms, now)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(LinkCreated {
            link_id: link,
            expires_at_ms,
        }),
    ))
}

async fn payload(state: &AppState, body: Body) -> ApiResult<Vec<u8>> {
    let req: LinkPayload = read_json(body, state.limits.small_body_bytes()).await?;
    let bytes = req.payload;
    if bytes.len() > state.limits.max_payload_bytes {
        return Err(ApiError::too_large(
            state.limits.max_payload_bytes,
            "payload exceeds the size limit",
        ));
    }
    Ok(bytes)
}

/// `POST /v1/links/{link_id}/join`
pub(super) async fn join(
    State(state): State<AppState>,
    Auth(caller): Auth,
    P(id): P<String>,
    body: Body,
) -> ApiResult<Json<LinkAck>> {
    let link = link_id(&id)?;
    let bytes = payload(&state, body).await?;
    state
        .storage
        .join_link(&id, caller, bytes, now_ms())
        .await
        .map_err(link_gone)?;
    Ok(Json(LinkAck { link_id: link }))
}

/// `POST /v1/links/{link_id}/accept`
pub(super) async fn accept(
    State(state): State<AppState>,
    Auth(caller): Auth,
    P(id): P<String>,
    body: Body,
) -> ApiResult<Json<LinkAck>> {
    let link_id = link_id(&id)?;
    let now = now_ms();
    let link = state
        .storage
        .get_link(&id, now)
        .await?
        .ok_or(ApiError::NotFound(LINK_GONE))?;
    if link.creator != caller {
        return Err(ApiError::Forbidden("only the link's creator can accept"));
    }
    let bytes = payload(&state, body).await?;
    state
        .storage
        .accept_link(&id, bytes, now)
        .await
        .map_err(link_gone)?;
    Ok(Json(LinkAck { link_id }))
}

/// `GET /v1/links/{link_id}`
pub(super) async fn get(
    State(state): State<AppState>,
    Auth(caller): Auth,
    P(id): P<String>,
) -> ApiResult<Json<LinkState>> {
    link_id(&id)?;
    let link = state
        .storage
        .get_link(&id, now_ms())
        .await?
        .ok_or(ApiError::NotFound(LINK_GONE))?;
    if link.creator != caller && link.joiner != Some(caller) {
        return Err(ApiError::Forbidden(
            "only the link's creator or joiner can read it",
        ));
    }
    Ok(Json(LinkState {
        record_id: link.record,
        join: link.join,
        accept: link.accept,
        expires_at_ms: link.expires_at_ms,
    }))
}

const LINK_GONE: &str = "no such link, or it expired";

/// A link that is missing or expired reads as 404 with a link-specific
/// message; other storage errors map as usual.
fn link_gone(e: crate::storage::StorageError) -> ApiError {
    match e {
        crate::storage::StorageError::NotFound => ApiError::NotFound(LINK_GONE),
        other => other.into(),
    }
}
