//! Relay storage: one async trait, [`Storage`], and its two backends.
//!
//! The relay keeps only what it needs to route ciphertext: hashed bearer
//! tokens, single-use auth challenges, records and their member devices, the
//! signed access-statement log (exact bytes) with the membership derived
//! from it, an audit trail of pulls and pushes (ids, sections and counts
//! only), the envelope log with a
//! relay-wide sequence number, one compaction snapshot per section, and the
//! invite/link mailboxes, and the SMART Health Links hosted blind
//! ([`share_links`]: their encrypted files, passcode hashes, counters and
//! who opened them). Every value it stores is either public (ids, cards,
//! signatures) or ciphertext; error messages never carry stored values.
//!
//! - [`sqlite`]: embedded, zero set-up. One writer thread owns the write
//!   connection and *group-commits* every queued job into one transaction
//!   (one fsync, WAL, `synchronous=FULL`); each job runs in its own
//!   savepoint so one failing batch never affects another. Reads run on a
//!   small pool of read connections on the blocking thread pool.
//! - [`postgres`]: for several stateless relay instances over one database.
//!   Appends take a per-record advisory lock so sequence numbers commit in
//!   order; changes are announced with `NOTIFY` and relayed from `LISTEN`.
//!
//! Both backends create their schema from numbered `.sql` migrations in
//! their folder. The behavioural suite both must pass is
//! `tests/tests/relay_storage_conformance.rs` (in the `satchel-tests` crate,
//! so that the relay package itself depends on no HTTP client).
//!
//! Times are passed in as `now_ms` (Unix milliseconds) so the behaviour
//! around expiry is testable without sleeping.

use async_trait::async_trait;
use satchel_protocol::ids::{IdentityId, RecordId};
use std::collections::{BTreeMap, BTreeSet};
use tokio::sync::broadcast;

pub mod postgres;
pub mod share_links;
pub mod sqlite;

pub use share_links::{NewShareLink, ShareFile, ShareLinkRow, ShareLinkStorage, ShareOpen};

/// A relay sequence number (positive, increasing across the whole relay).
pub type Seq = i64;

/// Storage failures. Messages name what failed, never a stored value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StorageError {
    /// The record (or link) does not exist.
    #[error("not found")]
    NotFound,
    /// The write contradicts what is stored (named, e.g. "link already joined").
    #[error("conflict: {0}")]
    Conflict(&'static str),
    /// The database failed; the text is the driver's message.
    #[error("storage backend: {0}")]
    Backend(String),
    /// The storage was closed (server shutting down).
    #[error("storage closed")]
    Closed,
    /// The disk (or the database's quota) is full: nothing was stored.
    #[error("storage full")]
    Full,
}

/// Result alias for [`StorageError`].
pub type Result<T> = std::result::Result<T, StorageError>;

impl From<rusqlite::Error> for StorageError {
    fn from(e: rusqlite::Error) -> Self {
        if e.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull) {
            return StorageError::Full;
        }
        StorageError::Backend(e.to_string())
    }
}

impl From<tokio_postgres::Error> for StorageError {
    fn from(e: tokio_postgres::Error) -> Self {
        // The server's code and message only: a DETAIL line may quote values.
        match e.as_db_error() {
            // Class 53: insufficient resources (disk full, out of memory).
            Some(db) if db.code().code().starts_with("53") => StorageError::Full,
            Some(db) => StorageError::Backend(format!("{}: {}", db.code().code(), db.message())),
            None => StorageError::Backend(e.to_string()),
        }
    }
}

/// "Envelopes were stored for `record`/`section`, the newest with `seq`".
/// Sent to subscribers after the commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The record.
    pub record: RecordId,
    /// The section.
    pub section: String,
    /// The newest sequence number stored by the batch.
    pub seq: Seq,
}

/// "Every session of `identity` ended at `at_ms`" (see
/// [`Storage::revoke_sessions`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Revocation {
    /// Position (increasing; identifies the revocation).
    pub seq: Seq,
    /// Whose sessions ended.
    pub identity: IdentityId,
    /// When (Unix ms).
    pub at_ms: i64,
}

