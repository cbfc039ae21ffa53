//! The SQLite queries, as plain synchronous functions over a connection.
//! Writers run inside the writer thread's group transaction; readers run on
//! a read connection.

use std::collections::HashMap;
use std::path::Path;

use rusqlite::{params, Connection, OptionalExtension};
use satchel_protocol::ids::{IdentityId, RecordId};

use crate::storage::{
    fold_heads, push_events, sections_from_db, sections_to_db, Actor, Appended, AuditAction,
    AuditEvent, Link, Member, MemberRole, Membership, NewEnvelope, PullPage, RecordHeadsRow,
    RegisterOutcome, Result, Rights, Seq, Snapshot, SnapshotOutcome, StatementOutcome,
    StatementRow, StorageError, StoredEnvelope,
};

/// Numbered migrations; `PRAGMA user_version` is the number applied.
const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("migrations/0001_init.sql")),
    (2, include_str!("migrations/0002_sharing.sql")),
    (3, include_str!("migrations/0003_sessions.sql")),
    (4, include_str!("migrations/0004_replication.sql")),
    (5, include_str!("migrations/0005_federated_audit.sql")),
    (6, include_str!("migrations/0006_share_links.sql")),
];

/// The newest migration this relay knows.
pub const SCHEMA_VERSION: i64 = MIGRATIONS[MIGRATIONS.len() - 1].0;

/// Open a reader connection with the relay's settings (WAL,
/// `synchronous=FULL`, read-only) and a page cache of `cache_kib` KiB.
pub(super) fn open(path: &Path, cache_kib: i64) -> Result<Connection> {
    let conn = open_conn(path)?;
    conn.pragma_update(None, "query_only", true)?;
    conn.pragma_update(None, "cache_size", -cache_kib)?;
    Ok(conn)
}

/// Open the writer connection, with a page cache of `cache_kib` KiB: it
/// keeps the hot index pages cached and checkpoints in larger, rarer steps
/// (pages rewritten often are copied once).
pub(super) fn open_writer(path: &Path, cache_kib: i64) -> Result<Connection> {
    let conn = open_conn(path)?;
    conn.pragma_update(None, "cache_size", -cache_kib)?;
    conn.pragma_update(None, "wal_autocheckpoint", 8192)?;
    Ok(conn)
}

fn open_conn(path: &Path) -> Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StorageError::Backend(format!(
            "journal mode is {mode}, not WAL"
        )));
    }
    conn.pragma_update(None, "synchronous", "FULL")?;
    Ok(conn)
}

/// Apply pending migrations in one `BEGIN IMMEDIATE` transaction (it
/// takes the write lock first, so processes opening one file together
/// wait for each other); refuses a file migrated by a newer relay.
pub(super) fn migrate(conn: &mut Connection) -> Result<()> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let current: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    crate::storage::check_version(current, SCHEMA_VERSION)?;
    for (version, sql) in MIGRATIONS {
        if *version > current {
            tx.execute_batch(sql)?;
            tx.pragma_update(None, "user_version", version)?;
        }
    }
    tx.commit()?;
    Ok(())
}

fn identity(bytes: &[u8]) -> Result<IdentityId> {
    IdentityId::from_slice(bytes).map_err(|_| StorageError::Backend("corrupt identity id".into()))
}

fn record_id(bytes: &[u8]) -> Result<RecordId> {
    RecordId::from_slice(bytes).map_err(|_| StorageError::Backend("corrupt record id".into()))
}

fn sha256(bytes: &[u8]) -> Vec<u8> {
    ring::digest::digest(&ring::digest::SHA256, bytes)
        .as_ref()
        .to_vec()
}

// ----- tokens and challenges -----

pub(super) fn put_token(
    c: &Connection,
    hash: &[u8; 32],
    who: &IdentityId,
    expires: i64,
) -> Result<()> {
    c.prepare_cached(
        "INSERT INTO tokens (hash, identity, expires_at_ms) VALUES (?1, ?2, ?3)
         ON CONFLICT (hash) DO UPDATE SET identity = excluded.identity,
         expires_at_ms = excluded.expires_at_ms",
    )?
    .execute(params![&hash[..], &who.as_bytes()[..], expires])?;
    Ok(())
}

