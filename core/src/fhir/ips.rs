//! The International Patient Summary (HL7 IPS, `hl7.fhir.uv.ips`) as a FHIR
//! R4 `document` Bundle, built from a record's entries. I/O-free: the
//! caller passes the entries, the time and fresh ids.
//!
//! Shape: `Bundle.type = document` with an `identifier` and `timestamp`; the
//! first entry is a `Composition` (status final, type LOINC 60591-5, subject
//! and author the record's Patient, date, title) with one section per
//! [`IpsSection`]: the required Medication Summary, Allergies and
//! Intolerances and Problem List are always present (an empty one carries
//! `emptyReason` `unavailable` and a narrative saying so); Immunizations,
//! Procedures, Results and Vital Signs only where the record has entries.
//! Every section has a generated XHTML narrative listing its entries.
//!
//! Every Bundle entry has a `fullUrl` `urn:uuid:<entry id>`, and references
//! inside the included resources are rewritten consistently: a reference
//! that resolves (see [`super::refs`]) to an included entry becomes that
//! entry's `urn:uuid:`; a reference to a Patient (the record is one
//! patient's, enforced at import) becomes the Patient's; any other reference
//! (to something not in the summary) loses its `reference` and keeps its
//! `display`/`identifier`, or gets the display "not included in this
//! summary". Contained references (`#id`) are left alone.

use std::collections::{HashMap, HashSet};

use serde_json::{json, Map, Value};

use super::export::{bundle_item, entry_urn, instant, uuid_urn};
use super::refs::{type_and_id, Addressed, Resolver};
use crate::ids::EntryId;
use crate::record::{Entry, Section};

/// LOINC code of the IPS document type.
pub const IPS_DOCUMENT_CODE: &str = "60591-5";

/// The sections of an IPS Composition we fill.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IpsSection {
    /// Medication Summary (required), LOINC 10160-0.
    Medications,
    /// Allergies and Intolerances (required), LOINC 48765-2.
    Allergies,
    /// Problem List (required), LOINC 11450-4.
    Problems,
    /// History of Immunizations, LOINC 11369-6.
    Immunizations,
    /// History of Procedures, LOINC 47519-4.
    Procedures,
    /// Results, LOINC 30954-2.
    Results,
    /// Vital Signs, LOINC 8716-3.
    VitalSigns,
}

impl IpsSection {
    /// Every section, in document order.
    pub const ALL: [IpsSection; 7] = [
        IpsSection::Medications,
        IpsSection::Allergies,
        IpsSection::Problems,
        IpsSection::Immunizations,
        IpsSection::Procedures,
        IpsSection::Results,
        IpsSection::VitalSigns,
    ];

    /// (LOINC code, LOINC display, section title).
    pub fn code(self) -> (&'static str, &'static str, &'static str) {
        match self {
            IpsSection::Medications => (
                "10160-0",
                "History of Medication use Narrative",
                "Medication Summary",
            ),
            IpsSection::Allergies => (
                "48765-2",
                "Allergies and adverse reactions Document",
                "Allergies and Intolerances",
            ),
            IpsSection::Problems => ("11450-4", "Problem list - Reported", "Problem List"),
            IpsSection::Immunizations => (
                "11369-6",
                "History of Immunization Narrative",
                "History of Immunizations",
            ),
            IpsSection::Procedures => (
                "47519-4",
                "History of Procedures Document",
                "History of Procedures",
            ),
            IpsSection::Results => (
                "30954-2",
                "Relevant diagnostic tests/laboratory data Narrative",
                "Results",
            ),
            IpsSection::VitalSigns => ("8716-3", "Vital signs", "Vital Signs"),
        }
    }

    /// Whether IPS requires the section (then an empty one states why).
    pub fn required(self) -> bool {
        matches!(
            self,
            IpsSection::Medications | IpsSection::Allergies | IpsSection::Problems
        )
    }

    /// The record sections IPS entries come from.
    pub const RECORD_SECTIONS: [Section; 7] = [
        Section::Medications,
        Section::Allergies,
        Section::Conditions,
        Section::Immunizations,
        Section::Procedures,
        Section::Labs,
        Section::Vitals,
    ];

    /// The IPS section an entry goes in, if any.
    pub fn of(section: Section, resource_type: &str) -> Option<IpsSection> {
        match (section, resource_type) {
            (Section::Medications, "MedicationStatement" | "MedicationRequest") => {
                Some(IpsSection::Medications)
            }
            (Section::Allergies, "AllergyIntolerance") => Some(IpsSection::Allergies),
            (Section::Conditions, "Condition") => Some(IpsSection::Problems),
            (Section::Immunizations, "Immunization") => Some(IpsSection::Immunizations),
            (Section::Procedures, "Procedure") => Some(IpsSection::Procedures),
            (Section::Labs, "Observation" | "DiagnosticReport") => Some(IpsSection::Results),
            (Section::Vitals, "Observation") => Some(IpsSection::VitalSigns),
            _ => None,
        }
    }

