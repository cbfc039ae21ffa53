//! The storage conformance suite: the same behavioural checks against the
//! SQLite and the PostgreSQL backend.
//!
//! PostgreSQL: `SATCHEL_TEST_DATABASE_URL` if set, else the local server at
//! 127.0.0.1:5432 (trust auth; users `postgres` then `root`; databases
//! `test`, `postgres`, `root`). Each run uses a fresh uniquely named schema,
//! dropped at the end. When no database is reachable the test fails if `CI`
//! is set and is skipped (with a note) otherwise.
#![allow(clippy::unwrap_used)]

#[path = "relay_common/mod.rs"]
mod common;

use std::sync::Arc;

use satchel_protocol::ids::{IdentityId, RecordId, ShareLinkHandle};
use satchel_protocol::wire::share_links::ShareLinkOpenKind;
use satchel_sync_server::storage::{
    Actor, AuditAction, AuditEvent, Member, MemberRole, Membership, NewEnvelope, NewShareLink,
    RecordHeadsRow, RegisterOutcome, Rights, ShareFile, ShareLinkStorage, ShareOpen,
    SnapshotOutcome, StatementOutcome, Storage, StorageError,
};

fn env(n: u8, author: IdentityId) -> NewEnvelope {
    let bytes = vec![n; 40 + usize::from(n)];
    NewEnvelope {
        hash: ring::digest::digest(&ring::digest::SHA256, &bytes)
            .as_ref()
            .try_into()
            .unwrap(),
        author,
        author_seq: u64::from(n),
        bytes,
    }
}

async fn conformance(s: Arc<dyn Storage>) {
    tokens_and_challenges(&*s).await;
    records_and_access(&*s).await;
    replica_records(&*s).await;
    replication_cursors(&*s).await;
    audit(&*s).await;
    envelopes(&*s).await;
    snapshots(&*s).await;
    links(&*s).await;
    notifications(Arc::clone(&s)).await;
    s.health().await.unwrap();
    s.close().await;
}

async fn tokens_and_challenges(s: &dyn Storage) {
    let who = IdentityId::random();
    let hash = [1u8; 32];
    s.put_token(hash, who, 1_000).await.unwrap();
    assert_eq!(s.token(hash, 999).await.unwrap(), Some((who, 1_000)));
    assert_eq!(s.token(hash, 1_000).await.unwrap(), None, "expired token");
    assert_eq!(s.token([2u8; 32], 0).await.unwrap(), None, "unknown token");

    let ch = [9u8; 32];
    s.put_challenge(who, ch, 5_000).await.unwrap();
    assert!(
        !s.take_challenge(IdentityId::random(), ch, 0).await.unwrap(),
        "challenge is bound to its identity"
    );
    assert!(s.take_challenge(who, ch, 10).await.unwrap());
    assert!(!s.take_challenge(who, ch, 10).await.unwrap(), "single use");
    s.put_challenge(who, [8u8; 32], 5_000).await.unwrap();
    assert!(
        !s.take_challenge(who, [8u8; 32], 5_000).await.unwrap(),
        "expired challenge"
    );
    assert!(
        !s.take_challenge(who, [8u8; 32], 0).await.unwrap(),
        "gone after use"
    );

    s.put_token([3u8; 32], who, 100).await.unwrap();
    s.put_challenge(who, [7u8; 32], 100).await.unwrap();
    assert!(s.purge_expired(200).await.unwrap() >= 2);
    assert_eq!(s.token([3u8; 32], 0).await.unwrap(), None, "purged");
    assert!(s.token(hash, 0).await.unwrap().is_some(), "unexpired kept");
}

async fn records_and_access(s: &dyn Storage) {
    let rid = RecordId::random();
    let owner = IdentityId::random();
    let other = IdentityId::random();
    assert_eq!(
        s.membership(rid, owner).await.unwrap(),
        Membership::NoRecord
    );
    assert_eq!(s.members(rid).await, Err(StorageError::NotFound));
    assert_eq!(
        s.register_record(rid, owner, vec![1, 2, 3], 1)
            .await
            .unwrap(),
        RegisterOutcome::Created
    );
    assert_eq!(
        s.register_record(rid, owner, vec![1, 2, 3], 2)
            .await
            .unwrap(),
        RegisterOutcome::AlreadyRegistered
    );
    assert_eq!(
        s.register_record(rid, other, vec![4], 3).await.unwrap(),
        RegisterOutcome::Conflict
    );
    assert_eq!(
        s.membership(rid, owner).await.unwrap(),
        Membership::Member(Rights::owner_device())
    );
    assert_eq!(
        s.membership(rid, other).await.unwrap(),
        Membership::NotMember
    );

    // Appends are compare-and-swap on the head (SHA-256 of the last
    // statement's bytes; zeros for an empty log), and replace the derived
    // member rows in the same transaction.
    let sha = |b: &[u8]| -> [u8; 32] {
        ring::digest::digest(&ring::digest::SHA256, b)
            .as_ref()
            .try_into()
            .unwrap()
    };
    let reader = IdentityId::random();
    let grant = Rights {
        role: MemberRole::Reader,
        sections: ["vitals".into(), "labs".into()].into(),
        expires_at_ms: Some(5_000),
    };
    let rows1 = vec![
        owner_row(owner, vec![1, 2, 3]),
        owner_row(other, vec![5, 6]),
    ];
    let first = match s
        .append_statement(
            rid,
            b"stmt-1".to_vec(),
            vec![0xAA; 64],
            [0; 32],
            rows1.clone(),
        )
        .await
        .unwrap()
    {
        StatementOutcome::Appended(seq) => seq,
        o => panic!("{o:?}"),
    };
    assert_eq!(
        s.append_statement(
            rid,
            b"stmt-1".to_vec(),
            vec![0xAA; 64],
            [0; 32],
            rows1.clone()
        )
        .await
        .unwrap(),
        StatementOutcome::Duplicate(first),
        "exact statement bytes are idempotent (even with a stale head)"
    );
    let mut rows2 = rows1.clone();
    rows2.push(Member {
        identity: reader,
        access: grant.clone(),
        card: vec![7],
    });
    assert_eq!(
        s.append_statement(
            rid,
            b"stmt-2".to_vec(),
            vec![0xBB; 64],
            [0; 32],
            rows2.clone()
        )
        .await
        .unwrap(),
        StatementOutcome::HeadMoved,
        "a stale head is refused"
    );
    assert_eq!(
        s.statements(rid, 0, 100).await.unwrap().len(),
        1,
        "nothing written"
    );
    assert_eq!(
        s.membership(rid, reader).await.unwrap(),
        Membership::NotMember,
        "members untouched by a refused append"
    );
    let second = match s
        .append_statement(
            rid,
            b"stmt-2".to_vec(),
            vec![0xBB; 64],
            sha(b"stmt-1"),
            rows2,
        )
        .await
        .unwrap()
    {
        StatementOutcome::Appended(seq) => seq,
        o => panic!("{o:?}"),
    };
    assert!(second > first);
    assert_eq!(
        s.membership(rid, other).await.unwrap(),
        Membership::Member(Rights::owner_device())
    );
    let Membership::Member(got) = s.membership(rid, reader).await.unwrap() else {
        panic!("reader is a member");
    };
    assert_eq!(got, grant);
    assert!(got.may_read("vitals", 4_999) && got.may_read("labs.chunks", 0));
    assert!(!got.may_read("vitals", 5_000), "expired at expires_at_ms");
    assert!(!got.may_read("notes", 0) && !got.may_write("vitals", 0));
    let mut members = s.members(rid).await.unwrap();
    members.sort_by_key(|m| m.identity);
    let mut want = vec![
        owner_row(owner, vec![1, 2, 3]),
        owner_row(other, vec![5, 6]),
        Member {
            identity: reader,
            access: grant,
            card: vec![7],
        },
    ];
    want.sort_by_key(|m| m.identity);
    assert_eq!(members, want);

    // Concurrent appends on the same head: exactly one lands.
    let mut tasks = Vec::new();
    for n in 0..8u8 {
        let bytes = format!("stmt-3-{n}").into_bytes();
        let rows = vec![owner_row(owner, vec![1, 2, 3])];
        tasks.push(s.append_statement(rid, bytes, vec![n; 64], sha(b"stmt-2"), rows));
    }
    let outcomes = futures_util::future::join_all(tasks).await;
    let landed = outcomes
        .iter()
        .filter(|o| matches!(o, Ok(StatementOutcome::Appended(_))))
        .count();
    let moved = outcomes
        .iter()
        .filter(|o| matches!(o, Ok(StatementOutcome::HeadMoved)))
        .count();
    assert_eq!((landed, moved), (1, 7), "{outcomes:?}");
    assert_eq!(
        s.membership(rid, reader).await.unwrap(),
        Membership::NotMember,
        "the landed statement's rows replaced the old ones"
    );

    let log = s.statements(rid, 0, 100).await.unwrap();
    assert_eq!(log.len(), 3);
    assert_eq!(log[0].statement, b"stmt-1");
    assert_eq!(log[0].signature, vec![0xAA; 64]);
    assert_eq!(log[0].seq, first);
    let after = s.statements(rid, first, 100).await.unwrap();
    assert_eq!(after.len(), 2);
    assert_eq!(after[0].seq, second);
    assert_eq!(s.statements(rid, 0, 1).await.unwrap().len(), 1);
    assert_eq!(
        s.append_statement(RecordId::random(), b"x".to_vec(), vec![], [0; 32], vec![])
            .await,
        Err(StorageError::NotFound)
    );
    assert_eq!(
        s.record_root(rid).await.unwrap(),
        Some((owner, vec![1, 2, 3]))
    );
    assert_eq!(s.record_root(RecordId::random()).await.unwrap(), None);
}

