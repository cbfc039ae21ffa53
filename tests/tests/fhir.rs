//! FHIR interoperability: import of the official R4 examples and their
//! export unchanged, de-duplication of re-sent resources, refusal of a
//! Bundle about another patient, and validation of the FHIR and IPS exports
//! with PyPI fhir.resources (R4).

#![allow(clippy::unwrap_used)] // test code: a failed unwrap is a failed test

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use satchel_core::fhir::import::{collect_resources, IncomingResource};
use satchel_core::fhir::model::{Resource, MODELLED_TYPES};
use satchel_core::profile::import::ImportError;
use satchel_core::profile::{MemorySecretStore, Profile, Unlock};
use satchel_core::store::MemoryStore;
use satchel_tests::{run, satchel, snapshot_files, validate_fhir};
use serde_json::{json, Value};

const PASS: &str = "a long test passphrase";

/// The official examples (`SATCHEL_FHIR_EXAMPLES`); a missing directory
/// fails when `SATCHEL_REQUIRE_FIXTURES` is set, else skips.
fn examples_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("SATCHEL_FHIR_EXAMPLES").map(PathBuf::from);
    match dir {
        Some(d) if d.join("Patient-example.json").is_file() => Some(d),
        _ => {
            assert!(
                std::env::var_os("SATCHEL_REQUIRE_FIXTURES").is_none(),
                "the official FHIR R4 examples are missing (run bash scripts/setup.sh; set SATCHEL_FHIR_EXAMPLES)"
            );
            println!("note: official FHIR R4 examples not found; skipping");
            None
        }
    }
}

fn example_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy();
            !name.starts_with("package.json") && !name.starts_with('.')
        })
        .collect();
    files.sort();
    files
}

fn resource_type(v: &Value) -> &str {
    v.get("resourceType").and_then(Value::as_str).unwrap_or("")
}

fn fresh_profile() -> Profile<MemoryStore> {
    let keystore = MemorySecretStore::new();
    Profile::create(MemoryStore::new(), "Test", Unlock::SecretStore(&keystore)).unwrap()
}

fn read(bytes: &[u8]) -> Vec<IncomingResource> {
    collect_resources(bytes).unwrap().1
}

/// Resources of the exported collection Bundle.
fn exported(profile: &Profile<MemoryStore>) -> Vec<Value> {
    let bundle = profile.export_fhir(None).unwrap();
    assert_eq!(bundle["type"], "collection");
    bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["resource"].clone())
        .collect()
}

/// Import `inputs` into a fresh record, export, and check that every input
/// resource of a supported type comes back equal (and that the typed model
/// round-trips it). Returns how many were checked, or the import error.
fn round_trip(inputs: Vec<IncomingResource>) -> Result<usize, ImportError> {
    let mut profile = fresh_profile();
    let report = profile.import_resources(inputs.clone(), Some("https://examples.hl7.org/fhir"))?;
    let out = exported(&profile);
    let mut checked = 0;
    for r in inputs
        .iter()
        .filter(|r| MODELLED_TYPES.contains(&resource_type(&r.resource)))
    {
        let typed = Resource::from_value(r.resource.clone()).unwrap();
        assert_eq!(
            typed.to_value(),
            r.resource,
            "typed model changed a {}",
            resource_type(&r.resource)
        );
        assert!(
            out.contains(&r.resource),
            "a {} (input {}) did not export unchanged; report {:?}",
            resource_type(&r.resource),
            r.index,
            report
        );
        checked += 1;
    }
    Ok(checked)
}

