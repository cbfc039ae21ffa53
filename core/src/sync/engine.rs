//! The sans-IO sync engine: a state machine for one sync round. It decides
//! what to send and what to apply; the driver ([`super::transport`]) does
//! the HTTP and the profile does the storage, and both report back.
//!
//! A round: authenticate (challenge, signature, token) → register the record
//! (creator device, once per relay) → fetch new access statements (the
//! profile applies them and re-seals any queued envelope whose key epoch
//! is no longer current) → read the outbox → upload it in batches → read
//! the feed → pull every changed section, and every section known to be
//! incomplete from its start, until caught up → upload compaction snapshots
//! for sections whose relay log grew past [`SNAPSHOT_EVERY`]. Transient
//! failures (offline, 5xx, 429) are retried with exponential backoff; an
//! expired token re-authenticates once. An envelope the relay refuses as
//! oversized or invalid (413, 422) is set aside, never blocking the rest of
//! the outbox: a refused batch is retried one envelope at a time, and a
//! single refused envelope is handed back with [`Apply::SetAside`].

use std::collections::VecDeque;
use std::time::Duration;

use super::wire::auth::signing_message;
use super::wire::{
    AccessResponse, ChallengeRequest, ChallengeResponse, FeedResponse, PullResponse,
    RegisterRequest, SnapshotRequest, TokenRequest, TokenResponse, UploadResponse,
};
use crate::crypto::IdentityCard;
use crate::ids::{IdentityId, RecordId};
use crate::sharing::SignedStatement;
use crate::store::OutboxItem;
use crate::sync::SyncState;
use satchel_protocol::LogName;

/// Envelopes per upload request (the relay accepts up to 1,000).
pub const UPLOAD_BATCH: usize = 500;
/// Bytes per upload request (the relay accepts up to 16 MiB).
pub const UPLOAD_BATCH_BYTES: usize = 8 * 1024 * 1024;
/// Upload a compaction snapshot once a section's relay log has grown by this
/// many envelopes since the last snapshot this device knows of.
pub const SNAPSHOT_EVERY: u64 = 256;
/// Domain prefix of the authentication signature (the protocol's).
pub use super::wire::AUTH_DOMAIN;

/// A request for the driver to send.
#[derive(Debug, Clone)]
pub enum Request {
    Challenge(ChallengeRequest),
    Token(TokenRequest),
    Register(RegisterRequest),
    Access {
        after: u64,
    },
    Upload {
        section: LogName,
        envelopes: Vec<Vec<u8>>,
    },
    Feed {
        after: u64,
    },
    Pull {
        section: LogName,
        after: u64,
    },
    Snapshot {
        section: LogName,
        body: SnapshotRequest,
    },
}

/// A failed request, as the driver saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// No answer: connection refused, reset, timed out.
    Offline(String),
    /// An HTTP error status with the relay's error body.
    Http {
        status: u16,
        code: String,
        message: String,
        retry_after_ms: Option<u64>,
    },
}

/// What the relay answered.
#[derive(Debug)]
pub enum Response {
    Challenge(ChallengeResponse),
    Token(TokenResponse),
    Registered,
    Access(AccessResponse),
    Uploaded(UploadResponse),
    Feed(FeedResponse),
    Pulled(PullResponse),
    SnapshotStored,
    Failed(Failure),
}

/// Work for the profile.
#[derive(Debug)]
pub enum Apply {
    /// New access statements (and the new access cursor). The profile
    /// applies them and re-seals queued envelopes whose epoch is stale.
    Access {
        statements: Vec<SignedStatement>,
        cursor: u64,
    },
    /// Read the outbox (after the access log was applied) and answer with
    /// [`SyncEngine::outbox_read`].
    ReadOutbox,
    /// The relay refused this queued envelope for good (oversized or
    /// invalid): keep it on the device, out of the outbox.
    SetAside {
        section: LogName,
        hash: [u8; 32],
        status: u16,
        reason: String,
    },
    /// The relay holds these envelopes (hash, relay sequence).
    Acknowledge { acks: Vec<([u8; 32], u64)> },
    /// Merge pulled envelopes of a log and advance its cursor. `from`
    /// is the cursor the pull started after (0: from the log's start).
    Envelopes {
        section: LogName,
        from: u64,
        snapshot: Option<(u64, Vec<u8>)>,
        envelopes: Vec<(u64, Vec<u8>)>,
        next: u64,
    },
    /// Advance the feed cursor.
    FeedCursor(u64),
    /// The record is registered with the relay.
    Registered,
    /// Build a compaction snapshot of a section (answer with
    /// [`SyncEngine::snapshot_made`]).
    MakeSnapshot { section: LogName, upto_seq: u64 },
    /// The relay stored our snapshot of the section.
    SnapshotStored { section: LogName },
}

/// The next thing the driver must do.
#[derive(Debug)]
pub enum Step {
    Send(Request),
    /// Sign `AUTH_DOMAIN || challenge` with the device key and call
    /// [`SyncEngine::signed`].
    Sign(Vec<u8>),
    Apply(Apply),
    /// Wait, then call [`SyncEngine::poll`] again (backoff).
    Wait(Duration),
    Finished(RoundReport),
    Failed(SyncError),
}

