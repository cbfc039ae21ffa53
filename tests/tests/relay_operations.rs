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

/// Grant `to` read access to `sections` of `rid` (signed by `owner`, the
/// log's first statement), posted through `s`.
async fn grant_reader(
    c: &reqwest::Client,
    s: &relay_common::TestServer,
    owner: &relay_common::Device,
    rid: satchel_protocol::ids::RecordId,
    to: &relay_common::Device,
    sections: &[&str],
) {
    use satchel_protocol::sharing::{
        key_wrap_aad, AccessChange, AccessStatement, GrantRole, KeyWrap,
    };
    let card = to.identity.card().clone();
    let keys = sections
        .iter()
        .map(|sec| KeyWrap {
            section: (*sec).into(),
            epoch: 0,
            to: card.id(),
            key: satchel_protocol::crypto::wrap_key(
                &card,
                &[7u8; 32],
                &key_wrap_aad(&rid, sec, 0, &card.id()),
            )
            .unwrap(),
        })
        .collect();
    let signed = AccessStatement {
        record_id: rid,
        by: owner.identity.id(),
        at_ms: satchel_sync_server::storage::now_ms(),
        prev: [0u8; 32],
        change: AccessChange::Grant {
            grantee: card,
            role: GrantRole::Reader,
            sections: sections.iter().map(|s| (*s).to_owned()).collect(),
            expires_at_ms: None,
            label: "carer".into(),
            keys,
            rotations: vec![],
        },
    }
    .sign(&owner.identity)
    .unwrap();
    let r = c
        .post(s.url(&format!("/v1/records/{rid}/access")))
        .bearer_auth(&owner.token)
        .json(&serde_json::json!({
            "statement": relay_common::b64(&signed.statement),
            "signature": relay_common::b64(&signed.signature),
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
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
    grant_reader(&c, &servers[0], &owner, rid, &carer, &["vitals"]).await;
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
