//! The chunk index: the record's `wearables` section document (automerge),
//! one small entry per chunk.
//!
//! ```text
//! ROOT { "kind": "satchel-wearables-index", "layout": 1,
//!        "chunks": { <hex SHA-256 of the chunk's sealed envelope>: <entry bytes> } }
//! entry = format 1, metric u8, author (32 bytes), written_at_ms i64,
//!         first_start_ms i64, last_start_ms i64, count u32 (all big-endian),
//!         source (UTF-8, the rest)
//! ```
//!
//! Entries are only ever added (chunks are append-only), so concurrent
//! writers never conflict: each key is a distinct envelope hash. Like the
//! clinical sections, every index starts from one deterministic genesis
//! change so indexes created on two devices merge.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use automerge::transaction::Transactable;
use automerge::{
    ActorId, Automerge, ChangeHash, ObjId, ObjType, ReadDoc, SaveOptions, ScalarValue,
    Value as AmValue, ROOT,
};

use super::metric::Metric;
use super::WearablesError;
use crate::ids::{EntryId, IdentityId};

const K_KIND: &str = "kind";
const KIND: &str = "satchel-wearables-index";
const K_LAYOUT: &str = "layout";
const LAYOUT: u64 = 1;
const K_CHUNKS: &str = "chunks";
const ENTRY_FORMAT: u8 = 1;

/// What the index says about one chunk.
#[derive(Clone, PartialEq, Eq)]
pub struct ChunkEntry {
    /// SHA-256 of the chunk's sealed envelope (its identity in the store and on the relay).
    pub hash: [u8; 32],
    pub metric: Metric,
    /// The device that wrote (and signed) the chunk.
    pub author: IdentityId,
    pub written_at_ms: i64,
    pub first_start_ms: i64,
    pub last_start_ms: i64,
    pub count: u32,
    pub source: String,
}

impl std::fmt::Debug for ChunkEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChunkEntry")
            .field("hash", &hex::encode(&self.hash[..8]))
            .field("metric", &self.metric)
            .field("count", &self.count)
            .finish_non_exhaustive()
    }
}

impl ChunkEntry {
    /// Order in which chunks win identity conflicts: later written first,
    /// then by hash (the same on every device).
    pub fn order_key(&self) -> (i64, [u8; 32]) {
        (self.written_at_ms, self.hash)
    }

    fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(70 + self.source.len());
        out.push(ENTRY_FORMAT);
        out.push(self.metric.id());
        out.extend_from_slice(&self.author.0);
        out.extend_from_slice(&self.written_at_ms.to_be_bytes());
        out.extend_from_slice(&self.first_start_ms.to_be_bytes());
        out.extend_from_slice(&self.last_start_ms.to_be_bytes());
        out.extend_from_slice(&self.count.to_be_bytes());
        out.extend_from_slice(self.source.as_bytes());
        out
    }

    fn from_bytes(hash: [u8; 32], b: &[u8]) -> Option<ChunkEntry> {
        let i64_at = |at: usize| {
            b.get(at..at + 8)
                .and_then(|s| <[u8; 8]>::try_from(s).ok())
                .map(i64::from_be_bytes)
        };
        if *b.first()? != ENTRY_FORMAT {
            return None;
        }
        let metric = Metric::from_id(*b.get(1)?)?;
        let author = IdentityId(<[u8; 32]>::try_from(b.get(2..34)?).ok()?);
        let count = u32::from_be_bytes(<[u8; 4]>::try_from(b.get(58..62)?).ok()?);
        Some(ChunkEntry {
            hash,
            metric,
            author,
            written_at_ms: i64_at(34)?,
            first_start_ms: i64_at(42)?,
            last_start_ms: i64_at(50)?,
            count,
            source: std::str::from_utf8(b.get(62..)?).ok()?.to_string(),
        })
    }
}

