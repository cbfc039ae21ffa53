//! SMART Health Links hosted blind, over HTTP: the owners' routes (who may
//! use them, what they check), the public manifest / direct / location
//! routes as the specification has them (embedded or location, CORS, the
//! passcode's lifetime budget, 404 for every dead link), rate limits, and
//! the viewer's files with their CSP. The relay runs in this process over
//! a SQLite file, whose bytes are searched for the passcode.
#![allow(clippy::unwrap_used)]

#[path = "relay_common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use common::*;
use satchel_protocol::crypto::{Identity, Role};
use satchel_protocol::ids::{RecordId, ShareLinkHandle};
use satchel_protocol::sharing::GrantRole;
use satchel_protocol::wire::share_links::{
    CreateShareLink, CreateShareLinkRequest, DirectFile, ListShareLinks, Manifest,
    ManifestResponse, Passcode, RecipientQuery, ReplaceShareLinkFiles,
    ReplaceShareLinkFilesRequest, RevokeShareLink, ShareLinkChanged, ShareLinkFile, ShareLinkId,
    ShareLinkOpenKind, ShareLinkPath, ShareLinksResponse, ShlPath, ViewerPage, ViewerScript,
    ViewerStyle,
};
use satchel_protocol::wire::{Endpoint, RecordPath};
use serde_json::{json, Value};

