//! The replication loop of one upstream relay (docs/adr/0011): every round
//! it reads the upstream's heads of the records that name this relay a
//! replica, a page of 1,000 at a time (a page where nothing moved since it
//! was last caught up comes back empty), pulls the access logs that moved,
//! fetches every log that moved in batches of many logs (one binary body
//! each), then sends up, record by record, what was written here: the
//! access log, envelopes and the audit events of the devices it serves.
//! What arrives is verified here as any upload is (the record's verified
//! log, the shared acceptance rule) and stored through the same storage
//! calls; envelopes keep their bytes, so their hash is their identity on
//! both relays and a copy that already exists is recognised, never stored
//! twice.
//!
//! Durability: a cursor per (upstream, record, stream) is stored after what
//! it covers, so a relay killed at any point resumes where it stopped and
//! at worst fetches a batch again (which the hash makes harmless). Memory:
//! one page of heads and one batch (about 2 MiB) at a time, and a digest
//! per page. An unreachable upstream is retried with capped exponential
//! backoff.
//!
//! An envelope pulled from an upstream is stored with that upstream as its
//! origin and never offered back to it (no echo); statements pulled are
//! not posted back either. When a round completes, [`super::contact`]
//! learns which records were exchanged.
//!
//! Not done yet (issue 15): pushing snapshots made here upstream.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use satchel_protocol::crypto::{Identity, IdentityCard};
use satchel_protocol::ids::{IdentityId, RecordId};
use satchel_protocol::sharing::{AccessStatement, SignedStatement};
use satchel_protocol::wire::replica_batch::{self, LogBatch};
use satchel_protocol::wire::{
    self, AfterQuery, Base64Text, ForwardAuditRequest, ForwardedAuditEvent, HeadsQuery, LogWant,
    RecordHeads, RecordPath, ReplicaPullRequest, SectionPath, UploadRequest,
};
use satchel_protocol::LogName;

use super::upstream::{Upstream, UpstreamError};
use crate::api::records::{append_verified, verified_members};
use crate::api::verify::check_envelopes;
use crate::api::AppState;
use crate::storage::{now_ms, Actor, Seq, StorageError};

/// Envelopes per upload to the upstream (its limit is 1,000).
const PUSH_BATCH: u32 = 500;
/// Envelopes per pull page.
const PULL_PAGE: u32 = 1000;
/// Statements per local read.
const STATEMENT_PAGE: u32 = 1000;
/// Audit events per local read (the upstream takes 1,000 at a time).
const AUDIT_PAGE: u32 = 1000;
/// Longest wait between attempts while the upstream is unreachable.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Why a round (or one record's part of it) stopped.
#[derive(Debug, thiserror::Error)]
pub enum ReplicationError {
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    #[error("local storage: {0}")]
    Storage(#[from] StorageError),
    #[error("record {record}: {what}")]
    Refused { record: RecordId, what: String },
}

/// What one round moved.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RoundReport {
    /// Records looked at.
    pub records: usize,
    /// Statements appended here / sent up and appended there.
    pub statements_pulled: usize,
    pub statements_pushed: usize,
    /// Envelopes new here / new upstream.
    pub envelopes_pulled: usize,
    pub envelopes_pushed: usize,
    /// Audit events forwarded and new upstream.
    pub audit_forwarded: usize,
    /// Records whose part of the round failed (kept for the next round).
    pub failed: usize,
    /// Those records (and records the upstream does not hold yet): not
    /// exchanged this round ([`super::contact::UpstreamContact`]).
    pub missed: Vec<RecordId>,
}

/// Replicates with one upstream relay.
pub struct Replicator {
    state: AppState,
    identity: Arc<Identity>,
    upstream: Upstream,
    key: String,
    logged_in: bool,
    /// Per page of heads (by the record it starts after), the digest of
    /// the page when this relay last caught all of it up: sent back, so
    /// that a page where nothing moved comes back without its records.
    settled: HashMap<Option<RecordId>, String>,
}

