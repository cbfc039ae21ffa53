//! The relay's own identity: an Ed25519 signing key and an X25519 key in a
//! card of role `relay`, kept in a file that only the relay's user can
//! read (like a TLS key), created on first start. A record's access log
//! names this card to make the relay a replica of the record
//! (`add-replica`); the relay shows it at `GET /v1/relay` and signs in to
//! its upstream relays with it. It never holds a section key.

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use satchel_protocol::crypto::{Identity, Role};

/// Load the identity kept at `path`, or make one named `name` and keep it
/// there (mode 0600, written to a temporary file and renamed, so a crash
/// never leaves half a key).
pub fn load_or_create(path: &Path, name: &str) -> anyhow::Result<Identity> {
    match std::fs::read(path) {
        Ok(bytes) => {
            let identity = Identity::from_secret_bytes(&bytes).map_err(|_| {
                anyhow::anyhow!(
                    "the relay identity file {} is not a relay identity (restore it from backup, \
                     or move it away to make a new identity; records that name the old one as a \
                     replica must name the new one)",
                    path.display()
                )
            })?;
            if identity.card().role != Role::Relay {
                anyhow::bail!(
                    "the identity in {} is not a relay's (role {})",
                    path.display(),
                    identity.card().role
                );
            }
            Ok(identity)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let identity = Identity::generate(name, Role::Relay, None)
                .map_err(|_| anyhow::anyhow!("could not make a relay identity"))?;
            write_private(path, &identity.to_secret_bytes()).with_context(|| {
                format!("cannot write the relay identity to {}", path.display())
            })?;
            tracing::info!(
                fingerprint = %identity.card().fingerprint(),
                "made a new relay identity"
            );
            Ok(identity)
        }
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(&tmp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_once_then_loaded_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("relay.identity");
        let made = load_or_create(&path, "Clinic relay").unwrap();
        assert_eq!(made.card().role, Role::Relay);
        let loaded = load_or_create(&path, "another name").unwrap();
        assert_eq!(loaded.card(), made.card());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "readable by the relay's user only");
        }
    }

    #[test]
    fn a_damaged_file_is_refused_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("relay.identity");
        std::fs::write(&path, b"not a key").unwrap();
        let err = load_or_create(&path, "x").unwrap_err().to_string();
        assert!(err.contains("not a relay identity"), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), b"not a key");
        let device = Identity::generate("phone", Role::PatientDevice, None).unwrap();
        std::fs::write(&path, device.to_secret_bytes()).unwrap();
        assert!(load_or_create(&path, "x").is_err());
    }
}
