//! The byte-level test vectors of docs/protocol.md ("Test vectors"), checked
//! against the real code: every fenced block whose first line is
//! `vector: LABEL` is parsed out of the document, recomputed from the fixed
//! inputs below, and compared. The documented bytes are also decoded and
//! verified (and refused after a one-bit flip). An unknown label, a missing
//! one or a mismatch fails the test and prints the correct block.
//!
//! Inputs are fixed byte patterns and the plaintext `satchel test vector`
//! (never health data). Envelope sealing and HPKE wrapping take their
//! randomness from the caller here (`Envelope::seal_with_fixed_salt`,
//! `wrap_key_with_fixed_rng` with [`FixedRng`]); everything else (Ed25519,
//! SHA-256, the engine's auth step) is deterministic already.

use std::collections::BTreeMap;

use base64::Engine as _;
use data_encoding::BASE32_NOPAD;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use ring::digest::{digest, SHA256};
use zeroize::Zeroizing;

use crate::crypto::envelope::{ENVELOPE_HKDF_INFO, ENVELOPE_MAGIC};
use crate::crypto::identity::FINGERPRINT_DOMAIN;
use crate::crypto::wrap::{wrap_key_with_fixed_rng, FixedRng};
use crate::crypto::{
    unwrap_key, verify_signature, Envelope, EnvelopeHeader, Identity, IdentityCard, Role,
    SectionKey, WrappedKey,
};
use crate::ids::{IdentityId, RecordId};
use crate::sharing::{
    key_wrap_aad, statement_hash, verify_log, AccessChange, AccessStatement, GrantRole, KeyWrap,
    RecoveryKey, RecoveryKeyError, SignedStatement,
};
use crate::sync::engine::{Request, Response, Step, SyncEngine};
use crate::sync::wire::ChallengeResponse;
use crate::sync::SyncState;

const DOC: &str = include_str!("../../docs/protocol.md");
const PLAINTEXT: &[u8] = b"satchel test vector";
const SECTION: &str = "medications";

/// `[start, start + 1, ...]` (wrapping).
fn seq<const N: usize>(start: u8) -> [u8; N] {
    let mut out = [0u8; N];
    for (i, b) in out.iter_mut().enumerate() {
        *b = start.wrapping_add(i as u8);
    }
    out
}

fn identity(signing: u8, agreement: u8, name: &str, role: Role) -> Identity {
    Identity::from_seeds(
        Zeroizing::new(seq(signing)),
        Zeroizing::new(seq(agreement)),
        name,
        role,
        None,
    )
    .expect("fixed seeds give an identity")
}

/// The fixed inputs.
struct Inputs {
    record: RecordId,
    phone: Identity,
    carer: Identity,
    tablet: Identity,
    section_key: [u8; 32],
    salt: [u8; 32],
    ephemeral_ikm: [u8; 32],
    challenge: [u8; 32],
    recovery_secret: [u8; 32],
}

fn inputs() -> Inputs {
    Inputs {
        record: RecordId(seq(0xf0)),
        phone: identity(0x00, 0x20, "Test phone", Role::PatientDevice),
        carer: identity(0x40, 0x60, "Test carer", Role::Carer),
        tablet: identity(0x80, 0xa0, "Test tablet", Role::PatientDevice),
        section_key: seq(0xc0),
        salt: seq(0xe0),
        ephemeral_ikm: [0x11; 32],
        challenge: [0x22; 32],
        recovery_secret: [0x33; 32],
    }
}

/// What a label's block holds.
#[derive(Debug, PartialEq)]
enum Value {
    /// Hex, wrapped at 64 characters.
    Hex(Vec<u8>),
    /// UTF-8 text, lines joined with `\n`.
    Text(String),
    /// JSON bytes, shown pretty-printed (compared as JSON values; the exact
    /// bytes are a separate hex vector).
    Json(Vec<u8>),
}

