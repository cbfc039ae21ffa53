//! Completeness of a log on this device, I/O-free: which of each author's
//! numbered change envelopes it holds, which the relay served that were
//! refused, and whether changes wait for others they depend on.
//!
//! Every change envelope carries its author's number for the log (1, 2, 3,
//! ... without gaps; bound in the envelope's AAD and signature), and every
//! relay snapshot says, signed, which numbers it covers. A number missing
//! below an author's highest one is a change the relay did not deliver. A
//! log with a gap, a refused envelope or changes held back for missing
//! dependencies is **incomplete**: the device says so wherever the section
//! is shown, and pulls the whole log again on every round until it is whole
//! (envelopes it already has are recognised by hash and skipped).
//!
//! What cannot be seen: the newest changes of an author that nothing later
//! depends on and no snapshot covers, withheld by the relay, look the same
//! as changes not yet written (docs/security.md, "Limits").

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::ids::IdentityId;
use satchel_protocol::LogName;

/// Which numbers of one author's changes are held: all up to `upto`, plus
/// `extra` above it (with gaps between).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeqSet {
    pub upto: u64,
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub extra: BTreeSet<u64>,
}

impl SeqSet {
    /// Add number `n` (0 is not a change number and is ignored).
    pub fn insert(&mut self, n: u64) {
        if n > self.upto {
            self.extra.insert(n);
            self.settle();
        }
    }

    /// Everything up to `n` is held (a snapshot covers it).
    pub fn cover(&mut self, n: u64) {
        if n > self.upto {
            self.upto = n;
            self.extra.retain(|x| *x > n);
            self.settle();
        }
    }

    fn settle(&mut self) {
        while self.extra.remove(&(self.upto + 1)) {
            self.upto += 1;
        }
    }

    /// How many numbers below the highest held one are missing.
    pub fn missing(&self) -> u64 {
        match self.extra.last() {
            Some(max) => max - self.upto - self.extra.len() as u64,
            None => 0,
        }
    }

    /// The highest number held.
    pub fn max(&self) -> u64 {
        self.extra.last().copied().unwrap_or(self.upto)
    }
}

/// An envelope the relay served that this device refused, kept until a
/// later pull of the whole log merges it (or refuses it again).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    /// The relay's sequence number of the envelope.
    pub server_seq: u64,
    pub author: Option<IdentityId>,
    pub reason: String,
}

/// One log's completeness on this device.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogLedger {
    /// Per author, the change numbers held.
    #[serde(default)]
    pub authors: BTreeMap<IdentityId, SeqSet>,
    /// Refused envelopes of the latest pass over the log.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refused: Vec<Refusal>,
    /// Changes that wait for changes they depend on (not yet received).
    #[serde(default)]
    pub held_back: usize,
}

/// What is known to be missing from a log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incomplete {
    pub log: LogName,
    /// Per author: how many of its changes were not received.
    pub missing: Vec<(IdentityId, u64)>,
    /// Envelopes the relay served that were refused, with why.
    pub refused: Vec<Refusal>,
    /// Changes held back until what they depend on arrives.
    pub held_back: usize,
}

impl Incomplete {
    /// Changes known to be missing, all authors together.
    pub fn missing_total(&self) -> u64 {
        self.missing.iter().map(|(_, n)| n).sum()
    }
}

impl LogLedger {
    /// A change envelope numbered `seq` by `author` is held.
    pub fn record(&mut self, author: IdentityId, seq: u64) {
        self.authors.entry(author).or_default().insert(seq);
    }

    /// A snapshot covering `coverage` is held.
    pub fn cover(&mut self, coverage: &BTreeMap<IdentityId, u64>) {
        for (author, upto) in coverage {
            self.authors.entry(*author).or_default().cover(*upto);
        }
    }

    /// What a snapshot made now can claim to cover: every author's
    /// unbroken run of numbers from 1.
    pub fn coverage(&self) -> BTreeMap<IdentityId, u64> {
        self.authors
            .iter()
            .filter(|(_, s)| s.upto > 0)
            .map(|(a, s)| (*a, s.upto))
            .collect()
    }

    /// Start a fresh pass over the whole log (pulled from the start):
    /// refusals are re-decided.
    pub fn restart_pass(&mut self) {
        self.refused.clear();
    }

    /// A refused envelope (once per relay sequence).
    pub fn refuse(&mut self, refusal: Refusal) {
        if !self
            .refused
            .iter()
            .any(|r| r.server_seq == refusal.server_seq)
        {
            self.refused.push(refusal);
        }
    }

    /// What is known to be missing, or `None` when the log is whole as far
    /// as this device can tell.
    pub fn incomplete(&self, log: LogName) -> Option<Incomplete> {
        let missing: Vec<(IdentityId, u64)> = self
            .authors
            .iter()
            .map(|(a, s)| (*a, s.missing()))
            .filter(|(_, n)| *n > 0)
            .collect();
        if missing.is_empty() && self.refused.is_empty() && self.held_back == 0 {
            return None;
        }
        Some(Incomplete {
            log,
            missing,
            refused: self.refused.clone(),
            held_back: self.held_back,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use satchel_protocol::Section;

    const LABS: LogName = LogName::Section(Section::Labs);
    const X: LogName = LogName::WearableChunks;

    fn id(n: u8) -> IdentityId {
        IdentityId([n; 32])
    }

    #[test]
    fn gaps_are_counted_and_filled() {
        let mut l = LogLedger::default();
        for n in [1, 3, 5, 6] {
            l.record(id(1), n);
        }
        let inc = l.incomplete(LABS).unwrap();
        assert_eq!(inc.missing, vec![(id(1), 2)]);
        l.record(id(1), 2);
        assert_eq!(l.incomplete(LABS).unwrap().missing_total(), 1);
        l.record(id(1), 4);
        assert!(l.incomplete(LABS).is_none());
        assert_eq!(
            l.authors[&id(1)],
            SeqSet {
                upto: 6,
                extra: BTreeSet::new()
            }
        );
        assert_eq!(l.coverage(), BTreeMap::from([(id(1), 6)]));
    }

    #[test]
    fn a_snapshot_covers_and_later_numbers_continue() {
        let mut l = LogLedger::default();
        l.record(id(2), 9);
        assert_eq!(l.incomplete(X).unwrap().missing, vec![(id(2), 8)]);
        l.cover(&BTreeMap::from([(id(2), 8)]));
        assert!(l.incomplete(X).is_none());
        assert_eq!(l.authors[&id(2)].max(), 9);
    }

    #[test]
    fn refusals_and_held_back_changes_make_a_log_incomplete() {
        let mut l = LogLedger::default();
        l.refuse(Refusal {
            server_seq: 4,
            author: None,
            reason: "malformed envelope".into(),
        });
        l.refuse(Refusal {
            server_seq: 4,
            author: None,
            reason: "malformed envelope".into(),
        });
        assert_eq!(l.incomplete(X).unwrap().refused.len(), 1);
        l.restart_pass();
        assert!(l.incomplete(X).is_none());
        l.held_back = 2;
        assert_eq!(l.incomplete(X).unwrap().held_back, 2);
    }

    #[test]
    fn ledger_round_trips_as_json() {
        let mut l = LogLedger::default();
        l.record(id(1), 1);
        l.record(id(1), 3);
        let json = serde_json::to_vec(&l).unwrap();
        assert_eq!(serde_json::from_slice::<LogLedger>(&json).unwrap(), l);
    }
}
