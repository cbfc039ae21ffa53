//! The SMART Health Link payload (links specification, STU1): the JSON
//! object `{url, key, exp?, flag?, label?, v?}`, minified, base64url
//! without padding, after the `shlink:/` prefix; and the rules every field
//! follows. One type for making links and for reading them back.

use std::fmt;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// What precedes the base64url payload.
pub const SHLINK_PREFIX: &str = "shlink:/";
/// The longest manifest URL the specification allows.
pub const MAX_URL_CHARS: usize = 128;
/// The longest label the specification allows.
pub const MAX_LABEL_CHARS: usize = 80;
/// The payload version we write.
pub const PAYLOAD_VERSION: u32 = 1;

/// A payload rule broken. Never carries the key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    #[error("not a SMART Health Link (it must start with shlink:/)")]
    Prefix,
    #[error("the link's payload is not base64url JSON")]
    Encoding,
    #[error("the manifest URL must be an https:// URL (http:// only on this machine) of at most 128 characters")]
    Url,
    #[error("the key must be 43 characters of base64url (32 bytes)")]
    Key,
    #[error("the label is longer than 80 characters")]
    Label,
    #[error("flags must be letters in alphabetical order from L, P, U, and U never goes with P")]
    Flags,
    #[error("unsupported payload version")]
    Version,
}

/// The flags of a link.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Flags {
    /// `L`: long-term; the files may change (a live link).
    pub long_term: bool,
    /// `P`: a passcode is needed.
    pub passcode: bool,
    /// `U`: one file, fetched directly with `GET`.
    pub direct: bool,
}

impl Flags {
    /// The flag string: letters in alphabetical order; `None` when empty.
    pub fn to_text(self) -> Option<String> {
        let mut s = String::new();
        if self.long_term {
            s.push('L');
        }
        if self.passcode {
            s.push('P');
        }
        if self.direct {
            s.push('U');
        }
        (!s.is_empty()).then_some(s)
    }

    /// Read a flag string (letters in alphabetical order, each once; `U`
    /// never with `P`).
    pub fn parse(text: &str) -> Result<Self, PayloadError> {
        let mut flags = Flags::default();
        let mut last = None;
        for c in text.chars() {
            if last.is_some_and(|l| l >= c) {
                return Err(PayloadError::Flags);
            }
            match c {
                'L' => flags.long_term = true,
                'P' => flags.passcode = true,
                'U' => flags.direct = true,
                _ => return Err(PayloadError::Flags),
            }
            last = Some(c);
        }
        flags.check()?;
        Ok(flags)
    }

    fn check(self) -> Result<(), PayloadError> {
        if self.direct && self.passcode {
            return Err(PayloadError::Flags);
        }
        Ok(())
    }
}

/// The payload as it is written in JSON (field names of the
/// specification).
#[derive(Serialize, Deserialize)]
struct Wire {
    url: String,
    key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    exp: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    flag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    label: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    v: Option<u32>,
}

/// A SMART Health Link. The key is the link's whole secret: `Debug`
/// redacts it, and it is zeroized on drop.
#[derive(Clone, PartialEq, Eq)]
pub struct ShlPayload {
    /// The manifest URL.
    pub url: String,
    /// The files' key (32 bytes).
    pub key: Zeroizing<[u8; 32]>,
    /// Expiry, Unix seconds.
    pub exp: Option<i64>,
    pub flags: Flags,
    /// Shown to the recipient before opening (at most 80 characters).
    pub label: Option<String>,
}

impl fmt::Debug for ShlPayload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShlPayload")
            .field("exp", &self.exp)
            .field("flags", &self.flags)
            .finish_non_exhaustive()
    }
}

fn check_url(url: &str) -> Result<(), PayloadError> {
    if url.chars().count() > MAX_URL_CHARS {
        return Err(PayloadError::Url);
    }
    let parsed = url::Url::parse(url).map_err(|_| PayloadError::Url)?;
    let loopback = match parsed.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => return Err(PayloadError::Url),
    };
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        _ => Err(PayloadError::Url),
    }
}

