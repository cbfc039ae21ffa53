//! The PostgreSQL backend, for several stateless relay instances sharing
//! one database.
//!
//! - A deadpool connection pool; every write is one transaction (PostgreSQL
//!   group-commits WAL flushes across concurrent transactions itself).
//! - Envelope appends and snapshot writes take a transaction-scoped
//!   advisory lock per record before drawing sequence numbers, so within a
//!   record sequence numbers become visible in commit order and a reader's
//!   cursor can never skip a later-committing smaller seq.
//! - Change notices: `pg_notify(channel, "RID SEQ SECTION")` inside the
//!   append transaction (delivered at commit); one `LISTEN` connection per
//!   instance (reconnecting with backoff) forwards them to the in-process
//!   broadcast that WebSocket subscribers read.
//! - Schema: numbered migrations in `migrations/`, applied under an
//!   advisory lock; with a configured schema name the schema is created and
//!   put on every connection's `search_path`, and the notify channel is
//!   derived from it, so deployments (and test runs) don't collide.

use std::future::poll_fn;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, PoolError, RecyclingMethod};
use satchel_protocol::ids::{IdentityId, RecordId};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_postgres::{AsyncMessage, IsolationLevel, NoTls};

mod share_links;

use super::{
    change_of, fold_heads, push_events, sections_from_db, sections_to_db, Actor, Appended,
    AuditAction, AuditEvent, Change, Link, Member, MemberRole, Membership, NewEnvelope, PullPage,
    RecordHeadsRow, RegisterOutcome, Result, Revocation, Rights, Seq, Snapshot, SnapshotOutcome,
    StatementOutcome, StatementRow, Storage, StorageError, StoredEnvelope, CHANGE_CHANNEL_CAPACITY,
};

/// Numbered migrations, recorded in `schema_migrations`.
const MIGRATIONS: &[(i32, &str)] = &[
    (1, include_str!("migrations/0001_init.sql")),
    (2, include_str!("migrations/0002_sharing.sql")),
    (3, include_str!("migrations/0003_sessions.sql")),
    (4, include_str!("migrations/0004_replication.sql")),
    (5, include_str!("migrations/0005_federated_audit.sql")),
    (6, include_str!("migrations/0006_share_links.sql")),
];

/// Advisory lock class for migrations (first key of the two-int form).
const LOCK_MIGRATIONS: i32 = 0x5A7C_0000;
/// Advisory lock class for per-record appends.
const LOCK_RECORD: i32 = 0x5A7C_0001;

/// Connections in the pool.
const POOL_SIZE: usize = 16;

/// The PostgreSQL storage.
pub struct PostgresStorage {
    pool: Pool,
    channel: String,
    changes: broadcast::Sender<Change>,
    listener: Mutex<Option<JoinHandle<()>>>,
    /// The `LISTEN` connection is up.
    listening: Arc<AtomicBool>,
    closed: AtomicBool,
}

fn sha256(bytes: &[u8]) -> Vec<u8> {
    ring::digest::digest(&ring::digest::SHA256, bytes)
        .as_ref()
        .to_vec()
}

fn identity(bytes: &[u8]) -> Result<IdentityId> {
    IdentityId::from_slice(bytes).map_err(|_| StorageError::Backend("corrupt identity id".into()))
}

fn record_id(bytes: &[u8]) -> Result<RecordId> {
    RecordId::from_slice(bytes).map_err(|_| StorageError::Backend("corrupt record id".into()))
}

