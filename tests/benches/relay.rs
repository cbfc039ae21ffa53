//! Relay-sync benchmark (issue 3), against a real `satchel-sync` relay
//! process (release build, started from `target/release`, built first with
//! `cargo build --release -p satchel-sync-server`) on loopback, with its
//! embedded SQLite database in a temporary directory and rate limiting off
//! (`--rate-per-sec 0 --auth-rate-per-sec 0`).
//!
//! ```text
//! cargo bench -p satchel-tests --bench relay              # full run (a few minutes)
//! cargo bench -p satchel-tests --bench relay -- --quick   # CI smoke run
//! cargo bench -p satchel-tests --bench relay -- --only raw|full|upload|push|fanout
//! cargo bench -p satchel-tests --bench relay -- --relay PATH   # another satchel-sync build
//! ```
//!
//! 1. `raw`: a writer pushes N sections x M small changes (1000x10, 10x1000,
//!    1x5000; 3 runs each) and a fresh reader (a second owner device, added
//!    with a signed add-device statement) pulls them: access log, feed,
//!    paginated GETs, signature check and decryption of every envelope.
//!    Sealed envelopes under the 13 real section names (the relay refuses
//!    any other log name), 13 logs to a record: 1,000 logs are 77 records,
//!    each registered and shared with the reader; the reader reads each
//!    record's access log and feed, then pulls every log.
//!    HTTP/1.1 keep-alive; 8 sections pushed and 16 pulled concurrently;
//!    verification on the blocking pool so both cores verify.
//!    `full`: 1 x 5,000 through the full client (`Profile` + `RelayClient`):
//!    the writer's sync round and a freshly linked device's round; then, on
//!    a second relay without any relay snapshot, a device that has to
//!    verify, decrypt and merge all 5,000 changes. Wire bytes through a
//!    counting TCP proxy.
//! 2. `upload`: durable upload throughput, 50 concurrent clients (each its
//!    own identity and record), pre-sealed batches of 100 and of 500.
//! 3. `push`: 1,000 WebSocket subscribers, all owner devices of one record
//!    A; its writer uploads one envelope every 100 ms (200 uploads). Every
//!    notification is timed; a rotating 1 in 20 subscribers per upload
//!    pulls, verifies and decrypts. Merging into a real `Profile` (a full
//!    sync round on every push, as `satchel sync --watch` does) is timed on
//!    a second record B of normal size (3 devices) while A's 1,000
//!    subscribers stay connected, and, for a few rounds, on record A.
//!
//! 4. `fanout` (issue 21): 1,000 WebSocket subscribers on 200 records (5
//!    sessions each), 200 uploads one every 10 ms round-robin over the
//!    records: time from sending an upload to each notice, before
//!    (`--fanout-scan`, every subscriber reads every change) and after the
//!    subscriber index, on SQLite (one instance) and PostgreSQL (two
//!    instances sharing a schema at 127.0.0.1:5432 or
//!    `SATCHEL_TEST_DATABASE_URL`).
//!
//! `--quick` (CI smoke run): 1 run per shape, 500 changes through the full
//! client, 1 s of uploads, 100 subscribers x 20 uploads.
//!
//! The bench client runs on a 2-worker tokio runtime, the relay in its own
//! process; both share the machine's cores. Every phase prints the CPU used
//! by the relay, the bench and other processes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use satchel_core::crypto::{Envelope, EnvelopeHeader, Identity, Role, SectionKey, Signer};
use satchel_core::ids::RecordId;
use satchel_core::profile::{MemorySecretStore, Profile, Unlock};
use satchel_core::record::{Query, Section};
use satchel_core::sharing::{verify_log, AccessStatement, Members, SignedStatement};
use satchel_core::store::SqliteStore;
use satchel_core::sync::wire::{
    self, AccessResponse, AfterQuery, Endpoint, FeedResponse, PageQuery, PullResponse, RecordPath,
    RegisterRequest, SectionPath, UploadRequest, UploadResponse,
};
use satchel_core::sync::{link, RelayClient};
use serde::de::DeserializeOwned;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Upload requests in flight at once (different sections) in the raw push.
const PUSH_CONCURRENCY: usize = 8;
/// Sections pulled at once by the raw reader.
const PULL_CONCURRENCY: usize = 16;
/// Envelopes per verification job (jobs run on the blocking pool, so both
/// cores verify while the next page is fetched).
const VERIFY_CHUNK: usize = 250;
/// Envelopes per upload request in the raw push (the relay's maximum).
const RAW_BATCH: usize = 1000;
/// Plaintext bytes of each raw change: about the size of the framed automerge
/// change of one small Observation (the full-client run prints the real one).
const RAW_PAYLOAD: usize = 437;

// ---------------------------------------------------------------------------
// Options, output helpers
// ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Opts {
    quick: bool,
    only: Option<String>,
    /// `--relay PATH`: run against this `satchel-sync` binary (an earlier
    /// build, for a before/after comparison) instead of building one.
    relay: Option<PathBuf>,
}

impl Opts {
    fn parse() -> Opts {
        let args: Vec<String> = std::env::args().skip(1).collect();
        let only = args
            .iter()
            .position(|a| a == "--only")
            .and_then(|i| args.get(i + 1).cloned());
        let relay = args
            .iter()
            .position(|a| a == "--relay")
            .and_then(|i| args.get(i + 1))
            .map(PathBuf::from);
        Opts {
            quick: args.iter().any(|a| a == "--quick"),
            only,
            relay,
        }
    }

