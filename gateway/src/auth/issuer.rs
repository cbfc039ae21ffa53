//! [`TokenIssuer`]: the token endpoint's logic (client assertion in, access
//! token out) and bearer-token checks ([`TokenIssuer::authorize`] gives a
//! [`Grant`]). No I/O and no clock: the time comes in as `now_ms`.

use std::fmt;
use std::sync::{Mutex, MutexGuard};

use ring::rand::SystemRandom;
use serde::{Deserialize, Serialize};

use super::assertion::verify_assertion;
use super::error::AuthError;
use super::registry::ClientRegistry;
use super::replay::{Refused, SeenJtis};
use super::scopes::{Access, Scopes};
use super::tokens::{AccessTokens, IssueError, TOKEN_LIFETIME_MS};

/// The only grant type of SMART Backend Services.
pub const GRANT_TYPE: &str = "client_credentials";
/// The only client assertion type accepted.
pub const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// The form fields of `POST /auth/token`. Every field is optional here so a
/// missing one gets a clear OAuth error rather than a form rejection.
#[derive(Clone, Default, Deserialize)]
pub struct TokenRequest {
    /// Must be `client_credentials`.
    pub grant_type: Option<String>,
    /// The scopes asked for, space-separated `system/` scopes.
    pub scope: Option<String>,
    /// Must be [`ASSERTION_TYPE`].
    pub client_assertion_type: Option<String>,
    /// The signed JWT.
    pub client_assertion: Option<String>,
}

impl fmt::Debug for TokenRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenRequest")
            .field("grant_type", &self.grant_type)
            .field("scope", &self.scope)
            .field("client_assertion_type", &self.client_assertion_type)
            .field(
                "client_assertion",
                &self.client_assertion.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// The token endpoint's 200 answer.
#[derive(Clone, Serialize)]
pub struct TokenResponse {
    /// The bearer token (secret: never log it).
    pub access_token: String,
    /// Always `bearer`.
    pub token_type: &'static str,
    /// Seconds until it expires (300).
    pub expires_in: u64,
    /// What was granted, canonical form.
    pub scope: String,
}

impl fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenResponse")
            .field("access_token", &"<redacted>")
            .field("token_type", &self.token_type)
            .field("expires_in", &self.expires_in)
            .field("scope", &self.scope)
            .finish()
    }
}

/// What a valid access token grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The client the token was issued to.
    pub client_id: String,
    /// The scopes granted.
    pub scopes: Scopes,
}

impl Grant {
    /// `Ok` if the grant allows `access` on `resource_type`, else a 403
    /// `insufficient_scope` error.
    pub fn require(&self, resource_type: &str, access: Access) -> Result<(), AuthError> {
        if self.scopes.allows(resource_type, access) {
            Ok(())
        } else {
            Err(AuthError::InsufficientScope {
                resource_type: super::error::quote(resource_type),
                access,
            })
        }
    }
}

/// The mutable state: used `jti`s and live tokens.
#[derive(Default)]
struct State {
    seen: SeenJtis,
    tokens: AccessTokens,
}

/// Issues access tokens for signed client assertions and checks bearer
/// tokens. Shared between requests (`&self`; state behind a mutex).
pub struct TokenIssuer {
    registry: ClientRegistry,
    token_url: String,
    lifetime_ms: i64,
    rng: SystemRandom,
    state: Mutex<State>,
}

impl fmt::Debug for TokenIssuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenIssuer")
            .field("token_url", &self.token_url)
            .field("clients", &self.registry.clients().len())
            .finish_non_exhaustive()
    }
}

impl TokenIssuer {
    /// An issuer for these clients, at `token_url` (the `aud` assertions
    /// must carry, e.g. `https://gateway.example/auth/token`).
    /// Access tokens live `ms` (at least one second) instead of five
    /// minutes (tests of expiry; operators keep the default).
    pub fn with_token_lifetime_ms(mut self, ms: i64) -> Self {
        self.lifetime_ms = ms.max(1_000);
        self
    }

