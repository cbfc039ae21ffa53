//! `satchel wearables import FILE`, `satchel wearables summary` and
//! `satchel wearables observations`.

use std::fs::File;
use std::io::BufReader;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use satchel_core::profile::{IngestReport, ProfileError};
use satchel_core::wearables::{apple, csv_import, Every, Metric};
use serde_json::json;

use crate::home;
use crate::output;

/// Samples handed to the profile at a time (each batch is one commit).
const BATCH: usize = 250_000;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Import an Apple Health export.xml (unzipped) or a CSV file
    /// (metric,start,end,value,unit,source).
    #[command(
        after_help = "Example:\n  satchel wearables import ~/Downloads/apple_health_export/export.xml\n  satchel wearables import --format csv scale-readings.txt --json"
    )]
    Import(ImportArgs),
    /// Min, max, mean, sum and count of a metric by hour, day or week.
    #[command(
        after_help = "Example:\n  satchel wearables summary --metric heart-rate --from 2024-01-01 --to 2024-01-31\n  satchel wearables summary --metric steps --from 2024-01-01 --to 2024-03-31 --every week --json"
    )]
    Summary(SummaryArgs),
    /// Daily summaries of every metric as FHIR R4 Observations (a JSON array).
    #[command(
        after_help = "Example:\n  satchel wearables observations --from 2024-01-01 --to 2024-01-07 > observations.json"
    )]
    Observations(ObservationsArgs),
}

#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// The file (export.xml, or .csv).
    pub file: PathBuf,
    /// apple or csv (default: from the file name).
    #[arg(long)]
    pub format: Option<String>,
    /// Print JSON on stdout (for scripts) instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct SummaryArgs {
    /// e.g. heart-rate, steps, weight, blood-glucose (or a LOINC code).
    #[arg(long)]
    pub metric: String,
    /// First day (YYYY-MM-DD, UTC).
    #[arg(long)]
    pub from: String,
    /// Last day, included (YYYY-MM-DD, UTC).
    #[arg(long)]
    pub to: String,
    /// hour, day or week.
    #[arg(long, default_value = "day")]
    pub every: String,
    /// Print JSON on stdout (for scripts) instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct ObservationsArgs {
    /// First day (YYYY-MM-DD, UTC).
    #[arg(long)]
    pub from: String,
    /// Last day, included (YYYY-MM-DD, UTC).
    #[arg(long)]
    pub to: String,
    /// FHIR JSON on stdout (the default; accepted so every listing takes --json).
    #[arg(long)]
    pub json: bool,
}

pub fn run(home_dir: Option<PathBuf>, command: Command) -> Result<()> {
    match command {
        Command::Import(args) => import(home_dir, args),
        Command::Summary(args) => summary(home_dir, args),
        Command::Observations(args) => observations(home_dir, args),
    }
}

fn range(from: &str, to: &str) -> Result<(i64, i64)> {
    let from_ms = output::parse_day(from, false).context("--from")?;
    let to_ms = output::parse_day(to, true).context("--to")? + 1;
    if to_ms <= from_ms {
        bail!("--to is before --from");
    }
    Ok((from_ms, to_ms))
}

