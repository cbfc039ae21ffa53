//! FHIR import and export on a profile: de-duplication of re-sent
//! resources, the wrong-patient check, and the collection and IPS exports.
//! The rules are in `docs/fhir.md`; the FHIR side (reading, references,
//! the document shapes) is in [`crate::fhir`].
//!
//! Import is all or nothing: every resource is checked, matched and planned
//! before the record is touched; then the new entries and new versions are
//! written and sealed in one durable commit.

use std::collections::HashMap;
use std::fmt;
use std::io::Read;

use serde_json::Value;

use super::{now_ms, Added, Profile, ProfileError, WriteBatch};
use crate::fhir::import::{read_resources, IncomingResource};
use crate::fhir::model::{HumanName, Patient, Resource};
use crate::fhir::refs::{source_id_for, Addressed, Resolver};
use crate::fhir::{self, FhirError};
use crate::ids::EntryId;
use crate::record::{Entry, NewEntry, RecordError, Section};
use crate::store::Store;

/// Why an imported Patient was judged to be someone else. Names the kind of
/// difference only, never a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatientMismatch {
    /// Both have identifiers in a shared system, with no value in common.
    Identifier,
    /// No shared identifier system; the birth dates differ.
    BirthDate,
    /// No shared identifier system; the names (family and given) differ.
    Name,
    /// No shared identifier, and the incoming Patient lacks a name (with a
    /// family name) or a birth date to compare instead.
    NothingToCompare,
}

impl fmt::Display for PatientMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PatientMismatch::Identifier => "identifier differs",
            PatientMismatch::BirthDate => "birth date differs",
            PatientMismatch::Name => "name differs",
            PatientMismatch::NothingToCompare => {
                "no shared identifier, and no name and birth date to compare"
            }
        })
    }
}

/// Errors of import and export. Messages carry indexes, resource types,
/// section names and entry ids only.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The input is about another patient: nothing was imported.
    #[error(
        "the Bundle's Patient does not match this record's patient ({0}); nothing was imported"
    )]
    WrongPatient(PatientMismatch),
    /// A resource of the input was refused.
    #[error("resource {index} of the input: {reason}")]
    InInput {
        /// 0-based position among the input's resources.
        index: usize,
        /// Why (part of the message, so not also a `source`).
        reason: FhirError,
    },
    /// A re-sent resource now maps to another section than its entry.
    #[error("resource {index} of the input updates entry {entry} of the {section} section but now belongs elsewhere; nothing was imported")]
    MovesSection {
        /// 0-based position among the input's resources.
        index: usize,
        /// The entry it matched.
        entry: EntryId,
        /// That entry's section.
        section: Section,
    },
    /// A contribution (provider push) needs the record's Patient to check
    /// the input against.
    #[error("this device cannot see the record's Patient (the grant must include the demographics section), so the input's patient cannot be checked; nothing was imported")]
    CannotCheckPatient,
    /// The IPS needs the record's Patient.
    #[error("the record has no Patient yet; import one before exporting a patient summary")]
    NoPatient,
    /// Reading the input failed.
    #[error("cannot read the input")]
    Io,
    /// The profile refused.
    #[error(transparent)]
    Profile(#[from] ProfileError),
}

impl From<RecordError> for ImportError {
    fn from(e: RecordError) -> Self {
        ImportError::Profile(ProfileError::Record(e))
    }
}

/// What an import did, entry by entry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportReport {
    /// New entries, in input order.
    pub added: Vec<Added>,
    /// Entries that got a new version (a re-sent, changed resource).
    pub updated: Vec<Added>,
    /// Entries re-sent identical: nothing written.
    pub unchanged: Vec<Added>,
    /// Every entry the input went to (new, updated or unchanged), in input
    /// order; a resource repeated within the input counts once.
    pub entries: Vec<Added>,
    /// References between the input's resources that resolved to entries.
    pub references_resolved: usize,
    /// References that did not resolve to an entry of the record (kept as
    /// written; e.g. to a Practitioner, which has no section).
    pub references_unresolved: usize,
    /// Bundle entries of a type no section holds (Practitioner,
    /// Organization, ...): (input index, resource type), not imported.
    pub skipped: Vec<(usize, String)>,
}

