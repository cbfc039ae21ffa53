//! One direct sync round between two member devices over a [`Channel`]
//! (the message order is in [`satchel_protocol::direct`]).
//!
//! The rules are the relay's and live once: who may take part and which
//! logs each may receive come from this device's own verified access log
//! ([`satchel_protocol::direct::reconcile`], over
//! [`satchel_protocol::sharing::Members`]); every envelope received goes
//! through the shared acceptance rule and opening
//! ([`Profile::apply_direct`]). A stranger, a revoked member or an expired
//! grant is refused before any record byte is sent: the only things it can
//! learn are this device's card and the length of its access log (and not
//! even those when this device is the one listening and is not behind).

use std::io::{Read, Write};

use satchel_protocol::direct::reconcile::{
    compare_access, differing, lacking, logs_in_play, may_take_part, AccessComparison,
};
use satchel_protocol::direct::{
    proof, proof_message, Done, Envelopes, Hello, LogDigest, LogHashes, LogSummary, Message,
    RefusalReason, Side, Summary, ENVELOPE_BATCH_BYTES, VERSION,
};
use satchel_protocol::LogName;

use super::channel::{Channel, ChannelError};
use crate::crypto::IdentityCard;
use crate::ids::IdentityId;
use crate::profile::{AccessFork, Profile, ProfileError};
use crate::store::Store;

/// Why a session ended early. Kinds only: no names, no content.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The channel failed.
    #[error(transparent)]
    Channel(#[from] ChannelError),
    /// The other device refused this one.
    #[error("the other device refused: {0}")]
    PeerRefused(RefusalReason),
    /// This device refused the other one.
    #[error("refused the other device: {0}")]
    Refused(RefusalReason),
    /// The other device broke the protocol (a message out of order, a log
    /// it may not send).
    #[error("the other device broke the direct-sync protocol ({0})")]
    Protocol(&'static str),
    /// This device's profile failed.
    #[error(transparent)]
    Profile(#[from] ProfileError),
}

/// What a session did. `Debug` names the peer by id only.
#[derive(Clone, PartialEq, Eq)]
pub struct DirectReport {
    /// The other device's identity card (verified).
    pub peer: IdentityCard,
    /// Access statements adopted from the other device.
    pub statements_learned: usize,
    /// Both devices already held the same envelopes of every log in play.
    pub in_sync: bool,
    /// Envelopes sent to the other device.
    pub sent: u64,
    /// Envelopes received: new and merged, already held, refused.
    pub merged: u64,
    pub known: u64,
    pub refused: u64,
    /// What the other device reported storing of ours.
    pub peer_done: Option<Done>,
    /// Bytes on the wire (framing and encryption included), out and in.
    pub bytes_sent: u64,
    pub bytes_received: u64,
    /// The summary round trip (both directions, on the wire), and on the
    /// initiator its duration: all it takes two devices in sync to know.
    pub summary_bytes: u64,
    pub summary_time: Option<std::time::Duration>,
}

impl std::fmt::Debug for DirectReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirectReport")
            .field("peer", &self.peer.id())
            .field("statements_learned", &self.statements_learned)
            .field("in_sync", &self.in_sync)
            .field("sent", &self.sent)
            .field("merged", &self.merged)
            .field("known", &self.known)
            .field("refused", &self.refused)
            .field("peer_done", &self.peer_done)
            .field("bytes_sent", &self.bytes_sent)
            .field("bytes_received", &self.bytes_received)
            .field("summary_bytes", &self.summary_bytes)
            .field("summary_time", &self.summary_time)
            .finish()
    }
}

type Result<T> = std::result::Result<T, SessionError>;

/// What a pairing code pins (see [`super::pairing`]): on the device that
/// scanned it, the token to present and the device expected to answer; on
/// the device that showed it, the token to require.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pairing {
    /// The code's one-time token.
    pub token: Option<[u8; 16]>,
    /// The device the code names (initiator only).
    pub device: Option<IdentityId>,
}

/// How far a session has come: envelopes and wire bytes received so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    pub envelopes: u64,
    pub bytes: u64,
}

