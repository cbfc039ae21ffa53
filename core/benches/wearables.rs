//! Wearables benchmark (a bench binary that prints its figures).
//!
//! 1. Generates one year of 500,000 mixed samples (seeded): heart rate every
//!    2 min from a watch and every 5 min at night from a ring, a CGM every
//!    5 min, steps from a watch and a phone and active energy every 10 min
//!    while awake, SpO2, respiratory rate, HRV, resting heart rate, weight,
//!    BMI, body fat, body temperature, blood pressure. Timestamps have
//!    second-level jitter, values random walks.
//! 2. Ingests them into a fresh encrypted SQLite home in one call: time.
//! 3. Size at rest: the sum of the stored (sealed) envelope bytes of both
//!    wearables logs, and the growth of the SQLite files (db + WAL).
//! 4. Daily aggregates of every metric over the year, warm (min / median of
//!    20 runs) and cold (a freshly opened profile: decrypt + decode first).
//! 5. A fresh device linked through a real `satchel-sync` relay on loopback
//!    (release build, spawned) syncs the year: time of the sync round.
//! 6. The same samples one automerge change each (one change per sample,
//!    sealed into its own envelope, committed in one batch), measured on
//!    the first 20,000 samples and scaled to the year.
//!
//! Run: `cargo build --release -p satchel-sync-server && cargo bench -p satchel-core --bench wearables`

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;
use support::{start_relay, year_of_samples, DAY, START, YEAR_SAMPLES};

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use automerge::transaction::Transactable;
use automerge::ReadDoc;
use satchel_core::crypto::{Envelope, EnvelopeHeader, Identity, KdfParams, Role, SectionKey};
use satchel_core::profile::{Profile, Unlock, CHUNKS_LOG};
use satchel_core::protocol::{LogName, Section};
use satchel_core::store::{SqliteStore, Store, WriteBatch};
use satchel_core::sync::{link, RelayClient};
use satchel_core::wearables::{Every, Metric};

const PER_CHANGE_SAMPLES: usize = 20_000;

fn unlock() -> Unlock<'static> {
    Unlock::Passphrase {
        passphrase: b"bench passphrase",
        params: Some(KdfParams::for_tests()),
    }
}

fn files_size(db: &Path) -> u64 {
    ["", "-wal", "-shm"]
        .iter()
        .map(|s| {
            let p = PathBuf::from(format!("{}{s}", db.display()));
            std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
        })
        .sum()
}

fn stored_envelope_bytes(store: &SqliteStore, log: LogName) -> (usize, usize) {
    let l = store.load_section(log).unwrap();
    let snap = l.snapshot.as_ref().map_or(0, |s| s.envelope.len());
    (
        l.tail.len() + usize::from(l.snapshot.is_some()),
        snap + l.tail.iter().map(|i| i.envelope.len()).sum::<usize>(),
    )
}

