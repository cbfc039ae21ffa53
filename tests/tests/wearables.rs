//! Wearables end to end: the core API over a real SQLite store, and the
//! `satchel wearables` CLI, through a real `satchel-sync` relay.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use satchel_core::crypto::KdfParams;
use satchel_core::profile::{Profile, Unlock};
use satchel_core::store::SqliteStore;
use satchel_core::wearables::{Metric, SampleInput};
use satchel_tests::{files_containing, run, satchel, validate_fhir, Relay};
use serde_json::Value;

const PASS: &str = "wearables test passphrase";
const DAY_MS: i64 = 86_400_000;
/// 2024-01-01T00:00:00Z
const JAN1: i64 = 1_704_067_200_000;

/// A small deterministic generator (xorshift), so failures reproduce.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn open(path: &Path, create: bool) -> Profile<SqliteStore> {
    let store = SqliteStore::open(path).unwrap();
    let unlock = Unlock::Passphrase {
        passphrase: PASS.as_bytes(),
        params: Some(KdfParams::for_tests()),
    };
    if create {
        Profile::create(store, "Pat", unlock).unwrap()
    } else {
        Profile::open(store, unlock).unwrap()
    }
}

fn stored_count(p: &mut Profile<SqliteStore>) -> usize {
    Metric::ALL
        .iter()
        .map(|m| p.wearables_samples(*m, i64::MIN, i64::MAX).unwrap().len())
        .sum()
}

