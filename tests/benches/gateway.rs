//! Provider gateway benchmark (issue 17): many patients' records shared
//! with one provider; concurrent integration engines post FHIR transaction
//! Bundles through `satchel provider serve`, which commits them to the
//! provider's copies and uploads them to a real `satchel-sync` relay.
//!
//! ```text
//! cargo bench -p satchel-tests --bench gateway              # full run: 1,000 records, 5,000 transactions
//! cargo bench -p satchel-tests --bench gateway -- --quick   # CI smoke run: 50 records, 200 transactions
//! cargo bench -p satchel-tests --bench gateway -- --compare PATH   # first the whole run with another
//!                                                                  # `satchel` build (before), then this one
//! ```
//!
//! Options: `--records N`, `--transactions N`, `--clients N`,
//! `--max-open-records N` (the gateway's flag; default its own, 64).
//!
//! Both programs are release builds (`cargo build --release --workspace
//! --bins`, run first by the bench) in processes of their own: the relay
//! (SQLite in a temporary directory, rate limits off) and the gateway
//! (`satchel provider serve` in the provider's home, so its peak RSS is
//! read from `/proc/<pid>/status` `VmHWM`). The bench drives them from one
//! 2-worker tokio runtime; everything shares the machine's cores.
//!
//! 1. Setup, in-process through the real relay with core's sharing
//!    functions (the CLI's invite flow, one process per step, would take
//!    an hour for 1,000 records): each patient creates a record (cheap
//!    test KDF on the patient side), adds a Patient with an NHS number,
//!    registers, invites the provider (writer of labs, demographics,
//!    allergies, medications and conditions, as the gateway tests grant);
//!    the provider answers every invite with its one identity, each
//!    patient approves, and the provider joins and syncs each record with
//!    the CLI's own KDF parameters (`KdfParams::recommended()`, Argon2id
//!    19 MiB): the provider's home ends up as `satchel accept` + `satchel
//!    sync` leave it. One engine is registered with `satchel provider
//!    clients add`.
//! 2. The gateway starts (indexing the records' patient identifiers), and
//!    its first upload pass (every record synced once) is waited for.
//! 3. Load: `--clients` engines, each with its own SMART Backend Services
//!    token and one keep-alive connection, post the transactions (10 lab
//!    Observations each, routed by the patient's NHS number, for a patient
//!    chosen at random) as fast as answers come. Per-transaction latency
//!    (request sent to answer read), 2xx throughput, then end to end: until
//!    the relay holds every change (its database's envelope count; the
//!    gateway's `$status` queue must be empty too; a transaction's ten
//!    Observations are one change of the patient's labs section, one
//!    envelope).
//! 4. A sample of patients sync and must see exactly their Observations.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../tests/gateway_common/mod.rs"]
mod gateway_common;

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gateway_common::{url_encode, Engine, NHS};
use satchel_core::crypto::{KdfParams, Role};
use satchel_core::home::HomeLayout;
use satchel_core::ids::RecordId;
use satchel_core::profile::{IdentityVault, Profile, Unlock};
use satchel_core::record::{Query, Section};
use satchel_core::sharing::GrantRole;
use satchel_core::store::SqliteStore;
use satchel_core::sync::sharing::{self, InviteTerms};
use satchel_core::sync::RelayClient;
use satchel_tests::bin;
use satchel_tests::world::PASS;
use serde_json::{json, Value};

/// Resources in each transaction Bundle.
const PER_BUNDLE: usize = 10;
/// Patients set up at once.
const SETUP_CONCURRENCY: usize = 16;

// ---------------------------------------------------------------------------
// Options and helpers
// ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Opts {
    quick: bool,
    records: usize,
    transactions: usize,
    clients: usize,
    max_open: Option<usize>,
    /// `--compare PATH`: first the whole run with this `satchel` binary.
    compare: Option<PathBuf>,
}

