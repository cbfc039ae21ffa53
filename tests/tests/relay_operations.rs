//! Relay operations (issue 21): instances that start, restart and scale
//! together on PostgreSQL without losing a push; schema versions; session
//! revocation across instances; online backup of the SQLite file.
//!
//! The tests run real `satchel-sync` processes. Those needing PostgreSQL
//! use a fresh schema at 127.0.0.1:5432 (or `SATCHEL_TEST_DATABASE_URL`)
//! and fail, not skip, when `CI` is set and no database answers.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod relay_common;

use std::net::SocketAddr;
use std::time::Duration;

use relay_common::{client, pg_drop_schema, pg_test_schema, pg_unreachable};
use serde_json::Value;
use tokio::io::AsyncBufReadExt;

/// One `satchel-sync` child process (killed on drop).
struct Instance {
    child: tokio::process::Child,
    addr: SocketAddr,
    log: std::path::PathBuf,
}

impl Instance {
    /// Start `satchel-sync` with `args` (plus `--listen`), wait for its
    /// address line. `Err` carries the log when it exits instead.
    async fn start(
        args: &[String],
        listen: &str,
        log: std::path::PathBuf,
    ) -> Result<Instance, String> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let mut child = tokio::process::Command::new(satchel_tests::bin("satchel-sync"))
            .args(["--listen", listen])
            .args(args)
            .env("RUST_LOG", "info")
            .stdout(std::process::Stdio::piped())
            .stderr(file)
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        let first = tokio::time::timeout(Duration::from_secs(60), lines.next_line()).await;
        let Ok(Ok(Some(first))) = first else {
            let _ = child.wait().await;
            return Err(std::fs::read_to_string(&log).unwrap_or_default());
        };
        let addr = first
            .strip_prefix("listening on ")
            .and_then(|a| a.parse().ok())
            .ok_or_else(|| format!("unexpected first line {first:?}"))?;
        Ok(Instance { child, addr, log })
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// SIGTERM and wait for a clean exit.
    async fn terminate(mut self) {
        let pid = self.child.id().unwrap();
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let exit = tokio::time::timeout(Duration::from_secs(60), self.child.wait())
            .await
            .expect("relay did not stop within 60 s of SIGTERM")
            .unwrap();
        assert!(
            exit.success(),
            "{exit:?}: {}",
            std::fs::read_to_string(&self.log).unwrap_or_default()
        );
    }
}

fn pg_args(url: &str, schema: &str) -> Vec<String> {
    vec![
        "--database-url".into(),
        url.into(),
        "--pg-schema".into(),
        schema.into(),
        "--rate-per-sec".into(),
        "0".into(),
        "--auth-rate-per-sec".into(),
        "0".into(),
    ]
}

/// A PostgreSQL URL and the name of a schema that does not exist yet.
async fn fresh_pg_schema(test: &str) -> Option<(String, String)> {
    let Some((url, schema)) = pg_test_schema().await else {
        pg_unreachable(test);
        return None;
    };
    pg_drop_schema(&url, &schema).await;
    Some((url, schema))
}