fn import(home_dir: Option<PathBuf>, args: ImportArgs) -> Result<()> {
    let mut profile = home::open(home_dir)?;
    let format = match args.format.as_deref() {
        Some(f) => f.to_string(),
        None => match args.file.extension().and_then(|e| e.to_str()) {
            Some(e) if e.eq_ignore_ascii_case("csv") => "csv".into(),
            Some(e) if e.eq_ignore_ascii_case("xml") => "apple".into(),
            _ => bail!(
                "cannot tell the format from the file name: pass --format apple or --format csv"
            ),
        },
    };
    let file = File::open(&args.file)
        .with_context(|| format!("cannot open {} (check the path)", args.file.display()))?;
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    let bar = output::slow_bar("Importing", size, true);
    let mut total = IngestReport::default();
    let mut ingest = |batch: Vec<satchel_core::wearables::SampleInput>, at: u64| {
        let r = profile.wearables_ingest(&batch)?;
        total.received += r.received;
        total.stored += r.stored;
        total.duplicates += r.duplicates;
        total.chunks += r.chunks;
        bar.set_position(at);
        bar.set_message(format!("{} samples", total.received));
        Ok::<(), ProfileError>(())
    };
    let reader = BufReader::with_capacity(1 << 20, file);
    let mut extra = json!({});
    match format.as_str() {
        "apple" => {
            let report = apple::import(reader, BATCH, &mut ingest);
            bar.finish_and_clear();
            let report = report.context(
                "the Apple Health import stopped; fix the file and import it again (samples already stored are skipped as duplicates)",
            )?;
            extra = json!({
                "correlations": report.correlations,
                "workouts_skipped": report.workouts,
                "records_skipped": report.skipped_types,
            });
        }
        "csv" => {
            let report = csv_import::import(reader, BATCH, &mut ingest);
            bar.finish_and_clear();
            report.context(
                "the CSV import stopped; fix the file and import it again (samples already stored are skipped as duplicates)",
            )?;
        }
        other => bail!("unknown --format {other:?}: use --format apple or --format csv"),
    }
    if args.json {
        let mut out = json!({
            "received": total.received,
            "stored": total.stored,
            "duplicates": total.duplicates,
            "chunks": total.chunks,
        });
        if let (Some(o), Some(e)) = (out.as_object_mut(), extra.as_object()) {
            o.extend(e.clone());
        }
        outln!("{out}");
    } else {
        outln!(
            "Imported {} samples: {} new, {} already stored ({} chunks written).",
            total.received,
            total.stored,
            total.duplicates,
            total.chunks
        );
        if let Some(skipped) = extra.get("workouts_skipped").and_then(|v| v.as_u64()) {
            if skipped > 0 {
                outln!("Skipped {skipped} workouts (their samples are imported as records).");
            }
        }
    }
    Ok(())
}

fn summary(home_dir: Option<PathBuf>, args: SummaryArgs) -> Result<()> {
    let metric: Metric = args.metric.parse()?;
    let every: Every = args
        .every
        .parse()
        .map_err(|e: &str| anyhow::anyhow!("--every: {e}"))?;
    let (from_ms, to_ms) = range(&args.from, &args.to)?;
    let mut profile = home::open(home_dir)?;
    let buckets = profile.wearables_summary(metric, from_ms, to_ms, every, 0)?;
    if args.json {
        let out: Vec<_> = buckets
            .iter()
            .map(|b| {
                json!({
                    "start": output::format_ms(b.start_ms),
                    "start_ms": b.start_ms,
                    "end_ms": b.end_ms,
                    "count": b.count,
                    "min": b.min,
                    "max": b.max,
                    "mean": b.mean,
                    "sum": b.sum,
                    "unit": metric.unit(),
                })
            })
            .collect();
        outln!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    outln!(
        "{} ({}, LOINC {}) by {}",
        metric.display(),
        metric.unit(),
        metric.loinc(),
        args.every
    );
    let mut table = output::table(&["START (UTC)", "COUNT", "MIN", "MAX", "MEAN", "SUM"]);
    for b in &buckets {
        table.add_row(vec![
            output::format_ms(b.start_ms),
            b.count.to_string(),
            format!("{:.1}", b.min),
            format!("{:.1}", b.max),
            format!("{:.1}", b.mean),
            format!("{:.1}", b.sum),
        ]);
    }
    outln!("{table}");
    Ok(())
}

fn observations(home_dir: Option<PathBuf>, args: ObservationsArgs) -> Result<()> {
    let (from_ms, to_ms) = range(&args.from, &args.to)?;
    let mut profile = home::open(home_dir)?;
    // FHIR JSON whether or not --json was given: Observations are for machines.
    let _ = args.json;
    let out = profile.wearables_observations(from_ms, to_ms, 0, None)?;
    outln!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}
