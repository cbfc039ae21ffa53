//! The FHIR side of the gateway, I/O-free: [`outcome`] (every error as an
//! `OperationOutcome`), [`capability`] (`GET /metadata`), [`write`]
//! (transaction and batch Bundles, routing each entry to its patient's
//! record, the response Bundle), [`read`] (the gateway's ids, searches,
//! how an entry is shown).

pub mod capability;
pub mod outcome;
pub mod read;
pub mod write;
