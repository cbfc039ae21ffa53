//! Device storage: one [`Store`] trait and its two backends.
//!
//! The store owns bytes, not meaning. It keeps
//! - `meta`: small named values (the vault header, wrapped keys, record id),
//! - a per-section append-only **log** of sealed change envelopes, each given a
//!   store-wide increasing sequence number, and
//! - one **snapshot** per section (a sealed full document) that covers the log
//!   up to a sequence number, so opening a section reads the snapshot plus
//!   the short tail after it.
//!
//! Callers (the [`crate::profile`] module) seal every value that carries health
//! data before it reaches a store; backends never see plaintext.
//!
//! Writes go through [`Store::commit`] with a [`WriteBatch`]: all of a batch is
//! applied atomically and durably, or none of it. Backends:
//! [`MemoryStore`] (tests, ephemeral profiles) and [`SqliteStore`]
//! (rusqlite, WAL, numbered migrations in `migrations/*.sql`). Both pass the
//! same conformance suite in [`conformance`].

mod memory;
mod migrations;
mod sqlite;

#[cfg(test)]
pub(crate) mod conformance;

pub use memory::MemoryStore;
pub use migrations::{LATEST_VERSION, MIGRATIONS};
pub use sqlite::SqliteStore;

/// Errors from a storage backend. They never carry stored values.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The underlying database failed (I/O, corruption, locked).
    #[error("storage failure: {0}")]
    Backend(String),
    /// The database was written by a newer Satchel than this one.
    #[error("the store has schema version {found}, newer than this build supports ({supported}); update Satchel")]
    TooNew { found: u32, supported: u32 },
    /// A snapshot claimed to cover log entries that do not exist.
    #[error("snapshot for section {section} covers sequence {upto}, beyond the log")]
    SnapshotBeyondLog { section: String, upto: u64 },
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        // rusqlite errors describe the failure (codes, SQL), never bound values.
        StoreError::Backend(e.to_string())
    }
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// One stored log item: its sequence number and sealed bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogItem {
    pub seq: u64,
    pub envelope: Vec<u8>,
}

/// A sealed snapshot of one section and the last log sequence it covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub upto_seq: u64,
    pub envelope: Vec<u8>,
}

/// What opening a section needs: its newest snapshot and the log after it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SectionLog {
    pub snapshot: Option<Snapshot>,
    /// Log items with `seq > snapshot.upto_seq` (all of them without a
    /// snapshot), in increasing order.
    pub tail: Vec<LogItem>,
}

/// One write inside a [`WriteBatch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteOp {
    PutMeta {
        key: String,
        value: Vec<u8>,
    },
    DeleteMeta {
        key: String,
    },
    Append {
        section: String,
        envelope: Vec<u8>,
    },
    /// Replace the section's snapshot. `upto_seq` must not exceed the highest
    /// sequence appended so far (including earlier ops of the same batch).
    PutSnapshot {
        section: String,
        upto_seq: u64,
        envelope: Vec<u8>,
    },
}

/// Writes applied together: all or nothing, durable when `commit` returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteBatch {
    pub ops: Vec<WriteOp>,
}

impl WriteBatch {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn put_meta(&mut self, key: impl Into<String>, value: Vec<u8>) -> &mut Self {
        self.ops.push(WriteOp::PutMeta {
            key: key.into(),
            value,
        });
        self
    }
    pub fn delete_meta(&mut self, key: impl Into<String>) -> &mut Self {
        self.ops.push(WriteOp::DeleteMeta { key: key.into() });
        self
    }
    pub fn append(&mut self, section: impl Into<String>, envelope: Vec<u8>) -> &mut Self {
        self.ops.push(WriteOp::Append {
            section: section.into(),
            envelope,
        });
        self
    }
    pub fn put_snapshot(
        &mut self,
        section: impl Into<String>,
        upto_seq: u64,
        envelope: Vec<u8>,
    ) -> &mut Self {
        self.ops.push(WriteOp::PutSnapshot {
            section: section.into(),
            upto_seq,
            envelope,
        });
        self
    }
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

/// The result of a commit: the sequence numbers given to each `Append`, in
/// the order of the batch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Committed {
    pub appended: Vec<u64>,
}