/// Run one direct sync round as this channel's side, at `now_ms`.
pub fn run<S: Store, T: Read + Write>(
    profile: &mut Profile<S>,
    channel: &mut Channel<T>,
    pairing: Pairing,
    now_ms: i64,
) -> Result<DirectReport> {
    run_with_progress(profile, channel, pairing, now_ms, &mut |_| {})
}

/// [`run`], telling `progress` after each batch of envelopes received.
pub fn run_with_progress<S: Store, T: Read + Write>(
    profile: &mut Profile<S>,
    channel: &mut Channel<T>,
    pairing: Pairing,
    now_ms: i64,
    progress: &mut dyn FnMut(Progress),
) -> Result<DirectReport> {
    let mut session = Session {
        profile,
        channel,
        pairing,
        now_ms,
        peer: None,
        progress,
    };
    let result = match session.channel.side() {
        Side::Initiator => session.initiate(),
        Side::Responder => session.respond(),
    };
    // A fork the other side saw is shown here too.
    if let (Err(SessionError::PeerRefused(RefusalReason::Fork)), Some((peer, theirs))) =
        (&result, session.peer)
    {
        let ours = session.profile.access_hashes()?.len();
        session.remember_fork(peer, ours, theirs)?;
    }
    result
}

struct Session<'a, S: Store, T: Read + Write> {
    profile: &'a mut Profile<S>,
    channel: &'a mut Channel<T>,
    pairing: Pairing,
    now_ms: i64,
    /// The other device and its access log's length, once its hello checked.
    peer: Option<(IdentityId, u64)>,
    progress: &'a mut dyn FnMut(Progress),
}

