//! What each FHIR interaction does with the records (blocking: records
//! are opened, read and written on blocking threads). The HTTP layer
//! ([`crate::http`]) checks the token and scopes, then calls these.

use std::collections::BTreeMap;
use std::sync::Arc;

use satchel_core::fhir::import::IncomingResource;
use satchel_core::ids::RecordId;
use satchel_core::profile::{ImportError, ProfileError};
use satchel_core::record::Section;
use satchel_core::sync::views;
use serde_json::Value;

use crate::fhir::outcome::Outcome;
use crate::fhir::read::{self, Search};
use crate::fhir::write::{self, BundleKind, EntryResult, Route, WriteEntry};
use crate::records::{PatientKey, Record, RecordPool, RecordsError};
use crate::upload::Uploader;

/// The gateway's records and their uploads.
pub struct Service {
    pub pool: Arc<RecordPool>,
    pub uploads: Arc<Uploader>,
}

fn records_outcome(e: RecordsError) -> Outcome {
    match e {
        RecordsError::NotShared(_) => {
            Outcome::not_found("no record with that id is shared with this provider")
        }
        RecordsError::Profile(ProfileError::WrongKey) => Outcome::internal(
            "a record of this provider home does not open with the gateway's passphrase",
        ),
        other => {
            tracing::error!(error = %other, "opening a record failed");
            Outcome::internal("a record could not be opened; the gateway's log says why")
        }
    }
}

/// How many of `sections` are in each section: what a read shows, for
/// the patient's audit.
fn per_section(sections: impl Iterator<Item = Section>) -> Vec<(String, u64)> {
    let mut shown: BTreeMap<Section, u64> = BTreeMap::new();
    for s in sections {
        *shown.entry(s).or_default() += 1;
    }
    shown
        .into_iter()
        .map(|(s, n)| (s.as_str().to_owned(), n))
        .collect()
}

/// The outcome of a refused import, for the entries of `group` (messages
/// name entries by their position in the request).
fn import_outcome(e: ImportError, group: &[&WriteEntry]) -> Outcome {
    let at = |i: usize| group.get(i).map_or(i, |e| e.index);
    match e {
        ImportError::WrongPatient(m) => Outcome::unprocessable(
            "business-rule",
            format!("the Patient does not match the record's patient ({m}); nothing was written to this record"),
        ),
        ImportError::InInput { index, reason } => {
            Outcome::invalid(format!("entry {}: {reason}; nothing was written to this record", at(index)))
        }
        ImportError::MovesSection { index, section, .. } => Outcome::new(
            409,
            "conflict",
            format!("entry {} updates an entry of the {section} section but now belongs elsewhere; nothing was written to this record", at(index)),
        ),
        ImportError::CannotCheckPatient => Outcome::forbidden(
            "this provider cannot see the record's Patient (the patient's grant must include demographics), so the patient cannot be checked; nothing was written",
        ),
        ImportError::Profile(
            e @ (ProfileError::ReadOnly(_) | ProfileError::NoKey(_) | ProfileError::NotAllowed(_)),
        ) => Outcome::forbidden(format!("{e}")),
        ImportError::Profile(e @ ProfileError::TooLarge { .. }) => {
            Outcome::new(413, "too-costly", format!("{e}"))
        }
        other => {
            tracing::error!(error = %other, "import failed");
            Outcome::internal("the write failed; nothing was written to this record (the gateway's log says why)")
        }
    }
}