impl Replicator {
    /// A replicator of this relay (`state`, signing in as `identity`) with
    /// `upstream`.
    pub fn new(state: AppState, identity: Arc<Identity>, upstream: Upstream) -> Self {
        let key = upstream.url().to_string();
        Replicator {
            state,
            identity,
            upstream,
            key,
            logged_in: false,
            settled: HashMap::new(),
        }
    }

    /// Run rounds until `stop` turns true: one round at once, then one
    /// after each local change (batched) or every `interval`, backing off
    /// while the upstream is unreachable.
    pub async fn run(mut self, interval: Duration, mut stop: tokio::sync::watch::Receiver<bool>) {
        let mut changes = self.state.storage.subscribe();
        let mut backoff = Duration::from_millis(250);
        loop {
            let round = tokio::select! {
                r = self.round() => r,
                _ = stop.changed() => return,
            };
            let wait = match round {
                Ok(report) => {
                    if report.envelopes_pulled + report.envelopes_pushed > 0 {
                        tracing::info!(
                            upstream = %self.key,
                            records = report.records,
                            pulled = report.envelopes_pulled,
                            pushed = report.envelopes_pushed,
                            "replicated"
                        );
                    }
                    backoff = Duration::from_millis(250);
                    interval
                }
                Err(e) => {
                    tracing::warn!(upstream = %self.key, error = %e, "replication round failed; retrying");
                    self.logged_in = false;
                    let jitter = Duration::from_millis(u64::from(rand_u8()) * 2);
                    let wait = backoff + jitter;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    wait
                }
            };
            tokio::select! {
                _ = stop.changed() => {}
                _ = tokio::time::sleep(wait) => {}
                change = changes.recv() => {
                    if matches!(change, Err(tokio::sync::broadcast::error::RecvError::Closed)) {
                        // No more change notices (storage closing): wait
                        // as if nothing changed, never spin.
                        tokio::time::sleep(wait).await;
                    } else {
                        // Let a burst of changes settle into one round.
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        while changes.try_recv().is_ok() {}
                    }
                }
            }
            if *stop.borrow() {
                return;
            }
        }
    }

    /// One round: the upstream's heads of every record that names this
    /// relay, a page at a time; what moved there fetched in batches of many
    /// logs; then what moved here (statements, envelopes, audit events)
    /// sent up, record by record.
    pub async fn round(&mut self) -> Result<RoundReport, ReplicationError> {
        if !self.logged_in {
            self.upstream.login(&self.identity).await?;
            self.logged_in = true;
        }
        let started = now_ms();
        let mut report = RoundReport::default();
        let mut after = None;
        loop {
            let query = HeadsQuery {
                after,
                limit: None,
                unless: self.settled.get(&after).cloned(),
            };
            let page = self
                .upstream
                .request::<wire::ReplicaHeads>(&(), &query, None)
                .await?;
            if !page.unchanged {
                report.records += page.records.len();
                let missed = report.missed.len();
                self.pull_heads(page.records, &mut report).await?;
                // Remember the page as settled only when all of it was
                // caught up: otherwise it is looked at again next round.
                if report.missed.len() == missed {
                    self.settled.insert(after, page.digest);
                } else {
                    self.settled.remove(&after);
                }
            }
            after = page.last;
            if !page.more {
                break;
            }
        }
        let me = self.identity.id();
        let mut after = None;
        loop {
            let page = self
                .state
                .storage
                .replica_records(me, after, PULL_PAGE)
                .await?;
            let full = page.len() == PULL_PAGE as usize;
            after = page.last().copied();
            for record in page {
                let result = self.push_record(record, &mut report).await;
                self.settle(record, result, &mut report)?;
            }
            if !full {
                break;
            }
        }
        if let Some(contact) = self.state.upstream_contact.get() {
            contact.round_done(started, &report.missed);
        }
        Ok(report)
    }

