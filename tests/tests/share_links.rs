//! SMART Health Links end to end: links made with the real CLI, hosted by
//! a real `satchel-sync`, opened the way a recipient without the app opens
//! them (HTTP as the specification says, npm `jose`, Debian chromium
//! driving the relay's viewer), revoked, refreshed, and the relay's own
//! files searched for anything it must never hold (docs/sharing-links.md).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use satchel_core::share_link::{jwe, ShlPayload};
use satchel_tests::world::*;
use satchel_tests::{files_containing, run, satchel, validate_fhir, Relay};
use serde_json::{json, Value};

const PASSCODE: &str = "4711-amber";

fn patient() -> Value {
    json!({"resourceType": "Patient", "id": "p",
           "name": [{"family": "Example", "given": ["Pat"]}],
           "gender": "female", "birthDate": "1961-05-14",
           "contact": [{"relationship": [{"text": "daughter"}],
                        "name": {"text": "Jane Example"},
                        "telecom": [{"system": "phone", "value": "+44 7700 900123"}]}],
           "address": [{"text": "1 High Street"}]})
}

fn severe_allergy(text: &str) -> Value {
    json!({"resourceType": "AllergyIntolerance", "criticality": "high",
           "code": {"text": text}, "recordedDate": "2021-03-04",
           "patient": {"reference": "Patient/p"}})
}

/// A patient home with a Patient, an allergy and a medication, synced.
fn patient_world() -> (World, PathBuf) {
    let w = world("pat");
    let pat = w.home("pat");
    for r in [
        patient(),
        severe_allergy("Penicillin"),
        med("Metformin 500 mg"),
    ] {
        let out = add(&pat, &r);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(sync(&pat, &w.relay).status.success());
    (w, pat)
}

/// `satchel share-link create ... --json` in `home`.
fn create_link(home: &Path, relay: &Relay, flags: &[&str]) -> Value {
    let mut cmd = satchel(home, PASS);
    cmd.args(["share-link", "create", "--server", &relay.url(), "--json"])
        .args(flags)
        .env("SATCHEL_LINK_PASSCODE", PASSCODE);
    let out = run(&mut cmd, true);
    serde_json::from_slice(&out.stdout).unwrap()
}

fn payload_json(shlink: &str) -> Value {
    let b64 = shlink.strip_prefix("shlink:/").expect("shlink:/ prefix");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(b64).expect("base64url")).unwrap()
}

/// An HTTP client; reqwest brings no crypto provider of its own (the core
/// brings ring), so install it first.
fn http() -> reqwest::Client {
    satchel_core::sync::tls::install_default_provider();
    reqwest::Client::new()
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// POST the manifest as a recipient: (status, body).
fn manifest(url: &str, body: Value) -> (u16, Value, reqwest::header::HeaderMap) {
    rt().block_on(async {
        let resp = http()
            .post(url)
            .header("origin", "https://viewer.example.org")
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::Null),
            headers,
        )
    })
}

fn get(url: &str) -> (u16, String, String) {
    rt().block_on(async {
        let resp = http().get(url).send().await.unwrap();
        let status = resp.status().as_u16();
        let ct = resp
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        (status, ct, resp.text().await.unwrap())
    })
}

/// The one file of a manifest answer, as JWE text (embedded or fetched).
fn first_file(manifest: &Value) -> String {
    let file = &manifest["files"][0];
    if let Some(jwe) = file["embedded"].as_str() {
        return jwe.to_owned();
    }
    let (status, ct, body) = get(file["location"].as_str().expect("embedded or location"));
    assert_eq!(status, 200);
    assert_eq!(ct, "application/jose");
    body
}

fn decrypt_bundle(link: &ShlPayload, jwe_text: &str) -> Value {
    let file = jwe::decrypt(&link.key, jwe_text).expect("our key opens our file");
    serde_json::from_slice(&file.plaintext).unwrap()
}

fn resource_texts(bundle: &Value) -> String {
    serde_json::to_string(&bundle["entry"]).unwrap()
}

