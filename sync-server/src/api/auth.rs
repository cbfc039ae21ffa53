//! Authentication: challenge → signed challenge → bearer token, the
//! [`Auth`] extractor every authenticated handler takes, the token cache,
//! and the per-identity / per-IP rate limiters.
//!
//! Tokens are 32 random bytes sent as 64 hex characters; the storage keeps
//! only their SHA-256. Validated tokens are cached per instance. An owner
//! device can end every session of a member at once
//! ([`revoke_sessions`]): the tokens are deleted and a revocation row is
//! stored, which every instance polls every [`REVOCATION_POLL`]
//! ([`watch_revocations`]) to drop the identity from its cache and close
//! its WebSockets, so all instances honour it within a second.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Mutex;

use axum::extract::{ConnectInfo, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::Json;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use ring::rand::SecureRandom;
use satchel_protocol::crypto::verify_signature;
use satchel_protocol::ids::{IdentityId, ShareLinkHandle};
use satchel_protocol::wire::auth::signing_message;
use satchel_protocol::wire::{
    ChallengeRequest, ChallengeResponse, RevokeSessionsRequest, RevokeSessionsResponse,
    TokenRequest, TokenResponse,
};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::error::{ApiError, ApiResult};
use super::extract::{read_json, record_id, P};
use super::{AppState, RequestInfo};
use crate::config::RateLimit;
use crate::storage::{now_ms, MemberRole, Membership, Seq};

/// An authenticated (and rate-checked) caller.
#[derive(Debug, Clone, Copy)]
pub struct Auth(pub IdentityId);

impl FromRequestParts<AppState> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let value = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or(ApiError::Unauthenticated("missing bearer token"))?;
        let token = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
            .ok_or(ApiError::Unauthenticated("missing bearer token"))?;
        let id = authenticate(state, token.trim()).await?;
        if let Some(info) = parts.extensions.get::<RequestInfo>() {
            info.set_identity(id);
        }
        state.limiters.check_identity(&id, state)?;
        Ok(Auth(id))
    }
}

/// Resolve a bearer token to its identity (cache, then storage).
pub async fn authenticate(state: &AppState, token: &str) -> ApiResult<IdentityId> {
    let raw: [u8; 32] = hex::decode(token)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or(ApiError::Unauthenticated("invalid token"))?;
    let hash = sha256(&raw);
    let now = now_ms();
    if let Some(id) = state.tokens.get(&hash, now) {
        return Ok(id);
    }
    // A revocation seen while the storage answers must not be undone by
    // caching the answer afterwards.
    let generation = state.tokens.generation();
    match state.storage.token(hash, now).await? {
        Some((id, expires)) => {
            state.tokens.put(generation, hash, id, expires, now);
            Ok(id)
        }
        None => Err(ApiError::Unauthenticated("unknown or expired token")),
    }
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

fn random32() -> ApiResult<[u8; 32]> {
    let mut out = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut out)
        .map_err(|_| ApiError::Unavailable)?;
    Ok(out)
}

fn ttl_ms(secs: u64) -> i64 {
    i64::try_from(secs.saturating_mul(1000)).unwrap_or(i64::MAX)
}

/// `POST /v1/auth/challenge`
pub(super) async fn challenge(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    body: axum::body::Body,
) -> ApiResult<Json<ChallengeResponse>> {
    state.limiters.check_ip(peer.ip(), &state)?;
    let req: ChallengeRequest = read_json(body, state.limits.small_body_bytes()).await?;
    let identity = req.identity;
    let challenge = random32()?;
    let ttl = state.limits.challenge_ttl_secs;
    state
        .storage
        .put_challenge(identity, challenge, now_ms().saturating_add(ttl_ms(ttl)))
        .await?;
    Ok(Json(ChallengeResponse {
        challenge: challenge.to_vec(),
        expires_in: ttl,
    }))
}

