//! What a device keeps between sync rounds with its relay: the caller
//! (the profile, which persists it) owns it and hands it to the sans-IO
//! [`super::engine::SyncEngine`] for each round, as automerge's callers own
//! their sync state.

use std::collections::{BTreeMap, BTreeSet};

use satchel_protocol::LogName;

/// Where this device stands with its relay.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncState {
    /// The relay these cursors belong to.
    pub relay: Option<String>,
    /// Per log: the relay sequence pulled up to.
    pub cursors: BTreeMap<LogName, u64>,
    /// Feed cursor (relay sequence).
    pub feed_cursor: u64,
    /// How many access statements have been fetched.
    pub access_cursor: u64,
    /// Per log: envelopes stored on the relay since its last snapshot
    /// that this device knows of.
    pub since_snapshot: BTreeMap<LogName, u64>,
    /// Whether this device registered the record with the relay.
    pub registered: bool,
    /// Logs known to be incomplete: pulled again from their start (their
    /// cursor is absent) whether or not the feed names them.
    pub repull: BTreeSet<LogName>,
}
