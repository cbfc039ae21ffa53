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

/// A log of a record: the ordered envelopes a relay keeps under one name.
/// Every section has its log; the wearables section has a second one for
/// its sealed sample chunks. Log names follow their base section for keys
/// and rights (`wearables.chunks` → `wearables`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LogName {
    /// The section's own log (its automerge changes and snapshots).
    Section(Section),
    /// The wearables section's chunk log (`wearables.chunks`).
    WearableChunks,
}

impl LogName {
    /// The name of the wearables chunk log.
    pub const WEARABLE_CHUNKS: &'static str = "wearables.chunks";

    /// Every log, in order: the sections' own, then the chunk log.
    pub fn all() -> impl Iterator<Item = LogName> {
        Section::ALL
            .into_iter()
            .map(LogName::Section)
            .chain(std::iter::once(LogName::WearableChunks))
    }

    /// The log's name, as used on the wire, in envelope headers and paths.
    pub const fn as_str(self) -> &'static str {
        match self {
            LogName::Section(s) => s.as_str(),
            LogName::WearableChunks => Self::WEARABLE_CHUNKS,
        }
    }

    /// The section whose keys and rights the log follows.
    pub const fn section(self) -> Section {
        match self {
            LogName::Section(s) => s,
            LogName::WearableChunks => Section::Wearables,
        }
    }
}

impl From<Section> for LogName {
    fn from(s: Section) -> Self {
        LogName::Section(s)
    }
}

/// Serialises as its name (e.g. `"wearables.chunks"`), as [`Section`] does.
impl Serialize for LogName {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl fmt::Display for LogName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that is not a log name. Does not echo the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown log; valid logs are the section names and wearables.chunks")]
pub struct ParseLogNameError;

impl FromStr for LogName {
    type Err = ParseLogNameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == Self::WEARABLE_CHUNKS {
            return Ok(LogName::WearableChunks);
        }
        s.parse::<Section>()
            .map(LogName::Section)
            .map_err(|_| ParseLogNameError)
    }
}

#[cfg(test)]
mod log_name_tests {
    use super::*;

    #[test]
    fn log_names_round_trip_and_follow_their_section() {
        for log in LogName::all() {
            assert_eq!(log.as_str().parse::<LogName>(), Ok(log));
            assert!(log.as_str().len() <= crate::crypto::envelope::MAX_SECTION_LEN);
        }
        assert_eq!(LogName::WearableChunks.section(), Section::Wearables);
        assert_eq!(
            serde_json::to_string(&LogName::WearableChunks)
                .ok()
                .as_deref(),
            Some("\"wearables.chunks\"")
        );
        assert_eq!(
            serde_json::to_string(&LogName::Section(Section::CarePlan))
                .ok()
                .as_deref(),
            Some("\"care-plan\"")
        );
        assert_eq!(
            crate::sharing::base_section(LogName::WearableChunks.as_str()),
            Section::Wearables.as_str()
        );
        for bad in [
            "",
            "meds",
            "Vitals",
            "wearables.",
            "wearables.other",
            "vitals.chunks",
        ] {
            assert_eq!(bad.parse::<LogName>(), Err(ParseLogNameError), "{bad}");
        }
    }
}
