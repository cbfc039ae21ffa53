//! The fuzzing facade: one entry point per decoder that takes outside bytes,
//! shared by the cargo-fuzz targets in `fuzz/` and by the
//! `fuzz_regressions` test (`tests/tests/fuzz.rs`), so that replaying a
//! crash input exercises exactly what the fuzzer ran.
//!
//! Each entry point takes arbitrary bytes and returns an [`Outcome`]; it
//! must never panic. Where a decoder has an invariant worth checking (a
//! parsed envelope re-encodes to the same bytes, an id prints as it was
//! read, a decoded chunk survives a re-encode), the entry point asserts it,
//! so a violation is a crash the fuzzer finds. [`TARGETS`] lists them all;
//! [`seeds`] makes seed inputs from the same fixtures the tests use.
//!
//! Hidden from the documentation: this is test infrastructure, not API.
//! It exposes nothing that is otherwise private except through these
//! functions.

mod fixture;
#[cfg(feature = "seeds")]
mod seeds;

#[cfg(feature = "seeds")]
pub use seeds::{seeds, Seed};

use std::io::Cursor;

use serde_json::Value;

use crate::crypto::Envelope;
use crate::fhir;
use crate::ids::{EntryId, IdentityId, RecordId};
use crate::profile::payload;
use crate::record::{layout, Query, Section, SectionDoc};
use crate::sharing::{self, RecoveryKey, SignedStatement, STATEMENT_DOMAIN};
use crate::sync::{link::LinkCode, sharing::parse_invite, wire};
use crate::wearables::index::ChunkIndex;
use crate::wearables::{apple, codec, csv_import, WearablesError};

use fixture::fixture;

pub use satchel_protocol::fuzzing::Outcome;

/// A fuzz target: its name (the file `fuzz/fuzz_targets/<name>.rs` and the
/// folders `fuzz/corpus/<name>/`, `fuzz/regressions/<name>/`) and its entry
/// point.
#[derive(Clone, Copy)]
pub struct Target {
    pub name: &'static str,
    pub run: fn(&[u8]) -> Outcome,
}

const fn t(name: &'static str, run: fn(&[u8]) -> Outcome) -> Target {
    Target { name, run }
}

/// Every target of the core.
pub const TARGETS: &[Target] = &[
    t("envelope", envelope),
    t("payload", payload),
    t("statement", statement),
    t("access_log", access_log),
    t("wire_bodies", wire_bodies),
    t("section_changes", section_changes),
    t("section_load", section_load),
    t("section_versions", section_versions),
    t("version_header", version_header),
    t("fhir_resource", fhir_resource),
    t("fhir_bundle", fhir_bundle),
    t("apple_health", apple_health),
    t("wearables_csv", wearables_csv),
    t("wearable_chunk", wearable_chunk),
    t("wearables_index", wearables_index),
    t("link_code", link_code),
    t("recovery_key", recovery_key),
    t("ids", ids),
    t("direct", direct),
];

/// `Envelope::from_bytes`; a parsed envelope must re-encode to the same
/// bytes, and is then opened with the fixture's section key (signature
/// first) and its payload framing decoded.
pub fn envelope(data: &[u8]) -> Outcome {
    let Ok(env) = Envelope::from_bytes(data) else {
        return Outcome::Refused;
    };
    assert_eq!(
        env.to_bytes(),
        data,
        "an envelope parses from one encoding only"
    );
    let _ = env.hash();
    match env.open(&fixture().section_key) {
        Ok(plain) => {
            let _ = payload::decode(&plain);
            Outcome::Accepted
        }
        Err(_) => Outcome::Refused,
    }
}

/// The payload framing inside an envelope (`profile::payload::decode`);
/// the input also round-trips as a plaintext.
pub fn payload(data: &[u8]) -> Outcome {
    let framed = payload::encode(data);
    assert_eq!(
        payload::decode(&framed).ok().as_deref(),
        Some(data),
        "payload framing round-trips"
    );
    Outcome::of(&payload::decode(data))
}

