//! What the benchmarks share: the ten-year record made from the official
//! FHIR R4 examples, one year of wearable samples, and a release relay
//! process on loopback.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use satchel_core::fhir;
use satchel_core::wearables::{Metric, SampleInput};
use serde_json::{json, Value};

pub fn examples_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("SATCHEL_FHIR_EXAMPLES") {
        return PathBuf::from(dir);
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../.cache/npm/node_modules/hl7.fhir.r4.examples")
}

/// Every example resource (not Patient) that belongs in a section, sorted by file name.
pub fn load_examples() -> Vec<Value> {
    let dir = examples_dir();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|_| {
            panic!(
                "no FHIR examples at {}: run scripts/setup.sh",
                dir.display()
            )
        })
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    files
        .into_iter()
        .filter_map(|p| fhir::parse_resource(&std::fs::read(p).ok()?).ok())
        .filter(|v| v["resourceType"] != "Patient")
        .filter(|v| fhir::summarize(v).is_ok() && fhir::section_for(v).is_ok())
        .collect()
}

pub const DATE_FIELDS: &[&str] = &[
    "effectiveDateTime",
    "onsetDateTime",
    "recordedDate",
    "occurrenceDateTime",
    "performedDateTime",
    "authoredOn",
    "date",
    "issued",
    "dateAsserted",
    "created",
    "dateTime",
    "recorded",
];
pub const PERIOD_FIELDS: &[&str] = &[
    "effectivePeriod",
    "performedPeriod",
    "period",
    "onsetPeriod",
];

/// Cycle the examples to `n` resources with fresh ids and dates over ten years.
pub fn ten_year_record(examples: &[Value], n: usize) -> Vec<Value> {
    let start = time::macros::datetime!(2016-01-01 08:00 UTC);
    let span = Duration::from_secs(10 * 365 * 24 * 3600);
    let mut out = Vec::with_capacity(n + 1);
    out.push(json!({"resourceType": "Patient", "id": "bench-patient",
        "name": [{"family": "Bench", "given": ["Pat"]}], "birthDate": "1970-01-01"}));
    for i in 0..n {
        let mut r = examples[i % examples.len()].clone();
        let when = start + span.mul_f64(i as f64 / n as f64);
        let stamp = when
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap();
        r["id"] = json!(format!("bench-{i}"));
        let obj = r.as_object_mut().unwrap();
        for f in DATE_FIELDS {
            if obj.contains_key(*f) {
                obj.insert((*f).to_string(), json!(stamp));
            }
        }
        for f in PERIOD_FIELDS {
            if let Some(p) = obj.get_mut(*f).and_then(Value::as_object_mut) {
                p.insert("start".into(), json!(stamp));
                if p.contains_key("end") {
                    p.insert("end".into(), json!(stamp));
                }
            }
        }
        out.push(r);
    }
    out
}

pub const YEAR_SAMPLES: usize = 500_000;
/// 2024-01-01T00:00:00Z
pub const START: i64 = 1_704_067_200_000;
pub const DAY: i64 = 86_400_000;

pub struct Rng(pub u64);
impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn int(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next() % (hi - lo + 1) as u64) as i64
    }
}

pub fn walk(rng: &mut Rng, v: &mut f64, step: i64, lo: f64, hi: f64, scale: f64) -> f64 {
    *v = (*v + rng.int(-step, step) as f64 / scale).clamp(lo, hi);
    (*v * scale).round() / scale
}

#[allow(clippy::too_many_arguments)]
pub fn series(
    out: &mut Vec<SampleInput>,
    rng: &mut Rng,
    metric: Metric,
    source: &str,
    every_ms: i64,
    hours: (i64, i64),
    duration_ms: i64,
    mut value: impl FnMut(&mut Rng) -> f64,
) {
    let mut t = START;
    while t < START + 366 * DAY {
        let hour = (t % DAY) / 3_600_000;
        if hour >= hours.0 && hour < hours.1 {
            let jitter = rng.int(0, 4) * 1000;
            out.push(SampleInput {
                metric,
                start_ms: t + jitter,
                end_ms: t + jitter + duration_ms,
                value: value(rng),
                unit: metric.unit().into(),
                source: source.into(),
            });
        }
        t += every_ms;
    }
}

