//! HKDF-SHA256 (RFC 5869), the one key-derivation call of the protocol and
//! the device: envelope keys, device-link and recovery secrets all derive
//! through [`hkdf_sha256`]. A failed derivation is an error, never zeros.

use ring::hkdf::{self, KeyType, HKDF_SHA256};

use super::error::{CryptoError, Result};

struct Len(usize);

impl KeyType for Len {
    fn len(&self) -> usize {
        self.0
    }
}

/// Fill `out` with HKDF-SHA256(salt, ikm, info). `info` parts are
/// concatenated. Fails only for outputs longer than 255 × 32 bytes.
pub fn hkdf_sha256(salt: &[u8], ikm: &[u8], info: &[&[u8]], out: &mut [u8]) -> Result<()> {
    hkdf::Salt::new(HKDF_SHA256, salt)
        .extract(ikm)
        .expand(info, Len(out.len()))
        .and_then(|okm| okm.fill(out))
        .map_err(|_| CryptoError::Malformed("key derivation"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 5869, test case 1.
    #[test]
    fn rfc5869_case_1() {
        let ikm = [0x0bu8; 22];
        let salt: Vec<u8> = (0x00..=0x0c).collect();
        let info: Vec<u8> = (0xf0..=0xf9).collect();
        let mut okm = [0u8; 42];
        hkdf_sha256(&salt, &ikm, &[&info], &mut okm).unwrap();
        assert_eq!(
            hex::encode(okm),
            "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"
        );
    }

    #[test]
    fn too_long_an_output_is_an_error() {
        let mut out = vec![0u8; 255 * 32 + 1];
        assert!(hkdf_sha256(b"s", b"k", &[b"i"], &mut out).is_err());
    }
}
