//! The Satchel relay: a blind sync server. It stores signed, encrypted
//! envelopes and can decrypt none of them.
//!
//! This first cut serves the versioned health endpoint over an embedded
//! SQLite database; the envelope log, authentication and push notifications
//! arrive with the relay-sync issue (see docs/ARCHITECTURE.md).

use std::path::Path;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

/// Server storage errors. They never carry stored values.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("database: {0}")]
    Db(#[from] rusqlite::Error),
}

/// Shared state of one server instance.
#[derive(Clone)]
pub struct AppState {
    db: Arc<Mutex<rusqlite::Connection>>,
}

impl AppState {
    /// Open (creating if missing) the server database in WAL mode.
    pub fn open_sqlite(path: &Path) -> Result<Self, ServerError> {
        let conn = rusqlite::Connection::open(path)?;
        conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get::<_, String>(0))?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS server_info (key TEXT PRIMARY KEY, value TEXT NOT NULL);",
        )?;
        Ok(Self {
            db: Arc::new(Mutex::new(conn)),
        })
    }

    fn database_ok(&self) -> bool {
        self.db
            .lock()
            .ok()
            .and_then(|c| c.query_row("SELECT 1", [], |r| r.get::<_, i64>(0)).ok())
            == Some(1)
    }
}

#[derive(Debug, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Health {
    pub status: String,
    pub version: String,
    pub storage: String,
}

async fn health(State(state): State<AppState>) -> Json<Health> {
    let ok = state.database_ok();
    Json(Health {
        status: if ok { "ok" } else { "degraded" }.to_string(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        storage: "sqlite".to_string(),
    })
}

/// The HTTP API.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/v1/health", get(health))
        .with_state(state)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn health_reports_ok_over_http() {
        let dir = std::env::temp_dir().join(format!("satchel-sync-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let state = AppState::open_sqlite(&dir.join("server.db")).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router(state)).await.unwrap() });
        let health: Health = reqwest::get(format!("http://{addr}/v1/health"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(health.status, "ok");
        assert_eq!(health.storage, "sqlite");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
