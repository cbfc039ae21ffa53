//! What syncing needs from a profile: the outbox, acknowledgements, cursors,
//! the verified access log, and merging envelopes pulled from the relay.
//!
//! Every envelope from the relay is checked before it is merged: it parses,
//! belongs to this record and section, its author may write the section
//! according to the verified access log, its signature verifies and it
//! decrypts. Anything else is refused, counted in [`ApplyReport`] and never
//! merged.

use std::collections::BTreeMap;

use super::access::META_ACCESS_CURSOR;
use super::{payload, Profile, Result, META_DEVICE_SEQ};
use crate::crypto::Envelope;
use crate::ids::IdentityId;
use crate::record::Section;
use crate::store::{envelope_hash, OutboxItem, Store, WriteBatch};

const META_RELAY: &str = "sync/relay";
const META_FEED: &str = "sync/feed";
const META_REGISTERED: &str = "sync/registered";
const META_LAST_SYNC: &str = "sync/last-sync";
const META_ACCESS_ENDED: &str = "sync/access-ended";

pub(super) fn cursor_key(section: &str) -> String {
    format!("sync/cursor/{section}")
}

pub(super) fn since_snapshot_key(section: &str) -> String {
    format!("sync/since-snapshot/{section}")
}

pub(super) fn get_u64<S: Store>(store: &S, key: &str) -> Result<u64> {
    Ok(store
        .get_meta(key)?
        .and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok())
        .map(u64::from_be_bytes)
        .unwrap_or(0))
}

/// Where this device stands with its relay.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncState {
    /// The relay these cursors belong to.
    pub relay: Option<String>,
    /// Per section: the relay sequence pulled up to.
    pub cursors: BTreeMap<String, u64>,
    /// Feed cursor (relay sequence).
    pub feed_cursor: u64,
    /// How many access statements have been fetched.
    pub access_cursor: u64,
    /// Per section: envelopes stored on the relay since its last snapshot
    /// that this device knows of.
    pub since_snapshot: BTreeMap<String, u64>,
    /// Whether this device registered the record with the relay.
    pub registered: bool,
}

/// Why a pulled envelope was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
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
/// A change envelope must write only versions naming its signer as their
/// author (a relay snapshot, from an owner device or manager, holds
/// everyone's versions).
type Candidate = (u64, Vec<u8>, Envelope, crate::crypto::SectionKey, bool);

