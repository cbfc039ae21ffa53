//! The provider gateway (`satchel provider serve`): a FHIR R4 REST endpoint
//! at a provider's site, in front of the records patients shared with that
//! provider. Hospital and GP integration engines post FHIR to it and read
//! what patients share, authenticated with SMART Backend Services; every
//! write goes through the core's one write path (validation, the
//! wrong-patient check, this provider's write rights, de-duplication) and
//! reaches the relay through the record's outbox. See
//! docs/provider-gateway.md.
//!
//! - [`auth`]: SMART Backend Services: registered clients and their JWKS,
//!   the token endpoint (signed JWT assertions, `jti` replay refused),
//!   short-lived access tokens, scopes.

pub mod auth;
