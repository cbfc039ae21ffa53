//! What syncing needs from a profile: the outbox, acknowledgements, cursors,
//! the verified access log, and merging envelopes pulled from the relay.
//!
//! Every envelope from the relay is checked before it is merged: it parses,
//! belongs to this record and section, its author may write the section
//! according to the verified access log, its signature verifies, it
//! decrypts, and it is what its place says (a change in the log, a snapshot
//! with signed coverage in the snapshot's place). Anything else is refused,
//! counted in [`ApplyReport`], recorded in the log's ledger
//! ([`crate::sync::ledger`]) and never merged; a log with refusals, gaps in
//! an author's numbers or changes held back for missing dependencies is
//! pulled again from its start on every round until it is whole.
//!
//! Before uploading, queued envelopes sealed under a key epoch that is no
//! longer current (a revocation or narrowing happened meanwhile) are sealed
//! again under the current key ([`Profile::reseal_stale_outbox`]); envelopes
//! the relay refuses for good are set aside.

use serde::{Deserialize, Serialize};

use super::access::META_ACCESS_CURSOR;
use super::payload::{self, Coverage, Payload};
use super::relays::{META_FEED, META_REGISTERED};
use super::{Profile, ProfileError, Result};
use crate::crypto::{CryptoError, Envelope};
use crate::ids::IdentityId;
use crate::store::{envelope_hash, OutboxItem, Owed, Store, WriteBatch};
use crate::sync::ledger::{Incomplete, LogLedger, Refusal};
use crate::sync::SyncState;
use satchel_protocol::accept::{self, Expect, Kind};
use satchel_protocol::LogName;

const META_LAST_SYNC: &str = "sync/last-sync";
/// Set when the last sync went through a replica relay: when that relay
/// last reached the record's home relay (8 bytes; empty: not since it
/// started).
const META_VIA_REPLICA: &str = "sync/via-replica";
const META_ACCESS_ENDED: &str = "sync/access-ended";
const META_SET_ASIDE: &str = "sync/set-aside";

/// How many change envelopes this device has numbered in `log`.
pub(super) fn own_change_count_key(log: LogName) -> String {
    format!("sync/own-changes/{log}")
}

pub(super) fn own_change_count<S: Store>(store: &S, log: LogName) -> Result<u64> {
    get_u64(store, &own_change_count_key(log))
}

fn ledger_key(log: LogName) -> String {
    format!("sync/ledger/{log}")
}

/// A log's completeness ledger (ids and numbers only: no clinical data).
fn load_ledger<S: Store>(store: &S, log: LogName) -> Result<LogLedger> {
    match store.get_meta(&ledger_key(log))? {
        Some(bytes) => {
            serde_json::from_slice(&bytes).map_err(|_| ProfileError::Corrupt("sync ledger"))
        }
        None => Ok(LogLedger::default()),
    }
}

fn ledger_bytes(ledger: &LogLedger) -> Result<Vec<u8>> {
    serde_json::to_vec(ledger).map_err(|_| ProfileError::Corrupt("sync ledger"))
}

/// A queued envelope the relay refused for good (oversized or invalid):
/// kept on the device, out of the outbox, and reported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetAside {
    pub section: String,
    /// The envelope's hash (hex).
    pub hash: String,
    /// The relay's HTTP status.
    pub status: u16,
    /// The relay's message (never echoes content).
    pub reason: String,
}

pub(super) fn cursor_key(log: LogName) -> String {
    format!("sync/cursor/{log}")
}

pub(super) fn since_snapshot_key(log: LogName) -> String {
    format!("sync/since-snapshot/{log}")
}

pub(super) fn get_u64<S: Store>(store: &S, key: &str) -> Result<u64> {
    Ok(store
        .get_meta(key)?
        .and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok())
        .map(u64::from_be_bytes)
        .unwrap_or(0))
}

