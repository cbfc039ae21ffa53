//! Records and membership: registration with the first owner device, the
//! signed access-statement log (every kind, verified with core's sharing
//! rules and appended compare-and-swap on the log's head), the access
//! checks every record route makes, and the member list.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use satchel_protocol::crypto::IdentityCard;
use satchel_protocol::ids::{IdentityId, RecordId};
use satchel_protocol::sharing::{verify_log, verify_next, Members, SharingError, SignedStatement};
use satchel_protocol::wire::{
    AccessEntry, AccessResponse, AfterQuery, MemberEntry, MembersResponse, RegisterRequest,
    RegisterResponse, SeqResponse,
};
use satchel_protocol::Section;

use super::auth::Auth;
use super::error::{ApiError, ApiResult};
use super::extract::{cursor, read_json, record_id, wire_seq, P, Q};
use super::metrics::Reject;
use super::AppState;
use crate::storage::{
    now_ms, Member, MemberRole, Membership, RegisterOutcome, Rights, Seq, StatementOutcome,
    StatementRow,
};

/// Most statements one `GET .../access` returns.
const STATEMENTS_PAGE: u32 = 1000;

/// `POST /v1/records`
pub(super) async fn register(
    State(state): State<AppState>,
    Auth(caller): Auth,
    body: Body,
) -> ApiResult<(StatusCode, Json<RegisterResponse>)> {
    let req: RegisterRequest = read_json(body, state.limits.small_body_bytes()).await?;
    if req.owner.id() != caller {
        return Err(ApiError::Forbidden(
            "the owner card must be the authenticated identity's",
        ));
    }
    if req.owner.verify().is_err() {
        state.metrics.reject(Reject::BadStatement);
        return Err(ApiError::rejected(0, "owner card does not verify"));
    }
    let outcome = state
        .storage
        .register_record(
            req.record_id,
            caller,
            req.owner.to_bytes(),
            crate::storage::now_ms(),
        )
        .await?;
    let body = Json(RegisterResponse {
        record_id: req.record_id,
    });
    match outcome {
        RegisterOutcome::Created => Ok((StatusCode::CREATED, body)),
        RegisterOutcome::AlreadyRegistered => Ok((StatusCode::OK, body)),
        RegisterOutcome::Conflict => Err(ApiError::Conflict(
            "record already registered by another owner".into(),
        )),
    }
}

/// Require `caller` to be a member of `record` whose access is in force
/// now (404 without the record; 403 for a non-member, a revoked or an
/// expired member). Route-specific checks use the returned access.
pub(super) async fn require_member(
    state: &AppState,
    record: RecordId,
    caller: IdentityId,
) -> ApiResult<Rights> {
    match state.storage.membership(record, caller).await? {
        Membership::Member(access) if access.live_at(now_ms()) => Ok(access),
        Membership::Member(_) => Err(ApiError::Forbidden("this identity's grant has expired")),
        Membership::NotMember => Err(not_member(state, record).await),
        Membership::NoRecord => Err(ApiError::NotFound("no such record")),
    }
}

/// This relay's identity, when it has one.
fn relay_id(state: &AppState) -> Option<IdentityId> {
    state.identity.get().map(IdentityCard::id)
}

/// Why a caller this relay lists no membership for is refused: when the
/// record's log retires this relay (the record moved away; the protocol's
/// rule, [`Members::relay_serves`]) the answer says so and what to do.
/// (Only this refusal path reads the log: serving members costs nothing
/// more, since a retired relay keeps no member rows, see [`member_rows`].)
async fn not_member(state: &AppState, record: RecordId) -> ApiError {
    let not_member = ApiError::Forbidden("not a member of this record");
    let Some(me) = relay_id(state) else {
        return not_member;
    };
    match verified_members(state, record).await {
        Ok(members) => match members.relay_serves(&me) {
            Err(moved) => ApiError::Moved(moved.to_string()),
            Ok(()) => not_member,
        },
        Err(_) => not_member,
    }
}

/// Every statement of the record's log, oldest first.
async fn whole_log(state: &AppState, record: RecordId) -> ApiResult<Vec<StatementRow>> {
    log_after(state, record, 0).await
}