impl<S: Store, T: Read + Write> Session<'_, S, T> {
    fn initiate(&mut self) -> Result<DirectReport> {
        self.channel.send(&Message::Hello(self.hello()?))?;
        let theirs = match self.recv()? {
            Message::Hello(h) => h,
            _ => return Err(self.protocol("expected hello")),
        };
        let peer = self.check_hello(&theirs)?;
        let peer_id = peer.id();
        if self.pairing.device.is_some_and(|d| d != peer_id) {
            return Err(self.refuse(RefusalReason::WrongDevice));
        }
        // Access: ours to them if they are behind (and a member).
        let ours = self.profile.access_hashes()?;
        let comparison = compare_access(&ours, theirs.access_len, &theirs.access_head);
        self.refuse_fork(comparison, peer_id, &ours, theirs.access_len)?;
        let statements = self.statements_for(comparison, &peer_id)?;
        self.channel.send(&Message::Access(statements))?;
        let learned = match self.recv()? {
            Message::Access(s) => self.adopt(s, peer_id, theirs.access_len)?,
            _ => return Err(self.protocol("expected access")),
        };
        self.require_member(&peer_id)?;
        // Summaries: one round trip when already in sync.
        let in_play = self.in_play(&peer_id);
        let mine = self.summaries(&in_play)?;
        let (started, before) = (std::time::Instant::now(), self.channel.bytes());
        self.channel.send(&Message::Summary(Summary {
            logs: mine.clone(),
            have: Vec::new(),
        }))?;
        let summary = match self.recv()? {
            Message::Summary(s) => s,
            _ => return Err(self.protocol("expected summary")),
        };
        let mut report = self.report(peer, learned);
        report.summary_time = Some(started.elapsed());
        report.summary_bytes = wire_since(before, self.channel.bytes());
        let diff = differing(&in_play, &mine, &summary.logs);
        if diff.is_empty() {
            report.in_sync = true;
            return Ok(self.finish(report));
        }
        let mut budget = Budget::of(&summary.logs);
        report.sent = self.send_lacking(&diff, &summary.have, &peer_id)?;
        self.channel.send(&Message::Want(self.wants(&diff)?))?;
        loop {
            match self.recv()? {
                Message::Envelopes(e) => self.take(e, &diff, &mut budget, &mut report)?,
                Message::Done(d) => {
                    report.peer_done = Some(d);
                    break;
                }
                _ => return Err(self.protocol("expected envelopes or done")),
            }
        }
        self.channel.send(&Message::Done(done_of(&report)))?;
        Ok(self.finish(report))
    }

    fn respond(&mut self) -> Result<DirectReport> {
        let theirs = match self.recv()? {
            Message::Hello(h) => h,
            _ => return Err(self.protocol("expected hello")),
        };
        let peer = self.check_hello(&theirs)?;
        let peer_id = peer.id();
        if self.pairing.token.is_some() && !same_token(theirs.token, self.pairing.token) {
            return Err(self.refuse(RefusalReason::BadToken));
        }
        let ours = self.profile.access_hashes()?;
        let comparison = compare_access(&ours, theirs.access_len, &theirs.access_head);
        if comparison != AccessComparison::WeLack {
            // Not behind: a stranger is refused before learning anything.
            self.require_member(&peer_id)?;
        }
        self.channel.send(&Message::Hello(self.hello()?))?;
        // A member on a diverging log learns who refused it, and why.
        self.refuse_fork(comparison, peer_id, &ours, theirs.access_len)?;
        let learned = match self.recv()? {
            Message::Access(s) => self.adopt(s, peer_id, theirs.access_len)?,
            _ => return Err(self.protocol("expected access")),
        };
        self.require_member(&peer_id)?;
        let ours = self.profile.access_hashes()?;
        let comparison = compare_access(&ours, theirs.access_len, &theirs.access_head);
        self.refuse_fork(comparison, peer_id, &ours, theirs.access_len)?;
        let statements = self.statements_for(comparison, &peer_id)?;
        self.channel.send(&Message::Access(statements))?;
        let before = self.channel.bytes();
        let summary = match self.recv()? {
            Message::Summary(s) => s,
            _ => return Err(self.protocol("expected summary")),
        };
        let in_play = self.in_play(&peer_id);
        let mine = self.summaries(&in_play)?;
        let diff = differing(&in_play, &mine, &summary.logs);
        self.channel.send(&Message::Summary(Summary {
            logs: mine,
            have: self.wants(&diff)?,
        }))?;
        let mut report = self.report(peer, learned);
        report.summary_bytes = wire_since(before, self.channel.bytes());
        if diff.is_empty() {
            report.in_sync = true;
            return Ok(self.finish(report));
        }
        let mut budget = Budget::of(&summary.logs);
        let want = loop {
            match self.recv()? {
                Message::Envelopes(e) => self.take(e, &diff, &mut budget, &mut report)?,
                Message::Want(w) => break w,
                _ => return Err(self.protocol("expected envelopes or want")),
            }
        };
        report.sent = self.send_lacking(&diff, &want, &peer_id)?;
        self.channel.send(&Message::Done(done_of(&report)))?;
        match self.recv()? {
            Message::Done(d) => report.peer_done = Some(d),
            _ => return Err(self.protocol("expected done")),
        }
        Ok(self.finish(report))
    }

    /// The next message; a refusal from the other side ends the session.
    fn recv(&mut self) -> Result<Message> {
        match self.channel.recv()? {
            Message::Refused(r) => Err(SessionError::PeerRefused(r)),
            m => Ok(m),
        }
    }

    /// Tell the other side why, then end with that refusal.
    fn refuse(&mut self, reason: RefusalReason) -> SessionError {
        // Best effort: the session ends with our reason either way.
        let _ = self.channel.send(&Message::Refused(reason));
        SessionError::Refused(reason)
    }

    fn protocol(&mut self, what: &'static str) -> SessionError {
        let _ = self
            .channel
            .send(&Message::Refused(RefusalReason::Protocol));
        SessionError::Protocol(what)
    }

    fn hello(&self) -> Result<Hello> {
        let record = self.profile.record_id();
        let message = proof_message(self.channel.handshake_hash(), self.channel.side(), &record);
        let hashes = self.profile.access_hashes()?;
        // A member device that never synced holds no log yet.
        let head = hashes.last().copied().unwrap_or([0; 32]);
        Ok(Hello {
            version: VERSION,
            card: self.profile.identity_card().to_bytes(),
            record,
            proof: self.profile.sign(&message).to_vec(),
            access_len: u64::try_from(hashes.len()).unwrap_or(u64::MAX),
            access_head: head,
            token: match self.channel.side() {
                Side::Initiator => self.pairing.token,
                Side::Responder => None,
            },
        })
    }

    /// The other side's hello: version, card, proof over this channel,
    /// same record.
    fn check_hello(&mut self, hello: &Hello) -> Result<IdentityCard> {
        if hello.version != VERSION {
            return Err(self.refuse(RefusalReason::Version));
        }
        let Ok(card) = IdentityCard::from_bytes(&hello.card) else {
            return Err(self.refuse(RefusalReason::BadProof));
        };
        let side = self.channel.side().other();
        let hh = self.channel.handshake_hash().to_vec();
        if proof::verify_proof(&card, &hh, side, &hello.record, &hello.proof).is_err() {
            return Err(self.refuse(RefusalReason::BadProof));
        }
        if hello.record != self.profile.record_id() {
            return Err(self.refuse(RefusalReason::OtherRecord));
        }
        self.peer = Some((card.id(), hello.access_len));
        Ok(card)
    }

    fn require_member(&mut self, peer: &IdentityId) -> Result<()> {
        if may_take_part(self.profile.members(), peer, self.now_ms) {
            Ok(())
        } else {
            Err(self.refuse(RefusalReason::NotAMember))
        }
    }

    fn refuse_fork(
        &mut self,
        comparison: AccessComparison,
        peer: IdentityId,
        ours: &[[u8; 32]],
        theirs: u64,
    ) -> Result<()> {
        if comparison != AccessComparison::Fork {
            return Ok(());
        }
        self.remember_fork(peer, ours.len(), theirs)?;
        Err(self.refuse(RefusalReason::Fork))
    }

    fn remember_fork(&mut self, peer: IdentityId, ours: usize, theirs: u64) -> Result<()> {
        self.profile.record_access_fork(&AccessFork {
            peer,
            ours: u64::try_from(ours).unwrap_or(u64::MAX),
            theirs,
            at_ms: self.now_ms,
        })?;
        Ok(())
    }

    /// Our statements from `from` on, when the other side lacks them and
    /// may take part.
    fn statements_for(
        &self,
        comparison: AccessComparison,
        peer: &IdentityId,
    ) -> Result<Vec<crate::sharing::SignedStatement>> {
        match comparison {
            AccessComparison::TheyLack { from }
                if may_take_part(self.profile.members(), peer, self.now_ms) =>
            {
                Ok(self.profile.access_log()?.split_off(from))
            }
            _ => Ok(Vec::new()),
        }
    }

    /// Adopt the rest of a longer log; a continuation that does not start
    /// at our head is a fork.
    fn adopt(
        &mut self,
        statements: Vec<crate::sharing::SignedStatement>,
        peer: IdentityId,
        their_len: u64,
    ) -> Result<usize> {
        let Some(first) = statements.first() else {
            return Ok(0);
        };
        let ours = self.profile.access_hashes()?;
        // With no log yet, the creator's statement starts it (verified
        // against the creator this profile was set up with).
        let continues = match ours.last() {
            None => true,
            Some(head) => first.verify(ours.len()).is_ok_and(|s| s.prev == *head),
        };
        if !continues {
            self.remember_fork(peer, ours.len(), their_len)?;
            return Err(self.refuse(RefusalReason::Fork));
        }
        let n = statements.len();
        if self.profile.apply_access_direct(statements).is_err() {
            return Err(self.protocol("access statements that do not verify"));
        }
        Ok(n)
    }

    fn in_play(&self, peer: &IdentityId) -> Vec<LogName> {
        logs_in_play(
            self.profile.members(),
            &self.profile.device_id(),
            peer,
            self.now_ms,
        )
    }

    fn summaries(&self, in_play: &[LogName]) -> Result<Vec<LogSummary>> {
        in_play
            .iter()
            .map(|log| Ok(LogDigest::of(&self.profile.log_hashes(*log)?).summary(*log)))
            .collect()
    }

    /// Our hashes of the differing logs we may read (what we want).
    fn wants(&self, diff: &[LogName]) -> Result<Vec<LogHashes>> {
        let me = self.profile.device_id();
        diff.iter()
            .filter(|log| {
                self.profile
                    .members()
                    .may_read(&me, log.as_str(), self.now_ms)
            })
            .map(|log| {
                Ok(LogHashes {
                    log: log.as_str().to_string(),
                    hashes: self.profile.log_hashes(*log)?,
                })
            })
            .collect()
    }

    /// Send what the other side lacks of the differing logs it asked for
    /// and may read; returns how many envelopes.
    fn send_lacking(
        &mut self,
        diff: &[LogName],
        have: &[LogHashes],
        peer: &IdentityId,
    ) -> Result<u64> {
        let mut sent = 0u64;
        for wanted in have {
            let Ok(log) = wanted.log.parse::<LogName>() else {
                return Err(self.protocol("an unknown log name"));
            };
            if !diff.contains(&log)
                || !self
                    .profile
                    .members()
                    .may_read(peer, log.as_str(), self.now_ms)
            {
                continue;
            }
            let ours = self.profile.log_envelopes(log)?;
            let mut batch = Vec::new();
            let mut bytes = 0usize;
            for envelope in lacking(&ours, &wanted.hashes) {
                bytes += envelope.len();
                batch.push(envelope.to_vec());
                if bytes >= ENVELOPE_BATCH_BYTES {
                    sent += batch.len() as u64;
                    self.send_batch(log, std::mem::take(&mut batch))?;
                    bytes = 0;
                }
            }
            if !batch.is_empty() {
                sent += batch.len() as u64;
                self.send_batch(log, batch)?;
            }
        }
        Ok(sent)
    }

    fn send_batch(&mut self, log: LogName, envelopes: Vec<Vec<u8>>) -> Result<()> {
        self.channel.send(&Message::Envelopes(Envelopes {
            log: log.as_str().to_string(),
            envelopes,
        }))?;
        Ok(())
    }

    /// Merge a batch of envelopes of a differing log we may read.
    fn take(
        &mut self,
        batch: Envelopes,
        diff: &[LogName],
        budget: &mut Budget,
        report: &mut DirectReport,
    ) -> Result<()> {
        let me = self.profile.device_id();
        let log = match batch.log.parse::<LogName>() {
            Ok(log)
                if diff.contains(&log)
                    && self
                        .profile
                        .members()
                        .may_read(&me, log.as_str(), self.now_ms) =>
            {
                log
            }
            _ => return Err(self.protocol("envelopes of a log not asked for")),
        };
        if !budget.take(log, batch.envelopes.len()) {
            return Err(self.protocol("more envelopes than its summary counted"));
        }
        let applied = self.profile.apply_direct(log, batch.envelopes)?;
        report.merged += applied.merged as u64;
        report.known += applied.known as u64;
        report.refused += applied.rejected.len() as u64;
        (self.progress)(Progress {
            envelopes: report.merged + report.known + report.refused,
            bytes: self.channel.bytes().1,
        });
        Ok(())
    }

    fn report(&self, peer: IdentityCard, learned: usize) -> DirectReport {
        DirectReport {
            peer,
            statements_learned: learned,
            in_sync: false,
            sent: 0,
            merged: 0,
            known: 0,
            refused: 0,
            peer_done: None,
            bytes_sent: 0,
            bytes_received: 0,
            summary_bytes: 0,
            summary_time: None,
        }
    }

    fn finish(&self, mut report: DirectReport) -> DirectReport {
        let (sent, received) = self.channel.bytes();
        report.bytes_sent = sent;
        report.bytes_received = received;
        report
    }
}

