//! Shared by the gateway tests (gateway*.rs): a real relay, patients
//! sharing their records with a GP practice, the practice's `satchel
//! provider serve` as a child process, and an integration engine with SMART
//! Backend Services (ES384 assertions signed with `jsonwebtoken` over ring).
#![allow(clippy::unwrap_used, dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P384_SHA384_FIXED_SIGNING};
use satchel_tests::world::*;
use satchel_tests::{run, satchel};
use serde_json::{json, Value};

pub const NHS: &str = "https://fhir.nhs.uk/Id/nhs-number";
pub const CANARY: &str = "CANARY-Glucose-88231";

pub fn patient(family: &str, birth: &str, nhs: &str) -> Value {
    json!({"resourceType": "Patient", "id": format!("p-{nhs}"),
           "identifier": [{"system": NHS, "value": nhs}],
           "name": [{"family": family, "given": ["Pat"]}], "birthDate": birth})
}

pub fn observation(id: &str, subject: Value, date: &str, value: f64) -> Value {
    json!({"resourceType": "Observation", "id": id, "status": "final",
           "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}],
           "code": {"coding": [{"system": "http://loinc.org", "code": "2339-0", "display": "Glucose"}], "text": CANARY},
           "subject": subject, "effectiveDateTime": date,
           "valueQuantity": {"value": value, "unit": "mmol/L", "system": "http://unitsofmeasure.org", "code": "mmol/L"}})
}

pub fn post_entry(full_url: &str, resource: Value) -> Value {
    let rt = resource["resourceType"].as_str().unwrap().to_owned();
    json!({"fullUrl": full_url, "resource": resource, "request": {"method": "POST", "url": rt}})
}

pub fn transaction(entries: Vec<Value>) -> Value {
    json!({"resourceType": "Bundle", "type": "transaction", "entry": entries})
}

/// A patient with a record, shared with the GP practice `gp` (write and
/// read labs, read demographics and the summary's sections).
pub fn patient_sharing(w: &World, home: &str, family: &str, birth: &str, nhs: &str, gp: &Path) {
    let pat = w.home(home);
    if !pat.join("satchel.db").exists() {
        init(&pat, &format!("{family} Patient"));
    }
    assert!(add(&pat, &patient(family, birth, nhs)).status.success());
    let allergy = json!({"resourceType": "AllergyIntolerance", "code": {"text": "Penicillin"},
                         "criticality": "high", "patient": {"reference": format!("Patient/p-{nhs}")}});
    assert!(add(&pat, &allergy).status.success());
    assert!(sync(&pat, &w.relay).status.success());
    let url = w.relay.url();
    let out = run(
        satchel(&pat, PASS).args([
            "invite",
            "--server",
            &url,
            "--json",
            "--role",
            "provider",
            "--sections",
            "labs,demographics,allergies,medications,conditions",
            "--write",
            "--label",
            "GP",
        ]),
        true,
    );
    let invite: Value = serde_json::from_slice(&out.stdout).unwrap();
    run(
        satchel(gp, PASS).args([
            "accept",
            invite["code"].as_str().unwrap(),
            "--name",
            "Dr Okafor",
            "--role",
            "provider",
            "--organisation",
            "Riverside Medical Practice",
        ]),
        true,
    );
    run(
        satchel(&pat, PASS).args([
            "approve",
            invite["invite"].as_str().unwrap(),
            "--server",
            &url,
            "--yes",
        ]),
        true,
    );
    assert!(sync(gp, &w.relay).status.success());
}

/// An integration engine's key (ES384) and its JWKS.
pub struct Engine {
    pub id: String,
    pub kid: String,
    pub pkcs8: Vec<u8>,
}