/// The statements of the record's log after position `from`, oldest first.
async fn log_after(state: &AppState, record: RecordId, from: Seq) -> ApiResult<Vec<StatementRow>> {
    let mut out: Vec<StatementRow> = Vec::new();
    loop {
        let after = out.last().map_or(from, |r| r.seq);
        let page = state
            .storage
            .statements(record, after, STATEMENTS_PAGE)
            .await?;
        let full = page.len() == STATEMENTS_PAGE as usize;
        out.extend(page);
        if !full {
            return Ok(out);
        }
    }
}

/// A record's access log as stored: its root (the creator device and the
/// card it registered) and every statement, oldest first.
struct StoredLog {
    creator: IdentityId,
    creator_card: Vec<u8>,
    rows: Vec<StatementRow>,
}

impl StoredLog {
    /// Read it (404 without the record).
    async fn read(state: &AppState, record: RecordId) -> ApiResult<StoredLog> {
        let (creator, creator_card) = state
            .storage
            .record_root(record)
            .await?
            .ok_or(ApiError::NotFound("no such record"))?;
        let rows = whole_log(state, record).await?;
        Ok(StoredLog {
            creator,
            creator_card,
            rows,
        })
    }

    /// Verify it from its root (CPU: call on the blocking pool).
    fn verify(&self, record: RecordId) -> Result<Members, SharingError> {
        let card = IdentityCard::from_bytes(&self.creator_card).ok();
        let log: Vec<SignedStatement> = self
            .rows
            .iter()
            .map(|r| SignedStatement {
                statement: r.statement.clone(),
                signature: r.signature.clone(),
            })
            .collect();
        verify_log(record, self.creator, card.as_ref(), &log)
    }
}

/// A stored log that does not verify is the relay's own failure (503).
fn corrupt_log(record: RecordId, e: &SharingError) -> ApiError {
    tracing::warn!(record = %record, error = %e, "stored access log does not verify");
    ApiError::Unavailable
}

/// Verified access logs by record, each with the position of its last
/// statement: a request verifies only the statements appended since (one
/// cheap query when there are none), not the whole log again. Any relay
/// instance may append, so the store is asked every time; at most its
/// capacity of records are kept ([`MembersCache::CAPACITY`], or
/// [`MembersCache::EDGE_CAPACITY`] on an edge relay).
pub struct MembersCache {
    capacity: usize,
    map: std::sync::Mutex<HashMap<RecordId, (Seq, Arc<Members>)>>,
}

impl Default for MembersCache {
    fn default() -> Self {
        Self::with_capacity(Self::CAPACITY)
    }
}

impl MembersCache {
    /// Records kept at most by default (an arbitrary one is dropped
    /// beyond).
    pub const CAPACITY: usize = 4096;
    /// On an edge relay (`--upstream`): it serves one site, and its
    /// replicator visits each record once a round, which a larger cache
    /// would not speed up; each entry is a record's verified log (about
    /// 10 KB), so 4,096 of them held an edge replicating 10,000 records
    /// over 100 MB (docs/benchmarks.md, "Edge relays").
    pub const EDGE_CAPACITY: usize = 512;

    /// A cache of at most `capacity` records (at least one).
    pub fn with_capacity(capacity: usize) -> Self {
        MembersCache {
            capacity: capacity.max(1),
            map: std::sync::Mutex::new(HashMap::new()),
        }
    }

    fn get(&self, record: &RecordId) -> Option<(Seq, Arc<Members>)> {
        self.map.lock().ok()?.get(record).cloned()
    }

    fn put(&self, record: RecordId, last: Seq, members: Arc<Members>) {
        if let Ok(mut map) = self.map.lock() {
            if map.len() >= self.capacity && !map.contains_key(&record) {
                if let Some(any) = map.keys().next().copied() {
                    map.remove(&any);
                }
            }
            map.insert(record, (last, members));
        }
    }
}

