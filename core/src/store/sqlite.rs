//! The SQLite [`Store`] (rusqlite, bundled SQLite): WAL journal, full
//! synchronous commits, schema from numbered migrations.
//!
//! Opening an existing database writes nothing until the first commit when
//! the schema is current, so a failed unlock leaves every byte as it was.

use std::path::Path;

use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use satchel_protocol::LogName;

use super::migrations::{current_version, migrate_to, LATEST_VERSION};
use super::{
    envelope_hash, Committed, LogItem, OutboxItem, Owed, Result, SectionLog, Snapshot, Store,
    StoreError, WriteBatch, WriteOp,
};

/// A store in one SQLite file (plus its `-wal` and `-shm` while open).
pub struct SqliteStore {
    pub(super) conn: Connection,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore").finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Open (creating if missing) and migrate to the latest schema.
    pub fn open(path: &Path) -> Result<Self> {
        Self::open_at_version(path, LATEST_VERSION).map_err(|e| disk_full_or(e, path))
    }

    /// Open and migrate only up to `version`; for the upgrade test.
    #[doc(hidden)]
    pub fn open_at_version(path: &Path, version: u32) -> Result<Self> {
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let mut conn = Connection::open_with_flags(path, flags)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        // WAL is persistent in the file; asking again on an existing WAL
        // database is a no-op and writes nothing.
        let mode: String = conn.query_row("PRAGMA journal_mode", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get::<_, String>(0))?;
        }
        // FULL: a commit is on disk (WAL fsynced) before commit() returns.
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", true)?;
        // Deleted content is overwritten, not left in free pages.
        conn.pragma_update(None, "secure_delete", true)?;
        conn.create_scalar_function(
            "satchel_sha256",
            1,
            rusqlite::functions::FunctionFlags::SQLITE_UTF8
                | rusqlite::functions::FunctionFlags::SQLITE_DETERMINISTIC,
            |ctx| {
                let bytes: Vec<u8> = ctx.get(0)?;
                Ok(envelope_hash(&bytes).to_vec())
            },
        )?;
        migrate_to(&mut conn, version)?;
        Ok(Self { conn })
    }

    /// The schema version of the open database.
    pub fn schema_version(&self) -> Result<u32> {
        current_version(&self.conn)
    }

    /// A description of the schema (every table, index and their SQL) for
    /// comparing an upgraded database with a fresh one.
    pub fn schema_dump(&self) -> Result<Vec<(String, String, String)>> {
        let mut stmt = self.conn.prepare(
            "SELECT type, name, IFNULL(sql, '') FROM sqlite_master \
             WHERE name NOT LIKE 'sqlite_%' ORDER BY type, name",
        )?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
            .collect::<std::result::Result<Vec<_>, _>>()?;
        Ok(rows)
    }

    /// Fold the WAL into the main file (used before measuring file sizes).
    pub fn checkpoint(&self) -> Result<()> {
        self.conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        Ok(())
    }
}

fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl SqliteStore {
    /// Outbox rows `sql` selects (seq, section, envelope, hash).
    fn outbox_rows(&self, sql: &str, args: impl rusqlite::Params) -> Result<Vec<OutboxItem>> {
        let mut stmt = self.conn.prepare_cached(sql)?;
        let rows = stmt
            .query_map(args, |r| {
                let hash: Vec<u8> = r.get(3)?;
                let hash = <[u8; 32]>::try_from(hash.as_slice()).map_err(|_| {
                    rusqlite::Error::FromSqlConversionFailure(
                        3,
                        rusqlite::types::Type::Blob,
                        "a stored envelope hash is not 32 bytes".into(),
                    )
                })?;
                let section: String = r.get(1)?;
                // A stored log name: parsed once, here.
                let section = section.parse().map_err(|_| {
                    rusqlite::Error::FromSqlConversionFailure(
                        1,
                        rusqlite::types::Type::Text,
                        "a stored log name is not a known log".into(),
                    )
                })?;
                Ok(OutboxItem {
                    seq: to_u64(r.get(0)?),
                    section,
                    envelope: r.get(2)?,
                    hash,
                })
            })?
            .collect::<std::result::Result<Vec<_>, _>>()?;
        Ok(rows)
    }
}

