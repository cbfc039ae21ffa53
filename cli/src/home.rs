//! Where a profile lives (`--home DIR`, file `satchel.db` inside) and how it
//! is unlocked: `SATCHEL_PASSPHRASE` when set, otherwise a prompt.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use satchel_core::profile::{Profile, Unlock};
use satchel_core::store::SqliteStore;
use zeroize::Zeroizing;

pub const DB_FILE: &str = "satchel.db";

pub type HomeProfile = Profile<SqliteStore>;

pub fn require_home(home: Option<PathBuf>) -> Result<PathBuf> {
    match home {
        Some(h) => Ok(h),
        None => bail!("no home directory: pass --home DIR or set SATCHEL_HOME"),
    }
}

pub fn db_path(home: &Path) -> PathBuf {
    home.join(DB_FILE)
}

/// The passphrase from `SATCHEL_PASSPHRASE`, else from the terminal.
pub fn passphrase(confirm: bool) -> Result<Zeroizing<String>> {
    if let Ok(p) = std::env::var("SATCHEL_PASSPHRASE") {
        return Ok(Zeroizing::new(p));
    }
    let first =
        Zeroizing::new(rpassword::prompt_password("Passphrase: ").context(
            "could not read a passphrase (set SATCHEL_PASSPHRASE when not on a terminal)",
        )?);
    if confirm {
        let again = Zeroizing::new(rpassword::prompt_password("Repeat passphrase: ")?);
        if again != first {
            bail!("the two passphrases differ; nothing was created");
        }
    }
    Ok(first)
}

/// Open the profile in `home`, unlocking with the passphrase.
pub fn open(home: Option<PathBuf>) -> Result<HomeProfile> {
    let home = require_home(home)?;
    let path = db_path(&home);
    if !path.exists() {
        bail!(
            "no Satchel profile in {} (run `satchel --home {} init --name NAME`)",
            home.display(),
            home.display()
        );
    }
    let pass = passphrase(false)?;
    let store = SqliteStore::open(&path)?;
    let profile = Profile::open(
        store,
        Unlock::Passphrase {
            passphrase: pass.as_bytes(),
            params: None,
        },
    )?;
    Ok(profile)
}
