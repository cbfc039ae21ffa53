//! When this relay last exchanged each record with its upstream (the
//! record's home relay), for the devices it serves: a copy read through an
//! edge relay is current only up to then (docs/clinical-safety.md, "a
//! clinic sees a stale copy while its link is down").
//!
//! Kept in memory: after a restart every record counts as not reached
//! until the first complete round, which errs on the safe side (a copy
//! is called stale, never current, when in doubt). Memory: one time per
//! relay, and one entry per record whose last round failed.

use std::collections::HashMap;
use std::sync::Mutex;

use satchel_protocol::ids::RecordId;

/// The replicators' account of reaching their upstreams.
#[derive(Debug, Default)]
pub struct UpstreamContact {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// When the last complete round finished (Unix ms).
    last_round_ms: Option<i64>,
    /// Records whose exchange failed since, with when they were last
    /// reached before that.
    behind: HashMap<RecordId, Option<i64>>,
}

impl UpstreamContact {
    /// When `record` was last exchanged with an upstream (`None`: not
    /// since this relay started).
    pub fn reached(&self, record: &RecordId) -> Option<i64> {
        let inner = self.lock();
        match inner.behind.get(record) {
            Some(before) => *before,
            None => inner.last_round_ms,
        }
    }

    /// A round that began at `started_ms` completed; `missed` are the
    /// records whose part failed (or that the upstream does not hold).
    /// Every other record was exchanged as of `started_ms`.
    pub fn round_done(&self, started_ms: i64, missed: &[RecordId]) {
        let mut inner = self.lock();
        let previous = inner.last_round_ms;
        let mut behind = HashMap::with_capacity(missed.len());
        for record in missed {
            let before = inner.behind.get(record).copied().unwrap_or(previous);
            behind.insert(*record, before);
        }
        inner.behind = behind;
        inner.last_round_ms = Some(previous.map_or(started_ms, |p| p.max(started_ms)));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves consistent data (each
        // update is a few assignments): keep using it.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_is_reached_before_the_first_round() {
        let c = UpstreamContact::default();
        assert_eq!(c.reached(&RecordId([1; 16])), None);
    }

    #[test]
    fn a_record_that_failed_keeps_its_last_good_time() {
        let c = UpstreamContact::default();
        let (a, b) = (RecordId([1; 16]), RecordId([2; 16]));
        c.round_done(100, &[]);
        assert_eq!(c.reached(&a), Some(100));
        c.round_done(200, &[b]);
        assert_eq!((c.reached(&a), c.reached(&b)), (Some(200), Some(100)));
        c.round_done(300, &[b]);
        assert_eq!(c.reached(&b), Some(100), "still the last good round");
        c.round_done(400, &[]);
        assert_eq!(c.reached(&b), Some(400));
    }

    #[test]
    fn a_record_failing_from_the_start_was_never_reached() {
        let c = UpstreamContact::default();
        let a = RecordId([1; 16]);
        c.round_done(100, &[a]);
        assert_eq!(c.reached(&a), None);
        assert_eq!(c.reached(&RecordId([3; 16])), Some(100));
    }
}