/// `POST /v1/auth/token`
pub(super) async fn token(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    body: axum::body::Body,
) -> ApiResult<(StatusCode, Json<TokenResponse>)> {
    state.limiters.check_ip(peer.ip(), &state)?;
    let req: TokenRequest = read_json(body, state.limits.small_body_bytes()).await?;
    let identity = req.identity;
    let challenge: [u8; 32] = req
        .challenge
        .as_slice()
        .try_into()
        .map_err(|_| ApiError::bad("challenge must be 32 bytes"))?;
    let signature = req.signature;
    // Consume the challenge first: any attempt, good or bad, uses it up.
    let now = now_ms();
    if !state
        .storage
        .take_challenge(identity, challenge, now)
        .await?
    {
        return Err(ApiError::Unauthenticated(
            "unknown, expired or already used challenge",
        ));
    }
    verify_signature(&identity, &signing_message(&challenge), &signature)
        .map_err(|_| ApiError::Unauthenticated("signature does not verify"))?;
    let raw = random32()?;
    let ttl = state.limits.token_ttl_secs;
    let expires = now.saturating_add(ttl_ms(ttl));
    state
        .storage
        .put_token(sha256(&raw), identity, expires)
        .await?;
    tracing::info!(identity = %identity.short(), "token issued");
    Ok((
        StatusCode::OK,
        Json(TokenResponse {
            token: hex::encode(raw),
            expires_in: ttl,
        }),
    ))
}

/// `POST /v1/records/{rid}/sessions/revoke`: an owner device of the
/// record ends every session of one of its members.
pub(super) async fn revoke_sessions(
    State(state): State<AppState>,
    Auth(caller): Auth,
    P(rid): P<String>,
    body: axum::body::Body,
) -> ApiResult<Json<RevokeSessionsResponse>> {
    let record = record_id(&rid)?;
    let access = super::records::require_member(&state, record, caller).await?;
    if access.role != MemberRole::OwnerDevice {
        return Err(ApiError::Forbidden(
            "only an owner device of the record may end sessions",
        ));
    }
    let req: RevokeSessionsRequest = read_json(body, state.limits.small_body_bytes()).await?;
    match state.storage.membership(record, req.identity).await? {
        Membership::Member(_) => {}
        Membership::NotMember | Membership::NoRecord => {
            return Err(ApiError::NotFound(
                "the identity is not a member of this record",
            ));
        }
    }
    let revoked = state
        .storage
        .revoke_sessions(req.identity, now_ms())
        .await?;
    // This instance at once; the others at their next poll.
    state.end_sessions(req.identity);
    tracing::info!(
        identity = %caller.short(),
        target = %req.identity.short(),
        revoked,
        "sessions revoked"
    );
    Ok(Json(RevokeSessionsResponse { revoked }))
}

/// How often each instance reads new session revocations.
pub const REVOCATION_POLL: Duration = Duration::from_millis(250);
/// How far back each poll reads (covers commit delays and clock skew
/// between instances).
const REVOCATION_WINDOW_MS: i64 = 30_000;

/// Poll the storage for session revocations (made on any instance) and
/// apply each once: drop the identity's cached tokens, close its
/// WebSockets. Runs until the relay stops.
pub async fn watch_revocations(state: AppState) {
    let mut seen: HashMap<Seq, i64> = HashMap::new();
    let mut tick = tokio::time::interval(REVOCATION_POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tick.tick().await;
        let now = now_ms();
        let since = now.saturating_sub(REVOCATION_WINDOW_MS);
        match state.storage.revocations_since(since).await {
            Ok(rows) => {
                failing = false;
                for r in rows {
                    if seen.insert(r.seq, r.at_ms).is_none() {
                        state.end_sessions(r.identity);
                    }
                }
            }
            Err(e) => {
                if !failing {
                    tracing::warn!(error = %e, "cannot read session revocations");
                }
                failing = true;
            }
        }
        seen.retain(|_, at| *at >= since);
    }
}

/// Validated tokens: hash → (identity, expiry).
#[derive(Default)]
pub struct TokenCache {
    map: Mutex<HashMap<[u8; 32], (IdentityId, i64)>>,
    /// Bumped by every revocation (see [`TokenCache::put`]).
    generation: AtomicU64,
}

const TOKEN_CACHE_MAX: usize = 100_000;

impl TokenCache {
    fn get(&self, hash: &[u8; 32], now: i64) -> Option<IdentityId> {
        let map = self.map.lock().ok()?;
        match map.get(hash) {
            Some(&(id, expires)) if expires > now => Some(id),
            _ => None,
        }
    }

    fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Cache a token looked up when the cache was at `generation`; not if
    /// a revocation came in since (the lookup may predate it).
    fn put(&self, generation: u64, hash: [u8; 32], id: IdentityId, expires: i64, now: i64) {
        if let Ok(mut map) = self.map.lock() {
            if self.generation.load(Ordering::Acquire) != generation {
                return;
            }
            if map.len() >= TOKEN_CACHE_MAX {
                map.retain(|_, (_, e)| *e > now);
                if map.len() >= TOKEN_CACHE_MAX {
                    map.clear();
                }
            }
            map.insert(hash, (id, expires));
        }
    }

    /// Forget every cached token of `id`.
    pub fn forget(&self, id: IdentityId) {
        if let Ok(mut map) = self.map.lock() {
            self.generation.fetch_add(1, Ordering::AcqRel);
            map.retain(|_, (who, _)| *who != id);
        }
    }

    /// Drop expired entries.
    pub fn prune(&self, now: i64) {
        if let Ok(mut map) = self.map.lock() {
            map.retain(|_, (_, e)| *e > now);
        }
    }
}

/// The rate limiters (absent when disabled).
pub struct Limiters {
    by_identity: Option<DefaultKeyedRateLimiter<IdentityId>>,
    by_ip: Option<DefaultKeyedRateLimiter<IpAddr>>,
    /// Public share-link routes, per link.
    by_share_link: Option<DefaultKeyedRateLimiter<ShareLinkHandle>>,
    /// Public share-link routes, per client address.
    by_share_ip: Option<DefaultKeyedRateLimiter<IpAddr>>,
}

impl Limiters {
    /// Build from the configuration.
    pub fn new(rate: RateLimit) -> Self {
        let quota = |per_second: u32, burst: u32| {
            NonZeroU32::new(per_second).map(|per| {
                Quota::per_second(per).allow_burst(NonZeroU32::new(burst).unwrap_or(per))
            })
        };
        Limiters {
            by_identity: quota(rate.per_second, rate.burst).map(RateLimiter::keyed),
            by_ip: quota(rate.auth_per_second, rate.auth_burst).map(RateLimiter::keyed),
            by_share_link: quota(rate.share_link_per_second, rate.share_link_burst)
                .map(RateLimiter::keyed),
            by_share_ip: quota(rate.share_ip_per_second, rate.share_ip_burst)
                .map(RateLimiter::keyed),
        }
    }

    fn refuse(state: &AppState, wait: std::time::Duration) -> ApiError {
        state.metrics.rate_limited();
        ApiError::RateLimited {
            retry_after_ms: u64::try_from(wait.as_millis()).unwrap_or(u64::MAX).max(1),
        }
    }

    /// Take one token from the identity's bucket.
    pub fn check_identity(&self, id: &IdentityId, state: &AppState) -> ApiResult<()> {
        match &self.by_identity {
            Some(l) => l
                .check_key(id)
                .map_err(|n| Self::refuse(state, n.wait_time_from(DefaultClock::default().now()))),
            None => Ok(()),
        }
    }

    /// Take one token from the peer address's bucket (auth endpoints).
    pub fn check_ip(&self, ip: IpAddr, state: &AppState) -> ApiResult<()> {
        match &self.by_ip {
            Some(l) => l
                .check_key(&ip)
                .map_err(|n| Self::refuse(state, n.wait_time_from(DefaultClock::default().now()))),
            None => Ok(()),
        }
    }

    /// Take one token from the link's bucket (public share-link routes).
    pub fn check_share_link(&self, handle: &ShareLinkHandle, state: &AppState) -> ApiResult<()> {
        match &self.by_share_link {
            Some(l) => l
                .check_key(handle)
                .map_err(|n| Self::refuse(state, n.wait_time_from(DefaultClock::default().now()))),
            None => Ok(()),
        }
    }

    /// Take one token from the client's bucket for the public share-link
    /// routes.
    pub fn check_share_ip(&self, ip: IpAddr, state: &AppState) -> ApiResult<()> {
        match &self.by_share_ip {
            Some(l) => l
                .check_key(&ip)
                .map_err(|n| Self::refuse(state, n.wait_time_from(DefaultClock::default().now()))),
            None => Ok(()),
        }
    }

    /// Forget idle buckets.
    pub fn prune(&self) {
        if let Some(l) = &self.by_share_link {
            l.retain_recent();
        }
        if let Some(l) = &self.by_share_ip {
            l.retain_recent();
        }
        if let Some(l) = &self.by_identity {
            l.retain_recent();
        }
        if let Some(l) = &self.by_ip {
            l.retain_recent();
        }
    }
}