#[test]
fn share_link_follows_shl_spec() {
    let (w, pat) = patient_world();
    let made = create_link(
        &pat,
        &w.relay,
        &[
            "--ips",
            "--expires",
            "24h",
            "--passcode",
            "--live",
            "--label",
            "For Dr Okafor",
        ],
    );
    let shlink = made["shlink"].as_str().unwrap();
    // The payload, field by field.
    let p = payload_json(shlink);
    let keys: Vec<&str> = p.as_object().unwrap().keys().map(String::as_str).collect();
    for k in &keys {
        assert!(
            ["url", "key", "exp", "flag", "label", "v"].contains(k),
            "{k}"
        );
    }
    let url = p["url"].as_str().unwrap();
    assert!(url.len() <= 128, "{url}");
    let id = url.rsplit('/').next().unwrap();
    assert_eq!(id.len(), 43);
    assert_eq!(URL_SAFE_NO_PAD.decode(id).unwrap().len(), 32, "256 bits");
    assert_eq!(url, format!("{}/shl/{id}", w.relay.url()));
    let key = p["key"].as_str().unwrap();
    assert_eq!(key.len(), 43);
    assert_eq!(URL_SAFE_NO_PAD.decode(key).unwrap().len(), 32);
    assert_eq!(p["flag"], "LP", "live with passcode, letters in order");
    assert_eq!(p["label"], "For Dr Okafor");
    assert_eq!(p["v"], 1);
    let exp = p["exp"].as_i64().unwrap();
    let now_s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!((exp - now_s - 86_400).abs() < 120, "exp {exp}");
    // Minified JSON: the encoded bytes are exactly the compact form.
    let raw = URL_SAFE_NO_PAD
        .decode(shlink.strip_prefix("shlink:/").unwrap())
        .unwrap();
    assert_eq!(raw, serde_json::to_vec(&p).unwrap());
    // The viewer URL carries the link in the fragment only.
    let viewer = made["viewer_url"].as_str().unwrap();
    assert_eq!(viewer, format!("{}/view#{shlink}", w.relay.url()));
    let link = ShlPayload::parse(viewer).unwrap();
    // The QR code PNG (error correction M) is written when asked.
    let png = w.root.join("qr.png");
    run(
        satchel(&pat, PASS)
            .args(["share-link", "show", made["id"].as_str().unwrap(), "--png"])
            .arg(&png),
        true,
    );
    assert_eq!(&std::fs::read(&png).unwrap()[..8], b"\x89PNG\r\n\x1a\n");

    // The manifest: embedded when the client allows, location otherwise.
    let (status, body, headers) =
        manifest(url, json!({"recipient": "Dr Okafor", "passcode": PASSCODE}));
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["access-control-allow-origin"], "*");
    let files = body["files"].as_array().unwrap();
    assert_eq!(files.len(), 1);
    assert_eq!(files[0]["contentType"], "application/fhir+json");
    let embedded = first_file(&body);
    let (_, small, _) = manifest(
        url,
        json!({"recipient": "Dr Okafor", "passcode": PASSCODE, "embeddedLengthMax": 10}),
    );
    assert!(small["files"][0].get("embedded").is_none(), "{small}");
    let located = first_file(&small);
    // The JWE header: alg dir, enc A256GCM, cty set, no zip; a fresh IV.
    for text in [&embedded, &located] {
        let parts: Vec<&str> = text.split('.').collect();
        assert_eq!(parts.len(), 5);
        assert_eq!(parts[1], "");
        let header: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
        assert_eq!(header["alg"], "dir");
        assert_eq!(header["enc"], "A256GCM");
        assert_eq!(header["cty"], "application/fhir+json");
        assert!(header.get("zip").is_none());
        assert_eq!(URL_SAFE_NO_PAD.decode(parts[2]).unwrap().len(), 12);
    }
    let bundle = decrypt_bundle(&link, &embedded);
    assert_eq!(bundle["resourceType"], "Bundle");
    assert_eq!(bundle["type"], "document", "the IPS is a document Bundle");
    let texts = resource_texts(&bundle);
    assert!(texts.contains("Penicillin") && texts.contains("Metformin"));
    assert!(texts.contains("https://satchel.health/fhir/StructureDefinition/contributed-by"));
    // After the record changes, the live link's new file has a new IV.
    assert!(add(&pat, &med("Lisinopril 10 mg")).status.success());
    assert!(sync(&pat, &w.relay).status.success());
    let (_, again, _) = manifest(url, json!({"recipient": "Dr Okafor", "passcode": PASSCODE}));
    let refreshed = first_file(&again);
    assert_ne!(refreshed.split('.').nth(2), embedded.split('.').nth(2));

    // A U link (the emergency card): a direct GET answers application/jose.
    let card = run(
        satchel(&pat, PASS).args(["emergency-card", "--server", &w.relay.url(), "--json"]),
        true,
    );
    let card: Value = serde_json::from_slice(&card.stdout).unwrap();
    let cp = payload_json(card["shlink"].as_str().unwrap());
    assert_eq!(cp["flag"], "LU", "long-term, direct, never with P");
    assert!(cp.get("exp").is_none());
    let (status, ct, jwe_text) = get(&format!(
        "{}?recipient=Paramedic%20crew",
        cp["url"].as_str().unwrap()
    ));
    assert_eq!((status, ct.as_str()), (200, "application/jose"));
    let card_link = ShlPayload::parse(card["shlink"].as_str().unwrap()).unwrap();
    let card_bundle = decrypt_bundle(&card_link, &jwe_text);
    let card_texts = resource_texts(&card_bundle);
    assert!(card_texts.contains("Penicillin") && card_texts.contains("Jane Example"));
    assert!(
        !card_texts.contains("High Street"),
        "the card's Patient is cut down"
    );

    // The specification's own encryption example, decrypted by our code.
    let ig = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../core/src/share_link/testdata/ig_example_encrypted.jwe"),
    )
    .unwrap();
    let ig_key: [u8; 32] = URL_SAFE_NO_PAD
        .decode("rxTgYlOaKJPFtcEd0qcceN8wEU4p94SqAwIWQe6uX7Q")
        .unwrap()
        .try_into()
        .unwrap();
    let ig_file = jwe::decrypt(&ig_key, &ig).unwrap();
    assert_eq!(
        ig_file.header.cty.as_deref(),
        Some("application/smart-health-card")
    );
    let card: Value = serde_json::from_slice(&ig_file.plaintext).unwrap();
    assert!(card["verifiableCredential"][0]
        .as_str()
        .unwrap()
        .starts_with("eyJ6aXAiOiJERUYi"));
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The browser tools (`scripts/setup-browser.sh`): present, or a failure
/// under CI and a skip otherwise.
fn browser_tools() -> bool {
    let ok = repo()
        .join(".cache/browser/node_modules/jose/package.json")
        .exists()
        && repo()
            .join(".cache/browser/node_modules/playwright-core/package.json")
            .exists()
        && Path::new("/usr/bin/chromium").exists();
    if !ok {
        assert!(
            std::env::var_os("SATCHEL_REQUIRE_FIXTURES").is_none() && std::env::var_os("CI").is_none(),
            "chromium, playwright-core or jose missing: run bash scripts/setup-browser.sh (scripts/test.sh does)"
        );
        println!("note: browser tools missing; run bash scripts/setup-browser.sh");
    }
    ok
}

