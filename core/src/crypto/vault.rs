//! Passphrase → vault key, with Argon2id (RFC 9106, version 0x13).
//!
//! On desktop the vault key comes from a passphrase; on phones it comes from
//! the platform keystore instead and this file is not involved. Either way the
//! vault key only wraps a random master key (with [`SymmetricKey::seal`]), so
//! changing the passphrase re-wraps 32 bytes, not the record.
//!
//! [`KdfParams`] are stored next to the wrapped master key in clear. They are
//! bounds-checked before use so that a tampered header cannot make unlocking
//! hang or exhaust memory; a tampered salt or cost merely yields a wrong key,
//! which the AEAD then rejects.

use argon2::{Algorithm, Argon2, Block, Params, Version};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use satchel_protocol::crypto::encoding::hex_array;
use satchel_protocol::crypto::random;
use satchel_protocol::crypto::SymmetricKey;
use satchel_protocol::crypto::{CryptoError, Result};

/// Smallest accepted memory cost, KiB.
pub const MIN_M_COST_KIB: u32 = 8;
/// Largest accepted memory cost, KiB (4 GiB).
pub const MAX_M_COST_KIB: u32 = 4 * 1024 * 1024;
/// Largest accepted number of passes.
pub const MAX_T_COST: u32 = 100;
/// Largest accepted parallelism.
pub const MAX_P_COST: u32 = 16;

/// Argon2id cost parameters and salt for deriving a vault key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KdfParams {
    /// Memory cost in KiB.
    pub m_cost_kib: u32,
    /// Number of passes.
    pub t_cost: u32,
    /// Degree of parallelism (lanes).
    pub p_cost: u32,
    /// Random 128-bit salt (hex in serialized form).
    #[serde(with = "hex_array")]
    pub salt: [u8; 16],
}

impl KdfParams {
    /// OWASP's recommended Argon2id setting (m = 19 MiB, t = 2, p = 1) with a
    /// fresh random salt. Use this for real vaults.
    pub fn recommended() -> Result<Self> {
        Ok(Self {
            m_cost_kib: 19 * 1024,
            t_cost: 2,
            p_cost: 1,
            salt: random::array()?,
        })
    }

    /// Cheap parameters (m = 256 KiB, t = 1, p = 1, random salt) **for tests
    /// only**: they give almost no protection against passphrase guessing.
    pub fn for_tests() -> Self {
        let mut salt = [0u8; 16];
        // A test helper: if the RNG fails the salt stays zero, which is fine
        // for tests and keeps the signature infallible.
        let _ = random::fill(&mut salt);
        Self {
            m_cost_kib: 256,
            t_cost: 1,
            p_cost: 1,
            salt,
        }
    }

    /// Check the parameters are within sane bounds.
    pub fn validate(&self) -> Result<()> {
        if !(MIN_M_COST_KIB..=MAX_M_COST_KIB).contains(&self.m_cost_kib) {
            return Err(CryptoError::Malformed("kdf memory cost"));
        }
        if !(1..=MAX_T_COST).contains(&self.t_cost) {
            return Err(CryptoError::Malformed("kdf time cost"));
        }
        if !(1..=MAX_P_COST).contains(&self.p_cost) {
            return Err(CryptoError::Malformed("kdf parallelism"));
        }
        if self.m_cost_kib < 8 * self.p_cost {
            return Err(CryptoError::Malformed("kdf memory cost"));
        }
        Ok(())
    }
}

