//! Sharing over HTTP: access statements of every kind verified with core's
//! rules, the derived members, enforcement per route (sections, write
//! access, expiry, revocation), the fork refusal, invite links for
//! managers, and the audit trail.
#![allow(clippy::unwrap_used)]

#[path = "relay_common/mod.rs"]
mod common;

use std::time::Duration;

use common::*;
use futures_util::StreamExt;
use satchel_protocol::crypto::{wrap_key, Identity, IdentityCard};
use satchel_protocol::ids::RecordId;
use satchel_protocol::sharing::{
    key_wrap_aad, statement_hash, AccessChange, AccessStatement, GrantRole, KeyWrap, Rotation,
};
use satchel_sync_server::storage::now_ms;
use serde_json::{json, Value};

/// A record's access log as one client sees it: the head to chain onto.
struct Log {
    rid: RecordId,
    head: [u8; 32],
}

impl Log {
    fn new(rid: RecordId) -> Self {
        Log { rid, head: [0; 32] }
    }

    /// A signed statement on top of the current head.
    fn sign(&self, signer: &Identity, change: AccessChange) -> (Vec<u8>, Vec<u8>) {
        let signed = AccessStatement {
            record_id: self.rid,
            by: signer.id(),
            at_ms: now_ms(),
            prev: self.head,
            change,
        }
        .sign(signer)
        .unwrap();
        (signed.statement, signed.signature)
    }

    /// Post signed bytes (as `poster`); on 201 the head moves.
    async fn post(
        &mut self,
        c: &reqwest::Client,
        s: &TestServer,
        poster: &Device,
        signed: &(Vec<u8>, Vec<u8>),
    ) -> (u16, Value) {
        let r = c
            .post(s.url(&format!("/v1/records/{}/access", self.rid)))
            .bearer_auth(&poster.token)
            .json(&json!({"statement": b64(&signed.0), "signature": b64(&signed.1)}))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        if status == 201 {
            self.head = statement_hash(&signed.0);
        }
        (status, r.json().await.unwrap())
    }

    /// Sign as `by` and post (as `by`).
    async fn apply(
        &mut self,
        c: &reqwest::Client,
        s: &TestServer,
        by: &Device,
        change: AccessChange,
    ) -> (u16, Value) {
        let signed = self.sign(&by.identity, change);
        self.post(c, s, by, &signed).await
    }
}

/// A section key wrapped to `to` at `epoch` (what a real grant carries).
fn wrap(rid: RecordId, section: &str, epoch: u32, to: &IdentityCard) -> KeyWrap {
    KeyWrap {
        section: section.into(),
        epoch,
        to: to.id(),
        key: wrap_key(
            to,
            &[7u8; 32],
            &key_wrap_aad(&rid, section, epoch, &to.id()),
        )
        .unwrap(),
    }
}

fn grant(
    rid: RecordId,
    to: &Device,
    role: GrantRole,
    sections: &[&str],
    expires_at_ms: Option<i64>,
) -> AccessChange {
    let card = to.identity.card().clone();
    let keys = if role == GrantRole::Manager {
        vec![]
    } else {
        sections.iter().map(|s| wrap(rid, s, 0, &card)).collect()
    };
    AccessChange::Grant {
        grantee: card,
        role,
        sections: sections.iter().map(|s| (*s).to_owned()).collect(),
        expires_at_ms,
        label: "test grantee".into(),
        keys,
        rotations: vec![],
    }
}

