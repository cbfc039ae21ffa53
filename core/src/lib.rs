//! Satchel core: the patient-held health record that runs on the phone, the
//! desktop CLI and (for providers) integration engines.
//!
//! One folder per concern; each `mod.rs` says what it owns:
//! - [`ids`], and the base of [`crypto`] and [`sharing`], come from the
//!   protocol kernel (`satchel-protocol`, re-exported as [`protocol`]): the
//!   part devices and relays share.
//! - [`crypto`]: identities, envelope sealing, signatures, key wrapping, the vault.
//! - [`fhir`]: validation of incoming FHIR R4 resources and the fields we index.
//! - [`record`]: sections as automerge documents, entries, versions, queries (I/O-free).
//! - [`store`]: the storage trait, its in-memory and SQLite backends, migrations.
//! - [`sharing`]: the signed access log: who may read and write the record.
//! - [`audit`]: who viewed and who contributed, as rows and FHIR AuditEvent/Provenance.
//! - [`home`]: the layout of a home folder (own record, identity, shared
//!   records), one for the CLI and the mobile facade.
//! - [`profile`]: an unlocked home: keys from the vault, the record loaded from
//!   the encrypted store, and every change sealed before it is persisted.
//! - [`nearby`]: edge sync: direct device-to-device sync (discovery, the
//!   encrypted channel, one sync round) with no relay.
//! - [`api`]: the mobile API (uniffi) over all of the above, for Kotlin and Swift.
//! - `fuzzing` (hidden): one entry point per decoder of outside bytes, shared
//!   by the fuzz targets in `fuzz/` and the `fuzz_regressions` test.

/// Identifiers, from the protocol kernel.
pub use satchel_protocol::ids;

pub use satchel_protocol as protocol;

pub mod api;
pub mod audit;
pub mod crypto;
pub mod fhir;
#[doc(hidden)]
pub mod fuzzing;
pub mod home;
pub mod nearby;
pub mod profile;
pub mod record;
pub mod share_link;
pub mod sharing;
pub mod store;
pub mod sync;
pub mod wearables;

// The byte-level test vectors of docs/protocol.md, checked against the code.
#[cfg(test)]
mod protocol_vectors;

uniffi::setup_scaffolding!();
