//! [`SymmetricKey`]: a 256-bit key for AES-256-GCM with a random nonce, used
//! by the at-rest vault layer (vault key → master key → identity secrets and
//! section keys).
//!
//! Sealed layout: `version (1 byte, = 1) || nonce (12 random bytes) ||
//! ciphertext || tag (16 bytes)`. The caller's associated data is
//! authenticated but not stored. Random 96-bit nonces are safe for well under
//! 2^32 messages per key, far more than a vault ever seals.

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use zeroize::{Zeroize, Zeroizing};

use super::error::{CryptoError, Result};
use super::random;

/// Version byte at the start of [`SymmetricKey::seal`] output.
pub const SEALED_VERSION: u8 = 1;
/// AES-GCM tag length.
pub(crate) const TAG_LEN: usize = 16;
/// Bytes [`SymmetricKey::seal`] adds to the plaintext length.
pub const SEALED_OVERHEAD: usize = 1 + NONCE_LEN + TAG_LEN;

super::random::key256!(
    /// A 256-bit symmetric key (AES-256-GCM). Zeroized on drop; `Debug` is
    /// redacted.
    SymmetricKey,
    "symmetric key"
);

impl SymmetricKey {
    fn aead_key(&self) -> Result<LessSafeKey> {
        UnboundKey::new(&AES_256_GCM, &self.bytes)
            .map(LessSafeKey::new)
            .map_err(|_| CryptoError::Malformed("symmetric key"))
    }

    /// Encrypt and authenticate `plaintext`, binding `aad`. Output:
    /// `1 || nonce(12) || ciphertext+tag`.
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>> {
        let key = self.aead_key()?;
        let nonce: [u8; NONCE_LEN] = random::array()?;
        let mut out = Vec::with_capacity(SEALED_OVERHEAD + plaintext.len());
        out.push(SEALED_VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plaintext);
        match key.seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad),
            &mut out[1 + NONCE_LEN..],
        ) {
            Ok(tag) => {
                out.extend_from_slice(tag.as_ref());
                Ok(out)
            }
            Err(_) => {
                out.zeroize();
                Err(CryptoError::Malformed("plaintext length"))
            }
        }
    }

    /// Authenticate and decrypt the output of [`SymmetricKey::seal`]. A wrong
    /// key, wrong `aad` or any modification gives [`CryptoError::Decrypt`];
    /// input too short to be sealed data gives [`CryptoError::Malformed`].
    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
        if sealed.len() < SEALED_OVERHEAD {
            return Err(CryptoError::Malformed("sealed data"));
        }
        if sealed[0] != SEALED_VERSION {
            return Err(CryptoError::UnsupportedVersion(sealed[0]));
        }
        let nonce = Nonce::try_assume_unique_for_key(&sealed[1..1 + NONCE_LEN])
            .map_err(|_| CryptoError::Malformed("sealed data"))?;
        let key = self.aead_key()?;
        let mut buf = Zeroizing::new(sealed[1 + NONCE_LEN..].to_vec());
        let len = key
            .open_in_place(nonce, Aad::from(aad), buf.as_mut_slice())
            .map_err(|_| CryptoError::Decrypt)?
            .len();
        buf.truncate(len);
        Ok(buf)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let key = SymmetricKey::generate().unwrap();
        let sealed = key.seal(b"aad", b"secret section key").unwrap();
        assert_eq!(sealed.len(), SEALED_OVERHEAD + 18);
        assert_eq!(sealed[0], SEALED_VERSION);
        assert_eq!(
            key.open(b"aad", &sealed).unwrap().as_slice(),
            b"secret section key"
        );
        // Empty plaintext works too.
        let empty = key.seal(b"", b"").unwrap();
        assert!(key.open(b"", &empty).unwrap().is_empty());
        // Two seals of the same message differ (random nonce).
        assert_ne!(sealed, key.seal(b"aad", b"secret section key").unwrap());
    }

    #[test]
    fn wrong_key_or_aad_is_decrypt_error() {
        let key = SymmetricKey::generate().unwrap();
        let other = SymmetricKey::generate().unwrap();
        let sealed = key.seal(b"aad", b"payload").unwrap();
        assert_eq!(other.open(b"aad", &sealed), Err(CryptoError::Decrypt));
        assert_eq!(key.open(b"other aad", &sealed), Err(CryptoError::Decrypt));
        let mut tampered = sealed.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert_eq!(key.open(b"aad", &tampered), Err(CryptoError::Decrypt));
        let mut tampered = sealed.clone();
        tampered[5] ^= 0x80; // nonce
        assert_eq!(key.open(b"aad", &tampered), Err(CryptoError::Decrypt));
    }

    #[test]
    fn short_or_unknown_version_is_rejected() {
        let key = SymmetricKey::generate().unwrap();
        let sealed = key.seal(b"", b"x").unwrap();
        assert!(matches!(
            key.open(b"", &sealed[..SEALED_OVERHEAD - 1]),
            Err(CryptoError::Malformed(_))
        ));
        let mut v2 = sealed.clone();
        v2[0] = 2;
        assert_eq!(key.open(b"", &v2), Err(CryptoError::UnsupportedVersion(2)));
    }

    #[test]
    fn from_bytes_and_slice() {
        let key = SymmetricKey::generate().unwrap();
        let copy = SymmetricKey::from_slice(key.expose()).unwrap();
        let same = SymmetricKey::from_bytes(*key.expose());
        let sealed = key.seal(b"a", b"b").unwrap();
        assert_eq!(copy.open(b"a", &sealed).unwrap().as_slice(), b"b");
        assert_eq!(same.open(b"a", &sealed).unwrap().as_slice(), b"b");
        assert!(matches!(
            SymmetricKey::from_slice(&[0u8; 31]),
            Err(CryptoError::Malformed(_))
        ));
    }

    #[test]
    fn debug_is_redacted() {
        let key = SymmetricKey::from_bytes([0xab; 32]);
        let dbg = format!("{key:?}");
        assert!(!dbg.contains("ab"), "{dbg}");
        assert!(dbg.contains("redacted"));
    }
}
