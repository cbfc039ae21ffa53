//! Randomness: every random byte in this module comes from
//! `ring::rand::SystemRandom` (the operating system's CSPRNG).

use std::convert::Infallible;

use hpke::rand_core::{TryCryptoRng, TryRng};
use ring::rand::{SecureRandom, SystemRandom};

use super::error::{CryptoError, Result};

/// Fill `out` with random bytes from the system RNG.
pub fn fill(out: &mut [u8]) -> Result<()> {
    SystemRandom::new().fill(out).map_err(|_| CryptoError::Rng)
}

/// A fresh random array.
pub fn array<const N: usize>() -> Result<[u8; N]> {
    let mut out = [0u8; N];
    fill(&mut out)?;
    Ok(out)
}

/// Adapter that lets the `hpke` crate draw its ephemeral key material from
/// ring's `SystemRandom`. The `rand_core` traits are infallible, so a failure
/// is recorded in `failed` (and the output zero-filled); the caller must check
/// [`RingRng::check`] and discard everything produced if it failed.
pub(crate) struct RingRng {
    rng: SystemRandom,
    failed: bool,
}

impl RingRng {
    pub(crate) fn new() -> Self {
        Self {
            rng: SystemRandom::new(),
            failed: false,
        }
    }

    /// `Err(Rng)` if any fill since construction failed.
    pub(crate) fn check(&self) -> Result<()> {
        if self.failed {
            Err(CryptoError::Rng)
        } else {
            Ok(())
        }
    }
}

impl TryRng for RingRng {
    type Error = Infallible;

    fn try_next_u32(&mut self) -> std::result::Result<u32, Infallible> {
        let mut b = [0u8; 4];
        self.try_fill_bytes(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    fn try_next_u64(&mut self) -> std::result::Result<u64, Infallible> {
        let mut b = [0u8; 8];
        self.try_fill_bytes(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }

    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> std::result::Result<(), Infallible> {
        if self.rng.fill(dst).is_err() {
            self.failed = true;
            dst.fill(0);
        }
        Ok(())
    }
}

impl TryCryptoRng for RingRng {}

/// Defines a 256-bit secret key type: random generation, construction from
/// bytes, `expose`, zeroize-on-drop and a redacted `Debug`. Each key type
/// then adds what it is for (direct AEAD, per-envelope HKDF, ...).
macro_rules! key256 {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Clone, zeroize::Zeroize, zeroize::ZeroizeOnDrop)]
        pub struct $name {
            bytes: [u8; 32],
        }

        impl $name {
            /// A fresh random key from the system RNG.
            pub fn generate() -> $crate::crypto::Result<Self> {
                let mut key = Self { bytes: [0u8; 32] };
                $crate::crypto::random::fill(&mut key.bytes)?;
                Ok(key)
            }

            /// Wrap existing key bytes.
            pub fn from_bytes(bytes: [u8; 32]) -> Self {
                Self { bytes }
            }

            /// Wrap existing key bytes given as a slice (exactly 32 bytes).
            pub fn from_slice(bytes: &[u8]) -> $crate::crypto::Result<Self> {
                let bytes: [u8; 32] = bytes
                    .try_into()
                    .map_err(|_| $crate::crypto::CryptoError::Malformed(concat!($what, " length")))?;
                Ok(Self { bytes })
            }

            /// The raw key bytes. Copy them only into zeroizing storage
            /// (e.g. to wrap them for a recipient or the vault).
            pub fn expose(&self) -> &[u8; 32] {
                &self.bytes
            }
        }

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(concat!(stringify!($name), "(<redacted>)"))
            }
        }
    };
}
pub(crate) use key256;
