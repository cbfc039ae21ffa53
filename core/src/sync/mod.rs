//! Relay sync: a sans-IO engine plus a reqwest/tokio transport.
//!
//! - [`engine`]: the state machine of one sync round (no I/O): what to send,
//!   what to apply, retries with backoff, re-authentication.
//! - [`transport`]: the shell: HTTP requests, the WebSocket push channel, and
//!   the loop that drives the engine against a [`crate::profile::Profile`].
//! - [`state`]: [`SyncState`], what a device keeps between rounds (cursors,
//!   the feed and access-log positions, logs to pull again); the caller owns
//!   and persists it.
//! - [`currency`]: how current a copy is (stale when synced through a
//!   replica relay cut off from the record's home relay).
//! - [`ledger`]: completeness of each log on this device (change numbers
//!   held per author, refusals, changes waiting for dependencies).
//! - [`link`]: adding another device of the same patient with a one-time code.
//! - [`moving`]: moving a record to another relay (name it, copy the
//!   access log, upload everything, then retire the old relay).
//! - [`share_links`]: SMART Health Links on the relay that hosts them
//!   (create, list, revoke, live links refreshed after a round).
//! - [`sharing`]: invites and approval, grants and revocations on the
//!   relay, recovery keys and restore, the relay's audit log.
//! - [`views`]: reads a member answers from its own copy (a provider's
//!   FHIR gateway), noted durably and reported to the relay's audit trail.
//! - [`wire`]: the JSON bodies of docs/protocol.md (from the protocol kernel).
//! - [`relay_url`]: the rule for relay addresses (`https://`, or plain
//!   `http://` to loopback only), applied wherever an address comes in.
//! - [`tls`]: rustls (ring provider) with the platform's trust store or a
//!   pinned CA, shared by HTTP and the WebSocket.
//!
//! Durability: local changes live in the store's outbox until the relay
//! acknowledges them (each relay a device uses acknowledges for itself:
//! [`crate::store::Owed`]), so a round that fails (offline, relay restarted) loses
//! nothing; the next round sends them again and the relay de-duplicates by
//! envelope hash.

pub mod currency;
pub mod engine;
pub mod ledger;
pub mod link;
pub mod moving;
pub mod share_links;
pub mod sharing;
pub mod state;
pub mod tls;
pub mod transport;
pub mod views;
pub use satchel_protocol::relay_url;
pub use satchel_protocol::wire;

pub use engine::{RoundReport, SyncEngine, SyncError};
pub use relay_url::{RelayUrl, RelayUrlError};
pub use state::SyncState;
pub use tls::{PinnedRoots, RelayTrust, TlsError};
pub use transport::{RelayClient, TransportError};
