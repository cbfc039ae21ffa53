//! Change fan-out indexed by record: one task reads the storage's change
//! stream and hands each change to the subscribers of its record only, so
//! the relay's cost of a change is proportional to the devices that care,
//! not to every open WebSocket.
//!
//! Each record with subscribers has its own broadcast channel, created on
//! the first subscription and dropped when its last subscriber leaves. If
//! the dispatcher itself falls behind the storage stream (changes may have
//! been missed), every channel is dropped: the subscribers are closed with
//! 1013 and reconnect and read the feed. `--fanout-scan` keeps the earlier
//! path (every subscriber reads every change and filters by record) for
//! benchmarks.

use std::collections::HashMap;
use std::sync::Mutex;

use satchel_protocol::ids::RecordId;
use tokio::sync::broadcast::{self, error::RecvError};

use crate::storage::{Change, Storage};

/// Changes one record's subscriber may fall behind by before it is closed.
pub const RECORD_CHANNEL_CAPACITY: usize = 1024;

/// The index: record → its subscribers' channel.
pub struct Fanout {
    by_record: Mutex<HashMap<RecordId, broadcast::Sender<Change>>>,
    /// `false`: the pre-index path (`--fanout-scan`).
    indexed: bool,
}

impl Fanout {
    /// An empty index (`indexed = false`: every subscriber reads the
    /// storage's whole stream, as before the index).
    pub fn new(indexed: bool) -> Self {
        Fanout {
            by_record: Mutex::new(HashMap::new()),
            indexed,
        }
    }

    /// Changes of `record` from now on.
    pub fn subscribe(
        &self,
        storage: &dyn Storage,
        record: RecordId,
    ) -> broadcast::Receiver<Change> {
        if !self.indexed {
            return storage.subscribe();
        }
        match self.by_record.lock() {
            Ok(mut map) => map
                .entry(record)
                .or_insert_with(|| broadcast::channel(RECORD_CHANNEL_CAPACITY).0)
                .subscribe(),
            // A poisoned index: a closed receiver makes the subscriber
            // reconnect.
            Err(_) => broadcast::channel(1).1,
        }
    }

    /// Records with at least one subscriber.
    pub fn records(&self) -> usize {
        self.by_record.lock().map_or(0, |m| m.len())
    }

    fn dispatch(&self, change: Change) {
        if let Ok(mut map) = self.by_record.lock() {
            let record = change.record;
            if let Some(tx) = map.get(&record) {
                if tx.send(change).is_err() {
                    // Nobody listens any more.
                    map.remove(&record);
                }
            }
        }
    }

    /// Drop channels whose subscribers all left.
    pub fn prune(&self) {
        if let Ok(mut map) = self.by_record.lock() {
            map.retain(|_, tx| tx.receiver_count() > 0);
        }
    }

    fn reset(&self) {
        if let Ok(mut map) = self.by_record.lock() {
            map.clear();
        }
    }
}

/// Forward the storage's changes to the index until the storage closes.
pub async fn run(fanout: std::sync::Arc<Fanout>, mut changes: broadcast::Receiver<Change>) {
    if !fanout.indexed {
        return;
    }
    loop {
        match changes.recv().await {
            Ok(change) => fanout.dispatch(change),
            Err(RecvError::Lagged(n)) => {
                tracing::warn!(
                    missed = n,
                    "change fan-out fell behind; closing subscribers"
                );
                fanout.reset();
            }
            Err(RecvError::Closed) => {
                fanout.reset();
                return;
            }
        }
    }
}