pub fn year_of_samples() -> Vec<SampleInput> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut out = Vec::with_capacity(YEAR_SAMPLES + 50_000);
    let (mut hr, mut cgm, mut ring) = (70.0, 100.0, 60.0);
    series(
        &mut out,
        &mut rng,
        Metric::HeartRate,
        "Pat's Apple Watch",
        120_000,
        (0, 24),
        0,
        |r| walk(r, &mut hr, 3, 45.0, 170.0, 1.0),
    );
    series(
        &mut out,
        &mut rng,
        Metric::BloodGlucose,
        "Dexcom G7",
        300_000,
        (0, 24),
        0,
        |r| walk(r, &mut cgm, 4, 60.0, 250.0, 1.0),
    );
    series(
        &mut out,
        &mut rng,
        Metric::Steps,
        "Pat's Apple Watch",
        600_000,
        (7, 23),
        600_000,
        |r| r.int(0, 1200) as f64,
    );
    series(
        &mut out,
        &mut rng,
        Metric::Steps,
        "Pat's iPhone",
        600_000,
        (7, 23),
        600_000,
        |r| r.int(0, 1100) as f64,
    );
    series(
        &mut out,
        &mut rng,
        Metric::ActiveEnergy,
        "Pat's Apple Watch",
        600_000,
        (7, 23),
        600_000,
        |r| r.int(0, 900) as f64 / 10.0,
    );
    series(
        &mut out,
        &mut rng,
        Metric::OxygenSaturation,
        "Pat's Apple Watch",
        3_600_000,
        (0, 8),
        0,
        |r| r.int(93, 100) as f64,
    );
    series(
        &mut out,
        &mut rng,
        Metric::RespiratoryRate,
        "Pat's Apple Watch",
        3_600_000,
        (0, 24),
        0,
        |r| r.int(120, 180) as f64 / 10.0,
    );
    series(
        &mut out,
        &mut rng,
        Metric::HrvSdnn,
        "Pat's Apple Watch",
        10_800_000,
        (0, 24),
        0,
        |r| r.int(200, 900) as f64 / 10.0,
    );
    series(
        &mut out,
        &mut rng,
        Metric::RestingHeartRate,
        "Pat's Apple Watch",
        DAY,
        (0, 24),
        0,
        |r| r.int(52, 64) as f64,
    );
    series(
        &mut out,
        &mut rng,
        Metric::Weight,
        "Withings",
        DAY,
        (0, 24),
        0,
        |r| r.int(7400, 7600) as f64 / 100.0,
    );
    series(
        &mut out,
        &mut rng,
        Metric::Bmi,
        "Withings",
        DAY,
        (0, 24),
        0,
        |r| r.int(230, 240) as f64 / 10.0,
    );
    series(
        &mut out,
        &mut rng,
        Metric::BodyFat,
        "Withings",
        DAY,
        (0, 24),
        0,
        |r| r.int(180, 200) as f64 / 10.0,
    );
    series(
        &mut out,
        &mut rng,
        Metric::BodyTemperature,
        "Thermometer",
        DAY,
        (0, 24),
        0,
        |r| r.int(361, 374) as f64 / 10.0,
    );
    series(
        &mut out,
        &mut rng,
        Metric::BloodPressureSystolic,
        "Omron",
        DAY / 2,
        (0, 24),
        0,
        |r| r.int(110, 140) as f64,
    );
    series(
        &mut out,
        &mut rng,
        Metric::BloodPressureDiastolic,
        "Omron",
        DAY / 2,
        (0, 24),
        0,
        |r| r.int(65, 90) as f64,
    );
    series(
        &mut out,
        &mut rng,
        Metric::HeartRate,
        "Oura Ring",
        300_000,
        (0, 8),
        0,
        |r| walk(r, &mut ring, 2, 40.0, 90.0, 1.0),
    );
    out.truncate(YEAR_SAMPLES);
    assert_eq!(out.len(), YEAR_SAMPLES, "generator makes enough samples");
    out
}

pub fn relay_exe() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let exe = root.join("target/release/satchel-sync");
    if !exe.exists() {
        let status = Command::new(env!("CARGO"))
            .args(["build", "--release", "-p", "satchel-sync-server"])
            .current_dir(&root)
            .status()
            .unwrap();
        assert!(status.success(), "building the relay failed");
    }
    exe
}

pub struct RelayProcess(pub std::process::Child, pub String);
impl Drop for RelayProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn start_relay(dir: &Path) -> RelayProcess {
    use std::io::BufRead;
    let mut child = Command::new(relay_exe())
        .args(["--listen", "127.0.0.1:0", "--db"])
        .arg(dir.join("relay.db"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line.trim().rsplit(' ').next().unwrap().to_string();
    RelayProcess(child, format!("http://{addr}"))
}
