//! The direct channel between two member devices of one record (edge sync,
//! docs/protocol.md "Direct channel"): what travels over it, byte for
//! byte, and the pure rules both ends apply. No I/O, no clock.
//!
//! - [`message`]: the messages and their byte format (postcard), the
//!   framing limits.
//! - [`proof`]: the identity proof each device signs over the Noise
//!   handshake hash (binding the channel to its identity key).
//! - [`reconcile`]: which logs a peer may be offered, per-log summaries,
//!   what the other side lacks, and how two access logs compare (behind,
//!   ahead, forked).
//!
//! A session, initiator `I` and responder `R`, after the Noise XX
//! handshake ([`NOISE_PATTERN`], [`PROLOGUE`]):
//!
//! ```text
//! I → R  Hello      card, record, proof, access-log length and head
//! R → I  Hello      (or Refused)
//! I → R  Access     statements R lacks (when I's log is longer and R a member)
//! R → I  Access     statements I lacks (or Refused: I is not a member)
//! I → R  Summary    per-log count and digest          ┐ two devices in sync
//! R → I  Summary    + Have: R's hashes of logs that differ ┘ stop here
//! I → R  Envelopes* what R lacks and may read; then Want: I's hashes
//! R → I  Envelopes* what I lacks and may read; then Done (what R stored)
//! I → R  Done       (what I stored)
//! ```

pub mod message;
pub mod proof;
pub mod reconcile;

pub use message::{
    Done, Envelopes, Hello, LogHashes, LogSummary, Message, MessageError, RefusalReason, Summary,
    MAX_MESSAGE_BYTES,
};
pub use proof::{proof_message, Side};
pub use reconcile::{AccessComparison, LogDigest};

/// The direct channel's version (in [`Hello`]).
pub const VERSION: u16 = 1;

/// The Noise protocol both ends run: XX (each side's static key sent
/// encrypted), X25519, ChaCha20-Poly1305, SHA-256. The static keys are
/// fresh per connection: identity is proven by [`proof`] instead.
pub const NOISE_PATTERN: &str = "Noise_XX_25519_ChaChaPoly_SHA256";

/// Noise prologue: both ends must agree on it, or the handshake fails.
pub const PROLOGUE: &[u8] = b"satchel direct v1";

/// The largest Noise transport message (the Noise spec's limit).
pub const MAX_NOISE_MESSAGE: usize = 65_535;

/// Plaintext bytes per Noise transport message (the limit less the tag).
pub const NOISE_CHUNK: usize = MAX_NOISE_MESSAGE - 16;

/// Envelope bytes per [`Envelopes`] message (a batch is split at this
/// size, and never holds more than one oversized envelope).
pub const ENVELOPE_BATCH_BYTES: usize = 1024 * 1024;
