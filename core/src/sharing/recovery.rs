//! Recovery keys: 32 random bytes the patient writes down, which restore
//! the record on a new device from the relay's ciphertext alone.
//!
//! From the secret, HKDF-SHA256 derives an identity (Ed25519 seed and
//! X25519 key) that an owner device adds to the access log as an owner
//! device (`add-recovery`), with every section key wrapped to it, and a
//! sealing key for the record's facts (creator, owner's name) kept in that
//! statement. Printed form: `SATCHEL-` then base32 of
//! `record id (16) || secret (32) || SHA-256(record id || secret)[..2]`,
//! in groups of four; the checksum catches typing mistakes before any
//! network call.
//!
//! The base32 codec is the few lines below rather than a crate's: a key
//! is always 50 bytes, 80 characters, and a general codec (data-encoding,
//! every alphabet and bit width) cost the phone library 37 KB (docs/mobile.md
//! "Size"). The tests check it against data-encoding.

use zeroize::{Zeroize, Zeroizing};

use crate::crypto::kdf::hkdf_sha256;
use crate::crypto::{CryptoError, Identity, Role, SymmetricKey};
use crate::ids::RecordId;

const PREFIX: &str = "SATCHEL-";

/// RFC 4648 base32 alphabet (upper case, no padding needed: 50 bytes are
/// 80 characters exactly).
const BASE32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/// Bytes of the printed key, and its base32 length.
const RAW_LEN: usize = 50;
const TEXT_LEN: usize = RAW_LEN / 5 * 8;

/// Base32 of `raw` (every 5 bytes give 8 characters).
fn base32_encode(raw: &[u8; RAW_LEN]) -> Zeroizing<String> {
    let mut out = Zeroizing::new(String::with_capacity(TEXT_LEN));
    for block in raw.chunks_exact(5) {
        let mut bits = 0u64;
        for byte in block {
            bits = (bits << 8) | u64::from(*byte);
        }
        for i in (0..8).rev() {
            let index = (bits >> (i * 5)) & 31;
            out.push(char::from(BASE32[index as usize]));
        }
        bits.zeroize();
    }
    out
}

/// The bytes of an 80-character upper-case base32 text (`None`: another
/// length, or a character outside the alphabet).
fn base32_decode(text: &[u8]) -> Option<Zeroizing<[u8; RAW_LEN]>> {
    if text.len() != TEXT_LEN {
        return None;
    }
    let mut raw = Zeroizing::new([0u8; RAW_LEN]);
    for (block, out) in text.chunks_exact(8).zip(raw.chunks_exact_mut(5)) {
        let mut bits = 0u64;
        for c in block {
            let value = BASE32.iter().position(|a| a == c)?;
            bits = (bits << 5) | value as u64;
        }
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = (bits >> (32 - 8 * i)) as u8;
        }
        bits.zeroize();
    }
    Some(raw)
}

/// Why a recovery key was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecoveryKeyError {
    #[error("this is not a Satchel recovery key (it should start with SATCHEL- and have 20 groups of 4 characters)")]
    Format,
    #[error(
        "the recovery key has a typing mistake (its checksum does not match); check each group"
    )]
    Checksum,
    #[error("the recovery key could not derive its keys")]
    Derive,
}

/// A record's recovery key. Debug never shows the secret.
pub struct RecoveryKey {
    pub record_id: RecordId,
    secret: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for RecoveryKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecoveryKey")
            .field("record_id", &self.record_id)
            .finish_non_exhaustive()
    }
}

fn checksum(record: &RecordId, secret: &[u8; 32]) -> [u8; 2] {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(record.as_bytes());
    ctx.update(secret);
    let d = ctx.finish();
    [d.as_ref()[0], d.as_ref()[1]]
}

impl RecoveryKey {
    /// A fresh recovery key for `record`.
    pub fn generate(record_id: RecordId) -> Result<Self, CryptoError> {
        let key = SymmetricKey::generate()?;
        Ok(Self {
            record_id,
            secret: Zeroizing::new(*key.expose()),
        })
    }

    /// The printed form (groups of four characters).
    pub fn to_printable(&self) -> Zeroizing<String> {
        let mut raw = Zeroizing::new([0u8; RAW_LEN]);
        raw[..16].copy_from_slice(self.record_id.as_bytes());
        raw[16..48].copy_from_slice(self.secret.as_ref());
        raw[48..].copy_from_slice(&checksum(&self.record_id, &self.secret));
        let body = base32_encode(&raw);
        let grouped: Vec<&str> = body
            .as_bytes()
            .chunks(4)
            .filter_map(|c| std::str::from_utf8(c).ok())
            .collect();
        Zeroizing::new(format!("{PREFIX}{}", grouped.join("-")))
    }

