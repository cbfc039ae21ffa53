//! Replica relays (issue 15, edge relays): a relay has its own identity
//! (role `relay`), shown at `GET /v1/relay`; a record's access log names it
//! a replica (`add-replica`, by an owner device or a manager); while named,
//! it reads every log's ciphertext and forwards envelopes and snapshots
//! whose authors the shared acceptance rule checks, and it can author
//! nothing; once revoked, or never named, it is refused (403).
#![allow(clippy::unwrap_used)]

#[path = "relay_common/mod.rs"]
mod common;

use common::*;
use satchel_protocol::crypto::{Identity, Role};
use satchel_protocol::ids::RecordId;
use satchel_protocol::sharing::{statement_hash, AccessChange, AccessStatement};
use satchel_protocol::wire::RelayIdentityResponse;
use satchel_sync_server::storage::now_ms;
use satchel_sync_server::RelayIdentityFile;
use serde_json::{json, Value};

/// Sign `change` as `by` on top of `head` and post it as `poster`; on 201
/// `head` moves.
async fn post_statement(
    c: &reqwest::Client,
    s: &TestServer,
    rid: RecordId,
    head: &mut [u8; 32],
    by: &Identity,
    poster: &Device,
    change: AccessChange,
) -> (u16, Value) {
    let signed = AccessStatement {
        record_id: rid,
        by: by.id(),
        at_ms: now_ms(),
        prev: *head,
        change,
    }
    .sign(by)
    .unwrap();
    let r = c
        .post(s.url(&format!("/v1/records/{rid}/access")))
        .bearer_auth(&poster.token)
        .json(&signed)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    if status == 201 {
        *head = statement_hash(&signed.statement);
    }
    (status, r.json().await.unwrap_or(Value::Null))
}

fn name_replica(relay: &Identity, label: &str) -> AccessChange {
    AccessChange::AddReplica {
        relay: relay.card().clone(),
        label: label.into(),
    }
}

async fn put_snapshot(
    c: &reqwest::Client,
    s: &TestServer,
    d: &Device,
    rid: RecordId,
    upto: u64,
    envelope: &[u8],
) -> u16 {
    c.put(s.url(&format!("/v1/records/{rid}/sections/vitals/snapshot")))
        .bearer_auth(&d.token)
        .json(&json!({"upto_seq": upto, "envelope": b64(envelope)}))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn relay_shows_its_identity_card_and_keeps_it_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let config = || {
        let mut config = satchel_sync_server::Config::sqlite(dir.path().join("relay.db"));
        config.identity = Some(RelayIdentityFile::beside(
            &dir.path().join("relay.db"),
            "Riverside clinic relay",
        ));
        config
    };
    let c = client();
    let mut s = TestServer::start_with(config(), tempfile::tempdir().unwrap()).await;
    let first: RelayIdentityResponse = get_public(&c, &s, "/v1/relay").await;
    assert_eq!(first.card.role, Role::Relay);
    assert_eq!(first.card.display_name, "Riverside clinic relay");
    assert!(first.card.verify().is_ok());
    assert_eq!(first.fingerprint, first.card.fingerprint());
    s.stop().await.unwrap();
    let mut again = TestServer::start_with(config(), tempfile::tempdir().unwrap()).await;
    let second: RelayIdentityResponse = get_public(&c, &again, "/v1/relay").await;
    assert_eq!(second, first, "the same identity after a restart");
    again.stop().await.unwrap();

    // Without an identity the route says how to give one.
    let mut bare = TestServer::start(|_| {}).await;
    let r = c.get(bare.url("/v1/relay")).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let body: Value = r.json().await.unwrap();
    assert!(body["message"].as_str().unwrap().contains("--identity"));
    bare.stop().await.unwrap();
}

/// `POST /v1/replica/pull` for one log: the status and, on 200, the
/// decoded batch.
async fn replica_pull(
    c: &reqwest::Client,
    s: &TestServer,
    d: &Device,
    rid: RecordId,
    log: &str,
) -> (u16, Vec<satchel_protocol::wire::replica_batch::LogBatch>) {
    let r = c
        .post(s.url("/v1/replica/pull"))
        .bearer_auth(&d.token)
        .json(&json!({"logs": [{"record": rid, "log": log, "after": 0}]}))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let body = r.bytes().await.unwrap();
    if status != 200 {
        return (status, vec![]);
    }
    (
        status,
        satchel_protocol::wire::replica_batch::decode(&body, 1 << 20).unwrap(),
    )
}

