//! CSV import: a header row, then one sample per row.
//!
//! ```text
//! metric,start,end,value,unit,source
//! heart-rate,2024-01-31T07:05:00Z,,61,/min,Jane's Watch
//! weight,2024-01-31T07:30:00+01:00,2024-01-31T07:30:00+01:00,165.2,lb,Scale
//! ```
//!
//! `metric` is a name or LOINC code of [`Metric`]; `start` and `end` are
//! RFC 3339 (an empty `end` means `start`); `unit` as in [`super::units`].
//! Columns may come in any order; extra columns are ignored.

use std::io::Read;

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::metric::Metric;
use super::sample::SampleInput;
use super::WearablesError;

fn bad(row: u64, what: &str) -> WearablesError {
    WearablesError::Import(format!("CSV row {row}: {what}"))
}

fn parse_time(s: &str) -> Option<i64> {
    let t = OffsetDateTime::parse(s.trim(), &Rfc3339).ok()?;
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok()
}

/// Read CSV samples, handing them to `on_batch` in batches of up to
/// `batch_size` with the number of bytes read so far.
pub fn import<R: Read, E: From<WearablesError>>(
    input: R,
    batch_size: usize,
    mut on_batch: impl FnMut(Vec<SampleInput>, u64) -> Result<(), E>,
) -> Result<u64, E> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .flexible(true)
        .from_reader(input);
    let headers = reader
        .headers()
        .map_err(|_| WearablesError::Import("CSV: no readable header row".into()))?
        .clone();
    let col = |name: &str| headers.iter().position(|h| h.eq_ignore_ascii_case(name));
    let need = |name: &str| {
        col(name).ok_or_else(|| WearablesError::Import(format!("CSV: no \"{name}\" column")))
    };
    let (c_metric, c_start, c_value, c_unit, c_source) = (
        need("metric")?,
        need("start")?,
        need("value")?,
        need("unit")?,
        need("source")?,
    );
    let c_end = col("end");
    let batch_size = batch_size.max(1);
    let mut batch = Vec::new();
    let mut total = 0u64;
    let mut record = csv::StringRecord::new();
    loop {
        let row = reader.position().line();
        match reader.read_record(&mut record) {
            Ok(true) => {}
            Ok(false) => break,
            Err(_) => return Err(bad(row, "not readable CSV").into()),
        }
        let field = |c: usize| record.get(c).unwrap_or("");
        let metric: Metric = field(c_metric)
            .parse()
            .map_err(|_| bad(row, "unknown metric"))?;
        let start_ms =
            parse_time(field(c_start)).ok_or_else(|| bad(row, "start is not RFC 3339"))?;
        let end_ms = match c_end.map(field).filter(|s| !s.is_empty()) {
            Some(e) => parse_time(e).ok_or_else(|| bad(row, "end is not RFC 3339"))?,
            None => start_ms,
        };
        let value: f64 = field(c_value)
            .parse()
            .map_err(|_| bad(row, "value is not a number"))?;
        batch.push(SampleInput {
            metric,
            start_ms,
            end_ms,
            value,
            unit: field(c_unit).to_string(),
            source: field(c_source).to_string(),
        });
        total += 1;
        if batch.len() >= batch_size {
            on_batch(std::mem::take(&mut batch), reader.position().byte())?;
        }
    }
    on_batch(batch, reader.position().byte())?;
    Ok(total)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn reads_rows_in_any_column_order() {
        let csv = "source,metric,start,end,value,unit\n\
                   Watch,heart-rate,2024-01-31T07:05:00Z,,61,/min\n\
                   Scale,29463-7,2024-01-31T07:30:00+01:00,2024-01-31T07:30:00+01:00,165.2,lb\n";
        let mut got = Vec::new();
        let n = import::<_, WearablesError>(csv.as_bytes(), 1, |b, _| {
            got.extend(b);
            Ok(())
        })
        .unwrap();
        assert_eq!(n, 2);
        assert_eq!(got[0].metric, Metric::HeartRate);
        assert_eq!(got[0].end_ms, got[0].start_ms);
        assert_eq!(got[1].metric, Metric::Weight);
        assert_eq!(got[1].unit, "lb");
        let err = import::<_, WearablesError>(
            "metric,start,value,unit,source\nsteps,yesterday,1,count,P\n".as_bytes(),
            10,
            |_, _| Ok(()),
        )
        .unwrap_err();
        assert!(err.to_string().contains("row 2"), "{err}");
    }
}