fn record_lock_key(record: &RecordId) -> i32 {
    let b = record.as_bytes();
    i32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// Valid schema names: lower-case ASCII letters, digits and `_`, starting
/// with a letter or `_`, at most 63 bytes (no quoting surprises).
fn check_schema(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && !name.as_bytes()[0].is_ascii_digit();
    if ok {
        Ok(())
    } else {
        Err(StorageError::Backend(
            "schema name must be lower-case letters, digits and _ (max 63)".into(),
        ))
    }
}

impl PostgresStorage {
    /// A page of a log ([`Storage::pull`], or [`Storage::pull_whole`]
    /// when `whole`).
    async fn pull_page(
        &self,
        record: RecordId,
        section: &str,
        after: Seq,
        limit: u32,
        whole: bool,
    ) -> Result<PullPage> {
        let mut client = self.client().await?;
        let tx = client
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await?;
        let rid = &record.as_bytes()[..];
        let snapshot = match tx
            .query_opt(
                "SELECT upto_seq, bytes FROM snapshots WHERE record_id = $1 AND section = $2",
                &[&rid, &section],
            )
            .await?
        {
            Some(row) => Some(Snapshot {
                upto_seq: row.try_get(0)?,
                bytes: row.try_get(1)?,
            }),
            None => None,
        }
        .filter(|s| s.upto_seq > after);
        let start = match &snapshot {
            Some(s) if !whole => s.upto_seq,
            _ => after,
        };
        let rows = tx
            .query(
                "SELECT seq, bytes, origin FROM envelopes
                 WHERE record_id = $1 AND section = $2 AND seq > $3
                 ORDER BY seq LIMIT $4",
                &[&rid, &section, &start, &(i64::from(limit) + 1)],
            )
            .await?;
        tx.commit().await?;
        let mut envelopes = rows
            .iter()
            .map(|r| {
                Ok(StoredEnvelope {
                    seq: r.try_get(0)?,
                    bytes: r.try_get(1)?,
                    origin: r.try_get(2)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let more = envelopes.len() > limit as usize;
        envelopes.truncate(limit as usize);
        Ok(PullPage {
            snapshot,
            envelopes,
            more,
        })
    }

    /// Connect, create the schema if needed, apply migrations and start the
    /// `LISTEN` connection.
    pub async fn open(url: &str, schema: Option<&str>) -> Result<Self> {
        let mut config: tokio_postgres::Config =
            url.parse().map_err(|e: tokio_postgres::Error| {
                StorageError::Backend(format!("database url: {e}"))
            })?;
        config.connect_timeout(Duration::from_secs(10));
        let channel = match schema {
            Some(name) => {
                check_schema(name)?;
                format!(
                    "satchel_changes_{}",
                    &hex::encode(sha256(name.as_bytes()))[..16]
                )
            }
            None => "satchel_changes".to_owned(),
        };
        // Schema creation and migrations on one connection, under the
        // migrations lock: any number of instances may start together.
        migrate(&config, schema).await?;
        if let Some(name) = schema {
            config.options(format!("-c search_path={name}"));
        }
        let manager = Manager::from_config(
            config.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .build()
            .map_err(|e| StorageError::Backend(format!("pool: {e}")))?;
        let storage = PostgresStorage {
            pool,
            channel: channel.clone(),
            changes: broadcast::channel(CHANGE_CHANNEL_CAPACITY).0,
            listener: Mutex::new(None),
            listening: Arc::new(AtomicBool::new(false)),
            closed: AtomicBool::new(false),
        };
        let (ready_tx, ready_rx) = oneshot::channel();
        // Named so an operator (or a test) can find this connection in
        // pg_stat_activity.
        let mut listen_config = config.clone();
        listen_config.application_name(format!("satchel-sync listen {channel}"));
        let handle = tokio::spawn(listen_loop(
            listen_config,
            channel,
            storage.changes.clone(),
            Arc::clone(&storage.listening),
            Some(ready_tx),
        ));
        if let Ok(mut l) = storage.listener.lock() {
            *l = Some(handle);
        }
        match tokio::time::timeout(Duration::from_secs(15), ready_rx).await {
            Ok(Ok(())) => Ok(storage),
            _ => Err(StorageError::Backend(
                "could not LISTEN for change notifications".into(),
            )),
        }
    }

    async fn client(&self) -> Result<Object> {
        if self.closed.load(Ordering::Acquire) {
            return Err(StorageError::Closed);
        }
        self.pool.get().await.map_err(|e| match e {
            PoolError::Closed => StorageError::Closed,
            PoolError::Backend(e) => e.into(),
            other => StorageError::Backend(format!("pool: {other}")),
        })
    }
}

/// The newest migration this relay knows.
pub const SCHEMA_VERSION: i32 = MIGRATIONS[MIGRATIONS.len() - 1].0;

/// Create the schema (if named) and apply pending migrations, in one
/// transaction holding the migrations advisory lock, so that instances
/// starting together wait for each other instead of racing on
/// `CREATE SCHEMA` or a table (PostgreSQL's `IF NOT EXISTS` is not safe
/// against a concurrent creator: 23505 on `pg_namespace_nspname_index`).
/// Refuses a database whose schema is newer than [`SCHEMA_VERSION`].
async fn migrate(config: &tokio_postgres::Config, schema: Option<&str>) -> Result<()> {
    let (mut client, conn) = config.connect(NoTls).await?;
    let driver = tokio::spawn(conn);
    let result = async {
        let tx = client.transaction().await?;
        tx.execute("SELECT pg_advisory_xact_lock($1, 0)", &[&LOCK_MIGRATIONS])
            .await?;
        if let Some(name) = schema {
            // `name` passed check_schema: no quoting surprises.
            tx.batch_execute(&format!(
                "CREATE SCHEMA IF NOT EXISTS \"{name}\"; SET LOCAL search_path TO \"{name}\""
            ))
            .await?;
        }
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                 version INTEGER PRIMARY KEY,
                 applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
        )
        .await?;
        let newest: Option<i32> = tx
            .query_one("SELECT max(version) FROM schema_migrations", &[])
            .await?
            .try_get(0)?;
        super::check_version(newest.unwrap_or(0), SCHEMA_VERSION)?;
        for (version, sql) in MIGRATIONS {
            if newest.unwrap_or(0) < *version {
                tx.batch_execute(sql).await?;
                tx.execute(
                    "INSERT INTO schema_migrations (version) VALUES ($1)",
                    &[version],
                )
                .await?;
                tracing::info!(version, "applied relay schema migration");
            }
        }
        tx.commit().await?;
        Ok(())
    }
    .await;
    drop(client);
    let _ = driver.await;
    result
}

/// Keep one connection LISTENing; forward notices to `tx`.
///
/// Notices sent while the connection is down are lost by PostgreSQL, so
/// every (re)connection, once `LISTEN` is in force, reads the newest seq
/// stored (the watermark); a reconnection then announces every section
/// whose newest envelope is after the previous watermark (a catch-up:
/// a notice is a hint to pull, so announcing one twice is harmless, and
/// anything committed after `LISTEN` arrives as a notice).
async fn listen_loop(
    config: tokio_postgres::Config,
    channel: String,
    tx: broadcast::Sender<Change>,
    listening: Arc<AtomicBool>,
    mut ready: Option<oneshot::Sender<()>>,
) {
    let mut backoff = Duration::from_millis(100);
    let mut watermark: Option<Seq> = None;
    loop {
        match config.connect(NoTls).await {
            Ok((client, mut conn)) => {
                let (ntx, mut nrx) = mpsc::unbounded_channel();
                let driver = tokio::spawn(async move {
                    loop {
                        match poll_fn(|cx| conn.poll_message(cx)).await {
                            Some(Ok(AsyncMessage::Notification(n))) => {
                                if ntx.send(n.payload().to_owned()).is_err() {
                                    break;
                                }
                            }
                            Some(Ok(_)) => {}
                            Some(Err(_)) | None => break,
                        }
                    }
                });
                let listened = client.batch_execute(&format!("LISTEN {channel}")).await;
                let caught_up = match listened {
                    Ok(()) => catch_up(&client, &tx, watermark).await,
                    Err(e) => Err(e.into()),
                };
                match caught_up {
                    Ok(newest) => {
                        watermark = Some(newest);
                        backoff = Duration::from_millis(100);
                        listening.store(true, Ordering::Release);
                        if let Some(r) = ready.take() {
                            let _ = r.send(());
                        }
                        while let Some(payload) = nrx.recv().await {
                            if let Some(change) = parse_notice(&payload) {
                                let _ = tx.send(change);
                            }
                        }
                        listening.store(false, Ordering::Release);
                        tracing::warn!("change-notification connection lost; reconnecting");
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot LISTEN for change notifications");
                    }
                }
                driver.abort();
            }
            Err(e) => {
                tracing::warn!(error = %StorageError::from(e), "cannot connect for LISTEN");
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// With `LISTEN` in force: read the newest seq stored and, after a
/// reconnection (`since` = the previous watermark), announce every section
/// changed after `since`. Returns the new watermark.
async fn catch_up(
    client: &tokio_postgres::Client,
    tx: &broadcast::Sender<Change>,
    since: Option<Seq>,
) -> Result<Seq> {
    let newest: Seq = client
        .query_one("SELECT COALESCE(max(seq), 0) FROM envelopes", &[])
        .await?
        .try_get(0)?;
    if let Some(since) = since {
        let rows = client
            .query(
                "SELECT record_id, section, max_seq FROM sections WHERE max_seq > $1",
                &[&since],
            )
            .await?;
        let mut announced = 0usize;
        for row in rows {
            let change = Change {
                record: record_id(&row.try_get::<_, Vec<u8>>(0)?)?,
                section: row.try_get(1)?,
                seq: row.try_get(2)?,
            };
            let _ = tx.send(change);
            announced += 1;
        }
        tracing::info!(
            announced,
            "change notifications reconnected; announced the sections changed meanwhile"
        );
    }
    Ok(newest)
}

fn notice(change: &Change) -> String {
    format!("{} {} {}", change.record, change.seq, change.section)
}

fn parse_notice(payload: &str) -> Option<Change> {
    let mut parts = payload.splitn(3, ' ');
    let record = parts.next()?.parse().ok()?;
    let seq = parts.next()?.parse().ok()?;
    let section = parts.next()?.to_owned();
    Some(Change {
        record,
        section,
        seq,
    })
}

async fn lock_record(tx: &deadpool_postgres::Transaction<'_>, record: &RecordId) -> Result<()> {
    tx.execute(
        "SELECT pg_advisory_xact_lock($1, $2)",
        &[&LOCK_RECORD, &record_lock_key(record)],
    )
    .await?;
    Ok(())
}

async fn record_exists(
    c: &impl deadpool_postgres::GenericClient,
    record: &RecordId,
) -> Result<bool> {
    Ok(c.query_opt(
        "SELECT 1 FROM records WHERE record_id = $1",
        &[&&record.as_bytes()[..]],
    )
    .await?
    .is_some())
}

async fn insert_member(
    c: &impl deadpool_postgres::GenericClient,
    record: &RecordId,
    m: &Member,
) -> Result<()> {
    c.execute(
        "INSERT INTO members (record_id, identity, role, card, sections, can_write, expires_at_ms)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
        &[
            &&record.as_bytes()[..],
            &&m.identity.as_bytes()[..],
            &m.access.role.as_str(),
            &m.card,
            &sections_to_db(&m.access.sections)?,
            &m.access.role.writes(),
            &m.access.expires_at_ms,
        ],
    )
    .await?;
    Ok(())
}

fn access_of(row: &tokio_postgres::Row, first: usize) -> Result<Rights> {
    let role: String = row.try_get(first)?;
    let sections: String = row.try_get(first + 1)?;
    let role = MemberRole::parse(&role)
        .ok_or_else(|| StorageError::Backend("unknown member role".into()))?;
    let write: bool = row.try_get(first + 2)?;
    if write != role.writes() {
        return Err(StorageError::Backend(
            "member row's write flag disagrees with its role".into(),
        ));
    }
    Ok(Rights {
        role,
        sections: sections_from_db(&sections)?,
        expires_at_ms: row.try_get(first + 3)?,
    })
}

async fn record_audit(c: &impl deadpool_postgres::GenericClient, e: &AuditEvent) -> Result<Seq> {
    Ok(c.query_one(
        "INSERT INTO audit (record_id, at_ms, identity, action, section, count)
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING seq",
        &[
            &&e.record.as_bytes()[..],
            &e.at_ms,
            &&e.identity.as_bytes()[..],
            &e.action.as_str(),
            &e.section,
            &e.count,
        ],
    )
    .await?
    .try_get(0)?)
}

type LinkRow = (
    Vec<u8>,
    Vec<u8>,
    Option<Vec<u8>>,
    Option<Vec<u8>>,
    Option<Vec<u8>>,
    i64,
);

async fn get_link(
    c: &impl deadpool_postgres::GenericClient,
    link_id: &str,
    now_ms: i64,
) -> Result<Option<Link>> {
    let row = c
        .query_opt(
            "SELECT record_id, creator, joiner, join_payload, accept_payload, expires_at_ms
             FROM links WHERE link_id = $1 AND expires_at_ms > $2",
            &[&link_id, &now_ms],
        )
        .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let (rid, creator, joiner, join, accept, expires_at_ms): LinkRow = (
        row.try_get(0)?,
        row.try_get(1)?,
        row.try_get(2)?,
        row.try_get(3)?,
        row.try_get(4)?,
        row.try_get(5)?,
    );
    Ok(Some(Link {
        link_id: link_id.to_owned(),
        record: record_id(&rid)?,
        creator: identity(&creator)?,
        joiner: joiner.as_deref().map(identity).transpose()?,
        join,
        accept,
        expires_at_ms,
    }))
}

#[async_trait]
impl Storage for PostgresStorage {
    fn kind(&self) -> &'static str {
        "postgres"
    }

    fn schema_version(&self) -> u32 {
        u32::try_from(SCHEMA_VERSION).unwrap_or(0)
    }

    fn notifications_live(&self) -> bool {
        self.listening.load(Ordering::Acquire)
    }

    async fn health(&self) -> Result<()> {
        self.client().await?.query_one("SELECT 1", &[]).await?;
        Ok(())
    }

    async fn put_token(
        &self,
        hash: [u8; 32],
        identity: IdentityId,
        expires_at_ms: i64,
    ) -> Result<()> {
        self.client()
            .await?
            .execute(
                "INSERT INTO tokens (hash, identity, expires_at_ms) VALUES ($1, $2, $3)
                 ON CONFLICT (hash) DO UPDATE SET identity = EXCLUDED.identity,
                 expires_at_ms = EXCLUDED.expires_at_ms",
                &[&&hash[..], &&identity.as_bytes()[..], &expires_at_ms],
            )
            .await?;
        Ok(())
    }

    async fn token(&self, hash: [u8; 32], now_ms: i64) -> Result<Option<(IdentityId, i64)>> {
        let row = self
            .client()
            .await?
            .query_opt(
                "SELECT identity, expires_at_ms FROM tokens WHERE hash = $1 AND expires_at_ms > $2",
                &[&&hash[..], &now_ms],
            )
            .await?;
        match row {
            Some(row) => Ok(Some((
                identity(&row.try_get::<_, Vec<u8>>(0)?)?,
                row.try_get(1)?,
            ))),
            None => Ok(None),
        }
    }

    async fn revoke_sessions(&self, who: IdentityId, now_ms: i64) -> Result<u64> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let n = tx
            .execute(
                "DELETE FROM tokens WHERE identity = $1",
                &[&&who.as_bytes()[..]],
            )
            .await?;
        tx.execute(
            "INSERT INTO session_revocations (identity, at_ms, expires_at_ms) VALUES ($1, $2, $3)",
            &[
                &&who.as_bytes()[..],
                &now_ms,
                &now_ms.saturating_add(super::REVOCATION_KEEP_MS),
            ],
        )
        .await?;
        tx.commit().await?;
        Ok(n)
    }

    async fn revocations_since(&self, since_ms: i64) -> Result<Vec<Revocation>> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT seq, identity, at_ms FROM session_revocations WHERE at_ms >= $1 ORDER BY seq",
                &[&since_ms],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(Revocation {
                    seq: r.try_get(0)?,
                    identity: identity(&r.try_get::<_, Vec<u8>>(1)?)?,
                    at_ms: r.try_get(2)?,
                })
            })
            .collect()
    }

    async fn put_challenge(
        &self,
        identity: IdentityId,
        challenge: [u8; 32],
        expires_at_ms: i64,
    ) -> Result<()> {
        self.client()
            .await?
            .execute(
                "INSERT INTO challenges (identity, challenge, expires_at_ms) VALUES ($1, $2, $3)
                 ON CONFLICT (identity, challenge) DO UPDATE SET expires_at_ms = EXCLUDED.expires_at_ms",
                &[&&identity.as_bytes()[..], &&challenge[..], &expires_at_ms],
            )
            .await?;
        Ok(())
    }

    async fn take_challenge(
        &self,
        identity: IdentityId,
        challenge: [u8; 32],
        now_ms: i64,
    ) -> Result<bool> {
        let row = self
            .client()
            .await?
            .query_opt(
                "DELETE FROM challenges WHERE identity = $1 AND challenge = $2
                 RETURNING expires_at_ms",
                &[&&identity.as_bytes()[..], &&challenge[..]],
            )
            .await?;
        Ok(match row {
            Some(row) => row.try_get::<_, i64>(0)? > now_ms,
            None => false,
        })
    }

    async fn register_record(
        &self,
        record: RecordId,
        owner: IdentityId,
        owner_card: Vec<u8>,
        now_ms: i64,
    ) -> Result<RegisterOutcome> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let rid = &record.as_bytes()[..];
        let oid = &owner.as_bytes()[..];
        let inserted = tx
            .execute(
                "INSERT INTO records (record_id, owner, created_at_ms, owner_card)
                 VALUES ($1, $2, $3, $4) ON CONFLICT (record_id) DO NOTHING",
                &[&rid, &oid, &now_ms, &owner_card],
            )
            .await?;
        if inserted == 0 {
            let existing: Vec<u8> = tx
                .query_one("SELECT owner FROM records WHERE record_id = $1", &[&rid])
                .await?
                .try_get(0)?;
            return Ok(if existing.as_slice() == oid {
                RegisterOutcome::AlreadyRegistered
            } else {
                RegisterOutcome::Conflict
            });
        }
        insert_member(
            &tx,
            &record,
            &Member {
                identity: owner,
                access: Rights::owner_device(),
                card: owner_card,
            },
        )
        .await?;
        tx.commit().await?;
        Ok(RegisterOutcome::Created)
    }

    async fn record_root(&self, record: RecordId) -> Result<Option<(IdentityId, Vec<u8>)>> {
        let row = self
            .client()
            .await?
            .query_opt(
                "SELECT owner, owner_card FROM records WHERE record_id = $1",
                &[&&record.as_bytes()[..]],
            )
            .await?;
        match row {
            Some(row) => {
                let card: Option<Vec<u8>> = row.try_get(1)?;
                Ok(Some((
                    identity(&row.try_get::<_, Vec<u8>>(0)?)?,
                    card.unwrap_or_default(),
                )))
            }
            None => Ok(None),
        }
    }

    async fn membership(&self, record: RecordId, identity: IdentityId) -> Result<Membership> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT r.record_id IS NOT NULL, m.role, m.sections, m.can_write, m.expires_at_ms
                 FROM (SELECT 1) AS one
                 LEFT JOIN records r ON r.record_id = $1
                 LEFT JOIN members m ON m.record_id = $1 AND m.identity = $2",
                &[&&record.as_bytes()[..], &&identity.as_bytes()[..]],
            )
            .await?;
        let Some(row) = row else {
            return Ok(Membership::NoRecord);
        };
        let exists: bool = row.try_get(0)?;
        let role: Option<String> = row.try_get(1)?;
        match (role, exists) {
            (Some(_), _) => Ok(Membership::Member(access_of(&row, 1)?)),
            (None, true) => Ok(Membership::NotMember),
            (None, false) => Ok(Membership::NoRecord),
        }
    }

    async fn members(&self, record: RecordId) -> Result<Vec<Member>> {
        let client = self.client().await?;
        if !record_exists(&client, &record).await? {
            return Err(StorageError::NotFound);
        }
        let rows = client
            .query(
                "SELECT identity, role, sections, can_write, expires_at_ms, card FROM members
                 WHERE record_id = $1 ORDER BY identity",
                &[&&record.as_bytes()[..]],
            )
            .await?;
        rows.iter()
            .map(|row| {
                Ok(Member {
                    identity: identity(&row.try_get::<_, Vec<u8>>(0)?)?,
                    access: access_of(row, 1)?,
                    card: row.try_get(5)?,
                })
            })
            .collect()
    }

    async fn replication_cursor(
        &self,
        upstream: &str,
        record: RecordId,
        stream: &str,
    ) -> Result<Seq> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT seq FROM replication_cursors
                 WHERE upstream = $1 AND record_id = $2 AND stream = $3",
                &[&upstream, &&record.as_bytes()[..], &stream],
            )
            .await?;
        match row {
            Some(row) => Ok(row.try_get(0)?),
            None => Ok(0),
        }
    }

    async fn set_replication_cursor(
        &self,
        upstream: &str,
        record: RecordId,
        stream: &str,
        seq: Seq,
    ) -> Result<()> {
        let client = self.client().await?;
        client
            .execute(
                "INSERT INTO replication_cursors (upstream, record_id, stream, seq)
                 VALUES ($1, $2, $3, $4)
                 ON CONFLICT (upstream, record_id, stream) DO UPDATE SET seq = excluded.seq",
                &[&upstream, &&record.as_bytes()[..], &stream, &seq],
            )
            .await?;
        Ok(())
    }

    async fn replica_records(
        &self,
        relay: IdentityId,
        after: Option<RecordId>,
        limit: u32,
    ) -> Result<Vec<RecordId>> {
        let client = self.client().await?;
        // An empty bytea sorts before every record id.
        let after: Vec<u8> = after.map_or_else(Vec::new, |r| r.as_bytes().to_vec());
        let rows = client
            .query(
                "SELECT record_id FROM members
                 WHERE identity = $1 AND role = $2 AND record_id > $3
                 ORDER BY record_id LIMIT $4",
                &[
                    &&relay.as_bytes()[..],
                    &MemberRole::Replica.as_str(),
                    &after,
                    &i64::from(limit),
                ],
            )
            .await?;
        rows.iter()
            .map(|row| record_id(&row.try_get::<_, Vec<u8>>(0)?))
            .collect()
    }

    async fn replica_heads(
        &self,
        relay: IdentityId,
        after: Option<RecordId>,
        limit: u32,
    ) -> Result<Vec<RecordHeadsRow>> {
        let client = self.client().await?;
        let after: Vec<u8> = after.map_or_else(Vec::new, |r| r.as_bytes().to_vec());
        let rows = client
            .query(
                "SELECT m.record_id,
                        (SELECT COALESCE(MAX(a.seq), 0) FROM access_log a
                         WHERE a.record_id = m.record_id),
                        s.section, s.max_seq
                 FROM (SELECT record_id FROM members
                       WHERE identity = $1 AND role = $2 AND record_id > $3
                       ORDER BY record_id LIMIT $4) m
                 LEFT JOIN sections s ON s.record_id = m.record_id
                 ORDER BY m.record_id, s.section",
                &[
                    &&relay.as_bytes()[..],
                    &MemberRole::Replica.as_str(),
                    &after,
                    &i64::from(limit),
                ],
            )
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            out.push((
                record_id(&row.try_get::<_, Vec<u8>>(0)?)?,
                row.try_get::<_, Seq>(1)?,
                row.try_get::<_, Option<String>>(2)?,
                row.try_get::<_, Option<Seq>>(3)?,
            ));
        }
        Ok(fold_heads(out))
    }

    async fn append_statement(
        &self,
        record: RecordId,
        statement: Vec<u8>,
        signature: Vec<u8>,
        expected_head: [u8; 32],
        members: Vec<Member>,
    ) -> Result<StatementOutcome> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        // The record lock serialises appends: the head read below cannot
        // change before this transaction commits.
        lock_record(&tx, &record).await?;
        if !record_exists(&tx, &record).await? {
            return Err(StorageError::NotFound);
        }
        let rid = &record.as_bytes()[..];
        let hash = sha256(&statement);
        if let Some(row) = tx
            .query_opt(
                "SELECT seq FROM access_log WHERE record_id = $1 AND statement_hash = $2",
                &[&rid, &hash],
            )
            .await?
        {
            return Ok(StatementOutcome::Duplicate(row.try_get(0)?));
        }
        let head: Option<Vec<u8>> = match tx
            .query_opt(
                "SELECT statement_hash FROM access_log WHERE record_id = $1
                 ORDER BY seq DESC LIMIT 1",
                &[&rid],
            )
            .await?
        {
            Some(row) => Some(row.try_get(0)?),
            None => None,
        };
        if head.as_deref().unwrap_or(&[0u8; 32]) != expected_head {
            return Ok(StatementOutcome::HeadMoved);
        }
        let seq: i64 = tx
            .query_one(
                "INSERT INTO access_log (record_id, statement_hash, statement, signature)
                 VALUES ($1, $2, $3, $4) RETURNING seq",
                &[&rid, &hash, &statement, &signature],
            )
            .await?
            .try_get(0)?;
        tx.execute("DELETE FROM members WHERE record_id = $1", &[&rid])
            .await?;
        for m in &members {
            insert_member(&tx, &record, m).await?;
        }
        tx.commit().await?;
        Ok(StatementOutcome::Appended(seq))
    }

    async fn statements(
        &self,
        record: RecordId,
        after: Seq,
        limit: u32,
    ) -> Result<Vec<StatementRow>> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT seq, statement, signature FROM access_log
                 WHERE record_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
                &[&&record.as_bytes()[..], &after, &i64::from(limit)],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(StatementRow {
                    seq: r.try_get(0)?,
                    statement: r.try_get(1)?,
                    signature: r.try_get(2)?,
                })
            })
            .collect()
    }

    async fn append_envelopes(
        &self,
        record: RecordId,
        section: &str,
        batch: Vec<NewEnvelope>,
        by: Actor,
    ) -> Result<Vec<Appended>> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        lock_record(&tx, &record).await?;
        if !record_exists(&tx, &record).await? {
            return Err(StorageError::NotFound);
        }
        let rid = &record.as_bytes()[..];
        if batch.iter().any(|e| e.bytes.is_empty()) {
            return Err(StorageError::Conflict("empty envelope"));
        }
        let wanted: std::collections::HashSet<&[u8]> = batch.iter().map(|e| &e.hash[..]).collect();
        let authors: Vec<&[u8]> = batch.iter().map(|e| &e.author.as_bytes()[..]).collect();
        let author_seqs: Vec<i64> = batch.iter().map(NewEnvelope::author_seq_db).collect();
        let mut existing = std::collections::HashMap::<Vec<u8>, Seq>::new();
        for row in tx
            .query(
                "SELECT e.hash, e.seq FROM envelopes e
                 JOIN unnest($3::bytea[], $4::bigint[]) AS k(a, s)
                   ON e.author = k.a AND e.author_seq = k.s
                 WHERE e.record_id = $1 AND e.section = $2",
                &[&rid, &section, &authors, &author_seqs],
            )
            .await?
        {
            let hash: Vec<u8> = row.try_get(0)?;
            if wanted.contains(hash.as_slice()) {
                existing.insert(hash, row.try_get(1)?);
            }
        }
        // The new envelopes, first occurrence only, in batch order.
        let mut fresh: Vec<&NewEnvelope> = Vec::new();
        let mut seen = std::collections::HashSet::<&[u8]>::new();
        for env in &batch {
            if !existing.contains_key(&env.hash[..]) && seen.insert(&env.hash[..]) {
                fresh.push(env);
            }
        }
        if !fresh.is_empty() {
            let h: Vec<&[u8]> = fresh.iter().map(|e| &e.hash[..]).collect();
            let a: Vec<&[u8]> = fresh.iter().map(|e| &e.author.as_bytes()[..]).collect();
            let n: Vec<i64> = fresh.iter().map(|e| e.author_seq_db()).collect();
            let b: Vec<&[u8]> = fresh.iter().map(|e| e.bytes.as_slice()).collect();
            let rows = tx
                .query(
                    "INSERT INTO envelopes (hash, record_id, section, author, author_seq, bytes, origin)
                     SELECT t.h, $2, $3, t.a, t.n, t.b, $7
                     FROM unnest($1::bytea[], $4::bytea[], $5::bigint[], $6::bytea[])
                          WITH ORDINALITY AS t(h, a, n, b, ord)
                     ORDER BY t.ord
                     RETURNING hash, seq",
                    &[&h, &rid, &section, &a, &n, &b, &by.origin],
                )
                .await?;
            for row in rows {
                existing.insert(row.try_get(0)?, row.try_get(1)?);
            }
        }
        let fresh_hashes: std::collections::HashSet<&[u8]> =
            fresh.iter().map(|e| &e.hash[..]).collect();
        let mut reported = std::collections::HashSet::<&[u8]>::new();
        let mut out = Vec::with_capacity(batch.len());
        for env in &batch {
            let seq = *existing
                .get(&env.hash[..])
                .ok_or_else(|| StorageError::Backend("inserted envelope has no seq".into()))?;
            let new = fresh_hashes.contains(&env.hash[..]) && reported.insert(&env.hash[..]);
            out.push(Appended {
                seq,
                duplicate: !new,
            });
        }
        let change = change_of(record, section, &out);
        if let Some(change) = &change {
            tx.execute(
                "INSERT INTO sections (record_id, section, max_seq) VALUES ($1, $2, $3)
                 ON CONFLICT (record_id, section) DO UPDATE
                 SET max_seq = GREATEST(sections.max_seq, EXCLUDED.max_seq)",
                &[&rid, &section, &change.seq],
            )
            .await?;
            tx.execute(
                "SELECT pg_notify($1, $2)",
                &[&self.channel, &notice(change)],
            )
            .await?;
        }
        for event in push_events(record, section, by, &batch, &out) {
            record_audit(&tx, &event).await?;
        }
        tx.commit().await?;
        Ok(out)
    }

    async fn pull(
        &self,
        record: RecordId,
        section: &str,
        after: Seq,
        limit: u32,
    ) -> Result<PullPage> {
        self.pull_page(record, section, after, limit, false).await
    }

    async fn pull_whole(
        &self,
        record: RecordId,
        section: &str,
        after: Seq,
        limit: u32,
    ) -> Result<PullPage> {
        self.pull_page(record, section, after, limit, true).await
    }

    async fn feed(&self, record: RecordId, after: Seq) -> Result<Vec<(String, Seq)>> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT section, max_seq FROM sections WHERE record_id = $1 AND max_seq > $2
                 ORDER BY section COLLATE \"C\"",
                &[&&record.as_bytes()[..], &after],
            )
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect()
    }

    async fn put_snapshot(
        &self,
        record: RecordId,
        section: &str,
        upto_seq: Seq,
        bytes: Vec<u8>,
    ) -> Result<SnapshotOutcome> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        lock_record(&tx, &record).await?;
        if !record_exists(&tx, &record).await? {
            return Err(StorageError::NotFound);
        }
        let rid = &record.as_bytes()[..];
        let newest: Seq = match tx
            .query_opt(
                "SELECT max_seq FROM sections WHERE record_id = $1 AND section = $2",
                &[&rid, &section],
            )
            .await?
        {
            Some(row) => row.try_get(0)?,
            None => 0,
        };
        if upto_seq > newest {
            return Ok(SnapshotOutcome::BeyondLog { newest });
        }
        if let Some(row) = tx
            .query_opt(
                "SELECT upto_seq FROM snapshots WHERE record_id = $1 AND section = $2",
                &[&rid, &section],
            )
            .await?
        {
            let current: Seq = row.try_get(0)?;
            if current >= upto_seq {
                return Ok(SnapshotOutcome::NotNewer { current });
            }
        }
        tx.execute(
            "INSERT INTO snapshots (record_id, section, upto_seq, bytes) VALUES ($1, $2, $3, $4)
             ON CONFLICT (record_id, section) DO UPDATE SET upto_seq = EXCLUDED.upto_seq,
             bytes = EXCLUDED.bytes",
            &[&rid, &section, &upto_seq, &bytes],
        )
        .await?;
        tx.commit().await?;
        Ok(SnapshotOutcome::Replaced)
    }

    async fn record_audit(&self, event: AuditEvent) -> Result<Seq> {
        record_audit(&self.client().await?, &event).await
    }

    async fn record_forwarded_audit(
        &self,
        record: RecordId,
        relay: IdentityId,
        events: Vec<(Seq, AuditEvent)>,
    ) -> Result<u64> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        if !record_exists(&tx, &record).await? {
            return Err(StorageError::NotFound);
        }
        let stmt = tx
            .prepare(
                "INSERT INTO audit (record_id, at_ms, identity, action, section, count, relay, relay_seq)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                 ON CONFLICT (record_id, relay, relay_seq) WHERE relay IS NOT NULL DO NOTHING",
            )
            .await?;
        let mut stored = 0;
        for (relay_seq, e) in &events {
            stored += tx
                .execute(
                    &stmt,
                    &[
                        &&record.as_bytes()[..],
                        &e.at_ms,
                        &&e.identity.as_bytes()[..],
                        &e.action.as_str(),
                        &e.section,
                        &e.count,
                        &&relay.as_bytes()[..],
                        relay_seq,
                    ],
                )
                .await?;
        }
        tx.commit().await?;
        Ok(stored)
    }

    async fn audit(&self, record: RecordId, after: Seq, limit: u32) -> Result<Vec<AuditEvent>> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT seq, at_ms, identity, action, section, count, relay FROM audit
                 WHERE record_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
                &[&&record.as_bytes()[..], &after, &i64::from(limit)],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(AuditEvent {
                    seq: r.try_get(0)?,
                    record,
                    at_ms: r.try_get(1)?,
                    identity: identity(&r.try_get::<_, Vec<u8>>(2)?)?,
                    action: AuditAction::parse(&r.try_get::<_, String>(3)?)
                        .ok_or_else(|| StorageError::Backend("unknown audit action".into()))?,
                    section: r.try_get(4)?,
                    count: r.try_get(5)?,
                    relay: r
                        .try_get::<_, Option<Vec<u8>>>(6)?
                        .as_deref()
                        .map(identity)
                        .transpose()?,
                })
            })
            .collect()
    }

    async fn create_link(
        &self,
        link_id: &str,
        record: RecordId,
        creator: IdentityId,
        expires_at_ms: i64,
        now_ms: i64,
    ) -> Result<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        tx.execute(
            "DELETE FROM links WHERE link_id = $1 AND expires_at_ms <= $2",
            &[&link_id, &now_ms],
        )
        .await?;
        let inserted = tx
            .execute(
                "INSERT INTO links (link_id, record_id, creator, expires_at_ms) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (link_id) DO NOTHING",
                &[
                    &link_id,
                    &&record.as_bytes()[..],
                    &&creator.as_bytes()[..],
                    &expires_at_ms,
                ],
            )
            .await?;
        if inserted == 0 {
            return Err(StorageError::Conflict("link already exists"));
        }
        tx.commit().await?;
        Ok(())
    }

    async fn join_link(
        &self,
        link_id: &str,
        joiner: IdentityId,
        payload: Vec<u8>,
        now_ms: i64,
    ) -> Result<()> {
        let client = self.client().await?;
        let updated = client
            .execute(
                "UPDATE links SET joiner = $2, join_payload = $3
                 WHERE link_id = $1 AND expires_at_ms > $4 AND join_payload IS NULL",
                &[&link_id, &&joiner.as_bytes()[..], &payload, &now_ms],
            )
            .await?;
        if updated == 1 {
            return Ok(());
        }
        match get_link(&client, link_id, now_ms).await? {
            None => Err(StorageError::NotFound),
            Some(_) => Err(StorageError::Conflict("link already joined")),
        }
    }

    async fn accept_link(&self, link_id: &str, payload: Vec<u8>, now_ms: i64) -> Result<()> {
        let client = self.client().await?;
        let updated = client
            .execute(
                "UPDATE links SET accept_payload = $2
                 WHERE link_id = $1 AND expires_at_ms > $3 AND join_payload IS NOT NULL
                 AND accept_payload IS NULL",
                &[&link_id, &payload, &now_ms],
            )
            .await?;
        if updated == 1 {
            return Ok(());
        }
        match get_link(&client, link_id, now_ms).await? {
            None => Err(StorageError::NotFound),
            Some(l) if l.join.is_none() => Err(StorageError::Conflict("link not joined yet")),
            Some(_) => Err(StorageError::Conflict("link already accepted")),
        }
    }

    async fn get_link(&self, link_id: &str, now_ms: i64) -> Result<Option<Link>> {
        let client = self.client().await?;
        get_link(&client, link_id, now_ms).await
    }

    async fn purge_expired(&self, now_ms: i64) -> Result<u64> {
        let client = self.client().await?;
        let mut n = 0;
        for table in [
            "links",
            "tokens",
            "challenges",
            "session_revocations",
            "share_link_locations",
        ] {
            n += client
                .execute(
                    &format!("DELETE FROM {table} WHERE expires_at_ms <= $1"),
                    &[&now_ms],
                )
                .await?;
        }
        n += client
            .execute(
                &crate::storage::share_links::PURGE_DEAD_FILES.replace("?1", "$1"),
                &[&now_ms],
            )
            .await?;
        Ok(n)
    }

    fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.changes.subscribe()
    }

    async fn close(&self) {
        self.closed.store(true, Ordering::Release);
        let handle = self.listener.lock().ok().and_then(|mut l| l.take());
        if let Some(handle) = handle {
            handle.abort();
        }
        self.pool.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices_round_trip() {
        let c = Change {
            record: RecordId::random(),
            section: "odd:name/with-chars".into(),
            seq: 42,
        };
        assert_eq!(parse_notice(&notice(&c)), Some(c));
        assert_eq!(parse_notice("garbage"), None);
    }

    #[test]
    fn schema_names_are_checked() {
        assert!(check_schema("satchel_test_1").is_ok());
        assert!(check_schema("Bad").is_err());
        assert!(check_schema("a;drop").is_err());
        assert!(check_schema("1abc").is_err());
        assert!(check_schema("").is_err());
    }
}
