//! WebSocket push: `GET /v1/records/{rid}/subscribe?token=TOKEN` upgrades
//! and then receives `{"type":"changed","section":NAME,"seq":N}` for every
//! stored batch of a section the subscriber may read (from any instance
//! sharing the database; access is re-checked per frame, and a revoked or
//! expired member, or one whose sessions an owner device ended, is closed
//! with 1008),
//! plus a ping every 20 s. A subscriber too slow to keep up gets 1013, a
//! relay shutting down sends 1012 (service restart); clients reconnect
//! (with jitter, to whichever instance the load balancer picks) and read
//! the feed.

use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::Response;
use satchel_protocol::ids::{IdentityId, RecordId};
use satchel_protocol::wire::{PushMessage, TokenQuery};
use tokio::sync::broadcast::{self, error::RecvError};

use super::auth::authenticate;
use super::error::{ApiError, ApiResult};
use super::extract::{record_id, P, Q};
use super::records::require_member;
use super::{AppState, RequestInfo};
use crate::storage::{now_ms, Change, Membership};

/// Interval between server pings.
pub const PING_INTERVAL: Duration = Duration::from_secs(20);
/// How long a subscriber's looked-up access is trusted before the next
/// frame looks it up again. Expiry is checked on every frame from the
/// cached grant; a revocation reaches an open subscription within this
/// time (frames carry only a section name and a sequence number; pulls are
/// always checked).
pub const ACCESS_RECHECK: Duration = Duration::from_secs(1);

/// Close code: service restart (this instance is shutting down; reconnect,
/// through the load balancer to another instance, and read the feed).
pub const SERVICE_RESTART: u16 = 1012;
/// Close code: try again later (subscriber fell behind).
const TRY_AGAIN_LATER: u16 = 1013;
/// Close code: policy violation (the caller's access was revoked or expired).
const POLICY: u16 = 1008;

/// `GET /v1/records/{rid}/subscribe?token=TOKEN`
pub(super) async fn subscribe(
    State(state): State<AppState>,
    P(rid): P<String>,
    Q(q): Q<TokenQuery>,
    axum::Extension(info): axum::Extension<RequestInfo>,
    slot: Option<axum::Extension<crate::net::registry::Ticket>>,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> ApiResult<Response> {
    let record = record_id(&rid)?;
    let caller = authenticate(&state, &q.token).await?;
    info.set_identity(caller);
    state.limiters.check_identity(&caller, &state)?;
    require_member(&state, record, caller).await?;
    let ws = ws.map_err(|_| ApiError::bad("expected a WebSocket upgrade request"))?;
    // Subscribe before answering so nothing stored after the upgrade is missed.
    let changes = state.fanout.subscribe(&*state.storage, record);
    // The connection's slot stays taken for as long as the socket is open.
    Ok(ws.on_upgrade(move |socket| async move {
        run(socket, state, record, caller, changes).await;
        drop(slot);
    }))
}

async fn run(
    mut socket: WebSocket,
    state: AppState,
    record: RecordId,
    caller: IdentityId,
    mut changes: broadcast::Receiver<Change>,
) {
    state.metrics.subscribers(1);
    let mut shutdown = state.shutdown.clone();
    let mut revoked = state.revoked.subscribe();
    let mut access: Option<(crate::storage::Rights, std::time::Instant)> = None;
    let mut ping =
        tokio::time::interval_at(tokio::time::Instant::now() + PING_INTERVAL, PING_INTERVAL);
    let close = |code: u16, reason: &'static str| {
        Message::Close(Some(CloseFrame {
            code,
            reason: reason.into(),
        }))
    };
    loop {
        if *shutdown.borrow() {
            let _ = socket
                .send(close(SERVICE_RESTART, "relay restarting; reconnect"))
                .await;
            break;
        }
        tokio::select! {
            change = changes.recv() => match change {
                Ok(c) if { state.metrics.subscriber_woken(); c.record == record } => {
                    // Access is checked per frame: a revoked or expired
                    // member is disconnected, unreadable sections are
                    // skipped. The grant is looked up again at most every
                    // ACCESS_RECHECK (one storage query per subscriber per
                    // frame made 1,000 subscribers cost the relay a core).
                    if access.as_ref().is_none_or(|(_, at)| at.elapsed() >= ACCESS_RECHECK) {
                        access = match state.storage.membership(record, caller).await {
                            Ok(Membership::Member(a)) => Some((a, std::time::Instant::now())),
                            Ok(_) => None,
                            Err(_) => {
                                let _ = socket.send(close(TRY_AGAIN_LATER, "storage unavailable; reconnect")).await;
                                break;
                            }
                        };
                    }
                    let Some((access, _)) = access.as_ref().filter(|(a, _)| a.live_at(now_ms())) else {
                        let _ = socket.send(close(POLICY, "access revoked or expired")).await;
                        break;
                    };
                    if !access.may_read(&c.section, now_ms()) {
                        continue;
                    }
                    let Ok(seq) = u64::try_from(c.seq) else {
                        tracing::warn!("storage announced a negative sequence number");
                        continue;
                    };
                    let frame = PushMessage::Changed { section: c.section, seq };
                    let Ok(text) = serde_json::to_string(&frame) else {
                        let _ = socket.send(close(TRY_AGAIN_LATER, "could not encode a frame; reconnect")).await;
                        break;
                    };
                    if socket.send(Message::Text(text.into())).await.is_err() {
                        break;
                    }
                    state.metrics.push_frame();
                }
                Ok(_) => {}
                Err(RecvError::Lagged(_)) => {
                    let _ = socket.send(close(TRY_AGAIN_LATER, "fell behind; reconnect and read the feed")).await;
                    break;
                }
                Err(RecvError::Closed) => {
                    // The fan-out fell behind (or the relay is stopping).
                    let _ = socket.send(close(TRY_AGAIN_LATER, "reconnect and read the feed")).await;
                    break;
                }
            },
            _ = ping.tick() => {
                if socket.send(Message::Ping(Vec::new().into())).await.is_err() {
                    break;
                }
            }
            incoming = socket.recv() => match incoming {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => break,
                Some(Ok(_)) => {}
            },
            ended = revoked.recv() => match ended {
                Ok(id) if id == caller => {
                    let _ = socket.send(close(POLICY, "session revoked")).await;
                    break;
                }
                Ok(_) => {}
                Err(RecvError::Lagged(_)) => {
                    let _ = socket.send(close(TRY_AGAIN_LATER, "fell behind; reconnect")).await;
                    break;
                }
                Err(RecvError::Closed) => {
                    let _ = socket.send(close(SERVICE_RESTART, "relay restarting; reconnect")).await;
                    break;
                }
            },
            res = shutdown.changed() => {
                if res.is_err() {
                    let _ = socket.send(close(SERVICE_RESTART, "relay restarting; reconnect")).await;
                    break;
                }
            }
        }
    }
    state.metrics.subscribers(-1);
}