pub(super) fn token(
    c: &Connection,
    hash: &[u8; 32],
    now: i64,
) -> Result<Option<(IdentityId, i64)>> {
    let row: Option<(Vec<u8>, i64)> = c
        .prepare_cached("SELECT identity, expires_at_ms FROM tokens WHERE hash = ?1")?
        .query_row(params![&hash[..]], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    match row {
        Some((who, exp)) if exp > now => Ok(Some((identity(&who)?, exp))),
        _ => Ok(None),
    }
}

pub(super) fn revoke_sessions(c: &Connection, who: &IdentityId, now: i64) -> Result<u64> {
    let n = c
        .prepare_cached("DELETE FROM tokens WHERE identity = ?1")?
        .execute(params![&who.as_bytes()[..]])?;
    c.prepare_cached(
        "INSERT INTO session_revocations (identity, at_ms, expires_at_ms) VALUES (?1, ?2, ?3)",
    )?
    .execute(params![
        &who.as_bytes()[..],
        now,
        now.saturating_add(crate::storage::REVOCATION_KEEP_MS)
    ])?;
    Ok(u64::try_from(n).unwrap_or(u64::MAX))
}

pub(super) fn revocations_since(
    c: &Connection,
    since: i64,
) -> Result<Vec<crate::storage::Revocation>> {
    let mut stmt = c.prepare_cached(
        "SELECT seq, identity, at_ms FROM session_revocations WHERE at_ms >= ?1 ORDER BY seq",
    )?;
    let rows = stmt.query_map(params![since], |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, Vec<u8>>(1)?,
            r.get::<_, i64>(2)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (seq, who, at_ms) = row?;
        out.push(crate::storage::Revocation {
            seq,
            identity: identity(&who)?,
            at_ms,
        });
    }
    Ok(out)
}

pub(super) fn put_challenge(
    c: &Connection,
    who: &IdentityId,
    challenge: &[u8; 32],
    expires: i64,
) -> Result<()> {
    c.prepare_cached(
        "INSERT OR REPLACE INTO challenges (identity, challenge, expires_at_ms) VALUES (?1, ?2, ?3)",
    )?
    .execute(params![&who.as_bytes()[..], &challenge[..], expires])?;
    Ok(())
}

pub(super) fn take_challenge(
    c: &Connection,
    who: &IdentityId,
    challenge: &[u8; 32],
    now: i64,
) -> Result<bool> {
    let exp: Option<i64> = c
        .prepare_cached(
            "DELETE FROM challenges WHERE identity = ?1 AND challenge = ?2 RETURNING expires_at_ms",
        )?
        .query_row(params![&who.as_bytes()[..], &challenge[..]], |r| r.get(0))
        .optional()?;
    Ok(exp.is_some_and(|e| e > now))
}

// ----- records, members, access log -----

pub(super) fn register_record(
    c: &Connection,
    record: &RecordId,
    owner: &IdentityId,
    card: &[u8],
    now: i64,
) -> Result<RegisterOutcome> {
    let existing: Option<Vec<u8>> = c
        .prepare_cached("SELECT owner FROM records WHERE record_id = ?1")?
        .query_row(params![&record.as_bytes()[..]], |r| r.get(0))
        .optional()?;
    if let Some(existing) = existing {
        return Ok(if existing.as_slice() == owner.as_bytes() {
            RegisterOutcome::AlreadyRegistered
        } else {
            RegisterOutcome::Conflict
        });
    }
    c.prepare_cached(
        "INSERT INTO records (record_id, owner, created_at_ms, owner_card) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![
        &record.as_bytes()[..],
        &owner.as_bytes()[..],
        now,
        card
    ])?;
    insert_member(
        c,
        record,
        &Member {
            identity: *owner,
            access: Rights::owner_device(),
            card: card.to_vec(),
        },
    )?;
    Ok(RegisterOutcome::Created)
}

fn insert_member(c: &Connection, record: &RecordId, m: &Member) -> Result<()> {
    c.prepare_cached(
        "INSERT INTO members (record_id, identity, role, card, sections, can_write, expires_at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        &record.as_bytes()[..],
        &m.identity.as_bytes()[..],
        m.access.role.as_str(),
        &m.card,
        sections_to_db(&m.access.sections)?,
        m.access.role.writes(),
        m.access.expires_at_ms
    ])?;
    Ok(())
}