#[test]
fn share_link_decrypts_with_a_jose_library() {
    if !browser_tools() {
        return;
    }
    let (w, pat) = patient_world();
    let made = create_link(&pat, &w.relay, &["--sections", "allergies,medications"]);
    let p = payload_json(made["shlink"].as_str().unwrap());
    let (status, body, _) = manifest(
        p["url"].as_str().unwrap(),
        json!({"recipient": "GP surgery"}),
    );
    assert_eq!(status, 200);
    let file = w.root.join("file.jwe");
    std::fs::write(&file, first_file(&body)).unwrap();
    // npm jose, installed by scripts/setup-browser.sh, decrypts our file.
    let script = r#"
        const { createRequire } = require('node:module');
        const req = createRequire(process.argv[1] + '/');
        const jose = req('jose');
        const fs = require('node:fs');
        (async () => {
          const jwe = fs.readFileSync(process.argv[2], 'utf8');
          const key = jose.base64url.decode(process.argv[3]);
          const { plaintext, protectedHeader } = await jose.compactDecrypt(jwe, key);
          process.stdout.write(JSON.stringify({ header: protectedHeader, bundle: JSON.parse(new TextDecoder().decode(plaintext)) }));
        })().catch((e) => { console.error(String(e)); process.exit(1); });
    "#;
    let out = Command::new("node")
        .arg("-e")
        .arg(script)
        .arg(repo().join(".cache/browser/node_modules"))
        .arg(&file)
        .arg(p["key"].as_str().unwrap())
        .output()
        .expect("node runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(got["header"]["alg"], "dir");
    assert_eq!(got["header"]["cty"], "application/fhir+json");
    let bundle = &got["bundle"];
    assert_eq!(bundle["type"], "collection");
    let resources: Vec<Value> = bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["resource"].clone())
        .collect();
    assert_eq!(resources.len(), 2, "the allergy and the medication only");
    // The decrypted Bundle and what it holds are valid FHIR R4.
    let mut all = resources.clone();
    all.push(bundle.clone());
    validate_fhir(&all);
}

