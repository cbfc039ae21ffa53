//! `satchel provider push`: a provider system with a write grant adds FHIR
//! to a patient's record and sends it through the relay in one step.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use satchel_core::fhir::import::collect_resources;
use satchel_core::sync::RelayUrl;
use serde_json::json;

use crate::home;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Import a FHIR resource or Bundle into a patient's record shared with
    /// this home (signed by this provider) and sync it to the relay.
    #[command(
        after_help = "Example:\n  satchel --home ~/gp provider push --server http://127.0.0.1:8787 --record 3f2a... results.json"
    )]
    Push(PushArgs),
}

#[derive(Debug, clap::Args)]
pub struct PushArgs {
    #[arg(long, env = "SATCHEL_SERVER")]
    pub server: RelayUrl,
    /// The patient's record id (or its first characters; see `satchel list`).
    #[arg(long)]
    pub record: String,
    /// The sending system's name, kept with each entry for de-duplication
    /// and provenance (default: this identity's organisation or name).
    #[arg(long)]
    pub source: Option<String>,
    /// FHIR R4 JSON file (one resource or a Bundle), or - for stdin.
    pub file: PathBuf,
    /// Print JSON on stdout (for scripts) instead of text.
    #[arg(long)]
    pub json: bool,
}

pub fn run(home_dir: Option<PathBuf>, command: Command) -> Result<()> {
    let Command::Push(args) = command;
    let mut profile = home::open_record(home_dir, Some(&args.record))?;
    if profile.is_owner_device() {
        bail!("this is the patient's own record; use `satchel add` (provider push is for records shared with a provider)");
    }
    let source = args.source.clone().unwrap_or_else(|| {
        let card = profile.identity_card();
        card.organisation
            .clone()
            .unwrap_or_else(|| card.display_name.clone())
    });
    let reader: Box<dyn std::io::Read> = if args.file.as_os_str() == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        Box::new(std::io::BufReader::new(
            std::fs::File::open(&args.file)
                .with_context(|| format!("cannot open {}", args.file.display()))?,
        ))
    };
    let (_, incoming) = collect_resources(reader).context(
        "the input is not FHIR R4 JSON; nothing was imported (fix the file and push again)",
    )?;
    let report = profile
        .import_contribution(incoming, Some(&source))
        .context("the push was refused")?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let mut client = crate::relay::client(&args.server)?;
    let spinner = crate::output::slow_spinner(&format!("Sending to {}", args.server));
    let round = rt.block_on(client.sync(&mut profile));
    spinner.finish_and_clear();
    let round = round.map_err(|e| {
        crate::output::relay_error(
            &args.server,
            "imported here, but sending to the relay failed (it stays queued; run `satchel sync`)",
            e,
        )
    })?;
    if args.json {
        outln!(
            "{}",
            json!({"added": report.added.len(), "updated": report.updated.len(),
                   "unchanged": report.unchanged.len(), "skipped": report.skipped.len(),
                   "sent": round.uploaded, "record": profile.record_id(), "source": source})
        );
    } else {
        outln!(
            "Pushed to {}'s record as {source}: {} added, {} updated, {} unchanged, {} skipped; {} envelope(s) sent.",
            profile.owner_name(),
            report.added.len(),
            report.updated.len(),
            report.unchanged.len(),
            report.skipped.len(),
            round.uploaded
        );
    }
    Ok(())
}