fn access_of(role: &str, sections: &str, write: bool, expires: Option<i64>) -> Result<Rights> {
    let role = MemberRole::parse(role)
        .ok_or_else(|| StorageError::Backend("unknown member role".into()))?;
    if write != role.writes() {
        return Err(StorageError::Backend(
            "member row's write flag disagrees with its role".into(),
        ));
    }
    Ok(Rights {
        role,
        sections: sections_from_db(sections)?,
        expires_at_ms: expires,
    })
}

pub(super) fn record_root(
    c: &Connection,
    record: &RecordId,
) -> Result<Option<(IdentityId, Vec<u8>)>> {
    let row: Option<(Vec<u8>, Option<Vec<u8>>)> = c
        .prepare_cached("SELECT owner, owner_card FROM records WHERE record_id = ?1")?
        .query_row(params![&record.as_bytes()[..]], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()?;
    row.map(|(owner, card)| Ok((identity(&owner)?, card.unwrap_or_default())))
        .transpose()
}

fn record_exists(c: &Connection, record: &RecordId) -> Result<bool> {
    Ok(
        c.prepare_cached("SELECT 1 FROM records WHERE record_id = ?1")?
            .query_row(params![&record.as_bytes()[..]], |_| Ok(()))
            .optional()?
            .is_some(),
    )
}

pub(super) fn membership(
    c: &Connection,
    record: &RecordId,
    who: &IdentityId,
) -> Result<Membership> {
    let row: Option<(String, String, bool, Option<i64>)> = c
        .prepare_cached(
            "SELECT role, sections, can_write, expires_at_ms FROM members
             WHERE record_id = ?1 AND identity = ?2",
        )?
        .query_row(params![&record.as_bytes()[..], &who.as_bytes()[..]], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })
        .optional()?;
    match row {
        Some((role, sections, write, expires)) => Ok(Membership::Member(access_of(
            &role, &sections, write, expires,
        )?)),
        None if record_exists(c, record)? => Ok(Membership::NotMember),
        None => Ok(Membership::NoRecord),
    }
}

pub(super) fn replication_cursor(
    c: &Connection,
    upstream: &str,
    record: &RecordId,
    stream: &str,
) -> Result<Seq> {
    Ok(c.prepare_cached(
        "SELECT seq FROM replication_cursors
         WHERE upstream = ?1 AND record_id = ?2 AND stream = ?3",
    )?
    .query_row(params![upstream, &record.as_bytes()[..], stream], |r| {
        r.get(0)
    })
    .optional()?
    .unwrap_or(0))
}

pub(super) fn set_replication_cursor(
    c: &Connection,
    upstream: &str,
    record: &RecordId,
    stream: &str,
    seq: Seq,
) -> Result<()> {
    c.prepare_cached(
        "INSERT INTO replication_cursors (upstream, record_id, stream, seq)
         VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (upstream, record_id, stream) DO UPDATE SET seq = excluded.seq",
    )?
    .execute(params![upstream, &record.as_bytes()[..], stream, seq])?;
    Ok(())
}

pub(super) fn replica_records(
    c: &Connection,
    relay: &IdentityId,
    after: Option<&RecordId>,
    limit: u32,
) -> Result<Vec<RecordId>> {
    // An empty blob sorts before every record id.
    let after: &[u8] = after.map_or(&[], |r| &r.as_bytes()[..]);
    let mut stmt = c.prepare_cached(
        "SELECT record_id FROM members
         WHERE identity = ?1 AND role = ?2 AND record_id > ?3
         ORDER BY record_id LIMIT ?4",
    )?;
    let rows = stmt.query_map(
        params![
            &relay.as_bytes()[..],
            MemberRole::Replica.as_str(),
            after,
            i64::from(limit)
        ],
        |r| r.get::<_, Vec<u8>>(0),
    )?;
    let mut out = Vec::new();
    for row in rows {
        out.push(record_id(&row?)?);
    }
    Ok(out)
}

