//! Output for people (tables, progress) and for machines (`--json`).

use std::time::Duration;

use anyhow::{bail, Result};
use comfy_table::{presets::UTF8_BORDERS_ONLY, ContentArrangement, Table};
use indicatif::{ProgressBar, ProgressStyle};
use satchel_core::record::{Entry, EntryVersion, SectionSummary};
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::{Date, Month, OffsetDateTime};

pub fn table(headers: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_style(UTF8_BORDERS_ONLY)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(headers.to_vec());
    t
}

/// A spinner on stderr; hidden when stderr is not a terminal.
pub fn spinner(message: &str) -> ProgressBar {
    let pb = ProgressBar::new_spinner();
    pb.set_style(
        ProgressStyle::with_template("{spinner} {msg} {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    pb.set_message(message.to_string());
    pb.enable_steady_tick(Duration::from_millis(100));
    pb
}

/// A progress bar over the bytes of an input of known size (a spinner when
/// the size is unknown); hidden when stderr is not a terminal.
pub fn byte_progress(message: &str, size: Option<u64>) -> ProgressBar {
    let Some(size) = size else {
        return spinner(message);
    };
    let pb = ProgressBar::new(size);
    pb.set_style(
        ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes} {elapsed}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    pb.set_message(message.to_string());
    pb
}

pub fn format_ms(ms: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| ms.to_string())
}

/// `YYYY`, `YYYY-MM` or `YYYY-MM-DD` to the first (or, with `end`, last)
/// millisecond of that period, UTC.
pub fn parse_day(text: &str, end: bool) -> Result<i64> {
    let parts: Vec<&str> = text.split('-').collect();
    let num = |s: &str| s.parse::<i32>().ok();
    let (year, month, day) = match parts.as_slice() {
        [y] => (num(y), Some(1), Some(1)),
        [y, m] => (num(y), num(m), Some(1)),
        [y, m, d] => (num(y), num(m), num(d)),
        _ => (None, None, None),
    };
    let (Some(year), Some(month), Some(day)) = (year, month, day) else {
        bail!("expected YYYY, YYYY-MM or YYYY-MM-DD");
    };
    let month_enum = u8::try_from(month)
        .ok()
        .and_then(|m| Month::try_from(m).ok());
    let Some(month_enum) = month_enum else {
        bail!("month must be 01 to 12")
    };
    let Some(start) = u8::try_from(day)
        .ok()
        .and_then(|d| Date::from_calendar_date(year, month_enum, d).ok())
    else {
        bail!("no such date");
    };
    let start_ms = start.midnight().assume_utc().unix_timestamp() * 1000;
    if !end {
        return Ok(start_ms);
    }
    let next = match parts.len() {
        1 => Date::from_calendar_date(year + 1, Month::January, 1).ok(),
        2 => {
            let (y, m) = if month == 12 {
                (year + 1, Month::January)
            } else {
                (year, month_enum.next())
            };
            Date::from_calendar_date(y, m, 1).ok()
        }
        _ => start.next_day(),
    };
    let Some(next) = next else {
        bail!("date out of range")
    };
    Ok(next.midnight().assume_utc().unix_timestamp() * 1000 - 1)
}

/// The first display string, shortened for a table cell.
pub fn summary_text(displays: &[String]) -> String {
    let s = displays.first().cloned().unwrap_or_default();
    if s.chars().count() > 60 {
        let cut: String = s.chars().take(59).collect();
        format!("{cut}…")
    } else {
        s
    }
}

pub fn version_json(v: &EntryVersion) -> Value {
    json!({
        "author": v.author.to_string(),
        "recorded_at": format_ms(v.recorded_at_ms),
        "status": v.status.as_str(),
        "date": v.date_text,
        "resource": v.resource,
    })
}

pub fn entry_json(e: &Entry) -> Value {
    json!({
        "id": e.id.to_string(),
        "section": e.section.as_str(),
        "resource_type": e.resource_type,
        "status": e.status.as_str(),
        "versions": e.version_count,
        "source_system": e.source_system,
        "source_id": e.source_id,
        "created_by": e.created_by.to_string(),
        "date": e.current.date_text,
        "codes": e.current.codes,
        "displays": e.current.displays,
        "resource": e.current.resource,
    })
}

pub fn summary_json(s: &SectionSummary) -> Value {
    json!({
        "section": s.section.as_str(),
        "active": s.active,
        "entered_in_error": s.entered_in_error,
        "latest": s.latest_date_ms.map(format_ms),
        "by_resource_type": s.by_resource_type,
    })
}
