//! An in-memory [`Store`]: for tests and for throwaway profiles.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use satchel_protocol::LogName;

use super::{
    envelope_hash, Committed, LogItem, OutboxItem, Owed, Result, SectionLog, Snapshot, Store,
    StoreError, WriteBatch, WriteOp,
};

#[derive(Debug, Clone)]
struct Row {
    section: LogName,
    envelope: Vec<u8>,
    hash: [u8; 32],
    server_seq: Option<u64>,
    outbound: bool,
    /// Made here, refused by the relay for good: kept, never sent.
    set_aside: bool,
    /// The relays that acknowledged it.
    relays: BTreeSet<String>,
}

/// Keeps everything in maps; nothing survives the process.
#[derive(Debug, Default, Clone)]
pub struct MemoryStore {
    meta: BTreeMap<String, Vec<u8>>,
    log: BTreeMap<u64, Row>,
    by_hash: HashMap<[u8; 32], u64>,
    snapshots: BTreeMap<LogName, Snapshot>,
    last_seq: u64,
}

impl MemoryStore {
    /// Append an envelope to the log; its new sequence.
    fn insert(
        &mut self,
        section: LogName,
        envelope: Vec<u8>,
        hash: [u8; 32],
        server_seq: Option<u64>,
        outbound: bool,
    ) -> u64 {
        self.last_seq += 1;
        self.by_hash.insert(hash, self.last_seq);
        self.log.insert(
            self.last_seq,
            Row {
                section,
                envelope,
                hash,
                server_seq,
                outbound,
                set_aside: false,
                relays: BTreeSet::new(),
            },
        );
        self.last_seq
    }

    pub fn new() -> Self {
        Self::default()
    }
}

