//! PyPI schemathesis against the relay's own OpenAPI, in a test binary of
//! its own. Its output goes to files: through an undrained pipe, a report
//! over 64 KiB blocked it until the time bound.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use satchel_tests::Relay;

/// The schemathesis CLI from `.cache/venv-schemathesis` (installed by
/// `scripts/setup.sh`), installing it if it is missing. `None` when it
/// cannot be installed and neither `CI` nor `SATCHEL_REQUIRE_FIXTURES`
/// is set (skipped with a note); a failure when either is set.
fn schemathesis() -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let venv = root.join(".cache/venv-schemathesis");
    let exe = venv.join("bin/schemathesis");
    let works = |exe: &Path| {
        Command::new(exe)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if !works(&exe) {
        let _ = Command::new("bash")
            .arg(root.join("scripts/setup.sh"))
            .arg("schemathesis")
            .status();
    }
    if works(&exe) {
        return Some(exe);
    }
    let required = std::env::var_os("CI").is_some()
        || std::env::var("SATCHEL_REQUIRE_FIXTURES").is_ok_and(|v| v == "1");
    assert!(
        !required,
        "schemathesis is not installed in {} and could not be installed (bash scripts/setup.sh schemathesis)",
        venv.display()
    );
    println!("note: schemathesis not available; relay_survives_schemathesis skipped");
    None
}

/// PyPI schemathesis against the relay's own OpenAPI (`GET
/// /v1/openapi.json`): generated requests for every operation, at most
/// five minutes (about 45 s on this 2-core machine), and not one 5xx
/// answer.
#[test]
fn relay_survives_schemathesis() {
    let Some(exe) = schemathesis() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // No rate limit: schemathesis sends hundreds of requests a second and a
    // 429 would hide what the handlers do.
    let relay = Relay::start_on(
        &dir.path().join("relay"),
        "127.0.0.1:0",
        &["--rate-per-sec", "0", "--auth-rate-per-sec", "0"],
    );
    let schema = format!("{}/v1/openapi.json", relay.url());
    // A real session, so the authenticated routes run their handlers
    // rather than stopping at 401.
    let token = tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(login(&relay.url()));
    let started = Instant::now();
    let mut child = Command::new(&exe)
        .args(["run", &schema, "--url", &relay.url()])
        .args(["--checks", "not_a_server_error"])
        .args(["--max-examples", "100", "--workers", "2"])
        .args(["--request-timeout", "30"])
        .args(["--header", &format!("Authorization: Bearer {token}")])
        .args(["--generation-database", "none", "--no-color"])
        // Hypothesis (under schemathesis) switches to its CI settings when
        // CI is set, which made the run take over six minutes instead of
        // under one; the relay under test is the same either way.
        .env_remove("CI")
        .current_dir(dir.path())
        .stdin(Stdio::null())
        // Files, not pipes: nobody reads a pipe while it runs, and its
        // report outgrew the 64 KiB pipe buffer (it then blocked forever).
        .stdout(std::fs::File::create(dir.path().join("schemathesis.out")).unwrap())
        .stderr(std::fs::File::create(dir.path().join("schemathesis.err")).unwrap())
        .spawn()
        .expect("schemathesis could not start");
    // Bounded: five minutes at most, whatever schemathesis decides.
    let deadline = started + Duration::from_secs(300);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("schemathesis ran past the 5-minute bound");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let out = child.wait_with_output().unwrap();
    let out_text = std::fs::read(dir.path().join("schemathesis.out")).unwrap();
    let err_text = std::fs::read(dir.path().join("schemathesis.err")).unwrap();
    let elapsed = started.elapsed();
    let stdout = String::from_utf8_lossy(&out_text);
    let stderr = String::from_utf8_lossy(&err_text);
    let log = relay.log();
    let server_errors: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("status=5"))
        .take(10)
        .collect();
    assert!(
        server_errors.is_empty(),
        "the relay answered 5xx:\n{}\n\nschemathesis:\n{stdout}",
        server_errors.join("\n")
    );
    // The 5xx check is the relay's own log (above). A non-zero exit is a
    // failure unless all schemathesis reports are its own runtime errors
    // (its generator crashes now and then, e.g. a Python "AST constructor
    // recursion depth mismatch"), with no check failing.
    let own_errors_only = stdout.contains("Runtime Error") && !stdout.contains("Failures:");
    assert!(
        out.status.success() || own_errors_only,
        "schemathesis failed (exit {:?}):\n{stdout}\n{stderr}",
        out.status.code()
    );
    let answered = log.lines().filter(|l| l.contains(" status=")).count();
    let authorized = log
        .lines()
        .filter(|l| l.contains(" status=") && !l.contains("identity=\"-\""))
        .count();
    assert!(
        answered >= 500 && authorized >= 100,
        "schemathesis sent too few requests ({answered}, {authorized} authenticated):\n{stdout}"
    );
    eprintln!(
        "schemathesis: {answered} requests ({authorized} authenticated) in {elapsed:?}, 0 server errors"
    );
}

/// Challenge, signature, token for a new device identity on the relay at
/// `base` (the device's own login, `RelayClient::authenticate`).
async fn login(base: &str) -> String {
    use satchel_core::crypto::{Identity, Role};
    let identity = Identity::generate("schemathesis", Role::PatientDevice, None).unwrap();
    let mut client = satchel_core::sync::RelayClient::new(base).unwrap();
    client.authenticate(&identity).await.unwrap();
    client.token().unwrap().to_owned()
}
