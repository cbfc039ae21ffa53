//! The direct channel's messages and their byte format.
//!
//! Each message is one [`Message`] value in postcard encoding (varint
//! lengths, raw bytes; docs/protocol.md has the layout and test vectors),
//! sent over the Noise channel as a 4-byte big-endian length and the
//! encoded bytes, split into Noise transport messages. A message over
//! [`MAX_MESSAGE_BYTES`] is refused before it is read.
//!
//! `Debug` shows kinds and sizes only: no names, no ids, no content.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::ids::RecordId;
use crate::sharing::SignedStatement;

/// The largest message accepted (an [`Envelopes`] batch holds at most one
/// envelope over the batch target, and an envelope is at most
/// [`crate::wire::MAX_ENVELOPE_BYTES`]).
pub const MAX_MESSAGE_BYTES: usize =
    2 * super::ENVELOPE_BATCH_BYTES + crate::wire::MAX_ENVELOPE_BYTES;

/// One message of a direct session (see the module doc of
/// [`crate::direct`] for their order).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    /// Who this device is, for which record, proven over the handshake.
    Hello(Hello),
    /// The session ends: why.
    Refused(RefusalReason),
    /// Access statements the other side lacks (may be empty).
    Access(Vec<SignedStatement>),
    /// Per-log summaries, and (from the responder) the hashes of the logs
    /// that differ that it wants to receive.
    Summary(Summary),
    /// Sealed envelopes of one log, exactly as stored.
    Envelopes(Envelopes),
    /// The initiator's hashes of the logs that differ that it wants to
    /// receive; ends the initiator's envelopes.
    Want(Vec<LogHashes>),
    /// The session's end: what the sender stored of what it received.
    Done(Done),
}

/// The first message of each side.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// [`super::VERSION`].
    pub version: u16,
    /// The device's identity card ([`crate::crypto::IdentityCard::to_bytes`]).
    pub card: Vec<u8>,
    /// The record this session is about.
    pub record: RecordId,
    /// Ed25519 signature by the card's key over [`super::proof_message`].
    pub proof: Vec<u8>,
    /// How many statements the sender's verified access log holds.
    pub access_len: u64,
    /// The hash of its last statement.
    pub access_head: [u8; 32],
    /// The one-time token of a pairing code (from the device that scanned
    /// it; none when the devices found each other otherwise).
    pub token: Option<[u8; 16]>,
}

/// Why a session was refused. Kinds only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RefusalReason {
    /// Another version of the direct channel.
    Version,
    /// The identity proof does not verify.
    BadProof,
    /// The devices hold different records.
    OtherRecord,
    /// Not a member of the record, or no longer (revoked, expired).
    NotAMember,
    /// The pairing code's token is wrong, missing or already used.
    BadToken,
    /// Not the device the pairing code names.
    WrongDevice,
    /// The two access logs diverge.
    Fork,
    /// A message out of order or that does not parse.
    Protocol,
}

impl RefusalReason {
    /// The reason in words.
    pub const fn message(self) -> &'static str {
        match self {
            RefusalReason::Version => "the other device speaks another version of the direct channel",
            RefusalReason::BadProof => "the other device's identity proof does not verify",
            RefusalReason::OtherRecord => "the two devices hold different records",
            RefusalReason::NotAMember => {
                "not a member of this record (never granted, revoked, or the grant expired)"
            }
            RefusalReason::BadToken => {
                "the pairing code is wrong or was already used (show a new one)"
            }
            RefusalReason::WrongDevice => {
                "the device that answered is not the one the pairing code names"
            }
            RefusalReason::Fork => {
                "the two devices' access logs diverge (a fork: only a misbehaving relay can cause one)"
            }
            RefusalReason::Protocol => "a message was out of order or did not parse",
        }
    }
}

impl fmt::Display for RefusalReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

/// A log's summary: how many envelopes the sender holds and a digest of
/// their hashes ([`super::LogDigest`]).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogSummary {
    pub log: String,
    pub count: u64,
    pub digest: [u8; 16],
}

/// The hashes of every envelope the sender holds in one log.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogHashes {
    pub log: String,
    pub hashes: Vec<[u8; 32]>,
}

/// Summaries of the logs in play, and the hashes of the differing logs the
/// sender wants to receive (empty from the initiator).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub logs: Vec<LogSummary>,
    pub have: Vec<LogHashes>,
}

/// Envelopes of one log, in the sender's store order.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelopes {
    pub log: String,
    pub envelopes: Vec<Vec<u8>>,
}

/// What the sender did with the envelopes it received.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Done {
    /// Stored (new to the sender).
    pub stored: u64,
    /// Already held.
    pub known: u64,
    /// Refused by the acceptance rule or on opening.
    pub refused: u64,
}

