//! The profile's side of a direct session with a nearby device (edge sync,
//! [`crate::nearby`]): what it holds (its access log's statement hashes,
//! each log's envelope hashes and bytes), adopting a longer access log,
//! merging envelopes received directly (through the same acceptance and
//! opening as relay pulls, queued for the relay when this device may
//! write the log: store and forward), and remembering a fork.

use serde::{Deserialize, Serialize};

use super::replica::Source;
use super::{ApplyReport, Profile, ProfileError, Result};
use crate::ids::IdentityId;
use crate::sharing::SignedStatement;
use crate::store::{Store, WriteBatch};
use satchel_protocol::LogName;

/// Where a detected fork is remembered (ids and counts only).
const META_FORK: &str = "nearby/access-fork";

/// Two access logs that diverge, as seen in a direct session: shown to the
/// user on both devices until resolved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessFork {
    /// The device whose log diverged from ours.
    pub peer: IdentityId,
    /// Our log's length and the peer's, when it was seen.
    pub ours: u64,
    pub theirs: u64,
    /// When (device clock, ms).
    pub at_ms: i64,
}

impl<S: Store> Profile<S> {
    /// The hash of each statement of the verified access log, in order.
    pub fn access_hashes(&self) -> Result<Vec<[u8; 32]>> {
        Ok(self
            .access_log()?
            .iter()
            .map(SignedStatement::hash)
            .collect())
    }

    /// Adopt statements a nearby device sent (the rest of a longer log):
    /// the whole log must verify from the creator with them appended, else
    /// nothing changes. The relay's access cursor is left alone.
    pub fn apply_access_direct(&mut self, statements: Vec<SignedStatement>) -> Result<()> {
        self.apply_statements(statements, None)
    }

    /// The hash of every envelope this device holds in `log`.
    pub fn log_hashes(&self, log: LogName) -> Result<Vec<[u8; 32]>> {
        Ok(self.store.log_hashes(log)?)
    }

    /// Every envelope this device holds in `log`, with its hash, in store
    /// order (the order they can be applied in).
    pub fn log_envelopes(&self, log: LogName) -> Result<Vec<([u8; 32], Vec<u8>)>> {
        Ok(self.store.log_envelopes(log)?)
    }

    /// Merge envelopes of `log` received from a nearby device: the shared
    /// acceptance rule, then opening, as for a relay pull; new ones are
    /// stored once (an envelope later pulled from the relay is recognised
    /// by its hash) and, when this device may write `log`, queued for the
    /// relay. Durable when this returns.
    pub fn apply_direct(&mut self, log: LogName, envelopes: Vec<Vec<u8>>) -> Result<ApplyReport> {
        let numbered = envelopes.into_iter().map(|e| (0, e)).collect();
        self.apply_envelopes(log, Source::Direct, None, numbered)
    }

    /// Remember a fork seen in a direct session.
    pub fn record_access_fork(&mut self, fork: &AccessFork) -> Result<()> {
        let bytes = serde_json::to_vec(fork).map_err(|_| ProfileError::Corrupt("access fork"))?;
        let mut batch = WriteBatch::new();
        batch.put_meta(META_FORK, bytes);
        self.store.commit(batch)?;
        Ok(())
    }

    /// The last fork seen in a direct session, if any.
    pub fn access_fork(&self) -> Result<Option<AccessFork>> {
        match self.store.get_meta(META_FORK)? {
            None => Ok(None),
            Some(b) => serde_json::from_slice(&b)
                .map(Some)
                .map_err(|_| ProfileError::Corrupt("access fork")),
        }
    }
}
