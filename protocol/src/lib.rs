//! The Satchel protocol kernel: what devices, relays and (soon) peers must
//! agree on byte for byte, and nothing else. No I/O, no clock reads, no
//! CRDT: callers pass the time in and own their storage.
//!
//! One folder or file per concern:
//! - [`ids`]: record, identity, entry and link (mailbox) identifiers.
//! - [`crypto`]: identities and cards, envelope sealing and signatures, key
//!   wrapping (HPKE), the symmetric at-rest layer.
//! - [`section`]: the sections of a record (the unit of sharing and keys).
//! - [`label`]: the privacy labels of sensitive entries and their HL7
//!   sensitivity codes.
//! - [`sharing`]: the signed access log, its verification and [`sharing::Members`],
//!   the one authorization rule (who may read, write, administer, snapshot).
//! - [`wire`]: the relay protocol (docs/protocol.md): one type per endpoint,
//!   its method, path, query and JSON bodies, and the login signing rule.
//! - [`accept`]: the one acceptance rule for envelopes (relay uploads, device
//!   pulls, peers).
//! - [`direct`]: the direct channel between two member devices (edge sync):
//!   its messages and byte format, the identity proof, the reconciliation rules.
//! - [`relay_url`]: the one rule for relay addresses (`https://`, or
//!   `http://` to this machine only), for devices and relays alike.
//! - [`discovery`]: the local-network advert of a member device (DNS-SD
//!   instance name that rotates hourly, sealed device info), from a key only
//!   members can compute.
//!
//! `satchel-core` (the device) re-exports all of this; `satchel-sync-server`
//! (the relay) depends on this crate alone. See docs/adr/0008-protocol-crate.md.

pub mod accept;
pub mod crypto;
pub mod direct;
pub mod discovery;
#[doc(hidden)]
pub mod fuzzing;
pub mod ids;
pub mod label;
pub mod relay_url;
pub mod section;
pub mod sharing;
pub mod wire;

pub use label::{ParseLabelError, PrivacyLabel};
pub use section::{LogName, ParseLogNameError, ParseSectionError, Section};
