//! Discovery on the local network: the format of a member device's DNS-SD
//! advert, as pure functions (no I/O, no clock: callers pass the hour in).
//! The mDNS daemon that publishes and browses these adverts is the device's
//! (`satchel-core`, `nearby::discovery`); docs/protocol.md, "Discovery on
//! the local network", has the byte layout and a test vector.
//!
//! Members of one record share a [`DiscoveryKey`], derived from the record id
//! and the record creator's identity id ([`discovery_key_for`]). A device
//! advertises service [`SERVICE_TYPE`] under an instance name that is a
//! random 8-byte salt and a 10-byte tag over (key, hour, salt)
//! ([`advert_name`]): a member recognises it ([`advert_matches`]), a
//! bystander sees random hex that changes every hour and that does not even
//! link two devices of the same record. The TXT entry [`TXT_KEY`] carries
//! which device it is ([`DeviceAdvert`]: identity id and display name),
//! sealed with ChaCha20-Poly1305 under a key derived from the discovery key
//! and the hour ([`seal_device_info`] / [`open_device_info`]).
//!
//! Limits, on purpose and documented in docs/security.md: anyone who knows
//! the record id and its creator (every member, and the relay that stores
//! the record) can compute the key, recognise the adverts and read the
//! device info; a bystander who knows neither cannot. Discovery is a hint of
//! where to connect, not authentication: an advert can be replayed within
//! its hour from another address, and the direct channel (`nearby::channel`)
//! is what proves who is on the other end.
//!
//! The crypto here calls `ring`'s AEAD directly (the one place in the
//! protocol outside [`crate::crypto`] that does, so the advert format reads
//! in one file); every derivation goes through [`crate::crypto::kdf`].

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305, NONCE_LEN};
use zeroize::Zeroizing;

use crate::crypto::kdf::hkdf_sha256;
use crate::ids::{IdentityId, RecordId};

/// The DNS-SD service type every Satchel device advertises under.
pub const SERVICE_TYPE: &str = "_satchel._tcp.local.";
/// The TXT key whose value is the sealed device info (base64url, no padding).
pub const TXT_KEY: &str = "i";
/// Domain-separation label of every derivation in this module.
pub const LABEL: &[u8] = b"satchel/v1/discovery";
/// Milliseconds in one advert period (the name and info key rotate hourly).
pub const HOUR_MS: i64 = 3_600_000;
/// Bytes of the random salt at the start of an advert name.
pub const NAME_SALT_LEN: usize = 8;
/// Bytes of the tag after the salt.
pub const NAME_TAG_LEN: usize = 10;
/// Characters of an advert name: hex of salt and tag.
pub const NAME_LEN: usize = 2 * (NAME_SALT_LEN + NAME_TAG_LEN);
/// Longest device display name, in UTF-8 bytes.
pub const MAX_DEVICE_NAME: usize = 63;
/// Version byte at the start of sealed device info.
pub const INFO_VERSION: u8 = 1;
/// Longest sealed device info text [`open_device_info`] reads (a TXT string
/// holds at most 255 bytes, `i=` included).
pub const MAX_SEALED_TEXT: usize = 253;

const TAG_LEN: usize = 16;

/// Everything that can go wrong building or reading an advert. Messages say
/// what kind of thing failed, never a name, an id or key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DiscoveryError {
    /// A device display name is longer than [`MAX_DEVICE_NAME`] bytes.
    #[error("device name is {len} bytes; at most {max} fit in an advert")]
    NameTooLong {
        /// Its length in bytes.
        len: usize,
        /// [`MAX_DEVICE_NAME`].
        max: usize,
    },
    /// A device display name is empty or holds control characters.
    #[error("device name must be non-empty and free of control characters")]
    BadName,
    /// Sealed device info longer than [`MAX_SEALED_TEXT`] characters.
    #[error("sealed device info is {len} characters; at most {max} are read")]
    Oversized {
        /// Its length.
        len: usize,
        /// [`MAX_SEALED_TEXT`].
        max: usize,
    },
    /// Input does not have the expected shape (the string names the thing).
    #[error("malformed {0}")]
    Malformed(&'static str),
    /// Sealed device info carries a version this build cannot read.
    #[error("unsupported device info version {0}")]
    UnsupportedVersion(u8),
    /// The device info did not open: another record's key, another hour, or
    /// it was tampered with.
    #[error("device info did not open: another record's advert, or tampered with")]
    Open,
    /// A time before 1970 (the hour number would be negative).
    #[error("time is before the Unix epoch")]
    BeforeEpoch,
    /// A key derivation failed (it cannot for the fixed sizes used here).
    #[error("discovery key derivation failed")]
    Kdf,
}

