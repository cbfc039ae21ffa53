//! A small serde model of the FHIR R4 (4.0.1) resources the record indexes
//! or displays. Each struct types the elements we read (identifiers, codes,
//! dates, subjects, status, names) and keeps every other element in `other`,
//! untouched, so `Resource::from_value(v)?.to_value()` equals `v` as a JSON
//! value (numbers keep their text: serde_json's `arbitrary_precision`).
//! Key order may differ after a round trip; stored resources are never
//! rewritten through this model (the record keeps the JSON as given).

use std::fmt;

use serde::de::{self, DeserializeOwned, Deserializer};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Number, Value};

use super::FhirError;

// Deserialisation is written out (`from_map`) rather than derived: the
// derive with `#[serde(flatten)]` buffers every object and was instantiated
// for each of the 29 types and each input, the largest serde code in the
// phone library (docs/mobile.md "Size"). Here each type takes its typed
// elements out of a JSON object and keeps the rest, as the derive did: an
// absent or `null` element is `None`, a typed element of another JSON form
// is an error, every other element stays in `other` in its order.
// (Serialisation stays derived: written out it was no smaller.)

/// Element `key` of `object`, removed from it and read as a `T`.
fn take<T: DeserializeOwned>(
    object: &mut Map<String, Value>,
    key: &str,
) -> Result<Option<T>, serde_json::Error> {
    match object.shift_remove(key) {
        None => Ok(None),
        Some(value) => serde_json::from_value(value),
    }
}