impl Service {
    /// Write `entries` (a Bundle of `kind`, or one resource as a batch of
    /// one) for the client `source`: routed per entry, committed per record
    /// (a transaction: all of a record's entries or none; a batch: each
    /// entry on its own), then queued for upload.
    pub fn write(
        &self,
        kind: BundleKind,
        entries: &[WriteEntry],
        source: &str,
    ) -> Vec<EntryResult> {
        let pool = &self.pool;
        let lookup = |k: &PatientKey| pool.lookup(k).unwrap_or_default();
        let shared = |r: &RecordId| pool.is_shared(r).unwrap_or(false);
        let routes = write::route(entries, &lookup, &shared);
        let mut results: Vec<Option<EntryResult>> = vec![None; entries.len()];
        let mut groups: BTreeMap<RecordId, Vec<usize>> = BTreeMap::new();
        for (i, route) in routes.into_iter().enumerate() {
            match route {
                Route::Record(rid) => groups.entry(rid).or_default().push(i),
                Route::Refused(o) => results[i] = Some(EntryResult::Failed(o)),
            }
        }
        for (rid, members) in groups {
            let batches: Vec<Vec<usize>> = match kind {
                BundleKind::Transaction => vec![members],
                // Each entry alone, with the record's Patients of the
                // request (for the patient check).
                BundleKind::Batch => {
                    let patients: Vec<usize> = members
                        .iter()
                        .copied()
                        .filter(|&i| entries[i].resource_type() == "Patient")
                        .collect();
                    members
                        .iter()
                        .filter(|&&i| entries[i].resource_type() != "Patient")
                        .map(|&i| {
                            let mut b = patients.clone();
                            b.push(i);
                            b
                        })
                        .chain(std::iter::once(patients.clone()).filter(|p| !p.is_empty()))
                        .collect()
                }
            };
            for batch in batches {
                let group: Vec<&WriteEntry> = batch.iter().map(|&i| &entries[i]).collect();
                let outcome = self.write_group(rid, &group, source);
                for (&i, r) in batch.iter().zip(outcome) {
                    // In a batch a Patient is in every batch: keep a failure.
                    if !matches!(results[i], Some(EntryResult::Failed(_))) {
                        results[i] = Some(r);
                    }
                }
            }
        }
        results
            .into_iter()
            .map(|r| {
                r.unwrap_or_else(|| EntryResult::Failed(Outcome::internal("entry not processed")))
            })
            .collect()
    }

    /// One import into one record: one result per member of `group`.
    fn write_group(&self, rid: RecordId, group: &[&WriteEntry], source: &str) -> Vec<EntryResult> {
        let fail_all = |o: Outcome| vec![EntryResult::Failed(o); group.len()];
        let record = match self.pool.get(rid) {
            Ok(r) => r,
            Err(e) => return fail_all(records_outcome(e)),
        };
        let mut profile = record.blocking_lock();
        let incoming: Vec<IncomingResource> = group
            .iter()
            .enumerate()
            .map(|(index, e)| IncomingResource {
                index,
                full_url: e.full_url.clone(),
                in_bundle: true,
                resource: e.resource.clone(),
            })
            .collect();
        let report = match profile.import_contribution(incoming, Some(source)) {
            Ok(report) => report,
            Err(e) => return fail_all(import_outcome(e, group)),
        };
        let mut written = report.entries.iter();
        let results = group
            .iter()
            .enumerate()
            .map(|(i, e)| {
                if e.resource_type() == "Patient" {
                    EntryResult::Matched {
                        location: format!("Patient/{}", rid.to_hex()),
                    }
                } else if report.skipped.iter().any(|(s, _)| *s == i) {
                    EntryResult::NotKept
                } else if let Some(added) = written.next() {
                    let versions = profile.entry(&added.entry).map_or(1, |e| e.version_count);
                    EntryResult::Written {
                        created: report.added.contains(added),
                        location: format!(
                            "{}/{}/_history/{versions}",
                            e.resource_type(),
                            read::gateway_id(&rid, &added.entry)
                        ),
                    }
                } else {
                    EntryResult::Failed(Outcome::internal(
                        "the import did not account for this entry",
                    ))
                }
            })
            .collect();
        if !report.added.is_empty() || !report.updated.is_empty() {
            self.uploads.mark(rid);
        }
        results
    }

    /// Note in the patient's audit trail what a read of record `rid` shows
    /// (`shown`: section, entries), before it is shown: committed to the
    /// record's store, reported to the relay by the uploader. A read whose
    /// view cannot be noted shows nothing.
    fn note_shown(
        &self,
        rid: RecordId,
        profile: &mut Record,
        shown: &[(String, u64)],
    ) -> Result<(), Outcome> {
        views::note_views(profile, shown, crate::auth::now_ms()).map_err(|e| {
            tracing::error!(record = %rid, error = %e, "noting a view for the audit failed");
            Outcome::internal(
                "the read could not be noted in the patient's audit trail, so nothing was shown; the gateway's log says why",
            )
        })?;
        self.uploads.mark(rid);
        Ok(())
    }

