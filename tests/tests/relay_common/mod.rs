//! Shared helpers for the relay's integration tests: an in-process relay on
//! loopback, authentication, envelope sealing, PostgreSQL test schemas.
#![allow(clippy::unwrap_used, dead_code)]

use std::net::SocketAddr;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use satchel_protocol::crypto::{Envelope, EnvelopeHeader, Identity, Role, SectionKey};
use satchel_protocol::ids::RecordId;
use satchel_protocol::wire::{
    Challenge, ChallengeRequest, ChallengeResponse, Endpoint, Token, TokenRequest, TokenResponse,
};
use satchel_sync_server::Config;
use serde_json::{json, Value};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub fn b64(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

pub fn unb64(s: &str) -> Vec<u8> {
    STANDARD.decode(s).unwrap()
}

/// A relay running in this process on 127.0.0.1:0.
pub struct TestServer {
    pub addr: SocketAddr,
    pub base: String,
    pub dir: tempfile::TempDir,
    stop: Option<oneshot::Sender<()>>,
    handle: Option<JoinHandle<anyhow::Result<()>>>,
}

impl TestServer {
    /// Start over a fresh SQLite file; `tweak` may change the config.
    pub async fn start(tweak: impl FnOnce(&mut Config)) -> TestServer {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::sqlite(dir.path().join("relay.db"));
        tweak(&mut config);
        Self::start_with(config, dir).await
    }

    /// Start with a complete config (the temp dir is kept alive).
    pub async fn start_with(config: Config, dir: tempfile::TempDir) -> TestServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, rx) = oneshot::channel::<()>();
        let handle = tokio::spawn(satchel_sync_server::serve(config, listener, async move {
            let _ = rx.await;
        }));
        TestServer {
            addr,
            base: format!("http://{addr}"),
            dir,
            stop: Some(stop),
            handle: Some(handle),
        }
    }

    /// A relay running elsewhere (another process) at `addr`.
    pub fn external(addr: SocketAddr) -> TestServer {
        TestServer {
            addr,
            base: format!("http://{addr}"),
            dir: tempfile::tempdir().unwrap(),
            stop: None,
            handle: None,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Signal shutdown and wait for the server to finish.
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.handle.take() {
            Some(h) => h.await.unwrap(),
            None => Ok(()),
        }
    }
}

/// An identity with a bearer token.
pub struct Device {
    pub identity: Identity,
    pub token: String,
}

impl Device {
    pub fn id_hex(&self) -> String {
        self.identity.id().to_hex()
    }
}

pub fn client() -> reqwest::Client {
    // reqwest is built without a crypto provider of its own (the core
    // brings ring): install it before building a client.
    satchel_core::sync::tls::install_default_provider();
    reqwest::Client::builder().build().unwrap()
}

/// Challenge → signature → token (the protocol's one login rule,
/// `TokenRequest::sign`).
pub async fn login(c: &reqwest::Client, s: &TestServer, identity: Identity) -> Device {
    login_url(c, &s.base, identity).await
}

/// [`login`] at a relay given by its base URL (a relay process).
pub async fn login_url(c: &reqwest::Client, base: &str, identity: Identity) -> Device {
    let ch: ChallengeResponse = c
        .post(format!("{base}{}", Challenge::PATH))
        .json(&ChallengeRequest {
            identity: identity.id(),
        })
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let resp = c
        .post(format!("{base}{}", Token::PATH))
        .json(&TokenRequest::sign(&identity, &ch.challenge))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let tok: TokenResponse = resp.json().await.unwrap();
    Device {
        identity,
        token: tok.token,
    }
}

pub async fn new_device(c: &reqwest::Client, s: &TestServer, name: &str) -> Device {
    login(
        c,
        s,
        Identity::generate(name, Role::PatientDevice, None).unwrap(),
    )
    .await
}

/// Register a new record owned by `d`.
pub async fn register(c: &reqwest::Client, s: &TestServer, d: &Device) -> RecordId {
    let rid = RecordId::random();
    let resp = c
        .post(s.url("/v1/records"))
        .bearer_auth(&d.token)
        .json(&json!({ "record_id": rid, "owner": d.identity.card() }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    rid
}

pub fn seal(author: &Identity, rid: RecordId, section: &str, n: u64, payload: &[u8]) -> Envelope {
    let key = SectionKey::from_bytes([42u8; 32]);
    Envelope::seal(
        &key,
        EnvelopeHeader {
            record_id: rid,
            section: section.into(),
            // The key epoch of a section whose key never rotated: the relay
            // accepts an envelope only under an epoch its author could write.
            epoch: 0,
            author: author.id(),
            seq: n,
        },
        payload,
        author,
    )
    .unwrap()
}

pub async fn upload(
    c: &reqwest::Client,
    s: &TestServer,
    d: &Device,
    rid: RecordId,
    section: &str,
    envs: &[Vec<u8>],
) -> (u16, Value) {
    let resp = c
        .post(s.url(&format!("/v1/records/{rid}/sections/{section}/envelopes")))
        .bearer_auth(&d.token)
        .json(&json!({ "envelopes": envs.iter().map(|e| b64(e)).collect::<Vec<_>>() }))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap())
}

pub async fn get_json(c: &reqwest::Client, s: &TestServer, d: &Device, path: &str) -> (u16, Value) {
    let resp = c
        .get(s.url(path))
        .bearer_auth(&d.token)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap())
}

