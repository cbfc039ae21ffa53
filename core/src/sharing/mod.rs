//! Sharing on the device: the access log's types and rules from
//! [`satchel_protocol::sharing`], re-exported, plus the recovery key that a
//! patient writes down ([`RecoveryKey`]), which only devices make and use.

pub use satchel_protocol::sharing::*;

mod recovery;

pub use recovery::{RecoveryKey, RecoveryKeyError};
