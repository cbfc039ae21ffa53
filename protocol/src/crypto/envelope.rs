//! Envelopes: the signed, encrypted unit of sync and of at-rest section data.
//!
//! A section has a random 256-bit [`SectionKey`] per epoch. Each envelope
//! draws a fresh random 256-bit salt and derives its own AES-256-GCM key and
//! nonce with HKDF-SHA256(salt, IKM = section key, info =
//! `b"satchel/v1/envelope"`) → 32-byte key || 12-byte nonce, so any number of
//! devices can seal under one section key without coordinating nonces. The
//! AEAD's associated data is `b"SCE1" || header encoding`, binding record,
//! section, epoch, author and sequence number. The author then signs
//! `b"satchel/v1/envelope-sig" || header encoding || salt || SHA-256(ciphertext)`
//! with Ed25519; [`Envelope::open`] verifies that signature before decrypting.
//!
//! # Byte layout (`Envelope::to_bytes`), all integers big-endian
//!
//! ```text
//! offset  size        field
//! 0       4           magic b"SCE1"
//! 4       16          record_id
//! 20      1           section_len (1..=64)
//! 21      section_len section (printable ASCII, no spaces)
//! +0      4           epoch (u32)
//! +4      32          author (Ed25519 public key = IdentityId)
//! +36     8           seq (u64)
//! +44     32          salt
//! +76     4           ct_len (u32, 16..=MAX_CIPHERTEXT_LEN)
//! +80     ct_len      ciphertext || 16-byte GCM tag
//! +ct_len 64          Ed25519 signature
//! ```
//!
//! The "header encoding" used in the AAD and the signature is the bytes from
//! `record_id` through `seq` exactly as laid out above. Parsing rejects a
//! wrong magic, bad lengths and trailing bytes, never panics and never
//! allocates more than the input length. [`Envelope::hash`] (SHA-256 of the
//! layout) is the idempotency key for uploads.

use std::fmt;

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::digest::{digest, SHA256};
use zeroize::{Zeroize, Zeroizing};

use super::encoding::Reader;
use super::error::{CryptoError, Result};
use super::identity::{verify_signature, Identity};
use super::kdf::hkdf_sha256;
use super::random;
use super::symmetric::TAG_LEN;
use crate::ids::{IdentityId, RecordId};

/// First four bytes of every encoded envelope (format version 1).
pub const ENVELOPE_MAGIC: [u8; 4] = *b"SCE1";
/// HKDF info string for per-envelope keys.
pub const ENVELOPE_HKDF_INFO: &[u8] = b"satchel/v1/envelope";
/// Domain-separation prefix of envelope signatures.
pub const ENVELOPE_SIGNATURE_DOMAIN: &[u8] = b"satchel/v1/envelope-sig";
/// Longest section name, in bytes.
pub const MAX_SECTION_LEN: usize = 64;
/// Largest ciphertext (plaintext + 16-byte tag) an envelope may carry.
pub const MAX_CIPHERTEXT_LEN: usize = 64 * 1024 * 1024;
/// Largest plaintext [`Envelope::seal`] accepts.
pub const MAX_PLAINTEXT_LEN: usize = MAX_CIPHERTEXT_LEN - TAG_LEN;

super::random::key256!(
    /// A section's 256-bit key for one epoch. Zeroized on drop; `Debug` is
    /// redacted.
    SectionKey,
    "section key"
);

impl SectionKey {
    fn derive(&self, salt: &[u8; 32]) -> Result<(LessSafeKey, [u8; NONCE_LEN])> {
        let mut okm = Zeroizing::new([0u8; 32 + NONCE_LEN]);
        hkdf_sha256(
            salt,
            self.bytes.as_ref(),
            &[ENVELOPE_HKDF_INFO],
            okm.as_mut(),
        )
        .map_err(|_| CryptoError::Malformed("envelope key derivation"))?;
        let key = UnboundKey::new(&AES_256_GCM, &okm[..32])
            .map_err(|_| CryptoError::Malformed("envelope key derivation"))?;
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&okm[32..]);
        Ok((LessSafeKey::new(key), nonce))
    }
}