fn open_all(candidates: &[Candidate]) -> Vec<std::result::Result<Vec<u8>, &'static str>> {
    let open_one = |(_, _, env, key, is_snapshot): &Candidate| {
        let plain = env
            .open(key)
            .map_err(|_| "signature or decryption failed")?;
        let changes = payload::decode(&plain).map_err(|_| "undecodable payload")?;
        if !is_snapshot && !crate::record::versions_authored_by(&changes, env.header.author)? {
            return Err("a version names another author than the envelope's signer");
        }
        Ok(changes)
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
        self.creator
    }

    /// Whether this device created the record.
    pub fn is_creator(&self) -> bool {
        self.creator == self.identity.id()
    }

    /// Sign `message` with this device's identity.
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.identity.sign(message)
    }

    /// This device's identity (for key unwrapping in the link flow).
    pub fn identity(&self) -> &crate::crypto::Identity {
        &self.identity
    }

    /// The sync state for `relay`. Switching to another relay resets the
    /// cursors (everything is pulled again); changes the previous relay
    /// acknowledged are not re-sent, so moving a record between relays is
    /// not supported yet.
    pub fn sync_state(&mut self, relay: &str) -> Result<SyncState> {
        let current = self
            .store
            .get_meta(META_RELAY)?
            .and_then(|b| String::from_utf8(b).ok());
        if current.as_deref() != Some(relay) {
            let mut batch = WriteBatch::new();
            batch
                .put_meta(META_RELAY, relay.as_bytes().to_vec())
                .delete_meta(META_FEED)
                .delete_meta(META_ACCESS_CURSOR)
                .delete_meta(META_REGISTERED);
            let logs = Section::ALL.iter().map(|s| s.as_str());
            for name in logs.chain(super::wearables::EXTRA_LOGS) {
                batch
                    .delete_meta(cursor_key(name))
                    .delete_meta(since_snapshot_key(name));
            }
            self.store.commit(batch)?;
        }
        let mut state = SyncState {
            relay: Some(relay.to_string()),
            feed_cursor: get_u64(&self.store, META_FEED)?,
            access_cursor: get_u64(&self.store, META_ACCESS_CURSOR)?,
            registered: self.store.get_meta(META_REGISTERED)?.is_some(),
            ..SyncState::default()
        };
        let logs = Section::ALL.iter().map(|s| s.as_str());
        for name in logs.chain(super::wearables::EXTRA_LOGS) {
            let cursor = get_u64(&self.store, &cursor_key(name))?;
            if cursor > 0 {
                state.cursors.insert(name.to_string(), cursor);
            }
            let since = get_u64(&self.store, &since_snapshot_key(name))?;
            if since > 0 {
                state.since_snapshot.insert(name.to_string(), since);
            }
        }
        Ok(state)
    }

    /// A sync round finished: remember when (shown next to the record so
    /// nobody takes an old copy for a current one). Clears an earlier
    /// "access ended" mark.
    pub fn mark_synced(&mut self) -> Result<()> {
        let mut batch = WriteBatch::new();
        batch
            .put_meta(META_LAST_SYNC, super::now_ms().to_be_bytes().to_vec())
            .delete_meta(META_ACCESS_ENDED);
        self.store.commit(batch)?;
        Ok(())
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

    /// Local changes not yet acknowledged by the relay.
    pub fn outbox(&self, limit: usize) -> Result<Vec<OutboxItem>> {
        Ok(self.store.outbox(limit)?)
    }

    /// The relay acknowledged these envelopes (hash, relay sequence). (They
    /// count towards the relay-snapshot threshold when they come back in
    /// a pull, like everyone else's.)
    pub fn acknowledge(&mut self, acks: &[([u8; 32], u64)]) -> Result<()> {
        if acks.is_empty() {
            return Ok(());
        }
        let mut batch = WriteBatch::new();
        for (hash, seq) in acks {
            batch.acknowledge(*hash, *seq);
        }
        self.store.commit(batch)?;
        Ok(())
    }

    /// Merge envelopes pulled from the relay for one section: an optional
    /// relay snapshot, then envelopes in relay order. Verified one by one;
    /// refused ones are reported, never merged. Advances the section's
    /// cursor to `next_cursor`. Durable when this returns.
    pub fn apply_remote(
        &mut self,
        section_name: &str,
        snapshot: Option<(u64, Vec<u8>)>,
        envelopes: Vec<(u64, Vec<u8>)>,
        next_cursor: u64,
    ) -> Result<ApplyReport> {
        if super::wearables::handles(section_name) {
            return self.apply_remote_wearables(section_name, snapshot, envelopes, next_cursor);
        }
        self.check_writable()?;
        let mut report = ApplyReport::default();
        let mut batch = WriteBatch::new();
        batch.put_meta(cursor_key(section_name), next_cursor.to_be_bytes().to_vec());
        let Ok(section) = section_name.parse::<Section>() else {
            for (seq, _) in snapshot.iter().chain(envelopes.iter()) {
                report.rejected.push(Rejected {
                    server_seq: *seq,
                    author: None,
                    reason: "unknown section",
                });
            }
            self.store.commit(batch)?;
            return Ok(report);
        };
        let members = &self.members;
        let keys = &self.keys;
        let mut received = 0u64;
        // Cheap checks first, in relay order.
        let mut candidates = Vec::new();
        let snapshot_seq = snapshot.as_ref().map(|(seq, _)| *seq);
        for (seq, bytes) in snapshot.into_iter().chain(envelopes) {
            received += 1;
            let is_snapshot = received == 1 && snapshot_seq == Some(seq);
            let reject = |reason, author| Rejected {
                server_seq: seq,
                author,
                reason,
            };
            let Ok(env) = Envelope::from_bytes(&bytes) else {
                report.rejected.push(reject("malformed envelope", None));
                continue;
            };
            let author = Some(env.header.author);
            if env.header.record_id != self.record.id || env.header.section != section_name {
                report
                    .rejected
                    .push(reject("envelope for another record or section", author));
                continue;
            }
            if self.store.contains(&envelope_hash(&bytes))? {
                report.known += 1;
                // Records the relay sequence of our own change if unknown.
                batch.receive(section_name, bytes, seq);
                continue;
            }
            let epoch = env.header.epoch;
            if !members.wrote_with(&env.header.author, section_name, epoch) {
                report.rejected.push(reject(
                    "author had no write access to this section under this key epoch",
                    author,
                ));
                continue;
            }
            if is_snapshot && !members.is_owner_or_manager(&env.header.author) {
                report.rejected.push(reject(
                    "only the owner's devices and managers may write snapshots",
                    author,
                ));
                continue;
            }
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
                Ok(changes) => {
                    merged_plain.push(changes);
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
        let all: Vec<u8> = merged_plain.concat();
        if doc.apply_changes(&all).is_err() {
            // Find the culprit(s): apply one by one, keep the good ones.
            let mut kept = Vec::new();
            for (changes, (seq, bytes)) in merged_plain.iter().zip(receives) {
                if doc.apply_changes(changes).is_ok() {
                    kept.push((seq, bytes));
                } else {
                    report.rejected.push(Rejected {
                        server_seq: seq,
                        author: None,
                        reason: "changes do not apply to the section document",
                    });
                }
            }
            receives = kept;
        }
        report.merged = receives.len();
        let sizes: Vec<usize> = receives.iter().map(|(_, b)| b.len()).collect();
        for (seq, bytes) in receives {
            batch.receive(section_name, bytes, seq);
        }
        let since_key = since_snapshot_key(section_name);
        let since = get_u64(&self.store, &since_key)? + received;
        batch.put_meta(since_key, since.to_be_bytes().to_vec());
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
    /// document as one envelope by this device). `None` for an empty section.
    pub fn relay_snapshot(&mut self, section_name: &str) -> Result<Option<Vec<u8>>> {
        let Ok(section) = section_name.parse::<Section>() else {
            return Ok(None);
        };
        // Only the owner's devices and managers compact (the relay refuses
        // others' snapshots).
        if !self
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
        let seq = self.device_seq;
        let sealed = self.seal(section, seq, &full)?;
        let mut batch = WriteBatch::new();
        batch.put_meta(META_DEVICE_SEQ, (seq + 1).to_be_bytes().to_vec());
        self.store.commit(batch)?;
        self.device_seq = seq + 1;
        Ok(Some(sealed))
    }

    /// The relay stored our snapshot: restart the per-section count.
    pub fn relay_snapshot_stored(&mut self, section_name: &str) -> Result<()> {
        let mut batch = WriteBatch::new();
        batch.delete_meta(since_snapshot_key(section_name));
        self.store.commit(batch)?;
        Ok(())
    }
}