/// What to do with one incoming resource.
enum Plan {
    Add(usize),
    Amend(EntryId, Section),
    Same(EntryId, Section),
}

/// Normalised for comparison: trimmed, lowercase.
fn norm(s: &str) -> String {
    s.trim().to_lowercase()
}

fn name_keys(names: Option<&Vec<HumanName>>) -> Vec<(String, Vec<String>)> {
    names
        .into_iter()
        .flatten()
        .filter_map(|n| {
            let family = norm(n.family.as_deref()?);
            let given: Vec<String> = n.given_names().map(norm).collect();
            Some((family, given))
        })
        .collect()
}

/// Whether `incoming` is the same person as `ours`: by identifier
/// (system + value) where they share a system, else by birth date and name
/// (the family name and every given name of one incoming name found in one
/// of ours, case-insensitive).
pub fn same_patient(ours: &Patient, incoming: &Patient) -> Result<(), PatientMismatch> {
    let ids = |p: &Patient| -> Vec<(String, String)> {
        p.identifier
            .iter()
            .flatten()
            .filter_map(|i| Some((i.system.clone()?, i.value.clone()?)))
            .collect()
    };
    let (a, b) = (ids(ours), ids(incoming));
    if a.iter().any(|x| b.contains(x)) {
        return Ok(());
    }
    if a.iter().any(|(sa, _)| b.iter().any(|(sb, _)| sa == sb)) {
        return Err(PatientMismatch::Identifier);
    }
    let (na, nb) = (
        name_keys(ours.name.as_ref()),
        name_keys(incoming.name.as_ref()),
    );
    // Without a shared identifier, both a name and a birth date are needed.
    if nb.is_empty() || incoming.birth_date.is_none() {
        return Err(PatientMismatch::NothingToCompare);
    }
    if ours.birth_date != incoming.birth_date {
        return Err(PatientMismatch::BirthDate);
    }
    let matches = nb.iter().any(|(fb, gb)| {
        na.iter()
            .any(|(fa, ga)| fa == fb && gb.iter().all(|g| ga.contains(g)))
    });
    if !matches {
        return Err(PatientMismatch::Name);
    }
    Ok(())
}

fn as_patient(value: &Value) -> Option<Patient> {
    match Resource::from_value(value.clone()).ok()? {
        Resource::Patient(p) => Some(p),
        _ => None,
    }
}

impl<S: Store> Profile<S> {
    /// A provider's contribution: every Patient of the input must match the
    /// record's Patient (which must be known here); the Patient resources
    /// themselves are not imported (the patient's own demographics stay
    /// theirs). Everything else imports as [`Profile::import_resources`].
    pub fn import_contribution(
        &mut self,
        incoming: Vec<IncomingResource>,
        source_system: Option<&str>,
    ) -> Result<ImportReport, ImportError> {
        if self.record_patient().is_none() {
            return Err(ImportError::CannotCheckPatient);
        }
        self.check_patients(&incoming)?;
        let rest = incoming
            .into_iter()
            .filter(|r| r.resource.get("resourceType").and_then(Value::as_str) != Some("Patient"))
            .collect();
        self.import_resources(rest, source_system)
    }

    /// The record's Patient: the earliest created visible Patient entry of
    /// the demographics section.
    pub fn record_patient(&self) -> Option<Entry> {
        let doc = self.record.section(Section::Demographics)?;
        doc.entries(false)
            .into_iter()
            .filter(|e| e.resource_type == "Patient")
            .min_by_key(|e| (e.created_at_ms, e.id))
    }

    /// Import FHIR from a reader (one resource or a Bundle, streamed; see
    /// [`crate::fhir::import`]); `progress` is called with the number of
    /// resources read so far. Then as [`Profile::import_resources`].
    pub fn import_reader<R: Read>(
        &mut self,
        reader: R,
        source_system: Option<&str>,
        mut progress: impl FnMut(usize),
    ) -> Result<ImportReport, ImportError> {
        let mut incoming = Vec::new();
        read_resources(reader, |r| {
            // A cheap check as we go, so that a file of something else
            // stops early; the full checks run in import_resources.
            let rt = r.resource.get("resourceType").and_then(Value::as_str);
            if !rt.is_some_and(fhir::is_known_resource_type) {
                fhir::summarize(&r.resource)?;
            }
            incoming.push(r);
            progress(incoming.len());
            Ok(())
        })
        .map_err(|source| ImportError::InInput {
            index: incoming.len(),
            reason: source,
        })?;
        self.import_resources(incoming, source_system)
    }