macro_rules! element {
    ($(#[$doc:meta])* $name:ident { $( $(#[$fdoc:meta])* $field:ident : $ty:ty = $json:literal ),* $(,)? }) => {
        $(#[$doc])*
        #[derive(Clone, Default, PartialEq, Serialize)]
        pub struct $name {
            $(
                $(#[$fdoc])*
                #[serde(rename = $json, skip_serializing_if = "Option::is_none")]
                pub $field: Option<$ty>,
            )*
            /// Every other element, as given.
            #[serde(flatten)]
            pub other: Map<String, Value>,
        }

        impl $name {
            /// The typed elements taken out of `other`, the rest kept.
            fn from_map(mut other: Map<String, Value>) -> Result<Self, serde_json::Error> {
                Ok(Self {
                    $( $field: take(&mut other, $json)?, )*
                    other,
                })
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                Self::from_map(Map::deserialize(d)?).map_err(de::Error::custom)
            }
        }

        impl fmt::Debug for $name {
            // Values are health data: only say which typed elements are present.
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($name))
                    $( .field(stringify!($field), &self.$field.as_ref().map(|_| "<redacted>")) )*
                    .field("other", &self.other.len())
                    .finish()
            }
        }
    };
}

element!(
    /// `Identifier`: a business identifier (system + value).
    Identifier {
        /// `Identifier.system`.
        system: String = "system",
        /// `Identifier.value`.
        value: String = "value",
    }
);

element!(
    /// `HumanName`.
    HumanName {
        /// `HumanName.family`.
        family: String = "family",
        /// `HumanName.given` (R4 allows nulls paired with `_given`).
        given: Vec<Option<String>> = "given",
        /// `HumanName.text`.
        text: String = "text",
    }
);

element!(
    /// `Coding`.
    Coding {
        /// `Coding.system`.
        system: String = "system",
        /// `Coding.code`.
        code: String = "code",
        /// `Coding.display`.
        display: String = "display",
    }
);

element!(
    /// `CodeableConcept`.
    CodeableConcept {
        /// `CodeableConcept.coding`.
        coding: Vec<Coding> = "coding",
        /// `CodeableConcept.text`.
        text: String = "text",
    }
);

element!(
    /// `Reference`.
    Reference {
        /// `Reference.reference`: relative (`Type/id`), absolute, `urn:uuid:`, or `#contained`.
        reference: String = "reference",
        /// `Reference.display`.
        display: String = "display",
    }
);

element!(
    /// `Period`.
    Period {
        /// `Period.start`.
        start: String = "start",
        /// `Period.end`.
        end: String = "end",
    }
);

element!(
    /// `Quantity`.
    Quantity {
        /// `Quantity.value` (its decimal text is kept exactly).
        value: Number = "value",
        /// `Quantity.unit`.
        unit: String = "unit",
    }
);

impl CodeableConcept {
    /// The text to show: `text`, else the first coding's display, else its code.
    pub fn label(&self) -> Option<&str> {
        self.text.as_deref().or_else(|| {
            let codings = self.coding.as_deref().unwrap_or_default();
            codings
                .iter()
                .find_map(|c| c.display.as_deref())
                .or_else(|| codings.iter().find_map(|c| c.code.as_deref()))
        })
    }
}

impl HumanName {
    /// The given names that are present, in order.
    pub fn given_names(&self) -> impl Iterator<Item = &str> {
        self.given.iter().flatten().flatten().map(String::as_str)
    }
}

macro_rules! resources {
    ($( $(#[$doc:meta])* $name:ident { $( $(#[$fdoc:meta])* $field:ident : $ty:ty = $json:literal ),* $(,)? } )*) => {
        $(
            $(#[$doc])*
            #[derive(Clone, Default, PartialEq, Serialize)]
            pub struct $name {
                /// `id`: the logical id in the system that sent it.
                #[serde(skip_serializing_if = "Option::is_none")]
                pub id: Option<String>,
                $(
                    $(#[$fdoc])*
                    #[serde(rename = $json, skip_serializing_if = "Option::is_none")]
                    pub $field: Option<$ty>,
                )*
                /// Every other element (`meta`, `text`, extensions, ...), as given.
                #[serde(flatten)]
                pub other: Map<String, Value>,
            }

            impl $name {
                /// The typed elements taken out of `other`, the rest kept.
                fn from_map(mut other: Map<String, Value>) -> Result<Self, serde_json::Error> {
                    Ok(Self {
                        id: take(&mut other, "id")?,
                        $( $field: take(&mut other, $json)?, )*
                        other,
                    })
                }
            }

            impl<'de> Deserialize<'de> for $name {
                fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                    Self::from_map(Map::deserialize(d)?).map_err(de::Error::custom)
                }
            }

            impl fmt::Debug for $name {
                fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.debug_struct(stringify!($name))
                        .field("has_id", &self.id.is_some())
                        $( .field(stringify!($field), &self.$field.as_ref().map(|_| "<redacted>")) )*
                        .field("other", &self.other.len())
                        .finish()
                }
            }
        )*

        /// A resource of one of the modelled types, or any other resource
        /// (kept as its JSON object).
        #[derive(Clone, PartialEq)]
        pub enum Resource {
            $( $(#[$doc])* $name($name), )*
            /// Any other R4 resource type: the object as given.
            Other(Map<String, Value>),
        }

        /// The resource types with a typed model here.
        pub const MODELLED_TYPES: &[&str] = &[ $( stringify!($name), )* ];

        impl Resource {
            /// Read a resource (a JSON object with a known R4 `resourceType`).
            /// Typed elements of the wrong JSON form are refused, naming the
            /// resource type only.
            pub fn from_value(value: Value) -> Result<Resource, FhirError> {
                let Value::Object(mut obj) = value else {
                    return Err(FhirError::NotAnObject);
                };
                let rt = match obj.get("resourceType") {
                    None => return Err(FhirError::MissingResourceType),
                    Some(Value::String(s)) => s.clone(),
                    Some(_) => return Err(FhirError::unknown_resource_type("")),
                };
                if !super::is_known_resource_type(&rt) {
                    return Err(FhirError::unknown_resource_type(&rt));
                }
                let typed = |rt: &str| FhirError::shape(rt, "(a typed element)", "its FHIR R4 JSON form");
                match rt.as_str() {
                    $(
                        stringify!($name) => {
                            obj.shift_remove("resourceType");
                            $name::from_map(obj)
                                .map(Resource::$name)
                                .map_err(|_| typed(&rt))
                        }
                    )*
                    _ => Ok(Resource::Other(obj)),
                }
            }

            /// The resource as JSON (`resourceType` first).
            pub fn to_value(&self) -> Value {
                let (rt, body) = match self {
                    $( Resource::$name(r) => (stringify!($name), serde_json::to_value(r)), )*
                    Resource::Other(obj) => return Value::Object(obj.clone()),
                };
                let mut out = Map::new();
                out.insert("resourceType".into(), Value::String(rt.into()));
                if let Ok(Value::Object(fields)) = body {
                    out.extend(fields);
                }
                Value::Object(out)
            }

            /// The resource type.
            pub fn resource_type(&self) -> &str {
                match self {
                    $( Resource::$name(_) => stringify!($name), )*
                    Resource::Other(obj) => obj.get("resourceType").and_then(Value::as_str).unwrap_or_default(),
                }
            }

            /// The logical id, if any.
            pub fn id(&self) -> Option<&str> {
                match self {
                    $( Resource::$name(r) => r.id.as_deref(), )*
                    Resource::Other(obj) => obj.get("id").and_then(Value::as_str),
                }
            }
        }
    };
}

resources! {
    /// `Patient`: whose record this is.
    Patient {
        /// `identifier`.
        identifier: Vec<Identifier> = "identifier",
        /// `name`.
        name: Vec<HumanName> = "name",
        /// `gender`.
        gender: String = "gender",
        /// `birthDate`.
        birth_date: String = "birthDate",
    }
    /// `Observation` (vital signs, results).
    Observation {
        /// `identifier`.
        identifier: Vec<Identifier> = "identifier",
        /// `status`.
        status: String = "status",
        /// `category`.
        category: Vec<CodeableConcept> = "category",
        /// `code`.
        code: CodeableConcept = "code",
        /// `subject`.
        subject: Reference = "subject",
        /// `effectiveDateTime`.
        effective_date_time: String = "effectiveDateTime",
        /// `effectivePeriod`.
        effective_period: Period = "effectivePeriod",
        /// `issued`.
        issued: String = "issued",
        /// `valueQuantity`.
        value_quantity: Quantity = "valueQuantity",
        /// `valueCodeableConcept`.
        value_codeable_concept: CodeableConcept = "valueCodeableConcept",
        /// `valueString`.
        value_string: String = "valueString",
    }
    /// `Condition` (problem list).
    Condition {
        /// `identifier`.
        identifier: Vec<Identifier> = "identifier",
        /// `clinicalStatus`.
        clinical_status: CodeableConcept = "clinicalStatus",
        /// `verificationStatus`.
        verification_status: CodeableConcept = "verificationStatus",
        /// `code`.
        code: CodeableConcept = "code",
        /// `subject`.
        subject: Reference = "subject",
        /// `onsetDateTime`.
        onset_date_time: String = "onsetDateTime",
        /// `onsetPeriod`.
        onset_period: Period = "onsetPeriod",
        /// `recordedDate`.
        recorded_date: String = "recordedDate",
    }
    /// `MedicationStatement`.
    MedicationStatement {
        /// `identifier`.
        identifier: Vec<Identifier> = "identifier",
        /// `status`.
        status: String = "status",
        /// `medicationCodeableConcept`.
        medication_codeable_concept: CodeableConcept = "medicationCodeableConcept",
        /// `medicationReference`.
        medication_reference: Reference = "medicationReference",
        /// `subject`.
        subject: Reference = "subject",
        /// `effectiveDateTime`.
        effective_date_time: String = "effectiveDateTime",
        /// `effectivePeriod`.
        effective_period: Period = "effectivePeriod",
        /// `dateAsserted`.
        date_asserted: String = "dateAsserted",
    }
    /// `MedicationRequest`.
    MedicationRequest {
        /// `identifier`.
        identifier: Vec<Identifier> = "identifier",
        /// `status`.
        status: String = "status",
        /// `intent`.
        intent: String = "intent",
        /// `medicationCodeableConcept`.
        medication_codeable_concept: CodeableConcept = "medicationCodeableConcept",
        /// `medicationReference`.
        medication_reference: Reference = "medicationReference",
        /// `subject`.
        subject: Reference = "subject",
        /// `authoredOn`.
        authored_on: String = "authoredOn",
    }
    /// `AllergyIntolerance`.
    AllergyIntolerance {
        /// `identifier`.
        identifier: Vec<Identifier> = "identifier",
        /// `clinicalStatus`.
        clinical_status: CodeableConcept = "clinicalStatus",
        /// `verificationStatus`.
        verification_status: CodeableConcept = "verificationStatus",
        /// `criticality`.
        criticality: String = "criticality",
        /// `code`.
        code: CodeableConcept = "code",
        /// `patient`.
        patient: Reference = "patient",
        /// `onsetDateTime`.
        onset_date_time: String = "onsetDateTime",
        /// `recordedDate`.
        recorded_date: String = "recordedDate",
    }
    /// `Immunization`.
    Immunization {
        /// `identifier`.
        identifier: Vec<Identifier> = "identifier",
        /// `status`.
        status: String = "status",
        /// `vaccineCode`.
        vaccine_code: CodeableConcept = "vaccineCode",
        /// `patient`.
        patient: Reference = "patient",
        /// `occurrenceDateTime`.
        occurrence_date_time: String = "occurrenceDateTime",
        /// `occurrenceString`.
        occurrence_string: String = "occurrenceString",
        /// `recorded`.
        recorded: String = "recorded",
    }
    /// `Procedure`.
    Procedure {
        /// `identifier`.
        identifier: Vec<Identifier> = "identifier",
        /// `status`.
        status: String = "status",
        /// `code`.
        code: CodeableConcept = "code",
        /// `subject`.
        subject: Reference = "subject",
        /// `performedDateTime`.
        performed_date_time: String = "performedDateTime",
        /// `performedPeriod`.
        performed_period: Period = "performedPeriod",
    }
    /// `DiagnosticReport`.
    DiagnosticReport {
        /// `identifier`.
        identifier: Vec<Identifier> = "identifier",
        /// `status`.
        status: String = "status",
        /// `category`.
        category: Vec<CodeableConcept> = "category",
        /// `code`.
        code: CodeableConcept = "code",
        /// `subject`.
        subject: Reference = "subject",
        /// `effectiveDateTime`.
        effective_date_time: String = "effectiveDateTime",
        /// `effectivePeriod`.
        effective_period: Period = "effectivePeriod",
        /// `issued`.
        issued: String = "issued",
        /// `result`.
        result: Vec<Reference> = "result",
        /// `conclusion`.
        conclusion: String = "conclusion",
    }
    /// `DocumentReference`.
    DocumentReference {
        /// `identifier`.
        identifier: Vec<Identifier> = "identifier",
        /// `status`.
        status: String = "status",
        /// `type` (a single CodeableConcept in R4).
        type_: CodeableConcept = "type",
        /// `subject`.
        subject: Reference = "subject",
        /// `date`.
        date: String = "date",
        /// `description`.
        description: String = "description",
    }
    /// `Encounter`.
    Encounter {
        /// `identifier`.
        identifier: Vec<Identifier> = "identifier",
        /// `status`.
        status: String = "status",
        /// `class`.
        class: Coding = "class",
        /// `type`.
        type_: Vec<CodeableConcept> = "type",
        /// `subject`.
        subject: Reference = "subject",
        /// `period`.
        period: Period = "period",
    }
    /// `CarePlan`.
    CarePlan {
        /// `identifier`.
        identifier: Vec<Identifier> = "identifier",
        /// `status`.
        status: String = "status",
        /// `intent`.
        intent: String = "intent",
        /// `category`.
        category: Vec<CodeableConcept> = "category",
        /// `title`.
        title: String = "title",
        /// `subject`.
        subject: Reference = "subject",
        /// `period`.
        period: Period = "period",
        /// `created`.
        created: String = "created",
    }
    /// `Consent`.
    Consent {
        /// `identifier`.
        identifier: Vec<Identifier> = "identifier",
        /// `status`.
        status: String = "status",
        /// `scope`.
        scope: CodeableConcept = "scope",
        /// `category`.
        category: Vec<CodeableConcept> = "category",
        /// `patient`.
        patient: Reference = "patient",
        /// `dateTime`.
        date_time: String = "dateTime",
    }
    /// `Provenance`: who contributed which entries.
    Provenance {
        /// `target`.
        target: Vec<Reference> = "target",
        /// `recorded`.
        recorded: String = "recorded",
    }
    /// `AuditEvent`: who read or wrote what.
    AuditEvent {
        /// `type`.
        type_: Coding = "type",
        /// `action`.
        action: String = "action",
        /// `recorded`.
        recorded: String = "recorded",
        /// `outcome`.
        outcome: String = "outcome",
    }
}

impl fmt::Debug for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Resource({})", self.resource_type())
    }
}

impl Resource {
    /// The business identifiers (`identifier[]`) of the modelled types that
    /// have them; empty for the others.
    pub fn identifiers(&self) -> &[Identifier] {
        let ids = match self {
            Resource::Patient(r) => &r.identifier,
            Resource::Observation(r) => &r.identifier,
            Resource::Condition(r) => &r.identifier,
            Resource::MedicationStatement(r) => &r.identifier,
            Resource::MedicationRequest(r) => &r.identifier,
            Resource::AllergyIntolerance(r) => &r.identifier,
            Resource::Immunization(r) => &r.identifier,
            Resource::Procedure(r) => &r.identifier,
            Resource::DiagnosticReport(r) => &r.identifier,
            Resource::DocumentReference(r) => &r.identifier,
            Resource::Encounter(r) => &r.identifier,
            Resource::CarePlan(r) => &r.identifier,
            Resource::Consent(r) => &r.identifier,
            Resource::Provenance(_) | Resource::AuditEvent(_) | Resource::Other(_) => &None,
        };
        ids.as_deref().unwrap_or_default()
    }

    /// `(system, value)` of each identifier that has both.
    pub fn business_identifiers(&self) -> impl Iterator<Item = (&str, &str)> {
        self.identifiers()
            .iter()
            .filter_map(|i| Some((i.system.as_deref()?, i.value.as_deref()?)))
    }

    /// The reference to the patient the resource is about (`subject` or `patient`).
    pub fn subject(&self) -> Option<&Reference> {
        match self {
            Resource::Observation(r) => r.subject.as_ref(),
            Resource::Condition(r) => r.subject.as_ref(),
            Resource::MedicationStatement(r) => r.subject.as_ref(),
            Resource::MedicationRequest(r) => r.subject.as_ref(),
            Resource::AllergyIntolerance(r) => r.patient.as_ref(),
            Resource::Immunization(r) => r.patient.as_ref(),
            Resource::Procedure(r) => r.subject.as_ref(),
            Resource::DiagnosticReport(r) => r.subject.as_ref(),
            Resource::DocumentReference(r) => r.subject.as_ref(),
            Resource::Encounter(r) => r.subject.as_ref(),
            Resource::CarePlan(r) => r.subject.as_ref(),
            Resource::Consent(r) => r.patient.as_ref(),
            _ => None,
        }
    }

    /// What a person would call it: the code's text or display.
    pub fn label(&self) -> Option<&str> {
        let concept = match self {
            Resource::Observation(r) => r.code.as_ref(),
            Resource::Condition(r) => r.code.as_ref(),
            Resource::MedicationStatement(r) => r.medication_codeable_concept.as_ref(),
            Resource::MedicationRequest(r) => r.medication_codeable_concept.as_ref(),
            Resource::AllergyIntolerance(r) => r.code.as_ref(),
            Resource::Immunization(r) => r.vaccine_code.as_ref(),
            Resource::Procedure(r) => r.code.as_ref(),
            Resource::DiagnosticReport(r) => r.code.as_ref(),
            Resource::DocumentReference(r) => r.type_.as_ref(),
            Resource::CarePlan(r) => return r.title.as_deref(),
            _ => None,
        };
        concept.and_then(CodeableConcept::label).or_else(|| {
            let reference = match self {
                Resource::MedicationStatement(r) => r.medication_reference.as_ref(),
                Resource::MedicationRequest(r) => r.medication_reference.as_ref(),
                _ => None,
            };
            reference.and_then(|r| r.display.as_deref())
        })
    }

    /// The status to show (`status`, or `clinicalStatus`'s label).
    pub fn status_label(&self) -> Option<&str> {
        match self {
            Resource::Observation(r) => r.status.as_deref(),
            Resource::Condition(r) => r.clinical_status.as_ref().and_then(CodeableConcept::label),
            Resource::MedicationStatement(r) => r.status.as_deref(),
            Resource::MedicationRequest(r) => r.status.as_deref(),
            Resource::AllergyIntolerance(r) => {
                r.clinical_status.as_ref().and_then(CodeableConcept::label)
            }
            Resource::Immunization(r) => r.status.as_deref(),
            Resource::Procedure(r) => r.status.as_deref(),
            Resource::DiagnosticReport(r) => r.status.as_deref(),
            _ => None,
        }
    }

    /// An Observation's value as text (quantity with unit, concept, string).
    pub fn value_text(&self) -> Option<String> {
        let Resource::Observation(o) = self else {
            return None;
        };
        if let Some(q) = &o.value_quantity {
            let value = q.value.as_ref().map(Number::to_string)?;
            return Some(match &q.unit {
                Some(unit) => format!("{value} {unit}"),
                None => value,
            });
        }
        o.value_codeable_concept
            .as_ref()
            .and_then(CodeableConcept::label)
            .map(str::to_string)
            .or_else(|| o.value_string.clone())
    }
}