async fn get(c: &reqwest::Client, url: &str) -> (u16, Value) {
    let resp = c.get(url).send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relays_start_together_on_a_fresh_database() {
    let Some((url, schema)) = fresh_pg_schema("relays_start_together_on_a_fresh_database").await
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let args = pg_args(&url, &schema);
    // Build the binaries once before the start line, so the five start at
    // the same moment.
    let _ = satchel_tests::bin("satchel-sync");
    let starts = (0..5).map(|i| {
        let args = args.clone();
        let log = dir.path().join(format!("relay{i}.log"));
        tokio::spawn(async move { Instance::start(&args, "127.0.0.1:0", log).await })
    });
    let mut instances = Vec::new();
    for (i, s) in starts.enumerate() {
        match s.await.unwrap() {
            Ok(inst) => instances.push(inst),
            Err(log) => panic!("instance {i} did not start:\n{log}"),
        }
    }
    let c = client();
    for inst in &instances {
        let (status, body) = get(&c, &inst.url("/v1/health")).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["storage"], "postgres");
    }
    // They serve one database: a record registered through the first is
    // known to every other.
    let first = relay_common::TestServer::external(instances[0].addr);
    let owner = relay_common::new_device(&c, &first, "owner").await;
    let rid = relay_common::register(&c, &first, &owner).await;
    for inst in &instances[1..] {
        let s = relay_common::TestServer::external(inst.addr);
        let (status, body) =
            relay_common::get_json(&c, &s, &owner, &format!("/v1/records/{rid}/members")).await;
        assert_eq!(status, 200, "{body}");
    }
    for inst in instances {
        inst.terminate().await;
    }
    pg_drop_schema(&url, &schema).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_refuses_a_newer_schema() {
    // SQLite: a file whose user_version is beyond what this relay knows.
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("relay.db");
    let first = Instance::start(
        &["--db".into(), db.display().to_string()],
        "127.0.0.1:0",
        dir.path().join("a.log"),
    )
    .await
    .unwrap();
    first.terminate().await;
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.pragma_update(None, "user_version", 999).unwrap();
    drop(conn);
    let log = Instance::start(
        &["--db".into(), db.display().to_string()],
        "127.0.0.1:0",
        dir.path().join("b.log"),
    )
    .await
    .err()
    .expect("a relay served a schema newer than it knows");
    assert!(
        log.contains("schema is version 999, newer than this relay knows"),
        "{log}"
    );

    // PostgreSQL: a migration row from the future.
    let Some((url, schema)) = fresh_pg_schema("relay_refuses_a_newer_schema").await else {
        return;
    };
    let args = pg_args(&url, &schema);
    let first = Instance::start(&args, "127.0.0.1:0", dir.path().join("c.log"))
        .await
        .unwrap();
    first.terminate().await;
    let (pg, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    pg.batch_execute(&format!(
        "INSERT INTO \"{schema}\".schema_migrations (version) VALUES (999)"
    ))
    .await
    .unwrap();
    let log = Instance::start(&args, "127.0.0.1:0", dir.path().join("d.log"))
        .await
        .err()
        .expect("a relay served a schema newer than it knows");
    assert!(
        log.contains("schema is version 999, newer than this relay knows"),
        "{log}"
    );
    pg_drop_schema(&url, &schema).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_token_refused_on_every_instance() {
    use futures_util::StreamExt;
    let Some((url, schema)) = fresh_pg_schema("revoked_token_refused_on_every_instance").await
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let args = pg_args(&url, &schema);
    let mut instances = Vec::new();
    for i in 0..3 {
        let log = dir.path().join(format!("relay{i}.log"));
        instances.push(Instance::start(&args, "127.0.0.1:0", log).await.unwrap());
    }
    let servers: Vec<_> = instances
        .iter()
        .map(|i| relay_common::TestServer::external(i.addr))
        .collect();
    let c = client();
    let owner = relay_common::new_device(&c, &servers[0], "owner").await;
    let carer = relay_common::new_device(&c, &servers[1], "carer").await;
    let bystander = relay_common::new_device(&c, &servers[2], "bystander").await;
    let rid = relay_common::register(&c, &servers[0], &owner).await;
    relay_common::grant_first(
        &c,
        &servers[0],
        &owner,
        rid,
        &carer,
        satchel_protocol::sharing::GrantRole::Reader,
        &["vitals"],
    )
    .await;
    let feed = format!("/v1/records/{rid}/feed");
    // The carer's token works on every instance (and is cached there), and
    // it holds a WebSocket on the third.
    for s in &servers {
        assert_eq!(relay_common::get_json(&c, s, &carer, &feed).await.0, 200);
    }
    let (mut ws, _) = tokio_tungstenite::connect_async(format!(
        "ws://{}/v1/records/{rid}/subscribe?token={}",
        servers[2].addr, carer.token
    ))
    .await
    .unwrap();

    // Only an owner device may end sessions, and only of a member.
    let revoke = |by: &relay_common::Device, who: satchel_protocol::ids::IdentityId| {
        c.post(servers[0].url(&format!("/v1/records/{rid}/sessions/revoke")))
            .bearer_auth(&by.token)
            .json(&satchel_protocol::wire::RevokeSessionsRequest { identity: who })
            .send()
    };
    assert_eq!(
        revoke(&carer, owner.identity.id()).await.unwrap().status(),
        403
    );
    assert_eq!(
        revoke(&owner, bystander.identity.id())
            .await
            .unwrap()
            .status(),
        404
    );
    let r = revoke(&owner, carer.identity.id()).await.unwrap();
    assert_eq!(r.status(), 200);
    let body: satchel_protocol::wire::RevokeSessionsResponse = r.json().await.unwrap();
    assert_eq!(body.revoked, 1);
    let revoked_at = std::time::Instant::now();

    // Within a second every instance refuses the token, and the WebSocket
    // is closed with 1008.
    tokio::time::sleep(Duration::from_millis(1000)).await;
    for s in &servers {
        assert_eq!(
            relay_common::get_json(&c, s, &carer, &feed).await.0,
            401,
            "a revoked token was accepted by {}",
            s.base
        );
    }
    let close = tokio::time::timeout(Duration::from_secs(1), async {
        while let Some(msg) = ws.next().await {
            if let Ok(tokio_tungstenite::tungstenite::Message::Close(frame)) = msg {
                return frame;
            }
        }
        None
    })
    .await
    .expect("the WebSocket was not closed within a second of the revocation")
    .expect("closed without a close frame");
    assert_eq!(u16::from(close.code), 1008, "{close:?}");
    assert!(revoked_at.elapsed() < Duration::from_secs(3));
    // Other sessions are untouched.
    for s in &servers {
        assert_eq!(relay_common::get_json(&c, s, &owner, &feed).await.0, 200);
    }
    for inst in instances {
        inst.terminate().await;
    }
    pg_drop_schema(&url, &schema).await;
}

/// Wait for the next `changed` frame of `section` on `ws`.
async fn next_frame<S>(ws: &mut S, section: &str, within: Duration) -> Option<u64>
where
    S: futures_util::Stream<
            Item = Result<
                tokio_tungstenite::tungstenite::Message,
                tokio_tungstenite::tungstenite::Error,
            >,
        > + Unpin,
{
    use futures_util::StreamExt;
    tokio::time::timeout(within, async {
        while let Some(Ok(msg)) = ws.next().await {
            if let tokio_tungstenite::tungstenite::Message::Text(t) = msg {
                let v: Value = serde_json::from_str(&t).unwrap();
                if v["section"] == section {
                    return v["seq"].as_u64();
                }
            }
        }
        None
    })
    .await
    .ok()
    .flatten()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listen_reconnect_catches_up() {
    let Some((url, schema)) = fresh_pg_schema("listen_reconnect_catches_up").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let args = pg_args(&url, &schema);
    let a = Instance::start(&args, "127.0.0.1:0", dir.path().join("a.log"))
        .await
        .unwrap();
    let b = Instance::start(&args, "127.0.0.1:0", dir.path().join("b.log"))
        .await
        .unwrap();
    let (sa, sb) = (
        relay_common::TestServer::external(a.addr),
        relay_common::TestServer::external(b.addr),
    );
    let c = client();
    let owner = relay_common::new_device(&c, &sa, "owner").await;
    let rid = relay_common::register(&c, &sa, &owner).await;
    // A device subscribed on B hears of pushes made through A.
    let (mut ws, _) = tokio_tungstenite::connect_async(format!(
        "ws://{}/v1/records/{rid}/subscribe?token={}",
        b.addr, owner.token
    ))
    .await
    .unwrap();
    let mut n = 1u64;
    let env = |n: u64| relay_common::seal(&owner.identity, rid, "vitals", n, b"x").to_bytes();
    let (st, body) = relay_common::upload(&c, &sa, &owner, rid, "vitals", &[env(n)]).await;
    assert_eq!(st, 200, "{body}");
    assert!(next_frame(&mut ws, "vitals", Duration::from_secs(10))
        .await
        .is_some());

    let (pg, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let channel_of_schema = format!(
        "satchel-sync listen satchel_changes_{}",
        &hex::encode(ring::digest::digest(
            &ring::digest::SHA256,
            schema.as_bytes()
        ))[..16]
    );
    let notifications = |s: &relay_common::TestServer| {
        let url = s.url("/v1/ready");
        let c = c.clone();
        async move { get(&c, &url).await.1["notifications"].as_bool() }
    };
    // Cut the LISTEN connections (both instances'); push through A while
    // B's is down (checked: B still reports it down after the push); the
    // push must reach B's subscriber once B has reconnected.
    let mut gap_hit = false;
    for _attempt in 0..20 {
        pg.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
            &[&channel_of_schema],
        )
        .await
        .unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while notifications(&sb).await != Some(false) && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        n += 1;
        let (st, body) = relay_common::upload(&c, &sa, &owner, rid, "vitals", &[env(n)]).await;
        assert_eq!(st, 200, "{body}");
        let seq = body["accepted"][0]["seq"].as_u64().unwrap();
        if notifications(&sb).await == Some(false) {
            gap_hit = true;
            let got = next_frame(&mut ws, "vitals", Duration::from_secs(15)).await;
            assert_eq!(
                got,
                Some(seq),
                "a push stored while B's LISTEN connection was down never reached B's subscriber"
            );
            break;
        }
        // B reconnected before the push committed: drain and try again.
        assert!(next_frame(&mut ws, "vitals", Duration::from_secs(15))
            .await
            .is_some());
    }
    assert!(gap_hit, "could not push inside the reconnection gap");
    // Readiness came back.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while notifications(&sb).await != Some(true) {
        assert!(std::time::Instant::now() < deadline, "B never reconnected");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(get(&c, &sb.url("/v1/ready")).await.0, 200);
    assert!(std::fs::read_to_string(&b.log)
        .unwrap()
        .contains("announced the sections changed meanwhile"));
    a.terminate().await;
    b.terminate().await;
    pg_drop_schema(&url, &schema).await;
}

/// A record's owner token, its id, and its envelopes to push (section,
/// bytes) in order.
type Sealed = (
    String,
    satchel_protocol::ids::RecordId,
    Vec<(String, Vec<u8>)>,
);

/// The addresses behind the "load balancer": a device connects to the
/// next one in turn (an instance being restarted refuses, so it moves on).
#[derive(Clone, Default)]
struct Balancer(std::sync::Arc<std::sync::Mutex<(Vec<SocketAddr>, usize)>>);

impl Balancer {
    fn next(&self) -> SocketAddr {
        let mut g = self.0.lock().unwrap();
        g.1 = g.1.wrapping_add(1);
        g.0[g.1 % g.0.len()]
    }

    fn set(&self, i: usize, addr: SocketAddr) {
        self.0.lock().unwrap().0[i] = addr;
    }
}

/// What one device has heard of: newest seq per section, and the close
/// codes its push channel got.
#[derive(Default)]
struct Heard {
    newest: std::collections::HashMap<String, u64>,
    closes: Vec<u16>,
    /// The feed's cursor as last read (frames do not move it: a frame of
    /// one section says nothing of another's missed change).
    feed_cursor: u64,
}

impl Heard {
    /// A `changed` frame or a feed entry: `{"section":..,"seq":..}`.
    fn saw(&mut self, v: &Value) {
        let e = self
            .newest
            .entry(v["section"].as_str().unwrap().to_owned())
            .or_default();
        *e = (*e).max(v["seq"].as_u64().unwrap());
    }

    fn cursor(&self) -> u64 {
        self.feed_cursor
    }
}

/// A device as the watcher in core behaves: open the push channel (to
/// whichever instance the balancer picks), then read the feed after its
/// cursor (catch-up), then take frames; when the channel closes, wait a
/// random jitter and start again. Never a manual sync.
async fn device(
    lb: Balancer,
    rid: satchel_protocol::ids::RecordId,
    token: String,
    heard: std::sync::Arc<std::sync::Mutex<Heard>>,
    seed: u64,
) {
    use futures_util::StreamExt;
    let c = client();
    let mut rng = seed;
    loop {
        let addr = lb.next();
        let ws = tokio_tungstenite::connect_async(format!(
            "ws://{addr}/v1/records/{rid}/subscribe?token={token}"
        ))
        .await;
        if let Ok((mut ws, _)) = ws {
            let cursor = heard.lock().unwrap().cursor();
            let feed = c
                .get(format!(
                    "http://{addr}/v1/records/{rid}/feed?after={cursor}"
                ))
                .bearer_auth(&token)
                .send()
                .await;
            let feed: Option<Value> = match feed {
                Ok(r) if r.status() == 200 => r.json().await.ok(),
                _ => None,
            };
            if let Some(feed) = feed {
                {
                    let mut h = heard.lock().unwrap();
                    for s in feed["sections"].as_array().unwrap() {
                        h.saw(s);
                    }
                    h.feed_cursor = h.feed_cursor.max(feed["cursor"].as_u64().unwrap());
                }
                while let Some(msg) = ws.next().await {
                    match msg {
                        Ok(tokio_tungstenite::tungstenite::Message::Text(t)) => {
                            let v: Value = serde_json::from_str(&t).unwrap();
                            heard.lock().unwrap().saw(&v);
                        }
                        Ok(tokio_tungstenite::tungstenite::Message::Close(Some(f))) => {
                            heard.lock().unwrap().closes.push(u16::from(f.code));
                            break;
                        }
                        Ok(_) => {}
                        Err(_) => break,
                    }
                }
            }
        }
        // Jitter: 0..500 ms (xorshift).
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        tokio::time::sleep(Duration::from_millis(rng % 500)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_restart_loses_no_push() {
    const INSTANCES: usize = 3;
    const RECORDS: usize = 10;
    const DEVICES: usize = 200;
    const SECTIONS: [&str; 4] = ["vitals", "labs", "medications", "allergies"];
    let Some((url, schema)) = fresh_pg_schema("rolling_restart_loses_no_push").await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let args = pg_args(&url, &schema);
    let mut instances = Vec::new();
    for i in 0..INSTANCES {
        let log = dir.path().join(format!("relay{i}-0.log"));
        instances.push(Some(
            Instance::start(&args, "127.0.0.1:0", log).await.unwrap(),
        ));
    }
    let lb = Balancer::default();
    lb.0.lock().unwrap().0 = instances.iter().map(|i| i.as_ref().unwrap().addr).collect();
    let c = client();
    let first = relay_common::TestServer::external(instances[0].as_ref().unwrap().addr);
    // Ten records, each with its owner; 200 devices, 20 per record, each
    // with its own session.
    let mut owners = Vec::new();
    for _ in 0..RECORDS {
        let owner = relay_common::new_device(&c, &first, "owner").await;
        let rid = relay_common::register(&c, &first, &owner).await;
        owners.push((owner, rid));
    }
    let mut devices = Vec::new();
    for d in 0..DEVICES {
        let (owner, rid) = &owners[d % RECORDS];
        let s = relay_common::TestServer::external(lb.next());
        let same = satchel_protocol::crypto::Identity::from_secret_bytes(
            &owner.identity.to_secret_bytes(),
        )
        .unwrap();
        let tok = relay_common::login_url(&c, &s.base, same).await;
        let heard = std::sync::Arc::new(std::sync::Mutex::new(Heard::default()));
        let task = tokio::spawn(device(
            lb.clone(),
            *rid,
            tok.token,
            std::sync::Arc::clone(&heard),
            0x9E37_79B9_7F4A_7C15 ^ (d as u64 + 1),
        ));
        devices.push((d % RECORDS, heard, task));
    }

    // The pusher: round-robin over records and sections through the
    // balancer, retrying through the next instance when one is down.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sealed: Vec<Sealed> = owners
        .iter()
        .map(|(o, rid)| {
            let envs = (0..400u64)
                .map(|n| {
                    let per = SECTIONS.len() as u64;
                    let section = SECTIONS[usize::try_from(n % per).unwrap()];
                    // Each section's author sequence runs 1, 2, 3, ...
                    let env = relay_common::seal(&o.identity, *rid, section, n / per + 1, b"x");
                    (section.to_owned(), env.to_bytes())
                })
                .collect();
            (o.token.clone(), *rid, envs)
        })
        .collect();
    let pusher = {
        let (lb, stop) = (lb.clone(), stop.clone());
        tokio::spawn(async move {
            let c = client();
            let mut pushed = std::collections::HashMap::<(usize, String), u64>::new();
            let mut step = 0usize;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && step < RECORDS * 400 {
                let r = step % RECORDS;
                let (token, rid, envs) = &sealed[r];
                let (section, bytes) = &envs[step / RECORDS];
                loop {
                    let addr = lb.next();
                    let resp = c
                        .post(format!(
                            "http://{addr}/v1/records/{rid}/sections/{section}/envelopes"
                        ))
                        .bearer_auth(token)
                        .json(&serde_json::json!({ "envelopes": [relay_common::b64(bytes)] }))
                        .send()
                        .await;
                    if let Ok(resp) = resp {
                        let status = resp.status().as_u16();
                        assert!(
                            status == 200 || status >= 500,
                            "upload refused: {status} {}",
                            resp.text().await.unwrap_or_default()
                        );
                        if status == 200 {
                            let body: Value = resp.json().await.unwrap();
                            let seq = body["accepted"][0]["seq"].as_u64().unwrap();
                            let e = pushed.entry((r, section.clone())).or_default();
                            *e = (*e).max(seq);
                            break;
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                step += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            pushed
        })
    };

    // Restart the instances one by one while changes are pushed.
    tokio::time::sleep(Duration::from_secs(2)).await;
    for (i, slot) in instances.iter_mut().enumerate() {
        let old = slot.take().unwrap();
        old.terminate().await;
        let log = dir.path().join(format!("relay{i}-1.log"));
        let new = Instance::start(&args, "127.0.0.1:0", log).await.unwrap();
        lb.set(i, new.addr);
        *slot = Some(new);
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let pushed = pusher.await.unwrap();
    assert!(
        pushed.len() >= RECORDS * 2,
        "too few pushes: {}",
        pushed.len()
    );

    // Every device ends with every change, with no manual sync.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let missing: Vec<usize> = devices
            .iter()
            .enumerate()
            .filter(|(_, (r, heard, _))| {
                let h = heard.lock().unwrap();
                pushed
                    .iter()
                    .filter(|((pr, _), _)| pr == r)
                    .any(|((_, sec), seq)| h.newest.get(sec) != Some(seq))
            })
            .map(|(d, _)| d)
            .collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{} of {DEVICES} devices missed changes, e.g. device {}",
            missing.len(),
            missing[0]
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The restarting instances told their subscribers to reconnect.
    let restarts: usize = devices
        .iter()
        .map(|(_, h, _)| {
            h.lock()
                .unwrap()
                .closes
                .iter()
                .filter(|c| **c == 1012)
                .count()
        })
        .sum();
    assert!(restarts >= DEVICES / 2, "only {restarts} closes with 1012");
    for (_, _, task) in devices {
        task.abort();
    }
    for inst in instances.into_iter().flatten() {
        inst.terminate().await;
    }
    pg_drop_schema(&url, &schema).await;
}

#[test]
fn cli_end_sessions_ends_a_devices_sessions() {
    // The owner's home syncs (a session), then ends every session of its
    // own identity through the CLI: the relay counts the session it ended,
    // and a stranger's id is refused.
    let dir = tempfile::tempdir().unwrap();
    let relay = satchel_tests::Relay::start(&dir.path().join("relay"));
    let home = dir.path().join("phone");
    let pass = "ops test passphrase";
    satchel_tests::run(
        satchel_tests::satchel(&home, pass).args(["init", "--name", "Test Patient"]),
        true,
    );
    satchel_tests::run(
        satchel_tests::satchel(&home, pass).args(["sync", "--server", &relay.url()]),
        true,
    );
    let who = satchel_tests::run(
        satchel_tests::satchel(&home, pass).args(["whoami", "--json"]),
        true,
    );
    let who: Value = serde_json::from_slice(&who.stdout).unwrap();
    let id = who["identity"]["signing_key"].as_str().unwrap().to_owned();
    let out = satchel_tests::run(
        satchel_tests::satchel(&home, pass).args([
            "end-sessions",
            "--server",
            &relay.url(),
            "--identity",
            &id,
        ]),
        true,
    );
    let text = String::from_utf8_lossy(&out.stdout);
    // The sync's session and the one end-sessions logged in with.
    assert!(text.contains("Ended 2 session(s)"), "{text}");
    let stranger = "ab".repeat(32);
    let out = satchel_tests::run(
        satchel_tests::satchel(&home, pass).args([
            "end-sessions",
            "--server",
            &relay.url(),
            "--identity",
            &stranger,
        ]),
        false,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not a member"), "{err}");
}

/// `satchel_subscriber_wakeups_total` from `/metrics`.
async fn wakeups(c: &reqwest::Client, s: &relay_common::TestServer) -> u64 {
    relay_common::counter(c, s, "satchel_subscriber_wakeups_total").await
}

/// 40 subscribers on record A, 2 on record B, 10 changes to B: with the
/// record index only B's subscribers are woken (20); the scan path that
/// the index replaced wakes all 42 per change (420).
async fn fanout_work(indexed: bool) -> u64 {
    let mut s = relay_common::TestServer::start(|c| {
        c.fanout_index = indexed;
        c.rate.per_second = 0;
        c.rate.auth_per_second = 0;
    })
    .await;
    let c = client();
    let a_owner = relay_common::new_device(&c, &s, "a").await;
    let b_owner = relay_common::new_device(&c, &s, "b").await;
    let a = relay_common::register(&c, &s, &a_owner).await;
    let b = relay_common::register(&c, &s, &b_owner).await;
    let mut sockets = Vec::new();
    for (rid, token, n) in [(a, &a_owner.token, 40), (b, &b_owner.token, 2)] {
        for _ in 0..n {
            let (ws, _) = tokio_tungstenite::connect_async(format!(
                "ws://{}/v1/records/{rid}/subscribe?token={token}",
                s.addr
            ))
            .await
            .unwrap();
            sockets.push((rid, ws));
        }
    }
    let before = wakeups(&c, &s).await;
    for n in 1..=10 {
        let env = relay_common::seal(&b_owner.identity, b, "vitals", n, b"x").to_bytes();
        let (st, body) = relay_common::upload(&c, &s, &b_owner, b, "vitals", &[env]).await;
        assert_eq!(st, 200, "{body}");
    }
    // B's subscribers hear of the changes.
    for (rid, ws) in sockets.iter_mut() {
        if *rid == b {
            assert!(next_frame(ws, "vitals", Duration::from_secs(10))
                .await
                .is_some());
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let work = wakeups(&c, &s).await - before;
    drop(sockets);
    s.stop().await.unwrap();
    work
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_wakes_only_the_changed_records_subscribers() {
    assert_eq!(fanout_work(true).await, 2 * 10);
    assert_eq!(
        fanout_work(false).await,
        42 * 10,
        "the scan path wakes everyone"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_online_backup_restores() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("relay.db");
    let backup = dir.path().join("backup.db");
    let args = |db: &std::path::Path| {
        vec![
            "--db".to_owned(),
            db.display().to_string(),
            "--rate-per-sec".into(),
            "0".into(),
        ]
    };
    let live = Instance::start(&args(&db), "127.0.0.1:0", dir.path().join("live.log"))
        .await
        .unwrap();
    let s = relay_common::TestServer::external(live.addr);
    let c = client();
    let owner = relay_common::new_device(&c, &s, "owner").await;
    let rid = relay_common::register(&c, &s, &owner).await;
    let envs: Vec<Vec<u8>> = (1..=2000u64)
        .map(|n| relay_common::seal(&owner.identity, rid, "vitals", n, b"x").to_bytes())
        .collect();
    // A writer streams uploads, one envelope each, and notes what the
    // relay acknowledged.
    let acked = std::sync::Arc::new(std::sync::Mutex::new(0usize));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (acked, stop, envs, token) = (
            acked.clone(),
            stop.clone(),
            envs.clone(),
            owner.token.clone(),
        );
        let url = s.url(&format!("/v1/records/{rid}/sections/vitals/envelopes"));
        tokio::spawn(async move {
            let c = client();
            for (i, env) in envs.iter().enumerate() {
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                let r = c
                    .post(&url)
                    .bearer_auth(&token)
                    .json(&serde_json::json!({ "envelopes": [relay_common::b64(env)] }))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
                *acked.lock().unwrap() = i + 1;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    // The online backup, while uploads keep arriving.
    let before = *acked.lock().unwrap();
    assert!(before > 0);
    let (src, dst) = (db.clone(), backup.clone());
    tokio::task::spawn_blocking(move || {
        let conn = rusqlite::Connection::open(&src).unwrap();
        conn.execute("VACUUM INTO ?1", [dst.display().to_string()])
            .unwrap();
    })
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    writer.await.unwrap();
    let after = *acked.lock().unwrap();
    assert!(after > before, "uploads stalled during the backup");
    live.terminate().await;

    // A relay on the backup serves every envelope acknowledged before the
    // backup began, byte for byte, in order.
    let restored = Instance::start(
        &args(&backup),
        "127.0.0.1:0",
        dir.path().join("restored.log"),
    )
    .await
    .unwrap();
    let r = relay_common::TestServer::external(restored.addr);
    assert_eq!(get(&c, &r.url("/v1/ready")).await.0, 200);
    let mut got: Vec<Vec<u8>> = Vec::new();
    let mut after_seq = 0u64;
    loop {
        let (st, page) = relay_common::get_json(
            &c,
            &r,
            &owner,
            &format!("/v1/records/{rid}/sections/vitals/envelopes?after={after_seq}&limit=1000"),
        )
        .await;
        assert_eq!(st, 200, "{page}");
        for e in page["envelopes"].as_array().unwrap() {
            got.push(relay_common::unb64(e["envelope"].as_str().unwrap()));
        }
        after_seq = page["next"].as_u64().unwrap();
        if !page["more"].as_bool().unwrap() {
            break;
        }
    }
    assert!(
        got.len() >= before,
        "the backup lost acknowledged envelopes: {} of {before}",
        got.len()
    );
    assert!(got.len() <= after);
    assert_eq!(
        got[..],
        envs[..got.len()],
        "the backup is not a prefix of the log"
    );
    restored.terminate().await;
}