/// Derive a 256-bit vault key from a passphrase with Argon2id v0x13.
/// Argon2's working memory is zeroized before it is freed.
pub fn derive_vault_key(passphrase: &[u8], params: &KdfParams) -> Result<SymmetricKey> {
    params.validate()?;
    let argon_params = Params::new(params.m_cost_kib, params.t_cost, params.p_cost, Some(32))
        .map_err(|_| CryptoError::Malformed("kdf parameters"))?;
    let blocks_needed = argon_params.block_count();
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, argon_params);

    // Own the working memory so it can be zeroized (argon2's own allocation is
    // freed without wiping), and allocate fallibly so a huge m_cost is an
    // error rather than an abort.
    let mut blocks: Zeroizing<Vec<Block>> = Zeroizing::new(Vec::new());
    blocks
        .try_reserve_exact(blocks_needed)
        .map_err(|_| CryptoError::Kdf)?;
    blocks.resize(blocks_needed, Block::new());

    let mut out = Zeroizing::new([0u8; 32]);
    argon
        .hash_password_into_with_memory(
            passphrase,
            &params.salt,
            out.as_mut(),
            blocks.as_mut_slice(),
        )
        .map_err(|_| CryptoError::Kdf)?;
    Ok(SymmetricKey::from_bytes(*out))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn same_passphrase_and_params_give_same_key() {
        let params = KdfParams::for_tests();
        let a = derive_vault_key(b"correct horse", &params).unwrap();
        let b = derive_vault_key(b"correct horse", &params).unwrap();
        assert_eq!(a.expose(), b.expose());
        let c = derive_vault_key(b"correct horsf", &params).unwrap();
        assert_ne!(a.expose(), c.expose());
    }

    #[test]
    fn different_salt_gives_different_key() {
        let p1 = KdfParams::for_tests();
        let mut p2 = p1.clone();
        p2.salt[0] ^= 1;
        let a = derive_vault_key(b"pw", &p1).unwrap();
        let b = derive_vault_key(b"pw", &p2).unwrap();
        assert_ne!(a.expose(), b.expose());
        let mut p3 = p1.clone();
        p3.t_cost = 2;
        assert_ne!(a.expose(), derive_vault_key(b"pw", &p3).unwrap().expose());
    }

    #[test]
    fn argon2id_known_answer() {
        // Expected values computed independently with the reference C
        // implementation (libargon2 20171227, `argon2id_hash_raw`, 32-byte
        // output), pinning algorithm (id), version (0x13) and output length.
        type Case = (u32, u32, u32, &'static [u8], [u8; 16], &'static str);
        let cases: [Case; 2] = [
            (
                64,
                1,
                1,
                b"password",
                [7u8; 16],
                "0c942bca9ed020b5e04d9a95ac32b2b0cbfa78e2635489e9455d5a5d07b3de83",
            ),
            (
                256,
                2,
                2,
                b"correct horse battery staple",
                [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15],
                "9992982626d0fa7b38ee9ce8e7951eeb239679653fcbb197fd39264d51652da5",
            ),
        ];
        for (m, t, p, pw, salt, expected) in cases {
            let params = KdfParams {
                m_cost_kib: m,
                t_cost: t,
                p_cost: p,
                salt,
            };
            let key = derive_vault_key(pw, &params).unwrap();
            assert_eq!(hex::encode(key.expose()), expected);
        }
    }

    #[test]
    fn out_of_bounds_params_are_rejected() {
        let ok = KdfParams::for_tests();
        for (m, t, p) in [
            (7, 1, 1),
            (MAX_M_COST_KIB + 1, 1, 1),
            (u32::MAX, 1, 1),
            (256, 0, 1),
            (256, 101, 1),
            (256, 1, 0),
            (256, 1, 17),
            (8, 1, 2),
        ] {
            let bad = KdfParams {
                m_cost_kib: m,
                t_cost: t,
                p_cost: p,
                ..ok.clone()
            };
            assert!(
                matches!(
                    derive_vault_key(b"pw", &bad),
                    Err(CryptoError::Malformed(_))
                ),
                "{m} {t} {p}"
            );
        }
    }

    #[test]
    fn recommended_params_are_owasp() {
        let p = KdfParams::recommended().unwrap();
        assert_eq!((p.m_cost_kib, p.t_cost, p.p_cost), (19456, 2, 1));
        assert_ne!(p.salt, KdfParams::recommended().unwrap().salt);
        p.validate().unwrap();
    }

    #[test]
    fn params_serde_round_trip() {
        let p = KdfParams::for_tests();
        let json = serde_json::to_string(&p).unwrap();
        assert!(json.contains(&hex::encode(p.salt)));
        assert_eq!(serde_json::from_str::<KdfParams>(&json).unwrap(), p);
    }
}
