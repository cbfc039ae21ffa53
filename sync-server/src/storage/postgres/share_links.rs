//! [`ShareLinkStorage`] on PostgreSQL. The counters change by single
//! conditional `UPDATE ... RETURNING` statements (row-locked by the
//! server), so concurrent instances cannot overrun them.

use async_trait::async_trait;
use satchel_protocol::ids::{IdentityId, RecordId, ShareLinkHandle};
use tokio_postgres::Row;

use super::PostgresStorage;
use crate::storage::share_links::{
    count_from_db, handle_from_db, open_kind_from_db, open_kind_to_db, NewShareLink, ShareFile,
    ShareLinkRow, ShareLinkStorage, ShareOpen,
};
use crate::storage::{Result, StorageError};

const LINK_COLUMNS: &str = "handle, record_id, created_by, created_at_ms, updated_at_ms, \
     expires_at_ms, revoked_at_ms, passcode_hash, attempts_left, opens_left, direct";

/// "The link answers at $2".
const LIVE: &str = "revoked_at_ms IS NULL AND (expires_at_ms IS NULL OR expires_at_ms > $2) \
     AND (opens_left IS NULL OR opens_left > 0) AND (attempts_left IS NULL OR attempts_left > 0)";

fn link_row(r: &Row) -> Result<ShareLinkRow> {
    let handle: Vec<u8> = r.try_get(0)?;
    let record: Vec<u8> = r.try_get(1)?;
    let created_by: Vec<u8> = r.try_get(2)?;
    Ok(ShareLinkRow {
        handle: handle_from_db(&handle)?,
        record: RecordId::from_slice(&record)
            .map_err(|_| StorageError::Backend("corrupt record id".into()))?,
        created_by: IdentityId::from_slice(&created_by)
            .map_err(|_| StorageError::Backend("corrupt identity id".into()))?,
        created_at_ms: r.try_get(3)?,
        updated_at_ms: r.try_get(4)?,
        expires_at_ms: r.try_get(5)?,
        revoked_at_ms: r.try_get(6)?,
        passcode_hash: r.try_get(7)?,
        attempts_left: count_from_db(r.try_get(8)?)?,
        opens_left: count_from_db(r.try_get(9)?)?,
        direct: r.try_get(10)?,
    })
}

async fn insert_files(
    c: &impl deadpool_postgres::GenericClient,
    handle: &ShareLinkHandle,
    files: &[ShareFile],
) -> Result<()> {
    let h = &handle.as_bytes()[..];
    for (i, f) in files.iter().enumerate() {
        let idx = i64::try_from(i).unwrap_or(i64::MAX);
        c.execute(
            "INSERT INTO share_link_files (handle, idx, content_type, jwe) VALUES ($1, $2, $3, $4)",
            &[&h, &idx, &f.content_type, &f.jwe],
        )
        .await?;
    }
    Ok(())
}

async fn insert_open(
    c: &impl deadpool_postgres::GenericClient,
    handle: &ShareLinkHandle,
    open: &ShareOpen,
) -> Result<()> {
    c.execute(
        "INSERT INTO share_link_opens (handle, at_ms, recipient, kind) VALUES ($1, $2, $3, $4)",
        &[
            &&handle.as_bytes()[..],
            &open.at_ms,
            &open.recipient,
            &open_kind_to_db(open.kind),
        ],
    )
    .await?;
    Ok(())
}