/// The record's verified access log ([`Members`]): what the shared
/// acceptance rule ([`satchel_protocol::accept`]) judges envelopes by.
/// Statements appended since the cached verification are verified on top of
/// it; without a cached one the whole stored log is verified from its root.
/// 404 without the record; 503 if the stored log does not verify.
pub(crate) async fn verified_members(
    state: &AppState,
    record: RecordId,
) -> ApiResult<Arc<Members>> {
    if let Some((last, members)) = state.members.get(&record) {
        let newer = log_after(state, record, last).await?;
        if newer.is_empty() {
            return Ok(members);
        }
        let upto = newer.last().map_or(last, |r| r.seq);
        let next = tokio::task::spawn_blocking(move || {
            let mut next = (*members).clone();
            for row in newer {
                verify_next(
                    &mut next,
                    &SignedStatement {
                        statement: row.statement,
                        signature: row.signature,
                    },
                )?;
            }
            Ok::<_, SharingError>(next)
        })
        .await
        .map_err(|_| ApiError::Unavailable)?
        .map_err(|e| corrupt_log(record, &e))?;
        let next = Arc::new(next);
        state.members.put(record, upto, Arc::clone(&next));
        return Ok(next);
    }
    let stored = StoredLog::read(state, record).await?;
    let upto = stored.rows.last().map_or(0, |r| r.seq);
    let members = tokio::task::spawn_blocking(move || stored.verify(record))
        .await
        .map_err(|_| ApiError::Unavailable)?
        .map_err(|e| corrupt_log(record, &e))?;
    let members = Arc::new(members);
    state.members.put(record, upto, Arc::clone(&members));
    Ok(members)
}

/// The member rows a verified log establishes. The creator's card comes
/// from registration (the log does not carry it). None when the log
/// retires `relay` (this relay): the record moved away, and this relay
/// serves nobody in it.
fn member_rows(members: &Members, creator_card: &[u8], relay: Option<IdentityId>) -> Vec<Member> {
    let mut rows = Vec::new();
    if relay.is_some_and(|me| members.relay_serves(&me).is_err()) {
        return rows;
    }
    for (id, card) in &members.owner_devices {
        let card = match card {
            Some(c) => c.to_bytes(),
            None => creator_card.to_vec(),
        };
        rows.push(Member {
            identity: *id,
            access: Rights::owner_device(),
            card,
        });
    }
    for (id, replica) in &members.replicas {
        rows.push(Member {
            identity: *id,
            access: Rights::replica(),
            card: replica.card.to_bytes(),
        });
    }
    for (id, grant) in &members.grants {
        rows.push(Member {
            identity: *id,
            access: Rights::granted(grant.role, grant.sections.clone(), grant.expires_at_ms),
            card: grant.card.to_bytes(),
        });
    }
    rows
}

/// Why a statement was refused, as the API answers it.
fn refusal(state: &AppState, e: SharingError) -> ApiError {
    match e {
        SharingError::NotAllowed { .. } => {
            ApiError::Forbidden("the statement's signer may not make this change in this record")
        }
        SharingError::Fork { .. } => ApiError::Conflict(
            "the statement does not follow the access log's head (prev): \
             fetch the log, verify it and sign again"
                .into(),
        ),
        other => {
            state.metrics.reject(Reject::BadStatement);
            ApiError::rejected(0, other.to_string())
        }
    }
}

/// `POST /v1/records/{rid}/access`: verify the statement on top of the
/// record's verified log (core's rules), then append it compare-and-swap
/// on the head together with the membership it results in.
pub(super) async fn append_statement(
    State(state): State<AppState>,
    Auth(_caller): Auth,
    P(rid): P<String>,
    body: Body,
) -> ApiResult<(StatusCode, Json<SeqResponse>)> {
    let record = record_id(&rid)?;
    let signed: SignedStatement = read_json(body, state.limits.small_body_bytes()).await?;
    let (status, seq) = append_verified(&state, record, signed).await?;
    Ok((
        status,
        Json(SeqResponse {
            seq: wire_seq(seq)?,
        }),
    ))
}

