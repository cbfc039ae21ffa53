//! Numbered schema migrations for [`super::SqliteStore`]. Each file in
//! `migrations/` is applied once, in order, inside a transaction, and the
//! database's `user_version` records the last one applied.

use rusqlite::Connection;

use super::{Result, StoreError};

/// `(version, sql)` for every migration, in order. Versions start at 1 and
/// have no gaps.
pub const MIGRATIONS: &[(u32, &str)] = &[
    (1, include_str!("migrations/0001_init.sql")),
    (2, include_str!("migrations/0002_snapshots.sql")),
    (3, include_str!("migrations/0003_sync.sql")),
    (4, include_str!("migrations/0004_relay_acks.sql")),
];

/// The schema version a fully migrated database has.
pub const LATEST_VERSION: u32 = MIGRATIONS.len() as u32;

pub(crate) fn current_version(conn: &Connection) -> Result<u32> {
    Ok(conn.query_row("PRAGMA user_version", [], |r| r.get::<_, u32>(0))?)
}

/// Bring the database up to `target` (at most [`LATEST_VERSION`]). Does not
/// write anything when the database is already there.
pub(crate) fn migrate_to(conn: &mut Connection, target: u32) -> Result<()> {
    let found = current_version(conn)?;
    if found > LATEST_VERSION {
        return Err(StoreError::TooNew {
            found,
            supported: LATEST_VERSION,
        });
    }
    for (version, sql) in MIGRATIONS
        .iter()
        .filter(|(v, _)| *v > found && *v <= target)
    {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", version)?;
        tx.commit()?;
    }
    Ok(())
}
