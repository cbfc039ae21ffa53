//! The embedded SQLite backend (the default): one database file in WAL mode
//! with `synchronous=FULL`.
//!
//! - Writes go to one writer thread ([`writer`]) that group-commits every
//!   queued job in one transaction, one savepoint per job: concurrent
//!   upload batches share a single fsync, and a failing batch rolls back
//!   alone.
//! - Reads take a connection from a small pool and run on tokio's blocking
//!   thread pool; WAL lets them proceed while the writer commits.
//! - Change notifications go to an in-process `tokio::sync::broadcast`
//!   after the commit (one relay process per SQLite file).
//!
//! The SQL itself lives in [`sql`]; migrations in `migrations/NNNN_*.sql`.

mod share_links;
mod sql;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use rusqlite::Connection;
use satchel_protocol::ids::{IdentityId, RecordId};
use tokio::sync::broadcast;

use super::{
    change_of, Actor, Appended, AuditEvent, Change, Link, Member, Membership, NewEnvelope,
    PullPage, RecordHeadsRow, RegisterOutcome, Result, Revocation, Seq, SnapshotOutcome,
    StatementOutcome, StatementRow, Storage, StorageError, CHANGE_CHANNEL_CAPACITY,
};
use writer::Writer;

/// Read connections kept open for reuse.
const READ_POOL: usize = 8;

/// The SQLite storage. Cheap to share behind an `Arc`.
pub struct SqliteStorage {
    writer: Writer,
    readers: Arc<ReadPool>,
    changes: broadcast::Sender<Change>,
}

struct ReadPool {
    path: PathBuf,
    /// Each reader's page cache (KiB).
    cache_kib: i64,
    idle: Mutex<Vec<Connection>>,
}

impl ReadPool {
    fn take(&self) -> Result<Connection> {
        let idle = self.idle.lock().ok().and_then(|mut v| v.pop());
        match idle {
            Some(c) => Ok(c),
            None => sql::open(&self.path, self.cache_kib),
        }
    }

    fn give_back(&self, conn: Connection) {
        if let Ok(mut idle) = self.idle.lock() {
            if idle.len() < READ_POOL {
                idle.push(conn);
            }
        }
    }
}

impl SqliteStorage {
    /// Open (creating if missing) the database at `path` and apply
    /// migrations, with the default page cache.
    pub fn open(path: &Path) -> Result<Self> {
        Self::open_with_cache(path, crate::config::SQLITE_CACHE_MIB)
    }

    /// [`SqliteStorage::open`] with the writer's page cache `cache_mib`
    /// MiB (each reader's an eighth of it, at least 2 MiB).
    pub fn open_with_cache(path: &Path, cache_mib: u32) -> Result<Self> {
        let writer_kib = i64::from(cache_mib.max(1)) * 1024;
        let reader_kib = (writer_kib / 8).max(2048);
        let mut conn = sql::open_writer(path, writer_kib)?;
        sql::migrate(&mut conn)?;
        let writer = Writer::start(conn)
            .map_err(|e| StorageError::Backend(format!("cannot start writer thread: {e}")))?;
        let (changes, _) = broadcast::channel(CHANGE_CHANNEL_CAPACITY);
        Ok(SqliteStorage {
            writer,
            readers: Arc::new(ReadPool {
                path: path.to_owned(),
                cache_kib: reader_kib,
                idle: Mutex::new(Vec::new()),
            }),
            changes,
        })
    }

    async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        let pool = Arc::clone(&self.readers);
        tokio::task::spawn_blocking(move || {
            let mut conn = pool.take()?;
            let out = f(&mut conn);
            // A connection left inside a transaction by an error is dropped.
            if conn.is_autocommit() {
                pool.give_back(conn);
            }
            out
        })
        .await
        .map_err(|_| StorageError::Backend("read task failed".into()))?
    }
}

