//! The one rule for relay addresses: `https://` anywhere, plain `http://`
//! only to this machine (127.0.0.0/8, `::1`, `localhost`). Every way a
//! relay address enters a device (the CLI's `--server`, the mobile API, the
//! relay named in an invite or device-link code) and a relay (its
//! `--upstream` relays) goes through [`RelayUrl::parse`] before anything is
//! sent or changed.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use url::Url;

/// A relay address that passed the rule: its base URL (no trailing `/`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RelayUrl {
    base: String,
    tls: bool,
    host: String,
    port: u16,
}

/// Why a relay address was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RelayUrlError {
    /// Not an `http(s)://HOST[:PORT][/PATH]` URL.
    #[error(
        "{0:?} is not a relay address: expected https://HOST[:PORT] (or http://127.0.0.1:PORT for a relay on this machine)"
    )]
    Malformed(String),
    /// Plain HTTP to a host other than loopback.
    #[error(
        "refusing plain http:// to {host}: your access token and your record's metadata would cross the network unencrypted. \
         Use https://{host_port} (run the relay with --tls-cert and --tls-key, or behind a TLS reverse proxy; \
         a relay certificate from your own CA is trusted with --relay-ca FILE). \
         Plain http:// is allowed only to this machine (127.0.0.1, ::1, localhost)"
    )]
    PlainHttpOffLoopback {
        /// The host as written.
        host: String,
        /// Host and port, for the suggested `https://` address.
        host_port: String,
    },
}

impl RelayUrl {
    /// Check `text` against the rule.
    pub fn parse(text: &str) -> Result<Self, RelayUrlError> {
        let malformed = || RelayUrlError::Malformed(text.to_owned());
        let url = Url::parse(text.trim()).map_err(|_| malformed())?;
        let tls = match url.scheme() {
            "https" => true,
            "http" => false,
            _ => return Err(malformed()),
        };
        let Some(host) = url.host_str().filter(|h| !h.is_empty()) else {
            return Err(malformed());
        };
        if !url.username().is_empty()
            || url.password().is_some()
            || url.query().is_some()
            || url.fragment().is_some()
        {
            return Err(malformed());
        }
        if !tls && !is_loopback(host) {
            let host = host.to_owned();
            let host_port = match url.port() {
                Some(port) => format!("{host}:{port}"),
                None => host.clone(),
            };
            return Err(RelayUrlError::PlainHttpOffLoopback { host, host_port });
        }
        let base = url.as_str().trim_end_matches('/').to_owned();
        let port = url
            .port_or_known_default()
            .unwrap_or(if tls { 443 } else { 80 });
        let host = host.to_owned();
        Ok(RelayUrl {
            base,
            tls,
            host,
            port,
        })
    }

    /// The base URL, e.g. `https://relay.example` (no trailing `/`).
    pub fn as_str(&self) -> &str {
        &self.base
    }

    /// Whether the relay is reached over TLS.
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    /// The host as the URL parser normalized it (IPv6 in brackets).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port (443 or 80 when the address names none).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The path prefix the relay is served under (`""` at the root, else
    /// `/satchel`): request paths are appended to it.
    pub fn path_prefix(&self) -> &str {
        let after_scheme = self.base.split_once("://").map_or("", |(_, rest)| rest);
        after_scheme.find('/').map_or("", |i| &after_scheme[i..])
    }

    /// The same address for a WebSocket (`wss://`, or `ws://` on loopback).
    pub fn websocket(&self) -> String {
        match self.base.split_once("://") {
            Some((_, rest)) if self.tls => format!("wss://{rest}"),
            Some((_, rest)) => format!("ws://{rest}"),
            None => self.base.clone(),
        }
    }
}

/// 127.0.0.0/8, `::1` (and IPv4-mapped loopback), `localhost`. `host` is
/// as the URL parser normalized it (IPv4 dotted, IPv6 in brackets).
fn is_loopback(host: &str) -> bool {
    if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return v6.parse::<Ipv6Addr>().is_ok_and(|ip| {
            ip.is_loopback() || ip.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        });
    }
    if let Ok(ip) = host.parse::<Ipv4Addr>() {
        return ip.is_loopback();
    }
    host.trim_end_matches('.').eq_ignore_ascii_case("localhost")
}

impl FromStr for RelayUrl {
    type Err = RelayUrlError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RelayUrl::parse(s)
    }
}

impl fmt::Display for RelayUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.base)
    }
}

impl AsRef<str> for RelayUrl {
    fn as_ref(&self) -> &str {
        &self.base
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_anywhere_http_only_on_loopback() {
        for ok in [
            "https://relay.example",
            "https://relay.example:8443/",
            "https://192.0.2.1:8787",
            "https://relay.example/satchel",
            "http://127.0.0.1:8787",
            "http://127.8.9.10:1",
            "http://[::1]:8787",
            "http://localhost:8787/",
            "http://LOCALHOST.:8787",
        ] {
            assert!(RelayUrl::parse(ok).is_ok(), "{ok}");
        }
        for off in [
            "http://192.0.2.1:8787",
            "http://relay.example",
            "http://0.0.0.0:8787",
            "http://[2001:db8::1]:8787",
            "http://localhost.example:8787",
            "http://128.0.0.1",
        ] {
            assert!(
                matches!(
                    RelayUrl::parse(off),
                    Err(RelayUrlError::PlainHttpOffLoopback { .. })
                ),
                "{off}"
            );
        }
        for bad in [
            "relay.example",
            "ftp://relay.example",
            "https://",
            "https://user:pw@relay.example",
            "https://relay.example/?x=1",
            "ws://127.0.0.1:8787",
        ] {
            assert!(
                matches!(RelayUrl::parse(bad), Err(RelayUrlError::Malformed(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn the_refusal_says_what_to_do() {
        let msg = RelayUrl::parse("http://192.0.2.1:8787")
            .unwrap_err()
            .to_string();
        assert!(msg.contains("https://192.0.2.1:8787"), "{msg}");
        assert!(msg.contains("--relay-ca"), "{msg}");
        assert!(msg.contains("127.0.0.1"), "{msg}");
    }

    #[test]
    fn base_and_websocket_forms() {
        let url = RelayUrl::parse("https://relay.example:8443/").unwrap();
        assert_eq!(url.as_str(), "https://relay.example:8443");
        assert_eq!(url.websocket(), "wss://relay.example:8443");
        assert!(url.is_tls());
        let local = RelayUrl::parse("http://127.0.0.1:8787").unwrap();
        assert_eq!(local.as_str(), "http://127.0.0.1:8787");
        assert_eq!(local.websocket(), "ws://127.0.0.1:8787");
        assert!(!local.is_tls());
    }

    #[test]
    fn host_port_and_path_prefix() {
        let url = RelayUrl::parse("https://relay.example/satchel/").unwrap();
        assert_eq!((url.host(), url.port()), ("relay.example", 443));
        assert_eq!(url.path_prefix(), "/satchel");
        let local = RelayUrl::parse("http://[::1]:8787").unwrap();
        assert_eq!((local.host(), local.port()), ("[::1]", 8787));
        assert_eq!(local.path_prefix(), "");
        assert_eq!(RelayUrl::parse("http://localhost").unwrap().port(), 80);
    }
}