impl Value {
    fn render(&self) -> String {
        match self {
            Value::Hex(bytes) => {
                let hex = hex::encode(bytes);
                let lines: Vec<&str> = hex
                    .as_bytes()
                    .chunks(64)
                    .map(|c| std::str::from_utf8(c).expect("hex is ASCII"))
                    .collect();
                lines.join("\n")
            }
            Value::Text(text) => text.clone(),
            Value::Json(bytes) => {
                let v: serde_json::Value =
                    serde_json::from_slice(bytes).expect("vector JSON parses");
                serde_json::to_string_pretty(&v).expect("JSON value serializes")
            }
        }
    }

    /// Whether the documented block `lines` shows this value.
    fn matches(&self, lines: &[String]) -> bool {
        match self {
            Value::Hex(bytes) => {
                lines.iter().all(|l| l.len() <= 64)
                    && hex::decode(lines.concat()).is_ok_and(|b| &b == bytes)
            }
            Value::Text(text) => lines.join("\n") == *text,
            Value::Json(bytes) => {
                let doc: Result<serde_json::Value, _> = serde_json::from_str(&lines.join("\n"));
                let real: serde_json::Value =
                    serde_json::from_slice(bytes).expect("vector JSON parses");
                doc.is_ok_and(|d| d == real)
            }
        }
    }
}

/// Every `vector: LABEL` block of the document, in order of appearance.
fn doc_vectors() -> BTreeMap<String, Vec<String>> {
    let lines: Vec<&str> = DOC.lines().collect();
    let mut out = BTreeMap::new();
    let mut i = 0;
    while i < lines.len() {
        let opens = lines[i].trim_start().starts_with("```");
        let label = lines
            .get(i + 1)
            .and_then(|l| l.strip_prefix("vector: "))
            .filter(|_| opens);
        let Some(label) = label else {
            i += 1;
            continue;
        };
        let mut body = Vec::new();
        let mut j = i + 2;
        while j < lines.len() && !lines[j].trim_start().starts_with("```") {
            body.push(lines[j].trim_end().to_owned());
            j += 1;
        }
        assert!(j < lines.len(), "vector {label}: unclosed fenced block");
        assert!(
            out.insert(label.trim().to_owned(), body).is_none(),
            "vector {label} appears twice in docs/protocol.md"
        );
        i = j + 1;
    }
    // A `vector:` line anywhere else would be a vector nobody checks.
    let mentioned = lines.iter().filter(|l| l.starts_with("vector: ")).count();
    assert_eq!(
        mentioned,
        out.len(),
        "a `vector:` line is not the first line of a fenced block"
    );
    out
}

/// Flip one bit of `bytes` at bit index `bit`.
fn flipped(bytes: &[u8], bit: usize) -> Vec<u8> {
    let mut b = bytes.to_vec();
    b[bit / 8] ^= 1 << (bit % 8);
    b
}

/// The envelope's AEAD key and nonce, computed from the spec with ring's
/// HKDF (independently of `SectionKey::derive`).
fn envelope_key_nonce(section_key: &[u8; 32], salt: &[u8; 32]) -> ([u8; 32], [u8; 12]) {
    struct Len;
    impl ring::hkdf::KeyType for Len {
        fn len(&self) -> usize {
            44
        }
    }
    let mut okm = [0u8; 44];
    ring::hkdf::Salt::new(ring::hkdf::HKDF_SHA256, salt)
        .extract(section_key)
        .expand(&[ENVELOPE_HKDF_INFO], Len)
        .expect("44 bytes is a valid HKDF length")
        .fill(&mut okm)
        .expect("fill 44 bytes");
    let mut key = [0u8; 32];
    let mut nonce = [0u8; 12];
    key.copy_from_slice(&okm[..32]);
    nonce.copy_from_slice(&okm[32..]);
    (key, nonce)
}

/// The recovery key's printed form, encoded from the spec (independently
/// of `RecoveryKey::to_printable`).
fn printed_recovery_key(record: &RecordId, secret: &[u8; 32]) -> String {
    let mut raw = record.as_bytes().to_vec();
    raw.extend_from_slice(secret);
    raw.extend_from_slice(&recovery_checksum(record, secret));
    let body = BASE32_NOPAD.encode(&raw);
    let groups: Vec<&str> = body
        .as_bytes()
        .chunks(4)
        .map(|c| std::str::from_utf8(c).expect("base32 is ASCII"))
        .collect();
    format!("SATCHEL-{}", groups.join("-"))
}

