//! `satchel add FILE`: import a FHIR R4 resource or Bundle (collection,
//! transaction, searchset, document), streamed from the file with a
//! progress bar. Re-sent resources update their entries instead of
//! duplicating them; a Bundle about another patient is refused.

use std::fs::File;
use std::io::Read;
use std::path::PathBuf;

use anyhow::{Context, Result};
use satchel_core::profile::import::ImportReport;

use crate::home;
use crate::output;

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  satchel add discharge-summary.json\n  satchel add --source https://fhir.hospital.example/r4 patient-everything.json\n  cat allergy.json | satchel add -"
)]
pub struct Args {
    /// A JSON file holding one resource or a Bundle; `-` reads stdin.
    pub file: PathBuf,
    /// The system the data came from (kept for de-duplication), e.g. a
    /// hospital's FHIR base URL. Defaults to the patient's own entry.
    #[arg(long)]
    pub source: Option<String>,
    /// Print JSON on stdout (for scripts) instead of text.
    #[arg(long)]
    pub json: bool,
}

pub fn run(home_dir: Option<PathBuf>, args: Args) -> Result<()> {
    let mut profile = home::open(home_dir)?;
    let (reader, size): (Box<dyn Read>, Option<u64>) = if args.file.as_os_str() == "-" {
        (Box::new(std::io::stdin()), None)
    } else {
        let file = File::open(&args.file).with_context(|| {
            format!(
                "cannot read {} (check the path); nothing was added",
                args.file.display()
            )
        })?;
        let size = file.metadata().ok().map(|m| m.len());
        (Box::new(file), size)
    };
    let bar = output::byte_progress("Reading", size);
    let report = profile
        .import_reader(bar.wrap_read(reader), args.source.as_deref(), |n| {
            if n % 100 == 0 {
                bar.set_message(format!("Reading ({n} resources)"));
            }
        })
        .context("nothing was added")?;
    bar.finish_and_clear();
    print_report(&report, args.json)
}

fn print_report(report: &ImportReport, json: bool) -> Result<()> {
    if json {
        let items = |list: &[satchel_core::profile::Added]| -> Vec<serde_json::Value> {
            list.iter()
                .map(|a| serde_json::json!({"entry": a.entry.to_string(), "section": a.section.as_str()}))
                .collect()
        };
        let out = serde_json::json!({
            "added": items(&report.added),
            "updated": items(&report.updated),
            "unchanged": items(&report.unchanged),
            "references_resolved": report.references_resolved,
            "references_unresolved": report.references_unresolved,
            "skipped": report.skipped.iter().map(|(i, t)| serde_json::json!({"index": i, "resource_type": t})).collect::<Vec<_>>(),
        });
        outln!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    let n = report.added.len();
    outln!(
        "Added {n} entr{}, updated {}, unchanged {}.",
        if n == 1 { "y" } else { "ies" },
        report.updated.len(),
        report.unchanged.len()
    );
    for a in &report.added {
        outln!("  {}  {}", a.entry, a.section);
    }
    for a in &report.updated {
        outln!("  {}  {}  (new version)", a.entry, a.section);
    }
    if !report.skipped.is_empty() {
        let mut types: Vec<&str> = report.skipped.iter().map(|(_, t)| t.as_str()).collect();
        types.sort_unstable();
        types.dedup();
        outln!(
            "Skipped {} Bundle entr{} of types the record has no section for ({}).",
            report.skipped.len(),
            if report.skipped.len() == 1 {
                "y"
            } else {
                "ies"
            },
            types.join(", ")
        );
    }
    Ok(())
}