#[async_trait]
impl Storage for SqliteStorage {
    fn kind(&self) -> &'static str {
        "sqlite"
    }

    fn schema_version(&self) -> u32 {
        u32::try_from(sql::SCHEMA_VERSION).unwrap_or(0)
    }

    fn notifications_live(&self) -> bool {
        true
    }

    async fn health(&self) -> Result<()> {
        self.read(|c| Ok(c.query_row("SELECT 1", [], |r| r.get::<_, i64>(0))?))
            .await
            .map(|_| ())
    }

    async fn put_token(
        &self,
        hash: [u8; 32],
        identity: IdentityId,
        expires_at_ms: i64,
    ) -> Result<()> {
        self.writer
            .run(move |c| sql::put_token(c, &hash, &identity, expires_at_ms))
            .await
    }

    async fn token(&self, hash: [u8; 32], now_ms: i64) -> Result<Option<(IdentityId, i64)>> {
        self.read(move |c| sql::token(c, &hash, now_ms)).await
    }

    async fn revoke_sessions(&self, identity: IdentityId, now_ms: i64) -> Result<u64> {
        self.writer
            .run(move |c| sql::revoke_sessions(c, &identity, now_ms))
            .await
    }

    async fn revocations_since(&self, since_ms: i64) -> Result<Vec<Revocation>> {
        self.read(move |c| sql::revocations_since(c, since_ms))
            .await
    }

    async fn put_challenge(
        &self,
        identity: IdentityId,
        challenge: [u8; 32],
        expires_at_ms: i64,
    ) -> Result<()> {
        self.writer
            .run(move |c| sql::put_challenge(c, &identity, &challenge, expires_at_ms))
            .await
    }

    async fn take_challenge(
        &self,
        identity: IdentityId,
        challenge: [u8; 32],
        now_ms: i64,
    ) -> Result<bool> {
        self.writer
            .run(move |c| sql::take_challenge(c, &identity, &challenge, now_ms))
            .await
    }

    async fn register_record(
        &self,
        record: RecordId,
        owner: IdentityId,
        owner_card: Vec<u8>,
        now_ms: i64,
    ) -> Result<RegisterOutcome> {
        self.writer
            .run(move |c| sql::register_record(c, &record, &owner, &owner_card, now_ms))
            .await
    }

    async fn record_root(&self, record: RecordId) -> Result<Option<(IdentityId, Vec<u8>)>> {
        self.read(move |c| sql::record_root(c, &record)).await
    }

    async fn membership(&self, record: RecordId, identity: IdentityId) -> Result<Membership> {
        self.read(move |c| sql::membership(c, &record, &identity))
            .await
    }

    async fn members(&self, record: RecordId) -> Result<Vec<Member>> {
        self.read(move |c| sql::members(c, &record)).await
    }

    async fn replication_cursor(
        &self,
        upstream: &str,
        record: RecordId,
        stream: &str,
    ) -> Result<Seq> {
        let (upstream, stream) = (upstream.to_owned(), stream.to_owned());
        self.read(move |c| sql::replication_cursor(c, &upstream, &record, &stream))
            .await
    }

    async fn set_replication_cursor(
        &self,
        upstream: &str,
        record: RecordId,
        stream: &str,
        seq: Seq,
    ) -> Result<()> {
        let (upstream, stream) = (upstream.to_owned(), stream.to_owned());
        self.writer
            .run(move |c| sql::set_replication_cursor(c, &upstream, &record, &stream, seq))
            .await
    }

    async fn replica_records(
        &self,
        relay: IdentityId,
        after: Option<RecordId>,
        limit: u32,
    ) -> Result<Vec<RecordId>> {
        self.read(move |c| sql::replica_records(c, &relay, after.as_ref(), limit))
            .await
    }

    async fn replica_heads(
        &self,
        relay: IdentityId,
        after: Option<RecordId>,
        limit: u32,
    ) -> Result<Vec<RecordHeadsRow>> {
        self.read(move |c| sql::replica_heads(c, &relay, after.as_ref(), limit))
            .await
    }

    async fn append_statement(
        &self,
        record: RecordId,
        statement: Vec<u8>,
        signature: Vec<u8>,
        expected_head: [u8; 32],
        members: Vec<Member>,
    ) -> Result<StatementOutcome> {
        self.writer
            .run(move |c| {
                sql::append_statement(c, &record, &statement, &signature, &expected_head, &members)
            })
            .await
    }

    async fn statements(
        &self,
        record: RecordId,
        after: Seq,
        limit: u32,
    ) -> Result<Vec<StatementRow>> {
        self.read(move |c| sql::statements(c, &record, after, limit))
            .await
    }

    async fn append_envelopes(
        &self,
        record: RecordId,
        section: &str,
        batch: Vec<NewEnvelope>,
        by: Actor,
    ) -> Result<Vec<Appended>> {
        let owned = section.to_owned();
        let appended = self
            .writer
            .run(move |c| sql::append_envelopes(c, &record, &owned, &batch, by))
            .await?;
        if let Some(change) = change_of(record, section, &appended) {
            let _ = self.changes.send(change);
        }
        Ok(appended)
    }

    async fn pull(
        &self,
        record: RecordId,
        section: &str,
        after: Seq,
        limit: u32,
    ) -> Result<PullPage> {
        let section = section.to_owned();
        self.read(move |c| sql::pull(c, &record, &section, after, limit, false))
            .await
    }

    async fn pull_whole(
        &self,
        record: RecordId,
        section: &str,
        after: Seq,
        limit: u32,
    ) -> Result<PullPage> {
        let section = section.to_owned();
        self.read(move |c| sql::pull(c, &record, &section, after, limit, true))
            .await
    }

    async fn feed(&self, record: RecordId, after: Seq) -> Result<Vec<(String, Seq)>> {
        self.read(move |c| sql::feed(c, &record, after)).await
    }

    async fn put_snapshot(
        &self,
        record: RecordId,
        section: &str,
        upto_seq: Seq,
        bytes: Vec<u8>,
    ) -> Result<SnapshotOutcome> {
        let section = section.to_owned();
        self.writer
            .run(move |c| sql::put_snapshot(c, &record, &section, upto_seq, &bytes))
            .await
    }

    async fn record_audit(&self, event: AuditEvent) -> Result<Seq> {
        self.writer.run(move |c| sql::record_audit(c, &event)).await
    }

    async fn record_forwarded_audit(
        &self,
        record: RecordId,
        relay: IdentityId,
        events: Vec<(Seq, AuditEvent)>,
    ) -> Result<u64> {
        self.writer
            .run(move |c| sql::record_forwarded_audit(c, &record, &relay, &events))
            .await
    }

    async fn audit(&self, record: RecordId, after: Seq, limit: u32) -> Result<Vec<AuditEvent>> {
        self.read(move |c| sql::audit(c, &record, after, limit))
            .await
    }

    async fn create_link(
        &self,
        link_id: &str,
        record: RecordId,
        creator: IdentityId,
        expires_at_ms: i64,
        now_ms: i64,
    ) -> Result<()> {
        let link_id = link_id.to_owned();
        self.writer
            .run(move |c| sql::create_link(c, &link_id, &record, &creator, expires_at_ms, now_ms))
            .await
    }

    async fn join_link(
        &self,
        link_id: &str,
        joiner: IdentityId,
        payload: Vec<u8>,
        now_ms: i64,
    ) -> Result<()> {
        let link_id = link_id.to_owned();
        self.writer
            .run(move |c| sql::join_link(c, &link_id, &joiner, &payload, now_ms))
            .await
    }

    async fn accept_link(&self, link_id: &str, payload: Vec<u8>, now_ms: i64) -> Result<()> {
        let link_id = link_id.to_owned();
        self.writer
            .run(move |c| sql::accept_link(c, &link_id, &payload, now_ms))
            .await
    }

    async fn get_link(&self, link_id: &str, now_ms: i64) -> Result<Option<Link>> {
        let link_id = link_id.to_owned();
        self.read(move |c| sql::get_link(c, &link_id, now_ms)).await
    }

    async fn purge_expired(&self, now_ms: i64) -> Result<u64> {
        self.writer
            .run(move |c| sql::purge_expired(c, now_ms))
            .await
    }

    fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.changes.subscribe()
    }

    async fn close(&self) {
        self.writer.close().await;
    }
}