fn recovery_checksum(record: &RecordId, secret: &[u8; 32]) -> [u8; 2] {
    let mut input = record.as_bytes().to_vec();
    input.extend_from_slice(secret);
    let d = digest(&SHA256, &input);
    [d.as_ref()[0], d.as_ref()[1]]
}

fn sha256(bytes: &[u8]) -> Vec<u8> {
    digest(&SHA256, bytes).as_ref().to_vec()
}

/// The two access statements: the phone grants the carer read access to
/// medications (with the section key wrapped to it), then adds the tablet.
fn statements(i: &Inputs, wrap: &WrappedKey) -> (SignedStatement, SignedStatement) {
    let first = AccessStatement {
        record_id: i.record,
        by: i.phone.id(),
        at_ms: 1_700_000_000_000,
        prev: [0u8; 32],
        change: AccessChange::Grant {
            grantee: i.carer.card().clone(),
            role: GrantRole::Reader,
            sections: vec![SECTION.to_owned()],
            expires_at_ms: Some(1_700_604_800_000),
            label: "Test carer".to_owned(),
            keys: vec![KeyWrap {
                section: SECTION.to_owned(),
                epoch: 0,
                to: i.carer.id(),
                key: wrap.clone(),
            }],
            rotations: vec![],
        },
    }
    .sign(&i.phone)
    .unwrap();
    let second = AccessStatement {
        record_id: i.record,
        by: i.phone.id(),
        at_ms: 1_700_000_060_000,
        prev: first.hash(),
        change: AccessChange::AddDevice {
            device: i.tablet.card().clone(),
            keys: vec![],
        },
    }
    .sign(&i.phone)
    .unwrap();
    (first, second)
}

/// The engine's auth step for `challenge`: the message it asks to sign,
/// and the token request it sends with `sign`'s signature.
fn auth_round(i: &Inputs) -> (Vec<u8>, [u8; 64], Vec<u8>) {
    let mut engine = SyncEngine::new(i.record, i.phone.id(), None, None, SyncState::default());
    assert!(matches!(
        engine.poll(),
        Step::Send(Request::Challenge(ref c)) if c.identity == i.phone.id()
    ));
    let body = format!(
        r#"{{"challenge": "{}", "expires_in": 60}}"#,
        crate::sync::wire::b64::ENGINE.encode(i.challenge)
    );
    let response: ChallengeResponse =
        serde_json::from_str(&body).expect("challenge response parses");
    assert!(engine.on_response(Response::Challenge(response)).is_none());
    let Step::Sign(message) = engine.poll() else {
        panic!("the engine asks for a signature after the challenge");
    };
    let signature = i.phone.sign(&message);
    engine.signed(signature);
    let Step::Send(Request::Token(token)) = engine.poll() else {
        panic!("the engine sends the token request after signing");
    };
    let json = serde_json::to_vec(&token).expect("token request serializes");
    (message, signature, json)
}

