//! Writes, I/O-free: reading a `transaction` or `batch` Bundle (or one
//! resource) into [`WriteEntry`]s, routing each to the record of the
//! patient it is about ([`route`]), and the `transaction-response` /
//! `batch-response` Bundle.
//!
//! Routing follows the resource's patient reference (`subject` or
//! `patient`): to a Patient of the same Bundle (by `fullUrl` or
//! `Patient/id`) and that Patient's identifiers, a conditional reference
//! `Patient?identifier=system|value`, a logical reference by identifier,
//! or `Patient/<record id>` as this gateway names patients. A resource
//! with no patient of its own (a Medication, a Practitioner) goes with the
//! entries that reference it. The record's own wrong-patient check (name,
//! birth date) then runs on every Patient routed to it, in the core.

use std::collections::{BTreeSet, HashMap};

use satchel_core::ids::RecordId;
use serde_json::{json, Value};

use super::outcome::Outcome;
use crate::records::{patient_keys, PatientKey};

/// How a Bundle's entries are committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BundleKind {
    /// All or nothing per record.
    Transaction,
    /// Each entry on its own.
    Batch,
}

impl BundleKind {
    pub fn response_type(self) -> &'static str {
        match self {
            BundleKind::Transaction => "transaction-response",
            BundleKind::Batch => "batch-response",
        }
    }
}

/// One resource to write.
#[derive(Debug, Clone)]
pub struct WriteEntry {
    /// Position in the request.
    pub index: usize,
    pub full_url: Option<String>,
    pub resource: Value,
}

impl WriteEntry {
    pub fn resource_type(&self) -> &str {
        self.resource
            .get("resourceType")
            .and_then(Value::as_str)
            .unwrap_or_default()
    }

    fn id(&self) -> Option<&str> {
        self.resource.get("id").and_then(Value::as_str)
    }

    /// The names other resources may use for it: its `fullUrl` and
    /// `Type/id`.
    fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.full_url.iter().cloned().collect();
        if let Some(id) = self.id() {
            names.push(format!("{}/{id}", self.resource_type()));
        }
        names
    }
}

/// Read a `transaction` or `batch` Bundle. Each entry needs a resource and
/// a `request` with method POST or PUT whose URL names the resource's
/// type (PUT: `Type/id`, the resource's id).
pub fn parse_bundle(body: Value) -> Result<(BundleKind, Vec<WriteEntry>), Outcome> {
    if body.get("resourceType").and_then(Value::as_str) != Some("Bundle") {
        return Err(Outcome::invalid(
            "POST / takes a Bundle of type transaction or batch; post single resources to /{type}",
        ));
    }
    let kind = match body.get("type").and_then(Value::as_str) {
        Some("transaction") => BundleKind::Transaction,
        Some("batch") => BundleKind::Batch,
        _ => {
            return Err(Outcome::invalid(
                "the Bundle's type must be transaction or batch",
            ))
        }
    };
    let Some(items) = body.get("entry").and_then(Value::as_array) else {
        return Ok((kind, Vec::new()));
    };
    let mut entries = Vec::with_capacity(items.len());
    let mut seen = BTreeSet::new();
    for (index, item) in items.iter().enumerate() {
        let resource = item
            .get("resource")
            .filter(|r| r.is_object())
            .cloned()
            .ok_or_else(|| Outcome::invalid(format!("entry {index} has no resource")))?;
        let entry = WriteEntry {
            index,
            full_url: item
                .get("fullUrl")
                .and_then(Value::as_str)
                .map(str::to_owned),
            resource,
        };
        let method = item
            .pointer("/request/method")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let url = item
            .pointer("/request/url")
            .and_then(Value::as_str)
            .unwrap_or_default();
        check_request(&entry, method, url)
            .map_err(|m| Outcome::invalid(format!("entry {index}: {m}")))?;
        if kind == BundleKind::Transaction {
            for name in entry.names() {
                if !seen.insert(name) {
                    return Err(Outcome::invalid(format!(
                        "entry {index} repeats a resource of an earlier entry (a transaction names each resource once)"
                    )));
                }
            }
        }
        entries.push(entry);
    }
    Ok((kind, entries))
}

/// One resource posted or put on its own: `POST /Type` or `PUT /Type/id`.
pub fn single(
    resource: Value,
    path_type: &str,
    path_id: Option<&str>,
) -> Result<WriteEntry, Outcome> {
    let entry = WriteEntry {
        index: 0,
        full_url: None,
        resource,
    };
    let (method, url) = match path_id {
        Some(id) => ("PUT", format!("{path_type}/{id}")),
        None => ("POST", path_type.to_owned()),
    };
    check_request(&entry, method, &url).map_err(Outcome::invalid)?;
    Ok(entry)
}

