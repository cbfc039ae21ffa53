//! The plaintext framing inside a section envelope: one frame byte, then the
//! payload. The frame byte's low four bits name the codec (raw, or LZ4 when
//! that is smaller: fast to decompress on every open); its high four bits
//! name what the envelope is:
//!
//! - `0` legacy: written before envelopes were told apart (changes or a
//!   document); read, never written for sync;
//! - `1` a **change**: automerge changes; the envelope header's `seq` is
//!   the author's number for this log (1, 2, 3, ... without gaps), so a
//!   reader can tell when one is missing;
//! - `2` a **snapshot**: a whole section document, preceded by its
//!   **coverage** (per author, every change numbered up to `n` is in it).
//!   The coverage is inside the sealed, signed payload, so nobody but the
//!   snapshot's author can change what it claims to cover, and a change
//!   can never be passed off as a snapshot (or the other way round).
//!
//! Compression happens before encryption, so an envelope's length says a
//! little about how compressible its content is; envelope sizes are not
//! hidden anyway (see docs/adr/0002-store-layout.md).

use std::collections::BTreeMap;

use super::{ProfileError, Result};
use crate::ids::IdentityId;

const RAW: u8 = 0;
const LZ4: u8 = 1;

const LEGACY: u8 = 0;
const CHANGE: u8 = 1;
const SNAPSHOT: u8 = 2;

/// Refuse to inflate anything claiming to be larger than this.
pub const MAX_PAYLOAD: usize = 256 * 1024 * 1024;

/// LZ4's largest expansion: one input byte adds at most 255 output bytes.
const MAX_LZ4_RATIO: usize = 255;

/// Most authors a snapshot's coverage may name.
const MAX_COVERAGE: usize = 1 << 16;

/// Per author, the highest change number of a log a snapshot includes
/// (with every lower one).
pub type Coverage = BTreeMap<IdentityId, u64>;

/// A decoded envelope payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    /// Written before envelopes were told apart.
    Legacy(Vec<u8>),
    /// Automerge changes, numbered by the envelope header's `seq`.
    Change(Vec<u8>),
    /// A whole document and what it covers.
    Snapshot { coverage: Coverage, doc: Vec<u8> },
}

impl Payload {
    /// The automerge bytes, whatever the kind.
    pub fn into_bytes(self) -> Vec<u8> {
        match self {
            Payload::Legacy(b) | Payload::Change(b) => b,
            Payload::Snapshot { doc, .. } => doc,
        }
    }
}

/// Frame bytes of the legacy kind (local compaction snapshots, which never
/// leave the device, and wearables chunks).
pub fn encode(bytes: &[u8]) -> Vec<u8> {
    frame(LEGACY, bytes)
}

/// Frame automerge changes.
pub fn encode_change(bytes: &[u8]) -> Vec<u8> {
    frame(CHANGE, bytes)
}

/// Frame a whole document with its coverage.
pub fn encode_snapshot(coverage: &Coverage, doc: &[u8]) -> Vec<u8> {
    let mut inner = Vec::with_capacity(4 + coverage.len() * 40 + doc.len());
    inner.extend_from_slice(
        &u32::try_from(coverage.len())
            .unwrap_or(u32::MAX)
            .to_be_bytes(),
    );
    for (author, upto) in coverage {
        inner.extend_from_slice(author.as_bytes());
        inner.extend_from_slice(&upto.to_be_bytes());
    }
    inner.extend_from_slice(doc);
    frame(SNAPSHOT, &inner)
}

fn frame(kind: u8, bytes: &[u8]) -> Vec<u8> {
    if bytes.len() >= 256 {
        let compressed = lz4_flex::compress_prepend_size(bytes);
        if compressed.len() + 1 < bytes.len() {
            let mut out = Vec::with_capacity(compressed.len() + 1);
            out.push(kind << 4 | LZ4);
            out.extend_from_slice(&compressed);
            return out;
        }
    }
    let mut out = Vec::with_capacity(bytes.len() + 1);
    out.push(kind << 4 | RAW);
    out.extend_from_slice(bytes);
    out
}

/// The automerge bytes of any frame (for opening local data).
pub fn decode(framed: &[u8]) -> Result<Vec<u8>> {
    decode_payload(framed).map(Payload::into_bytes)
}