/// Every vector, recomputed.
fn computed(i: &Inputs) -> BTreeMap<&'static str, Value> {
    use Value::{Hex, Json, Text};
    let mut v = BTreeMap::new();

    // Inputs.
    v.insert("input.record-id", Hex(i.record.as_bytes().to_vec()));
    v.insert("input.phone.signing-seed", Hex(seq::<32>(0x00).to_vec()));
    v.insert("input.phone.agreement-ikm", Hex(seq::<32>(0x20).to_vec()));
    v.insert("input.carer.signing-seed", Hex(seq::<32>(0x40).to_vec()));
    v.insert("input.carer.agreement-ikm", Hex(seq::<32>(0x60).to_vec()));
    v.insert("input.tablet.signing-seed", Hex(seq::<32>(0x80).to_vec()));
    v.insert("input.tablet.agreement-ikm", Hex(seq::<32>(0xa0).to_vec()));
    v.insert("input.section-key", Hex(i.section_key.to_vec()));
    v.insert("input.envelope.salt", Hex(i.salt.to_vec()));
    v.insert("input.wrap.ephemeral-ikm", Hex(i.ephemeral_ikm.to_vec()));
    v.insert("input.auth.challenge", Hex(i.challenge.to_vec()));
    v.insert("input.recovery.secret", Hex(i.recovery_secret.to_vec()));
    v.insert(
        "input.plaintext",
        Text(String::from_utf8_lossy(PLAINTEXT).into()),
    );

    // Identity cards and fingerprints.
    let card = i.phone.card();
    v.insert("card.phone.bytes", Hex(card.to_bytes()));
    let mut fp_input = FINGERPRINT_DOMAIN.to_vec();
    fp_input.extend_from_slice(card.signing_key.as_bytes());
    fp_input.extend_from_slice(&card.agreement_key);
    v.insert("card.phone.fingerprint-digest", Hex(sha256(&fp_input)));
    v.insert("card.phone.fingerprint", Text(card.fingerprint()));
    v.insert("card.carer.id", Hex(i.carer.id().as_bytes().to_vec()));
    v.insert(
        "card.carer.agreement-key",
        Hex(i.carer.card().agreement_key.to_vec()),
    );
    v.insert("card.tablet.id", Hex(i.tablet.id().as_bytes().to_vec()));

    // Envelope.
    let key = SectionKey::from_bytes(i.section_key);
    let header = EnvelopeHeader {
        record_id: i.record,
        section: SECTION.to_owned(),
        epoch: 0,
        author: i.phone.id(),
        seq: 1,
    };
    let mut aad = ENVELOPE_MAGIC.to_vec();
    aad.extend_from_slice(&header.canonical_bytes());
    let env = Envelope::seal_with_fixed_salt(&key, header, PLAINTEXT, &i.phone, i.salt)
        .expect("the fixed envelope seals");
    let (aead_key, aead_nonce) = envelope_key_nonce(&i.section_key, &i.salt);
    v.insert("envelope.aead-key", Hex(aead_key.to_vec()));
    v.insert("envelope.aead-nonce", Hex(aead_nonce.to_vec()));
    v.insert("envelope.aad", Hex(aad));
    v.insert("envelope.ciphertext", Hex(env.ciphertext.clone()));
    v.insert("envelope.signed-message", Hex(env.signed_message()));
    v.insert("envelope.signature", Hex(env.signature.to_vec()));
    v.insert("envelope.bytes", Hex(env.to_bytes()));
    v.insert("envelope.hash", Hex(env.hash().to_vec()));

    // HPKE key wrap of the section key to the carer.
    let wrap_aad = key_wrap_aad(&i.record, SECTION, 0, &i.carer.id());
    let wrap = wrap_key_with_fixed_rng(
        i.carer.card(),
        &i.section_key,
        &wrap_aad,
        &mut FixedRng(i.ephemeral_ikm.to_vec()),
    )
    .expect("the fixed wrap seals");
    v.insert(
        "wrap.aad",
        Text(String::from_utf8(wrap_aad).expect("the AAD is text")),
    );
    v.insert("wrap.enc", Hex(wrap.enc.to_vec()));
    v.insert("wrap.ciphertext", Hex(wrap.ciphertext.clone()));

    // Access statements and their chain.
    let (first, second) = statements(i, &wrap);
    v.insert("access.1.json", Json(first.statement.clone()));
    v.insert("access.1.bytes", Hex(first.statement.clone()));
    v.insert("access.1.signature", Hex(first.signature.clone()));
    v.insert("access.1.hash", Hex(first.hash().to_vec()));
    v.insert("access.2.json", Json(second.statement.clone()));
    v.insert("access.2.bytes", Hex(second.statement.clone()));
    v.insert("access.2.signature", Hex(second.signature.clone()));
    v.insert("access.2.hash", Hex(second.hash().to_vec()));

    // Authentication.
    let (message, signature, token_request) = auth_round(i);
    v.insert("auth.signed-message", Hex(message));
    v.insert("auth.signature", Hex(signature.to_vec()));
    v.insert("auth.token-request", Json(token_request));

    // Recovery key.
    let printed = printed_recovery_key(&i.record, &i.recovery_secret);
    let recovery = RecoveryKey::parse(&printed).expect("the encoded recovery key parses");
    v.insert(
        "recovery.checksum",
        Hex(recovery_checksum(&i.record, &i.recovery_secret).to_vec()),
    );
    v.insert("recovery.printed", Text(printed));
    let recovery_identity = recovery.identity().expect("the recovery key derives");
    v.insert(
        "recovery.identity-id",
        Hex(recovery_identity.id().as_bytes().to_vec()),
    );

    // Direct channel (edge sync): the phone's identity proof over a
    // handshake hash, and message bytes.
    use satchel_protocol::direct::{
        proof_message, Envelopes, Hello, LogDigest, Message, Side, Summary, VERSION,
    };
    let hh = seq::<32>(0xc0);
    v.insert("input.direct.handshake-hash", Hex(hh.to_vec()));
    let proof_msg = proof_message(&hh, Side::Initiator, &i.record);
    let proof = i.phone.sign(&proof_msg);
    v.insert("direct.proof-message", Hex(proof_msg));
    v.insert("direct.proof", Hex(proof.to_vec()));
    let hello = Message::Hello(Hello {
        version: VERSION,
        card: card.to_bytes(),
        record: i.record,
        proof: proof.to_vec(),
        access_len: 1,
        access_head: seq::<32>(0xe0),
        token: Some(seq::<16>(0x10)),
    });
    v.insert(
        "direct.hello.bytes",
        Hex(hello.to_bytes().expect("the hello encodes")),
    );
    let digest = LogDigest::of(&[env.hash()]);
    v.insert("direct.medications.digest", Hex(digest.digest.to_vec()));
    let summary = Message::Summary(Summary {
        logs: vec![digest.summary(crate::protocol::LogName::Section(
            crate::record::Section::Medications,
        ))],
        have: Vec::new(),
    });
    v.insert(
        "direct.summary.bytes",
        Hex(summary.to_bytes().expect("the summary encodes")),
    );
    let envelopes = Message::Envelopes(Envelopes {
        log: SECTION.to_owned(),
        envelopes: vec![env.to_bytes()],
    });
    v.insert(
        "direct.envelopes.bytes",
        Hex(envelopes.to_bytes().expect("the envelopes encode")),
    );
    v
}