impl Store for SqliteStore {
    fn get_meta(&self, key: &str) -> Result<Option<Vec<u8>>> {
        Ok(self
            .conn
            .prepare_cached("SELECT value FROM meta WHERE key = ?1")?
            .query_row([key], |r| r.get(0))
            .optional()?)
    }

    fn sections(&self) -> Result<Vec<String>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT section FROM section_log UNION SELECT section FROM section_snapshot ORDER BY 1",
        )?;
        let names = stmt
            .query_map([], |r| r.get(0))?
            .collect::<std::result::Result<Vec<String>, _>>()?;
        Ok(names)
    }

    fn load_section(&self, log: LogName) -> Result<SectionLog> {
        let section = log.as_str();
        let snapshot = self
            .conn
            .prepare_cached("SELECT upto_seq, envelope FROM section_snapshot WHERE section = ?1")?
            .query_row([section], |r| {
                Ok(Snapshot {
                    upto_seq: to_u64(r.get(0)?),
                    envelope: r.get(1)?,
                })
            })
            .optional()?;
        let after = snapshot.as_ref().map_or(0, |s| s.upto_seq);
        let mut stmt = self.conn.prepare_cached(
            "SELECT seq, envelope FROM section_log WHERE section = ?1 AND seq > ?2 ORDER BY seq",
        )?;
        let tail = stmt
            .query_map(params![section, to_i64(after)], |r| {
                Ok(LogItem {
                    seq: to_u64(r.get(0)?),
                    envelope: r.get(1)?,
                })
            })?
            .collect::<std::result::Result<Vec<_>, _>>()?;
        Ok(SectionLog { snapshot, tail })
    }

    fn outbox(&self, limit: usize) -> Result<Vec<OutboxItem>> {
        self.outbox_rows(
            "SELECT seq, section, envelope, hash FROM section_log \
             WHERE outbound = 1 AND server_seq IS NULL ORDER BY seq LIMIT ?1",
            params![i64::try_from(limit).unwrap_or(i64::MAX)],
        )
    }

    fn owed(&self, relay: &str, owed: Owed, limit: usize) -> Result<Vec<OutboxItem>> {
        // outbound: 1 made here (or forwarded), 0 received, 2 set aside.
        let outbound = match owed {
            Owed::Outbox => "l.outbound = 1",
            Owed::Everything => "l.outbound IN (0, 1)",
        };
        self.outbox_rows(
            &format!(
                "SELECT l.seq, l.section, l.envelope, l.hash FROM section_log l \
                 WHERE {outbound} AND NOT EXISTS \
                 (SELECT 1 FROM relay_ack a WHERE a.relay = ?2 AND a.hash = l.hash) \
                 ORDER BY l.seq LIMIT ?1"
            ),
            params![i64::try_from(limit).unwrap_or(i64::MAX), relay],
        )
    }

    fn contains(&self, hash: &[u8; 32]) -> Result<bool> {
        Ok(self
            .conn
            .prepare_cached("SELECT 1 FROM section_log WHERE hash = ?1")?
            .query_row([&hash[..]], |_| Ok(()))
            .optional()?
            .is_some())
    }

    fn log_hashes(&self, log: LogName) -> Result<Vec<[u8; 32]>> {
        let section = log.as_str();
        let mut stmt = self
            .conn
            .prepare_cached("SELECT hash FROM section_log WHERE section = ?1 ORDER BY seq")?;
        let rows = stmt
            .query_map([section], |r| r.get::<_, Vec<u8>>(0))?
            .collect::<std::result::Result<Vec<_>, _>>()?;
        rows.iter().map(|h| hash_of(h)).collect()
    }

    fn log_envelopes(&self, log: LogName) -> Result<Vec<([u8; 32], Vec<u8>)>> {
        let section = log.as_str();
        let mut stmt = self.conn.prepare_cached(
            "SELECT hash, envelope FROM section_log WHERE section = ?1 ORDER BY seq",
        )?;
        let rows = stmt
            .query_map([section], |r| {
                Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, Vec<u8>>(1)?))
            })?
            .collect::<std::result::Result<Vec<_>, _>>()?;
        rows.into_iter()
            .map(|(h, e)| Ok((hash_of(&h)?, e)))
            .collect()
    }

    fn last_seq(&self) -> Result<u64> {
        let seq: Option<i64> = self
            .conn
            .prepare_cached("SELECT MAX(seq) FROM section_log")?
            .query_row([], |r| r.get(0))?;
        Ok(seq.map_or(0, to_u64))
    }

    fn commit(&mut self, batch: WriteBatch) -> Result<Committed> {
        let path = self.conn.path().map(std::path::PathBuf::from);
        self.commit_batch(batch).map_err(|e| match &path {
            Some(path) => disk_full_or(e, path),
            None => e,
        })
    }
}

