//! [`ShareLinkStorage`] on SQLite. Every write runs on the one writer
//! thread (so the conditional counter updates are serialised); reads on the
//! read pool.

use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension};
use satchel_protocol::ids::{RecordId, ShareLinkHandle};

use super::SqliteStorage;
use crate::storage::share_links::{
    count_from_db, handle_from_db, open_kind_from_db, open_kind_to_db, NewShareLink, ShareFile,
    ShareLinkRow, ShareLinkStorage, ShareOpen,
};
use crate::storage::{Result, StorageError};

const LINK_COLUMNS: &str = "handle, record_id, created_by, created_at_ms, updated_at_ms, \
     expires_at_ms, revoked_at_ms, passcode_hash, attempts_left, opens_left, direct";

fn link_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawLink> {
    Ok(RawLink {
        handle: r.get(0)?,
        record: r.get(1)?,
        created_by: r.get(2)?,
        created_at_ms: r.get(3)?,
        updated_at_ms: r.get(4)?,
        expires_at_ms: r.get(5)?,
        revoked_at_ms: r.get(6)?,
        passcode_hash: r.get(7)?,
        attempts_left: r.get(8)?,
        opens_left: r.get(9)?,
        direct: r.get(10)?,
    })
}

struct RawLink {
    handle: Vec<u8>,
    record: Vec<u8>,
    created_by: Vec<u8>,
    created_at_ms: i64,
    updated_at_ms: i64,
    expires_at_ms: Option<i64>,
    revoked_at_ms: Option<i64>,
    passcode_hash: Option<String>,
    attempts_left: Option<i64>,
    opens_left: Option<i64>,
    direct: bool,
}

impl RawLink {
    fn parse(self) -> Result<ShareLinkRow> {
        Ok(ShareLinkRow {
            handle: handle_from_db(&self.handle)?,
            record: RecordId::from_slice(&self.record)
                .map_err(|_| StorageError::Backend("corrupt record id".into()))?,
            created_by: satchel_protocol::ids::IdentityId::from_slice(&self.created_by)
                .map_err(|_| StorageError::Backend("corrupt identity id".into()))?,
            created_at_ms: self.created_at_ms,
            updated_at_ms: self.updated_at_ms,
            expires_at_ms: self.expires_at_ms,
            revoked_at_ms: self.revoked_at_ms,
            passcode_hash: self.passcode_hash,
            attempts_left: count_from_db(self.attempts_left)?,
            opens_left: count_from_db(self.opens_left)?,
            direct: self.direct,
        })
    }
}

fn get_link(
    c: &Connection,
    record: Option<&RecordId>,
    handle: &ShareLinkHandle,
) -> Result<Option<ShareLinkRow>> {
    let raw = c
        .prepare_cached(&format!(
            "SELECT {LINK_COLUMNS} FROM share_links WHERE handle = ?1"
        ))?
        .query_row(params![&handle.as_bytes()[..]], link_row)
        .optional()?;
    let row = raw.map(RawLink::parse).transpose()?;
    Ok(row.filter(|l| record.is_none_or(|r| l.record == *r)))
}

fn insert_files(c: &Connection, handle: &ShareLinkHandle, files: &[ShareFile]) -> Result<()> {
    let mut stmt = c.prepare_cached(
        "INSERT INTO share_link_files (handle, idx, content_type, jwe) VALUES (?1, ?2, ?3, ?4)",
    )?;
    for (i, f) in files.iter().enumerate() {
        let idx = i64::try_from(i).unwrap_or(i64::MAX);
        stmt.execute(params![&handle.as_bytes()[..], idx, f.content_type, f.jwe])?;
    }
    Ok(())
}