/// S unique samples over several months, metrics and sources; 10% sent
/// again; all shuffled and handed over in batches (so months come back
/// late, after later months were stored). Exactly S are stored, also after
/// reopening, and sending everything once more stores nothing.
#[test]
fn duplicate_and_late_samples() {
    const S: usize = 20_000;
    let mut rng = Rng(0x5eed);
    let metrics = [
        (Metric::HeartRate, "/min"),
        (Metric::Steps, "count"),
        (Metric::BloodGlucose, "mg/dL"),
        (Metric::Weight, "kg"),
    ];
    let mut unique = Vec::with_capacity(S);
    for i in 0..S {
        let (metric, unit) = metrics[i % metrics.len()];
        let source = if i % 3 == 0 { "Watch A" } else { "Ring" };
        // Distinct (metric, source, start) for every i.
        let start = JAN1 + (i as i64) * 517_000;
        unique.push(SampleInput {
            metric,
            start_ms: start,
            end_ms: start + if metric == Metric::Steps { 60_000 } else { 0 },
            value: 40.0 + rng.below(120) as f64,
            unit: unit.into(),
            source: source.into(),
        });
    }
    let mut all = unique.clone();
    for _ in 0..S / 10 {
        all.push(unique[rng.below(S as u64) as usize].clone());
    }
    for i in (1..all.len()).rev() {
        all.swap(i, rng.below(i as u64 + 1) as usize);
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("satchel.db");
    let mut p = open(&db, true);
    let mut stored = 0;
    let mut duplicates = 0;
    for batch in all.chunks(all.len() / 4 + 1) {
        let r = p.wearables_ingest(batch).unwrap();
        stored += r.stored;
        duplicates += r.duplicates;
    }
    assert_eq!(stored, S);
    assert_eq!(duplicates, S / 10);
    assert_eq!(stored_count(&mut p), S);
    drop(p);
    let mut p = open(&db, false);
    assert_eq!(stored_count(&mut p), S, "after reopening");
    let again = p.wearables_ingest(&all).unwrap();
    assert_eq!((again.stored, again.duplicates), (0, all.len()));
    assert_eq!(stored_count(&mut p), S);
    // Raw samples come back in time order with the values given.
    let hr = p
        .wearables_samples(Metric::HeartRate, i64::MIN, i64::MAX)
        .unwrap();
    assert!(hr.windows(2).all(|w| w[0].start_ms <= w[1].start_ms));
    let first = unique
        .iter()
        .find(|s| s.metric == Metric::HeartRate)
        .unwrap();
    assert_eq!(hr[0].value, first.value);
    assert_eq!(hr[0].source, first.source);
}

fn apple_export() -> String {
    let mut x = String::from(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE HealthData [
<!-- HealthKit Export Version: 13 -->
<!ELEMENT HealthData (ExportDate,Me,(Record|Correlation|Workout|ActivitySummary|ClinicalRecord)*)>
<!ATTLIST HealthData
  locale CDATA #REQUIRED
>
<!ELEMENT ExportDate EMPTY>
<!ATTLIST ExportDate
  value CDATA #REQUIRED
>
<!ELEMENT Record ((MetadataEntry|HeartRateVariabilityMetadataList)*)>
<!ATTLIST Record
  type          CDATA #REQUIRED
  unit          CDATA #IMPLIED
  value         CDATA #IMPLIED
  sourceName    CDATA #REQUIRED
  sourceVersion CDATA #IMPLIED
  device        CDATA #IMPLIED
  creationDate  CDATA #IMPLIED
  startDate     CDATA #REQUIRED
  endDate       CDATA #REQUIRED
>
]>
<HealthData locale="en_GB">
 <ExportDate value="2024-03-01 09:00:00 +0000"/>
 <Me HKCharacteristicTypeIdentifierDateOfBirth="" HKCharacteristicTypeIdentifierBiologicalSex="HKBiologicalSexNotSet" HKCharacteristicTypeIdentifierBloodType="HKBloodTypeNotSet" HKCharacteristicTypeIdentifierFitzpatrickSkinType="HKFitzpatrickSkinTypeNotSet" HKCharacteristicTypeIdentifierCardioFitnessMedicationsUse="None"/>
"#,
    );
    let dev = "&lt;&lt;HKDevice: 0x283f1c0f0&gt;, name:Apple Watch, manufacturer:Apple Inc., model:Watch, hardware:Watch6,1, software:10.1&gt;";
    // 48 heart-rate readings on 2024-02-01, every 30 minutes, 60..107 bpm.
    for i in 0..48 {
        let (h, m) = (i / 2, (i % 2) * 30);
        x.push_str(&format!(
            r#" <Record type="HKQuantityTypeIdentifierHeartRate" sourceName="Pat’s Apple Watch" sourceVersion="10.1" device="{dev}" unit="count/min" creationDate="2024-02-01 {h:02}:{m:02}:30 +0000" startDate="2024-02-01 {h:02}:{m:02}:00 +0000" endDate="2024-02-01 {h:02}:{m:02}:00 +0000" value="{}">
  <MetadataEntry key="HKMetadataKeyHeartRateMotionContext" value="0"/>
 </Record>
"#,
            60 + i
        ));
    }
    // Steps from the watch and the phone, same hour: counted once (max).
    x.push_str(r#" <Record type="HKQuantityTypeIdentifierStepCount" sourceName="Pat’s Apple Watch" unit="count" creationDate="2024-02-01 10:20:00 +0000" startDate="2024-02-01 10:00:00 +0000" endDate="2024-02-01 10:15:00 +0000" value="1200"/>
 <Record type="HKQuantityTypeIdentifierStepCount" sourceName="Pat’s iPhone" unit="count" creationDate="2024-02-01 10:20:00 +0000" startDate="2024-02-01 10:01:00 +0000" endDate="2024-02-01 10:14:00 +0000" value="1100"/>
 <Record type="HKQuantityTypeIdentifierStepCount" sourceName="Pat’s iPhone" unit="count" creationDate="2024-02-01 15:20:00 +0000" startDate="2024-02-01 15:00:00 +0000" endDate="2024-02-01 15:10:00 +0000" value="300"/>
 <Record type="HKQuantityTypeIdentifierOxygenSaturation" sourceName="Pat’s Apple Watch" unit="%" creationDate="2024-02-01 03:00:00 +0000" startDate="2024-02-01 03:00:00 +0000" endDate="2024-02-01 03:00:00 +0000" value="0.96"/>
 <Record type="HKQuantityTypeIdentifierOxygenSaturation" sourceName="Pat’s Apple Watch" unit="%" creationDate="2024-02-01 04:00:00 +0000" startDate="2024-02-01 04:00:00 +0000" endDate="2024-02-01 04:00:00 +0000" value="0.98"/>
 <Record type="HKQuantityTypeIdentifierBodyMass" sourceName="Withings" unit="lb" creationDate="2024-02-01 07:00:00 +0000" startDate="2024-02-01 07:00:00 +0000" endDate="2024-02-01 07:00:00 +0000" value="165"/>
 <Record type="HKQuantityTypeIdentifierBodyMassIndex" sourceName="Withings" unit="count" creationDate="2024-02-01 07:00:00 +0000" startDate="2024-02-01 07:00:00 +0000" endDate="2024-02-01 07:00:00 +0000" value="24.1"/>
 <Record type="HKQuantityTypeIdentifierBloodGlucose" sourceName="Dexcom G7" unit="mmol&lt;180.1558800000541&gt;/L" creationDate="2024-02-01 08:00:00 +0000" startDate="2024-02-01 08:00:00 +0000" endDate="2024-02-01 08:00:00 +0000" value="5"/>
 <Record type="HKCategoryTypeIdentifierSleepAnalysis" sourceName="Pat’s Apple Watch" creationDate="2024-02-01 07:00:00 +0000" startDate="2024-02-01 00:30:00 +0000" endDate="2024-02-01 06:30:00 +0000" value="HKCategoryValueSleepAnalysisAsleepCore"/>
 <Record type="HKQuantityTypeIdentifierDistanceWalkingRunning" sourceName="Pat’s iPhone" unit="km" creationDate="2024-02-01 10:20:00 +0000" startDate="2024-02-01 10:00:00 +0000" endDate="2024-02-01 10:15:00 +0000" value="0.9"/>
 <Record type="HKQuantityTypeIdentifierBloodPressureSystolic" sourceName="Omron" unit="mmHg" creationDate="2024-02-01 08:30:00 +0000" startDate="2024-02-01 08:30:00 +0000" endDate="2024-02-01 08:30:00 +0000" value="124"/>
 <Record type="HKQuantityTypeIdentifierBloodPressureDiastolic" sourceName="Omron" unit="mmHg" creationDate="2024-02-01 08:30:00 +0000" startDate="2024-02-01 08:30:00 +0000" endDate="2024-02-01 08:30:00 +0000" value="81"/>
 <Correlation type="HKCorrelationTypeIdentifierBloodPressure" sourceName="Omron" sourceVersion="2" creationDate="2024-02-01 08:30:00 +0000" startDate="2024-02-01 08:30:00 +0000" endDate="2024-02-01 08:30:00 +0000">
  <MetadataEntry key="HKWasUserEntered" value="0"/>
  <Record type="HKQuantityTypeIdentifierBloodPressureDiastolic" sourceName="Omron" unit="mmHg" creationDate="2024-02-01 08:30:00 +0000" startDate="2024-02-01 08:30:00 +0000" endDate="2024-02-01 08:30:00 +0000" value="81"/>
  <Record type="HKQuantityTypeIdentifierBloodPressureSystolic" sourceName="Omron" unit="mmHg" creationDate="2024-02-01 08:30:00 +0000" startDate="2024-02-01 08:30:00 +0000" endDate="2024-02-01 08:30:00 +0000" value="124"/>
 </Correlation>
 <Workout workoutActivityType="HKWorkoutActivityTypeRunning" duration="30" durationUnit="min" sourceName="Pat’s Apple Watch" sourceVersion="10.1" device="&lt;&lt;HKDevice&gt;&gt;" creationDate="2024-02-01 18:31:00 +0000" startDate="2024-02-01 18:00:00 +0000" endDate="2024-02-01 18:30:00 +0000">
  <MetadataEntry key="HKIndoorWorkout" value="0"/>
  <WorkoutEvent type="HKWorkoutEventTypeSegment" date="2024-02-01 18:00:00 +0000" duration="10" durationUnit="min"/>
  <WorkoutStatistics type="HKQuantityTypeIdentifierActiveEnergyBurned" startDate="2024-02-01 18:00:00 +0000" endDate="2024-02-01 18:30:00 +0000" sum="310" unit="Cal"/>
  <WorkoutStatistics type="HKQuantityTypeIdentifierHeartRate" startDate="2024-02-01 18:00:00 +0000" endDate="2024-02-01 18:30:00 +0000" average="150" minimum="120" maximum="171" unit="count/min"/>
  <WorkoutRoute sourceName="Pat’s Apple Watch" sourceVersion="10.1" creationDate="2024-02-01 18:31:00 +0000" startDate="2024-02-01 18:00:00 +0000" endDate="2024-02-01 18:30:00 +0000">
   <FileReference path="/workout-routes/route_2024-02-01_6.30pm.gpx"/>
  </WorkoutRoute>
 </Workout>
 <ActivitySummary dateComponents="2024-02-01" activeEnergyBurned="420" activeEnergyBurnedGoal="500" activeEnergyBurnedUnit="Cal" appleMoveTime="0" appleMoveTimeGoal="0" appleExerciseTime="32" appleExerciseTimeGoal="30" appleStandHours="10" appleStandHoursGoal="12"/>
</HealthData>
"#);
    x
}

fn summary(home: &Path, metric: &str, from: &str, to: &str, every: &str) -> Vec<Value> {
    let out = run(
        satchel(home, PASS).args([
            "wearables",
            "summary",
            "--metric",
            metric,
            "--from",
            from,
            "--to",
            to,
            "--every",
            every,
            "--json",
        ]),
        true,
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn import(home: &Path, file: &Path, expect_success: bool) -> std::process::Output {
    run(
        satchel(home, PASS)
            .args(["wearables", "import"])
            .arg(file)
            .arg("--json"),
        expect_success,
    )
}

/// A generated export.xml in Apple's schema (DOCTYPE, Me, records with
/// metadata, a blood-pressure correlation whose records Apple also lists at
/// top level, a workout with statistics and a route, an activity summary,
/// category and unsupported records) imports what Satchel keeps, converts
/// units, skips the rest and is idempotent.
#[test]
fn apple_health_export_import() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    run(satchel(&home, PASS).args(["init", "--name", "Pat"]), true);
    let file = dir.path().join("export.xml");
    std::fs::write(&file, apple_export()).unwrap();
    let out = import(&home, &file, true);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    // 48 HR + 3 steps + 2 SpO2 + weight + BMI + glucose + 2 BP + 2 BP in the correlation.
    assert_eq!(report["received"], 60, "{report}");
    assert_eq!(report["stored"], 58, "{report}");
    assert_eq!(report["duplicates"], 2);
    assert_eq!(report["correlations"], 1);
    assert_eq!(report["workouts_skipped"], 1);
    assert_eq!(
        report["records_skipped"]["HKCategoryTypeIdentifierSleepAnalysis"],
        1
    );
    assert_eq!(
        report["records_skipped"]["HKQuantityTypeIdentifierDistanceWalkingRunning"],
        1
    );

    let hr = summary(&home, "heart-rate", "2024-02-01", "2024-02-01", "day");
    assert_eq!(hr.len(), 1);
    assert_eq!(
        hr[0]["count"], 48,
        "the workout's heart rate is not imported"
    );
    assert_eq!(
        (hr[0]["min"].as_f64(), hr[0]["max"].as_f64()),
        (Some(60.0), Some(107.0))
    );
    assert_eq!(hr[0]["mean"].as_f64(), Some(83.5));
    let steps = summary(&home, "steps", "2024-02-01", "2024-02-01", "day");
    assert_eq!(
        steps[0]["sum"].as_f64(),
        Some(1500.0),
        "watch and phone in one hour count once"
    );
    let spo2 = summary(&home, "spo2", "2024-02-01", "2024-02-01", "day");
    assert_eq!(
        spo2[0]["mean"].as_f64(),
        Some(97.0),
        "HealthKit fractions become percent"
    );
    let weight = summary(&home, "weight", "2024-02-01", "2024-02-01", "day");
    assert_eq!(weight[0]["mean"].as_f64(), Some(74.842741), "lb to kg");
    let glucose = summary(&home, "blood-glucose", "2024-02-01", "2024-02-01", "day");
    assert_eq!(
        glucose[0]["mean"].as_f64(),
        Some(90.07794),
        "mmol/L to mg/dL by its molar mass"
    );
    let sys = summary(
        &home,
        "blood-pressure-systolic",
        "2024-02-01",
        "2024-02-01",
        "day",
    );
    assert_eq!(
        sys[0]["count"], 1,
        "the correlation's copy is the same sample"
    );
    let hourly = summary(&home, "heart-rate", "2024-02-01", "2024-02-01", "hour");
    assert_eq!(hourly.len(), 24);
    assert!(hourly.iter().all(|b| b["count"] == 2));

    // The same export again stores nothing.
    let again: Value = serde_json::from_slice(&import(&home, &file, true).stdout).unwrap();
    assert_eq!(
        (again["stored"].as_u64(), again["duplicates"].as_u64()),
        (Some(0), Some(60))
    );
    // Nothing readable at rest.
    assert!(files_containing(&home, "Apple Watch".as_bytes()).is_empty());
    assert!(files_containing(&home, b"HKQuantityTypeIdentifier").is_empty());
}

/// A value in a unit that has no exact conversion refuses the whole import
/// with an error naming the metric and the unit (not the value); nothing is
/// stored.
#[test]
fn unit_mismatch_refused() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    run(satchel(&home, PASS).args(["init", "--name", "Pat"]), true);
    let csv = dir.path().join("samples.csv");
    std::fs::write(
        &csv,
        "metric,start,end,value,unit,source\n\
         heart-rate,2024-02-01T08:00:00Z,,71,/min,Watch\n\
         weight,2024-02-01T08:00:00Z,,81.25,mmol/L,Scale\n",
    )
    .unwrap();
    let out = import(&home, &csv, false);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("weight") && err.contains("mmol/L") && err.contains("kg"),
        "{err}"
    );
    assert!(!err.contains("81.25"), "the value is not echoed: {err}");
    assert!(summary(&home, "heart-rate", "2024-02-01", "2024-02-01", "day").is_empty());
    for (metric, unit) in [
        ("blood-glucose", "mmol/mol"),
        ("heart-rate", "count"),
        ("body-temperature", "K"),
    ] {
        std::fs::write(
            &csv,
            format!(
                "metric,start,end,value,unit,source\n{metric},2024-02-01T08:00:00Z,,1,{unit},X\n"
            ),
        )
        .unwrap();
        let out = import(&home, &csv, false);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(unit) && err.contains("no exact conversion"),
            "{err}"
        );
    }
    // Exact conversions are made.
    std::fs::write(
        &csv,
        "metric,start,end,value,unit,source\nweight,2024-02-01T08:00:00Z,,200,[lb_av],Scale\n\
         blood-glucose,2024-02-01T08:00:00Z,,5.5,mmol/L,Meter\n",
    )
    .unwrap();
    import(&home, &csv, true);
    let w = summary(&home, "weight", "2024-02-01", "2024-02-01", "day");
    assert_eq!(w[0]["mean"].as_f64(), Some(90.718474));
    let g = summary(&home, "blood-glucose", "2024-02-01", "2024-02-01", "day");
    assert_eq!(g[0]["mean"].as_f64(), Some(99.0858), "factor 18.0156");
}