/// How many envelopes the other side may still send per log: no more than
/// its own summary counted (a member cannot stream without end).
struct Budget(std::collections::BTreeMap<String, u64>);

impl Budget {
    fn of(summaries: &[LogSummary]) -> Self {
        Budget(summaries.iter().map(|l| (l.log.clone(), l.count)).collect())
    }

    fn take(&mut self, log: LogName, n: usize) -> bool {
        let n = u64::try_from(n).unwrap_or(u64::MAX);
        match self.0.get_mut(log.as_str()) {
            Some(left) if *left >= n => {
                *left -= n;
                true
            }
            _ => false,
        }
    }
}

/// Bytes both ways between two readings of [`Channel::bytes`].
fn wire_since(before: (u64, u64), after: (u64, u64)) -> u64 {
    after.0.saturating_sub(before.0) + after.1.saturating_sub(before.1)
}

fn done_of(report: &DirectReport) -> Done {
    Done {
        stored: report.merged,
        known: report.known,
        refused: report.refused,
    }
}

/// Whether a presented token is the expected one (compared in constant
/// time).
fn same_token(presented: Option<[u8; 16]>, expected: Option<[u8; 16]>) -> bool {
    match (presented, expected) {
        (Some(a), Some(b)) => a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0,
        _ => false,
    }
}
