//! `satchel export --format fhir|ips -o FILE`: a FHIR collection Bundle of
//! the record (optionally some sections), or an International Patient
//! Summary document Bundle. The file holds health data in the clear: it is
//! written only where the user asks, with owner-only permissions on Unix.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use satchel_core::record::Section;

use crate::{home, output};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// A FHIR R4 collection Bundle, resources exactly as stored.
    Fhir,
    /// An International Patient Summary (FHIR R4 document Bundle).
    Ips,
}

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  satchel export --format ips -o patient-summary.json\n  satchel export --format fhir --sections medications,allergies -o meds.json\n  satchel export --format fhir -o - | jq .entry[].resource.resourceType"
)]
pub struct Args {
    /// What to export.
    #[arg(long, value_enum)]
    pub format: Format,
    /// Only these sections (comma-separated; --format fhir only).
    #[arg(long, value_delimiter = ',')]
    pub sections: Option<Vec<Section>>,
    /// The file to write (`-` for standard output).
    #[arg(short = 'o', long = "output")]
    pub output: PathBuf,
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

pub fn run(home_dir: Option<PathBuf>, args: Args) -> Result<()> {
    if args.format == Format::Ips && args.sections.is_some() {
        anyhow::bail!(
            "--sections applies to --format fhir only; nothing was written (drop --sections, or use --format fhir)"
        );
    }
    let profile = home::open(home_dir)?;
    let spinner = output::slow_spinner("Exporting");
    let exported = match args.format {
        Format::Fhir => profile.export_fhir(args.sections.as_deref()),
        Format::Ips => profile.export_ips(),
    };
    let bundle = match exported {
        Ok(bundle) => bundle,
        Err(e) => {
            spinner.finish_and_clear();
            return Err(anyhow::Error::new(e).context("nothing was written"));
        }
    };
    if let Some(tag) = bundle["meta"]["tag"].as_array().and_then(|tags| {
        tags.iter().find(|t| {
            t["system"] == satchel_core::fhir::export::COMPLETENESS_SYSTEM
                && t["code"] == "incomplete"
        })
    }) {
        eprintln!(
            "warning: {} (the export is marked so; run `satchel sync`)",
            tag["display"].as_str().unwrap_or("known to be incomplete")
        );
    }
    let mut bytes = serde_json::to_vec_pretty(&bundle)?;
    bytes.push(b'\n');
    let entries = bundle
        .get("entry")
        .and_then(|e| e.as_array())
        .map_or(0, Vec::len);
    spinner.set_message(format!("Writing {} Bundle entries", entries));
    let written = if args.output.as_os_str() == "-" {
        std::io::stdout()
            .lock()
            .write_all(&bytes)
            .map_err(anyhow::Error::new)
    } else {
        write_private(&args.output, &bytes).with_context(|| {
            format!(
                "cannot write {} (check the directory exists and you may write there)",
                args.output.display()
            )
        })
    };
    spinner.finish_and_clear();
    written?;
    if args.output.as_os_str() != "-" {
        eprintln!(
            "Wrote {} ({} Bundle entr{}).",
            args.output.display(),
            entries,
            if entries == 1 { "y" } else { "ies" }
        );
    }
    Ok(())
}
