//! Daily summaries as FHIR R4 Observations, for the FHIR export and for
//! sharing.
//!
//! One Observation per metric and day (UTC unless an offset is given):
//! `effectivePeriod` is the day; `valueQuantity` is the day's mean for
//! instant metrics and the day's (source-merged) total for cumulative ones,
//! in the metric's UCUM unit; the statistic and the sample count are in
//! `note`. Vital signs carry the vital-signs category and profile (oxygen
//! saturation also the 59408-5 code the profile asks for); blood pressure
//! is one 85354-9 panel per day with systolic and diastolic components
//! (daily means), as the profile requires. Steps and energy use the
//! `activity` category, glucose `laboratory`, HRV and body fat
//! `vital-signs` without the profile.

use serde_json::{json, Value};

use super::metric::{Kind, Metric, BLOOD_PRESSURE_PANEL};
use super::series::Bucket;

const LOINC: &str = "http://loinc.org";
const UCUM: &str = "http://unitsofmeasure.org";
const CATEGORY: &str = "http://terminology.hl7.org/CodeSystem/observation-category";

fn iso(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| "1970-01-01T00:00:00Z".into())
}

fn day_id(ms: i64) -> String {
    iso(ms).get(..10).unwrap_or("0000-00-00").replace('-', "")
}

/// Rounded for display in a resource (two decimals).
fn round2(v: f64) -> Value {
    let r = (v * 100.0).round() / 100.0;
    serde_json::Number::from_f64(r).map_or(Value::Null, Value::Number)
}

fn quantity(metric: Metric, v: f64) -> Value {
    json!({ "value": round2(v), "unit": metric.unit(), "system": UCUM, "code": metric.unit() })
}

fn category(code: &str, display: &str) -> Value {
    json!([{ "coding": [{ "system": CATEGORY, "code": code, "display": display }] }])
}

fn profile_for(metric: Metric) -> Option<&'static str> {
    Some(match metric {
        Metric::HeartRate | Metric::RestingHeartRate => "heartrate",
        Metric::RespiratoryRate => "resprate",
        Metric::OxygenSaturation => "oxygensat",
        Metric::BodyTemperature => "bodytemp",
        Metric::Weight => "bodyweight",
        Metric::Height => "bodyheight",
        Metric::Bmi => "bmi",
        Metric::BloodPressureSystolic | Metric::BloodPressureDiastolic => "bp",
        _ => return None,
    })
}

fn base(id: String, bucket: &Bucket, subject: Option<&Value>) -> serde_json::Map<String, Value> {
    let mut o = serde_json::Map::new();
    o.insert("resourceType".into(), json!("Observation"));
    o.insert("id".into(), json!(id));
    o.insert("status".into(), json!("final"));
    if let Some(s) = subject {
        o.insert("subject".into(), s.clone());
    }
    o.insert(
        "effectivePeriod".into(),
        json!({ "start": iso(bucket.start_ms), "end": iso(bucket.end_ms) }),
    );
    o
}

/// One Observation per daily bucket of `metric` (not for the two blood
/// pressure metrics: see [`blood_pressure`]). `subject` is a FHIR Reference.
pub fn daily(metric: Metric, days: &[Bucket], subject: Option<&Value>) -> Vec<Value> {
    days.iter()
        .map(|b| {
            let mut o = base(format!("wearables-{}-{}", metric.name(), day_id(b.start_ms)), b, subject);
            let (cat, cat_display) = match metric {
                Metric::Steps | Metric::ActiveEnergy => ("activity", "Activity"),
                Metric::BloodGlucose => ("laboratory", "Laboratory"),
                _ => ("vital-signs", "Vital Signs"),
            };
            if let Some(p) = profile_for(metric) {
                o.insert(
                    "meta".into(),
                    json!({ "profile": [
                        "http://hl7.org/fhir/StructureDefinition/vitalsigns",
                        format!("http://hl7.org/fhir/StructureDefinition/{p}")
                    ] }),
                );
            }
            let mut codings = vec![json!({ "system": LOINC, "code": metric.loinc(), "display": metric.display() })];
            if metric == Metric::OxygenSaturation {
                codings.push(json!({ "system": LOINC, "code": "59408-5", "display": "Oxygen saturation in Arterial blood by Pulse oximetry" }));
            }
            o.insert("category".into(), category(cat, cat_display));
            o.insert("code".into(), json!({ "coding": codings, "text": metric.display() }));
            let (value, statistic) = match metric.kind() {
                Kind::Instant => (b.mean, "mean"),
                Kind::Cumulative => (b.sum, "total"),
            };
            o.insert("valueQuantity".into(), quantity(metric, value));
            o.insert(
                "note".into(),
                json!([{ "text": format!("Daily {statistic} of {} wearable samples (min {}, max {}).",
                    b.count, round2(b.min), round2(b.max)) }]),
            );
            Value::Object(o)
        })
        .collect()
}

/// One blood-pressure panel per day present in both series (daily means).
pub fn blood_pressure(
    systolic: &[Bucket],
    diastolic: &[Bucket],
    subject: Option<&Value>,
) -> Vec<Value> {
    systolic
        .iter()
        .filter_map(|s| {
            let d = diastolic.iter().find(|d| d.start_ms == s.start_ms)?;
            let mut o = base(format!("wearables-blood-pressure-{}", day_id(s.start_ms)), s, subject);
            o.insert(
                "meta".into(),
                json!({ "profile": [
                    "http://hl7.org/fhir/StructureDefinition/vitalsigns",
                    "http://hl7.org/fhir/StructureDefinition/bp"
                ] }),
            );
            o.insert("category".into(), category("vital-signs", "Vital Signs"));
            o.insert(
                "code".into(),
                json!({ "coding": [{ "system": LOINC, "code": BLOOD_PRESSURE_PANEL,
                    "display": "Blood pressure panel with all children optional" }],
                    "text": "Blood pressure" }),
            );
            let comp = |m: Metric, b: &Bucket| {
                json!({ "code": { "coding": [{ "system": LOINC, "code": m.loinc(), "display": m.display() }] },
                        "valueQuantity": quantity(m, b.mean) })
            };
            o.insert(
                "component".into(),
                json!([comp(Metric::BloodPressureSystolic, s), comp(Metric::BloodPressureDiastolic, d)]),
            );
            o.insert(
                "note".into(),
                json!([{ "text": format!("Daily mean of {} readings.", s.count.min(d.count)) }]),
            );
            Some(Value::Object(o))
        })
        .collect()
}
