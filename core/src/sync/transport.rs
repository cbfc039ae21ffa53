//! The thin I/O shell around the engine: HTTP with reqwest on tokio, push
//! notifications over a WebSocket, and the loop that drives a round against
//! a profile. Both go over TLS ([`super::tls`]) except to a loopback relay
//! ([`RelayUrl`]).

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use serde::de::DeserializeOwned;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;

use super::engine::{Apply, Failure, Request, Response, RoundReport, Step, SyncEngine, SyncError};
use super::relay_url::{RelayUrl, RelayUrlError};
use super::tls::{self, RelayTrust, TlsError};
use super::wire::{
    self, AfterQuery, Endpoint, ErrorBody, PageQuery, PushMessage, RecordPath, SectionPath,
    TokenQuery,
};
use crate::ids::RecordId;
use crate::profile::{Profile, ProfileError};
use crate::store::{Owed, Store};

/// Errors of a sync round as the caller sees them.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error(transparent)]
    Sync(#[from] SyncError),
    #[error(transparent)]
    Profile(#[from] ProfileError),
    #[error(transparent)]
    BadUrl(#[from] RelayUrlError),
    #[error(transparent)]
    Tls(#[from] TlsError),
}

/// A connection to one relay (keeps the session token between rounds).
#[derive(Debug, Clone)]
pub struct RelayClient {
    http: reqwest::Client,
    url: RelayUrl,
    tls: Arc<rustls::ClientConfig>,
    token: Option<String>,
    max_attempts: u32,
}

/// How long an idle connection to the relay is kept for reuse: under the
/// relay's own idle bound (`ConnectionLimits::header_read_timeout`, 10 s).
const POOL_IDLE: Duration = Duration::from_secs(5);

/// The error code of a relay that the record's access log retires (the
/// record moved to another relay; docs/protocol.md).
pub const RECORD_MOVED: &str = "record_moved";

impl RelayClient {
    /// A client for the relay at `base` (e.g. `https://relay.example`, or
    /// `http://127.0.0.1:8787` on this machine), trusting the platform's
    /// certificate store. Plain `http://` elsewhere is refused
    /// ([`RelayUrl::parse`]).
    pub fn new(base: &str) -> Result<Self, TransportError> {
        Self::connect(&RelayUrl::parse(base)?, &RelayTrust::Platform)
    }

    /// A client for the relay at `url`, trusting `trust`.
    pub fn connect(url: &RelayUrl, trust: &RelayTrust) -> Result<Self, TransportError> {
        let tls = tls::client_config(trust)?;
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(60))
            // Below the relay's idle keep-alive bound (10 s, its header read
            // timeout): a connection the relay may be closing is never
            // reused, which failed requests as "connection failed".
            .pool_idle_timeout(POOL_IDLE)
            .use_preconfigured_tls(rustls::ClientConfig::clone(&tls))
            .build()
            .map_err(|e| TlsError::Setup(e.to_string()))?;
        Ok(Self {
            http,
            url: url.clone(),
            tls,
            token: None,
            max_attempts: 6,
        })
    }

    /// A client for the same relay that shares this one's connection
    /// pool and TLS set-up but not its session: one per record when a
    /// process syncs many records (the provider gateway), so they do not
    /// each open their own connections.
    pub fn sibling(&self) -> Self {
        Self {
            http: self.http.clone(),
            url: self.url.clone(),
            tls: self.tls.clone(),
            token: None,
            max_attempts: self.max_attempts,
        }
    }

    /// How often a failing request is tried within a round.
    pub fn with_max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = n.max(1);
        self
    }

    /// The relay's base URL.
    pub fn base(&self) -> &str {
        self.url.as_str()
    }

    /// The relay's address.
    pub fn url(&self) -> &RelayUrl {
        &self.url
    }

    /// The current session token, if authenticated.
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    pub(crate) fn set_token(&mut self, token: Option<String>) {
        self.token = token;
    }

    pub(crate) async fn call<T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&(impl serde::Serialize + ?Sized)>,
    ) -> Result<T, Failure> {
        let mut req = self.http.request(method, format!("{}{path}", self.url));
        if let Some(token) = &self.token {
            req = req.bearer_auth(token);
        }
        if let Some(body) = body {
            req = req.json(body);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| Failure::Offline(describe(&e)))?;
        let status = resp.status();
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| Failure::Offline(describe(&e)))?;
        if status.is_success() {
            // An empty 2xx body reads as JSON null.
            let bytes = if bytes.is_empty() {
                &b"null"[..]
            } else {
                &bytes[..]
            };
            return serde_json::from_slice(bytes).map_err(|_| Failure::Http {
                status: status.as_u16(),
                code: "bad_response".into(),
                message: "the relay's answer could not be read".into(),
                retry_after_ms: None,
            });
        }
        let err: Option<ErrorBody> = serde_json::from_slice(&bytes).ok();
        Err(Failure::Http {
            status: status.as_u16(),
            code: err
                .as_ref()
                .map(|e| e.error.clone())
                .unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_string()),
            message: err.as_ref().map(|e| e.message.clone()).unwrap_or_default(),
            retry_after_ms: err.and_then(|e| e.retry_after_ms),
        })
    }

    /// Call the endpoint `E` at `path` with `query` and `body`.
    pub(crate) async fn request<E: Endpoint>(
        &self,
        path: &E::Path<'_>,
        query: &E::Query,
        body: Option<&E::Request>,
    ) -> Result<E::Response, Failure> {
        let method = match E::METHOD {
            wire::Method::Get => reqwest::Method::GET,
            wire::Method::Post => reqwest::Method::POST,
            wire::Method::Put => reqwest::Method::PUT,
        };
        self.call(method, &E::uri(path, query), body).await
    }

    async fn execute(&self, record: RecordId, request: Request) -> Response {
        let rec = RecordPath(record);
        let result = match request {
            Request::Challenge(body) => self
                .request::<wire::Challenge>(&(), &(), Some(&body))
                .await
                .map(Response::Challenge),
            Request::Token(body) => self
                .request::<wire::Token>(&(), &(), Some(&body))
                .await
                .map(Response::Token),
            Request::Register(body) => self
                .request::<wire::Register>(&(), &(), Some(&body))
                .await
                .map(|_| Response::Registered),
            Request::Access { after } => self
                .request::<wire::Statements>(&rec, &AfterQuery { after }, None)
                .await
                .map(Response::Access),
            Request::Upload { section, envelopes } => {
                let body = wire::UploadRequest::new(&envelopes);
                self.request::<wire::Upload>(
                    &SectionPath::new(record, section.as_str()),
                    &(),
                    Some(&body),
                )
                .await
                .map(Response::Uploaded)
            }
            Request::Feed { after } => self
                .request::<wire::Feed>(&rec, &AfterQuery { after }, None)
                .await
                .map(Response::Feed),
            Request::Pull { section, after } => self
                .request::<wire::Pull>(
                    &SectionPath::new(record, section.as_str()),
                    &PageQuery {
                        after,
                        limit: Some(1000),
                    },
                    None,
                )
                .await
                .map(Response::Pulled),
            Request::Snapshot { section, body } => self
                .request::<wire::Snapshot>(
                    &SectionPath::new(record, section.as_str()),
                    &(),
                    Some(&body),
                )
                .await
                .map(|_| Response::SnapshotStored),
        };
        result.unwrap_or_else(Response::Failed)
    }

    /// One full sync round of `profile` with this relay. A relay the
    /// record moved away from refuses it with [`RECORD_MOVED`].
    pub async fn sync<S: Store>(
        &mut self,
        profile: &mut Profile<S>,
    ) -> Result<RoundReport, TransportError> {
        let mut report = self.round(profile, Owed::Outbox, &mut |_| {}).await?;
        // Live share links follow the record (docs/sharing-links.md).
        let (refreshed, stale) =
            super::share_links::refresh_live(self, profile, &report, crate::profile::now_ms())
                .await?;
        report.links_refreshed = refreshed;
        report.links_not_refreshed = stale;
        Ok(report)
    }

    /// A sync round that uploads everything `profile` holds that this
    /// relay has not acknowledged (moving the record here), not only its
    /// outbox. Relay snapshots the device holds are not uploaded as
    /// changes: the round uploads this device's own snapshot of those logs
    /// instead (where it may make one). The access log must be on the
    /// relay first ([`super::moving`]). `acknowledged(n)` is called as
    /// each batch of `n` envelopes is acknowledged (for progress).
    pub async fn sync_everything<S: Store>(
        &mut self,
        profile: &mut Profile<S>,
        acknowledged: &mut (dyn FnMut(usize) + Send),
    ) -> Result<RoundReport, TransportError> {
        self.round(profile, Owed::Everything, acknowledged).await
    }

    async fn round<S: Store>(
        &mut self,
        profile: &mut Profile<S>,
        owed: Owed,
        acknowledged: &mut (dyn FnMut(usize) + Send),
    ) -> Result<RoundReport, TransportError> {
        let mut state = profile.sync_state(self.url.as_str())?;
        if owed == Owed::Everything {
            for log in profile.owed_everything()?.1 {
                // Compacted on the old relay: snapshot it here as well.
                state
                    .since_snapshot
                    .insert(log, super::engine::SNAPSHOT_EVERY);
            }
        }
        let register = profile
            .is_creator()
            .then(|| profile.identity_card().clone());
        let mut engine = SyncEngine::new(
            profile.record_id(),
            profile.device_id(),
            register,
            self.token.clone(),
            state,
        )
        .with_max_attempts(self.max_attempts);
        let record = profile.record_id();
        let mut pending: Option<Step> = None;
        let (mut merged, mut refused) = (0, 0);
        loop {
            let step = match pending.take() {
                Some(step) => step,
                None => engine.poll(),
            };
            match step {
                Step::Send(request) => {
                    // Token requests and everything after carry the token the
                    // engine holds.
                    self.token = engine.token().map(str::to_string);
                    let response = self.execute(record, request).await;
                    pending = engine.on_response(response);
                    self.token = engine.token().map(str::to_string);
                }
                Step::Sign(message) => engine.signed(profile.sign(&message)),
                Step::Apply(apply) => {
                    match apply {
                        Apply::Access { statements, cursor } => {
                            profile.apply_access(statements, cursor)?;
                            // Before anything is uploaded: grants that have
                            // expired are ended by cryptography, not only by
                            // the relay's clock.
                            self.end_expired_grants(profile, cursor).await?;
                            // Before anything is uploaded: statements made
                            // through another relay (a device using several).
                            self.push_access_log(profile).await?;
                        }
                        Apply::ReadOutbox => {
                            engine.outbox_read(match owed {
                                Owed::Outbox => profile.outbox(usize::MAX)?,
                                Owed::Everything => profile.owed_everything()?.0,
                            });
                            continue;
                        }
                        Apply::SetAside {
                            section,
                            hash,
                            status,
                            reason,
                        } => {
                            tracing::warn!(
                                section = %section,
                                status,
                                "the relay refused a queued envelope for good; set aside"
                            );
                            profile.set_aside(section, hash, status, &reason)?
                        }
                        Apply::Acknowledge { acks } => {
                            profile.acknowledge(&acks)?;
                            acknowledged(acks.len());
                        }
                        Apply::Envelopes {
                            section,
                            from,
                            snapshot,
                            envelopes,
                            next,
                        } => {
                            let report = profile.apply_pulled(
                                section,
                                from == 0,
                                snapshot,
                                envelopes,
                                next,
                            )?;
                            merged += report.merged;
                            refused += report.rejected.len();
                            for rejected in report.rejected {
                                tracing::warn!(
                                    section = %section,
                                    seq = rejected.server_seq,
                                    author = ?rejected.author,
                                    reason = rejected.reason,
                                    "refused an envelope from the relay"
                                );
                            }
                        }
                        Apply::FeedCursor(cursor) => profile.set_feed_cursor(cursor)?,
                        Apply::Registered => profile.mark_registered()?,
                        Apply::MakeSnapshot { section, upto_seq } => {
                            let envelope = profile.relay_snapshot(section)?;
                            engine.snapshot_made(section, upto_seq, envelope);
                            continue;
                        }
                        Apply::SnapshotStored { section } => {
                            profile.relay_snapshot_stored(section)?
                        }
                    }
                    engine.applied();
                }
                Step::Wait(duration) => tokio::time::sleep(duration).await,
                Step::Finished(report) => {
                    profile.mark_synced(report.upstream)?;
                    return Ok(RoundReport {
                        merged,
                        refused,
                        ..report
                    });
                }
                Step::Failed(error) => {
                    match &error {
                        // The record moved to another relay: access goes on there.
                        SyncError::Refused { code, .. } if code == RECORD_MOVED => {}
                        SyncError::Refused { status: 403, .. } => {
                            // Revoked or expired: say so wherever this copy is shown.
                            profile.mark_access_ended()?;
                        }
                        _ => {}
                    }
                    return Err(error.into());
                }
            }
        }
    }

    /// On an owner device or a manager: revoke every grant that has
    /// expired (rotating its sections' keys), so the expired grantee reads
    /// nothing written afterwards even from a relay that ignores expiry.
    /// A statement the relay refuses fails the round (nothing is uploaded
    /// under the old keys); the next round tries again.
    async fn end_expired_grants<S: Store>(
        &mut self,
        profile: &mut Profile<S>,
        cursor: u64,
    ) -> Result<(), TransportError> {
        let expired = profile.expired_grants(crate::profile::now_ms());
        for identity in expired {
            let statement = profile.revoke_statement(&identity, None)?;
            self.publish(profile, statement, cursor).await?;
            tracing::info!(grantee = %identity, "expired grant ended; its sections' keys rotated");
        }
        Ok(())
    }

    /// Append on this relay the statements of `profile`'s access log it may
    /// lack (made through another relay), in order; one it holds already
    /// is answered `200`. A `409` means the logs diverged: the round fails.
    async fn push_access_log<S: Store>(
        &mut self,
        profile: &mut Profile<S>,
    ) -> Result<(), TransportError> {
        let missing = profile.access_log_to_push()?;
        if missing.is_empty() {
            return Ok(());
        }
        for statement in &missing {
            self.request::<wire::AppendStatement>(
                &RecordPath(profile.record_id()),
                &(),
                Some(statement),
            )
            .await
            .map_err(SyncError::from)?;
        }
        profile.access_log_pushed(profile.access_log()?.len())?;
        Ok(())
    }

    /// Publish a statement `profile` signed, then apply it there (with the
    /// access cursor `cursor`). A `409` means the log moved on: sync and
    /// make the statement again.
    pub async fn publish<S: Store>(
        &mut self,
        profile: &mut Profile<S>,
        statement: crate::sharing::SignedStatement,
        cursor: u64,
    ) -> Result<(), TransportError> {
        self.request::<wire::AppendStatement>(
            &RecordPath(profile.record_id()),
            &(),
            Some(&statement),
        )
        .await
        .map_err(SyncError::from)?;
        profile.apply_access(vec![statement], cursor)?;
        Ok(())
    }

    /// Open the push channel for `record`: yields the sections the relay
    /// reports changed. Ends when the connection drops.
    pub async fn subscribe(
        &self,
        record: RecordId,
    ) -> Result<impl futures_util::Stream<Item = (String, u64)>, TransportError> {
        let token = self
            .token
            .clone()
            .ok_or(TransportError::Sync(SyncError::Protocol))?;
        let url = format!(
            "{}{}",
            self.url.websocket(),
            wire::Subscribe::uri(&RecordPath(record), &TokenQuery { token })
        );
        let offline = |e: &(dyn std::error::Error + 'static)| {
            let why = tls::describe_failure(e).unwrap_or_else(|| e.to_string());
            TransportError::Sync(SyncError::Offline(why))
        };
        let request = url
            .as_str()
            .into_client_request()
            .map_err(|e| offline(&e))?;
        let (host, port) = {
            let uri = request.uri();
            let host = uri.host().unwrap_or_default().trim_matches(['[', ']']);
            let port = uri
                .port_u16()
                .unwrap_or(if self.url.is_tls() { 443 } else { 80 });
            (host.to_owned(), port)
        };
        let tcp = tokio::time::timeout(
            Duration::from_secs(5),
            tokio::net::TcpStream::connect((host.as_str(), port)),
        )
        .await
        .map_err(|_| TransportError::Sync(SyncError::Offline("timed out".into())))?
        .map_err(|e| offline(&e))?;
        let stream: Box<dyn Duplex> = if self.url.is_tls() {
            let name = rustls::pki_types::ServerName::try_from(host).map_err(|e| offline(&e))?;
            let tls = tokio_rustls::TlsConnector::from(Arc::clone(&self.tls))
                .connect(name, tcp)
                .await
                .map_err(|e| offline(&e))?;
            Box::new(tls)
        } else {
            Box::new(tcp)
        };
        let (socket, _) = tokio_tungstenite::client_async(request, stream)
            .await
            .map_err(|e| offline(&e))?;
        Ok(socket.filter_map(|msg| async move {
            let text = msg.ok()?.into_text().ok()?;
            match serde_json::from_str::<PushMessage>(&text).ok()? {
                PushMessage::Changed { section, seq } => Some((section, seq)),
                PushMessage::Other => None,
            }
        }))
    }
}

/// The byte stream under the WebSocket: TCP, or TLS over TCP.
trait Duplex: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Duplex for T {}

fn describe(e: &reqwest::Error) -> String {
    if let Some(why) = tls::describe_failure(e) {
        why
    } else if e.is_connect() {
        "connection refused".into()
    } else if e.is_timeout() {
        "timed out".into()
    } else {
        "connection failed".into()
    }
}
