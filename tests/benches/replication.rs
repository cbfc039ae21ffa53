//! Edge relay replication (issue 15): how fast an edge relay catches up
//! with its upstream after a cut link, how many bytes that moves, and how
//! much memory it holds while replicating many records.
//!
//! ```text
//! cargo bench -p satchel-tests --bench replication [-- --records 1000 --changes 10 --many 10000]
//! ```
//!
//! Both relays are the release `satchel-sync` binary on SQLite, each its
//! own process on loopback; the edge reaches the upstream through a
//! counting TCP proxy in this process (bytes both ways, HTTP headers
//! included), which also plays the cut link (it refuses and drops
//! connections while cut).
//!
//! 1. `catch-up`: R records name the edge a replica and are replicated;
//!    the link is cut; the patient's phone uploads C changes to each record
//!    at the upstream; the link returns. Printed: the time from the edge's
//!    first request after the cut to the edge holding every change (and
//!    from the link's return, which adds the edge's backoff), the bytes on
//!    the wire against the envelopes' own bytes.
//! 2. `memory`: a fresh edge replicates M records (2 changes each) from
//!    scratch; printed: its peak resident memory (VmHWM) and the time,
//!    with a cloud relay's SQLite page cache (before) and an edge relay's
//!    default (after).
//!
//! Set-up shortcuts (not what is measured): one phone identity owns every
//! record, and the upstream runs with `--rate-per-sec 0 --auth-rate-per-sec
//! 0` so that the set-up's tens of thousands of requests are not throttled;
//! the edge makes a handful of requests per catch-up, far under the
//! default per-identity limit.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::stream::{self, StreamExt};
use satchel_core::sync::RelayClient;
use satchel_protocol::crypto::{Envelope, EnvelopeHeader, Identity, Role, SectionKey};
use satchel_protocol::ids::RecordId;
use satchel_protocol::sharing::{AccessChange, AccessStatement};
use satchel_protocol::wire::{
    self, Endpoint, RecordPath, RegisterRequest, SectionPath, UploadRequest,
};
use satchel_tests::Relay;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Requests in flight during set-up.
const SETUP_CONCURRENCY: usize = 16;
/// Payload bytes per change (sealed: about 620 bytes, as a lab result).
const PAYLOAD: usize = 450;

struct Options {
    records: usize,
    changes: u64,
    many: usize,
    only: Option<String>,
}

fn options() -> Options {
    let mut o = Options {
        records: 1000,
        changes: 10,
        many: 10_000,
        only: None,
    };
    let args: Vec<String> = std::env::args().collect();
    let mut i = 1;
    while i < args.len() {
        let value = args.get(i + 1).cloned().unwrap_or_default();
        match args[i].as_str() {
            "--records" => o.records = value.parse().expect("--records N"),
            "--changes" => o.changes = value.parse().expect("--changes N"),
            "--many" => o.many = value.parse().expect("--many N"),
            "--only" => o.only = Some(value),
            _ => {
                i += 1;
                continue;
            }
        }
        i += 2;
    }
    o
}

