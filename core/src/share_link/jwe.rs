//! The files of a SMART Health Link: JWE compact serialization (RFC 7516)
//! with `alg: dir` and `enc: A256GCM`, a `cty` header, a fresh random
//! 96-bit IV for every encryption, and no `zip` (we never compress: the
//! relay stores ciphertext only and compression before encryption leaks
//! length patterns for nothing a phone needs).
//!
//! Layout: `BASE64URL(header) . "" . BASE64URL(iv) . BASE64URL(ciphertext)
//! . BASE64URL(tag)`, the additional authenticated data being the ASCII of
//! the first segment exactly as sent. Byte-level tests below include the
//! specification's own encryption example.
//!
//! Written on ring's AES-256-GCM rather than a JOSE crate: the one JOSE
//! crate that does JWE (josekit) links OpenSSL, which the phone libraries
//! cannot carry (docs/adr/0013-share-links.md).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::crypto::random;

/// AES-GCM tag length (bytes).
const TAG_LEN: usize = 16;

/// Why a file could not be made or read. Never carries file content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JweError {
    #[error("not a JWE compact serialization (five base64url segments)")]
    Shape,
    #[error("the JWE header is not valid JSON")]
    Header,
    #[error("unsupported JWE algorithm: only alg \"dir\" with enc \"A256GCM\" is used by SMART Health Links")]
    Algorithm,
    #[error("the file is compressed (zip); this reader does not decompress")]
    Compressed,
    #[error("the file does not decrypt with this key (wrong key, or the file was changed)")]
    Decrypt,
    #[error("the system random number generator failed")]
    Rng,
}

/// The protected header we write and the fields we read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JweHeader {
    pub alg: String,
    pub enc: String,
    /// Content type of the plaintext.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cty: Option<String>,
    /// `DEF` when the plaintext was deflated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zip: Option<String>,
}

/// A decrypted file.
pub struct Decrypted {
    pub header: JweHeader,
    pub plaintext: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for Decrypted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decrypted")
            .field("header", &self.header)
            .field("plaintext", &format_args!("{} bytes", self.plaintext.len()))
            .finish()
    }
}

fn aead(key: &[u8; 32]) -> LessSafeKey {
    // A 32-byte key is always a valid AES-256 key.
    #[allow(clippy::expect_used)]
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).expect("32-byte AES-256 key"))
}

/// Encrypt `plaintext` of content type `cty` under `key` with a fresh IV.
pub fn encrypt(key: &[u8; 32], cty: &str, plaintext: &[u8]) -> Result<String, JweError> {
    let iv: [u8; NONCE_LEN] = random::array().map_err(|_| JweError::Rng)?;
    Ok(encrypt_with_iv(key, cty, plaintext, iv))
}

/// [`encrypt`] with a given IV (tests and byte vectors only: an IV must
/// never repeat under one key).
pub(crate) fn encrypt_with_iv(
    key: &[u8; 32],
    cty: &str,
    plaintext: &[u8],
    iv: [u8; NONCE_LEN],
) -> String {
    let header = JweHeader {
        alg: "dir".into(),
        enc: "A256GCM".into(),
        cty: Some(cty.to_owned()),
        zip: None,
    };
    // Serializing a struct of strings cannot fail.
    #[allow(clippy::expect_used)]
    let header_json = serde_json::to_vec(&header).expect("header serializes");
    let protected = URL_SAFE_NO_PAD.encode(header_json);
    let mut sealed = plaintext.to_vec();
    // Sealing in place fails only for inputs longer than GCM allows (~64 GiB).
    #[allow(clippy::expect_used)]
    let tag = aead(key)
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(iv),
            Aad::from(protected.as_bytes()),
            &mut sealed,
        )
        .expect("plaintext within GCM limits");
    let mut out = String::with_capacity(protected.len() + sealed.len() * 4 / 3 + 64);
    out.push_str(&protected);
    out.push_str("..");
    out.push_str(&URL_SAFE_NO_PAD.encode(iv));
    out.push('.');
    out.push_str(&URL_SAFE_NO_PAD.encode(&sealed));
    out.push('.');
    out.push_str(&URL_SAFE_NO_PAD.encode(tag.as_ref()));
    sealed.iter_mut().for_each(|b| *b = 0);
    out
}

