//! End-to-end tests of the CLI as a product: every command's `--help` has an
//! example, every listing prints valid JSON with `--json`, a closed stdout
//! ends `satchel` quietly, and errors are one actionable line without the
//! record's clinical content.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Command, Output, Stdio};

use satchel_tests::{bin, run, satchel, Relay};
use serde_json::{json, Value};

const PASS: &str = "cli test passphrase";

fn init(home: &Path) {
    run(
        satchel(home, PASS).args(["init", "--name", "Test Patient"]),
        true,
    );
}

fn write_json(path: &Path, value: &Value) {
    std::fs::write(path, serde_json::to_vec(value).unwrap()).unwrap();
}

fn condition(text: &str, day: u32) -> Value {
    json!({
        "resourceType": "Condition",
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "195967001", "display": text}], "text": text},
        "onsetDateTime": format!("2019-04-{:02}", day % 28 + 1)
    })
}

/// Add `n` conditions in one Bundle.
fn add_conditions(home: &Path, prefix: &str, n: u32) {
    let bundle = json!({"resourceType": "Bundle", "type": "collection",
        "entry": (0..n).map(|i| json!({"resource": condition(&format!("{prefix} {i}"), i)})).collect::<Vec<_>>()});
    let file = home.with_extension("bundle.json");
    write_json(&file, &bundle);
    run(satchel(home, PASS).arg("add").arg(&file), true);
}

/// The subcommand names listed under `Commands:` in a help text (without
/// clap's own `help`).
fn subcommands(help: &str) -> Vec<String> {
    help.lines()
        .skip_while(|l| l.trim() != "Commands:")
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_string)
        .collect()
}