/// How long a revocation row is kept (far longer than any instance takes
/// to poll it).
pub const REVOCATION_KEEP_MS: i64 = 3_600_000;

/// A verified envelope ready to append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEnvelope {
    /// SHA-256 of `bytes` (the idempotency key).
    pub hash: [u8; 32],
    /// The (verified) author.
    pub author: IdentityId,
    /// The author's sequence number from the envelope header.
    pub author_seq: u64,
    /// The envelope exactly as uploaded (never empty).
    pub bytes: Vec<u8>,
}

impl NewEnvelope {
    /// `author_seq` as stored (the same 64 bits, as a signed integer).
    pub fn author_seq_db(&self) -> i64 {
        i64::from_be_bytes(self.author_seq.to_be_bytes())
    }
}

/// What happened to one envelope of an appended batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// Its relay sequence number (the original one for a duplicate).
    pub seq: Seq,
    /// It was already stored (same hash) before this batch, or earlier in it.
    pub duplicate: bool,
}

/// One stored envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEnvelope {
    /// Relay sequence number.
    pub seq: Seq,
    /// The envelope bytes.
    pub bytes: Vec<u8>,
    /// The upstream relay it was replicated from (`None`: uploaded here).
    pub origin: Option<String>,
}

/// A section's compaction snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// It covers every envelope of the section with `seq <= upto_seq`.
    pub upto_seq: Seq,
    /// The snapshot envelope bytes.
    pub bytes: Vec<u8>,
}

/// One page of a section pull.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullPage {
    /// The snapshot, when its `upto_seq` is after the requested cursor; the
    /// envelopes then start after `upto_seq` (except for
    /// [`Storage::pull_whole`]).
    pub snapshot: Option<Snapshot>,
    /// Envelopes in sequence order.
    pub envelopes: Vec<StoredEnvelope>,
    /// More envelopes follow the last one returned.
    pub more: bool,
}

impl PullPage {
    /// The cursor for the next pull.
    pub fn next(&self, after: Seq) -> Seq {
        let snap = self
            .snapshot
            .as_ref()
            .map_or(after, |s| s.upto_seq.max(after));
        self.envelopes.last().map_or(snap, |e| e.seq.max(snap))
    }

    /// The cursor for the next [`Storage::pull_whole`]: the last envelope
    /// returned (the snapshot skips nothing there).
    pub fn next_whole(&self, after: Seq) -> Seq {
        self.envelopes.last().map_or(after, |e| e.seq.max(after))
    }
}

/// Outcome of [`Storage::put_snapshot`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotOutcome {
    /// Stored (there was none, or it had a smaller `upto_seq`).
    Replaced,
    /// Kept the current one: its `upto_seq` is not smaller.
    NotNewer {
        /// The current snapshot's `upto_seq`.
        current: Seq,
    },
    /// `upto_seq` is after the section's newest envelope (`newest`, 0 if
    /// none): such a snapshot would hide envelopes stored later.
    BeyondLog {
        /// The section's newest sequence number.
        newest: Seq,
    },
}

/// Outcome of [`Storage::register_record`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegisterOutcome {
    /// New record.
    Created,
    /// Already registered with this owner device (idempotent).
    AlreadyRegistered,
    /// Already registered with a different first owner.
    Conflict,
}

/// A member's role and rights: the protocol's one authorization rule
/// ([`satchel_protocol::sharing::Rights`]), stored per member as the
/// verified log establishes it.
pub use satchel_protocol::sharing::{MemberRole, Rights};

/// Whether an identity belongs to a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Membership {
    /// No such record.
    NoRecord,
    /// The record exists; the identity is not a member (never was, or was
    /// revoked).
    NotMember,
    /// A member with this access (which may have expired: check with a
    /// time).
    Member(Rights),
}

/// A record member as derived from the access log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// The member's identity.
    pub identity: IdentityId,
    /// What it may do.
    pub access: Rights,
    /// Its identity card (binary encoding).
    pub card: Vec<u8>,
}

