//! Replication between relays (issue 15, docs/adr/0011-replica-relays.md):
//! a relay started with `--upstream URL` signs in to each upstream relay
//! with its own identity ([`crate::identity`]) and exchanges, for every
//! record whose access log names it a replica, the access log, envelopes
//! and snapshots, through the ordinary endpoints.
//!
//! - [`upstream`]: the relay's HTTP client of one upstream relay (HTTP/1.1
//!   over TCP or TLS with hyper and rustls; no reqwest in the relay), typed
//!   by the protocol's one-type-per-endpoint wire module, and its login.
//! - [`replicator`]: the loop with one upstream: which records, the access
//!   log and envelopes in both directions, durable cursors, backoff.
//! - [`contact`]: when each record was last exchanged with the upstream,
//!   which the feed tells the devices this relay serves.

pub mod contact;
pub mod replicator;
pub mod upstream;