impl Opts {
    fn parse() -> Opts {
        let args: Vec<String> = std::env::args().skip(1).collect();
        let value = |name: &str| {
            args.iter()
                .position(|a| a == name)
                .and_then(|i| args.get(i + 1).cloned())
        };
        let number = |name: &str| {
            value(name).map(|v| {
                v.parse::<usize>()
                    .unwrap_or_else(|_| panic!("{name} takes a number"))
            })
        };
        let quick = args.iter().any(|a| a == "--quick");
        Opts {
            quick,
            records: number("--records").unwrap_or(if quick { 50 } else { 1000 }),
            transactions: number("--transactions").unwrap_or(if quick { 200 } else { 5000 }),
            clients: number("--clients").unwrap_or(8),
            max_open: number("--max-open-records"),
            compare: value("--compare").map(PathBuf::from),
        }
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((sorted.len() as f64) * p).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// CPU seconds (user + system) used so far by process `pid` (Linux).
fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return f64::NAN;
    };
    let Some(rest) = stat.rsplit_once(") ").map(|(_, r)| r) else {
        return f64::NAN;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok());
    match (ticks(11), ticks(12)) {
        // USER_HZ is 100 on Linux/x86-64.
        (Some(u), Some(s)) => (u + s) / 100.0,
        _ => f64::NAN,
    }
}

