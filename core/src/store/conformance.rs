//! The conformance suite every [`Store`] backend must pass. Each backend's
//! test module calls [`run_all`] with a factory for fresh, empty stores.

#![allow(clippy::unwrap_used)]

use super::{envelope_hash, Owed, Store, StoreError, WriteBatch};
use satchel_protocol::{LogName, Section};

const LABS: LogName = LogName::Section(Section::Labs);
const NOTES: LogName = LogName::Section(Section::Notes);
const VITALS: LogName = LogName::Section(Section::Vitals);
const ALLERGIES: LogName = LogName::Section(Section::Allergies);
const DOCUMENTS: LogName = LogName::Section(Section::Documents);

/// Run every conformance check against fresh stores from `make`.
pub(crate) fn run_all<S: Store>(mut make: impl FnMut() -> S) {
    empty_store(&mut make());
    meta_put_get_delete(&mut make());
    append_assigns_increasing_seqs(&mut make());
    sections_are_separate(&mut make());
    snapshot_hides_covered_log(&mut make());
    failed_batch_changes_nothing(&mut make());
    empty_batch_is_fine(&mut make());
    large_values_round_trip(&mut make());
    outbox_until_acknowledged(&mut make());
    received_envelopes_are_deduplicated(&mut make());
    duplicate_local_change_is_refused(&mut make());
    reseal_replaces_an_unsent_envelope_in_place(&mut make());
    set_aside_leaves_the_outbox_but_stays_stored(&mut make());
    direct_receipts_forward_once_and_are_acknowledged_by_a_pull(&mut make());
    log_hashes_and_envelopes_in_store_order(&mut make());
    each_relay_is_owed_what_it_has_not_acknowledged(&mut make());
    a_move_owes_everything_but_what_was_set_aside(&mut make());
}

fn owed(s: &impl Store, relay: &str, owed: Owed) -> Vec<Vec<u8>> {
    s.owed(relay, owed, 100)
        .unwrap()
        .into_iter()
        .map(|o| o.envelope)
        .collect()
}

fn each_relay_is_owed_what_it_has_not_acknowledged<S: Store>(s: &mut S) {
    const A: &str = "https://a.example";
    const B: &str = "https://b.example";
    let mut b = WriteBatch::new();
    b.append(LABS, vec![1]).append(NOTES, vec![2]);
    s.commit(b).unwrap();
    assert_eq!(owed(s, A, Owed::Outbox), vec![vec![1], vec![2]]);
    // Relay A acknowledges 1, and serves 2 back in a pull: both leave A's
    // outbox, not B's.
    let mut b = WriteBatch::new();
    b.acknowledge(Some(A), envelope_hash(&[1]), 10)
        .receive(NOTES, vec![2], Some(A), 11)
        .receive(LABS, vec![3], Some(A), 12);
    s.commit(b).unwrap();
    assert!(owed(s, A, Owed::Outbox).is_empty());
    assert_eq!(owed(s, B, Owed::Outbox), vec![vec![1], vec![2]]);
    // Some relay holds both: nothing is left that no relay has.
    assert!(s.outbox(10).unwrap().is_empty());
    // Envelopes received from a relay are not B's outbox (their authors
    // send them), and an acknowledgement of an envelope not stored here
    // changes nothing.
    let mut b = WriteBatch::new();
    b.acknowledge(Some(B), envelope_hash(&[2]), 5)
        .acknowledge(Some(B), envelope_hash(&[9]), 6);
    s.commit(b).unwrap();
    assert_eq!(owed(s, B, Owed::Outbox), vec![vec![1]]);
    assert_eq!(s.owed(B, Owed::Outbox, 0).unwrap().len(), 0);
    // An acknowledgement without a relay only says some relay holds it.
    let mut b = WriteBatch::new();
    b.append(VITALS, vec![4]);
    s.commit(b).unwrap();
    let mut b = WriteBatch::new();
    b.acknowledge(None, envelope_hash(&[4]), 7);
    s.commit(b).unwrap();
    assert!(s.outbox(10).unwrap().is_empty());
    assert_eq!(owed(s, A, Owed::Outbox), vec![vec![4]]);
}

