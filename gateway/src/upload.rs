//! Background uploads: records written through the gateway are synced
//! with the relay by one task, through each record's outbox (durable in
//! the record's store: a write answered 2xx is committed there before the
//! answer, and a crash before the upload only delays it: on start every
//! record is synced once). A failing relay is retried with backoff; a
//! periodic pass also brings what patients and others wrote (the reads).

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use satchel_core::ids::RecordId;
use satchel_core::sync::{RelayClient, RelayTrust, RelayUrl};
use serde::Serialize;
use tokio::sync::Notify;

use crate::records::RecordPool;

/// Records unused this long are closed.
const IDLE_CLOSE: Duration = Duration::from_secs(120);

/// The last sync of one record.
#[derive(Debug, Clone, Serialize)]
pub struct LastUpload {
    pub at_ms: i64,
    pub ok: bool,
    pub uploaded: usize,
    pub pulled: usize,
}

#[derive(Default)]
struct State {
    dirty: BTreeSet<RecordId>,
    last: HashMap<RecordId, LastUpload>,
    failures: u32,
    uploaded_total: u64,
}

/// The upload queue and its worker.
pub struct Uploader {
    relay: RelayUrl,
    trust: RelayTrust,
    pool: Arc<RecordPool>,
    state: Mutex<State>,
    wake: Notify,
    /// How often every record is synced even when nothing was written.
    refresh: Duration,
}

/// What `GET /$status` shows.
#[derive(Debug, Serialize)]
pub struct UploadStatus {
    pub relay: String,
    pub queue_depth: usize,
    pub consecutive_failures: u32,
    pub uploaded_total: u64,
    pub open_records: usize,
    pub records: usize,
    pub last_upload: std::collections::BTreeMap<String, LastUpload>,
}

impl Uploader {
    pub fn new(
        relay: RelayUrl,
        trust: RelayTrust,
        pool: Arc<RecordPool>,
        refresh: Duration,
    ) -> Self {
        Self {
            relay,
            trust,
            pool,
            state: Mutex::new(State::default()),
            wake: Notify::new(),
            refresh,
        }
    }

    /// Queue `rid` for upload.
    pub fn mark(&self, rid: RecordId) {
        if let Ok(mut s) = self.state.lock() {
            s.dirty.insert(rid);
        }
        self.wake.notify_one();
    }

    pub fn status(&self) -> UploadStatus {
        let (queue_depth, consecutive_failures, uploaded_total, last_upload) =
            match self.state.lock() {
                Ok(s) => (
                    s.dirty.len(),
                    s.failures,
                    s.uploaded_total,
                    s.last
                        .iter()
                        .map(|(k, v)| (k.to_hex(), v.clone()))
                        .collect(),
                ),
                Err(_) => (0, 0, 0, Default::default()),
            };
        UploadStatus {
            relay: self.relay.as_str().to_owned(),
            queue_depth,
            consecutive_failures,
            uploaded_total,
            open_records: self.pool.open_count(),
            records: self.pool.records().map(|r| r.len()).unwrap_or(0),
            last_upload,
        }
    }

    fn take_dirty(&self) -> Vec<RecordId> {
        self.state
            .lock()
            .map(|mut s| std::mem::take(&mut s.dirty).into_iter().collect())
            .unwrap_or_default()
    }

    /// The worker: runs until the task is dropped.
    pub async fn run(self: Arc<Self>) {
        // Everything queued before a restart goes out first.
        for rid in self.pool.records().unwrap_or_default() {
            self.mark(rid);
        }
        let mut clients: HashMap<RecordId, RelayClient> = HashMap::new();
        let mut last_refresh = tokio::time::Instant::now();
        loop {
            // Records no request or upload used for a while are closed:
            // memory stays bounded however many patients share.
            self.pool.close_idle(IDLE_CLOSE);
            if last_refresh.elapsed() >= self.refresh {
                last_refresh = tokio::time::Instant::now();
                for rid in self.pool.records().unwrap_or_default() {
                    self.mark(rid);
                }
            }
            let due = self.take_dirty();
            if due.is_empty() {
                let wait = self.refresh.min(IDLE_CLOSE);
                let _ = tokio::time::timeout(wait, self.wake.notified()).await;
                continue;
            }
            let mut failed = false;
            for rid in due {
                let ok = self.sync_one(rid, &mut clients).await;
                if !ok {
                    failed = true;
                    if let Ok(mut s) = self.state.lock() {
                        s.dirty.insert(rid);
                    }
                }
            }
            let failures = self
                .state
                .lock()
                .map(|mut s| {
                    s.failures = if failed {
                        s.failures.saturating_add(1)
                    } else {
                        0
                    };
                    s.failures
                })
                .unwrap_or(0);
            if failures > 0 {
                // 250 ms, doubling, at most 30 s.
                let backoff =
                    Duration::from_millis(250u64 << failures.min(7)).min(Duration::from_secs(30));
                tracing::warn!(
                    failures,
                    backoff_ms = backoff.as_millis() as u64,
                    "relay sync failing; backing off"
                );
                tokio::time::sleep(backoff).await;
            }
        }
    }

    async fn sync_one(&self, rid: RecordId, clients: &mut HashMap<RecordId, RelayClient>) -> bool {
        let pool = self.pool.clone();
        let record = match tokio::task::spawn_blocking(move || pool.get(rid)).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                tracing::error!(record = %rid, error = %e, "cannot open a record to upload it");
                return false;
            }
            Err(_) => return false,
        };
        let client = match clients.entry(rid) {
            std::collections::hash_map::Entry::Occupied(c) => c.into_mut(),
            std::collections::hash_map::Entry::Vacant(v) => {
                match RelayClient::connect(&self.relay, &self.trust) {
                    Ok(c) => v.insert(c.with_max_attempts(2)),
                    Err(e) => {
                        tracing::error!(error = %e, "cannot set up the relay client");
                        return false;
                    }
                }
            }
        };
        let mut profile = record.lock().await;
        let result = client.sync(&mut profile).await;
        // Reads answered from this copy, for the patient's audit trail.
        let views = match &result {
            Ok(_) => satchel_core::sync::views::report_views(client, &mut profile)
                .await
                .map_err(|e| {
                    tracing::warn!(record = %rid, error = %e, "reporting views to the relay failed; they stay queued");
                })
                .is_ok(),
            Err(_) => false,
        };
        drop(profile);
        let at_ms = crate::auth::now_ms();
        let (ok, uploaded, pulled) = match &result {
            Ok(r) => (views, r.uploaded, r.pulled),
            Err(e) => {
                tracing::warn!(record = %rid, error = %e, "sync with the relay failed; it stays queued");
                (false, 0, 0)
            }
        };
        if let Ok(mut s) = self.state.lock() {
            s.uploaded_total += uploaded as u64;
            s.last.insert(
                rid,
                LastUpload {
                    at_ms,
                    ok,
                    uploaded,
                    pulled,
                },
            );
        }
        ok
    }
}