/// The five segments of a compact JWE, checked for shape only.
struct Segments<'a> {
    protected: &'a str,
    iv: Vec<u8>,
    ciphertext: Vec<u8>,
    tag: Vec<u8>,
    header: JweHeader,
}

fn split(jwe: &str) -> Result<Segments<'_>, JweError> {
    let parts: Vec<&str> = jwe.trim().split('.').collect();
    let [protected, encrypted_key, iv, ciphertext, tag] = parts[..] else {
        return Err(JweError::Shape);
    };
    let decode = |s: &str| URL_SAFE_NO_PAD.decode(s).map_err(|_| JweError::Shape);
    let header: JweHeader =
        serde_json::from_slice(&decode(protected)?).map_err(|_| JweError::Header)?;
    if header.alg != "dir" || header.enc != "A256GCM" || !encrypted_key.is_empty() {
        return Err(JweError::Algorithm);
    }
    let iv = decode(iv)?;
    let tag = decode(tag)?;
    if iv.len() != NONCE_LEN || tag.len() != TAG_LEN {
        return Err(JweError::Shape);
    }
    Ok(Segments {
        protected,
        iv,
        ciphertext: decode(ciphertext)?,
        tag,
        header,
    })
}

/// The protected header of `jwe`, checked for shape and algorithm only
/// (nothing decrypted).
pub fn header(jwe: &str) -> Result<JweHeader, JweError> {
    split(jwe).map(|s| s.header)
}