fn a_move_owes_everything_but_what_was_set_aside<S: Store>(s: &mut S) {
    const NEW: &str = "https://new.example";
    let mut b = WriteBatch::new();
    b.append(LABS, vec![1])
        .append(LABS, vec![2])
        .receive(NOTES, vec![3], Some("https://old.example"), 1)
        .receive_direct(NOTES, vec![4], false);
    s.commit(b).unwrap();
    let mut b = WriteBatch::new();
    b.set_aside(envelope_hash(&[2]));
    s.commit(b).unwrap();
    // Everything held (made here, pulled, received directly), in store
    // order, except the envelope a relay refused for good.
    assert_eq!(
        owed(s, NEW, Owed::Everything),
        vec![vec![1], vec![3], vec![4]]
    );
    assert_eq!(owed(s, NEW, Owed::Outbox), vec![vec![1]]);
    let mut b = WriteBatch::new();
    b.acknowledge(Some(NEW), envelope_hash(&[1]), 1)
        .acknowledge(Some(NEW), envelope_hash(&[3]), 2);
    s.commit(b).unwrap();
    assert_eq!(owed(s, NEW, Owed::Everything), vec![vec![4]]);
    let mut b = WriteBatch::new();
    b.acknowledge(Some(NEW), envelope_hash(&[4]), 3);
    s.commit(b).unwrap();
    assert!(owed(s, NEW, Owed::Everything).is_empty());
}

fn direct_receipts_forward_once_and_are_acknowledged_by_a_pull<S: Store>(s: &mut S) {
    let mut b = WriteBatch::new();
    b.append(LABS, vec![1]);
    s.commit(b).unwrap();
    // From a nearby device: one to forward, one only kept, one we hold.
    let mut b = WriteBatch::new();
    b.receive_direct(LABS, vec![2], true)
        .receive_direct(LABS, vec![3], false)
        .receive_direct(LABS, vec![1], true)
        .receive_direct(LABS, vec![2], true);
    let c = s.commit(b).unwrap();
    assert_eq!(c.received.len(), 4);
    assert!(c.received[0].is_some() && c.received[1].is_some());
    assert!(c.received[2].is_none() && c.received[3].is_none());
    let queued: Vec<Vec<u8>> = s
        .outbox(10)
        .unwrap()
        .into_iter()
        .map(|o| o.envelope)
        .collect();
    assert_eq!(queued, vec![vec![1], vec![2]]);
    // The relay later serves the forwarded one: acknowledged, stored once.
    let mut b = WriteBatch::new();
    b.receive(LABS, vec![2], None, 40);
    s.commit(b).unwrap();
    let queued: Vec<Vec<u8>> = s
        .outbox(10)
        .unwrap()
        .into_iter()
        .map(|o| o.envelope)
        .collect();
    assert_eq!(queued, vec![vec![1]]);
    assert_eq!(s.load_section(LABS).unwrap().tail.len(), 3);
}

fn log_hashes_and_envelopes_in_store_order<S: Store>(s: &mut S) {
    assert!(s.log_hashes(LABS).unwrap().is_empty());
    let mut b = WriteBatch::new();
    b.append(LABS, vec![9])
        .append(NOTES, vec![8])
        .receive(LABS, vec![7], None, 3)
        .receive_direct(LABS, vec![6], false);
    s.commit(b).unwrap();
    let hashes = s.log_hashes(LABS).unwrap();
    assert_eq!(
        hashes,
        vec![
            envelope_hash(&[9]),
            envelope_hash(&[7]),
            envelope_hash(&[6])
        ]
    );
    let envelopes = s.log_envelopes(LABS).unwrap();
    assert_eq!(
        envelopes,
        vec![
            (envelope_hash(&[9]), vec![9]),
            (envelope_hash(&[7]), vec![7]),
            (envelope_hash(&[6]), vec![6])
        ]
    );
    assert_eq!(s.log_envelopes(NOTES).unwrap().len(), 1);
}

fn reseal_replaces_an_unsent_envelope_in_place<S: Store>(s: &mut S) {
    let mut b = WriteBatch::new();
    b.append(LABS, vec![1]).append(LABS, vec![2]);
    s.commit(b).unwrap();
    let mut b = WriteBatch::new();
    b.acknowledge(None, envelope_hash(&[2]), 7);
    s.commit(b).unwrap();
    let mut b = WriteBatch::new();
    // Only unacknowledged local envelopes are resealed.
    b.reseal(envelope_hash(&[1]), vec![11])
        .reseal(envelope_hash(&[2]), vec![12]);
    s.commit(b).unwrap();
    let out = s.outbox(10).unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].envelope, vec![11]);
    assert_eq!(out[0].hash, envelope_hash(&[11]));
    assert!(!s.contains(&envelope_hash(&[1])).unwrap());
    assert!(s.contains(&envelope_hash(&[2])).unwrap());
    assert!(!s.contains(&envelope_hash(&[12])).unwrap());
    let tail = s.load_section(LABS).unwrap().tail;
    assert_eq!(
        tail.iter().map(|i| i.envelope.clone()).collect::<Vec<_>>(),
        vec![vec![11], vec![2]],
        "the resealed envelope keeps its place"
    );
}

