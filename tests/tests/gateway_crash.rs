//! The provider gateway's durability under crashes (issue 17): `satchel
//! provider serve` is killed with SIGKILL at random points while
//! transactions stream in; every transaction answered 2xx reaches the
//! patient's device after a restart, exactly once, and on the right patient.
//!
//! The seed is printed; `SATCHEL_TEST_SEED` replays a run. Test support:
//! panics are how it reports failure.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod gateway_common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gateway_common::*;
use satchel_tests::world::*;
use serde_json::{json, Value};

const ROUNDS: u32 = 12;
/// Posting threads per round (each alternates between the two patients, so
/// both records see concurrent writes).
const POSTERS: u32 = 2;

/// The two patients sharing with the practice: (home, family, birth, NHS number).
const PATIENTS: [(&str, &str, &str, &str); 2] = [
    ("pat", "Example", "1970-01-01", "9000000009"),
    ("ann", "Jones", "1955-02-03", "9000000017"),
];

/// xorshift64*: enough randomness for kill points, replayable from a seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo)
    }
}

fn seed() -> u64 {
    match std::env::var("SATCHEL_TEST_SEED") {
        Ok(s) => s.trim().parse().expect("SATCHEL_TEST_SEED is a u64"),
        Err(_) => {
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64;
            (t ^ (u64::from(std::process::id()) << 32)) | 1
        }
    }
}

/// The transaction carrying `marker` for patient `who` (an index into
/// [`PATIENTS`]): the Patient to match, and one new Observation whose id and
/// code text are the marker.
fn marked_transaction(who: usize, marker: &str, value: f64) -> Value {
    let (_, family, birth, nhs) = PATIENTS[who];
    let mut obs = observation(
        marker,
        json!({"reference": "urn:uuid:crash-p"}),
        "2026-03-04",
        value,
    );
    obs["code"]["text"] = json!(marker);
    obs["note"] = json!([{"text": marker}]);
    transaction(vec![
        post_entry("urn:uuid:crash-p", patient(family, birth, nhs)),
        post_entry("urn:uuid:crash-o", obs),
    ])
}

/// A POST that reports a broken connection instead of panicking.
fn try_post(
    rt: &tokio::runtime::Runtime,
    client: &reqwest::Client,
    url: &str,
    token: &str,
    body: &Value,
) -> Result<(u16, Value), String> {
    rt.block_on(async {
        let resp = client
            .post(url)
            .bearer_auth(token)
            .header("content-type", "application/fhir+json")
            .body(body.to_string())
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let text = resp.text().await.map_err(|e| e.to_string())?;
        Ok((
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        ))
    })
}

