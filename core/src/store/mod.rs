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

use satchel_protocol::LogName;

/// Errors from a storage backend. They never carry stored values.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The underlying database failed (I/O, corruption, locked).
    #[error("storage failure: {0}")]
    Backend(String),
    /// The disk is full: the batch was not written.
    #[error("the device's disk is full: free some space and try again (nothing was changed)")]
    DiskFull,
    /// The database was written by a newer Satchel than this one.
    #[error("the store has schema version {found}, newer than this build supports ({supported}); update Satchel")]
    TooNew { found: u32, supported: u32 },
    /// A local change identical (same hash) to one already stored.
    #[error("this envelope is already stored")]
    Duplicate,
    /// A snapshot claimed to cover log entries that do not exist.
    #[error("snapshot for section {section} covers sequence {upto}, beyond the log")]
    SnapshotBeyondLog { section: LogName, upto: u64 },
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull) {
            return StoreError::DiskFull;
        }
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
    /// A change made on this device: stored and queued for upload (the
    /// outbox) until [`WriteOp::Acknowledge`].
    Append {
        section: LogName,
        envelope: Vec<u8>,
    },
    /// An envelope pulled from a relay with its relay sequence. Ignored
    /// when an envelope with the same hash is already stored (then it only
    /// records `server_seq` if that was unknown). With `relay`, that relay
    /// is recorded as holding it (as [`WriteOp::Acknowledge`] does).
    Receive {
        section: LogName,
        envelope: Vec<u8>,
        relay: Option<String>,
        server_seq: u64,
    },
    /// An envelope received directly from another device (edge sync), not
    /// from a relay: stored once (ignored when the hash is already stored),
    /// with no relay sequence yet. With `forward`, it joins the outbox, so
    /// the next relay sync uploads it for its author (store and forward);
    /// a relay pull of the same envelope later acknowledges it.
    ReceiveDirect {
        section: LogName,
        envelope: Vec<u8>,
        forward: bool,
    },
    /// A relay holds the envelope with this hash under `server_seq`: it
    /// leaves [`Store::outbox`] (no relay has it is no longer true) and,
    /// with `relay`, what that relay is owed ([`Store::owed`]).
    Acknowledge {
        relay: Option<String>,
        hash: [u8; 32],
        server_seq: u64,
    },
    /// Replace an outbox envelope (not yet acknowledged) with `envelope`:
    /// the same change sealed again, e.g. under a newer key epoch. The row
    /// keeps its place in the log; the old bytes are gone. Nothing happens
    /// when no unacknowledged local envelope has hash `old`.
    Reseal {
        old: [u8; 32],
        envelope: Vec<u8>,
    },
    /// Take an outbox envelope out of the outbox for good (the relay refused
    /// it as oversized or invalid): it stays stored on the device, and the
    /// rest of the outbox is no longer held up by it.
    SetAside {
        hash: [u8; 32],
    },
    /// Replace the section's snapshot. `upto_seq` must not exceed the highest
    /// sequence appended so far (including earlier ops of the same batch).
    PutSnapshot {
        section: LogName,
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
    pub fn append(&mut self, section: LogName, envelope: Vec<u8>) -> &mut Self {
        self.ops.push(WriteOp::Append { section, envelope });
        self
    }
    pub fn receive(
        &mut self,
        section: LogName,
        envelope: Vec<u8>,
        relay: Option<&str>,
        server_seq: u64,
    ) -> &mut Self {
        self.ops.push(WriteOp::Receive {
            section,
            envelope,
            relay: relay.map(str::to_string),
            server_seq,
        });
        self
    }
    pub fn receive_direct(
        &mut self,
        section: LogName,
        envelope: Vec<u8>,
        forward: bool,
    ) -> &mut Self {
        self.ops.push(WriteOp::ReceiveDirect {
            section,
            envelope,
            forward,
        });
        self
    }
    pub fn acknowledge(
        &mut self,
        relay: Option<&str>,
        hash: [u8; 32],
        server_seq: u64,
    ) -> &mut Self {
        self.ops.push(WriteOp::Acknowledge {
            relay: relay.map(str::to_string),
            hash,
            server_seq,
        });
        self
    }
    pub fn reseal(&mut self, old: [u8; 32], envelope: Vec<u8>) -> &mut Self {
        self.ops.push(WriteOp::Reseal { old, envelope });
        self
    }
    pub fn set_aside(&mut self, hash: [u8; 32]) -> &mut Self {
        self.ops.push(WriteOp::SetAside { hash });
        self
    }
    pub fn put_snapshot(
        &mut self,
        section: LogName,
        upto_seq: u64,
        envelope: Vec<u8>,
    ) -> &mut Self {
        self.ops.push(WriteOp::PutSnapshot {
            section,
            upto_seq,
            envelope,
        });
        self
    }
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

/// The result of a commit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Committed {
    /// The sequence given to each `Append`, in batch order.
    pub appended: Vec<u64>,
    /// For each `Receive` and `ReceiveDirect`, in batch order: its new
    /// sequence, or `None` when the envelope was already stored.
    pub received: Vec<Option<u64>>,
}