/// A relay the access log does not name is refused every read, batch
/// pull, upload and audit forward of the record (403) and is listed no
/// record; once named it reads and forwards ciphertext; once revoked it is
/// refused again and receives no new envelope.
#[tokio::test]
async fn unlisted_relay_refused() {
    let mut s = TestServer::start(|_| {}).await;
    let c = client();
    let owner = new_device(&c, &s, "phone").await;
    let rid = register(&c, &s, &owner).await;
    let mut head = [0u8; 32];
    let relay_identity = Identity::generate("Riverside clinic relay", Role::Relay, None).unwrap();
    let relay = login(&c, &s, relay_identity).await;
    let (st, _) = upload(
        &c,
        &s,
        &owner,
        rid,
        "vitals",
        &[seal(&owner.identity, rid, "vitals", 1, b"x").to_bytes()],
    )
    .await;
    assert_eq!(st, 200);

    // Not named: refused everywhere.
    let reads = [
        format!("/v1/records/{rid}/sections/vitals/envelopes"),
        format!("/v1/records/{rid}/sections/wearables.chunks/envelopes"),
        format!("/v1/records/{rid}/feed"),
        format!("/v1/records/{rid}/access"),
    ];
    for path in &reads {
        assert_eq!(get_json(&c, &s, &relay, path).await.0, 403, "{path}");
    }
    assert_eq!(replica_pull(&c, &s, &relay, rid, "vitals").await.0, 403);
    let (_, heads) = get_json(&c, &s, &relay, "/v1/replica/heads").await;
    assert_eq!(heads["records"], json!([]));
    let forward = |d: &Device| {
        c.post(s.url(&format!("/v1/replica/records/{rid}/audit")))
            .bearer_auth(&d.token)
            .json(
                &json!({"events": [{"seq": 1, "at_ms": 1, "identity": owner.identity.id(),
                                     "action": "pull", "section": "vitals", "count": 1}]}),
            )
            .send()
    };
    assert_eq!(forward(&relay).await.unwrap().status(), 403);
    assert_eq!(
        forward(&owner).await.unwrap().status(),
        403,
        "only a named replica forwards audit events"
    );
    let forwarded = seal(&owner.identity, rid, "vitals", 2, b"y").to_bytes();
    let (st, _) = upload(
        &c,
        &s,
        &relay,
        rid,
        "vitals",
        std::slice::from_ref(&forwarded),
    )
    .await;
    assert_eq!(st, 403);

    // Only a relay's card can be named, and only by an administrator.
    let phone_card = Identity::generate("laptop", Role::PatientDevice, None)
        .unwrap()
        .card()
        .clone();
    let (st, body) = post_statement(
        &c,
        &s,
        rid,
        &mut head,
        &owner.identity,
        &owner,
        AccessChange::AddReplica {
            relay: phone_card,
            label: "not a relay".into(),
        },
    )
    .await;
    assert_eq!(st, 422, "{body}");
    let (st, _) = post_statement(
        &c,
        &s,
        rid,
        &mut head,
        &relay.identity,
        &relay,
        name_replica(&relay.identity, "self-appointed"),
    )
    .await;
    assert_eq!(st, 403, "a relay cannot name itself");
    let (st, body) = post_statement(
        &c,
        &s,
        rid,
        &mut head,
        &owner.identity,
        &owner,
        name_replica(&relay.identity, "Riverside clinic"),
    )
    .await;
    assert_eq!(st, 201, "{body}");

    // Named: the record is listed for the relay, and every log's
    // ciphertext and the access log are readable.
    let (st, listed) = get_json(&c, &s, &relay, "/v1/replica/records").await;
    assert_eq!((st, listed["records"].clone()), (200, json!([rid])));
    assert_eq!(listed["more"], false);
    for path in &reads {
        assert_eq!(get_json(&c, &s, &relay, path).await.0, 200, "{path}");
    }
    let (st, batch) = replica_pull(&c, &s, &relay, rid, "vitals").await;
    assert_eq!(st, 200);
    assert_eq!(batch.len(), 1);
    assert_eq!(batch[0].envelopes.len(), 1);
    let (_, heads) = get_json(&c, &s, &relay, "/v1/replica/heads").await;
    assert_eq!(heads["records"][0]["record"], json!(rid));
    assert_eq!(
        heads["records"][0]["logs"]["vitals"],
        json!(batch[0].envelopes[0].0)
    );
    // Asked again with the page's digest: nothing moved, no records.
    let digest = heads["digest"].as_str().unwrap().to_string();
    let (_, again) = get_json(
        &c,
        &s,
        &relay,
        &format!("/v1/replica/heads?unless={digest}"),
    )
    .await;
    assert_eq!(
        (again["unchanged"].clone(), again["records"].clone()),
        (json!(true), json!([]))
    );
    assert_eq!(again["last"], json!(rid));
    assert_eq!(forward(&relay).await.unwrap().status(), 200);
    let (_, members) = get_json(&c, &s, &owner, &format!("/v1/records/{rid}/members")).await;
    let entry = members["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["identity"] == json!(relay.identity.id()))
        .unwrap()
        .clone();
    assert_eq!(entry["role"], "replica");
    // It forwards what a member wrote (the author's right is what counts)...
    let (st, body) = upload(
        &c,
        &s,
        &relay,
        rid,
        "vitals",
        std::slice::from_ref(&forwarded),
    )
    .await;
    assert_eq!(st, 200, "{body}");
    let (st, body) = upload(&c, &s, &relay, rid, "vitals", &[forwarded]).await;
    assert_eq!((st, body["duplicates"].clone()), (200, json!(1)));
    let seq = body["accepted"][0]["seq"].as_u64().unwrap();
    let snapshot = seal(&owner.identity, rid, "vitals", 3, b"whole").to_bytes();
    assert_eq!(put_snapshot(&c, &s, &relay, rid, seq, &snapshot).await, 200);
    // ...and authors nothing itself: no envelope, no snapshot, no statement.
    let own = seal(&relay.identity, rid, "vitals", 1, b"z").to_bytes();
    let (st, body) = upload(&c, &s, &relay, rid, "vitals", std::slice::from_ref(&own)).await;
    assert_eq!(st, 422, "{body}");
    assert_eq!(put_snapshot(&c, &s, &relay, rid, seq, &own).await, 422);
    let carer = Identity::generate("carer", Role::Carer, None).unwrap();
    let (st, _) = post_statement(
        &c,
        &s,
        rid,
        &mut head,
        &relay.identity,
        &relay,
        AccessChange::Grant {
            grantee: carer.card().clone(),
            role: satchel_protocol::sharing::GrantRole::Reader,
            sections: vec!["vitals".into()],
            expires_at_ms: None,
            label: "x".into(),
            keys: vec![],
            rotations: vec![],
        },
    )
    .await;
    assert_eq!(st, 403);
    // Nor the audit trail or invite links (an administrator's).
    assert_eq!(
        get_json(&c, &s, &relay, &format!("/v1/records/{rid}/audit"))
            .await
            .0,
        403
    );

    // Removed: refused again, with nothing to rotate.
    let (st, body) = post_statement(
        &c,
        &s,
        rid,
        &mut head,
        &owner.identity,
        &owner,
        AccessChange::Revoke {
            identity: relay.identity.id(),
            sections: None,
            rotations: vec![],
        },
    )
    .await;
    assert_eq!(st, 201, "{body}");
    for path in &reads {
        assert_eq!(get_json(&c, &s, &relay, path).await.0, 403, "{path}");
    }
    let (_, listed) = get_json(&c, &s, &relay, "/v1/replica/records").await;
    assert_eq!(listed["records"], json!([]));
    let (_, heads) = get_json(&c, &s, &relay, "/v1/replica/heads").await;
    assert_eq!(heads["records"], json!([]));
    let later = seal(&owner.identity, rid, "vitals", 4, b"w").to_bytes();
    let (st, _) = upload(&c, &s, &relay, rid, "vitals", std::slice::from_ref(&later)).await;
    assert_eq!(st, 403);
    // A new envelope written by the owner is not served to it.
    let (st, _) = upload(&c, &s, &owner, rid, "vitals", &[later]).await;
    assert_eq!(st, 200);
    assert_eq!(replica_pull(&c, &s, &relay, rid, "vitals").await.0, 403);
    assert_eq!(forward(&relay).await.unwrap().status(), 403);
    s.stop().await.unwrap();
}

/// The patient names a clinic's relay a replica with the CLI (its
/// fingerprint checked when given), sees it in `satchel grants`, and
/// removes it with `satchel revoke`.
#[test]
fn replica_named_listed_and_removed_with_the_cli() {
    use satchel_tests::world::{add, med, sync, world, PASS};
    use satchel_tests::{run, satchel, Relay};

    let w = world("pat");
    let pat = w.home("pat");
    assert!(add(&pat, &med("metformin")).status.success());
    assert!(sync(&pat, &w.relay).status.success());
    let clinic = Relay::start(&w.home("clinic-relay"));
    let grants = |home: &std::path::Path| -> Vec<Value> {
        let out = run(satchel(home, PASS).args(["grants", "--json"]), true);
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let replicas = |home: &std::path::Path| -> Vec<Value> {
        grants(home)
            .into_iter()
            .filter(|g| g["role"] == "replica-relay")
            .collect()
    };

    // A fingerprint other than the relay's: refused, nothing changed.
    let out = run(
        satchel(&pat, PASS).args([
            "replica",
            "add",
            &clinic.url(),
            "--label",
            "Riverside clinic",
            "--fingerprint",
            "0000-0000",
            "--server",
            &w.relay.url(),
        ]),
        false,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not the relay its operator described"),
        "{err}"
    );
    assert!(replicas(&pat).is_empty());

    let out = run(
        satchel(&pat, PASS).args([
            "replica",
            "add",
            &clinic.url(),
            "--label",
            "Riverside clinic",
            "--server",
            &w.relay.url(),
            "--json",
        ]),
        true,
    );
    let named: Value = serde_json::from_slice(&out.stdout).unwrap();
    let fingerprint = named["fingerprint"].as_str().unwrap().to_string();
    let listed = replicas(&pat);
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["label"], "Riverside clinic");
    assert_eq!(listed[0]["identity"], named["identity"]);
    assert_eq!(listed[0]["sections"], "all (ciphertext only)");
    assert!(listed[0]["name"].as_str().unwrap().contains(&fingerprint));

    // Naming it again with the right fingerprint (as read out) is accepted.
    run(
        satchel(&pat, PASS).args([
            "replica",
            "add",
            &clinic.url(),
            "--label",
            "Riverside clinic",
            "--fingerprint",
            &fingerprint.to_lowercase(),
            "--server",
            &w.relay.url(),
        ]),
        true,
    );

    let out = run(
        satchel(&pat, PASS).args(["revoke", "Riverside clinic", "--server", &w.relay.url()]),
        true,
    );
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("Removed the replica relay"), "{said}");
    assert!(replicas(&pat).is_empty());
    drop(clinic);
}

