//! An in-memory [`Store`]: for tests and for throwaway profiles.

use std::collections::BTreeMap;

use super::{
    Committed, LogItem, Result, SectionLog, Snapshot, Store, StoreError, WriteBatch, WriteOp,
};

/// Keeps everything in maps; nothing survives the process.
#[derive(Debug, Default, Clone)]
pub struct MemoryStore {
    meta: BTreeMap<String, Vec<u8>>,
    log: BTreeMap<u64, (String, Vec<u8>)>,
    snapshots: BTreeMap<String, Snapshot>,
    last_seq: u64,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }
}

impl Store for MemoryStore {
    fn get_meta(&self, key: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.meta.get(key).cloned())
    }

    fn sections(&self) -> Result<Vec<String>> {
        let mut names: Vec<String> = self.log.values().map(|(s, _)| s.clone()).collect();
        names.extend(self.snapshots.keys().cloned());
        names.sort();
        names.dedup();
        Ok(names)
    }

    fn load_section(&self, section: &str) -> Result<SectionLog> {
        let snapshot = self.snapshots.get(section).cloned();
        let after = snapshot.as_ref().map_or(0, |s| s.upto_seq);
        let tail = self
            .log
            .range(after + 1..)
            .filter(|(_, (s, _))| s == section)
            .map(|(seq, (_, envelope))| LogItem {
                seq: *seq,
                envelope: envelope.clone(),
            })
            .collect();
        Ok(SectionLog { snapshot, tail })
    }

    fn last_seq(&self) -> Result<u64> {
        Ok(self.last_seq)
    }

    fn commit(&mut self, batch: WriteBatch) -> Result<Committed> {
        // Check first, so a refused batch leaves the store untouched.
        let mut seq = self.last_seq;
        for op in &batch.ops {
            match op {
                WriteOp::Append { .. } => seq += 1,
                WriteOp::PutSnapshot {
                    section, upto_seq, ..
                } if *upto_seq > seq => {
                    return Err(StoreError::SnapshotBeyondLog {
                        section: section.clone(),
                        upto: *upto_seq,
                    });
                }
                _ => {}
            }
        }
        let next = self;
        let mut committed = Committed::default();
        for op in batch.ops {
            match op {
                WriteOp::PutMeta { key, value } => {
                    next.meta.insert(key, value);
                }
                WriteOp::DeleteMeta { key } => {
                    next.meta.remove(&key);
                }
                WriteOp::Append { section, envelope } => {
                    next.last_seq += 1;
                    next.log.insert(next.last_seq, (section, envelope));
                    committed.appended.push(next.last_seq);
                }
                WriteOp::PutSnapshot {
                    section,
                    upto_seq,
                    envelope,
                } => {
                    next.snapshots
                        .insert(section, Snapshot { upto_seq, envelope });
                }
            }
        }
        Ok(committed)
    }
}