crate::crypto::random::key256!(
    /// The per-record discovery key every member can compute
    /// ([`discovery_key_for`]). Zeroized on drop; `Debug` is redacted.
    DiscoveryKey,
    "discovery key"
);

/// Which device an advert is: what [`seal_device_info`] seals. The port is
/// not in it: the DNS-SD SRV record carries it, one truth only.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceAdvert {
    /// The device's identity (its Ed25519 public key).
    pub identity: IdentityId,
    /// The device's display name (1 to [`MAX_DEVICE_NAME`] bytes, no control
    /// characters).
    pub name: String,
}

/// The discovery key of a record: HKDF-SHA256 with salt [`LABEL`], input
/// `record id (16) || creator identity id (32)` and info `"key"`.
pub fn discovery_key_for(
    record: &RecordId,
    creator: &IdentityId,
) -> Result<DiscoveryKey, DiscoveryError> {
    let mut ikm = Zeroizing::new([0u8; RecordId::LEN + IdentityId::LEN]);
    ikm[..RecordId::LEN].copy_from_slice(record.as_bytes());
    ikm[RecordId::LEN..].copy_from_slice(creator.as_bytes());
    let mut out = Zeroizing::new([0u8; 32]);
    hkdf_sha256(LABEL, ikm.as_slice(), &[b"key"], out.as_mut_slice())
        .map_err(|_| DiscoveryError::Kdf)?;
    Ok(DiscoveryKey::from_bytes(*out))
}

/// The advert period that `unix_ms` falls in: whole hours since 1970.
pub fn hour_at(unix_ms: i64) -> Result<u64, DiscoveryError> {
    u64::try_from(unix_ms.div_euclid(HOUR_MS)).map_err(|_| DiscoveryError::BeforeEpoch)
}

fn name_tag(
    key: &DiscoveryKey,
    hour: u64,
    salt: &[u8; NAME_SALT_LEN],
) -> Result<[u8; NAME_TAG_LEN], DiscoveryError> {
    let mut tag = [0u8; NAME_TAG_LEN];
    hkdf_sha256(
        LABEL,
        key.expose(),
        &[b"name", &hour.to_be_bytes(), salt],
        &mut tag,
    )
    .map_err(|_| DiscoveryError::Kdf)?;
    Ok(tag)
}

/// The DNS-SD instance name of an advert for `hour`: `hex(salt) ||
/// hex(tag)`, [`NAME_LEN`] lower-case hex characters (a valid DNS label),
/// where `tag` is the first [`NAME_TAG_LEN`] bytes of HKDF-SHA256(salt
/// [`LABEL`], key, info `"name" || hour (u64 BE) || salt`). The caller picks
/// a fresh random salt each hour, so two devices of one record never collide
/// and a bystander cannot group adverts by record.
pub fn advert_name(
    key: &DiscoveryKey,
    hour: u64,
    salt: [u8; NAME_SALT_LEN],
) -> Result<String, DiscoveryError> {
    let tag = name_tag(key, hour, &salt)?;
    Ok(format!("{}{}", hex::encode(salt), hex::encode(tag)))
}

/// Whether `name` is an advert of `key` for `hour`. Anything else on the
/// network (another record's advert, another service's name) is `false`.
pub fn advert_matches(key: &DiscoveryKey, hour: u64, name: &str) -> Result<bool, DiscoveryError> {
    let Some(bytes) = crate::ids::canonical_hex::<{ NAME_SALT_LEN + NAME_TAG_LEN }>(name) else {
        return Ok(false);
    };
    let mut salt = [0u8; NAME_SALT_LEN];
    salt.copy_from_slice(&bytes[..NAME_SALT_LEN]);
    let expected = name_tag(key, hour, &salt)?;
    let diff = expected
        .iter()
        .zip(&bytes[NAME_SALT_LEN..])
        .fold(0u8, |acc, (a, b)| acc | (a ^ b));
    Ok(diff == 0)
}