/// Verify `signed` on top of the record's verified log and append it
/// compare-and-swap with the membership it results in: `201` and its
/// position when appended, `200` and the original position when the same
/// bytes are already in the log. Used by the route and by replication.
pub(crate) async fn append_verified(
    state: &AppState,
    record: RecordId,
    signed: SignedStatement,
) -> ApiResult<(StatusCode, Seq)> {
    let stored = StoredLog::read(state, record).await?;
    if let Some(row) = stored.rows.iter().find(|r| r.statement == signed.statement) {
        return Ok((StatusCode::OK, row.seq));
    }
    // The verified log as the cache holds it (only statements appended
    // since its last verification are verified now); if it does not cover
    // exactly the rows just read (an append raced in between), the rows are
    // verified whole.
    let cached = verified_members(state, record).await?;
    let (result, signed, stored) = tokio::task::spawn_blocking(move || {
        let current = if cached.len == stored.rows.len() {
            Ok((*cached).clone())
        } else {
            stored.verify(record)
        };
        let result = current.map(|m| {
            let head = m.head;
            let mut next = m;
            let outcome = verify_next(&mut next, &signed);
            (head, next, outcome)
        });
        (result, signed, stored)
    })
    .await
    .map_err(|_| ApiError::Unavailable)?;
    let creator_card = stored.creator_card;
    let (head, members, outcome) = result.map_err(|e| corrupt_log(record, &e))?;
    outcome.map_err(|e| refusal(state, e))?;
    let rows = member_rows(&members, &creator_card, relay_id(state));
    match state
        .storage
        .append_statement(record, signed.statement, signed.signature, head, rows)
        .await?
    {
        StatementOutcome::Appended(seq) => Ok((StatusCode::CREATED, seq)),
        StatementOutcome::Duplicate(seq) => Ok((StatusCode::OK, seq)),
        StatementOutcome::HeadMoved => Err(refusal(state, SharingError::Fork { index: 0 })),
    }
}

/// `GET /v1/records/{rid}/access?after=N` (any member whose access is in
/// force: grantees learn their keys from it).
pub(super) async fn statements(
    State(state): State<AppState>,
    Auth(caller): Auth,
    P(rid): P<String>,
    Q(q): Q<AfterQuery>,
) -> ApiResult<Json<AccessResponse>> {
    let record = record_id(&rid)?;
    let after = cursor(q.after, "after")?;
    require_member(&state, record, caller).await?;
    let mut rows = state
        .storage
        .statements(record, after, STATEMENTS_PAGE + 1)
        .await?;
    let more = rows.len() > STATEMENTS_PAGE as usize;
    rows.truncate(STATEMENTS_PAGE as usize);
    let statements = rows
        .into_iter()
        .map(|r| {
            Ok(AccessEntry {
                seq: wire_seq(r.seq)?,
                signed: SignedStatement {
                    statement: r.statement,
                    signature: r.signature,
                },
            })
        })
        .collect::<ApiResult<Vec<AccessEntry>>>()?;
    Ok(Json(AccessResponse { statements, more }))
}

/// `GET /v1/records/{rid}/members`: owner devices and live managers see
/// every member; a writer or reader sees the owner devices and itself.
pub(super) async fn members(
    State(state): State<AppState>,
    Auth(caller): Auth,
    P(rid): P<String>,
) -> ApiResult<Json<MembersResponse>> {
    let record = record_id(&rid)?;
    let mine = require_member(&state, record, caller).await?;
    let sees_all = mine.may_administer(now_ms());
    let mut members = Vec::new();
    for m in state.storage.members(record).await? {
        if !sees_all && m.access.role != MemberRole::OwnerDevice && m.identity != caller {
            continue;
        }
        let card = IdentityCard::from_bytes(&m.card).map_err(|_| {
            tracing::warn!(record = %record, "stored member card does not parse");
            ApiError::Unavailable
        })?;
        let sections: Vec<String> =
            if matches!(m.access.role, MemberRole::OwnerDevice | MemberRole::Replica) {
                Section::ALL.iter().map(|s| s.as_str().to_owned()).collect()
            } else {
                m.access.sections.iter().cloned().collect()
            };
        members.push(MemberEntry {
            identity: m.identity,
            role: m.access.role,
            sections,
            expires_at_ms: m.access.expires_at_ms,
            card,
        });
    }
    Ok(Json(MembersResponse { members }))
}