/// A local change waiting for the relay to acknowledge it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxItem {
    pub seq: u64,
    /// The log it goes to (stored names are parsed when read).
    pub section: LogName,
    pub envelope: Vec<u8>,
    pub hash: [u8; 32],
}

/// What a device owes a relay ([`Store::owed`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owed {
    /// Its outbox: changes made here (or forwarded for their author) that
    /// the relay has not acknowledged.
    Outbox,
    /// Everything stored here that the relay has not acknowledged (moving
    /// a record to that relay), except envelopes set aside as refused.
    Everything,
}

/// SHA-256 of a stored envelope: its identity in the store and on the relay.
pub fn envelope_hash(envelope: &[u8]) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, envelope);
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

/// Device storage. Every backend must pass [`conformance`].
pub trait Store: Send {
    /// A named meta value.
    fn get_meta(&self, key: &str) -> Result<Option<Vec<u8>>>;
    /// Names of the logs that have envelopes or a snapshot, sorted: stored
    /// names, as stored (the caller parses them).
    fn sections(&self) -> Result<Vec<String>>;
    /// The newest snapshot of a log and the log after it.
    fn load_section(&self, log: LogName) -> Result<SectionLog>;
    /// Highest sequence number ever appended (0 for an empty store).
    fn last_seq(&self) -> Result<u64>;
    /// Local changes no relay has acknowledged yet, oldest first.
    fn outbox(&self, limit: usize) -> Result<Vec<OutboxItem>>;
    /// What `relay` has not acknowledged ([`Owed`]), oldest first.
    fn owed(&self, relay: &str, owed: Owed, limit: usize) -> Result<Vec<OutboxItem>>;
    /// Whether an envelope with this hash is stored.
    fn contains(&self, hash: &[u8; 32]) -> Result<bool>;
    /// The hash of every envelope stored in a log, in store order.
    fn log_hashes(&self, log: LogName) -> Result<Vec<[u8; 32]>>;
    /// Every envelope stored in a log with its hash, in store order.
    fn log_envelopes(&self, log: LogName) -> Result<Vec<([u8; 32], Vec<u8>)>>;
    /// Apply a batch atomically and durably.
    fn commit(&mut self, batch: WriteBatch) -> Result<Committed>;
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use satchel_protocol::Section;

    const LABS: LogName = LogName::Section(Section::Labs);

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
                .append(LABS, vec![1])
                .append(LABS, vec![2]);
            s.commit(b).unwrap();
        }
        let s = SqliteStore::open(&path).unwrap();
        assert_eq!(s.get_meta("m").unwrap(), Some(vec![7]));
        assert_eq!(s.load_section(LABS).unwrap().tail.len(), 2);
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
                let old = SqliteStore::open_at_version(&path, start).unwrap();
                assert_eq!(old.schema_version().unwrap(), start);
                // Rows written the way that schema version wrote them.
                old.conn
                    .execute_batch(
                        "INSERT INTO meta (key, value) VALUES ('m', x'01');
                         INSERT INTO section_log (section, envelope) VALUES ('labs', x'02');",
                    )
                    .unwrap();
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
                upgraded.load_section(LABS).unwrap().tail[0].envelope,
                vec![2]
            );
        }
    }

    /// Acknowledgements made before 0004 were by the one relay named in
    /// meta `sync/relay`: they stay that relay's, and no other relay's.
    #[test]
    fn single_relay_acknowledgements_become_that_relays() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let (acked, queued) = (vec![1u8], vec![2u8]);
        {
            let old = SqliteStore::open_at_version(&path, 3).unwrap();
            for (envelope, seq) in [(&acked, Some(7i64)), (&queued, None)] {
                old.conn
                    .execute(
                        "INSERT INTO section_log (section, envelope, hash, server_seq, outbound) \
                         VALUES ('labs', ?1, ?2, ?3, 1)",
                        rusqlite::params![envelope, &envelope_hash(envelope)[..], seq],
                    )
                    .unwrap();
            }
            old.conn
                .execute(
                    "INSERT INTO meta (key, value) VALUES ('sync/relay', ?1)",
                    [b"https://relay.example".to_vec()],
                )
                .unwrap();
        }
        let s = SqliteStore::open(&path).unwrap();
        let owed = |relay: &str| -> Vec<Vec<u8>> {
            s.owed(relay, Owed::Outbox, 10)
                .unwrap()
                .into_iter()
                .map(|o| o.envelope)
                .collect()
        };
        assert_eq!(owed("https://relay.example"), vec![queued.clone()]);
        assert_eq!(owed("https://other.example"), vec![acked, queued]);
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
