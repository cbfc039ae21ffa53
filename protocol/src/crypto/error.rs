//! The crypto module's error type. Messages never contain key material,
//! plaintext or passphrases: only what kind of thing went wrong.

/// Everything that can go wrong in [`crate::crypto`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CryptoError {
    /// An AEAD tag did not verify: wrong key, wrong associated data, or the
    /// ciphertext was modified.
    #[error("decryption failed: wrong key, or the data was tampered with")]
    Decrypt,
    /// An Ed25519 signature did not verify.
    #[error("signature verification failed")]
    BadSignature,
    /// Input bytes or values do not have the expected shape (the string names
    /// the thing, never its content).
    #[error("malformed {0}")]
    Malformed(&'static str),
    /// A serialized object carries a format version this build cannot read.
    #[error("unsupported format version {0}")]
    UnsupportedVersion(u8),
    /// Argon2id failed (for example it could not allocate its memory).
    #[error("passphrase key derivation failed")]
    Kdf,
    /// The operating system's random number generator failed.
    #[error("system random number generator failed")]
    Rng,
}

/// Result alias for [`CryptoError`].
pub type Result<T> = std::result::Result<T, CryptoError>;