    /// Import resources (e.g. a provider's push, or a Bundle read with
    /// [`crate::fhir::import`]) from `source_system` (None: the patient's
    /// own input). A resource matching an entry (same source system and
    /// `Type/id`, or a shared business identifier in the same section and
    /// type) becomes a new version of it, or nothing if identical; the rest
    /// are added. A Patient that does not match the record's Patient
    /// refuses the whole input. All or nothing; durable when this returns.
    pub fn import_resources(
        &mut self,
        incoming: Vec<IncomingResource>,
        source_system: Option<&str>,
    ) -> Result<ImportReport, ImportError> {
        self.check_writable()?;
        let mut report = ImportReport::default();
        // 1. Check every resource and find its section; Bundle entries of
        // types without a section are skipped.
        let mut sections = Vec::with_capacity(incoming.len());
        let mut kept = Vec::with_capacity(incoming.len());
        for r in incoming {
            let fail = |source| ImportError::InInput {
                index: r.index,
                reason: source,
            };
            fhir::summarize(&r.resource).map_err(fail)?;
            match fhir::section_for(&r.resource) {
                Ok(section) => {
                    sections.push(section);
                    kept.push(r);
                }
                Err(FhirError::NoSection(rt)) if r.in_bundle => report.skipped.push((r.index, rt)),
                Err(source) => return Err(fail(source)),
            }
        }
        let incoming = kept;
        // 2. May this identity write every section the input goes to
        // (client-side enforcement), then the wrong-patient check.
        for section in &sections {
            self.check_may_write(*section)?;
        }
        self.check_patients(&incoming)?;
        // 3. Match each resource to an entry (source, then identifier).
        let identifiers = self.identifier_index(&incoming, &sections);
        let mut plans = Vec::with_capacity(incoming.len());
        let mut new_entries: Vec<NewEntry> = Vec::new();
        // Later resources of the input with the same key update earlier ones.
        let mut pending: HashMap<String, usize> = HashMap::new();
        let author = self.identity.id();
        let at = now_ms();
        for (r, section) in incoming.iter().zip(&sections) {
            let rt = r
                .resource
                .get("resourceType")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let source_id = source_id_for(&r.resource, r.full_url.as_deref());
            let ids = business_identifiers(&r.resource);
            let keys: Vec<String> = ids
                .iter()
                .map(|(s, v)| format!("{rt}|{s}|{v}"))
                .chain(
                    source_system
                        .zip(source_id.as_deref())
                        .map(|(s, i)| format!("src|{s}|{i}")),
                )
                .collect();
            if let Some(&at_pos) = keys.iter().find_map(|k| pending.get(k)) {
                // A duplicate within this input: the last one wins.
                if let Some(slot) = new_entries.get_mut(at_pos) {
                    slot.resource = r.resource.clone();
                }
                plans.push(Plan::Add(at_pos));
                continue;
            }
            let by_source = source_system
                .zip(source_id.as_deref())
                .and_then(|(s, i)| self.record.section(*section)?.find_by_source(s, i));
            let by_identifier = || {
                ids.iter().find_map(|(s, v)| {
                    identifiers
                        .get(&(*section, rt.to_string(), s.clone(), v.clone()))
                        .copied()
                })
            };
            let matched = by_source
                .and_then(|id| self.record.entry(id))
                .filter(|e| !e.is_hidden())
                .or_else(|| by_identifier().and_then(|id| self.record.entry(id)));
            match matched {
                Some(existing) if existing.resource_type == rt => {
                    if existing.section != *section {
                        return Err(ImportError::MovesSection {
                            index: r.index,
                            entry: existing.id,
                            section: existing.section,
                        });
                    }
                    if existing.current.resource == r.resource {
                        plans.push(Plan::Same(existing.id, existing.section));
                    } else {
                        plans.push(Plan::Amend(existing.id, existing.section));
                    }
                }
                _ => {
                    for k in keys {
                        pending.insert(k, new_entries.len());
                    }
                    plans.push(Plan::Add(new_entries.len()));
                    new_entries.push(NewEntry {
                        resource: r.resource.clone(),
                        author,
                        recorded_at_ms: at,
                        source_system: source_system.map(str::to_string),
                        source_id,
                    });
                }
            }
        }
        // 4. Write: amendments, then the new entries as one change per section.
        let written = (|| -> Result<Vec<(Section, EntryId)>, RecordError> {
            for (plan, r) in plans.iter().zip(&incoming) {
                if let Plan::Amend(id, _) = plan {
                    self.record.amend(*id, r.resource.clone(), author, at)?;
                }
            }
            self.record.add_many(new_entries)
        })();
        let added = match written {
            Ok(a) => a,
            Err(e) => {
                // The in-memory record may be ahead of the store now.
                self.poisoned = true;
                return Err(e.into());
            }
        };
        let mut seen_new = std::collections::HashSet::new();
        let mut touched = Vec::with_capacity(plans.len());
        for plan in &plans {
            touched.push(match plan {
                Plan::Add(i) => added.get(*i).map(|(_, e)| *e),
                Plan::Amend(e, _) | Plan::Same(e, _) => Some(*e),
            });
            match plan {
                Plan::Add(i) => {
                    if let Some((section, entry)) = added.get(*i) {
                        if seen_new.insert(*i) {
                            let a = Added {
                                section: *section,
                                entry: *entry,
                            };
                            report.entries.push(a.clone());
                            report.added.push(a);
                        }
                    }
                }
                Plan::Amend(entry, section) => {
                    let a = Added {
                        section: *section,
                        entry: *entry,
                    };
                    report.entries.push(a.clone());
                    report.updated.push(a);
                }
                Plan::Same(entry, section) => {
                    let a = Added {
                        section: *section,
                        entry: *entry,
                    };
                    report.entries.push(a.clone());
                    report.unchanged.push(a);
                }
            }
        }
        for a in report.added.iter().chain(&report.updated) {
            self.ensure_section_state(a.section)?;
        }
        self.persist(WriteBatch::new())?;
        let touched: Vec<EntryId> = touched.into_iter().flatten().collect();
        let (resolved, unresolved) = if touched.len() == incoming.len() {
            self.count_references(&incoming, &touched, source_system)
        } else {
            (0, 0)
        };
        report.references_resolved = resolved;
        report.references_unresolved = unresolved;
        Ok(report)
    }

