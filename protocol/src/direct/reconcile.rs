//! The pure rules of a direct session: which logs are in play, summaries
//! and what differs, what the other side lacks, how two access logs
//! compare. Both ends run the same functions on the same verified log, so
//! they reach the same decisions without negotiating them.

use std::collections::{BTreeMap, HashSet};

use crate::ids::IdentityId;
use crate::section::LogName;
use crate::sharing::Members;

use super::message::LogSummary;

/// A log's summary: how many envelopes, and the first 16 bytes of SHA-256
/// over their hashes in ascending order (so the order they were stored in
/// does not matter). Two devices holding the same envelopes of a log have
/// the same digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogDigest {
    pub count: u64,
    pub digest: [u8; 16],
}

impl LogDigest {
    /// The digest of a set of envelope hashes (duplicates count once).
    pub fn of(hashes: &[[u8; 32]]) -> Self {
        let mut sorted: Vec<&[u8; 32]> = hashes.iter().collect();
        sorted.sort_unstable();
        sorted.dedup();
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        for h in &sorted {
            ctx.update(&h[..]);
        }
        let full = ctx.finish();
        let mut digest = [0u8; 16];
        digest.copy_from_slice(&full.as_ref()[..16]);
        LogDigest {
            count: u64::try_from(sorted.len()).unwrap_or(u64::MAX),
            digest,
        }
    }

    /// As sent.
    pub fn summary(self, log: LogName) -> LogSummary {
        LogSummary {
            log: log.as_str().to_string(),
            count: self.count,
            digest: self.digest,
        }
    }
}

/// Whether `peer` may take part in a session at `now_ms`: it may read or
/// write at least one log of the record. A revoked member, an expired grant
/// and a stranger may not.
pub fn may_take_part(members: &Members, peer: &IdentityId, now_ms: i64) -> bool {
    LogName::all().any(|log| {
        members.may_read(peer, log.as_str(), now_ms)
            || members.may_write(peer, log.as_str(), now_ms)
    })
}

/// The logs a session between `me` and `peer` is about at `now_ms`: every
/// log either may read, in [`LogName::all`] order.
pub fn logs_in_play(
    members: &Members,
    me: &IdentityId,
    peer: &IdentityId,
    now_ms: i64,
) -> Vec<LogName> {
    LogName::all()
        .filter(|log| {
            members.may_read(me, log.as_str(), now_ms)
                || members.may_read(peer, log.as_str(), now_ms)
        })
        .collect()
}

/// The logs whose summaries differ (a log missing from one side counts as
/// empty there), among `in_play`.
pub fn differing(in_play: &[LogName], ours: &[LogSummary], theirs: &[LogSummary]) -> Vec<LogName> {
    let index = |s: &[LogSummary]| -> BTreeMap<String, (u64, [u8; 16])> {
        s.iter()
            .map(|l| (l.log.clone(), (l.count, l.digest)))
            .collect()
    };
    let (ours, theirs) = (index(ours), index(theirs));
    let empty = LogDigest::of(&[]);
    let get = |m: &BTreeMap<String, (u64, [u8; 16])>, log: &LogName| {
        m.get(log.as_str())
            .copied()
            .unwrap_or((empty.count, empty.digest))
    };
    in_play
        .iter()
        .filter(|log| get(&ours, log) != get(&theirs, log))
        .copied()
        .collect()
}

/// Of `ours` (hash and bytes, in store order), those whose hash is not in
/// `theirs`, in the same order.
pub fn lacking<'a>(ours: &'a [([u8; 32], Vec<u8>)], theirs: &[[u8; 32]]) -> Vec<&'a [u8]> {
    let theirs: HashSet<&[u8; 32]> = theirs.iter().collect();
    ours.iter()
        .filter(|(h, _)| !theirs.contains(h))
        .map(|(_, b)| b.as_slice())
        .collect()
}

/// How our verified access log compares with the other side's (its length
/// and head).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessComparison {
    /// The same log.
    Same,
    /// Theirs is a prefix of ours: they lack our statements from `from` on.
    TheyLack { from: usize },
    /// Ours may be a prefix of theirs (or we hold none): they will send the rest, and we
    /// check that it continues from our head when we verify it.
    WeLack,
    /// Their head is not in our log at its position: the logs diverge.
    Fork,
}

