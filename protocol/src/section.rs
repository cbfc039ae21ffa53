//! The sections of a record.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A section of a record: its own automerge document, the unit of sharing
/// and of encryption. Serialises as its name (e.g. `"care-plan"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Section {
    /// Patient, RelatedPerson.
    Demographics,
    /// AllergyIntolerance.
    Allergies,
    /// Medication statements, requests, administrations, dispenses.
    Medications,
    /// Condition.
    Conditions,
    /// Immunization, ImmunizationRecommendation.
    Immunizations,
    /// Procedure.
    Procedures,
    /// Encounter, EpisodeOfCare.
    Encounters,
    /// Observations in the vital-signs category.
    Vitals,
    /// Other observations, diagnostic reports, specimens.
    Labs,
    /// DocumentReference, Composition, Consent, Media, Provenance, AuditEvent.
    Documents,
    /// CarePlan, Goal, CareTeam, ServiceRequest.
    CarePlan,
    /// Wearable measurements (filled by the wearables module, never by FHIR import).
    Wearables,
    /// The patient's own notes (added by an explicit call, never by FHIR import).
    Notes,
}

impl Section {
    /// Every section, in order.
    pub const ALL: [Section; 13] = [
        Section::Demographics,
        Section::Allergies,
        Section::Medications,
        Section::Conditions,
        Section::Immunizations,
        Section::Procedures,
        Section::Encounters,
        Section::Vitals,
        Section::Labs,
        Section::Documents,
        Section::CarePlan,
        Section::Wearables,
        Section::Notes,
    ];

    /// The section's name, as used in documents, files and on the wire.
    pub const fn as_str(self) -> &'static str {
        match self {
            Section::Demographics => "demographics",
            Section::Allergies => "allergies",
            Section::Medications => "medications",
            Section::Conditions => "conditions",
            Section::Immunizations => "immunizations",
            Section::Procedures => "procedures",
            Section::Encounters => "encounters",
            Section::Vitals => "vitals",
            Section::Labs => "labs",
            Section::Documents => "documents",
            Section::CarePlan => "care-plan",
            Section::Wearables => "wearables",
            Section::Notes => "notes",
        }
    }

    /// Whether FHIR import routes resources here (`satchel_core::fhir::section_for`).
    /// Wearables and notes are filled only by explicit calls.
    pub const fn is_routed(self) -> bool {
        !matches!(self, Section::Wearables | Section::Notes)
    }
}

impl fmt::Display for Section {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that is not a section name. Does not echo the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown section; valid sections are: demographics, allergies, medications, conditions, immunizations, procedures, encounters, vitals, labs, documents, care-plan, wearables, notes")]
pub struct ParseSectionError;

impl FromStr for Section {
    type Err = ParseSectionError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Section::ALL
            .into_iter()
            .find(|x| x.as_str() == s)
            .ok_or(ParseSectionError)
    }
}
