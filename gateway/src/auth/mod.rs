//! SMART Backend Services for the gateway (HL7 SMART App Launch 2.x):
//! registered backend clients with their public JWKS, the token endpoint
//! (client credentials grant, signed JWT assertion, `jti` replay refused),
//! short-lived opaque access tokens, and `system/` scopes.
//!
//! Everything but `http.rs` is I/O-free and clock-free (times come in as
//! `now_ms`); the registry file is read and written only by
//! [`ClientRegistry::load`] and [`ClientRegistry::save`].
//!
//! - `error.rs`: [`AuthError`], its HTTP status and OAuth error code.
//! - `scopes.rs`: [`Scopes`] and [`Access`] (SMART v1 and v2 syntax).
//! - `jwks.rs`: checking a client's JWK Set (RSA >= 2048 / EC P-384, kid,
//!   public only).
//! - `registry.rs`: [`ClientRegistry`], [`RegisteredClient`], the JSON file.
//! - `assertion.rs`: checking a client assertion's signature and claims.
//! - `replay.rs`: used `jti`s, kept until their `exp`.
//! - `tokens.rs`: live access tokens, kept as SHA-256 hashes.
//! - `issuer.rs`: [`TokenIssuer`], [`TokenRequest`], [`TokenResponse`],
//!   [`Grant`].
//! - `http.rs`: [`routes`] (`/.well-known/smart-configuration`,
//!   `/auth/token`), [`error_response`], [`now_ms`].

mod assertion;
mod error;
mod http;
mod issuer;
mod jwks;
mod registry;
mod replay;
mod scopes;
mod tokens;

#[cfg(test)]
mod test_support;
#[cfg(test)]
mod tests;

pub use error::AuthError;
pub use http::{error_response, now_ms, routes, SMART_CONFIGURATION_PATH, TOKEN_PATH};
pub use issuer::{Grant, TokenIssuer, TokenRequest, TokenResponse, ASSERTION_TYPE, GRANT_TYPE};
pub use registry::{ClientRegistry, RegisteredClient};
pub use scopes::{Access, Scopes};
