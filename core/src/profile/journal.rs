//! The record journal: how the in-memory record becomes durable and how it
//! is read back. Writes seal each section's pending changes into numbered
//! change envelopes and commit them atomically; long tails are compacted
//! into local snapshots; opening loads a section from its newest snapshot
//! and the log after it. Per-section storage bookkeeping
//! ([`SectionState`]) lives here.

use super::{
    payload, replica, Keyring, Profile, ProfileError, Result, META_DEVICE_SEQ, SNAPSHOT_EVERY,
    SNAPSHOT_TAIL_BYTES,
};
use crate::crypto::{Envelope, EnvelopeHeader};
use crate::ids::RecordId;
use crate::record::{Section, SectionDoc};
use crate::store::{SectionLog, Store, WriteBatch};
use satchel_protocol::LogName;

/// Key and storage bookkeeping for one section (its document is in the
/// [`Record`]).
pub(super) struct SectionState {
    /// Highest store sequence holding a change of this section.
    pub(super) last_seq: u64,
    /// Stored changes not yet covered by the snapshot, and their size.
    pub(super) tail_len: usize,
    pub(super) tail_bytes: usize,
    /// Size of the current snapshot's plaintext (0 without one).
    pub(super) snapshot_bytes: usize,
}

impl SectionState {
    pub(super) fn compaction_due(&self) -> bool {
        self.tail_len >= SNAPSHOT_EVERY
            || self.tail_bytes >= SNAPSHOT_TAIL_BYTES.max(self.snapshot_bytes)
    }
}

impl<S: Store> Profile<S> {
    /// Start storage bookkeeping for a section on its first entry.
    pub(super) fn ensure_section_state(&mut self, section: Section) -> Result<()> {
        if self.sections.contains_key(&section) {
            return Ok(());
        }
        self.sections.insert(
            section,
            SectionState {
                last_seq: 0,
                tail_len: 0,
                tail_bytes: 0,
                snapshot_bytes: 0,
            },
        );
        Ok(())
    }

    pub(super) fn seal(&self, section: Section, seq: u64, plain: &[u8]) -> Result<Vec<u8>> {
        self.seal_named(LogName::Section(section), seq, plain)
    }

    /// Seal under the current key of `log`'s section into an envelope of
    /// the log `log` (the section itself, or a log of its own such as
    /// `wearables.chunks`), framed as legacy payload (local snapshots,
    /// wearables).
    pub(super) fn seal_named(&self, log: LogName, seq: u64, plain: &[u8]) -> Result<Vec<u8>> {
        self.seal_framed(log, seq, &payload::encode(plain))
    }

    /// Seal an already framed payload (see [`payload`]) under the current
    /// key of `log`'s section into an envelope of the log `log`.
    pub(super) fn seal_framed(&self, log: LogName, seq: u64, framed: &[u8]) -> Result<Vec<u8>> {
        let (epoch, key) = self.section_key(log.section())?;
        let header = EnvelopeHeader {
            record_id: self.record.id,
            section: log.as_str().to_string(),
            epoch,
            author: self.identity.id(),
            seq,
        };
        Ok(Envelope::seal(key, header, framed, &self.identity)?.to_bytes())
    }

    /// Seal every section's pending changes into envelopes (change
    /// frames, numbered per log: 1, 2, 3, ...) and commit them, with
    /// `batch`'s other writes, atomically. Then compact long tails. A change
    /// that would exceed what a relay accepts in one envelope is refused and
    /// the in-memory record is reloaded from the store: nothing changes.
    pub(super) fn persist(&mut self, mut batch: WriteBatch) -> Result<()> {
        let mut appended = Vec::new();
        let pending: Vec<(Section, Vec<Vec<u8>>)> = self
            .record
            .sections
            .iter_mut()
            .filter(|(_, doc)| doc.has_pending_changes())
            .map(|(section, doc)| {
                (
                    *section,
                    doc.take_change_groups(crate::record::CHANGE_BUDGET),
                )
            })
            .collect();
        let mut sealed_all = Vec::new();
        for (section, groups) in pending {
            let log = LogName::Section(section);
            let mut number = replica::own_change_count(&self.store, log)?;
            for changes in groups {
                number += 1;
                let sealed = self.seal_framed(log, number, &payload::encode_change(&changes))?;
                sealed_all.push((section, sealed, changes.len()));
            }
            batch.put_meta(
                replica::own_change_count_key(log),
                number.to_be_bytes().to_vec(),
            );
        }
        if let Some((section, sealed, _)) = sealed_all
            .iter()
            .find(|(_, sealed, _)| sealed.len() > crate::sync::wire::MAX_ENVELOPE_BYTES)
        {
            let err = ProfileError::TooLarge {
                section: section.as_str(),
                bytes: sealed.len(),
                limit: crate::sync::wire::MAX_ENVELOPE_BYTES,
            };
            // Forget the in-memory change: the store never saw it.
            self.refresh()?;
            return Err(err);
        }
        for (section, sealed, size) in sealed_all {
            batch.append(section.into(), sealed);
            appended.push((section, size));
        }
        if batch.is_empty() {
            return Ok(());
        }
        let committed = match self.store.commit(batch) {
            Ok(c) => c,
            Err(e) => {
                self.poisoned = true;
                return Err(e.into());
            }
        };
        for ((section, size), stored) in appended.iter().zip(committed.appended) {
            if let Some(state) = self.sections.get_mut(section) {
                state.last_seq = stored;
                state.tail_len += 1;
                state.tail_bytes += size;
            }
        }
        self.compact_long_tails()
    }