impl Engine {
    pub fn new(id: &str) -> Self {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, &rng)
            .unwrap()
            .as_ref()
            .to_vec();
        Self {
            id: id.into(),
            kid: format!("{id}-key-1"),
            pkcs8,
        }
    }

    pub fn jwks(&self) -> Value {
        let pair = EcdsaKeyPair::from_pkcs8(
            &ECDSA_P384_SHA384_FIXED_SIGNING,
            &self.pkcs8,
            &SystemRandom::new(),
        )
        .unwrap();
        let point = pair.public_key().as_ref();
        assert_eq!(point.len(), 97);
        json!({"keys": [{"kty": "EC", "crv": "P-384", "kid": self.kid, "alg": "ES384", "use": "sig",
                         "x": URL_SAFE_NO_PAD.encode(&point[1..49]), "y": URL_SAFE_NO_PAD.encode(&point[49..])}]})
    }

    pub fn assertion(&self, aud: &str, jti: &str, exp_in_secs: i64) -> String {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES384);
        header.kid = Some(self.kid.clone());
        header.typ = Some("JWT".into());
        let claims = json!({"iss": self.id, "sub": self.id, "aud": aud, "jti": jti, "exp": now + exp_in_secs});
        jsonwebtoken::encode(
            &header,
            &claims,
            &jsonwebtoken::EncodingKey::from_ec_der(&self.pkcs8),
        )
        .unwrap()
    }

    pub fn register(&self, gp: &Path, scope: &str) {
        let file = gp.join(format!("{}.jwks.json", self.id));
        std::fs::write(&file, self.jwks().to_string()).unwrap();
        run(
            satchel(gp, PASS)
                .args([
                    "provider", "clients", "add", &self.id, "--scope", scope, "--jwks",
                ])
                .arg(&file),
            true,
        );
    }
}

/// `satchel provider serve` as a child process, killed on drop.
pub struct Gateway {
    child: Child,
    pub base: String,
}

impl Gateway {
    pub fn start(gp: &Path, relay: &str, extra: &[&str]) -> Self {
        let mut child = satchel(gp, PASS)
            .args([
                "provider",
                "serve",
                "--server",
                relay,
                "--listen",
                "127.0.0.1:0",
            ])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.strip_prefix("satchel provider gateway at ") {
                    let _ = tx.send(rest.split(' ').next().unwrap_or_default().to_owned());
                }
            }
        });
        let base = rx
            .recv_timeout(std::time::Duration::from_secs(60))
            .expect("the gateway printed its address");
        Self { child, base }
    }

    pub fn token_url(&self) -> String {
        format!("{}/auth/token", self.base)
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

pub fn http() -> reqwest::Client {
    satchel_core::sync::tls::install_default_provider();
    reqwest::Client::new()
}

/// (status, JSON body) of a request.
pub fn call(method: &str, url: &str, token: Option<&str>, body: Option<&Value>) -> (u16, Value) {
    rt().block_on(async {
        let mut req = http().request(method.parse().unwrap(), url);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req
                .header("content-type", "application/fhir+json")
                .body(b.to_string());
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    })
}

/// The token endpoint: (status, body).
/// POST a transaction Bundle of `entries` to the gateway's base with token `t`.
pub fn post_transaction(g: &Gateway, t: &str, entries: Vec<Value>) -> (u16, Value) {
    call(
        "POST",
        &format!("{}/", g.base),
        Some(t),
        Some(&transaction(entries)),
    )
}

pub fn token_call(g: &Gateway, assertion: &str, scope: &str) -> (u16, Value) {
    rt().block_on(async {
        let resp = http()
            .post(g.token_url())
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!(
                "grant_type=client_credentials&scope={}&client_assertion_type={}&client_assertion={assertion}",
                url_encode(scope),
                url_encode("urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
            ))
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    })
}

pub fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub fn token(g: &Gateway, engine: &Engine, scope: &str) -> String {
    let jti = format!("jti-{}", rand_suffix());
    let (status, body) = token_call(g, &engine.assertion(&g.token_url(), &jti, 120), scope);
    assert_eq!(status, 200, "{body}");
    body["access_token"].as_str().unwrap().to_owned()
}

pub fn statuses(bundle: &Value) -> Vec<String> {
    bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["response"]["status"].as_str().unwrap().to_owned())
        .collect()
}

/// A practice with two patients sharing, one patient not sharing, the
/// gateway running, and an engine registered for read and write.
pub struct Practice {
    pub w: World,
    pub gp: PathBuf,
    pub gateway: Gateway,
    pub engine: Engine,
}

pub fn practice() -> Practice {
    let w = world("pat");
    let gp = w.home("gp");
    patient_sharing(&w, "pat", "Example", "1970-01-01", "9000000009", &gp);
    patient_sharing(&w, "ann", "Jones", "1955-02-03", "9000000017", &gp);
    // Someone whose record is not shared with the practice.
    let other = w.home("other");
    init(&other, "Other Person");
    assert!(
        add(&other, &patient("Stranger", "1990-09-09", "9000000025"))
            .status
            .success()
    );
    assert!(sync(&other, &w.relay).status.success());
    let engine = Engine::new("mirth-riverside");
    engine.register(&gp, "system/*.read system/*.write");
    let gateway = Gateway::start(&gp, &w.relay.url(), &[]);
    Practice {
        w,
        gp,
        gateway,
        engine,
    }
}