/// Compare our log (its statement hashes, in order) with theirs.
pub fn compare_access(
    ours: &[[u8; 32]],
    their_len: u64,
    their_head: &[u8; 32],
) -> AccessComparison {
    let their_len = usize::try_from(their_len).unwrap_or(usize::MAX);
    if their_len > ours.len() {
        return AccessComparison::WeLack;
    }
    let Some(at) = their_len.checked_sub(1).and_then(|i| ours.get(i)) else {
        // They hold no log yet (a member device that never synced): every
        // log starts with the creator's statement, which they verify.
        return if ours.is_empty() {
            AccessComparison::Same
        } else {
            AccessComparison::TheyLack { from: 0 }
        };
    };
    if at != their_head {
        AccessComparison::Fork
    } else if their_len == ours.len() {
        AccessComparison::Same
    } else {
        AccessComparison::TheyLack { from: their_len }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(n: u8) -> [u8; 32] {
        [n; 32]
    }

    #[test]
    fn digest_ignores_order_and_duplicates() {
        let a = LogDigest::of(&[h(1), h(2), h(3)]);
        assert_eq!(a, LogDigest::of(&[h(3), h(1), h(2), h(1)]));
        assert_eq!(a.count, 3);
        assert_ne!(a, LogDigest::of(&[h(1), h(2)]));
        assert_ne!(a.digest, LogDigest::of(&[h(1), h(2), h(4)]).digest);
    }

    #[test]
    fn digest_byte_vector() {
        // Pinned: docs/protocol.md "Direct channel" test vector.
        let d = LogDigest::of(&[h(2), h(1)]);
        assert_eq!(hex::encode(d.digest), DIGEST_OF_01_02);
        assert_eq!(LogDigest::of(&[]).count, 0);
    }

    const DIGEST_OF_01_02: &str = "f818afd37a6dc3bc92fb447310112770";

    #[test]
    fn differing_treats_missing_as_empty() {
        let labs = LogName::Section(crate::Section::Labs);
        let meds = LogName::Section(crate::Section::Medications);
        let one = LogDigest::of(&[h(1)]).summary(labs);
        let empty_meds = LogDigest::of(&[]).summary(meds);
        assert_eq!(
            differing(
                &[labs, meds],
                std::slice::from_ref(&one),
                std::slice::from_ref(&one)
            ),
            vec![]
        );
        assert_eq!(
            differing(
                &[labs, meds],
                &[one.clone(), empty_meds],
                std::slice::from_ref(&one)
            ),
            vec![]
        );
        assert_eq!(differing(&[labs, meds], &[one], &[]), vec![labs]);
    }

    #[test]
    fn lacking_keeps_store_order() {
        let ours = vec![(h(3), vec![3]), (h(1), vec![1]), (h(2), vec![2])];
        let out = lacking(&ours, &[h(1)]);
        assert_eq!(out, vec![&[3u8][..], &[2u8][..]]);
    }

    #[test]
    fn access_logs_compare() {
        let ours = [h(1), h(2), h(3)];
        assert_eq!(compare_access(&ours, 3, &h(3)), AccessComparison::Same);
        assert_eq!(
            compare_access(&ours, 2, &h(2)),
            AccessComparison::TheyLack { from: 2 }
        );
        assert_eq!(compare_access(&ours, 4, &h(9)), AccessComparison::WeLack);
        assert_eq!(compare_access(&ours, 2, &h(9)), AccessComparison::Fork);
        assert_eq!(compare_access(&ours, 3, &h(9)), AccessComparison::Fork);
        assert_eq!(
            compare_access(&ours, 0, &[0; 32]),
            AccessComparison::TheyLack { from: 0 }
        );
        assert_eq!(compare_access(&[], 0, &[0; 32]), AccessComparison::Same);
        assert_eq!(compare_access(&[], 1, &h(1)), AccessComparison::WeLack);
    }
}
