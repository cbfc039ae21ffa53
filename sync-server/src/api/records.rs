//! Records and membership: registration with the first owner device, the
//! signed access-statement log (version 1: `add-device`), and the member
//! list.

use axum::body::Body;
use axum::extract::State;
use axum::http::StatusCode;
use axum::Json;
use satchel_core::crypto::{verify_signature, IdentityCard};
use satchel_core::ids::{IdentityId, RecordId};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::auth::Auth;
use super::error::{ApiError, ApiResult};
use super::extract::{b64, b64_decode, read_json, record_id, P, Q};
use super::metrics::Reject;
use super::AppState;
use crate::storage::{MemberRole, Membership, NewMember, RegisterOutcome, StatementOutcome};

/// Domain-separation prefix of access-statement signatures.
pub const STATEMENT_DOMAIN: &[u8] = b"satchel/v1/statement";

/// Most statements one `GET .../access` returns.
const STATEMENTS_PAGE: u32 = 1000;

#[derive(Deserialize)]
struct RegisterRequest {
    record_id: RecordId,
    owner: IdentityCard,
}

/// `POST /v1/records`
pub(super) async fn register(
    State(state): State<AppState>,
    Auth(caller): Auth,
    body: Body,
) -> ApiResult<(StatusCode, Json<serde_json::Value>)> {
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
    let body = Json(json!({ "record_id": req.record_id }));
    match outcome {
        RegisterOutcome::Created => Ok((StatusCode::CREATED, body)),
        RegisterOutcome::AlreadyRegistered => Ok((StatusCode::OK, body)),
        RegisterOutcome::Conflict => Err(ApiError::Conflict(
            "record already registered by another owner".into(),
        )),
    }
}

/// Require `caller` to be a member of `record` (404 / 403 otherwise).
pub(super) async fn require_member(
    state: &AppState,
    record: RecordId,
    caller: IdentityId,
) -> ApiResult<MemberRole> {
    match state.storage.membership(record, caller).await? {
        Membership::Member(role) => Ok(role),
        Membership::NotMember => Err(ApiError::Forbidden("not a member of this record")),
        Membership::NoRecord => Err(ApiError::NotFound("no such record")),
    }
}

#[derive(Deserialize)]
struct StatementRequest {
    statement: String,
    signature: String,
}

#[derive(Deserialize)]
struct StatementKind {
    kind: String,
}

#[derive(Deserialize)]
#[allow(dead_code)] // at_ms is part of the signed statement; the relay keeps the bytes.
struct AddDevice {
    record_id: RecordId,
    device: IdentityCard,
    by: IdentityId,
    at_ms: i64,
}

/// `POST /v1/records/{rid}/access`
pub(super) async fn append_statement(
    State(state): State<AppState>,
    Auth(_caller): Auth,
    P(rid): P<String>,
    body: Body,
) -> ApiResult<(StatusCode, Json<serde_json::Value>)> {
    let record = record_id(&rid)?;
    let req: StatementRequest = read_json(body, state.limits.small_body_bytes()).await?;
    let statement = b64_decode(&req.statement, "statement")?;
    let signature = b64_decode(&req.signature, "signature")?;
    let reject = |why: &'static str| {
        state.metrics.reject(Reject::BadStatement);
        ApiError::rejected(0, why)
    };
    let kind: StatementKind = serde_json::from_slice(&statement)
        .map_err(|_| reject("statement is not a JSON object with a kind"))?;
    if kind.kind != "add-device" {
        return Err(reject("unknown statement kind"));
    }
    let add: AddDevice =
        serde_json::from_slice(&statement).map_err(|_| reject("malformed add-device statement"))?;
    if add.record_id != record {
        return Err(reject("statement is for another record"));
    }
    match state.storage.membership(record, add.by).await? {
        Membership::Member(MemberRole::OwnerDevice) => {}
        Membership::NotMember => {
            return Err(ApiError::Forbidden(
                "statement signer is not an owner device of this record",
            ))
        }
        Membership::NoRecord => return Err(ApiError::NotFound("no such record")),
    }
    let mut msg = Vec::with_capacity(STATEMENT_DOMAIN.len() + statement.len());
    msg.extend_from_slice(STATEMENT_DOMAIN);
    msg.extend_from_slice(&statement);
    if verify_signature(&add.by, &msg, &signature).is_err() {
        return Err(reject("statement signature does not verify"));
    }
    if add.device.verify().is_err() {
        return Err(reject("device card does not verify"));
    }
    let member = NewMember {
        identity: add.device.id(),
        role: MemberRole::OwnerDevice,
        card: add.device.to_bytes(),
    };
    match state
        .storage
        .append_statement(record, statement, signature, member)
        .await?
    {
        StatementOutcome::Appended(seq) => Ok((StatusCode::CREATED, Json(json!({ "seq": seq })))),
        StatementOutcome::Duplicate(seq) => Ok((StatusCode::OK, Json(json!({ "seq": seq })))),
    }
}

#[derive(Deserialize)]
pub(super) struct AfterQuery {
    #[serde(default)]
    after: i64,
}

#[derive(Serialize)]
struct StatementJson {
    seq: i64,
    statement: String,
    signature: String,
}

/// `GET /v1/records/{rid}/access?after=N`
pub(super) async fn statements(
    State(state): State<AppState>,
    Auth(caller): Auth,
    P(rid): P<String>,
    Q(q): Q<AfterQuery>,
) -> ApiResult<Json<serde_json::Value>> {
    let record = record_id(&rid)?;
    require_member(&state, record, caller).await?;
    let mut rows = state
        .storage
        .statements(record, q.after.max(0), STATEMENTS_PAGE + 1)
        .await?;
    let more = rows.len() > STATEMENTS_PAGE as usize;
    rows.truncate(STATEMENTS_PAGE as usize);
    let statements: Vec<StatementJson> = rows
        .into_iter()
        .map(|r| StatementJson {
            seq: r.seq,
            statement: b64(&r.statement),
            signature: b64(&r.signature),
        })
        .collect();
    Ok(Json(json!({ "statements": statements, "more": more })))
}

/// `GET /v1/records/{rid}/members`
pub(super) async fn members(
    State(state): State<AppState>,
    Auth(caller): Auth,
    P(rid): P<String>,
) -> ApiResult<Json<serde_json::Value>> {
    let record = record_id(&rid)?;
    require_member(&state, record, caller).await?;
    let members: Vec<serde_json::Value> = state
        .storage
        .members(record)
        .await?
        .into_iter()
        .map(|m| json!({ "identity": m.identity, "role": m.role.as_str() }))
        .collect();
    Ok(Json(json!({ "members": members })))
}