    pub fn new(registry: ClientRegistry, token_url: String) -> Self {
        Self {
            registry,
            token_url,
            lifetime_ms: TOKEN_LIFETIME_MS,
            rng: SystemRandom::new(),
            state: Mutex::new(State::default()),
        }
    }

    /// The token endpoint URL (the `aud` of assertions).
    pub fn token_url(&self) -> &str {
        &self.token_url
    }

    /// The registered clients.
    pub fn registry(&self) -> &ClientRegistry {
        &self.registry
    }

    /// Answers `POST /auth/token` for `form` at `now_ms`.
    pub fn token(&self, form: &TokenRequest, now_ms: i64) -> Result<TokenResponse, AuthError> {
        let grant_type = form
            .grant_type
            .as_deref()
            .ok_or(AuthError::MissingParameter("grant_type"))?;
        if grant_type != GRANT_TYPE {
            return Err(AuthError::UnsupportedGrantType);
        }
        let assertion_type = form
            .client_assertion_type
            .as_deref()
            .ok_or(AuthError::MissingParameter("client_assertion_type"))?;
        if assertion_type != ASSERTION_TYPE {
            return Err(AuthError::WrongAssertionType);
        }
        let assertion = form
            .client_assertion
            .as_deref()
            .ok_or(AuthError::MissingParameter("client_assertion"))?;
        let scope = form
            .scope
            .as_deref()
            .ok_or(AuthError::MissingParameter("scope"))?;
        let requested = Scopes::parse(scope)?;

        let verified = verify_assertion(&self.registry, &self.token_url, assertion, now_ms)?;
        let registered = self
            .registry
            .find(&verified.client_id)
            .map(|(client, _)| client.scopes.clone())
            .ok_or_else(|| AuthError::UnknownClient(verified.client_id.clone()))?;
        let granted = registered.intersect(&requested);

        let mut state = self.lock();
        // The jti is spent once the assertion verifies, even if the scope
        // check below fails: a signed assertion is good for one request.
        state
            .seen
            .take(&verified.client_id, &verified.jti, verified.exp_ms, now_ms)
            .map_err(|refused| match refused {
                Refused::Replayed => AuthError::ReplayedAssertion,
                Refused::Full => AuthError::Overloaded,
            })?;
        if granted.is_empty() {
            return Err(AuthError::NoScopeGranted {
                registered: registered.to_string(),
            });
        }
        let access_token = state
            .tokens
            .issue(
                &self.rng,
                &verified.client_id,
                granted.clone(),
                now_ms,
                self.lifetime_ms,
            )
            .map_err(|e| match e {
                IssueError::Random => AuthError::Random,
                IssueError::Full => AuthError::Overloaded,
            })?;
        Ok(TokenResponse {
            access_token,
            token_type: "bearer",
            expires_in: (self.lifetime_ms / 1000).unsigned_abs(),
            scope: granted.to_string(),
        })
    }

    /// Checks an `Authorization` header value (`Bearer <token>`) at
    /// `now_ms`: what the token grants, or a 401 `invalid_token` error.
    pub fn authorize(&self, authorization: Option<&str>, now_ms: i64) -> Result<Grant, AuthError> {
        let header = authorization.ok_or(AuthError::MissingToken)?;
        let (scheme, token) = header
            .trim()
            .split_once(' ')
            .ok_or(AuthError::MalformedAuthorization)?;
        let token = token.trim();
        if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() || token.contains(' ') {
            return Err(AuthError::MalformedAuthorization);
        }
        let record = self
            .lock()
            .tokens
            .lookup(token, now_ms)
            .ok_or(AuthError::InvalidToken)?;
        Ok(Grant {
            client_id: record.client_id,
            scopes: record.scopes,
        })
    }

    /// The state; a poisoned lock is taken over (the state is only maps
    /// whose every update is a single insert or retain).
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