/// The records whose member rows name a relay a replica: listed in id
/// order, paged by id, and only while the rows (the log's projection) say
/// so; other roles and other relays are not listed.
async fn replica_records(s: &dyn Storage) {
    let relay = IdentityId::random();
    let other_relay = IdentityId::random();
    let mut named: Vec<RecordId> = Vec::new();
    let mut statements_of = std::collections::HashMap::new();
    for i in 0..5u8 {
        let rid = RecordId::random();
        let owner = IdentityId::random();
        s.register_record(rid, owner, vec![i], 1).await.unwrap();
        let mut rows = vec![owner_row(owner, vec![i])];
        if i != 2 {
            rows.push(Member {
                identity: relay,
                access: Rights::replica(),
                card: vec![9],
            });
            named.push(rid);
        } else {
            // Here the relay's identity holds a reader grant: not a replica.
            rows.push(Member {
                identity: relay,
                access: Rights {
                    role: MemberRole::Reader,
                    sections: ["vitals".into()].into(),
                    expires_at_ms: None,
                },
                card: vec![9],
            });
            rows.push(Member {
                identity: other_relay,
                access: Rights::replica(),
                card: vec![8],
            });
        }
        statements_of.insert(rid, vec![i, 1]);
        let outcome = s
            .append_statement(rid, vec![i, 1], vec![0; 64], [0; 32], rows)
            .await
            .unwrap();
        assert!(
            matches!(outcome, StatementOutcome::Appended(_)),
            "{outcome:?}"
        );
    }
    named.sort();
    assert_eq!(s.replica_records(relay, None, 100).await.unwrap(), named);
    let first = s.replica_records(relay, None, 2).await.unwrap();
    assert_eq!(first, named[..2]);
    let rest = s.replica_records(relay, Some(first[1]), 100).await.unwrap();
    assert_eq!(rest, named[2..]);
    assert_eq!(
        s.replica_records(other_relay, None, 100)
            .await
            .unwrap()
            .len(),
        1
    );
    assert!(s
        .replica_records(IdentityId::random(), None, 100)
        .await
        .unwrap()
        .is_empty());
    // Removed from a record's log (its rows replaced without it): gone.
    let dropped = named[0];
    let (owner, card) = s.record_root(dropped).await.unwrap().unwrap();
    let first_statement = statements_of[&dropped].clone();
    let head: [u8; 32] = ring::digest::digest(&ring::digest::SHA256, &first_statement)
        .as_ref()
        .try_into()
        .unwrap();
    let outcome = s
        .append_statement(
            dropped,
            vec![0xAB],
            vec![0; 64],
            head,
            vec![owner_row(owner, card)],
        )
        .await
        .unwrap();
    assert!(
        matches!(outcome, StatementOutcome::Appended(_)),
        "{outcome:?}"
    );
    assert_eq!(
        s.replica_records(relay, None, 100).await.unwrap(),
        named[1..]
    );
}

/// Replication cursors: 0 until set, then the last value set, kept apart
/// per upstream, record and stream.
async fn replication_cursors(s: &dyn Storage) {
    let (a, b) = (RecordId::random(), RecordId::random());
    let up = "https://cloud.example";
    assert_eq!(s.replication_cursor(up, a, "pull:feed").await.unwrap(), 0);
    s.set_replication_cursor(up, a, "pull:feed", 7)
        .await
        .unwrap();
    s.set_replication_cursor(up, a, "pull:feed", 9)
        .await
        .unwrap();
    s.set_replication_cursor(up, a, "push:feed", 3)
        .await
        .unwrap();
    s.set_replication_cursor("https://other.example", a, "pull:feed", 1)
        .await
        .unwrap();
    assert_eq!(s.replication_cursor(up, a, "pull:feed").await.unwrap(), 9);
    assert_eq!(s.replication_cursor(up, a, "push:feed").await.unwrap(), 3);
    assert_eq!(s.replication_cursor(up, b, "pull:feed").await.unwrap(), 0);
    assert_eq!(
        s.replication_cursor("https://other.example", a, "pull:feed")
            .await
            .unwrap(),
        1
    );

    // Envelopes keep where they came from (replication), for both pulls.
    let owner = IdentityId::random();
    s.register_record(a, owner, vec![1], 1).await.unwrap();
    let mut replicated = by();
    replicated.origin = Some(up.to_string());
    s.append_envelopes(a, "vitals", vec![env(1, owner)], replicated)
        .await
        .unwrap();
    s.append_envelopes(a, "vitals", vec![env(2, owner)], by())
        .await
        .unwrap();
    for page in [
        s.pull(a, "vitals", 0, 10).await.unwrap(),
        s.pull_whole(a, "vitals", 0, 10).await.unwrap(),
    ] {
        let origins: Vec<Option<&str>> =
            page.envelopes.iter().map(|e| e.origin.as_deref()).collect();
        assert_eq!(origins, vec![Some(up), None]);
    }
}

