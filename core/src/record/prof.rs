#![allow(clippy::unwrap_used, clippy::expect_used)]
// TEMPORARY profiling harness (to be removed).
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::*;
use crate::fhir;

fn load_examples() -> Vec<Value> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../.cache/npm/node_modules/hl7.fhir.r4.examples");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
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

const DATE_FIELDS: &[&str] = &[
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
const PERIOD_FIELDS: &[&str] = &[
    "effectivePeriod",
    "performedPeriod",
    "period",
    "onsetPeriod",
];

fn ten_year_record(examples: &[Value], n: usize) -> Vec<Value> {
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

#[test]
#[ignore]
fn prof_load() {
    let examples = load_examples();
    let resources = ten_year_record(&examples, 1500);
    let mut r = Record::new(crate::ids::RecordId::random());
    let t = Instant::now();
    for chunk in resources.chunks(100) {
        let new = chunk
            .iter()
            .map(|res| NewEntry {
                resource: res.clone(),
                author: crate::ids::IdentityId([1; 32]),
                recorded_at_ms: 5,
                source_system: Some("https://bench.example/fhir".into()),
                source_id: res.get("id").and_then(Value::as_str).map(str::to_string),
            })
            .collect();
        r.add_many(new).unwrap();
        for d in r.sections.values_mut() {
            let _ = d.take_changes();
        }
    }
    println!("adds: {:?}", t.elapsed());
    let t = Instant::now();
    let saves: Vec<(Section, Vec<u8>)> =
        r.sections.iter_mut().map(|(s, d)| (*s, d.save())).collect();
    println!(
        "save: {:?}, bytes {}",
        t.elapsed(),
        saves.iter().map(|s| s.1.len()).sum::<usize>()
    );
    drop(r);
    let iters: usize = std::env::var("PROF_ITERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let mut times = Vec::new();
    for _ in 0..iters {
        let t = Instant::now();
        let mut total = 0;
        for (s, b) in &saves {
            let d = SectionDoc::load(*s, b).unwrap();
            total += d.summary().active;
        }
        assert_eq!(total, 1501);
        times.push(t.elapsed());
    }
    times.sort();
    println!(
        "load+summary: min {:?} median {:?}",
        times[0],
        times[times.len() / 2]
    );
    for (s, b) in &saves {
        let t = Instant::now();
        let d = SectionDoc::load(*s, b).unwrap();
        println!(
            "  {s}: {} entries, {} bytes, load {:?}",
            d.len(),
            b.len(),
            t.elapsed()
        );
    }
}

#[test]
#[ignore]
fn prof_parts() {
    let examples = load_examples();
    let resources = ten_year_record(&examples, 1500);
    let mut r = Record::new(crate::ids::RecordId::random());
    for chunk in resources.chunks(100) {
        let new = chunk
            .iter()
            .map(|res| NewEntry {
                resource: res.clone(),
                author: crate::ids::IdentityId([1; 32]),
                recorded_at_ms: 5,
                source_system: Some("https://bench.example/fhir".into()),
                source_id: res.get("id").and_then(Value::as_str).map(str::to_string),
            })
            .collect();
        r.add_many(new).unwrap();
        for d in r.sections.values_mut() {
            let _ = d.take_changes();
        }
    }
    let saves: Vec<(Section, Vec<u8>)> =
        r.sections.iter_mut().map(|(s, d)| (*s, d.save())).collect();
    drop(r);
    let iters: usize = std::env::var("PROF_ITERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    if std::env::var("PROF_ONLY_AM").is_ok() {
        for _ in 0..iters {
            for (_, b) in &saves {
                let _ =
                    automerge::Automerge::load_with_options(b, super::wire::strict_load_options())
                        .unwrap();
            }
        }
        return;
    }
    if std::env::var("PROF_ONLY_LOAD").is_ok() {
        for _ in 0..iters {
            for (s, b) in &saves {
                let _ = SectionDoc::load(*s, b).unwrap();
            }
        }
        return;
    }
    let time = |name: &str, f: &dyn Fn()| {
        let mut v: Vec<Duration> = (0..iters)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed()
            })
            .collect();
        v.sort();
        println!("{name}: min {:?} median {:?}", v[0], v[iters / 2]);
    };
    time("automerge load only", &|| {
        for (_, b) in &saves {
            let _ = automerge::Automerge::load_with_options(b, super::wire::strict_load_options())
                .unwrap();
        }
    });
    time("SectionDoc::load", &|| {
        for (s, b) in &saves {
            let _ = SectionDoc::load(*s, b).unwrap();
        }
    });
    time("sha256 (ring) of all bytes", &|| {
        for (_, b) in &saves {
            let _ = ring::digest::digest(&ring::digest::SHA256, b);
        }
    });
    time("memcpy of all bytes", &|| {
        for (_, b) in &saves {
            let v = b.clone();
            std::hint::black_box(v);
        }
    });
}