/// What a round did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoundReport {
    pub uploaded: usize,
    /// Of `uploaded`, envelopes the relay already held (a round that
    /// failed after the relay stored them, then sent them again): stored,
    /// so acknowledged like the others.
    pub duplicates: usize,
    /// Queued envelopes the relay refused for good, set aside.
    pub set_aside: usize,
    /// Envelopes pulled (including this device's own, echoed back).
    pub pulled: usize,
    /// Pulled envelopes that were new here and merged (filled in by the
    /// driver, which applies them).
    pub merged: usize,
    /// Pulled envelopes refused (bad signature, not a member, ...).
    pub refused: usize,
    pub sections_pulled: Vec<LogName>,
    pub snapshots_uploaded: usize,
    pub retries: u32,
    /// When the relay is a replica of the record's home relay: when it
    /// last reached it (from the feed). `None`: the relay is the home.
    pub upstream: Option<satchel_protocol::wire::UpstreamReach>,
    /// Live share links of this device whose files were replaced after the
    /// round (filled in by the driver).
    pub links_refreshed: usize,
    /// Live share links whose new files the relay did not take (they keep
    /// the older files until a later round).
    pub links_not_refreshed: usize,
}

/// Why a round stopped. Local data is never lost: the outbox keeps every
/// unacknowledged change for the next round.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SyncError {
    #[error("the relay could not be reached ({0}); changes stay queued and will be sent later")]
    Offline(String),
    #[error("the relay refused the request: {status} {code}: {message}")]
    Refused {
        status: u16,
        code: String,
        message: String,
    },
    #[error("the relay answered something unexpected")]
    Protocol,
}

impl From<Failure> for SyncError {
    fn from(failure: Failure) -> Self {
        match failure {
            Failure::Offline(m) => SyncError::Offline(m),
            Failure::Http {
                status,
                code,
                message,
                ..
            } => SyncError::Refused {
                status,
                code,
                message,
            },
        }
    }
}

#[derive(Debug)]
enum Phase {
    Start,
    Challenge,
    Sign,
    Token,
    Register,
    Access,
    Outbox,
    Upload,
    Feed,
    Pull,
    Snapshots,
    Done,
}

/// One sync round.
#[derive(Debug)]
pub struct SyncEngine {
    record: RecordId,
    identity: IdentityId,
    register: Option<IdentityCard>,
    token: Option<String>,
    state: SyncState,
    outbox: VecDeque<OutboxItem>,
    /// Envelopes at the outbox's front to upload one per request (a batch
    /// holding them was refused: find which).
    solo: usize,
    to_pull: VecDeque<LogName>,
    /// The feed cursor the relay answered, stored only once every section
    /// it listed is pulled: stored before, a round cut off mid-pull would
    /// never be told about those sections again.
    feed_done: Option<u64>,
    to_snapshot: VecDeque<(LogName, u64)>,
    phase: Phase,
    /// The request in flight, kept for a retry.
    in_flight: Option<Request>,
    /// Whether a step handed to the driver awaits its answer.
    waiting: bool,
    challenge: Vec<u8>,
    signature: Option<[u8; 64]>,
    attempts: u32,
    max_attempts: u32,
    reauthenticated: bool,
    report: RoundReport,
}

fn backoff(attempt: u32) -> Duration {
    // 100 ms, 200 ms, 400 ms, ... capped at 30 s.
    Duration::from_millis((100u64 << attempt.min(9)).min(30_000))
}

impl SyncEngine {
    /// A round for `record` as `identity`. `register` is the creator
    /// device's card when the relay does not know the record yet. The
    /// outbox is read after the access log is applied ([`Apply::ReadOutbox`]).
    pub fn new(
        record: RecordId,
        identity: IdentityId,
        register: Option<IdentityCard>,
        token: Option<String>,
        state: SyncState,
    ) -> Self {
        Self {
            record,
            identity,
            register,
            token,
            state,
            outbox: VecDeque::new(),
            solo: 0,
            to_pull: VecDeque::new(),
            feed_done: None,
            to_snapshot: VecDeque::new(),
            phase: Phase::Start,
            in_flight: None,
            waiting: false,
            challenge: Vec::new(),
            signature: None,
            attempts: 0,
            max_attempts: 6,
            reauthenticated: false,
            report: RoundReport::default(),
        }
    }