fn check_request(entry: &WriteEntry, method: &str, url: &str) -> Result<(), String> {
    let rt = entry.resource_type();
    if rt.is_empty() {
        return Err("the resource has no resourceType".into());
    }
    let path = url.split('?').next().unwrap_or_default();
    match method {
        "POST" if path == rt => Ok(()),
        "PUT" => {
            let want = format!("{rt}/{}", entry.id().unwrap_or_default());
            if path == want && entry.id().is_some() {
                Ok(())
            } else {
                Err(format!(
                    "PUT must name the resource as {rt}/<its id> and the resource must carry that id"
                ))
            }
        }
        "POST" => Err(format!("the request URL must be {rt} for a {rt}")),
        "" => Err("request.method is missing (POST or PUT)".into()),
        _ => Err("only POST and PUT are supported in a Bundle (no DELETE, PATCH or GET)".into()),
    }
}

/// Where an entry goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Record(RecordId),
    Refused(Outcome),
}

/// The patient reference of a resource: `subject` or `patient`.
fn patient_reference(resource: &Value) -> Option<&Value> {
    ["subject", "patient", "beneficiary"]
        .iter()
        .find_map(|k| resource.get(*k))
}

/// Every `reference` string anywhere in `v`.
fn references(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (k, x) in map {
                if k == "reference" {
                    if let Some(s) = x.as_str() {
                        out.push(s.to_owned());
                    }
                } else {
                    references(x, out);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|x| references(x, out)),
        _ => {}
    }
}

fn key_from_token(token: &str) -> Option<PatientKey> {
    let (system, value) = token.split_once('|')?;
    (!system.is_empty() && !value.is_empty()).then(|| (system.to_owned(), value.to_owned()))
}

fn one_record(found: BTreeSet<RecordId>, what: &str) -> Route {
    let mut it = found.into_iter();
    match (it.next(), it.next()) {
        (Some(rid), None) => Route::Record(rid),
        (None, _) => Route::Refused(Outcome::unprocessable(
            "not-found",
            format!("no record shared with this provider matches {what}; nothing was written for it"),
        )),
        (Some(_), Some(_)) => Route::Refused(Outcome::unprocessable(
            "multiple-matches",
            format!("{what} matches more than one record shared with this provider; nothing was written for it"),
        )),
    }
}

