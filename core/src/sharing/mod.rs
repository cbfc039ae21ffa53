//! Sharing: who may read and write a record, as a log of signed access
//! statements that every client (and the relay) verifies for itself.
//!
//! Version 1 knows the owner's devices: the record's creator device is the
//! root of trust, and an `add-device` statement signed by an owner device
//! adds another. Grants to carers and providers, revocation and key
//! rotation build on the same log (see docs/protocol.md).

mod statement;

pub use statement::{
    verify_log, AccessStatement, Members, SharingError, SignedStatement, STATEMENT_DOMAIN,
};
