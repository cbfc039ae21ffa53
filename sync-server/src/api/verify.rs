//! Envelope checks for uploads and snapshots (pure CPU; callers run them on
//! the blocking pool): base64, then the protocol's one acceptance rule
//! (`satchel_protocol::accept`: size, structure, record and section against
//! the path, the author's write access under the envelope's key epoch per
//! the record's verified access log, the author's signature).
//!
//! Signatures of a batch are first checked together with ed25519-dalek's
//! batch verification (about 4x cheaper per signature than one-by-one on
//! this hardware). Only if the batch fails does each envelope get the
//! authoritative one-by-one check (`Envelope::verify_signature`, ring) to
//! find the first bad index.

use std::collections::HashMap;

use satchel_protocol::accept::{self, Expect, Kind, Refusal};
use satchel_protocol::crypto::Envelope;
use satchel_protocol::ids::{IdentityId, RecordId};
use satchel_protocol::sharing::Members;

use super::extract::b64_decode;
use super::metrics::Reject;
use crate::storage::NewEnvelope;

/// The first bad envelope of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Its index in the batch.
    pub index: usize,
    /// Metrics reason.
    pub reason: Reject,
    /// Message for the 422 body (no content).
    pub message: &'static str,
}

/// Result of checking a batch: `ok` holds the envelopes before the first
/// failure (all of them when there is none).
#[derive(Debug)]
pub struct Checked {
    /// Envelopes that passed, in order, with their parsed authors.
    pub ok: Vec<NewEnvelope>,
    /// The first failure.
    pub failure: Option<Failure>,
}