fn owner_row(identity: IdentityId, card: Vec<u8>) -> Member {
    Member {
        identity,
        access: Rights::owner_device(),
        card,
    }
}

fn by() -> Actor {
    Actor {
        identity: IdentityId::from_slice(&[0xEE; 32]).unwrap(),
        at_ms: 1_234,
        origin: None,
    }
}

async fn audit(s: &dyn Storage) {
    let rid = RecordId::random();
    let owner = IdentityId::random();
    s.register_record(rid, owner, vec![1], 1).await.unwrap();
    assert!(s.audit(rid, 0, 100).await.unwrap().is_empty());
    // A push with new envelopes records one event per author counting the
    // new ones, in the same transaction; an all-duplicate push records
    // nothing. The author is the contributor, not the uploader (`by()`): a
    // device forwarding what it received directly is not the source.
    s.append_envelopes(rid, "vitals", vec![env(1, owner), env(2, owner)], by())
        .await
        .unwrap();
    s.append_envelopes(rid, "vitals", vec![env(1, owner), env(3, owner)], by())
        .await
        .unwrap();
    s.append_envelopes(rid, "vitals", vec![env(3, owner)], by())
        .await
        .unwrap();
    // A failed batch leaves no event.
    let mut empty = env(9, owner);
    empty.bytes.clear();
    assert!(s
        .append_envelopes(rid, "vitals", vec![env(8, owner), empty], by())
        .await
        .is_err());
    let reader = IdentityId::random();
    let pulled = s
        .record_audit(AuditEvent {
            seq: 0,
            record: rid,
            at_ms: 2_000,
            identity: reader,
            action: AuditAction::Pull,
            section: "vitals".into(),
            count: 3,
            relay: None,
        })
        .await
        .unwrap();
    // A view a member reported (shown from its own copy).
    s.record_audit(AuditEvent {
        seq: 0,
        record: rid,
        at_ms: 1_500,
        identity: reader,
        action: AuditAction::View,
        section: "vitals".into(),
        count: 4,
        relay: None,
    })
    .await
    .unwrap();
    let events = s.audit(rid, 0, 100).await.unwrap();
    let summary: Vec<_> = events
        .iter()
        .map(|e| (e.identity, e.action, e.section.as_str(), e.count, e.at_ms))
        .collect();
    assert_eq!(
        summary,
        vec![
            (owner, AuditAction::Push, "vitals", 2, 1_234),
            (owner, AuditAction::Push, "vitals", 1, 1_234),
            (reader, AuditAction::Pull, "vitals", 3, 2_000),
            (reader, AuditAction::View, "vitals", 4, 1_500),
        ]
    );
    assert!(events.windows(2).all(|w| w[0].seq < w[1].seq));
    assert_eq!(events[2].seq, pulled);
    assert!(events.iter().all(|e| e.record == rid));
    let page = s.audit(rid, events[0].seq, 1).await.unwrap();
    assert_eq!(page.len(), 1);
    assert_eq!(page[0].seq, events[1].seq);
    assert!(s
        .audit(RecordId::random(), 0, 100)
        .await
        .unwrap()
        .is_empty());
    // A batch of two authors' envelopes (forwarded): one event each.
    let gp = IdentityId::random();
    s.append_envelopes(
        rid,
        "labs",
        vec![env(20, owner), env(21, gp), env(22, gp)],
        by(),
    )
    .await
    .unwrap();
    let mut labs: Vec<_> = s
        .audit(rid, 0, 100)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.section == "labs")
        .map(|e| {
            assert_eq!(e.action, AuditAction::Push);
            (e.identity, e.count)
        })
        .collect();
    labs.sort();
    let mut expected = vec![(owner, 1), (gp, 2)];
    expected.sort();
    assert_eq!(labs, expected);
}

async fn envelopes(s: &dyn Storage) {
    let rid = RecordId::random();
    let owner = IdentityId::random();
    s.register_record(rid, owner, vec![1], 1).await.unwrap();

    // Unknown record: nothing stored.
    assert_eq!(
        s.append_envelopes(RecordId::random(), "vitals", vec![env(1, owner)], by())
            .await,
        Err(StorageError::NotFound)
    );

    // First batch, with an in-batch duplicate.
    let batch = vec![env(1, owner), env(2, owner), env(1, owner), env(3, owner)];
    let got = s
        .append_envelopes(rid, "vitals", batch.clone(), by())
        .await
        .unwrap();
    assert_eq!(got.len(), 4);
    assert!(!got[0].duplicate && !got[1].duplicate && !got[3].duplicate);
    assert!(got[2].duplicate);
    assert_eq!(got[2].seq, got[0].seq);
    assert!(got[0].seq < got[1].seq && got[1].seq < got[3].seq);

    // Idempotent re-upload: the original seqs, all duplicates.
    let again = s
        .append_envelopes(rid, "vitals", batch, by())
        .await
        .unwrap();
    assert!(again.iter().all(|a| a.duplicate));
    assert_eq!(
        again.iter().map(|a| a.seq).collect::<Vec<_>>(),
        got.iter().map(|a| a.seq).collect::<Vec<_>>()
    );

    // Two envelopes of one author with the same author seq but different
    // bytes are different envelopes: both stored.
    let mut twin = env(3, owner);
    twin.bytes.push(0xFF);
    twin.hash = ring::digest::digest(&ring::digest::SHA256, &twin.bytes)
        .as_ref()
        .try_into()
        .unwrap();
    let t = s
        .append_envelopes(rid, "vitals", vec![twin.clone(), env(3, owner)], by())
        .await
        .unwrap();
    assert!(!t[0].duplicate && t[1].duplicate);
    assert_eq!(t[1].seq, got[3].seq);
    let t2 = s
        .append_envelopes(rid, "vitals", vec![twin], by())
        .await
        .unwrap();
    assert_eq!(t2[0].seq, t[0].seq);
    assert!(t2[0].duplicate);

    // Atomic: the third item is refused (empty), so the first two new ones
    // must not be stored either.
    let mut empty = env(12, owner);
    empty.bytes.clear();
    let bad = vec![env(10, owner), env(11, owner), empty];
    assert!(matches!(
        s.append_envelopes(rid, "labs", bad, by()).await,
        Err(StorageError::Conflict(_))
    ));
    let labs = s.pull(rid, "labs", 0, 100).await.unwrap();
    assert!(labs.envelopes.is_empty(), "failed batch left nothing");
    assert!(s
        .feed(rid, 0)
        .await
        .unwrap()
        .iter()
        .all(|(sec, _)| sec != "labs"));
    // ...and the same new envelopes can then be stored normally.
    let ok = s
        .append_envelopes(rid, "labs", vec![env(10, owner), env(11, owner)], by())
        .await
        .unwrap();
    assert!(ok.iter().all(|a| !a.duplicate));

    // Pagination.
    let more: Vec<_> = (20..45).map(|n| env(n, owner)).collect();
    s.append_envelopes(rid, "vitals", more, by()).await.unwrap();
    let mut after = 0;
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let page = s.pull(rid, "vitals", after, 10).await.unwrap();
        assert!(page.snapshot.is_none());
        assert!(page.envelopes.len() <= 10);
        seen.extend(page.envelopes.iter().map(|e| (e.seq, e.bytes.clone())));
        after = page.next(after);
        pages += 1;
        if !page.more {
            break;
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen.len(), 29);
    assert!(seen.windows(2).all(|w| w[0].0 < w[1].0), "seq order");
    assert_eq!(seen[0].1, env(1, owner).bytes, "exact bytes back");
    let page = s.pull(rid, "vitals", after, 10).await.unwrap();
    assert!(page.envelopes.is_empty() && !page.more);
    assert_eq!(page.next(after), after);

    // Feed.
    let feed = s.feed(rid, 0).await.unwrap();
    let names: Vec<_> = feed.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(names, vec!["labs", "vitals"]);
    let vitals_max = seen.last().unwrap().0;
    assert_eq!(feed[1].1, vitals_max);
    let labs_max = ok[1].seq;
    assert_eq!(feed[0].1, labs_max);
    let later = s.feed(rid, labs_max.min(vitals_max)).await.unwrap();
    assert_eq!(later.len(), 1);
    assert!(s
        .feed(rid, labs_max.max(vitals_max))
        .await
        .unwrap()
        .is_empty());
    assert!(s.feed(RecordId::random(), 0).await.unwrap().is_empty());
}