    /// Refuse input whose Patients are not the record's patient (or, with
    /// no record Patient yet, not all the first incoming Patient).
    fn check_patients(&self, incoming: &[IncomingResource]) -> Result<(), ImportError> {
        let patients: Vec<Patient> = incoming
            .iter()
            .filter(|r| r.resource.get("resourceType").and_then(Value::as_str) == Some("Patient"))
            .map(|r| {
                as_patient(&r.resource).ok_or(ImportError::InInput {
                    index: r.index,
                    reason: FhirError::shape(
                        "Patient",
                        "(a typed element)",
                        "its FHIR R4 JSON form",
                    ),
                })
            })
            .collect::<Result<_, _>>()?;
        let ours = match self.record_patient() {
            Some(e) => as_patient(&e.current.resource),
            None => None,
        };
        // No Patient in the record yet: the first incoming one becomes it.
        let (reference, rest) = match (&ours, patients.split_first()) {
            (Some(ours), _) => (ours, patients.as_slice()),
            (None, Some((first, rest))) => (first, rest),
            (None, None) => return Ok(()),
        };
        for p in rest {
            same_patient(reference, p).map_err(ImportError::WrongPatient)?;
        }
        Ok(())
    }

    /// (section, type, identifier system, value) -> visible entry, for the
    /// sections and types the input has identifiers in.
    fn identifier_index(
        &self,
        incoming: &[IncomingResource],
        sections: &[Section],
    ) -> HashMap<(Section, String, String, String), EntryId> {
        let mut wanted: Vec<Section> = incoming
            .iter()
            .zip(sections)
            .filter(|(r, _)| {
                r.resource
                    .get("identifier")
                    .and_then(Value::as_array)
                    .is_some_and(|a| !a.is_empty())
            })
            .map(|(_, s)| *s)
            .collect();
        wanted.sort();
        wanted.dedup();
        let mut index = HashMap::new();
        for section in wanted {
            let Some(doc) = self.record.section(section) else {
                continue;
            };
            for e in doc.entries(false) {
                for (s, v) in business_identifiers(&e.current.resource) {
                    index
                        .entry((section, e.resource_type.clone(), s, v))
                        .or_insert(e.id);
                }
            }
        }
        index
    }

