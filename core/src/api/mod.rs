//! The mobile API: the one module with uniffi attributes (proc-macros, no
//! UDL). Kotlin and Swift bindings are generated from it by the
//! `uniffi-bindgen` workspace crate (`scripts/bindings-mobile.sh`).
//!
//! - [`home`]: [`SatchelHome`], the app's data directory and keystore:
//!   create, open or restore the patient's record; accept invites as a
//!   carer; open records shared with this identity.
//! - [`record`]: [`HealthRecord`], one opened record: list, query, add,
//!   amend, entered-in-error, history, summary; sync; sharing (invite,
//!   approve, grants, revoke, audit, recovery keys).
//! - [`nearby`]: edge sync with no relay: a [`NearbyListener`] showing a
//!   pairing code, sync with a code, mDNS discovery, and sync over a
//!   [`ByteStream`] the app connected (Bluetooth, Multipeer, Wi-Fi Aware).
//! - [`share_links`]: SMART Health Links and the emergency card on
//!   [`HealthRecord`] (create, list, revoke, who opened them).
//! - [`subscription`]: background sync with a [`ChangeListener`].
//! - [`keystore`]: the [`SecretStore`] callback interface the app implements
//!   over the Android Keystore or the iOS Keychain.
//! - [`error`]: [`SatchelError`], the one error type.
//! - [`types`]: the records and enums crossing the boundary.
//!
//! Blocking calls are quick, local and thread-safe; `async` calls (network)
//! run on one tokio runtime owned by the library (two worker threads).
//!
//! FHIR import/export and wearables ingest/summaries are methods of
//! [`HealthRecord`] defined in [`clinical`] (`import_fhir`, `export_fhir`,
//! `export_ips`, `ingest_wearables`, `wearable_summary`), taking and
//! returning JSON strings and small records, errors mapped into
//! [`SatchelError`] (see docs/mobile.md).

pub mod clinical;
pub mod error;
pub mod home;
pub mod keystore;
pub mod nearby;
pub mod record;
pub mod share_links;
pub mod subscription;
pub mod types;

#[cfg(test)]
mod tests;

use std::sync::OnceLock;

pub use error::SatchelError;
pub use home::SatchelHome;
pub use keystore::SecretStore;
pub use nearby::{ByteStream, NearbyListener};
pub use record::HealthRecord;
pub use share_links::{EmergencyCardParts, ShareLinkInfo, ShareLinkOpenInfo, ShareLinkRequest};
pub use subscription::{ChangeListener, Subscription};
pub use types::*;

static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();

/// The library's tokio runtime (started on first use).
pub(crate) fn runtime() -> error::Result<&'static tokio::runtime::Runtime> {
    if let Some(rt) = RUNTIME.get() {
        return Ok(rt);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("satchel")
        .enable_all()
        .build()
        .map_err(|_| SatchelError::storage("could not start the async runtime"))?;
    Ok(RUNTIME.get_or_init(|| rt))
}

/// Run blocking work (SQLite, Argon2, a sync round driven with
/// `handle.block_on`) on the runtime's blocking pool, and await it from any
/// executor (the foreign language's).
pub(crate) async fn in_background<T, F>(f: F) -> error::Result<T>
where
    T: Send + 'static,
    F: FnOnce(&tokio::runtime::Handle) -> error::Result<T> + Send + 'static,
{
    let rt = runtime()?;
    let handle = rt.handle().clone();
    rt.spawn_blocking(move || f(&handle))
        .await
        .map_err(|_| SatchelError::storage("a background task failed"))?
}

pub(crate) use crate::profile::now_ms;

/// The library's version, for the app's about screen and bug reports.
#[uniffi::export]
pub fn satchel_version() -> String {
    env!("CARGO_PKG_VERSION").to_string()
}