#[test]
fn official_examples_round_trip() {
    let Some(dir) = examples_dir() else {
        return;
    };
    let mut per_type: BTreeMap<String, usize> = BTreeMap::new();
    let mut bundles_whole = 0;
    let mut bundles_per_entry = 0;
    for path in example_files(&dir) {
        let bytes = std::fs::read(&path).unwrap();
        let Ok(value) = serde_json::from_slice::<Value>(&bytes) else {
            continue;
        };
        let rt = resource_type(&value).to_string();
        if rt == "Bundle" {
            let entries: Vec<Value> = value["entry"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|e| e.get("resource").cloned())
                        .collect()
                })
                .unwrap_or_default();
            if !entries
                .iter()
                .any(|r| MODELLED_TYPES.contains(&resource_type(r)))
            {
                continue;
            }
            // The whole Bundle if it imports (a Bundle type we take, one
            // patient, every entry with a resource); else entry by entry.
            let whole = collect_resources(bytes.as_slice())
                .ok()
                .map(|(_, items)| round_trip(items));
            match whole {
                Some(Ok(n)) => {
                    bundles_whole += 1;
                    *per_type.entry("(in Bundles)".into()).or_default() += n;
                }
                _ => {
                    bundles_per_entry += 1;
                    for r in entries
                        .into_iter()
                        .filter(|r| MODELLED_TYPES.contains(&resource_type(r)))
                    {
                        let item = read(&serde_json::to_vec(&r).unwrap());
                        *per_type.entry("(in Bundles)".into()).or_default() +=
                            round_trip(item).unwrap();
                    }
                }
            }
        } else if MODELLED_TYPES.contains(&rt.as_str()) {
            let n = round_trip(read(&bytes)).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert_eq!(n, 1);
            *per_type.entry(rt).or_default() += 1;
        }
    }
    println!(
        "round-tripped: {per_type:?}; Bundles imported whole: {bundles_whole}, entry by entry: {bundles_per_entry}"
    );
    for t in MODELLED_TYPES {
        assert!(
            per_type.get(*t).copied().unwrap_or(0) > 0,
            "no example of {t} was checked"
        );
    }
}

fn init(home: &Path) {
    run(
        satchel(home, PASS).args(["init", "--name", "Test Patient"]),
        true,
    );
}

fn add(home: &Path, value: &Value, source: Option<&str>) -> std::process::Output {
    let file = home.join("input.json");
    std::fs::write(&file, serde_json::to_vec(value).unwrap()).unwrap();
    let mut cmd = satchel(home, PASS);
    cmd.args(["add", "--json"]).arg(&file);
    if let Some(s) = source {
        cmd.args(["--source", s]);
    }
    let out = cmd.output().unwrap();
    std::fs::remove_file(&file).unwrap();
    out
}

fn add_ok(home: &Path, value: &Value, source: Option<&str>) -> Value {
    let out = add(home, value, source);
    assert!(
        out.status.success(),
        "add failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn list(home: &Path) -> Vec<Value> {
    let out = run(satchel(home, PASS).args(["list", "--json", "--all"]), true);
    serde_json::from_slice(&out.stdout).unwrap()
}

fn patient(system: &str, value: &str, family: &str, given: &str, birth: &str) -> Value {
    json!({
        "resourceType": "Patient",
        "id": "pat-1",
        "identifier": [{"system": system, "value": value}],
        "name": [{"family": family, "given": [given]}],
        "birthDate": birth
    })
}

fn bundle(kind: &str, resources: Vec<Value>) -> Value {
    json!({
        "resourceType": "Bundle",
        "type": kind,
        "entry": resources.into_iter().enumerate().map(|(i, r)| json!({
            "fullUrl": format!("urn:uuid:00000000-0000-0000-0000-{:012}", i),
            "resource": r
        })).collect::<Vec<_>>()
    })
}

fn condition(id: &str, text: &str) -> Value {
    json!({
        "resourceType": "Condition",
        "id": id,
        "identifier": [{"system": "https://hospital.example/conditions", "value": format!("cond-{id}")}],
        "code": {"text": text},
        "subject": {"reference": "urn:uuid:00000000-0000-0000-0000-000000000000"},
        "onsetDateTime": "2019-04-01"
    })
}

#[test]
fn resend_updates_not_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    init(&home);
    let me = patient(
        "https://nhs.example/nhs-number",
        "943 476 5919",
        "Jones",
        "Ann",
        "1970-03-02",
    );
    let source = Some("https://hospital.example/fhir");
    let first = bundle(
        "transaction",
        vec![
            me.clone(),
            condition("c1", "Asthma"),
            condition("c2", "Eczema"),
        ],
    );
    let report = add_ok(&home, &first, source);
    assert_eq!(report["added"].as_array().unwrap().len(), 3);
    assert_eq!(list(&home).len(), 3);

    // The same Bundle again: nothing new, nothing changed.
    let report = add_ok(&home, &first, source);
    assert_eq!(report["added"].as_array().unwrap().len(), 0);
    assert_eq!(report["updated"].as_array().unwrap().len(), 0);
    assert_eq!(report["unchanged"].as_array().unwrap().len(), 3);
    let entries = list(&home);
    assert_eq!(entries.len(), 3);
    assert!(entries.iter().all(|e| e["versions"] == 1));

    // A corrected Condition (same source system and id): a new version.
    let mut corrected = condition("c1", "Asthma, moderate");
    corrected["clinicalStatus"] = json!({"text": "active"});
    let report = add_ok(
        &home,
        &bundle("collection", vec![corrected.clone()]),
        source,
    );
    assert_eq!(report["added"].as_array().unwrap().len(), 0);
    assert_eq!(report["updated"].as_array().unwrap().len(), 1);
    let entries = list(&home);
    assert_eq!(entries.len(), 3);
    let c1 = entries
        .iter()
        .find(|e| e["source_id"] == "Condition/c1")
        .unwrap();
    assert_eq!(c1["versions"], 2);
    assert_eq!(c1["resource"], corrected);
    let c1_id = c1["id"].as_str().unwrap().to_string();
    let out = run(
        satchel(&home, PASS).args(["history", "--json", &c1_id]),
        true,
    );
    let history: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(history.len(), 2);
    assert_eq!(history[0]["resource"], condition("c1", "Asthma"));

    // The same business identifier from another system, under another id:
    // an update of the same entry, not a duplicate.
    let mut elsewhere = condition("other-id", "Eczema (resolved)");
    elsewhere["identifier"] = condition("c2", "")["identifier"].clone();
    let report = add_ok(&home, &elsewhere, Some("https://gp.example/fhir"));
    assert_eq!(report["added"].as_array().unwrap().len(), 0);
    assert_eq!(report["updated"].as_array().unwrap().len(), 1);
    let entries = list(&home);
    assert_eq!(entries.len(), 3);
    let c2 = entries
        .iter()
        .find(|e| e["source_id"] == "Condition/c2")
        .unwrap();
    assert_eq!(c2["versions"], 2);
    assert_eq!(c2["resource"], elsewhere);

    // A different resource is still added.
    let report = add_ok(&home, &condition("c3", "Hay fever"), source);
    assert_eq!(report["added"].as_array().unwrap().len(), 1);
    assert_eq!(list(&home).len(), 4);
}

