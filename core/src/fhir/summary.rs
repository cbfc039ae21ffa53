//! Shape checks, the derived index of a resource, and the section mapping.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::date::ClinicalDate;
use super::resource_types::R4_RESOURCE_TYPES;
use super::FhirError;
use crate::record::Section;

/// Code system of the Observation category that routes to the vitals section.
pub const VITAL_SIGNS_CATEGORY_SYSTEM: &str =
    "http://terminology.hl7.org/CodeSystem/observation-category";
/// Code (in [`VITAL_SIGNS_CATEGORY_SYSTEM`]) that routes an Observation to vitals.
pub const VITAL_SIGNS_CATEGORY_CODE: &str = "vital-signs";

/// One indexed code: a `Coding` with a `code` (codings without one are not
/// indexed).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Coding {
    /// `Coding.system`, if present.
    pub system: Option<String>,
    /// `Coding.code`.
    pub code: String,
}

impl fmt::Debug for Coding {
    // Codes reveal diagnoses: keep them out of debug output.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Coding(<redacted>)")
    }
}

/// What the record indexes about a resource (see `docs/sections.md`).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceSummary {
    /// The R4 resource type.
    pub resource_type: String,
    /// The resource's own `id`, if present.
    pub id: Option<String>,
    /// The clinical date (first present of the per-type candidates).
    pub date: Option<ClinicalDate>,
    /// Codes of the indexed CodeableConcepts, first occurrence order, no duplicates.
    pub codes: Vec<Coding>,
    /// `coding[].display` and `text` of the indexed CodeableConcepts, first
    /// occurrence order, no duplicates.
    pub displays: Vec<String>,
}

impl fmt::Debug for ResourceSummary {
    // Only the type and counts: the rest is health data.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResourceSummary")
            .field("resource_type", &self.resource_type)
            .field("has_id", &self.id.is_some())
            .field("has_date", &self.date.is_some())
            .field("codes", &self.codes.len())
            .field("displays", &self.displays.len())
            .finish()
    }
}

/// Whether `name` is an R4 resource type.
pub fn is_known_resource_type(name: &str) -> bool {
    R4_RESOURCE_TYPES.binary_search(&name).is_ok()
}

/// The object and its (known) resource type.
fn object_and_type(resource: &Value) -> Result<(&Map<String, Value>, &str), FhirError> {
    let obj = resource.as_object().ok_or(FhirError::NotAnObject)?;
    let rt = match obj.get("resourceType") {
        None => return Err(FhirError::MissingResourceType),
        Some(Value::String(s)) => s.as_str(),
        Some(_) => return Err(FhirError::unknown_resource_type("")),
    };
    if !is_known_resource_type(rt) {
        return Err(FhirError::unknown_resource_type(rt));
    }
    Ok((obj, rt))
}

/// Parse bytes as a FHIR R4 resource: strict JSON (no key twice in an object:
/// [`super::json`]), an object, a known `resourceType`,
/// and the indexed elements well-shaped (see [`summarize`]). The returned
/// value is the resource as sent.
pub fn parse_resource(bytes: &[u8]) -> Result<Value, FhirError> {
    let value = super::json::from_slice(bytes)?;
    summarize(&value)?;
    Ok(value)
}

/// A CodeableConcept field to index: its name and whether it is an array.
type Concept = (&'static str, bool);

/// What is indexed for one resource type.
struct Spec {
    /// Candidate clinical-date paths, first present wins.
    dates: &'static [&'static str],
    /// CodeableConcepts whose codes and displays are indexed.
    concepts: &'static [Concept],
}

const GENERIC_DATES: &[&str] = &["date", "period.start", "meta.lastUpdated"];

