//! The provider gateway spoken to by a FHIR client no one here wrote
//! (issue 17): npm fhir-kit-client, with a SMART Backend Services token
//! obtained with an assertion signed by npm jose
//! (tests/gateway/third_party_client.mjs, installed by
//! scripts/setup-gateway-client.sh).

mod gateway_common;

use std::path::{Path, PathBuf};
use std::process::Command;

use gateway_common::*;
use satchel_tests::world::*;
use satchel_tests::{run, satchel};
use serde_json::Value;

const CLIENT_ID: &str = "node-engine";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `node` on PATH, or None.
fn node() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("node"))
        .find(|candidate| candidate.is_file())
}

/// node and the npm packages (`scripts/setup-gateway-client.sh`): present,
/// or a failure under CI and a skip otherwise.
fn client_tools() -> Option<PathBuf> {
    let modules = repo().join(".cache/gateway-client/node_modules");
    let node = node();
    let ok = node.is_some()
        && modules.join("fhir-kit-client/package.json").exists()
        && modules.join("jose/package.json").exists();
    if !ok {
        assert!(
            std::env::var_os("SATCHEL_REQUIRE_FIXTURES").is_none()
                && std::env::var_os("CI").is_none(),
            "node, fhir-kit-client or jose missing: run bash scripts/setup-gateway-client.sh (scripts/setup.sh does)"
        );
        println!("note: gateway client tools missing; run bash scripts/setup-gateway-client.sh");
        return None;
    }
    node
}

/// The third-party client script, run with `node`; its one JSON line.
fn client(node: &Path, args: &[&str]) -> Value {
    let out = Command::new(node)
        .arg(repo().join("tests/gateway/third_party_client.mjs"))
        .args(args)
        .env(
            "SATCHEL_GATEWAY_CLIENT_MODULES",
            repo().join(".cache/gateway-client/node_modules"),
        )
        .output()
        .expect("node runs");
    assert!(
        out.status.success(),
        "third_party_client.mjs {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not one JSON object ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// Polls until the patient's own device lists exactly `n` labs entries.
fn labs_reach(w: &World, home: &str, n: usize) -> Vec<Value> {
    let h = w.home(home);
    let mut labs = Vec::new();
    for _ in 0..100 {
        assert!(sync(&h, &w.relay).status.success());
        labs = list(&h)
            .into_iter()
            .filter(|e| e["section"] == "labs")
            .collect();
        if labs.len() >= n {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    labs
}

#[test]
fn gateway_speaks_fhir_to_a_third_party_client() {
    let Some(node) = client_tools() else {
        return;
    };
    // The practice of gateway.rs's `practice()`, with the engine's key made
    // by npm jose and registered before the gateway starts.
    let w = world("pat");
    let gp = w.home("gp");
    patient_sharing(&w, "pat", "Example", "1970-01-01", "9000000009", &gp);
    patient_sharing(&w, "ann", "Jones", "1955-02-03", "9000000017", &gp);
    let keys = w.root.join("node-engine-keys");
    let keys_arg = keys.to_str().unwrap();
    client(
        &node,
        &["keygen", "--client-id", CLIENT_ID, "--out", keys_arg],
    );
    run(
        satchel(&gp, PASS)
            .args([
                "provider",
                "clients",
                "add",
                CLIENT_ID,
                "--scope",
                "system/*.read system/*.write",
                "--jwks",
            ])
            .arg(keys.join("jwks.json")),
        true,
    );
    let gateway = Gateway::start(&gp, &w.relay.url(), &[]);

    let key = keys.join("private.jwk.json");
    let got = client(
        &node,
        &[
            "run",
            "--base",
            &gateway.base,
            "--client-id",
            CLIENT_ID,
            "--key",
            key.to_str().unwrap(),
        ],
    );
    println!("third-party client: {got}");
    assert_eq!(got["fhirVersion"], "4.0.1", "{got}");
    assert_eq!(got["tokenEndpoint"], gateway.token_url(), "{got}");
    // Patients are matched, never written; the Observations are new.
    assert_eq!(
        got["transactionStatuses"],
        serde_json::json!(["200 OK", "201 Created", "200 OK", "201 Created"]),
        "{got}"
    );
    assert!(
        got["patientId"].as_str().is_some_and(|s| !s.is_empty()),
        "{got}"
    );
    assert_eq!(got["observationTotal"], 1, "{got}");
    assert_eq!(got["observationValues"], serde_json::json!([5.4]), "{got}");
    assert_eq!(got["summaryType"], "document", "{got}");
    assert_eq!(got["summaryHasAllergy"], true, "{got}");

    // Through Satchel itself: each patient's own device gets its one
    // glucose result, uploaded by the gateway in the background.
    for home in ["pat", "ann"] {
        let labs = labs_reach(&w, home, 1);
        assert_eq!(labs.len(), 1, "{home}: {labs:?}");
    }
    drop(gateway);
}
