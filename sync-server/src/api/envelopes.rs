//! The envelope log: batch upload (verified, atomic, durable, idempotent),
//! pull by cursor (with the section snapshot), snapshot upload, and the
//! per-record feed — each checked against the caller's (and the authors')
//! access to the section at the time of the request. Uploads and pulls that
//! move envelopes leave an audit event.

use axum::body::Body;
use axum::extract::State;
use axum::Extension;
use axum::Json;
use satchel_protocol::wire::{
    Accepted, AfterQuery, FeedResponse, FeedSection, PageQuery, PullResponse, PulledEnvelope,
    PulledSnapshot, SnapshotRequest, SnapshotResponse, UploadRequest, UploadResponse,
};

use super::auth::Auth;
use super::error::{ApiError, ApiResult};
use super::extract::{
    cursor, parse_json, read_body, read_json, record_id, section, wire_seq, P, Q,
};
use super::metrics::Reject;
use super::records::{require_member, verified_members};
use super::verify::{check_batch, refused, Failure};
use super::{AppState, RequestInfo};
use crate::storage::{now_ms, Actor, AuditAction, AuditEvent, SnapshotOutcome};
use satchel_protocol::accept::{self, Expect, Kind};

enum Precheck {
    Ok(super::verify::Checked),
    Err(ApiError),
}

/// `POST /v1/records/{rid}/sections/{section}/envelopes`
pub(super) async fn upload(
    State(state): State<AppState>,
    Auth(caller): Auth,
    P((rid, sec)): P<(String, String)>,
    Extension(info): Extension<RequestInfo>,
    body: Body,
) -> ApiResult<Json<UploadResponse>> {
    let record = record_id(&rid)?;
    section(&sec)?;
    let mine = require_member(&state, record, caller).await?;
    if !mine.may_upload(&sec, now_ms()) {
        return Err(ApiError::Forbidden("no write access to this section"));
    }
    let bytes = read_body(body, state.limits.upload_body_bytes()).await?;

    // Parse, size-check and verify on the blocking pool, against the
    // record's verified access log (the shared acceptance rule).
    let members = verified_members(&state, record).await?;
    let limits = state.limits.clone();
    let sec_owned = sec.clone();
    let pre = tokio::task::spawn_blocking(move || {
        let req: UploadRequest = match parse_json(&bytes) {
            Ok(r) => r,
            Err(e) => return Precheck::Err(e),
        };
        if req.envelopes.len() > limits.max_batch_envelopes {
            return Precheck::Err(ApiError::too_large(
                limits.max_batch_envelopes,
                "too many envelopes in one batch",
            ));
        }
        let total: usize = req.envelopes.iter().map(|s| s.decoded_len()).sum();
        if total > limits.max_batch_bytes {
            return Precheck::Err(ApiError::too_large(
                limits.max_batch_bytes,
                "batch exceeds the size limit",
            ));
        }
        Precheck::Ok(check_batch(
            &req.envelopes,
            &record,
            &sec_owned,
            limits.max_envelope_bytes,
            &members,
        ))
    })
    .await
    .map_err(|_| ApiError::Unavailable)?;
    let checked = match pre {
        Precheck::Ok(c) => c,
        Precheck::Err(e) => {
            if matches!(e, ApiError::TooLarge { .. }) {
                state.metrics.reject(Reject::TooLarge);
            }
            return Err(e);
        }
    };
    info.set_count(checked.ok.len() + usize::from(checked.failure.is_some()));

    let failure: Option<Failure> = checked.failure;
    if let Some(f) = failure {
        state.metrics.reject(f.reason);
        return Err(ApiError::rejected(f.index, f.message));
    }

    let batch = checked.ok;
    let lens: Vec<usize> = batch.iter().map(|e| e.bytes.len()).collect();
    let hashes: Vec<[u8; 32]> = batch.iter().map(|e| e.hash).collect();
    let by = Actor {
        identity: caller,
        at_ms: now_ms(),
        // A replica relay forwards what was written there: audited there
        // and forwarded (`POST /v1/replica/records/{rid}/audit`), not again.
        origin: mine.is_replica().then(|| format!("replica:{caller}")),
    };
    let appended = state
        .storage
        .append_envelopes(record, &sec, batch, by)
        .await?;
    let duplicates = appended.iter().filter(|a| a.duplicate).count();
    let new = appended.len() - duplicates;
    let new_bytes: usize = lens
        .iter()
        .zip(&appended)
        .filter(|(_, a)| !a.duplicate)
        .map(|(l, _)| *l)
        .sum();
    state.metrics.stored(
        u64::try_from(new).unwrap_or(0),
        u64::try_from(duplicates).unwrap_or(0),
        u64::try_from(new_bytes).unwrap_or(0),
    );
    let accepted = hashes
        .iter()
        .zip(&appended)
        .map(|(h, a)| {
            Ok(Accepted {
                hash: *h,
                seq: wire_seq(a.seq)?,
            })
        })
        .collect::<ApiResult<Vec<Accepted>>>()?;
    Ok(Json(UploadResponse {
        accepted,
        duplicates: u64::try_from(duplicates).unwrap_or(u64::MAX),
    }))
}

