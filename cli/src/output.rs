//! Output for people (tables sized to the terminal, progress on stderr), for
//! machines (`--json`, on stdout only), and errors that say what went wrong
//! and what to do next, without health data.

use std::io::IsTerminal;
use std::time::Duration;

use anyhow::{anyhow, bail, Result};
use comfy_table::{
    presets::UTF8_BORDERS_ONLY, ColumnConstraint, ContentArrangement, Row, Table, Width,
};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use satchel_core::record::{Entry, EntryVersion, SectionSummary};
use satchel_core::sync::engine::SyncError;
use satchel_core::sync::link::LinkError;
use satchel_core::sync::sharing::RestoreError;
use satchel_core::sync::TransportError;
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::{Date, Month, OffsetDateTime};

/// A table as wide as the terminal when stdout is one (comfy-table asks the
/// terminal). Piped, it is as wide as `$COLUMNS` when that is set, else its
/// rows are never wrapped, so scripts see one line per row.
pub fn table(headers: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_style(UTF8_BORDERS_ONLY).set_header(headers.to_vec());
    let columns = std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.trim().parse::<u16>().ok())
        .filter(|&c| c > 0);
    match (std::io::stdout().is_terminal(), columns) {
        (true, _) => {
            t.set_content_arrangement(ContentArrangement::Dynamic);
        }
        (false, Some(width)) => {
            t.force_no_tty()
                .set_width(width)
                .set_content_arrangement(ContentArrangement::Dynamic);
        }
        (false, None) => {
            t.force_no_tty()
                .set_content_arrangement(ContentArrangement::Disabled);
        }
    }
    t
}

/// A table row whose cells are cut to one line with an ellipsis when the
/// table is too narrow, instead of wrapping (for free-text summaries; keep
/// identifiers in columns wide enough with [`keep_whole`]).
pub fn one_line_row(cells: Vec<String>) -> Row {
    let mut row = Row::from(cells);
    row.max_height(1);
    row
}

/// Never shrink these columns below their content (ids people copy, short
/// codes): on a narrow terminal the free-text columns give way instead.
pub fn keep_whole(table: &mut Table, indices: &[usize]) {
    for &i in indices {
        if let Some(column) = table.column_mut(i) {
            column.set_constraint(ColumnConstraint::ContentWidth);
        }
    }
}

