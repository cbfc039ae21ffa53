//! The audit trail: `GET /v1/records/{rid}/audit?after=N&limit=M` lists who
//! pulled or pushed how many envelopes of which section, when, and the
//! views members reported (`POST /v1/records/{rid}/audit/views`: reads
//! from their own copy, which the relay cannot see). Readable by owner
//! devices and live managers only. Events carry ids, section names and
//! counts, never content.

use axum::body::Body;
use axum::extract::State;
use axum::Json;
use satchel_protocol::wire::{
    self, AuditResponse, PageQuery, ReportViewsRequest, ReportViewsResponse,
};

use super::auth::Auth;
use super::error::{ApiError, ApiResult};
use super::extract::{cursor, read_json, record_id, wire_seq, P, Q};
use super::records::require_member;
use super::AppState;
use crate::storage::{now_ms, AuditAction, AuditEvent};

/// `POST /v1/records/{rid}/audit/views`: a live member reports entries it
/// showed from its own copy, one event per view of a section it may read
/// now (the others are counted as refused).
pub(super) async fn report_views(
    State(state): State<AppState>,
    Auth(caller): Auth,
    P(rid): P<String>,
    body: Body,
) -> ApiResult<Json<ReportViewsResponse>> {
    let record = record_id(&rid)?;
    let req: ReportViewsRequest = read_json(body, state.limits.small_body_bytes()).await?;
    if req.views.len() > ReportViewsRequest::MAX_VIEWS {
        return Err(ApiError::too_large(
            ReportViewsRequest::MAX_VIEWS,
            "more views than one request may carry",
        ));
    }
    let mine = require_member(&state, record, caller).await?;
    let now = now_ms();
    let mut events = Vec::with_capacity(req.views.len());
    let mut refused = 0u64;
    for (i, v) in req.views.into_iter().enumerate() {
        super::extract::section(&v.section)?;
        if v.count == 0 {
            return Err(ApiError::bad(format!("view {i}: count must be at least 1")));
        }
        if v.at_ms < 0 || v.at_ms > now.saturating_add(ReportViewsRequest::MAX_CLOCK_AHEAD_MS) {
            return Err(ApiError::bad(format!(
                "view {i}: at_ms is negative or more than five minutes ahead of the relay's clock (check the reporting machine's clock)"
            )));
        }
        if !mine.may_read(&v.section, now) {
            refused += 1;
            continue;
        }
        events.push(AuditEvent {
            seq: 0,
            record,
            at_ms: v.at_ms,
            identity: caller,
            action: AuditAction::View,
            section: v.section,
            count: i64::try_from(v.count)
                .map_err(|_| ApiError::bad(format!("view {i}: count is out of range")))?,
            relay: None,
        });
    }
    let stored = u64::try_from(events.len()).unwrap_or(u64::MAX);
    for event in events {
        state.storage.record_audit(event).await?;
    }
    Ok(Json(ReportViewsResponse { stored, refused }))
}

/// Default and largest page.
const DEFAULT_LIMIT: u32 = 500;
const MAX_LIMIT: u32 = 1000;

/// `GET /v1/records/{rid}/audit?after=N&limit=M`
pub(super) async fn audit(
    State(state): State<AppState>,
    Auth(caller): Auth,
    P(rid): P<String>,
    Q(q): Q<PageQuery>,
) -> ApiResult<Json<AuditResponse>> {
    let record = record_id(&rid)?;
    let after = cursor(q.after, "after")?;
    let limit = match q.limit {
        Some(0) => return Err(ApiError::bad("limit must be at least 1")),
        Some(n) => n.min(MAX_LIMIT),
        None => DEFAULT_LIMIT,
    };
    let mine = require_member(&state, record, caller).await?;
    if !mine.may_administer(now_ms()) {
        return Err(ApiError::Forbidden(
            "only owner devices and managers can read the audit trail",
        ));
    }
    let mut events = state.storage.audit(record, after, limit + 1).await?;
    let more = events.len() > limit as usize;
    events.truncate(limit as usize);
    let next = wire_seq(events.last().map_or(after, |e| e.seq))?;
    let events = events
        .into_iter()
        .map(|e| {
            Ok(wire::AuditEvent {
                seq: wire_seq(e.seq)?,
                at_ms: e.at_ms,
                identity: e.identity,
                action: e.action.into(),
                section: e.section,
                count: wire_seq(e.count)?,
                relay: e.relay,
            })
        })
        .collect::<ApiResult<Vec<wire::AuditEvent>>>()?;
    Ok(Json(AuditResponse { events, next, more }))
}
