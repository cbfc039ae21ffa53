//! Writes the fuzz seed corpus: `cargo run -p satchel-tests --example
//! fuzz_seeds` fills `fuzz/corpus/<target>/` with the seeds the core makes
//! from its fixtures (`satchel_core::fuzzing::seeds`), the demo's provider
//! FHIR files, and relay request bodies built from those seeds. Files are
//! named by content hash so reruns add nothing twice. Run by
//! `scripts/fuzz.sh --seeds`; the result is committed (a few KiB a target).

use std::path::Path;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use satchel_core::fuzzing::{seeds, Seed};
use serde_json::json;

fn write(dir: &Path, target: &str, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    let d = dir.join(target);
    std::fs::create_dir_all(&d)?;
    let digest = ring_free_hash(bytes);
    std::fs::write(d.join(format!("{name}-{digest:016x}")), bytes)
}

/// FNV-1a: a stable short name for a seed's content (not security).
fn ring_free_hash(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3)
    })
}

fn main() -> std::io::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let corpus = root.join("fuzz/corpus");
    let all: Vec<Seed> = seeds();
    for s in &all {
        write(&corpus, s.target, &s.name, &s.bytes)?;
    }
    // The demo's provider pushes (real Bundles the end-to-end tests import).
    for file in [
        "gp.json",
        "hospital.json",
        "patient.json",
        "wrong_patient.json",
    ] {
        let bytes = std::fs::read(root.join("cli/src/commands/demo/data").join(file))?;
        let stem = file.trim_end_matches(".json");
        write(&corpus, "fhir_bundle", stem, &bytes)?;
    }
    // Relay request bodies (first byte: which body; see relay_bodies).
    let seed = |target: &str| {
        all.iter()
            .find(|s| s.target == target)
            .map(|s| s.bytes.clone())
    };
    let envelope = STANDARD.encode(seed("envelope").unwrap_or_default());
    let statement = STANDARD.encode(seed("statement").unwrap_or_default());
    let rid = "f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff";
    let id = "03a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b8";
    let sig = STANDARD.encode([7u8; 64]);
    let bodies: [(u8, String); 12] = [
        (0, json!({"identity": id}).to_string()),
        (
            1,
            json!({"identity": id, "challenge": STANDARD.encode([0x22u8; 32]), "signature": sig})
                .to_string(),
        ),
        (
            2,
            json!({"record_id": rid, "owner": {"version": 1, "signing_key": id,
            "agreement_key": "605a725d2a4adfeeb1a29e17edd621c1b7593ee8cdbc44ac6c4ab6e2f805d23c",
            "display_name": "Test phone", "role": "patient-device", "organisation": null,
            "self_signature": "AA"}})
            .to_string(),
        ),
        (
            3,
            json!({"statement": statement, "signature": sig}).to_string(),
        ),
        (4, json!({"envelopes": [envelope]}).to_string()),
        (5, json!({"upto_seq": 3, "envelope": envelope}).to_string()),
        (6, json!({"record_id": rid, "expires_in": 600}).to_string()),
        (7, json!({"payload": STANDARD.encode(b"join")}).to_string()),
        (8, "after=5&limit=100".to_string()),
        (9, "after=0".to_string()),
        (10, rid.to_string()),
        (11, "wearables.chunks".to_string()),
    ];
    for (which, body) in bodies {
        let mut bytes = vec![which];
        bytes.extend_from_slice(body.as_bytes());
        write(&corpus, "relay_bodies", &format!("body-{which}"), &bytes)?;
    }
    println!("wrote {} seeds to {}", all.len() + 16, corpus.display());
    Ok(())
}
