//! `fuzz_regressions`: every committed fuzz input replayed through the same
//! entry points the fuzz targets call (`satchel_core::fuzzing` and the
//! relay's `api::fuzzing`), in-process and without nightly:
//!
//! - `fuzz/regressions/<target>/*`: crash inputs found by fuzzing, minimized,
//!   each fixed; they must now be refused (or accepted) without a panic;
//! - `fuzz/corpus/<target>/*`: the committed seed corpus;
//! - the seeds `satchel_core::fuzzing::seeds()` makes in memory.
//!
//! So it cannot pass vacuously, every target must have committed seeds, at
//! least one accepted input (the entry point reaches past its first
//! check), and every folder must name a known target.

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use satchel_core::fuzzing::{self, Outcome, Target};

fn targets() -> Vec<Target> {
    let mut all = fuzzing::TARGETS.to_vec();
    all.push(Target {
        name: "relay_bodies",
        run: satchel_sync_server::api::fuzzing::relay_bodies,
    });
    all
}

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

/// Files of `fuzz/<kind>/<target>/`, sorted (none if the folder is absent).
fn inputs(kind: &str, target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = fuzz_dir().join(kind).join(target);
    let Ok(read) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut out: Vec<(String, Vec<u8>)> = read
        .map(|e| e.expect("readable directory entry").path())
        .filter(|p| p.is_file())
        .map(|p| {
            let name = p
                .file_name()
                .expect("a file name")
                .to_string_lossy()
                .into_owned();
            (name, std::fs::read(&p).expect("readable input"))
        })
        .collect();
    out.sort();
    out
}

/// Every folder under `fuzz/<kind>/` is a known target.
fn folders_are_targets(kind: &str, names: &[&str]) {
    let Ok(read) = std::fs::read_dir(fuzz_dir().join(kind)) else {
        return;
    };
    for entry in read {
        let name = entry.expect("readable directory entry").file_name();
        let name = name.to_string_lossy();
        assert!(
            names.contains(&name.as_ref()),
            "fuzz/{kind}/{name} names no target"
        );
    }
}

fn run(target: &Target, what: &str, data: &[u8]) -> Outcome {
    catch_unwind(AssertUnwindSafe(|| (target.run)(data)))
        .unwrap_or_else(|_| panic!("{} panicked on {what}", target.name))
}

#[test]
fn fuzz_regressions() {
    let targets = targets();
    let names: Vec<&str> = targets.iter().map(|t| t.name).collect();
    folders_are_targets("regressions", &names);
    folders_are_targets("corpus", &names);
    // Every target has a fuzz target file, so the fuzzer runs what is replayed.
    for name in &names {
        let file = fuzz_dir().join("fuzz_targets").join(format!("{name}.rs"));
        assert!(file.is_file(), "no {}", file.display());
    }

    let mut generated: BTreeMap<&str, Vec<fuzzing::Seed>> = BTreeMap::new();
    for seed in fuzzing::seeds() {
        generated.entry(seed.target).or_default().push(seed);
    }
    let mut regressions = 0;
    for target in &targets {
        let corpus = inputs("corpus", target.name);
        assert!(
            !corpus.is_empty(),
            "fuzz/corpus/{} has no seeds",
            target.name
        );
        let mut accepted = 0;
        for (name, data) in &corpus {
            if run(target, &format!("corpus/{name}"), data) == Outcome::Accepted {
                accepted += 1;
            }
        }
        for seed in generated.get(target.name).into_iter().flatten() {
            let outcome = run(
                target,
                &format!("generated seed {}", seed.name),
                &seed.bytes,
            );
            assert_eq!(
                outcome,
                Outcome::Accepted,
                "{}: generated seed {} is refused",
                target.name,
                seed.name
            );
        }
        assert!(
            accepted > 0,
            "{}: no committed seed is accepted",
            target.name
        );
        for (name, data) in inputs("regressions", target.name) {
            run(target, &format!("regressions/{name}"), &data);
            regressions += 1;
        }
    }
    eprintln!(
        "fuzz_regressions: {} targets, {regressions} regression inputs",
        targets.len()
    );
}