/// The relay's own client of an upstream (hyper, no reqwest in the relay):
/// it signs in with the relay's identity and, once the record names the
/// relay a replica, reads the record's feed and envelopes (the same bytes,
/// so the same hash); before that, and for an address nobody answers, it
/// reports a typed error.
#[tokio::test]
async fn upstream_client_signs_in_as_the_relay_and_reads_as_a_replica() {
    use satchel_protocol::relay_url::RelayUrl;
    use satchel_protocol::wire::{
        AfterQuery, Feed, PageQuery, Pull, RecordPath, RecordsPageQuery, RelayIdentity,
        ReplicaRecords, SectionPath,
    };
    use satchel_sync_server::replication::upstream::{Upstream, UpstreamError, UpstreamTrust};

    let mut s = TestServer::start(|_| {}).await;
    let c = client();
    let owner = new_device(&c, &s, "phone").await;
    let rid = register(&c, &s, &owner).await;
    let envelope = seal(&owner.identity, rid, "labs", 1, b"x").to_bytes();
    let (st, _) = upload(&c, &s, &owner, rid, "labs", std::slice::from_ref(&envelope)).await;
    assert_eq!(st, 200);
    let edge = Identity::generate("Riverside clinic relay", Role::Relay, None).unwrap();

    let mut up = Upstream::new(RelayUrl::parse(&s.base).unwrap(), &UpstreamTrust::WebPki).unwrap();
    let shown = up.request::<RelayIdentity>(&(), &(), None).await;
    assert!(matches!(
        shown,
        Err(UpstreamError::Refused { status: 404, .. })
    ));
    up.login(&edge).await.unwrap();
    let feed = up
        .request::<Feed>(&RecordPath(rid), &AfterQuery { after: 0 }, None)
        .await;
    assert_eq!(feed.unwrap_err().status(), Some(403), "not named yet");

    let mut head = [0u8; 32];
    let (st, body) = post_statement(
        &c,
        &s,
        rid,
        &mut head,
        &owner.identity,
        &owner,
        name_replica(&edge, "Riverside clinic"),
    )
    .await;
    assert_eq!(st, 201, "{body}");
    let listed = up
        .request::<ReplicaRecords>(&(), &RecordsPageQuery::default(), None)
        .await
        .unwrap();
    assert_eq!((listed.records, listed.more), (vec![rid], false));
    let feed = up
        .request::<Feed>(&RecordPath(rid), &AfterQuery { after: 0 }, None)
        .await
        .unwrap();
    assert_eq!(feed.sections.len(), 1);
    assert_eq!(feed.sections[0].section, "labs");
    let page = up
        .request::<Pull>(
            &SectionPath::new(rid, "labs"),
            &PageQuery {
                after: 0,
                limit: None,
            },
            None,
        )
        .await
        .unwrap();
    assert_eq!(page.envelopes.len(), 1);
    assert_eq!(page.envelopes[0].envelope, envelope, "the same bytes");
    s.stop().await.unwrap();

    // The upstream gone: unreachable, not a hang.
    let err = up
        .request::<Feed>(&RecordPath(rid), &AfterQuery { after: 0 }, None)
        .await
        .unwrap_err();
    assert!(matches!(err, UpstreamError::Unreachable { .. }), "{err}");
}