fn set_aside_leaves_the_outbox_but_stays_stored<S: Store>(s: &mut S) {
    let mut b = WriteBatch::new();
    b.append(LABS, vec![1]).append(LABS, vec![2]);
    s.commit(b).unwrap();
    let mut b = WriteBatch::new();
    b.set_aside(envelope_hash(&[1]));
    s.commit(b).unwrap();
    let out = s.outbox(10).unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].envelope, vec![2]);
    assert!(s.contains(&envelope_hash(&[1])).unwrap());
    assert_eq!(s.load_section(LABS).unwrap().tail.len(), 2);
}

fn empty_store<S: Store>(s: &mut S) {
    assert_eq!(s.get_meta("missing").unwrap(), None);
    assert!(s.sections().unwrap().is_empty());
    assert_eq!(s.last_seq().unwrap(), 0);
    let log = s.load_section(ALLERGIES).unwrap();
    assert!(log.snapshot.is_none() && log.tail.is_empty());
}

fn meta_put_get_delete<S: Store>(s: &mut S) {
    let mut b = WriteBatch::new();
    b.put_meta("a", vec![1, 2, 3]).put_meta("b", vec![]);
    s.commit(b).unwrap();
    assert_eq!(s.get_meta("a").unwrap(), Some(vec![1, 2, 3]));
    assert_eq!(s.get_meta("b").unwrap(), Some(vec![]));
    let mut b = WriteBatch::new();
    b.put_meta("a", vec![9])
        .delete_meta("b")
        .delete_meta("never-there");
    s.commit(b).unwrap();
    assert_eq!(s.get_meta("a").unwrap(), Some(vec![9]));
    assert_eq!(s.get_meta("b").unwrap(), None);
}

fn append_assigns_increasing_seqs<S: Store>(s: &mut S) {
    let mut b = WriteBatch::new();
    b.append(LABS, vec![1])
        .append(LABS, vec![2])
        .append(VITALS, vec![3]);
    let first = s.commit(b).unwrap().appended;
    assert_eq!(first.len(), 3);
    assert!(first.windows(2).all(|w| w[0] < w[1]));
    let mut b = WriteBatch::new();
    b.append(LABS, vec![4]);
    let second = s.commit(b).unwrap().appended;
    assert!(second[0] > first[2]);
    assert_eq!(s.last_seq().unwrap(), second[0]);
    let labs = s.load_section(LABS).unwrap();
    let bodies: Vec<_> = labs.tail.iter().map(|i| i.envelope.clone()).collect();
    assert_eq!(bodies, vec![vec![1], vec![2], vec![4]]);
    assert_eq!(labs.tail[2].seq, second[0]);
}

fn sections_are_separate<S: Store>(s: &mut S) {
    let mut b = WriteBatch::new();
    b.append(VITALS, vec![1]).append(ALLERGIES, vec![2]);
    s.commit(b).unwrap();
    assert_eq!(
        s.sections().unwrap(),
        vec!["allergies".to_string(), "vitals".to_string()]
    );
    assert_eq!(s.load_section(VITALS).unwrap().tail.len(), 1);
    assert_eq!(s.load_section(ALLERGIES).unwrap().tail[0].envelope, vec![2]);
    assert!(s.load_section(LABS).unwrap().tail.is_empty());
}

fn snapshot_hides_covered_log<S: Store>(s: &mut S) {
    let mut b = WriteBatch::new();
    b.append(NOTES, vec![1]).append(NOTES, vec![2]);
    let seqs = s.commit(b).unwrap().appended;
    let mut b = WriteBatch::new();
    b.put_snapshot(NOTES, seqs[1], vec![12])
        .append(NOTES, vec![3]);
    let later = s.commit(b).unwrap().appended;
    let log = s.load_section(NOTES).unwrap();
    let snap = log.snapshot.unwrap();
    assert_eq!((snap.upto_seq, snap.envelope), (seqs[1], vec![12]));
    assert_eq!(log.tail.len(), 1);
    assert_eq!(log.tail[0].seq, later[0]);
    // A snapshot and the appends it covers may share one batch.
    let mut b = WriteBatch::new();
    b.append(NOTES, vec![4])
        .put_snapshot(NOTES, later[0] + 1, vec![12, 34]);
    s.commit(b).unwrap();
    let log = s.load_section(NOTES).unwrap();
    assert_eq!(log.snapshot.unwrap().envelope, vec![12, 34]);
    assert!(log.tail.is_empty());
    // A section with only a snapshot is still listed.
    assert!(s.sections().unwrap().contains(&"notes".to_string()));
}

