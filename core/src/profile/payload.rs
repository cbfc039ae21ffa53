//! The plaintext framing inside a section envelope: one codec byte, then the
//! payload. Automerge changes and snapshots are compressed with LZ4 (fast to
//! decompress on every open) when that makes them smaller.
//!
//! Compression happens before encryption, so an envelope's length says a
//! little about how compressible its content is; envelope sizes are not
//! hidden anyway (see docs/adr/0002-store-layout.md).

use super::{ProfileError, Result};

const RAW: u8 = 0;
const LZ4: u8 = 1;

/// Refuse to inflate anything claiming to be larger than this.
pub const MAX_PAYLOAD: usize = 256 * 1024 * 1024;

/// LZ4's largest expansion: one input byte adds at most 255 output bytes.
const MAX_LZ4_RATIO: usize = 255;

/// Frame `bytes`, compressing when it helps.
pub fn encode(bytes: &[u8]) -> Vec<u8> {
    if bytes.len() >= 256 {
        let compressed = lz4_flex::compress_prepend_size(bytes);
        if compressed.len() + 1 < bytes.len() {
            let mut out = Vec::with_capacity(compressed.len() + 1);
            out.push(LZ4);
            out.extend_from_slice(&compressed);
            return out;
        }
    }
    let mut out = Vec::with_capacity(bytes.len() + 1);
    out.push(RAW);
    out.extend_from_slice(bytes);
    out
}

/// Undo [`encode`].
pub fn decode(framed: &[u8]) -> Result<Vec<u8>> {
    match framed.split_first() {
        Some((&RAW, rest)) => Ok(rest.to_vec()),
        Some((&LZ4, rest)) => {
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
            lz4_flex::decompress_size_prepended(rest).map_err(|_| ProfileError::Corrupt("payload"))
        }
        _ => Err(ProfileError::Corrupt("payload codec")),
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
        }
        assert!(encode(&large).len() < large.len() / 4);
    }

    #[test]
    fn refuses_bad_frames() {
        assert!(decode(&[]).is_err());
        assert!(decode(&[9, 1, 2]).is_err());
        assert!(decode(&[LZ4, 1]).is_err());
        let mut huge = vec![LZ4];
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(decode(&huge).is_err());
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