    fn runs(&self, name: &str) -> bool {
        self.only.as_deref().is_none_or(|o| o == name)
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn kib(bytes: u64) -> f64 {
    bytes as f64 / 1024.0
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((sorted.len() as f64) * p).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn summary(mut v: Vec<f64>) -> String {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    format!(
        "n={} p50={:.1} ms p99={:.1} ms max={:.1} ms",
        v.len(),
        percentile(&v, 0.50),
        percentile(&v, 0.99),
        v.last().copied().unwrap_or(f64::NAN)
    )
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

/// The soft limit on open files of this process (the relay inherits it).
fn open_files_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// CPU seconds all processes have used (busy time of every CPU, Linux).
fn machine_busy_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/stat") else {
        return f64::NAN;
    };
    let Some(line) = stat.lines().next() else {
        return f64::NAN;
    };
    let v: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal ...
    if v.len() < 8 {
        return f64::NAN;
    }
    (v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / 100.0
}

/// CPU used by the relay, the bench and everything else during a phase.
struct CpuMeter {
    relay_pid: u32,
    relay: f64,
    me: f64,
    machine: f64,
    at: Instant,
}

impl CpuMeter {
    fn start(relay: &Relay) -> CpuMeter {
        CpuMeter {
            relay_pid: relay.pid(),
            relay: cpu_seconds(relay.pid()),
            me: cpu_seconds(std::process::id()),
            machine: machine_busy_seconds(),
            at: Instant::now(),
        }
    }

    /// CPU seconds (and % of one core) of the relay, the bench and other
    /// processes since `start` (100% = one core; the machine has 200%).
    fn report(&self) -> String {
        let wall = self.at.elapsed().as_secs_f64();
        let relay = cpu_seconds(self.relay_pid) - self.relay;
        let me = cpu_seconds(std::process::id()) - self.me;
        let other = (machine_busy_seconds() - self.machine - relay - me).max(0.0);
        format!(
            "CPU over {:.2} s: relay {:.2} s ({:.0}%), bench {:.2} s ({:.0}%), other processes {:.2} s ({:.0}%)",
            wall,
            relay,
            100.0 * relay / wall,
            me,
            100.0 * me / wall,
            other,
            100.0 * other / wall,
        )
    }
}

// ---------------------------------------------------------------------------
// The relay process and a byte-counting proxy
// ---------------------------------------------------------------------------

/// Build (if needed) and locate `target/release/satchel-sync`.
fn relay_binary() -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args([
            "build",
            "--release",
            "-p",
            "satchel-sync-server",
            "--bin",
            "satchel-sync",
        ])
        .status()
        .expect("cargo build could not start");
    assert!(status.success(), "building satchel-sync failed");
    // target/release/deps/relay-<hash> -> target/release/satchel-sync
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(Path::parent).unwrap();
    let bin = dir.join("satchel-sync");
    assert!(bin.exists(), "{} not found", bin.display());
    bin
}

/// A `satchel-sync` child process on 127.0.0.1 over a fresh SQLite file in
/// its own temporary directory, rate limits off (the tests' relay helper).
struct Relay {
    inner: satchel_tests::Relay,
    _dir: tempfile::TempDir,
}

impl Relay {
    fn start(bin: &Path) -> Relay {
        let dir = tempfile::tempdir().unwrap();
        // Every bench client connects from 127.0.0.1, as clients behind a
        // reverse proxy share its address: the per-address connection cap
        // (512 by default) is raised above the push phase's 1,000
        // subscribers, as operations.md says to behind a proxy.
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
        let inner = satchel_tests::Relay::spawn(bin, dir.path(), "127.0.0.1:0", &flags);
        Relay { inner, _dir: dir }
    }

    fn url(&self) -> String {
        self.inner.url()
    }

    fn pid(&self) -> u32 {
        self.inner.pid()
    }
}

/// A TCP proxy in front of the relay that counts the bytes crossing it in
/// each direction (HTTP headers included). Used where the client is the
/// real `RelayClient`, whose requests the bench cannot see.
struct CountingProxy {
    url: String,
    up: Arc<AtomicU64>,
    down: Arc<AtomicU64>,
}

impl CountingProxy {
    async fn start(target: std::net::SocketAddr) -> CountingProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let up = Arc::new(AtomicU64::new(0));
        let down = Arc::new(AtomicU64::new(0));
        let (u, d) = (Arc::clone(&up), Arc::clone(&down));
        tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let (u, d) = (Arc::clone(&u), Arc::clone(&d));
                tokio::spawn(async move {
                    let Ok(outbound) = tokio::net::TcpStream::connect(target).await else {
                        return;
                    };
                    let _ = inbound.set_nodelay(true);
                    let _ = outbound.set_nodelay(true);
                    let (ir, iw) = inbound.into_split();
                    let (or, ow) = outbound.into_split();
                    tokio::join!(pump(ir, ow, u), pump(or, iw, d));
                });
            }
        });
        CountingProxy {
            url: format!("http://{addr}"),
            up,
            down,
        }
    }

    fn bytes(&self) -> (u64, u64) {
        (
            self.up.load(Ordering::Relaxed),
            self.down.load(Ordering::Relaxed),
        )
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    counter: Arc<AtomicU64>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                counter.fetch_add(n as u64, Ordering::Relaxed);
                if to.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown().await;
}

// ---------------------------------------------------------------------------
// A small HTTP client that counts body bytes
// ---------------------------------------------------------------------------

/// reqwest over HTTP/1.1 with keep-alive (a connection pool), counting
/// request and response body bytes.
#[derive(Clone)]
struct Http {
    client: reqwest::Client,
    base: String,
    sent: Arc<AtomicU64>,
    received: Arc<AtomicU64>,
}