/// Poll `f` until it returns `Some`, for at most `secs` seconds.
async fn eventually<T, F, Fut>(secs: u64, mut f: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return Some(v);
        }
        if tokio::time::Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// The envelopes of `log` the relay at `base` holds for `rid`, as `d`
/// pulls them (none when it cannot be reached or refuses).
async fn held(
    c: &reqwest::Client,
    base: &str,
    d: &Device,
    rid: RecordId,
    log: &str,
) -> Vec<Vec<u8>> {
    let Ok(r) = c
        .get(format!(
            "{base}/v1/records/{rid}/sections/{log}/envelopes?after=0&limit=1000"
        ))
        .bearer_auth(&d.token)
        .send()
        .await
    else {
        return Vec::new();
    };
    if r.status() != 200 {
        return Vec::new();
    }
    let page: Value = r.json().await.unwrap();
    page["envelopes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| unb64(e["envelope"].as_str().unwrap()))
        .collect()
}

/// An edge relay started with `--upstream` (in process): once the record
/// names it a replica, it holds what the cloud relay holds, what devices
/// write at the edge reaches the cloud exactly once, and statements travel
/// both ways; a relay the record does not name gets nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edge_relay_replicates_both_ways_exactly_once() {
    replicates_both_ways(TestServer::start(|_| {}).await).await;
}