/// Route every entry (see the module doc). `lookup` gives the records
/// whose Patient carries an identifier; `shared` says whether a record id
/// is shared with this provider.
pub fn route(
    entries: &[WriteEntry],
    lookup: &dyn Fn(&PatientKey) -> Vec<RecordId>,
    shared: &dyn Fn(&RecordId) -> bool,
) -> Vec<Route> {
    let by_identifiers = |keys: &[PatientKey], what: &str| -> Route {
        if keys.is_empty() {
            return Route::Refused(Outcome::unprocessable(
                "required",
                format!("{what} has no identifier (system and value) to match a record by; nothing was written for it"),
            ));
        }
        one_record(keys.iter().flat_map(lookup).collect(), what)
    };
    // Patients first.
    let mut routes: Vec<Option<Route>> = vec![None; entries.len()];
    let mut patient_by_name: HashMap<String, usize> = HashMap::new();
    for (i, e) in entries.iter().enumerate() {
        if e.resource_type() == "Patient" {
            routes[i] = Some(by_identifiers(
                &patient_keys(&e.resource),
                &format!("the Patient of entry {}", e.index),
            ));
            for name in e.names() {
                patient_by_name.insert(name, i);
            }
        }
    }
    // Resources with a patient reference.
    for (i, e) in entries.iter().enumerate() {
        if routes[i].is_some() {
            continue;
        }
        let Some(reference) = patient_reference(&e.resource) else {
            continue;
        };
        let what = format!("the patient of entry {}", e.index);
        let route = if let Some(r) = reference.get("reference").and_then(Value::as_str) {
            if let Some(&p) = patient_by_name.get(r) {
                routes[p].clone().unwrap_or_else(|| {
                    Route::Refused(Outcome::internal("a Patient entry was not routed"))
                })
            } else if let Some(token) = r.strip_prefix("Patient?identifier=") {
                match key_from_token(token) {
                    Some(key) => by_identifiers(&[key], &what),
                    None => Route::Refused(Outcome::invalid(format!(
                        "entry {}: a conditional reference must be Patient?identifier=system|value",
                        e.index
                    ))),
                }
            } else if let Some(rid) = r
                .strip_prefix("Patient/")
                .and_then(|id| id.parse::<RecordId>().ok())
                .filter(|rid| shared(rid))
            {
                Route::Record(rid)
            } else {
                Route::Refused(Outcome::unprocessable(
                    "not-found",
                    format!("entry {}: its patient reference names no Patient of this Bundle and no patient of this gateway; nothing was written for it", e.index),
                ))
            }
        } else if let Some(ident) = reference.get("identifier") {
            let key = ident
                .get("system")
                .and_then(Value::as_str)
                .zip(ident.get("value").and_then(Value::as_str))
                .map(|(s, v)| (s.to_owned(), v.to_owned()));
            by_identifiers(&key.into_iter().collect::<Vec<_>>(), &what)
        } else {
            Route::Refused(Outcome::invalid(format!(
                "entry {}: its patient reference has neither a reference nor an identifier",
                e.index
            )))
        };
        routes[i] = Some(route);
    }
    // Resources without a patient: with the entries that reference them.
    let mut referenced_from: HashMap<String, BTreeSet<RecordId>> = HashMap::new();
    for (i, e) in entries.iter().enumerate() {
        if let Some(Route::Record(rid)) = &routes[i] {
            let mut refs = Vec::new();
            references(&e.resource, &mut refs);
            for r in refs {
                referenced_from.entry(r).or_default().insert(*rid);
            }
        }
    }
    entries
        .iter()
        .zip(routes)
        .map(|(e, route)| {
            route.unwrap_or_else(|| {
                let found: BTreeSet<RecordId> = e
                    .names()
                    .iter()
                    .filter_map(|n| referenced_from.get(n))
                    .flatten()
                    .copied()
                    .collect();
                if found.is_empty() {
                    Route::Refused(Outcome::unprocessable(
                        "required",
                        format!("entry {}: a {} names no patient (subject or patient) and no entry about a patient references it; nothing was written for it", e.index, e.resource_type()),
                    ))
                } else {
                    one_record(found, &format!("the entries referencing entry {}", e.index))
                }
            })
        })
        .collect()
}

/// What happened to one entry.
#[derive(Debug, Clone)]
pub enum EntryResult {
    /// Written: 201 (new) or 200 (a new version, or identical).
    Written {
        created: bool,
        location: String,
    },
    /// A Patient matched to its record (not written: the patient's own
    /// demographics stay theirs).
    Matched {
        location: String,
    },
    /// Accepted but not kept (no section of a record holds its type).
    NotKept,
    Failed(Outcome),
}