fn hex_of(doc: &BTreeMap<String, Vec<String>>, label: &str) -> Vec<u8> {
    hex::decode(doc[label].concat()).expect("documented hex decodes")
}

fn text_of(doc: &BTreeMap<String, Vec<String>>, label: &str) -> String {
    doc[label].join("\n")
}

#[test]
fn protocol_doc_vectors_match() {
    let i = inputs();
    let doc = doc_vectors();
    let real = computed(&i);

    // 1. Every documented label is recomputed and equal; none is missing.
    let mut problems = Vec::new();
    for label in doc.keys() {
        if !real.contains_key(label.as_str()) {
            problems.push(format!("unknown label in docs/protocol.md: {label}"));
        }
    }
    for (label, value) in &real {
        match doc.get(*label) {
            None => problems.push(format!(
                "missing from docs/protocol.md:\n```text\nvector: {label}\n{}\n```",
                value.render()
            )),
            Some(lines) if !value.matches(lines) => problems.push(format!(
                "differs from docs/protocol.md; the code computes:\n```text\nvector: {label}\n{}\n```",
                value.render()
            )),
            Some(_) => {}
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));

    // 2. The documented bytes decode and verify with the real code, and a
    //    one-bit flip is refused.
    check_card(&doc, &i);
    check_envelope(&doc, &i);
    check_wrap(&doc, &i);
    check_access_log(&doc, &i);
    check_auth(&doc, &i);
    check_recovery(&doc, &i);
}

fn check_card(doc: &BTreeMap<String, Vec<String>>, i: &Inputs) {
    let bytes = hex_of(doc, "card.phone.bytes");
    let card = IdentityCard::from_bytes(&bytes).expect("documented card parses");
    card.verify().expect("documented card verifies");
    assert_eq!(&card, i.phone.card());
    assert_eq!(card.fingerprint(), text_of(doc, "card.phone.fingerprint"));
    for bit in 0..bytes.len() * 8 {
        let refused = IdentityCard::from_bytes(&flipped(&bytes, bit)).and_then(|c| c.verify());
        assert!(refused.is_err(), "card with bit {bit} flipped accepted");
    }
}