fn link(a: &Path, b: &Path, relay: &Relay) {
    satchel_tests::link_devices(a, b, PASS, &relay.url());
}

fn sync(home: &Path, relay: &Relay) -> Value {
    let out = run(
        satchel(home, PASS).args(["sync", "--server", &relay.url(), "--json"]),
        true,
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn csv_days(first_day: i64, days: i64, source: &str) -> String {
    let mut s = String::from("metric,start,end,value,unit,source\n");
    for d in 0..days {
        for m in 0..(24 * 12) {
            let t = time::OffsetDateTime::from_unix_timestamp(
                (JAN1 + (first_day + d) * DAY_MS + m * 300_000) / 1000,
            )
            .unwrap()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap();
            s.push_str(&format!(
                "heart-rate,{t},,{},/min,{source}\n",
                55 + (m * 7 + d) % 40
            ));
            if m % 6 == 0 {
                s.push_str(&format!("steps,{t},,{},count,{source}\n", (m * 13) % 400));
            }
        }
    }
    s
}

/// Device A imports a month of samples and syncs; a new device B linked
/// through a real relay shows the same summaries. Late samples imported on
/// B reach A; re-importing on B what A already sent stores nothing. The
/// relay only ever holds ciphertext.
#[test]
fn wearables_sync_between_devices() {
    let dir = tempfile::tempdir().unwrap();
    let relay_dir = dir.path().join("relay");
    let relay = Relay::start(&relay_dir);
    let a = dir.path().join("phone");
    let b = dir.path().join("laptop");
    run(satchel(&a, PASS).args(["init", "--name", "Pat"]), true);
    let month = dir.path().join("january.csv");
    std::fs::write(&month, csv_days(0, 31, "Pat's Watch")).unwrap();
    let imported: Value = serde_json::from_slice(&import(&a, &month, true).stdout).unwrap();
    assert_eq!(imported["stored"], 31 * 24 * 12 + 31 * 48);
    sync(&a, &relay);
    link(&a, &b, &relay);
    sync(&b, &relay);
    let on_a = summary(&a, "heart-rate", "2024-01-01", "2024-01-31", "day");
    let on_b = summary(&b, "heart-rate", "2024-01-01", "2024-01-31", "day");
    assert_eq!(on_a.len(), 31);
    assert_eq!(on_a, on_b, "the new device has every sample");
    assert_eq!(
        summary(&a, "steps", "2024-01-01", "2024-01-31", "week"),
        summary(&b, "steps", "2024-01-01", "2024-01-31", "week")
    );

    // B re-imports what it already has (nothing new), then late samples.
    let again: Value = serde_json::from_slice(&import(&b, &month, true).stdout).unwrap();
    assert_eq!(again["stored"], 0);
    let late = dir.path().join("late.csv");
    std::fs::write(&late, csv_days(-3, 2, "Pat's Ring")).unwrap();
    import(&b, &late, true);
    sync(&b, &relay);
    let pulled = sync(&a, &relay);
    assert!(pulled["merged"].as_u64().unwrap() >= 2, "{pulled}");
    let dec = summary(&a, "heart-rate", "2023-12-29", "2023-12-30", "day");
    assert_eq!(dec.len(), 2);
    assert_eq!(dec[0]["count"], 24 * 12);
    assert_eq!(
        dec,
        summary(&b, "heart-rate", "2023-12-29", "2023-12-30", "day")
    );
    assert!(files_containing(&relay_dir, b"Pat's Watch").is_empty());
    assert!(files_containing(&relay_dir, b"heart-rate").is_empty());
}

/// Daily summaries of every metric (blood pressure as one panel) export as
/// FHIR R4 Observations that PyPI fhir.resources 6.4.0 accepts.
#[test]
fn summary_observations_validate() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    run(satchel(&home, PASS).args(["init", "--name", "Pat"]), true);
    let rows = [
        ("heart-rate", "/min", 72.0),
        ("resting-heart-rate", "/min", 58.0),
        ("hrv-sdnn", "ms", 43.5),
        ("respiratory-rate", "/min", 14.0),
        ("oxygen-saturation", "%", 97.0),
        ("body-temperature", "Cel", 36.8),
        ("blood-pressure-systolic", "mm[Hg]", 121.0),
        ("blood-pressure-diastolic", "mm[Hg]", 79.0),
        ("weight", "kg", 72.4),
        ("height", "cm", 176.0),
        ("bmi", "kg/m2", 23.4),
        ("body-fat", "%", 19.5),
        ("blood-glucose", "mg/dL", 96.0),
        ("steps", "{steps}", 812.0),
        ("active-energy", "kcal", 41.0),
    ];
    let mut csv = String::from("metric,start,end,value,unit,source\n");
    for day in ["2024-02-01", "2024-02-02"] {
        for (i, (metric, unit, value)) in rows.iter().enumerate() {
            for h in [8, 20] {
                csv.push_str(&format!(
                    "{metric},{day}T{h:02}:{i:02}:00Z,{day}T{h:02}:{i:02}:30Z,{},{unit},Device\n",
                    value + f64::from(h) / 10.0
                ));
            }
        }
    }
    let file = dir.path().join("all.csv");
    std::fs::write(&file, csv).unwrap();
    import(&home, &file, true);
    let out = run(
        satchel(&home, PASS).args([
            "wearables",
            "observations",
            "--from",
            "2024-02-01",
            "--to",
            "2024-02-02",
        ]),
        true,
    );
    let observations: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    // 13 metrics one by one plus one blood-pressure panel, per day.
    assert_eq!(observations.len(), 2 * 14);
    let hr = observations
        .iter()
        .find(|o| o["id"] == "wearables-heart-rate-20240201")
        .unwrap();
    assert_eq!(hr["code"]["coding"][0]["code"], "8867-4");
    assert_eq!(hr["valueQuantity"]["value"].as_f64(), Some(73.4));
    assert_eq!(hr["valueQuantity"]["code"], "/min");
    let bp = observations
        .iter()
        .find(|o| o["id"] == "wearables-blood-pressure-20240202")
        .unwrap();
    assert_eq!(bp["code"]["coding"][0]["code"], "85354-9");
    assert_eq!(
        bp["component"][0]["valueQuantity"]["value"].as_f64(),
        Some(122.4)
    );
    let steps = observations
        .iter()
        .find(|o| o["id"] == "wearables-steps-20240201")
        .unwrap();
    assert_eq!(
        steps["valueQuantity"]["value"].as_f64(),
        Some(812.8 + 814.0)
    );
    validate_fhir(&observations);
}
