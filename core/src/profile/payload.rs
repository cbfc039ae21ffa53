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
            if claimed > MAX_PAYLOAD {
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
}
