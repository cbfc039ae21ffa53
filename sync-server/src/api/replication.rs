//! Replication endpoints: this relay's identity card (what an access log
//! names to make it a replica) and, for a replica relay signed in with its
//! identity, the records that name it, where each stands (heads), their
//! envelopes many logs at a time (one binary body), and the audit events
//! the replica recorded, forwarded here.

use axum::body::Body;
use axum::extract::{Extension, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use satchel_protocol::wire::replica_batch::{self, LogBatch};
use satchel_protocol::wire::{
    ForwardAuditRequest, ForwardAuditResponse, HeadsQuery, RecordHeads, RecordsPageQuery,
    RelayIdentityResponse, ReplicaHeadsResponse, ReplicaPullRequest, ReplicaRecordsResponse,
};

use super::auth::Auth;
use super::error::{ApiError, ApiResult};
use super::extract::{read_json, record_id, wire_seq, P, Q};
use super::records::require_member;
use super::{AppState, RequestInfo};
use crate::storage::{now_ms, AuditAction, AuditEvent};

/// The most envelope bytes one `POST /v1/replica/pull` answers with; the
/// answer stops after the log that crosses it.
const PULL_BUDGET_BYTES: usize = 2 * 1024 * 1024;

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

/// `GET /v1/replica/heads?after=RID&limit=M&unless=DIGEST`: per record
/// that names the caller a replica, its newest statement's and each log's
/// newest envelope seq; the records are left out when the page's digest is
/// `unless` (an idle replica's round costs a few hundred bytes a page).
pub(super) async fn replica_heads(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Q(query): Q<HeadsQuery>,
) -> ApiResult<Json<ReplicaHeadsResponse>> {
    let limit = query.limit.unwrap_or(RECORDS_PAGE).clamp(1, RECORDS_PAGE);
    let mut rows = state
        .storage
        .replica_heads(caller, query.after, limit + 1)
        .await?;
    let more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    let records = rows
        .into_iter()
        .map(|row| {
            Ok(RecordHeads {
                record: row.record,
                access: wire_seq(row.access)?,
                logs: row
                    .logs
                    .into_iter()
                    .map(|(log, seq)| Ok((log, wire_seq(seq)?)))
                    .collect::<ApiResult<_>>()?,
            })
        })
        .collect::<ApiResult<Vec<_>>>()?;
    let json = serde_json::to_vec(&records).map_err(|_| ApiError::Unavailable)?;
    let digest = hex::encode(ring::digest::digest(&ring::digest::SHA256, &json));
    let last = records.last().map(|h| h.record);
    let unchanged = query.unless.as_deref() == Some(digest.as_str());
    Ok(Json(ReplicaHeadsResponse {
        records: if unchanged { Vec::new() } else { records },
        more,
        last,
        digest,
        unchanged,
    }))
}

/// `POST /v1/replica/pull`: the logs named, each after its cursor, every
/// envelope (the snapshot alongside, never instead), as one binary body
/// ([`replica_batch`]). Every record named must name the caller a live
/// replica (else 403, nothing served). Each log read is audited as a pull
/// by the replica, as its single-log pulls are.
pub(super) async fn replica_pull(
    State(state): State<AppState>,
    Auth(caller): Auth,
    Extension(info): Extension<RequestInfo>,
    body: Body,
) -> ApiResult<Response> {
    let req: ReplicaPullRequest = read_json(body, state.limits.small_body_bytes()).await?;
    if req.logs.len() > ReplicaPullRequest::MAX_LOGS {
        return Err(ApiError::too_large(
            ReplicaPullRequest::MAX_LOGS,
            "more logs than one replica pull may name",
        ));
    }
    let now = now_ms();
    let mut checked = std::collections::BTreeSet::new();
    for want in &req.logs {
        super::extract::section(&want.log)?;
        if checked.insert(want.record) {
            let mine = require_member(&state, want.record, caller).await?;
            if !mine.is_replica() || !mine.live_at(now) {
                return Err(ApiError::Forbidden(
                    "a record named does not name this relay a replica",
                ));
            }
        }
    }
    let limit = state.limits.max_pull_limit;
    let mut out = replica_batch::Encoder::new();
    let mut audits = Vec::new();
    let mut served = 0usize;
    for want in &req.logs {
        if out.len() >= PULL_BUDGET_BYTES {
            break;
        }
        let after = super::extract::cursor(want.after, "after")?;
        let page = state
            .storage
            .pull_whole(want.record, &want.log, after, limit)
            .await?;
        let next = wire_seq(page.next_whole(after))?;
        let count = page.envelopes.len() + usize::from(page.snapshot.is_some());
        served += page.envelopes.len();
        let batch = LogBatch {
            record: want.record,
            log: want.log.clone(),
            envelopes: page
                .envelopes
                .into_iter()
                .map(|e| Ok((wire_seq(e.seq)?, e.bytes)))
                .collect::<ApiResult<_>>()?,
            snapshot: match page.snapshot {
                Some(s) => Some((wire_seq(s.upto_seq)?, s.bytes)),
                None => None,
            },
            next,
            more: page.more,
        };
        out.push(&batch)
            .map_err(|_| ApiError::bad("a log name is too long"))?;
        if count > 0 {
            audits.push(AuditEvent {
                seq: 0,
                record: want.record,
                at_ms: now,
                identity: caller,
                action: AuditAction::Pull,
                section: want.log.clone(),
                count: i64::try_from(count).unwrap_or(i64::MAX),
                relay: None,
            });
        }
    }
    info.set_count(served);
    // Issued together, so that the SQLite writer commits them as one group.
    let mut writes = tokio::task::JoinSet::new();
    for event in audits {
        let storage = state.storage.clone();
        writes.spawn(async move { storage.record_audit(event).await });
    }
    while let Some(done) = writes.join_next().await {
        done.map_err(|_| ApiError::Unavailable)??;
    }
    Ok((
        [(header::CONTENT_TYPE, replica_batch::CONTENT_TYPE)],
        out.finish(),
    )
        .into_response())
}

/// `POST /v1/replica/records/{rid}/audit`: pulls and pushes a replica
/// recorded for the record, stored here tagged with it (idempotent by the
/// replica's own event seq).
pub(super) async fn forward_audit(
    State(state): State<AppState>,
    Auth(caller): Auth,
    P(rid): P<String>,
    body: Body,
) -> ApiResult<Json<ForwardAuditResponse>> {
    let record = record_id(&rid)?;
    let req: ForwardAuditRequest = read_json(body, state.limits.small_body_bytes()).await?;
    if req.events.len() > ForwardAuditRequest::MAX_EVENTS {
        return Err(ApiError::too_large(
            ForwardAuditRequest::MAX_EVENTS,
            "more audit events than one request may carry",
        ));
    }
    let mine = require_member(&state, record, caller).await?;
    if !mine.is_replica() {
        return Err(ApiError::Forbidden(
            "only a replica relay the record names forwards audit events",
        ));
    }
    let mut events = Vec::with_capacity(req.events.len());
    for e in req.events {
        super::extract::section(&e.section)?;
        let seq = super::extract::cursor(e.seq, "seq")?;
        events.push((
            seq,
            AuditEvent {
                seq: 0,
                record,
                at_ms: e.at_ms,
                identity: e.identity,
                action: e.action.into(),
                section: e.section,
                count: i64::try_from(e.count)
                    .map_err(|_| ApiError::bad("an audit count is out of range"))?,
                relay: Some(caller),
            },
        ));
    }
    let stored = state
        .storage
        .record_forwarded_audit(record, caller, events)
        .await?;
    Ok(Json(ForwardAuditResponse { stored }))
}
