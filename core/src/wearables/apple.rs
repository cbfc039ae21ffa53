//! Streaming import of an Apple Health export (`export.xml` from the
//! Health app's "Export All Health Data", unzipped). Real exports are
//! hundreds of MB: the file is read event by event (quick-xml) and handed
//! over in batches, never held whole.
//!
//! Read: `<Record type="HKQuantityTypeIdentifier…" sourceName unit startDate
//! endDate value>` for the types in [`Metric::healthkit`], including the
//! records inside `<Correlation>` (blood pressure: the systolic and
//! diastolic records; Apple also lists them at top level, and the
//! duplicates collapse by sample identity). Counted and skipped: records of
//! other types (category types such as sleep, distance, ...), `<Workout>`
//! elements (their energy and distance are already in the quantity
//! records, importing their totals would count them twice), activity
//! summaries and clinical records.
//!
//! HealthKit's percent unit holds fractions (`value="0.97" unit="%"`):
//! oxygen saturation and body fat are read as fractions and stored as
//! percent.

use std::collections::BTreeMap;
use std::io::BufRead;

use quick_xml::events::{BytesStart, Event};
use quick_xml::Reader;
use time::format_description::FormatItem;
use time::macros::format_description;
use time::OffsetDateTime;

use super::metric::Metric;
use super::sample::SampleInput;
use super::WearablesError;

/// What an import read and skipped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppleReport {
    /// Quantity samples handed over.
    pub samples: u64,
    /// `<Correlation>` elements (their records are read).
    pub correlations: u64,
    /// `<Workout>` elements (skipped).
    pub workouts: u64,
    /// Records of types Satchel does not keep, per type identifier.
    pub skipped_types: BTreeMap<String, u64>,
}

const DATE: &[FormatItem<'static>] = format_description!(
    "[year]-[month]-[day] [hour]:[minute]:[second] [offset_hour sign:mandatory][offset_minute]"
);

/// Parse Apple's date format (`2024-01-31 07:05:00 +0100`) to unix ms.
pub fn parse_date(s: &str) -> Option<i64> {
    let t = OffsetDateTime::parse(s.trim(), DATE).ok()?;
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok()
}

fn bad(what: &str) -> WearablesError {
    WearablesError::Import(format!("export.xml: {what}"))
}

fn record_sample(
    e: &BytesStart<'_>,
    report: &mut AppleReport,
) -> Result<Option<SampleInput>, WearablesError> {
    let mut ty = None;
    let (mut source, mut unit, mut start, mut end, mut value) = (None, None, None, None, None);
    for attr in e.attributes() {
        let attr = attr.map_err(|_| bad("malformed attribute"))?;
        let v = attr
            .normalized_value(quick_xml::XmlVersion::Implicit1_0)
            .map_err(|_| bad("malformed attribute value"))?
            .into_owned();
        match attr.key.as_ref() {
            "type" => ty = Some(v),
            "sourceName" => source = Some(v),
            "unit" => unit = Some(v),
            "startDate" => start = Some(v),
            "endDate" => end = Some(v),
            "value" => value = Some(v),
            _ => {}
        }
    }
    let ty = ty.ok_or_else(|| bad("a Record without a type"))?;
    let Some(metric) = Metric::from_healthkit(&ty) else {
        *report.skipped_types.entry(ty).or_default() += 1;
        return Ok(None);
    };
    let start_ms = start
        .as_deref()
        .and_then(parse_date)
        .ok_or_else(|| bad("a Record without a readable startDate"))?;
    let end_ms = match end.as_deref() {
        Some(e) => parse_date(e).ok_or_else(|| bad("a Record with an unreadable endDate"))?,
        None => start_ms,
    };
    let value: f64 = value
        .as_deref()
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| bad("a quantity Record without a numeric value"))?;
    let mut unit = unit.unwrap_or_default();
    if unit == "%" && matches!(metric, Metric::OxygenSaturation | Metric::BodyFat) {
        unit = "1".into();
    }
    Ok(Some(SampleInput {
        metric,
        start_ms,
        end_ms,
        value,
        unit,
        source: source.unwrap_or_else(|| "Apple Health".into()),
    }))
}