/// GET a route that takes no token and parse its JSON body.
pub async fn get_public<T: serde::de::DeserializeOwned>(
    c: &reqwest::Client,
    s: &TestServer,
    path: &str,
) -> T {
    get_public_url(c, &s.base, path).await
}

/// [`get_public`] at a relay given by its base URL.
pub async fn get_public_url<T: serde::de::DeserializeOwned>(
    c: &reqwest::Client,
    base: &str,
    path: &str,
) -> T {
    c.get(format!("{base}{path}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// The relay's `/metrics` text.
pub async fn metrics_text(c: &reqwest::Client, s: &TestServer) -> String {
    c.get(s.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// One unlabelled counter from the relay's `/metrics`.
pub async fn counter(c: &reqwest::Client, s: &TestServer, name: &str) -> u64 {
    let text = metrics_text(c, s).await;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} not in /metrics:\n{text}"))
}

/// A PostgreSQL database URL for tests, and a fresh schema in it. `None`
/// when unreachable (the caller decides whether to fail or skip).
pub async fn pg_test_schema() -> Option<(String, String)> {
    let candidates: Vec<String> = match std::env::var("SATCHEL_TEST_DATABASE_URL") {
        Ok(url) => vec![url],
        Err(_) => {
            let mut v = Vec::new();
            for user in ["postgres", "root"] {
                for db in ["test", "postgres", "root"] {
                    v.push(format!("postgres://{user}@127.0.0.1:5432/{db}"));
                }
            }
            v
        }
    };
    for url in candidates {
        let Ok(Ok((client, conn))) = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            tokio_postgres::connect(&url, tokio_postgres::NoTls),
        )
        .await
        else {
            continue;
        };
        tokio::spawn(conn);
        let schema = format!(
            "satchel_test_{}_{}",
            std::process::id(),
            hex::encode(satchel_protocol::ids::RecordId::random().as_bytes())
        );
        if client
            .batch_execute(&format!("CREATE SCHEMA \"{schema}\""))
            .await
            .is_ok()
        {
            return Some((url, schema));
        }
    }
    None
}

/// Drop a test schema.
pub async fn pg_drop_schema(url: &str, schema: &str) {
    if let Ok((client, conn)) = tokio_postgres::connect(url, tokio_postgres::NoTls).await {
        tokio::spawn(conn);
        let _ = client
            .batch_execute(&format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
            .await;
    }
}

/// Fail under CI, skip (with a note) locally.
pub fn pg_unreachable(test: &str) {
    if std::env::var_os("CI").is_some() {
        panic!("{test}: PostgreSQL is unreachable at 127.0.0.1:5432 and CI is set");
    }
    eprintln!("{test}: SKIPPED: PostgreSQL unreachable (set CI to make this a failure)");
}

/// Make `member` a member of `rid` with `role` on `sections`, as the
/// record's first access statement (signed and posted by `owner`; the log
/// must still be empty). A reader or writer grant carries a (test) section
/// key wrapped to the member for each section.
pub async fn grant_first(
    c: &reqwest::Client,
    s: &TestServer,
    owner: &Device,
    rid: RecordId,
    member: &Device,
    role: satchel_protocol::sharing::GrantRole,
    sections: &[&str],
) {
    use satchel_protocol::sharing::{
        key_wrap_aad, AccessChange, AccessStatement, GrantRole, KeyWrap,
    };
    let card = member.identity.card().clone();
    let keys = if role == GrantRole::Manager {
        vec![]
    } else {
        sections
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
            .collect()
    };
    let signed = AccessStatement {
        record_id: rid,
        by: owner.identity.id(),
        at_ms: satchel_sync_server::storage::now_ms(),
        prev: [0; 32],
        change: AccessChange::Grant {
            grantee: card,
            role,
            sections: sections.iter().map(|s| (*s).to_owned()).collect(),
            expires_at_ms: None,
            label: "test grantee".into(),
            keys,
            rotations: vec![],
        },
    }
    .sign(&owner.identity)
    .unwrap();
    let resp = c
        .post(s.url(&format!("/v1/records/{rid}/access")))
        .bearer_auth(&owner.token)
        .json(&json!({"statement": b64(&signed.statement), "signature": b64(&signed.signature)}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201, "{}", resp.text().await.unwrap());
}