    /// A record's part of the round failed: a lost upstream ends the round
    /// (retried with backoff); anything else is counted and logged, and
    /// the record is tried again next round.
    fn settle(
        &self,
        record: RecordId,
        result: Result<(), ReplicationError>,
        report: &mut RoundReport,
    ) -> Result<(), ReplicationError> {
        match result {
            Ok(()) => Ok(()),
            Err(ReplicationError::Upstream(UpstreamError::Unreachable { .. }))
            | Err(ReplicationError::Upstream(UpstreamError::Refused { status: 401, .. })) => {
                Err(ReplicationError::Upstream(UpstreamError::Unreachable {
                    upstream: self.key.clone(),
                    reason: "lost during the round".into(),
                }))
            }
            Err(e) => {
                report.failed += 1;
                report.missed.push(record);
                tracing::warn!(record = %record, upstream = %self.key, error = %e, "record not replicated this round");
                Ok(())
            }
        }
    }

    async fn cursor(&self, record: RecordId, stream: &str) -> Result<Seq, ReplicationError> {
        Ok(self
            .state
            .storage
            .replication_cursor(&self.key, record, stream)
            .await?)
    }

    async fn set_cursor(
        &self,
        record: RecordId,
        stream: &str,
        seq: Seq,
    ) -> Result<(), ReplicationError> {
        Ok(self
            .state
            .storage
            .set_replication_cursor(&self.key, record, stream, seq)
            .await?)
    }

    /// Compare a page of heads with the cursors: pull the access logs that
    /// moved (one record at a time: rare), then every log that moved, in
    /// batches.
    async fn pull_heads(
        &mut self,
        heads: Vec<RecordHeads>,
        report: &mut RoundReport,
    ) -> Result<(), ReplicationError> {
        let mut wants = Vec::new();
        for h in heads {
            let record = h.record;
            let result = self.plan_record(h, &mut wants, report).await;
            self.settle(record, result, report)?;
        }
        self.fetch(wants, report).await
    }

    async fn plan_record(
        &mut self,
        heads: RecordHeads,
        wants: &mut Vec<LogWant>,
        report: &mut RoundReport,
    ) -> Result<(), ReplicationError> {
        let record = heads.record;
        if heads.access > wire_u64(self.cursor(record, "pull:access").await?) {
            report.statements_pulled += self.pull_access(record).await?;
        }
        if self.state.storage.record_root(record).await?.is_none() {
            // Not here yet and no statement to start it from.
            return Ok(());
        }
        for (name, head) in heads.logs {
            let Ok(log) = name.parse::<LogName>() else {
                tracing::warn!(record = %record, "the upstream names an unknown log; skipped");
                continue;
            };
            let after = wire_u64(self.cursor(record, &pull_stream(log)).await?);
            if head > after {
                wants.push(LogWant {
                    record,
                    log: log.to_string(),
                    after,
                });
            }
        }
        Ok(())
    }