pub(super) fn replica_heads(
    c: &Connection,
    relay: &IdentityId,
    after: Option<&RecordId>,
    limit: u32,
) -> Result<Vec<RecordHeadsRow>> {
    let after: &[u8] = after.map_or(&[], |r| &r.as_bytes()[..]);
    let mut stmt = c.prepare_cached(
        "SELECT m.record_id,
                (SELECT COALESCE(MAX(a.seq), 0) FROM access_log a WHERE a.record_id = m.record_id),
                s.section, s.max_seq
         FROM (SELECT record_id FROM members
               WHERE identity = ?1 AND role = ?2 AND record_id > ?3
               ORDER BY record_id LIMIT ?4) m
         LEFT JOIN sections s ON s.record_id = m.record_id
         ORDER BY m.record_id, s.section",
    )?;
    let rows = stmt.query_map(
        params![
            &relay.as_bytes()[..],
            MemberRole::Replica.as_str(),
            after,
            i64::from(limit)
        ],
        |r| {
            Ok((
                r.get::<_, Vec<u8>>(0)?,
                r.get::<_, Seq>(1)?,
                r.get::<_, Option<String>>(2)?,
                r.get::<_, Option<Seq>>(3)?,
            ))
        },
    )?;
    let mut out = Vec::new();
    for row in rows {
        let (rid, access, log, seq) = row?;
        out.push((record_id(&rid)?, access, log, seq));
    }
    Ok(fold_heads(out))
}