/// Why bytes are not a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MessageError {
    #[error("a direct-channel message exceeds {MAX_MESSAGE_BYTES} bytes")]
    TooLarge,
    #[error("a direct-channel message does not parse")]
    Malformed,
    #[error("a direct-channel message could not be encoded")]
    Encode,
}

impl Message {
    /// The message's bytes.
    pub fn to_bytes(&self) -> Result<Vec<u8>, MessageError> {
        let bytes = postcard::to_allocvec(self).map_err(|_| MessageError::Encode)?;
        if bytes.len() > MAX_MESSAGE_BYTES {
            return Err(MessageError::TooLarge);
        }
        Ok(bytes)
    }

    /// Parse exactly one message (trailing bytes are refused).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, MessageError> {
        if bytes.len() > MAX_MESSAGE_BYTES {
            return Err(MessageError::TooLarge);
        }
        match postcard::take_from_bytes::<Message>(bytes) {
            Ok((message, [])) => Ok(message),
            _ => Err(MessageError::Malformed),
        }
    }

    /// The message's kind, for errors and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Message::Hello(_) => "hello",
            Message::Refused(_) => "refused",
            Message::Access(_) => "access",
            Message::Summary(_) => "summary",
            Message::Envelopes(_) => "envelopes",
            Message::Want(_) => "want",
            Message::Done(_) => "done",
        }
    }
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Message::Envelopes(e) => write!(f, "Envelopes({} envelopes)", e.envelopes.len()),
            Message::Access(s) => write!(f, "Access({} statements)", s.len()),
            Message::Summary(s) => {
                write!(f, "Summary({} logs, {} wanted)", s.logs.len(), s.have.len())
            }
            Message::Want(w) => write!(f, "Want({} logs)", w.len()),
            Message::Refused(r) => write!(f, "Refused({r:?})"),
            Message::Done(d) => write!(f, "{d:?}"),
            Message::Hello(_) => f.write_str("Hello"),
        }
    }
}

impl fmt::Debug for Hello {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hello")
            .field("version", &self.version)
            .field("access_len", &self.access_len)
            .finish_non_exhaustive()
    }
}

macro_rules! opaque_debug {
    ($($t:ty),*) => {$(
        impl fmt::Debug for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(stringify!($t))
            }
        }
    )*};
}
opaque_debug!(LogSummary, LogHashes, Summary, Envelopes);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn done_byte_vector() {
        // Pinned (docs/protocol.md): variant 6, then three varints.
        let m = Message::Done(Done {
            stored: 1,
            known: 2,
            refused: 300,
        });
        let bytes = m.to_bytes().unwrap();
        assert_eq!(bytes, vec![6, 1, 2, 0xac, 0x02]);
        assert_eq!(Message::from_bytes(&bytes).unwrap(), m);
    }

    #[test]
    fn envelopes_byte_vector() {
        // Variant 4, log name (length, bytes), count, each envelope
        // (length, bytes): the envelope bytes travel as they are.
        let m = Message::Envelopes(Envelopes {
            log: "labs".into(),
            envelopes: vec![vec![0xde, 0xad], vec![]],
        });
        let bytes = m.to_bytes().unwrap();
        assert_eq!(
            bytes,
            vec![4, 4, b'l', b'a', b'b', b's', 2, 2, 0xde, 0xad, 0]
        );
        assert_eq!(Message::from_bytes(&bytes).unwrap(), m);
    }

    #[test]
    fn trailing_garbage_unknown_variants_and_oversize_are_refused() {
        let mut bytes = Message::Want(vec![]).to_bytes().unwrap();
        assert_eq!(Message::from_bytes(&bytes).unwrap(), Message::Want(vec![]));
        bytes.push(0);
        assert_eq!(Message::from_bytes(&bytes), Err(MessageError::Malformed));
        assert_eq!(Message::from_bytes(&[99]), Err(MessageError::Malformed));
        assert_eq!(Message::from_bytes(&[]), Err(MessageError::Malformed));
        // A count that promises more than the bytes hold.
        assert_eq!(
            Message::from_bytes(&[5, 0xff, 0xff, 0x03]),
            Err(MessageError::Malformed)
        );
        let big = vec![0u8; MAX_MESSAGE_BYTES + 1];
        assert_eq!(Message::from_bytes(&big), Err(MessageError::TooLarge));
    }

    #[test]
    fn debug_shows_no_content() {
        let m = Message::Envelopes(Envelopes {
            log: "mental-health".into(),
            envelopes: vec![b"CANARY".to_vec()],
        });
        let shown = format!("{m:?}");
        assert!(
            !shown.contains("CANARY") && !shown.contains("mental"),
            "{shown}"
        );
    }
}