/// One entry of a record's access log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatementRow {
    /// Position in the log (relay-wide increasing).
    pub seq: Seq,
    /// The statement's exact bytes.
    pub statement: Vec<u8>,
    /// Its signature.
    pub signature: Vec<u8>,
}

/// Outcome of [`Storage::append_statement`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatementOutcome {
    /// Appended at this position.
    Appended(Seq),
    /// The same statement bytes were already in the log at this position.
    Duplicate(Seq),
    /// The log's head is no longer the expected one (another statement
    /// landed first): nothing was written.
    HeadMoved,
}

/// What an audit event records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditAction {
    /// Envelopes (or a snapshot) were read.
    Pull,
    /// New envelopes were stored.
    Push,
    /// A member reported entries it showed from its own copy.
    View,
}

impl AuditAction {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            AuditAction::Pull => "pull",
            AuditAction::Push => "push",
            AuditAction::View => "view",
        }
    }

    /// Parse the wire name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pull" => Some(AuditAction::Pull),
            "push" => Some(AuditAction::Push),
            "view" => Some(AuditAction::View),
            _ => None,
        }
    }
}

impl From<satchel_protocol::wire::AuditAction> for AuditAction {
    fn from(action: satchel_protocol::wire::AuditAction) -> Self {
        use satchel_protocol::wire::AuditAction as Wire;
        match action {
            Wire::Pull => AuditAction::Pull,
            Wire::Push => AuditAction::Push,
            Wire::View => AuditAction::View,
        }
    }
}

impl From<AuditAction> for satchel_protocol::wire::AuditAction {
    fn from(action: AuditAction) -> Self {
        match action {
            AuditAction::Pull => Self::Pull,
            AuditAction::Push => Self::Push,
            AuditAction::View => Self::View,
        }
    }
}

/// Who did what to which section, when (no content).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    /// Position (relay-wide increasing; 0 before it is stored).
    pub seq: Seq,
    /// The record.
    pub record: RecordId,
    /// Unix ms.
    pub at_ms: i64,
    /// The authenticated caller.
    pub identity: IdentityId,
    /// Pull or push.
    pub action: AuditAction,
    /// The section.
    pub section: String,
    /// Envelopes read (a snapshot counts one) or newly stored.
    pub count: i64,
    /// The replica relay where it happened, which forwarded it here
    /// (`None`: at this relay).
    pub relay: Option<IdentityId>,
}

/// Where one record stands, for a replica relay ([`Storage::replica_heads`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordHeadsRow {
    pub record: RecordId,
    /// The seq of its newest statement (0: none).
    pub access: Seq,
    /// Per log, its newest envelope's seq, ordered by name.
    pub logs: Vec<(String, Seq)>,
}

/// The caller of an upload, for its audit event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// The authenticated identity.
    pub identity: IdentityId,
    /// Unix ms.
    pub at_ms: i64,
    /// Where the envelopes were written, when not here: the upstream relay
    /// they were replicated from (its URL: they are not offered back to
    /// it), or `replica:<identity>` for a replica relay's upload. Their
    /// pushes are audited where they happened (and forwarded), not again
    /// here. `None`: uploaded here by a device.
    pub origin: Option<String>,
}

/// An invite / device-link mailbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// 32 hex characters derived from the out-of-band secret.
    pub link_id: String,
    /// The record it invites to.
    pub record: RecordId,
    /// The owner device that created it.
    pub creator: IdentityId,
    /// Who joined, once joined.
    pub joiner: Option<IdentityId>,
    /// The joiner's payload.
    pub join: Option<Vec<u8>>,
    /// The creator's reply.
    pub accept: Option<Vec<u8>>,
    /// Expiry (Unix ms).
    pub expires_at_ms: i64,
}