/// Where envelopes being merged come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Source {
    /// A page of a relay's log.
    Relay { from_start: bool, next_cursor: u64 },
    /// A nearby device (edge sync), with no relay sequence numbers.
    Direct,
}

impl Source {
    /// Whether envelopes new to this device are queued for the relay
    /// (store and forward): received directly, in a log this device may
    /// write (the relay accepts its uploads there).
    pub(super) fn forwards(
        self,
        members: &crate::sharing::Members,
        me: &IdentityId,
        log: LogName,
    ) -> bool {
        self == Source::Direct && members.may_write(me, log.as_str(), super::now_ms())
    }
}

/// Why a pulled envelope was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// The relay's sequence number (0 for an envelope received directly
    /// from a nearby device, which has none).
    pub server_seq: u64,
    pub author: Option<IdentityId>,
    pub reason: &'static str,
}

/// The outcome of merging pulled envelopes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApplyReport {
    /// New envelopes merged.
    pub merged: usize,
    /// Envelopes this device already had (its own, or seen before).
    pub known: usize,
    /// Envelopes refused (never merged).
    pub rejected: Vec<Rejected>,
}

/// Verify and decrypt envelopes (signature first, then AEAD, then the
/// payload framing), spread over the available cores; results in order.
/// The snapshot's place holds only a snapshot frame (with its signed
/// coverage), the log only change frames. A change envelope must write only
/// versions naming its signer as their author (a relay snapshot, from an
/// owner device or manager, holds everyone's versions).
type Candidate = (u64, Vec<u8>, Envelope, crate::crypto::SectionKey, bool);

/// What an opened envelope holds: its automerge bytes, and its change
/// number or its snapshot's coverage.
enum Opened {
    Change(Vec<u8>, Option<u64>),
    Snapshot(Vec<u8>, Coverage),
}

impl Opened {
    fn bytes(&self) -> &[u8] {
        match self {
            Opened::Change(b, _) | Opened::Snapshot(b, _) => b,
        }
    }
}

fn open_all(candidates: &[Candidate]) -> Vec<std::result::Result<Opened, &'static str>> {
    let open_one = |(_, _, env, key, is_snapshot): &Candidate| {
        // Step 5 of the shared acceptance rule (the signature), then the
        // device's own half: decryption.
        let plain = env.open(key).map_err(|e| match e {
            CryptoError::BadSignature => accept::Refusal::BadSignature.message(),
            _ => "decryption failed",
        })?;
        let payload = payload::decode_payload(&plain).map_err(|_| "undecodable payload")?;
        let opened = match (payload, is_snapshot) {
            (Payload::Snapshot { coverage, doc }, true) => Opened::Snapshot(doc, coverage),
            (_, true) => return Err("a change envelope presented as a snapshot"),
            (Payload::Snapshot { .. }, false) => return Err("a snapshot presented as a change"),
            (Payload::Change(b), false) => Opened::Change(b, Some(env.header.seq)),
            (Payload::Legacy(b), false) => Opened::Change(b, None),
        };
        if let Opened::Change(changes, _) = &opened {
            if !crate::record::versions_authored_by(changes, env.header.author)? {
                return Err("a version names another author than the envelope's signer");
            }
        }
        Ok(opened)
    };
    super::parallel::map(candidates, 64, open_one)
        .into_iter()
        // A worker that failed refuses its envelope, never drops it.
        .map(|r| r.unwrap_or(Err("verification failed")))
        .collect()
}

impl<S: Store> Profile<S> {
    /// The device that created the record (root of the access log).
    pub fn creator(&self) -> IdentityId {
        self.access.creator
    }

    /// Whether this device created the record.
    pub fn is_creator(&self) -> bool {
        self.access.creator == self.identity.id()
    }