fn failed_batch_changes_nothing<S: Store>(s: &mut S) {
    let mut b = WriteBatch::new();
    b.put_meta("k", vec![1]).append(LABS, vec![1]);
    s.commit(b).unwrap();
    let before_seq = s.last_seq().unwrap();
    let before_log = s.load_section(LABS).unwrap();
    let mut b = WriteBatch::new();
    b.put_meta("k", vec![2])
        .append(LABS, vec![2])
        .put_snapshot(LABS, before_seq + 100, vec![0]);
    let err = s.commit(b).unwrap_err();
    assert!(matches!(err, StoreError::SnapshotBeyondLog { .. }));
    assert_eq!(s.get_meta("k").unwrap(), Some(vec![1]));
    assert_eq!(s.load_section(LABS).unwrap(), before_log);
    // The next append still gets a fresh, higher sequence.
    let mut b = WriteBatch::new();
    b.append(LABS, vec![3]);
    let seq = s.commit(b).unwrap().appended[0];
    assert!(seq > before_seq);
}

fn empty_batch_is_fine<S: Store>(s: &mut S) {
    assert!(s.commit(WriteBatch::new()).unwrap().appended.is_empty());
    assert_eq!(s.last_seq().unwrap(), 0);
}

fn large_values_round_trip<S: Store>(s: &mut S) {
    let big: Vec<u8> = (0..4_000_000u32).map(|i| (i % 251) as u8).collect();
    let mut b = WriteBatch::new();
    b.append(DOCUMENTS, big.clone())
        .put_meta("big", big.clone());
    s.commit(b).unwrap();
    assert_eq!(s.load_section(DOCUMENTS).unwrap().tail[0].envelope, big);
    assert_eq!(s.get_meta("big").unwrap(), Some(big));
}

fn outbox_until_acknowledged<S: Store>(s: &mut S) {
    let mut b = WriteBatch::new();
    b.append(LABS, vec![1])
        .append(VITALS, vec![2])
        .append(LABS, vec![3]);
    s.commit(b).unwrap();
    let out = s.outbox(10).unwrap();
    assert_eq!(
        out.iter().map(|o| o.envelope.clone()).collect::<Vec<_>>(),
        vec![vec![1], vec![2], vec![3]]
    );
    assert_eq!(out[1].section.as_str(), "vitals");
    assert_eq!(out[0].hash, envelope_hash(&[1]));
    assert_eq!(s.outbox(2).unwrap().len(), 2);
    let mut b = WriteBatch::new();
    b.acknowledge(None, envelope_hash(&[1]), 100)
        .acknowledge(None, envelope_hash(&[3]), 101);
    s.commit(b).unwrap();
    let out = s.outbox(10).unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].envelope, vec![2]);
    // Acknowledged changes stay in the log.
    assert_eq!(s.load_section(LABS).unwrap().tail.len(), 2);
    assert!(s.contains(&envelope_hash(&[1])).unwrap());
    assert!(!s.contains(&envelope_hash(&[9])).unwrap());
}

fn received_envelopes_are_deduplicated<S: Store>(s: &mut S) {
    let mut b = WriteBatch::new();
    b.append(LABS, vec![1]);
    s.commit(b).unwrap();
    // Our own change echoed back by the relay: not stored twice, but now
    // acknowledged; a new one is stored and never enters the outbox.
    let mut b = WriteBatch::new();
    b.receive(LABS, vec![1], None, 7)
        .receive(LABS, vec![2], None, 8)
        .receive(LABS, vec![2], None, 8);
    let c = s.commit(b).unwrap();
    assert_eq!(c.received.len(), 3);
    assert!(c.received[0].is_none());
    assert!(c.received[1].is_some());
    assert!(c.received[2].is_none());
    assert!(s.outbox(10).unwrap().is_empty());
    let tail = s.load_section(LABS).unwrap().tail;
    assert_eq!(tail.len(), 2);
    assert_eq!(s.last_seq().unwrap(), c.received[1].unwrap());
}

fn duplicate_local_change_is_refused<S: Store>(s: &mut S) {
    let mut b = WriteBatch::new();
    b.append(LABS, vec![5]);
    s.commit(b).unwrap();
    let mut b = WriteBatch::new();
    b.put_meta("x", vec![1]).append(LABS, vec![5]);
    assert!(matches!(s.commit(b), Err(StoreError::Duplicate)));
    assert_eq!(s.get_meta("x").unwrap(), None);
    assert_eq!(s.load_section(LABS).unwrap().tail.len(), 1);
}
