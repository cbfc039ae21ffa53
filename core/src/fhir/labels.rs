//! Privacy labels on FHIR resources: which labels a resource's
//! `meta.security` codings carry (a provider's sensitivity codes are kept:
//! the entry lands in the labelled log), and writing a label back on
//! export. The vocabulary is the protocol's ([`PrivacyLabel`]).

use std::collections::BTreeSet;

use serde_json::{json, Value};

pub use satchel_protocol::label::PrivacyLabel;

/// The labels `resource`'s `meta.security` carries (codings that are not
/// labels, such as confidentiality codes, are ignored; a malformed
/// `meta.security` carries none: the shape checks of intake report it).
pub fn security_labels(resource: &Value) -> BTreeSet<PrivacyLabel> {
    resource
        .get("meta")
        .and_then(|m| m.get("security"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| {
            PrivacyLabel::from_coding(c.get("system")?.as_str()?, c.get("code")?.as_str()?)
        })
        .collect()
}

/// `resource` with the codings of `labels` in `meta.security` (each added
/// once; other security codings kept).
pub fn with_security_labels(mut resource: Value, labels: &BTreeSet<PrivacyLabel>) -> Value {
    let have = security_labels(&resource);
    let missing: Vec<Value> = labels
        .iter()
        .filter(|l| !have.contains(l))
        .map(|l| {
            let (system, code, display) = l.coding();
            json!({"system": system, "code": code, "display": display})
        })
        .collect();
    if missing.is_empty() {
        return resource;
    }
    let Some(obj) = resource.as_object_mut() else {
        return resource;
    };
    let meta = obj.entry("meta").or_insert_with(|| json!({}));
    if let Some(meta) = meta.as_object_mut() {
        let security = meta.entry("security").or_insert_with(|| json!([]));
        if let Some(list) = security.as_array_mut() {
            list.extend(missing);
        }
    }
    resource
}

#[cfg(test)]
mod tests {
    use super::*;

    fn condition(security: Value) -> Value {
        json!({"resourceType": "Condition", "id": "c1",
               "meta": {"security": security},
               "code": {"text": "x"}})
    }

    #[test]
    fn sensitivity_codes_become_labels() {
        let c = condition(json!([
            {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "PSY"},
            {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "STD"},
            {"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R"}
        ]));
        assert_eq!(
            security_labels(&c),
            BTreeSet::from([PrivacyLabel::HivSti, PrivacyLabel::MentalHealth])
        );
    }

    #[test]
    fn no_or_malformed_security_is_no_label() {
        assert!(security_labels(&json!({"resourceType": "Condition"})).is_empty());
        assert!(security_labels(&condition(json!("PSY"))).is_empty());
        assert!(security_labels(&condition(json!([{"code": "PSY"}]))).is_empty());
    }

    #[test]
    fn labels_written_on_export_read_back_once() {
        let plain = json!({"resourceType": "Condition", "id": "c1"});
        let labels = BTreeSet::from([PrivacyLabel::Private, PrivacyLabel::Genetic]);
        let out = with_security_labels(plain, &labels);
        assert_eq!(security_labels(&out), labels);
        let again = with_security_labels(out.clone(), &labels);
        assert_eq!(again, out, "adding a label twice adds nothing");
        // Other security codings are kept.
        let kept = with_security_labels(
            condition(json!([{"system": "urn:x", "code": "y"}])),
            &BTreeSet::from([PrivacyLabel::Genetic]),
        );
        assert_eq!(kept["meta"]["security"].as_array().map(Vec::len), Some(2));
    }
}