pub(super) fn members(c: &Connection, record: &RecordId) -> Result<Vec<Member>> {
    if !record_exists(c, record)? {
        return Err(StorageError::NotFound);
    }
    let mut stmt = c.prepare_cached(
        "SELECT identity, role, sections, can_write, expires_at_ms, card FROM members
         WHERE record_id = ?1 ORDER BY identity",
    )?;
    type Row = (Vec<u8>, String, String, bool, Option<i64>, Vec<u8>);
    let rows = stmt.query_map(params![&record.as_bytes()[..]], |r| {
        Ok::<Row, _>((
            r.get(0)?,
            r.get(1)?,
            r.get(2)?,
            r.get(3)?,
            r.get(4)?,
            r.get(5)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (who, role, sections, write, expires, card) = row?;
        out.push(Member {
            identity: identity(&who)?,
            access: access_of(&role, &sections, write, expires)?,
            card,
        });
    }
    Ok(out)
}

pub(super) fn append_statement(
    c: &Connection,
    record: &RecordId,
    statement: &[u8],
    signature: &[u8],
    expected_head: &[u8; 32],
    members: &[Member],
) -> Result<StatementOutcome> {
    if !record_exists(c, record)? {
        return Err(StorageError::NotFound);
    }
    let rid = &record.as_bytes()[..];
    let hash = sha256(statement);
    let existing: Option<i64> = c
        .prepare_cached("SELECT seq FROM access_log WHERE record_id = ?1 AND statement_hash = ?2")?
        .query_row(params![rid, &hash], |r| r.get(0))
        .optional()?;
    if let Some(seq) = existing {
        return Ok(StatementOutcome::Duplicate(seq));
    }
    // Compare-and-swap on the head (the writer thread serialises writes).
    let head: Option<Vec<u8>> = c
        .prepare_cached(
            "SELECT statement_hash FROM access_log WHERE record_id = ?1 ORDER BY seq DESC LIMIT 1",
        )?
        .query_row(params![rid], |r| r.get(0))
        .optional()?;
    if head.as_deref().unwrap_or(&[0u8; 32]) != expected_head {
        return Ok(StatementOutcome::HeadMoved);
    }
    let seq: i64 = c
        .prepare_cached(
            "INSERT INTO access_log (record_id, statement_hash, statement, signature)
             VALUES (?1, ?2, ?3, ?4) RETURNING seq",
        )?
        .query_row(params![rid, &hash, statement, signature], |r| r.get(0))?;
    c.prepare_cached("DELETE FROM members WHERE record_id = ?1")?
        .execute(params![rid])?;
    for m in members {
        insert_member(c, record, m)?;
    }
    Ok(StatementOutcome::Appended(seq))
}

pub(super) fn statements(
    c: &Connection,
    record: &RecordId,
    after: Seq,
    limit: u32,
) -> Result<Vec<StatementRow>> {
    let mut stmt = c.prepare_cached(
        "SELECT seq, statement, signature FROM access_log
         WHERE record_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
    )?;
    let rows = stmt.query_map(params![&record.as_bytes()[..], after, limit], |r| {
        Ok(StatementRow {
            seq: r.get(0)?,
            statement: r.get(1)?,
            signature: r.get(2)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

// ----- envelopes and snapshots -----

pub(super) fn append_envelopes(
    c: &Connection,
    record: &RecordId,
    section: &str,
    batch: &[NewEnvelope],
    by: Actor,
) -> Result<Vec<Appended>> {
    if !record_exists(c, record)? {
        return Err(StorageError::NotFound);
    }
    let rid = &record.as_bytes()[..];
    let mut lookup = c.prepare_cached(
        "SELECT seq, hash FROM envelopes
         WHERE record_id = ?1 AND section = ?2 AND author = ?3 AND author_seq = ?4",
    )?;
    let mut insert = c.prepare_cached(
        "INSERT INTO envelopes (record_id, section, author, author_seq, hash, bytes, origin)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) RETURNING seq",
    )?;
    let mut seen: HashMap<[u8; 32], Seq> = HashMap::new();
    let mut out = Vec::with_capacity(batch.len());
    let mut newest: Option<Seq> = None;
    for env in batch {
        if env.bytes.is_empty() {
            return Err(StorageError::Conflict("empty envelope"));
        }
        if let Some(&seq) = seen.get(&env.hash) {
            out.push(Appended {
                seq,
                duplicate: true,
            });
            continue;
        }
        let author = &env.author.as_bytes()[..];
        let author_seq = env.author_seq_db();
        let mut stored: Option<Seq> = None;
        let mut rows = lookup.query(params![rid, section, author, author_seq])?;
        while let Some(row) = rows.next()? {
            let hash: Vec<u8> = row.get(1)?;
            if hash.as_slice() == env.hash {
                stored = Some(row.get(0)?);
                break;
            }
        }
        drop(rows);
        let appended = match stored {
            Some(seq) => Appended {
                seq,
                duplicate: true,
            },
            None => {
                let seq: Seq = insert.query_row(
                    params![
                        rid,
                        section,
                        author,
                        author_seq,
                        &env.hash[..],
                        &env.bytes,
                        by.origin.as_deref()
                    ],
                    |r| r.get(0),
                )?;
                newest = Some(newest.map_or(seq, |n: Seq| n.max(seq)));
                Appended {
                    seq,
                    duplicate: false,
                }
            }
        };
        seen.insert(env.hash, appended.seq);
        out.push(appended);
    }
    if let Some(newest) = newest {
        c.prepare_cached(
            "INSERT INTO sections (record_id, section, max_seq) VALUES (?1, ?2, ?3)
             ON CONFLICT (record_id, section) DO UPDATE SET max_seq = max(max_seq, excluded.max_seq)",
        )?
        .execute(params![rid, section, newest])?;
    }
    for event in push_events(*record, section, by, batch, &out) {
        record_audit(c, &event)?;
    }
    Ok(out)
}

// ----- audit -----

pub(super) fn record_audit(c: &Connection, e: &AuditEvent) -> Result<Seq> {
    Ok(c.prepare_cached(
        "INSERT INTO audit (record_id, at_ms, identity, action, section, count)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6) RETURNING seq",
    )?
    .query_row(
        params![
            &e.record.as_bytes()[..],
            e.at_ms,
            &e.identity.as_bytes()[..],
            e.action.as_str(),
            &e.section,
            e.count
        ],
        |r| r.get(0),
    )?)
}

pub(super) fn record_forwarded_audit(
    c: &Connection,
    record: &RecordId,
    relay: &IdentityId,
    events: &[(Seq, AuditEvent)],
) -> Result<u64> {
    if !record_exists(c, record)? {
        return Err(StorageError::NotFound);
    }
    let mut stmt = c.prepare_cached(
        "INSERT INTO audit (record_id, at_ms, identity, action, section, count, relay, relay_seq)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
         ON CONFLICT (record_id, relay, relay_seq) WHERE relay IS NOT NULL DO NOTHING",
    )?;
    let mut stored = 0;
    for (relay_seq, e) in events {
        stored += stmt.execute(params![
            &record.as_bytes()[..],
            e.at_ms,
            &e.identity.as_bytes()[..],
            e.action.as_str(),
            &e.section,
            e.count,
            &relay.as_bytes()[..],
            relay_seq
        ])? as u64;
    }
    Ok(stored)
}

pub(super) fn audit(
    c: &Connection,
    record: &RecordId,
    after: Seq,
    limit: u32,
) -> Result<Vec<AuditEvent>> {
    let mut stmt = c.prepare_cached(
        "SELECT seq, at_ms, identity, action, section, count, relay FROM audit
         WHERE record_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
    )?;
    type Row = (Seq, i64, Vec<u8>, String, String, i64, Option<Vec<u8>>);
    let rows = stmt.query_map(params![&record.as_bytes()[..], after, limit], |r| {
        Ok::<Row, _>((
            r.get(0)?,
            r.get(1)?,
            r.get(2)?,
            r.get(3)?,
            r.get(4)?,
            r.get(5)?,
            r.get(6)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (seq, at_ms, who, action, section, count, relay) = row?;
        out.push(AuditEvent {
            seq,
            record: *record,
            at_ms,
            identity: identity(&who)?,
            action: AuditAction::parse(&action)
                .ok_or_else(|| StorageError::Backend("unknown audit action".into()))?,
            section,
            count,
            relay: relay.as_deref().map(identity).transpose()?,
        });
    }
    Ok(out)
}

pub(super) fn pull(
    c: &mut Connection,
    record: &RecordId,
    section: &str,
    after: Seq,
    limit: u32,
    whole: bool,
) -> Result<PullPage> {
    let tx = c.transaction()?;
    let rid = &record.as_bytes()[..];
    let snapshot: Option<Snapshot> = tx
        .prepare_cached(
            "SELECT upto_seq, bytes FROM snapshots WHERE record_id = ?1 AND section = ?2",
        )?
        .query_row(params![rid, section], |r| {
            Ok(Snapshot {
                upto_seq: r.get(0)?,
                bytes: r.get(1)?,
            })
        })
        .optional()?
        .filter(|s| s.upto_seq > after);
    let start = match &snapshot {
        Some(s) if !whole => s.upto_seq,
        _ => after,
    };
    let mut envelopes = {
        let mut stmt = tx.prepare_cached(
            "SELECT seq, bytes, origin FROM envelopes
             WHERE record_id = ?1 AND section = ?2 AND seq > ?3
             ORDER BY seq LIMIT ?4",
        )?;
        let rows = stmt.query_map(params![rid, section, start, i64::from(limit) + 1], |r| {
            Ok(StoredEnvelope {
                seq: r.get(0)?,
                bytes: r.get(1)?,
                origin: r.get(2)?,
            })
        })?;
        rows.collect::<rusqlite::Result<Vec<_>>>()?
    };
    tx.commit()?;
    let more = envelopes.len() > limit as usize;
    envelopes.truncate(limit as usize);
    Ok(PullPage {
        snapshot,
        envelopes,
        more,
    })
}

pub(super) fn feed(c: &Connection, record: &RecordId, after: Seq) -> Result<Vec<(String, Seq)>> {
    let mut stmt = c.prepare_cached(
        "SELECT section, max_seq FROM sections WHERE record_id = ?1 AND max_seq > ?2 ORDER BY section",
    )?;
    let rows = stmt.query_map(params![&record.as_bytes()[..], after], |r| {
        Ok((r.get(0)?, r.get(1)?))
    })?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

pub(super) fn put_snapshot(
    c: &Connection,
    record: &RecordId,
    section: &str,
    upto_seq: Seq,
    bytes: &[u8],
) -> Result<SnapshotOutcome> {
    if !record_exists(c, record)? {
        return Err(StorageError::NotFound);
    }
    let rid = &record.as_bytes()[..];
    let newest: Seq = c
        .prepare_cached("SELECT max_seq FROM sections WHERE record_id = ?1 AND section = ?2")?
        .query_row(params![rid, section], |r| r.get(0))
        .optional()?
        .unwrap_or(0);
    if upto_seq > newest {
        return Ok(SnapshotOutcome::BeyondLog { newest });
    }
    let current: Option<Seq> = c
        .prepare_cached("SELECT upto_seq FROM snapshots WHERE record_id = ?1 AND section = ?2")?
        .query_row(params![rid, section], |r| r.get(0))
        .optional()?;
    if let Some(current) = current {
        if current >= upto_seq {
            return Ok(SnapshotOutcome::NotNewer { current });
        }
    }
    c.prepare_cached(
        "INSERT INTO snapshots (record_id, section, upto_seq, bytes) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (record_id, section) DO UPDATE SET upto_seq = excluded.upto_seq,
         bytes = excluded.bytes",
    )?
    .execute(params![rid, section, upto_seq, bytes])?;
    Ok(SnapshotOutcome::Replaced)
}

// ----- links -----

pub(super) fn create_link(
    c: &Connection,
    link_id: &str,
    record: &RecordId,
    creator: &IdentityId,
    expires: i64,
    now: i64,
) -> Result<()> {
    c.prepare_cached("DELETE FROM links WHERE link_id = ?1 AND expires_at_ms <= ?2")?
        .execute(params![link_id, now])?;
    let inserted = c
        .prepare_cached(
            "INSERT INTO links (link_id, record_id, creator, expires_at_ms) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (link_id) DO NOTHING",
        )?
        .execute(params![
            link_id,
            &record.as_bytes()[..],
            &creator.as_bytes()[..],
            expires
        ])?;
    if inserted == 0 {
        return Err(StorageError::Conflict("link already exists"));
    }
    Ok(())
}

pub(super) fn join_link(
    c: &Connection,
    link_id: &str,
    joiner: &IdentityId,
    payload: &[u8],
    now: i64,
) -> Result<()> {
    let updated = c
        .prepare_cached(
            "UPDATE links SET joiner = ?2, join_payload = ?3
             WHERE link_id = ?1 AND expires_at_ms > ?4 AND join_payload IS NULL",
        )?
        .execute(params![link_id, &joiner.as_bytes()[..], payload, now])?;
    if updated == 1 {
        return Ok(());
    }
    match get_link(c, link_id, now)? {
        None => Err(StorageError::NotFound),
        Some(_) => Err(StorageError::Conflict("link already joined")),
    }
}

pub(super) fn accept_link(c: &Connection, link_id: &str, payload: &[u8], now: i64) -> Result<()> {
    let updated = c
        .prepare_cached(
            "UPDATE links SET accept_payload = ?2
             WHERE link_id = ?1 AND expires_at_ms > ?3 AND join_payload IS NOT NULL
             AND accept_payload IS NULL",
        )?
        .execute(params![link_id, payload, now])?;
    if updated == 1 {
        return Ok(());
    }
    match get_link(c, link_id, now)? {
        None => Err(StorageError::NotFound),
        Some(l) if l.join.is_none() => Err(StorageError::Conflict("link not joined yet")),
        Some(_) => Err(StorageError::Conflict("link already accepted")),
    }
}

pub(super) fn get_link(c: &Connection, link_id: &str, now: i64) -> Result<Option<Link>> {
    type Row = (
        Vec<u8>,
        Vec<u8>,
        Option<Vec<u8>>,
        Option<Vec<u8>>,
        Option<Vec<u8>>,
        i64,
    );
    let row: Option<Row> = c
        .prepare_cached(
            "SELECT record_id, creator, joiner, join_payload, accept_payload, expires_at_ms
             FROM links WHERE link_id = ?1 AND expires_at_ms > ?2",
        )?
        .query_row(params![link_id, now], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
            ))
        })
        .optional()?;
    let Some((rid, creator, joiner, join, accept, expires_at_ms)) = row else {
        return Ok(None);
    };
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

pub(super) fn purge_expired(c: &Connection, now: i64) -> Result<u64> {
    let mut n = 0usize;
    n += c.execute("DELETE FROM links WHERE expires_at_ms <= ?1", params![now])?;
    n += c.execute("DELETE FROM tokens WHERE expires_at_ms <= ?1", params![now])?;
    n += c.execute(
        "DELETE FROM challenges WHERE expires_at_ms <= ?1",
        params![now],
    )?;
    n += c.execute(
        "DELETE FROM session_revocations WHERE expires_at_ms <= ?1",
        params![now],
    )?;
    n += c.execute(
        "DELETE FROM share_link_locations WHERE expires_at_ms <= ?1",
        params![now],
    )?;
    n += c.execute(crate::storage::share_links::PURGE_DEAD_FILES, params![now])?;
    Ok(u64::try_from(n).unwrap_or(u64::MAX))
}