/// A `VmHWM`/`VmRSS` line of `/proc/<pid>/status`, in MiB.
fn status_mib(pid: u32, field: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// A deterministic generator (splitmix64) for the patient of each
/// transaction: the same spread in every run.
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn runtime() -> tokio::runtime::Runtime {
    satchel_core::sync::tls::install_default_provider();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn nhs(i: usize) -> String {
    format!("{:010}", 9_100_000_000u64 + i as u64)
}

fn patient_resource(i: usize) -> Value {
    json!({"resourceType": "Patient", "id": format!("p-{i}"),
           "identifier": [{"system": NHS, "value": nhs(i)}],
           "name": [{"family": format!("Bench{i}"), "given": ["Pat"]}], "birthDate": "1970-01-01"})
}

/// Transaction `tx` for patient `i`: ten lab Observations, each naming the
/// patient by identifier (the gateway routes them by it).
fn bundle(tx: usize, i: usize) -> Value {
    let entries: Vec<Value> = (0..PER_BUNDLE)
        .map(|k| {
            let obs = json!({"resourceType": "Observation", "id": format!("bench-{tx}-{k}"), "status": "final",
                "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}],
                "code": {"coding": [{"system": "http://loinc.org", "code": "2339-0", "display": "Glucose"}]},
                "subject": {"identifier": {"system": NHS, "value": nhs(i)}},
                "effectiveDateTime": format!("2026-03-{:02}T{:02}:{:02}:00Z", 1 + tx % 28, k, tx % 60),
                "valueQuantity": {"value": 4.0 + (tx % 40) as f64 / 10.0, "unit": "mmol/L",
                                  "system": "http://unitsofmeasure.org", "code": "mmol/L"}});
            json!({"fullUrl": format!("urn:uuid:bench-{tx}-{k}"), "resource": obs,
                   "request": {"method": "POST", "url": "Observation"}})
        })
        .collect();
    json!({"resourceType": "Bundle", "type": "transaction", "entry": entries})
}

/// Build (if needed) the release binaries; the relay's path.
fn relay_binary() -> PathBuf {
    // `bin` builds the workspace's binaries with this profile (release).
    bin("satchel-sync")
}

struct Relay {
    inner: satchel_tests::Relay,
    _dir: tempfile::TempDir,
}

impl Relay {
    fn start(exe: &Path) -> Relay {
        let dir = tempfile::tempdir().unwrap();
        let flags = [
            "--rate-per-sec",
            "0",
            "--auth-rate-per-sec",
            "0",
            "--max-connections-per-ip",
            "4096",
            "--log",
            "warn",
        ];
        let inner = satchel_tests::Relay::spawn(exe, dir.path(), "127.0.0.1:0", &flags);
        Relay { inner, _dir: dir }
    }

    fn url(&self) -> String {
        self.inner.url()
    }

    fn pid(&self) -> u32 {
        self.inner.pid()
    }

    /// Envelopes the relay has committed (its own database).
    fn envelopes(&self) -> u64 {
        let db = rusqlite::Connection::open_with_flags(
            self.inner.dir.join("relay.db"),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .unwrap();
        db.busy_timeout(Duration::from_secs(5)).unwrap();
        db.query_row("SELECT COUNT(*) FROM envelopes", [], |r| r.get::<_, i64>(0))
            .unwrap() as u64
    }
}

// ---------------------------------------------------------------------------
// 1. Setup
// ---------------------------------------------------------------------------

struct Patient {
    index: usize,
    record: RecordId,
    path: PathBuf,
}

fn patient_unlock() -> Unlock<'static> {
    Unlock::Passphrase {
        passphrase: PASS.as_bytes(),
        params: Some(KdfParams::for_tests()),
    }
}

/// The patient's side up to the invite: (patient, invite id, code).
async fn patient_invites(
    relay: String,
    dir: PathBuf,
    i: usize,
) -> (Patient, Profile<SqliteStore>, RelayClient, String, String) {
    let path = dir.join(format!("patient-{i}.db"));
    let mut profile = Profile::create(
        SqliteStore::open(&path).unwrap(),
        &format!("Pat Bench{i}"),
        patient_unlock(),
    )
    .unwrap();
    profile
        .add_resources(vec![patient_resource(i)], None)
        .unwrap();
    let mut client = RelayClient::new(&relay).unwrap();
    client.sync(&mut profile).await.unwrap();
    let terms = InviteTerms {
        role: GrantRole::Writer,
        sections: vec![
            Section::Labs,
            Section::Demographics,
            Section::Allergies,
            Section::Medications,
            Section::Conditions,
        ],
        expires_at_ms: None,
        label: "GP".into(),
    };
    let (link, code) = sharing::invite(
        &mut client,
        &mut profile,
        terms,
        Duration::from_secs(86_400),
    )
    .await
    .unwrap();
    let patient = Patient {
        index: i,
        record: profile.record_id(),
        path,
    };
    (patient, profile, client, link, code)
}

struct Setup {
    gp: PathBuf,
    patients: Vec<Patient>,
    engine: Engine,
    _dir: tempfile::TempDir,
}

fn setup(rt: &tokio::runtime::Runtime, relay: &Relay, records: usize) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let gp = dir.path().join("gp");
    let patients_dir = dir.path().join("patients");
    std::fs::create_dir_all(&patients_dir).unwrap();
    std::fs::create_dir_all(gp.join(HomeLayout::SHARED_DIR)).unwrap();
    let layout = HomeLayout::new(&gp);
    let url = relay.url();

    // Patients: record, Patient, registration, invite.
    let t = Instant::now();
    let invited: Vec<_> = rt.block_on(async {
        let sem = Arc::new(tokio::sync::Semaphore::new(SETUP_CONCURRENCY));
        let tasks: Vec<_> = (0..records)
            .map(|i| {
                let (sem, url, dir) = (sem.clone(), url.clone(), patients_dir.clone());
                tokio::spawn(async move {
                    let _permit = sem.acquire_owned().await.unwrap();
                    patient_invites(url, dir, i).await
                })
            })
            .collect();
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap());
        }
        out
    });
    let t_invites = t.elapsed();

    // The provider: one identity (the CLI's KDF), answering every invite.
    let t = Instant::now();
    let mut vault = IdentityVault::create(
        SqliteStore::open(&layout.identity_db()).unwrap(),
        Unlock::Passphrase {
            passphrase: PASS.as_bytes(),
            params: None,
        },
        "Dr Okafor",
        Role::Provider,
        Some("Riverside Medical Practice"),
    )
    .unwrap();
    let provider = vault.card().id();
    rt.block_on(async {
        let mut client = RelayClient::new(&url).unwrap();
        for (_, _, _, _, code) in &invited {
            let parsed = sharing::parse_invite(code).unwrap();
            vault
                .answer_invite(&mut client, &parsed, code)
                .await
                .unwrap();
        }
    });
    let t_answers = t.elapsed();

    // Each patient approves the provider's card.
    let t = Instant::now();
    let approved = rt.block_on(async {
        let sem = Arc::new(tokio::sync::Semaphore::new(SETUP_CONCURRENCY));
        let tasks: Vec<_> = invited
            .into_iter()
            .map(|(patient, mut profile, mut client, link, code)| {
                let sem = sem.clone();
                tokio::spawn(async move {
                    let _permit = sem.acquire_owned().await.unwrap();
                    sharing::approve(&mut client, &mut profile, &link, &provider)
                        .await
                        .map(|_| (patient, code))
                })
            })
            .collect();
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap());
        }
        out
    });
    let approved: Result<Vec<(Patient, String)>, _> = approved.into_iter().collect();
    let (patients, codes): (Vec<Patient>, Vec<String>) = match approved {
        Ok(a) => a.into_iter().unzip(),
        Err(e) => {
            let log = relay.inner.log();
            let tail: String = log.lines().rev().take(30).collect::<Vec<_>>().join("\n");
            let state = std::fs::read_to_string(format!("/proc/{}/status", relay.inner.pid()))
                .ok()
                .and_then(|s| {
                    s.lines()
                        .find(|l| l.starts_with("State:"))
                        .map(str::to_owned)
                })
                .unwrap_or_else(|| "gone".into());
            let fds = std::fs::read_dir("/proc/self/fd")
                .map(|d| d.count())
                .unwrap_or(0);
            panic!("a patient's approval failed: {e}\nrelay process {state}; this process has {fds} open files\nrelay log, last lines (newest first):\n{tail}")
        }
    };
    let t_approve = t.elapsed();

    // The provider joins each record (`satchel sync` after `accept`): a
    // store per record with the CLI's KDF, then its first sync. Two vault
    // handles, one per core, for the Argon2 of each new store.
    let t = Instant::now();
    drop(vault);
    let halves: Vec<Vec<String>> = vec![
        codes.iter().step_by(2).cloned().collect(),
        codes.iter().skip(1).step_by(2).cloned().collect(),
    ];
    std::thread::scope(|s| {
        for half in &halves {
            let (url, layout) = (url.clone(), layout.clone());
            s.spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                let mut vault = IdentityVault::open(
                    SqliteStore::open(&layout.identity_db()).unwrap(),
                    Unlock::Passphrase {
                        passphrase: PASS.as_bytes(),
                        params: None,
                    },
                )
                .unwrap();
                for code in half {
                    let parsed = sharing::parse_invite(code).unwrap();
                    let mut client = RelayClient::new(&url).unwrap();
                    let info = rt
                        .block_on(vault.await_approval(
                            &mut client,
                            &parsed,
                            Duration::from_secs(60),
                        ))
                        .unwrap();
                    let store = SqliteStore::open(&layout.shared_db(&info.record_id)).unwrap();
                    let mut profile = vault
                        .join_approved(
                            store,
                            Unlock::Passphrase {
                                passphrase: PASS.as_bytes(),
                                params: None,
                            },
                            info,
                            code,
                        )
                        .unwrap();
                    rt.block_on(client.sync(&mut profile)).unwrap();
                    assert!(profile.record_patient().is_some());
                }
            });
        }
    });
    // The two handles each rewrote the list of answered invites: leave it
    // as `satchel sync` does (empty once every invite is joined).
    let mut vault = IdentityVault::open(
        SqliteStore::open(&layout.identity_db()).unwrap(),
        Unlock::Passphrase {
            passphrase: PASS.as_bytes(),
            params: None,
        },
    )
    .unwrap();
    for code in vault.pending_accepts().unwrap() {
        vault.forget_pending_accept(&code).unwrap();
    }
    assert_eq!(layout.shared_records().unwrap().len(), records);
    let t_join = t.elapsed();

    let engine = Engine::new("bench-engine");
    engine.register(&gp, "system/*.write system/*.read");
    println!(
        "setup: {records} records in {:.1} s: patients create + register + invite {:.1} s; \
         provider answers {:.1} s; patients approve {:.1} s; provider joins and syncs \
         (Argon2id 19 MiB per store, 2 threads) {:.1} s",
        (t_invites + t_answers + t_approve + t_join).as_secs_f64(),
        t_invites.as_secs_f64(),
        t_answers.as_secs_f64(),
        t_approve.as_secs_f64(),
        t_join.as_secs_f64(),
    );
    Setup {
        gp,
        patients,
        engine,
        _dir: dir,
    }
}