fn check_envelope(doc: &BTreeMap<String, Vec<String>>, i: &Inputs) {
    let key = SectionKey::from_bytes(i.section_key);
    let bytes = hex_of(doc, "envelope.bytes");
    let env = Envelope::from_bytes(&bytes).expect("documented envelope parses");
    env.verify_signature()
        .expect("documented envelope signature verifies");
    assert_eq!(env.open(&key).expect("opens").as_slice(), PLAINTEXT);
    assert_eq!(env.signed_message(), hex_of(doc, "envelope.signed-message"));
    verify_signature(
        &i.phone.id(),
        &hex_of(doc, "envelope.signed-message"),
        &hex_of(doc, "envelope.signature"),
    )
    .expect("documented envelope signature verifies over the signed message");
    // The signed message ends with SHA-256 of the ciphertext.
    let ciphertext = hex_of(doc, "envelope.ciphertext");
    assert!(hex_of(doc, "envelope.signed-message").ends_with(&sha256(&ciphertext)));
    assert_eq!(sha256(&bytes), hex_of(doc, "envelope.hash"));
    // The documented AES-256-GCM key, nonce and AAD open the ciphertext.
    let aead = LessSafeKey::new(
        UnboundKey::new(&AES_256_GCM, &hex_of(doc, "envelope.aead-key")).expect("32-byte key"),
    );
    let mut buf = ciphertext.clone();
    let plain = aead
        .open_in_place(
            Nonce::try_assume_unique_for_key(&hex_of(doc, "envelope.aead-nonce"))
                .expect("12-byte nonce"),
            Aad::from(hex_of(doc, "envelope.aad")),
            &mut buf,
        )
        .expect("documented AEAD parameters open the ciphertext");
    assert_eq!(plain, PLAINTEXT);
    for bit in 0..bytes.len() * 8 {
        if let Ok(e) = Envelope::from_bytes(&flipped(&bytes, bit)) {
            assert!(e.open(&key).is_err(), "envelope bit {bit} flipped accepted");
            assert!(
                e.verify_signature().is_err(),
                "envelope bit {bit} flipped: signature still verifies"
            );
        }
    }
}

fn check_wrap(doc: &BTreeMap<String, Vec<String>>, i: &Inputs) {
    let enc: [u8; 32] = hex_of(doc, "wrap.enc").try_into().expect("32-byte enc");
    let wrapped = WrappedKey {
        enc,
        ciphertext: hex_of(doc, "wrap.ciphertext"),
    };
    let aad = text_of(doc, "wrap.aad").into_bytes();
    let key = unwrap_key(&i.carer, &wrapped, &aad).expect("documented wrap opens");
    assert_eq!(key.as_slice(), &i.section_key);
    assert!(unwrap_key(&i.tablet, &wrapped, &aad).is_err());
    assert!(unwrap_key(&i.carer, &wrapped, b"satchel/v1/section-key|other").is_err());
    for bit in 0..32 * 8 {
        let mut w = wrapped.clone();
        w.enc = flipped(&enc, bit).try_into().expect("32 bytes");
        assert!(unwrap_key(&i.carer, &w, &aad).is_err(), "enc bit {bit}");
    }
    for bit in 0..wrapped.ciphertext.len() * 8 {
        let mut w = wrapped.clone();
        w.ciphertext = flipped(&wrapped.ciphertext, bit);
        assert!(unwrap_key(&i.carer, &w, &aad).is_err(), "ct bit {bit}");
    }
}

fn signed(doc: &BTreeMap<String, Vec<String>>, n: u8) -> SignedStatement {
    SignedStatement {
        statement: hex_of(doc, &format!("access.{n}.bytes")),
        signature: hex_of(doc, &format!("access.{n}.signature")),
    }
}