/// Read an export, handing samples to `on_batch` in batches of up to
/// `batch_size`, with the number of bytes read so far (for progress).
/// `on_batch` may fail; the import stops there.
pub fn import<R: BufRead, E: From<WearablesError>>(
    input: R,
    batch_size: usize,
    mut on_batch: impl FnMut(Vec<SampleInput>, u64) -> Result<(), E>,
) -> Result<AppleReport, E> {
    let mut reader = Reader::from_reader(input);
    reader.config_mut().trim_text(true);
    let mut buf = Vec::with_capacity(4096);
    let mut report = AppleReport::default();
    let batch_size = batch_size.max(1);
    let mut batch = Vec::with_capacity(batch_size.min(1 << 16));
    let mut saw_root = false;
    // Depth inside a <Workout> (everything in it is skipped).
    let mut in_workout = 0usize;
    loop {
        let event = match reader.read_event_into(&mut buf) {
            Ok(e) => e,
            Err(_) => {
                let at = reader.error_position();
                return Err(bad(&format!("not well-formed XML near byte {at}")).into());
            }
        };
        if in_workout > 0 {
            match event {
                Event::Start(_) => in_workout += 1,
                Event::End(_) => in_workout -= 1,
                Event::Eof => return Err(bad("the file ends inside a <Workout>").into()),
                _ => {}
            }
            buf.clear();
            continue;
        }
        match &event {
            Event::Start(e) | Event::Empty(e) => match e.name().as_ref() {
                "HealthData" => saw_root = true,
                "Record" => {
                    if let Some(s) = record_sample(e, &mut report)? {
                        batch.push(s);
                        report.samples += 1;
                    }
                }
                "Correlation" => report.correlations += 1,
                "Workout" => {
                    report.workouts += 1;
                    if matches!(event, Event::Start(_)) {
                        in_workout = 1;
                    }
                }
                _ => {}
            },
            Event::Eof => break,
            _ => {}
        }
        buf.clear();
        if batch.len() >= batch_size {
            on_batch(std::mem::take(&mut batch), reader.buffer_position())?;
        }
    }
    if !saw_root {
        return Err(bad("no <HealthData> element (is this an Apple Health export.xml?)").into());
    }
    on_batch(batch, reader.buffer_position())?;
    Ok(report)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const XML: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE HealthData [
<!ELEMENT HealthData (ExportDate,Me,(Record|Correlation|Workout|ActivitySummary|ClinicalRecord)*)>
<!ATTLIST HealthData locale CDATA #REQUIRED>
]>
<HealthData locale="en_US">
 <ExportDate value="2024-02-01 09:00:00 +0100"/>
 <Me HKCharacteristicTypeIdentifierDateOfBirth="" HKCharacteristicTypeIdentifierBiologicalSex="HKBiologicalSexNotSet"/>
 <Record type="HKQuantityTypeIdentifierHeartRate" sourceName="Jane&#8217;s Apple Watch" sourceVersion="10.1" device="&lt;&lt;HKDevice: 0x1&gt;, name:Apple Watch&gt;" unit="count/min" creationDate="2024-01-31 07:06:00 +0100" startDate="2024-01-31 07:05:00 +0100" endDate="2024-01-31 07:05:00 +0100" value="61">
  <MetadataEntry key="HKMetadataKeyHeartRateMotionContext" value="0"/>
 </Record>
 <Record type="HKQuantityTypeIdentifierOxygenSaturation" sourceName="Watch" unit="%" creationDate="2024-01-31 07:06:00 +0100" startDate="2024-01-31 07:05:00 +0100" endDate="2024-01-31 07:05:00 +0100" value="0.97"/>
 <Record type="HKCategoryTypeIdentifierSleepAnalysis" sourceName="Watch" creationDate="2024-01-31 07:06:00 +0100" startDate="2024-01-31 01:00:00 +0100" endDate="2024-01-31 07:00:00 +0100" value="HKCategoryValueSleepAnalysisAsleepCore"/>
 <Correlation type="HKCorrelationTypeIdentifierBloodPressure" sourceName="Cuff" creationDate="2024-01-31 08:00:00 +0100" startDate="2024-01-31 08:00:00 +0100" endDate="2024-01-31 08:00:00 +0100">
  <Record type="HKQuantityTypeIdentifierBloodPressureDiastolic" sourceName="Cuff" unit="mmHg" creationDate="2024-01-31 08:00:00 +0100" startDate="2024-01-31 08:00:00 +0100" endDate="2024-01-31 08:00:00 +0100" value="79"/>
  <Record type="HKQuantityTypeIdentifierBloodPressureSystolic" sourceName="Cuff" unit="mmHg" creationDate="2024-01-31 08:00:00 +0100" startDate="2024-01-31 08:00:00 +0100" endDate="2024-01-31 08:00:00 +0100" value="121"/>
 </Correlation>
 <Workout workoutActivityType="HKWorkoutActivityTypeRunning" duration="30" durationUnit="min" sourceName="Watch" creationDate="2024-01-31 18:31:00 +0100" startDate="2024-01-31 18:00:00 +0100" endDate="2024-01-31 18:30:00 +0100">
  <WorkoutStatistics type="HKQuantityTypeIdentifierActiveEnergyBurned" startDate="2024-01-31 18:00:00 +0100" endDate="2024-01-31 18:30:00 +0100" sum="300" unit="Cal"/>
  <Record type="HKQuantityTypeIdentifierHeartRate" sourceName="X" unit="count/min" startDate="2024-01-31 18:00:00 +0100" endDate="2024-01-31 18:00:00 +0100" value="150"/>
 </Workout>
</HealthData>
"#;

    #[test]
    fn reads_records_and_correlations_skips_workouts() {
        let mut got = Vec::new();
        let report = import::<_, WearablesError>(XML.as_bytes(), 2, |b, _| {
            got.extend(b);
            Ok(())
        })
        .unwrap();
        assert_eq!(report.samples, 4);
        assert_eq!((report.correlations, report.workouts), (1, 1));
        assert_eq!(
            report
                .skipped_types
                .get("HKCategoryTypeIdentifierSleepAnalysis"),
            Some(&1)
        );
        assert_eq!(got[0].source, "Jane\u{2019}s Apple Watch");
        assert_eq!(
            got[0].start_ms,
            parse_date("2024-01-31 06:05:00 +0000").unwrap()
        );
        assert_eq!(got[1].unit, "1");
        assert_eq!(got[3].metric, Metric::BloodPressureSystolic);
    }

    #[test]
    fn refuses_what_is_not_an_export() {
        assert!(import::<_, WearablesError>("<a/>".as_bytes(), 10, |_, _| Ok(())).is_err());
        assert!(
            import::<_, WearablesError>("<HealthData><Record".as_bytes(), 10, |_, _| Ok(()))
                .is_err()
        );
    }
}
