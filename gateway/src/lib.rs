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
//! - [`fhir`]: the FHIR side, I/O-free: `OperationOutcome`, the
//!   CapabilityStatement, reading and routing writes, ids and searches.
//! - [`records`]: the records shared with this provider, opened on demand,
//!   and the sealed index of their patients' identifiers.
//! - [`service`]: what each interaction does with the records.
//! - [`upload`]: the background upload worker and `GET /$status`.
//! - [`http`]: the routes; [`server`]: running it all.

pub mod auth;
pub mod fhir;
pub mod http;
pub mod records;
pub mod server;
pub mod service;
pub mod upload;

pub use server::{clients_file, Gateway, GatewayConfig};
