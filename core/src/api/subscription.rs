//! Background sync: a [`Subscription`] runs a sync round, then listens on
//! the relay's push channel and runs a round for every change it hears of,
//! telling the app's [`ChangeListener`] what changed. It reconnects with
//! backoff while offline and stops for good when the relay refuses this
//! device (its access was revoked) or when the app stops it.
//!
//! No push is lost across a reconnection: the push channel is opened
//! first and a round runs right after, so a change stored while the
//! channel was down is pulled by that round and one stored later is
//! pushed. When the channel closes (a relay instance restarting closes it
//! with 1012) the device waits a random jitter before reconnecting, so the
//! devices of a restarting instance spread over the others instead of
//! arriving at once.
//!
//! On phones this runs while the app is in the foreground; background
//! refresh (WorkManager, BGTaskScheduler) calls `HealthRecord.sync` instead
//! (see docs/mobile.md).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;

use super::error::{Result, SatchelError};
use super::record::{lock, Inner};
use super::types::ChangeEvent;

/// Implemented by the app to hear about changes. Called from a library
/// thread: hop to the UI thread before touching views.
#[uniffi::export(with_foreign)]
pub trait ChangeListener: Send + Sync {
    /// Something changed (a section, who has access).
    fn on_change(&self, event: ChangeEvent);
    /// The subscription ended on its own (revoked, the relay refused).
    fn on_stopped(&self, error: SatchelError);
}

/// A running background sync; stops when [`Subscription::stop`] is called
/// or it is dropped.
#[derive(uniffi::Object)]
pub struct Subscription {
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Subscription(..)")
    }
}

const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Longest random wait before reconnecting a closed push channel.
const RECONNECT_JITTER_MS: u16 = 1000;

/// A random wait in `0..RECONNECT_JITTER_MS` milliseconds.
fn jitter() -> Duration {
    use ring::rand::SecureRandom;
    let mut b = [0u8; 2];
    let r = ring::rand::SystemRandom::new()
        .fill(&mut b)
        .map_or(0, |()| u16::from_le_bytes(b));
    Duration::from_millis(u64::from(r % RECONNECT_JITTER_MS))
}

/// One round off the runtime's worker threads (the profile lock is a plain
/// mutex held for the whole round).
async fn round(inner: &Arc<Mutex<Inner>>, relay: &str) -> Result<Vec<ChangeEvent>> {
    let inner = Arc::clone(inner);
    let relay = relay.to_string();
    super::in_background(move |handle| {
        let mut guard = lock(&inner)?;
        let mut client = guard.client(&relay)?;
        let result = handle.block_on(guard.sync_round(&mut client));
        guard.keep(client);
        result.map(|(_, events)| events)
    })
    .await
}

/// This device's readable sections and id (for telling it was revoked).
fn own_access(inner: &Arc<Mutex<Inner>>) -> Option<(String, Vec<String>)> {
    let guard = lock(inner).ok()?;
    Some((
        guard.profile.device_id().to_hex(),
        guard
            .profile
            .readable_sections()
            .iter()
            .map(|s| s.as_str().to_string())
            .collect(),
    ))
}

async fn run(inner: Arc<Mutex<Inner>>, relay: String, listener: Arc<dyn ChangeListener>) {
    let mut backoff = Duration::from_millis(500);
    loop {
        match round(&inner, &relay).await {
            Ok(events) => {
                backoff = Duration::from_millis(500);
                for e in events {
                    listener.on_change(e);
                }
            }
            Err(SatchelError::Offline { .. }) => {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
            Err(error) => {
                if matches!(error, SatchelError::NotAllowed { .. }) {
                    if let Some((identity, sections)) = own_access(&inner) {
                        listener.on_change(ChangeEvent::AccessRevoked { identity, sections });
                    }
                }
                listener.on_stopped(error);
                return;
            }
        }
        // Listen for pushes with the session the round left behind.
        let client = match lock(&inner) {
            Ok(mut guard) => match guard.client(&relay) {
                Ok(c) => Some((c, guard.profile.record_id())),
                Err(_) => None,
            },
            Err(_) => None,
        };
        let Some((client, record)) = client else {
            listener.on_stopped(SatchelError::storage("the record could not be read"));
            return;
        };
        match client.subscribe(record).await {
            Ok(stream) => {
                let mut stream = Box::pin(stream);
                // Catch up on what was stored while the channel was down.
                match round(&inner, &relay).await {
                    Ok(events) => {
                        for e in events {
                            listener.on_change(e);
                        }
                    }
                    Err(_) => continue,
                }
                while stream.next().await.is_some() {
                    match round(&inner, &relay).await {
                        Ok(events) => {
                            for e in events {
                                listener.on_change(e);
                            }
                        }
                        // Offline or refused: leave the push loop; the
                        // outer loop decides.
                        Err(_) => break,
                    }
                }
                tokio::time::sleep(jitter()).await;
            }
            Err(_) => {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

impl Subscription {
    pub(crate) fn start(
        inner: Arc<Mutex<Inner>>,
        relay: String,
        listener: Arc<dyn ChangeListener>,
    ) -> Result<Arc<Self>> {
        let task = super::runtime()?.spawn(run(inner, relay, listener));
        Ok(Arc::new(Subscription {
            task: Mutex::new(Some(task)),
        }))
    }

    fn abort(&self) {
        if let Ok(mut task) = self.task.lock() {
            if let Some(task) = task.take() {
                task.abort();
            }
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.abort();
    }
}

#[uniffi::export]
impl Subscription {
    /// Stop listening (a round in progress finishes; nothing is lost).
    pub fn stop(&self) {
        self.abort();
    }

    /// False once stopped, by the app or on its own.
    pub fn is_running(&self) -> bool {
        self.task
            .lock()
            .ok()
            .and_then(|t| t.as_ref().map(|t| !t.is_finished()))
            .unwrap_or(false)
    }
}