/// Device storage. Every backend must pass [`conformance`].
pub trait Store: Send {
    /// A named meta value.
    fn get_meta(&self, key: &str) -> Result<Option<Vec<u8>>>;
    /// Names of the sections that have a log or a snapshot, sorted.
    fn sections(&self) -> Result<Vec<String>>;
    /// The newest snapshot of a section and the log after it.
    fn load_section(&self, section: &str) -> Result<SectionLog>;
    /// Highest sequence number ever appended (0 for an empty store).
    fn last_seq(&self) -> Result<u64>;
    /// Apply a batch atomically and durably.
    fn commit(&mut self, batch: WriteBatch) -> Result<Committed>;
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn conformance_memory() {
        conformance::run_all(MemoryStore::new);
    }

    #[test]
    fn conformance_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        let mut n = 0;
        conformance::run_all(|| {
            n += 1;
            SqliteStore::open(&dir.path().join(format!("store-{n}.db"))).unwrap()
        });
    }

    #[test]
    fn sqlite_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        {
            let mut s = SqliteStore::open(&path).unwrap();
            let mut b = WriteBatch::new();
            b.put_meta("m", vec![7])
                .append("labs", vec![1])
                .append("labs", vec![2]);
            s.commit(b).unwrap();
        }
        let s = SqliteStore::open(&path).unwrap();
        assert_eq!(s.get_meta("m").unwrap(), Some(vec![7]));
        assert_eq!(s.load_section("labs").unwrap().tail.len(), 2);
        assert_eq!(s.last_seq().unwrap(), 2);
    }

    /// A database created at every older schema version, holding data, and
    /// then upgraded, has exactly the schema of a fresh database and keeps
    /// its data.
    #[test]
    fn upgraded_database_equals_fresh() {
        let dir = tempfile::tempdir().unwrap();
        let fresh = SqliteStore::open(&dir.path().join("fresh.db")).unwrap();
        assert_eq!(fresh.schema_version().unwrap(), LATEST_VERSION);
        let fresh_schema = fresh.schema_dump().unwrap();
        for start in 1..LATEST_VERSION {
            let path = dir.path().join(format!("from-{start}.db"));
            {
                let mut old = SqliteStore::open_at_version(&path, start).unwrap();
                assert_eq!(old.schema_version().unwrap(), start);
                let mut b = WriteBatch::new();
                b.put_meta("m", vec![1]).append("labs", vec![2]);
                old.commit(b).unwrap();
            }
            let upgraded = SqliteStore::open(&path).unwrap();
            assert_eq!(upgraded.schema_version().unwrap(), LATEST_VERSION);
            assert_eq!(
                upgraded.schema_dump().unwrap(),
                fresh_schema,
                "upgrade from {start}"
            );
            assert_eq!(upgraded.get_meta("m").unwrap(), Some(vec![1]));
            assert_eq!(
                upgraded.load_section("labs").unwrap().tail[0].envelope,
                vec![2]
            );
        }
    }

    #[test]
    fn newer_database_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        {
            let s = SqliteStore::open(&path).unwrap();
            s.conn
                .pragma_update(None, "user_version", LATEST_VERSION + 1)
                .unwrap();
        }
        let err = SqliteStore::open(&path).unwrap_err();
        assert!(matches!(err, StoreError::TooNew { .. }), "{err}");
    }

    #[test]
    fn migrations_are_numbered_without_gaps() {
        for (i, (v, _)) in MIGRATIONS.iter().enumerate() {
            assert_eq!(*v as usize, i + 1);
        }
    }
}