impl ShlPayload {
    /// Check every rule of the specification.
    pub fn validate(&self) -> Result<(), PayloadError> {
        check_url(&self.url)?;
        if self
            .label
            .as_ref()
            .is_some_and(|l| l.chars().count() > MAX_LABEL_CHARS)
        {
            return Err(PayloadError::Label);
        }
        self.flags.check()
    }

    /// The minified JSON object.
    pub fn to_json(&self) -> Result<Zeroizing<String>, PayloadError> {
        self.validate()?;
        let wire = Wire {
            url: self.url.clone(),
            key: URL_SAFE_NO_PAD.encode(*self.key),
            exp: self.exp,
            flag: self.flags.to_text(),
            label: self.label.clone(),
            v: Some(PAYLOAD_VERSION),
        };
        let json = serde_json::to_string(&wire).map_err(|_| PayloadError::Encoding);
        // The copy of the key in `wire` goes with it.
        let mut key = wire.key;
        zeroize::Zeroize::zeroize(&mut key);
        json.map(Zeroizing::new)
    }

    /// `shlink:/` and the base64url payload.
    pub fn to_shlink(&self) -> Result<Zeroizing<String>, PayloadError> {
        let json = self.to_json()?;
        Ok(Zeroizing::new(format!(
            "{SHLINK_PREFIX}{}",
            URL_SAFE_NO_PAD.encode(json.as_bytes())
        )))
    }

    /// The link behind a viewer: `<viewer>#shlink:/...` (the fragment
    /// never reaches a server).
    pub fn to_viewer_url(&self, viewer: &str) -> Result<Zeroizing<String>, PayloadError> {
        Ok(Zeroizing::new(format!("{viewer}#{}", *self.to_shlink()?)))
    }

