//! Strict JSON for FHIR input: a [`Value`] built in one pass that refuses an
//! object naming the same key twice, at any depth.
//!
//! serde_json (like many parsers) silently keeps the last of two equal keys,
//! others keep the first or refuse; an entry read one way here and another
//! way by a provider's system or a validator would mean two different
//! clinical facts. So every FHIR input path (single resources, Bundles and
//! the streaming Bundle reader in [`super::import`], provider pushes, the
//! mobile API) parses through [`StrictValue`] and a duplicate is
//! [`FhirError::DuplicateKey`], naming the JSON path of the key (element
//! names and array positions only, never a value).

use std::fmt;
use std::str::FromStr;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

use super::FhirError;

/// The key serde_json's `arbitrary_precision` feature (enabled for this
/// crate) uses to hand a number to a visitor as a one-entry map holding its
/// text. `numbers_are_kept_exactly` checks that this still holds.
const NUMBER_TOKEN: &str = "$serde_json::private::Number";

/// Parse bytes as strict JSON (see the module documentation).
pub fn from_slice(bytes: &[u8]) -> Result<Value, FhirError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = parse(&mut de)?;
    de.end().map_err(|e| not_json(&e))?;
    Ok(value)
}

/// Parse text as strict JSON (see the module documentation).
pub fn from_str(text: &str) -> Result<Value, FhirError> {
    from_slice(text.as_bytes())
}

fn parse<'de, D>(de: D) -> Result<Value, FhirError>
where
    D: Deserializer<'de, Error = serde_json::Error>,
{
    let mut dup = None;
    StrictValue::new(&mut dup)
        .deserialize(de)
        .map_err(|e| match dup.take() {
            Some(path) => path.into_error(),
            None => not_json(&e),
        })
}

fn not_json(e: &serde_json::Error) -> FhirError {
    FhirError::NotJson {
        line: e.line(),
        column: e.column(),
    }
}

/// One step of a JSON path.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Step {
    Key(String),
    Index(usize),
}

/// Where a duplicate key was found, built innermost first as the error
/// travels out of the nested values.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DuplicatePath {
    /// Steps from the key outwards.
    reversed: Vec<Step>,
}

impl DuplicatePath {
    fn at(key: &str) -> Self {
        DuplicatePath {
            reversed: vec![Step::Key(key.to_string())],
        }
    }

    /// Put `key` in front (the object the path is in sits under `key`).
    pub fn under_key(mut self, key: &str) -> Self {
        self.reversed.push(Step::Key(key.to_string()));
        self
    }

    /// Put `[index]` in front.
    pub fn under_index(mut self, index: usize) -> Self {
        self.reversed.push(Step::Index(index));
        self
    }

    /// The path as text, e.g. `entry[2].resource.code.coding[0].system`.
    /// Keys that are not plain element names (letters, digits, `_`, `-`,
    /// at most 64 bytes) are shown as `?`, so no value can leak through a
    /// crafted key.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for step in self.reversed.iter().rev() {
            match step {
                Step::Index(i) => out.push_str(&format!("[{i}]")),
                Step::Key(k) => {
                    if !out.is_empty() {
                        out.push('.');
                    }
                    let plain = !k.is_empty()
                        && k.len() <= 64
                        && k.bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
                    out.push_str(if plain { k } else { "?" });
                }
            }
        }
        out
    }

    /// The error for this path.
    pub fn into_error(self) -> FhirError {
        FhirError::DuplicateKey(self.render())
    }
}

/// A [`DeserializeSeed`] for a [`Value`] that refuses duplicate object keys.
/// On a duplicate it fails with a generic serde error and leaves the path
/// in the slot it was given (the caller turns it into
/// [`FhirError::DuplicateKey`], prefixing where the value sat).
pub struct StrictValue<'a> {
    dup: &'a mut Option<DuplicatePath>,
}

impl<'a> StrictValue<'a> {
    /// A seed reporting duplicates into `dup`.
    pub fn new(dup: &'a mut Option<DuplicatePath>) -> Self {
        StrictValue { dup }
    }

