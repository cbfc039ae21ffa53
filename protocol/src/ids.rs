//! Identifier types shared across the core: record ids, identity ids and
//! entry ids. None of them carries health data, so they may appear in logs.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Error parsing an identifier from text.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid {kind}: expected {expected} lower-case hex characters")]
pub struct IdParseError {
    kind: &'static str,
    expected: usize,
}

fn random_bytes<const N: usize>() -> [u8; N] {
    use ring::rand::SecureRandom;
    let mut out = [0u8; N];
    // The system RNG failing is unrecoverable for a cryptographic application.
    #[allow(clippy::expect_used)]
    ring::rand::SystemRandom::new()
        .fill(&mut out)
        .expect("system random number generator unavailable");
    out
}

/// The bytes of `s` if it is exactly `2 * N` lower-case hex characters.
/// Ids cross trust boundaries (relay paths, wire bodies, link codes, CLI
/// arguments) and are compared, hashed and stored as text by other parties:
/// one spelling per id, so two parsers never disagree about which id is meant.
pub(crate) fn canonical_hex<const N: usize>(s: &str) -> Option<[u8; N]> {
    let digits = s.as_bytes();
    if digits.len() != 2 * N {
        return None;
    }
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut out = [0u8; N];
    for (byte, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
        *byte = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Some(out)
}

macro_rules! hex_id {
    ($(#[$doc:meta])* $name:ident, $len:expr, $kind:expr) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub [u8; $len]);

        impl $name {
            /// Length in bytes.
            pub const LEN: usize = $len;

            /// A fresh random identifier.
            pub fn random() -> Self {
                Self(random_bytes::<$len>())
            }

            /// The raw bytes.
            pub fn as_bytes(&self) -> &[u8; $len] {
                &self.0
            }

            /// Lower-case hex form (what `Display` prints and the only form
            /// `FromStr` reads).
            pub fn to_hex(&self) -> String {
                hex::encode(self.0)
            }

            /// Parse from raw bytes of exactly the right length.
            pub fn from_slice(bytes: &[u8]) -> Result<Self, IdParseError> {
                <[u8; $len]>::try_from(bytes)
                    .map(Self)
                    .map_err(|_| IdParseError { kind: $kind, expected: $len * 2 })
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.to_hex())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.to_hex())
            }
        }

        impl FromStr for $name {
            type Err = IdParseError;
            /// The canonical form only: exactly `2 * LEN` lower-case hex
            /// characters (no whitespace, upper case, prefix or other encoding).
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                let err = IdParseError { kind: $kind, expected: $len * 2 };
                canonical_hex::<$len>(s).map(Self).ok_or(err)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.to_hex())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

impl Clone for IdParseError {
    fn clone(&self) -> Self {
        Self {
            kind: self.kind,
            expected: self.expected,
        }
    }
}

hex_id!(
    /// A patient's record. Random, 128 bits.
    RecordId, 16, "record id"
);
hex_id!(
    /// An identity (device, carer, provider system): its Ed25519 public key.
    IdentityId, 32, "identity id"
);
hex_id!(
    /// One entry (clinical fact) in a record. Random, 128 bits.
    EntryId, 16, "entry id"
);
hex_id!(
    /// An invite or device-link mailbox on a relay: derived from the link
    /// code's secret (which the relay never sees), 128 bits.
    LinkId, 16, "link id"
);

hex_id!(
    /// A SMART Health Link as its relay knows it: SHA-256 of the link's
    /// secret id (`wire::share_links::ShareLinkId`), which the relay never
    /// stores. Owners name their links by it; it admits to nothing.
    ShareLinkHandle, 32, "share link handle"
);

impl IdentityId {
    /// A short form for tables (first 8 hex characters). Not for security
    /// decisions; compare full ids or fingerprints for that.
    pub fn short(&self) -> String {
        self.to_hex()[..8].to_string()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip() {
        let id = RecordId::random();
        let parsed: RecordId = id.to_string().parse().unwrap();
        assert_eq!(id, parsed);
        assert!("zz".parse::<RecordId>().is_err());
        assert!("abcd".parse::<RecordId>().is_err());
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(serde_json::from_str::<RecordId>(&json).unwrap(), id);
    }

    /// Every spelling but the one `Display` prints is refused, by `FromStr`
    /// and by serde alike (relay paths, wire bodies, link codes and CLI
    /// arguments all parse through these).
    fn assert_only_canonical<T>(canonical: &str)
    where
        T: FromStr + fmt::Display + serde::de::DeserializeOwned,
        T::Err: fmt::Debug,
    {
        let parsed: T = canonical.parse().unwrap();
        assert_eq!(parsed.to_string(), canonical);
        let json = format!("\"{canonical}\"");
        assert_eq!(
            serde_json::from_str::<T>(&json).unwrap().to_string(),
            canonical
        );
        let upper = canonical.to_ascii_uppercase();
        let mixed = canonical.replacen('a', "A", 1);
        let short = &canonical[..canonical.len() - 2];
        let long = format!("{canonical}00");
        let odd = &canonical[..canonical.len() - 1];
        let prefixed = format!("0x{}", &canonical[2..]);
        let spaced = format!("{} {}", &canonical[..2], &canonical[3..]);
        let fullwidth = canonical.replacen('a', "\u{ff41}", 1);
        let b64 = {
            use base64::Engine;
            let bytes = hex::decode(canonical).unwrap();
            base64::engine::general_purpose::STANDARD.encode(bytes)
        };
        let bad = [
            upper,
            mixed,
            format!(" {canonical}"),
            format!("{canonical} "),
            format!("{canonical}\n"),
            format!("\t{canonical}"),
            short.to_string(),
            long,
            odd.to_string(),
            prefixed,
            spaced,
            fullwidth,
            b64,
            format!("{{{canonical}}}"),
            canonical.replacen('0', "g", 1),
            String::new(),
        ];
        for text in &bad {
            assert!(text.parse::<T>().is_err(), "{text:?} accepted");
            let json = serde_json::to_string(text).unwrap();
            assert!(serde_json::from_str::<T>(&json).is_err(), "{json} accepted");
        }
    }

    #[test]
    fn ids_accept_only_canonical_form() {
        // Each id has an `a` and a `0` so every alteration above applies.
        assert_only_canonical::<RecordId>("a0f1f2f3f4f5f6f7f8f9fafbfcfdfeff");
        assert_only_canonical::<EntryId>("0123456789abcdef0123456789abcdef");
        assert_only_canonical::<IdentityId>(
            "03a107bff3ce10be1d70dd18e74bc09967e4d6309ba50d5f1ddc8664125531b8",
        );
        // Every byte value survives the round trip (all 16 nibbles, both places).
        let all = RecordId(std::array::from_fn(|i| (i as u8) * 17));
        assert_eq!(all.to_string().parse::<RecordId>().unwrap(), all);
        let all = IdentityId(std::array::from_fn(|i| (i as u8).wrapping_mul(37)));
        assert_eq!(all.to_string().parse::<IdentityId>().unwrap(), all);
        // Keys in identity cards are identity ids: the same one form.
        let card =
            crate::crypto::Identity::generate("phone", crate::crypto::Role::PatientDevice, None)
                .unwrap()
                .card()
                .clone();
        let json = serde_json::to_value(&card).unwrap();
        let key = json["signing_key"].as_str().unwrap().to_string();
        assert!(serde_json::from_value::<crate::crypto::IdentityCard>(json.clone()).is_ok());
        for bad in [
            key.to_ascii_uppercase(),
            format!(" {key}"),
            format!("{key}00"),
        ] {
            let mut changed = json.clone();
            changed["signing_key"] = serde_json::Value::String(bad.clone());
            assert!(
                serde_json::from_value::<crate::crypto::IdentityCard>(changed).is_err(),
                "card with signing_key {bad:?} accepted"
            );
        }
        // The error names the form, never the input.
        let err = "03A1".parse::<IdentityId>().unwrap_err().to_string();
        assert_eq!(
            err,
            "invalid identity id: expected 64 lower-case hex characters"
        );
    }
}