fn spec_for(resource_type: &str) -> Spec {
    match resource_type {
        "Observation" => Spec {
            dates: &[
                "effectiveDateTime",
                "effectivePeriod.start",
                "effectiveInstant",
                "issued",
            ],
            concepts: &[("code", false), ("category", true)],
        },
        "Condition" => Spec {
            dates: &["onsetDateTime", "onsetPeriod.start", "recordedDate"],
            concepts: &[("code", false)],
        },
        "AllergyIntolerance" => Spec {
            dates: &["onsetDateTime", "recordedDate"],
            concepts: &[("code", false)],
        },
        "Immunization" => Spec {
            dates: &["occurrenceDateTime", "recorded"],
            concepts: &[("vaccineCode", false)],
        },
        "Procedure" => Spec {
            dates: &["performedDateTime", "performedPeriod.start"],
            concepts: &[("code", false)],
        },
        "MedicationStatement" => Spec {
            dates: &["effectiveDateTime", "effectivePeriod.start", "dateAsserted"],
            concepts: &[("medicationCodeableConcept", false)],
        },
        "MedicationRequest" => Spec {
            dates: &["authoredOn"],
            concepts: &[("medicationCodeableConcept", false)],
        },
        "DiagnosticReport" => Spec {
            dates: &["effectiveDateTime", "effectivePeriod.start", "issued"],
            concepts: &[("code", false)],
        },
        // R4: DocumentReference.type is a single CodeableConcept (0..1).
        "DocumentReference" => Spec {
            dates: &["date"],
            concepts: &[("type", false)],
        },
        "Encounter" => Spec {
            dates: &["period.start"],
            concepts: &[("type", true)],
        },
        "CarePlan" => Spec {
            dates: &["period.start", "created"],
            concepts: &[("category", true)],
        },
        "Consent" => Spec {
            dates: &["dateTime"],
            concepts: &[],
        },
        "Patient" => Spec {
            dates: &[],
            concepts: &[],
        },
        // Further types routed to a section: a few obvious codes and dates,
        // then the generic date candidates.
        "MedicationAdministration" => Spec {
            dates: &[
                "effectiveDateTime",
                "effectivePeriod.start",
                "date",
                "period.start",
                "meta.lastUpdated",
            ],
            concepts: &[("medicationCodeableConcept", false)],
        },
        "MedicationDispense" => Spec {
            dates: &[
                "whenHandedOver",
                "whenPrepared",
                "date",
                "period.start",
                "meta.lastUpdated",
            ],
            concepts: &[("medicationCodeableConcept", false)],
        },
        "Medication" => Spec {
            dates: GENERIC_DATES,
            concepts: &[("code", false)],
        },
        "ServiceRequest" => Spec {
            dates: &[
                "occurrenceDateTime",
                "occurrencePeriod.start",
                "authoredOn",
                "date",
                "period.start",
                "meta.lastUpdated",
            ],
            concepts: &[("code", false)],
        },
        "Specimen" => Spec {
            dates: &[
                "collection.collectedDateTime",
                "receivedTime",
                "date",
                "period.start",
                "meta.lastUpdated",
            ],
            concepts: &[("type", false)],
        },
        "Goal" => Spec {
            dates: &[
                "startDate",
                "statusDate",
                "date",
                "period.start",
                "meta.lastUpdated",
            ],
            concepts: &[("description", false)],
        },
        "EpisodeOfCare" => Spec {
            dates: GENERIC_DATES,
            concepts: &[("type", true)],
        },
        "CareTeam" => Spec {
            dates: GENERIC_DATES,
            concepts: &[("category", true)],
        },
        "Composition" => Spec {
            dates: GENERIC_DATES,
            concepts: &[("type", false)],
        },
        _ => Spec {
            dates: GENERIC_DATES,
            concepts: &[],
        },
    }
}

fn opt_str<'a>(
    obj: &'a Map<String, Value>,
    key: &str,
    rt: &str,
    parent: &str,
) -> Result<Option<&'a str>, FhirError> {
    match obj.get(key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.as_str())),
        Some(_) => Err(FhirError::shape(rt, join(parent, key), "string")),
    }
}

fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

#[derive(Default)]
struct Collected {
    codes: Vec<Coding>,
    displays: Vec<String>,
}