    fn child(&mut self) -> StrictValue<'_> {
        StrictValue { dup: self.dup }
    }
}

impl<'de> DeserializeSeed<'de> for StrictValue<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for StrictValue<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        self.deserialize(d)
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(1024));
        loop {
            let index = out.len();
            let next = seq.next_element_seed(self.child()).inspect_err(|_| {
                if let Some(path) = self.dup.take() {
                    *self.dup = Some(path.under_index(index));
                }
            })?;
            match next {
                Some(v) => out.push(v),
                None => return Ok(Value::Array(out)),
            }
        }
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<Value, A::Error> {
        let mut obj = Map::new();
        let mut first = true;
        while let Some(key) = map.next_key::<String>()? {
            if std::mem::take(&mut first) && key == NUMBER_TOKEN {
                let text: String = map.next_value()?;
                return Number::from_str(&text)
                    .map(Value::Number)
                    .map_err(de::Error::custom);
            }
            if obj.contains_key(&key) {
                *self.dup = Some(DuplicatePath::at(&key));
                return Err(de::Error::custom("duplicate key"));
            }
            let value = map.next_value_seed(self.child()).inspect_err(|_| {
                if let Some(path) = self.dup.take() {
                    *self.dup = Some(path.under_key(&key));
                }
            })?;
            obj.insert(key, value);
        }
        Ok(Value::Object(obj))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn dup(json: &str) -> String {
        match from_str(json) {
            Err(FhirError::DuplicateKey(path)) => path,
            other => panic!("expected a duplicate key, got {other:?}"),
        }
    }

    #[test]
    fn same_value_as_serde_json_without_duplicates() {
        let json = r#"{"resourceType":"Observation","valueQuantity":{"value":1.50,"unit":"%"},
            "big":123456789012345678901234567890,"neg":-0,"exp":1e400,"s":"a\u00e9\"b",
            "arr":[1,[2,{"x":null}],true,false],"empty":{},"none":[]}"#;
        let ours = from_str(json).unwrap();
        let theirs: Value = serde_json::from_str(json).unwrap();
        assert_eq!(ours, theirs);
        // Key order and number text are kept exactly.
        assert_eq!(
            serde_json::to_string(&ours).unwrap(),
            serde_json::to_string(&theirs).unwrap()
        );
    }

    #[test]
    fn numbers_are_kept_exactly() {
        for n in [
            "0",
            "-1",
            "1.50",
            "1e3",
            "18446744073709551616",
            "-9.75E-7",
            "1e400",
        ] {
            let v = from_str(n).unwrap();
            assert!(v.is_number());
            assert_eq!(v, serde_json::from_str::<Value>(n).unwrap());
            assert_eq!(
                v.to_string(),
                serde_json::from_str::<Value>(n).unwrap().to_string()
            );
        }
        assert_eq!(from_str("1.50").unwrap().to_string(), "1.50");
    }

    #[test]
    fn duplicates_are_named_by_path() {
        assert_eq!(dup(r#"{"a":1,"a":1}"#), "a");
        assert_eq!(
            dup(r#"{"code":{"coding":[{"s":"x"},{"s":"y","s":"y"}]}}"#),
            "code.coding[1].s"
        );
        assert_eq!(dup(r#"[{"x":[[{"k":1,"k":2}]]}]"#), "[0].x[0][0].k");
        // A crafted key is not echoed.
        assert_eq!(dup(r#"{"a":{"Jane Doe 1970":1,"Jane Doe 1970":2}}"#), "a.?");
        // Equal after escape processing is still equal.
        assert_eq!(dup(r#"{"id":1,"\u0069d":2}"#), "id");
    }

    #[test]
    fn syntax_errors_stay_syntax_errors() {
        assert!(matches!(
            from_str("{\"a\":"),
            Err(FhirError::NotJson { .. })
        ));
        assert!(matches!(from_str("{} x"), Err(FhirError::NotJson { .. })));
        assert!(matches!(from_str(""), Err(FhirError::NotJson { .. })));
    }
}
