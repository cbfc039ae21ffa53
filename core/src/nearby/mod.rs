//! Edge sync: two member devices of one record sync directly, with no relay
//! and no internet (docs/adr/0009-direct-channel.md).
//!
//! - `discovery`: finding nearby members' devices on the local network
//!   (DNS-SD/mDNS with an opaque, rotating name), or from a pairing code.
//! - `channel`: the encrypted, mutually authenticated channel over any byte
//!   stream (TCP, or a platform transport): a Noise handshake, then each
//!   device proves its identity key over the handshake.
//! - `session`: one direct sync round over a channel: the access log, then
//!   per-log summaries, then the sealed envelopes each side lacks, every one
//!   checked with the shared acceptance rule.

pub mod channel;
pub mod discovery;
pub mod net;
pub mod pairing;
pub mod session;