fn info_key(key: &DiscoveryKey, hour: u64) -> Result<LessSafeKey, DiscoveryError> {
    let mut bytes = Zeroizing::new([0u8; 32]);
    hkdf_sha256(
        LABEL,
        key.expose(),
        &[b"info", &hour.to_be_bytes()],
        bytes.as_mut_slice(),
    )
    .map_err(|_| DiscoveryError::Kdf)?;
    UnboundKey::new(&CHACHA20_POLY1305, bytes.as_slice())
        .map(LessSafeKey::new)
        .map_err(|_| DiscoveryError::Kdf)
}

const AAD_LEN: usize = LABEL.len() + 8;

fn info_aad(hour: u64) -> [u8; AAD_LEN] {
    let mut aad = [0u8; AAD_LEN];
    aad[..LABEL.len()].copy_from_slice(LABEL);
    aad[LABEL.len()..].copy_from_slice(&hour.to_be_bytes());
    aad
}

fn check_name(name: &str) -> Result<(), DiscoveryError> {
    if name.len() > MAX_DEVICE_NAME {
        return Err(DiscoveryError::NameTooLong {
            len: name.len(),
            max: MAX_DEVICE_NAME,
        });
    }
    if name.is_empty() || name.chars().any(char::is_control) {
        return Err(DiscoveryError::BadName);
    }
    Ok(())
}

/// Seal which device this is for the TXT entry [`TXT_KEY`]:
/// base64url(no padding) of `version (1) || nonce (12) || ciphertext+tag`,
/// ChaCha20-Poly1305 under HKDF-SHA256(salt [`LABEL`], key, info `"info" ||
/// hour (u64 BE)`), associated data `LABEL || hour (u64 BE)`, plaintext
/// `identity id (32) || name length (1) || name (UTF-8)`. The caller passes a
/// fresh random `nonce` (tests pass a fixed one).
pub fn seal_device_info(
    key: &DiscoveryKey,
    hour: u64,
    advert: &DeviceAdvert,
    nonce: [u8; NONCE_LEN],
) -> Result<String, DiscoveryError> {
    check_name(&advert.name)?;
    let name_len = u8::try_from(advert.name.len()).map_err(|_| DiscoveryError::BadName)?;
    let mut out = Vec::with_capacity(1 + NONCE_LEN + 33 + advert.name.len() + TAG_LEN);
    out.push(INFO_VERSION);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(advert.identity.as_bytes());
    out.push(name_len);
    out.extend_from_slice(advert.name.as_bytes());
    let tag = info_key(key, hour)?
        .seal_in_place_separate_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(info_aad(hour)),
            &mut out[1 + NONCE_LEN..],
        )
        .map_err(|_| DiscoveryError::Malformed("device info"))?;
    out.extend_from_slice(tag.as_ref());
    Ok(URL_SAFE_NO_PAD.encode(out))
}