    /// Read a printed key (case, spaces and dashes are forgiven).
    pub fn parse(text: &str) -> Result<Self, RecoveryKeyError> {
        let upper = Zeroizing::new(text.trim().to_ascii_uppercase());
        let body = upper
            .strip_prefix(PREFIX.trim_end_matches('-'))
            .ok_or(RecoveryKeyError::Format)?;
        let compact: Zeroizing<String> = Zeroizing::new(
            body.chars()
                .filter(|c| !matches!(c, '-' | ' ' | '\n' | '\t'))
                .collect(),
        );
        let raw = base32_decode(compact.as_bytes()).ok_or(RecoveryKeyError::Format)?;
        let record_id = RecordId::from_slice(&raw[..16]).map_err(|_| RecoveryKeyError::Format)?;
        let mut secret = Zeroizing::new([0u8; 32]);
        secret.copy_from_slice(&raw[16..48]);
        if checksum(&record_id, &secret) != raw[48..50] {
            return Err(RecoveryKeyError::Checksum);
        }
        Ok(Self { record_id, secret })
    }

    fn derive(&self, info: &str) -> Result<Zeroizing<[u8; 32]>, RecoveryKeyError> {
        let mut out = Zeroizing::new([0u8; 32]);
        let label = format!("{info}|{}", self.record_id);
        hkdf_sha256(
            b"satchel/v1/recovery",
            self.secret.as_ref(),
            &[label.as_bytes()],
            out.as_mut(),
        )
        .map_err(|_| RecoveryKeyError::Derive)?;
        Ok(out)
    }

    /// The recovery identity (always the same for this key).
    pub fn identity(&self) -> Result<Identity, RecoveryKeyError> {
        Identity::from_seeds(
            self.derive("signing")?,
            self.derive("agreement")?,
            "Recovery key",
            Role::PatientDevice,
            None,
        )
        .map_err(|_| RecoveryKeyError::Derive)
    }

    fn sealing_key(&self) -> Result<SymmetricKey, RecoveryKeyError> {
        Ok(SymmetricKey::from_bytes(*self.derive("seal")?))
    }

    fn aad(&self) -> Vec<u8> {
        format!("satchel/v1/recovery-info|{}", self.record_id).into_bytes()
    }

    /// Seal the record's facts for the `add-recovery` statement.
    pub fn seal(&self, plain: &[u8]) -> Result<Vec<u8>, RecoveryKeyError> {
        self.sealing_key()?
            .seal(&self.aad(), plain)
            .map_err(|_| RecoveryKeyError::Derive)
    }

    /// Open what [`RecoveryKey::seal`] sealed (`None`: not this key's).
    pub fn open(&self, sealed: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
        self.sealing_key().ok()?.open(&self.aad(), sealed).ok()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use data_encoding::BASE32_NOPAD;

    #[test]
    fn base32_is_rfc_4648() {
        // RFC 4648 section 10 ("fooba" -> "MZXW6YTB"), ten times over.
        let raw: [u8; RAW_LEN] = *b"foobafoobafoobafoobafoobafoobafoobafoobafoobafooba";
        let text = base32_encode(&raw);
        assert_eq!(&text[..], "MZXW6YTB".repeat(10));
        assert_eq!(*base32_decode(text.as_bytes()).unwrap(), raw);
        // The same as a general codec, on every byte value in every place.
        for seed in 0..=255u8 {
            let raw: [u8; RAW_LEN] = std::array::from_fn(|i| {
                seed.wrapping_mul(31)
                    .wrapping_add((i as u8).wrapping_mul(97))
            });
            let text = base32_encode(&raw);
            assert_eq!(&text[..], BASE32_NOPAD.encode(&raw));
            assert_eq!(*base32_decode(text.as_bytes()).unwrap(), raw);
        }
        // Another length, lower case, padding or a letter outside the alphabet: refused.
        assert!(base32_decode(&text.as_bytes()[..72]).is_none());
        assert!(base32_decode(text.to_lowercase().as_bytes()).is_none());
        let mut bad = text.as_bytes().to_vec();
        bad[79] = b'=';
        assert!(base32_decode(&bad).is_none());
        bad[79] = b'1';
        assert!(base32_decode(&bad).is_none());
    }

    #[test]
    fn printable_round_trip_checksum_and_determinism() {
        let key = RecoveryKey::generate(RecordId::random()).unwrap();
        let text = key.to_printable();
        assert!(text.starts_with(PREFIX));
        let back = RecoveryKey::parse(&text.to_lowercase().replace('-', " ")).unwrap();
        assert_eq!(back.record_id, key.record_id);
        assert_eq!(back.identity().unwrap().id(), key.identity().unwrap().id());
        let sealed = key.seal(b"facts").unwrap();
        assert_eq!(&back.open(&sealed).unwrap()[..], b"facts");
        // One typo: the checksum (or the format) catches it.
        let mut chars: Vec<char> = text.chars().collect();
        let i = PREFIX.len() + 10;
        chars[i] = if chars[i] == 'A' { 'B' } else { 'A' };
        let typo: String = chars.into_iter().collect();
        assert!(RecoveryKey::parse(&typo).is_err());
        assert!(matches!(
            RecoveryKey::parse("hello"),
            Err(RecoveryKeyError::Format)
        ));
        let other = RecoveryKey::generate(key.record_id).unwrap();
        assert!(other.open(&sealed).is_none());
        assert!(!format!("{key:?}").contains(&text[PREFIX.len()..PREFIX.len() + 8]));
    }
}