#[test]
fn wrong_patient_bundle_refused() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    init(&home);
    let nhs = "https://nhs.example/nhs-number";
    let me = patient(nhs, "943 476 5919", "Jones", "Ann", "1970-03-02");
    add_ok(
        &home,
        &bundle("collection", vec![me.clone(), condition("c1", "Asthma")]),
        Some("https://hospital.example/fhir"),
    );
    let before_files = snapshot_files(&home);
    let before_list = list(&home);

    let someone_else = [
        // Another NHS number (even with the same name and birth date).
        (
            patient(nhs, "401 023 2137", "Jones", "Ann", "1970-03-02"),
            "identifier differs",
        ),
        // No shared identifier system: another birth date.
        (
            patient("https://gp.example/mrn", "77", "Jones", "Ann", "1971-03-02"),
            "birth date differs",
        ),
        // No shared identifier system: another name.
        (
            patient("https://gp.example/mrn", "77", "Smith", "Ann", "1970-03-02"),
            "name differs",
        ),
    ];
    for (other, why) in someone_else {
        for kind in ["collection", "transaction", "searchset", "document"] {
            let input = bundle(kind, vec![condition("c9", "Gout"), other.clone()]);
            let out = add(&home, &input, Some("https://elsewhere.example/fhir"));
            assert!(
                !out.status.success(),
                "{kind}: a Bundle about someone else was imported"
            );
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                stderr.contains("does not match this record's patient")
                    && stderr.contains(why)
                    && stderr.contains("nothing was imported"),
                "{kind}: unclear error: {stderr}"
            );
            for value in ["401 023 2137", "Smith", "1971-03-02", "Gout"] {
                assert!(!stderr.contains(value), "the error names a value: {stderr}");
            }
        }
    }
    assert_eq!(snapshot_files(&home), before_files, "the store changed");
    assert_eq!(list(&home), before_list);

    // The same patient from another system (own MRN, same name and birth date) is accepted.
    let same = patient("https://gp.example/mrn", "77", "jones", "Ann", "1970-03-02");
    let report = add_ok(
        &home,
        &bundle("collection", vec![same, condition("c9", "Gout")]),
        Some("https://gp.example/fhir"),
    );
    assert_eq!(report["added"].as_array().unwrap().len(), 2);
}

