//! Durable-upload throughput: N concurrent clients, each with its own
//! identity and record, upload pre-sealed envelope batches for a fixed time.
//!
//! ```text
//! cargo run --release -p satchel-tests --example upload_bench -- \
//!     [--url http://127.0.0.1:8787] [--clients 50] [--batch 100] [--seconds 10] [--payload 200]
//! ```
//!
//! Without `--url` it starts a relay in-process on a temporary SQLite file
//! with rate limiting off. Bodies are encoded before the clock starts so the
//! client side costs as little as possible on a shared machine.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use satchel_protocol::crypto::{Envelope, EnvelopeHeader, Identity, Role, SectionKey};
use satchel_protocol::ids::RecordId;
use satchel_protocol::wire::{
    self, Endpoint, RegisterRequest, SectionPath, UploadRequest, UploadResponse,
};

fn arg(name: &str, default: &str) -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
        .unwrap_or_else(|| default.to_owned())
}

#[tokio::main]
async fn main() {
    let clients: usize = arg("--clients", "50").parse().unwrap();
    let batch: usize = arg("--batch", "100").parse().unwrap();
    let seconds: u64 = arg("--seconds", "10").parse().unwrap();
    let payload: usize = arg("--payload", "200").parse().unwrap();
    let target_rate: usize = arg("--expect", "30000").parse().unwrap();
    let url = arg("--url", "");

    let _dir;
    let base = if url.is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = satchel_sync_server::Config::sqlite(dir.path().join("bench.db"));
        config.rate.per_second = 0;
        config.rate.auth_per_second = 0;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(satchel_sync_server::serve(
            config,
            listener,
            std::future::pending(),
        ));
        _dir = dir;
        format!("http://{addr}")
    } else {
        url
    };

    // Enough bodies for each client to upload at `target_rate` total.
    let per_client = (target_rate * seconds as usize / clients / batch + 2).max(4);
    eprintln!("preparing {clients} clients x {per_client} batches x {batch} envelopes ...");
    satchel_core::sync::tls::install_default_provider();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(clients)
        .build()
        .unwrap();
    let mut setups = Vec::new();
    for i in 0..clients {
        let http = http.clone();
        let base = base.clone();
        setups.push(tokio::spawn(async move {
            let id = Identity::generate(&format!("bench {i}"), Role::PatientDevice, None).unwrap();
            let token = login(&base, &id).await;
            let rid = RecordId::random();
            let r = http
                .post(format!("{base}{}", wire::Register::path(&())))
                .bearer_auth(&token)
                .json(&RegisterRequest {
                    record_id: rid,
                    owner: id.card().clone(),
                })
                .send()
                .await
                .unwrap();
            assert!(r.status().is_success());
            let bodies = tokio::task::spawn_blocking(move || {
                let key = SectionKey::from_bytes([9u8; 32]);
                let plain = vec![0x5Au8; payload];
                (0..per_client)
                    .map(|b| {
                        let envs: Vec<Vec<u8>> = (0..batch)
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
                            .collect();
                        serde_json::to_vec(&UploadRequest::new(&envs)).unwrap()
                    })
                    .collect::<Vec<_>>()
            })
            .await
            .unwrap();
            (token, rid, bodies)
        }));
    }
    let mut prepared = Vec::new();
    for s in setups {
        prepared.push(s.await.unwrap());
    }

    let stored = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let latencies = Arc::new(std::sync::Mutex::new(Vec::<f64>::new()));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for (token, rid, bodies) in prepared {
        let http = http.clone();
        let url = format!(
            "{base}{}",
            wire::Upload::path(&SectionPath::new(rid, "vitals"))
        );
        let stored = Arc::clone(&stored);
        let errors = Arc::clone(&errors);
        let latencies = Arc::clone(&latencies);
        tasks.push(tokio::spawn(async move {
            for body in bodies {
                if Instant::now() >= deadline {
                    break;
                }
                let t = Instant::now();
                let r = http
                    .post(&url)
                    .bearer_auth(&token)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await;
                match r {
                    Ok(r) if r.status() == 200 => {
                        let v: UploadResponse = r.json().await.unwrap();
                        stored.fetch_add(v.accepted.len() as u64, Ordering::Relaxed);
                        latencies
                            .lock()
                            .unwrap()
                            .push(t.elapsed().as_secs_f64() * 1000.0);
                    }
                    Ok(r) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                        eprintln!("status {}", r.status());
                    }
                    Err(e) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                        eprintln!("error {e}");
                    }
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let elapsed = start.elapsed().as_secs_f64();
    let n = stored.load(Ordering::Relaxed);
    let mut lat = latencies.lock().unwrap().clone();
    lat.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 - 1.0) * p) as usize)
            .copied()
            .unwrap_or(0.0)
    };
    println!(
        "clients={clients} batch={batch} payload={payload}B: {n} envelopes in {elapsed:.2}s = {:.0} envelopes/s; \
         batch latency p50={:.1}ms p99={:.1}ms; errors={}",
        n as f64 / elapsed,
        pct(0.5),
        pct(0.99),
        errors.load(Ordering::Relaxed)
    );
}

/// Challenge, signature, token: the client's one login
/// (`RelayClient::authenticate`).
async fn login(base: &str, id: &Identity) -> String {
    let mut client = satchel_core::sync::RelayClient::new(base).unwrap();
    client.authenticate(id).await.unwrap();
    client.token().unwrap().to_string()
}