/// `GET /v1/records/{rid}/sections/{section}/envelopes?after=N&limit=M`
pub(super) async fn pull(
    State(state): State<AppState>,
    Auth(caller): Auth,
    P((rid, sec)): P<(String, String)>,
    Q(q): Q<PageQuery>,
    Extension(info): Extension<RequestInfo>,
) -> ApiResult<Json<PullResponse>> {
    let record = record_id(&rid)?;
    section(&sec)?;
    let after = cursor(q.after, "after")?;
    let limit = match q.limit {
        Some(0) => return Err(ApiError::bad("limit must be at least 1")),
        Some(n) => n.min(state.limits.max_pull_limit),
        None => state.limits.default_pull_limit,
    };
    let mine = require_member(&state, record, caller).await?;
    if !mine.may_read(&sec, now_ms()) {
        return Err(ApiError::Forbidden("no read access to this section"));
    }
    // A replica relay is served every envelope, the snapshot alongside
    // (it keeps the whole log for the devices it serves).
    let (page, next) = if mine.is_replica() {
        let page = state.storage.pull_whole(record, &sec, after, limit).await?;
        let next = page.next_whole(after);
        (page, next)
    } else {
        let page = state.storage.pull(record, &sec, after, limit).await?;
        let next = page.next(after);
        (page, next)
    };
    let next = wire_seq(next)?;
    info.set_count(page.envelopes.len());
    let count = page.envelopes.len() + usize::from(page.snapshot.is_some());
    if count > 0 {
        state
            .storage
            .record_audit(AuditEvent {
                seq: 0,
                record,
                at_ms: now_ms(),
                identity: caller,
                action: AuditAction::Pull,
                section: sec.clone(),
                count: i64::try_from(count).unwrap_or(i64::MAX),
                relay: None,
            })
            .await?;
    }
    let more = page.more;
    let snapshot = match page.snapshot {
        Some(s) => Some(PulledSnapshot {
            upto_seq: wire_seq(s.upto_seq)?,
            envelope: s.bytes,
        }),
        None => None,
    };
    let envelopes = page
        .envelopes
        .into_iter()
        .map(|e| {
            Ok(PulledEnvelope {
                seq: wire_seq(e.seq)?,
                envelope: e.bytes,
            })
        })
        .collect::<ApiResult<Vec<PulledEnvelope>>>()?;
    Ok(Json(PullResponse {
        snapshot,
        envelopes,
        next,
        more,
    }))
}

/// `PUT /v1/records/{rid}/sections/{section}/snapshot`
pub(super) async fn snapshot(
    State(state): State<AppState>,
    Auth(caller): Auth,
    P((rid, sec)): P<(String, String)>,
    body: Body,
) -> ApiResult<Json<SnapshotResponse>> {
    let record = record_id(&rid)?;
    section(&sec)?;
    let mine = require_member(&state, record, caller).await?;
    if !mine.may_upload(&sec, now_ms()) {
        return Err(ApiError::Forbidden("no write access to this section"));
    }
    let req: SnapshotRequest = read_json(body, state.limits.snapshot_body_bytes()).await?;
    if req.upto_seq < 1 {
        return Err(ApiError::bad("upto_seq must be at least 1"));
    }
    let upto_seq = cursor(req.upto_seq, "upto_seq")?;
    if req.envelope.len() > state.limits.max_snapshot_bytes {
        state.metrics.reject(Reject::TooLarge);
        return Err(ApiError::too_large(
            state.limits.max_snapshot_bytes,
            "snapshot exceeds the size limit",
        ));
    }
    let bytes = req.envelope;
    let max = state.limits.max_snapshot_bytes;
    let sec_owned = sec.clone();
    let members = verified_members(&state, record).await?;
    let bytes = tokio::task::spawn_blocking(move || {
        let expect = Expect {
            record,
            log: &sec_owned,
            kind: Kind::Snapshot,
            max_bytes: max,
        };
        accept::accept(&bytes, &expect, &members).map_err(|r| refused(0, r))?;
        Ok::<_, Failure>(bytes)
    })
    .await
    .map_err(|_| ApiError::Unavailable)?
    .map_err(|f| {
        state.metrics.reject(f.reason);
        ApiError::rejected(f.index, f.message)
    })?;
    let len = bytes.len();
    match state
        .storage
        .put_snapshot(record, &sec, upto_seq, bytes)
        .await?
    {
        SnapshotOutcome::Replaced => {
            state.metrics.snapshot(u64::try_from(len).unwrap_or(0));
            Ok(Json(SnapshotResponse {
                upto_seq: req.upto_seq,
            }))
        }
        SnapshotOutcome::NotNewer { current } => Err(ApiError::Conflict(format!(
            "the current snapshot covers up to seq {current}"
        ))),
        SnapshotOutcome::BeyondLog { newest } => Err(ApiError::bad(format!(
            "upto_seq is after the section's newest envelope (seq {newest})"
        ))),
    }
}

/// `GET /v1/records/{rid}/feed?after=N`
pub(super) async fn feed(
    State(state): State<AppState>,
    Auth(caller): Auth,
    P(rid): P<String>,
    Q(q): Q<AfterQuery>,
) -> ApiResult<Json<FeedResponse>> {
    let record = record_id(&rid)?;
    let after = cursor(q.after, "after")?;
    let mine = require_member(&state, record, caller).await?;
    let now = now_ms();
    let mut sections = state.storage.feed(record, after).await?;
    sections.retain(|(name, _)| mine.may_read(name, now));
    let newest = sections
        .iter()
        .map(|(_, s)| *s)
        .max()
        .unwrap_or(after)
        .max(after);
    let sections = sections
        .into_iter()
        .map(|(section, seq)| {
            Ok(FeedSection {
                section,
                seq: wire_seq(seq)?,
            })
        })
        .collect::<ApiResult<Vec<FeedSection>>>()?;
    Ok(Json(FeedResponse {
        sections,
        cursor: wire_seq(newest)?,
        upstream: state.upstream_contact.get().map(|contact| {
            satchel_protocol::wire::UpstreamReach {
                last_reached_ms: contact.reached(&record),
            }
        }),
    }))
}
