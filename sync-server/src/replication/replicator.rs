//! The replication loop of one upstream relay (docs/adr/0011): every round,
//! for every record whose access log names this relay a replica (as the
//! upstream lists them, and as this relay's own member rows say), the access
//! log, then each log's envelopes, are pulled from the upstream and pushed
//! to it. What arrives is verified here as any upload is (the record's
//! verified log, the shared acceptance rule) and stored through the same
//! storage calls; envelopes keep their bytes, so their hash is their
//! identity on both relays and a copy that already exists is recognised,
//! never stored twice.
//!
//! Durability: a cursor per (upstream, record, stream) is stored after what
//! it covers, so a relay killed at any point resumes where it stopped and
//! at worst fetches a page again (which the hash makes harmless). Memory:
//! one page of envelopes and the list of record ids at a time. An
//! unreachable upstream is retried with capped exponential backoff.
//!
//! An envelope pulled from an upstream is stored with that upstream as its
//! origin and never offered back to it (no echo).
//!
//! Not done yet (issue 15): pushing snapshots upstream and forwarding the
//! audit trail.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use satchel_protocol::crypto::{Identity, IdentityCard};
use satchel_protocol::ids::{IdentityId, RecordId};
use satchel_protocol::sharing::{AccessStatement, SignedStatement};
use satchel_protocol::wire::{
    self, AfterQuery, Base64Text, PageQuery, RecordPath, RecordsPageQuery, SectionPath,
    UploadRequest,
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
    /// Records whose part of the round failed (kept for the next round).
    pub failed: usize,
}

/// Replicates with one upstream relay.
pub struct Replicator {
    state: AppState,
    identity: Arc<Identity>,
    upstream: Upstream,
    key: String,
    logged_in: bool,
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

    /// One round over every record that names this relay a replica.
    pub async fn round(&mut self) -> Result<RoundReport, ReplicationError> {
        if !self.logged_in {
            self.upstream.login(&self.identity).await?;
            self.logged_in = true;
        }
        let records = self.records().await?;
        let mut report = RoundReport {
            records: records.len(),
            ..RoundReport::default()
        };
        for record in records {
            match self.record(record, &mut report).await {
                Ok(()) => {}
                Err(ReplicationError::Upstream(UpstreamError::Unreachable { .. }))
                | Err(ReplicationError::Upstream(UpstreamError::Refused { status: 401, .. })) => {
                    return Err(ReplicationError::Upstream(UpstreamError::Unreachable {
                        upstream: self.key.clone(),
                        reason: "lost during the round".into(),
                    }));
                }
                Err(e) => {
                    report.failed += 1;
                    tracing::warn!(record = %record, upstream = %self.key, error = %e, "record not replicated this round");
                }
            }
        }
        Ok(report)
    }

    /// The records that name this relay: the upstream's list and this
    /// relay's own.
    async fn records(&mut self) -> Result<BTreeSet<RecordId>, ReplicationError> {
        let me = self.identity.id();
        let mut out = BTreeSet::new();
        let mut after = None;
        loop {
            let page = self
                .upstream
                .request::<wire::ReplicaRecords>(
                    &(),
                    &RecordsPageQuery { after, limit: None },
                    None,
                )
                .await?;
            after = page.records.last().copied();
            out.extend(page.records);
            if !page.more {
                break;
            }
        }
        let mut after = None;
        loop {
            let page = self
                .state
                .storage
                .replica_records(me, after, PULL_PAGE)
                .await?;
            let full = page.len() == PULL_PAGE as usize;
            after = page.last().copied();
            out.extend(page);
            if !full {
                break;
            }
        }
        Ok(out)
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

    async fn record(
        &mut self,
        record: RecordId,
        report: &mut RoundReport,
    ) -> Result<(), ReplicationError> {
        report.statements_pulled += self.pull_access(record).await?;
        if self.state.storage.record_root(record).await?.is_none() {
            // Not here yet and nothing to pull: nothing to do.
            return Ok(());
        }
        report.statements_pushed += self.push_access(record).await?;
        report.envelopes_pulled += self.pull_envelopes(record).await?;
        report.envelopes_pushed += self.push_envelopes(record).await?;
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
    async fn pull_access(&mut self, record: RecordId) -> Result<usize, ReplicationError> {
        let mut after = self.cursor(record, "pull:access").await?;
        let mut appended = 0;
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
                let (status, _) = append_verified(&self.state, record, entry.signed.clone())
                    .await
                    .map_err(|e| Self::refused(record, api_error(&e)))?;
                if status == axum::http::StatusCode::CREATED {
                    appended += 1;
                }
                after = seq_of(entry.seq);
                self.set_cursor(record, "pull:access", after).await?;
            }
            if !page.more {
                return Ok(appended);
            }
        }
    }