/// The counting proxy in front of the upstream: bytes both ways; while
/// cut, connections are refused and open ones dropped.
struct Link {
    addr: std::net::SocketAddr,
    up: Arc<AtomicBool>,
    bytes: Arc<AtomicU64>,
    first_request: Arc<Mutex<Option<Instant>>>,
    conns: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl Link {
    async fn start(upstream: std::net::SocketAddr) -> Link {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let link = Link {
            addr: listener.local_addr().unwrap(),
            up: Arc::new(AtomicBool::new(true)),
            bytes: Arc::new(AtomicU64::new(0)),
            first_request: Arc::new(Mutex::new(None)),
            conns: Arc::new(Mutex::new(Vec::new())),
        };
        let (up, bytes, first, conns) = (
            link.up.clone(),
            link.bytes.clone(),
            link.first_request.clone(),
            link.conns.clone(),
        );
        tokio::spawn(async move {
            loop {
                let Ok((inbound, _)) = listener.accept().await else {
                    return;
                };
                if !up.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let (bytes, first) = (bytes.clone(), first.clone());
                let task = tokio::spawn(async move {
                    let Ok(outbound) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let _ = inbound.set_nodelay(true);
                    let _ = outbound.set_nodelay(true);
                    let (ri, wi) = inbound.into_split();
                    let (ro, wo) = outbound.into_split();
                    let a = pump(ri, wo, bytes.clone(), Some(first));
                    let b = pump(ro, wi, bytes, None);
                    let _ = tokio::join!(a, b);
                });
                conns.lock().unwrap().push(task);
            }
        });
        link
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        for t in self.conns.lock().unwrap().drain(..) {
            t.abort();
        }
    }

    fn restore(&self) {
        *self.first_request.lock().unwrap() = None;
        self.bytes.store(0, Ordering::SeqCst);
        self.up.store(true, Ordering::SeqCst);
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    bytes: Arc<AtomicU64>,
    first: Option<Arc<Mutex<Option<Instant>>>>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if let Some(first) = &first {
            first.lock().unwrap().get_or_insert_with(Instant::now);
        }
        bytes.fetch_add(n as u64, Ordering::SeqCst);
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

fn copy(id: &Identity) -> Identity {
    Identity::from_secret_bytes(&id.to_secret_bytes()).unwrap()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn seal(author: &Identity, rid: RecordId, n: u64) -> Vec<u8> {
    let key = SectionKey::from_bytes([42u8; 32]);
    let payload = vec![b'x'; PAYLOAD];
    Envelope::seal(
        &key,
        EnvelopeHeader {
            record_id: rid,
            section: "vitals".into(),
            epoch: 0,
            author: author.id(),
            seq: n,
        },
        &payload,
        author,
    )
    .unwrap()
    .to_bytes()
}

struct Http {
    base: String,
    token: String,
    client: reqwest::Client,
}

impl Http {
    async fn post<T: serde::Serialize>(&self, path: &str, body: &T) -> u16 {
        self.client
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .json(body)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }
}

async fn login(base: &str, identity: &Identity) -> Http {
    let mut client = RelayClient::new(base).unwrap();
    client.authenticate(identity).await.unwrap();
    Http {
        base: base.to_owned(),
        token: client.token().unwrap().to_string(),
        client: reqwest::Client::new(),
    }
}

/// `n` records owned by `phone` at the upstream, each naming the edge a
/// replica.
async fn make_records(
    http: &Http,
    phone: &Identity,
    edge: &wire::RelayIdentityResponse,
    n: usize,
) -> Vec<RecordId> {
    let rids: Vec<RecordId> = (0..n).map(|_| RecordId::random()).collect();
    stream::iter(rids.clone())
        .map(|rid| async move {
            let st = http
                .post(
                    wire::Register::PATH,
                    &RegisterRequest {
                        record_id: rid,
                        owner: phone.card().clone(),
                    },
                )
                .await;
            assert_eq!(st, 201);
            let statement = AccessStatement {
                record_id: rid,
                by: phone.id(),
                at_ms: now_ms(),
                prev: [0; 32],
                change: AccessChange::AddReplica {
                    relay: edge.card.clone(),
                    label: "Riverside clinic".into(),
                },
            }
            .sign(phone)
            .unwrap();
            let st = http
                .post(&wire::AppendStatement::path(&RecordPath(rid)), &statement)
                .await;
            assert_eq!(st, 201);
        })
        .buffer_unordered(SETUP_CONCURRENCY)
        .collect::<Vec<()>>()
        .await;
    rids
}

/// Upload changes `from..=to` to every record; returns the envelope bytes.
async fn write_changes(
    http: &Http,
    phone: &Identity,
    rids: &[RecordId],
    from: u64,
    to: u64,
) -> u64 {
    let total = Arc::new(AtomicU64::new(0));
    stream::iter(rids.iter().copied())
        .map(|rid| {
            let total = total.clone();
            async move {
                let envs: Vec<Vec<u8>> = (from..=to).map(|n| seal(phone, rid, n)).collect();
                total.fetch_add(envs.iter().map(|e| e.len() as u64).sum(), Ordering::SeqCst);
                let st = http
                    .post(
                        &wire::Upload::path(&SectionPath::new(rid, "vitals")),
                        &UploadRequest::new(&envs),
                    )
                    .await;
                assert_eq!(st, 200);
            }
        })
        .buffer_unordered(SETUP_CONCURRENCY)
        .collect::<Vec<()>>()
        .await;
    total.load(Ordering::SeqCst)
}

/// Envelopes and records the edge holds (read from its database).
fn edge_holds(db: &Path) -> (u64, u64) {
    let Ok(c) =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
    else {
        return (0, 0);
    };
    let count = |sql: &str| c.query_row(sql, [], |r| r.get::<_, i64>(0)).unwrap_or(0) as u64;
    (
        count("SELECT COUNT(*) FROM envelopes"),
        count("SELECT COUNT(*) FROM records"),
    )
}

async fn wait_for(db: &Path, envelopes: u64, records: u64, limit: Duration) -> Option<Instant> {
    let start = Instant::now();
    while start.elapsed() < limit {
        let (e, r) = edge_holds(db);
        if e >= envelopes && r >= records {
            return Some(Instant::now());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    None
}

fn status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn start_edge(dir: &Path, upstream: &str, extra: &[&str]) -> Relay {
    let mut args = vec![
        "--upstream",
        upstream,
        "--replication-interval",
        "0.2",
        "--relay-name",
        "Riverside clinic relay",
    ];
    args.extend_from_slice(extra);
    Relay::start_on(dir, "127.0.0.1:0", &args)
}

fn addr_of(url: &str) -> std::net::SocketAddr {
    url.trim_start_matches("http://").parse().unwrap()
}

async fn catch_up(root: &Path, o: &Options) {
    let cloud = Relay::start_on(
        &root.join("cloud"),
        "127.0.0.1:0",
        &["--rate-per-sec", "0", "--auth-rate-per-sec", "0"],
    );
    let link = Link::start(addr_of(&cloud.url())).await;
    let edge_dir = root.join("edge");
    let edge = start_edge(&edge_dir, &link.url(), &[]);
    let card: wire::RelayIdentityResponse = reqwest::get(format!("{}/v1/relay", edge.url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let phone = Identity::generate("phone", Role::PatientDevice, None).unwrap();
    let http = login(&cloud.url(), &copy(&phone)).await;
    let t = Instant::now();
    let rids = make_records(&http, &phone, &card, o.records).await;
    // One change each before the cut: the edge holds every record.
    write_changes(&http, &phone, &rids, 1, 1).await;
    let db = edge_dir.join("relay.db");
    wait_for(
        &db,
        o.records as u64,
        o.records as u64,
        Duration::from_secs(300),
    )
    .await
    .expect("the edge replicated the records before the cut");
    println!(
        "set-up: {} records named the edge and were replicated in {:.1} s",
        o.records,
        t.elapsed().as_secs_f64()
    );

    link.cut();
    let envelope_bytes = write_changes(&http, &phone, &rids, 2, o.changes + 1).await;
    let written = o.records as u64 * o.changes;
    // Long enough for the edge to notice the cut and back off.
    tokio::time::sleep(Duration::from_secs(2)).await;
    link.restore();
    let restored = Instant::now();
    let done = wait_for(
        &db,
        o.records as u64 * (o.changes + 1),
        0,
        Duration::from_secs(120),
    )
    .await
    .expect("the edge caught up");
    let first = link.first_request.lock().unwrap().unwrap_or(restored);
    // Let the round finish (its last answers) before reading the bytes.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let wire_bytes = link.bytes.load(Ordering::SeqCst);
    println!(
        "\n## catch-up after a cut: {} records x {} changes ({written} envelopes)",
        o.records, o.changes
    );
    println!("| measure | value |");
    println!("|---|---|");
    println!(
        "| caught up, from the edge's first request after the cut | {:.0} ms |",
        done.duration_since(first).as_secs_f64() * 1000.0
    );
    println!(
        "| caught up, from the link's return (adds the edge's backoff) | {:.0} ms |",
        done.duration_since(restored).as_secs_f64() * 1000.0
    );
    println!(
        "| envelope bytes | {envelope_bytes} ({:.0} bytes each) |",
        envelope_bytes as f64 / written as f64
    );
    println!("| bytes on the wire, both ways | {wire_bytes} |");
    println!(
        "| wire / envelope bytes | {:.3} |",
        wire_bytes as f64 / envelope_bytes as f64
    );
    drop(edge);
    drop(cloud);
}

/// A fresh edge relay started with `extra` replicates every record at
/// `cloud` that names it (identity in `edge_dir`): its peak memory and time.
async fn replicate_fresh(
    cloud: &Relay,
    edge_dir: &Path,
    want: u64,
    extra: &[&str],
) -> (Duration, u64) {
    let _ = std::fs::remove_file(edge_dir.join("relay.db"));
    let _ = std::fs::remove_file(edge_dir.join("relay.db-wal"));
    let _ = std::fs::remove_file(edge_dir.join("relay.db-shm"));
    let edge = start_edge(edge_dir, &cloud.url(), extra);
    let start = Instant::now();
    let pid = edge.pid();
    let mut peak_rss = 0;
    let db = edge_dir.join("relay.db");
    let done = loop {
        peak_rss = peak_rss.max(status_kib(pid, "VmRSS:"));
        if edge_holds(&db).0 >= want {
            break start.elapsed();
        }
        assert!(
            start.elapsed() < Duration::from_secs(600),
            "the edge did not replicate in 10 minutes"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    if let Ok(dir) = std::env::var("SATCHEL_BENCH_PMAP_DIR") {
        // Where the memory is (for investigating; not printed).
        if let Ok(out) = std::process::Command::new("pmap")
            .args(["-x", &pid.to_string()])
            .output()
        {
            let _ = std::fs::write(format!("{dir}/pmap-{}.txt", extra.len()), out.stdout);
        }
        let _ = std::fs::copy(
            format!("/proc/{pid}/smaps_rollup"),
            format!("{dir}/smaps-{}.txt", extra.len()),
        );
    }
    (done, status_kib(pid, "VmHWM:").max(peak_rss))
}

async fn memory(root: &Path, o: &Options) {
    let cloud = Relay::start_on(
        &root.join("cloud-many"),
        "127.0.0.1:0",
        &["--rate-per-sec", "0", "--auth-rate-per-sec", "0"],
    );
    // The edge's identity first (the records name it), then its
    // replication from scratch.
    let edge_dir = root.join("edge-many");
    let probe = start_edge(&edge_dir, "http://127.0.0.1:9", &[]);
    let card: wire::RelayIdentityResponse = reqwest::get(format!("{}/v1/relay", probe.url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    drop(probe);
    let phone = Identity::generate("phone", Role::PatientDevice, None).unwrap();
    let http = login(&cloud.url(), &copy(&phone)).await;
    let t = Instant::now();
    let rids = make_records(&http, &phone, &card, o.many).await;
    write_changes(&http, &phone, &rids, 1, 2).await;
    println!(
        "\nset-up: {} records with 2 changes each at the upstream in {:.1} s",
        o.many,
        t.elapsed().as_secs_f64()
    );
    let want = o.many as u64 * 2;
    let runs = [
        (
            "before: a cloud relay's caches (SQLite 128 MiB, 4,096 verified logs)",
            &["--sqlite-cache-mib", "128", "--verified-log-cache", "4096"][..],
        ),
        (
            "after: an edge relay's defaults (SQLite 24 MiB, 512 verified logs)",
            &[][..],
        ),
    ];
    println!(
        "\n## memory: a fresh edge replicates {} records ({want} envelopes)",
        o.many
    );
    println!("| edge relay | time to hold every envelope | peak resident memory (VmHWM) |");
    println!("|---|---|---|");
    for (label, extra) in runs {
        let (time, kib) = replicate_fresh(&cloud, &edge_dir, want, extra).await;
        println!(
            "| {label} | {:.1} s | {:.1} MB |",
            time.as_secs_f64(),
            kib as f64 / 1024.0
        );
    }
    drop(cloud);
}

fn main() {
    // reqwest is built without a crypto provider of its own (the core
    // brings ring).
    satchel_core::sync::tls::install_default_provider();
    let o = options();
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let root: PathBuf = tempfile::tempdir().unwrap().keep();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    if o.only.as_deref().is_none_or(|x| x == "catch-up") {
        rt.block_on(catch_up(&root, &o));
    }
    if o.only.as_deref().is_none_or(|x| x == "memory") {
        rt.block_on(memory(&root, &o));
    }
    let _ = std::fs::remove_dir_all(&root);
}
