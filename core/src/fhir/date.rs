//! FHIR `date`, `dateTime` and `instant` values, possibly partial.

use std::fmt;

use serde::{Deserialize, Serialize};
use time::{Date, Month, PrimitiveDateTime, Time, UtcOffset};

/// The clinical date of a resource: the original FHIR text and the instant
/// at which it starts, in unix milliseconds UTC.
///
/// Partial dates start at their first moment: `"2012"` is 2012-01-01T00:00Z,
/// `"2012-05"` is 2012-05-01T00:00Z. Dates without a time (and, leniently,
/// date-times without an offset) are taken as UTC.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClinicalDate {
    /// The value exactly as it appeared in the resource.
    pub text: String,
    /// Start instant, unix milliseconds UTC.
    pub start_ms: i64,
}

impl fmt::Debug for ClinicalDate {
    // A clinical date is health data: keep it out of debug output.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClinicalDate(<redacted>)")
    }
}

impl ClinicalDate {
    /// Parse a FHIR `date` / `dateTime` / `instant`. Accepted forms:
    /// `YYYY`, `YYYY-MM`, `YYYY-MM-DD`, and
    /// `YYYY-MM-DDThh:mm[:ss[.fff...]][Z|(+|-)hh:mm]` (seconds and the offset
    /// are required by FHIR; missing ones are accepted and read as `:00` and
    /// UTC). Returns `None` for anything else, including impossible calendar
    /// dates.
    pub fn parse(text: &str) -> Option<ClinicalDate> {
        let start_ms = parse_start_ms(text)?;
        Some(ClinicalDate {
            text: text.to_string(),
            start_ms,
        })
    }
}

fn digits(s: &str, n: usize) -> Option<u32> {
    if s.len() != n || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn parse_start_ms(text: &str) -> Option<i64> {
    let (date_part, time_part) = match text.split_once('T') {
        Some((d, t)) => (d, Some(t)),
        None => (text, None),
    };
    let mut pieces = date_part.split('-');
    let year = digits(pieces.next()?, 4)?;
    let month = match pieces.next() {
        Some(m) => digits(m, 2)?,
        None => 1,
    };
    let has_month = date_part.len() > 4;
    let day = match pieces.next() {
        Some(d) => digits(d, 2)?,
        None => 1,
    };
    let has_day = date_part.len() > 7;
    if pieces.next().is_some() {
        return None;
    }
    let month = Month::try_from(u8::try_from(month).ok()?).ok()?;
    let date =
        Date::from_calendar_date(i32::try_from(year).ok()?, month, u8::try_from(day).ok()?).ok()?;

    let (time, offset) = match time_part {
        None => (Time::MIDNIGHT, UtcOffset::UTC),
        Some(t) => {
            // A time needs a full date.
            if !(has_month && has_day) {
                return None;
            }
            parse_time(t)?
        }
    };
    let instant = PrimitiveDateTime::new(date, time).assume_offset(offset);
    i64::try_from(instant.unix_timestamp_nanos() / 1_000_000).ok()
}

fn parse_time(t: &str) -> Option<(Time, UtcOffset)> {
    // Split off the offset.
    let (clock, offset) = if let Some(c) = t.strip_suffix('Z') {
        (c, UtcOffset::UTC)
    } else if let Some(pos) = t.rfind(['+', '-']) {
        let (c, off) = t.split_at(pos);
        let sign: i8 = if off.starts_with('-') { -1 } else { 1 };
        let (oh, om) = off.get(1..)?.split_once(':')?;
        let oh = i8::try_from(digits(oh, 2)?).ok()?;
        let om = i8::try_from(digits(om, 2)?).ok()?;
        if oh > 14 || om > 59 {
            return None;
        }
        (c, UtcOffset::from_hms(sign * oh, sign * om, 0).ok()?)
    } else {
        (t, UtcOffset::UTC)
    };
    let mut parts = clock.split(':');
    let hour = digits(parts.next()?, 2)?;
    let minute = digits(parts.next()?, 2)?;
    let (second, milli) = match parts.next() {
        None => (0, 0),
        Some(s) => {
            let (whole, frac) = match s.split_once('.') {
                Some((w, f)) => (w, Some(f)),
                None => (s, None),
            };
            let second = digits(whole, 2)?;
            let milli = match frac {
                None => 0,
                Some(f) => {
                    if f.is_empty() || !f.bytes().all(|b| b.is_ascii_digit()) {
                        return None;
                    }
                    let mut ms = 0u32;
                    for b in f.bytes().chain(std::iter::repeat(b'0')).take(3) {
                        ms = ms * 10 + u32::from(b - b'0');
                    }
                    ms
                }
            };
            (second, milli)
        }
    };
    if parts.next().is_some() {
        return None;
    }
    let time = Time::from_hms_milli(
        u8::try_from(hour).ok()?,
        u8::try_from(minute).ok()?,
        u8::try_from(second).ok()?,
        u16::try_from(milli).ok()?,
    )
    .ok()?;
    Some((time, offset))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ms(s: &str) -> Option<i64> {
        ClinicalDate::parse(s).map(|d| d.start_ms)
    }

    #[test]
    fn partial_and_full_dates() {
        assert_eq!(ms("1970"), Some(0));
        assert_eq!(ms("1970-01"), Some(0));
        assert_eq!(ms("1970-01-02"), Some(86_400_000));
        assert_eq!(ms("2012-05-01"), Some(1_335_830_400_000));
        assert_eq!(ms("2012-05"), Some(1_335_830_400_000));
        assert_eq!(ms("2012"), Some(1_325_376_000_000));
        assert_eq!(ms("1970-01-01T00:00:01Z"), Some(1000));
        assert_eq!(ms("1970-01-01T01:00:00+01:00"), Some(0));
        assert_eq!(ms("1970-01-01T00:00:00-01:30"), Some(5_400_000));
        assert_eq!(ms("1970-01-01T00:00:00.5Z"), Some(500));
        assert_eq!(ms("1970-01-01T00:00:00.123456Z"), Some(123));
        // Lenient: no seconds, no offset.
        assert_eq!(ms("1970-01-01T00:01"), Some(60_000));
        assert_eq!(ms("1970-01-01T00:00:02"), Some(2000));
        assert_eq!(ms("1969-12-31"), Some(-86_400_000));
    }

    #[test]
    fn rejects_garbage() {
        for bad in [
            "",
            "12",
            "2012-5",
            "2012-13",
            "2012-02-30",
            "2012-05-01T",
            "2012-05T10:00:00Z",
            "2012-05-01T25:00:00Z",
            "2012-05-01T10:00:00+15:00",
            "2012-05-01T10:00:00.Z",
            "yesterday",
            "2012-05-01-01",
            "2012-05-01T10:00:00:00Z",
            "2012/05/01",
            "2012-05-01T10:00:00+0100",
        ] {
            assert_eq!(ms(bad), None, "{bad}");
        }
    }

    #[test]
    fn debug_is_redacted() {
        let d = ClinicalDate::parse("2012-05-01").unwrap();
        assert!(!format!("{d:?}").contains("2012"));
    }
}
