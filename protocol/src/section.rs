//! The sections of a record.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::label::PrivacyLabel;

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

/// The names of the labelled logs, `[section][label]` in declaration order
/// (`conditions~mental-health`).
macro_rules! labelled_names {
    ($($s:literal),*) => {
        [$([
            concat!($s, "~sexual-health"),
            concat!($s, "~hiv-sti"),
            concat!($s, "~mental-health"),
            concat!($s, "~substance-use"),
            concat!($s, "~genetic"),
            concat!($s, "~domestic-violence"),
            concat!($s, "~private"),
        ]),*]
    };
}

const LABELLED_NAMES: [[&str; PrivacyLabel::ALL.len()]; Section::ALL.len()] = labelled_names!(
    "demographics",
    "allergies",
    "medications",
    "conditions",
    "immunizations",
    "procedures",
    "encounters",
    "vitals",
    "labs",
    "documents",
    "care-plan",
    "wearables",
    "notes"
);

/// The separator of a labelled log's name (`conditions~mental-health`).
pub const LABEL_SEPARATOR: char = '~';

/// A log of a record: the ordered envelopes a relay keeps under one name.
/// Every section has its log; the wearables section has a second one for
/// its sealed sample chunks, which follows the section for keys and rights
/// (`wearables.chunks` → `wearables`). Each section also has one log per
/// privacy label (`conditions~mental-health`, docs/adr/0016): its own key
/// chain and epochs, readable only with the label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LogName {
    /// The section's own log (its automerge changes and snapshots).
    Section(Section),
    /// The wearables section's chunk log (`wearables.chunks`).
    WearableChunks,
    /// The section's entries carrying a privacy label (`SECTION~LABEL`).
    Labelled(Section, PrivacyLabel),
}

impl LogName {
    /// The name of the wearables chunk log.
    pub const WEARABLE_CHUNKS: &'static str = "wearables.chunks";

    /// Every log, in order: the sections' own, the chunk log, then the
    /// labelled logs (section by section, labels in their order).
    pub fn all() -> impl Iterator<Item = LogName> {
        Section::ALL
            .into_iter()
            .map(LogName::Section)
            .chain(std::iter::once(LogName::WearableChunks))
            .chain(Self::labelled())
    }

    /// Every log with a key chain of its own (sections and labelled logs),
    /// in [`LogName::all`] order.
    pub fn keyed() -> impl Iterator<Item = LogName> {
        Self::all().filter(|l| l.key_log() == *l)
    }

    /// Every labelled log.
    pub fn labelled() -> impl Iterator<Item = LogName> {
        Section::ALL.into_iter().flat_map(|s| {
            PrivacyLabel::ALL
                .into_iter()
                .map(move |l| LogName::Labelled(s, l))
        })
    }

    /// The log's name, as used on the wire, in envelope headers and paths.
    pub const fn as_str(self) -> &'static str {
        match self {
            LogName::Section(s) => s.as_str(),
            LogName::WearableChunks => Self::WEARABLE_CHUNKS,
            LogName::Labelled(s, l) => LABELLED_NAMES[s as usize][l as usize],
        }
    }

    /// The section whose rights the log follows (a labelled log: with its
    /// label as well).
    pub const fn section(self) -> Section {
        match self {
            LogName::Section(s) | LogName::Labelled(s, _) => s,
            LogName::WearableChunks => Section::Wearables,
        }
    }

    /// The privacy label of a labelled log.
    pub const fn label(self) -> Option<PrivacyLabel> {
        match self {
            LogName::Labelled(_, l) => Some(l),
            _ => None,
        }
    }

    /// The log whose key chain (and epochs) this log is sealed under: its
    /// own for sections and labelled logs, the section's for
    /// `wearables.chunks`.
    pub const fn key_log(self) -> LogName {
        match self {
            LogName::WearableChunks => LogName::Section(Section::Wearables),
            other => other,
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
#[error("unknown log; valid logs are the section names, wearables.chunks and SECTION~LABEL (a privacy label)")]
pub struct ParseLogNameError;

impl FromStr for LogName {
    type Err = ParseLogNameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == Self::WEARABLE_CHUNKS {
            return Ok(LogName::WearableChunks);
        }
        if let Some((section, label)) = s.split_once(LABEL_SEPARATOR) {
            let section = section.parse::<Section>().map_err(|_| ParseLogNameError)?;
            let label = label
                .parse::<PrivacyLabel>()
                .map_err(|_| ParseLogNameError)?;
            return Ok(LogName::Labelled(section, label));
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
        assert_eq!(LogName::all().count(), 13 + 1 + 13 * 7);
        assert_eq!(LogName::keyed().count(), 13 + 13 * 7);
        for s in Section::ALL {
            for l in PrivacyLabel::ALL {
                let log = LogName::Labelled(s, l);
                assert_eq!(log.as_str(), format!("{s}~{l}"), "the name table");
                assert_eq!((log.section(), log.label()), (s, Some(l)));
                assert_eq!(log.key_log(), log, "its own key chain");
                assert_eq!(crate::sharing::base_section(log.as_str()), s.as_str());
            }
        }
        assert_eq!(
            LogName::WearableChunks.key_log(),
            LogName::Section(Section::Wearables)
        );
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
            "conditions~",
            "~private",
            "conditions~Private",
            "conditions~mental-health~private",
            "wearables.chunks~private",
            "meds~private",
        ] {
            assert_eq!(bad.parse::<LogName>(), Err(ParseLogNameError), "{bad}");
        }
    }
}