/// The same with the cloud relay on PostgreSQL (the edge on SQLite). Fails
/// under CI when PostgreSQL cannot be reached.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edge_relay_replicates_with_a_postgres_upstream() {
    let Some((url, schema)) = pg_test_schema().await else {
        pg_unreachable("edge_relay_replicates_with_a_postgres_upstream");
        return;
    };
    let config = satchel_sync_server::Config {
        storage: satchel_sync_server::StorageConfig::Postgres {
            url: url.clone(),
            schema: Some(schema.clone()),
        },
        ..satchel_sync_server::Config::sqlite("unused")
    };
    replicates_both_ways(TestServer::start_with(config, tempfile::tempdir().unwrap()).await).await;
    pg_drop_schema(&url, &schema).await;
}

async fn replicates_both_ways(mut cloud: TestServer) {
    use satchel_protocol::relay_url::RelayUrl;
    use satchel_sync_server::replication::upstream::UpstreamTrust;
    use satchel_sync_server::UpstreamConfig;

    let edge_config = |dir: &std::path::Path, name: &str| {
        let mut config = satchel_sync_server::Config::sqlite(dir.join("edge.db"));
        config.identity = Some(RelayIdentityFile::beside(&dir.join("edge.db"), name));
        config.upstreams = vec![UpstreamConfig {
            url: RelayUrl::parse(&cloud.base).unwrap(),
            trust: UpstreamTrust::WebPki,
            interval: std::time::Duration::from_millis(200),
        }];
        config
    };
    let edge_dir = tempfile::tempdir().unwrap();
    let mut edge = TestServer::start_with(
        edge_config(edge_dir.path(), "Riverside clinic relay"),
        tempfile::tempdir().unwrap(),
    )
    .await;
    let stranger_dir = tempfile::tempdir().unwrap();
    let mut stranger = TestServer::start_with(
        edge_config(stranger_dir.path(), "Unlisted relay"),
        tempfile::tempdir().unwrap(),
    )
    .await;
    let c = client();

    let phone = Identity::generate("phone", Role::PatientDevice, None).unwrap();
    let phone_at_cloud = login(&c, &cloud, copy(&phone)).await;
    let rid = register(&c, &cloud, &phone_at_cloud).await;
    let from_cloud: Vec<Vec<u8>> = (1..=3)
        .map(|n| seal(&phone, rid, "vitals", n, b"cloud").to_bytes())
        .collect();
    assert_eq!(
        upload(&c, &cloud, &phone_at_cloud, rid, "vitals", &from_cloud)
            .await
            .0,
        200
    );
    let edge_card: RelayIdentityResponse = get_public(&c, &edge, "/v1/relay").await;
    let mut head = [0u8; 32];
    let (st, body) = post_statement(
        &c,
        &cloud,
        rid,
        &mut head,
        &phone,
        &phone_at_cloud,
        AccessChange::AddReplica {
            relay: edge_card.card.clone(),
            label: "Riverside clinic".into(),
        },
    )
    .await;
    assert_eq!(st, 201, "{body}");

    // The edge catches up: the record, its log and its envelopes.
    let phone_at_edge = login(&c, &edge, copy(&phone)).await;
    eventually(20, || async {
        (held(&c, &edge.base, &phone_at_edge, rid, "vitals")
            .await
            .len()
            == 3)
            .then_some(())
    })
    .await
    .expect("the edge relay holds the record's envelopes");
    assert_eq!(
        held(&c, &edge.base, &phone_at_edge, rid, "vitals").await,
        from_cloud
    );

    // Written at the clinic: reaches the cloud, exactly once.
    let from_edge: Vec<Vec<u8>> = (4..=5)
        .map(|n| seal(&phone, rid, "vitals", n, b"edge").to_bytes())
        .collect();
    assert_eq!(
        upload(&c, &edge, &phone_at_edge, rid, "vitals", &from_edge)
            .await
            .0,
        200
    );
    let at_cloud = eventually(20, || async {
        let h = held(&c, &cloud.base, &phone_at_cloud, rid, "vitals").await;
        (h.len() >= 5).then_some(h)
    })
    .await
    .expect("the clinic's envelopes reach the cloud");
    let mut expected = from_cloud.clone();
    expected.extend(from_edge.clone());
    assert_eq!(at_cloud, expected, "each envelope once, same bytes");
    // Nothing the edge pulled from the cloud was offered back (no echo):
    // the cloud acknowledged no duplicate.
    assert_eq!(
        counter(&c, &cloud, "satchel_envelope_duplicates_total").await,
        0,
        "the edge echoed envelopes back"
    );

    // The clinic's views and pushes reach the cloud's audit, tagged with
    // the edge relay; the edge forwarding them is not a second push.
    let edge_id = json!(edge_card.card.id());
    let trail = eventually(20, || async {
        let (_, a) = get_json(
            &c,
            &cloud,
            &phone_at_cloud,
            &format!("/v1/records/{rid}/audit"),
        )
        .await;
        let events = a["events"].as_array()?.clone();
        let views = events
            .iter()
            .any(|e| e["action"] == "pull" && e["relay"] == edge_id);
        let pushes = events
            .iter()
            .any(|e| e["action"] == "push" && e["relay"] == edge_id && e["count"] == 2);
        (views && pushes).then_some(events)
    })
    .await
    .expect("the clinic's views and pushes reach the cloud's audit");
    let pushed_at_cloud: u64 = trail
        .iter()
        .filter(|e| e["action"] == "push" && e["relay"].is_null())
        .map(|e| e["count"].as_u64().unwrap())
        .sum();
    assert_eq!(
        pushed_at_cloud, 3,
        "only the phone's own upload at the cloud"
    );

    // A statement made at the clinic reaches the cloud's log.
    let carer = Identity::generate("carer", Role::Carer, None).unwrap();
    let mut edge_head = head;
    let (st, body) = post_statement(
        &c,
        &edge,
        rid,
        &mut edge_head,
        &phone,
        &phone_at_edge,
        AccessChange::Revoke {
            identity: carer.id(),
            sections: None,
            rotations: vec![],
        },
    )
    .await;
    assert_eq!(st, 422, "nothing to revoke: {body}");
    let manager = Identity::generate("parent", Role::Manager, None).unwrap();
    let (st, body) = post_statement(
        &c,
        &edge,
        rid,
        &mut edge_head,
        &phone,
        &phone_at_edge,
        AccessChange::Grant {
            grantee: manager.card().clone(),
            role: satchel_protocol::sharing::GrantRole::Manager,
            sections: vec![],
            expires_at_ms: None,
            label: "parent".into(),
            keys: vec![],
            rotations: vec![],
        },
    )
    .await;
    assert_eq!(st, 201, "{body}");
    let statements = eventually(20, || async {
        let (_, log) = get_json(
            &c,
            &cloud,
            &phone_at_cloud,
            &format!("/v1/records/{rid}/access"),
        )
        .await;
        let n = log["statements"].as_array()?.len();
        (n == 2).then_some(n)
    })
    .await;
    assert_eq!(statements, Some(2), "the clinic's grant reaches the cloud");

    // The relay nobody named holds nothing of the record.
    let (_, listed) = {
        let d = login(
            &c,
            &cloud,
            Identity::generate("x", Role::Relay, None).unwrap(),
        )
        .await;
        get_json(&c, &cloud, &d, "/v1/replica/records").await
    };
    assert_eq!(listed["records"], json!([]));
    let phone_at_stranger = login(&c, &stranger, copy(&phone)).await;
    assert_eq!(
        get_json(
            &c,
            &stranger,
            &phone_at_stranger,
            &format!("/v1/records/{rid}/access")
        )
        .await
        .0,
        404,
        "an unlisted relay never gets the record"
    );
    for s in [&mut edge, &mut stranger, &mut cloud] {
        s.stop().await.unwrap();
    }
}