/// One access statement's JSON bytes, signed by the fixture's creator
/// device (so the rules run, not just the signature check) and verified
/// (`verify_next`) on top of every prefix of the fixture's log, the empty
/// one included (as `verify_log` starts).
pub fn statement(data: &[u8]) -> Outcome {
    let f = fixture();
    let mut msg = STATEMENT_DOMAIN.to_vec();
    msg.extend_from_slice(data);
    let signed = SignedStatement {
        statement: data.to_vec(),
        signature: f.phone.sign(&msg).to_vec(),
    };
    let mut accepted = Outcome::Refused;
    for prefix in &f.prefixes {
        let mut members = prefix.clone();
        if sharing::verify_next(&mut members, &signed).is_ok() {
            accepted = Outcome::Accepted;
        }
    }
    accepted
}

/// An access log as the relay serves it (`GET .../access`: the wire JSON),
/// verified from the fixture's creator device.
pub fn access_log(data: &[u8]) -> Outcome {
    let Ok(response) = serde_json::from_slice::<wire::AccessResponse>(data) else {
        return Outcome::Refused;
    };
    let log: Vec<SignedStatement> = response.statements.into_iter().map(|e| e.signed).collect();
    let f = fixture();
    let Some((last, before)) = log.split_last() else {
        return Outcome::Refused;
    };
    match sharing::verify_log(f.record, f.phone.id(), Some(f.phone.card()), before) {
        Ok(mut members) => Outcome::of(&sharing::verify_next(&mut members, last)),
        Err(_) => Outcome::Refused,
    }
}

/// The relay's JSON replies as the client reads them (`sync::wire`): the
/// first byte picks the body, the rest is the JSON. Pulled envelopes are
/// parsed as the engine does.
pub fn wire_bodies(data: &[u8]) -> Outcome {
    let Some((&which, json)) = data.split_first() else {
        return Outcome::Refused;
    };
    fn parse<T: serde::de::DeserializeOwned>(json: &[u8]) -> Outcome {
        Outcome::of(&serde_json::from_slice::<T>(json))
    }
    match which % 10 {
        0 => parse::<wire::ChallengeResponse>(json),
        1 => parse::<wire::TokenResponse>(json),
        2 => parse::<wire::AccessResponse>(json),
        3 => parse::<wire::UploadResponse>(json),
        4 => parse::<wire::FeedResponse>(json),
        5 => match serde_json::from_slice::<wire::PullResponse>(json) {
            Ok(pull) => {
                for e in pull
                    .envelopes
                    .iter()
                    .map(|e| &e.envelope)
                    .chain(pull.snapshot.as_ref().map(|s| &s.envelope))
                {
                    let _ = Envelope::from_bytes(e);
                }
                Outcome::Accepted
            }
            Err(_) => Outcome::Refused,
        },
        6 => parse::<wire::ErrorBody>(json),
        7 => parse::<wire::PushMessage>(json),
        8 => parse::<wire::LinkPayload>(json),
        _ => parse::<wire::LinkState>(json),
    }
}

/// Read everything a listing reads from a section document.
fn exercise(doc: &SectionDoc) {
    for entry in doc.entries(true) {
        let _ = doc.history(entry.id);
    }
    let _ = doc.query(&Query {
        text: Some("a".into()),
        code: Some((None, "1".into())),
        from_ms: Some(0),
        include_entered_in_error: true,
        ..Query::default()
    });
    let _ = doc.summary();
    let _ = doc.missing_deps();
}

/// Automerge bytes as a replica receives them (`SectionDoc::apply_changes`
/// on the fixture's medications document, which holds two entries).
pub fn section_changes(data: &[u8]) -> Outcome {
    let mut doc = fixture().loaded.clone();
    let result = doc.apply_changes(data);
    exercise(&doc);
    Outcome::of(&result)
}