    /// Sign `message` with this device's identity.
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.identity.sign(message)
    }

    /// The sync state for `relay`, which becomes the current relay. Each
    /// relay keeps its own (see [`super::relays`]): switching between
    /// relays resets nothing.
    pub fn sync_state(&mut self, relay: &str) -> Result<SyncState> {
        self.switch_relay(relay)?;
        let mut state = SyncState {
            relay: Some(relay.to_string()),
            feed_cursor: get_u64(&self.store, META_FEED)?,
            access_cursor: get_u64(&self.store, META_ACCESS_CURSOR)?,
            registered: self.store.get_meta(META_REGISTERED)?.is_some(),
            ..SyncState::default()
        };
        let (me, now) = (self.identity.id(), super::now_ms());
        for log in LogName::all() {
            let cursor = get_u64(&self.store, &cursor_key(log))?;
            if self.access.members.may_read(&me, log.as_str(), now)
                && load_ledger(&self.store, log)?.incomplete(log).is_some()
            {
                state.repull.insert(log);
            } else if cursor > 0 {
                state.cursors.insert(log, cursor);
            }
            let since = get_u64(&self.store, &since_snapshot_key(log))?;
            if since > 0 {
                state.since_snapshot.insert(log, since);
            }
        }
        Ok(state)
    }

    /// A sync round finished: remember when (shown next to the record so
    /// nobody takes an old copy for a current one), and, when the relay
    /// was a replica (`upstream` from its feed), when it last reached the
    /// record's home relay. Clears an earlier "access ended" mark.
    pub fn mark_synced(
        &mut self,
        upstream: Option<satchel_protocol::wire::UpstreamReach>,
    ) -> Result<()> {
        let mut batch = WriteBatch::new();
        batch
            .put_meta(META_LAST_SYNC, super::now_ms().to_be_bytes().to_vec())
            .delete_meta(META_ACCESS_ENDED);
        match upstream {
            None => {
                batch.delete_meta(META_VIA_REPLICA);
            }
            Some(reach) => {
                let bytes = reach
                    .last_reached_ms
                    .map_or_else(Vec::new, |t| t.to_be_bytes().to_vec());
                batch.put_meta(META_VIA_REPLICA, bytes);
            }
        }
        self.store.commit(batch)?;
        Ok(())
    }

    /// How current this copy is ([`crate::sync::currency`]).
    pub fn currency(&self) -> Result<crate::sync::currency::Currency> {
        let (via_replica, reached) = match self.store.get_meta(META_VIA_REPLICA)? {
            None => (false, None),
            Some(b) => (
                true,
                <[u8; 8]>::try_from(b.as_slice())
                    .ok()
                    .map(i64::from_be_bytes),
            ),
        };
        Ok(crate::sync::currency::currency(
            self.last_synced_ms()?,
            via_replica,
            reached,
        ))
    }

    /// The relay refused this identity (403): its access to the record has
    /// ended (revoked or expired).
    pub fn mark_access_ended(&mut self) -> Result<()> {
        if self.is_owner_device() && self.is_creator() {
            return Ok(());
        }
        let mut batch = WriteBatch::new();
        batch.put_meta(META_ACCESS_ENDED, super::now_ms().to_be_bytes().to_vec());
        self.store.commit(batch)?;
        Ok(())
    }

    /// When the last sync round finished (Unix ms), if ever.
    pub fn last_synced_ms(&self) -> Result<Option<i64>> {
        Ok(self
            .store
            .get_meta(META_LAST_SYNC)?
            .and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok())
            .map(i64::from_be_bytes))
    }

    /// When the relay first refused this identity, if it did since the
    /// last successful sync.
    pub fn access_ended_ms(&self) -> Result<Option<i64>> {
        Ok(self
            .store
            .get_meta(META_ACCESS_ENDED)?
            .and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok())
            .map(i64::from_be_bytes))
    }

    /// Record that the relay knows this record (registered by this device).
    pub fn mark_registered(&mut self) -> Result<()> {
        let mut batch = WriteBatch::new();
        batch.put_meta(META_REGISTERED, vec![1]);
        self.store.commit(batch)?;
        Ok(())
    }

    /// Advance the feed cursor.
    pub fn set_feed_cursor(&mut self, cursor: u64) -> Result<()> {
        let mut batch = WriteBatch::new();
        batch.put_meta(META_FEED, cursor.to_be_bytes().to_vec());
        self.store.commit(batch)?;
        Ok(())
    }

    /// Local changes the current relay has not acknowledged (before any
    /// relay was used: those no relay has).
    pub fn outbox(&self, limit: usize) -> Result<Vec<OutboxItem>> {
        match self.current_relay()? {
            Some(relay) => Ok(self.store.owed(&relay, Owed::Outbox, limit)?),
            None => Ok(self.store.outbox(limit)?),
        }
    }

    /// How many local changes `relay` has not acknowledged yet.
    pub fn waiting_for(&self, relay: &str) -> Result<usize> {
        Ok(self.store.owed(relay, Owed::Outbox, usize::MAX)?.len())
    }

    /// Everything this device holds that the current relay has not
    /// acknowledged (moving the record to it), except relay snapshots:
    /// those are a relay's compaction, never uploaded as changes (the
    /// device makes its own snapshot of each section instead). Returns the
    /// envelopes and the logs whose snapshots were left out.
    pub fn owed_everything(&self) -> Result<(Vec<OutboxItem>, Vec<LogName>)> {
        let Some(relay) = self.current_relay()? else {
            return Ok((Vec::new(), Vec::new()));
        };
        let mut skipped = Vec::new();
        let mut items = self.store.owed(&relay, Owed::Everything, usize::MAX)?;
        items.retain(|item| match Envelope::from_bytes(&item.envelope) {
            Ok(env) if env.header.seq == 0 => {
                if !skipped.contains(&item.section) {
                    skipped.push(item.section);
                }
                false
            }
            _ => true,
        });
        Ok((items, skipped))
    }

    /// The current relay acknowledged these envelopes (hash, relay
    /// sequence). (They count towards the relay-snapshot threshold when
    /// they come back in a pull, like everyone else's.)
    pub fn acknowledge(&mut self, acks: &[([u8; 32], u64)]) -> Result<()> {
        if acks.is_empty() {
            return Ok(());
        }
        let relay = self.current_relay()?;
        let mut batch = WriteBatch::new();
        for (hash, seq) in acks {
            batch.acknowledge(relay.as_deref(), *hash, *seq);
        }
        self.store.commit(batch)?;
        Ok(())
    }

    /// Merge envelopes pulled from the relay for one log (a page that
    /// did not start at the log's beginning): see [`Profile::apply_pulled`].
    pub fn apply_remote(
        &mut self,
        log: LogName,
        snapshot: Option<(u64, Vec<u8>)>,
        envelopes: Vec<(u64, Vec<u8>)>,
        next_cursor: u64,
    ) -> Result<ApplyReport> {
        self.apply_pulled(log, false, snapshot, envelopes, next_cursor)
    }

    /// Merge envelopes pulled from the relay: see [`Self::apply_envelopes`].
    pub fn apply_pulled(
        &mut self,
        log: LogName,
        from_start: bool,
        snapshot: Option<(u64, Vec<u8>)>,
        envelopes: Vec<(u64, Vec<u8>)>,
        next_cursor: u64,
    ) -> Result<ApplyReport> {
        self.apply_envelopes(
            log,
            Source::Relay {
                from_start,
                next_cursor,
            },
            snapshot,
            envelopes,
        )
    }

    /// Merge envelopes of one log: from the relay, an optional relay
    /// snapshot then envelopes in relay order; from a nearby device,
    /// envelopes in its store order (snapshots among them, by their header
    /// number 0). Verified one by one with the shared acceptance rule;
    /// refused ones are reported (and, from the relay, recorded in the
    /// log's ledger), never merged. From the relay, `from_start` says the
    /// page starts a pull of the whole log, so earlier refusals are decided
    /// again, and the log's cursor advances to `next_cursor` (a log left
    /// incomplete is pulled from its start next round). Durable when this
    /// returns.
    pub(super) fn apply_envelopes(
        &mut self,
        log: LogName,
        source: Source,
        snapshot: Option<(u64, Vec<u8>)>,
        envelopes: Vec<(u64, Vec<u8>)>,
    ) -> Result<ApplyReport> {
        if super::wearables::handles(log) {
            return self.apply_remote_wearables(log, source, snapshot, envelopes);
        }
        // Not a wearables log: a section's own log.
        let section = log.section();
        self.check_writable()?;
        let mut report = ApplyReport::default();
        let mut batch = WriteBatch::new();
        let mut ledger = load_ledger(&self.store, log)?;
        match source {
            Source::Relay {
                from_start,
                next_cursor,
            } => {
                batch.put_meta(cursor_key(log), next_cursor.to_be_bytes().to_vec());
                if from_start {
                    ledger.restart_pass();
                }
            }
            Source::Direct => {}
        }
        let forward = source.forwards(&self.access.members, &self.identity.id(), log);
        let relay = matches!(source, Source::Relay { .. });
        let current_relay = self.current_relay()?;
        let members = &self.access.members;
        let keys = &self.keys;
        let mut received = 0u64;
        // Cheap checks first, in relay order.
        let mut candidates = Vec::new();
        let snapshot_seq = snapshot.as_ref().map(|(seq, _)| *seq);
        for (seq, bytes) in snapshot.into_iter().chain(envelopes) {
            received += 1;
            let first_is_snapshot = received == 1 && snapshot_seq == Some(seq);
            let reject = |reason, author| Rejected {
                server_seq: seq,
                author,
                reason,
            };
            // The shared acceptance rule (satchel_protocol::accept), step by
            // step: our own envelopes, already stored, skip the rights check.
            let Ok(env) = Envelope::from_bytes(&bytes) else {
                report
                    .rejected
                    .push(reject(accept::Refusal::Malformed.message(), None));
                continue;
            };
            let is_snapshot = if relay {
                first_is_snapshot
            } else {
                env.header.seq == 0
            };
            let expect = Expect {
                record: self.record.id,
                log: log.as_str(),
                kind: if is_snapshot {
                    Kind::Snapshot
                } else {
                    Kind::Change
                },
                max_bytes: usize::MAX,
            };
            let author = Some(env.header.author);
            if let Err(r) = accept::place(&env, &expect) {
                report.rejected.push(reject(r.message(), author));
                continue;
            }
            if self.store.contains(&envelope_hash(&bytes))? {
                report.known += 1;
                if relay {
                    // Records the relay sequence of our own change if unknown.
                    batch.receive(log, bytes, current_relay.as_deref(), seq);
                }
                continue;
            }
            if let Err(r) = accept::rights(&env, &expect, members) {
                report.rejected.push(reject(r.message(), author));
                continue;
            }
            let epoch = env.header.epoch;
            let Some(key) = keys.get(&(section, epoch)) else {
                report.rejected.push(reject(
                    "no key for this section epoch on this device",
                    author,
                ));
                continue;
            };
            candidates.push((seq, bytes, env, key.clone(), is_snapshot));
        }
        // Signature check and decryption (the costly part) on every core.
        let opened = open_all(&candidates);
        let mut merged_plain = Vec::with_capacity(candidates.len());
        let mut receives = Vec::with_capacity(candidates.len());
        for ((seq, bytes, env, _, _), result) in candidates.into_iter().zip(opened) {
            match result {
                Ok(opened) => {
                    merged_plain.push((env.header.author, opened));
                    receives.push((seq, bytes));
                }
                Err(reason) => report.rejected.push(Rejected {
                    server_seq: seq,
                    author: Some(env.header.author),
                    reason,
                }),
            }
        }
        self.ensure_section_state(section)?;
        let doc = self.record.section_mut(section);
        let all: Vec<u8> = merged_plain
            .iter()
            .flat_map(|(_, o)| o.bytes())
            .copied()
            .collect();
        let mut kept: Vec<bool> = vec![true; receives.len()];
        if doc.apply_changes(&all).is_err() {
            // Find the culprit(s): apply one by one, keep the good ones.
            for (i, ((_, opened), (seq, _))) in merged_plain.iter().zip(&receives).enumerate() {
                if doc.apply_changes(opened.bytes()).is_err() {
                    kept[i] = false;
                    report.rejected.push(Rejected {
                        server_seq: *seq,
                        author: None,
                        reason: "changes do not apply to the section document",
                    });
                }
            }
        }
        // What the log now holds, for completeness.
        for ((author, opened), ok) in merged_plain.iter().zip(&kept) {
            match (opened, ok) {
                (Opened::Change(_, Some(n)), true) => ledger.record(*author, *n),
                (Opened::Snapshot(_, coverage), true) => ledger.cover(coverage),
                _ => {}
            }
        }
        ledger.held_back = doc.missing_deps().len();
        let mut keep = kept.into_iter();
        receives.retain(|_| keep.next().unwrap_or(false));
        if relay {
            for r in &report.rejected {
                ledger.refuse(Refusal {
                    server_seq: r.server_seq,
                    author: r.author,
                    reason: r.reason.to_string(),
                });
            }
        }
        batch.put_meta(ledger_key(log), ledger_bytes(&ledger)?);
        report.merged = receives.len();
        let sizes: Vec<usize> = receives.iter().map(|(_, b)| b.len()).collect();
        for (seq, bytes) in receives {
            if relay {
                batch.receive(log, bytes, current_relay.as_deref(), seq);
            } else {
                batch.receive_direct(log, bytes, forward);
            }
        }
        if relay {
            let since_key = since_snapshot_key(log);
            let since = get_u64(&self.store, &since_key)? + received;
            batch.put_meta(since_key, since.to_be_bytes().to_vec());
        }
        let committed = match self.store.commit(batch) {
            Ok(c) => c,
            Err(e) => {
                self.poisoned = true;
                return Err(e.into());
            }
        };
        if let Some(state) = self.sections.get_mut(&section) {
            let new: Vec<u64> = committed.received.iter().flatten().copied().collect();
            if let Some(last) = new.last() {
                state.last_seq = state.last_seq.max(*last);
            }
            state.tail_len += new.len();
            state.tail_bytes += sizes.iter().sum::<usize>();
        }
        self.compact_long_tails()?;
        Ok(report)
    }

    /// A sealed snapshot of a section for the relay's compaction (the whole
    /// document as one envelope by this device). `None` for an empty
    /// section, and for a log that is not a section's own (chunks are not
    /// compacted).
    pub fn relay_snapshot(&mut self, log: LogName) -> Result<Option<Vec<u8>>> {
        let LogName::Section(section) = log else {
            return Ok(None);
        };
        // Only the owner's devices and managers compact (the relay refuses
        // others' snapshots).
        if !self
            .access
            .members
            .may_snapshot(&self.identity.id(), super::now_ms())
            || self.section_key(section).is_err()
        {
            return Ok(None);
        }
        // Local changes must be stored before the document is saved.
        self.persist(WriteBatch::new())?;
        let Some(doc) = self.record.sections.get_mut(&section) else {
            return Ok(None);
        };
        let full = doc.save();
        // What it covers, signed inside the sealed payload: every author's
        // unbroken run of change numbers merged here, this device's own.
        let ledger = load_ledger(&self.store, log)?;
        if ledger.held_back > 0 {
            // Changes wait for others: the document is not what the
            // numbers say. Leave compaction to a complete device.
            return Ok(None);
        }
        let mut coverage = ledger.coverage();
        let own = own_change_count(&self.store, log)?;
        if own > 0 {
            coverage.insert(self.identity.id(), own);
        }
        // Snapshots are not numbered changes: header seq 0.
        let sealed = self.seal_framed(log, 0, &payload::encode_snapshot(&coverage, &full))?;
        Ok(Some(sealed))
    }

    /// Logs this identity may read that are known to be incomplete on this
    /// device (gaps in an author's change numbers, refused envelopes,
    /// changes held back for missing dependencies), each with what is
    /// missing. (A section whose access ended is not updated any more.)
    pub fn incomplete(&self) -> Result<Vec<Incomplete>> {
        let (me, now) = (self.identity.id(), super::now_ms());
        let mut out = Vec::new();
        for log in LogName::all().filter(|log| self.access.members.may_read(&me, log.as_str(), now))
        {
            if let Some(inc) = load_ledger(&self.store, log)?.incomplete(log) {
                out.push(inc);
            }
        }
        Ok(out)
    }

    /// Queued envelopes the relay refused for good, kept on this device.
    pub fn set_aside_items(&self) -> Result<Vec<SetAside>> {
        match self.store.get_meta(META_SET_ASIDE)? {
            Some(bytes) => {
                serde_json::from_slice(&bytes).map_err(|_| ProfileError::Corrupt("set-aside list"))
            }
            None => Ok(Vec::new()),
        }
    }

    /// The relay refused a queued envelope for good: take it out of the
    /// outbox (it stays stored here) and remember why.
    pub fn set_aside(
        &mut self,
        log: LogName,
        hash: [u8; 32],
        status: u16,
        reason: &str,
    ) -> Result<()> {
        let mut items = self.set_aside_items()?;
        let hex = hex::encode(hash);
        if !items.iter().any(|i| i.hash == hex) {
            items.push(SetAside {
                section: log.as_str().to_string(),
                hash: hex,
                status,
                reason: reason.chars().take(300).collect(),
            });
        }
        let json =
            serde_json::to_vec(&items).map_err(|_| ProfileError::Corrupt("set-aside list"))?;
        let mut batch = WriteBatch::new();
        batch.set_aside(hash).put_meta(META_SET_ASIDE, json);
        self.store.commit(batch)?;
        Ok(())
    }

    /// Seal again, under the current key, every queued envelope sealed
    /// under a key epoch that is no longer current (same content, same
    /// change number; the old envelope is discarded unsent). Queued
    /// envelopes of sections whose current key this device lacks stay as
    /// they are (the relay refuses them). Returns how many were resealed.
    pub fn reseal_stale_outbox(&mut self) -> Result<usize> {
        let mut batch = WriteBatch::new();
        let mut count = 0;
        for item in self.store.outbox(usize::MAX)? {
            let Ok(env) = Envelope::from_bytes(&item.envelope) else {
                continue;
            };
            if env.header.author != self.identity.id() {
                // Forwarded for another author: only its author can seal it.
                continue;
            }
            // The envelope's bytes name its log: parsed once, here.
            let Ok(log) = env.header.section.parse::<LogName>() else {
                continue;
            };
            let section = log.section();
            let current = self.access.members.epoch(section.as_str());
            if env.header.epoch == current || !self.keys.contains_key(&(section, current)) {
                continue;
            }
            let Some(old_key) = self.keys.get(&(section, env.header.epoch)) else {
                continue;
            };
            let framed = env
                .open(old_key)
                .map_err(|_| ProfileError::Corrupt("queued envelope"))?;
            let sealed = self.seal_framed(log, env.header.seq, &framed)?;
            batch.reseal(item.hash, sealed);
            count += 1;
        }
        if count > 0 {
            self.store.commit(batch)?;
        }
        Ok(count)
    }

    /// The relay stored our snapshot: restart the per-section count.
    pub fn relay_snapshot_stored(&mut self, log: LogName) -> Result<()> {
        let mut batch = WriteBatch::new();
        batch.delete_meta(since_snapshot_key(log));
        self.store.commit(batch)?;
        Ok(())
    }
}
