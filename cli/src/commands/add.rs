//! `satchel add FILE`: add a FHIR R4 resource or Bundle.

use std::io::Read;
use std::path::PathBuf;

use anyhow::{Context, Result};
use satchel_core::fhir;

use crate::home;
use crate::output;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A JSON file holding one resource or a Bundle; `-` reads stdin.
    pub file: PathBuf,
    /// The system the data came from (kept for de-duplication), e.g. a
    /// hospital's FHIR base URL. Defaults to the patient's own entry.
    #[arg(long)]
    pub source: Option<String>,
    #[arg(long)]
    pub json: bool,
}

pub fn run(home_dir: Option<PathBuf>, args: Args) -> Result<()> {
    let mut profile = home::open(home_dir)?;
    let bytes = if args.file.as_os_str() == "-" {
        let mut buf = Vec::new();
        std::io::stdin()
            .read_to_end(&mut buf)
            .context("cannot read stdin")?;
        buf
    } else {
        std::fs::read(&args.file).with_context(|| format!("cannot read {}", args.file.display()))?
    };
    let spinner = output::spinner("Validating and encrypting");
    let value = fhir::parse_resource(&bytes)
        .context("the file is not a FHIR resource; nothing was added")?;
    let added = profile
        .add_resources(vec![value], args.source.as_deref())
        .context("nothing was added")?;
    spinner.finish_and_clear();
    if args.json {
        let out: Vec<_> = added
            .iter()
            .map(|a| serde_json::json!({"entry": a.entry.to_string(), "section": a.section.as_str()}))
            .collect();
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!(
            "Added {} entr{}.",
            added.len(),
            if added.len() == 1 { "y" } else { "ies" }
        );
        for a in &added {
            println!("  {}  {}", a.entry, a.section);
        }
    }
    Ok(())
}