/// Run the viewer in chromium: the driver's JSON line.
fn view(url: &str, passcode: Option<&str>, screenshot: Option<&Path>) -> Value {
    let mut cmd = Command::new("node");
    cmd.arg(repo().join("tests/browser/viewer.mjs")).args([
        "--url",
        url,
        "--recipient",
        "Dr Okafor",
    ]);
    if let Some(pc) = passcode {
        cmd.args(["--passcode", pc]);
    }
    if let Some(path) = screenshot {
        cmd.arg("--screenshot").arg(path);
    }
    let out = cmd.output().expect("node runs");
    assert!(
        out.status.success(),
        "viewer driver failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn viewer_renders_in_a_real_browser() {
    if !browser_tools() {
        return;
    }
    let (w, pat) = patient_world();
    let made = create_link(
        &pat,
        &w.relay,
        &["--ips", "--passcode", "--label", "Summary for A&E"],
    );
    let viewer = made["viewer_url"].as_str().unwrap();
    // The screenshot is kept as a test artifact.
    let artifacts = repo().join("target/test-artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let shot = artifacts.join("viewer.png");
    let seen = view(viewer, Some(PASSCODE), Some(&shot));
    assert_eq!(seen["state"], "ok", "{seen}");
    assert!(
        seen["allergies"].as_str().unwrap().contains("Penicillin"),
        "{seen}"
    );
    assert!(
        seen["medications"].as_str().unwrap().contains("Metformin"),
        "{seen}"
    );
    assert!(seen["summary"].as_str().unwrap().contains("Pat"), "{seen}");
    assert!(std::fs::metadata(&shot).unwrap().len() > 10_000);
    // No request left this machine's relay (no third-party requests).
    for r in seen["requests"].as_array().unwrap() {
        assert!(r.as_str().unwrap().starts_with(&w.relay.url()), "{r}");
    }
    // A wrong passcode says how many attempts are left.
    let wrong = view(viewer, Some("not-it"), None);
    assert_eq!(wrong["state"], "wrong-passcode", "{wrong}");
    assert!(
        wrong["status"].as_str().unwrap().contains("attempts left"),
        "{wrong}"
    );
    // A revoked link says so.
    run(
        satchel(&pat, PASS).args(["share-link", "revoke", made["id"].as_str().unwrap()]),
        true,
    );
    let revoked = view(viewer, Some(PASSCODE), None);
    assert_eq!(revoked["state"], "revoked", "{revoked}");
    assert!(
        revoked["status"]
            .as_str()
            .unwrap()
            .contains("no longer works"),
        "{revoked}"
    );
    // An expired link says so, before asking anything of the relay.
    let short = create_link(&pat, &w.relay, &["--ips", "--expires", "2s"]);
    std::thread::sleep(std::time::Duration::from_secs(3));
    let expired = view(short["viewer_url"].as_str().unwrap(), None, None);
    assert_eq!(expired["state"], "expired", "{expired}");
    assert!(
        expired["status"].as_str().unwrap().contains("expired"),
        "{expired}"
    );
    // A damaged payload.
    let damaged = view(
        &format!("{}/view#shlink:/not-a-link", w.relay.url()),
        None,
        None,
    );
    assert_eq!(damaged["state"], "damaged", "{damaged}");
}

#[test]
fn live_link_follows_the_record() {
    let (w, pat) = patient_world();
    let live = create_link(&pat, &w.relay, &["--sections", "medications", "--live"]);
    let fixed = create_link(&pat, &w.relay, &["--sections", "medications"]);
    assert!(add(&pat, &med("Atorvastatin 20 mg")).status.success());
    // The sync after the change replaces the live link's files.
    let out = run(
        satchel(&pat, PASS).args(["sync", "--server", &w.relay.url(), "--json"]),
        true,
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["uploaded"], 1, "{report}");
    let open = |made: &Value| {
        let link = ShlPayload::parse(made["shlink"].as_str().unwrap()).unwrap();
        let (status, body, _) = manifest(&link.url, json!({"recipient": "Pharmacy"}));
        assert_eq!(status, 200, "{body}");
        resource_texts(&decrypt_bundle(&link, &first_file(&body)))
    };
    let now = open(&live);
    assert!(
        now.contains("Atorvastatin") && now.contains("Metformin"),
        "{now}"
    );
    let then = open(&fixed);
    assert!(then.contains("Metformin") && !then.contains("Atorvastatin"));
}

#[test]
fn revoked_link_is_gone() {
    let (w, pat) = patient_world();
    let made = create_link(&pat, &w.relay, &["--ips", "--label", "New GP"]);
    let link = ShlPayload::parse(made["shlink"].as_str().unwrap()).unwrap();
    let (status, _, _) = manifest(&link.url, json!({"recipient": "Dr Amara Osei"}));
    assert_eq!(status, 200);
    let out = run(
        satchel(&pat, PASS).args(["share-link", "revoke", made["id"].as_str().unwrap()]),
        true,
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("Revoked"));
    let (status, _, _) = manifest(&link.url, json!({"recipient": "Dr Amara Osei"}));
    assert_eq!(status, 404);
    // The list shows it revoked, opened once, by whom.
    let out = run(
        satchel(&pat, PASS).args(["share-link", "list", "--server", &w.relay.url(), "--json"]),
        true,
    );
    let rows: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    let row = rows.iter().find(|r| r["id"] == made["id"]).unwrap();
    assert_eq!(row["state"], "revoked");
    assert_eq!(row["opened"], 1);
    assert_eq!(row["recipients"], json!(["Dr Amara Osei"]));
    // The audit shows the open before revocation as a view.
    let out = run(
        satchel(&pat, PASS).args(["audit", "--server", &w.relay.url(), "--json"]),
        true,
    );
    let audit: Value = serde_json::from_slice(&out.stdout).unwrap();
    let views = audit["share_link_views"].as_array().unwrap();
    assert_eq!(views.len(), 1, "{audit}");
    assert_eq!(views[0]["who"], "share link New GP (Dr Amara Osei)");
    assert_eq!(views[0]["action"], "viewed");
    let table = run(
        satchel(&pat, PASS).args(["audit", "--server", &w.relay.url()]),
        true,
    );
    assert!(String::from_utf8_lossy(&table.stdout).contains("share link New GP"));
}

#[test]
fn relay_never_sees_link_plaintext() {
    const CANARY: &str = "CANARY-Zanubrutinib-7731";
    let (w, pat) = patient_world();
    assert!(add(&pat, &severe_allergy(CANARY)).status.success());
    assert!(sync(&pat, &w.relay).status.success());
    let a = create_link(&pat, &w.relay, &["--ips", "--passcode", "--live"]);
    let b = create_link(&pat, &w.relay, &["--sections", "allergies", "--once"]);
    let card = run(
        satchel(&pat, PASS).args(["emergency-card", "--server", &w.relay.url(), "--json"]),
        true,
    );
    let card: Value = serde_json::from_slice(&card.stdout).unwrap();
    // Opened, refreshed (a change and a sync), opened again.
    let la = ShlPayload::parse(a["shlink"].as_str().unwrap()).unwrap();
    let lb = ShlPayload::parse(b["shlink"].as_str().unwrap()).unwrap();
    let (s1, m1, _) = manifest(
        &la.url,
        json!({"recipient": "Dr Okafor", "passcode": PASSCODE}),
    );
    assert_eq!(s1, 200);
    assert!(decrypt_bundle(&la, &first_file(&m1))
        .to_string()
        .contains(CANARY));
    assert!(add(&pat, &med(&format!("{CANARY} tablets")))
        .status
        .success());
    assert!(sync(&pat, &w.relay).status.success());
    let (s2, m2, _) = manifest(
        &la.url,
        json!({"recipient": "Dr Okafor", "passcode": PASSCODE, "embeddedLengthMax": 1}),
    );
    assert_eq!(s2, 200);
    assert!(decrypt_bundle(&la, &first_file(&m2))
        .to_string()
        .contains(&format!("{CANARY} tablets")));
    let (s3, _, _) = manifest(&lb.url, json!({"recipient": "Pharmacy"}));
    assert_eq!(s3, 200);
    let cp = payload_json(card["shlink"].as_str().unwrap());
    let (s4, _, _) = get(&format!(
        "{}?recipient=Ambulance",
        cp["url"].as_str().unwrap()
    ));
    assert_eq!(s4, 200);
    // Nothing the relay keeps (database, WAL, log) holds the clinical
    // canary, a passcode, a link's key or a link's secret id.
    let mut needles: Vec<(String, Vec<u8>)> = vec![
        ("canary".into(), CANARY.as_bytes().to_vec()),
        ("passcode".into(), PASSCODE.as_bytes().to_vec()),
    ];
    for (name, made) in [("a", &a), ("b", &b), ("card", &card)] {
        let p = payload_json(made["shlink"].as_str().unwrap());
        let id = p["url"]
            .as_str()
            .unwrap()
            .rsplit('/')
            .next()
            .unwrap()
            .to_owned();
        needles.push((
            format!("{name} key"),
            p["key"].as_str().unwrap().as_bytes().to_vec(),
        ));
        needles.push((format!("{name} id"), id.into_bytes()));
        let raw_key = URL_SAFE_NO_PAD.decode(p["key"].as_str().unwrap()).unwrap();
        needles.push((format!("{name} raw key"), raw_key));
    }
    for (what, needle) in &needles {
        let hits = files_containing(&w.relay.dir, needle);
        assert!(hits.is_empty(), "the relay holds the {what}: {hits:?}");
    }
    // The log is searched with the rest: make sure there is one.
    assert!(w.relay.dir.join("relay.log").exists());
}

/// The card reader (`scripts/read_wallet_card.py`, its tools installed by
/// `scripts/setup.sh`): present, or a failure under CI and a skip otherwise.
fn card_reader() -> Option<Command> {
    let python = repo().join(".cache/venv/bin/python");
    let ok = python.exists()
        && Command::new(&python)
            .args(["-c", "import pypdf, zxingcpp, PIL"])
            .status()
            .is_ok_and(|s| s.success())
        && Command::new("pdftoppm").arg("-v").output().is_ok();
    if !ok {
        assert!(
            std::env::var_os("SATCHEL_REQUIRE_FIXTURES").is_none() && std::env::var_os("CI").is_none(),
            "pypdf, zxing-cpp, pillow or pdftoppm missing: run bash scripts/setup.sh (scripts/test.sh does)"
        );
        println!("note: card reader missing; run bash scripts/setup.sh");
        return None;
    }
    let mut cmd = Command::new(python);
    cmd.arg(repo().join("scripts/read_wallet_card.py"));
    Some(cmd)
}

#[test]
fn emergency_card_prints_as_a_wallet_card() {
    let Some(mut reader) = card_reader() else {
        return;
    };
    let (w, pat) = patient_world();
    let (pdf, svg, png) = (
        w.root.join("card.pdf"),
        w.root.join("card.svg"),
        w.root.join("card-qr.png"),
    );
    let made = run(
        satchel(&pat, PASS)
            .args(["emergency-card", "--server", &w.relay.url(), "--json"])
            .arg("--pdf")
            .arg(&pdf)
            .arg("--svg")
            .arg(&svg)
            .arg("--png")
            .arg(&png),
        true,
    );
    let made: Value = serde_json::from_slice(&made.stdout).unwrap();
    let viewer = made["viewer_url"].as_str().unwrap();
    assert!(viewer.contains("/view#shlink:/"), "{viewer}");

    // Read back as a person would: the printed card's size and words, and
    // the QR code scanned off the rasterized page and off the PNG.
    let out = run(reader.arg(&pdf).arg(&png), true);
    let card: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(card["pages"], 1);
    assert_eq!(
        (card["width_mm"].as_f64(), card["height_mm"].as_f64()),
        (Some(85.6), Some(54.0))
    );
    let text = card["text"].as_str().unwrap();
    for words in [
        "EMERGENCY HEALTH CARD",
        "Pat Example",
        "no passcode",
        "May be incomplete",
    ] {
        assert!(text.contains(words), "{words:?} not on the card: {text}");
    }
    assert_eq!(
        card["card_qr"],
        json!([viewer]),
        "the printed QR opens the viewer"
    );
    assert_eq!(card["png_qr"], json!([viewer]));
    // The SVG carries the same card.
    let svg = std::fs::read_to_string(&svg).unwrap();
    assert!(
        svg.starts_with("<svg") && svg.contains("Pat Example") && svg.contains(r#"width="85.6mm""#)
    );

    // Scanning it reads the card's parts, with no passcode.
    let p = payload_json(made["shlink"].as_str().unwrap());
    let (status, ct, _) = get(&format!(
        "{}?recipient=Paramedic",
        p["url"].as_str().unwrap()
    ));
    assert_eq!((status, ct.as_str()), (200, "application/jose"));
}

#[test]
fn links_of_a_lost_phone_are_revoked_from_another_device() {
    let (w, phone) = patient_world();
    let laptop = w.home("laptop");
    satchel_tests::link_devices(&phone, &laptop, PASS, &w.relay.url());
    let one = create_link(&phone, &w.relay, &["--ips", "--label", "Dentist"]);
    let two = create_link(&phone, &w.relay, &["--sections", "allergies"]);
    let card = run(
        satchel(&phone, PASS).args(["emergency-card", "--server", &w.relay.url(), "--json"]),
        true,
    );
    let card: Value = serde_json::from_slice(&card.stdout).unwrap();
    let urls: Vec<String> = [&one, &two, &card]
        .iter()
        .map(|m| {
            payload_json(m["shlink"].as_str().unwrap())["url"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();

    // The laptop lists the phone's links (it never had their keys) ...
    let out = run(
        satchel(&laptop, PASS).args(["share-link", "list", "--server", &w.relay.url(), "--json"]),
        true,
    );
    let rows: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rows.len(), 3, "{rows:?}");
    assert!(rows
        .iter()
        .all(|r| r["made_here"] == false && r["state"] == "active"));
    // ... revokes one by its id ...
    let out = run(
        satchel(&laptop, PASS).args([
            "share-link",
            "revoke",
            one["id"].as_str().unwrap(),
            "--server",
            &w.relay.url(),
            "--json",
        ]),
        true,
    );
    let out: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out["revoked"], json!([one["id"]]));
    assert_eq!(manifest(&urls[0], json!({"recipient": "x"})).0, 404);
    assert_eq!(manifest(&urls[1], json!({"recipient": "x"})).0, 200);
    // ... an id that matches nothing changes nothing ...
    let out = run(
        satchel(&laptop, PASS).args([
            "share-link",
            "revoke",
            "ffffffff",
            "--server",
            &w.relay.url(),
        ]),
        false,
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("nothing was revoked"));
    assert_eq!(manifest(&urls[1], json!({"recipient": "x"})).0, 200);
    // ... and the rest at once.
    let out = run(
        satchel(&laptop, PASS).args([
            "share-link",
            "revoke",
            "--all",
            "--server",
            &w.relay.url(),
            "--json",
        ]),
        true,
    );
    let out: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out["revoked"].as_array().unwrap().len(), 2, "{out}");
    assert_eq!(manifest(&urls[1], json!({"recipient": "x"})).0, 404);
    assert_eq!(get(&format!("{}?recipient=x", urls[2])).0, 404);
}