/// The relay's storage. Implementations are cheap to share (`Arc<dyn
/// Storage>`), never block the async runtime, and make every write durable
/// before returning.
#[async_trait]
pub trait Storage: ShareLinkStorage + Send + Sync + 'static {
    /// `"sqlite"` or `"postgres"`.
    fn kind(&self) -> &'static str;

    /// A trivial round trip to the database.
    async fn health(&self) -> Result<()>;

    /// The schema version this storage migrated to and serves.
    fn schema_version(&self) -> u32;

    /// Whether changes stored by other instances reach [`Storage::subscribe`]
    /// now (PostgreSQL: the `LISTEN` connection is up; SQLite, a single
    /// process: always).
    fn notifications_live(&self) -> bool;

    // ----- tokens and challenges -----

    /// Store a token by its SHA-256 `hash`.
    async fn put_token(
        &self,
        hash: [u8; 32],
        identity: IdentityId,
        expires_at_ms: i64,
    ) -> Result<()>;
    /// The identity and expiry of an unexpired token.
    async fn token(&self, hash: [u8; 32], now_ms: i64) -> Result<Option<(IdentityId, i64)>>;
    /// Remember an issued challenge.
    async fn put_challenge(
        &self,
        identity: IdentityId,
        challenge: [u8; 32],
        expires_at_ms: i64,
    ) -> Result<()>;
    /// End every session of `identity` at once: delete its tokens and
    /// record a revocation (kept [`REVOCATION_KEEP_MS`]) that every
    /// instance sharing the database reads with
    /// [`Storage::revocations_since`]. Returns how many tokens ended.
    async fn revoke_sessions(&self, identity: IdentityId, now_ms: i64) -> Result<u64>;
    /// Revocations recorded at or after `since_ms`, oldest first.
    async fn revocations_since(&self, since_ms: i64) -> Result<Vec<Revocation>>;
    /// Consume a challenge: `true` exactly once, if it was issued to
    /// `identity` and has not expired.
    async fn take_challenge(
        &self,
        identity: IdentityId,
        challenge: [u8; 32],
        now_ms: i64,
    ) -> Result<bool>;

    // ----- records, members, access log -----

    /// Register a record whose first owner device is `owner`.
    async fn register_record(
        &self,
        record: RecordId,
        owner: IdentityId,
        owner_card: Vec<u8>,
        now_ms: i64,
    ) -> Result<RegisterOutcome>;
    /// The record's creator device and its card as registered (`None`
    /// without the record): the root of its access log.
    async fn record_root(&self, record: RecordId) -> Result<Option<(IdentityId, Vec<u8>)>>;
    /// Whether `identity` is a member of `record`, with its access.
    async fn membership(&self, record: RecordId, identity: IdentityId) -> Result<Membership>;
    /// The record's members ([`StorageError::NotFound`] without the record).
    async fn members(&self, record: RecordId) -> Result<Vec<Member>>;
    /// How far `stream` of `record` has been exchanged with `upstream` (a
    /// replication cursor; 0 when it has not started).
    async fn replication_cursor(
        &self,
        upstream: &str,
        record: RecordId,
        stream: &str,
    ) -> Result<Seq>;
    /// Store a replication cursor (replacing the previous value).
    async fn set_replication_cursor(
        &self,
        upstream: &str,
        record: RecordId,
        stream: &str,
        seq: Seq,
    ) -> Result<()>;
    /// The records whose member rows name `relay` a replica, in increasing
    /// id order, after `after` (from the start when `None`), at most
    /// `limit`.
    async fn replica_records(
        &self,
        relay: IdentityId,
        after: Option<RecordId>,
        limit: u32,
    ) -> Result<Vec<RecordId>>;
    /// [`Storage::replica_records`] with where each record stands: its
    /// newest statement's seq and each log's newest envelope's seq.
    async fn replica_heads(
        &self,
        relay: IdentityId,
        after: Option<RecordId>,
        limit: u32,
    ) -> Result<Vec<RecordHeadsRow>>;
    /// Append a verified statement, compare-and-swap: only if the hash of
    /// the log's last statement is `expected_head` (zeros for an empty
    /// log), else [`StatementOutcome::HeadMoved`] and nothing changes.
    /// In the same transaction the record's member rows are replaced by
    /// `members` (the membership the log establishes with the statement).
    /// Idempotent on the exact statement bytes (checked first).
    async fn append_statement(
        &self,
        record: RecordId,
        statement: Vec<u8>,
        signature: Vec<u8>,
        expected_head: [u8; 32],
        members: Vec<Member>,
    ) -> Result<StatementOutcome>;
    /// Statements of the record's log after `after`, oldest first.
    async fn statements(
        &self,
        record: RecordId,
        after: Seq,
        limit: u32,
    ) -> Result<Vec<StatementRow>>;

    // ----- envelopes and snapshots -----

    /// Append a batch to one section, atomically and durably. Envelopes
    /// already stored (by hash) keep their original seq. Fails with
    /// `NotFound` without the record and `Conflict` for an empty envelope;
    /// then nothing of the batch is stored.
    /// Announces a [`Change`] to subscribers when something new was stored,
    /// and records a `push` [`AuditEvent`] by `by` (in the same
    /// transaction) counting the new envelopes.
    async fn append_envelopes(
        &self,
        record: RecordId,
        section: &str,
        batch: Vec<NewEnvelope>,
        by: Actor,
    ) -> Result<Vec<Appended>>;
    /// Envelopes after `after` (or after the snapshot's `upto_seq` when the
    /// snapshot is returned), at most `limit`.
    async fn pull(
        &self,
        record: RecordId,
        section: &str,
        after: Seq,
        limit: u32,
    ) -> Result<PullPage>;
    /// For a replica relay: every envelope after `after` (the snapshot
    /// never stands in for the ones it covers), at most `limit`, and the
    /// snapshot alongside when its `upto_seq` is after `after`.
    async fn pull_whole(
        &self,
        record: RecordId,
        section: &str,
        after: Seq,
        limit: u32,
    ) -> Result<PullPage>;
    /// Sections of the record whose newest envelope is after `after`, with
    /// that newest seq, ordered by section name.
    async fn feed(&self, record: RecordId, after: Seq) -> Result<Vec<(String, Seq)>>;
    /// Replace the section's snapshot if `upto_seq` is greater than the
    /// current one's and not after the section's newest envelope.
    async fn put_snapshot(
        &self,
        record: RecordId,
        section: &str,
        upto_seq: Seq,
        bytes: Vec<u8>,
    ) -> Result<SnapshotOutcome>;

    // ----- audit -----

    /// Record an event (a pull; pushes are recorded by
    /// [`Storage::append_envelopes`]). Returns its seq.
    async fn record_audit(&self, event: AuditEvent) -> Result<Seq>;
    /// Store events that replica `relay` recorded and forwarded, each
    /// with its seq in that relay's trail (`(relay seq, event)`); an event
    /// already stored (same record, relay and relay seq) is skipped.
    /// Returns how many were new. `NotFound` without the record.
    async fn record_forwarded_audit(
        &self,
        record: RecordId,
        relay: IdentityId,
        events: Vec<(Seq, AuditEvent)>,
    ) -> Result<u64>;
    /// The record's audit events after `after`, oldest first, at most
    /// `limit`.
    async fn audit(&self, record: RecordId, after: Seq, limit: u32) -> Result<Vec<AuditEvent>>;

    // ----- links -----

    /// Create a link mailbox (`Conflict` if an unexpired one has the id).
    async fn create_link(
        &self,
        link_id: &str,
        record: RecordId,
        creator: IdentityId,
        expires_at_ms: i64,
        now_ms: i64,
    ) -> Result<()>;
    /// Join once (`NotFound` if missing or expired, `Conflict` if joined).
    async fn join_link(
        &self,
        link_id: &str,
        joiner: IdentityId,
        payload: Vec<u8>,
        now_ms: i64,
    ) -> Result<()>;
    /// Accept once (`NotFound` if missing or expired, `Conflict` if not yet
    /// joined or already accepted).
    async fn accept_link(&self, link_id: &str, payload: Vec<u8>, now_ms: i64) -> Result<()>;
    /// An unexpired link.
    async fn get_link(&self, link_id: &str, now_ms: i64) -> Result<Option<Link>>;

    /// Delete expired links, tokens, challenges and share-link `location`
    /// tokens; returns how many rows.
    async fn purge_expired(&self, now_ms: i64) -> Result<u64>;

    // ----- notifications and lifecycle -----

    /// Changes stored from now on (on any instance sharing the database).
    fn subscribe(&self) -> broadcast::Receiver<Change>;

    /// Finish queued writes and stop; later calls fail with `Closed`.
    async fn close(&self);
}

