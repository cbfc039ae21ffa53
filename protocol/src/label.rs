//! Privacy labels (issue 18, docs/adr/0016-privacy-labels.md): the small,
//! fixed set of labels a sensitive entry can carry, and how each maps to
//! the HL7 v3 sensitivity codes FHIR carries in `meta.security`. A labelled
//! entry lives in a log of its own (section × label) under its own key, so
//! a grant that does not name the label cannot decrypt it; this module is
//! only the vocabulary both ends agree on.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The HL7 v3 ActCode system of the sensitivity codes.
pub const V3_ACT_CODE: &str = "http://terminology.hl7.org/CodeSystem/v3-ActCode";
/// Satchel's own code system, for the one label HL7 has no code for
/// (`private`: only the patient's devices and managers).
pub const SATCHEL_LABELS: &str = "https://satchel.health/fhir/CodeSystem/privacy-label";

/// A privacy label. Serialises as its name (e.g. `"mental-health"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PrivacyLabel {
    /// Sexuality and reproductive health (v3 `SEX`).
    SexualHealth,
    /// HIV/AIDS and sexually transmitted infections (v3 `HIV`, `STD`).
    HivSti,
    /// Mental and behavioural health (v3 `PSY`, `BH`, `PSYTHPN`).
    MentalHealth,
    /// Alcohol and drug use (v3 `ETH`, `ETHUD`, `OPIOIDUD`).
    SubstanceUse,
    /// Genetic information (v3 `GDIS`).
    Genetic,
    /// Sexual assault, abuse or domestic violence (v3 `SDV`).
    DomesticViolence,
    /// Nobody but the patient's own devices and managers.
    Private,
}

impl PrivacyLabel {
    /// Every label, in order.
    pub const ALL: [PrivacyLabel; 7] = [
        PrivacyLabel::SexualHealth,
        PrivacyLabel::HivSti,
        PrivacyLabel::MentalHealth,
        PrivacyLabel::SubstanceUse,
        PrivacyLabel::Genetic,
        PrivacyLabel::DomesticViolence,
        PrivacyLabel::Private,
    ];

    /// The label's name, as on the command line, in grants and log names.
    pub const fn as_str(self) -> &'static str {
        match self {
            PrivacyLabel::SexualHealth => "sexual-health",
            PrivacyLabel::HivSti => "hiv-sti",
            PrivacyLabel::MentalHealth => "mental-health",
            PrivacyLabel::SubstanceUse => "substance-use",
            PrivacyLabel::Genetic => "genetic",
            PrivacyLabel::DomesticViolence => "domestic-violence",
            PrivacyLabel::Private => "private",
        }
    }

    /// The `meta.security` coding written on export: (system, code,
    /// display). The first code of [`PrivacyLabel::codes`].
    pub const fn coding(self) -> (&'static str, &'static str, &'static str) {
        match self {
            PrivacyLabel::SexualHealth => (
                V3_ACT_CODE,
                "SEX",
                "sexuality and reproductive health information sensitivity",
            ),
            PrivacyLabel::HivSti => (V3_ACT_CODE, "HIV", "HIV/AIDS information sensitivity"),
            PrivacyLabel::MentalHealth => (
                V3_ACT_CODE,
                "PSY",
                "psychiatry disorder information sensitivity",
            ),
            PrivacyLabel::SubstanceUse => (
                V3_ACT_CODE,
                "ETH",
                "substance abuse information sensitivity",
            ),
            PrivacyLabel::Genetic => (
                V3_ACT_CODE,
                "GDIS",
                "genetic disease information sensitivity",
            ),
            PrivacyLabel::DomesticViolence => (
                V3_ACT_CODE,
                "SDV",
                "sexual assault, abuse, or domestic violence information sensitivity",
            ),
            PrivacyLabel::Private => (SATCHEL_LABELS, "private", "private to the patient"),
        }
    }

    /// Every (system, code) that means this label on import.
    pub const fn codes(self) -> &'static [(&'static str, &'static str)] {
        match self {
            PrivacyLabel::SexualHealth => &[(V3_ACT_CODE, "SEX")],
            PrivacyLabel::HivSti => &[(V3_ACT_CODE, "HIV"), (V3_ACT_CODE, "STD")],
            PrivacyLabel::MentalHealth => &[
                (V3_ACT_CODE, "PSY"),
                (V3_ACT_CODE, "BH"),
                (V3_ACT_CODE, "PSYTHPN"),
            ],
            PrivacyLabel::SubstanceUse => &[
                (V3_ACT_CODE, "ETH"),
                (V3_ACT_CODE, "ETHUD"),
                (V3_ACT_CODE, "OPIOIDUD"),
            ],
            PrivacyLabel::Genetic => &[(V3_ACT_CODE, "GDIS")],
            PrivacyLabel::DomesticViolence => &[(V3_ACT_CODE, "SDV")],
            PrivacyLabel::Private => &[(SATCHEL_LABELS, "private")],
        }
    }

    /// The label a `meta.security` coding means, if any (other security
    /// codings, such as confidentiality `R`, are not labels).
    pub fn from_coding(system: &str, code: &str) -> Option<PrivacyLabel> {
        Self::ALL
            .into_iter()
            .find(|l| l.codes().iter().any(|&(s, c)| s == system && c == code))
    }
}

impl fmt::Display for PrivacyLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that is not a label name. Does not echo the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown privacy label; valid labels are: sexual-health, hiv-sti, mental-health, substance-use, genetic, domestic-violence, private")]
pub struct ParseLabelError;

impl FromStr for PrivacyLabel {
    type Err = ParseLabelError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|l| l.as_str() == s)
            .ok_or(ParseLabelError)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_round_trip_by_name_and_serde() {
        for l in PrivacyLabel::ALL {
            assert_eq!(l.as_str().parse::<PrivacyLabel>(), Ok(l));
            let json = serde_json::to_string(&l).ok();
            assert_eq!(json, Some(format!("\"{}\"", l.as_str())));
            // Short enough for a log name (section + separator + label).
            assert!(l.as_str().len() <= 20);
        }
        for bad in ["", "Private", "mental_health", "hiv", "psy"] {
            assert_eq!(bad.parse::<PrivacyLabel>(), Err(ParseLabelError), "{bad}");
        }
    }

    #[test]
    fn each_code_means_one_label_and_export_codes_import_back() {
        let mut seen = std::collections::BTreeSet::new();
        for l in PrivacyLabel::ALL {
            let (system, code, display) = l.coding();
            assert!(!display.is_empty());
            assert_eq!(
                l.codes()[0],
                (system, code),
                "{l}: export writes its first code"
            );
            for &(s, c) in l.codes() {
                assert!(seen.insert((s, c)), "{c} maps to two labels");
                assert_eq!(PrivacyLabel::from_coding(s, c), Some(l));
            }
        }
        // Not labels: confidentiality codes, unknown systems, other codes.
        let confidentiality = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality";
        assert_eq!(PrivacyLabel::from_coding(confidentiality, "R"), None);
        assert_eq!(PrivacyLabel::from_coding("urn:other", "HIV"), None);
        assert_eq!(PrivacyLabel::from_coding(V3_ACT_CODE, "TBOO"), None);
    }
}
