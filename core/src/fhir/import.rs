//! Streaming reader for what is imported: one resource or a Bundle
//! (collection, transaction, searchset or document), read from any
//! [`Read`] with serde_json's streaming deserializer. Bundle entries are
//! handed to a callback one at a time as they are parsed (with their
//! `fullUrl`), so a caller can check each and report progress without the
//! whole file, or its whole JSON tree, in memory at once. Nested Bundles are
//! unpacked; searchset entries with `search.mode = outcome` (an
//! OperationOutcome about the search, not about the patient) are skipped.
//! Every value is parsed strictly ([`super::json`]): an object naming a key
//! twice, at the top level or anywhere in an entry, refuses the input.

use std::fmt;
use std::io::Read;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use super::json::{DuplicatePath, StrictValue};
use super::FhirError;

/// Bundle types that are imported.
pub const IMPORTED_BUNDLE_TYPES: &[&str] = &["collection", "transaction", "searchset", "document"];

/// One resource to import, with where it sat in the input.
#[derive(Clone, PartialEq)]
pub struct IncomingResource {
    /// Position among the resources of the input (0-based, in order).
    pub index: usize,
    /// `Bundle.entry.fullUrl`, if it came from a Bundle entry that had one.
    pub full_url: Option<String>,
    /// Whether it came from a Bundle entry (not given on its own).
    pub in_bundle: bool,
    /// The resource, as given.
    pub resource: Value,
}

impl fmt::Debug for IncomingResource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IncomingResource")
            .field("index", &self.index)
            .field("has_full_url", &self.full_url.is_some())
            .field(
                "resource_type",
                &self.resource.get("resourceType").and_then(Value::as_str),
            )
            .finish()
    }
}

/// What the input was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputKind {
    /// A single resource (not a Bundle).
    Resource,
    /// A Bundle of one of [`IMPORTED_BUNDLE_TYPES`].
    Bundle,
}

/// Read one resource or a Bundle from `reader`, calling `on_resource` for
/// each resource in input order (a Bundle's entries as they are parsed).
/// The callback may refuse a resource, which stops reading. Errors carry
/// positions, resource types and entry indexes only.
pub fn read_resources<R, F>(reader: R, mut on_resource: F) -> Result<InputKind, FhirError>
where
    R: Read,
    F: FnMut(IncomingResource) -> Result<(), FhirError>,
{
    let mut de = serde_json::Deserializer::from_reader(std::io::BufReader::new(reader));
    let mut state = State {
        on_resource: &mut on_resource,
        next_index: 0,
        failure: None,
    };
    let result = TopLevel { state: &mut state }.deserialize(&mut de);
    let kind = match (result, state.failure.take()) {
        (_, Some(f)) => return Err(f),
        (Err(e), None) => return Err(json_error(&e)),
        (Ok(kind), None) => kind,
    };
    de.end().map_err(|e| json_error(&e))?;
    Ok(kind)
}

/// Read everything into memory (for callers that do not stream).
pub fn collect_resources<R: Read>(
    reader: R,
) -> Result<(InputKind, Vec<IncomingResource>), FhirError> {
    let mut out = Vec::new();
    let kind = read_resources(reader, |r| {
        out.push(r);
        Ok(())
    })?;
    Ok((kind, out))
}

/// The same, from resources already parsed (each one resource or a
/// Bundle): Bundles are unpacked by the same rules as [`read_resources`]
/// (imported types only, `search.mode = outcome` entries dropped). On a
/// refusal, the error and the index of the resource it concerns.
pub fn resources_from_values(
    values: Vec<Value>,
) -> Result<Vec<IncomingResource>, (usize, FhirError)> {
    let mut out = Vec::with_capacity(values.len());
    let mut push = |r: IncomingResource| {
        out.push(r);
        Ok(())
    };
    let mut state = State {
        on_resource: &mut push,
        next_index: 0,
        failure: None,
    };
    for value in values {
        let is_bundle = value.get("resourceType").and_then(Value::as_str) == Some("Bundle");
        let done: Result<(), de::value::Error> = if is_bundle {
            state.emit_value(None, value)
        } else {
            state.emit(false, None, value)
        };
        if done.is_err() {
            let reason = state.failure.take().unwrap_or(FhirError::NotAnObject);
            return Err((state.next_index, reason));
        }
    }
    drop(state);
    Ok(out)
}

