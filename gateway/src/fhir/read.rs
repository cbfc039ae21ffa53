//! Reads, I/O-free: the gateway's resource ids, search parameters, and how
//! an entry is shown to a provider's system.
//!
//! A resource is named by its record and entry: `id` = record id hex +
//! entry id hex (64 characters, the longest FHIR id); a patient by its
//! record id. Resources are shown as stored, with that `id`, `meta.versionId`
//! (the entry's version count) and their patient reference pointed at
//! `Patient/<record id>`; nothing else is rewritten.

use satchel_core::fhir::ClinicalDate;
use satchel_core::ids::{EntryId, RecordId};
use satchel_core::record::{Entry, Query};
use serde_json::{json, Value};

use super::outcome::Outcome;

/// The gateway id of an entry of a record.
pub fn gateway_id(record: &RecordId, entry: &EntryId) -> String {
    format!("{}{}", record.to_hex(), entry.to_hex())
}

/// The record and entry a gateway id names.
pub fn parse_gateway_id(id: &str) -> Option<(RecordId, EntryId)> {
    if id.len() != 64 {
        return None;
    }
    let (r, e) = id.split_at(32);
    Some((r.parse().ok()?, e.parse().ok()?))
}

/// A patient named in a search: `Patient/<record id>` or the bare id.
pub fn parse_patient(value: &str) -> Option<RecordId> {
    value.strip_prefix("Patient/").unwrap_or(value).parse().ok()
}

/// The entry as the provider's system sees it.
pub fn present(record: &RecordId, entry: &Entry) -> Value {
    let mut resource = entry.current.resource.clone();
    if let Value::Object(obj) = &mut resource {
        let id = if entry.resource_type == "Patient" {
            record.to_hex()
        } else {
            gateway_id(record, &entry.id)
        };
        obj.insert("id".into(), Value::String(id));
        let meta = obj
            .entry("meta")
            .or_insert_with(|| Value::Object(Default::default()));
        if let Value::Object(meta) = meta {
            meta.insert(
                "versionId".into(),
                Value::String(entry.version_count.to_string()),
            );
        }
        for key in ["subject", "patient"] {
            if let Some(Value::Object(r)) = obj.get_mut(key) {
                let points_at_patient = r
                    .get("reference")
                    .and_then(Value::as_str)
                    .is_none_or(|s| s.starts_with("Patient") || s.starts_with("urn:"));
                if points_at_patient {
                    r.insert(
                        "reference".into(),
                        Value::String(format!("Patient/{}", record.to_hex())),
                    );
                }
            }
        }
    }
    resource
}

/// A search of one resource type in one patient's record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Search {
    pub resource_type: String,
    pub patient: RecordId,
    pub query: QueryParts,
    /// `system|code` or `code` of `category`.
    pub category: Option<(Option<String>, String)>,
    /// `_count`.
    pub count: usize,
    /// `_offset` (the paging cursor of the `next` link).
    pub offset: usize,
}

/// The parts of a [`Query`] a search fills in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueryParts {
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
    pub code: Option<(Option<String>, String)>,
}

impl QueryParts {
    pub fn query(&self) -> Query {
        Query {
            from_ms: self.from_ms,
            to_ms: self.to_ms,
            code: self.code.clone(),
            ..Query::default()
        }
    }
}

/// Default and largest page size.
pub const DEFAULT_COUNT: usize = 50;
pub const MAX_COUNT: usize = 500;

fn token(value: &str) -> (Option<String>, String) {
    match value.split_once('|') {
        Some((s, c)) if !s.is_empty() => (Some(s.to_owned()), c.to_owned()),
        Some((_, c)) => (None, c.to_owned()),
        None => (None, value.to_owned()),
    }
}