fn help(path: &[String]) -> String {
    let out = Command::new(bin("satchel"))
        .args(path)
        .arg("--help")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "satchel {} --help failed: {}",
        path.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Walks the command tree from `satchel --help` (so a new command is
/// checked without touching this test) and asks each command for its help.
#[test]
fn every_command_has_help_with_example() {
    let mut missing = Vec::new();
    let mut checked = 0;
    let mut todo = vec![Vec::<String>::new()];
    while let Some(path) = todo.pop() {
        let text = help(&path);
        checked += 1;
        let example = text.split_once("Example").map(|(_, rest)| {
            rest.lines()
                .skip(1)
                .any(|l| l.trim_start().starts_with("satchel") || l.contains(" satchel "))
        });
        if example != Some(true) {
            missing.push(format!("satchel {}", path.join(" ")));
        }
        for sub in subcommands(&text) {
            let mut next = path.clone();
            next.push(sub);
            todo.push(next);
        }
    }
    // The top level, its two dozen commands and the nested ones.
    assert!(
        checked > 25,
        "only {checked} commands found: help parsing broke?"
    );
    assert!(
        missing.is_empty(),
        "commands without an example in --help: {missing:?}"
    );
}

fn json_of(out: &Output, what: &str) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{what} --json printed invalid JSON ({e}):\n{}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// Every command that lists something prints one valid JSON value on stdout
/// with `--json`, on a small real home synced with a real relay.
#[test]
fn listings_print_valid_json() {
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start(&dir.path().join("relay"));
    let url = relay.url();
    let home = dir.path().join("home");
    init(&home);
    add_conditions(&home, "Asthma", 3);
    let csv = dir.path().join("samples.csv");
    std::fs::write(
        &csv,
        "metric,start,end,value,unit,source\n\
         heart-rate,2024-02-01T08:00:00Z,,71,/min,Watch\n\
         heart-rate,2024-02-01T09:00:00Z,,64,/min,Watch\n\
         steps,2024-02-01T09:00:00Z,2024-02-01T10:00:00Z,1200,count,Watch\n",
    )
    .unwrap();
    let mut cases: Vec<Vec<String>> = vec![
        vec![
            "wearables".into(),
            "import".into(),
            csv.display().to_string(),
        ],
        vec!["list".into()],
        vec!["summary".into()],
        vec!["whoami".into()],
        vec!["grants".into()],
        vec!["sync".into(), "--server".into(), url.clone()],
        vec![
            "invite".into(),
            "--server".into(),
            url.clone(),
            "--role".into(),
            "carer".into(),
            "--sections".into(),
            "conditions".into(),
        ],
        vec!["approve".into(), "--server".into(), url.clone()],
        vec!["audit".into(), "--server".into(), url.clone()],
        vec![
            "wearables".into(),
            "summary".into(),
            "--metric".into(),
            "heart-rate".into(),
            "--from".into(),
            "2024-02-01".into(),
            "--to".into(),
            "2024-02-02".into(),
        ],
        vec![
            "wearables".into(),
            "observations".into(),
            "--from".into(),
            "2024-02-01".into(),
            "--to".into(),
            "2024-02-02".into(),
        ],
    ];
    let entries = json_of(
        &run(satchel(&home, PASS).args(["list", "--json"]), true),
        "list",
    );
    let id = entries[0]["id"].as_str().unwrap().to_string();
    cases.push(vec!["history".into(), id]);
    let file = dir.path().join("one.json");
    write_json(&file, &condition("Hay fever", 3));
    cases.push(vec!["add".into(), file.display().to_string()]);
    for args in cases {
        let out = run(satchel(&home, PASS).args(&args).arg("--json"), true);
        let value = json_of(&out, &args.join(" "));
        assert!(value.is_array() || value.is_object(), "{args:?}: {value}");
    }
    // The pending invite shows in the approve listing.
    let pending = json_of(
        &run(
            satchel(&home, PASS).args(["approve", "--server", &url, "--json"]),
            true,
        ),
        "approve",
    );
    assert_eq!(pending.as_array().map(Vec::len), Some(1), "{pending}");
}

/// `satchel list | head -1`: the reader goes away early; satchel must end
/// without a panic (no "failed printing to stdout: Broken pipe").
#[test]
fn closed_stdout_exits_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    init(&home);
    // Far more output than a pipe buffers (64 KiB), so writes happen after
    // the reader has gone.
    add_conditions(
        &home,
        "Seasonal allergic rhinitis with a long description",
        1500,
    );
    for extra in [&[][..], &["--json"][..]] {
        let mut child = satchel(&home, PASS)
            .arg("list")
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut first = String::new();
        stdout.read_line(&mut first).unwrap();
        assert!(!first.is_empty(), "satchel list printed nothing");
        drop(stdout);
        let mut stderr = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        let status = child.wait().unwrap();
        assert!(
            !stderr.contains("panicked") && !stderr.contains("Broken pipe"),
            "list {extra:?} with a closed stdout: {stderr}"
        );
        assert!(status.success(), "list {extra:?}: {status:?} {stderr}");
    }
}

/// Runs a failing command and checks its error: a non-zero exit, one line
/// `error: ...` mentioning every hint in `expect`, no panic, and nothing of
/// the clinical text `secret`.
fn assert_actionable(name: &str, cmd: &mut Command, expect: &[&str], secret: &str) {
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{name}: succeeded");
    assert!(!stderr.contains("panicked"), "{name}: {stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "{name}: not one line: {stderr}");
    assert!(lines[0].starts_with("error: "), "{name}: {stderr}");
    for hint in expect {
        assert!(stderr.contains(hint), "{name}: no {hint:?} in: {stderr}");
    }
    assert!(
        !stderr.contains(secret),
        "{name}: clinical text in: {stderr}"
    );
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains(secret),
        "{name}: clinical text on stdout"
    );
}

#[test]
fn errors_are_actionable() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    init(&home);
    let secret = format!("CANARY-{}-pulmonary", std::process::id());
    add_conditions(&home, &secret, 2);

    assert_actionable(
        "no home",
        Command::new(bin("satchel"))
            .arg("list")
            .env_remove("SATCHEL_HOME")
            .env("SATCHEL_PASSPHRASE", PASS),
        &["--home", "SATCHEL_HOME"],
        &secret,
    );
    assert_actionable(
        "empty home",
        satchel(&dir.path().join("empty"), PASS).arg("list"),
        &["no Satchel profile", "init"],
        &secret,
    );
    assert_actionable(
        "wrong passphrase",
        satchel(&home, "not the passphrase").arg("list"),
        &[
            "wrong passphrase",
            "nothing was changed",
            "SATCHEL_PASSPHRASE",
        ],
        &secret,
    );
    // A port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let down = format!("http://127.0.0.1:{port}");
    assert_actionable(
        "relay down",
        satchel(&home, PASS).args(["sync", "--server", &down]),
        &[&down, "did not answer", "satchel serve"],
        &secret,
    );
    assert_actionable(
        "relay down (invite)",
        satchel(&home, PASS).args([
            "invite",
            "--server",
            &down,
            "--role",
            "carer",
            "--sections",
            "conditions",
        ]),
        &[&down, "did not answer", "nothing was shared"],
        &secret,
    );
    assert_actionable(
        "unknown section (list)",
        satchel(&home, PASS).args(["list", "--section", "kidneys"]),
        &["valid sections are", "satchel list --help"],
        &secret,
    );
    assert_actionable(
        "unknown section (invite)",
        satchel(&home, PASS).args([
            "invite",
            "--server",
            &down,
            "--role",
            "carer",
            "--sections",
            "kidneys",
        ]),
        &["unknown section", "sections are"],
        &secret,
    );
    let bad = dir.path().join("bad.json");
    std::fs::write(
        &bad,
        format!(r#"{{"resourceType": "Condition", "code": {{"text": "{secret}"}}, "note": "#),
    )
    .unwrap();
    assert_actionable(
        "malformed FHIR (truncated JSON)",
        satchel(&home, PASS).arg("add").arg(&bad),
        &["not valid JSON", "nothing was added"],
        &secret,
    );
    write_json(
        &bad,
        &json!({"resourceType": "Condition", "code": secret, "onsetDateTime": "2020-01-01"}),
    );
    assert_actionable(
        "malformed FHIR (wrong shape)",
        satchel(&home, PASS).arg("add").arg(&bad),
        &["nothing was added"],
        &secret,
    );
    assert_actionable(
        "missing file",
        satchel(&home, PASS)
            .arg("add")
            .arg(dir.path().join("nope.json")),
        &["cannot read", "nope.json"],
        &secret,
    );
}