    /// Fetch `wants` from the upstream, many logs per request, until each
    /// is caught up; what arrives is verified and stored, and each log's
    /// cursor moves only after its envelopes are stored.
    async fn fetch(
        &mut self,
        wants: Vec<LogWant>,
        report: &mut RoundReport,
    ) -> Result<(), ReplicationError> {
        let mut queue: VecDeque<LogWant> = wants.into();
        while !queue.is_empty() {
            let take = queue.len().min(ReplicaPullRequest::MAX_LOGS);
            let chunk: Vec<LogWant> = queue.drain(..take).collect();
            let request = ReplicaPullRequest { logs: chunk };
            let body = match self
                .upstream
                .request_raw::<wire::ReplicaPull>(&(), &(), Some(&request))
                .await
            {
                Ok(body) => body,
                // A record stopped naming this relay since the heads were
                // read: the next round's heads leave it out.
                Err(e) if e.status() == Some(403) => {
                    report.failed += 1;
                    report.missed.extend(request.logs.iter().map(|w| w.record));
                    tracing::warn!(upstream = %self.key, "a record no longer names this relay; its logs wait for the next round");
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            let batches = replica_batch::decode(
                &body,
                self.state
                    .limits
                    .max_snapshot_bytes
                    .max(self.state.limits.max_envelope_bytes),
            )
            .map_err(|e| self.bad_upstream(e))?;
            let asked = request.logs;
            if batches.is_empty()
                || batches.len() > asked.len()
                || batches
                    .iter()
                    .zip(&asked)
                    .any(|(b, w)| b.record != w.record || b.log != w.log)
            {
                return Err(self.bad_upstream("it answered other logs than asked"));
            }
            for w in &asked[batches.len()..] {
                queue.push_back(w.clone());
            }
            for b in &batches {
                if b.more {
                    queue.push_back(LogWant {
                        record: b.record,
                        log: b.log.clone(),
                        after: b.next,
                    });
                }
            }
            report.envelopes_pulled += self.store_batches(batches, report).await?;
        }
        Ok(())
    }

    fn bad_upstream(&self, what: impl std::fmt::Display) -> ReplicationError {
        ReplicationError::Upstream(UpstreamError::Unreachable {
            upstream: self.key.clone(),
            reason: format!("its replica batch is refused: {what}"),
        })
    }

    /// Verify a fetched batch (the shared acceptance rule, on the blocking
    /// pool) and store it: every log's append, snapshot and cursor issued
    /// together, so that SQLite commits them in a few groups. A log whose
    /// envelopes are refused fails its record for this round, not others.
    async fn store_batches(
        &mut self,
        batches: Vec<LogBatch>,
        report: &mut RoundReport,
    ) -> Result<usize, ReplicationError> {
        let mut members = BTreeMap::new();
        for b in &batches {
            if let std::collections::btree_map::Entry::Vacant(slot) = members.entry(b.record) {
                match verified_members(&self.state, b.record).await {
                    Ok(m) => {
                        slot.insert(m);
                    }
                    Err(e) => {
                        report.failed += 1;
                        report.missed.push(b.record);
                        tracing::warn!(record = %b.record, error = %api_error(&e), "record not replicated this round");
                    }
                }
            }
        }
        let max = self.state.limits.max_envelope_bytes;
        let checked = tokio::task::spawn_blocking(move || {
            batches
                .into_iter()
                .filter_map(|b| {
                    let m = members.get(&b.record)?;
                    let log = b.log.parse::<LogName>().ok()?;
                    let seqs: Vec<Seq> = b.envelopes.iter().map(|(s, _)| seq_of(*s)).collect();
                    let bytes: Vec<Vec<u8>> = b.envelopes.into_iter().map(|(_, e)| e).collect();
                    let checked = check_envelopes(bytes, &b.record, log.as_str(), max, m);
                    Some(Fetched {
                        record: b.record,
                        log,
                        seqs,
                        checked,
                        snapshot: b.snapshot,
                        next: b.next,
                        members: m.clone(),
                    })
                })
                .collect::<Vec<_>>()
        })
        .await
        .map_err(|_| ReplicationError::Refused {
            record: RecordId([0; 16]),
            what: "verification task failed".into(),
        })?;
        let mut writes = tokio::task::JoinSet::new();
        for fetched in checked {
            let (state, key, me) = (self.state.clone(), self.key.clone(), self.identity.id());
            writes.spawn(async move {
                let record = fetched.record;
                (record, store_fetched(state, key, me, fetched).await)
            });
        }
        let mut stored = 0;
        while let Some(done) = writes.join_next().await {
            match done {
                Ok((_, Ok(n))) => stored += n,
                Ok((record, Err(e))) => {
                    report.failed += 1;
                    report.missed.push(record);
                    tracing::warn!(upstream = %self.key, error = %e, "record not replicated this round");
                }
                Err(_) => report.failed += 1,
            }
        }
        Ok(stored)
    }

    async fn push_record(
        &mut self,
        record: RecordId,
        report: &mut RoundReport,
    ) -> Result<(), ReplicationError> {
        let (pushed, held_upstream) = self.push_access(record).await?;
        report.statements_pushed += pushed;
        if !held_upstream {
            // Registered here by a device: not at the upstream until a
            // device registers it there, so not exchanged with it.
            report.missed.push(record);
        }
        report.envelopes_pushed += self.push_envelopes(record).await?;
        report.audit_forwarded += self.push_audit(record).await?;
        Ok(())
    }

    fn refused(record: RecordId, what: impl std::fmt::Display) -> ReplicationError {
        ReplicationError::Refused {
            record,
            what: what.to_string(),
        }
    }

    /// Register the record here from the upstream's log: its creator is
    /// the first statement's signer, its card as the upstream lists it.
    async fn register_from(
        &mut self,
        record: RecordId,
        first: &SignedStatement,
    ) -> Result<(), ReplicationError> {
        let statement: AccessStatement = serde_json::from_slice(&first.statement)
            .map_err(|_| Self::refused(record, "the upstream's first statement does not parse"))?;
        let creator: IdentityId = statement.by;
        let members = self
            .upstream
            .request::<wire::Members>(&RecordPath(record), &(), None)
            .await?;
        let card: IdentityCard = members
            .members
            .into_iter()
            .find(|m| m.identity == creator)
            .map(|m| m.card)
            .ok_or_else(|| Self::refused(record, "the upstream does not list the creator"))?;
        if card.id() != creator || card.verify().is_err() {
            return Err(Self::refused(record, "the creator's card does not verify"));
        }
        self.state
            .storage
            .register_record(record, creator, card.to_bytes(), now_ms())
            .await?;
        Ok(())
    }

    /// Upstream statements after the cursor, appended here (verified).
    /// When nothing written here waits to go up, the push cursor moves past
    /// them too: what came from the upstream is not sent back to it.
    async fn pull_access(&mut self, record: RecordId) -> Result<usize, ReplicationError> {
        let mut after = self.cursor(record, "pull:access").await?;
        let push_after = self.cursor(record, "push:access").await?;
        let none_waiting = self
            .state
            .storage
            .statements(record, push_after, 1)
            .await?
            .is_empty();
        let mut appended = 0;
        let mut local_head = None;
        let mut held = self.state.storage.record_root(record).await?.is_some();
        loop {
            let page = match self
                .upstream
                .request::<wire::Statements>(
                    &RecordPath(record),
                    &AfterQuery {
                        after: wire_u64(after),
                    },
                    None,
                )
                .await
            {
                Ok(p) => p,
                // Not (yet) there: this relay's own record, to push.
                Err(e) if e.status() == Some(404) => return Ok(appended),
                Err(e) => return Err(e.into()),
            };
            for entry in &page.statements {
                if !held {
                    self.register_from(record, &entry.signed).await?;
                    held = true;
                }
                let (status, local) = append_verified(&self.state, record, entry.signed.clone())
                    .await
                    .map_err(|e| Self::refused(record, api_error(&e)))?;
                if status == axum::http::StatusCode::CREATED {
                    appended += 1;
                    local_head = Some(local);
                }
                after = seq_of(entry.seq);
                self.set_cursor(record, "pull:access", after).await?;
                if none_waiting {
                    if let Some(local) = local_head {
                        self.set_cursor(record, "push:access", local).await?;
                    }
                }
            }
            if !page.more {
                return Ok(appended);
            }
        }
    }

    /// Statements here after the cursor, sent up (the upstream verifies);
    /// and whether the upstream holds the record (`false` when it answered
    /// 404).
    async fn push_access(&mut self, record: RecordId) -> Result<(usize, bool), ReplicationError> {
        let mut after = self.cursor(record, "push:access").await?;
        let mut pushed = 0;
        loop {
            let rows = self
                .state
                .storage
                .statements(record, after, STATEMENT_PAGE)
                .await?;
            if rows.is_empty() {
                return Ok((pushed, true));
            }
            for row in &rows {
                let signed = SignedStatement {
                    statement: row.statement.clone(),
                    signature: row.signature.clone(),
                };
                match self
                    .upstream
                    .request::<wire::AppendStatement>(&RecordPath(record), &(), Some(&signed))
                    .await
                {
                    Ok(_) => pushed += 1,
                    // The upstream has no such record yet: it is registered
                    // there by a device, not by a replica.
                    Err(e) if e.status() == Some(404) => return Ok((pushed, false)),
                    Err(e) => return Err(e.into()),
                }
                after = row.seq;
                self.set_cursor(record, "push:access", after).await?;
            }
        }
    }

    /// Audit events recorded here (views and pushes by the devices this
    /// relay serves) after the cursor, forwarded to the upstream, which
    /// stores them tagged with this relay.
    async fn push_audit(&mut self, record: RecordId) -> Result<usize, ReplicationError> {
        let mut after = self.cursor(record, "push:audit").await?;
        let mut forwarded = 0;
        loop {
            let events = self.state.storage.audit(record, after, AUDIT_PAGE).await?;
            let Some(last) = events.last().map(|e| e.seq) else {
                return Ok(forwarded);
            };
            let request = ForwardAuditRequest {
                events: events
                    .iter()
                    .filter(|e| e.relay.is_none())
                    .map(|e| {
                        Ok(ForwardedAuditEvent {
                            seq: wire_u64(e.seq),
                            at_ms: e.at_ms,
                            identity: e.identity,
                            action: e.action.into(),
                            section: e.section.clone(),
                            count: u64::try_from(e.count)
                                .map_err(|_| Self::refused(record, "a negative audit count"))?,
                        })
                    })
                    .collect::<Result<Vec<_>, ReplicationError>>()?,
            };
            if !request.events.is_empty() {
                match self
                    .upstream
                    .request::<wire::ForwardAudit>(&RecordPath(record), &(), Some(&request))
                    .await
                {
                    Ok(answer) => forwarded += usize::try_from(answer.stored).unwrap_or(usize::MAX),
                    // Not at the upstream yet: kept for a later round.
                    Err(e) if e.status() == Some(404) => return Ok(forwarded),
                    Err(e) => return Err(e.into()),
                }
            }
            after = last;
            self.set_cursor(record, "push:audit", after).await?;
        }
    }

    /// Envelopes stored here since the push cursor, sent up in batches.
    async fn push_envelopes(&mut self, record: RecordId) -> Result<usize, ReplicationError> {
        let feed_after = self.cursor(record, "push:feed").await?;
        let sections = self.state.storage.feed(record, feed_after).await?;
        let newest = sections.iter().map(|(_, s)| *s).max().unwrap_or(feed_after);
        let mut pushed = 0;
        for (name, _) in &sections {
            let Ok(log) = name.parse::<LogName>() else {
                continue;
            };
            pushed += self.push_log(record, log).await?;
        }
        self.set_cursor(record, "push:feed", newest.max(feed_after))
            .await?;
        Ok(pushed)
    }

    async fn push_log(
        &mut self,
        record: RecordId,
        log: LogName,
    ) -> Result<usize, ReplicationError> {
        let stream = format!("push:log:{log}");
        let mut after = self.cursor(record, &stream).await?;
        let mut pushed = 0;
        loop {
            let page = self
                .state
                .storage
                .pull_whole(record, log.as_str(), after, PUSH_BATCH)
                .await?;
            if page.envelopes.is_empty() {
                return Ok(pushed);
            }
            // What came from this upstream is not offered back to it.
            let request = UploadRequest {
                envelopes: page
                    .envelopes
                    .iter()
                    .filter(|e| e.origin.as_deref() != Some(self.key.as_str()))
                    .map(|e| Base64Text::encode(&e.bytes))
                    .collect(),
            };
            if !request.envelopes.is_empty() {
                let answer = self
                    .upstream
                    .request::<wire::Upload>(
                        &SectionPath::new(record, log.as_str()),
                        &(),
                        Some(&request),
                    )
                    .await?;
                pushed += answer
                    .accepted
                    .len()
                    .saturating_sub(usize::try_from(answer.duplicates).unwrap_or(usize::MAX));
            }
            after = page.next_whole(after);
            self.set_cursor(record, &stream, after).await?;
            if !page.more {
                return Ok(pushed);
            }
        }
    }
}

/// One log's fetched part, verified.
struct Fetched {
    record: RecordId,
    log: LogName,
    /// The upstream's seqs of the envelopes, in order.
    seqs: Vec<Seq>,
    checked: crate::api::verify::Checked,
    snapshot: Option<(u64, Vec<u8>)>,
    next: u64,
    members: Arc<satchel_protocol::sharing::Members>,
}

/// Store one fetched log: its envelopes (origin: the upstream), its
/// snapshot mapped onto this relay's positions, then its cursor.
async fn store_fetched(
    state: AppState,
    upstream: String,
    me: IdentityId,
    fetched: Fetched,
) -> Result<usize, ReplicationError> {
    let record = fetched.record;
    if let Some(f) = fetched.checked.failure {
        return Err(Replicator::refused(
            record,
            format!(
                "the upstream served an envelope this relay refuses ({})",
                f.message
            ),
        ));
    }
    let appended = if fetched.checked.ok.is_empty() {
        Vec::new()
    } else {
        state
            .storage
            .append_envelopes(
                record,
                fetched.log.as_str(),
                fetched.checked.ok,
                Actor {
                    identity: me,
                    at_ms: now_ms(),
                    origin: Some(upstream.clone()),
                },
            )
            .await?
    };
    let stored = appended.iter().filter(|a| !a.duplicate).count();
    if let Some((upto, bytes)) = fetched.snapshot {
        // The local position the snapshot covers: the local seq of the
        // last envelope it covers among those just stored.
        let upto = seq_of(upto);
        let local = fetched
            .seqs
            .iter()
            .zip(&appended)
            .filter(|(u, _)| **u <= upto)
            .map(|(_, a)| a.seq)
            .max();
        if let Some(local_upto) = local {
            store_snapshot(
                &state,
                record,
                fetched.log,
                local_upto,
                bytes,
                fetched.members,
            )
            .await?;
        }
    }
    state
        .storage
        .set_replication_cursor(
            &upstream,
            record,
            &pull_stream(fetched.log),
            seq_of(fetched.next),
        )
        .await?;
    Ok(stored)
}

/// Verify an upstream's snapshot (the shared acceptance rule) and keep it
/// at `upto` here when it is newer than the one here.
async fn store_snapshot(
    state: &AppState,
    record: RecordId,
    log: LogName,
    upto: Seq,
    bytes: Vec<u8>,
    members: Arc<satchel_protocol::sharing::Members>,
) -> Result<(), ReplicationError> {
    let max = state.limits.max_snapshot_bytes;
    let checked = tokio::task::spawn_blocking(move || {
        let expect = satchel_protocol::accept::Expect {
            record,
            log: log.as_str(),
            kind: satchel_protocol::accept::Kind::Snapshot,
            max_bytes: max,
        };
        satchel_protocol::accept::accept(&bytes, &expect, &members).map(|_| bytes)
    })
    .await
    .map_err(|_| Replicator::refused(record, "verification task failed"))?;
    match checked {
        Ok(bytes) => {
            // An older or equal snapshot here is kept: not an error.
            state
                .storage
                .put_snapshot(record, log.as_str(), upto, bytes)
                .await?;
            Ok(())
        }
        Err(r) => Err(Replicator::refused(
            record,
            format!(
                "the upstream served a snapshot this relay refuses ({})",
                r.message()
            ),
        )),
    }
}

/// The cursor stream of a log pulled from the upstream.
fn pull_stream(log: LogName) -> String {
    format!("pull:log:{log}")
}

/// A local refusal as text: its status and message (no content).
fn api_error(e: &crate::api::error::ApiError) -> String {
    let body = e.body();
    format!("{} {}: {}", e.status().as_u16(), body.error, body.message)
}

fn seq_of(wire: u64) -> Seq {
    Seq::try_from(wire).unwrap_or(Seq::MAX)
}

fn wire_u64(seq: Seq) -> u64 {
    u64::try_from(seq).unwrap_or(0)
}

fn rand_u8() -> u8 {
    let mut b = [0u8; 1];
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b);
    b[0]
}
