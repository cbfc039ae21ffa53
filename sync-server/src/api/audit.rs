//! The audit trail: `GET /v1/records/{rid}/audit?after=N&limit=M` lists who
//! pulled or pushed how many envelopes of which section, when. Readable by
//! owner devices and live managers only. Events carry ids, section names
//! and counts, never content.

use axum::extract::State;
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use super::auth::Auth;
use super::error::{ApiError, ApiResult};
use super::extract::{record_id, P, Q};
use super::records::require_member;
use super::AppState;
use crate::storage::now_ms;

/// Default and largest page.
const DEFAULT_LIMIT: u32 = 500;
const MAX_LIMIT: u32 = 1000;

#[derive(Deserialize)]
pub(super) struct AuditQuery {
    #[serde(default)]
    after: i64,
    limit: Option<u32>,
}

/// `GET /v1/records/{rid}/audit?after=N&limit=M`
pub(super) async fn audit(
    State(state): State<AppState>,
    Auth(caller): Auth,
    P(rid): P<String>,
    Q(q): Q<AuditQuery>,
) -> ApiResult<Json<serde_json::Value>> {
    let record = record_id(&rid)?;
    if q.after < 0 {
        return Err(ApiError::bad("after must not be negative"));
    }
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
    let mut events = state.storage.audit(record, q.after, limit + 1).await?;
    let more = events.len() > limit as usize;
    events.truncate(limit as usize);
    let next = events.last().map_or(q.after, |e| e.seq);
    let events: Vec<serde_json::Value> = events
        .into_iter()
        .map(|e| {
            json!({
                "seq": e.seq,
                "at_ms": e.at_ms,
                "identity": e.identity,
                "action": e.action.as_str(),
                "section": e.section,
                "count": e.count,
            })
        })
        .collect();
    Ok(Json(
        json!({ "events": events, "next": next, "more": more }),
    ))
}