/// Decrypt `jwe` with `key`.
pub fn decrypt(key: &[u8; 32], jwe: &str) -> Result<Decrypted, JweError> {
    let Segments {
        protected,
        iv,
        ciphertext,
        tag,
        header,
    } = split(jwe)?;
    if header.zip.is_some() {
        return Err(JweError::Compressed);
    }
    let nonce = Nonce::try_assume_unique_for_key(&iv).map_err(|_| JweError::Shape)?;
    let mut buf = Zeroizing::new(ciphertext);
    buf.extend_from_slice(&tag);
    let len = aead(key)
        .open_in_place(nonce, Aad::from(protected.as_bytes()), &mut buf)
        .map_err(|_| JweError::Decrypt)?
        .len();
    buf.truncate(len);
    Ok(Decrypted {
        header,
        plaintext: buf,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// The key of the specification's "Example Encryption" (links
    /// specification, STU1).
    const IG_KEY: &str = "rxTgYlOaKJPFtcEd0qcceN8wEU4p94SqAwIWQe6uX7Q";
    /// Its output, as published.
    const IG_JWE: &str = include_str!("testdata/ig_example_encrypted.jwe");

    fn ig_key() -> [u8; 32] {
        URL_SAFE_NO_PAD.decode(IG_KEY).unwrap().try_into().unwrap()
    }

    #[test]
    fn the_specifications_example_decrypts() {
        let file = decrypt(&ig_key(), IG_JWE).unwrap();
        assert_eq!(
            file.header.cty.as_deref(),
            Some("application/smart-health-card")
        );
        let json: serde_json::Value = serde_json::from_slice(&file.plaintext).unwrap();
        let vc = json["verifiableCredential"][0].as_str().unwrap();
        // The published decryption shows this prefix of the card.
        assert!(vc.starts_with(
            "eyJ6aXAiOiJERUYiLCJhbGciOiJFUzI1NiIsImtpZCI6IjNLZmRnLVh3UC03Z1h5eXd0VWZVQUR3QnVtRE9QS01ReC1pRUxMMTFX"
        ));
    }

    #[test]
    fn our_files_have_the_specified_layout() {
        let key = [9u8; 32];
        let jwe = encrypt_with_iv(&key, "application/fhir+json", b"{}", [1; 12]);
        let parts: Vec<&str> = jwe.split('.').collect();
        assert_eq!(parts.len(), 5);
        assert_eq!(
            String::from_utf8(URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap(),
            r#"{"alg":"dir","enc":"A256GCM","cty":"application/fhir+json"}"#
        );
        assert_eq!(parts[1], "", "dir: no encrypted key");
        assert_eq!(URL_SAFE_NO_PAD.decode(parts[2]).unwrap(), [1; 12]);
        assert_eq!(URL_SAFE_NO_PAD.decode(parts[3]).unwrap().len(), 2);
        assert_eq!(URL_SAFE_NO_PAD.decode(parts[4]).unwrap().len(), 16);
        assert!(!jwe.contains('='), "unpadded base64url");
        assert_eq!(&*decrypt(&key, &jwe).unwrap().plaintext, b"{}");
    }

    #[test]
    fn every_encryption_has_a_fresh_iv() {
        let key = [3u8; 32];
        let a = encrypt(&key, "application/fhir+json", b"same").unwrap();
        let b = encrypt(&key, "application/fhir+json", b"same").unwrap();
        assert_ne!(a.split('.').nth(2), b.split('.').nth(2));
        assert_ne!(a, b);
    }

    #[test]
    fn tampering_and_wrong_keys_are_refused() {
        let key = [5u8; 32];
        let jwe = encrypt(&key, "application/fhir+json", b"{\"a\":1}").unwrap();
        assert_eq!(decrypt(&[6u8; 32], &jwe).unwrap_err(), JweError::Decrypt);
        // The header is authenticated: a changed cty does not decrypt.
        let mut parts: Vec<String> = jwe.split('.').map(str::to_owned).collect();
        parts[0] = URL_SAFE_NO_PAD.encode(r#"{"alg":"dir","enc":"A256GCM","cty":"text/plain"}"#);
        assert_eq!(
            decrypt(&key, &parts.join(".")).unwrap_err(),
            JweError::Decrypt
        );
        let mut flipped = jwe.clone().into_bytes();
        let at = jwe.rfind('.').unwrap() - 2;
        flipped[at] = if flipped[at] == b'A' { b'B' } else { b'A' };
        assert!(decrypt(&key, std::str::from_utf8(&flipped).unwrap()).is_err());
    }

    #[test]
    fn malformed_files_are_refused_by_shape() {
        let key = [5u8; 32];
        assert_eq!(decrypt(&key, "a.b.c").unwrap_err(), JweError::Shape);
        assert_eq!(decrypt(&key, "").unwrap_err(), JweError::Shape);
        let other_alg = format!(
            "{}..AAAAAAAAAAAAAAAA.AA.AAAAAAAAAAAAAAAAAAAAAA",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"A256KW","enc":"A256GCM"}"#)
        );
        assert_eq!(decrypt(&key, &other_alg).unwrap_err(), JweError::Algorithm);
        let zipped = format!(
            "{}..AAAAAAAAAAAAAAAA.AA.AAAAAAAAAAAAAAAAAAAAAA",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"dir","enc":"A256GCM","zip":"DEF"}"#)
        );
        assert_eq!(decrypt(&key, &zipped).unwrap_err(), JweError::Compressed);
        let with_key = format!(
            "{}.AAAA.AAAAAAAAAAAAAAAA.AA.AAAAAAAAAAAAAAAAAAAAAA",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"dir","enc":"A256GCM"}"#)
        );
        assert_eq!(decrypt(&key, &with_key).unwrap_err(), JweError::Algorithm);
        assert_eq!(header(IG_JWE).unwrap().alg, "dir");
    }
}