/// A saved section document (`SectionDoc::load`, as from a snapshot).
pub fn section_load(data: &[u8]) -> Outcome {
    match SectionDoc::load(Section::Medications, data) {
        Ok(doc) => {
            exercise(&doc);
            Outcome::Accepted
        }
        Err(_) => Outcome::Refused,
    }
}

/// A version scalar of any bytes, authored into a valid automerge change by
/// a peer and merged by another replica, which then lists and queries it.
/// Accepted when the index could decode it.
pub fn section_versions(data: &[u8]) -> Outcome {
    let (mut peer, mut replica) = (fixture().loaded.clone(), fixture().loaded.clone());
    if peer.append_unchecked_versions(vec![data.to_vec()]).is_err() {
        return Outcome::Refused;
    }
    let changes = peer.take_changes();
    assert!(
        replica.apply_changes(&changes).is_ok(),
        "a well-formed change from a peer is merged"
    );
    exercise(&replica);
    if layout::decode_index_fields(data).is_some() {
        Outcome::Accepted
    } else {
        Outcome::Refused
    }
}

/// The version header decoder alone (`record/layout.rs`).
pub fn version_header(data: &[u8]) -> Outcome {
    match layout::decode_index_fields(data) {
        Some(_) => Outcome::Accepted,
        None => Outcome::Refused,
    }
}

/// One FHIR resource: strict JSON, `summarize`, `section_for`.
pub fn fhir_resource(data: &[u8]) -> Outcome {
    let Ok(resource) = fhir::parse_resource(data) else {
        return Outcome::Refused;
    };
    Outcome::of(&fhir::section_for(&resource))
}

/// A file to import (one resource or a Bundle) through the streaming
/// reader, each resource checked as an import checks it; a Bundle is also
/// unpacked by `bundle_resources`.
pub fn fhir_bundle(data: &[u8]) -> Outcome {
    let streamed = fhir::import::read_resources(data, |r| {
        fhir::summarize(&r.resource)?;
        fhir::section_for(&r.resource).map(drop)
    });
    if let Ok(value) = fhir::json::from_slice(data) {
        if value.get("resourceType").and_then(Value::as_str) == Some("Bundle") {
            let _ = fhir::bundle_resources(&value);
        }
    }
    Outcome::of(&streamed)
}

/// An Apple Health `export.xml` (`wearables::apple::import`).
pub fn apple_health(data: &[u8]) -> Outcome {
    let result = apple::import(Cursor::new(data), 64, |_, _| Ok::<(), WearablesError>(()));
    Outcome::of(&result)
}

/// A wearables CSV file (`wearables::csv_import::import`).
pub fn wearables_csv(data: &[u8]) -> Outcome {
    let result = csv_import::import(Cursor::new(data), 64, |_, _| Ok::<(), WearablesError>(()));
    Outcome::of(&result)
}

/// A wearable samples chunk (`wearables::codec::decode`); a decoded chunk
/// re-encodes to the same samples.
pub fn wearable_chunk(data: &[u8]) -> Outcome {
    let Ok(chunk) = codec::decode(data) else {
        return Outcome::Refused;
    };
    // Compared bit for bit (a NaN value must survive too).
    let bits = |c: &codec::Chunk| {
        let points: Vec<_> = c
            .points
            .iter()
            .map(|p| (p.start_ms, p.end_ms, p.value.to_bits()))
            .collect();
        (c.metric, c.source.clone(), points)
    };
    let again = codec::encode(chunk.metric, &chunk.source, &chunk.points)
        .ok()
        .and_then(|bytes| codec::decode(&bytes).ok());
    assert!(
        again.as_ref().map(bits) == Some(bits(&chunk)),
        "a decoded chunk re-encodes to the same samples"
    );
    Outcome::Accepted
}