    /// How many times a failing request is tried before the round fails.
    pub fn with_max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = n.max(1);
        self
    }

    /// The token obtained during the round (to reuse in the next one).
    pub fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }

    /// The record being synced.
    pub fn record(&self) -> RecordId {
        self.record
    }

    fn send(&mut self, request: Request) -> Step {
        self.waiting = true;
        self.in_flight = Some(request.clone());
        Step::Send(request)
    }

    fn apply(&mut self, apply: Apply) -> Step {
        self.waiting = true;
        Step::Apply(apply)
    }

    /// The next step. Call again after each step's answer was given.
    pub fn poll(&mut self) -> Step {
        if self.waiting {
            // Resend what is in flight (after a Wait).
            if let Some(request) = self.in_flight.clone() {
                return Step::Send(request);
            }
        }
        loop {
            match self.phase {
                Phase::Start => {
                    self.phase = if self.token.is_some() {
                        Phase::Register
                    } else {
                        Phase::Challenge
                    };
                }
                Phase::Challenge => {
                    return self.send(Request::Challenge(ChallengeRequest {
                        identity: self.identity,
                    }));
                }
                Phase::Sign => {
                    self.waiting = true;
                    return Step::Sign(signing_message(&self.challenge));
                }
                Phase::Token => {
                    let Some(signature) = self.signature else {
                        self.phase = Phase::Sign;
                        continue;
                    };
                    return self.send(Request::Token(TokenRequest::signed(
                        self.identity,
                        &self.challenge,
                        &signature,
                    )));
                }
                Phase::Register => match (&self.register, self.state.registered) {
                    (Some(card), false) => {
                        let body = RegisterRequest {
                            record_id: self.record,
                            owner: card.clone(),
                        };
                        return self.send(Request::Register(body));
                    }
                    _ => self.phase = Phase::Access,
                },
                Phase::Access => {
                    return self.send(Request::Access {
                        after: self.state.access_cursor,
                    });
                }
                Phase::Outbox => {
                    return self.apply(Apply::ReadOutbox);
                }
                Phase::Upload => {
                    let Some(first) = self.outbox.front() else {
                        self.phase = Phase::Feed;
                        continue;
                    };
                    let section = first.section;
                    let mut envelopes = Vec::new();
                    let mut bytes = 0;
                    while let Some(item) = self.outbox.front() {
                        if item.section != section
                            || (self.solo > 0 && !envelopes.is_empty())
                            || envelopes.len() == UPLOAD_BATCH
                            || (!envelopes.is_empty()
                                && bytes + item.envelope.len() > UPLOAD_BATCH_BYTES)
                        {
                            break;
                        }
                        bytes += item.envelope.len();
                        if let Some(item) = self.outbox.pop_front() {
                            envelopes.push(item.envelope);
                        }
                    }
                    self.solo = self.solo.saturating_sub(1);
                    return self.send(Request::Upload { section, envelopes });
                }
                Phase::Feed => {
                    return self.send(Request::Feed {
                        after: self.state.feed_cursor,
                    });
                }
                Phase::Pull => {
                    let Some(section) = self.to_pull.front().copied() else {
                        self.phase = Phase::Snapshots;
                        if let Some(cursor) = self.feed_done.take() {
                            // Every listed section is pulled: the feed
                            // cursor may move past them now.
                            self.state.feed_cursor = cursor;
                            return self.apply(Apply::FeedCursor(cursor));
                        }
                        continue;
                    };
                    let after = self.state.cursors.get(&section).copied().unwrap_or(0);
                    return self.send(Request::Pull { section, after });
                }
                Phase::Snapshots => {
                    let Some((section, upto_seq)) = self.to_snapshot.pop_front() else {
                        self.phase = Phase::Done;
                        continue;
                    };
                    return self.apply(Apply::MakeSnapshot { section, upto_seq });
                }
                Phase::Done => {
                    return Step::Finished(std::mem::take(&mut self.report));
                }
            }
        }
    }

    /// The outbox asked for by [`Apply::ReadOutbox`]: every unacknowledged
    /// local change, oldest first.
    pub fn outbox_read(&mut self, outbox: Vec<OutboxItem>) {
        self.outbox = outbox.into();
        self.waiting = false;
        self.phase = Phase::Upload;
    }

    /// The signature asked for by [`Step::Sign`].
    pub fn signed(&mut self, signature: [u8; 64]) {
        self.signature = Some(signature);
        self.waiting = false;
        self.phase = Phase::Token;
    }

    /// The profile applied the last [`Step::Apply`] successfully.
    pub fn applied(&mut self) {
        self.waiting = false;
    }

    /// The snapshot asked for by [`Apply::MakeSnapshot`] (`None`: nothing
    /// to snapshot).
    pub fn snapshot_made(&mut self, section: LogName, upto_seq: u64, envelope: Option<Vec<u8>>) {
        self.waiting = false;
        if let Some(envelope) = envelope {
            self.send(Request::Snapshot {
                section,
                body: SnapshotRequest { upto_seq, envelope },
            });
            // `send` marked the request in flight; the driver gets it from poll.
        }
    }

    /// The relay's answer to the request in flight. Returns a step to take
    /// before polling again (an application of the answer, a wait, or a
    /// failure), or `None` to poll right away.
    pub fn on_response(&mut self, response: Response) -> Option<Step> {
        let request = self.in_flight.take();
        self.waiting = false;
        let Some(request) = request else {
            return Some(Step::Failed(SyncError::Protocol));
        };
        if let Response::Failed(failure) = response {
            return self.on_failure(request, failure);
        }
        self.attempts = 0;
        match (request, response) {
            (Request::Challenge(_), Response::Challenge(c)) => {
                self.challenge = c.challenge;
                self.phase = Phase::Sign;
                None
            }
            (Request::Token(_), Response::Token(t)) => {
                self.token = Some(t.token);
                self.phase = Phase::Register;
                None
            }
            (Request::Register(_), Response::Registered) => {
                self.state.registered = true;
                self.phase = Phase::Access;
                Some(self.apply(Apply::Registered))
            }
            (Request::Access { .. }, Response::Access(a)) => {
                self.phase = Phase::Outbox;
                let cursor = a
                    .statements
                    .iter()
                    .map(|s| s.seq)
                    .max()
                    .unwrap_or(self.state.access_cursor)
                    .max(self.state.access_cursor);
                self.state.access_cursor = cursor;
                let statements: Vec<SignedStatement> =
                    a.statements.into_iter().map(|e| e.signed).collect();
                Some(self.apply(Apply::Access { statements, cursor }))
            }
            (Request::Upload { section, envelopes }, Response::Uploaded(u)) => {
                self.report.uploaded += envelopes.len();
                // Duplicates are envelopes the relay already held: stored,
                // so acknowledged with the rest (their `accepted` entry
                // carries the position they were first stored at).
                let duplicates = usize::try_from(u.duplicates).unwrap_or(usize::MAX);
                if duplicates > u.accepted.len() {
                    return Some(Step::Failed(SyncError::Protocol));
                }
                if duplicates > 0 {
                    self.report.duplicates += duplicates;
                    tracing::info!(
                        section = %section,
                        duplicates,
                        "the relay already held some of the uploaded envelopes; acknowledged"
                    );
                }
                let acks = u.accepted.into_iter().map(|a| (a.hash, a.seq)).collect();
                // Stay in Upload until the outbox is empty.
                Some(self.apply(Apply::Acknowledge { acks }))
            }
            (Request::Feed { .. }, Response::Feed(f)) => {
                self.report.upstream = f.upstream;
                for s in f.sections {
                    // The relay's log names: parsed once, here. One this
                    // device does not know is skipped (never pulled), so it
                    // cannot hold up the others; the name is not logged.
                    let Ok(log) = s.section.parse::<LogName>() else {
                        tracing::warn!("the relay's feed names an unknown log; skipped");
                        continue;
                    };
                    let cursor = self.state.cursors.get(&log).copied().unwrap_or(0);
                    if s.seq > cursor && !self.to_pull.contains(&log) {
                        self.to_pull.push_back(log);
                    }
                }
                // Logs known to be incomplete are pulled again from their
                // start, changed or not (sync_state set their cursor to 0),
                // in the order of their names.
                let mut repull: Vec<LogName> = self.state.repull.iter().copied().collect();
                repull.sort_by_key(|log| log.as_str());
                for log in repull {
                    if !self.to_pull.contains(&log) {
                        self.to_pull.push_back(log);
                    }
                }
                let cursor = f.cursor.max(self.state.feed_cursor);
                self.feed_done = (cursor > self.state.feed_cursor).then_some(cursor);
                self.phase = Phase::Pull;
                None
            }
            (Request::Pull { section, after }, Response::Pulled(p)) => {
                let snapshot = p.snapshot.map(|s| (s.upto_seq, s.envelope));
                if snapshot.is_some() {
                    // Someone compacted: our count restarts from their snapshot.
                    self.state.since_snapshot.remove(&section);
                }
                let envelopes: Vec<(u64, Vec<u8>)> = p
                    .envelopes
                    .into_iter()
                    .map(|e| (e.seq, e.envelope))
                    .collect();
                let count = envelopes.len() + usize::from(snapshot.is_some());
                self.report.pulled += count;
                if count > 0 && !self.report.sections_pulled.contains(&section) {
                    self.report.sections_pulled.push(section);
                }
                let since = self.state.since_snapshot.entry(section).or_default();
                *since += envelopes.len() as u64;
                let next = p
                    .next
                    .max(self.state.cursors.get(&section).copied().unwrap_or(0));
                self.state.cursors.insert(section, next);
                if !p.more {
                    self.to_pull.pop_front();
                    if *since >= SNAPSHOT_EVERY {
                        self.to_snapshot.push_back((section, next));
                    }
                }
                Some(self.apply(Apply::Envelopes {
                    section,
                    from: after,
                    snapshot,
                    envelopes,
                    next,
                }))
            }
            (Request::Snapshot { section, .. }, Response::SnapshotStored) => {
                self.report.snapshots_uploaded += 1;
                self.state.since_snapshot.remove(&section);
                Some(self.apply(Apply::SnapshotStored { section }))
            }
            _ => Some(Step::Failed(SyncError::Protocol)),
        }
    }

    fn on_failure(&mut self, request: Request, failure: Failure) -> Option<Step> {
        match &failure {
            Failure::Http { status: 401, .. }
                if !self.reauthenticated && !matches!(request, Request::Token(_)) =>
            {
                // Token expired: authenticate again, then go on from
                // registration (cursors and queues are kept).
                self.reauthenticated = true;
                self.token = None;
                self.signature = None;
                self.requeue(request);
                self.phase = Phase::Challenge;
                None
            }
            Failure::Http { status: 409, .. } if matches!(request, Request::Snapshot { .. }) => {
                // Someone stored a newer snapshot: nothing to do.
                None
            }
            Failure::Http {
                status: status @ (413 | 422),
                message,
                ..
            } if matches!(request, Request::Upload { .. }) => {
                let (status, message) = (*status, message.clone());
                let Request::Upload { section, envelopes } = request else {
                    return Some(Step::Failed(SyncError::Protocol));
                };
                if envelopes.len() > 1 {
                    // Find the culprit: the same envelopes, one per request.
                    self.solo = envelopes.len();
                    self.push_front(section, envelopes);
                    return None;
                }
                let hash = envelopes
                    .first()
                    .map(|e| crate::store::envelope_hash(e))
                    .unwrap_or_default();
                self.report.set_aside += 1;
                Some(self.apply(Apply::SetAside {
                    section,
                    hash,
                    status,
                    reason: message,
                }))
            }
            Failure::Http {
                status,
                retry_after_ms,
                ..
            } if *status == 429 || *status >= 500 => {
                let wait = retry_after_ms
                    .map(Duration::from_millis)
                    .unwrap_or_else(|| backoff(self.attempts));
                self.retry(request, failure, wait)
            }
            Failure::Offline(_) => {
                let wait = backoff(self.attempts);
                self.retry(request, failure, wait)
            }
            Failure::Http {
                status,
                code,
                message,
                ..
            } => Some(Step::Failed(SyncError::Refused {
                status: *status,
                code: code.clone(),
                message: message.clone(),
            })),
        }
    }

    fn retry(&mut self, request: Request, failure: Failure, wait: Duration) -> Option<Step> {
        self.attempts += 1;
        if self.attempts >= self.max_attempts {
            return Some(Step::Failed(failure.into()));
        }
        self.report.retries += 1;
        self.in_flight = Some(request);
        self.waiting = true;
        Some(Step::Wait(wait))
    }

    /// Put an upload batch back at the front of the outbox.
    fn push_front(&mut self, section: LogName, envelopes: Vec<Vec<u8>>) {
        for envelope in envelopes.into_iter().rev() {
            let hash = crate::store::envelope_hash(&envelope);
            self.outbox.push_front(OutboxItem {
                seq: 0,
                section,
                envelope,
                hash,
            });
        }
    }

    /// Put a request back so it is redone after re-authentication.
    fn requeue(&mut self, request: Request) {
        match request {
            Request::Upload { section, envelopes } => self.push_front(section, envelopes),
            Request::Snapshot { section, body } => {
                self.to_snapshot.push_front((section, body.upto_seq));
            }
            // Other requests are recomputed from the phase.
            _ => {}
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::wire::{Accepted, AccessResponse, FeedSection, PulledEnvelope};
    use super::*;
    use crate::crypto::{Identity, Role};

    fn item(section: &str, n: u8) -> OutboxItem {
        OutboxItem {
            seq: u64::from(n),
            section: section.parse().unwrap(),
            envelope: vec![n; 10],
            hash: crate::store::envelope_hash(&[n; 10]),
        }
    }

    fn engine(register: bool) -> SyncEngine {
        let id = Identity::generate("d", Role::PatientDevice, None).unwrap();
        SyncEngine::new(
            RecordId::random(),
            id.id(),
            register.then(|| id.card().clone()),
            None,
            SyncState::default(),
        )
    }

    /// Drive through authentication, answering the challenge and signature.
    fn authenticate(e: &mut SyncEngine) {
        assert!(matches!(e.poll(), Step::Send(Request::Challenge(_))));
        assert!(e
            .on_response(Response::Challenge(ChallengeResponse {
                challenge: vec![7; 32],
                expires_in: 60,
            }))
            .is_none());
        match e.poll() {
            Step::Sign(msg) => {
                assert!(msg.starts_with(AUTH_DOMAIN));
                e.signed([1; 64]);
            }
            other => panic!("expected Sign, got {other:?}"),
        }
        assert!(matches!(e.poll(), Step::Send(Request::Token(_))));
        assert!(e
            .on_response(Response::Token(TokenResponse {
                token: "t".into(),
                expires_in: 900
            }))
            .is_none());
    }

    fn expect_apply(step: Option<Step>, e: &mut SyncEngine) -> Apply {
        match step {
            Some(Step::Apply(a)) => {
                e.applied();
                a
            }
            other => panic!("expected Apply, got {other:?}"),
        }
    }

    /// Answer the access request with nothing new, then the outbox read.
    fn after_access(e: &mut SyncEngine, outbox: &[OutboxItem]) {
        expect_apply(e.on_response(empty_access()), e);
        match e.poll() {
            Step::Apply(Apply::ReadOutbox) => e.outbox_read(outbox.to_vec()),
            other => panic!("expected ReadOutbox, got {other:?}"),
        }
    }

    fn empty_access() -> Response {
        Response::Access(AccessResponse {
            statements: vec![],
            more: false,
        })
    }

    #[test]
    fn full_round_in_order() {
        let outbox = vec![item("labs", 1), item("labs", 2), item("vitals", 3)];
        let mut e = engine(true);
        authenticate(&mut e);
        assert_eq!(e.token(), Some("t"));
        assert!(matches!(e.poll(), Step::Send(Request::Register(_))));
        let a = e.on_response(Response::Registered);
        assert!(matches!(expect_apply(a, &mut e), Apply::Registered));
        assert!(matches!(e.poll(), Step::Send(Request::Access { after: 0 })));
        after_access(&mut e, &outbox);
        // Uploads are batched per section, in outbox order.
        match e.poll() {
            Step::Send(Request::Upload { section, envelopes }) => {
                assert_eq!(section.as_str(), "labs");
                assert_eq!(envelopes.len(), 2);
            }
            other => panic!("{other:?}"),
        }
        let acks = e.on_response(Response::Uploaded(UploadResponse {
            accepted: vec![
                Accepted {
                    hash: item("labs", 1).hash,
                    seq: 10,
                },
                Accepted {
                    hash: item("labs", 2).hash,
                    seq: 11,
                },
            ],
            duplicates: 0,
        }));
        match expect_apply(acks, &mut e) {
            Apply::Acknowledge { acks } => assert_eq!(acks[1], (item("labs", 2).hash, 11)),
            other => panic!("{other:?}"),
        }
        match e.poll() {
            Step::Send(Request::Upload { section, .. }) => assert_eq!(section.as_str(), "vitals"),
            other => panic!("{other:?}"),
        }
        expect_apply(
            e.on_response(Response::Uploaded(UploadResponse {
                accepted: vec![],
                duplicates: 0,
            })),
            &mut e,
        );
        assert!(matches!(e.poll(), Step::Send(Request::Feed { after: 0 })));
        let feed = e.on_response(Response::Feed(FeedResponse {
            sections: vec![FeedSection {
                section: "labs".into(),
                seq: 12,
            }],
            cursor: 12,
            upstream: None,
        }));
        // The feed cursor is stored only after the pulls it listed.
        assert!(feed.is_none());
        assert!(matches!(
            e.poll(),
            Step::Send(Request::Pull { after: 0, .. })
        ));
        // Two pages.
        let page = |seq, more| {
            Response::Pulled(PullResponse {
                snapshot: None,
                envelopes: vec![PulledEnvelope {
                    seq,
                    envelope: vec![seq as u8],
                }],
                next: seq,
                more,
            })
        };
        expect_apply(e.on_response(page(11, true)), &mut e);
        assert!(matches!(
            e.poll(),
            Step::Send(Request::Pull { after: 11, .. })
        ));
        expect_apply(e.on_response(page(12, false)), &mut e);
        assert!(matches!(e.poll(), Step::Apply(Apply::FeedCursor(12))));
        e.applied();
        match e.poll() {
            Step::Finished(report) => {
                assert_eq!(report.uploaded, 3);
                assert_eq!(report.pulled, 2);
                let pulled: Vec<String> = report
                    .sections_pulled
                    .iter()
                    .map(|l| l.as_str().to_string())
                    .collect();
                assert_eq!(pulled, vec!["labs".to_string()]);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn offline_retries_with_backoff_then_fails_keeping_the_outbox() {
        let mut e = engine(false).with_max_attempts(3);
        assert!(matches!(e.poll(), Step::Send(Request::Challenge(_))));
        let mut waits = Vec::new();
        loop {
            match e.on_response(Response::Failed(Failure::Offline("refused".into()))) {
                Some(Step::Wait(d)) => {
                    waits.push(d);
                    // After the wait the same request is sent again.
                    assert!(matches!(e.poll(), Step::Send(Request::Challenge(_))));
                }
                Some(Step::Failed(SyncError::Offline(_))) => break,
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(
            waits,
            vec![Duration::from_millis(100), Duration::from_millis(200)]
        );
    }

    #[test]
    fn server_errors_and_rate_limits_are_retried() {
        let outbox = vec![];
        let mut e = engine(false);
        authenticate(&mut e);
        assert!(matches!(e.poll(), Step::Send(Request::Access { .. })));
        let busy = Failure::Http {
            status: 429,
            code: "rate_limited".into(),
            message: String::new(),
            retry_after_ms: Some(1234),
        };
        assert!(matches!(
            e.on_response(Response::Failed(busy)),
            Some(Step::Wait(d)) if d == Duration::from_millis(1234)
        ));
        assert!(matches!(e.poll(), Step::Send(Request::Access { .. })));
        let down = Failure::Http {
            status: 503,
            code: "unavailable".into(),
            message: String::new(),
            retry_after_ms: None,
        };
        assert!(matches!(
            e.on_response(Response::Failed(down)),
            Some(Step::Wait(_))
        ));
        assert!(matches!(e.poll(), Step::Send(Request::Access { .. })));
        after_access(&mut e, &outbox);
    }

    #[test]
    fn expired_token_reauthenticates_and_resends_the_batch() {
        let outbox = vec![item("labs", 1)];
        let mut e = engine(false);
        authenticate(&mut e);
        assert!(matches!(e.poll(), Step::Send(Request::Access { .. })));
        after_access(&mut e, &outbox);
        assert!(matches!(e.poll(), Step::Send(Request::Upload { .. })));
        let expired = Failure::Http {
            status: 401,
            code: "unauthenticated".into(),
            message: String::new(),
            retry_after_ms: None,
        };
        assert!(e.on_response(Response::Failed(expired.clone())).is_none());
        authenticate(&mut e);
        assert!(matches!(e.poll(), Step::Send(Request::Access { .. })));
        after_access(&mut e, &outbox);
        match e.poll() {
            Step::Send(Request::Upload { envelopes, .. }) => {
                assert_eq!(envelopes, vec![vec![1; 10]])
            }
            other => panic!("{other:?}"),
        }
        // A second 401 in the same round is a failure, not a loop.
        assert!(matches!(
            e.on_response(Response::Failed(expired)),
            Some(Step::Failed(SyncError::Refused { status: 401, .. }))
        ));
    }

    #[test]
    fn refusals_fail_the_round() {
        let outbox = vec![item("labs", 1)];
        let mut e = engine(false);
        authenticate(&mut e);
        assert!(matches!(e.poll(), Step::Send(Request::Access { .. })));
        after_access(&mut e, &outbox);
        assert!(matches!(e.poll(), Step::Send(Request::Upload { .. })));
        let forbidden = Failure::Http {
            status: 403,
            code: "forbidden".into(),
            message: "no write access".into(),
            retry_after_ms: None,
        };
        assert!(matches!(
            e.on_response(Response::Failed(forbidden)),
            Some(Step::Failed(SyncError::Refused { status: 403, .. }))
        ));
    }

    fn rejected(status: u16) -> Response {
        Response::Failed(Failure::Http {
            status,
            code: "rejected".into(),
            message: "envelope 1 is too large".into(),
            retry_after_ms: None,
        })
    }

    fn upload_of(e: &mut SyncEngine) -> Vec<Vec<u8>> {
        match e.poll() {
            Step::Send(Request::Upload { envelopes, .. }) => envelopes,
            other => panic!("expected an upload, got {other:?}"),
        }
    }

    fn accepted(envelopes: &[Vec<u8>]) -> Response {
        Response::Uploaded(UploadResponse {
            accepted: envelopes
                .iter()
                .map(|b| Accepted {
                    hash: crate::store::envelope_hash(b),
                    seq: 1,
                })
                .collect(),
            duplicates: 0,
        })
    }

    #[test]
    fn duplicates_the_relay_already_held_are_acknowledged_and_counted() {
        // A round stored the batch on the relay, then failed before the
        // acknowledgement was applied: the next round sends it again and
        // the relay answers with the same positions, as duplicates.
        let outbox = vec![item("labs", 1), item("labs", 2), item("labs", 3)];
        let mut e = engine(false);
        authenticate(&mut e);
        assert!(matches!(e.poll(), Step::Send(Request::Access { .. })));
        after_access(&mut e, &outbox);
        let sent = upload_of(&mut e);
        assert_eq!(sent.len(), 3);
        let answer = Response::Uploaded(UploadResponse {
            accepted: sent
                .iter()
                .enumerate()
                .map(|(i, b)| Accepted {
                    hash: crate::store::envelope_hash(b),
                    seq: 40 + i as u64,
                })
                .collect(),
            duplicates: 2,
        });
        match expect_apply(e.on_response(answer), &mut e) {
            Apply::Acknowledge { acks } => {
                let expected: Vec<([u8; 32], u64)> = outbox
                    .iter()
                    .enumerate()
                    .map(|(i, it)| (it.hash, 40 + i as u64))
                    .collect();
                assert_eq!(acks, expected, "duplicates are acknowledged too");
            }
            other => panic!("expected Acknowledge, got {other:?}"),
        }
        assert_eq!(e.report.duplicates, 2);
        assert_eq!(e.report.uploaded, 3);
        // Nothing is sent again: the next request is the feed.
        assert!(matches!(e.poll(), Step::Send(Request::Feed { .. })));
        // More duplicates than envelopes is not an answer a relay gives.
        let mut e = engine(false);
        authenticate(&mut e);
        assert!(matches!(e.poll(), Step::Send(Request::Access { .. })));
        after_access(&mut e, &outbox[..1]);
        upload_of(&mut e);
        let bad = e.on_response(Response::Uploaded(UploadResponse {
            accepted: vec![],
            duplicates: 1,
        }));
        assert!(matches!(bad, Some(Step::Failed(SyncError::Protocol))));
    }

    #[test]
    fn a_refused_envelope_is_set_aside_and_never_blocks_the_rest() {
        let outbox = vec![item("labs", 1), item("labs", 2), item("labs", 3)];
        let mut e = engine(false);
        authenticate(&mut e);
        assert!(matches!(e.poll(), Step::Send(Request::Access { .. })));
        after_access(&mut e, &outbox);
        // The batch is refused: the same envelopes go one per request.
        assert_eq!(upload_of(&mut e).len(), 3);
        assert!(e.on_response(rejected(413)).is_none());
        let first = upload_of(&mut e);
        assert_eq!(first, vec![vec![1; 10]]);
        expect_apply(e.on_response(accepted(&first)), &mut e);
        assert_eq!(upload_of(&mut e), vec![vec![2; 10]]);
        match expect_apply(e.on_response(rejected(422)), &mut e) {
            Apply::SetAside {
                section,
                hash,
                status,
                ..
            } => {
                assert_eq!((section.as_str(), status), ("labs", 422));
                assert_eq!(hash, item("labs", 2).hash);
            }
            other => panic!("{other:?}"),
        }
        let third = upload_of(&mut e);
        assert_eq!(third, vec![vec![3; 10]]);
        expect_apply(e.on_response(accepted(&third)), &mut e);
        assert!(matches!(e.poll(), Step::Send(Request::Feed { .. })));
    }

    #[test]
    fn incomplete_logs_are_pulled_from_their_start() {
        let id = Identity::generate("d", Role::PatientDevice, None).unwrap();
        let mut state = SyncState::default();
        state.cursors.insert("vitals".parse().unwrap(), 40);
        state.repull.insert("labs".parse().unwrap());
        let mut e = SyncEngine::new(RecordId::random(), id.id(), None, None, state);
        authenticate(&mut e);
        assert!(matches!(e.poll(), Step::Send(Request::Access { .. })));
        after_access(&mut e, &[]);
        assert!(matches!(e.poll(), Step::Send(Request::Feed { .. })));
        // The feed names nothing new; labs is pulled anyway, from 0.
        assert!(e
            .on_response(Response::Feed(FeedResponse {
                sections: vec![],
                cursor: 50,
                upstream: None,
            }))
            .is_none());
        match e.poll() {
            Step::Send(Request::Pull { section, after }) => {
                assert_eq!((section.as_str(), after), ("labs", 0))
            }
            other => panic!("{other:?}"),
        }
        let page = e.on_response(Response::Pulled(PullResponse {
            snapshot: None,
            envelopes: vec![],
            next: 12,
            more: false,
        }));
        assert!(matches!(
            expect_apply(page, &mut e),
            Apply::Envelopes { from: 0, .. }
        ));
    }

    /// A round cut off mid-pull (the device killed, the app closed) must
    /// not have stored the feed cursor: the relay's feed lists only
    /// sections changed after it, so the next round would never pull the
    /// rest of those sections.
    #[test]
    fn the_feed_cursor_moves_only_after_every_listed_section_is_pulled() {
        let mut e = engine(false);
        authenticate(&mut e);
        assert!(matches!(e.poll(), Step::Send(Request::Access { .. })));
        after_access(&mut e, &[]);
        assert!(matches!(e.poll(), Step::Send(Request::Feed { after: 0 })));
        let listed = |section: &str| FeedSection {
            section: section.into(),
            seq: 20,
        };
        assert!(e
            .on_response(Response::Feed(FeedResponse {
                sections: vec![listed("labs"), listed("vitals")],
                cursor: 20,
                upstream: None,
            }))
            .is_none());
        let page = |next| {
            Response::Pulled(PullResponse {
                snapshot: None,
                envelopes: vec![PulledEnvelope {
                    seq: next,
                    envelope: vec![1],
                }],
                next,
                more: false,
            })
        };
        // Every step up to the last pull: none stores the feed cursor.
        let mut steps = Vec::new();
        for (section, next) in [("labs", 19), ("vitals", 20)] {
            match e.poll() {
                Step::Send(Request::Pull { section: s, .. }) => assert_eq!(s.as_str(), section),
                other => panic!("{other:?}"),
            }
            steps.push(expect_apply(e.on_response(page(next)), &mut e));
        }
        assert!(
            !steps.iter().any(|a| matches!(a, Apply::FeedCursor(_))),
            "{steps:?}"
        );
        assert!(matches!(e.poll(), Step::Apply(Apply::FeedCursor(20))));
        e.applied();
        assert!(matches!(e.poll(), Step::Finished(_)));
    }

    /// A log name the device does not know (a newer relay's) is parsed
    /// once, at the feed, and skipped: the known logs are still pulled and
    /// the round finishes.
    #[test]
    fn an_unknown_log_in_the_feed_is_skipped_not_pulled() {
        let mut e = engine(false);
        authenticate(&mut e);
        assert!(matches!(e.poll(), Step::Send(Request::Access { .. })));
        after_access(&mut e, &[]);
        assert!(matches!(e.poll(), Step::Send(Request::Feed { .. })));
        let listed = |section: &str| FeedSection {
            section: section.into(),
            seq: 5,
        };
        assert!(e
            .on_response(Response::Feed(FeedResponse {
                sections: vec![listed("vitals.other"), listed("labs")],
                cursor: 5,
                upstream: None,
            }))
            .is_none());
        match e.poll() {
            Step::Send(Request::Pull { section, after }) => {
                assert_eq!((section.as_str(), after), ("labs", 0))
            }
            other => panic!("{other:?}"),
        }
        let page = e.on_response(Response::Pulled(PullResponse {
            snapshot: None,
            envelopes: vec![],
            next: 5,
            more: false,
        }));
        expect_apply(page, &mut e);
        assert!(matches!(e.poll(), Step::Apply(Apply::FeedCursor(5))));
        e.applied();
        assert!(matches!(e.poll(), Step::Finished(_)));
    }

    #[test]
    fn long_relay_logs_get_a_snapshot() {
        let outbox = vec![];
        let mut e = engine(false);
        authenticate(&mut e);
        assert!(matches!(e.poll(), Step::Send(Request::Access { .. })));
        after_access(&mut e, &outbox);
        assert!(matches!(e.poll(), Step::Send(Request::Feed { .. })));
        assert!(e
            .on_response(Response::Feed(FeedResponse {
                sections: vec![FeedSection {
                    section: "labs".into(),
                    seq: 300,
                }],
                cursor: 300,
                upstream: None,
            }))
            .is_none());
        assert!(matches!(e.poll(), Step::Send(Request::Pull { .. })));
        let envelopes = (1..=SNAPSHOT_EVERY)
            .map(|seq| PulledEnvelope {
                seq,
                envelope: vec![1],
            })
            .collect();
        expect_apply(
            e.on_response(Response::Pulled(PullResponse {
                snapshot: None,
                envelopes,
                next: 300,
                more: false,
            })),
            &mut e,
        );
        assert!(matches!(e.poll(), Step::Apply(Apply::FeedCursor(300))));
        e.applied();
        match e.poll() {
            Step::Apply(Apply::MakeSnapshot { section, upto_seq }) => {
                assert_eq!((section.as_str(), upto_seq), ("labs", 300));
                e.snapshot_made(section, upto_seq, Some(vec![9]));
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(e.poll(), Step::Send(Request::Snapshot { .. })));
        let stored = e.on_response(Response::SnapshotStored);
        assert!(matches!(
            expect_apply(stored, &mut e),
            Apply::SnapshotStored { .. }
        ));
        assert!(matches!(e.poll(), Step::Finished(r) if r.snapshots_uploaded == 1));
    }
}