/// What an envelope is about. Every field is authenticated (AAD) and signed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnvelopeHeader {
    /// The record the envelope belongs to.
    pub record_id: RecordId,
    /// Section name: 1..=64 bytes of printable ASCII without spaces.
    pub section: String,
    /// Section key epoch the envelope was sealed under.
    pub epoch: u32,
    /// Who sealed and signed it.
    pub author: IdentityId,
    /// The author's sequence number for this section.
    pub seq: u64,
}

impl EnvelopeHeader {
    /// Check the section name (1..=64 bytes, ASCII graphic characters only).
    pub fn validate(&self) -> Result<()> {
        let s = self.section.as_bytes();
        if s.is_empty() || s.len() > MAX_SECTION_LEN || !s.iter().all(u8::is_ascii_graphic) {
            return Err(CryptoError::Malformed("section name"));
        }
        Ok(())
    }

    /// The canonical header encoding (record_id || section_len || section ||
    /// epoch || author || seq), as in the byte layout.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let section = self.section.as_bytes();
        let mut out = Vec::with_capacity(16 + 1 + section.len() + 4 + 32 + 8);
        self.write(&mut out);
        out
    }

    fn write(&self, out: &mut Vec<u8>) {
        let section = self.section.as_bytes();
        out.extend_from_slice(self.record_id.as_bytes());
        // validate() bounds the length to 64; saturate for unvalidated input.
        out.push(u8::try_from(section.len()).unwrap_or(u8::MAX));
        out.extend_from_slice(section);
        out.extend_from_slice(&self.epoch.to_be_bytes());
        out.extend_from_slice(self.author.as_bytes());
        out.extend_from_slice(&self.seq.to_be_bytes());
    }

    fn aad(&self) -> Vec<u8> {
        let mut aad = Vec::with_capacity(4 + 16 + 1 + self.section.len() + 44);
        aad.extend_from_slice(&ENVELOPE_MAGIC);
        self.write(&mut aad);
        aad
    }
}

/// A sealed, signed section update.
#[derive(Clone, PartialEq, Eq)]
pub struct Envelope {
    /// Authenticated, signed metadata (in clear).
    pub header: EnvelopeHeader,
    /// Random per-envelope HKDF salt.
    pub salt: [u8; 32],
    /// AES-256-GCM ciphertext with the 16-byte tag appended.
    pub ciphertext: Vec<u8>,
    /// Ed25519 signature by `header.author`.
    pub signature: [u8; 64],
}

/// The signed message: `domain || header || salt || SHA-256(ciphertext)`.
/// Hashing the ciphertext first keeps the Ed25519 message short (its
/// internal SHA-512 runs over ~150 bytes instead of the whole payload;
/// SHA-256 is hardware-accelerated on current phones and servers).
fn signature_message(header: &EnvelopeHeader, salt: &[u8; 32], ciphertext: &[u8]) -> Vec<u8> {
    let mut msg = Vec::with_capacity(
        ENVELOPE_SIGNATURE_DOMAIN.len() + 16 + 1 + header.section.len() + 44 + 32 + 32,
    );
    msg.extend_from_slice(ENVELOPE_SIGNATURE_DOMAIN);
    header.write(&mut msg);
    msg.extend_from_slice(salt);
    msg.extend_from_slice(digest(&SHA256, ciphertext).as_ref());
    msg
}

impl Envelope {
    /// Encrypt `plaintext` under a key derived from `key` and a fresh salt,
    /// bind `header` as associated data, and sign as `signer`. Refuses
    /// (`Malformed`) when `signer` is not `header.author`, the section name
    /// is invalid, or the plaintext exceeds [`MAX_PLAINTEXT_LEN`].
    pub fn seal(
        key: &SectionKey,
        header: EnvelopeHeader,
        plaintext: &[u8],
        signer: &Identity,
    ) -> Result<Envelope> {
        let salt: [u8; 32] = random::array()?;
        Self::seal_with_salt(key, header, plaintext, signer, salt)
    }

