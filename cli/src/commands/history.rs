//! `satchel history ENTRY`: every version of an entry.

use std::path::PathBuf;

use anyhow::{Context, Result};
use satchel_core::ids::EntryId;

use crate::home;
use crate::output;

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  satchel history 3cd6db21efc1449a3be6ddf51cd3c93e\n  satchel history 3cd6db21efc1449a3be6ddf51cd3c93e --json"
)]
pub struct Args {
    /// The entry (its full id, from `satchel list`).
    pub entry: EntryId,
    /// Print JSON on stdout (for scripts) instead of text.
    #[arg(long)]
    pub json: bool,
}

pub fn run(home_dir: Option<PathBuf>, args: Args) -> Result<()> {
    let profile = home::open(home_dir)?;
    let versions = profile
        .history(&args.entry)
        .context("no history for this entry (entry ids are in `satchel list --all`)")?;
    if args.json {
        let out: Vec<_> = versions.iter().map(output::version_json).collect();
        outln!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    let mut table = output::table(&["#", "RECORDED", "AUTHOR", "STATUS", "SUMMARY"]);
    output::keep_whole(&mut table, &[0, 1, 3]);
    output::at_least(&mut table, 4, 24);
    for (i, v) in versions.iter().enumerate() {
        table.add_row(output::one_line_row(vec![
            (i + 1).to_string(),
            output::format_ms(v.recorded_at_ms),
            v.author.short(),
            if v.concurrent {
                format!("{} (concurrent)", v.status.as_str())
            } else {
                v.status.as_str().to_string()
            },
            output::summary_text(&v.displays),
        ]));
    }
    outln!("{table}");
    if versions.iter().any(|v| v.concurrent) {
        outln!("Versions marked (concurrent) were made from the same earlier version without knowing of each other; the last one is shown as current. Amend the entry to settle it (an amendment over the current version clears the CONFLICT mark).");
    }
    Ok(())
}