// ---------------------------------------------------------------------------
// 2. The gateway process
// ---------------------------------------------------------------------------

struct Gateway {
    child: Child,
    base: String,
}

impl Gateway {
    fn start(exe: &Path, gp: &Path, relay: &str, max_open: Option<usize>) -> Gateway {
        let log = gp.join("gateway.log");
        // `satchel(..)` with another build (before/after): the same arguments.
        let mut cmd = std::process::Command::new(exe);
        cmd.arg("--home")
            .arg(gp)
            .env("SATCHEL_PASSPHRASE", PASS)
            .env("RUST_LOG", "warn")
            .env_remove("SATCHEL_HOME");
        cmd.args([
            "provider",
            "serve",
            "--server",
            relay,
            "--listen",
            "127.0.0.1:0",
        ]);
        if let Some(n) = max_open {
            cmd.args(["--max-open-records", &n.to_string()]);
        }
        // Killed and waited for on drop, also when it never starts.
        let mut gateway = Gateway {
            child: cmd
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).unwrap())
                .spawn()
                .unwrap(),
            base: String::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(1800);
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if let Some(rest) = text
                .lines()
                .find_map(|l| l.strip_prefix("satchel provider gateway at "))
            {
                gateway.base = rest.split(' ').next().unwrap().to_owned();
                return gateway;
            }
            assert!(
                Instant::now() < deadline,
                "the gateway did not start:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn token(http: &reqwest::Client, base: &str, engine: &Engine) -> String {
    static JTI: AtomicUsize = AtomicUsize::new(0);
    let aud = format!("{base}/auth/token");
    let jti = format!(
        "bench-{}-{}",
        std::process::id(),
        JTI.fetch_add(1, Ordering::Relaxed)
    );
    let resp = http
        .post(&aud)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "grant_type=client_credentials&scope={}&client_assertion_type={}&client_assertion={}",
            url_encode("system/*.write system/*.read"),
            url_encode("urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
            engine.assertion(&aud, &jti, 120),
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let body: Value = resp.json().await.unwrap();
    body["access_token"].as_str().unwrap().to_owned()
}

async fn status(http: &reqwest::Client, base: &str, token: &str) -> Value {
    let resp = http
        .get(format!("{base}/$status"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    resp.json().await.unwrap()
}

/// Wait until every record has been synced once and the queue is empty.
async fn first_pass(http: &reqwest::Client, base: &str, token: &str, records: usize) {
    loop {
        let s = status(http, base, token).await;
        let synced = s["last_upload"].as_object().map_or(0, |m| m.len());
        if synced >= records && s["queue_depth"] == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

// ---------------------------------------------------------------------------
// 3. Load
// ---------------------------------------------------------------------------

struct LoadResult {
    latencies: Vec<f64>,
    ok: usize,
    failed: usize,
    wall: Duration,
    end_to_end: Duration,
    e2e_envelopes: u64,
    cpu_gateway: f64,
    cpu_relay: f64,
    cpu_bench: f64,
    /// Transactions per patient index.
    sent: Vec<usize>,
}

async fn load(
    opts: &Opts,
    gateway: &Gateway,
    relay: &Relay,
    engine: Arc<Engine>,
    records: usize,
) -> LoadResult {
    let base = gateway.base.clone();
    let next = Arc::new(AtomicUsize::new(0));
    // The patient of each transaction, drawn up front.
    let mut seed = 17u64;
    let plan: Arc<Vec<usize>> = Arc::new(
        (0..opts.transactions)
            .map(|_| (splitmix(&mut seed) % records as u64) as usize)
            .collect(),
    );
    let mut sent = vec![0; records];
    for &p in plan.iter() {
        sent[p] += 1;
    }
    let envelopes_before = tokio::task::block_in_place(|| relay.envelopes());
    let cpu0 = (
        cpu_seconds(gateway.pid()),
        cpu_seconds(relay.pid()),
        cpu_seconds(std::process::id()),
    );
    // Tokens first (not timed).
    let mut clients = Vec::new();
    for _ in 0..opts.clients {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(1)
            .build()
            .unwrap();
        let t = token(&http, &base, &engine).await;
        clients.push((http, t));
    }
    let start = Instant::now();
    let tasks: Vec<_> = clients
        .into_iter()
        .map(|(http, mut tok)| {
            let (next, plan, base, engine) =
                (next.clone(), plan.clone(), base.clone(), engine.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let (mut ok, mut failed) = (0usize, 0usize);
                loop {
                    let tx = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&patient) = plan.get(tx) else { break };
                    let body = bundle(tx, patient).to_string();
                    loop {
                        let t = Instant::now();
                        let resp = http
                            .post(format!("{base}/"))
                            .bearer_auth(&tok)
                            .header("content-type", "application/fhir+json")
                            .body(body.clone())
                            .send()
                            .await
                            .unwrap();
                        let code = resp.status().as_u16();
                        let answer: Value = resp.json().await.unwrap_or(Value::Null);
                        let took = t.elapsed();
                        if code == 401 {
                            // The five-minute token ran out: a new one (not timed).
                            tok = token(&http, &base, &engine).await;
                            continue;
                        }
                        latencies.push(ms(took));
                        let created = answer["entry"].as_array().is_some_and(|e| {
                            e.len() == PER_BUNDLE
                                && e.iter().all(|x| x["response"]["status"] == "201 Created")
                        });
                        if code == 200 && created {
                            ok += 1;
                        } else {
                            failed += 1;
                            if failed <= 3 {
                                eprintln!("transaction {tx}: {code} {answer}");
                            }
                        }
                        break;
                    }
                }
                (latencies, ok, failed)
            })
        })
        .collect();
    let mut latencies = Vec::new();
    let (mut ok, mut failed) = (0, 0);
    for t in tasks {
        let (l, o, f) = t.await.unwrap();
        latencies.extend(l);
        ok += o;
        failed += f;
    }
    let wall = start.elapsed();
    // End to end: the relay holds every change and the gateway's queue is
    // empty. A transaction is one change of one record's labs section: one
    // envelope.
    let http = reqwest::Client::new();
    let tok = token(&http, &base, &engine).await;
    let want = ok as u64;
    let (end_to_end, e2e_envelopes) = loop {
        let have = tokio::task::block_in_place(|| relay.envelopes()) - envelopes_before;
        if have >= want && status(&http, &base, &tok).await["queue_depth"] == 0 {
            break (start.elapsed(), have);
        }
        assert!(
            start.elapsed() < Duration::from_secs(3600),
            "the relay has {have} of {want} envelopes after an hour"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    latencies.sort_by(|a, b| a.partial_cmp(b).unwrap());
    LoadResult {
        latencies,
        ok,
        failed,
        wall,
        end_to_end,
        e2e_envelopes,
        cpu_gateway: cpu_seconds(gateway.pid()) - cpu0.0,
        cpu_relay: cpu_seconds(relay.pid()) - cpu0.1,
        cpu_bench: cpu_seconds(std::process::id()) - cpu0.2,
        sent,
    }
}

// ---------------------------------------------------------------------------
// 4. The patients see it
// ---------------------------------------------------------------------------

/// Patients `sample` sync and must each hold exactly the Observations sent
/// for them.
fn patients_check(rt: &tokio::runtime::Runtime, relay: &Relay, setup: &Setup, sent: &[usize]) {
    let step = (setup.patients.len() / 10).max(1);
    let mut checked = 0;
    for p in setup.patients.iter().step_by(step) {
        let mut profile = Profile::open(
            SqliteStore::open(&p.path).unwrap(),
            Unlock::Passphrase {
                passphrase: PASS.as_bytes(),
                params: None,
            },
        )
        .unwrap();
        assert_eq!(profile.record_id(), p.record);
        let mut client = RelayClient::new(&relay.url()).unwrap();
        rt.block_on(client.sync(&mut profile)).unwrap();
        let labs = profile
            .query(&Query::default())
            .into_iter()
            .filter(|e| e.resource_type == "Observation")
            .count();
        assert_eq!(labs, sent[p.index] * PER_BUNDLE, "patient {}", p.index);
        checked += 1;
    }
    println!("patients' devices: {checked} sampled patients synced; each holds exactly the Observations sent for them");
}

// ---------------------------------------------------------------------------

struct RunFigures {
    label: String,
    setup: Duration,
    start: Duration,
    first_pass: Duration,
    load: LoadResult,
    hwm_mib: f64,
    rss_mib: f64,
}

fn one_run(opts: &Opts, relay_exe: &Path, satchel_exe: &Path, label: &str) -> RunFigures {
    println!("\n== {label}: gateway = {} ==", satchel_exe.display());
    let rt = runtime();
    let relay = Relay::start(relay_exe);
    let t = Instant::now();
    let setup = setup(&rt, &relay, opts.records);
    let setup_time = t.elapsed();

    let t = Instant::now();
    let gateway = Gateway::start(satchel_exe, &setup.gp, &relay.url(), opts.max_open);
    let start = t.elapsed();
    let engine = Arc::new(Engine {
        id: setup.engine.id.clone(),
        kid: setup.engine.kid.clone(),
        pkcs8: setup.engine.pkcs8.clone(),
    });
    let http = reqwest::Client::new();
    let t = Instant::now();
    rt.block_on(async {
        let tok = token(&http, &gateway.base, &engine).await;
        first_pass(&http, &gateway.base, &tok, opts.records).await;
    });
    let first = t.elapsed();
    println!(
        "gateway: started (patient index of {} records) in {:.1} s; first upload pass (every record synced once) {:.1} s; RSS now {:.0} MiB",
        opts.records,
        start.as_secs_f64(),
        first.as_secs_f64(),
        status_mib(gateway.pid(), "VmRSS:"),
    );

    let result = rt.block_on(load(opts, &gateway, &relay, engine, opts.records));
    let hwm = status_mib(gateway.pid(), "VmHWM:");
    let rss = status_mib(gateway.pid(), "VmRSS:");
    let l = &result.latencies;
    let resources = result.ok * PER_BUNDLE;
    println!(
        "load: {} clients, {} transactions x {PER_BUNDLE} resources over {} records: {} answered 2xx (all entries 201), {} failed",
        opts.clients, opts.transactions, opts.records, result.ok, result.failed
    );
    println!(
        "  2xx throughput: {:.0} transactions/s, {:.0} resources/s ({:.1} s)",
        result.ok as f64 / result.wall.as_secs_f64(),
        resources as f64 / result.wall.as_secs_f64(),
        result.wall.as_secs_f64()
    );
    println!(
        "  transaction latency: p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        percentile(l, 0.50),
        percentile(l, 0.95),
        percentile(l, 0.99),
        l.last().copied().unwrap_or(f64::NAN)
    );
    println!(
        "  end to end (first request to the relay holding all {} envelopes, queue empty): {:.1} s = {:.0} resources/s",
        result.e2e_envelopes,
        result.end_to_end.as_secs_f64(),
        resources as f64 / result.end_to_end.as_secs_f64()
    );
    let wall = result.end_to_end.as_secs_f64();
    println!(
        "  CPU over the {:.1} s end to end: gateway {:.1} s ({:.0}%), relay {:.1} s ({:.0}%), bench {:.1} s ({:.0}%) of 200%",
        wall,
        result.cpu_gateway,
        100.0 * result.cpu_gateway / wall,
        result.cpu_relay,
        100.0 * result.cpu_relay / wall,
        result.cpu_bench,
        100.0 * result.cpu_bench / wall,
    );
    println!("  gateway memory: peak RSS (VmHWM) {hwm:.0} MiB, RSS at the end {rss:.0} MiB");
    drop(gateway);
    if result.failed == 0 {
        patients_check(&rt, &relay, &setup, &result.sent);
    }
    RunFigures {
        label: label.into(),
        setup: setup_time,
        start,
        first_pass: first,
        load: result,
        hwm_mib: hwm,
        rss_mib: rss,
    }
}

fn main() {
    let opts = Opts::parse();
    let relay_exe = relay_binary();
    let satchel_exe = bin("satchel");
    println!(
        "provider gateway benchmark: {} mode; {} records, {} clients, {} transactions of {PER_BUNDLE}; {} CPUs",
        if opts.quick { "quick" } else { "full" },
        opts.records,
        opts.clients,
        opts.transactions,
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    );
    let mut runs = Vec::new();
    if let Some(before) = &opts.compare {
        runs.push(one_run(&opts, &relay_exe, before, "before"));
    }
    runs.push(one_run(&opts, &relay_exe, &satchel_exe, "this build"));

    println!("\n== summary (targets: >= 1,000 resources/s end to end, p99 <= 100 ms, peak RSS <= 200 MB) ==");
    println!("| run | setup s | gateway start s | first pass s | 2xx res/s | end-to-end res/s | p50 ms | p99 ms | max ms | peak RSS MiB | failed |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for r in &runs {
        let l = &r.load;
        let resources = (l.ok * PER_BUNDLE) as f64;
        println!(
            "| {} | {:.0} | {:.1} | {:.1} | {:.0} | {:.0} | {:.1} | {:.1} | {:.1} | {:.0} (end {:.0}) | {} |",
            r.label,
            r.setup.as_secs_f64(),
            r.start.as_secs_f64(),
            r.first_pass.as_secs_f64(),
            resources / l.wall.as_secs_f64(),
            resources / l.end_to_end.as_secs_f64(),
            percentile(&l.latencies, 0.50),
            percentile(&l.latencies, 0.99),
            l.latencies.last().copied().unwrap_or(f64::NAN),
            r.hwm_mib,
            r.rss_mib,
            l.failed,
        );
    }
}
