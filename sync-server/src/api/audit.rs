//! The audit trail: `GET /v1/records/{rid}/audit?after=N&limit=M` lists who
//! pulled or pushed how many envelopes of which section, when. Readable by
//! owner devices and live managers only. Events carry ids, section names
//! and counts, never content.

use axum::extract::State;
use axum::Json;
use satchel_protocol::wire::{self, AuditResponse, PageQuery};

use super::auth::Auth;
use super::error::{ApiError, ApiResult};
use super::extract::{cursor, record_id, wire_seq, P, Q};
use super::records::require_member;
use super::AppState;
use crate::storage::{now_ms, AuditAction};

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
                action: match e.action {
                    AuditAction::Pull => wire::AuditAction::Pull,
                    AuditAction::Push => wire::AuditAction::Push,
                },
                section: e.section,
                count: wire_seq(e.count)?,
                relay: e.relay,
            })
        })
        .collect::<ApiResult<Vec<wire::AuditEvent>>>()?;
    Ok(Json(AuditResponse { events, next, more }))
}