/// The `transaction-response` / `batch-response` Bundle.
pub fn response_bundle(kind: BundleKind, results: &[EntryResult]) -> Value {
    let entries: Vec<Value> = results
        .iter()
        .map(|r| match r {
            EntryResult::Written { created, location } => json!({"response": {
                "status": super::outcome::status_line(if *created { 201 } else { 200 }),
                "location": location,
            }}),
            EntryResult::Matched { location } => json!({"response": {
                "status": "200 OK",
                "location": location,
            }}),
            EntryResult::NotKept => json!({"response": {
                "status": "200 OK",
                "outcome": {
                    "resourceType": "OperationOutcome",
                    "issue": [{"severity": "warning", "code": "not-supported",
                               "diagnostics": "accepted for references only: no section of a patient record keeps this resource type"}]
                }
            }}),
            EntryResult::Failed(o) => json!({"response": {
                "status": o.status_line(),
                "outcome": o.resource(),
            }}),
        })
        .collect();
    json!({"resourceType": "Bundle", "type": kind.response_type(), "entry": entries})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rid(n: u8) -> RecordId {
        RecordId::from_slice(&[n; 16]).unwrap()
    }

    fn bundle(kind: &str, entries: Vec<Value>) -> Value {
        json!({"resourceType": "Bundle", "type": kind, "entry": entries})
    }

    fn post(full_url: &str, resource: Value) -> Value {
        let rt = resource["resourceType"].as_str().unwrap().to_owned();
        json!({"fullUrl": full_url, "resource": resource, "request": {"method": "POST", "url": rt}})
    }

    fn patient(mrn: &str) -> Value {
        json!({"resourceType": "Patient", "identifier": [{"system": "urn:mrn", "value": mrn}]})
    }

    fn obs(subject: Value) -> Value {
        json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "subject": subject})
    }

    fn lookup(k: &PatientKey) -> Vec<RecordId> {
        match k.1.as_str() {
            "A" => vec![rid(1)],
            "B" => vec![rid(2)],
            "TWICE" => vec![rid(1), rid(2)],
            _ => vec![],
        }
    }

    fn shared(r: &RecordId) -> bool {
        *r == rid(1) || *r == rid(2)
    }

    #[test]
    fn entries_follow_their_patient() {
        let (kind, entries) = parse_bundle(bundle(
            "transaction",
            vec![
                post("urn:uuid:p1", patient("A")),
                post("urn:uuid:o1", obs(json!({"reference": "urn:uuid:p1"}))),
                post(
                    "urn:uuid:o2",
                    obs(json!({"reference": "Patient?identifier=urn:mrn|B"})),
                ),
                post(
                    "urn:uuid:o3",
                    obs(json!({"identifier": {"system": "urn:mrn", "value": "A"}})),
                ),
                post(
                    "urn:uuid:o4",
                    obs(json!({"reference": format!("Patient/{}", rid(2))})),
                ),
            ],
        ))
        .unwrap();
        assert_eq!(kind, BundleKind::Transaction);
        let routes = route(&entries, &lookup, &shared);
        assert_eq!(
            routes,
            vec![
                Route::Record(rid(1)),
                Route::Record(rid(1)),
                Route::Record(rid(2)),
                Route::Record(rid(1)),
                Route::Record(rid(2)),
            ]
        );
    }

    #[test]
    fn unknown_ambiguous_and_unreferenced_patients_are_refused() {
        let (_, entries) = parse_bundle(bundle(
            "batch",
            vec![
                post("urn:uuid:p9", patient("NOBODY")),
                post("urn:uuid:o1", obs(json!({"reference": "urn:uuid:p9"}))),
                post(
                    "urn:uuid:o2",
                    obs(json!({"reference": "Patient?identifier=urn:mrn|TWICE"})),
                ),
                post("urn:uuid:o3", obs(json!({"reference": "Patient/123"}))),
                post("urn:uuid:m", json!({"resourceType": "Medication"})),
            ],
        ))
        .unwrap();
        let routes = route(&entries, &lookup, &shared);
        let codes: Vec<&str> = routes
            .iter()
            .map(|r| match r {
                Route::Refused(o) => o.code,
                Route::Record(_) => "routed",
            })
            .collect();
        assert_eq!(
            codes,
            vec![
                "not-found",
                "not-found",
                "multiple-matches",
                "not-found",
                "required"
            ]
        );
    }

    #[test]
    fn a_resource_without_a_patient_goes_with_what_references_it() {
        let (_, entries) = parse_bundle(bundle(
            "transaction",
            vec![
                post(
                    "urn:uuid:med",
                    json!({"resourceType": "Medication", "code": {"text": "m"}}),
                ),
                post(
                    "urn:uuid:ms",
                    json!({"resourceType": "MedicationStatement", "status": "active",
                           "medicationReference": {"reference": "urn:uuid:med"},
                           "subject": {"reference": "Patient?identifier=urn:mrn|A"}}),
                ),
            ],
        ))
        .unwrap();
        assert_eq!(
            route(&entries, &lookup, &shared),
            vec![Route::Record(rid(1)), Route::Record(rid(1))]
        );
    }

    #[test]
    fn bundles_are_checked_before_anything_is_routed() {
        let bad = [
            json!({"resourceType": "Observation"}),
            json!({"resourceType": "Bundle", "type": "collection"}),
            bundle(
                "transaction",
                vec![json!({"request": {"method": "POST", "url": "Observation"}})],
            ),
            bundle(
                "transaction",
                vec![
                    json!({"resource": obs(json!({})), "request": {"method": "DELETE", "url": "Observation/1"}}),
                ],
            ),
            bundle(
                "transaction",
                vec![
                    json!({"resource": obs(json!({})), "request": {"method": "POST", "url": "Patient"}}),
                ],
            ),
            bundle(
                "transaction",
                vec![
                    post("urn:uuid:x", obs(json!({}))),
                    post("urn:uuid:x", obs(json!({}))),
                ],
            ),
        ];
        for b in bad {
            let e = parse_bundle(b.clone()).unwrap_err();
            assert_eq!(e.status, 400, "{b}");
            assert_eq!(e.code, "invalid");
        }
        let put = single(
            json!({"resourceType": "Observation", "id": "o1"}),
            "Observation",
            Some("o2"),
        );
        assert!(put.is_err(), "PUT names another id");
        assert!(single(
            json!({"resourceType": "Observation", "id": "o1"}),
            "Observation",
            Some("o1")
        )
        .is_ok());
    }
}
