//! `satchel list` and `satchel summary`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use satchel_core::record::{Query, Section};
use satchel_core::sync::currency::Currency;

use crate::home;
use crate::output;

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  satchel list\n  satchel list --section labs --from 2023-01 --to 2023-12\n  satchel list --code 'http://loinc.org|4548-4' --json\n  satchel list --text metformin --all"
)]
pub struct Args {
    /// Only this section (e.g. allergies, medications, labs).
    #[arg(long)]
    pub section: Option<Section>,
    /// Clinical date on or after (YYYY, YYYY-MM or YYYY-MM-DD).
    #[arg(long)]
    pub from: Option<String>,
    /// Clinical date on or before (YYYY, YYYY-MM or YYYY-MM-DD).
    #[arg(long)]
    pub to: Option<String>,
    /// A code, as SYSTEM|CODE or just CODE.
    #[arg(long)]
    pub code: Option<String>,
    /// Text to find in display strings (case-insensitive).
    #[arg(long)]
    pub text: Option<String>,
    /// Include entries marked entered-in-error.
    #[arg(long)]
    pub all: bool,
    /// Print JSON on stdout (for scripts) instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
#[command(after_help = "Example:\n  satchel summary\n  satchel summary --json")]
pub struct SummaryArgs {
    /// Print JSON on stdout (for scripts) instead of text.
    #[arg(long)]
    pub json: bool,
}

pub fn run(home_dir: Option<PathBuf>, args: Args) -> Result<()> {
    let profiles = home::open_all(home_dir)?;
    let code = args.code.as_deref().map(|c| match c.split_once('|') {
        Some((system, code)) => (Some(system.to_string()), code.to_string()),
        None => (None, c.to_string()),
    });
    let query = Query {
        section: args.section,
        from_ms: args
            .from
            .as_deref()
            .map(|d| output::parse_day(d, false))
            .transpose()
            .context("--from")?,
        to_ms: args
            .to
            .as_deref()
            .map(|d| output::parse_day(d, true))
            .transpose()
            .context("--to")?,
        code,
        text: args.text,
        include_entered_in_error: args.all,
    };
    if args.json && profiles.len() > 1 {
        // Several records (a carer's home): one object per record.
        let out = profiles
            .iter()
            .map(|p| {
                Ok(serde_json::json!({
                    "record_id": p.record_id(),
                    "owner": p.owner_name(),
                    "sections": p.readable_sections().iter().map(|s| s.as_str()).collect::<Vec<_>>(),
                    "incomplete": output::Completeness::of(p)?.incomplete,
                    "entries": p.query(&query).iter().map(output::entry_json).collect::<Vec<_>>(),
                }))
            })
            .collect::<Result<Vec<_>>>()?;
        outln!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    for (i, profile) in profiles.iter().enumerate() {
        if i > 0 {
            outln!();
        }
        list_one(profile, &query, args.json)?;
    }
    Ok(())
}

fn list_one(profile: &home::HomeProfile, query: &Query, json: bool) -> Result<()> {
    let entries = profile.query(query);
    let members = profile.members();
    let completeness = output::Completeness::of(profile)?;
    // Who contributed an entry, when it was not one of the owner's devices.
    let from = |e: &satchel_core::record::Entry| -> String {
        if members.owner_devices.contains_key(&e.created_by) {
            return String::new();
        }
        match members.card(&e.created_by) {
            Some(c) => match &c.organisation {
                Some(org) => format!("{org} ({})", c.display_name),
                None => c.display_name.clone(),
            },
            None => e.created_by.short(),
        }
    };
    if json {
        let out: Vec<_> = entries
            .iter()
            .map(|e| {
                let mut v = output::entry_json(e);
                let by = from(e);
                if !by.is_empty() {
                    v["contributed_by"] = serde_json::Value::String(by);
                }
                if completeness.marks(e.section.as_str()) {
                    // The section this entry is in is known to miss changes.
                    v["section_incomplete"] = serde_json::Value::Bool(true);
                }
                v
            })
            .collect();
        outln!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    outln!(
        "Record of {} ({})",
        profile.owner_name(),
        profile.record_id()
    );
    // Never let an old copy pass for a current one.
    if let Some(ended) = profile.access_ended_ms()? {
        outln!(
            "ACCESS ENDED {}: the relay refused this identity (revoked or expired). This copy is no longer updated and may be out of date.",
            output::format_ms(ended)
        );
    }
    match profile.currency()? {
        Currency::NeverSynced => {
            outln!("Never synced: this device has not exchanged changes with a relay yet")
        }
        Currency::Current { synced_ms } => {
            outln!("Last synced: {}", output::format_ms(synced_ms))
        }
        Currency::Stale {
            synced_ms,
            home_reached_ms,
        } => {
            outln!("Last synced: {}", output::format_ms(synced_ms));
            match home_reached_ms {
                Some(t) => outln!(
                    "STALE COPY: it came through a replica relay (for example a clinic's) that last reached the record's home relay {}. Changes made elsewhere since then are not shown; check with the patient or sync with the home relay.",
                    output::format_ms(t)
                ),
                None => outln!(
                    "STALE COPY: it came through a replica relay (for example a clinic's) that has not reached the record's home relay since it started (its link may be down). Changes made elsewhere are not shown; check with the patient or sync with the home relay."
                ),
            }
        }
    }
    if !profile.is_owner_device() {
        let sections: Vec<&str> = profile
            .readable_sections()
            .iter()
            .map(|s| s.as_str())
            .collect();
        outln!(
            "Shared with you: {}",
            if sections.is_empty() {
                "nothing (access ended)".to_string()
            } else {
                sections.join(", ")
            }
        );
    }
    for line in &completeness.lines {
        outln!("{}", line.replacen("incomplete:", "INCOMPLETE:", 1));
    }
    if !completeness.logs.is_empty() {
        outln!("Sections marked INCOMPLETE may be missing entries or their latest versions: do not rely on them as a complete list. Run `satchel sync`.");
    }
    let mut table = output::table(&[
        "ENTRY", "SECTION", "TYPE", "DATE", "SUMMARY", "V", "STATUS", "FROM",
    ]);
    output::keep_whole(&mut table, &[0, 1, 2, 3, 5, 6]);
    output::at_least(&mut table, 4, 24);
    output::at_least(&mut table, 7, 6);
    for e in &entries {
        table.add_row(output::one_line_row(vec![
            e.id.to_string(),
            if completeness.marks(e.section.as_str()) {
                format!("{} INCOMPLETE", e.section.as_str())
            } else {
                e.section.as_str().to_string()
            },
            e.resource_type.clone(),
            e.current.date_text.clone().unwrap_or_default(),
            output::summary_text(&e.current.displays),
            e.version_count.to_string(),
            if e.conflict {
                format!("{} CONFLICT", e.status.as_str())
            } else {
                e.status.as_str().to_string()
            },
            from(e),
        ]));
    }
    outln!("{table}");
    outln!(
        "{} entr{}",
        entries.len(),
        if entries.len() == 1 { "y" } else { "ies" }
    );
    let conflicts = entries.iter().filter(|e| e.conflict).count();
    if conflicts > 0 {
        outln!(
            "{conflicts} entr{} marked CONFLICT: changed in two places without either knowing of the other. The newest change is shown; check the other with `satchel history ENTRY` and amend if needed.",
            if conflicts == 1 { "y is" } else { "ies are" }
        );
    }
    Ok(())
}

pub fn run_summary(home_dir: Option<PathBuf>, args: SummaryArgs) -> Result<()> {
    let profile = home::open(home_dir)?;
    let summary = profile.summary();
    if args.json {
        let out: Vec<_> = summary.iter().map(output::summary_json).collect();
        outln!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    let mut table = output::table(&["SECTION", "ACTIVE", "ENTERED-IN-ERROR", "LATEST"]);
    for s in &summary {
        table.add_row(output::one_line_row(vec![
            s.section.as_str().to_string(),
            s.active.to_string(),
            s.entered_in_error.to_string(),
            s.latest_date_ms.map(output::format_ms).unwrap_or_default(),
        ]));
    }
    outln!("{table}");
    Ok(())
}