/// The instant after the period `text` names (`2024` -> 2025-01-01).
fn period_end(text: &str, start: i64) -> Option<i64> {
    let next = match text.len() {
        4 => format!("{}", text.parse::<u32>().ok()? + 1),
        7 => {
            let (y, m) = text.split_once('-')?;
            let (y, m): (u32, u32) = (y.parse().ok()?, m.parse().ok()?);
            if m == 12 {
                format!("{}-01", y + 1)
            } else {
                format!("{y}-{:02}", m + 1)
            }
        }
        10 => return Some(start + 86_400_000),
        _ => return Some(start + 1),
    };
    ClinicalDate::parse(&next).map(|d| d.start_ms)
}

fn date_bound(value: &str, parts: &mut QueryParts) -> Result<(), Outcome> {
    let (prefix, text) = match value.get(..2) {
        Some(p @ ("eq" | "ge" | "gt" | "le" | "lt")) => (p, &value[2..]),
        _ => ("eq", value),
    };
    let bad = || Outcome::invalid("date must be [eq|ge|gt|le|lt]YYYY[-MM[-DD[Thh:mm:ss+zz:zz]]]");
    let start = ClinicalDate::parse(text).ok_or_else(bad)?.start_ms;
    let end = period_end(text, start).ok_or_else(bad)?;
    let (from, to) = match prefix {
        "ge" => (Some(start), None),
        "gt" => (Some(end), None),
        "le" => (None, Some(end - 1)),
        "lt" => (None, Some(start - 1)),
        _ => (Some(start), Some(end - 1)),
    };
    if let Some(f) = from {
        parts.from_ms = Some(parts.from_ms.map_or(f, |x| x.max(f)));
    }
    if let Some(t) = to {
        parts.to_ms = Some(parts.to_ms.map_or(t, |x| x.min(t)));
    }
    Ok(())
}

/// Read the search parameters of `GET /{type}?...`. Unknown parameters are
/// refused (a search silently widened would show a clinician too much).
pub fn parse_search(resource_type: &str, params: &[(String, String)]) -> Result<Search, Outcome> {
    let mut patient = None;
    let mut parts = QueryParts::default();
    let mut category = None;
    let mut count = DEFAULT_COUNT;
    let mut offset = 0;
    for (k, v) in params {
        match k.as_str() {
            "patient" | "subject" => {
                patient = Some(parse_patient(v).ok_or_else(|| {
                    Outcome::invalid("patient must be Patient/<id> with an id this gateway gave (GET /Patient?identifier=system|value finds it)")
                })?)
            }
            "date" => date_bound(v, &mut parts)?,
            "code" => parts.code = Some(token(v)),
            "category" => category = Some(token(v)),
            "_count" => {
                count = v
                    .parse::<usize>()
                    .map_err(|_| Outcome::invalid("_count must be a number"))?
                    .clamp(1, MAX_COUNT)
            }
            "_offset" => {
                offset = v
                    .parse()
                    .map_err(|_| Outcome::invalid("_offset must be a number"))?
            }
            "_format" => {}
            other => {
                return Err(Outcome::invalid(format!(
                    "search parameter {other} is not supported (patient, date, code, category, _count)"
                )))
            }
        }
    }
    let patient = patient.ok_or_else(|| {
        Outcome::invalid(format!(
            "a {resource_type} search needs patient=Patient/<id> (one record at a time)"
        ))
    })?;
    Ok(Search {
        resource_type: resource_type.to_owned(),
        patient,
        query: parts,
        category,
        count,
        offset,
    })
}

impl Search {
    /// Whether an entry the query found also matches the type and category.
    pub fn matches(&self, entry: &Entry) -> bool {
        if entry.resource_type != self.resource_type {
            return false;
        }
        let Some((system, code)) = &self.category else {
            return true;
        };
        let categories = match entry.current.resource.get("category") {
            Some(Value::Array(list)) => list.clone(),
            Some(one) => vec![one.clone()],
            None => Vec::new(),
        };
        categories.iter().any(|c| {
            c.get("coding")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .any(|coding| {
                    coding.get("code").and_then(Value::as_str) == Some(code)
                        && system
                            .as_deref()
                            .is_none_or(|s| coding.get("system").and_then(Value::as_str) == Some(s))
                })
        })
    }
}