fn all_daily(p: &mut Profile<SqliteStore>) -> usize {
    let mut buckets = 0;
    for m in Metric::ALL {
        buckets += p
            .wearables_summary(*m, START, START + 366 * DAY, Every::Day, 0)
            .unwrap()
            .len();
    }
    buckets
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let samples = year_of_samples();
    let per_metric = |m: Metric| samples.iter().filter(|s| s.metric == m).count();
    println!(
        "wearables benchmark: {} samples over 366 days",
        samples.len()
    );
    println!(
        "  heart rate {}, glucose {}, steps {}, active energy {}, others {}",
        per_metric(Metric::HeartRate),
        per_metric(Metric::BloodGlucose),
        per_metric(Metric::Steps),
        per_metric(Metric::ActiveEnergy),
        samples.len()
            - per_metric(Metric::HeartRate)
            - per_metric(Metric::BloodGlucose)
            - per_metric(Metric::Steps)
            - per_metric(Metric::ActiveEnergy)
    );

    // --- ingest -----------------------------------------------------------
    let db = dir.path().join("a.db");
    let mut a = Profile::create(SqliteStore::open(&db).unwrap(), "Pat", unlock()).unwrap();
    let before = files_size(&db);
    let t = Instant::now();
    let report = a.wearables_ingest(&samples).unwrap();
    let ingest = t.elapsed();
    assert_eq!(report.stored, samples.len());
    println!(
        "ingest: {:.0} ms for {} samples in one call ({} chunks) = {:.2} M samples/s   [target <= 500 ms]",
        ms(ingest),
        report.stored,
        report.chunks,
        samples.len() as f64 / ingest.as_secs_f64() / 1e6
    );
    let again = Instant::now();
    let dup = a.wearables_ingest(&samples[..50_000]).unwrap();
    assert_eq!(dup.stored, 0);
    println!(
        "re-ingest of 50,000 known samples: {:.0} ms, 0 stored",
        ms(again.elapsed())
    );

    // --- size -------------------------------------------------------------
    let (chunk_envs, chunk_bytes) = stored_envelope_bytes(a.store(), CHUNKS_LOG);
    let (index_envs, index_bytes) =
        stored_envelope_bytes(a.store(), LogName::Section(Section::Wearables));
    let total = chunk_bytes + index_bytes;
    let growth = files_size(&db) - before;
    println!(
        "size: sealed envelopes {} B ({} chunk envelopes {} B + {} index envelopes {} B) = {:.3} B/sample   [target <= 2]",
        total,
        chunk_envs,
        chunk_bytes,
        index_envs,
        index_bytes,
        total as f64 / samples.len() as f64
    );
    println!(
        "      SQLite files (db + WAL) grew by {} B = {:.3} B/sample (WAL not checkpointed; includes page slack)",
        growth,
        growth as f64 / samples.len() as f64
    );

    // --- aggregates -------------------------------------------------------
    let mut runs = Vec::new();
    let mut buckets = 0;
    for _ in 0..20 {
        let t = Instant::now();
        buckets = all_daily(&mut a);
        runs.push(t.elapsed());
    }
    runs.sort();
    let t = Instant::now();
    let hr_days = a
        .wearables_summary(Metric::HeartRate, START, START + 366 * DAY, Every::Day, 0)
        .unwrap();
    let hr_only = t.elapsed();
    println!(
        "daily aggregates, all 15 metrics over the year ({} buckets): min {:.2} ms, median {:.2} ms; heart rate alone ({} days, {} samples) {:.2} ms   [target <= 5 ms]",
        buckets,
        ms(runs[0]),
        ms(runs[runs.len() / 2]),
        hr_days.len(),
        hr_days.iter().map(|b| b.count).sum::<u64>(),
        ms(hr_only)
    );
    let t = Instant::now();
    let store = a.into_store();
    drop(store);
    let mut cold = Profile::open(SqliteStore::open(&db).unwrap(), unlock()).unwrap();
    let opened = t.elapsed();
    let t = Instant::now();
    all_daily(&mut cold);
    println!(
        "cold: open {:.1} ms (wearables not read), first daily aggregates of every metric (read, verify, decrypt, decode the year) {:.1} ms",
        ms(opened),
        ms(t.elapsed())
    );

    // --- fresh device sync ------------------------------------------------
    let relay = start_relay(dir.path());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut a = cold;
    let (upload, sync_b, b_first) = rt.block_on(async {
        let mut client_a = RelayClient::new(&relay.1).unwrap();
        let t = Instant::now();
        client_a.sync(&mut a).await.unwrap();
        let upload = t.elapsed();
        let code = link::offer(&mut client_a, &mut a).await.unwrap();
        let identity = Identity::generate("Patient device", Role::PatientDevice, None).unwrap();
        let mut client_b = RelayClient::new(&relay.1).unwrap();
        let (card, bundle) = tokio::join!(
            link::complete(&mut client_a, &mut a, &code, Duration::from_secs(30)),
            link::join(&mut client_b, &identity, &code, Duration::from_secs(30))
        );
        card.unwrap();
        let store_b = SqliteStore::open(&dir.path().join("b.db")).unwrap();
        let mut b = Profile::join(store_b, unlock(), identity, bundle.unwrap()).unwrap();
        let t = Instant::now();
        let report = client_b.sync(&mut b).await.unwrap();
        let sync_b = t.elapsed();
        assert!(report.merged >= 2, "B pulled the chunks and the index");
        let t = Instant::now();
        let n = all_daily(&mut b);
        assert_eq!(n, buckets, "B shows the same aggregates");
        (upload, sync_b, t.elapsed())
    });
    println!(
        "sync: device A uploads the year in {:.0} ms; a fresh device B syncs it in {:.0} ms   [target <= 1000 ms]; B's first daily aggregates {:.0} ms",
        ms(upload),
        ms(sync_b),
        ms(b_first)
    );
    drop(relay);

    // --- one automerge change per sample ----------------------------------
    let subset = &samples[..PER_CHANGE_SAMPLES];
    let key = SectionKey::generate().unwrap();
    let id = Identity::generate("Patient device", Role::PatientDevice, None).unwrap();
    let record = satchel_core::ids::RecordId::random();
    let per_db = dir.path().join("per-change.db");
    let mut store = SqliteStore::open(&per_db).unwrap();
    let before = files_size(&per_db);
    let t = Instant::now();
    let mut doc = automerge::Automerge::new();
    let list = doc
        .transact(|tx| tx.put_object(automerge::ROOT, "samples", automerge::ObjType::List))
        .unwrap()
        .result;
    let mut batch = WriteBatch::new();
    let mut bytes = 0usize;
    for (i, s) in subset.iter().enumerate() {
        let mut v = Vec::with_capacity(32);
        v.push(s.metric.id());
        v.extend_from_slice(&s.start_ms.to_be_bytes());
        v.extend_from_slice(&s.end_ms.to_be_bytes());
        v.extend_from_slice(&s.value.to_be_bytes());
        v.extend_from_slice(s.source.as_bytes());
        let made = doc
            .transact(|tx| tx.insert(&list, i, automerge::ScalarValue::Bytes(v)))
            .unwrap();
        let change = doc
            .get_change_by_hash(&made.hash.unwrap())
            .unwrap()
            .raw_bytes()
            .to_vec();
        let header = EnvelopeHeader {
            record_id: record,
            section: "wearables".into(),
            epoch: 0,
            author: id.id(),
            seq: i as u64 + 1,
        };
        let env = Envelope::seal(&key, header, &change, &id)
            .unwrap()
            .to_bytes();
        bytes += env.len();
        batch.append(LogName::Section(Section::Wearables), env);
    }
    store.commit(batch).unwrap();
    let per_change = t.elapsed();
    let growth = files_size(&per_db) - before;
    let scale = YEAR_SAMPLES as f64 / PER_CHANGE_SAMPLES as f64;
    println!(
        "one automerge change per sample ({} samples, scaled x{:.0} to the year): {:.0} ms -> {:.1} s for the year; sealed envelopes {:.1} B/sample ({:.0} MB for the year), SQLite growth {:.1} B/sample",
        PER_CHANGE_SAMPLES,
        scale,
        ms(per_change),
        per_change.as_secs_f64() * scale,
        bytes as f64 / PER_CHANGE_SAMPLES as f64,
        bytes as f64 * scale / 1e6,
        growth as f64 / PER_CHANGE_SAMPLES as f64
    );
}
