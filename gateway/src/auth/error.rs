//! [`AuthError`]: every way a registry, token request or bearer token can
//! fail, with its HTTP status and OAuth 2.0 error code. Messages say what to
//! fix and never carry a token, an assertion or key material.

use std::path::PathBuf;

use super::scopes::Access;

/// Longest piece of client-supplied text (a client id, a `kid`, an `alg`)
/// quoted back in a message; longer text is cut.
const QUOTE_MAX: usize = 64;

/// Client-supplied text made safe to quote in a message: cut to
/// [`QUOTE_MAX`] characters (and shown with `{:?}` by the messages).
pub(crate) fn quote(s: &str) -> String {
    s.chars().take(QUOTE_MAX).collect()
}

/// Why the registry, the token endpoint or `authorize` said no.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    // --- the client registry (operator errors, not OAuth answers) ---
    /// The registry file could not be read or written.
    #[error("client registry {path}: {source}")]
    RegistryIo {
        /// The registry file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The registry file is not the expected JSON.
    #[error("client registry {path} is not valid: {detail} (expected {{\"clients\":[{{\"client_id\",\"jwks\",\"scope\"}}]}})")]
    RegistryFormat {
        /// The registry file.
        path: PathBuf,
        /// What is wrong with it.
        detail: String,
    },
    /// A client's JWK Set cannot be registered.
    #[error("client {client_id:?}: JWKS refused: {detail}")]
    InvalidJwks {
        /// The client being registered.
        client_id: String,
        /// What to fix in the JWKS.
        detail: String,
    },
    /// A client id that is empty, too long or has control characters.
    #[error("client id {0:?} refused: use 1 to 255 printable characters")]
    InvalidClientId(String),
    /// A client with this id is already registered.
    #[error("client {0:?} is already registered: remove it first to replace it")]
    DuplicateClient(String),

    // --- the token endpoint ---
    /// A required form field is missing.
    #[error("the token request has no `{0}` field")]
    MissingParameter(&'static str),
    /// `grant_type` is not `client_credentials`.
    #[error("grant_type must be client_credentials (SMART Backend Services)")]
    UnsupportedGrantType,
    /// `client_assertion_type` is not the JWT bearer type.
    #[error(
        "client_assertion_type must be urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
    )]
    WrongAssertionType,
    /// The assertion is not a well-formed JWS compact JWT.
    #[error("client_assertion is not a well-formed signed JWT: {0}")]
    MalformedAssertion(&'static str),
    /// The assertion's `alg` is not RS384 or ES384.
    #[error("client_assertion alg {0:?} is not accepted: sign with RS384 or ES384")]
    UnsupportedAlgorithm(String),
    /// The assertion's header has no `kid`.
    #[error("client_assertion header has no kid: name the registered key that signed it")]
    MissingKid,
    /// `iss` and `sub` differ, or are missing.
    #[error("client_assertion iss and sub must both be the client id")]
    IssuerSubjectMismatch,
    /// `iss` names no registered client.
    #[error("client {0:?} is not registered at this gateway")]
    UnknownClient(String),
    /// The `kid` names no key of this client.
    #[error("client {client_id:?} has no registered key with kid {kid:?}")]
    UnknownKey {
        /// The client.
        client_id: String,
        /// The `kid` from the header (cut).
        kid: String,
    },
    /// The key named by `kid` is not for this `alg`.
    #[error("key {kid:?} of client {client_id:?} is not a {alg} key")]
    KeyAlgorithmMismatch {
        /// The client.
        client_id: String,
        /// The `kid`.
        kid: String,
        /// The header's algorithm.
        alg: &'static str,
    },
    /// The signature does not verify with the named key.
    #[error("client_assertion signature does not verify with key {kid:?} of client {client_id:?}")]
    BadSignature {
        /// The client.
        client_id: String,
        /// The `kid`.
        kid: String,
    },
    /// The claims are missing or of the wrong JSON type.
    #[error("client_assertion claims are not valid: {0}")]
    InvalidClaims(&'static str),
    /// `aud` is not this token endpoint.
    #[error("client_assertion aud must be this token endpoint, {expected}")]
    WrongAudience {
        /// The token URL.
        expected: String,
    },
    /// `exp` has passed.
    #[error("client_assertion has expired: sign a new one with exp a few minutes ahead")]
    AssertionExpired,
    /// `exp` is more than five minutes ahead.
    #[error("client_assertion exp is more than 5 minutes in the future: use a shorter lifetime")]
    AssertionLifetimeTooLong,
    /// `nbf` or `iat` is in the future.
    #[error(
        "client_assertion is not valid yet (nbf or iat in the future): check the client's clock"
    )]
    AssertionNotYetValid,
    /// The `jti` was already used by this client.
    #[error("client_assertion jti was already used: every assertion needs a fresh jti")]
    ReplayedAssertion,
    /// A scope string that does not parse.
    #[error("scope {scope:?} is not valid: {detail}")]
    InvalidScope {
        /// The offending scope (cut).
        scope: String,
        /// What is wrong with it.
        detail: &'static str,
    },
    /// None of the requested scopes is registered for the client.
    #[error("none of the requested scopes is granted to this client (it may have {registered})")]
    NoScopeGranted {
        /// The client's registered scopes.
        registered: String,
    },
    /// The system random generator failed.
    #[error("the gateway could not generate a random token; try again")]
    Random,
    /// Too many live tokens or assertion ids to remember another.
    #[error("the token endpoint is busy (too many live tokens); try again in a few minutes")]
    Overloaded,

    // --- bearer tokens ---
    /// No `Authorization` header.
    #[error("no Authorization header: send Authorization: Bearer <access token>")]
    MissingToken,
    /// The header is not `Bearer <token>`.
    #[error("the Authorization header must be Bearer <access token>")]
    MalformedAuthorization,
    /// Unknown or expired token.
    #[error("the access token is unknown or has expired: get a new one from the token endpoint")]
    InvalidToken,
    /// The token's scopes do not cover this request.
    #[error("the access token has no scope for {access} on {resource_type}: request system/{resource_type}.{access}")]
    InsufficientScope {
        /// The FHIR resource type.
        resource_type: String,
        /// Read or write.
        access: Access,
    },
}