/// Undo [`encode`], [`encode_change`] or [`encode_snapshot`].
pub fn decode_payload(framed: &[u8]) -> Result<Payload> {
    let (&first, rest) = framed
        .split_first()
        .ok_or(ProfileError::Corrupt("payload"))?;
    let inner = match first & 0x0f {
        RAW => rest.to_vec(),
        LZ4 => {
            let claimed = rest
                .get(..4)
                .and_then(|b| <[u8; 4]>::try_from(b).ok())
                .map(|b| u32::from_le_bytes(b) as usize)
                .ok_or(ProfileError::Corrupt("payload"))?;
            // LZ4 cannot expand input more than 255-fold (a match token
            // adds at most 255 bytes per input byte), so a larger claim is
            // refused before anything is allocated for it.
            let possible = rest.len().saturating_sub(4).saturating_mul(MAX_LZ4_RATIO);
            if claimed > MAX_PAYLOAD || claimed > possible {
                return Err(ProfileError::Corrupt("payload size"));
            }
            lz4_flex::decompress_size_prepended(rest)
                .map_err(|_| ProfileError::Corrupt("payload"))?
        }
        _ => return Err(ProfileError::Corrupt("payload codec")),
    };
    match first >> 4 {
        LEGACY => Ok(Payload::Legacy(inner)),
        CHANGE => Ok(Payload::Change(inner)),
        SNAPSHOT => {
            let bad = || ProfileError::Corrupt("snapshot coverage");
            let count = inner
                .get(..4)
                .and_then(|b| <[u8; 4]>::try_from(b).ok())
                .map(|b| u32::from_be_bytes(b) as usize)
                .ok_or_else(bad)?;
            if count > MAX_COVERAGE {
                return Err(bad());
            }
            let end = 4 + count * 40;
            let table = inner.get(4..end).ok_or_else(bad)?;
            let mut coverage = Coverage::new();
            for row in table.chunks_exact(40) {
                let id = <[u8; 32]>::try_from(&row[..32]).map_err(|_| bad())?;
                let upto = <[u8; 8]>::try_from(&row[32..]).map_err(|_| bad())?;
                if coverage
                    .insert(IdentityId(id), u64::from_be_bytes(upto))
                    .is_some()
                {
                    return Err(bad());
                }
            }
            Ok(Payload::Snapshot {
                coverage,
                doc: inner.get(end..).ok_or_else(bad)?.to_vec(),
            })
        }
        _ => Err(ProfileError::Corrupt("payload kind")),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_small_large_and_incompressible() {
        let small = b"abc".to_vec();
        let large = b"{\"resourceType\":\"Observation\"}".repeat(1000);
        let noise: Vec<u8> = (0..5000u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        for input in [small, large.clone(), noise, Vec::new()] {
            assert_eq!(decode(&encode(&input)).unwrap(), input);
            assert_eq!(
                decode_payload(&encode_change(&input)).unwrap(),
                Payload::Change(input.clone())
            );
            let coverage = Coverage::from([(IdentityId([7; 32]), 42)]);
            assert_eq!(
                decode_payload(&encode_snapshot(&coverage, &input)).unwrap(),
                Payload::Snapshot {
                    coverage,
                    doc: input.clone()
                }
            );
        }
        assert!(encode(&large).len() < large.len() / 4);
    }

    #[test]
    fn kinds_are_told_apart() {
        assert!(matches!(
            decode_payload(&encode(b"x")).unwrap(),
            Payload::Legacy(_)
        ));
        assert!(matches!(
            decode_payload(&encode_change(b"x")).unwrap(),
            Payload::Change(_)
        ));
        // Byte layout: kind in the high nibble, codec in the low one.
        assert_eq!(encode_change(b"x")[0], 0x10);
        assert_eq!(encode_snapshot(&Coverage::new(), b"x")[0], 0x20);
    }

    #[test]
    fn refuses_bad_frames() {
        assert!(decode(&[]).is_err());
        assert!(decode(&[9, 1, 2]).is_err());
        assert!(decode(&[0x30, 1, 2]).is_err());
        assert!(decode(&[LZ4, 1]).is_err());
        let mut huge = vec![LZ4];
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode(&huge).is_err());
        // A snapshot whose coverage table runs past the end.
        assert!(decode(&[0x20, 0, 0, 0, 2, 1, 2, 3]).is_err());
        // The same author twice.
        let mut twice = vec![0x20, 0, 0, 0, 2];
        for _ in 0..2 {
            twice.extend_from_slice(&[5; 32]);
            twice.extend_from_slice(&1u64.to_be_bytes());
        }
        assert!(decode(&twice).is_err());
    }

    #[test]
    fn claims_the_data_cannot_back_are_refused() {
        // 256 MiB claimed by a few bytes: refused before allocating.
        let mut claim = vec![LZ4];
        claim.extend_from_slice(&u32::try_from(MAX_PAYLOAD).unwrap().to_le_bytes());
        claim.extend_from_slice(&[0x1f, 0x00, 0x01, 0x00]);
        assert!(matches!(
            decode(&claim),
            Err(ProfileError::Corrupt("payload size"))
        ));
        // The most compressible input still decodes (the bound is not too tight).
        let zeros = vec![0u8; 1 << 20];
        let framed = encode(&zeros);
        assert_eq!(framed[0], LZ4);
        assert_eq!(decode(&framed).unwrap(), zeros);
        // A claim smaller than what the data decompresses to is an error, not a panic.
        let mut short = framed.clone();
        short[1..5].copy_from_slice(&10u32.to_le_bytes());
        assert!(decode(&short).is_err());
    }
}