fn check_access_log(doc: &BTreeMap<String, Vec<String>>, i: &Inputs) {
    let first = signed(doc, 1);
    let second = signed(doc, 2);
    let creator = i.phone.id();
    let card = Some(i.phone.card());
    let members = verify_log(i.record, creator, card, &[first.clone(), second.clone()])
        .expect("documented access log verifies");
    assert_eq!(members.len, 2);
    assert_eq!(members.head.to_vec(), hex_of(doc, "access.2.hash"));
    assert_eq!(
        statement_hash(&first.statement).to_vec(),
        hex_of(doc, "access.1.hash")
    );
    assert!(members.may_read(&i.carer.id(), SECTION, 1_700_000_000_001));
    assert!(!members.may_read(&i.carer.id(), "allergies", 1_700_000_000_001));
    assert!(!members.may_read(&i.carer.id(), SECTION, 1_700_604_800_000));
    assert!(members.owner_devices.contains_key(&i.tablet.id()));
    // The second names the first's hash; the first names zeros.
    let parsed = second.verify(1).expect("second statement verifies");
    assert_eq!(parsed.prev.to_vec(), hex_of(doc, "access.1.hash"));
    let parsed_first = first.verify(0).expect("first statement verifies");
    assert_eq!(parsed_first.prev, [0u8; 32]);
    // The key wrap inside the grant is the documented wrap.
    let AccessChange::Grant { keys, .. } = parsed_first.change else {
        panic!("the first statement is a grant");
    };
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0].key.enc.to_vec(), hex_of(doc, "wrap.enc"));
    assert_eq!(keys[0].key.ciphertext, hex_of(doc, "wrap.ciphertext"));
    // Out of order, a flipped bit in either statement's bytes or signature:
    // refused.
    assert!(verify_log(i.record, creator, card, &[second.clone(), first.clone()]).is_err());
    // One bit in every byte (a different bit position from byte to byte):
    // every bit of ~1 KiB would be slow in debug builds.
    for byte in 0..first.statement.len() {
        let bit = byte * 8 + byte % 8;
        let mut s = first.clone();
        s.statement = flipped(&first.statement, bit);
        assert!(
            verify_log(i.record, creator, card, &[s, second.clone()]).is_err(),
            "statement 1 bit {bit} flipped accepted"
        );
    }
    for bit in 0..first.signature.len() * 8 {
        let mut s = first.clone();
        s.signature = flipped(&first.signature, bit);
        assert!(verify_log(i.record, creator, card, &[s, second.clone()]).is_err());
    }
    let mut s = second.clone();
    s.statement = flipped(&second.statement, 8 * (second.statement.len() / 2));
    assert!(verify_log(i.record, creator, card, &[first, s]).is_err());
}

fn check_auth(doc: &BTreeMap<String, Vec<String>>, i: &Inputs) {
    let message = hex_of(doc, "auth.signed-message");
    let signature = hex_of(doc, "auth.signature");
    let id: IdentityId = i.phone.id();
    verify_signature(&id, &message, &signature).expect("documented auth signature verifies");
    for bit in 0..signature.len() * 8 {
        assert!(verify_signature(&id, &message, &flipped(&signature, bit)).is_err());
    }
    for bit in 0..message.len() * 8 {
        assert!(verify_signature(&id, &flipped(&message, bit), &signature).is_err());
    }
}

fn check_recovery(doc: &BTreeMap<String, Vec<String>>, i: &Inputs) {
    let printed = text_of(doc, "recovery.printed");
    let key = RecoveryKey::parse(&printed).expect("documented recovery key parses");
    assert_eq!(key.record_id, i.record);
    assert_eq!(key.to_printable().as_str(), printed);
    assert_eq!(
        key.identity().expect("derives").id().as_bytes().to_vec(),
        hex_of(doc, "recovery.identity-id")
    );
    // Flip one bit of the encoded record id or secret: the checksum refuses.
    let body: String = printed["SATCHEL-".len()..]
        .chars()
        .filter(|c| *c != '-')
        .collect();
    let raw = BASE32_NOPAD
        .decode(body.as_bytes())
        .expect("base32 decodes");
    assert_eq!(raw.len(), 50);
    assert_eq!(raw[48..].to_vec(), hex_of(doc, "recovery.checksum"));
    for bit in 0..48 * 8 {
        let text = format!("SATCHEL-{}", BASE32_NOPAD.encode(&flipped(&raw, bit)));
        assert_eq!(
            RecoveryKey::parse(&text).map(|_| ()),
            Err(RecoveryKeyError::Checksum),
            "recovery key bit {bit} flipped accepted"
        );
    }
}