    /// Statements here after the cursor, sent up (the upstream verifies).
    async fn push_access(&mut self, record: RecordId) -> Result<usize, ReplicationError> {
        let mut after = self.cursor(record, "push:access").await?;
        let mut pushed = 0;
        loop {
            let rows = self
                .state
                .storage
                .statements(record, after, STATEMENT_PAGE)
                .await?;
            if rows.is_empty() {
                return Ok(pushed);
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
                    Err(e) if e.status() == Some(404) => return Ok(pushed),
                    Err(e) => return Err(e.into()),
                }
                after = row.seq;
                self.set_cursor(record, "push:access", after).await?;
            }
        }
    }

    /// Upstream envelopes of every log changed since the feed cursor,
    /// verified and stored here; snapshots mapped onto this relay's log.
    async fn pull_envelopes(&mut self, record: RecordId) -> Result<usize, ReplicationError> {
        let feed_after = self.cursor(record, "pull:feed").await?;
        let feed = self
            .upstream
            .request::<wire::Feed>(
                &RecordPath(record),
                &AfterQuery {
                    after: wire_u64(feed_after),
                },
                None,
            )
            .await?;
        let mut stored = 0;
        for section in &feed.sections {
            let Ok(log) = section.section.parse::<LogName>() else {
                tracing::warn!(record = %record, "the upstream's feed names an unknown log; skipped");
                continue;
            };
            stored += self.pull_log(record, log).await?;
        }
        // Last, as devices do: a relay stopped before this asks again.
        self.set_cursor(record, "pull:feed", seq_of(feed.cursor))
            .await?;
        Ok(stored)
    }

    async fn pull_log(
        &mut self,
        record: RecordId,
        log: LogName,
    ) -> Result<usize, ReplicationError> {
        let stream = format!("pull:log:{log}");
        let mut after = self.cursor(record, &stream).await?;
        let mut stored = 0;
        loop {
            let page = self
                .upstream
                .request::<wire::Pull>(
                    &SectionPath::new(record, log.as_str()),
                    &PageQuery {
                        after: wire_u64(after),
                        limit: Some(PULL_PAGE),
                    },
                    None,
                )
                .await?;
            let members = verified_members(&self.state, record)
                .await
                .map_err(|e| Self::refused(record, api_error(&e)))?;
            let limits = self.state.limits.clone();
            let bytes: Vec<Vec<u8>> = page.envelopes.iter().map(|e| e.envelope.clone()).collect();
            let upstream_seqs: Vec<Seq> = page.envelopes.iter().map(|e| seq_of(e.seq)).collect();
            let checked = tokio::task::spawn_blocking(move || {
                check_envelopes(
                    bytes,
                    &record,
                    log.as_str(),
                    limits.max_envelope_bytes,
                    &members,
                )
            })
            .await
            .map_err(|_| Self::refused(record, "verification task failed"))?;
            if let Some(f) = checked.failure {
                return Err(Self::refused(
                    record,
                    format!(
                        "the upstream served an envelope this relay refuses ({})",
                        f.message
                    ),
                ));
            }
            let appended = if checked.ok.is_empty() {
                Vec::new()
            } else {
                self.state
                    .storage
                    .append_envelopes(
                        record,
                        log.as_str(),
                        checked.ok,
                        Actor {
                            identity: self.identity.id(),
                            at_ms: now_ms(),
                            origin: Some(self.key.clone()),
                        },
                    )
                    .await?
            };
            stored += appended.iter().filter(|a| !a.duplicate).count();
            if let Some(snapshot) = &page.snapshot {
                // The local position the snapshot covers: the local seq of
                // the last envelope it covers among those just stored.
                let upto = seq_of(snapshot.upto_seq);
                let local = upstream_seqs
                    .iter()
                    .zip(&appended)
                    .filter(|(u, _)| **u <= upto)
                    .map(|(_, a)| a.seq)
                    .max();
                if let Some(local_upto) = local {
                    self.store_snapshot(record, log, local_upto, snapshot.envelope.clone())
                        .await?;
                }
            }
            after = seq_of(page.next);
            self.set_cursor(record, &stream, after).await?;
            if !page.more {
                return Ok(stored);
            }
        }
    }

    async fn store_snapshot(
        &self,
        record: RecordId,
        log: LogName,
        upto: Seq,
        bytes: Vec<u8>,
    ) -> Result<(), ReplicationError> {
        let members = verified_members(&self.state, record)
            .await
            .map_err(|e| Self::refused(record, api_error(&e)))?;
        let max = self.state.limits.max_snapshot_bytes;
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
        .map_err(|_| Self::refused(record, "verification task failed"))?;
        match checked {
            Ok(bytes) => {
                // An older or equal snapshot here is kept: not an error.
                self.state
                    .storage
                    .put_snapshot(record, log.as_str(), upto, bytes)
                    .await?;
                Ok(())
            }
            Err(r) => Err(Self::refused(
                record,
                format!(
                    "the upstream served a snapshot this relay refuses ({})",
                    r.message()
                ),
            )),
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
