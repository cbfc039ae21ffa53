//! Checking a client assertion (SMART Backend Services, RFC 7523 section
//! 3.2): header `alg` RS384 or ES384 and a `kid` of the client's JWKS, the
//! signature, `iss` == `sub` == a registered client, `aud` == the token URL,
//! `exp` in the next five minutes, `nbf`/`iat` not in the future, a `jti`.
//! Pure: the time comes in as `now_ms`; replay is checked by the caller.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, Validation};
use serde::Deserialize;
use serde_json::Value;

use super::error::{quote, AuthError};
use super::registry::ClientRegistry;

/// Longest assertion read, in bytes.
const MAX_ASSERTION_LEN: usize = 16 * 1024;
/// Longest `jti` accepted (it is kept in memory until `exp`).
const MAX_JTI_LEN: usize = 255;
/// The longest an assertion may live from now, in milliseconds.
pub(crate) const MAX_LIFETIME_MS: i64 = 5 * 60 * 1000;
/// Clock skew allowed between the client and the gateway, in milliseconds
/// (for `nbf`, `iat`, and the five-minute cap on `exp`).
pub(crate) const CLOCK_SKEW_MS: i64 = 60 * 1000;

/// What a valid assertion tells: who, and its replay key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct VerifiedAssertion {
    /// The registered client that signed it.
    pub client_id: String,
    /// Its `jti`.
    pub jti: String,
    /// Its `exp`, in milliseconds.
    pub exp_ms: i64,
}

/// The header members read before verifying.
#[derive(Deserialize)]
struct RawHeader {
    alg: Option<String>,
    kid: Option<String>,
}

/// The claims checked (others are ignored).
#[derive(Deserialize)]
struct Claims {
    iss: Option<String>,
    sub: Option<String>,
    aud: Option<Value>,
    exp: Option<Value>,
    nbf: Option<Value>,
    iat: Option<Value>,
    jti: Option<String>,
}

/// Checks `assertion` against the registry, for the token endpoint at
/// `token_url`, at `now_ms`.
pub(crate) fn verify_assertion(
    registry: &ClientRegistry,
    token_url: &str,
    assertion: &str,
    now_ms: i64,
) -> Result<VerifiedAssertion, AuthError> {
    if assertion.len() > MAX_ASSERTION_LEN {
        return Err(AuthError::MalformedAssertion("it is longer than 16 KiB"));
    }
    let mut parts = assertion.split('.');
    let (Some(header_b64), Some(payload_b64), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(AuthError::MalformedAssertion(
            "expected three base64url parts separated by dots (JWS compact form)",
        ));
    };
    let header: RawHeader = decode_part(header_b64).ok_or(AuthError::MalformedAssertion(
        "the header is not base64url JSON",
    ))?;
    let alg = match header.alg.as_deref() {
        Some("RS384") => Algorithm::RS384,
        Some("ES384") => Algorithm::ES384,
        Some(other) => return Err(AuthError::UnsupportedAlgorithm(quote(other))),
        None => return Err(AuthError::MalformedAssertion("the header has no alg")),
    };
    let kid = header.kid.ok_or(AuthError::MissingKid)?;

    // Who claims to have signed it, read before the signature is checked
    // only to pick the key; nothing else is trusted until it verifies.
    let unverified: Claims = decode_part(payload_b64).ok_or(AuthError::MalformedAssertion(
        "the claims are not base64url JSON with string iss and sub",
    ))?;
    let client_id = match (unverified.iss, unverified.sub) {
        (Some(iss), Some(sub)) if iss == sub => iss,
        _ => return Err(AuthError::IssuerSubjectMismatch),
    };
    let (_, keys) = registry
        .find(&client_id)
        .ok_or_else(|| AuthError::UnknownClient(quote(&client_id)))?;
    let key = keys
        .iter()
        .find(|k| k.kid == kid)
        .ok_or_else(|| AuthError::UnknownKey {
            client_id: client_id.clone(),
            kid: quote(&kid),
        })?;
    if key.alg != alg {
        return Err(AuthError::KeyAlgorithmMismatch {
            client_id,
            kid: quote(&kid),
            alg: if alg == Algorithm::ES384 {
                "ES384"
            } else {
                "RS384"
            },
        });
    }

    let claims = jsonwebtoken::decode::<Claims>(assertion, &key.key, &signature_only(alg))
        .map_err(|e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::Json(_) => {
                AuthError::InvalidClaims("a claim has the wrong JSON type")
            }
            _ => AuthError::BadSignature {
                client_id: client_id.clone(),
                kid: quote(&kid),
            },
        })?
        .claims;
    check_claims(&claims, &client_id, token_url, now_ms)?;
    let (Some(jti), Some(exp)) = (claims.jti, claims.exp.as_ref().and_then(seconds)) else {
        return Err(AuthError::InvalidClaims("jti and exp are required"));
    };
    Ok(VerifiedAssertion {
        client_id,
        jti,
        exp_ms: exp.saturating_mul(1000),
    })
}

