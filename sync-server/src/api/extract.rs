//! Request parsing helpers whose failures are the API's JSON errors: path
//! and query wrappers, size-limited JSON bodies, base64 and id parsing, and
//! the conversion of sequence numbers between storage (`i64`) and the wire
//! (`u64`).

use axum::body::Body;
use axum::extract::{FromRequestParts, Path, Query};
use axum::http::request::Parts;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use satchel_protocol::ids::{LinkId, RecordId};
use satchel_protocol::LogName;
use serde::de::DeserializeOwned;

use super::error::ApiError;

/// `axum::extract::Path` with a JSON 400 on failure.
pub struct P<T>(pub T);

impl<T, S> FromRequestParts<S> for P<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(v)| P(v))
            .map_err(|_| ApiError::bad("invalid path parameter"))
    }
}

/// `axum::extract::Query` with a JSON 400 on failure.
pub struct Q<T>(pub T);

impl<T, S> FromRequestParts<S> for Q<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(v)| Q(v))
            .map_err(|e| ApiError::bad(format!("invalid query: {}", e.body_text())))
    }
}

/// Read the whole body, refusing (413) past `limit` bytes, and (408) a
/// body that does not arrive within the body timeout.
pub async fn read_body(body: Body, limit: usize) -> Result<axum::body::Bytes, ApiError> {
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        // The limit error (http_body_util::LengthLimitError) is somewhere in
        // the source chain; match it by its message to avoid a dependency.
        let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(&e);
        let mut too_large = false;
        let mut timed_out = false;
        while let Some(err) = cur {
            if err.is::<crate::net::body::BodyTimedOut>() {
                timed_out = true;
                break;
            }
            if err.to_string().contains("length limit exceeded") {
                too_large = true;
                break;
            }
            cur = err.source();
        }
        if timed_out {
            ApiError::BodyTimeout
        } else if too_large {
            ApiError::too_large(limit, "request body too large")
        } else {
            ApiError::bad("could not read request body")
        }
    })
}

/// Read and parse a JSON body of at most `limit` bytes.
pub async fn read_json<T: DeserializeOwned>(body: Body, limit: usize) -> Result<T, ApiError> {
    let bytes = read_body(body, limit).await?;
    parse_json(&bytes)
}

/// Parse JSON; the error names the problem's position, not content.
pub fn parse_json<'a, T: serde::Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| {
        ApiError::bad(format!(
            "invalid JSON body ({:?} error at line {} column {})",
            e.classify(),
            e.line(),
            e.column()
        ))
    })
}

/// Decode standard base64 (with padding).
pub fn b64_decode(s: &str, what: &str) -> Result<Vec<u8>, ApiError> {
    STANDARD
        .decode(s)
        .map_err(|_| ApiError::bad(format!("{what}: invalid base64")))
}

/// Encode standard base64 (with padding).
pub fn b64(bytes: &[u8]) -> String {
    STANDARD.encode(bytes)
}

/// Exact decoded length of a padded base64 string (before validation).
pub fn b64_decoded_len(s: &str) -> usize {
    let pad = s.bytes().rev().take(2).filter(|&b| b == b'=').count();
    (s.len() / 4 * 3).saturating_sub(pad)
}

/// Parse a record id from the path: `RecordId`'s own parse, which accepts
/// the canonical form only (32 lower-case hex characters).
pub fn record_id(s: &str) -> Result<RecordId, ApiError> {
    s.parse()
        .map_err(|_| ApiError::bad("record id must be 32 lower-case hex characters"))
}

/// Parse a log name from the path: a section name or `wearables.chunks`
/// ([`LogName`]); anything else is refused.
pub fn section(s: &str) -> Result<LogName, ApiError> {
    s.parse::<LogName>().map_err(|_| {
        ApiError::bad("unknown section: the section names and wearables.chunks are valid")
    })
}

/// Parse a link id (32 lower-case hex characters).
pub fn link_id(s: &str) -> Result<LinkId, ApiError> {
    s.parse()
        .map_err(|_| ApiError::bad("link id must be 32 lower-case hex characters"))
}

/// A cursor from the wire as storage keeps it.
pub fn cursor(after: u64, what: &'static str) -> Result<i64, ApiError> {
    i64::try_from(after).map_err(|_| ApiError::bad(format!("{what} is too large")))
}

/// A stored sequence number or count as the wire carries it. Storage never
/// holds a negative one; if it did, the answer is an error, not a guess.
pub fn wire_seq(seq: i64) -> Result<u64, ApiError> {
    u64::try_from(seq).map_err(|_| {
        tracing::warn!("storage returned a negative sequence number or count");
        ApiError::Unavailable
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_ids_are_canonical_only() {
        let rid = "f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff";
        assert_eq!(record_id(rid).map(|r| r.to_string()), Ok(rid.to_string()));
        for bad in [
            rid.to_ascii_uppercase(),
            format!(" {rid}"),
            format!("{rid}00"),
            rid[2..].to_string(),
            format!("0x{}", &rid[2..]),
        ] {
            assert!(record_id(&bad).is_err(), "{bad:?}");
        }
        assert!(link_id(rid).is_ok());
        assert!(link_id(&rid.to_ascii_uppercase()).is_err());
    }

    #[test]
    fn decoded_len_is_exact() {
        for n in 0..20usize {
            let s = b64(&vec![7u8; n]);
            assert_eq!(b64_decoded_len(&s), n);
        }
    }
}
