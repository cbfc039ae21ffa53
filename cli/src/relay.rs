//! How this process reaches relays. Addresses follow core's one rule
//! ([`RelayUrl`]: `https://`, or plain `http://` to this machine only;
//! `--server` values are checked when the command line is parsed, before
//! anything is read or changed). Certificates are checked against the
//! platform's trust store, or, with `--relay-ca FILE` (or
//! `SATCHEL_RELAY_CA`), against that CA alone (pinned: nothing else is
//! trusted). The trust is set once at start-up, for every relay this run
//! talks to.

use std::path::Path;
use std::sync::OnceLock;

use anyhow::{Context, Result};
use satchel_core::sync::{PinnedRoots, RelayClient, RelayTrust, RelayUrl};

static TRUST: OnceLock<RelayTrust> = OnceLock::new();

/// Set the trust for this run from `--relay-ca` (none: the platform store).
pub fn init(ca: Option<&Path>) -> Result<()> {
    let trust = match ca {
        None => RelayTrust::Platform,
        Some(path) => {
            let pem = std::fs::read(path).with_context(|| {
                format!(
                    "cannot read the relay CA file {} (--relay-ca / SATCHEL_RELAY_CA)",
                    path.display()
                )
            })?;
            let roots = PinnedRoots::from_pem(&pem).with_context(|| {
                format!(
                    "{} is not a PEM certificate; --relay-ca takes the CA certificate that signed the relay's certificate",
                    path.display()
                )
            })?;
            RelayTrust::Pinned(roots)
        }
    };
    let _ = TRUST.set(trust);
    Ok(())
}

/// This run's trust (for long-running services that make their own
/// clients, e.g. the provider gateway).
pub fn trust() -> RelayTrust {
    TRUST.get().cloned().unwrap_or_default()
}

/// A client for `url` with this run's trust.
pub fn client(url: &RelayUrl) -> Result<RelayClient> {
    let trust = TRUST.get().cloned().unwrap_or_default();
    RelayClient::connect(url, &trust)
        .with_context(|| format!("cannot set up a connection to the relay at {url}"))
}

/// A client for a relay address read from a code (invite, device link):
/// the same rule as `--server`.
pub fn client_for(text: &str) -> Result<RelayClient> {
    let url = RelayUrl::parse(text)
        .with_context(|| "the code names a relay that cannot be used".to_string())?;
    client(&url)
}