    /// [`Envelope::seal`] with a fixed salt, for the protocol's test vectors
    /// and fuzz seeds only (feature `test-vectors`; never for real data).
    #[cfg(feature = "test-vectors")]
    #[doc(hidden)]
    pub fn seal_with_fixed_salt(
        key: &SectionKey,
        header: EnvelopeHeader,
        plaintext: &[u8],
        signer: &Identity,
        salt: [u8; 32],
    ) -> Result<Envelope> {
        Self::seal_with_salt(key, header, plaintext, signer, salt)
    }

    /// [`Envelope::seal`] with a caller-given salt (same checks).
    /// Only `seal` (fresh random salt) and the protocol test vectors
    /// (`core/src/protocol_vectors.rs`) call it: a salt reused under the same
    /// section key and header would reuse the AES-GCM key and nonce.
    pub(crate) fn seal_with_salt(
        key: &SectionKey,
        header: EnvelopeHeader,
        plaintext: &[u8],
        signer: &Identity,
        salt: [u8; 32],
    ) -> Result<Envelope> {
        header.validate()?;
        if signer.id() != header.author {
            return Err(CryptoError::Malformed(
                "envelope author (signer is not the author)",
            ));
        }
        if plaintext.len() > MAX_PLAINTEXT_LEN {
            return Err(CryptoError::Malformed("envelope payload (too large)"));
        }
        let (aead, nonce) = key.derive(&salt)?;
        let mut ciphertext = Vec::with_capacity(plaintext.len() + TAG_LEN);
        ciphertext.extend_from_slice(plaintext);
        let tag = match aead.seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(header.aad()),
            &mut ciphertext,
        ) {
            Ok(tag) => tag,
            Err(_) => {
                ciphertext.zeroize();
                return Err(CryptoError::Malformed("envelope payload"));
            }
        };
        ciphertext.extend_from_slice(tag.as_ref());
        let signature = signer.sign(&signature_message(&header, &salt, &ciphertext));
        Ok(Envelope {
            header,
            salt,
            ciphertext,
            signature,
        })
    }

    /// The exact message the author signed (for batch verification).
    pub fn signed_message(&self) -> Vec<u8> {
        signature_message(&self.header, &self.salt, &self.ciphertext)
    }

    /// Check the author's signature over header, salt and ciphertext. Needs
    /// no key: the sync server calls this too.
    pub fn verify_signature(&self) -> Result<()> {
        self.header.validate()?;
        verify_signature(
            &self.header.author,
            &signature_message(&self.header, &self.salt, &self.ciphertext),
            &self.signature,
        )
    }

    /// Verify the signature first, then decrypt. A bad signature gives
    /// `BadSignature`; a wrong section key or mismatched header gives
    /// `Decrypt`.
    pub fn open(&self, key: &SectionKey) -> Result<Zeroizing<Vec<u8>>> {
        self.verify_signature()?;
        if self.ciphertext.len() < TAG_LEN {
            return Err(CryptoError::Malformed("envelope ciphertext"));
        }
        let (aead, nonce) = key.derive(&self.salt)?;
        let mut buf = Zeroizing::new(self.ciphertext.clone());
        let len = aead
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(self.header.aad()),
                buf.as_mut_slice(),
            )
            .map_err(|_| CryptoError::Decrypt)?
            .len();
        buf.truncate(len);
        Ok(buf)
    }

    /// Encode in the documented byte layout.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(
            4 + 16 + 1 + self.header.section.len() + 44 + 32 + 4 + self.ciphertext.len() + 64,
        );
        out.extend_from_slice(&ENVELOPE_MAGIC);
        self.header.write(&mut out);
        out.extend_from_slice(&self.salt);
        // Bounded by MAX_CIPHERTEXT_LEN for anything sealed or parsed here.
        out.extend_from_slice(
            &u32::try_from(self.ciphertext.len())
                .unwrap_or(u32::MAX)
                .to_be_bytes(),
        );
        out.extend_from_slice(&self.ciphertext);
        out.extend_from_slice(&self.signature);
        out
    }

    /// Parse the documented byte layout. Checks structure only; call
    /// [`Envelope::verify_signature`] or [`Envelope::open`] before trusting
    /// the content.
    pub fn from_bytes(bytes: &[u8]) -> Result<Envelope> {
        const WHAT: &str = "envelope";
        let mut r = Reader::new(bytes, WHAT);
        let magic: [u8; 4] = r.array()?;
        if magic != ENVELOPE_MAGIC {
            if magic[..3] == ENVELOPE_MAGIC[..3] && magic[3].is_ascii_digit() {
                return Err(CryptoError::UnsupportedVersion(magic[3] - b'0'));
            }
            return Err(CryptoError::Malformed("envelope magic"));
        }
        let record_id = RecordId(r.array()?);
        let section_len = usize::from(r.u8()?);
        let section_bytes = r.take(section_len)?;
        if section_bytes.is_empty()
            || section_len > MAX_SECTION_LEN
            || !section_bytes.iter().all(u8::is_ascii_graphic)
        {
            return Err(CryptoError::Malformed("section name"));
        }
        let section = std::str::from_utf8(section_bytes)
            .map_err(|_| CryptoError::Malformed("section name"))?
            .to_owned();
        let epoch = r.u32()?;
        let author = IdentityId(r.array()?);
        let seq = r.u64()?;
        let salt = r.array()?;
        let ct_len = usize::try_from(r.u32()?).map_err(|_| CryptoError::Malformed(WHAT))?;
        if !(TAG_LEN..=MAX_CIPHERTEXT_LEN).contains(&ct_len) {
            return Err(CryptoError::Malformed("envelope ciphertext length"));
        }
        // take() checks the input holds ct_len bytes before we copy them.
        let ciphertext = r.take(ct_len)?.to_vec();
        let signature = r.array()?;
        r.finish()?;
        Ok(Envelope {
            header: EnvelopeHeader {
                record_id,
                section,
                epoch,
                author,
                seq,
            },
            salt,
            ciphertext,
            signature,
        })
    }

    /// SHA-256 of [`Envelope::to_bytes`]: the upload idempotency key.
    pub fn hash(&self) -> [u8; 32] {
        let d = digest(&SHA256, &self.to_bytes());
        let mut out = [0u8; 32];
        out.copy_from_slice(d.as_ref());
        out
    }
}