/// A syntactically valid JWE compact (`alg: dir`, `enc: A256GCM`) with
/// `n` random bytes of "ciphertext": the relay checks the shape only.
fn jwe(n: usize) -> String {
    let header =
        URL_SAFE_NO_PAD.encode(br#"{"alg":"dir","enc":"A256GCM","cty":"application/fhir+json"}"#);
    let random = |len: usize| {
        let mut out = vec![0u8; len];
        satchel_protocol::crypto::random::fill(&mut out).unwrap();
        URL_SAFE_NO_PAD.encode(out)
    };
    format!("{header}..{}.{}.{}", random(12), random(n), random(16))
}

fn file(jwe: String) -> ShareLinkFile {
    ShareLinkFile {
        content_type: "application/fhir+json".into(),
        jwe,
    }
}

fn plain(files: Vec<ShareLinkFile>) -> CreateShareLinkRequest {
    CreateShareLinkRequest {
        expires_at_ms: None,
        passcode: None,
        attempts: None,
        max_opens: None,
        direct: false,
        files,
    }
}

fn with_passcode(
    files: Vec<ShareLinkFile>,
    passcode: &str,
    attempts: u32,
) -> CreateShareLinkRequest {
    CreateShareLinkRequest {
        passcode: Some(Passcode(passcode.into())),
        attempts: Some(attempts),
        ..plain(files)
    }
}

/// PUT a new link under a fresh id: the status, the body and the id.
async fn create(
    c: &reqwest::Client,
    s: &TestServer,
    d: &Device,
    rid: RecordId,
    req: &CreateShareLinkRequest,
) -> (u16, Value, ShareLinkId) {
    let id = ShareLinkId::random().unwrap();
    let (status, body) = create_at(c, s, d, rid, id.handle(), req).await;
    (status, body, id)
}

async fn create_at(
    c: &reqwest::Client,
    s: &TestServer,
    d: &Device,
    rid: RecordId,
    handle: ShareLinkHandle,
    req: &CreateShareLinkRequest,
) -> (u16, Value) {
    let path = CreateShareLink::path(&ShareLinkPath {
        record: rid,
        handle,
    });
    let resp = c
        .put(s.url(&path))
        .bearer_auth(&d.token)
        .json(req)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// Create a link that must succeed; its id.
async fn created(
    c: &reqwest::Client,
    s: &TestServer,
    d: &Device,
    rid: RecordId,
    req: &CreateShareLinkRequest,
) -> ShareLinkId {
    let (status, body, id) = create(c, s, d, rid, req).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["handle"], id.handle().to_hex());
    id
}

/// POST the manifest request `body` for `id` (as a browser would: with an
/// `Origin`).
async fn manifest(
    c: &reqwest::Client,
    s: &TestServer,
    id: &ShareLinkId,
    body: Value,
) -> reqwest::Response {
    c.post(s.url(&Manifest::path(&ShlPath(id))))
        .header("origin", "https://viewer.example")
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn manifest_status(
    c: &reqwest::Client,
    s: &TestServer,
    id: &ShareLinkId,
    body: Value,
) -> (u16, Value) {
    let resp = manifest(c, s, id, body).await;
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn list(c: &reqwest::Client, s: &TestServer, d: &Device, rid: RecordId) -> (u16, Value) {
    get_json(c, s, d, &ListShareLinks::path(&RecordPath(rid))).await
}

async fn revoke(
    c: &reqwest::Client,
    s: &TestServer,
    d: &Device,
    rid: RecordId,
    id: &ShareLinkId,
) -> (u16, Value) {
    let path = RevokeShareLink::path(&ShareLinkPath {
        record: rid,
        handle: id.handle(),
    });
    let resp = c
        .post(s.url(&path))
        .bearer_auth(&d.token)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn get(c: &reqwest::Client, url: &str) -> (u16, String, String) {
    let resp = c.get(url).send().await.unwrap();
    let status = resp.status().as_u16();
    let ct = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, ct, resp.text().await.unwrap())
}

async fn owner_and_record(c: &reqwest::Client, s: &TestServer) -> (Device, RecordId) {
    let owner = new_device(c, s, "phone").await;
    let rid = register(c, s, &owner).await;
    (owner, rid)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn passcode_attempts_are_a_lifetime_budget() {
    let mut s = TestServer::start(|_| {}).await;
    let c = client();
    let (owner, rid) = owner_and_record(&c, &s).await;
    let passcode = "tangerine-4417-zebra";
    let id = created(
        &c,
        &s,
        &owner,
        rid,
        &with_passcode(vec![file(jwe(200))], passcode, 10),
    )
    .await;

    // 50 wrong guesses at once: the budget is reserved before each
    // (slow) check, so exactly 10 are checked and answered 401, each with
    // a different count left, and the rest find a dead link.
    let mut tasks = Vec::new();
    for i in 0..50 {
        let (c, url) = (c.clone(), s.url(&Manifest::path(&ShlPath(&id))));
        tasks.push(tokio::spawn(async move {
            let resp = c
                .post(url)
                .json(
                    &json!({"recipient": format!("Guesser {i}"), "passcode": format!("wrong-{i}")}),
                )
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            (status, resp.json::<Value>().await.unwrap())
        }));
    }
    let mut by_status: BTreeMap<u16, usize> = BTreeMap::new();
    let mut left_seen = Vec::new();
    for t in tasks {
        let (status, body) = t.await.unwrap();
        *by_status.entry(status).or_default() += 1;
        match status {
            401 => {
                assert_eq!(body["error"], "unauthenticated");
                left_seen.push(body["remainingAttempts"].as_u64().unwrap());
            }
            404 => assert_eq!(body["error"], "not_found"),
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!(by_status.get(&401), Some(&10), "{by_status:?}");
    assert_eq!(by_status.get(&404), Some(&40), "{by_status:?}");
    left_seen.sort_unstable();
    assert_eq!(left_seen, (0..10).collect::<Vec<u64>>(), "9..0, each once");

    // The link is dead for good, even with the right passcode.
    let (status, _) = manifest_status(
        &c,
        &s,
        &id,
        json!({"recipient": "Dr Right", "passcode": passcode}),
    )
    .await;
    assert_eq!(status, 404);

    let (status, body) = list(&c, &s, &owner, rid).await;
    assert_eq!(status, 200, "{body}");
    let links: ShareLinksResponse = serde_json::from_value(body).unwrap();
    assert_eq!(links.links.len(), 1);
    let link = &links.links[0];
    assert_eq!(link.handle, id.handle());
    assert!(link.passcode);
    assert_eq!(link.remaining_attempts, Some(0));
    assert_eq!(link.opens.len(), 10);
    assert!(
        link.opens
            .iter()
            .all(|o| o.kind == ShareLinkOpenKind::WrongPasscode
                && o.recipient.starts_with("Guesser "))
    );

    // The passcode is nowhere in the database (only its Argon2id hash).
    s.stop().await.unwrap();
    let db = s.dir.path().join("relay.db");
    let mut bytes = std::fs::read(&db).unwrap();
    if let Ok(wal) = std::fs::read(s.dir.path().join("relay.db-wal")) {
        bytes.extend_from_slice(&wal);
    }
    let hay = String::from_utf8_lossy(&bytes);
    assert!(!hay.contains(passcode), "the passcode is stored in plain");
    assert!(!hay.contains("wrong-7"), "a guess is stored in plain");
    assert!(hay.contains("$argon2id$"), "the hash is stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn share_link_manifest_follows_the_spec_on_the_relay() {
    let s = TestServer::start(|config| {
        config.limits.share_location_lifetime_ms = 1_500;
    })
    .await;
    let c = client();
    let (owner, rid) = owner_and_record(&c, &s).await;
    let (small, large) = (jwe(100), jwe(5_000));
    let id = created(
        &c,
        &s,
        &owner,
        rid,
        &plain(vec![file(small.clone()), file(large.clone())]),
    )
    .await;

    // embeddedLengthMax splits embedded from location.
    let resp = manifest(
        &c,
        &s,
        &id,
        json!({"recipient": "Dr A", "embeddedLengthMax": 1000}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["access-control-allow-origin"],
        "*",
        "CORS on the manifest"
    );
    assert_eq!(resp.headers()["cache-control"], "no-store");
    let answer: ManifestResponse = resp.json().await.unwrap();
    assert_eq!(answer.files.len(), 2);
    assert_eq!(answer.files[0].content_type, "application/fhir+json");
    assert_eq!(answer.files[0].embedded.as_deref(), Some(small.as_str()));
    assert!(answer.files[0].location.is_none());
    assert!(answer.files[1].embedded.is_none());
    let location = answer.files[1].location.clone().unwrap();
    assert!(
        location.starts_with(&format!("{}/shl/{}/files/", s.base, id.to_text())),
        "an absolute URL on this relay: {location}"
    );
    let resp = c
        .get(&location)
        .header("origin", "https://viewer.example")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/jose");
    assert_eq!(resp.headers()["access-control-allow-origin"], "*");
    assert_eq!(resp.text().await.unwrap(), large, "the exact JWE");

    // Omitted: the relay embeds files up to 1 MiB.
    let (status, body) = manifest_status(&c, &s, &id, json!({"recipient": "Dr A"})).await;
    assert_eq!(status, 200);
    let answer: ManifestResponse = serde_json::from_value(body).unwrap();
    assert_eq!(answer.files[1].embedded.as_deref(), Some(large.as_str()));
    // 0: everything by location.
    let (status, body) = manifest_status(
        &c,
        &s,
        &id,
        json!({"recipient": "Dr A", "embeddedLengthMax": 0}),
    )
    .await;
    assert_eq!(status, 200);
    let answer: ManifestResponse = serde_json::from_value(body).unwrap();
    assert!(answer.files.iter().all(|f| f.location.is_some()));

    // A location lives for the location lifetime (shortened here).
    tokio::time::sleep(Duration::from_millis(1_700)).await;
    let (status, _, _) = get(&c, &location).await;
    assert_eq!(status, 404, "location expired");
    let (status, _, _) = get(&c, &format!("{location}x")).await;
    assert_eq!(status, 404, "malformed token");

    // The preflight is answered; owner routes have no CORS.
    let resp = c
        .request(
            reqwest::Method::OPTIONS,
            s.url(&Manifest::path(&ShlPath(&id))),
        )
        .header("origin", "https://viewer.example")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type")
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());
    assert_eq!(resp.headers()["access-control-allow-origin"], "*");
    let methods = resp.headers()["access-control-allow-methods"]
        .to_str()
        .unwrap()
        .to_ascii_uppercase();
    assert!(
        methods.contains("POST") && methods.contains("GET"),
        "{methods}"
    );
    assert!(resp.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .contains("content-type"));
    let resp = c
        .request(
            reqwest::Method::OPTIONS,
            s.url(&ListShareLinks::path(&RecordPath(rid))),
        )
        .header("origin", "https://viewer.example")
        .header("access-control-request-method", "GET")
        .send()
        .await
        .unwrap();
    assert!(resp.headers().get("access-control-allow-origin").is_none());

    // A U link: its one file by GET; not for other links.
    let direct_jwe = jwe(300);
    let u = created(
        &c,
        &s,
        &owner,
        rid,
        &CreateShareLinkRequest {
            direct: true,
            ..plain(vec![file(direct_jwe.clone())])
        },
    )
    .await;
    let query = RecipientQuery {
        recipient: "Dr U".into(),
    };
    let (status, ct, text) = get(&c, &s.url(&DirectFile::uri(&ShlPath(&u), &query))).await;
    assert_eq!((status, ct.as_str()), (200, "application/jose"));
    assert_eq!(text, direct_jwe);
    let (status, _, _) = get(&c, &s.url(&DirectFile::uri(&ShlPath(&id), &query))).await;
    assert_eq!(status, 404, "not a U link");
    let (status, _, _) = get(&c, &s.url(&Manifest::path(&ShlPath(&u)))).await;
    assert_eq!(status, 400, "recipient missing");

    // A passcode link: 401 with what is left; a missing passcode spends
    // nothing, a wrong one spends one.
    let p = created(
        &c,
        &s,
        &owner,
        rid,
        &with_passcode(vec![file(small.clone())], "open sesame", 5),
    )
    .await;
    let (status, body) = manifest_status(&c, &s, &p, json!({"recipient": "Dr P"})).await;
    assert_eq!(status, 401);
    assert_eq!(body["remainingAttempts"], 5, "{body}");
    let (status, body) = manifest_status(
        &c,
        &s,
        &p,
        json!({"recipient": "Dr P", "passcode": "open sesame!"}),
    )
    .await;
    assert_eq!(status, 401);
    assert_eq!(body["error"], "unauthenticated");
    assert_eq!(body["remainingAttempts"], 4, "{body}");
    let (status, body) = manifest_status(
        &c,
        &s,
        &p,
        json!({"recipient": "Dr P", "passcode": "open sesame"}),
    )
    .await;
    assert_eq!(status, 200, "{body}");

    // Unknown, malformed: the same 404.
    let unknown = ShareLinkId::random().unwrap();
    let (status, unknown_body) =
        manifest_status(&c, &s, &unknown, json!({"recipient": "Dr A"})).await;
    assert_eq!(status, 404);
    let resp = c
        .post(s.url("/shl/not-a-link-id"))
        .json(&json!({"recipient": "Dr A"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(resp.json::<Value>().await.unwrap(), unknown_body);
    // The recipient is required.
    let (status, _) = manifest_status(&c, &s, &id, json!({})).await;
    assert_eq!(status, 400);
    let (status, _) = manifest_status(&c, &s, &id, json!({"recipient": ""})).await;
    assert_eq!(status, 400);
    let (status, _) = manifest_status(&c, &s, &id, json!({"recipient": "x".repeat(201)})).await;
    assert_eq!(status, 400);

    // Once: the second open finds nothing.
    let once = created(
        &c,
        &s,
        &owner,
        rid,
        &CreateShareLinkRequest {
            max_opens: Some(1),
            ..plain(vec![file(small.clone())])
        },
    )
    .await;
    let (status, _) = manifest_status(&c, &s, &once, json!({"recipient": "Dr Once"})).await;
    assert_eq!(status, 200);
    let (status, body) = manifest_status(&c, &s, &once, json!({"recipient": "Dr Twice"})).await;
    assert_eq!(status, 404);
    assert_eq!(body, unknown_body, "a used-up link reads as an unknown one");

    // The owner sees who opened what.
    let (_, body) = list(&c, &s, &owner, rid).await;
    let links: ShareLinksResponse = serde_json::from_value(body).unwrap();
    let by_handle = |id: &ShareLinkId| {
        links
            .links
            .iter()
            .find(|l| l.handle == id.handle())
            .unwrap()
            .clone()
    };
    let first = by_handle(&id);
    assert_eq!(first.opens.len(), 3);
    assert!(first
        .opens
        .iter()
        .all(|o| o.kind == ShareLinkOpenKind::Manifest && o.recipient == "Dr A"));
    let u_status = by_handle(&u);
    assert!(u_status.direct);
    assert_eq!(u_status.opens.len(), 1);
    assert_eq!(u_status.opens[0].kind, ShareLinkOpenKind::Direct);
    assert_eq!(u_status.opens[0].recipient, "Dr U");
    let p_status = by_handle(&p);
    assert_eq!(p_status.remaining_attempts, Some(4));
    assert_eq!(
        p_status.opens.iter().map(|o| o.kind).collect::<Vec<_>>(),
        vec![
            ShareLinkOpenKind::WrongPasscode,
            ShareLinkOpenKind::Manifest
        ]
    );
    let once_status = by_handle(&once);
    assert_eq!(once_status.remaining_opens, Some(0));
    assert_eq!(once_status.opens.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn share_link_owner_api_is_for_owners() {
    let s = TestServer::start(|_| {}).await;
    let c = client();
    let (owner, rid) = owner_and_record(&c, &s).await;
    let carer = login(
        &c,
        &s,
        Identity::generate("carer", Role::Carer, None).unwrap(),
    )
    .await;
    grant_first(&c, &s, &owner, rid, &carer, GrantRole::Reader, &["vitals"]).await;
    let stranger = new_device(&c, &s, "stranger").await;
    let req = plain(vec![file(jwe(64))]);

    // A carer (reader) and a stranger may not create, list or revoke.
    for who in [&carer, &stranger] {
        let (status, body, _) = create(&c, &s, who, rid, &req).await;
        assert_eq!(status, 403, "{body}");
        assert_eq!(list(&c, &s, who, rid).await.0, 403);
    }
    let id = created(&c, &s, &owner, rid, &req).await;
    assert_eq!(revoke(&c, &s, &carer, rid, &id).await.0, 403);
    assert_eq!(revoke(&c, &s, &stranger, rid, &id).await.0, 403);

    // Opened once (by location), then revoked: the manifest and the
    // location are gone; revoking again is fine.
    let (status, body) = manifest_status(
        &c,
        &s,
        &id,
        json!({"recipient": "Dr Before", "embeddedLengthMax": 0}),
    )
    .await;
    assert_eq!(status, 200);
    let answer: ManifestResponse = serde_json::from_value(body).unwrap();
    let location = answer.files[0].location.clone().unwrap();
    assert_eq!(get(&c, &location).await.0, 200);
    let (status, body) = revoke(&c, &s, &owner, rid, &id).await;
    assert_eq!(status, 200, "{body}");
    let first: ShareLinkChanged = serde_json::from_value(body).unwrap();
    let (status, _) = manifest_status(&c, &s, &id, json!({"recipient": "Dr After"})).await;
    assert_eq!(status, 404);
    assert_eq!(get(&c, &location).await.0, 404, "files gone");
    let (status, body) = revoke(&c, &s, &owner, rid, &id).await;
    assert_eq!(status, 200);
    let again: ShareLinkChanged = serde_json::from_value(body).unwrap();
    assert_eq!(again, first, "revoked once");
    assert_eq!(
        revoke(&c, &s, &owner, rid, &ShareLinkId::random().unwrap())
            .await
            .0,
        404
    );
    let (status, body) = list(&c, &s, &owner, rid).await;
    assert_eq!(status, 200);
    let links: ShareLinksResponse = serde_json::from_value(body).unwrap();
    assert_eq!(links.links[0].revoked_at_ms, Some(first.at_ms));
    assert_eq!(links.links[0].opens.len(), 1);
    assert_eq!(links.links[0].opens[0].recipient, "Dr Before");

    // Replacing files: a live link's only.
    let replace = |id: &ShareLinkId, files: Vec<ShareLinkFile>| {
        let path = ReplaceShareLinkFiles::path(&ShareLinkPath {
            record: rid,
            handle: id.handle(),
        });
        c.put(s.url(&path))
            .bearer_auth(&owner.token)
            .json(&ReplaceShareLinkFilesRequest { files })
            .send()
    };
    assert_eq!(
        replace(&id, vec![file(jwe(10))]).await.unwrap().status(),
        404
    );
    let live = created(&c, &s, &owner, rid, &req).await;
    let newer = jwe(20);
    assert_eq!(
        replace(&live, vec![file(newer.clone())])
            .await
            .unwrap()
            .status(),
        200
    );
    let (_, body) = manifest_status(&c, &s, &live, json!({"recipient": "Dr L"})).await;
    let answer: ManifestResponse = serde_json::from_value(body).unwrap();
    assert_eq!(answer.files[0].embedded.as_deref(), Some(newer.as_str()));
    assert_eq!(
        replace(&live, vec![file("not.a.jwe".into())])
            .await
            .unwrap()
            .status(),
        422
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn share_link_creation_is_validated() {
    let s = TestServer::start(|_| {}).await;
    let c = client();
    let (owner, rid) = owner_and_record(&c, &s).await;
    let good = || file(jwe(32));
    let cases: Vec<(&str, CreateShareLinkRequest, u16)> = vec![
        ("no files", plain(vec![]), 422),
        ("17 files", plain((0..17).map(|_| good()).collect()), 413),
        (
            "a file too large",
            plain(vec![file(jwe(
                satchel_protocol::wire::share_links::MAX_SHARE_LINK_FILE_BYTES,
            ))]),
            413,
        ),
        ("not JWE", plain(vec![file(format!("{}.x", jwe(10)))]), 422),
        (
            "an encrypted key",
            plain(vec![file(jwe(10).replacen("..", ".a2V5.", 1))]),
            422,
        ),
        (
            "another algorithm",
            plain(vec![file(format!(
                "{}..aaaa.bbbb.cccc",
                URL_SAFE_NO_PAD.encode(br#"{"alg":"RSA-OAEP","enc":"A256GCM"}"#)
            ))]),
            422,
        ),
        (
            "an unknown content type",
            plain(vec![ShareLinkFile {
                content_type: "text/plain".into(),
                jwe: jwe(10),
            }]),
            422,
        ),
        (
            "direct with two files",
            CreateShareLinkRequest {
                direct: true,
                ..plain(vec![good(), good()])
            },
            422,
        ),
        (
            "direct with a passcode",
            CreateShareLinkRequest {
                direct: true,
                ..with_passcode(vec![good()], "1234", 3)
            },
            422,
        ),
        (
            "attempts without a passcode",
            CreateShareLinkRequest {
                attempts: Some(3),
                ..plain(vec![good()])
            },
            422,
        ),
        (
            "too many attempts",
            with_passcode(vec![good()], "1234", 101),
            422,
        ),
        ("no attempts", with_passcode(vec![good()], "1234", 0), 422),
        ("an empty passcode", with_passcode(vec![good()], "", 3), 422),
        (
            "a passcode too long",
            with_passcode(vec![good()], &"p".repeat(129), 3),
            422,
        ),
        (
            "an expiry in the past",
            CreateShareLinkRequest {
                expires_at_ms: Some(1_000),
                ..plain(vec![good()])
            },
            422,
        ),
        (
            "max_opens 0",
            CreateShareLinkRequest {
                max_opens: Some(0),
                ..plain(vec![good()])
            },
            422,
        ),
    ];
    for (what, req, want) in cases {
        let (status, body, _) = create(&c, &s, &owner, rid, &req).await;
        assert_eq!(status, want, "{what}: {body}");
    }
    // Every content type of the specification is accepted.
    for ct in satchel_protocol::wire::share_links::SHARE_LINK_CONTENT_TYPES {
        created(
            &c,
            &s,
            &owner,
            rid,
            &plain(vec![ShareLinkFile {
                content_type: (*ct).into(),
                jwe: jwe(10),
            }]),
        )
        .await;
    }
    // A handle is used once; a handle must be one.
    let id = created(&c, &s, &owner, rid, &plain(vec![good()])).await;
    let (status, _) = create_at(&c, &s, &owner, rid, id.handle(), &plain(vec![good()])).await;
    assert_eq!(status, 409);
    let resp = c
        .put(s.url(&format!("/v1/records/{rid}/share-links/XYZ")))
        .bearer_auth(&owner.token)
        .json(&plain(vec![good()]))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    // An expired link answers 404.
    let soon = created(
        &c,
        &s,
        &owner,
        rid,
        &CreateShareLinkRequest {
            expires_at_ms: Some(satchel_sync_server::storage::now_ms() + 300),
            ..plain(vec![good()])
        },
    )
    .await;
    assert_eq!(
        manifest_status(&c, &s, &soon, json!({"recipient": "Dr A"}))
            .await
            .0,
        200
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        manifest_status(&c, &s, &soon, json!({"recipient": "Dr A"}))
            .await
            .0,
        404
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn share_link_requests_are_rate_limited_per_link() {
    let s = TestServer::start(|config| {
        config.rate.share_link_per_second = 1;
        config.rate.share_link_burst = 5;
    })
    .await;
    let c = client();
    let (owner, rid) = owner_and_record(&c, &s).await;
    let id = created(&c, &s, &owner, rid, &plain(vec![file(jwe(10))])).await;
    let other = created(&c, &s, &owner, rid, &plain(vec![file(jwe(10))])).await;
    for _ in 0..5 {
        assert_eq!(
            manifest_status(&c, &s, &id, json!({"recipient": "Dr A"}))
                .await
                .0,
            200
        );
    }
    let (status, body) = manifest_status(&c, &s, &id, json!({"recipient": "Dr A"})).await;
    assert_eq!(status, 429);
    assert!(body["retry_after_ms"].as_u64().unwrap() > 0, "{body}");
    assert_eq!(
        manifest_status(&c, &s, &other, json!({"recipient": "Dr A"}))
            .await
            .0,
        200,
        "another link has its own bucket"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewer_is_served_with_a_strict_csp() {
    let s = TestServer::start(|_| {}).await;
    let c = client();
    let resp = c.get(s.url(ViewerPage::PATH)).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let h = resp.headers().clone();
    assert!(h["content-type"].to_str().unwrap().starts_with("text/html"));
    assert_eq!(
        h["content-security-policy"],
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
         connect-src *; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    );
    assert_eq!(h["referrer-policy"], "no-referrer");
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert!(h["cache-control"].to_str().unwrap().contains("no-store"));
    let html = resp.text().await.unwrap();
    assert!(html.contains("viewer.js") && html.contains("viewer.css"));
    let (status, ct, js) = get(&c, &s.url(ViewerScript::PATH)).await;
    assert_eq!(status, 200);
    assert!(ct.starts_with("text/javascript"), "{ct}");
    assert!(js.contains("embeddedLengthMax"));
    let (status, ct, _) = get(&c, &s.url(ViewerStyle::PATH)).await;
    assert_eq!(status, 200);
    assert!(ct.starts_with("text/css"), "{ct}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn share_link_secrets_stay_out_of_the_relay_log() {
    // The real relay binary, with its log at info level.
    let dir = tempfile::tempdir().unwrap();
    let relay = tokio::task::spawn_blocking({
        let path = dir.path().join("relay");
        move || satchel_tests::Relay::start(&path)
    })
    .await
    .unwrap();
    let s = TestServer::external(relay.addr);
    let c = client();
    let (owner, rid) = owner_and_record(&c, &s).await;
    let passcode = "plum-9931-orbit";
    let recipient = "Quinn Examplewoman";
    let secret_file = jwe(64);
    let id = created(
        &c,
        &s,
        &owner,
        rid,
        &with_passcode(vec![file(secret_file.clone())], passcode, 5),
    )
    .await;
    let (status, _) = manifest_status(
        &c,
        &s,
        &id,
        json!({"recipient": recipient, "passcode": "plum-9931-orbiT"}),
    )
    .await;
    assert_eq!(status, 401);
    let (status, body) = manifest_status(
        &c,
        &s,
        &id,
        json!({"recipient": recipient, "passcode": passcode, "embeddedLengthMax": 0}),
    )
    .await;
    assert_eq!(status, 200);
    let answer: ManifestResponse = serde_json::from_value(body).unwrap();
    let location = answer.files[0].location.clone().unwrap();
    let token = location.rsplit('/').next().unwrap().to_owned();
    assert_eq!(get(&c, &location).await.0, 200);
    let u = created(
        &c,
        &s,
        &owner,
        rid,
        &CreateShareLinkRequest {
            direct: true,
            ..plain(vec![file(jwe(64))])
        },
    )
    .await;
    let query = RecipientQuery {
        recipient: recipient.into(),
    };
    assert_eq!(
        get(&c, &s.url(&DirectFile::uri(&ShlPath(&u), &query)))
            .await
            .0,
        200
    );
    assert_eq!(revoke(&c, &s, &owner, rid, &id).await.0, 200);
    let log = relay.log();
    assert!(log.contains("share link created"), "{log}");
    for (what, secret) in [
        ("passcode", passcode),
        ("wrong passcode", "plum-9931-orbiT"),
        ("recipient", "Examplewoman"),
        ("link id", &id.to_text()),
        ("U link id", &u.to_text()),
        ("location token", &token),
        ("file", &secret_file[secret_file.len() - 20..]),
    ] {
        assert!(!log.contains(secret), "the relay logged the {what}:\n{log}");
    }
}