async fn put_link(c: &reqwest::Client, s: &TestServer, d: &Device, rid: RecordId) -> u16 {
    let id = hex::encode(RecordId::random().as_bytes());
    c.put(s.url(&format!("/v1/links/{id}")))
        .bearer_auth(&d.token)
        .json(&json!({"record_id": rid}))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

async fn status_of(c: &reqwest::Client, s: &TestServer, d: &Device, path: &str) -> u16 {
    get_json(c, s, d, path).await.0
}

fn env(d: &Device, rid: RecordId, section: &str, n: u64) -> Vec<u8> {
    seal(&d.identity, rid, section, n, b"ciphertext").to_bytes()
}

#[tokio::test]
async fn reader_pulls_only_granted_sections_and_cannot_write() {
    let mut s = TestServer::start(|_| {}).await;
    let c = client();
    let owner = new_device(&c, &s, "phone").await;
    let reader = new_device(&c, &s, "carer").await;
    let other = new_device(&c, &s, "clinic").await;
    let rid = register(&c, &s, &owner).await;
    let mut log = Log::new(rid);
    for (sec, n) in [("vitals", 1), ("labs", 2)] {
        let (st, _) = upload(&c, &s, &owner, rid, sec, &[env(&owner, rid, sec, n)]).await;
        assert_eq!(st, 200);
    }
    // Not a member yet.
    assert_eq!(
        status_of(&c, &s, &reader, &format!("/v1/records/{rid}/feed")).await,
        403
    );
    let (st, body) = log
        .apply(
            &c,
            &s,
            &owner,
            grant(
                rid,
                &reader,
                GrantRole::Reader,
                &["vitals", "wearables"],
                None,
            ),
        )
        .await;
    assert_eq!(st, 201, "{body}");
    let (st, body) = log
        .apply(
            &c,
            &s,
            &owner,
            grant(rid, &other, GrantRole::Writer, &["notes"], None),
        )
        .await;
    assert_eq!(st, 201, "{body}");

    // Reads: the granted sections (and a section's sub-log: wearables.chunks
    // follows wearables), not the others.
    let (st, page) = get_json(
        &c,
        &s,
        &reader,
        &format!("/v1/records/{rid}/sections/vitals/envelopes"),
    )
    .await;
    assert_eq!(st, 200);
    assert_eq!(page["envelopes"].as_array().unwrap().len(), 1);
    let (st, body) = get_json(
        &c,
        &s,
        &reader,
        &format!("/v1/records/{rid}/sections/labs/envelopes"),
    )
    .await;
    assert_eq!((st, body["error"].as_str()), (403, Some("forbidden")));
    assert_eq!(
        status_of(
            &c,
            &s,
            &reader,
            &format!("/v1/records/{rid}/sections/wearables.chunks/envelopes")
        )
        .await,
        200
    );
    let (_, feed) = get_json(&c, &s, &reader, &format!("/v1/records/{rid}/feed")).await;
    let names: Vec<&str> = feed["sections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["section"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["vitals"], "feed filtered to readable sections");
    let (_, feed) = get_json(&c, &s, &owner, &format!("/v1/records/{rid}/feed")).await;
    assert_eq!(feed["sections"].as_array().unwrap().len(), 2);

    // Writes: a reader cannot upload, nor can its envelope be smuggled in
    // by an owner device (the author must have write access).
    let mine = env(&reader, rid, "vitals", 1);
    let (st, _) = upload(&c, &s, &reader, rid, "vitals", std::slice::from_ref(&mine)).await;
    assert_eq!(st, 403);
    let (st, body) = upload(
        &c,
        &s,
        &owner,
        rid,
        "vitals",
        &[env(&owner, rid, "vitals", 9), mine],
    )
    .await;
    assert_eq!((st, body["index"].clone()), (422, json!(1)), "{body}");

    // The access log is readable by the grantee (it carries its keys).
    let (st, l) = get_json(&c, &s, &reader, &format!("/v1/records/{rid}/access")).await;
    assert_eq!((st, l["statements"].as_array().unwrap().len()), (200, 2));

    // Members: the owner sees everyone; a reader the owner devices and itself.
    let (st, m) = get_json(&c, &s, &owner, &format!("/v1/records/{rid}/members")).await;
    assert_eq!(st, 200);
    let all = m["members"].as_array().unwrap();
    assert_eq!(all.len(), 3);
    let me = all
        .iter()
        .find(|x| x["identity"] == reader.id_hex())
        .unwrap();
    assert_eq!(me["role"], "reader");
    assert_eq!(me["sections"], json!(["vitals", "wearables"]));
    assert_eq!(me["expires_at_ms"], Value::Null);
    let card: IdentityCard = serde_json::from_value(me["card"].clone()).unwrap();
    assert_eq!(card.id(), reader.identity.id());
    let own = all
        .iter()
        .find(|x| x["identity"] == owner.id_hex())
        .unwrap();
    assert_eq!(own["role"], "owner-device");
    assert_eq!(own["sections"].as_array().unwrap().len(), 13);
    let (_, m) = get_json(&c, &s, &reader, &format!("/v1/records/{rid}/members")).await;
    let ids: Vec<&str> = m["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["identity"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 2);
    assert!(ids.contains(&owner.id_hex().as_str()) && ids.contains(&reader.id_hex().as_str()));

    // Audit: owner only; the reader's pulls and the owner's pushes are in it.
    assert_eq!(
        status_of(&c, &s, &reader, &format!("/v1/records/{rid}/audit")).await,
        403
    );
    let (st, a) = get_json(&c, &s, &owner, &format!("/v1/records/{rid}/audit")).await;
    assert_eq!(st, 200, "{a}");
    let events = a["events"].as_array().unwrap();
    let pushes: Vec<_> = events.iter().filter(|e| e["action"] == "push").collect();
    assert_eq!(pushes.len(), 2, "{a}");
    assert!(pushes.iter().all(|e| e["identity"] == owner.id_hex()));
    let pulls: Vec<_> = events.iter().filter(|e| e["action"] == "pull").collect();
    assert_eq!(pulls.len(), 1, "empty pulls are not recorded: {a}");
    assert_eq!(pulls[0]["identity"], reader.id_hex());
    assert_eq!(pulls[0]["section"], "vitals");
    assert_eq!(pulls[0]["count"], 1);
    assert!(pulls[0]["at_ms"].as_i64().unwrap() > 0);
    assert_eq!(a["more"], false);
    assert_eq!(a["next"], events.last().unwrap()["seq"]);
    let (_, a2) = get_json(
        &c,
        &s,
        &owner,
        &format!("/v1/records/{rid}/audit?after={}&limit=1", events[0]["seq"]),
    )
    .await;
    assert_eq!(a2["events"].as_array().unwrap().len(), 1);
    assert_eq!(a2["events"][0]["seq"], events[1]["seq"]);
    assert_eq!(a2["more"], true);
    s.stop().await.unwrap();
}

#[tokio::test]
async fn writer_outside_its_sections_is_refused() {
    let mut s = TestServer::start(|_| {}).await;
    let c = client();
    let owner = new_device(&c, &s, "phone").await;
    let writer = new_device(&c, &s, "clinic").await;
    let rid = register(&c, &s, &owner).await;
    let mut log = Log::new(rid);
    let (st, body) = log
        .apply(
            &c,
            &s,
            &owner,
            grant(
                rid,
                &writer,
                GrantRole::Writer,
                &["notes", "demographics"],
                None,
            ),
        )
        .await;
    assert_eq!(st, 201, "{body}");
    // Demographics granted to a writer are readable, never writable.
    let (st, _) = upload(
        &c,
        &s,
        &writer,
        rid,
        "demographics",
        &[env(&writer, rid, "demographics", 1)],
    )
    .await;
    assert_eq!(st, 403);
    let (st, body) = upload(
        &c,
        &s,
        &writer,
        rid,
        "notes",
        &[env(&writer, rid, "notes", 1)],
    )
    .await;
    assert_eq!(st, 200, "{body}");
    let (st, _) = upload(
        &c,
        &s,
        &writer,
        rid,
        "labs",
        &[env(&writer, rid, "labs", 2)],
    )
    .await;
    assert_eq!(st, 403);
    // A writer may not author a compaction snapshot (owner devices and
    // managers only).
    let seq = body["accepted"][0]["seq"].as_i64().unwrap();
    let r = c
        .put(s.url(&format!("/v1/records/{rid}/sections/notes/snapshot")))
        .bearer_auth(&writer.token)
        .json(&json!({"upto_seq": seq, "envelope": b64(&env(&writer, rid, "notes", 3))}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    // ...nor open invite links, nor read the audit trail.
    assert_eq!(put_link(&c, &s, &writer, rid).await, 403);
    assert_eq!(put_link(&c, &s, &owner, rid).await, 201);
    assert_eq!(
        status_of(&c, &s, &writer, &format!("/v1/records/{rid}/audit")).await,
        403
    );
    // A writer's grant statement is not allowed: 403.
    let third = new_device(&c, &s, "third").await;
    let (st, _) = log
        .apply(
            &c,
            &s,
            &writer,
            grant(rid, &third, GrantRole::Reader, &["notes"], None),
        )
        .await;
    assert_eq!(st, 403);
    s.stop().await.unwrap();
}

#[tokio::test]
async fn expired_grant_is_forbidden_from_that_instant() {
    let mut s = TestServer::start(|_| {}).await;
    let c = client();
    let owner = new_device(&c, &s, "phone").await;
    let reader = new_device(&c, &s, "carer").await;
    let late = new_device(&c, &s, "late").await;
    let rid = register(&c, &s, &owner).await;
    let mut log = Log::new(rid);
    upload(
        &c,
        &s,
        &owner,
        rid,
        "vitals",
        &[env(&owner, rid, "vitals", 1)],
    )
    .await;
    let expires = now_ms() + 1500;
    let (st, body) = log
        .apply(
            &c,
            &s,
            &owner,
            grant(rid, &reader, GrantRole::Reader, &["vitals"], Some(expires)),
        )
        .await;
    assert_eq!(st, 201, "{body}");
    // Already expired at grant time: a member on paper, never in force.
    let (st, _) = log
        .apply(
            &c,
            &s,
            &owner,
            grant(
                rid,
                &late,
                GrantRole::Reader,
                &["vitals"],
                Some(now_ms() - 1),
            ),
        )
        .await;
    assert_eq!(st, 201);
    let pull = format!("/v1/records/{rid}/sections/vitals/envelopes");
    assert_eq!(status_of(&c, &s, &late, &pull).await, 403);
    assert_eq!(status_of(&c, &s, &reader, &pull).await, 200);
    let (_, m) = get_json(&c, &s, &owner, &format!("/v1/records/{rid}/members")).await;
    let me = m["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["identity"] == reader.id_hex())
        .unwrap()
        .clone();
    assert_eq!(me["expires_at_ms"], json!(expires));

    let wait = expires - now_ms() + 100;
    tokio::time::sleep(Duration::from_millis(u64::try_from(wait.max(0)).unwrap())).await;
    for path in [
        pull.clone(),
        format!("/v1/records/{rid}/feed"),
        format!("/v1/records/{rid}/access"),
        format!("/v1/records/{rid}/members"),
    ] {
        assert_eq!(status_of(&c, &s, &reader, &path).await, 403, "{path}");
    }
    s.stop().await.unwrap();
}

#[tokio::test]
async fn revoked_member_is_forbidden_everywhere() {
    let mut s = TestServer::start(|_| {}).await;
    let c = client();
    let owner = new_device(&c, &s, "phone").await;
    let reader = new_device(&c, &s, "carer").await;
    let rid = register(&c, &s, &owner).await;
    let mut log = Log::new(rid);
    upload(
        &c,
        &s,
        &owner,
        rid,
        "vitals",
        &[env(&owner, rid, "vitals", 1)],
    )
    .await;
    let (st, _) = log
        .apply(
            &c,
            &s,
            &owner,
            grant(rid, &reader, GrantRole::Reader, &["vitals", "labs"], None),
        )
        .await;
    assert_eq!(st, 201);
    let pull = format!("/v1/records/{rid}/sections/vitals/envelopes");
    assert_eq!(status_of(&c, &s, &reader, &pull).await, 200);

    // A revocation that does not rotate what it takes away is refused.
    let (st, body) = log
        .apply(
            &c,
            &s,
            &owner,
            AccessChange::Revoke {
                identity: reader.identity.id(),
                sections: None,
                rotations: vec![],
            },
        )
        .await;
    assert_eq!((st, body["index"].clone()), (422, json!(0)), "{body}");
    assert!(body["message"].as_str().unwrap().contains("rotate"));

    // Rotating both sections to epoch 1, wrapped to the owner only.
    let rotation = |section: &str| Rotation {
        section: section.into(),
        epoch: 1,
        chain: vec![1, 2, 3],
        keys: vec![wrap(rid, section, 1, owner.identity.card())],
    };
    let (st, body) = log
        .apply(
            &c,
            &s,
            &owner,
            AccessChange::Revoke {
                identity: reader.identity.id(),
                sections: None,
                rotations: vec![rotation("labs"), rotation("vitals")],
            },
        )
        .await;
    assert_eq!(st, 201, "{body}");
    for path in [
        pull.clone(),
        format!("/v1/records/{rid}/feed"),
        format!("/v1/records/{rid}/access"),
        format!("/v1/records/{rid}/members"),
        format!("/v1/records/{rid}/audit"),
    ] {
        assert_eq!(status_of(&c, &s, &reader, &path).await, 403, "{path}");
    }
    let (st, _) = upload(
        &c,
        &s,
        &reader,
        rid,
        "vitals",
        &[env(&reader, rid, "vitals", 1)],
    )
    .await;
    assert_eq!(st, 403);
    let url = format!(
        "ws://{}/v1/records/{rid}/subscribe?token={}",
        s.addr, reader.token
    );
    assert!(tokio_tungstenite::connect_async(url).await.is_err());
    let (_, m) = get_json(&c, &s, &owner, &format!("/v1/records/{rid}/members")).await;
    assert_eq!(m["members"].as_array().unwrap().len(), 1);
    s.stop().await.unwrap();
}

#[tokio::test]
async fn manager_grants_and_a_stale_prev_is_a_conflict() {
    let mut s = TestServer::start(|_| {}).await;
    let c = client();
    let owner = new_device(&c, &s, "phone").await;
    let manager = new_device(&c, &s, "parent").await;
    let reader = new_device(&c, &s, "school nurse").await;
    let writer = new_device(&c, &s, "gp").await;
    let rid = register(&c, &s, &owner).await;
    let mut log = Log::new(rid);
    let (st, body) = log
        .apply(
            &c,
            &s,
            &owner,
            grant(rid, &manager, GrantRole::Manager, &[], None),
        )
        .await;
    assert_eq!(st, 201, "{body}");

    // Two statements signed on the same head: the first lands, the second
    // is a fork (409) and nothing of it is stored.
    let a = log.sign(
        &manager.identity,
        grant(rid, &reader, GrantRole::Reader, &["immunizations"], None),
    );
    let b = log.sign(
        &owner.identity,
        grant(rid, &writer, GrantRole::Writer, &["notes"], None),
    );
    let (st, first) = log.post(&c, &s, &manager, &a).await;
    assert_eq!(st, 201, "{first}");
    let (st, body) = log.post(&c, &s, &owner, &b).await;
    assert_eq!(
        (st, body["error"].as_str()),
        (409, Some("conflict")),
        "{body}"
    );
    assert!(body["message"].as_str().unwrap().contains("sign again"));
    // Idempotent: the same bytes again are 200 with the original seq.
    let (st, again) = log.post(&c, &s, &manager, &a).await;
    assert_eq!((st, again["seq"].clone()), (200, first["seq"].clone()));
    // Re-signed on the new head, it lands.
    let b = log.sign(
        &owner.identity,
        grant(rid, &writer, GrantRole::Writer, &["notes"], None),
    );
    assert_eq!(log.post(&c, &s, &owner, &b).await.0, 201);
    let (_, l) = get_json(&c, &s, &owner, &format!("/v1/records/{rid}/access")).await;
    assert_eq!(l["statements"].as_array().unwrap().len(), 3);

    // The manager reads every section, sees every member, opens links and
    // reads the audit trail; the reader does none of the admin things.
    let (_, m) = get_json(&c, &s, &manager, &format!("/v1/records/{rid}/members")).await;
    assert_eq!(m["members"].as_array().unwrap().len(), 4);
    let me = m["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["identity"] == manager.id_hex())
        .unwrap()
        .clone();
    assert_eq!(me["role"], "manager");
    assert_eq!(me["sections"].as_array().unwrap().len(), 13);
    let (st, _) = upload(
        &c,
        &s,
        &manager,
        rid,
        "labs",
        &[env(&manager, rid, "labs", 1)],
    )
    .await;
    assert_eq!(st, 200);
    assert_eq!(put_link(&c, &s, &manager, rid).await, 201);
    assert_eq!(put_link(&c, &s, &reader, rid).await, 403);
    assert_eq!(
        status_of(&c, &s, &manager, &format!("/v1/records/{rid}/audit")).await,
        200
    );
    s.stop().await.unwrap();
}

#[tokio::test]
async fn subscriber_gets_frames_only_for_readable_sections() {
    let mut s = TestServer::start(|_| {}).await;
    let c = client();
    let owner = new_device(&c, &s, "phone").await;
    let reader = new_device(&c, &s, "carer").await;
    let rid = register(&c, &s, &owner).await;
    let mut log = Log::new(rid);
    let (st, _) = log
        .apply(
            &c,
            &s,
            &owner,
            grant(rid, &reader, GrantRole::Reader, &["vitals"], None),
        )
        .await;
    assert_eq!(st, 201);
    let url = format!(
        "ws://{}/v1/records/{rid}/subscribe?token={}",
        s.addr, reader.token
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    upload(&c, &s, &owner, rid, "labs", &[env(&owner, rid, "labs", 1)]).await;
    let (_, body) = upload(
        &c,
        &s,
        &owner,
        rid,
        "vitals",
        &[env(&owner, rid, "vitals", 2)],
    )
    .await;
    let frame = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match ws.next().await {
                Some(Ok(tokio_tungstenite::tungstenite::Message::Text(t))) => {
                    return serde_json::from_str::<Value>(&t).unwrap();
                }
                Some(Ok(_)) => continue,
                other => panic!("{other:?}"),
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(frame["section"], "vitals", "the labs frame was filtered");
    assert_eq!(frame["seq"], body["accepted"][0]["seq"]);
    s.stop().await.unwrap();
}

#[tokio::test]
async fn narrowing_without_rotation_is_refused_by_the_relay() {
    let s = TestServer::start(|_| {}).await;
    let c = client();
    let owner = new_device(&c, &s, "phone").await;
    let reader = new_device(&c, &s, "carer").await;
    let rid = register(&c, &s, &owner).await;
    let mut log = Log::new(rid);
    let (st, _) = log
        .apply(
            &c,
            &s,
            &owner,
            grant(rid, &reader, GrantRole::Reader, &["vitals", "labs"], None),
        )
        .await;
    assert_eq!(st, 201);
    // The same grantee, vitals only, rotating nothing: refused.
    let (st, body) = log
        .apply(
            &c,
            &s,
            &owner,
            grant(rid, &reader, GrantRole::Reader, &["vitals"], None),
        )
        .await;
    assert_eq!((st, body["index"].clone()), (422, json!(0)), "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("rotate"),
        "{body}"
    );
    // Rotating labs to epoch 1, wrapped to the owner only: accepted, and
    // the reader may no longer pull labs.
    let mut narrowed = grant(rid, &reader, GrantRole::Reader, &["vitals"], None);
    if let AccessChange::Grant { rotations, .. } = &mut narrowed {
        rotations.push(Rotation {
            section: "labs".into(),
            epoch: 1,
            chain: vec![1, 2, 3],
            keys: vec![wrap(rid, "labs", 1, owner.identity.card())],
        });
    }
    let (st, body) = log.apply(&c, &s, &owner, narrowed).await;
    assert_eq!(st, 201, "{body}");
    let labs = format!("/v1/records/{rid}/sections/labs/envelopes");
    assert_eq!(status_of(&c, &s, &reader, &labs).await, 403);
    let vitals = format!("/v1/records/{rid}/sections/vitals/envelopes");
    assert_eq!(status_of(&c, &s, &reader, &vitals).await, 200);
}

/// POST a view report as `d`.
async fn report(
    c: &reqwest::Client,
    s: &TestServer,
    d: &Device,
    rid: RecordId,
    views: Value,
) -> (u16, Value) {
    let r = c
        .post(s.url(&format!("/v1/records/{rid}/audit/views")))
        .bearer_auth(&d.token)
        .json(&json!({ "views": views }))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn members_report_views_of_what_they_may_read() {
    let mut s = TestServer::start(|_| {}).await;
    let c = client();
    let owner = new_device(&c, &s, "phone").await;
    let clinic = new_device(&c, &s, "clinic").await;
    let stranger = new_device(&c, &s, "stranger").await;
    let rid = register(&c, &s, &owner).await;
    let mut log = Log::new(rid);
    let (st, _) = log
        .apply(
            &c,
            &s,
            &owner,
            grant(
                rid,
                &clinic,
                GrantRole::Reader,
                &["labs", "allergies"],
                None,
            ),
        )
        .await;
    assert_eq!(st, 201);
    let at = now_ms() - 60_000;

    // Readable sections are stored; another section is refused, not stored.
    let (st, body) = report(
        &c,
        &s,
        &clinic,
        rid,
        json!([{"section": "labs", "count": 3, "at_ms": at},
               {"section": "allergies", "count": 1, "at_ms": at},
               {"section": "conditions", "count": 1, "at_ms": at}]),
    )
    .await;
    assert_eq!(
        (st, body.clone()),
        (200, json!({"stored": 2, "refused": 1}))
    );
    let (_, audit) = get_json(&c, &s, &owner, &format!("/v1/records/{rid}/audit")).await;
    let views: Vec<_> = audit["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "view")
        .map(|e| {
            (
                e["identity"].as_str().unwrap().to_owned(),
                e["section"].as_str().unwrap().to_owned(),
                e["count"].as_u64().unwrap(),
                e["at_ms"].as_i64().unwrap(),
            )
        })
        .collect();
    let clinic_id = clinic.identity.id().to_hex();
    assert_eq!(
        views,
        [
            (clinic_id.clone(), "labs".to_owned(), 3, at),
            (clinic_id, "allergies".to_owned(), 1, at)
        ]
    );

    // Malformed reports change nothing.
    let future = now_ms() + 10 * 60_000;
    for (bad, want) in [
        (json!([{"section": "labs", "count": 0, "at_ms": at}]), 400),
        (json!([{"section": "labs", "count": 1, "at_ms": -1}]), 400),
        (
            json!([{"section": "labs", "count": 1, "at_ms": future}]),
            400,
        ),
        (
            json!([{"section": "../labs", "count": 1, "at_ms": at}]),
            400,
        ),
        (
            Value::Array(vec![
                json!({"section": "labs", "count": 1, "at_ms": at});
                501
            ]),
            413,
        ),
    ] {
        assert_eq!(
            report(&c, &s, &clinic, rid, bad.clone()).await.0,
            want,
            "{bad}"
        );
    }
    // Not a member: refused.
    let one = json!([{"section": "labs", "count": 1, "at_ms": at}]);
    assert_eq!(report(&c, &s, &stranger, rid, one.clone()).await.0, 403);
    let (_, after) = get_json(&c, &s, &owner, &format!("/v1/records/{rid}/audit")).await;
    assert_eq!(after["events"], audit["events"], "nothing was added");
    s.stop().await.unwrap();
}
