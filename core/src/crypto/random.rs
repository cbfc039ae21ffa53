//! Randomness: every random byte in this module comes from
//! `ring::rand::SystemRandom` (the operating system's CSPRNG).

use std::convert::Infallible;

use hpke::rand_core::{TryCryptoRng, TryRng};
use ring::rand::{SecureRandom, SystemRandom};

use super::error::{CryptoError, Result};

/// Fill `out` with random bytes from the system RNG.
pub(crate) fn fill(out: &mut [u8]) -> Result<()> {
    SystemRandom::new().fill(out).map_err(|_| CryptoError::Rng)
}

/// A fresh random array.
pub(crate) fn array<const N: usize>() -> Result<[u8; N]> {
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