impl Http {
    fn new(base: &str, pool: usize) -> Http {
        satchel_core::sync::tls::install_default_provider();
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(pool)
            .tcp_nodelay(true)
            .timeout(Duration::from_secs(120))
            .build()
            .unwrap();
        Http {
            client,
            base: base.to_string(),
            sent: Arc::new(AtomicU64::new(0)),
            received: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Body bytes (sent, received) so far.
    fn bytes(&self) -> (u64, u64) {
        (
            self.sent.load(Ordering::Relaxed),
            self.received.load(Ordering::Relaxed),
        )
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Vec<u8>>,
    ) -> T {
        let mut req = self
            .client
            .request(method.clone(), format!("{}{path}", self.base));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        if let Some(body) = body {
            self.sent.fetch_add(body.len() as u64, Ordering::Relaxed);
            req = req.header("content-type", "application/json").body(body);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let bytes = resp.bytes().await.unwrap();
        self.received
            .fetch_add(bytes.len() as u64, Ordering::Relaxed);
        assert!(
            status.is_success(),
            "{method} {path}: {status} {}",
            String::from_utf8_lossy(&bytes)
        );
        serde_json::from_slice(&bytes).unwrap()
    }

    async fn get<T: DeserializeOwned>(&self, path: &str, token: &str) -> T {
        self.call(reqwest::Method::GET, path, Some(token), None)
            .await
    }

    async fn post<T: DeserializeOwned>(&self, path: &str, token: &str, body: Vec<u8>) -> T {
        self.call(reqwest::Method::POST, path, Some(token), Some(body))
            .await
    }
}

/// Challenge, signature, token (the real client's code).
async fn login(base: &str, identity: &impl Signer) -> String {
    let mut client = RelayClient::new(base).unwrap();
    client.authenticate(identity).await.unwrap();
    client.token().unwrap().to_string()
}

async fn register(http: &Http, token: &str, rid: RecordId, owner: &impl Signer) {
    let body = serde_json::to_vec(&RegisterRequest {
        record_id: rid,
        owner: owner.signer_card().clone(),
    })
    .unwrap();
    let _: serde_json::Value = http.post(wire::Register::PATH, token, body).await;
}

async fn post_statement(http: &Http, token: &str, rid: RecordId, statement: &SignedStatement) {
    let body = serde_json::to_vec(statement).unwrap();
    let _: serde_json::Value = http
        .post(&wire::AppendStatement::path(&RecordPath(rid)), token, body)
        .await;
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// An `add-device` statement on top of `prev` (the log head), carrying no
/// keys (the bench's devices get their keys out of band).
fn add_device_on(
    rid: RecordId,
    by: &impl Signer,
    prev: [u8; 32],
    device: &satchel_core::crypto::IdentityCard,
) -> SignedStatement {
    AccessStatement {
        record_id: rid,
        by: by.signer_id(),
        at_ms: now_ms(),
        prev,
        change: satchel_core::sharing::AccessChange::AddDevice {
            device: device.clone(),
            keys: Vec::new(),
        },
    }
    .sign(by)
    .expect("a bench statement encodes")
}

fn add_device(rid: RecordId, by: &Identity, device: &Identity) -> SignedStatement {
    add_device_on(rid, by, [0; 32], device.card())
}

async fn upload(http: &Http, token: &str, rid: RecordId, section: &str, envelopes: Vec<Vec<u8>>) {
    let n = envelopes.len();
    let body = serde_json::to_vec(&UploadRequest::new(&envelopes)).unwrap();
    let resp: UploadResponse = http
        .post(
            &wire::Upload::path(&SectionPath::new(rid, section)),
            token,
            body,
        )
        .await;
    assert_eq!(resp.accepted.len(), n);
}

fn lab(i: usize) -> serde_json::Value {
    json!({"resourceType": "Observation", "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": format!("{i}-0"), "display": "Glucose"}]},
        "effectiveDateTime": "2023-05-06", "valueQuantity": {"value": i, "unit": "mg/dL"}})
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

// ---------------------------------------------------------------------------
// 1a. N sections x M changes over the relay protocol (sealed envelopes)
// ---------------------------------------------------------------------------

struct RawResult {
    sections: usize,
    per_section: usize,
    push: Duration,
    push_bytes: (u64, u64),
    push_requests: usize,
    pull: Duration,
    pull_bytes: (u64, u64),
    pull_requests: usize,
    envelope_bytes: usize,
    cpu: String,
}

/// The logs of the N-sections shape: real section names (the relay takes no
/// other), 13 to a record, as many records as it takes.
fn raw_logs(sections: usize) -> Vec<(usize, &'static str)> {
    (0..sections)
        .map(|i| {
            (
                i / Section::ALL.len(),
                Section::ALL[i % Section::ALL.len()].as_str(),
            )
        })
        .collect()
}

/// Seal `per` envelopes for each of `logs` (record index, section) on both
/// cores (before the clock).
fn seal_all(
    identity: &Identity,
    key: &SectionKey,
    rids: &[RecordId],
    logs: &[(usize, &'static str)],
    per: usize,
) -> Vec<(RecordId, String, Vec<Vec<u8>>)> {
    let plain = vec![0x5Au8; RAW_PAYLOAD];
    let seal = |rid: RecordId, section: &str, n: usize| {
        let header = EnvelopeHeader {
            record_id: rid,
            section: section.to_string(),
            epoch: 0,
            author: identity.id(),
            seq: n as u64 + 1,
        };
        Envelope::seal(key, header, &plain, identity)
            .unwrap()
            .to_bytes()
    };
    if logs.len() == 1 {
        // Split one big section over both cores.
        let (r, name) = logs[0];
        let rid = rids[r];
        let half = per / 2;
        let (mut a, b) = std::thread::scope(|s| {
            let a = s.spawn(|| (0..half).map(|n| seal(rid, name, n)).collect::<Vec<_>>());
            let b = s.spawn(|| (half..per).map(|n| seal(rid, name, n)).collect::<Vec<_>>());
            (a.join().unwrap(), b.join().unwrap())
        });
        a.extend(b);
        return vec![(rid, name.to_string(), a)];
    }
    let seal_log = |(r, name): &(usize, &'static str)| {
        let rid = rids[*r];
        (
            rid,
            name.to_string(),
            (0..per).map(|n| seal(rid, name, n)).collect(),
        )
    };
    let mid = logs.len() / 2;
    std::thread::scope(|s| {
        let a = s.spawn(|| logs[..mid].iter().map(seal_log).collect::<Vec<_>>());
        let b = s.spawn(|| logs[mid..].iter().map(seal_log).collect::<Vec<_>>());
        let mut out = a.join().unwrap();
        out.extend(b.join().unwrap());
        out
    })
}

/// Check every envelope (parse, header, membership, signature, decryption).
/// Returns (envelopes, plaintext bytes).
fn verify_open(
    envelopes: &[Vec<u8>],
    rid: RecordId,
    section: &str,
    members: &Members,
    key: &SectionKey,
) -> (usize, usize) {
    let mut plain = 0;
    for bytes in envelopes {
        let env = Envelope::from_bytes(bytes).unwrap();
        assert!(env.header.record_id == rid && env.header.section == section);
        assert!(members.may_write(&env.header.author, section, now_ms()));
        plain += env.open(key).unwrap().len();
    }
    (envelopes.len(), plain)
}

/// Microseconds to parse, verify and decrypt one envelope on one core.
fn verify_cost() -> f64 {
    let id = Identity::generate("calibration", Role::PatientDevice, None).unwrap();
    let key = SectionKey::generate().unwrap();
    let rid = RecordId::random();
    let sealed = seal_all(&id, &key, &[rid], &raw_logs(1), 2000).remove(0).2;
    let members = verify_log(rid, id.id(), None, &[]).unwrap();
    let t = Instant::now();
    verify_open(&sealed, rid, Section::ALL[0].as_str(), &members, &key);
    t.elapsed().as_secs_f64() * 1e6 / sealed.len() as f64
}

async fn raw_shape(bin: &Path, sections: usize, per: usize) -> RawResult {
    let relay = Relay::start(bin);
    let base = relay.url();
    let writer = Identity::generate("bench writer", Role::PatientDevice, None).unwrap();
    let reader = Arc::new(Identity::generate("bench reader", Role::PatientDevice, None).unwrap());
    let logs = raw_logs(sections);
    let records = logs.last().map_or(0, |(r, _)| r + 1);
    let rids: Vec<RecordId> = (0..records).map(|_| RecordId::random()).collect();
    let key = SectionKey::generate().unwrap();

    // Setup (not timed): writer registers the records and adds the reader
    // to each.
    let setup = Http::new(&base, 4);
    let wtoken = login(&base, &writer).await;
    for rid in &rids {
        register(&setup, &wtoken, *rid, &writer).await;
        post_statement(&setup, &wtoken, *rid, &add_device(*rid, &writer, &reader)).await;
    }
    let sealed = {
        let key = key.clone();
        let rids = rids.clone();
        tokio::task::spawn_blocking(move || {
            let s = seal_all(&writer, &key, &rids, &logs, per);
            (writer, s)
        })
        .await
        .unwrap()
    };
    let (writer, sealed) = sealed;
    let envelope_bytes = sealed[0].2[0].len();

    // Push: logs in parallel (PUSH_CONCURRENCY requests in flight), each
    // log's envelopes in order, RAW_BATCH per request.
    let http = Http::new(&base, PULL_CONCURRENCY);
    let cpu = CpuMeter::start(&relay);
    let push_requests: usize = sealed
        .iter()
        .map(|(_, _, e)| e.len().div_ceil(RAW_BATCH))
        .sum();
    let t = Instant::now();
    futures_util::stream::iter(sealed)
        .map(|(rid, name, envs)| {
            let http = http.clone();
            let token = wtoken.clone();
            async move {
                for chunk in envs.chunks(RAW_BATCH) {
                    upload(&http, &token, rid, &name, chunk.to_vec()).await;
                }
            }
        })
        .buffer_unordered(PUSH_CONCURRENCY)
        .collect::<Vec<()>>()
        .await;
    let push = t.elapsed();
    let push_bytes = http.bytes();
    let push_cpu = cpu.report();

    // Fresh reader: authenticate (not timed; a device holds a token), then
    // time: per record the access log (verified) and the feed, then every
    // log paginated with PULL_CONCURRENCY logs in flight, every envelope
    // verified and decrypted on the blocking pool while the next page is
    // fetched.
    let rtoken = login(&base, &*reader).await;
    let http = Http::new(&base, PULL_CONCURRENCY);
    let key = Arc::new(key);
    let creator = writer.id();
    let cpu = CpuMeter::start(&relay);
    let requests = Arc::new(AtomicU64::new(0));
    let t = Instant::now();
    let mut wanted = Vec::new();
    for rid in &rids {
        let access: AccessResponse = http
            .get(
                &wire::Statements::uri(&RecordPath(*rid), &AfterQuery { after: 0 }),
                &rtoken,
            )
            .await;
        let log: Vec<SignedStatement> = access.statements.into_iter().map(|e| e.signed).collect();
        let members = Arc::new(verify_log(*rid, creator, None, &log).unwrap());
        assert!(members.may_write(&reader.id(), Section::ALL[0].as_str(), now_ms()));
        let feed: FeedResponse = http
            .get(
                &wire::Feed::uri(&RecordPath(*rid), &AfterQuery { after: 0 }),
                &rtoken,
            )
            .await;
        requests.fetch_add(2, Ordering::Relaxed);
        for s in feed.sections {
            wanted.push((*rid, s.section, Arc::clone(&members)));
        }
    }
    assert_eq!(wanted.len(), sections);
    let counts = futures_util::stream::iter(wanted)
        .map(|(rid, section, members)| {
            let http = http.clone();
            let token = rtoken.clone();
            let key = Arc::clone(&key);
            let requests = Arc::clone(&requests);
            async move {
                let mut after = 0;
                let mut jobs = Vec::new();
                loop {
                    let page: PullResponse = http
                        .get(
                            &wire::Pull::uri(
                                &SectionPath::new(rid, &section),
                                &PageQuery {
                                    after,
                                    limit: Some(1000),
                                },
                            ),
                            &token,
                        )
                        .await;
                    requests.fetch_add(1, Ordering::Relaxed);
                    assert!(page.snapshot.is_none());
                    after = page.next;
                    let mut envs: Vec<Vec<u8>> =
                        page.envelopes.into_iter().map(|e| e.envelope).collect();
                    while !envs.is_empty() {
                        let rest = envs.split_off(envs.len().min(VERIFY_CHUNK));
                        let chunk = std::mem::replace(&mut envs, rest);
                        let (key, members, section) =
                            (Arc::clone(&key), Arc::clone(&members), section.clone());
                        jobs.push(tokio::task::spawn_blocking(move || {
                            verify_open(&chunk, rid, &section, &members, &key)
                        }));
                    }
                    if !page.more {
                        break;
                    }
                }
                let mut total = (0, 0);
                for job in jobs {
                    let (n, b) = job.await.unwrap();
                    total.0 += n;
                    total.1 += b;
                }
                total
            }
        })
        .buffer_unordered(PULL_CONCURRENCY)
        .collect::<Vec<(usize, usize)>>()
        .await;
    let pull = t.elapsed();
    let pulled: usize = counts.iter().map(|c| c.0).sum();
    assert_eq!(pulled, sections * per, "the reader did not get everything");
    RawResult {
        sections,
        per_section: per,
        push,
        push_bytes,
        push_requests,
        pull,
        pull_bytes: http.bytes(),
        pull_requests: requests.load(Ordering::Relaxed) as usize,
        envelope_bytes,
        cpu: format!("push {push_cpu}; pull {}", cpu.report()),
    }
}

// ---------------------------------------------------------------------------
// 1b. 1 x 5,000 through the full client
// ---------------------------------------------------------------------------

struct FullResult {
    changes: usize,
    adds: Duration,
    envelope_bytes: usize,
    push: Duration,
    push_wire: (u64, u64),
    push_cpu: String,
    pull: Duration,
    pull_wire: (u64, u64),
    pull_report: String,
    pull_cpu: String,
    raw_push: Duration,
    raw_push_bytes: (u64, u64),
    pull_nosnap: Duration,
    pull_nosnap_wire: (u64, u64),
    pull_nosnap_report: String,
    pull_nosnap_cpu: String,
}

fn full_client(bin: &Path, rt: &tokio::runtime::Runtime, changes: usize) -> FullResult {
    let dir = tempfile::tempdir().unwrap();
    let keys = MemorySecretStore::new();
    let mut writer = Profile::create(
        SqliteStore::open(&dir.path().join("writer.db")).unwrap(),
        "Bench",
        Unlock::SecretStore(&keys),
    )
    .unwrap();
    // Setup: `changes` durable adds of one Observation each (one envelope each).
    let t = Instant::now();
    for i in 0..changes {
        writer.add_resources(vec![lab(i)], None).unwrap();
    }
    let adds = t.elapsed();
    let outbox = writer.outbox(usize::MAX).unwrap();
    assert_eq!(outbox.len(), changes);
    assert!(outbox.iter().all(|o| o.section.as_str() == "labs"));
    let envelope_bytes = outbox.iter().map(|o| o.envelope.len()).sum::<usize>() / changes;

    // (b) First, on relay 2, the writer's outbox posted with plain requests
    // (500 per request, in order, like the engine) and *no* relay snapshot,
    // so the fresh device verifies, decrypts and merges every change.
    let relay2 = Relay::start(bin);
    let proxy2 = rt.block_on(CountingProxy::start(relay2.inner.addr));
    let (raw_push, raw_push_bytes, mut reader_b, mut client_b) = rt.block_on(async {
        let http = Http::new(&relay2.url(), 4);
        let token = login(&relay2.url(), &writer).await;
        register(&http, &token, writer.record_id(), &writer).await;
        let t = Instant::now();
        for chunk in outbox.chunks(500) {
            let envs = chunk.iter().map(|o| o.envelope.clone()).collect();
            upload(&http, &token, writer.record_id(), "labs", envs).await;
        }
        let raw_push = t.elapsed();
        let bytes = http.bytes();
        // A new owner device: the writer's signed add-device statement and
        // the key bundle (what the link flow carries, minus the mailbox).
        let identity_b = Identity::generate("reader b", Role::PatientDevice, None).unwrap();
        let statement = writer.add_device_statement(identity_b.card()).unwrap();
        post_statement(&http, &token, writer.record_id(), &statement).await;
        // Not applied to the writer's own log: relay 1 below must see the
        // writer's log as it is there (the access log is a hash chain, and a
        // statement that only relay 2 holds would fork it).
        let keys_b = MemorySecretStore::new();
        let reader = Profile::join(
            SqliteStore::open(&dir.path().join("reader-b.db")).unwrap(),
            Unlock::SecretStore(&keys_b),
            identity_b,
            writer.device_bundle(),
        )
        .unwrap();
        let mut client = RelayClient::new(&proxy2.url).unwrap();
        client.authenticate(&reader).await.unwrap();
        (raw_push, bytes, reader, client)
    });
    let cpu = CpuMeter::start(&relay2);
    let before = proxy2.bytes();
    let t = Instant::now();
    let report = rt.block_on(client_b.sync(&mut reader_b)).unwrap();
    let pull_nosnap = t.elapsed();
    let pull_nosnap_cpu = cpu.report();
    let after = proxy2.bytes();
    let pull_nosnap_wire = (after.0 - before.0, after.1 - before.1);
    assert_eq!(reader_b.query(&Query::default()).len(), changes);
    let pull_nosnap_report = format!(
        "pulled {} envelopes, uploaded {} snapshot(s)",
        report.pulled, report.snapshots_uploaded
    );
    drop(reader_b);
    drop(relay2);

    // (a) The normal flow on relay 1 (through a counting proxy): the
    // writer's sync round, then a freshly linked device's sync round.
    let relay = Relay::start(bin);
    let proxy = rt.block_on(CountingProxy::start(relay.inner.addr));
    let mut client_a = RelayClient::new(&proxy.url).unwrap();
    rt.block_on(client_a.authenticate(&writer)).unwrap();
    let cpu = CpuMeter::start(&relay);
    let before = proxy.bytes();
    let t = Instant::now();
    let push_report = rt.block_on(client_a.sync(&mut writer)).unwrap();
    let push = t.elapsed();
    let push_cpu = format!(
        "{}; uploaded {}, pulled back {}, snapshots {}",
        cpu.report(),
        push_report.uploaded,
        push_report.pulled,
        push_report.snapshots_uploaded
    );
    let after = proxy.bytes();
    let push_wire = (after.0 - before.0, after.1 - before.1);
    assert!(writer.outbox(usize::MAX).unwrap().is_empty());

    let keys_a = MemorySecretStore::new();
    let (mut reader_a, mut client_r) = rt.block_on(async {
        let mut client_r = RelayClient::new(&proxy.url).unwrap();
        let code = link::offer(&mut client_a, &mut writer).await.unwrap();
        let identity = Identity::generate("reader a", Role::PatientDevice, None).unwrap();
        let (card, bundle) = {
            let writer = &mut writer;
            tokio::join!(
                link::complete(&mut client_a, writer, &code, Duration::from_secs(30)),
                link::join(&mut client_r, &identity, &code, Duration::from_secs(30)),
            )
        };
        card.unwrap();
        let reader = Profile::join(
            SqliteStore::open(&dir.path().join("reader-a.db")).unwrap(),
            Unlock::SecretStore(&keys_a),
            identity,
            bundle.unwrap(),
        )
        .unwrap();
        (reader, client_r)
    });
    let cpu = CpuMeter::start(&relay);
    let before = proxy.bytes();
    let t = Instant::now();
    let report = rt.block_on(client_r.sync(&mut reader_a)).unwrap();
    let pull = t.elapsed();
    let pull_cpu = cpu.report();
    let after = proxy.bytes();
    let pull_wire = (after.0 - before.0, after.1 - before.1);
    assert_eq!(reader_a.query(&Query::default()).len(), changes);
    let pull_report = format!(
        "pulled {} envelope(s), uploaded {} snapshot(s)",
        report.pulled, report.snapshots_uploaded
    );
    FullResult {
        changes,
        adds,
        envelope_bytes,
        push,
        push_wire,
        push_cpu,
        pull,
        pull_wire,
        pull_report,
        pull_cpu,
        raw_push,
        raw_push_bytes,
        pull_nosnap,
        pull_nosnap_wire,
        pull_nosnap_report,
        pull_nosnap_cpu,
    }
}

// ---------------------------------------------------------------------------
// 2. Durable upload throughput, 50 concurrent clients
// ---------------------------------------------------------------------------

struct UploadResult {
    clients: usize,
    batch: usize,
    stored: u64,
    elapsed: Duration,
    latencies: Vec<f64>,
    errors: u64,
    cpu: String,
}

async fn upload_throughput(bin: &Path, clients: usize, batch: usize, secs: u64) -> UploadResult {
    let relay = Relay::start(bin);
    let base = relay.url();
    let http = Http::new(&base, clients);
    // Enough pre-sealed bodies for 40,000 envelopes/s.
    let per_client = (40_000 * secs as usize / clients / batch + 2).max(4);
    let setups = futures_util::stream::iter(0..clients)
        .map(|i| {
            let http = http.clone();
            let base = base.clone();
            async move {
                let id =
                    Identity::generate(&format!("bench {i}"), Role::PatientDevice, None).unwrap();
                let token = login(&base, &id).await;
                let rid = RecordId::random();
                register(&http, &token, rid, &id).await;
                let bodies = tokio::task::spawn_blocking(move || {
                    let key = SectionKey::from_bytes([9u8; 32]);
                    let plain = vec![0x5Au8; RAW_PAYLOAD];
                    (0..per_client)
                        .map(|b| {
                            let envelopes = (0..batch)
                                .map(|n| {
                                    let header = EnvelopeHeader {
                                        record_id: rid,
                                        section: "vitals".into(),
                                        epoch: 0,
                                        author: id.id(),
                                        seq: (b * batch + n) as u64,
                                    };
                                    Envelope::seal(&key, header, &plain, &id)
                                        .unwrap()
                                        .to_bytes()
                                })
                                .collect::<Vec<_>>();
                            serde_json::to_vec(&UploadRequest::new(&envelopes)).unwrap()
                        })
                        .collect::<Vec<_>>()
                })
                .await
                .unwrap();
                (token, rid, bodies)
            }
        })
        .buffer_unordered(4)
        .collect::<Vec<_>>()
        .await;

    let stored = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let cpu = CpuMeter::start(&relay);
    let start = Instant::now();
    let deadline = start + Duration::from_secs(secs);
    let mut tasks = Vec::new();
    for (token, rid, bodies) in setups {
        let http = http.clone();
        let stored = Arc::clone(&stored);
        let errors = Arc::clone(&errors);
        tasks.push(tokio::spawn(async move {
            let url = format!(
                "{}{}",
                http.base,
                wire::Upload::path(&SectionPath::new(rid, "vitals"))
            );
            let mut lat = Vec::new();
            for body in bodies {
                if Instant::now() >= deadline {
                    break;
                }
                let t = Instant::now();
                let r = http
                    .client
                    .post(&url)
                    .bearer_auth(&token)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await;
                match r {
                    Ok(r) if r.status() == 200 => {
                        let resp: UploadResponse = r.json().await.unwrap();
                        lat.push(ms(t.elapsed()));
                        stored.fetch_add(resp.accepted.len() as u64, Ordering::Relaxed);
                    }
                    Ok(r) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                        eprintln!("upload: status {}", r.status());
                    }
                    Err(e) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                        eprintln!("upload: {e}");
                    }
                }
            }
            lat
        }));
    }
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await.unwrap());
    }
    let elapsed = start.elapsed();
    UploadResult {
        clients,
        batch,
        stored: stored.load(Ordering::Relaxed),
        elapsed,
        latencies,
        errors: errors.load(Ordering::Relaxed),
        cpu: cpu.report(),
    }
}

