//! The relay's fuzzing facade: one entry point for the request bodies,
//! query strings and path parameters the relay parses from outside, with
//! the pure checks its handlers make before touching storage (base64,
//! ids, envelope structure and signatures, identity cards). Shared by the
//! fuzz target `relay_bodies` (`fuzz/`) and the `fuzz_regressions` test.
//! Hidden: test infrastructure, not API.

use satchel_protocol::fuzzing::Outcome;
use satchel_protocol::ids::RecordId;
use satchel_protocol::sharing::SignedStatement;
use satchel_protocol::wire::{
    AfterQuery, ChallengeRequest, CreateLinkRequest, LinkPayload, PageQuery, RegisterRequest,
    SnapshotRequest, TokenRequest, UploadRequest,
};
use serde::de::DeserializeOwned;

use super::extract::{link_id, parse_json, record_id, section};
use super::verify::check_batch;
use satchel_protocol::accept::{self, Expect, Kind};
use satchel_protocol::crypto::Envelope;
use satchel_protocol::sharing::Members;

/// The record and section the fuzzed bodies are checked against (the
/// protocol vectors' record, `medications`).
const RECORD: [u8; 16] = [
    0xf0, 0xf1, 0xf2, 0xf3, 0xf4, 0xf5, 0xf6, 0xf7, 0xf8, 0xf9, 0xfa, 0xfb, 0xfc, 0xfd, 0xfe, 0xff,
];
const SECTION: &str = "medications";
const MAX_ENVELOPE: usize = 4 * 1024 * 1024;

/// An access log whose creator wrote `first` (an envelope's bytes), so that
/// the acceptance rule's later steps (signature) are reached; a creator
/// nobody is when it does not parse.
fn root_of(first: Option<&[u8]>) -> Members {
    let author = first
        .and_then(|b| Envelope::from_bytes(b).ok())
        .map_or(satchel_protocol::ids::IdentityId([0; 32]), |e| {
            e.header.author
        });
    Members::root(RecordId(RECORD), author, None)
}

/// The first byte picks what is parsed; the rest is the body, query string
/// or path parameter.
pub fn relay_bodies(data: &[u8]) -> Outcome {
    let Some((&which, rest)) = data.split_first() else {
        return Outcome::Refused;
    };
    let ok = match which % 12 {
        0 => body::<ChallengeRequest>(rest).map(drop),
        1 => body::<TokenRequest>(rest)
            .and_then(|r| ok(<[u8; 32]>::try_from(r.challenge.as_slice()))),
        2 => body::<RegisterRequest>(rest)
            .and_then(|r| ok(r.owner.verify()).map(|_| r.record_id))
            .map(drop),
        3 => body::<SignedStatement>(rest).map(drop),
        4 => parse_json::<UploadRequest>(rest).ok().and_then(|r| {
            let first = r.envelopes.first().and_then(|e| e.decode().ok());
            let members = root_of(first.as_deref());
            let checked = check_batch(
                &r.envelopes,
                &RecordId(RECORD),
                SECTION,
                MAX_ENVELOPE,
                &members,
            );
            assert!(
                checked.ok.len() <= r.envelopes.len(),
                "no more envelopes than were sent"
            );
            if checked.failure.is_none() {
                Some(())
            } else {
                None
            }
        }),
        5 => body::<SnapshotRequest>(rest).and_then(|r| {
            let members = root_of(Some(&r.envelope));
            let expect = Expect {
                record: RecordId(RECORD),
                log: SECTION,
                kind: Kind::Snapshot,
                max_bytes: MAX_ENVELOPE,
            };
            ok(accept::accept(&r.envelope, &expect, &members))
        }),
        6 => body::<CreateLinkRequest>(rest).map(|r| {
            let _ = (r.record_id, r.expires_in);
        }),
        7 => body::<LinkPayload>(rest).map(drop),
        8 => query::<PageQuery>(rest).or_else(|| query::<AfterQuery>(rest)),
        9 => query::<AfterQuery>(rest),
        10 => std::str::from_utf8(rest)
            .ok()
            .and_then(|p| ok(record_id(p)).map(drop)),
        _ => std::str::from_utf8(rest)
            .ok()
            .and_then(|p| ok(section(p)).or_else(|| ok(link_id(p)))),
    };
    match ok {
        Some(()) => Outcome::Accepted,
        None => Outcome::Refused,
    }
}

fn ok<T, E>(r: Result<T, E>) -> Option<()> {
    r.ok().map(drop)
}

fn body<T: DeserializeOwned>(bytes: &[u8]) -> Option<T> {
    parse_json::<T>(bytes).ok()
}

/// A query string as axum's `Query` reads it.
fn query<T: DeserializeOwned>(bytes: &[u8]) -> Option<()> {
    let text = std::str::from_utf8(bytes).ok()?;
    let uri: axum::http::Uri = format!("/?{text}").parse().ok()?;
    ok(axum::extract::Query::<T>::try_from_uri(&uri))
}
