//! Replication endpoints: this relay's identity card (what an access log
//! names to make it a replica) and, for a replica relay signed in with its
//! identity, the records that name it.

use axum::extract::State;
use axum::Json;
use satchel_protocol::wire::{RecordsPageQuery, RelayIdentityResponse, ReplicaRecordsResponse};

use super::auth::Auth;
use super::error::{ApiError, ApiResult};
use super::extract::Q;
use super::AppState;

/// Most records one `GET /v1/replica/records` returns.
const RECORDS_PAGE: u32 = 1000;

/// `GET /v1/relay`: this relay's card (404 when it runs without an
/// identity).
pub(super) async fn relay_identity(
    State(state): State<AppState>,
) -> ApiResult<Json<RelayIdentityResponse>> {
    let card = state.identity.get().ok_or(ApiError::NotFound(
        "this relay has no identity: its operator starts it with --identity FILE",
    ))?;
    Ok(Json(RelayIdentityResponse {
        fingerprint: card.fingerprint(),
        card: card.clone(),
    }))
}

/// `GET /v1/replica/records?after=RID&limit=M`: the records whose verified
/// access log names the caller a replica (their member rows are the log's
/// projection, replaced with every statement).
pub(super) async fn replica_records(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Q(query): Q<RecordsPageQuery>,
) -> ApiResult<Json<ReplicaRecordsResponse>> {
    let limit = query.limit.unwrap_or(RECORDS_PAGE).clamp(1, RECORDS_PAGE);
    // One more than asked, to tell whether more follow.
    let mut records = state
        .storage
        .replica_records(caller, query.after, limit + 1)
        .await?;
    let more = records.len() > limit as usize;
    records.truncate(limit as usize);
    Ok(Json(ReplicaRecordsResponse { records, more }))
}
