//! Sharing: who may read and write a record, as a chain of signed access
//! statements that every client and the relay verify for themselves.
//!
//! The record's creator device is the root of trust. Owner devices add
//! devices and a recovery key; owner devices and managers grant roles
//! (manager, writer, reader) on sections, with an optional expiry, and
//! revoke them. Section keys travel inside the statements, wrapped (HPKE)
//! to each identity that may read; a revocation rotates the key of every
//! section taken away, wrapping the new epoch's key to the remaining
//! readers only and chaining the old key under the new one. See
//! docs/protocol.md ("Access log") and docs/security.md.
//!
//! This module is I/O-free: it parses, verifies and interprets statements.
//! Making them (with keys) is the device's job (`satchel-core`'s profile);
//! recovery keys are the device's too.

mod members;
mod rights;
mod statement;
#[cfg(test)]
mod tests;

pub use members::{
    base_section, verify_log, verify_next, Access, Grant, Members, RecordMoved, Replica,
    RetiredRelay,
};
pub use rights::{MemberRole, Rights};
pub use statement::{
    chain_aad, key_wrap_aad, statement_hash, AccessChange, AccessStatement, GrantRole, KeyWrap,
    Rotation, SignedStatement, STATEMENT_DOMAIN,
};

use crate::ids::IdentityId;

/// Why a statement or log was refused. No health data: ids and kinds only.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SharingError {
    #[error("access statement {index}: not a valid statement")]
    Malformed { index: usize },
    #[error("access statement {index}: signature does not verify")]
    BadSignature { index: usize },
    #[error("access statement {index}: signed by {by}, who may not make it")]
    NotAllowed { index: usize, by: IdentityId },
    #[error("access statement {index}: belongs to another record")]
    WrongRecord { index: usize },
    #[error("access statement {index}: does not follow the log's previous statement (the log changed; fetch it and sign again)")]
    Fork { index: usize },
    #[error("access statement {index}: {why}")]
    Invalid { index: usize, why: &'static str },
    #[error("access statement could not be encoded")]
    Encode,
}
