//! SMART Health Links (HL7 "SMART Health Cards and Links" IG, STU1, links
//! specification; docs/sharing-links.md): the formats a link is made of,
//! I/O-free.
//!
//! - [`payload`]: the `shlink:/` payload (`url`, `key`, `exp`, `flag`,
//!   `label`, `v`) and its rules, for making links and reading them.
//! - [`jwe`]: the files, JWE compact with `alg: dir`, `enc: A256GCM`.
//!
//! What a link shows and the links a device made live in
//! [`crate::profile`] (`share_links`); talking to the relay that hosts them
//! in [`crate::sync::share_links`]. The relay's side of the protocol is
//! `satchel_protocol::wire::share_links`.

pub mod jwe;
pub mod payload;

pub use payload::{Flags, PayloadError, ShlPayload};