/// The Observation's location in a transaction's answer, without its
/// `/_history/n`.
fn unversioned(body: &Value) -> String {
    let location = body["entry"][1]["response"]["location"]
        .as_str()
        .unwrap_or_default();
    location
        .split("/_history/")
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// Whether a transaction's answer acknowledges every entry as written.
fn acknowledged(status: u16, body: &Value) -> bool {
    (200..300).contains(&status)
        && body["entry"].as_array().is_some_and(|entries| {
            entries.len() == 2
                && entries.iter().all(|e| {
                    e["response"]["status"]
                        .as_str()
                        .is_some_and(|s| s.starts_with("200") || s.starts_with("201"))
                })
        })
}

#[derive(Default)]
struct Tally {
    /// marker -> patient index, for every transaction sent.
    posted: BTreeMap<String, usize>,
    /// The acknowledged ones.
    acked: BTreeMap<String, usize>,
    /// Where each acknowledged Observation was written (its location,
    /// without the version).
    locations: BTreeMap<String, String>,
    /// Answers that were neither an acknowledgement nor a broken connection.
    odd: Vec<String>,
    broken: usize,
}

/// How many of `entries` carry `marker` (markers are fixed width, so none
/// is a prefix of another).
fn count(entries: &[Value], marker: &str) -> usize {
    entries
        .iter()
        .filter(|e| e["resource"].to_string().contains(marker))
        .count()
}

/// The gateway's upload status (its `$status`).
fn upload_status(g: &Gateway, token: &str) -> Value {
    let (status, body) = call("GET", &format!("{}/$status", g.base), Some(token), None);
    assert_eq!(status, 200, "{body}");
    body
}

/// Wait until the gateway's upload worker has synced every record once
/// since `since_ms`, successfully, with nothing queued.
fn wait_uploaded(g: &Gateway, token: &str, since_ms: i64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let s = upload_status(g, token);
        let records = s["records"].as_u64().unwrap_or(0) as usize;
        let last = s["last_upload"].as_object().cloned().unwrap_or_default();
        let done = records > 0
            && s["queue_depth"] == 0
            && last.len() == records
            && last
                .values()
                .all(|l| l["ok"] == true && l["at_ms"].as_i64().is_some_and(|at| at >= since_ms));
        if done {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "the upload worker did not finish: {s}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Sync each patient's device until every marker in `expect` is there (or
/// a deadline passes); their entries, per patient.
fn devices(p: &Practice, expect: &BTreeMap<String, usize>) -> [Vec<Value>; 2] {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let lists = PATIENTS.map(|(home, ..)| {
            let h = p.w.home(home);
            let out = sync(&h, &p.w.relay);
            assert!(
                out.status.success(),
                "{home}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            list(&h)
        });
        let all_there = expect.iter().all(|(m, &who)| count(&lists[who], m) >= 1);
        if all_there || Instant::now() >= deadline {
            return lists;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn gateway_crash_loses_nothing() {
    let seed = seed();
    println!("gateway_crash_loses_nothing: seed {seed} (SATCHEL_TEST_SEED={seed} replays it)");
    let mut rng = Rng(seed | 1);
    let started = Instant::now();

    let Practice {
        w,
        gp,
        gateway,
        engine,
    } = practice();
    drop(gateway);
    let relay_url = w.relay.url();
    let tally = Arc::new(Mutex::new(Tally::default()));

    for round in 0..ROUNDS {
        let g = Gateway::start(&gp, &relay_url, &[]);
        // Tokens live in the gateway's memory: a new one after each restart.
        let t = token(&g, &engine, "system/*.write system/*.read");
        let stop = Arc::new(AtomicBool::new(false));
        let posters: Vec<_> = (0..POSTERS)
            .map(|thread| {
                let url = format!("{}/", g.base);
                let (t, stop, tally) = (t.clone(), stop.clone(), tally.clone());
                std::thread::spawn(move || {
                    let rt = rt();
                    let client = reqwest::Client::builder()
                        .timeout(Duration::from_secs(60))
                        .build()
                        .unwrap();
                    satchel_core::sync::tls::install_default_provider();
                    for n in 0u32.. {
                        if stop.load(Ordering::SeqCst) {
                            break;
                        }
                        let who = ((n + thread) % 2) as usize;
                        let marker = format!("crash-r{round:02}-t{thread}-n{n:04}");
                        let body = marked_transaction(who, &marker, 5.0);
                        tally.lock().unwrap().posted.insert(marker.clone(), who);
                        let answer = try_post(&rt, &client, &url, &t, &body);
                        let mut tally = tally.lock().unwrap();
                        match answer {
                            Ok((status, body)) if acknowledged(status, &body) => {
                                tally.locations.insert(marker.clone(), unversioned(&body));
                                tally.acked.insert(marker, who);
                            }
                            Ok((status, body)) => {
                                tally.odd.push(format!("{marker}: {status} {body}"));
                            }
                            Err(_) => {
                                // The gateway died mid-request: not
                                // acknowledged, may or may not be committed.
                                tally.broken += 1;
                                break;
                            }
                        }
                    }
                })
            })
            .collect();
        let delay = rng.range(50, 800);
        std::thread::sleep(Duration::from_millis(delay));
        // SIGKILL (Child::kill on Unix), with requests in flight.
        drop(g);
        stop.store(true, Ordering::SeqCst);
        for poster in posters {
            poster.join().unwrap();
        }
        let tally = tally.lock().unwrap();
        println!(
            "round {round}: killed after {delay} ms; so far posted {}, acknowledged {}, broken {}",
            tally.posted.len(),
            tally.acked.len(),
            tally.broken
        );
    }

    let tally = std::mem::take(&mut *tally.lock().unwrap());
    assert!(
        tally.odd.is_empty(),
        "answers that were neither acknowledgements nor broken connections: {:#?}",
        tally.odd
    );
    assert!(
        tally.acked.len() >= ROUNDS as usize,
        "too few transactions acknowledged to show anything: {}",
        tally.acked.len()
    );

    // A last start: its upload worker syncs every record once.
    let since = now_ms();
    let g = Gateway::start(&gp, &relay_url, &[]);
    let t = token(&g, &engine, "system/*.write system/*.read");
    wait_uploaded(&g, &t, since);
    let p = Practice {
        w,
        gp,
        gateway: g,
        engine,
    };
    let lists = devices(&p, &tally.acked);

    let mut problems = Vec::new();
    for (marker, &who) in &tally.posted {
        let here = count(&lists[who], marker);
        let there = count(&lists[1 - who], marker);
        let acked = tally.acked.contains_key(marker);
        if acked && here != 1 {
            problems.push(format!(
                "{marker} (acknowledged, {}): {here} times on its patient's device",
                PATIENTS[who].0
            ));
        }
        if !acked && here > 1 {
            problems.push(format!(
                "{marker} (not acknowledged, {}): {here} times on its patient's device",
                PATIENTS[who].0
            ));
        }
        if there != 0 {
            problems.push(format!(
                "{marker} ({}): {there} times on the other patient's device ({})",
                PATIENTS[who].0,
                PATIENTS[1 - who].0
            ));
        }
    }
    let arrived = tally
        .posted
        .iter()
        .filter(|(m, &who)| count(&lists[who], m) > 0)
        .count();
    let arrived_unacked = tally
        .posted
        .iter()
        .filter(|(m, &who)| !tally.acked.contains_key(*m) && count(&lists[who], m) > 0)
        .count();
    println!(
        "gateway_crash_loses_nothing: seed {seed}, rounds {ROUNDS}, posted {}, acknowledged {}, broken {}, arrived {arrived} ({arrived_unacked} of them unacknowledged), {:.1} s",
        tally.posted.len(),
        tally.acked.len(),
        tally.broken,
        started.elapsed().as_secs_f64()
    );
    assert!(
        problems.is_empty(),
        "seed {seed}: {} problems:\n{}",
        problems.len(),
        problems.join("\n")
    );

    // Re-sending an acknowledged transaction after the restarts (an engine
    // that never saw the answer retries) is the same entry, never a
    // duplicate; a corrected re-send is a new version of it.
    let (marker, &who) = tally.acked.iter().next().unwrap();
    let location = &tally.locations[marker];
    let post = |value: f64| {
        call(
            "POST",
            &format!("{}/", p.gateway.base),
            Some(&t),
            Some(&marked_transaction(who, marker, value)),
        )
    };
    for value in [5.0, 6.0] {
        let (status, again) = post(value);
        assert_eq!(status, 200, "{again}");
        assert_eq!(statuses(&again), ["200 OK", "200 OK"], "{value}: {again}");
        assert_eq!(&unversioned(&again), location, "{value}: {again}");
    }
    let home = p.w.home(PATIENTS[who].0);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(sync(&home, &p.w.relay).status.success());
        let entries = list(&home);
        let mine: Vec<&Value> = entries
            .iter()
            .filter(|e| e["resource"].to_string().contains(marker.as_str()))
            .collect();
        assert_eq!(mine.len(), 1, "{marker} after the re-sends: {mine:?}");
        if mine[0]["resource"]["valueQuantity"]["value"].as_f64() == Some(6.0) {
            assert!(mine[0]["versions"].as_u64() >= Some(2), "{mine:?}");
            println!(
                "re-sent {marker}: one entry on {}'s device, {} versions",
                PATIENTS[who].0, mine[0]["versions"]
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the corrected re-send of {marker} never reached the device: {mine:?}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}