fn copy(id: &Identity) -> Identity {
    Identity::from_secret_bytes(&id.to_secret_bytes()).unwrap()
}

/// The edge relay (the real binary) is killed with SIGKILL at random points
/// while it replicates 200 records to the cloud relay, and restarted each
/// time: from its durable cursors it finishes the work, and the cloud ends
/// with every envelope written at the clinic exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edge_relay_crash_resumes() {
    let dir = tempfile::tempdir().unwrap();
    // The test plays 400 device logins from one address: no per-address
    // limit on logins here.
    let cloud = satchel_tests::Relay::start_on(
        &dir.path().join("cloud"),
        "127.0.0.1:0",
        &["--auth-rate-per-sec", "0"],
    );
    crash_resumes(&cloud.url()).await;
}

/// [`edge_relay_crash_resumes`] with the upstream on PostgreSQL (the edge on
/// SQLite).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edge_relay_crash_resumes_with_a_postgres_upstream() {
    let Some((url, schema)) = pg_test_schema().await else {
        pg_unreachable("edge_relay_crash_resumes_with_a_postgres_upstream");
        return;
    };
    let mut config = satchel_sync_server::Config {
        storage: satchel_sync_server::StorageConfig::Postgres {
            url: url.clone(),
            schema: Some(schema.clone()),
        },
        ..satchel_sync_server::Config::sqlite("unused")
    };
    config.rate.auth_per_second = 0;
    let mut cloud = TestServer::start_with(config, tempfile::tempdir().unwrap()).await;
    crash_resumes(&cloud.base).await;
    cloud.stop().await.unwrap();
    pg_drop_schema(&url, &schema).await;
}