    /// Read a link: a bare `shlink:/...`, or any URL ending in
    /// `#shlink:/...`.
    pub fn parse(text: &str) -> Result<Self, PayloadError> {
        let text = text.trim();
        let bare = match text.find('#') {
            Some(at) => &text[at + 1..],
            None => text,
        };
        let encoded = bare
            .strip_prefix(SHLINK_PREFIX)
            .ok_or(PayloadError::Prefix)?;
        let json = Zeroizing::new(
            URL_SAFE_NO_PAD
                .decode(encoded)
                .map_err(|_| PayloadError::Encoding)?,
        );
        let wire: Wire = serde_json::from_slice(&json).map_err(|_| PayloadError::Encoding)?;
        let key_text = Zeroizing::new(wire.key);
        if key_text.len() != 43 {
            return Err(PayloadError::Key);
        }
        let key_bytes = Zeroizing::new(
            URL_SAFE_NO_PAD
                .decode(key_text.as_bytes())
                .map_err(|_| PayloadError::Key)?,
        );
        let key: [u8; 32] = key_bytes
            .as_slice()
            .try_into()
            .map_err(|_| PayloadError::Key)?;
        if wire.v.is_some_and(|v| v != PAYLOAD_VERSION) {
            return Err(PayloadError::Version);
        }
        let payload = ShlPayload {
            url: wire.url,
            key: Zeroizing::new(key),
            exp: wire.exp,
            flags: Flags::parse(wire.flag.as_deref().unwrap_or(""))?,
            label: wire.label,
        };
        payload.validate()?;
        Ok(payload)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// "Example SMART Health Link Generation" of the specification.
    const IG_SHLINK: &str = "shlink:/eyJ1cmwiOiJodHRwczovL2Voci5leGFtcGxlLm9yZy9xci9ZOXh3a1VkdG1OOXd3b0pvTjNmZkpJaFgyVUd2Q0wxSm5sUFZOTDNrRFdNL20iLCJmbGFnIjoiTFAiLCJrZXkiOiJyeFRnWWxPYUtKUEZ0Y0VkMHFjY2VOOHdFVTRwOTRTcUF3SVdRZTZ1WDdRIiwibGFiZWwiOiJCYWNrLXRvLXNjaG9vbCBpbW11bml6YXRpb25zIGZvciBPbGl2ZXIgQnJvd24ifQ";

    #[test]
    fn the_specifications_example_link_reads() {
        let link = ShlPayload::parse(&format!("https://viewer.example.org#{IG_SHLINK}")).unwrap();
        assert_eq!(
            link.url,
            "https://ehr.example.org/qr/Y9xwkUdtmN9wwoJoN3ffJIhX2UGvCL1JnlPVNL3kDWM/m"
        );
        assert_eq!(
            URL_SAFE_NO_PAD.encode(*link.key),
            "rxTgYlOaKJPFtcEd0qcceN8wEU4p94SqAwIWQe6uX7Q"
        );
        assert_eq!(
            link.flags,
            Flags {
                long_term: true,
                passcode: true,
                direct: false
            }
        );
        assert_eq!(
            link.label.as_deref(),
            Some("Back-to-school immunizations for Oliver Brown")
        );
        assert_eq!(ShlPayload::parse(IG_SHLINK).unwrap(), link);
    }

    #[test]
    fn links_we_make_follow_the_rules() {
        let link = ShlPayload {
            url: "https://relay.example.org/shl/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".into(),
            key: Zeroizing::new([7; 32]),
            exp: Some(1_900_000_000),
            flags: Flags {
                long_term: true,
                passcode: true,
                direct: false,
            },
            label: Some("Summary for Dr Okafor".into()),
        };
        let json = link.to_json().unwrap();
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert!(
            !json.contains(": ") && !json.contains('\n') && !json.contains(", "),
            "minified"
        );
        assert_eq!(value["key"].as_str().unwrap().len(), 43);
        assert_eq!(value["flag"], "LP");
        assert_eq!(value["v"], 1);
        assert_eq!(value["exp"], 1_900_000_000);
        let shlink = link.to_shlink().unwrap();
        assert!(shlink.starts_with("shlink:/eyJ"));
        let body = shlink.strip_prefix("shlink:/").unwrap();
        assert!(body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        assert_eq!(ShlPayload::parse(&shlink).unwrap(), link);
        let viewer = link
            .to_viewer_url("https://relay.example.org/view")
            .unwrap();
        assert!(viewer.starts_with("https://relay.example.org/view#shlink:/"));
        assert!(!format!("{link:?}").contains("key"));
    }

    #[test]
    fn broken_rules_are_refused() {
        let ok = ShlPayload {
            url: "https://r.example/shl/x".into(),
            key: Zeroizing::new([1; 32]),
            exp: None,
            flags: Flags::default(),
            label: None,
        };
        let mut long_url = ok.clone();
        long_url.url = format!("https://r.example/{}", "a".repeat(120));
        assert_eq!(long_url.to_shlink().unwrap_err(), PayloadError::Url);
        let mut plain = ok.clone();
        plain.url = "http://relay.example.org/shl/x".into();
        assert_eq!(plain.to_shlink().unwrap_err(), PayloadError::Url);
        plain.url = "http://127.0.0.1:8080/shl/x".into();
        assert!(plain.to_shlink().is_ok());
        let mut label = ok.clone();
        label.label = Some("x".repeat(81));
        assert_eq!(label.to_shlink().unwrap_err(), PayloadError::Label);
        let mut up = ok.clone();
        up.flags = Flags {
            long_term: false,
            passcode: true,
            direct: true,
        };
        assert_eq!(up.to_shlink().unwrap_err(), PayloadError::Flags);
        assert_eq!(Flags::parse("PL").unwrap_err(), PayloadError::Flags);
        assert_eq!(Flags::parse("LL").unwrap_err(), PayloadError::Flags);
        assert_eq!(Flags::parse("X").unwrap_err(), PayloadError::Flags);
        assert_eq!(
            ShlPayload::parse("https://x#shlonk:/e30").unwrap_err(),
            PayloadError::Prefix
        );
        assert_eq!(
            ShlPayload::parse("shlink:/not json!").unwrap_err(),
            PayloadError::Encoding
        );
        let short_key = format!(
            "shlink:/{}",
            URL_SAFE_NO_PAD.encode(r#"{"url":"https://r.example/m","key":"abc"}"#)
        );
        assert_eq!(
            ShlPayload::parse(&short_key).unwrap_err(),
            PayloadError::Key
        );
    }
}