/// Open what [`seal_device_info`] sealed, for `hour`. Another record's key,
/// another hour or any change gives [`DiscoveryError::Open`]; text longer
/// than [`MAX_SEALED_TEXT`] is refused before it is decoded.
pub fn open_device_info(
    key: &DiscoveryKey,
    hour: u64,
    sealed: &str,
) -> Result<DeviceAdvert, DiscoveryError> {
    if sealed.len() > MAX_SEALED_TEXT {
        return Err(DiscoveryError::Oversized {
            len: sealed.len(),
            max: MAX_SEALED_TEXT,
        });
    }
    let bytes = URL_SAFE_NO_PAD
        .decode(sealed)
        .map_err(|_| DiscoveryError::Malformed("device info encoding"))?;
    let Some((&version, rest)) = bytes.split_first() else {
        return Err(DiscoveryError::Malformed("device info"));
    };
    if version != INFO_VERSION {
        return Err(DiscoveryError::UnsupportedVersion(version));
    }
    if rest.len() < NONCE_LEN + TAG_LEN {
        return Err(DiscoveryError::Malformed("device info"));
    }
    let (nonce, ciphertext) = rest.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce)
        .map_err(|_| DiscoveryError::Malformed("device info"))?;
    let mut buf = Zeroizing::new(ciphertext.to_vec());
    let plain = info_key(key, hour)?
        .open_in_place(nonce, Aad::from(info_aad(hour)), buf.as_mut_slice())
        .map_err(|_| DiscoveryError::Open)?;
    if plain.len() < IdentityId::LEN + 1 {
        return Err(DiscoveryError::Malformed("device info"));
    }
    let (identity, rest) = plain.split_at(IdentityId::LEN);
    let identity =
        IdentityId::from_slice(identity).map_err(|_| DiscoveryError::Malformed("device info"))?;
    let (&name_len, name) = rest
        .split_first()
        .ok_or(DiscoveryError::Malformed("device info"))?;
    if name.len() != usize::from(name_len) {
        return Err(DiscoveryError::Malformed("device info"));
    }
    let name = std::str::from_utf8(name)
        .map_err(|_| DiscoveryError::Malformed("device name"))?
        .to_string();
    check_name(&name)?;
    Ok(DeviceAdvert { identity, name })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn record() -> RecordId {
        RecordId([0x11; 16])
    }

    fn creator() -> IdentityId {
        IdentityId([0x22; 32])
    }

    fn key() -> DiscoveryKey {
        discovery_key_for(&record(), &creator()).unwrap()
    }

    fn advert() -> DeviceAdvert {
        DeviceAdvert {
            identity: IdentityId([0x44; 32]),
            name: "Kitchen tablet".to_string(),
        }
    }

    const HOUR: u64 = 490_000;
    const SALT: [u8; NAME_SALT_LEN] = [0x33; NAME_SALT_LEN];
    const NONCE: [u8; NONCE_LEN] = [0x55; NONCE_LEN];

    /// Pins the format: docs/protocol.md, "Discovery on the local network",
    /// quotes these bytes. They were first computed by an independent
    /// implementation of the documented layout (Python `hmac`/`hashlib` HKDF
    /// and `cryptography`'s ChaCha20Poly1305), then checked here.
    #[test]
    fn discovery_test_vector() {
        let name = advert_name(&key(), HOUR, SALT).unwrap();
        let sealed = seal_device_info(&key(), HOUR, &advert(), NONCE).unwrap();
        assert_eq!(
            hex::encode(key().expose()),
            "eb9f63bfc2201eb12313cb11d88fbb6a19b4164f22047c7890e03ff0b8170b8b"
        );
        assert_eq!(name, "33333333333333337b7d0162d431cea48d11");
        assert_eq!(sealed, "AVVVVVVVVVVVVVVVVYDA14UAVYV85ict52sl_BSs8kDnZokrpue5iyu7WTSDnvfZHTszdVp6CGS8ERzMBQjzlMaByO2BhpFCElpbMA");
    }

    #[test]
    fn same_hour_and_salt_give_the_same_name_next_hour_another() {
        let key = key();
        let name = advert_name(&key, HOUR, SALT).unwrap();
        assert_eq!(name, advert_name(&key, HOUR, SALT).unwrap());
        assert_eq!(name.len(), NAME_LEN);
        assert!(name.len() <= 63);
        assert!(name
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
        assert!(advert_matches(&key, HOUR, &name).unwrap());

        let next = advert_name(&key, HOUR + 1, SALT).unwrap();
        assert_ne!(next, name);
        assert!(!advert_matches(&key, HOUR + 1, &name).unwrap());
        assert!(advert_matches(&key, HOUR + 1, &next).unwrap());
    }

    #[test]
    fn two_devices_of_one_record_have_unrelated_names() {
        let key = key();
        let a = advert_name(&key, HOUR, [1; NAME_SALT_LEN]).unwrap();
        let b = advert_name(&key, HOUR, [2; NAME_SALT_LEN]).unwrap();
        assert_ne!(a[2 * NAME_SALT_LEN..], b[2 * NAME_SALT_LEN..]);
        assert!(advert_matches(&key, HOUR, &a).unwrap());
        assert!(advert_matches(&key, HOUR, &b).unwrap());
    }

    #[test]
    fn another_records_key_neither_matches_nor_opens() {
        let other = discovery_key_for(&RecordId([0x12; 16]), &creator()).unwrap();
        let other_creator = discovery_key_for(&record(), &IdentityId([0x23; 32])).unwrap();
        let name = advert_name(&key(), HOUR, SALT).unwrap();
        let sealed = seal_device_info(&key(), HOUR, &advert(), NONCE).unwrap();
        for wrong in [&other, &other_creator] {
            assert!(!advert_matches(wrong, HOUR, &name).unwrap());
            assert_eq!(
                open_device_info(wrong, HOUR, &sealed),
                Err(DiscoveryError::Open)
            );
        }
        assert_eq!(open_device_info(&key(), HOUR, &sealed).unwrap(), advert());
        assert_eq!(
            open_device_info(&key(), HOUR + 1, &sealed),
            Err(DiscoveryError::Open)
        );
    }

    #[test]
    fn tampered_device_info_is_refused() {
        let sealed = seal_device_info(&key(), HOUR, &advert(), NONCE).unwrap();
        let bytes = URL_SAFE_NO_PAD.decode(&sealed).unwrap();
        for i in 1..bytes.len() {
            let mut changed = bytes.clone();
            changed[i] ^= 0x01;
            let text = URL_SAFE_NO_PAD.encode(&changed);
            assert_eq!(
                open_device_info(&key(), HOUR, &text),
                Err(DiscoveryError::Open),
                "byte {i}"
            );
        }
        let mut changed = bytes.clone();
        changed[0] = 2;
        assert_eq!(
            open_device_info(&key(), HOUR, &URL_SAFE_NO_PAD.encode(&changed)),
            Err(DiscoveryError::UnsupportedVersion(2))
        );
        let truncated = URL_SAFE_NO_PAD.encode(&bytes[..bytes.len() - 1]);
        assert!(open_device_info(&key(), HOUR, &truncated).is_err());
        for junk in ["", "!!", "AQ", "not base64 at all"] {
            assert!(matches!(
                open_device_info(&key(), HOUR, junk),
                Err(DiscoveryError::Malformed(_))
            ));
        }
    }

    #[test]
    fn oversized_input_is_refused_with_a_clear_error() {
        let long = "a".repeat(MAX_SEALED_TEXT + 1);
        let err = open_device_info(&key(), HOUR, &long).unwrap_err();
        assert_eq!(
            err,
            DiscoveryError::Oversized {
                len: MAX_SEALED_TEXT + 1,
                max: MAX_SEALED_TEXT
            }
        );
        assert_eq!(
            err.to_string(),
            "sealed device info is 254 characters; at most 253 are read"
        );

        let mut advert = advert();
        advert.name = "x".repeat(MAX_DEVICE_NAME + 1);
        let err = seal_device_info(&key(), HOUR, &advert, NONCE).unwrap_err();
        assert_eq!(
            err.to_string(),
            "device name is 64 bytes; at most 63 fit in an advert"
        );
        for bad in ["", "tab\there", "bell\u{7}", "esc\u{1b}[31m"] {
            advert.name = bad.to_string();
            assert_eq!(
                seal_device_info(&key(), HOUR, &advert, NONCE),
                Err(DiscoveryError::BadName)
            );
        }
        // The longest name still fits in one TXT string.
        advert.name = "é".repeat(MAX_DEVICE_NAME / 2);
        let sealed = seal_device_info(&key(), HOUR, &advert, NONCE).unwrap();
        assert!(sealed.len() + 2 <= 255);
        assert_eq!(open_device_info(&key(), HOUR, &sealed).unwrap(), advert);
    }

    #[test]
    fn names_of_other_shapes_are_not_adverts() {
        let key = key();
        let name = advert_name(&key, HOUR, SALT).unwrap();
        for other in [
            String::new(),
            "My Printer".to_string(),
            name.to_ascii_uppercase(),
            format!("{name}0"),
            name[1..].to_string(),
        ] {
            assert!(!advert_matches(&key, HOUR, &other).unwrap(), "{other}");
        }
    }

    #[test]
    fn hours_count_from_the_epoch_and_refuse_times_before_it() {
        assert_eq!(hour_at(0).unwrap(), 0);
        assert_eq!(hour_at(HOUR_MS - 1).unwrap(), 0);
        assert_eq!(hour_at(HOUR_MS).unwrap(), 1);
        assert_eq!(hour_at(-1), Err(DiscoveryError::BeforeEpoch));
    }

    #[test]
    fn key_and_errors_print_no_secrets() {
        assert_eq!(format!("{:?}", key()), "DiscoveryKey(<redacted>)");
        let text = DiscoveryError::Open.to_string();
        assert!(!text.contains("Kitchen"));
    }
}