/// The wearables chunk index document (automerge) as a replica applies it.
pub fn wearables_index(data: &[u8]) -> Outcome {
    let Ok(mut index) = ChunkIndex::new() else {
        return Outcome::Refused;
    };
    let result = index.apply(data);
    let _ = index.entries().len();
    Outcome::of(&result)
}

/// A device link code and an invite code, as typed or scanned.
pub fn link_code(data: &[u8]) -> Outcome {
    let Ok(text) = std::str::from_utf8(data) else {
        return Outcome::Refused;
    };
    let link = LinkCode::parse(text);
    let invite = parse_invite(text);
    for code in [&link, &invite].into_iter().flatten() {
        let _ = code.link_id();
    }
    if link.is_ok() || invite.is_ok() {
        Outcome::Accepted
    } else {
        Outcome::Refused
    }
}

/// A recovery key as typed (`RecoveryKey::parse`); a parsed key prints to a
/// text that parses to the same key.
pub fn recovery_key(data: &[u8]) -> Outcome {
    let Ok(text) = std::str::from_utf8(data) else {
        return Outcome::Refused;
    };
    let Ok(key) = RecoveryKey::parse(text) else {
        return Outcome::Refused;
    };
    let printed = key.to_printable();
    let again = RecoveryKey::parse(&printed).ok();
    assert!(
        again.is_some_and(|k| k.to_printable() == printed),
        "a printed recovery key reads back"
    );
    Outcome::Accepted
}

/// Record, identity and entry ids as text from outside (relay paths, wire
/// bodies, CLI arguments, link codes): only the canonical form parses, and
/// it prints back exactly.
pub fn ids(data: &[u8]) -> Outcome {
    let Ok(text) = std::str::from_utf8(data) else {
        return Outcome::Refused;
    };
    let mut accepted = false;
    if let Ok(id) = text.parse::<RecordId>() {
        assert_eq!(id.to_string(), text, "record ids have one form");
        accepted = true;
    }
    if let Ok(id) = text.parse::<IdentityId>() {
        assert_eq!(id.to_string(), text, "identity ids have one form");
        accepted = true;
    }
    if let Ok(id) = text.parse::<EntryId>() {
        assert_eq!(id.to_string(), text, "entry ids have one form");
        accepted = true;
    }
    if accepted {
        Outcome::Accepted
    } else {
        Outcome::Refused
    }
}

/// What a nearby device sends or shows (edge sync): a direct-channel
/// message (`Message::from_bytes`; a parsed message re-encodes to bytes
/// that parse to the same message), a pairing code (prints back to a code
/// that parses the same), and an mDNS advert's name and sealed device info
/// under the fixture record's discovery key.
pub fn direct(data: &[u8]) -> Outcome {
    use crate::nearby::pairing::PairingCode;
    use satchel_protocol::direct::Message;
    use satchel_protocol::discovery::{advert_matches, discovery_key_for, open_device_info};
    let mut accepted = false;
    if let Ok(message) = Message::from_bytes(data) {
        let again = message.to_bytes().map(|b| Message::from_bytes(&b));
        assert!(
            matches!(again, Ok(Ok(ref m)) if *m == message),
            "a parsed direct message re-encodes to itself"
        );
        accepted = true;
    }
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(code) = text.parse::<PairingCode>() {
            let printed = code.to_string();
            assert_eq!(
                printed.parse::<PairingCode>().ok(),
                Some(code),
                "a printed pairing code reads back"
            );
            accepted = true;
        }
        let f = fixture();
        if let Ok(key) = discovery_key_for(&f.record, &f.phone.id()) {
            let hour = 480_000;
            if advert_matches(&key, hour, text).unwrap_or(false) {
                accepted = true;
            }
            if open_device_info(&key, hour, text).is_ok() {
                accepted = true;
            }
        }
    }
    if accepted {
        Outcome::Accepted
    } else {
        Outcome::Refused
    }
}