// ---------------------------------------------------------------------------
// 3. Push-to-merged latency with 1,000 subscribers
// ---------------------------------------------------------------------------

enum Event {
    /// A subscriber got the `changed` frame for relay seq.
    Notified { seq: u64, at: Instant },
    /// A sampled subscriber pulled, verified and decrypted the envelope.
    Pulled { seq: u64, at: Instant },
    /// A Profile-backed subscriber finished its sync round (merged).
    Merged { seq: u64, at: Instant },
}

#[derive(Default)]
struct PushPhase {
    uploads: usize,
    expected_notifications: usize,
    ack: Vec<f64>,
    notified: Vec<f64>,
    pulled: Vec<f64>,
    merged: Vec<f64>,
    cpu: String,
}

struct PushResult {
    subscribers: usize,
    sample_every: u64,
    interval: Duration,
    setup: Duration,
    /// Record A: every subscriber notified, a sample pulls and decrypts.
    fan_out: PushPhase,
    /// Record B (3 Profile devices), with A's subscribers still connected.
    merged: PushPhase,
    merged_devices: usize,
    /// `verify_log` of record A's access log, and full sync rounds of a
    /// Profile device of record A.
    big_log_verify: Duration,
    big_log_rounds: Vec<f64>,
}

/// A record whose creator device is a real Profile, registered on the relay,
/// with `changes` one-Observation envelopes ready in its outbox.
struct PushWriter {
    profile: Profile<SqliteStore>,
    token: String,
    envelopes: Vec<Vec<u8>>,
}

