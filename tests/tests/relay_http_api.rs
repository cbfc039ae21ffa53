//! HTTP-level tests against a real relay on loopback.
#![allow(clippy::unwrap_used)]

#[path = "relay_common/mod.rs"]
mod common;

use std::time::Duration;

use common::*;
use futures_util::{SinkExt, StreamExt};
use satchel_protocol::crypto::{Identity, Role};
use satchel_protocol::ids::RecordId;
use satchel_protocol::sharing::{AccessChange, AccessStatement};
use serde_json::{json, Value};

#[tokio::test]
async fn auth_flow_wrong_signature_and_reused_challenge() {
    let mut s = TestServer::start(|_| {}).await;
    let c = client();
    let health: Value = c
        .get(s.url("/v1/health"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "ok");
    assert_eq!(health["storage"], "sqlite");

    let me = Identity::generate("phone", Role::PatientDevice, None).unwrap();
    let id = me.id().to_hex();
    let ch: Value = c
        .post(s.url("/v1/auth/challenge"))
        .json(&json!({ "identity": id }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ch["expires_in"], 60);
    let challenge = unb64(ch["challenge"].as_str().unwrap());
    assert_eq!(challenge.len(), 32);
    let mut msg = b"satchel/v1/auth".to_vec();
    msg.extend_from_slice(&challenge);

    // Wrong signature (another identity signed): 401, and the challenge is used up.
    let other = Identity::generate("eve", Role::Carer, None).unwrap();
    let resp = c
        .post(s.url("/v1/auth/token"))
        .json(&json!({"identity": id, "challenge": b64(&challenge), "signature": b64(&other.sign(&msg))}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "unauthenticated");

    // A fresh challenge signed correctly works once.
    let ch: Value = c
        .post(s.url("/v1/auth/challenge"))
        .json(&json!({ "identity": id }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let challenge = unb64(ch["challenge"].as_str().unwrap());
    let mut msg = b"satchel/v1/auth".to_vec();
    msg.extend_from_slice(&challenge);
    let req =
        json!({"identity": id, "challenge": b64(&challenge), "signature": b64(&me.sign(&msg))});
    let resp = c
        .post(s.url("/v1/auth/token"))
        .json(&req)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let tok: Value = resp.json().await.unwrap();
    assert_eq!(tok["expires_in"], 900);
    let token = tok["token"].as_str().unwrap().to_owned();
    // Reused challenge.
    let resp = c
        .post(s.url("/v1/auth/token"))
        .json(&req)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    // A made-up challenge.
    let resp = c
        .post(s.url("/v1/auth/token"))
        .json(&json!({"identity": id, "challenge": b64(&[0u8; 32]), "signature": b64(&me.sign(b"x"))}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);

    // The token authenticates; garbage does not.
    let d = Device {
        identity: me,
        token,
    };
    let rid = register(&c, &s, &d).await;
    let (status, members) = get_json(&c, &s, &d, &format!("/v1/records/{rid}/members")).await;
    assert_eq!(status, 200);
    assert_eq!(members["members"][0]["identity"], id);
    assert_eq!(members["members"][0]["role"], "owner-device");
    for bad in ["", "Bearer nope", &format!("Bearer {}", "ab".repeat(32))] {
        let resp = c
            .get(s.url(&format!("/v1/records/{rid}/members")))
            .header("authorization", bad)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 401, "{bad}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"], "unauthenticated");
    }
    // Bad input is a JSON 400.
    let resp = c
        .post(s.url("/v1/auth/challenge"))
        .json(&json!({ "identity": "xyz" }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(resp.json::<Value>().await.unwrap()["error"], "bad_request");
    // Unknown route: JSON 404.
    let resp = c.get(s.url("/v1/nope")).send().await.unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(resp.json::<Value>().await.unwrap()["error"], "not_found");
    s.stop().await.unwrap();
}

#[tokio::test]
async fn register_upload_pull_idempotent_feed_snapshot() {
    let mut s = TestServer::start(|_| {}).await;
    let c = client();
    let d = new_device(&c, &s, "phone").await;
    let rid = register(&c, &s, &d).await;

    // Re-registering: 200 by the same owner, 409 by another.
    let resp = c
        .post(s.url("/v1/records"))
        .bearer_auth(&d.token)
        .json(&json!({ "record_id": rid, "owner": d.identity.card() }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let other = new_device(&c, &s, "other").await;
    let resp = c
        .post(s.url("/v1/records"))
        .bearer_auth(&other.token)
        .json(&json!({ "record_id": rid, "owner": other.identity.card() }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 409);
    // Someone else's card: 403.
    let resp = c
        .post(s.url("/v1/records"))
        .bearer_auth(&other.token)
        .json(&json!({ "record_id": RecordId::random(), "owner": d.identity.card() }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);

    let envs: Vec<Vec<u8>> = (0..5)
        .map(|n| {
            seal(
                &d.identity,
                rid,
                "allergies",
                n,
                format!("entry {n}").as_bytes(),
            )
            .to_bytes()
        })
        .collect();
    let (status, body) = upload(&c, &s, &d, rid, "allergies", &envs).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["duplicates"], 0);
    let accepted = body["accepted"].as_array().unwrap();
    assert_eq!(accepted.len(), 5);
    let seqs: Vec<i64> = accepted
        .iter()
        .map(|a| a["seq"].as_i64().unwrap())
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]));
    let hash0 = satchel_protocol::crypto::Envelope::from_bytes(&envs[0])
        .unwrap()
        .hash();
    assert_eq!(accepted[0]["hash"], hex::encode(hash0));

    // Idempotent re-upload, mixed with one new envelope.
    let mut again = envs.clone();
    again.push(seal(&d.identity, rid, "allergies", 9, b"new").to_bytes());
    let (status, body) = upload(&c, &s, &d, rid, "allergies", &again).await;
    assert_eq!(status, 200);
    assert_eq!(body["duplicates"], 5);
    let seqs2: Vec<i64> = body["accepted"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(&seqs2[..5], &seqs[..]);
    assert!(seqs2[5] > seqs[4]);

    // Pull with pagination returns the exact bytes.
    let base = format!("/v1/records/{rid}/sections/allergies/envelopes");
    let (status, page) = get_json(&c, &s, &d, &format!("{base}?after=0&limit=4")).await;
    assert_eq!(status, 200);
    assert_eq!(page["snapshot"], Value::Null);
    assert_eq!(page["more"], true);
    let got = page["envelopes"].as_array().unwrap();
    assert_eq!(got.len(), 4);
    assert_eq!(unb64(got[0]["envelope"].as_str().unwrap()), envs[0]);
    assert_eq!(page["next"], seqs[3]);
    let (_, page) = get_json(&c, &s, &d, &format!("{base}?after={}", seqs[3])).await;
    assert_eq!(page["more"], false);
    assert_eq!(page["envelopes"].as_array().unwrap().len(), 2);
    assert_eq!(page["next"], seqs2[5]);

    // Feed.
    let other_env = seal(&d.identity, rid, "labs", 0, b"lab").to_bytes();
    let (_, body) = upload(&c, &s, &d, rid, "labs", &[other_env]).await;
    let labs_seq = body["accepted"][0]["seq"].as_i64().unwrap();
    let (status, feed) = get_json(&c, &s, &d, &format!("/v1/records/{rid}/feed?after=0")).await;
    assert_eq!(status, 200);
    assert_eq!(
        feed["sections"],
        json!([{"section": "allergies", "seq": seqs2[5]}, {"section": "labs", "seq": labs_seq}])
    );
    assert_eq!(feed["cursor"], labs_seq);
    let (_, feed) = get_json(
        &c,
        &s,
        &d,
        &format!("/v1/records/{rid}/feed?after={labs_seq}"),
    )
    .await;
    assert_eq!(feed, json!({"sections": [], "cursor": labs_seq}));

    // Snapshot: replaces only with a greater upto_seq.
    let snap = seal(&d.identity, rid, "allergies", 100, b"whole doc").to_bytes();
    let put = |upto: i64, env: Vec<u8>| {
        let c = c.clone();
        let url = s.url(&format!("/v1/records/{rid}/sections/allergies/snapshot"));
        let token = d.token.clone();
        async move {
            let r = c
                .put(url)
                .bearer_auth(token)
                .json(&json!({"upto_seq": upto, "envelope": b64(&env)}))
                .send()
                .await
                .unwrap();
            r.status().as_u16()
        }
    };
    assert_eq!(put(seqs[2], snap.clone()).await, 200);
    assert_eq!(put(seqs[2], snap.clone()).await, 409);
    assert_eq!(put(seqs[1], snap.clone()).await, 409);
    assert_eq!(put(seqs2[5] + 1000, snap.clone()).await, 400);
    let forged = {
        let mut e = satchel_protocol::crypto::Envelope::from_bytes(&snap).unwrap();
        e.signature[0] ^= 1;
        e.to_bytes()
    };
    assert_eq!(put(seqs[3], forged).await, 422);
    let (_, page) = get_json(&c, &s, &d, &format!("{base}?after=0")).await;
    assert_eq!(page["snapshot"]["upto_seq"], seqs[2]);
    assert_eq!(unb64(page["snapshot"]["envelope"].as_str().unwrap()), snap);
    let after_snap: Vec<i64> = page["envelopes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(after_snap, vec![seqs[3], seqs[4], seqs2[5]]);

    // Non-members can't read; unknown records are 404.
    let (status, body) = get_json(&c, &s, &other, &base).await;
    assert_eq!(
        (status, body["error"].as_str().unwrap()),
        (403, "forbidden")
    );
    let (status, _) = get_json(
        &c,
        &s,
        &d,
        &format!(
            "/v1/records/{}/sections/allergies/envelopes",
            RecordId::random()
        ),
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = get_json(&c, &s, &d, "/v1/records/zz/feed").await;
    assert_eq!(status, 400);

    // Metrics saw it.
    let text = metrics_text(&c, &s).await;
    assert!(text.contains("satchel_envelopes_stored_total 7"), "{text}");
    assert!(text.contains("satchel_envelope_duplicates_total 5"));
    assert!(text.contains("satchel_rejections_total{reason=\"bad_signature\"} 1"));
    s.stop().await.unwrap();
}

#[tokio::test]
async fn bad_envelopes_are_rejected_whole_batch() {
    let mut s = TestServer::start(|_| {}).await;
    let c = client();
    let d = new_device(&c, &s, "phone").await;
    let stranger = new_device(&c, &s, "stranger").await;
    let rid = register(&c, &s, &d).await;
    let good = |n| seal(&d.identity, rid, "medications", n, b"ok").to_bytes();

    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            seal(&stranger.identity, rid, "medications", 1, b"x").to_bytes(),
            "not a member",
        ),
        (
            {
                let mut e = seal(&d.identity, rid, "medications", 1, b"x");
                e.ciphertext[0] ^= 1;
                e.to_bytes()
            },
            "signature",
        ),
        (
            seal(&d.identity, RecordId::random(), "medications", 1, b"x").to_bytes(),
            "another record",
        ),
        (
            seal(&d.identity, rid, "labs", 1, b"x").to_bytes(),
            "another section",
        ),
        (b"SCE1 but not an envelope".to_vec(), "does not parse"),
    ];
    for (i, (bad, why)) in cases.into_iter().enumerate() {
        let batch = vec![
            good(10 * i as u64),
            good(10 * i as u64 + 1),
            bad,
            good(10 * i as u64 + 2),
        ];
        let (status, body) = upload(&c, &s, &d, rid, "medications", &batch).await;
        assert_eq!(status, 422, "{why}: {body}");
        assert_eq!(body["error"], "rejected");
        assert_eq!(body["index"], 2, "{why}");
        assert!(
            body["message"].as_str().unwrap().contains(why),
            "{why}: {body}"
        );
    }
    // Nothing stored by any of them.
    let (_, page) = get_json(
        &c,
        &s,
        &d,
        &format!("/v1/records/{rid}/sections/medications/envelopes"),
    )
    .await;
    assert_eq!(page["envelopes"], json!([]));
    let (_, feed) = get_json(&c, &s, &d, &format!("/v1/records/{rid}/feed")).await;
    assert_eq!(feed["sections"], json!([]));

    // A non-member caller is refused before anything is read.
    let (status, body) = upload(&c, &s, &stranger, rid, "medications", &[good(1)]).await;
    assert_eq!(status, 403, "{body}");
    // Malformed JSON body: 400.
    let resp = c
        .post(s.url(&format!("/v1/records/{rid}/sections/medications/envelopes")))
        .bearer_auth(&d.token)
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    s.stop().await.unwrap();
}

#[tokio::test]
async fn oversize_is_413_json() {
    let mut s = TestServer::start(|cfg| {
        cfg.limits.max_batch_envelopes = 3;
        cfg.limits.max_envelope_bytes = 2_000;
        cfg.limits.max_batch_bytes = 4_000;
    })
    .await;
    let c = client();
    let d = new_device(&c, &s, "phone").await;
    let rid = register(&c, &s, &d).await;
    let env = |n, size: usize| seal(&d.identity, rid, "documents", n, &vec![7u8; size]).to_bytes();

    // Too many envelopes.
    let (status, body) = upload(
        &c,
        &s,
        &d,
        rid,
        "documents",
        &[env(1, 10), env(2, 10), env(3, 10), env(4, 10)],
    )
    .await;
    assert_eq!(status, 413);
    assert_eq!(body["error"], "payload_too_large");
    assert_eq!(body["limit"], 3);
    // Batch over the byte limit.
    let (status, body) = upload(
        &c,
        &s,
        &d,
        rid,
        "documents",
        &[env(1, 1500), env(2, 1500), env(3, 1500)],
    )
    .await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["limit"], 4000);
    // One envelope over the envelope limit: 422 with its index.
    let (status, body) = upload(&c, &s, &d, rid, "documents", &[env(1, 10), env(2, 2500)]).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["index"], 1);
    // An HTTP body far over any limit: refused early, still JSON.
    let huge = "A".repeat(400_000);
    let resp = c
        .post(s.url(&format!("/v1/records/{rid}/sections/documents/envelopes")))
        .bearer_auth(&d.token)
        .header("content-type", "application/json")
        .body(format!("{{\"envelopes\":[\"{huge}\"]}}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "payload_too_large");
    assert!(body["limit"].as_u64().unwrap() > 0);
    // Within limits still works.
    let (status, _) = upload(&c, &s, &d, rid, "documents", &[env(1, 1000), env(2, 1000)]).await;
    assert_eq!(status, 200);
    s.stop().await.unwrap();
}

#[tokio::test]
async fn rate_limit_is_429_json() {
    let mut s = TestServer::start(|cfg| {
        cfg.rate.per_second = 1;
        cfg.rate.burst = 3;
        cfg.rate.auth_per_second = 1;
        cfg.rate.auth_burst = 6;
    })
    .await;
    let c = client();
    let d = new_device(&c, &s, "phone").await;
    let rid = register(&c, &s, &d).await; // 1
    let mut limited = None;
    for _ in 0..10 {
        let resp = c
            .get(s.url(&format!("/v1/records/{rid}/members")))
            .bearer_auth(&d.token)
            .send()
            .await
            .unwrap();
        if resp.status() == 429 {
            assert!(resp.headers().get("retry-after").is_some());
            limited = Some(resp.json::<Value>().await.unwrap());
            break;
        }
    }
    let body = limited.expect("rate limited within 10 requests");
    assert_eq!(body["error"], "rate_limited");
    assert!(body["retry_after_ms"].as_u64().unwrap() >= 1);
    // Another identity has its own bucket.
    let other = new_device(&c, &s, "other").await;
    register(&c, &s, &other).await;
    // The auth endpoints are limited per client address.
    let mut auth_limited = false;
    for _ in 0..10 {
        let r = c
            .post(s.url("/v1/auth/challenge"))
            .json(&json!({ "identity": d.id_hex() }))
            .send()
            .await
            .unwrap();
        if r.status() == 429 {
            auth_limited = true;
            break;
        }
    }
    assert!(auth_limited);
    let text = c
        .get(s.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!text.contains("satchel_rate_limited_total 0"));
    s.stop().await.unwrap();
}

#[tokio::test]
async fn websocket_receives_changed_after_upload() {
    let mut s = TestServer::start(|_| {}).await;
    let c = client();
    let d = new_device(&c, &s, "phone").await;
    let rid = register(&c, &s, &d).await;
    let other_rid = register(&c, &s, &d).await;

    // Bad token / non-member are refused before the upgrade.
    let url = format!(
        "ws://{}/v1/records/{rid}/subscribe?token={}",
        s.addr,
        "00".repeat(32)
    );
    assert!(tokio_tungstenite::connect_async(url).await.is_err());

    let url = format!(
        "ws://{}/v1/records/{rid}/subscribe?token={}",
        s.addr, d.token
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    // Another record's change is not delivered; ours is.
    upload(
        &c,
        &s,
        &d,
        other_rid,
        "vitals",
        &[seal(&d.identity, other_rid, "vitals", 1, b"o").to_bytes()],
    )
    .await;
    let (status, body) = upload(
        &c,
        &s,
        &d,
        rid,
        "vitals",
        &[
            seal(&d.identity, rid, "vitals", 1, b"a").to_bytes(),
            seal(&d.identity, rid, "vitals", 2, b"b").to_bytes(),
        ],
    )
    .await;
    assert_eq!(status, 200);
    let last = body["accepted"][1]["seq"].as_i64().unwrap();
    let msg = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match ws.next().await.unwrap().unwrap() {
                tokio_tungstenite::tungstenite::Message::Text(t) => break t.to_string(),
                _ => continue,
            }
        }
    })
    .await
    .unwrap();
    let v: Value = serde_json::from_str(&msg).unwrap();
    assert_eq!(
        v,
        json!({"type": "changed", "section": "vitals", "seq": last})
    );
    let text = c
        .get(s.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains("satchel_subscribers 1"), "{text}");

    // Shutdown closes the socket with 1012 (service restart: reconnect elsewhere).
    s.stop().await.unwrap();
    let end = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match ws.next().await {
                Some(Ok(tokio_tungstenite::tungstenite::Message::Close(f))) => {
                    break f.map(|f| u16::from(f.code))
                }
                Some(Ok(_)) => continue,
                _ => break None,
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(end, Some(1012));
    let _ = ws.close(None).await;
}

#[tokio::test]
async fn add_device_statement_then_new_device_uploads() {
    let mut s = TestServer::start(|_| {}).await;
    let c = client();
    let phone = new_device(&c, &s, "phone").await;
    let tablet = new_device(&c, &s, "tablet").await;
    let rid = register(&c, &s, &phone).await;

    // Statements are core's signed access statements (the relay verifies
    // them with core's sharing rules).
    let statement = |by: &Identity, device: &Identity, record: RecordId| {
        AccessStatement {
            record_id: record,
            by: by.id(),
            at_ms: 1_700_000_000_000,
            prev: [0; 32],
            change: AccessChange::AddDevice {
                device: device.card().clone(),
                keys: vec![],
            },
        }
        .sign(by)
        .unwrap()
        .statement
    };
    let sign = |by: &Identity, bytes: &[u8]| {
        let mut msg = b"satchel/v1/statement".to_vec();
        msg.extend_from_slice(bytes);
        by.sign(&msg)
    };
    let post = |body: Value| {
        let c = c.clone();
        let url = s.url(&format!("/v1/records/{rid}/access"));
        let token = phone.token.clone();
        async move {
            let r = c
                .post(url)
                .bearer_auth(token)
                .json(&body)
                .send()
                .await
                .unwrap();
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap())
        }
    };

    // The tablet can't upload yet.
    let env = seal(&tablet.identity, rid, "notes", 1, b"from tablet").to_bytes();
    let (status, _) = upload(&c, &s, &tablet, rid, "notes", std::slice::from_ref(&env)).await;
    assert_eq!(status, 403);

    // Signed by a non-owner: 403. Bad signature: 422. Wrong record: 422.
    let st = statement(&tablet.identity, &tablet.identity, rid);
    let (status, _) =
        post(json!({"statement": b64(&st), "signature": b64(&sign(&tablet.identity, &st))})).await;
    assert_eq!(status, 403);
    let st = statement(&phone.identity, &tablet.identity, rid);
    let (status, body) =
        post(json!({"statement": b64(&st), "signature": b64(&sign(&tablet.identity, &st))})).await;
    assert_eq!((status, body["index"].clone()), (422, json!(0)));
    let wrong = statement(&phone.identity, &tablet.identity, RecordId::random());
    let (status, _) =
        post(json!({"statement": b64(&wrong), "signature": b64(&sign(&phone.identity, &wrong))}))
            .await;
    assert_eq!(status, 422);
    let unknown = serde_json::to_vec(&json!({"kind": "remove-everything"})).unwrap();
    let (status, _) = post(
        json!({"statement": b64(&unknown), "signature": b64(&sign(&phone.identity, &unknown))}),
    )
    .await;
    assert_eq!(status, 422);

    // A valid statement: 201, then idempotent 200.
    let sig = sign(&phone.identity, &st);
    let (status, body) = post(json!({"statement": b64(&st), "signature": b64(&sig)})).await;
    assert_eq!(status, 201, "{body}");
    let seq = body["seq"].as_i64().unwrap();
    let (status, body) = post(json!({"statement": b64(&st), "signature": b64(&sig)})).await;
    assert_eq!((status, body["seq"].as_i64().unwrap()), (200, seq));

    // The log holds the exact bytes; the tablet is now a member and can upload.
    let (status, log) = get_json(
        &c,
        &s,
        &tablet,
        &format!("/v1/records/{rid}/access?after=0"),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(log["statements"].as_array().unwrap().len(), 1);
    assert_eq!(
        unb64(log["statements"][0]["statement"].as_str().unwrap()),
        st
    );
    assert_eq!(
        unb64(log["statements"][0]["signature"].as_str().unwrap()),
        sig.to_vec()
    );
    let (_, log) = get_json(
        &c,
        &s,
        &tablet,
        &format!("/v1/records/{rid}/access?after={seq}"),
    )
    .await;
    assert_eq!(log["statements"], json!([]));
    let (_, members) = get_json(&c, &s, &phone, &format!("/v1/records/{rid}/members")).await;
    assert_eq!(members["members"].as_array().unwrap().len(), 2);
    let (status, _) = upload(&c, &s, &tablet, rid, "notes", &[env]).await;
    assert_eq!(status, 200);
    s.stop().await.unwrap();
}

#[tokio::test]
async fn link_mailbox_once_only() {
    let mut s = TestServer::start(|_| {}).await;
    let c = client();
    let phone = new_device(&c, &s, "phone").await;
    let newbie = new_device(&c, &s, "new phone").await;
    let eve = new_device(&c, &s, "eve").await;
    let rid = register(&c, &s, &phone).await;
    let link = "0123456789abcdef0123456789abcdef";
    let url = s.url(&format!("/v1/links/{link}"));

    // Only an owner device of the record can create it.
    let r = c
        .put(&url)
        .bearer_auth(&eve.token)
        .json(&json!({"record_id": rid}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = c
        .put(&url)
        .bearer_auth(&phone.token)
        .json(&json!({"record_id": rid, "expires_in": 300}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = c
        .put(&url)
        .bearer_auth(&phone.token)
        .json(&json!({"record_id": rid}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    let r = c
        .put(s.url("/v1/links/NOTHEX"))
        .bearer_auth(&phone.token)
        .json(&json!({"record_id": rid}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    let (status, got) = get_json(&c, &s, &phone, &format!("/v1/links/{link}")).await;
    assert_eq!(status, 200);
    assert_eq!(
        (got["join"].clone(), got["accept"].clone()),
        (Value::Null, Value::Null)
    );
    assert!(got["expires_at_ms"].as_i64().unwrap() > 0);

    // Accept before join: 409.
    let r = c
        .post(format!("{url}/accept"))
        .bearer_auth(&phone.token)
        .json(&json!({"payload": b64(b"early")}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    let r = c
        .post(format!("{url}/join"))
        .bearer_auth(&newbie.token)
        .json(&json!({"payload": b64(b"card+mac")}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = c
        .post(format!("{url}/join"))
        .bearer_auth(&eve.token)
        .json(&json!({"payload": b64(b"me too")}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    // Eve can't read or accept.
    let (status, _) = get_json(&c, &s, &eve, &format!("/v1/links/{link}")).await;
    assert_eq!(status, 403);
    let r = c
        .post(format!("{url}/accept"))
        .bearer_auth(&newbie.token)
        .json(&json!({"payload": b64(b"x")}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = c
        .post(format!("{url}/accept"))
        .bearer_auth(&phone.token)
        .json(&json!({"payload": b64(b"wrapped")}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = c
        .post(format!("{url}/accept"))
        .bearer_auth(&phone.token)
        .json(&json!({"payload": b64(b"again")}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    let (status, got) = get_json(&c, &s, &newbie, &format!("/v1/links/{link}")).await;
    assert_eq!(status, 200);
    assert_eq!(unb64(got["join"].as_str().unwrap()), b"card+mac");
    assert_eq!(unb64(got["accept"].as_str().unwrap()), b"wrapped");
    assert_eq!(got["record_id"], rid.to_hex());
    let (status, _) = get_json(&c, &s, &phone, "/v1/links/ffffffffffffffffffffffffffffffff").await;
    assert_eq!(status, 404);
    s.stop().await.unwrap();
}

#[tokio::test]
async fn graceful_shutdown_keeps_acknowledged_uploads() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("relay.db");
    let mut s = TestServer::start_with(
        satchel_sync_server::Config::sqlite(&db),
        tempfile::tempdir().unwrap(),
    )
    .await;
    let c = client();
    let d = new_device(&c, &s, "phone").await;
    let rid = register(&c, &s, &d).await;
    let d = std::sync::Arc::new(d);
    let s_base = s.base.clone();
    let mut tasks = Vec::new();
    for t in 0..30u64 {
        let c = c.clone();
        let d = std::sync::Arc::clone(&d);
        let base = s_base.clone();
        tasks.push(tokio::spawn(async move {
            let envs: Vec<String> = (0..20)
                .map(|n| b64(&seal(&d.identity, rid, "vitals", t * 100 + n, b"x").to_bytes()))
                .collect();
            let r = c
                .post(format!("{base}/v1/records/{rid}/sections/vitals/envelopes"))
                .bearer_auth(&d.token)
                .json(&json!({ "envelopes": envs }))
                .send()
                .await;
            match r {
                Ok(r) if r.status() == 200 => Some(r.json::<Value>().await.unwrap()),
                _ => None,
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(30)).await;
    s.stop().await.unwrap();
    let mut acked = Vec::new();
    for t in tasks {
        if let Some(body) = t.await.unwrap() {
            for a in body["accepted"].as_array().unwrap() {
                acked.push(a["seq"].as_i64().unwrap());
            }
        }
    }
    // Everything acknowledged is in the database after the shutdown.
    let storage = satchel_sync_server::storage::sqlite::SqliteStorage::open(&db).unwrap();
    use satchel_sync_server::storage::Storage;
    let page = storage.pull(rid, "vitals", 0, 1000).await.unwrap();
    let stored: std::collections::HashSet<i64> = page.envelopes.iter().map(|e| e.seq).collect();
    assert!(
        acked.iter().all(|s| stored.contains(s)),
        "acknowledged but lost"
    );
    storage.close().await;
}

#[tokio::test]
async fn binary_prints_address_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = tokio::process::Command::new(satchel_tests::bin("satchel-sync"))
        .args(["--listen", "127.0.0.1:0", "--db"])
        .arg(dir.path().join("relay.db"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout));
    let first = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let addr = first
        .strip_prefix("listening on ")
        .expect(&first)
        .to_owned();
    let health: Value = client()
        .get(format!("http://{addr}/v1/health"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "ok");
    let pid = child.id().unwrap();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status:?}");
    // The log never carries bodies; it does carry the route template.
    let mut stderr = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr)
        .await
        .unwrap();
    assert!(stderr.contains("/v1/health"), "{stderr}");
    assert!(stderr.contains("storage closed"), "{stderr}");
}

#[tokio::test]
async fn ws_send_ignored_and_ping_handled() {
    // A client that sends text is not disconnected.
    let mut s = TestServer::start(|_| {}).await;
    let c = client();
    let d = new_device(&c, &s, "phone").await;
    let rid = register(&c, &s, &d).await;
    let url = format!(
        "ws://{}/v1/records/{rid}/subscribe?token={}",
        s.addr, d.token
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    ws.send(tokio_tungstenite::tungstenite::Message::Text(
        "hello".into(),
    ))
    .await
    .unwrap();
    upload(
        &c,
        &s,
        &d,
        rid,
        "notes",
        &[seal(&d.identity, rid, "notes", 1, b"a").to_bytes()],
    )
    .await;
    let got = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let tokio_tungstenite::tungstenite::Message::Text(t) =
                ws.next().await.unwrap().unwrap()
            {
                break t.to_string();
            }
        }
    })
    .await
    .unwrap();
    assert!(got.contains("\"changed\""));
    s.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_two_instances_share_tokens_and_push() {
    let Some((url, schema)) = pg_test_schema().await else {
        pg_unreachable("postgres_two_instances_share_tokens_and_push");
        return;
    };
    let config = {
        let (url, schema) = (url.clone(), schema.clone());
        move || satchel_sync_server::Config {
            storage: satchel_sync_server::StorageConfig::Postgres {
                url: url.clone(),
                schema: Some(schema.clone()),
            },
            ..satchel_sync_server::Config::sqlite("unused")
        }
    };
    let run = async move {
        let mut a = TestServer::start_with(config(), tempfile::tempdir().unwrap()).await;
        let mut b = TestServer::start_with(config(), tempfile::tempdir().unwrap()).await;
        let c = client();
        // Wait until both answer.
        for s in [&a, &b] {
            for _ in 0..100 {
                if let Ok(r) = c.get(s.url("/v1/health")).send().await {
                    let h: Value = r.json().await.unwrap();
                    assert_eq!(h["storage"], "postgres");
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        // A token issued by A works on B.
        let d = new_device(&c, &a, "phone").await;
        let rid = register(&c, &b, &d).await;
        let ws_url = format!(
            "ws://{}/v1/records/{rid}/subscribe?token={}",
            a.addr, d.token
        );
        let (mut ws, _) = tokio_tungstenite::connect_async(ws_url).await.unwrap();
        let (status, body) = upload(
            &c,
            &b,
            &d,
            rid,
            "labs",
            &[seal(&d.identity, rid, "labs", 1, b"result").to_bytes()],
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let seq = body["accepted"][0]["seq"].as_i64().unwrap();
        let msg = tokio::time::timeout(Duration::from_secs(10), async {
            loop {
                if let tokio_tungstenite::tungstenite::Message::Text(t) =
                    ws.next().await.unwrap().unwrap()
                {
                    break t.to_string();
                }
            }
        })
        .await
        .expect("push from the other instance");
        let v: Value = serde_json::from_str(&msg).unwrap();
        assert_eq!(v, json!({"type": "changed", "section": "labs", "seq": seq}));
        let (_, page) = get_json(
            &c,
            &a,
            &d,
            &format!("/v1/records/{rid}/sections/labs/envelopes"),
        )
        .await;
        assert_eq!(page["envelopes"][0]["seq"], seq);
        a.stop().await.unwrap();
        b.stop().await.unwrap();
    };
    let result = tokio::spawn(run).await;
    pg_drop_schema(&url, &schema).await;
    if let Err(e) = result {
        std::panic::resume_unwind(e.into_panic());
    }
}