/// The edge relay is killed (SIGKILL) at random points while it pushes 200
/// records' envelopes to the upstream at `cloud_url`; after each restart
/// it resumes from its cursors, and the upstream ends with every envelope
/// exactly once.
async fn crash_resumes(cloud_url: &str) {
    use satchel_tests::Relay;

    const RECORDS: usize = 200;
    const PER_RECORD: u64 = 5;
    let dir = tempfile::tempdir().unwrap();
    let cloud_url = cloud_url.to_string();
    let mut edge = Relay::start_on(
        &dir.path().join("edge"),
        "127.0.0.1:0",
        &[
            "--upstream",
            &cloud_url,
            "--replication-interval",
            "0.2",
            "--relay-name",
            "Riverside clinic relay",
            "--auth-rate-per-sec",
            "0",
        ],
    );
    let c = client();
    let edge_card: RelayIdentityResponse = get_public_url(&c, &edge.url(), "/v1/relay").await;

    // 200 patients, each registered at the cloud and naming the edge.
    let mut records = Vec::new();
    for i in 0..RECORDS {
        let phone = Identity::generate(&format!("phone {i}"), Role::PatientDevice, None).unwrap();
        let at_cloud = login_url(&c, &cloud_url, copy(&phone)).await;
        let rid = RecordId::random();
        let r = c
            .post(format!("{cloud_url}/v1/records"))
            .bearer_auth(&at_cloud.token)
            .json(&json!({ "record_id": rid, "owner": phone.card() }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let signed = AccessStatement {
            record_id: rid,
            by: phone.id(),
            at_ms: now_ms(),
            prev: [0; 32],
            change: name_replica_card(&edge_card.card, "Riverside clinic"),
        }
        .sign(&phone)
        .unwrap();
        let r = c
            .post(format!("{cloud_url}/v1/records/{rid}/access"))
            .bearer_auth(&at_cloud.token)
            .json(&signed)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        records.push((phone, at_cloud, rid));
    }

    // The clinic's devices write at the edge once it holds each record.
    let mut written: Vec<Vec<Vec<u8>>> = Vec::new();
    for (phone, _, rid) in &records {
        let envs: Vec<Vec<u8>> = (1..=PER_RECORD)
            .map(|n| seal(phone, *rid, "vitals", n, b"clinic").to_bytes())
            .collect();
        let at_edge = login_url(&c, &edge.url(), copy(phone)).await;
        let stored = eventually(60, || async {
            let r = c
                .post(format!(
                    "{}/v1/records/{rid}/sections/vitals/envelopes",
                    edge.url()
                ))
                .bearer_auth(&at_edge.token)
                .json(&json!({ "envelopes": envs.iter().map(|e| b64(e)).collect::<Vec<_>>() }))
                .send()
                .await
                .ok()?;
            (r.status() == 200).then_some(())
        })
        .await;
        assert!(
            stored.is_some(),
            "the edge never held record {rid}; its log:\n{}",
            edge.log()
        );
        written.push(envs);
    }

    // SIGKILL at random points while it pushes, restarting each time.
    let rng = ring::rand::SystemRandom::new();
    for _ in 0..5 {
        let mut b = [0u8; 2];
        ring::rand::SecureRandom::fill(&rng, &mut b).unwrap();
        let wait = 50 + u64::from(u16::from_le_bytes(b) % 600);
        tokio::time::sleep(std::time::Duration::from_millis(wait)).await;
        edge.kill();
        edge.restart();
    }

    // Every envelope at the cloud, each once, in each record.
    for ((_, at_cloud, rid), envs) in records.iter().zip(&written) {
        let got = eventually(120, || async {
            let got = held(&c, &cloud_url, at_cloud, *rid, "vitals").await;
            (got.len() >= envs.len()).then_some(got)
        })
        .await
        .unwrap_or_else(|| panic!("record {rid} did not reach the cloud"));
        assert_eq!(&got, envs, "record {rid}: each envelope once, in order");
    }
    drop(edge);
}

fn name_replica_card(card: &satchel_protocol::crypto::IdentityCard, label: &str) -> AccessChange {
    AccessChange::AddReplica {
        relay: card.clone(),
        label: label.into(),
    }
}

/// Clinical-safety control H11 (docs/clinical-safety.md): a copy read
/// through a clinic's edge relay says when that relay last reached the
/// record's home relay, and is called STALE while the clinic's link is
/// down; once the link is back it is current again.
#[test]
fn clinic_copy_is_labelled_stale_while_its_link_is_down() {
    use satchel_tests::world::{add, med, world, PASS};
    use satchel_tests::{link_devices, run, satchel, Relay};

    let w = world("pat");
    let phone = w.home("pat");
    let tablet = w.home("tablet");
    assert!(add(&phone, &med("metformin")).status.success());
    let cloud_url = w.relay.url();
    run(
        satchel(&phone, PASS).args(["sync", "--server", &cloud_url]),
        true,
    );
    let mut edge = Relay::start_on(
        &w.home("clinic-relay"),
        "127.0.0.1:0",
        &["--upstream", &cloud_url, "--replication-interval", "0.2"],
    );
    run(
        satchel(&phone, PASS).args([
            "replica",
            "add",
            &edge.url(),
            "--label",
            "Riverside clinic",
            "--server",
            &cloud_url,
        ]),
        true,
    );
    link_devices(&phone, &tablet, PASS, &cloud_url);
    let listing = |home: &std::path::Path| -> String {
        let out = run(satchel(home, PASS).arg("list"), true);
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // The tablet, at the clinic, syncs with the edge once it holds the
    // record (replicated from the cloud).
    let sync_at_edge = |edge: &Relay| {
        satchel(&tablet, PASS)
            .args(["sync", "--server", &edge.url()])
            .output()
            .unwrap()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let out = sync_at_edge(&edge);
        if out.status.success() && listing(&tablet).contains("metformin") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the tablet never read the record at the edge: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            edge.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let shown = listing(&tablet);
    assert!(shown.contains("Last synced: "), "{shown}");
    assert!(!shown.contains("STALE COPY"), "a current copy: {shown}");

    // The clinic's link to the cloud goes down (the cloud relay stops) and
    // the clinic's relay restarts meanwhile: it cannot say the record is
    // current, and the tablet's copy says so.
    let mut cloud = w.relay;
    cloud.kill();
    edge.kill();
    edge.restart();
    let out = sync_at_edge(&edge);
    assert!(
        out.status.success(),
        "the clinic keeps syncing while its link is down: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let shown = listing(&tablet);
    assert!(
        shown.contains("STALE COPY") && shown.contains("has not reached the record's home relay"),
        "{shown}"
    );
    assert!(
        shown.contains("metformin"),
        "the copy is still shown: {shown}"
    );

    // The link returns: the edge reaches the cloud again, and the copy is
    // current.
    cloud.restart();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let out = sync_at_edge(&edge);
        let shown = listing(&tablet);
        if out.status.success() && !shown.contains("STALE COPY") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the copy stayed stale after the link returned: {shown}\n{}",
            edge.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
}