impl AuthError {
    /// The HTTP status to answer with.
    pub fn status(&self) -> u16 {
        match self.oauth_error() {
            "invalid_client" | "invalid_token" => 401,
            "insufficient_scope" => 403,
            "server_error" => 500,
            "temporarily_unavailable" => 503,
            _ => 400,
        }
    }

    /// The OAuth 2.0 error code (RFC 6749 section 5.2, RFC 6750 section 3.1),
    /// or `server_error` / `temporarily_unavailable` for failures of the
    /// gateway itself.
    ///
    /// Assertion failures are `invalid_client`: in SMART Backend Services the
    /// assertion is the client's authentication (RFC 7523 section 3.2).
    pub fn oauth_error(&self) -> &'static str {
        use AuthError::*;
        match self {
            RegistryIo { .. }
            | RegistryFormat { .. }
            | InvalidJwks { .. }
            | InvalidClientId(_)
            | DuplicateClient(_)
            | Random => "server_error",
            Overloaded => "temporarily_unavailable",
            MissingParameter(_) | WrongAssertionType => "invalid_request",
            UnsupportedGrantType => "unsupported_grant_type",
            MalformedAssertion(_)
            | UnsupportedAlgorithm(_)
            | MissingKid
            | IssuerSubjectMismatch
            | UnknownClient(_)
            | UnknownKey { .. }
            | KeyAlgorithmMismatch { .. }
            | BadSignature { .. }
            | InvalidClaims(_)
            | WrongAudience { .. }
            | AssertionExpired
            | AssertionLifetimeTooLong
            | AssertionNotYetValid
            | ReplayedAssertion => "invalid_client",
            InvalidScope { .. } | NoScopeGranted { .. } => "invalid_scope",
            MissingToken | MalformedAuthorization | InvalidToken => "invalid_token",
            InsufficientScope { .. } => "insufficient_scope",
        }
    }

    /// The `WWW-Authenticate` value for a 401 or 403 answer to a FHIR
    /// request (RFC 6750 section 3); `None` for other errors.
    pub fn www_authenticate(&self) -> Option<String> {
        match self {
            // RFC 6750 3.1: no error code when the request had no token.
            AuthError::MissingToken => Some("Bearer".to_owned()),
            AuthError::MalformedAuthorization
            | AuthError::InvalidToken
            | AuthError::InsufficientScope { .. } => Some(format!(
                "Bearer error=\"{}\", error_description=\"{}\"",
                self.oauth_error(),
                self.to_string().replace(['"', '\\'], "'")
            )),
            _ => None,
        }
    }
}