/// A `searchset` Bundle: `total` matches, this page's resources, and a
/// `next` link when there are more. `self_url` is the request URL without
/// `_offset`.
pub fn searchset(
    self_url: &str,
    total: usize,
    page: Vec<Value>,
    offset: usize,
    count: usize,
) -> Value {
    let sep = if self_url.contains('?') { '&' } else { '?' };
    let mut links =
        vec![json!({"relation": "self", "url": format!("{self_url}{sep}_offset={offset}")})];
    if offset + page.len() < total {
        links.push(json!({"relation": "next", "url": format!("{self_url}{sep}_offset={}", offset + count)}));
    }
    let entries: Vec<Value> = page
        .into_iter()
        .map(|r| json!({"resource": r, "search": {"mode": "match"}}))
        .collect();
    json!({
        "resourceType": "Bundle",
        "type": "searchset",
        "total": total,
        "link": links,
        "entry": entries,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn gateway_ids_name_record_and_entry() {
        let (r, e) = (RecordId::random(), EntryId::random());
        let id = gateway_id(&r, &e);
        assert_eq!(id.len(), 64);
        assert_eq!(parse_gateway_id(&id), Some((r, e)));
        assert_eq!(parse_gateway_id("abc"), None);
    }

    #[test]
    fn search_parameters_are_read_strictly() {
        let r = RecordId::random();
        let s = parse_search(
            "Observation",
            &params(&[
                ("patient", &format!("Patient/{r}")),
                ("date", "ge2024-01"),
                ("date", "lt2025"),
                ("code", "http://loinc.org|2339-0"),
                ("category", "laboratory"),
                ("_count", "10"),
            ]),
        )
        .unwrap();
        assert_eq!(s.patient, r);
        assert_eq!(s.count, 10);
        let from = ClinicalDate::parse("2024-01").unwrap().start_ms;
        let to = ClinicalDate::parse("2025").unwrap().start_ms - 1;
        assert_eq!((s.query.from_ms, s.query.to_ms), (Some(from), Some(to)));
        assert_eq!(
            s.query.code,
            Some((Some("http://loinc.org".into()), "2339-0".into()))
        );
        assert_eq!(s.category, Some((None, "laboratory".into())));
        // eq of a day is the whole day.
        let s = parse_search(
            "Observation",
            &params(&[("patient", &r.to_hex()), ("date", "2024-05-31")]),
        )
        .unwrap();
        let d = ClinicalDate::parse("2024-05-31").unwrap().start_ms;
        assert_eq!(
            (s.query.from_ms, s.query.to_ms),
            (Some(d), Some(d + 86_400_000 - 1))
        );
        for bad in [
            params(&[("patient", &r.to_hex()), ("name", "x")]),
            params(&[("date", "ge2024")]),
            params(&[("patient", "Patient/12")]),
            params(&[("patient", &r.to_hex()), ("date", "ge2024-13")]),
        ] {
            assert_eq!(
                parse_search("Observation", &bad).unwrap_err().status,
                400,
                "{bad:?}"
            );
        }
    }

    #[test]
    fn searchset_pages_with_a_next_link() {
        let b = searchset(
            "https://gw/Observation?patient=x",
            3,
            vec![json!({}), json!({})],
            0,
            2,
        );
        assert_eq!(b["total"], 3);
        assert_eq!(b["link"][1]["relation"], "next");
        assert!(b["link"][1]["url"].as_str().unwrap().ends_with("_offset=2"));
        let last = searchset("https://gw/Observation?patient=x", 3, vec![json!({})], 2, 2);
        assert_eq!(last["link"].as_array().unwrap().len(), 1);
    }
}