fn fail(index: usize, reason: Reject, message: &'static str) -> Failure {
    Failure {
        index,
        reason,
        message,
    }
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// The metrics reason for a refusal of the shared acceptance rule.
pub fn reason(refusal: Refusal) -> Reject {
    match refusal {
        Refusal::TooLarge => Reject::TooLarge,
        Refusal::Malformed => Reject::Malformed,
        Refusal::WrongRecord => Reject::WrongRecord,
        Refusal::WrongLog => Reject::WrongSection,
        Refusal::NotWriter | Refusal::NotSnapshotAuthor => Reject::NotMember,
        Refusal::BadSignature => Reject::BadSignature,
    }
}

/// A refusal of the shared acceptance rule at `index`.
pub fn refused(index: usize, refusal: Refusal) -> Failure {
    fail(index, reason(refusal), refusal.message())
}

/// Check a batch of base64 envelopes for `record`/`section` with the
/// shared acceptance rule ([`accept::check`], then the signatures, batch
/// verified first) against the record's verified access log.
pub fn check_batch<S: AsRef<str>>(
    items: &[S],
    record: &RecordId,
    section: &str,
    max_envelope_bytes: usize,
    members: &Members,
) -> Checked {
    let mut decoded = Vec::with_capacity(items.len());
    let mut bad_base64 = None;
    for (i, item) in items.iter().enumerate() {
        match b64_decode(item.as_ref(), "envelope") {
            Ok(b) => decoded.push(b),
            Err(_) => {
                bad_base64 = Some(fail(i, Reject::Malformed, "envelope is not valid base64"));
                break;
            }
        }
    }
    let checked = check_envelopes(decoded, record, section, max_envelope_bytes, members);
    match (checked.failure, bad_base64) {
        (Some(f), _) => Checked {
            ok: checked.ok,
            failure: Some(f),
        },
        (None, bad) => Checked {
            ok: checked.ok,
            failure: bad,
        },
    }
}

/// [`check_batch`] over envelopes already decoded (what a replica relay
/// receives from its upstream).
pub fn check_envelopes(
    items: Vec<Vec<u8>>,
    record: &RecordId,
    section: &str,
    max_envelope_bytes: usize,
    members: &Members,
) -> Checked {
    let expect = Expect {
        record: *record,
        log: section,
        kind: Kind::Change,
        max_bytes: max_envelope_bytes,
    };
    let mut parsed: Vec<(Envelope, Vec<u8>)> = Vec::with_capacity(items.len());
    let mut failure = None;
    for (i, bytes) in items.into_iter().enumerate() {
        match accept::check(&bytes, &expect, members) {
            Ok(env) => parsed.push((env, bytes)),
            Err(r) => {
                failure = Some(refused(i, r));
                break;
            }
        }
    }
    if let Some(bad) = first_bad_signature(&parsed) {
        parsed.truncate(bad);
        failure = Some(refused(bad, Refusal::BadSignature));
    }
    let ok = parsed
        .into_iter()
        .map(|(env, bytes)| NewEnvelope {
            hash: sha256(&bytes),
            author: env.header.author,
            author_seq: env.header.seq,
            bytes,
        })
        .collect();
    Checked { ok, failure }
}

/// Index of the first envelope whose signature fails, if any.
fn first_bad_signature(parsed: &[(Envelope, Vec<u8>)]) -> Option<usize> {
    if parsed.is_empty() {
        return None;
    }
    if batch_verifies(parsed) {
        return None;
    }
    parsed
        .iter()
        .position(|(env, _)| accept::verify(env).is_err())
}

fn batch_verifies(parsed: &[(Envelope, Vec<u8>)]) -> bool {
    let mut keys: HashMap<IdentityId, ed25519_dalek::VerifyingKey> = HashMap::new();
    let mut vks = Vec::with_capacity(parsed.len());
    let mut sigs = Vec::with_capacity(parsed.len());
    let mut msgs = Vec::with_capacity(parsed.len());
    for (env, _) in parsed {
        if env.header.validate().is_err() {
            return false;
        }
        let author = env.header.author;
        let vk = match keys.get(&author) {
            Some(vk) => *vk,
            None => match ed25519_dalek::VerifyingKey::from_bytes(author.as_bytes()) {
                Ok(vk) => {
                    keys.insert(author, vk);
                    vk
                }
                Err(_) => return false,
            },
        };
        vks.push(vk);
        sigs.push(ed25519_dalek::Signature::from_bytes(&env.signature));
        msgs.push(env.signed_message());
    }
    let refs: Vec<&[u8]> = msgs.iter().map(Vec::as_slice).collect();
    ed25519_dalek::verify_batch(&refs, &sigs, &vks).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::extract::b64;
    use satchel_protocol::crypto::{EnvelopeHeader, Identity, Role, SectionKey};

    fn seal(id: &Identity, record: RecordId, section: &str, n: u64) -> Envelope {
        let key = SectionKey::from_bytes([3u8; 32]);
        Envelope::seal(
            &key,
            EnvelopeHeader {
                record_id: record,
                section: section.into(),
                epoch: 0,
                author: id.id(),
                seq: n,
            },
            format!("payload {n}").as_bytes(),
            id,
        )
        .unwrap()
    }

    #[test]
    fn good_batch_passes_and_hash_matches_core() {
        let id = Identity::generate("phone", Role::PatientDevice, None).unwrap();
        let rid = RecordId::random();
        let root = Members::root(rid, id.id(), None);
        let envs: Vec<Envelope> = (0..20).map(|n| seal(&id, rid, "vitals", n)).collect();
        let items: Vec<String> = envs.iter().map(|e| b64(&e.to_bytes())).collect();
        let checked = check_batch(&items, &rid, "vitals", 1 << 20, &root);
        assert_eq!(checked.failure, None);
        assert_eq!(checked.ok.len(), 20);
        for (c, e) in checked.ok.iter().zip(&envs) {
            assert_eq!(c.hash, e.hash());
            assert_eq!(c.author, id.id());
        }
    }

    #[test]
    fn first_failure_is_reported() {
        let id = Identity::generate("phone", Role::PatientDevice, None).unwrap();
        let rid = RecordId::random();
        let root = Members::root(rid, id.id(), None);
        let mut envs: Vec<Envelope> = (0..10).map(|n| seal(&id, rid, "vitals", n)).collect();
        envs[6].signature[5] ^= 1;
        let mut items: Vec<String> = envs.iter().map(|e| b64(&e.to_bytes())).collect();
        let checked = check_batch(&items, &rid, "vitals", 1 << 20, &root);
        assert_eq!(checked.failure.as_ref().unwrap().index, 6);
        assert_eq!(checked.failure.unwrap().reason, Reject::BadSignature);
        assert_eq!(checked.ok.len(), 6);

        // A structural failure before the bad signature wins.
        items[3] = b64(&seal(&id, rid, "labs", 3).to_bytes());
        let checked = check_batch(&items, &rid, "vitals", 1 << 20, &root);
        let f = checked.failure.unwrap();
        assert_eq!((f.index, f.reason), (3, Reject::WrongSection));
        items[1] = b64(&seal(&id, RecordId::random(), "vitals", 3).to_bytes());
        items[0] = "not base64!".into();
        let f = check_batch(&items, &rid, "vitals", 1 << 20, &root)
            .failure
            .unwrap();
        assert_eq!((f.index, f.reason), (0, Reject::Malformed));
        items[0] = b64(b"SCE1 garbage");
        let f = check_batch(&items, &rid, "vitals", 1 << 20, &root)
            .failure
            .unwrap();
        assert_eq!((f.index, f.reason), (0, Reject::Malformed));
        items[0] = b64(&envs[0].to_bytes());
        let f = check_batch(&items, &rid, "vitals", 1 << 20, &root)
            .failure
            .unwrap();
        assert_eq!((f.index, f.reason), (1, Reject::WrongRecord));
        let f = check_batch(&items, &rid, "vitals", 100, &root)
            .failure
            .unwrap();
        assert_eq!((f.index, f.reason), (0, Reject::TooLarge));
    }
}