fn genesis() -> Result<&'static (Automerge, ChangeHash), WearablesError> {
    // Boxed, as record::doc's genesis cache: a pointer in the library file.
    static CACHE: OnceLock<Box<(Automerge, ChangeHash)>> = OnceLock::new();
    if let Some(cached) = CACHE.get() {
        return Ok(cached);
    }
    let mut doc = Automerge::new();
    doc.set_actor(ActorId::from(&b"satchel/wearables-index"[..]));
    let made = doc
        .transact(|tx| {
            tx.put(ROOT, K_KIND, KIND)?;
            tx.put(ROOT, K_LAYOUT, LAYOUT)?;
            tx.put_object(ROOT, K_CHUNKS, ObjType::Map)?;
            Ok::<(), automerge::AutomergeError>(())
        })
        .map_err(|_| WearablesError::Index("could not create the document"))?;
    let hash = made
        .hash
        .ok_or(WearablesError::Index("could not create the document"))?;
    Ok(CACHE.get_or_init(|| Box::new((doc, hash))))
}

fn random_actor() -> ActorId {
    ActorId::from(&EntryId::random().0[..])
}

/// The index document and its decoded entries.
#[derive(Clone)]
pub struct ChunkIndex {
    doc: Automerge,
    genesis: ChangeHash,
    chunks: ObjId,
    pending: Vec<ChangeHash>,
    entries: BTreeMap<[u8; 32], ChunkEntry>,
}

impl std::fmt::Debug for ChunkIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChunkIndex")
            .field("chunks", &self.entries.len())
            .finish_non_exhaustive()
    }
}

impl ChunkIndex {
    /// An empty index (its genesis change is its first pending change).
    pub fn new() -> Result<Self, WearablesError> {
        let (doc, hash) = genesis()?;
        let mut doc = doc.clone();
        let chunks = chunks_obj(&doc)?;
        doc.set_actor(random_actor());
        Ok(ChunkIndex {
            doc,
            genesis: *hash,
            chunks,
            pending: vec![*hash],
            entries: BTreeMap::new(),
        })
    }

    /// Load a save (or any concatenation of changes) of the index.
    pub fn load(bytes: &[u8]) -> Result<Self, WearablesError> {
        let mut index = Self::new()?;
        index.pending.clear();
        index.apply(bytes)?;
        Ok(index)
    }

    /// Merge changes or a save from another replica. Refuses documents that
    /// do not descend from the index genesis (nothing is applied then).
    pub fn apply(&mut self, bytes: &[u8]) -> Result<(), WearablesError> {
        if bytes.is_empty() {
            return Ok(());
        }
        // Framed automerge documents and changes only (the chunk types the
        // index writes), before automerge's own parsers see the bytes.
        crate::record::wire::chunks(bytes).map_err(WearablesError::Index)?;
        let mut trial = self.doc.fork();
        trial
            .load_incremental(bytes)
            .map_err(|_| WearablesError::Index("corrupt changes"))?;
        let foreign_root = trial
            .get_changes(&[])
            .iter()
            .any(|c| c.deps().is_empty() && c.hash() != self.genesis);
        if foreign_root || chunks_obj(&trial).ok().as_ref() != Some(&self.chunks) {
            return Err(WearablesError::Index("changes of another document"));
        }
        self.doc
            .load_incremental(bytes)
            .map_err(|_| WearablesError::Index("corrupt changes"))?;
        self.reindex();
        Ok(())
    }

    fn reindex(&mut self) {
        self.entries.clear();
        for item in self.doc.map_range(&self.chunks, ..) {
            let Ok(hash) = hex::decode(item.key.as_ref()) else {
                continue;
            };
            let Ok(hash) = <[u8; 32]>::try_from(hash.as_slice()) else {
                continue;
            };
            if let automerge::ValueRef::Scalar(automerge::ScalarValueRef::Bytes(b)) = &item.value {
                if let Some(entry) = ChunkEntry::from_bytes(hash, b) {
                    self.entries.insert(hash, entry);
                }
            }
        }
    }

