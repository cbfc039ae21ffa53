//! FHIR R4 intake: the checks every incoming resource passes before it becomes
//! an entry, and the few fields the record indexes.
//!
//! It owns:
//! - [`parse_resource`]: bytes to a JSON object with a known R4 `resourceType`;
//! - [`summarize`]: the shape checks on the elements we index and the derived
//!   index ([`ResourceSummary`]: clinical date, codes, display strings);
//! - [`section_for`]: the fixed resource-type-to-section mapping
//!   (documented as a table in `docs/sections.md`);
//! - [`bundle_resources`]: unpacking a `Bundle` into its resources (a bundle
//!   is never an entry itself);
//! - [`model`]: a typed serde model of the resources we index or display,
//!   passing every other element through untouched;
//! - [`import`]: the streaming reader of imported files (one resource or a
//!   Bundle, entries handed on one at a time);
//! - [`json`]: strict JSON, refusing an object that names a key twice (every
//!   input path parses through it);
//! - [`refs`]: resolving references between entries (`Type/id`, absolute
//!   URLs, `urn:uuid:` full URLs);
//! - [`export`] and [`ips`]: the collection Bundle export and the
//!   International Patient Summary document (see `docs/fhir.md`);
//! - [`labels`]: privacy labels in `meta.security` (HL7 sensitivity codes).
//!
//! A resource is never rewritten: everything outside the indexed paths is
//! passed through untouched. Errors ([`FhirError`]) name resource types, field
//! paths and JSON positions only, never values, so they are safe to log.

mod date;
pub mod export;
pub mod import;
pub mod ips;
pub mod json;
pub mod labels;
pub mod model;
pub mod refs;
mod resource_types;
mod summary;

#[cfg(test)]
mod tests;

pub use date::ClinicalDate;
pub use resource_types::R4_RESOURCE_TYPES;
pub use summary::{
    bundle_resources, is_known_resource_type, parse_resource, section_for, summarize, Coding,
    ResourceSummary, VITAL_SIGNS_CATEGORY_CODE, VITAL_SIGNS_CATEGORY_SYSTEM,
};

/// Why a resource was refused. Carries resource type names, field paths and
/// JSON positions only: never a value from the resource.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FhirError {
    /// The bytes are not JSON (position from the parser only).
    #[error("not valid JSON: line {line} column {column}")]
    NotJson {
        /// 1-based line of the syntax error.
        line: usize,
        /// 1-based column of the syntax error.
        column: usize,
    },
    /// An object names the same key twice (at the given JSON path:
    /// element names and positions only). Different parsers keep different
    /// copies, so such input is ambiguous and refused.
    #[error("duplicate JSON key at {0}: each element may appear once in an object")]
    DuplicateKey(String),
    /// The JSON value is not an object.
    #[error("a FHIR resource must be a JSON object")]
    NotAnObject,
    /// The object has no string `resourceType`.
    #[error("the resource has no resourceType")]
    MissingResourceType,
    /// `resourceType` is not an R4 resource type. Holds the name only if it is
    /// plain ASCII letters (truncated to 64); otherwise it is empty and the
    /// message says "invalid resourceType".
    #[error("{}", unknown_type_message(.0))]
    UnknownResourceType(String),
    /// An indexed element has the wrong JSON type (or an unparsable date).
    #[error("{resource_type}.{path} has the wrong shape: expected {expected}")]
    WrongShape {
        /// The (known) resource type.
        resource_type: String,
        /// Field path, e.g. `code.coding[0].system`.
        path: String,
        /// What was expected, e.g. `string`.
        expected: &'static str,
    },
    /// The resource type is known but no section of the record holds it.
    #[error("resource type {0} has no section in the record; see docs/sections.md")]
    NoSection(String),
    /// A Bundle of a type that is not imported (holds the type only if it
    /// is a short lowercase code).
    #[error(
        "Bundle type {0:?} is not imported (collection, transaction, searchset and document are)"
    )]
    BundleType(String),
}

impl FhirError {
    /// An [`FhirError::UnknownResourceType`] for a raw `resourceType` value,
    /// keeping the name only if it is plain ASCII letters (max 64 kept).
    pub fn unknown_resource_type(raw: &str) -> Self {
        if !raw.is_empty() && raw.bytes().all(|b| b.is_ascii_alphabetic()) {
            FhirError::UnknownResourceType(raw.chars().take(64).collect())
        } else {
            FhirError::UnknownResourceType(String::new())
        }
    }

    pub(crate) fn shape(
        resource_type: &str,
        path: impl Into<String>,
        expected: &'static str,
    ) -> Self {
        FhirError::WrongShape {
            resource_type: resource_type.to_string(),
            path: path.into(),
            expected,
        }
    }
}

fn unknown_type_message(name: &str) -> String {
    if name.is_empty() {
        "invalid resourceType".to_string()
    } else {
        format!("unknown resourceType {name} (not an R4 resource type)")
    }
}