async fn snapshots(s: &dyn Storage) {
    let rid = RecordId::random();
    let owner = IdentityId::random();
    s.register_record(rid, owner, vec![1], 1).await.unwrap();
    let got = s
        .append_envelopes(
            rid,
            "notes",
            (50..56).map(|n| env(n, owner)).collect(),
            by(),
        )
        .await
        .unwrap();
    let seqs: Vec<_> = got.iter().map(|a| a.seq).collect();

    assert_eq!(
        s.put_snapshot(rid, "notes", seqs[5] + 1_000_000, b"too far".to_vec())
            .await
            .unwrap(),
        SnapshotOutcome::BeyondLog { newest: seqs[5] }
    );
    assert_eq!(
        s.put_snapshot(rid, "empty", 1, b"nothing".to_vec())
            .await
            .unwrap(),
        SnapshotOutcome::BeyondLog { newest: 0 }
    );
    assert_eq!(
        s.put_snapshot(rid, "notes", seqs[2], b"snap-a".to_vec())
            .await
            .unwrap(),
        SnapshotOutcome::Replaced
    );
    assert_eq!(
        s.put_snapshot(rid, "notes", seqs[2], b"snap-b".to_vec())
            .await
            .unwrap(),
        SnapshotOutcome::NotNewer { current: seqs[2] }
    );
    assert_eq!(
        s.put_snapshot(rid, "notes", seqs[1], b"snap-c".to_vec())
            .await
            .unwrap(),
        SnapshotOutcome::NotNewer { current: seqs[2] }
    );

    // Pull from 0: snapshot, then the envelopes after it, paginated.
    let page = s.pull(rid, "notes", 0, 2).await.unwrap();
    let snap = page.snapshot.clone().unwrap();
    assert_eq!(snap.upto_seq, seqs[2]);
    assert_eq!(snap.bytes, b"snap-a");
    assert_eq!(
        page.envelopes.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![seqs[3], seqs[4]]
    );
    assert!(page.more);
    let next = page.next(0);
    let page2 = s.pull(rid, "notes", next, 2).await.unwrap();
    assert!(page2.snapshot.is_none(), "cursor is past the snapshot");
    assert_eq!(
        page2.envelopes.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![seqs[5]]
    );
    assert!(!page2.more);
    // A cursor after the snapshot ignores it.
    let page = s.pull(rid, "notes", seqs[3], 10).await.unwrap();
    assert!(page.snapshot.is_none());
    assert_eq!(page.envelopes.len(), 2);
    // Snapshot only, no later envelopes: next is upto_seq.
    assert_eq!(
        s.put_snapshot(rid, "notes", seqs[5], b"snap-d".to_vec())
            .await
            .unwrap(),
        SnapshotOutcome::Replaced
    );
    let page = s.pull(rid, "notes", 0, 10).await.unwrap();
    assert_eq!(page.snapshot.as_ref().unwrap().bytes, b"snap-d");
    assert!(page.envelopes.is_empty());
    assert_eq!(page.next(0), seqs[5]);
    assert_eq!(
        s.put_snapshot(RecordId::random(), "notes", 1, vec![]).await,
        Err(StorageError::NotFound)
    );
}

async fn links(s: &dyn Storage) {
    let rid = RecordId::random();
    let creator = IdentityId::random();
    let joiner = IdentityId::random();
    let id = "00112233445566778899aabbccddeeff";
    let now = 1_000_000;
    s.create_link(id, rid, creator, now + 600_000, now)
        .await
        .unwrap();
    assert_eq!(
        s.create_link(id, rid, creator, now + 600_000, now).await,
        Err(StorageError::Conflict("link already exists"))
    );
    let link = s.get_link(id, now).await.unwrap().unwrap();
    assert_eq!(link.record, rid);
    assert_eq!(link.creator, creator);
    assert_eq!(
        (link.joiner, link.join.clone(), link.accept.clone()),
        (None, None, None)
    );
    assert_eq!(link.expires_at_ms, now + 600_000);

    assert!(matches!(
        s.accept_link(id, b"early".to_vec(), now).await,
        Err(StorageError::Conflict(_))
    ));
    s.join_link(id, joiner, b"card+mac".to_vec(), now + 1)
        .await
        .unwrap();
    assert!(matches!(
        s.join_link(id, IdentityId::random(), b"again".to_vec(), now + 2)
            .await,
        Err(StorageError::Conflict(_))
    ));
    s.accept_link(id, b"wrapped keys".to_vec(), now + 3)
        .await
        .unwrap();
    assert!(matches!(
        s.accept_link(id, b"twice".to_vec(), now + 4).await,
        Err(StorageError::Conflict(_))
    ));
    let link = s.get_link(id, now + 5).await.unwrap().unwrap();
    assert_eq!(link.joiner, Some(joiner));
    assert_eq!(link.join.as_deref(), Some(&b"card+mac"[..]));
    assert_eq!(link.accept.as_deref(), Some(&b"wrapped keys"[..]));

    // Expiry: gone for reads and writes, and its id can be reused.
    let later = now + 600_000;
    assert_eq!(s.get_link(id, later).await.unwrap(), None);
    let id2 = "ffeeddccbbaa99887766554433221100";
    s.create_link(id2, rid, creator, now + 10, now)
        .await
        .unwrap();
    assert_eq!(
        s.join_link(id2, joiner, b"late".to_vec(), now + 10).await,
        Err(StorageError::NotFound)
    );
    assert_eq!(
        s.join_link("0000", joiner, b"x".to_vec(), now).await,
        Err(StorageError::NotFound)
    );
    s.create_link(id, rid, joiner, later + 100, later)
        .await
        .unwrap();
    assert_eq!(
        s.get_link(id, later).await.unwrap().unwrap().creator,
        joiner
    );
    assert!(s.purge_expired(later + 1_000).await.unwrap() >= 1);
    assert_eq!(s.get_link(id, 0).await.unwrap(), None, "purged");
}