impl Collected {
    fn code(&mut self, system: Option<&str>, code: &str) {
        let c = Coding {
            system: system.map(str::to_string),
            code: code.to_string(),
        };
        if !self.codes.contains(&c) {
            self.codes.push(c);
        }
    }

    fn display(&mut self, d: &str) {
        if !self.displays.iter().any(|x| x == d) {
            self.displays.push(d.to_string());
        }
    }
}

/// Check one CodeableConcept at `path`, collecting its codes and displays.
fn codeable_concept(rt: &str, path: &str, v: &Value, out: &mut Collected) -> Result<(), FhirError> {
    let obj = v
        .as_object()
        .ok_or_else(|| FhirError::shape(rt, path, "object"))?;
    if let Some(coding) = obj.get("coding") {
        let cpath = format!("{path}.coding");
        let arr = coding
            .as_array()
            .ok_or_else(|| FhirError::shape(rt, cpath.as_str(), "array"))?;
        for (i, item) in arr.iter().enumerate() {
            let ipath = format!("{cpath}[{i}]");
            let io = item
                .as_object()
                .ok_or_else(|| FhirError::shape(rt, ipath.as_str(), "object"))?;
            let system = opt_str(io, "system", rt, &ipath)?;
            let code = opt_str(io, "code", rt, &ipath)?;
            let display = opt_str(io, "display", rt, &ipath)?;
            if let Some(code) = code {
                out.code(system, code);
            }
            if let Some(d) = display {
                out.display(d);
            }
        }
    }
    if let Some(t) = opt_str(obj, "text", rt, path)? {
        out.display(t);
    }
    Ok(())
}

/// Check the CodeableConcept field `c` of `obj` (single or array).
fn concept_field(
    rt: &str,
    obj: &Map<String, Value>,
    c: &Concept,
    out: &mut Collected,
) -> Result<(), FhirError> {
    let &(field, many) = c;
    let Some(v) = obj.get(field) else {
        return Ok(());
    };
    if many {
        let arr = v
            .as_array()
            .ok_or_else(|| FhirError::shape(rt, field, "array"))?;
        for (i, item) in arr.iter().enumerate() {
            codeable_concept(rt, &format!("{field}[{i}]"), item, out)?;
        }
        Ok(())
    } else {
        codeable_concept(rt, field, v, out)
    }
}

/// Resolve a dotted date path; `Ok(None)` if absent.
fn date_at(
    rt: &str,
    obj: &Map<String, Value>,
    path: &str,
) -> Result<Option<ClinicalDate>, FhirError> {
    let mut current = obj;
    let mut segments = path.split('.').peekable();
    let mut walked = String::new();
    while let Some(seg) = segments.next() {
        if !walked.is_empty() {
            walked.push('.');
        }
        walked.push_str(seg);
        let Some(v) = current.get(seg) else {
            return Ok(None);
        };
        if segments.peek().is_some() {
            current = v
                .as_object()
                .ok_or_else(|| FhirError::shape(rt, walked.as_str(), "object"))?;
        } else {
            let s = v
                .as_str()
                .ok_or_else(|| FhirError::shape(rt, walked.as_str(), "string"))?;
            return ClinicalDate::parse(s)
                .map(Some)
                .ok_or_else(|| FhirError::shape(rt, walked.as_str(), "a FHIR date or dateTime"));
        }
    }
    Ok(None)
}