/// Keep column `index` at least `width` characters wide (a free-text column
/// that would otherwise shrink to a few letters).
pub fn at_least(table: &mut Table, index: usize, width: u16) {
    if let Some(column) = table.column_mut(index) {
        column.set_constraint(ColumnConstraint::LowerBoundary(Width::Fixed(width)));
    }
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

/// How long work runs before its progress indicator appears.
const SHOW_AFTER: Duration = Duration::from_secs(1);

/// Show `pb` on stderr once it has run for [`SHOW_AFTER`] (and is not
/// finished): quick commands print no flicker. indicatif keeps it hidden
/// when stderr is not a terminal.
fn show_later(pb: &ProgressBar) {
    pb.set_draw_target(ProgressDrawTarget::hidden());
    let weak = pb.downgrade();
    std::thread::spawn(move || {
        std::thread::sleep(SHOW_AFTER);
        if let Some(pb) = weak.upgrade() {
            if !pb.is_finished() {
                pb.set_draw_target(ProgressDrawTarget::stderr());
            }
        }
    });
}

/// A spinner on stderr that appears only when the work takes longer than a
/// second; hidden when stderr is not a terminal.
pub fn slow_spinner(message: &str) -> ProgressBar {
    let pb = spinner(message);
    show_later(&pb);
    pb
}

/// A bar over `len` units (bytes when `bytes`) that appears only when the
/// work takes longer than a second; hidden when stderr is not a terminal.
pub fn slow_bar(message: &str, len: u64, bytes: bool) -> ProgressBar {
    let pb = ProgressBar::new(len);
    let template = if bytes {
        "{msg} [{bar:30}] {bytes}/{total_bytes} {elapsed}"
    } else {
        "{msg} [{bar:30}] {pos}/{len} {elapsed}"
    };
    pb.set_style(
        ProgressStyle::with_template(template)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    pb.set_message(message.to_string());
    show_later(&pb);
    pb
}

/// Whether `err` is a write to a stdout whose reader has gone (`| head`).
pub fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|e| {
        e.downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// `err` and its causes on one line (`outer: inner: ...`).
pub fn one_line(err: &anyhow::Error) -> String {
    format!("{err:#}")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Why the relay did not answer, if that is what `err` (or a cause) says.
fn offline_reason(err: &(dyn std::error::Error + 'static)) -> Option<String> {
    let sync = |e: &SyncError| match e {
        SyncError::Offline(why) => Some(why.clone()),
        _ => None,
    };
    let transport = |e: &TransportError| match e {
        TransportError::Sync(s) => sync(s),
        _ => None,
    };
    let link = |e: &LinkError| match e {
        LinkError::Transport(t) => transport(t),
        _ => None,
    };
    if let Some(e) = err.downcast_ref::<SyncError>() {
        return sync(e);
    }
    if let Some(e) = err.downcast_ref::<TransportError>() {
        return transport(e);
    }
    if let Some(e) = err.downcast_ref::<LinkError>() {
        return link(e);
    }
    if let Some(RestoreError::Link(e)) = err.downcast_ref::<RestoreError>() {
        return link(e);
    }
    None
}

/// An error of an exchange with the relay at `server` while `doing`
/// something. When the relay did not answer, say so and how to start or
/// find one; otherwise keep the relay's reason (e.g. a 403 for access that
/// ended) after `doing`.
pub fn relay_error(
    server: impl std::fmt::Display,
    doing: &str,
    err: impl Into<anyhow::Error>,
) -> anyhow::Error {
    let err: anyhow::Error = err.into();
    let reason = err.chain().find_map(offline_reason);
    if let Some(why) = reason
        .as_deref()
        .and_then(|r| r.strip_prefix(satchel_core::sync::tls::TLS_FAILURE))
    {
        return anyhow!(
            "{doing}: no secure connection to the relay at {server}: {why}. If the relay's certificate comes from its operator's own CA, give that CA's certificate with --relay-ca FILE (or SATCHEL_RELAY_CA)"
        );
    }
    if let Some(why) = reason {
        return anyhow!(
            "{doing}: the relay at {server} did not answer ({why}); is it running? Start one with `satchel serve`, or check --server / SATCHEL_SERVER"
        );
    }
    err.context(format!("{doing} (relay {server})"))
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
        "concurrent": v.concurrent,
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
        "conflict": e.conflict,
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

/// What a device knows is missing from a record, and changes the relay
/// refused for good, as lines for people and as JSON. Names authors by
/// their card (display name and short id), never by content.
pub struct Completeness {
    pub lines: Vec<String>,
    pub incomplete: Vec<Value>,
    pub set_aside: Vec<Value>,
    /// Logs known to be incomplete.
    pub logs: Vec<String>,
}

impl Completeness {
    pub fn of(profile: &crate::home::HomeProfile) -> Result<Self> {
        let members = profile.members();
        let who = |id: &satchel_core::ids::IdentityId| match members.card(id) {
            Some(c) => format!("{} ({})", c.display_name, id.short()),
            None => id.short(),
        };
        let plural = |n: u64| if n == 1 { "" } else { "s" };
        let mut out = Completeness {
            lines: Vec::new(),
            incomplete: Vec::new(),
            set_aside: Vec::new(),
            logs: Vec::new(),
        };
        for inc in profile.incomplete()? {
            for (author, n) in &inc.missing {
                out.lines.push(format!(
                    "incomplete: {n} change{} from {} not received ({})",
                    plural(*n),
                    who(author),
                    inc.log
                ));
            }
            if !inc.refused.is_empty() {
                let mut reasons: Vec<&str> =
                    inc.refused.iter().map(|r| r.reason.as_str()).collect();
                reasons.sort_unstable();
                reasons.dedup();
                out.lines.push(format!(
                    "incomplete: {} change{} in {} served by the relay failed verification and were refused ({})",
                    inc.refused.len(),
                    plural(inc.refused.len() as u64),
                    inc.log,
                    reasons.join("; ")
                ));
            }
            if inc.held_back > 0 {
                out.lines.push(format!(
                    "incomplete: {} change{} in {} wait for earlier changes not received",
                    inc.held_back,
                    plural(inc.held_back as u64),
                    inc.log
                ));
            }
            out.incomplete.push(json!({
                "section": inc.log,
                "missing": inc.missing.iter().map(|(a, n)| json!({"author": a, "name": who(a), "changes": n})).collect::<Vec<_>>(),
                "refused": inc.refused.iter().map(|r| json!({"relay_seq": r.server_seq, "author": r.author, "reason": r.reason})).collect::<Vec<_>>(),
                "held_back": inc.held_back,
            }));
            out.logs.push(inc.log.to_string());
        }
        for item in profile.set_aside_items()? {
            out.lines.push(format!(
                "not sent: a change to {} was refused by the relay ({} {}); it is kept on this device and no longer holds up other changes",
                item.section, item.status, item.reason
            ));
            out.set_aside.push(json!({
                "section": item.section, "hash": item.hash, "status": item.status, "reason": item.reason,
            }));
        }
        Ok(out)
    }

    /// Whether a log of `section` (the section or one of its own logs) is
    /// known to be incomplete.
    pub fn marks(&self, section: &str) -> bool {
        self.logs
            .iter()
            .any(|l| satchel_core::sharing::base_section(l) == section)
    }
}