/// Unix time in milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Capacity of the change broadcast: a subscriber further behind than this
/// is told to reconnect and read the feed.
pub const CHANGE_CHANNEL_CAPACITY: usize = 4096;

/// The newest seq per section among newly stored envelopes of a batch, as
/// a [`Change`] (none when the whole batch was duplicates).
pub(crate) fn change_of(record: RecordId, section: &str, appended: &[Appended]) -> Option<Change> {
    appended
        .iter()
        .filter(|a| !a.duplicate)
        .map(|a| a.seq)
        .max()
        .map(|seq| Change {
            record,
            section: section.to_owned(),
            seq,
        })
}

/// The `push` audit events of an appended batch: one per author of its
/// new envelopes (none when every envelope was a duplicate). The author,
/// not the uploader, is the contributor: a device that forwards envelopes
/// it received directly (edge sync) does not appear as their source.
/// Envelopes written at another relay ([`Actor::origin`]) were audited
/// there: none.
pub(crate) fn push_events(
    record: RecordId,
    section: &str,
    by: Actor,
    batch: &[NewEnvelope],
    appended: &[Appended],
) -> Vec<AuditEvent> {
    if by.origin.is_some() {
        return Vec::new();
    }
    let mut counts: BTreeMap<IdentityId, i64> = BTreeMap::new();
    for (env, a) in batch.iter().zip(appended) {
        if !a.duplicate {
            *counts.entry(env.author).or_default() += 1;
        }
    }
    counts
        .into_iter()
        .map(|(author, count)| AuditEvent {
            seq: 0,
            record,
            at_ms: by.at_ms,
            identity: author,
            action: AuditAction::Push,
            section: section.to_owned(),
            count,
            relay: None,
        })
        .collect()
}