async fn push_writer(base: &str, dir: &Path, name: &str, changes: usize) -> PushWriter {
    let keys = MemorySecretStore::new();
    let mut profile = Profile::create(
        SqliteStore::open(&dir.join(format!("{name}.db"))).unwrap(),
        name,
        Unlock::SecretStore(&keys),
    )
    .unwrap();
    let mut client = RelayClient::new(base).unwrap();
    client.sync(&mut profile).await.unwrap();
    for i in 0..changes {
        profile.add_resources(vec![lab(i)], None).unwrap();
    }
    let envelopes: Vec<Vec<u8>> = profile
        .outbox(usize::MAX)
        .unwrap()
        .into_iter()
        .map(|o| o.envelope)
        .collect();
    assert_eq!(envelopes.len(), changes);
    PushWriter {
        profile,
        token: client.token().unwrap().to_string(),
        envelopes,
    }
}

/// A Profile device joined to `writer`'s record (signed add-device statement
/// plus the key bundle) and synced once.
async fn joined_profile(
    http: &Http,
    base: &str,
    dir: &Path,
    writer: &mut PushWriter,
    identity: Identity,
    name: &str,
) -> (Profile<SqliteStore>, RelayClient) {
    let rid = writer.profile.record_id();
    let statement = writer
        .profile
        .add_device_statement(identity.card())
        .unwrap();
    post_statement(http, &writer.token, rid, &statement).await;
    writer.profile.apply_access(vec![statement], 0).unwrap();
    let keys = MemorySecretStore::new();
    let mut profile = Profile::join(
        SqliteStore::open(&dir.join(format!("{name}.db"))).unwrap(),
        Unlock::SecretStore(&keys),
        identity,
        writer.profile.device_bundle(),
    )
    .unwrap();
    let mut client = RelayClient::new(base).unwrap();
    client.sync(&mut profile).await.unwrap();
    (profile, client)
}

/// Upload `envelopes` one per request every `interval`; returns the phase
/// with the writer's acknowledgement latencies, and records each upload's
/// start time by relay seq in `sent_at`.
async fn paced_uploads(
    http: &Http,
    writer: &PushWriter,
    envelopes: Vec<Vec<u8>>,
    interval: Duration,
    sent_at: &mut HashMap<u64, (usize, Instant)>,
    phase: usize,
) -> Vec<f64> {
    let rid = writer.profile.record_id();
    let mut ack = Vec::new();
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for envelope in envelopes {
        tick.tick().await;
        let t0 = Instant::now();
        let body = serde_json::to_vec(&UploadRequest::new(&[envelope])).unwrap();
        let resp: UploadResponse = http
            .post(
                &wire::Upload::path(&SectionPath::new(rid, "labs")),
                &writer.token,
                body,
            )
            .await;
        ack.push(ms(t0.elapsed()));
        sent_at.insert(resp.accepted[0].seq, (phase, t0));
    }
    ack
}

