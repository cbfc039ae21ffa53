//! Identifier types shared across the core: record ids, identity ids and
//! entry ids. None of them carries health data, so they may appear in logs.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Error parsing an identifier from text.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid {kind}: expected {expected} hex characters")]
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

            /// Lower-case hex form (what `Display` prints and `FromStr` reads).
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
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                let err = IdParseError { kind: $kind, expected: $len * 2 };
                let bytes = hex::decode(s.trim()).map_err(|_| err.clone())?;
                Self::from_slice(&bytes).map_err(|_| err)
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
}