    /// `GET /Patient?identifier=system|value`: the matching patients.
    pub fn find_patients(&self, key: &PatientKey) -> Result<Vec<Value>, Outcome> {
        let mut out = Vec::new();
        for rid in self.pool.lookup(key).map_err(records_outcome)? {
            if let Some(p) = self.patient(rid)? {
                out.push(p);
            }
        }
        Ok(out)
    }

    /// The Patient of record `rid`, if this provider may read it.
    pub fn patient(&self, rid: RecordId) -> Result<Option<Value>, Outcome> {
        let record = self.pool.get(rid).map_err(records_outcome)?;
        let mut profile = record.blocking_lock();
        let Some(patient) = profile.record_patient() else {
            return Ok(None);
        };
        self.note_shown(
            rid,
            &mut profile,
            &[(patient.section.as_str().to_owned(), 1)],
        )?;
        Ok(Some(read::present(&rid, &patient)))
    }

    /// `GET /{type}/{id}`.
    pub fn read(&self, resource_type: &str, id: &str) -> Result<Value, Outcome> {
        let gone =
            || Outcome::not_found(format!("no {resource_type} with that id is readable here"));
        if resource_type == "Patient" {
            let rid: RecordId = id.parse().map_err(|_| gone())?;
            return self.patient(rid)?.ok_or_else(gone);
        }
        let (rid, eid) = read::parse_gateway_id(id).ok_or_else(gone)?;
        let record = self.pool.get(rid).map_err(|e| match e {
            RecordsError::NotShared(_) => gone(),
            other => records_outcome(other),
        })?;
        let mut profile = record.blocking_lock();
        let entry = profile
            .entry(&eid)
            .filter(|e| {
                e.resource_type == resource_type
                    && e.status == satchel_core::record::EntryStatus::Active
            })
            .ok_or_else(gone)?;
        self.note_shown(rid, &mut profile, &[(entry.section.as_str().to_owned(), 1)])?;
        Ok(read::present(&rid, &entry))
    }

    /// `GET /{type}?...`: (total, this page).
    pub fn search(&self, search: &Search) -> Result<(usize, Vec<Value>), Outcome> {
        let record = self.pool.get(search.patient).map_err(records_outcome)?;
        let mut profile = record.blocking_lock();
        let mut found: Vec<_> = profile
            .query(&search.query.query())
            .into_iter()
            .filter(|e| search.matches(e))
            .collect();
        // Newest first, as clinicians read.
        found.sort_by_key(|e| std::cmp::Reverse((e.current.date, e.created_at_ms)));
        let total = found.len();
        let page: Vec<_> = found
            .iter()
            .skip(search.offset)
            .take(search.count)
            .collect();
        let shown = per_section(page.iter().map(|e| e.section));
        self.note_shown(search.patient, &mut profile, &shown)?;
        let page = page
            .into_iter()
            .map(|e| read::present(&search.patient, e))
            .collect();
        Ok((total, page))
    }

    /// `GET /Patient/{id}/$summary`: the International Patient Summary.
    pub fn summary(&self, rid: RecordId) -> Result<Value, Outcome> {
        let record = self.pool.get(rid).map_err(records_outcome)?;
        let mut profile = record.blocking_lock();
        let summary = profile.export_ips().map_err(|e| match e {
            ImportError::NoPatient => Outcome::not_found(
                "this provider cannot read the record's Patient, so no summary can be made",
            ),
            other => import_outcome(other, &[]),
        })?;
        // Every resource of the document but its Composition (made for
        // the answer) is an entry of the record.
        let shown = per_section(
            summary
                .get("entry")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|e| e.get("resource"))
                .filter(|r| r.get("resourceType").and_then(Value::as_str) != Some("Composition"))
                .filter_map(|r| satchel_core::fhir::section_for(r).ok()),
        );
        self.note_shown(rid, &mut profile, &shown)?;
        Ok(summary)
    }
}