/// jsonwebtoken checks the signature and `alg` only: the claims are checked
/// here against `now_ms` (jsonwebtoken would read the system clock).
fn signature_only(alg: Algorithm) -> Validation {
    let mut validation = Validation::new(alg);
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation
}

/// The signed claims against the client, the token URL and the time.
fn check_claims(
    claims: &Claims,
    client_id: &str,
    token_url: &str,
    now_ms: i64,
) -> Result<(), AuthError> {
    if claims.iss.as_deref() != Some(client_id) || claims.sub.as_deref() != Some(client_id) {
        return Err(AuthError::IssuerSubjectMismatch);
    }
    let aud_ok = match &claims.aud {
        Some(Value::String(aud)) => aud == token_url,
        Some(Value::Array(auds)) => auds.iter().any(|a| a.as_str() == Some(token_url)),
        _ => false,
    };
    if !aud_ok {
        return Err(AuthError::WrongAudience {
            expected: token_url.to_owned(),
        });
    }
    let exp_ms = time_claim_ms(&claims.exp, "exp must be a number of seconds")?
        .ok_or(AuthError::InvalidClaims("exp is required"))?;
    if exp_ms <= now_ms {
        return Err(AuthError::AssertionExpired);
    }
    if exp_ms > now_ms + MAX_LIFETIME_MS + CLOCK_SKEW_MS {
        return Err(AuthError::AssertionLifetimeTooLong);
    }
    for (claim, what) in [
        (&claims.nbf, "nbf must be a number of seconds"),
        (&claims.iat, "iat must be a number of seconds"),
    ] {
        if time_claim_ms(claim, what)?.is_some_and(|t| t > now_ms + CLOCK_SKEW_MS) {
            return Err(AuthError::AssertionNotYetValid);
        }
    }
    match &claims.jti {
        None => Err(AuthError::InvalidClaims("jti is required")),
        Some(jti) if jti.is_empty() || jti.len() > MAX_JTI_LEN => {
            Err(AuthError::InvalidClaims("jti must be 1 to 255 characters"))
        }
        Some(_) => Ok(()),
    }
}

/// A NumericDate claim in milliseconds; `None` when absent.
fn time_claim_ms(claim: &Option<Value>, what: &'static str) -> Result<Option<i64>, AuthError> {
    match claim {
        None => Ok(None),
        Some(v) => seconds(v)
            .map(|s| Some(s.saturating_mul(1000)))
            .ok_or(AuthError::InvalidClaims(what)),
    }
}

/// Whole seconds of a NumericDate (fractions are cut).
fn seconds(v: &Value) -> Option<i64> {
    v.as_i64().or_else(|| {
        v.as_f64()
            .filter(|f| f.is_finite() && f.abs() < 1e15)
            .map(|f| f as i64)
    })
}

/// A base64url JSON part, parsed.
fn decode_part<T: serde::de::DeserializeOwned>(part: &str) -> Option<T> {
    let bytes = URL_SAFE_NO_PAD.decode(part).ok()?;
    serde_json::from_slice(&bytes).ok()
}