/// SQLite reports some writes that fail for want of space as I/O errors
/// (creating or growing the `-wal` and `-shm` files): when a small file
/// cannot be written next to the database for want of space, say so.
fn disk_full_or(err: StoreError, db: &Path) -> StoreError {
    let StoreError::Backend(_) = &err else {
        return err;
    };
    let probe = db.with_extension("space-probe");
    let full = std::fs::write(&probe, [0u8; 4096])
        .err()
        .is_some_and(|e| e.kind() == std::io::ErrorKind::StorageFull);
    let _ = std::fs::remove_file(&probe);
    if full {
        StoreError::DiskFull
    } else {
        err
    }
}

impl SqliteStore {
    fn commit_batch(&mut self, batch: WriteBatch) -> Result<Committed> {
        let tx = self.conn.transaction()?;
        let mut committed = Committed::default();
        {
            let mut last: Option<u64> = None;
            for op in &batch.ops {
                match op {
                    WriteOp::PutMeta { key, value } => {
                        tx.prepare_cached(
                            "INSERT INTO meta (key, value) VALUES (?1, ?2) \
                             ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                        )?
                        .execute(params![key, value])?;
                    }
                    WriteOp::DeleteMeta { key } => {
                        tx.prepare_cached("DELETE FROM meta WHERE key = ?1")?
                            .execute([key])?;
                    }
                    WriteOp::Append { section, envelope } => {
                        let hash = envelope_hash(envelope);
                        let inserted = tx
                            .prepare_cached(
                                "INSERT INTO section_log (section, envelope, hash, outbound) \
                                 VALUES (?1, ?2, ?3, 1) ON CONFLICT(hash) DO NOTHING",
                            )?
                            .execute(params![section.as_str(), envelope, &hash[..]])?;
                        if inserted == 0 {
                            // Dropping `tx` rolls back everything of this batch.
                            return Err(StoreError::Duplicate);
                        }
                        let seq = to_u64(tx.last_insert_rowid());
                        last = Some(seq);
                        committed.appended.push(seq);
                    }
                    WriteOp::Receive {
                        section,
                        envelope,
                        relay,
                        server_seq,
                    } => {
                        let hash = envelope_hash(envelope);
                        let inserted = tx
                            .prepare_cached(
                                "INSERT INTO section_log (section, envelope, hash, server_seq, outbound) \
                                 VALUES (?1, ?2, ?3, ?4, 0) ON CONFLICT(hash) DO NOTHING",
                            )?
                            .execute(params![
                                section.as_str(),
                                envelope,
                                &hash[..],
                                to_i64(*server_seq)
                            ])?;
                        if inserted == 0 {
                            tx.prepare_cached(
                                "UPDATE section_log SET server_seq = ?2 \
                                 WHERE hash = ?1 AND server_seq IS NULL",
                            )?
                            .execute(params![&hash[..], to_i64(*server_seq)])?;
                            committed.received.push(None);
                        } else {
                            let seq = to_u64(tx.last_insert_rowid());
                            last = Some(seq);
                            committed.received.push(Some(seq));
                        }
                        if let Some(relay) = relay {
                            acknowledge_by(&tx, relay, &hash, *server_seq)?;
                        }
                    }
                    WriteOp::ReceiveDirect {
                        section,
                        envelope,
                        forward,
                    } => {
                        let hash = envelope_hash(envelope);
                        let inserted = tx
                            .prepare_cached(
                                "INSERT INTO section_log (section, envelope, hash, outbound) \
                                 VALUES (?1, ?2, ?3, ?4) ON CONFLICT(hash) DO NOTHING",
                            )?
                            .execute(params![
                                section.as_str(),
                                envelope,
                                &hash[..],
                                i64::from(*forward)
                            ])?;
                        if inserted == 0 {
                            committed.received.push(None);
                        } else {
                            let seq = to_u64(tx.last_insert_rowid());
                            last = Some(seq);
                            committed.received.push(Some(seq));
                        }
                    }
                    WriteOp::Acknowledge {
                        relay,
                        hash,
                        server_seq,
                    } => {
                        tx.prepare_cached(
                            "UPDATE section_log SET server_seq = ?2 \
                             WHERE hash = ?1 AND server_seq IS NULL",
                        )?
                        .execute(params![&hash[..], to_i64(*server_seq)])?;
                        if let Some(relay) = relay {
                            acknowledge_by(&tx, relay, hash, *server_seq)?;
                        }
                    }
                    WriteOp::Reseal { old, envelope } => {
                        let hash = envelope_hash(envelope);
                        tx.prepare_cached(
                            "UPDATE section_log SET envelope = ?2, hash = ?3 \
                             WHERE hash = ?1 AND outbound = 1 AND server_seq IS NULL",
                        )?
                        .execute(params![
                            &old[..],
                            envelope,
                            &hash[..]
                        ])?;
                    }
                    WriteOp::SetAside { hash } => {
                        // outbound = 2: made here, kept, never sent.
                        tx.prepare_cached(
                            "UPDATE section_log SET outbound = 2 \
                             WHERE hash = ?1 AND outbound = 1 AND server_seq IS NULL",
                        )?
                        .execute([&hash[..]])?;
                    }
                    WriteOp::PutSnapshot {
                        section,
                        upto_seq,
                        envelope,
                    } => {
                        let max = match last {
                            Some(seq) => seq,
                            None => {
                                let m: Option<i64> = tx
                                    .prepare_cached("SELECT MAX(seq) FROM section_log")?
                                    .query_row([], |r| r.get(0))?;
                                m.map_or(0, to_u64)
                            }
                        };
                        if *upto_seq > max {
                            // Dropping `tx` rolls back everything of this batch.
                            return Err(StoreError::SnapshotBeyondLog {
                                section: *section,
                                upto: *upto_seq,
                            });
                        }
                        tx.prepare_cached(
                            "INSERT INTO section_snapshot (section, upto_seq, envelope) \
                             VALUES (?1, ?2, ?3) ON CONFLICT(section) DO UPDATE SET \
                             upto_seq = excluded.upto_seq, envelope = excluded.envelope",
                        )?
                        .execute(params![
                            section.as_str(),
                            to_i64(*upto_seq),
                            envelope
                        ])?;
                    }
                }
            }
        }
        tx.commit()?;
        Ok(committed)
    }
}

/// A stored envelope hash (32 bytes, else the store is corrupt).
fn hash_of(bytes: &[u8]) -> Result<[u8; 32]> {
    <[u8; 32]>::try_from(bytes)
        .map_err(|_| StoreError::Backend("a stored envelope hash is not 32 bytes".into()))
}

/// Record that `relay` holds the stored envelope `hash` (nothing when no
/// such envelope is stored).
fn acknowledge_by(
    tx: &rusqlite::Transaction<'_>,
    relay: &str,
    hash: &[u8; 32],
    relay_seq: u64,
) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO relay_ack (relay, hash, relay_seq) \
         SELECT ?1, hash, ?3 FROM section_log WHERE hash = ?2 \
         ON CONFLICT(relay, hash) DO UPDATE SET relay_seq = excluded.relay_seq",
    )?
    .execute(params![relay, &hash[..], to_i64(relay_seq)])?;
    Ok(())
}
