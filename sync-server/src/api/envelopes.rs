//! The envelope log: batch upload (verified, atomic, durable, idempotent),
//! pull by cursor (with the section snapshot), snapshot upload, and the
//! per-record feed — each checked against the caller's (and the authors')
//! access to the section at the time of the request. Uploads and pulls that
//! move envelopes leave an audit event.

use std::borrow::Cow;

use axum::body::Body;
use axum::extract::State;
use axum::Extension;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::auth::Auth;
use super::error::{ApiError, ApiResult};
use super::extract::{
    b64, b64_decode, b64_decoded_len, parse_json, read_body, read_json, record_id, section, P, Q,
};
use super::metrics::Reject;
use super::records::{require_member, verified_members};
use super::verify::{check_batch, refused, Failure};
use super::{AppState, RequestInfo};
use crate::storage::{now_ms, Actor, AuditAction, AuditEvent, SnapshotOutcome};
use satchel_protocol::accept::{self, Expect, Kind};

#[derive(Deserialize)]
pub(super) struct UploadRequest<'a> {
    #[serde(borrow)]
    pub(super) envelopes: Vec<Cow<'a, str>>,
}

#[derive(Serialize)]
struct AcceptedJson {
    hash: String,
    seq: i64,
}

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
) -> ApiResult<Json<serde_json::Value>> {
    let record = record_id(&rid)?;
    section(&sec)?;
    let mine = require_member(&state, record, caller).await?;
    if !mine.may_write(&sec, now_ms()) {
        return Err(ApiError::Forbidden("no write access to this section"));
    }
    let bytes = read_body(body, state.limits.upload_body_bytes()).await?;

    // Parse, size-check and verify on the blocking pool, against the
    // record's verified access log (the shared acceptance rule).
    let members = verified_members(&state, record).await?;
    let limits = state.limits.clone();
    let sec_owned = sec.clone();
    let pre = tokio::task::spawn_blocking(move || {
        let req: UploadRequest<'_> = match parse_json(&bytes) {
            Ok(r) => r,
            Err(e) => return Precheck::Err(e),
        };
        if req.envelopes.len() > limits.max_batch_envelopes {
            return Precheck::Err(ApiError::too_large(
                limits.max_batch_envelopes,
                "too many envelopes in one batch",
            ));
        }
        let total: usize = req.envelopes.iter().map(|s| b64_decoded_len(s)).sum();
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
    let accepted: Vec<AcceptedJson> = hashes
        .iter()
        .zip(&appended)
        .map(|(h, a)| AcceptedJson {
            hash: hex::encode(h),
            seq: a.seq,
        })
        .collect();
    Ok(Json(
        json!({ "accepted": accepted, "duplicates": duplicates }),
    ))
}

#[derive(Deserialize)]
pub(super) struct PullQuery {
    #[serde(default)]
    after: i64,
    limit: Option<u32>,
}

#[derive(Serialize)]
struct EnvelopeJson {
    seq: i64,
    envelope: String,
}

/// `GET /v1/records/{rid}/sections/{section}/envelopes?after=N&limit=M`
pub(super) async fn pull(
    State(state): State<AppState>,
    Auth(caller): Auth,
    P((rid, sec)): P<(String, String)>,
    Q(q): Q<PullQuery>,
    Extension(info): Extension<RequestInfo>,
) -> ApiResult<Json<serde_json::Value>> {
    let record = record_id(&rid)?;
    section(&sec)?;
    if q.after < 0 {
        return Err(ApiError::bad("after must not be negative"));
    }
    let limit = match q.limit {
        Some(0) => return Err(ApiError::bad("limit must be at least 1")),
        Some(n) => n.min(state.limits.max_pull_limit),
        None => state.limits.default_pull_limit,
    };
    let mine = require_member(&state, record, caller).await?;
    if !mine.may_read(&sec, now_ms()) {
        return Err(ApiError::Forbidden("no read access to this section"));
    }
    let page = state.storage.pull(record, &sec, q.after, limit).await?;
    let next = page.next(q.after);
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
            })
            .await?;
    }
    let snapshot = page
        .snapshot
        .as_ref()
        .map(|s| json!({ "upto_seq": s.upto_seq, "envelope": b64(&s.bytes) }));
    let envelopes: Vec<EnvelopeJson> = page
        .envelopes
        .iter()
        .map(|e| EnvelopeJson {
            seq: e.seq,
            envelope: b64(&e.bytes),
        })
        .collect();
    Ok(Json(json!({
        "snapshot": snapshot,
        "envelopes": envelopes,
        "next": next,
        "more": page.more,
    })))
}

#[derive(Deserialize)]
pub(super) struct SnapshotRequest {
    pub(super) upto_seq: i64,
    pub(super) envelope: String,
}

/// `PUT /v1/records/{rid}/sections/{section}/snapshot`
pub(super) async fn snapshot(
    State(state): State<AppState>,
    Auth(caller): Auth,
    P((rid, sec)): P<(String, String)>,
    body: Body,
) -> ApiResult<Json<serde_json::Value>> {
    let record = record_id(&rid)?;
    section(&sec)?;
    let mine = require_member(&state, record, caller).await?;
    if !mine.may_write(&sec, now_ms()) {
        return Err(ApiError::Forbidden("no write access to this section"));
    }
    let req: SnapshotRequest = read_json(body, state.limits.snapshot_body_bytes()).await?;
    if req.upto_seq < 1 {
        return Err(ApiError::bad("upto_seq must be at least 1"));
    }
    if b64_decoded_len(&req.envelope) > state.limits.max_snapshot_bytes {
        state.metrics.reject(Reject::TooLarge);
        return Err(ApiError::too_large(
            state.limits.max_snapshot_bytes,
            "snapshot exceeds the size limit",
        ));
    }
    let bytes = b64_decode(&req.envelope, "envelope")?;
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
        .put_snapshot(record, &sec, req.upto_seq, bytes)
        .await?
    {
        SnapshotOutcome::Replaced => {
            state.metrics.snapshot(u64::try_from(len).unwrap_or(0));
            Ok(Json(json!({ "upto_seq": req.upto_seq })))
        }
        SnapshotOutcome::NotNewer { current } => Err(ApiError::Conflict(format!(
            "the current snapshot covers up to seq {current}"
        ))),
        SnapshotOutcome::BeyondLog { newest } => Err(ApiError::bad(format!(
            "upto_seq is after the section's newest envelope (seq {newest})"
        ))),
    }
}

#[derive(Deserialize)]
pub(super) struct FeedQuery {
    #[serde(default)]
    after: i64,
}

/// `GET /v1/records/{rid}/feed?after=N`
pub(super) async fn feed(
    State(state): State<AppState>,
    Auth(caller): Auth,
    P(rid): P<String>,
    Q(q): Q<FeedQuery>,
) -> ApiResult<Json<serde_json::Value>> {
    let record = record_id(&rid)?;
    if q.after < 0 {
        return Err(ApiError::bad("after must not be negative"));
    }
    let mine = require_member(&state, record, caller).await?;
    let now = now_ms();
    let mut sections = state.storage.feed(record, q.after).await?;
    sections.retain(|(name, _)| mine.may_read(name, now));
    let cursor = sections
        .iter()
        .map(|(_, s)| *s)
        .max()
        .unwrap_or(q.after)
        .max(q.after);
    let sections: Vec<serde_json::Value> = sections
        .into_iter()
        .map(|(section, seq)| json!({ "section": section, "seq": seq }))
        .collect();
    Ok(Json(json!({ "sections": sections, "cursor": cursor })))
}