fn json_error(e: &serde_json::Error) -> FhirError {
    if e.is_data() {
        // Data errors from our visitors: the message is ours, but keep it generic.
        FhirError::NotAnObject
    } else {
        FhirError::NotJson {
            line: e.line(),
            column: e.column(),
        }
    }
}

struct State<'a> {
    on_resource: &'a mut dyn FnMut(IncomingResource) -> Result<(), FhirError>,
    next_index: usize,
    /// A refusal from the callback or a shape check (serde errors are
    /// generic; the precise error is kept here).
    failure: Option<FhirError>,
}

impl State<'_> {
    fn fail<E: de::Error>(&mut self, e: FhirError) -> E {
        self.failure = Some(e);
        E::custom("refused")
    }

    /// A value that failed to parse: a duplicate key (with its full path)
    /// if that was the reason, else the parser's own error.
    fn duplicate<E: de::Error>(&mut self, path: Option<DuplicatePath>, e: E) -> E {
        match path {
            Some(path) => self.fail(path.into_error()),
            None => e,
        }
    }

    fn emit<E: de::Error>(
        &mut self,
        in_bundle: bool,
        full_url: Option<String>,
        resource: Value,
    ) -> Result<(), E> {
        let index = self.next_index;
        self.next_index += 1;
        let item = IncomingResource {
            index,
            full_url,
            in_bundle,
            resource,
        };
        (self.on_resource)(item).map_err(|e| self.fail(e))
    }

    /// A resource read whole (not streamed): emit it, unpacking Bundles.
    fn emit_value<E: de::Error>(
        &mut self,
        full_url: Option<String>,
        resource: Value,
    ) -> Result<(), E> {
        if resource.get("resourceType").and_then(Value::as_str) != Some("Bundle") {
            return self.emit(true, full_url, resource);
        }
        let Value::Object(mut obj) = resource else {
            return Err(self.fail(FhirError::NotAnObject));
        };
        let bundle_type = obj.get("type").and_then(Value::as_str).map(str::to_string);
        self.check_bundle_type(bundle_type.as_deref())?;
        let entries = match obj.shift_remove("entry") {
            None => return Ok(()),
            Some(Value::Array(a)) => a,
            Some(_) => return Err(self.fail(FhirError::shape("Bundle", "entry", "array"))),
        };
        for (i, entry) in entries.into_iter().enumerate() {
            let Value::Object(entry) = entry else {
                return Err(self.fail(FhirError::shape("Bundle", format!("entry[{i}]"), "object")));
            };
            self.bundle_entry(i, entry)?;
        }
        Ok(())
    }

    fn check_bundle_type<E: de::Error>(&mut self, bundle_type: Option<&str>) -> Result<(), E> {
        match bundle_type {
            Some(t) if IMPORTED_BUNDLE_TYPES.contains(&t) => Ok(()),
            Some(t) => Err(self.fail(FhirError::BundleType(safe_token(t)))),
            None => Err(self.fail(FhirError::shape("Bundle", "type", "string"))),
        }
    }

    fn bundle_entry<E: de::Error>(
        &mut self,
        i: usize,
        mut entry: Map<String, Value>,
    ) -> Result<(), E> {
        let is_outcome = entry
            .get("search")
            .and_then(|s| s.get("mode"))
            .and_then(Value::as_str)
            == Some("outcome");
        if is_outcome {
            return Ok(());
        }
        let full_url = match entry.get("fullUrl") {
            None => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => {
                return Err(self.fail(FhirError::shape(
                    "Bundle",
                    format!("entry[{i}].fullUrl"),
                    "string",
                )))
            }
        };
        match entry.shift_remove("resource") {
            Some(r @ Value::Object(_)) => self.emit_value(full_url, r),
            _ => Err(self.fail(FhirError::shape(
                "Bundle",
                format!("entry[{i}].resource"),
                "object (entries without a resource, e.g. DELETE, are not imported)",
            ))),
        }
    }
}

