//! Pairing codes: what one device shows (as text or a QR code) and the
//! other scans or pastes to sync directly. A code names an address and
//! port, the showing device's identity (its Ed25519 key, so the scanning
//! device refuses any other device answering there) and a one-time token
//! (so the showing device serves only whoever scanned it).
//!
//! Text form: `satchel-nearby:ADDRESS:PORT/DEVICE/TOKEN`, with the address
//! as `SocketAddr` writes it (`[::1]:7000` for IPv6), the device id and the
//! token in lower-case hex.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;

use crate::crypto::CryptoError;
use crate::ids::IdentityId;

/// The text form's prefix.
pub const PREFIX: &str = "satchel-nearby:";

/// A pairing code.
#[derive(Clone, PartialEq, Eq)]
pub struct PairingCode {
    /// Where the showing device listens.
    pub addr: SocketAddr,
    /// The showing device.
    pub device: IdentityId,
    /// The one-time token.
    pub token: [u8; 16],
}

impl fmt::Debug for PairingCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PairingCode")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl PairingCode {
    /// A code for `device` listening at `addr`, with a fresh token.
    pub fn new(addr: SocketAddr, device: IdentityId) -> Result<Self, CryptoError> {
        Ok(PairingCode {
            addr,
            device,
            token: crate::crypto::random::array()?,
        })
    }
}

impl PairingCode {
    /// What the scanning device pins: the token to present and the device
    /// that must answer.
    pub fn pairing(&self) -> super::session::Pairing {
        super::session::Pairing {
            token: Some(self.token),
            device: Some(self.device),
        }
    }
}

impl fmt::Display for PairingCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{PREFIX}{}/{}/{}",
            self.addr,
            self.device.to_hex(),
            hex::encode(self.token)
        )
    }
}

/// Why text is not a pairing code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not a Satchel pairing code (copy the whole code `satchel nearby listen` printed; it starts with satchel-nearby:)")]
pub struct PairingCodeError;

impl FromStr for PairingCode {
    type Err = PairingCodeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let rest = s.trim().strip_prefix(PREFIX).ok_or(PairingCodeError)?;
        let mut parts = rest.split('/');
        let (Some(addr), Some(device), Some(token), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(PairingCodeError);
        };
        let token = hex::decode(token).map_err(|_| PairingCodeError)?;
        Ok(PairingCode {
            addr: addr.parse().map_err(|_| PairingCodeError)?,
            device: device.parse().map_err(|_| PairingCodeError)?,
            token: token.try_into().map_err(|_| PairingCodeError)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_near_misses() {
        let device: IdentityId = "11".repeat(32).parse().unwrap();
        for addr in ["127.0.0.1:7000", "[::1]:7000", "192.168.1.20:50123"] {
            let code = PairingCode {
                addr: addr.parse().unwrap(),
                device,
                token: [0xab; 16],
            };
            let text = code.to_string();
            assert_eq!(text.parse::<PairingCode>().unwrap(), code);
        }
        let good = format!(
            "{PREFIX}127.0.0.1:7000/{}/{}",
            "11".repeat(32),
            "ab".repeat(16)
        );
        assert!(good.parse::<PairingCode>().is_ok());
        for bad in [
            good.replace(PREFIX, "satchel-invite:"),
            good.replace("127.0.0.1:7000", "127.0.0.1"),
            format!("{good}/extra"),
            good.replace(&"ab".repeat(16), &"ab".repeat(15)),
            good.replace(&"11".repeat(32), &"11".repeat(31)),
            good.replace(&"11".repeat(32), &"1G".repeat(32)),
        ] {
            assert_eq!(bad.parse::<PairingCode>(), Err(PairingCodeError), "{bad}");
        }
    }

    #[test]
    fn debug_hides_the_token() {
        let code = PairingCode {
            addr: "127.0.0.1:1".parse().unwrap(),
            device: "11".repeat(32).parse().unwrap(),
            token: [0xcd; 16],
        };
        assert!(!format!("{code:?}").contains("cdcd"));
    }
}