/// Check a resource and derive what the record indexes about it.
///
/// Checks: a JSON object; a string `resourceType` that is an R4 type; `id`
/// a string if present; for the indexed CodeableConcepts of the type: an
/// object, `coding` an array of objects whose `system`, `code`, `display`
/// are strings, `text` a string; every candidate clinical-date element a
/// parsable FHIR date/dateTime string (objects on the way, e.g.
/// `effectivePeriod`, must be objects). All candidates are checked, the first
/// present one is the clinical date. Nothing else is looked at.
pub fn summarize(resource: &Value) -> Result<ResourceSummary, FhirError> {
    let (obj, rt) = object_and_type(resource)?;
    let id = opt_str(obj, "id", rt, "")?.map(str::to_string);
    let spec = spec_for(rt);
    let mut date = None;
    for path in spec.dates {
        let found = date_at(rt, obj, path)?;
        if date.is_none() {
            date = found;
        }
    }
    let mut collected = Collected::default();
    for c in spec.concepts {
        concept_field(rt, obj, c, &mut collected)?;
    }
    Ok(ResourceSummary {
        resource_type: rt.to_string(),
        id,
        date,
        codes: collected.codes,
        displays: collected.displays,
    })
}

/// Whether an Observation's category includes vital-signs (category shape-checked).
fn is_vital_signs(obj: &Map<String, Value>) -> Result<bool, FhirError> {
    let mut collected = Collected::default();
    concept_field("Observation", obj, &("category", true), &mut collected)?;
    Ok(collected.codes.iter().any(|c| {
        c.system.as_deref() == Some(VITAL_SIGNS_CATEGORY_SYSTEM)
            && c.code == VITAL_SIGNS_CATEGORY_CODE
    }))
}

/// The section a resource belongs to: a fixed mapping by resource type
/// (Observations by category), documented in `docs/sections.md`. Known types
/// without a section (including `Bundle`, which callers unpack with
/// [`bundle_resources`]) give [`FhirError::NoSection`]. The wearables and
/// notes sections never receive resources from this mapping.
pub fn section_for(resource: &Value) -> Result<Section, FhirError> {
    let (obj, rt) = object_and_type(resource)?;
    let section = match rt {
        "Patient" | "RelatedPerson" => Section::Demographics,
        "AllergyIntolerance" => Section::Allergies,
        "MedicationStatement"
        | "MedicationRequest"
        | "MedicationAdministration"
        | "MedicationDispense"
        | "Medication" => Section::Medications,
        "Condition" => Section::Conditions,
        "Immunization" | "ImmunizationRecommendation" => Section::Immunizations,
        "Procedure" => Section::Procedures,
        "Encounter" | "EpisodeOfCare" => Section::Encounters,
        "Observation" => {
            if is_vital_signs(obj)? {
                Section::Vitals
            } else {
                Section::Labs
            }
        }
        "DiagnosticReport" | "Specimen" => Section::Labs,
        "DocumentReference" | "Composition" | "Consent" | "Media" | "Provenance" | "AuditEvent" => {
            Section::Documents
        }
        "CarePlan" | "Goal" | "CareTeam" | "ServiceRequest" => Section::CarePlan,
        other => return Err(FhirError::NoSection(other.to_string())),
    };
    Ok(section)
}

/// The `entry[].resource` objects of a `Bundle`, in order. A missing `entry`
/// gives an empty list. Every entry must be an object with a `resource`
/// object (entries without one, e.g. transaction DELETEs, are refused for
/// now). The resources themselves are not checked here: add each one.
pub fn bundle_resources(bundle: &Value) -> Result<Vec<Value>, FhirError> {
    let (obj, rt) = object_and_type(bundle)?;
    if rt != "Bundle" {
        return Err(FhirError::shape(rt, "resourceType", "Bundle"));
    }
    let entries = match obj.get("entry") {
        None => return Ok(Vec::new()),
        Some(Value::Array(a)) => a,
        Some(_) => return Err(FhirError::shape(rt, "entry", "array")),
    };
    let mut out = Vec::with_capacity(entries.len());
    for (i, entry) in entries.iter().enumerate() {
        let eo = entry
            .as_object()
            .ok_or_else(|| FhirError::shape(rt, format!("entry[{i}]"), "object"))?;
        match eo.get("resource") {
            Some(r @ Value::Object(_)) => out.push(r.clone()),
            _ => {
                return Err(FhirError::shape(
                    rt,
                    format!("entry[{i}].resource"),
                    "object",
                ))
            }
        }
    }
    Ok(out)
}