#[test]
fn exports_validate() {
    let Some(dir) = examples_dir() else {
        return;
    };
    // A record built from the examples: Patient/example, then every example
    // resource of a type with a section (other Patients left out).
    let mut resources = vec![serde_json::from_slice::<Value>(
        &std::fs::read(dir.join("Patient-example.json")).unwrap(),
    )
    .unwrap()];
    for path in example_files(&dir) {
        let Ok(v) = serde_json::from_slice::<Value>(&std::fs::read(&path).unwrap()) else {
            continue;
        };
        let rt = resource_type(&v);
        if MODELLED_TYPES.contains(&rt) && rt != "Patient" {
            resources.push(v);
        }
    }
    let count = resources.len();
    let home_dir = tempfile::tempdir().unwrap();
    let home = home_dir.path().join("home");
    init(&home);
    let report = add_ok(
        &home,
        &json!({"resourceType": "Bundle", "type": "collection",
                "entry": resources.iter().map(|r| json!({"resource": r})).collect::<Vec<_>>()}),
        Some("http://hl7.org/fhir"),
    );
    assert!(
        report["added"].as_array().unwrap().len() > 100,
        "{count} resources"
    );

    let fhir_file = home_dir.path().join("export.json");
    let ips_file = home_dir.path().join("ips.json");
    run(
        satchel(&home, PASS)
            .args(["export", "--format", "fhir", "-o"])
            .arg(&fhir_file),
        true,
    );
    run(
        satchel(&home, PASS)
            .args(["export", "--format", "ips", "-o"])
            .arg(&ips_file),
        true,
    );
    let fhir: Value = serde_json::from_slice(&std::fs::read(&fhir_file).unwrap()).unwrap();
    let ips: Value = serde_json::from_slice(&std::fs::read(&ips_file).unwrap()).unwrap();
    assert_eq!(fhir["type"], "collection");
    assert_eq!(
        fhir["entry"].as_array().unwrap().len(),
        report["added"].as_array().unwrap().len()
    );

    // The IPS shape.
    assert_eq!(ips["type"], "document");
    let entries = ips["entry"].as_array().unwrap();
    let composition = &entries[0]["resource"];
    assert_eq!(composition["resourceType"], "Composition");
    assert_eq!(composition["type"]["coding"][0]["code"], "60591-5");
    let codes: Vec<&str> = composition["section"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["code"]["coding"][0]["code"].as_str().unwrap())
        .collect();
    for required in ["10160-0", "48765-2", "11450-4"] {
        assert!(codes.contains(&required), "{codes:?}");
    }
    let full_urls: Vec<&str> = entries
        .iter()
        .map(|e| e["fullUrl"].as_str().unwrap())
        .collect();
    assert!(full_urls.iter().all(|u| u.starts_with("urn:uuid:")));
    let unique: std::collections::HashSet<_> = full_urls.iter().collect();
    assert_eq!(unique.len(), full_urls.len());
    // Every reference in the document is to one of its entries (or contained).
    let mut refs = Vec::new();
    collect_refs(&ips, &mut refs);
    assert!(!refs.is_empty());
    for r in &refs {
        assert!(
            r.starts_with('#') || full_urls.contains(&r.as_str()),
            "dangling reference in the IPS"
        );
    }
    assert_eq!(composition["subject"]["reference"], entries[1]["fullUrl"]);

    // Export of some sections only.
    let part_file = home_dir.path().join("part.json");
    run(
        satchel(&home, PASS)
            .args([
                "export",
                "--format",
                "fhir",
                "--sections",
                "allergies,conditions",
                "-o",
            ])
            .arg(&part_file),
        true,
    );
    let part: Value = serde_json::from_slice(&std::fs::read(&part_file).unwrap()).unwrap();
    assert!(part["entry"].as_array().unwrap().iter().all(|e| matches!(
        resource_type(&e["resource"]),
        "AllergyIntolerance" | "Condition"
    )));

    let report = validate_fhir(&[fhir, ips, part]);
    if let Some(report) = report {
        println!("{}", report.lines().last().unwrap_or_default());
    }
}

fn collect_refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Array(a) => a.iter().for_each(|x| collect_refs(x, out)),
        Value::Object(o) => {
            if let Some(Value::String(r)) = o.get("reference") {
                out.push(r.clone());
            }
            for (k, x) in o {
                if k != "div" {
                    collect_refs(x, out);
                }
            }
        }
        _ => {}
    }
}