async fn notifications(s: Arc<dyn Storage>) {
    let rid = RecordId::random();
    let owner = IdentityId::random();
    s.register_record(rid, owner, vec![1], 1).await.unwrap();
    let mut rx = s.subscribe();
    let got = s
        .append_envelopes(rid, "meds", vec![env(90, owner), env(91, owner)], by())
        .await
        .unwrap();
    let change = loop {
        let c = tokio::time::timeout(std::time::Duration::from_secs(10), rx.recv())
            .await
            .expect("change notification")
            .unwrap();
        if c.record == rid {
            break c;
        }
    };
    assert_eq!(change.section, "meds");
    assert_eq!(change.seq, got[1].seq);
    // A batch of duplicates announces nothing new.
    s.append_envelopes(rid, "meds", vec![env(90, owner)], by())
        .await
        .unwrap();
    s.append_envelopes(rid, "meds", vec![env(92, owner)], by())
        .await
        .unwrap();
    let next = loop {
        let c = tokio::time::timeout(std::time::Duration::from_secs(10), rx.recv())
            .await
            .unwrap()
            .unwrap();
        if c.record == rid {
            break c;
        }
    };
    assert!(next.seq > got[1].seq, "the duplicate batch sent nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_conformance_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let storage =
        satchel_sync_server::storage::sqlite::SqliteStorage::open(&dir.path().join("relay.db"))
            .unwrap();
    conformance(Arc::new(storage)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_conformance_sqlite_concurrent_group_commit() {
    // Many concurrent batches share transactions; each keeps its own
    // atomicity and every seq is unique.
    let dir = tempfile::tempdir().unwrap();
    let s: Arc<dyn Storage> = Arc::new(
        satchel_sync_server::storage::sqlite::SqliteStorage::open(&dir.path().join("relay.db"))
            .unwrap(),
    );
    let rid = RecordId::random();
    let owner = IdentityId::random();
    s.register_record(rid, owner, vec![1], 1).await.unwrap();
    s.append_envelopes(rid, "a", vec![env(0, owner)], by())
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for t in 0..40u8 {
        let s = Arc::clone(&s);
        tasks.push(tokio::spawn(async move {
            let mut batch: Vec<_> = (0..5u8)
                .map(|i| {
                    let mut e = env(1, owner);
                    e.bytes.extend_from_slice(&[t, i]);
                    e.author_seq = u64::from(t) * 100 + u64::from(i);
                    e.hash = ring::digest::digest(&ring::digest::SHA256, &e.bytes)
                        .as_ref()
                        .try_into()
                        .unwrap();
                    e
                })
                .collect();
            if t % 4 == 0 {
                // Poison: an empty envelope at the end.
                let mut poison = env(0, owner);
                poison.bytes.clear();
                batch.push(poison);
            }
            s.append_envelopes(rid, "b", batch, by()).await
        }));
    }
    let mut stored = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(a) => stored += a.len(),
            Err(StorageError::Conflict(_)) => {}
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(stored, 30 * 5);
    let page = s.pull(rid, "b", 0, 1000).await.unwrap();
    assert_eq!(page.envelopes.len(), 150);
    s.close().await;
    assert_eq!(
        s.append_envelopes(rid, "b", vec![env(7, owner)], by())
            .await,
        Err(StorageError::Closed)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_conformance_postgres() {
    let Some((url, schema)) = common::pg_test_schema().await else {
        common::pg_unreachable("storage_conformance_postgres");
        return;
    };
    let opened =
        satchel_sync_server::storage::postgres::PostgresStorage::open(&url, Some(&schema)).await;
    let storage = match opened {
        Ok(s) => s,
        Err(e) => {
            common::pg_drop_schema(&url, &schema).await;
            panic!("open postgres storage: {e}");
        }
    };
    assert_eq!(storage.kind(), "postgres");
    // Run the suite; drop the schema whatever happens.
    let result = tokio::spawn(conformance(Arc::new(storage))).await;
    // A second open of the same schema is a no-op migration.
    if result.is_ok() {
        let again =
            satchel_sync_server::storage::postgres::PostgresStorage::open(&url, Some(&schema))
                .await
                .unwrap();
        again.close().await;
    }
    common::pg_drop_schema(&url, &schema).await;
    if let Err(e) = result {
        std::panic::resume_unwind(e.into_panic());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_sqlite_upgrades_from_schema_1() {
    // A relay database written by schema 1 (owner devices only) opens under
    // the sharing schema with its members intact and the creator's card
    // moved onto the record.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("relay.db");
    let rid = RecordId::random();
    let owner = IdentityId::random();
    let device = IdentityId::random();
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(include_str!(
            "../../sync-server/src/storage/sqlite/migrations/0001_init.sql"
        ))
        .unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
        conn.execute(
            "INSERT INTO records (record_id, owner, created_at_ms) VALUES (?1, ?2, 1)",
            rusqlite::params![&rid.as_bytes()[..], &owner.as_bytes()[..]],
        )
        .unwrap();
        for (who, card) in [(owner, vec![1u8, 2]), (device, vec![3u8])] {
            conn.execute(
                "INSERT INTO members (record_id, identity, role, card)
                 VALUES (?1, ?2, 'owner-device', ?3)",
                rusqlite::params![&rid.as_bytes()[..], &who.as_bytes()[..], card],
            )
            .unwrap();
        }
    }
    let s = satchel_sync_server::storage::sqlite::SqliteStorage::open(&path).unwrap();
    assert_eq!(s.record_root(rid).await.unwrap(), Some((owner, vec![1, 2])));
    for who in [owner, device] {
        assert_eq!(
            s.membership(rid, who).await.unwrap(),
            Membership::Member(Rights::owner_device())
        );
    }
    assert_eq!(s.members(rid).await.unwrap().len(), 2);
    s.append_envelopes(rid, "vitals", vec![env(1, owner)], by())
        .await
        .unwrap();
    assert_eq!(s.audit(rid, 0, 10).await.unwrap().len(), 1);
    // ...and the share-link tables (migration 6) are there for it.
    let link = new_share_link(rid, owner);
    s.create_share_link(link.clone(), 10).await.unwrap();
    assert_eq!(s.list_share_links(rid).await.unwrap().len(), 1);
    s.close().await;
}

// ----- checks with one named test per backend -----

/// Run `check` on a fresh storage of `backend` (`sqlite` or `postgres`);
/// PostgreSQL: a fresh schema, dropped afterwards (fail under CI without a
/// database).
async fn on_backend<F, Fut>(backend: &str, test: &str, check: F)
where
    F: FnOnce(Arc<dyn Storage>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    match backend {
        "sqlite" => {
            let dir = tempfile::tempdir().unwrap();
            let s: Arc<dyn Storage> = Arc::new(
                satchel_sync_server::storage::sqlite::SqliteStorage::open(
                    &dir.path().join("relay.db"),
                )
                .unwrap(),
            );
            check(Arc::clone(&s)).await;
            s.close().await;
        }
        _ => {
            let Some((url, schema)) = common::pg_test_schema().await else {
                common::pg_unreachable(test);
                return;
            };
            let s: Arc<dyn Storage> = Arc::new(
                satchel_sync_server::storage::postgres::PostgresStorage::open(&url, Some(&schema))
                    .await
                    .unwrap(),
            );
            let result = tokio::spawn(check(Arc::clone(&s))).await;
            s.close().await;
            common::pg_drop_schema(&url, &schema).await;
            if let Err(e) = result {
                std::panic::resume_unwind(e.into_panic());
            }
        }
    }
}

/// One `#[tokio::test]` per backend for each named check.
macro_rules! on_every_backend {
    ($($check:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $check() {
                    super::on_backend("sqlite", stringify!($check), super::$check).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $check() {
                    super::on_backend("postgres", stringify!($check), super::$check).await;
                }
            )*
        }
    };
}

on_every_backend!(
    revoke_sessions_ends_every_token_of_the_identity,
    revocations_are_listed_from_a_time_and_purged,
    replica_heads_list_each_records_newest_positions,
    forwarded_audit_events_are_stored_once_tagged_with_their_relay,
    replicated_envelopes_are_not_audited_again,
    share_links_are_created_once_and_read_back,
    share_link_files_are_replaced_on_live_links_only,
    revoking_a_share_link_removes_its_files_and_locations,
    share_link_attempts_never_go_below_zero_under_concurrency,
    share_link_opens_are_recorded_in_order,
    share_link_max_opens_ends_the_link,
    share_link_locations_expire,
);

/// A record registered with its owner and `relay` as a replica (one
/// statement, so its access head is that statement's seq).
async fn replicated_record(s: &dyn Storage, relay: IdentityId) -> (RecordId, IdentityId, i64) {
    let rid = RecordId::random();
    let owner = IdentityId::random();
    s.register_record(rid, owner, vec![1], 1).await.unwrap();
    let rows = vec![
        owner_row(owner, vec![1]),
        Member {
            identity: relay,
            access: Rights::replica(),
            card: vec![9],
        },
    ];
    let seq = match s
        .append_statement(rid, rid.as_bytes().to_vec(), vec![0; 64], [0; 32], rows)
        .await
        .unwrap()
    {
        StatementOutcome::Appended(seq) => seq,
        other => panic!("{other:?}"),
    };
    (rid, owner, seq)
}

async fn replica_heads_list_each_records_newest_positions(s: Arc<dyn Storage>) {
    let relay = IdentityId::random();
    let (a, owner_a, access_a) = replicated_record(&*s, relay).await;
    let (b, _, access_b) = replicated_record(&*s, relay).await;
    let (unnamed, _, _) = replicated_record(&*s, IdentityId::random()).await;
    let va = s
        .append_envelopes(a, "vitals", vec![env(1, owner_a), env(2, owner_a)], by())
        .await
        .unwrap();
    let la = s
        .append_envelopes(a, "labs", vec![env(3, owner_a)], by())
        .await
        .unwrap();
    s.append_envelopes(unnamed, "vitals", vec![env(4, owner_a)], by())
        .await
        .unwrap();
    let heads = s.replica_heads(relay, None, 100).await.unwrap();
    let mut want = vec![
        RecordHeadsRow {
            record: a,
            access: access_a,
            logs: vec![("labs".into(), la[0].seq), ("vitals".into(), va[1].seq)],
        },
        RecordHeadsRow {
            record: b,
            access: access_b,
            logs: vec![],
        },
    ];
    want.sort_by_key(|h| h.record);
    assert_eq!(heads, want, "one row per named record, logs by name");
    let first = s.replica_heads(relay, None, 1).await.unwrap();
    assert_eq!(first, want[..1]);
    assert_eq!(
        s.replica_heads(relay, Some(first[0].record), 10)
            .await
            .unwrap(),
        want[1..]
    );
    assert!(s
        .replica_heads(IdentityId::random(), None, 10)
        .await
        .unwrap()
        .is_empty());
}

async fn forwarded_audit_events_are_stored_once_tagged_with_their_relay(s: Arc<dyn Storage>) {
    let relay = IdentityId::random();
    let (rid, _, _) = replicated_record(&*s, relay).await;
    let clinician = IdentityId::random();
    let event = |at_ms: i64| AuditEvent {
        seq: 0,
        record: rid,
        at_ms,
        identity: clinician,
        action: AuditAction::Pull,
        section: "vitals".into(),
        count: 2,
        relay: None,
    };
    let stored = s
        .record_forwarded_audit(rid, relay, vec![(7, event(10)), (8, event(11))])
        .await
        .unwrap();
    assert_eq!(stored, 2);
    // Sent again (a replica that stopped before moving its cursor), and
    // the same seq from another relay: only the other relay's is new.
    let again = s
        .record_forwarded_audit(rid, relay, vec![(8, event(11))])
        .await
        .unwrap();
    assert_eq!(again, 0);
    let other = IdentityId::random();
    assert_eq!(
        s.record_forwarded_audit(rid, other, vec![(8, event(12))])
            .await
            .unwrap(),
        1
    );
    s.record_audit(event(13)).await.unwrap();
    let trail: Vec<_> = s
        .audit(rid, 0, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.at_ms, e.relay))
        .collect();
    assert_eq!(
        trail,
        vec![
            (10, Some(relay)),
            (11, Some(relay)),
            (12, Some(other)),
            (13, None)
        ]
    );
    assert!(matches!(
        s.record_forwarded_audit(RecordId::random(), relay, vec![(1, event(1))])
            .await,
        Err(StorageError::NotFound)
    ));
}

async fn replicated_envelopes_are_not_audited_again(s: Arc<dyn Storage>) {
    let relay = IdentityId::random();
    let (rid, owner, _) = replicated_record(&*s, relay).await;
    let mut replicated = by();
    replicated.origin = Some("https://cloud.example".into());
    s.append_envelopes(rid, "vitals", vec![env(1, owner)], replicated)
        .await
        .unwrap();
    let mut from_replica = by();
    from_replica.origin = Some(format!("replica:{relay}"));
    s.append_envelopes(rid, "vitals", vec![env(2, owner)], from_replica)
        .await
        .unwrap();
    assert!(
        s.audit(rid, 0, 100).await.unwrap().is_empty(),
        "pushes written at another relay are audited there"
    );
    s.append_envelopes(rid, "vitals", vec![env(3, owner)], by())
        .await
        .unwrap();
    assert_eq!(s.audit(rid, 0, 100).await.unwrap().len(), 1);
}

async fn revoke_sessions_ends_every_token_of_the_identity(s: Arc<dyn Storage>) {
    let who = IdentityId::random();
    let other = IdentityId::random();
    s.put_token([11u8; 32], who, 10_000).await.unwrap();
    s.put_token([12u8; 32], who, 10_000).await.unwrap();
    s.put_token([13u8; 32], other, 10_000).await.unwrap();
    assert_eq!(s.revoke_sessions(who, 100).await.unwrap(), 2);
    assert_eq!(s.token([11u8; 32], 200).await.unwrap(), None);
    assert_eq!(s.token([12u8; 32], 200).await.unwrap(), None);
    assert_eq!(
        s.token([13u8; 32], 200).await.unwrap(),
        Some((other, 10_000)),
        "another identity's session is untouched"
    );
    // Revoking again ends nothing more, and is still recorded.
    assert_eq!(s.revoke_sessions(who, 150).await.unwrap(), 0);
    // A token issued after the revocation works (the identity logged in
    // again: revocation is of sessions, not of membership).
    s.put_token([14u8; 32], who, 10_000).await.unwrap();
    assert_eq!(s.token([14u8; 32], 200).await.unwrap(), Some((who, 10_000)));
}

async fn revocations_are_listed_from_a_time_and_purged(s: Arc<dyn Storage>) {
    let a = IdentityId::random();
    let b = IdentityId::random();
    s.revoke_sessions(a, 1_000).await.unwrap();
    s.revoke_sessions(b, 2_000).await.unwrap();
    let all = s.revocations_since(0).await.unwrap();
    assert_eq!(
        all.iter()
            .map(|r| (r.identity, r.at_ms))
            .collect::<Vec<_>>(),
        vec![(a, 1_000), (b, 2_000)]
    );
    assert!(all[0].seq < all[1].seq, "positions increase");
    let recent = s.revocations_since(1_500).await.unwrap();
    assert_eq!(recent.len(), 1);
    assert_eq!(recent[0].identity, b);
    let keep = satchel_sync_server::storage::REVOCATION_KEEP_MS;
    s.purge_expired(1_000 + keep).await.unwrap();
    assert_eq!(
        s.revocations_since(0).await.unwrap().len(),
        1,
        "the older one is purged"
    );
    s.purge_expired(2_000 + keep).await.unwrap();
    assert!(s.revocations_since(0).await.unwrap().is_empty());
}

// ----- share links -----

fn share_file(n: u8) -> ShareFile {
    ShareFile {
        content_type: "application/fhir+json".into(),
        jwe: format!("eyJhbGciOiJkaXIifQ..{n}.{n}{n}.{n}"),
    }
}

fn new_share_link(record: RecordId, owner: IdentityId) -> NewShareLink {
    NewShareLink {
        handle: ShareLinkHandle::random(),
        record,
        created_by: owner,
        expires_at_ms: None,
        passcode_hash: None,
        attempts: None,
        max_opens: None,
        direct: false,
        files: vec![share_file(1), share_file(2)],
    }
}

async fn share_record(s: &dyn Storage) -> (RecordId, IdentityId) {
    let rid = RecordId::random();
    let owner = IdentityId::random();
    s.register_record(rid, owner, vec![1], 1).await.unwrap();
    (rid, owner)
}

fn open(at_ms: i64, recipient: &str, kind: ShareLinkOpenKind) -> ShareOpen {
    ShareOpen {
        at_ms,
        recipient: recipient.into(),
        kind,
    }
}

async fn share_links_are_created_once_and_read_back(s: Arc<dyn Storage>) {
    let (rid, owner) = share_record(&*s).await;
    let mut link = new_share_link(rid, owner);
    link.expires_at_ms = Some(5_000);
    link.passcode_hash = Some("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into());
    link.attempts = Some(3);
    link.max_opens = Some(2);
    s.create_share_link(link.clone(), 100).await.unwrap();
    let row = s.share_link(rid, link.handle).await.unwrap().unwrap();
    assert_eq!(row.handle, link.handle);
    assert_eq!(row.record, rid);
    assert_eq!(row.created_by, owner);
    assert_eq!((row.created_at_ms, row.updated_at_ms), (100, 100));
    assert_eq!(row.expires_at_ms, Some(5_000));
    assert_eq!(row.revoked_at_ms, None);
    assert_eq!(row.passcode_hash, link.passcode_hash);
    assert_eq!((row.attempts_left, row.opens_left), (Some(3), Some(2)));
    assert!(!row.direct);
    assert!(row.live(4_999) && !row.live(5_000));
    assert_eq!(
        s.share_link_by_handle(link.handle).await.unwrap(),
        Some(row)
    );
    assert_eq!(
        s.share_link(RecordId::random(), link.handle).await.unwrap(),
        None,
        "another record's link is not this record's"
    );
    assert_eq!(
        s.create_share_link(link.clone(), 200).await,
        Err(StorageError::Conflict("share link handle in use")),
        "a handle is used once"
    );
    let mut orphan = new_share_link(RecordId::random(), owner);
    orphan.direct = true;
    assert_eq!(
        s.create_share_link(orphan.clone(), 200).await,
        Err(StorageError::NotFound)
    );
    assert_eq!(s.share_link_by_handle(orphan.handle).await.unwrap(), None);
    let (listed, _) = s.list_share_links(rid).await.unwrap().remove(0);
    assert_eq!(listed.handle, link.handle);
}

async fn share_link_files_are_replaced_on_live_links_only(s: Arc<dyn Storage>) {
    let (rid, owner) = share_record(&*s).await;
    let link = new_share_link(rid, owner);
    s.create_share_link(link.clone(), 100).await.unwrap();
    s.add_share_link_locations(link.handle, vec![([1; 32], 0)], 10_000)
        .await
        .unwrap();
    s.replace_share_link_files(rid, link.handle, vec![share_file(7)], 150)
        .await
        .unwrap();
    let row = s.share_link(rid, link.handle).await.unwrap().unwrap();
    assert_eq!(row.updated_at_ms, 150);
    let files = s
        .open_share_link(link.handle, open(160, "Dr A", ShareLinkOpenKind::Manifest))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(files, vec![share_file(7)]);
    assert_eq!(
        s.share_link_location(link.handle, [1; 32], 170)
            .await
            .unwrap(),
        None,
        "outstanding locations end with the files they named"
    );
    assert_eq!(
        s.replace_share_link_files(RecordId::random(), link.handle, vec![share_file(8)], 170)
            .await,
        Err(StorageError::NotFound),
        "only through its own record"
    );
    let mut expiring = new_share_link(rid, owner);
    expiring.expires_at_ms = Some(200);
    s.create_share_link(expiring.clone(), 100).await.unwrap();
    assert_eq!(
        s.replace_share_link_files(rid, expiring.handle, vec![share_file(8)], 200)
            .await,
        Err(StorageError::NotFound),
        "an expired link takes no files"
    );
    s.revoke_share_link(rid, link.handle, 300).await.unwrap();
    assert_eq!(
        s.replace_share_link_files(rid, link.handle, vec![share_file(8)], 310)
            .await,
        Err(StorageError::NotFound),
        "a revoked link takes no files"
    );
}

async fn revoking_a_share_link_removes_its_files_and_locations(s: Arc<dyn Storage>) {
    let (rid, owner) = share_record(&*s).await;
    let link = new_share_link(rid, owner);
    s.create_share_link(link.clone(), 100).await.unwrap();
    s.add_share_link_locations(link.handle, vec![([2; 32], 1)], 10_000)
        .await
        .unwrap();
    assert_eq!(
        s.share_link_location(link.handle, [2; 32], 200)
            .await
            .unwrap(),
        Some(share_file(2))
    );
    assert_eq!(
        s.share_link_location(ShareLinkHandle::random(), [2; 32], 200)
            .await
            .unwrap(),
        None,
        "a token works for its own link only"
    );
    assert_eq!(
        s.revoke_share_link(RecordId::random(), link.handle, 300)
            .await,
        Err(StorageError::NotFound)
    );
    assert_eq!(
        s.revoke_share_link(rid, link.handle, 300).await.unwrap(),
        300
    );
    assert_eq!(
        s.revoke_share_link(rid, link.handle, 400).await.unwrap(),
        300,
        "revoking again changes nothing"
    );
    assert_eq!(
        s.share_link_location(link.handle, [2; 32], 400)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        s.open_share_link(link.handle, open(400, "Dr A", ShareLinkOpenKind::Manifest))
            .await
            .unwrap(),
        None
    );
    let row = s.share_link(rid, link.handle).await.unwrap().unwrap();
    assert_eq!(row.revoked_at_ms, Some(300));
    assert!(!row.live(400));
    assert_eq!(
        s.revoke_share_link(rid, ShareLinkHandle::random(), 300)
            .await,
        Err(StorageError::NotFound)
    );
    // Nothing of the files is left: a new link under another handle with
    // the same index does not see them either.
    s.add_share_link_locations(link.handle, vec![([3; 32], 0)], 10_000)
        .await
        .unwrap();
    assert_eq!(
        s.share_link_location(link.handle, [3; 32], 500)
            .await
            .unwrap(),
        None
    );
}

async fn share_link_attempts_never_go_below_zero_under_concurrency(s: Arc<dyn Storage>) {
    let (rid, owner) = share_record(&*s).await;
    let mut link = new_share_link(rid, owner);
    link.passcode_hash = Some("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into());
    link.attempts = Some(10);
    s.create_share_link(link.clone(), 100).await.unwrap();
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let s = Arc::clone(&s);
        let handle = link.handle;
        tasks.push(tokio::spawn(async move {
            s.reserve_share_link_attempt(handle, 200).await.unwrap()
        }));
    }
    let mut left = Vec::new();
    for t in tasks {
        if let Some(n) = t.await.unwrap() {
            left.push(n);
        }
    }
    left.sort_unstable();
    assert_eq!(left, (0..10).collect::<Vec<u32>>(), "each count once");
    let row = s.share_link(rid, link.handle).await.unwrap().unwrap();
    assert_eq!(row.attempts_left, Some(0));
    assert!(!row.live(200), "out of attempts: dead");
    assert_eq!(
        s.reserve_share_link_attempt(link.handle, 200)
            .await
            .unwrap(),
        None
    );
    // A reservation given back (a right passcode) is there again.
    let mut other = new_share_link(rid, owner);
    other.passcode_hash = link.passcode_hash.clone();
    other.attempts = Some(1);
    s.create_share_link(other.clone(), 100).await.unwrap();
    assert_eq!(
        s.reserve_share_link_attempt(other.handle, 200)
            .await
            .unwrap(),
        Some(0)
    );
    s.release_share_link_attempt(other.handle).await.unwrap();
    assert_eq!(
        s.share_link(rid, other.handle)
            .await
            .unwrap()
            .unwrap()
            .attempts_left,
        Some(1)
    );
    // A link without a passcode has no attempts to reserve.
    let plain = new_share_link(rid, owner);
    s.create_share_link(plain.clone(), 100).await.unwrap();
    assert_eq!(
        s.reserve_share_link_attempt(plain.handle, 200)
            .await
            .unwrap(),
        None
    );
}

async fn share_link_opens_are_recorded_in_order(s: Arc<dyn Storage>) {
    let (rid, owner) = share_record(&*s).await;
    let first = new_share_link(rid, owner);
    s.create_share_link(first.clone(), 100).await.unwrap();
    let second = new_share_link(rid, owner);
    s.create_share_link(second.clone(), 101).await.unwrap();
    s.record_share_link_open(
        first.handle,
        open(200, "Dr Wrong", ShareLinkOpenKind::WrongPasscode),
    )
    .await
    .unwrap();
    let files = s
        .open_share_link(first.handle, open(300, "Dr A", ShareLinkOpenKind::Manifest))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(files, vec![share_file(1), share_file(2)], "files in order");
    s.open_share_link(
        second.handle,
        open(250, "Nurse B", ShareLinkOpenKind::Direct),
    )
    .await
    .unwrap()
    .unwrap();
    s.open_share_link(first.handle, open(400, "Dr C", ShareLinkOpenKind::Manifest))
        .await
        .unwrap()
        .unwrap();
    let listed = s.list_share_links(rid).await.unwrap();
    assert_eq!(
        listed.iter().map(|(l, _)| l.handle).collect::<Vec<_>>(),
        vec![first.handle, second.handle],
        "links oldest first"
    );
    assert_eq!(
        listed[0].1,
        vec![
            open(200, "Dr Wrong", ShareLinkOpenKind::WrongPasscode),
            open(300, "Dr A", ShareLinkOpenKind::Manifest),
            open(400, "Dr C", ShareLinkOpenKind::Manifest),
        ]
    );
    assert_eq!(
        listed[1].1,
        vec![open(250, "Nurse B", ShareLinkOpenKind::Direct)]
    );
    assert!(s
        .list_share_links(RecordId::random())
        .await
        .unwrap()
        .is_empty());
}

async fn share_link_max_opens_ends_the_link(s: Arc<dyn Storage>) {
    let (rid, owner) = share_record(&*s).await;
    let mut link = new_share_link(rid, owner);
    link.max_opens = Some(2);
    s.create_share_link(link.clone(), 100).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..10 {
        let s = Arc::clone(&s);
        let handle = link.handle;
        tasks.push(tokio::spawn(async move {
            s.open_share_link(handle, open(200 + i, "Dr A", ShareLinkOpenKind::Manifest))
                .await
                .unwrap()
        }));
    }
    let mut served = 0;
    for t in tasks {
        if t.await.unwrap().is_some() {
            served += 1;
        }
    }
    assert_eq!(served, 2, "exactly max_opens opens are served");
    let (row, opens) = s.list_share_links(rid).await.unwrap().remove(0);
    assert_eq!(row.opens_left, Some(0));
    assert!(!row.live(300));
    assert_eq!(opens.len(), 2, "refused opens are not recorded");
    // Locations handed out by the last open still work.
    s.add_share_link_locations(link.handle, vec![([4; 32], 0)], 10_000)
        .await
        .unwrap();
    assert_eq!(
        s.share_link_location(link.handle, [4; 32], 300)
            .await
            .unwrap(),
        Some(share_file(1))
    );
}

async fn share_link_locations_expire(s: Arc<dyn Storage>) {
    let (rid, owner) = share_record(&*s).await;
    let link = new_share_link(rid, owner);
    s.create_share_link(link.clone(), 100).await.unwrap();
    s.add_share_link_locations(link.handle, vec![([5; 32], 1), ([6; 32], 0)], 1_000)
        .await
        .unwrap();
    assert_eq!(
        s.share_link_location(link.handle, [5; 32], 999)
            .await
            .unwrap(),
        Some(share_file(2))
    );
    assert_eq!(
        s.share_link_location(link.handle, [6; 32], 999)
            .await
            .unwrap(),
        Some(share_file(1))
    );
    assert_eq!(
        s.share_link_location(link.handle, [5; 32], 1_000)
            .await
            .unwrap(),
        None,
        "expired"
    );
    assert!(s.purge_expired(1_000).await.unwrap() >= 2);
    assert_eq!(
        s.share_link_location(link.handle, [6; 32], 500)
            .await
            .unwrap(),
        None,
        "purged"
    );
    // A link that expires takes its locations with it.
    let mut expiring = new_share_link(rid, owner);
    expiring.expires_at_ms = Some(2_000);
    s.create_share_link(expiring.clone(), 100).await.unwrap();
    s.add_share_link_locations(expiring.handle, vec![([7; 32], 0)], 10_000)
        .await
        .unwrap();
    assert!(s
        .share_link_location(expiring.handle, [7; 32], 1_999)
        .await
        .unwrap()
        .is_some());
    assert!(s
        .share_link_location(expiring.handle, [7; 32], 2_000)
        .await
        .unwrap()
        .is_none());
}