#[async_trait]
impl ShareLinkStorage for PostgresStorage {
    async fn create_share_link(&self, link: NewShareLink, now_ms: i64) -> Result<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let rid = &link.record.as_bytes()[..];
        if tx
            .query_opt("SELECT 1 FROM records WHERE record_id = $1", &[&rid])
            .await?
            .is_none()
        {
            return Err(StorageError::NotFound);
        }
        let inserted = tx
            .execute(
                "INSERT INTO share_links (handle, record_id, created_by, created_at_ms,
                 updated_at_ms, expires_at_ms, passcode_hash, attempts_left, opens_left, direct)
                 VALUES ($1, $2, $3, $4, $4, $5, $6, $7, $8, $9)
                 ON CONFLICT (handle) DO NOTHING",
                &[
                    &&link.handle.as_bytes()[..],
                    &rid,
                    &&link.created_by.as_bytes()[..],
                    &now_ms,
                    &link.expires_at_ms,
                    &link.passcode_hash,
                    &link.attempts.map(i64::from),
                    &link.max_opens.map(i64::from),
                    &link.direct,
                ],
            )
            .await?;
        if inserted == 0 {
            return Err(StorageError::Conflict("share link handle in use"));
        }
        insert_files(&tx, &link.handle, &link.files).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn share_link(
        &self,
        record: RecordId,
        handle: ShareLinkHandle,
    ) -> Result<Option<ShareLinkRow>> {
        Ok(self
            .share_link_by_handle(handle)
            .await?
            .filter(|l| l.record == record))
    }

    async fn share_link_by_handle(&self, handle: ShareLinkHandle) -> Result<Option<ShareLinkRow>> {
        let client = self.client().await?;
        client
            .query_opt(
                &format!("SELECT {LINK_COLUMNS} FROM share_links WHERE handle = $1"),
                &[&&handle.as_bytes()[..]],
            )
            .await?
            .as_ref()
            .map(link_row)
            .transpose()
    }

    async fn replace_share_link_files(
        &self,
        record: RecordId,
        handle: ShareLinkHandle,
        files: Vec<ShareFile>,
        now_ms: i64,
    ) -> Result<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let h = &handle.as_bytes()[..];
        let updated = tx
            .execute(
                &format!(
                    "UPDATE share_links SET updated_at_ms = $2
                     WHERE handle = $1 AND record_id = $3 AND {LIVE}"
                ),
                &[&h, &now_ms, &&record.as_bytes()[..]],
            )
            .await?;
        if updated == 0 {
            return Err(StorageError::NotFound);
        }
        tx.execute("DELETE FROM share_link_files WHERE handle = $1", &[&h])
            .await?;
        tx.execute("DELETE FROM share_link_locations WHERE handle = $1", &[&h])
            .await?;
        insert_files(&tx, &handle, &files).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn revoke_share_link(
        &self,
        record: RecordId,
        handle: ShareLinkHandle,
        now_ms: i64,
    ) -> Result<i64> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let h = &handle.as_bytes()[..];
        let row = tx
            .query_opt(
                "UPDATE share_links SET revoked_at_ms = COALESCE(revoked_at_ms, $2)
                 WHERE handle = $1 AND record_id = $3 RETURNING revoked_at_ms",
                &[&h, &now_ms, &&record.as_bytes()[..]],
            )
            .await?
            .ok_or(StorageError::NotFound)?;
        let at: i64 = row.try_get(0)?;
        tx.execute("DELETE FROM share_link_files WHERE handle = $1", &[&h])
            .await?;
        tx.execute("DELETE FROM share_link_locations WHERE handle = $1", &[&h])
            .await?;
        tx.commit().await?;
        Ok(at)
    }

    async fn list_share_links(
        &self,
        record: RecordId,
    ) -> Result<Vec<(ShareLinkRow, Vec<ShareOpen>)>> {
        let mut client = self.client().await?;
        let tx = client
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await?;
        let rid = &record.as_bytes()[..];
        let links = tx
            .query(
                &format!(
                    "SELECT {LINK_COLUMNS} FROM share_links WHERE record_id = $1
                     ORDER BY created_at_ms, handle"
                ),
                &[&rid],
            )
            .await?;
        let opens = tx
            .query(
                "SELECT o.handle, o.at_ms, o.recipient, o.kind FROM share_link_opens o
                 JOIN share_links s ON s.handle = o.handle
                 WHERE s.record_id = $1 ORDER BY o.seq",
                &[&rid],
            )
            .await?;
        tx.commit().await?;
        let mut out = links
            .iter()
            .map(|r| link_row(r).map(|l| (l, Vec::new())))
            .collect::<Result<Vec<_>>>()?;
        for r in &opens {
            let handle: Vec<u8> = r.try_get(0)?;
            let kind: String = r.try_get(3)?;
            let open = ShareOpen {
                at_ms: r.try_get(1)?,
                recipient: r.try_get(2)?,
                kind: open_kind_from_db(&kind)?,
            };
            if let Some((_, list)) = out
                .iter_mut()
                .find(|(l, _)| l.handle.as_bytes()[..] == handle[..])
            {
                list.push(open);
            }
        }
        Ok(out)
    }

    async fn reserve_share_link_attempt(
        &self,
        handle: ShareLinkHandle,
        now_ms: i64,
    ) -> Result<Option<u32>> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                &format!(
                    "UPDATE share_links SET attempts_left = attempts_left - 1
                     WHERE handle = $1 AND passcode_hash IS NOT NULL AND {LIVE}
                     RETURNING attempts_left"
                ),
                &[&&handle.as_bytes()[..], &now_ms],
            )
            .await?;
        match row {
            Some(r) => count_from_db(r.try_get(0)?),
            None => Ok(None),
        }
    }

    async fn release_share_link_attempt(&self, handle: ShareLinkHandle) -> Result<()> {
        self.client()
            .await?
            .execute(
                "UPDATE share_links SET attempts_left = attempts_left + 1
                 WHERE handle = $1 AND attempts_left IS NOT NULL",
                &[&&handle.as_bytes()[..]],
            )
            .await?;
        Ok(())
    }

    async fn record_share_link_open(&self, handle: ShareLinkHandle, open: ShareOpen) -> Result<()> {
        let client = self.client().await?;
        insert_open(&client, &handle, &open).await
    }

    async fn open_share_link(
        &self,
        handle: ShareLinkHandle,
        open: ShareOpen,
    ) -> Result<Option<Vec<ShareFile>>> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        let h = &handle.as_bytes()[..];
        let updated = tx
            .execute(
                &format!(
                    "UPDATE share_links SET opens_left = opens_left - 1
                     WHERE handle = $1 AND {LIVE}"
                ),
                &[&h, &open.at_ms],
            )
            .await?;
        if updated == 0 {
            return Ok(None);
        }
        insert_open(&tx, &handle, &open).await?;
        let files = tx
            .query(
                "SELECT content_type, jwe FROM share_link_files WHERE handle = $1 ORDER BY idx",
                &[&h],
            )
            .await?
            .iter()
            .map(|r| {
                Ok(ShareFile {
                    content_type: r.try_get(0)?,
                    jwe: r.try_get(1)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        tx.commit().await?;
        Ok(Some(files))
    }

    async fn add_share_link_locations(
        &self,
        handle: ShareLinkHandle,
        tokens: Vec<([u8; 32], u32)>,
        expires_at_ms: i64,
    ) -> Result<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await?;
        for (hash, idx) in &tokens {
            tx.execute(
                "INSERT INTO share_link_locations (token_hash, handle, idx, expires_at_ms)
                 VALUES ($1, $2, $3, $4)",
                &[
                    &&hash[..],
                    &&handle.as_bytes()[..],
                    &i64::from(*idx),
                    &expires_at_ms,
                ],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn share_link_location(
        &self,
        handle: ShareLinkHandle,
        token_hash: [u8; 32],
        now_ms: i64,
    ) -> Result<Option<ShareFile>> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                "SELECT f.content_type, f.jwe FROM share_link_locations l
                 JOIN share_links s ON s.handle = l.handle
                 JOIN share_link_files f ON f.handle = l.handle AND f.idx = l.idx
                 WHERE l.token_hash = $1 AND l.handle = $2 AND l.expires_at_ms > $3
                   AND s.revoked_at_ms IS NULL
                   AND (s.expires_at_ms IS NULL OR s.expires_at_ms > $3)",
                &[&&token_hash[..], &&handle.as_bytes()[..], &now_ms],
            )
            .await?;
        row.map(|r| {
            Ok(ShareFile {
                content_type: r.try_get(0)?,
                jwe: r.try_get(1)?,
            })
        })
        .transpose()
    }
}