    /// Add entries, as one change.
    pub fn add(&mut self, entries: &[ChunkEntry]) -> Result<(), WearablesError> {
        if entries.is_empty() {
            return Ok(());
        }
        let chunks = self.chunks.clone();
        let made = self
            .doc
            .transact(|tx| {
                for e in entries {
                    tx.put(
                        &chunks,
                        hex::encode(e.hash),
                        ScalarValue::Bytes(e.to_bytes()),
                    )?;
                }
                Ok::<(), automerge::AutomergeError>(())
            })
            .map_err(|_| WearablesError::Index("could not write"))?;
        if let Some(hash) = made.hash {
            self.pending.push(hash);
        }
        for e in entries {
            self.entries.insert(e.hash, e.clone());
        }
        Ok(())
    }

    /// Local changes since the last `take_changes` / `save` / `load`.
    pub fn take_changes(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        for hash in std::mem::take(&mut self.pending) {
            if let Some(change) = self.doc.get_change_by_hash(&hash) {
                out.extend_from_slice(change.raw_bytes());
            }
        }
        out
    }

    /// A full save (no DEFLATE; the envelope framing compresses).
    pub fn save(&mut self) -> Vec<u8> {
        self.pending.clear();
        self.doc.save_with_options(SaveOptions {
            deflate: false,
            retain_orphans: true,
        })
    }

    /// Every chunk entry, by hash.
    pub fn entries(&self) -> &BTreeMap<[u8; 32], ChunkEntry> {
        &self.entries
    }

    /// The entry for a chunk hash.
    pub fn get(&self, hash: &[u8; 32]) -> Option<&ChunkEntry> {
        self.entries.get(hash)
    }
}

fn chunks_obj(doc: &Automerge) -> Result<ObjId, WearablesError> {
    let kind_ok = matches!(doc.get(ROOT, K_KIND),
        Ok(Some((AmValue::Scalar(s), _))) if matches!(s.as_ref(), ScalarValue::Str(k) if k.as_str() == KIND));
    if !kind_ok {
        return Err(WearablesError::Index("not a wearables index"));
    }
    match doc.get(ROOT, K_CHUNKS) {
        Ok(Some((AmValue::Object(ObjType::Map), id))) => Ok(id),
        _ => Err(WearablesError::Index("no chunk map")),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn entry(n: u8, metric: Metric) -> ChunkEntry {
        ChunkEntry {
            hash: [n; 32],
            metric,
            author: IdentityId([9; 32]),
            written_at_ms: 1000 + i64::from(n),
            first_start_ms: 5,
            last_start_ms: 9,
            count: 3,
            source: "Watch".into(),
        }
    }

    #[test]
    fn independent_indexes_merge() {
        let mut a = ChunkIndex::new().unwrap();
        let mut b = ChunkIndex::new().unwrap();
        a.add(&[entry(1, Metric::HeartRate)]).unwrap();
        b.add(&[entry(2, Metric::Steps), entry(3, Metric::Weight)])
            .unwrap();
        let from_a = a.take_changes();
        let from_b = b.take_changes();
        a.apply(&from_b).unwrap();
        b.apply(&from_a).unwrap();
        assert_eq!(a.entries(), b.entries());
        assert_eq!(a.entries().len(), 3);
        let loaded = ChunkIndex::load(&a.save()).unwrap();
        assert_eq!(loaded.entries(), a.entries());
        assert_eq!(loaded.get(&[2; 32]).unwrap().metric, Metric::Steps);
    }

    #[test]
    fn refuses_foreign_documents() {
        let mut a = ChunkIndex::new().unwrap();
        let mut other = Automerge::new();
        other
            .transact(|tx| {
                tx.put(ROOT, "kind", "something else")?;
                Ok::<(), automerge::AutomergeError>(())
            })
            .unwrap();
        assert!(a.apply(&other.save()).is_err());
        assert!(a.apply(b"garbage").is_err());
        assert!(a.entries().is_empty());
    }
}