impl Store for MemoryStore {
    fn get_meta(&self, key: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.meta.get(key).cloned())
    }

    fn sections(&self) -> Result<Vec<String>> {
        let mut names: Vec<String> = self.log.values().map(|r| r.section.to_string()).collect();
        names.extend(self.snapshots.keys().map(LogName::to_string));
        names.sort();
        names.dedup();
        Ok(names)
    }

    fn load_section(&self, section: LogName) -> Result<SectionLog> {
        let snapshot = self.snapshots.get(&section).cloned();
        let after = snapshot.as_ref().map_or(0, |s| s.upto_seq);
        let tail = self
            .log
            .range(after + 1..)
            .filter(|(_, r)| r.section == section)
            .map(|(seq, r)| LogItem {
                seq: *seq,
                envelope: r.envelope.clone(),
            })
            .collect();
        Ok(SectionLog { snapshot, tail })
    }

    fn last_seq(&self) -> Result<u64> {
        Ok(self.last_seq)
    }

    fn outbox(&self, limit: usize) -> Result<Vec<OutboxItem>> {
        Ok(self
            .log
            .iter()
            .filter(|(_, r)| r.outbound && !r.set_aside && r.server_seq.is_none())
            .take(limit)
            .map(|(seq, r)| OutboxItem {
                seq: *seq,
                section: r.section,
                envelope: r.envelope.clone(),
                hash: r.hash,
            })
            .collect())
    }

    fn owed(&self, relay: &str, owed: Owed, limit: usize) -> Result<Vec<OutboxItem>> {
        Ok(self
            .log
            .iter()
            .filter(|(_, r)| {
                let wanted = match owed {
                    Owed::Outbox => r.outbound,
                    Owed::Everything => true,
                };
                wanted && !r.set_aside && !r.relays.contains(relay)
            })
            .take(limit)
            .map(|(seq, r)| OutboxItem {
                seq: *seq,
                section: r.section,
                envelope: r.envelope.clone(),
                hash: r.hash,
            })
            .collect())
    }

    fn contains(&self, hash: &[u8; 32]) -> Result<bool> {
        Ok(self.by_hash.contains_key(hash))
    }

    fn log_hashes(&self, section: LogName) -> Result<Vec<[u8; 32]>> {
        Ok(self
            .log
            .values()
            .filter(|r| r.section == section)
            .map(|r| r.hash)
            .collect())
    }

    fn log_envelopes(&self, section: LogName) -> Result<Vec<([u8; 32], Vec<u8>)>> {
        Ok(self
            .log
            .values()
            .filter(|r| r.section == section)
            .map(|r| (r.hash, r.envelope.clone()))
            .collect())
    }

    fn commit(&mut self, batch: WriteBatch) -> Result<Committed> {
        // Check first, so a refused batch leaves the store untouched.
        let mut seq = self.last_seq;
        let mut seen = std::collections::HashSet::new();
        for op in &batch.ops {
            match op {
                WriteOp::Append { envelope, .. } => {
                    let hash = envelope_hash(envelope);
                    if self.by_hash.contains_key(&hash) || !seen.insert(hash) {
                        return Err(StoreError::Duplicate);
                    }
                    seq += 1;
                }
                WriteOp::Receive { envelope, .. } | WriteOp::ReceiveDirect { envelope, .. } => {
                    let hash = envelope_hash(envelope);
                    if !self.by_hash.contains_key(&hash) && seen.insert(hash) {
                        seq += 1;
                    }
                }
                WriteOp::PutSnapshot {
                    section, upto_seq, ..
                } if *upto_seq > seq => {
                    return Err(StoreError::SnapshotBeyondLog {
                        section: *section,
                        upto: *upto_seq,
                    });
                }
                _ => {}
            }
        }
        let mut committed = Committed::default();
        for op in batch.ops {
            match op {
                WriteOp::PutMeta { key, value } => {
                    self.meta.insert(key, value);
                }
                WriteOp::DeleteMeta { key } => {
                    self.meta.remove(&key);
                }
                WriteOp::Append { section, envelope } => {
                    let hash = envelope_hash(&envelope);
                    let seq = self.insert(section, envelope, hash, None, true);
                    committed.appended.push(seq);
                }
                WriteOp::ReceiveDirect {
                    section,
                    envelope,
                    forward,
                } => {
                    let hash = envelope_hash(&envelope);
                    let stored = (!self.by_hash.contains_key(&hash))
                        .then(|| self.insert(section, envelope, hash, None, forward));
                    committed.received.push(stored);
                }
                WriteOp::Receive {
                    section,
                    envelope,
                    relay,
                    server_seq,
                } => {
                    let hash = envelope_hash(&envelope);
                    let seq = match self.by_hash.get(&hash) {
                        Some(existing) => {
                            committed.received.push(None);
                            *existing
                        }
                        None => {
                            let seq = self.insert(section, envelope, hash, Some(server_seq), false);
                            committed.received.push(Some(seq));
                            seq
                        }
                    };
                    if let Some(row) = self.log.get_mut(&seq) {
                        row.server_seq.get_or_insert(server_seq);
                        row.relays.extend(relay);
                    }
                }
                WriteOp::Acknowledge {
                    relay,
                    hash,
                    server_seq,
                } => {
                    if let Some(row) = self.by_hash.get(&hash).and_then(|s| self.log.get_mut(s)) {
                        row.server_seq.get_or_insert(server_seq);
                        row.relays.extend(relay);
                    }
                }
                WriteOp::Reseal { old, envelope } => {
                    let Some(seq) = self.by_hash.get(&old).copied() else {
                        continue;
                    };
                    let Some(row) = self.log.get_mut(&seq) else {
                        continue;
                    };
                    if !row.outbound || row.set_aside || row.server_seq.is_some() {
                        continue;
                    }
                    let hash = envelope_hash(&envelope);
                    row.envelope = envelope;
                    row.hash = hash;
                    self.by_hash.remove(&old);
                    self.by_hash.insert(hash, seq);
                }
                WriteOp::SetAside { hash } => {
                    if let Some(row) = self.by_hash.get(&hash).and_then(|s| self.log.get_mut(s)) {
                        if row.outbound && row.server_seq.is_none() {
                            row.set_aside = true;
                        }
                    }
                }
                WriteOp::PutSnapshot {
                    section,
                    upto_seq,
                    envelope,
                } => {
                    self.snapshots
                        .insert(section, Snapshot { upto_seq, envelope });
                }
            }
        }
        Ok(committed)
    }
}
