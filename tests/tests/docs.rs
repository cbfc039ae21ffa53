//! The docs point at tests: every test named in the hazard log
//! (docs/clinical-safety.md) and the threat model (docs/security.md) must
//! exist as a test function in the workspace, so that a renamed or deleted
//! test cannot leave a claim unchecked. (That they pass is the rest of the
//! suite's job.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if path.is_dir() {
            if name != "target" && !name.starts_with('.') {
                rust_files(&path, out);
            }
        } else if name.ends_with(".rs") {
            out.push(path);
        }
    }
}

/// Names of test functions: `fn name(` preceded (within a few lines) by
/// `#[test]`, `#[tokio::test...]` or inside a `proptest!` block.
fn test_functions() -> BTreeSet<String> {
    let mut files = Vec::new();
    for dir in ["protocol", "core", "sync-server", "cli", "tests"] {
        rust_files(&workspace().join(dir), &mut files);
    }
    let mut names = BTreeSet::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        let in_proptest = text.contains("proptest!");
        for (i, line) in lines.iter().enumerate() {
            let t = line.trim_start();
            let Some(rest) = t
                .strip_prefix("fn ")
                .or_else(|| t.strip_prefix("async fn "))
            else {
                continue;
            };
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            let before = &lines[i.saturating_sub(4)..i];
            let marked = before
                .iter()
                .any(|l| l.contains("#[test]") || l.contains("::test"));
            if marked || in_proptest {
                names.insert(name);
            }
        }
    }
    names
}

/// Backticked snake_case names of at least two words in `doc` (the doc
/// uses that form only for test names).
fn named_tests(doc: &str) -> BTreeSet<String> {
    let text = std::fs::read_to_string(workspace().join(doc)).unwrap();
    let mut out = BTreeSet::new();
    for piece in text.split('`').skip(1).step_by(2) {
        if piece.contains('_')
            && piece
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            && !piece.starts_with('_')
        {
            out.insert(piece.to_string());
        }
    }
    out
}

#[test]
fn every_hazard_names_a_test_that_exists() {
    let tests = test_functions();
    let text = std::fs::read_to_string(workspace().join("docs/clinical-safety.md")).unwrap();
    let rows: Vec<&str> = text.lines().filter(|l| l.starts_with("| H")).collect();
    assert!(rows.len() >= 6, "the hazard log has its hazards");
    for row in rows {
        let cells: Vec<&str> = row.split('|').collect();
        let verified = cells.get(7).copied().unwrap_or_default();
        let names: Vec<&str> = verified
            .split('`')
            .skip(1)
            .step_by(2)
            .filter(|n| n.contains('_'))
            .collect();
        assert!(!names.is_empty(), "hazard without a test: {row}");
        for name in names {
            assert!(
                tests.contains(name),
                "docs/clinical-safety.md names `{name}`, which is not a test in the workspace"
            );
        }
    }
}

#[test]
fn security_claims_name_tests_that_exist() {
    let tests = test_functions();
    let named = named_tests("docs/security.md");
    assert!(named.len() >= 5);
    let missing: Vec<_> = named.iter().filter(|n| !tests.contains(*n)).collect();
    assert!(
        missing.is_empty(),
        "docs/security.md names tests that do not exist: {missing:?}"
    );
}