/// A Bundle type or other token to name in an error: kept only if it is a
/// short lowercase code.
fn safe_token(t: &str) -> String {
    if !t.is_empty() && t.len() <= 32 && t.bytes().all(|b| b.is_ascii_lowercase() || b == b'-') {
        t.to_string()
    } else {
        String::new()
    }
}

/// The top-level value: an object, streamed key by key. Keys other than
/// `entry` are buffered; `entry` is streamed when `resourceType` (seen
/// first, as FHIR JSON writes it) says Bundle, and buffered otherwise.
struct TopLevel<'s, 'a> {
    state: &'s mut State<'a>,
}

impl<'de> DeserializeSeed<'de> for TopLevel<'_, '_> {
    type Value = InputKind;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<InputKind, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for TopLevel<'_, '_> {
    type Value = InputKind;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a FHIR resource or Bundle")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<InputKind, A::Error> {
        let mut obj = Map::new();
        let mut streamed = false;
        while let Some(key) = map.next_key::<String>()? {
            if obj.contains_key(&key) || (streamed && key == "entry") {
                return Err(self
                    .state
                    .fail(DuplicatePath::default().under_key(&key).into_error()));
            }
            let is_bundle = obj.get("resourceType").and_then(Value::as_str) == Some("Bundle");
            if key == "entry" && is_bundle {
                let bundle_type = obj.get("type").and_then(Value::as_str).map(str::to_string);
                if let Some(t) = &bundle_type {
                    self.state.check_bundle_type::<A::Error>(Some(t))?;
                }
                map.next_value_seed(Entries { state: self.state })?;
                streamed = true;
            } else {
                let mut dup = None;
                let value = map
                    .next_value_seed(StrictValue::new(&mut dup))
                    .map_err(|e| self.state.duplicate(dup.map(|p| p.under_key(&key)), e))?;
                obj.insert(key, value);
            }
        }
        let value = Value::Object(obj);
        if value.get("resourceType").and_then(Value::as_str) == Some("Bundle") {
            let bundle_type = value.get("type").and_then(Value::as_str);
            self.state.check_bundle_type::<A::Error>(bundle_type)?;
            if !streamed {
                self.state.emit_value::<A::Error>(None, value)?;
            }
            Ok(InputKind::Bundle)
        } else {
            self.state.emit::<A::Error>(false, None, value)?;
            Ok(InputKind::Resource)
        }
    }

    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<InputKind, A::Error> {
        Err(self.state.fail(FhirError::NotAnObject))
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<InputKind, E> {
        Err(self.state.fail(FhirError::NotAnObject))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<InputKind, E> {
        Err(self.state.fail(FhirError::NotAnObject))
    }

    fn visit_unit<E: de::Error>(self) -> Result<InputKind, E> {
        Err(self.state.fail(FhirError::NotAnObject))
    }
}

/// `Bundle.entry`: each element parsed and handed on before the next is read.
struct Entries<'s, 'a> {
    state: &'s mut State<'a>,
}

impl<'de> DeserializeSeed<'de> for Entries<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Entries<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Bundle.entry: an array")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut i = 0usize;
        loop {
            let mut dup = None;
            let entry = seq
                .next_element_seed(StrictValue::new(&mut dup))
                .map_err(|e| {
                    let path = dup.map(|p| p.under_index(i).under_key("entry"));
                    self.state.duplicate(path, e)
                })?;
            let Some(entry) = entry else { break };
            let Value::Object(entry) = entry else {
                return Err(self.state.fail(FhirError::shape(
                    "Bundle",
                    format!("entry[{i}]"),
                    "object",
                )));
            };
            self.state.bundle_entry(i, entry)?;
            i += 1;
        }
        Ok(())
    }
}