    fn empty_text(self) -> &'static str {
        match self {
            IpsSection::Medications => {
                "No information about medications is available in this record."
            }
            IpsSection::Allergies => {
                "No information about allergies or intolerances is available in this record."
            }
            IpsSection::Problems => "No information about problems is available in this record.",
            _ => "No information is available in this record.",
        }
    }
}

/// Fresh ids for one document.
#[derive(Debug, Clone, Copy)]
pub struct DocumentIds {
    /// `Bundle.identifier`.
    pub bundle: [u8; 16],
    /// The Composition's `id` and `fullUrl`.
    pub composition: [u8; 16],
}

fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if (c as u32) < 0x20 && c != '\n' && c != '\t' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

fn xhtml(body: &str) -> String {
    format!("<div xmlns=\"http://www.w3.org/1999/xhtml\">{body}</div>")
}

/// `clinicalStatus` (a CodeableConcept): its text, display or code.
fn concept_label(v: Option<&Value>) -> Option<&str> {
    let v = v?;
    v.get("text").and_then(Value::as_str).or_else(|| {
        let first = v.get("coding")?.as_array()?.first()?;
        first
            .get("display")
            .or_else(|| first.get("code"))
            .and_then(Value::as_str)
    })
}

/// An Observation's value as text: quantity with unit, concept, or string.
fn value_text(resource: &Value) -> Option<String> {
    if let Some(q) = resource.get("valueQuantity") {
        let value = match q.get("value")? {
            Value::Number(n) => n.to_string(),
            _ => return None,
        };
        return Some(match q.get("unit").and_then(Value::as_str) {
            Some(unit) => format!("{value} {unit}"),
            None => value,
        });
    }
    concept_label(resource.get("valueCodeableConcept"))
        .or_else(|| resource.get("valueString").and_then(Value::as_str))
        .map(str::to_string)
}

/// One row of a section's narrative table. Reads the index fields (label,
/// date) and a few elements of the resource, without a typed parse (the
/// summary is built from hundreds of entries).
fn row(entry: &Entry, section: IpsSection) -> String {
    let resource = &entry.current.resource;
    let label = entry
        .current
        .displays
        .first()
        .cloned()
        .or_else(|| {
            resource
                .get("medicationReference")
                .and_then(|r| r.get("display"))
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .unwrap_or_else(|| entry.resource_type.clone());
    let status = resource
        .get("status")
        .and_then(Value::as_str)
        .or_else(|| concept_label(resource.get("clinicalStatus")))
        .unwrap_or_default()
        .to_string();
    let date = entry.current.date_text.clone().unwrap_or_default();
    let mut cells = vec![label, status, date];
    if matches!(section, IpsSection::Results | IpsSection::VitalSigns) {
        cells.insert(1, value_text(resource).unwrap_or_default());
    }
    let tds: String = cells
        .iter()
        .map(|c| format!("<td>{}</td>", escape(c)))
        .collect();
    format!("<tr>{tds}</tr>")
}

fn narrative(section: IpsSection, entries: &[&Entry]) -> String {
    if entries.is_empty() {
        return xhtml(&format!("<p>{}</p>", escape(section.empty_text())));
    }
    let head = if matches!(section, IpsSection::Results | IpsSection::VitalSigns) {
        "<tr><th>Item</th><th>Value</th><th>Status</th><th>Date</th></tr>"
    } else {
        "<tr><th>Item</th><th>Status</th><th>Date</th></tr>"
    };
    let rows: String = entries.iter().map(|e| row(e, section)).collect();
    xhtml(&format!(
        "<table><thead>{head}</thead><tbody>{rows}</tbody></table>"
    ))
}

/// Rewrites references inside included resources (see the module docs).
struct Rewriter<'a> {
    resolver: &'a Resolver,
    included: &'a HashSet<EntryId>,
    patient: EntryId,
}

impl Rewriter<'_> {
    fn target(&self, source_system: Option<&str>, reference: &str) -> Option<EntryId> {
        if let Some(hit) = self.resolver.resolve(source_system, reference) {
            if self.resolver.type_of(hit) == Some("Patient") {
                return Some(self.patient);
            }
            if self.included.contains(&hit) {
                return Some(hit);
            }
            return None;
        }
        match type_and_id(reference) {
            Some(("Patient", _)) => Some(self.patient),
            _ => None,
        }
    }

    fn rewrite(&self, source_system: Option<&str>, value: &mut Value) {
        match value {
            Value::Array(items) => {
                for item in items {
                    self.rewrite(source_system, item);
                }
            }
            Value::Object(obj) => {
                self.rewrite_reference(source_system, obj);
                for (key, child) in obj.iter_mut() {
                    // Narrative XHTML and contained-resource ids are text, not references.
                    if key != "div" {
                        self.rewrite(source_system, child);
                    }
                }
            }
            _ => {}
        }
    }

    fn rewrite_reference(&self, source_system: Option<&str>, obj: &mut Map<String, Value>) {
        let Some(Value::String(reference)) = obj.get("reference") else {
            return;
        };
        if reference.starts_with('#') {
            return;
        }
        match self.target(source_system, reference) {
            Some(hit) => {
                obj.insert("reference".into(), Value::String(entry_urn(hit)));
            }
            None => {
                obj.shift_remove("reference");
                let keeps_content = obj.contains_key("display") || obj.contains_key("identifier");
                if !keeps_content {
                    obj.insert(
                        "display".into(),
                        Value::String("not included in this summary".into()),
                    );
                }
            }
        }
    }
}

