//! `satchel amend ENTRY FILE` and `satchel entered-in-error ENTRY`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use satchel_core::fhir;
use satchel_core::ids::EntryId;

use crate::home;

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  satchel amend 3cd6db21efc1449a3be6ddf51cd3c93e corrected-allergy.json"
)]
pub struct Args {
    /// The entry to amend (its full id, from `satchel list`).
    pub entry: EntryId,
    /// The corrected resource (JSON file).
    pub file: PathBuf,
}

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  satchel entered-in-error 3cd6db21efc1449a3be6ddf51cd3c93e\n  satchel history 3cd6db21efc1449a3be6ddf51cd3c93e   # the entry and its versions are kept"
)]
pub struct EieArgs {
    /// The entry to hide (its full id, from `satchel list`).
    pub entry: EntryId,
}

pub fn run(home_dir: Option<PathBuf>, args: Args) -> Result<()> {
    let mut profile = home::open(home_dir)?;
    let bytes = std::fs::read(&args.file).with_context(|| {
        format!(
            "cannot read {} (check the path); nothing was changed",
            args.file.display()
        )
    })?;
    let value = fhir::parse_resource(&bytes)
        .context("the file is not a FHIR resource; nothing was changed")?;
    profile.amend(&args.entry, value).context(
        "nothing was changed (entry ids are in `satchel list --all`; an amendment keeps the resource type)",
    )?;
    outln!(
        "Amended {}; earlier versions remain in its history.",
        args.entry
    );
    Ok(())
}

pub fn run_eie(home_dir: Option<PathBuf>, args: EieArgs) -> Result<()> {
    let mut profile = home::open(home_dir)?;
    profile
        .mark_entered_in_error(&args.entry)
        .context("nothing was changed (entry ids are in `satchel list --all`)")?;
    outln!(
        "Marked {} entered-in-error; it is hidden from lists and kept in history.",
        args.entry
    );
    Ok(())
}
