//! `satchel init` and `satchel whoami`.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use satchel_core::profile::{Profile, Unlock};
use satchel_core::store::SqliteStore;

use crate::home;

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  satchel --home ~/satchel init --name \"Ada Lovelace\"\n  SATCHEL_PASSPHRASE=... satchel --home ~/satchel init --name \"Ada Lovelace\"   # no prompt (scripts)"
)]
pub struct Args {
    /// The record owner's name, as the patient wants it shown.
    #[arg(long)]
    pub name: String,
}

#[derive(Debug, clap::Args)]
#[command(after_help = "Example:\n  satchel whoami\n  satchel whoami --json")]
pub struct WhoamiArgs {
    /// Print JSON on stdout (for scripts) instead of text.
    #[arg(long)]
    pub json: bool,
}

pub fn run(home_dir: Option<PathBuf>, args: Args) -> Result<()> {
    let dir = home::require_home(home_dir)?;
    let path = home::db_path(&dir);
    if path.exists() {
        bail!(
            "{} already holds a Satchel profile; nothing was changed",
            dir.display()
        );
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let pass = home::passphrase(true)?;
    if pass.is_empty() {
        bail!("the passphrase is empty; choose one (nothing was created)");
    }
    let store = SqliteStore::open(&path)?;
    let profile = Profile::create(
        store,
        &args.name,
        Unlock::Passphrase {
            passphrase: pass.as_bytes(),
            params: None,
        },
    )?;
    outln!("Created record {}", profile.record_id());
    outln!("This device: {}", profile.device_id());
    outln!("Fingerprint: {}", profile.identity_card().fingerprint());
    Ok(())
}

pub fn run_whoami(home_dir: Option<PathBuf>, args: WhoamiArgs) -> Result<()> {
    let profile = home::open(home_dir)?;
    let card = profile.identity_card();
    if args.json {
        let out = serde_json::json!({
            "record_id": profile.record_id().to_string(),
            "identity": card,
            "fingerprint": card.fingerprint(),
        });
        outln!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        outln!("Record:      {}", profile.record_id());
        outln!("Device:      {}", card.id());
        outln!("Fingerprint: {}", card.fingerprint());
    }
    Ok(())
}
