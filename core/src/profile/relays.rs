//! The relays a profile uses: an ordered list (meta `relays`, addresses
//! only), and the sync state kept per relay.
//!
//! A device may sync with several relays. What it keeps between rounds with
//! a relay (feed, access and log cursors, registration, the per-log count
//! since the relay's last snapshot) is that relay's: the relay the device
//! syncs with now (meta `sync/relay`) has its state in the working keys the
//! sync code reads and writes (`sync/feed`, `sync/cursor/<log>`, ...);
//! every other relay's is kept under `sync/relays/<address>/<key>`.
//! Switching relays swaps the two in one batch, so nothing is reset or
//! pulled again and a profile made before several relays existed keeps its
//! state as it is. Acknowledgements are per relay in the store
//! ([`crate::store::Owed`]).

use serde::{Deserialize, Serialize};

use super::access::META_ACCESS_CURSOR;
use super::replica::{cursor_key, since_snapshot_key};
use super::{Profile, ProfileError, Result};
use crate::store::{Store, WriteBatch};
use crate::sync::RelayUrl;
use satchel_protocol::LogName;

pub(super) const META_RELAY: &str = "sync/relay";
pub(super) const META_FEED: &str = "sync/feed";
pub(super) const META_REGISTERED: &str = "sync/registered";
/// How many statements of this device's access log the current relay is
/// known to hold (they are a prefix of the log).
const META_ACCESS_PUSHED: &str = "sync/access-pushed";
const META_RELAYS: &str = "relays";

/// The profile's relay list as stored.
#[derive(Debug, Default, Serialize, Deserialize)]
struct RelayList {
    relays: Vec<String>,
}

/// The working keys that hold the current relay's sync state.
fn per_relay_keys() -> Vec<String> {
    let mut keys = vec![
        META_FEED.to_string(),
        META_ACCESS_CURSOR.to_string(),
        META_REGISTERED.to_string(),
        META_ACCESS_PUSHED.to_string(),
    ];
    for log in LogName::all() {
        keys.push(cursor_key(log));
        keys.push(since_snapshot_key(log));
    }
    keys
}

/// Where `key` of a relay that is not the current one is kept.
fn kept_key(relay: &str, key: &str) -> String {
    format!("sync/relays/{relay}/{key}")
}

impl<S: Store> Profile<S> {
    /// The relays this profile syncs with, in order.
    pub fn relays(&self) -> Result<Vec<RelayUrl>> {
        self.relay_list()?
            .relays
            .iter()
            .map(|r| RelayUrl::parse(r).map_err(|_| ProfileError::Corrupt("relay list")))
            .collect()
    }

    fn relay_list(&self) -> Result<RelayList> {
        match self.store.get_meta(META_RELAYS)? {
            Some(bytes) => {
                serde_json::from_slice(&bytes).map_err(|_| ProfileError::Corrupt("relay list"))
            }
            None => Ok(RelayList::default()),
        }
    }

    fn save_relay_list(&mut self, list: &RelayList) -> Result<()> {
        let bytes = serde_json::to_vec(list).map_err(|_| ProfileError::Corrupt("relay list"))?;
        let mut batch = WriteBatch::new();
        batch.put_meta(META_RELAYS, bytes);
        self.store.commit(batch)?;
        Ok(())
    }

    /// Add `relay` at the end of the list; `false` when it is listed
    /// already (nothing changes).
    pub fn add_relay(&mut self, relay: &RelayUrl) -> Result<bool> {
        let mut list = self.relay_list()?;
        if list.relays.iter().any(|r| r == relay.as_str()) {
            return Ok(false);
        }
        list.relays.push(relay.as_str().to_string());
        self.save_relay_list(&list)?;
        Ok(true)
    }

    /// Take `relay` off the list; `false` when it was not listed. Its sync
    /// state stays (adding it again resumes where it stopped).
    pub fn remove_relay(&mut self, relay: &RelayUrl) -> Result<bool> {
        let mut list = self.relay_list()?;
        let before = list.relays.len();
        list.relays.retain(|r| r != relay.as_str());
        if list.relays.len() == before {
            return Ok(false);
        }
        self.save_relay_list(&list)?;
        Ok(true)
    }

    /// A move finished: `to` takes the place of `from` in the list (or is
    /// added at the end when `from` was not listed), listed once.
    pub fn replace_relay(&mut self, from: &RelayUrl, to: &RelayUrl) -> Result<()> {
        let mut list = self.relay_list()?;
        let to = to.as_str().to_string();
        match list.relays.iter().position(|r| r == from.as_str()) {
            Some(i) => list.relays[i] = to.clone(),
            None => list.relays.push(to.clone()),
        }
        let mut seen = std::collections::BTreeSet::new();
        list.relays.retain(|r| seen.insert(r.clone()));
        self.save_relay_list(&list)
    }

    /// Statements of the access log the current relay may lack: those
    /// after the ones it is known to hold. A device using several relays
    /// brings each the statements made through another
    /// ([`crate::sync::RelayClient::sync`]); a relay answers one it holds
    /// already with `200`.
    pub fn access_log_to_push(&self) -> Result<Vec<crate::sharing::SignedStatement>> {
        let held = usize::try_from(super::replica::get_u64(&self.store, META_ACCESS_PUSHED)?)
            .unwrap_or(usize::MAX);
        Ok(self.access_log()?.into_iter().skip(held).collect())
    }

    /// The current relay holds the first `count` statements of the log.
    pub fn access_log_pushed(&mut self, count: usize) -> Result<()> {
        let mut batch = WriteBatch::new();
        batch.put_meta(
            META_ACCESS_PUSHED,
            u64::try_from(count)
                .unwrap_or(u64::MAX)
                .to_be_bytes()
                .to_vec(),
        );
        self.store.commit(batch)?;
        Ok(())
    }

    /// The relay this device synced with last (whose state is in the
    /// working keys), if any.
    pub fn current_relay(&self) -> Result<Option<String>> {
        Ok(self
            .store
            .get_meta(META_RELAY)?
            .and_then(|b| String::from_utf8(b).ok()))
    }

    /// Make `relay` the current relay: the previous one's state is kept
    /// under its name and `relay`'s (empty for a relay never used) is
    /// put in the working keys, in one batch.
    pub(super) fn switch_relay(&mut self, relay: &str) -> Result<()> {
        let current = self.current_relay()?;
        if current.as_deref() == Some(relay) {
            return Ok(());
        }
        let mut batch = WriteBatch::new();
        for key in per_relay_keys() {
            let working = self.store.get_meta(&key)?;
            if let Some(previous) = &current {
                match &working {
                    Some(value) => batch.put_meta(kept_key(previous, &key), value.clone()),
                    None => batch.delete_meta(kept_key(previous, &key)),
                };
            }
            let kept = kept_key(relay, &key);
            match self.store.get_meta(&kept)? {
                Some(value) => batch.put_meta(key, value).delete_meta(kept),
                None => batch.delete_meta(key),
            };
        }
        batch.put_meta(META_RELAY, relay.as_bytes().to_vec());
        self.store.commit(batch)?;
        Ok(())
    }
}