    /// How many references in the input resolve to entries of the record.
    fn count_references(
        &self,
        incoming: &[IncomingResource],
        touched: &[EntryId],
        source_system: Option<&str>,
    ) -> (usize, usize) {
        // The entries of this input (addresses known without reading the
        // record back) and the record's Patient.
        let patient = self.record_patient();
        let addressed = incoming
            .iter()
            .zip(touched)
            .map(|(r, entry)| Addressed {
                entry: *entry,
                source_system,
                source_id: None,
                resource_type: r
                    .resource
                    .get("resourceType")
                    .and_then(Value::as_str)
                    .unwrap_or_default(),
                id: r.resource.get("id").and_then(Value::as_str),
            })
            .chain(patient.iter().map(|p| Addressed {
                entry: p.id,
                source_system: p.source_system.as_deref(),
                source_id: p.source_id.as_deref(),
                resource_type: "Patient",
                id: p.current.resource.get("id").and_then(Value::as_str),
            }));
        let urls: Vec<(Option<&str>, EntryId)> = incoming
            .iter()
            .zip(touched)
            .map(|(r, e)| (r.full_url.as_deref(), *e))
            .collect();
        let resolver = Resolver::new(addressed);
        let mut counts = (0, 0);
        for r in incoming {
            for_each_reference(&r.resource, &mut |reference| {
                if reference.starts_with('#') {
                    return;
                }
                let by_url = urls.iter().any(|(u, _)| *u == Some(reference));
                if by_url || resolver.resolve(source_system, reference).is_some() {
                    counts.0 += 1;
                } else {
                    counts.1 += 1;
                }
            });
        }
        counts
    }

    /// The visible entries of `sections` (all sections if None), in section
    /// then entry order.
    pub fn visible_entries(&self, sections: Option<&[Section]>) -> Vec<Entry> {
        self.record
            .sections
            .values()
            .filter(|d| sections.is_none_or(|s| s.contains(&d.section())))
            .flat_map(|d| d.entries(false))
            .collect()
    }

    /// A FHIR `collection` Bundle of the visible entries of `sections` (all
    /// if None), each resource exactly as stored (see [`fhir::export`]).
    pub fn export_fhir(&self, sections: Option<&[Section]>) -> Result<Value, ImportError> {
        self.export_fhir_of(self.visible_entries(sections), sections)
    }

    /// [`Profile::export_fhir`] of `entries` (the visible entries of
    /// `sections`, possibly annotated by the caller).
    pub(crate) fn export_fhir_of(
        &self,
        entries: Vec<Entry>,
        sections: Option<&[Section]>,
    ) -> Result<Value, ImportError> {
        let mut bundle = fhir::export::collection_bundle(
            entries,
            EntryId::random().0,
            time::OffsetDateTime::now_utc(),
        );
        let incomplete = self.incomplete_among(sections)?;
        fhir::export::mark_incomplete(&mut bundle, &incomplete);
        Ok(bundle)
    }

    /// Names of the sections among `sections` (all when `None`) known to be
    /// incomplete on this device.
    fn incomplete_among(&self, sections: Option<&[Section]>) -> Result<Vec<String>, ImportError> {
        let mut names: Vec<String> = self
            .incomplete()?
            .into_iter()
            .map(|i| i.log.section())
            .filter(|section| sections.is_none_or(|list| list.contains(section)))
            .map(|section| section.as_str().to_string())
            .collect();
        names.dedup();
        Ok(names)
    }