    /// Replace the snapshot of every section whose tail has grown past
    /// [`SNAPSHOT_EVERY`].
    pub(super) fn compact_long_tails(&mut self) -> Result<()> {
        let due: Vec<Section> = self
            .sections
            .iter()
            .filter(|(_, s)| s.compaction_due())
            .map(|(section, _)| *section)
            .collect();
        if due.is_empty() {
            return Ok(());
        }
        let mut batch = WriteBatch::new();
        let mut seq = self.device_seq;
        let mut sizes = Vec::with_capacity(due.len());
        for section in &due {
            let Some(doc) = self.record.sections.get_mut(section) else {
                continue;
            };
            let full = doc.save();
            sizes.push((*section, full.len()));
            let state = self
                .sections
                .get(section)
                .ok_or(ProfileError::Corrupt("section key"))?;
            batch.put_snapshot(
                LogName::Section(*section),
                state.last_seq,
                self.seal(*section, seq, &full)?,
            );
            seq += 1;
        }
        batch.put_meta(META_DEVICE_SEQ, seq.to_be_bytes().to_vec());
        if let Err(e) = self.store.commit(batch) {
            self.poisoned = true;
            return Err(e.into());
        }
        self.device_seq = seq;
        for (section, size) in sizes {
            if let Some(state) = self.sections.get_mut(&section) {
                state.tail_len = 0;
                state.tail_bytes = 0;
                state.snapshot_bytes = size;
            }
        }
        Ok(())
    }
}

/// This device's next envelope sequence number.
pub(super) fn read_device_seq<S: Store>(store: &S) -> Result<u64> {
    store
        .get_meta(META_DEVICE_SEQ)?
        .and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok())
        .map(u64::from_be_bytes)
        .ok_or(ProfileError::Corrupt("device sequence"))
}

/// Stored bytes of a section's log (to load the largest first).
pub(super) fn log_bytes(log: &SectionLog) -> usize {
    log.snapshot.as_ref().map_or(0, |s| s.envelope.len())
        + log.tail.iter().map(|i| i.envelope.len()).sum::<usize>()
}

/// Open one stored envelope of `section` of record `record_id`: header
/// checks, the key of its epoch, signature and decryption, payload framing.
pub(super) fn open_envelope(
    keys: &Keyring,
    record_id: RecordId,
    bytes: &[u8],
    section: Section,
) -> Result<Vec<u8>> {
    let env = Envelope::from_bytes(bytes).map_err(|_| ProfileError::Corrupt("envelope"))?;
    if env.header.record_id != record_id || env.header.section != section.as_str() {
        return Err(ProfileError::Corrupt("envelope header"));
    }
    let key = keys
        .get(&(section, env.header.epoch))
        .ok_or(ProfileError::Corrupt("section key"))?;
    let plain = env
        .open(key)
        .map_err(|_| ProfileError::Corrupt("envelope"))?;
    payload::decode(&plain)
}

/// A section's document from its stored log (snapshot, then the whole
/// tail in one merge so the document re-indexes once), and its storage
/// bookkeeping. Each ciphertext is freed as soon as it is opened (opening a
/// profile's peak memory is what a phone feels).
pub(super) fn load_section(
    keys: &Keyring,
    record_id: RecordId,
    section: Section,
    log: SectionLog,
) -> Result<(SectionDoc, SectionState)> {
    let SectionLog {
        snapshot,
        tail: items,
    } = log;
    let mut snapshot_bytes = 0;
    let mut upto_seq = None;
    let mut doc = match snapshot {
        Some(snap) => {
            upto_seq = Some(snap.upto_seq);
            let plain = open_envelope(keys, record_id, &snap.envelope, section)?;
            drop(snap);
            snapshot_bytes = plain.len();
            SectionDoc::load(section, &plain)?
        }
        None => SectionDoc::new(section),
    };
    let (tail_len, last_tail_seq) = (items.len(), items.last().map(|i| i.seq));
    let mut tail = Vec::new();
    for item in items {
        tail.extend_from_slice(&open_envelope(keys, record_id, &item.envelope, section)?);
    }
    doc.apply_changes(&tail)?;
    // Everything in the document is already stored.
    doc.take_changes();
    let state = SectionState {
        last_seq: last_tail_seq.or(upto_seq).unwrap_or(0),
        tail_len,
        tail_bytes: tail.len(),
        snapshot_bytes,
    };
    Ok((doc, state))
}