fn files_of(c: &Connection, handle: &ShareLinkHandle) -> Result<Vec<ShareFile>> {
    let mut stmt = c.prepare_cached(
        "SELECT content_type, jwe FROM share_link_files WHERE handle = ?1 ORDER BY idx",
    )?;
    let rows = stmt.query_map(params![&handle.as_bytes()[..]], |r| {
        Ok(ShareFile {
            content_type: r.get(0)?,
            jwe: r.get(1)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

fn insert_open(c: &Connection, handle: &ShareLinkHandle, open: &ShareOpen) -> Result<()> {
    c.prepare_cached(
        "INSERT INTO share_link_opens (handle, at_ms, recipient, kind) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![
        &handle.as_bytes()[..],
        open.at_ms,
        open.recipient,
        open_kind_to_db(open.kind)
    ])?;
    Ok(())
}

/// The SQL condition "the link answers at ?now" (used with `?2` = now).
const LIVE: &str = "revoked_at_ms IS NULL AND (expires_at_ms IS NULL OR expires_at_ms > ?2) \
     AND (opens_left IS NULL OR opens_left > 0) AND (attempts_left IS NULL OR attempts_left > 0)";

#[async_trait]
impl ShareLinkStorage for SqliteStorage {
    async fn create_share_link(&self, link: NewShareLink, now_ms: i64) -> Result<()> {
        self.writer
            .run(move |c| {
                let exists: Option<i64> = c
                    .prepare_cached("SELECT 1 FROM records WHERE record_id = ?1")?
                    .query_row(params![&link.record.as_bytes()[..]], |r| r.get(0))
                    .optional()?;
                if exists.is_none() {
                    return Err(StorageError::NotFound);
                }
                let inserted = c
                    .prepare_cached(
                        "INSERT INTO share_links (handle, record_id, created_by, created_at_ms,
                         updated_at_ms, expires_at_ms, passcode_hash, attempts_left, opens_left,
                         direct) VALUES (?1, ?2, ?3, ?4, ?4, ?5, ?6, ?7, ?8, ?9)
                         ON CONFLICT (handle) DO NOTHING",
                    )?
                    .execute(params![
                        &link.handle.as_bytes()[..],
                        &link.record.as_bytes()[..],
                        &link.created_by.as_bytes()[..],
                        now_ms,
                        link.expires_at_ms,
                        link.passcode_hash,
                        link.attempts.map(i64::from),
                        link.max_opens.map(i64::from),
                        link.direct,
                    ])?;
                if inserted == 0 {
                    return Err(StorageError::Conflict("share link handle in use"));
                }
                insert_files(c, &link.handle, &link.files)
            })
            .await
    }

    async fn share_link(
        &self,
        record: RecordId,
        handle: ShareLinkHandle,
    ) -> Result<Option<ShareLinkRow>> {
        self.read(move |c| get_link(c, Some(&record), &handle))
            .await
    }

    async fn share_link_by_handle(&self, handle: ShareLinkHandle) -> Result<Option<ShareLinkRow>> {
        self.read(move |c| get_link(c, None, &handle)).await
    }

    async fn replace_share_link_files(
        &self,
        record: RecordId,
        handle: ShareLinkHandle,
        files: Vec<ShareFile>,
        now_ms: i64,
    ) -> Result<()> {
        self.writer
            .run(move |c| {
                let updated = c
                    .prepare_cached(&format!(
                        "UPDATE share_links SET updated_at_ms = ?2
                         WHERE handle = ?1 AND record_id = ?3 AND {LIVE}"
                    ))?
                    .execute(params![
                        &handle.as_bytes()[..],
                        now_ms,
                        &record.as_bytes()[..]
                    ])?;
                if updated == 0 {
                    return Err(StorageError::NotFound);
                }
                let h = &handle.as_bytes()[..];
                c.prepare_cached("DELETE FROM share_link_files WHERE handle = ?1")?
                    .execute(params![h])?;
                c.prepare_cached("DELETE FROM share_link_locations WHERE handle = ?1")?
                    .execute(params![h])?;
                insert_files(c, &handle, &files)
            })
            .await
    }

    async fn revoke_share_link(
        &self,
        record: RecordId,
        handle: ShareLinkHandle,
        now_ms: i64,
    ) -> Result<i64> {
        self.writer
            .run(move |c| {
                let h = &handle.as_bytes()[..];
                let at: Option<i64> = c
                    .prepare_cached(
                        "UPDATE share_links SET revoked_at_ms = COALESCE(revoked_at_ms, ?2)
                         WHERE handle = ?1 AND record_id = ?3 RETURNING revoked_at_ms",
                    )?
                    .query_row(params![h, now_ms, &record.as_bytes()[..]], |r| r.get(0))
                    .optional()?;
                let at = at.ok_or(StorageError::NotFound)?;
                c.prepare_cached("DELETE FROM share_link_files WHERE handle = ?1")?
                    .execute(params![h])?;
                c.prepare_cached("DELETE FROM share_link_locations WHERE handle = ?1")?
                    .execute(params![h])?;
                Ok(at)
            })
            .await
    }

    async fn list_share_links(
        &self,
        record: RecordId,
    ) -> Result<Vec<(ShareLinkRow, Vec<ShareOpen>)>> {
        self.read(move |c| {
            let raws = c
                .prepare_cached(&format!(
                    "SELECT {LINK_COLUMNS} FROM share_links WHERE record_id = ?1
                     ORDER BY created_at_ms, handle"
                ))?
                .query_map(params![&record.as_bytes()[..]], link_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let mut out = Vec::with_capacity(raws.len());
            let mut opens = c.prepare_cached(
                "SELECT at_ms, recipient, kind FROM share_link_opens WHERE handle = ?1
                 ORDER BY seq",
            )?;
            for raw in raws {
                let link = raw.parse()?;
                let rows = opens
                    .query_map(params![&link.handle.as_bytes()[..]], |r| {
                        Ok((
                            r.get::<_, i64>(0)?,
                            r.get::<_, String>(1)?,
                            r.get::<_, String>(2)?,
                        ))
                    })?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                let list = rows
                    .into_iter()
                    .map(|(at_ms, recipient, kind)| {
                        Ok(ShareOpen {
                            at_ms,
                            recipient,
                            kind: open_kind_from_db(&kind)?,
                        })
                    })
                    .collect::<Result<Vec<_>>>()?;
                out.push((link, list));
            }
            Ok(out)
        })
        .await
    }

    async fn reserve_share_link_attempt(
        &self,
        handle: ShareLinkHandle,
        now_ms: i64,
    ) -> Result<Option<u32>> {
        self.writer
            .run(move |c| {
                let left: Option<i64> = c
                    .prepare_cached(&format!(
                        "UPDATE share_links SET attempts_left = attempts_left - 1
                         WHERE handle = ?1 AND passcode_hash IS NOT NULL AND {LIVE}
                         RETURNING attempts_left"
                    ))?
                    .query_row(params![&handle.as_bytes()[..], now_ms], |r| r.get(0))
                    .optional()?;
                count_from_db(left)
            })
            .await
    }

    async fn release_share_link_attempt(&self, handle: ShareLinkHandle) -> Result<()> {
        self.writer
            .run(move |c| {
                c.prepare_cached(
                    "UPDATE share_links SET attempts_left = attempts_left + 1
                     WHERE handle = ?1 AND attempts_left IS NOT NULL",
                )?
                .execute(params![&handle.as_bytes()[..]])?;
                Ok(())
            })
            .await
    }

    async fn record_share_link_open(&self, handle: ShareLinkHandle, open: ShareOpen) -> Result<()> {
        self.writer
            .run(move |c| insert_open(c, &handle, &open))
            .await
    }

    async fn open_share_link(
        &self,
        handle: ShareLinkHandle,
        open: ShareOpen,
    ) -> Result<Option<Vec<ShareFile>>> {
        self.writer
            .run(move |c| {
                let updated = c
                    .prepare_cached(&format!(
                        "UPDATE share_links SET opens_left = opens_left - 1
                         WHERE handle = ?1 AND {LIVE}"
                    ))?
                    .execute(params![&handle.as_bytes()[..], open.at_ms])?;
                if updated == 0 {
                    return Ok(None);
                }
                insert_open(c, &handle, &open)?;
                files_of(c, &handle).map(Some)
            })
            .await
    }

    async fn add_share_link_locations(
        &self,
        handle: ShareLinkHandle,
        tokens: Vec<([u8; 32], u32)>,
        expires_at_ms: i64,
    ) -> Result<()> {
        self.writer
            .run(move |c| {
                let mut stmt = c.prepare_cached(
                    "INSERT INTO share_link_locations (token_hash, handle, idx, expires_at_ms)
                     VALUES (?1, ?2, ?3, ?4)",
                )?;
                for (hash, idx) in &tokens {
                    stmt.execute(params![
                        &hash[..],
                        &handle.as_bytes()[..],
                        i64::from(*idx),
                        expires_at_ms
                    ])?;
                }
                Ok(())
            })
            .await
    }

    async fn share_link_location(
        &self,
        handle: ShareLinkHandle,
        token_hash: [u8; 32],
        now_ms: i64,
    ) -> Result<Option<ShareFile>> {
        self.read(move |c| {
            Ok(c.prepare_cached(
                "SELECT f.content_type, f.jwe FROM share_link_locations l
                 JOIN share_links s ON s.handle = l.handle
                 JOIN share_link_files f ON f.handle = l.handle AND f.idx = l.idx
                 WHERE l.token_hash = ?1 AND l.handle = ?2 AND l.expires_at_ms > ?3
                   AND s.revoked_at_ms IS NULL
                   AND (s.expires_at_ms IS NULL OR s.expires_at_ms > ?3)",
            )?
            .query_row(
                params![&token_hash[..], &handle.as_bytes()[..], now_ms],
                |r| {
                    Ok(ShareFile {
                        content_type: r.get(0)?,
                        jwe: r.get(1)?,
                    })
                },
            )
            .optional()?)
        })
        .await
    }
}
