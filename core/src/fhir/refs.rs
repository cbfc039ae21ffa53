//! Resolving references between entries of a record.
//!
//! Resources are stored unchanged, so a reference keeps the form its sender
//! wrote: `Type/id` (relative to the sender's base), an absolute
//! `https://base/Type/id`, or `urn:uuid:…` naming another entry of the same
//! Bundle by its `fullUrl`. Import stores, per entry, the sender (source
//! system) and the address the resource had there (source id `Type/id`, or
//! the entry's `fullUrl` when the resource has no id); together with each
//! resource's own type and id that is the mapping from reference to entry
//! that [`Resolver`] reads back. Contained references (`#id`) are never
//! resolved here: they stay inside their resource.

use std::collections::HashMap;

use serde_json::Value;

use crate::ids::EntryId;

/// The source id import stores for a resource: `Type/id` when the resource
/// has an id, else the Bundle entry's `fullUrl` (the address other entries
/// of that Bundle use for it), else none.
pub fn source_id_for(resource: &Value, full_url: Option<&str>) -> Option<String> {
    let rt = resource.get("resourceType").and_then(Value::as_str);
    let id = resource.get("id").and_then(Value::as_str);
    match (rt, id) {
        (Some(rt), Some(id)) => Some(format!("{rt}/{id}")),
        _ => full_url.map(str::to_string),
    }
}

/// What a resolver needs to know of one entry.
#[derive(Clone, Copy)]
pub struct Addressed<'a> {
    /// The entry.
    pub entry: EntryId,
    /// Its source system, if recorded.
    pub source_system: Option<&'a str>,
    /// Its source id, if recorded.
    pub source_id: Option<&'a str>,
    /// Its resource type.
    pub resource_type: &'a str,
    /// Its resource's `id`, if any.
    pub id: Option<&'a str>,
}

/// Reference-to-entry lookups over a set of entries.
#[derive(Default)]
pub struct Resolver {
    /// (source system, source id) -> entry.
    by_source: HashMap<(Option<String>, String), EntryId>,
    /// `Type/id` -> entries whose resource has that type and id.
    by_type_id: HashMap<String, Vec<EntryId>>,
    /// Resource id -> entries (for `urn:uuid:<id>` full URLs that reuse the id).
    by_id: HashMap<String, Vec<EntryId>>,
    /// Entry -> resource type.
    types: HashMap<EntryId, String>,
}

/// The `Type/id` a literal reference points at, if it has that form
/// (relative, or absolute with it at the end; `/_history/n` is dropped).
pub fn type_and_id(reference: &str) -> Option<(&str, &str)> {
    let path = match reference.find("/_history/") {
        Some(at) => &reference[..at],
        None => reference,
    };
    let mut parts = path.rsplitn(3, '/');
    let id = parts.next()?;
    let rt = parts.next()?;
    (super::is_known_resource_type(rt) && !id.is_empty()).then_some((rt, id))
}

impl Resolver {
    /// Index `entries`.
    pub fn new<'a>(entries: impl IntoIterator<Item = Addressed<'a>>) -> Self {
        let mut r = Resolver::default();
        for a in entries {
            if let Some(sid) = a.source_id {
                r.by_source
                    .entry((a.source_system.map(str::to_string), sid.to_string()))
                    .or_insert(a.entry);
            }
            if let Some(id) = a.id {
                r.by_type_id
                    .entry(format!("{}/{id}", a.resource_type))
                    .or_default()
                    .push(a.entry);
                r.by_id.entry(id.to_string()).or_default().push(a.entry);
            }
            r.types.insert(a.entry, a.resource_type.to_string());
        }
        r
    }

    /// The resource type of an indexed entry.
    pub fn type_of(&self, entry: EntryId) -> Option<&str> {
        self.types.get(&entry).map(String::as_str)
    }

    /// The entry `reference` (written in a resource from `source_system`)
    /// points at, if it is one of the indexed entries. Ambiguous matches
    /// (several entries from other senders with the same `Type/id`) resolve
    /// to nothing.
    pub fn resolve(&self, source_system: Option<&str>, reference: &str) -> Option<EntryId> {
        if reference.starts_with('#') || reference.is_empty() {
            return None;
        }
        let own = |sid: &str| {
            self.by_source
                .get(&(source_system.map(str::to_string), sid.to_string()))
                .copied()
        };
        let unique = |list: Option<&Vec<EntryId>>| match list.map(Vec::as_slice) {
            Some([one]) => Some(*one),
            _ => None,
        };
        if let Some(uuid) = reference
            .strip_prefix("urn:uuid:")
            .or_else(|| reference.strip_prefix("urn:oid:"))
        {
            return own(reference).or_else(|| unique(self.by_id.get(uuid)));
        }
        let (rt, id) = type_and_id(reference)?;
        let key = format!("{rt}/{id}");
        let absolute = reference.contains("://");
        let same_base = source_system.is_some_and(|s| {
            reference
                .strip_prefix(s.trim_end_matches('/'))
                .is_some_and(|rest| rest.starts_with('/'))
        });
        if !absolute || same_base {
            if let Some(hit) = own(&key) {
                return Some(hit);
            }
        }
        unique(self.by_type_id.get(&key))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn resolves_relative_absolute_and_uuid_references() {
        let a = EntryId::random();
        let b = EntryId::random();
        let c = EntryId::random();
        let r = Resolver::new([
            Addressed {
                entry: a,
                source_system: Some("https://h.example/fhir"),
                source_id: Some("Patient/p1"),
                resource_type: "Patient",
                id: Some("p1"),
            },
            Addressed {
                entry: b,
                source_system: Some("https://h.example/fhir"),
                source_id: Some("urn:uuid:0a1b"),
                resource_type: "Observation",
                id: None,
            },
            Addressed {
                entry: c,
                source_system: Some("https://other.example"),
                source_id: Some("Patient/p1"),
                resource_type: "Patient",
                id: Some("p1"),
            },
        ]);
        let h = Some("https://h.example/fhir");
        assert_eq!(r.resolve(h, "Patient/p1"), Some(a));
        assert_eq!(r.resolve(h, "https://h.example/fhir/Patient/p1"), Some(a));
        assert_eq!(
            r.resolve(h, "https://h.example/fhir/Patient/p1/_history/3"),
            Some(a)
        );
        assert_eq!(
            r.resolve(Some("https://other.example"), "Patient/p1"),
            Some(c)
        );
        // Two senders used Patient/p1: from a third, it is ambiguous.
        assert_eq!(r.resolve(None, "Patient/p1"), None);
        assert_eq!(r.resolve(h, "urn:uuid:0a1b"), Some(b));
        assert_eq!(r.resolve(None, "urn:uuid:0a1b"), None);
        assert_eq!(r.resolve(h, "#contained"), None);
        assert_eq!(r.resolve(h, "Practitioner/x"), None);
        assert_eq!(r.type_of(b), Some("Observation"));
    }

    #[test]
    fn source_ids() {
        let with_id = serde_json::json!({"resourceType": "Condition", "id": "c1"});
        let without = serde_json::json!({"resourceType": "Condition"});
        assert_eq!(
            source_id_for(&with_id, Some("urn:uuid:x")).as_deref(),
            Some("Condition/c1")
        );
        assert_eq!(
            source_id_for(&without, Some("urn:uuid:x")).as_deref(),
            Some("urn:uuid:x")
        );
        assert_eq!(source_id_for(&without, None), None);
    }
}