/// Rows of the heads query (record, newest statement seq, log, its newest
/// seq; the log absent for a record without envelopes), ordered by record
/// then log, folded into one [`RecordHeadsRow`] per record.
pub(crate) fn fold_heads(
    rows: Vec<(RecordId, Seq, Option<String>, Option<Seq>)>,
) -> Vec<RecordHeadsRow> {
    let mut out: Vec<RecordHeadsRow> = Vec::new();
    for (record, access, log, seq) in rows {
        if out.last().map(|h| h.record) != Some(record) {
            out.push(RecordHeadsRow {
                record,
                access,
                logs: Vec::new(),
            });
        }
        if let (Some(log), Some(seq), Some(last)) = (log, seq, out.last_mut()) {
            last.logs.push((log, seq));
        }
    }
    out
}

/// Refuse a database migrated by a newer relay (`found` > `known`).
pub fn check_version<V: PartialOrd + std::fmt::Display>(found: V, known: V) -> Result<()> {
    if found > known {
        return Err(StorageError::Backend(format!(
            "the database schema is version {found}, newer than this relay knows ({known}): \
             a newer satchel-sync migrated it; run that version (or newer), not this one"
        )));
    }
    Ok(())
}

/// Section names as stored in a member row (a JSON array).
pub(crate) fn sections_to_db(sections: &BTreeSet<String>) -> Result<String> {
    serde_json::to_string(sections)
        .map_err(|_| StorageError::Backend("member sections do not serialise".into()))
}

/// Parse a member row's sections.
pub(crate) fn sections_from_db(text: &str) -> Result<BTreeSet<String>> {
    serde_json::from_str(text).map_err(|_| StorageError::Backend("corrupt member sections".into()))
}