impl fmt::Debug for Envelope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Envelope")
            .field("header", &self.header)
            .field("ciphertext_len", &self.ciphertext.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::crypto::identity::Role;
    use proptest::prelude::*;

    fn alice() -> Identity {
        Identity::generate("Alice's phone", Role::PatientDevice, None).unwrap()
    }

    fn header(author: &Identity) -> EnvelopeHeader {
        EnvelopeHeader {
            record_id: RecordId([7u8; 16]),
            section: "allergies".into(),
            epoch: 3,
            author: author.id(),
            seq: 42,
        }
    }

    #[test]
    fn seal_open_round_trip() {
        let a = alice();
        let key = SectionKey::generate().unwrap();
        let env = Envelope::seal(&key, header(&a), b"penicillin: anaphylaxis", &a).unwrap();
        env.verify_signature().unwrap();
        assert_eq!(
            env.open(&key).unwrap().as_slice(),
            b"penicillin: anaphylaxis"
        );
        let bytes = env.to_bytes();
        assert_eq!(&bytes[..4], b"SCE1");
        let parsed = Envelope::from_bytes(&bytes).unwrap();
        assert_eq!(parsed, env);
        assert_eq!(parsed.hash(), env.hash());
        assert_eq!(
            parsed.open(&key).unwrap().as_slice(),
            b"penicillin: anaphylaxis"
        );
        // Fresh salt every time: same input, different envelope.
        let env2 = Envelope::seal(&key, header(&a), b"penicillin: anaphylaxis", &a).unwrap();
        assert_ne!(env2.salt, env.salt);
        assert_ne!(env2.hash(), env.hash());
        // Empty plaintext.
        let empty = Envelope::seal(&key, header(&a), b"", &a).unwrap();
        assert!(Envelope::from_bytes(&empty.to_bytes())
            .unwrap()
            .open(&key)
            .unwrap()
            .is_empty());
    }

    #[test]
    fn layout_matches_documentation() {
        let a = alice();
        let key = SectionKey::generate().unwrap();
        let env = Envelope::seal(&key, header(&a), b"abc", &a).unwrap();
        let b = env.to_bytes();
        let s = "allergies".len();
        assert_eq!(
            b.len(),
            4 + 16 + 1 + s + 4 + 32 + 8 + 32 + 4 + (3 + 16) + 64
        );
        assert_eq!(&b[4..20], &[7u8; 16]);
        assert_eq!(usize::from(b[20]), s);
        assert_eq!(&b[21..21 + s], b"allergies");
        let o = 21 + s;
        assert_eq!(&b[o..o + 4], &3u32.to_be_bytes());
        assert_eq!(&b[o + 4..o + 36], a.id().as_bytes());
        assert_eq!(&b[o + 36..o + 44], &42u64.to_be_bytes());
        assert_eq!(&b[o + 44..o + 76], &env.salt);
        assert_eq!(&b[o + 76..o + 80], &19u32.to_be_bytes());
        assert_eq!(&b[o + 80..o + 99], env.ciphertext.as_slice());
        assert_eq!(&b[o + 99..], &env.signature);
        assert_eq!(env.header.canonical_bytes(), b[4..o + 44].to_vec());
        let d = digest(&SHA256, &b);
        assert_eq!(env.hash().as_slice(), d.as_ref());
    }

    #[test]
    fn every_single_bit_flip_is_refused() {
        let a = alice();
        let key = SectionKey::generate().unwrap();
        let env = Envelope::seal(&key, header(&a), b"hi", &a).unwrap();
        let bytes = env.to_bytes();
        for i in 0..bytes.len() * 8 {
            let mut b = bytes.clone();
            b[i / 8] ^= 1 << (i % 8);
            if let Ok(parsed) = Envelope::from_bytes(&b) {
                assert!(parsed.open(&key).is_err(), "bit {i} accepted");
            }
        }
    }

    #[test]
    fn truncation_and_extension_are_refused() {
        let a = alice();
        let key = SectionKey::generate().unwrap();
        let bytes = Envelope::seal(&key, header(&a), b"hello", &a)
            .unwrap()
            .to_bytes();
        for cut in 0..bytes.len() {
            assert!(matches!(
                Envelope::from_bytes(&bytes[..cut]),
                Err(CryptoError::Malformed(_))
            ));
        }
        let mut long = bytes.clone();
        long.push(0);
        assert!(matches!(
            Envelope::from_bytes(&long),
            Err(CryptoError::Malformed(_))
        ));
        let mut wrong_magic = bytes.clone();
        wrong_magic[0] = b'X';
        assert!(matches!(
            Envelope::from_bytes(&wrong_magic),
            Err(CryptoError::Malformed(_))
        ));
        let mut v2 = bytes.clone();
        v2[3] = b'2';
        assert_eq!(
            Envelope::from_bytes(&v2),
            Err(CryptoError::UnsupportedVersion(2))
        );
    }

    #[test]
    fn changed_header_is_refused() {
        let a = alice();
        let key = SectionKey::generate().unwrap();
        let env = Envelope::seal(&key, header(&a), b"data", &a).unwrap();
        let edits: [fn(&mut EnvelopeHeader); 4] = [
            |h| h.section = "medications".into(),
            |h| h.record_id = RecordId([8u8; 16]),
            |h| h.epoch += 1,
            |h| h.seq += 1,
        ];
        for edit in &edits {
            // Header edited in transit: the signature no longer matches.
            let mut e = env.clone();
            edit(&mut e.header);
            assert_eq!(e.open(&key), Err(CryptoError::BadSignature));
            let reparsed = Envelope::from_bytes(&e.to_bytes()).unwrap();
            assert_eq!(reparsed.open(&key), Err(CryptoError::BadSignature));

            // Even the genuine author re-signing an edited header cannot move
            // a ciphertext: the header is also the AEAD's associated data.
            let mut e = env.clone();
            edit(&mut e.header);
            e.signature = a.sign(&signature_message(&e.header, &e.salt, &e.ciphertext));
            e.verify_signature().unwrap();
            assert_eq!(e.open(&key), Err(CryptoError::Decrypt));
        }
    }

    #[test]
    fn forged_signature_is_refused() {
        let a = alice();
        let mallory = Identity::generate("Mallory", Role::Carer, None).unwrap();
        let key = SectionKey::generate().unwrap();
        let env = Envelope::seal(&key, header(&a), b"data", &a).unwrap();
        // Mallory re-signs Alice's envelope, still claiming Alice as author.
        let mut forged = env.clone();
        forged.signature = mallory.sign(&signature_message(
            &forged.header,
            &forged.salt,
            &forged.ciphertext,
        ));
        assert_eq!(forged.verify_signature(), Err(CryptoError::BadSignature));
        assert_eq!(forged.open(&key), Err(CryptoError::BadSignature));
        // Mallory (who holds the section key) seals new content as Alice.
        let mut own = Envelope::seal(&key, header(&mallory), b"evil", &mallory).unwrap();
        own.header.author = a.id();
        assert_eq!(own.open(&key), Err(CryptoError::BadSignature));
        // And seal itself refuses a signer who is not the header's author.
        assert!(matches!(
            Envelope::seal(&key, header(&a), b"evil", &mallory),
            Err(CryptoError::Malformed(_))
        ));
    }

    #[test]
    fn wrong_section_key_is_decrypt_error() {
        let a = alice();
        let key = SectionKey::generate().unwrap();
        let other = SectionKey::generate().unwrap();
        let env = Envelope::seal(&key, header(&a), b"data", &a).unwrap();
        assert_eq!(env.open(&other), Err(CryptoError::Decrypt));
        // The server-side check needs no key and still passes.
        env.verify_signature().unwrap();
    }

    #[test]
    fn section_names_are_checked() {
        let a = alice();
        let key = SectionKey::generate().unwrap();
        for bad in ["", "with space", "naïve", "tab\t", &"s".repeat(65)] {
            let mut h = header(&a);
            h.section = bad.to_owned();
            assert!(
                matches!(
                    Envelope::seal(&key, h, b"x", &a),
                    Err(CryptoError::Malformed(_))
                ),
                "{bad:?}"
            );
        }
        let mut h = header(&a);
        h.section = "s".repeat(64);
        let env = Envelope::seal(&key, h, b"x", &a).unwrap();
        assert_eq!(Envelope::from_bytes(&env.to_bytes()).unwrap(), env);
    }

    #[test]
    fn section_key_round_trip_and_redaction() {
        let k = SectionKey::generate().unwrap();
        assert_eq!(
            SectionKey::from_slice(k.expose()).unwrap().expose(),
            k.expose()
        );
        assert_eq!(SectionKey::from_bytes(*k.expose()).expose(), k.expose());
        assert!(SectionKey::from_slice(&[1, 2, 3]).is_err());
        let dbg = format!("{:?}", SectionKey::from_bytes([0xcd; 32]));
        assert!(!dbg.contains("cd") && dbg.contains("redacted"), "{dbg}");
        let a = alice();
        let env = Envelope::seal(&k, header(&a), b"secret canary", &a).unwrap();
        assert!(!format!("{env:?}").contains("canary"));
    }

    proptest! {
        #[test]
        fn from_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = Envelope::from_bytes(&bytes);
        }

        #[test]
        fn from_bytes_never_panics_after_magic(tail in proptest::collection::vec(any::<u8>(), 0..600)) {
            let mut bytes = ENVELOPE_MAGIC.to_vec();
            bytes.extend_from_slice(&tail);
            let _ = Envelope::from_bytes(&bytes);
        }

        #[test]
        fn mutated_envelopes_never_panic(pos in 0usize..200, val in any::<u8>(), cut in 0usize..250) {
            let a = Identity::generate("A", Role::Carer, None).unwrap();
            let key = SectionKey::from_bytes([9u8; 32]);
            let mut bytes = Envelope::seal(&key, header(&a), b"payload", &a).unwrap().to_bytes();
            let p = pos % bytes.len();
            bytes[p] = val;
            bytes.truncate(cut.max(1));
            if let Ok(env) = Envelope::from_bytes(&bytes) {
                let _ = env.open(&key);
            }
        }
    }
}
