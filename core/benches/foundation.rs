//! Foundation benchmark (a bench binary that prints its figures).
//!
//! 1. Builds a ten-year record of 1,500 resources from the official FHIR R4
//!    examples (npm `hl7.fhir.r4.examples@4.0.1`), cycled with fresh ids and
//!    clinical dates spread over ten years, in an encrypted SQLite home,
//!    adding in durable batches: reports entries/s.
//! 2. Opens the record from the store (vault key from a keystore, as on a
//!    phone) and summarises it: reports min / median / p90 over runs.
//! 3. Does the same open + summary once in a child process and reports its
//!    peak resident memory (VmHWM).
//!
//! Run: `bash scripts/setup.sh && cargo bench -p satchel-core --bench foundation`
//! (examples from `SATCHEL_FHIR_EXAMPLES` or `.cache/npm/node_modules/hl7.fhir.r4.examples`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;
use support::{load_examples, ten_year_record};

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use satchel_core::crypto::KdfParams;
use satchel_core::profile::{Profile, SecretStore, SecretStoreError, Unlock};
use satchel_core::store::SqliteStore;
use zeroize::Zeroizing;

const RECORD_SIZE: usize = 1_500;
const BATCH: usize = 100;

/// A keystore kept in a file, so that a child process can unlock the same
/// profile (stands in for the phone's Keychain / Keystore).
struct FileSecretStore(PathBuf);

impl SecretStore for FileSecretStore {
    fn get(&self, name: &str) -> Result<Option<Zeroizing<Vec<u8>>>, SecretStoreError> {
        match std::fs::read(self.0.join(name)) {
            Ok(b) => Ok(Some(Zeroizing::new(b))),
            Err(_) => Ok(None),
        }
    }
    fn put(&self, name: &str, secret: &[u8]) -> Result<(), SecretStoreError> {
        std::fs::write(self.0.join(name), secret).map_err(|e| SecretStoreError(e.to_string()))
    }
    fn delete(&self, name: &str) -> Result<(), SecretStoreError> {
        let _ = std::fs::remove_file(self.0.join(name));
        Ok(())
    }
}

fn vm_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn open_and_summarise(home: &Path) -> (Duration, usize) {
    let keystore = FileSecretStore(home.to_path_buf());
    let t = Instant::now();
    let store = SqliteStore::open(&home.join("satchel.db")).unwrap();
    let profile = Profile::open(store, Unlock::SecretStore(&keystore)).unwrap();
    let summary = profile.summary();
    let elapsed = t.elapsed();
    let active: usize = summary.iter().map(|s| s.active).sum();
    (elapsed, active)
}

fn child(home: &Path) {
    let before = vm_kib("VmRSS:");
    let (elapsed, active) = open_and_summarise(home);
    println!(
        "{} {} {} {}",
        elapsed.as_micros(),
        active,
        before,
        vm_kib("VmHWM:")
    );
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(pos) = args.iter().position(|a| a == "--child-open") {
        child(Path::new(&args[pos + 1]));
        return;
    }
    let examples = load_examples();
    let resources = ten_year_record(&examples, RECORD_SIZE);
    let json_bytes: usize = resources
        .iter()
        .map(|r| serde_json::to_vec(r).unwrap().len())
        .sum();
    println!(
        "foundation benchmark: {} resources ({} distinct examples cycled, {:.1} MB of JSON)",
        resources.len(),
        examples.len(),
        json_bytes as f64 / 1e6
    );

    // 1. Durable batched adds.
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path();
    let keystore = FileSecretStore(home.to_path_buf());
    let store = SqliteStore::open(&home.join("satchel.db")).unwrap();
    let mut profile = Profile::create(store, "Bench", Unlock::SecretStore(&keystore)).unwrap();
    let t = Instant::now();
    for chunk in resources.chunks(BATCH) {
        profile
            .add_resources(chunk.to_vec(), Some("https://bench.example/fhir"))
            .unwrap();
    }
    let add = t.elapsed();
    println!(
        "add, batches of {BATCH}, durable: {} entries in {} = {:.0} entries/s",
        resources.len(),
        ms(add),
        resources.len() as f64 / add.as_secs_f64()
    );
    drop(profile);
    // Single-entry commits, for comparison (fewer entries: each is an fsync).
    {
        let dir1 = tempfile::tempdir().unwrap();
        let ks = FileSecretStore(dir1.path().to_path_buf());
        let store = SqliteStore::open(&dir1.path().join("satchel.db")).unwrap();
        let mut p = Profile::create(store, "Bench", Unlock::SecretStore(&ks)).unwrap();
        let n = 200;
        let t = Instant::now();
        for r in resources.iter().take(n) {
            p.add_resources(vec![r.clone()], None).unwrap();
        }
        let d = t.elapsed();
        println!(
            "add, one entry per commit (for comparison): {n} entries in {} = {:.0} entries/s",
            ms(d),
            n as f64 / d.as_secs_f64()
        );
    }
    {
        let s = SqliteStore::open(&home.join("satchel.db")).unwrap();
        s.checkpoint().unwrap();
    }
    let db_size = std::fs::metadata(home.join("satchel.db")).unwrap().len();
    println!(
        "store size: {:.2} MB (encrypted, after checkpoint)",
        db_size as f64 / 1e6
    );

    // 2. Open + summarise, in process.
    let runs = 15;
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let (d, active) = open_and_summarise(home);
        assert_eq!(active, resources.len());
        times.push(d);
    }
    times.sort();
    println!(
        "open + summarise ({runs} runs): min {} median {} p90 {}  (target <= 50 ms)",
        ms(times[0]),
        ms(percentile(&times, 0.5)),
        ms(percentile(&times, 0.9))
    );

    // 3. Peak RSS of a fresh process doing one open + summary.
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .arg("--child-open")
        .arg(home)
        .output()
        .unwrap();
    let line = String::from_utf8_lossy(&out.stdout);
    let parts: Vec<u64> = line
        .split_whitespace()
        .filter_map(|s| s.parse().ok())
        .collect();
    if let [micros, active, before, hwm] = parts[..] {
        println!("child process: open + summarise {:.1} ms, {active} entries, RSS before open {:.1} MB, peak RSS {:.1} MB  (target <= 30 MB)",
            micros as f64 / 1000.0, before as f64 / 1024.0, hwm as f64 / 1024.0);
    } else {
        println!(
            "child process failed: {line} {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Unlocking with a passphrase instead of a keystore adds one Argon2id run.
    let params = KdfParams::recommended().unwrap();
    let t = Instant::now();
    let _ = satchel_core::crypto::derive_vault_key(b"bench passphrase", &params).unwrap();
    println!(
        "Argon2id (m={} KiB, t={}, p={}) passphrase unlock on desktop: {}",
        params.m_cost_kib,
        params.t_cost,
        params.p_cost,
        ms(t.elapsed())
    );
}
