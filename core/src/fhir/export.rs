//! Export as a FHIR `collection` Bundle: every visible entry's current
//! resource exactly as stored (so an import followed by an export gives
//! back equal JSON). Each entry's `fullUrl` is chosen so that the references
//! its sender wrote still resolve inside the Bundle where they can:
//!
//! - the entry's Bundle `fullUrl` at import (`urn:uuid:…`), for resources
//!   that had no id there;
//! - `<source system>/<Type>/<id>` when the source system is an http(s)
//!   base URL (relative references `Type/id` resolve against it, as FHIR
//!   defines for RESTful full URLs);
//! - otherwise `urn:uuid:<entry id>`.
//!
//! A full URL already used by an earlier entry falls back to the last form,
//! so full URLs are unique. I/O-free: time and ids come from the caller.

use std::collections::HashSet;

use serde_json::{json, Map, Value};

use crate::ids::EntryId;
use crate::record::Entry;

/// The code system of the tag that marks an export known to be incomplete.
pub const COMPLETENESS_SYSTEM: &str = "https://satchel.health/fhir/CodeSystem/record-completeness";

/// Mark `bundle` (any Bundle this device exports) as known to be
/// incomplete in `sections` (no-op when empty): a `meta.tag` with code
/// `incomplete` naming them, so whoever reads the export does not take a
/// partial list for a whole one.
pub fn mark_incomplete(bundle: &mut Value, sections: &[String]) {
    if sections.is_empty() {
        return;
    }
    let tag = json!({
        "system": COMPLETENESS_SYSTEM,
        "code": "incomplete",
        "display": format!(
            "Known to be incomplete on the exporting device: {}",
            sections.join(", ")
        ),
    });
    if let Some(obj) = bundle.as_object_mut() {
        let meta = obj.entry("meta").or_insert_with(|| json!({}));
        if let Some(meta) = meta.as_object_mut() {
            let tags = meta.entry("tag").or_insert_with(|| json!([]));
            if let Some(tags) = tags.as_array_mut() {
                tags.push(tag);
            }
        }
    }
}

/// `urn:uuid:` form of an entry id (its 16 bytes as a UUID string).
pub fn entry_urn(id: EntryId) -> String {
    uuid_urn(id.as_bytes())
}

/// `urn:uuid:` form of 16 bytes.
pub fn uuid_urn(bytes: &[u8; 16]) -> String {
    let h = hex::encode(bytes);
    format!(
        "urn:uuid:{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

fn is_http_base(system: &str) -> bool {
    system.starts_with("https://") || system.starts_with("http://")
}

/// The `fullUrl` for an entry in a collection export (see the module docs).
pub fn full_url_for(entry: &Entry, used: &mut HashSet<String>) -> String {
    let resource = &entry.current.resource;
    let id = resource.get("id").and_then(Value::as_str);
    let candidate = match (&entry.source_id, &entry.source_system, id) {
        (Some(sid), _, _) if sid.starts_with("urn:uuid:") || sid.starts_with("urn:oid:") => {
            Some(sid.clone())
        }
        (_, Some(system), Some(id)) if is_http_base(system) => Some(format!(
            "{}/{}/{id}",
            system.trim_end_matches('/'),
            entry.resource_type
        )),
        _ => None,
    };
    let url = match candidate {
        Some(url) if !used.contains(&url) => url,
        _ => entry_urn(entry.id),
    };
    used.insert(url.clone());
    url
}

/// RFC 3339 time of `now` (UTC, seconds).
pub(crate) fn instant(now: time::OffsetDateTime) -> String {
    let t = now.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// A `collection` Bundle of `entries` (in the order given), resources
/// unchanged. `bundle_id` names the Bundle (`identifier`, a `urn:uuid:`).
pub fn collection_bundle(
    entries: Vec<Entry>,
    bundle_id: [u8; 16],
    now: time::OffsetDateTime,
) -> Value {
    let mut used = HashSet::new();
    let items: Vec<Value> = entries
        .into_iter()
        .map(|e| {
            let url = full_url_for(&e, &mut used);
            bundle_item(url, e.current.resource)
        })
        .collect();
    let mut bundle = json!({
        "resourceType": "Bundle",
        "identifier": {"system": "urn:ietf:rfc:3986", "value": uuid_urn(&bundle_id)},
        "type": "collection",
        "timestamp": instant(now),
    });
    // Moved in, not through `json!` (which would copy every resource).
    if let Value::Object(obj) = &mut bundle {
        obj.insert("entry".into(), Value::Array(items));
    }
    bundle
}

/// A Bundle entry `{fullUrl, resource}`, the resource moved in.
pub(crate) fn bundle_item(full_url: String, resource: Value) -> Value {
    let mut item = Map::new();
    item.insert("fullUrl".into(), Value::String(full_url));
    item.insert("resource".into(), resource);
    Value::Object(item)
}