/// Build the IPS document Bundle for `patient` from `entries` (the record's
/// visible entries; those that fit no IPS section are left out, except
/// Medication resources referenced by an included medication entry).
pub fn ips_document(
    patient: Entry,
    entries: Vec<Entry>,
    ids: DocumentIds,
    now: time::OffsetDateTime,
) -> Value {
    let resolver = Resolver::new(
        std::iter::once(&patient)
            .chain(&entries)
            .map(|e| Addressed {
                entry: e.id,
                source_system: e.source_system.as_deref(),
                source_id: e.source_id.as_deref(),
                resource_type: &e.resource_type,
                id: e.current.resource.get("id").and_then(Value::as_str),
            }),
    );
    let mut by_section: HashMap<IpsSection, Vec<&Entry>> = HashMap::new();
    for e in &entries {
        if let Some(s) = IpsSection::of(e.section, &e.resource_type) {
            by_section.entry(s).or_default().push(e);
        }
    }
    let mut included: HashSet<EntryId> = by_section.values().flatten().map(|e| e.id).collect();
    included.insert(patient.id);
    // Medications named by reference from the medication entries.
    let by_id: HashMap<EntryId, &Entry> = entries.iter().map(|e| (e.id, e)).collect();
    let mut extra: Vec<EntryId> = Vec::new();
    for e in by_section
        .get(&IpsSection::Medications)
        .into_iter()
        .flatten()
    {
        let reference = e
            .current
            .resource
            .get("medicationReference")
            .and_then(|r| r.get("reference"))
            .and_then(Value::as_str);
        if let Some(hit) = reference.and_then(|r| resolver.resolve(e.source_system.as_deref(), r)) {
            if let Some(target) = by_id.get(&hit) {
                if target.resource_type == "Medication" && included.insert(hit) {
                    extra.push(hit);
                }
            }
        }
    }
    let rewriter = Rewriter {
        resolver: &resolver,
        included: &included,
        patient: patient.id,
    };
    // The resources are moved into the document (no copy), rewritten in place.
    let bundle_entry = |e: Entry| {
        let mut resource = e.current.resource;
        rewriter.rewrite(e.source_system.as_deref(), &mut resource);
        bundle_item(entry_urn(e.id), resource)
    };

    let patient_ref = entry_urn(patient.id);
    let mut sections = Vec::new();
    for s in IpsSection::ALL {
        let list = by_section.get(&s).map(Vec::as_slice).unwrap_or_default();
        if list.is_empty() && !s.required() {
            continue;
        }
        let (code, display, title) = s.code();
        let mut section = json!({
            "title": title,
            "code": {"coding": [{"system": "http://loinc.org", "code": code, "display": display}]},
            "text": {"status": "generated", "div": narrative(s, list)},
        });
        if list.is_empty() {
            section["emptyReason"] = json!({"coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/list-empty-reason",
                "code": "unavailable",
                "display": "Unavailable"
            }]});
        } else {
            section["entry"] = Value::Array(
                list.iter()
                    .map(|e| json!({"reference": entry_urn(e.id)}))
                    .collect(),
            );
        }
        sections.push(section);
    }
    let composition_urn = uuid_urn(&ids.composition);
    let composition_id = composition_urn.trim_start_matches("urn:uuid:").to_string();
    let mut composition = json!({
        "resourceType": "Composition",
        "id": composition_id,
        "status": "final",
        "type": {"coding": [{"system": "http://loinc.org", "code": IPS_DOCUMENT_CODE, "display": "Patient summary Document"}]},
        "subject": {"reference": patient_ref},
        "date": instant(now),
        "author": [{"reference": patient_ref}],
        "title": "International Patient Summary",
    });
    if let Value::Object(obj) = &mut composition {
        obj.insert("section".into(), Value::Array(sections));
    }

    let order: Vec<EntryId> = IpsSection::ALL
        .iter()
        .flat_map(|s| by_section.get(s).into_iter().flatten().map(|e| e.id))
        .chain(extra)
        .collect();
    drop(by_section);
    drop(by_id);
    let mut owned: HashMap<EntryId, Entry> = entries.into_iter().map(|e| (e.id, e)).collect();
    let mut items = Vec::with_capacity(order.len() + 2);
    items.push(bundle_item(composition_urn, composition));
    items.push(bundle_entry(patient));
    for id in order {
        if let Some(e) = owned.remove(&id) {
            items.push(bundle_entry(e));
        }
    }
    let mut bundle = json!({
        "resourceType": "Bundle",
        "identifier": {"system": "urn:ietf:rfc:3986", "value": uuid_urn(&ids.bundle)},
        "type": "document",
        "timestamp": instant(now),
    });
    // Moved in, not through `json!` (which would copy every resource).
    if let Value::Object(obj) = &mut bundle {
        obj.insert("entry".into(), Value::Array(items));
    }
    bundle
}