    /// The International Patient Summary as a FHIR `document` Bundle (see
    /// [`fhir::ips`]). Needs the record's Patient.
    pub fn export_ips(&self) -> Result<Value, ImportError> {
        // Only the sections the summary draws on are read.
        self.export_ips_of(self.visible_entries(Some(&fhir::ips::IpsSection::RECORD_SECTIONS)))
    }

    /// [`Profile::export_ips`] of `entries` (the visible entries of the
    /// summary's sections, possibly annotated by the caller).
    pub(crate) fn export_ips_of(&self, entries: Vec<Entry>) -> Result<Value, ImportError> {
        let patient = self.record_patient().ok_or(ImportError::NoPatient)?;
        let mut doc = fhir::ips::ips_document(
            patient,
            entries,
            fhir::ips::DocumentIds {
                bundle: EntryId::random().0,
                composition: EntryId::random().0,
            },
            time::OffsetDateTime::now_utc(),
        );
        let incomplete = self.incomplete_among(Some(&fhir::ips::IpsSection::RECORD_SECTIONS))?;
        fhir::export::mark_incomplete(&mut doc, &incomplete);
        Ok(doc)
    }
}

/// `(system, value)` of each `identifier[]` that has both (read straight
/// from the JSON: this runs for every resource of every import).
fn business_identifiers(resource: &Value) -> Vec<(String, String)> {
    let Some(list) = resource.get("identifier").and_then(Value::as_array) else {
        return Vec::new();
    };
    list.iter()
        .filter_map(|i| {
            let system = i.get("system")?.as_str()?;
            let value = i.get("value")?.as_str()?;
            Some((system.to_string(), value.to_string()))
        })
        .collect()
}

/// Call `f` with every `reference` string of a Reference in `value`
/// (narratives skipped).
pub(crate) fn for_each_reference(value: &Value, f: &mut impl FnMut(&str)) {
    match value {
        Value::Array(items) => items.iter().for_each(|v| for_each_reference(v, f)),
        Value::Object(obj) => {
            if let Some(Value::String(r)) = obj.get("reference") {
                f(r);
            }
            for (k, v) in obj {
                if k != "div" {
                    for_each_reference(v, f);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::json;

    use super::*;

    fn patient(ids: Value, family: &str, given: &[&str], birth: Option<&str>) -> Patient {
        let mut v = json!({"resourceType": "Patient", "identifier": ids,
            "name": [{"family": family, "given": given}]});
        if let Some(b) = birth {
            v["birthDate"] = json!(b);
        }
        as_patient(&v).unwrap()
    }

    #[test]
    fn same_patient_rules() {
        let nhs = |v: &str| json!([{"system": "https://nhs.example", "value": v}]);
        let mrn = |v: &str| json!([{"system": "https://gp.example/mrn", "value": v}]);
        let ours = patient(nhs("1"), "Jones", &["Ann", "Marie"], Some("1970-03-02"));
        // A shared identifier decides, whatever the name.
        assert_eq!(
            same_patient(&ours, &patient(nhs("1"), "Smith", &[], None)),
            Ok(())
        );
        // Same system, other value: someone else, even with the same name.
        assert_eq!(
            same_patient(
                &ours,
                &patient(nhs("2"), "Jones", &["Ann"], Some("1970-03-02"))
            ),
            Err(PatientMismatch::Identifier)
        );
        // No shared system: name and birth date.
        assert_eq!(
            same_patient(
                &ours,
                &patient(mrn("7"), " jones", &["ann"], Some("1970-03-02"))
            ),
            Ok(())
        );
        assert_eq!(
            same_patient(
                &ours,
                &patient(mrn("7"), "Jones", &["Ann"], Some("1970-03-03"))
            ),
            Err(PatientMismatch::BirthDate)
        );
        assert_eq!(
            same_patient(
                &ours,
                &patient(mrn("7"), "Jones", &["Bea"], Some("1970-03-02"))
            ),
            Err(PatientMismatch::Name)
        );
        assert_eq!(
            same_patient(&ours, &patient(mrn("7"), "Jones", &["Ann"], None)),
            Err(PatientMismatch::NothingToCompare)
        );
        // The message names the kind of difference only.
        let e = ImportError::WrongPatient(PatientMismatch::Name).to_string();
        assert_eq!(e, "the Bundle's Patient does not match this record's patient (name differs); nothing was imported");
    }
}