/// Let in-flight work land, then sort the events so far into `phases`.
async fn collect_events(
    events: &mut tokio::sync::mpsc::UnboundedReceiver<Event>,
    sent_at: &HashMap<u64, (usize, Instant)>,
    phases: &mut [&mut PushPhase],
) {
    tokio::time::sleep(Duration::from_secs(2)).await;
    while let Ok(event) = events.try_recv() {
        let (seq, at, kind) = match event {
            Event::Notified { seq, at } => (seq, at, 0),
            Event::Pulled { seq, at } => (seq, at, 1),
            Event::Merged { seq, at } => (seq, at, 2),
        };
        let Some((phase, t0)) = sent_at.get(&seq) else {
            continue;
        };
        let p = &mut phases[*phase];
        let into = match kind {
            0 => &mut p.notified,
            1 => &mut p.pulled,
            _ => &mut p.merged,
        };
        into.push(ms(at.duration_since(*t0)));
    }
}

async fn push_latency(
    bin: &Path,
    subscribers: usize,
    merged_devices: usize,
    uploads: usize,
    interval: Duration,
) -> PushResult {
    let setup_start = Instant::now();
    let relay = Relay::start(bin);
    let base = relay.url();
    let dir = tempfile::tempdir().unwrap();
    let http = Http::new(&base, 64);

    // Record A: its creator writes; `subscribers` other owner devices
    // subscribe (plus one Profile device for the big-log rounds).
    let big_rounds = 5;
    let mut writer_a = push_writer(&base, dir.path(), "writer-a", uploads + big_rounds).await;
    let rid_a = writer_a.profile.record_id();
    let identities: Vec<Identity> = (0..subscribers)
        .map(|i| Identity::generate(&format!("sub {i}"), Role::PatientDevice, None).unwrap())
        .collect();
    // The access log is a chain: statements go one after another.
    let mut statements: Vec<SignedStatement> = Vec::new();
    let mut members = writer_a.profile.members().clone();
    for id in &identities {
        let s = add_device_on(rid_a, &writer_a.profile, members.head, id.card());
        satchel_core::sharing::verify_next(&mut members, &s).unwrap();
        post_statement(&http, &writer_a.token, rid_a, &s).await;
        statements.push(s);
    }
    writer_a.profile.apply_access(statements, 0).unwrap();
    let big_identity = Identity::generate("big-log device", Role::PatientDevice, None).unwrap();
    let (mut big_profile, mut big_client) = joined_profile(
        &http,
        &base,
        dir.path(),
        &mut writer_a,
        big_identity,
        "big-log",
    )
    .await;
    // The whole log (at most 1,000 statements per page).
    let mut log: Vec<SignedStatement> = Vec::new();
    let mut after = 0;
    loop {
        let access: AccessResponse = http
            .get(
                &wire::Statements::uri(&RecordPath(rid_a), &AfterQuery { after }),
                &writer_a.token,
            )
            .await;
        let n = access.statements.len();
        after = access
            .statements
            .iter()
            .map(|e| e.seq)
            .max()
            .unwrap_or(after);
        log.extend(access.statements.into_iter().map(|e| e.signed));
        if n < 1000 {
            break;
        }
    }
    let t = Instant::now();
    let members = verify_log(rid_a, writer_a.profile.device_id(), None, &log).unwrap();
    let big_log_verify = t.elapsed();
    assert_eq!(members.owner_devices.len(), subscribers + 2);
    let members = Arc::new(members);
    // The labs key, as every owner device holds it.
    let labs_key = {
        use base64::Engine;
        let bundle = serde_json::to_value(writer_a.profile.device_bundle()).unwrap();
        // Keys are listed as `section/epoch`; the newest labs epoch.
        let b64 = bundle["section_keys"]
            .as_object()
            .unwrap()
            .iter()
            .filter_map(|(name, key)| {
                let epoch: u32 = name.strip_prefix("labs/")?.parse().ok()?;
                Some((epoch, key.as_str()?))
            })
            .max()
            .map(|(_, key)| key)
            .unwrap();
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .unwrap();
        Arc::new(SectionKey::from_slice(&bytes).unwrap())
    };

    let (events_tx, mut events_rx) = tokio::sync::mpsc::unbounded_channel::<Event>();
    let sample_every = (subscribers as u64 / 50).max(1);
    let mut handles = Vec::new();
    // Light subscribers of A: the real client's push stream; a rotating
    // sample of about 50 per upload pulls from its cursor (the previous
    // notification's seq, as for a device that pulls on every push),
    // verifies and decrypts.
    let subs = futures_util::stream::iter(identities.into_iter().enumerate())
        .map(|(i, identity)| {
            let base = base.clone();
            async move {
                let mut client = RelayClient::new(&base).unwrap();
                client.authenticate(&identity).await.unwrap();
                let token = client.token().unwrap().to_string();
                let stream = client.subscribe(rid_a).await.unwrap();
                (i, token, stream)
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<_>>()
        .await;
    for (i, token, stream) in subs {
        let tx = events_tx.clone();
        let http = http.clone();
        let key = Arc::clone(&labs_key);
        let members = Arc::clone(&members);
        handles.push(tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            let mut cursor = 0;
            while let Some((section, seq)) = stream.next().await {
                let _ = tx.send(Event::Notified {
                    seq,
                    at: Instant::now(),
                });
                // About `subscribers / sample_every` of them, rotating.
                let slot = (i as u64 + seq) % sample_every;
                if slot == 0 {
                    let (http, token, key, members, tx) = (
                        http.clone(),
                        token.clone(),
                        Arc::clone(&key),
                        Arc::clone(&members),
                        tx.clone(),
                    );
                    let after = cursor;
                    tokio::spawn(async move {
                        let page: PullResponse = http
                            .get(
                                &wire::Pull::uri(
                                    &SectionPath::new(rid_a, &section),
                                    &PageQuery {
                                        after,
                                        limit: Some(1000),
                                    },
                                ),
                                &token,
                            )
                            .await;
                        assert!(page.envelopes.iter().any(|e| e.seq == seq));
                        let envs: Vec<Vec<u8>> =
                            page.envelopes.into_iter().map(|e| e.envelope).collect();
                        verify_open(&envs, rid_a, &section, &members, &key);
                        let _ = tx.send(Event::Pulled {
                            seq,
                            at: Instant::now(),
                        });
                    });
                }
                cursor = seq;
            }
        }));
    }

    // Record B: a normal-sized record (creator + `merged_devices` Profile
    // devices), each device subscribed and running a full sync round on
    // every push, as `satchel sync --watch` does (without its refresh).
    let mut writer_b = push_writer(&base, dir.path(), "writer-b", uploads).await;
    for d in 0..merged_devices {
        let identity = Identity::generate(&format!("b{d}"), Role::PatientDevice, None).unwrap();
        let (mut profile, mut client) = joined_profile(
            &http,
            &base,
            dir.path(),
            &mut writer_b,
            identity,
            &format!("b{d}"),
        )
        .await;
        let changes = client
            .subscribe(writer_b.profile.record_id())
            .await
            .unwrap();
        let tx = events_tx.clone();
        handles.push(tokio::spawn(async move {
            let mut changes = std::pin::pin!(changes);
            while let Some((_section, seq)) = changes.next().await {
                let _ = tx.send(Event::Notified {
                    seq,
                    at: Instant::now(),
                });
                client.sync(&mut profile).await.unwrap();
                let _ = tx.send(Event::Merged {
                    seq,
                    at: Instant::now(),
                });
            }
        }));
    }
    drop(events_tx);
    let setup = setup_start.elapsed();
    tokio::time::sleep(Duration::from_millis(500)).await;

    let whttp = Http::new(&base, 2);
    let mut sent_at = HashMap::new();
    let mut fan_out = PushPhase::default();
    let mut merged = PushPhase::default();

    // Phase A: fan-out to every subscriber of record A.
    let mut envelopes_a = std::mem::take(&mut writer_a.envelopes);
    let extra = envelopes_a.split_off(uploads);
    let cpu = CpuMeter::start(&relay);
    fan_out.ack = paced_uploads(&whttp, &writer_a, envelopes_a, interval, &mut sent_at, 0).await;
    fan_out.cpu = cpu.report();
    fan_out.uploads = uploads;
    fan_out.expected_notifications = uploads * subscribers;

    // Phase B: push-to-merged on record B, A's subscribers still connected.
    let envelopes_b = writer_b.envelopes.clone();
    let cpu = CpuMeter::start(&relay);
    merged.ack = paced_uploads(&whttp, &writer_b, envelopes_b, interval, &mut sent_at, 1).await;
    merged.cpu = cpu.report();
    merged.uploads = uploads;
    merged.expected_notifications = uploads * merged_devices;
    collect_events(&mut events_rx, &sent_at, &mut [&mut fan_out, &mut merged]).await;
    for h in &handles {
        h.abort();
    }

    // A few full sync rounds by a Profile device of record A (its access
    // log holds one statement per subscriber): upload one change, sync.
    big_client.sync(&mut big_profile).await.unwrap();
    let mut big_log_rounds = Vec::new();
    for envelope in extra {
        upload(&whttp, &writer_a.token, rid_a, "labs", vec![envelope]).await;
        let t = Instant::now();
        let report = big_client.sync(&mut big_profile).await.unwrap();
        big_log_rounds.push(ms(t.elapsed()));
        assert_eq!(report.pulled, 1);
    }
    PushResult {
        subscribers,
        sample_every,
        interval,
        setup,
        fan_out,
        merged,
        merged_devices,
        big_log_verify,
        big_log_rounds,
    }
}

// ---------------------------------------------------------------------------

// ---------------------------------------------------------------------------
// 4. Fan-out: push latency with 1,000 subscribers on 200 records (issue 21)
// ---------------------------------------------------------------------------

/// A `satchel-sync` child process with arbitrary storage flags (SQLite or
/// PostgreSQL), killed on drop.
struct OpsRelay {
    child: std::process::Child,
    addr: std::net::SocketAddr,
}

impl OpsRelay {
    fn start(bin: &Path, storage: &[String], extra: &[&str]) -> OpsRelay {
        use std::io::BufRead;
        let mut child = Command::new(bin)
            .args(["--listen", "127.0.0.1:0"])
            .args(storage)
            .args([
                "--rate-per-sec",
                "0",
                "--auth-rate-per-sec",
                "0",
                "--max-connections-per-ip",
                "4096",
                "--log",
                "warn",
            ])
            .args(extra)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("satchel-sync could not start");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
        OpsRelay { child, addr }
    }
}

impl Drop for OpsRelay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A fresh PostgreSQL schema name and URL (the tests' local server), or
/// `None` when none answers.
async fn bench_pg() -> Option<String> {
    let url = std::env::var("SATCHEL_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .ok()?;
    tokio::spawn(conn);
    client.query_one("SELECT 1", &[]).await.ok()?;
    Some(url)
}

/// 1,000 WebSocket subscribers (5 sessions on each of 200 records, spread
/// over the instances), 200 uploads (one every 10 ms, round-robin over
/// records and instances): the time from sending an upload to each of its
/// record's subscribers receiving the notice.
async fn fanout_latency(
    instances: &[OpsRelay],
    records: usize,
    per_record: usize,
    uploads: usize,
) -> (Vec<f64>, usize, String) {
    let bases: Vec<String> = instances
        .iter()
        .map(|r| format!("http://{}", r.addr))
        .collect();
    let https: Vec<Http> = bases.iter().map(|b| Http::new(b, 64)).collect();
    let mut owners = Vec::new();
    for r in 0..records {
        let i = r % bases.len();
        let owner = Identity::generate("owner", Role::PatientDevice, None).unwrap();
        let token = login(&bases[i], &owner).await;
        let rid = RecordId::random();
        register(&https[i], &token, rid, &owner).await;
        owners.push((owner, token, rid));
    }
    // seq -> sent time, per record; notices: (record, seq, received).
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(usize, u64, Instant)>();
    let mut subs = Vec::new();
    for (r, (owner, _, rid)) in owners.iter().enumerate() {
        for k in 0..per_record {
            let base = &bases[(r * per_record + k) % bases.len()];
            let token = login(base, owner).await;
            let url = format!(
                "{}/v1/records/{rid}/subscribe?token={token}",
                base.replace("http://", "ws://")
            );
            let (ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
            let tx = tx.clone();
            subs.push(tokio::spawn(async move {
                let mut ws = ws;
                while let Some(Ok(msg)) = ws.next().await {
                    if let tokio_tungstenite::tungstenite::Message::Text(t) = msg {
                        let now = Instant::now();
                        let v: serde_json::Value = serde_json::from_str(&t).unwrap();
                        if let Some(seq) = v["seq"].as_u64() {
                            let _ = tx.send((r, seq, now));
                        }
                    }
                }
            }));
        }
    }
    drop(tx);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let cpu0: Vec<f64> = instances
        .iter()
        .map(|i| cpu_seconds(i.child.id()))
        .collect();
    let mut sent: HashMap<(usize, u64), Instant> = HashMap::new();
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    for u in 0..uploads {
        tick.tick().await;
        let r = u % records;
        let (owner, token, rid) = &owners[r];
        let n = (u / records + 1) as u64;
        let env = Envelope::seal(
            &SectionKey::from_bytes([42u8; 32]),
            EnvelopeHeader {
                record_id: *rid,
                section: "vitals".into(),
                epoch: 0,
                author: owner.id(),
                seq: n,
            },
            b"x",
            owner,
        )
        .unwrap()
        .to_bytes();
        let body = serde_json::to_vec(&UploadRequest::new(&[env])).unwrap();
        let start = Instant::now();
        let resp: UploadResponse = https[u % bases.len()]
            .post(
                &wire::Upload::path(&SectionPath::new(*rid, "vitals")),
                token,
                body,
            )
            .await;
        sent.insert((r, resp.accepted[0].seq), start);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let cpu: f64 = instances
        .iter()
        .zip(&cpu0)
        .map(|(i, c0)| cpu_seconds(i.child.id()) - c0)
        .sum();
    for s in &subs {
        s.abort();
    }
    let mut lat = Vec::new();
    while let Ok((r, seq, at)) = rx.try_recv() {
        if let Some(start) = sent.get(&(r, seq)) {
            lat.push(ms(at.duration_since(*start)));
        }
    }
    let expected = uploads * per_record;
    (
        lat,
        expected,
        format!("relay CPU {cpu:.2} s for {uploads} uploads"),
    )
}

fn main() {
    let opts = Opts::parse();
    let bin = opts.relay.clone().unwrap_or_else(relay_binary);
    let rt = runtime();
    println!(
        "relay-sync benchmark: {} mode; relay = {} (separate process, SQLite, rate limits off); \
         {} CPUs",
        if opts.quick { "quick" } else { "full" },
        bin.display(),
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)
    );

    if opts.runs("raw") {
        println!("\n== 1a. N sections x M changes, relay protocol (sealed envelopes, {RAW_PAYLOAD} B plaintext) ==");
        let per_envelope = verify_cost();
        println!(
            "client cost of one envelope on one core (parse, Ed25519 verify, HKDF, AES-GCM open): {per_envelope:.1} us"
        );
        let reps = if opts.quick { 1 } else { 3 };
        for (n, m) in [(1000, 10), (10, 1000), (1, 5000)] {
            let mut pushes = Vec::new();
            let mut pulls = Vec::new();
            for rep in 1..=reps {
                let r = rt.block_on(raw_shape(&bin, n, m));
                println!(
                    "{}x{} run {rep}: push {:.0} ms ({} requests, bodies {:.0} KiB up / {:.0} KiB down); \
                     fresh reader pull+verify+decrypt {:.0} ms ({} requests, bodies {:.0} KiB up / {:.0} KiB down); \
                     envelope {} B",
                    r.sections,
                    r.per_section,
                    ms(r.push),
                    r.push_requests,
                    kib(r.push_bytes.0),
                    kib(r.push_bytes.1),
                    ms(r.pull),
                    r.pull_requests,
                    kib(r.pull_bytes.0),
                    kib(r.pull_bytes.1),
                    r.envelope_bytes
                );
                println!("    {}", r.cpu);
                pushes.push(ms(r.push));
                pulls.push(ms(r.pull));
            }
            pushes.sort_by(|a, b| a.partial_cmp(b).unwrap());
            pulls.sort_by(|a, b| a.partial_cmp(b).unwrap());
            println!(
                "{n}x{m} median of {reps}: push {:.0} ms, fresh reader pull {:.0} ms",
                percentile(&pushes, 0.5),
                percentile(&pulls, 0.5)
            );
        }
    }

    if opts.runs("full") {
        let changes = if opts.quick { 500 } else { 5000 };
        println!("\n== 1b. 1 x {changes} through the full client (Profile + RelayClient) ==");
        let r = full_client(&bin, &rt, changes);
        println!(
            "setup: {} durable one-Observation adds in {:.1} s; mean envelope {} B",
            r.changes,
            r.adds.as_secs_f64(),
            r.envelope_bytes
        );
        println!(
            "writer sync round (upload 500/request, pull own changes back, upload snapshot): {:.0} ms; \
             wire {:.0} KiB up / {:.0} KiB down (incl. HTTP headers)",
            ms(r.push),
            kib(r.push_wire.0),
            kib(r.push_wire.1)
        );
        println!("    {}", r.push_cpu);
        println!(
            "fresh linked device sync round (relay holds the writer's snapshot): {:.0} ms; {}; \
             wire {:.0} KiB up / {:.0} KiB down",
            ms(r.pull),
            r.pull_report,
            kib(r.pull_wire.0),
            kib(r.pull_wire.1)
        );
        println!("    {}", r.pull_cpu);
        println!(
            "no relay snapshot: writer outbox posted raw in {:.0} ms (bodies {:.0} KiB up / {:.0} KiB down); \
             fresh device sync round {:.0} ms; {}; wire {:.0} KiB up / {:.0} KiB down",
            ms(r.raw_push),
            kib(r.raw_push_bytes.0),
            kib(r.raw_push_bytes.1),
            ms(r.pull_nosnap),
            r.pull_nosnap_report,
            kib(r.pull_nosnap_wire.0),
            kib(r.pull_nosnap_wire.1)
        );
        println!("    {}", r.pull_nosnap_cpu);
    }

    if opts.runs("upload") {
        let secs = if opts.quick { 1 } else { 5 };
        println!("\n== 2. Durable upload throughput (SQLite, synchronous=FULL group commit) ==");
        for batch in [100, 500] {
            let r = rt.block_on(upload_throughput(&bin, 50, batch, secs));
            println!(
                "clients={} batch={} payload={RAW_PAYLOAD} B: {} envelopes in {:.2} s = {:.0} envelopes/s; \
                 request latency {}; errors={}",
                r.clients,
                r.batch,
                r.stored,
                r.elapsed.as_secs_f64(),
                r.stored as f64 / r.elapsed.as_secs_f64(),
                summary(r.latencies),
                r.errors
            );
            println!("    {}", r.cpu);
        }
    }

    if opts.runs("push") {
        let (subs, uploads) = if opts.quick { (100, 20) } else { (1000, 200) };
        // Each subscriber holds a socket in this process and one in the relay.
        if let Some(limit) = open_files_limit() {
            if limit < 2 * subs as u64 + 512 {
                println!(
                    "warning: open-file limit {limit} is low for {subs} subscribers; \
                     run `ulimit -n 4096` first"
                );
            }
        }
        let interval = Duration::from_millis(100);
        println!("\n== 3. Push-to-merged latency, {subs} WebSocket subscribers ==");
        let r = rt.block_on(push_latency(&bin, subs, 3, uploads, interval));
        println!(
            "setup {:.1} s; uploads: one envelope per request every {} ms",
            r.setup.as_secs_f64(),
            r.interval.as_millis()
        );
        let a = r.fan_out;
        println!(
            "A. record with {} subscribed owner devices, {} uploads:",
            r.subscribers, a.uploads
        );
        println!(
            "   writer upload acknowledged (durable): {}",
            summary(a.ack)
        );
        println!(
            "   notified ({} of {} expected): {}",
            a.notified.len(),
            a.expected_notifications,
            summary(a.notified)
        );
        println!(
            "   notified + pulled + verified + decrypted (1 in {} subscribers per upload): {}",
            r.sample_every,
            summary(a.pulled)
        );
        println!("   {}", a.cpu);
        let b = r.merged;
        println!(
            "B. record with {} Profile devices (the {} subscribers of A still connected), {} uploads:",
            r.merged_devices, r.subscribers, b.uploads
        );
        println!(
            "   writer upload acknowledged (durable): {}",
            summary(b.ack)
        );
        println!(
            "   notified ({} of {} expected): {}",
            b.notified.len(),
            b.expected_notifications,
            summary(b.notified)
        );
        println!(
            "   notified + full sync round merged into a Profile: {}",
            summary(b.merged)
        );
        println!("   {}", b.cpu);
        println!(
            "C. record A's access log ({} statements): verify_log {:.1} ms; a Profile device's \
             sync round pulling one change: {}",
            r.subscribers + 1,
            ms(r.big_log_verify),
            summary(r.big_log_rounds)
        );
    }
    if opts.runs("fanout") {
        let (records, per, uploads) = if opts.quick {
            (20, 5, 40)
        } else {
            (200, 5, 200)
        };
        println!(
            "\n== 4. Fan-out: {} WebSocket subscribers on {records} records ({per} each), \
             {uploads} uploads (one every 10 ms); notified = upload sent to notice received ==",
            records * per
        );
        let pg = rt.block_on(bench_pg());
        for (name, extra) in [
            (
                "before (--fanout-scan: every subscriber reads every change)",
                &["--fanout-scan"][..],
            ),
            ("after (subscribers indexed by record)", &[][..]),
        ] {
            let dir = tempfile::tempdir().unwrap();
            let storage = vec![
                "--db".to_owned(),
                dir.path().join("relay.db").display().to_string(),
            ];
            let relays = vec![OpsRelay::start(&bin, &storage, extra)];
            let (lat, expected, cpu) = rt.block_on(fanout_latency(&relays, records, per, uploads));
            println!(
                "SQLite, 1 instance, {name}: notified {} of {expected}: {}; {cpu}",
                lat.len(),
                summary(lat)
            );
            drop(relays);
            let Some(url) = &pg else {
                println!(
                    "PostgreSQL, 2 instances, {name}: skipped (no database at 127.0.0.1:5432)"
                );
                continue;
            };
            let schema = format!("satchel_bench_{}", RecordId::random().to_hex());
            let storage = vec![
                "--database-url".to_owned(),
                url.clone(),
                "--pg-schema".to_owned(),
                schema.clone(),
            ];
            let relays = vec![
                OpsRelay::start(&bin, &storage, extra),
                OpsRelay::start(&bin, &storage, extra),
            ];
            let (lat, expected, cpu) = rt.block_on(fanout_latency(&relays, records, per, uploads));
            println!(
                "PostgreSQL, 2 instances, {name}: notified {} of {expected}: {}; {cpu}",
                lat.len(),
                summary(lat)
            );
            drop(relays);
            rt.block_on(async {
                if let Ok((c, conn)) = tokio_postgres::connect(url, tokio_postgres::NoTls).await {
                    tokio::spawn(conn);
                    let _ = c
                        .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
                        .await;
                }
            });
        }
    }
}
