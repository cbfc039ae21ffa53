//! Background uploads: records written through the gateway are synced
//! with the relay through each record's outbox (durable in the record's
//! store: a write answered 2xx is committed there before the answer, and a
//! crash before the upload only delays it: on start every record is synced
//! once). Up to [`CONCURRENT_SYNCS`] records sync at once over one
//! connection pool, each record by one round at a time (holding the
//! record for the round: a transaction for it waits). A failing relay
//! is retried with backoff; a periodic pass also brings what patients and
//! others wrote (the reads).

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use satchel_core::ids::RecordId;
use satchel_core::sync::{RelayClient, RelayTrust, RelayUrl};
use serde::Serialize;
use tokio::sync::Notify;
use tokio::task::JoinSet;

use crate::records::RecordPool;

/// Records unused this long are closed.
const IDLE_CLOSE: Duration = Duration::from_secs(120);

/// How many records sync with the relay at once. Each sync is a few relay
/// round trips; one at a time bounds the gateway at one record's round
/// (about 20 ms) however many records are queued.
pub const CONCURRENT_SYNCS: usize = 8;

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

    /// Up to `room` queued records that are not syncing now, taken off
    /// the queue.
    fn take_dirty(
        &self,
        room: usize,
        syncing: &HashMap<tokio::task::Id, RecordId>,
    ) -> Vec<RecordId> {
        let Ok(mut s) = self.state.lock() else {
            return Vec::new();
        };
        let due: Vec<RecordId> = s
            .dirty
            .iter()
            .filter(|rid| !syncing.values().any(|r| r == *rid))
            .take(room)
            .copied()
            .collect();
        for rid in &due {
            s.dirty.remove(rid);
        }
        due
    }

    /// The worker: runs until the task is dropped. Up to
    /// [`CONCURRENT_SYNCS`] records sync at once, each at most once at a
    /// time; a record written while it syncs goes again after.
    pub async fn run(self: Arc<Self>) {
        // Everything queued before a restart goes out first.
        for rid in self.pool.records().unwrap_or_default() {
            self.mark(rid);
        }
        // One connection pool for every record; a session per record.
        let base = match RelayClient::connect(&self.relay, &self.trust) {
            Ok(c) => c.with_max_attempts(2),
            Err(e) => {
                tracing::error!(error = %e, "cannot set up the relay client; nothing is uploaded");
                return;
            }
        };
        let mut clients: HashMap<RecordId, RelayClient> = HashMap::new();
        let mut running: JoinSet<(RecordId, bool, RelayClient)> = JoinSet::new();
        // The record each running sync task syncs.
        let mut tasks: HashMap<tokio::task::Id, RecordId> = HashMap::new();
        let mut last_refresh = tokio::time::Instant::now();
        // While syncs fail: when to try again.
        let mut retry_at: Option<tokio::time::Instant> = None;
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
            let backing_off = retry_at.is_some_and(|at| tokio::time::Instant::now() < at);
            if !backing_off {
                retry_at = None;
                let room = CONCURRENT_SYNCS.saturating_sub(tasks.len());
                for rid in self.take_dirty(room, &tasks) {
                    let client = clients.remove(&rid).unwrap_or_else(|| base.sibling());
                    let this = self.clone();
                    let task = running.spawn(async move { this.sync_one(rid, client).await });
                    tasks.insert(task.id(), rid);
                }
            }
            let wait = match retry_at {
                Some(at) => at.saturating_duration_since(tokio::time::Instant::now()),
                None => self.refresh.min(IDLE_CLOSE),
            };
            tokio::select! {
                done = running.join_next_with_id(), if !running.is_empty() => {
                    let (ok, rid) = match done {
                        None => continue,
                        Some(Ok((id, (rid, ok, client)))) => {
                            tasks.remove(&id);
                            clients.insert(rid, client);
                            (ok, rid)
                        }
                        // A sync task that panicked: its record is queued
                        // again (its client, and session, are gone).
                        Some(Err(e)) => match tasks.remove(&e.id()) {
                            Some(rid) => (false, rid),
                            None => continue,
                        },
                    };
                    if ok {
                        if let Ok(mut s) = self.state.lock() {
                            s.failures = 0;
                        }
                    } else {
                        if let Ok(mut s) = self.state.lock() {
                            s.dirty.insert(rid);
                        }
                        // The first failure since the backoff ended counts;
                        // the others of the same moment join its wait.
                        if retry_at.is_none() {
                            let failures = self
                                .state
                                .lock()
                                .map(|mut s| {
                                    s.failures = s.failures.saturating_add(1);
                                    s.failures
                                })
                                .unwrap_or(1);
                            // 250 ms, doubling, at most 30 s.
                            let backoff = Duration::from_millis(250u64 << failures.min(7))
                                .min(Duration::from_secs(30));
                            tracing::warn!(
                                failures,
                                backoff_ms = backoff.as_millis() as u64,
                                "relay sync failing; backing off"
                            );
                            retry_at = Some(tokio::time::Instant::now() + backoff);
                        }
                    }
                }
                _ = self.wake.notified(), if !backing_off => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    async fn sync_one(
        self: Arc<Self>,
        rid: RecordId,
        mut client: RelayClient,
    ) -> (RecordId, bool, RelayClient) {
        let pool = self.pool.clone();
        let record = match tokio::task::spawn_blocking(move || pool.get(rid)).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                tracing::error!(record = %rid, error = %e, "cannot open a record to upload it");
                return (rid, false, client);
            }
            Err(_) => return (rid, false, client),
        };
        let mut profile = record.lock().await;
        let result = client.sync(&mut profile).await;
        // Reads answered from this copy, for the patient's audit trail.
        let views = match &result {
            Ok(_) => satchel_core::sync::views::report_views(&mut client, &mut profile)
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
        (rid, ok, client)
    }
}
