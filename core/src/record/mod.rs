//! The record: sections as automerge documents, entries, versions, queries.
//! I/O-free: bytes in, bytes out; storage, encryption and sync live elsewhere.
//!
//! ## Layout of a section document (layout 2)
//!
//! ```text
//! ROOT { "section": "<name>",
//!        "layout": 2,
//!        "versions": [ <version>, <version>, ... ] }
//! ```
//!
//! One flat list holds every version of every entry, each version one
//! immutable automerge *bytes* scalar (so writing an entry, an amendment or
//! an entered-in-error mark is a single list insert, always at the end):
//!
//! ```text
//! <version> = format 0x01, header length, header, resource JSON (unchanged)
//! header    = entry id, author, recorded_at_ms, status,
//!             creation? (resource_type, source_system?, source_id?),
//!             date? (start, unix ms UTC), date_text?,
//!             codes [(system?, code)], displays [text],
//!             base? (recorded_at_ms, author of the version written over)
//! ```
//!
//! (byte by byte in `layout.rs`; `base` is an optional trailing field that
//! older readers skip). Two versions with the same base were written
//! without knowing of each other: the entry is flagged
//! ([`Entry::conflict`]) while its current version is one of them. An entry is created by the version that
//! carries `creation`; its `created_by`/`created_at_ms` are that version's
//! author and time; every later version of the entry (amendments, marks)
//! appends to the list with the same entry id. Versions of an entry without a
//! creating version are ignored, as are list items that are not readable
//! versions. The header's index fields are derived by
//! [`crate::fhir::summarize`] when a version is written, so listing, queries
//! and [`SectionDoc::summary`] never parse resource JSON (only the current
//! version of entries actually returned is parsed, straight from the bytes
//! of the document). Each [`SectionDoc`] keeps an in-memory index (entry
//! metadata, version keys and statuses, and the current version's header,
//! never a resource): built in one pass over the list on `load`, extended
//! on local writes and, from automerge's patches, when incoming changes only
//! append; rebuilt otherwise.
//!
//! `"layout"` is checked on load: documents of another layout are refused
//! ([`RecordError::Automerge`], naming the layout). The genesis change below
//! writes it, so changes of another layout never share history with these.
//! [`SectionDoc::save`] writes automerge's document format without DEFLATE
//! (callers compress); [`SectionDoc::load`] reads compressed saves too.
//!
//! ## Rules
//!
//! - **Current version**: the greatest by (`recorded_at_ms`, author identity,
//!   position in the merged versions list). [`SectionDoc::history`] returns
//!   versions in that order, so every replica shows the same history and
//!   current version.
//! - **Entered-in-error is sticky**: an entry is hidden iff *any* of its
//!   versions has status entered-in-error, even if a concurrent amend sorts
//!   later. Hidden entries cannot be amended or marked again
//!   ([`RecordError::AlreadyEnteredInError`]); they stay readable
//!   (`entry`, `history`, `entries(true)`). Nothing is ever deleted here.
//! - **No loss on concurrent edits**: concurrent amends (or an amend and an
//!   entered-in-error mark) are all kept as versions. Concurrent adds of the
//!   same entry id cannot happen (ids are 128 random bits).
//! - **Routing**: [`crate::fhir::section_for`] decides the section of a
//!   resource; a section refuses resources that map elsewhere. Amending must
//!   keep the resource type and the section ([`RecordError::WrongSection`]).
//!   The wearables and notes sections are filled only by explicit calls
//!   ([`Record::add_to`]) and accept any known resource type but `Bundle`.
//!
//! ## Automerge use
//!
//! - Every document starts with a deterministic **genesis change** for its
//!   section (fixed actor `satchel/section/<name>`, time 0), so that two
//!   devices creating the same section independently share that history and
//!   merge cleanly. Changes that do not descend from it are refused.
//! - After that, each [`SectionDoc`] instance (each `new` or `load`) uses a
//!   fresh **random actor id**: an actor is never reused across sessions or
//!   devices, so automerge's (actor, sequence) pairs can never collide, and
//!   nothing in the change metadata identifies the person writing (authorship
//!   is the `author` field, verified by the signed envelope around changes).
//! - [`SectionDoc::take_changes`] returns exactly the local changes made since
//!   the last `take_changes`/`save`/`load` (tracked by hash, so changes
//!   received from others are never echoed). [`SectionDoc::apply_changes`]
//!   accepts those bytes or a full save, in any order, with duplicates;
//!   changes with missing dependencies are held until those arrive. Corrupt
//!   bytes are refused as a whole before anything is applied.
//! - Bulk imports ([`SectionDoc::add_entries`], [`Record::add_many`]) write
//!   one change per section, all or nothing.
//! - Errors carry entry ids, section names and resource type names only, and
//!   the `Debug` of entries, versions, queries and summaries redacts health
//!   data.

mod doc;
pub(crate) mod layout;
pub(crate) mod wire;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use serde_json::Value;

pub use automerge::ChangeHash;
pub use doc::{Entry, EntryStatus, EntryVersion, NewEntry, Query, SectionDoc, SectionSummary};
pub use satchel_protocol::section::{ParseSectionError, Section};
pub use wire::versions_authored_by;

use crate::fhir::{self, FhirError};
use crate::ids::{EntryId, IdentityId, RecordId};

/// Most bytes of entry versions [`Record::add_many`] writes as one automerge
/// change (and so, sealed, as one envelope): well within the 4 MiB a relay
/// accepts per envelope.
pub const CHANGE_BUDGET: usize = 1024 * 1024;

/// Errors of the record. Messages name entry ids, sections and resource
/// types only: never health data.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RecordError {
    /// No entry with this id (in this section / record).
    #[error("no entry {0}")]
    UnknownEntry(EntryId),
    /// The resource was refused by the FHIR checks.
    #[error(transparent)]
    Fhir(#[from] FhirError),
    /// An amend whose resource has another resource type than the entry, or
    /// maps to another section.
    #[error("entry {entry} is in the {expected} section: an amendment must keep its resource type and section")]
    WrongSection {
        /// The entry being amended.
        entry: EntryId,
        /// The entry's section.
        expected: Section,
    },
    /// A new entry's resource maps to another section than the one it was added to.
    #[error("a {resource_type} resource belongs in the {belongs_in} section, not {section}")]
    ResourceNotForSection {
        /// The resource type.
        resource_type: String,
        /// The section it was added to.
        section: Section,
        /// The section it maps to.
        belongs_in: Section,
    },
    /// The document bytes are corrupt or not of this section, or automerge
    /// refused an operation. Fixed messages, no content.
    #[error("section document: {0}")]
    Automerge(String),
    /// The entry is already hidden (entered-in-error).
    #[error("entry {0} is entered-in-error")]
    AlreadyEnteredInError(EntryId),
}

/// A patient's record: one [`SectionDoc`] per section present.
#[derive(Debug, Clone)]
pub struct Record {
    /// The record id.
    pub id: RecordId,
    /// The section documents present (created lazily).
    pub sections: BTreeMap<Section, SectionDoc>,
}

impl Record {
    /// An empty record.
    pub fn new(id: RecordId) -> Self {
        Record {
            id,
            sections: BTreeMap::new(),
        }
    }

    /// Put a (loaded) section document in place; returns the one it replaces.
    pub fn insert_section(&mut self, doc: SectionDoc) -> Option<SectionDoc> {
        self.sections.insert(doc.section(), doc)
    }

    /// A section document, if present.
    pub fn section(&self, section: Section) -> Option<&SectionDoc> {
        self.sections.get(&section)
    }

    /// A section document, created empty if absent.
    pub fn section_mut(&mut self, section: Section) -> &mut SectionDoc {
        self.sections
            .entry(section)
            .or_insert_with(|| SectionDoc::new(section))
    }

    /// Add a resource to the section [`fhir::section_for`] maps it to.
    pub fn add(&mut self, new: NewEntry) -> Result<(Section, EntryId), RecordError> {
        let summary = fhir::summarize(&new.resource)?;
        let section = fhir::section_for(&new.resource)?;
        let prepared = doc::prepare_entry(&new, &summary)?;
        let mut ids = self.section_mut(section).write_entries(vec![prepared])?;
        let id = ids
            .pop()
            .ok_or_else(|| RecordError::Automerge("no entry was written".into()))?;
        Ok((section, id))
    }

    /// Add many resources (e.g. the contents of a Bundle), each to the section
    /// it maps to, as one change per section. Every resource is checked
    /// before anything is written: on error nothing is added. Ids are
    /// returned in input order.
    pub fn add_many(&mut self, new: Vec<NewEntry>) -> Result<Vec<(Section, EntryId)>, RecordError> {
        let mut by_section: BTreeMap<Section, Vec<(usize, doc::PreparedEntry)>> = BTreeMap::new();
        let count = new.len();
        for (i, n) in new.into_iter().enumerate() {
            let summary = fhir::summarize(&n.resource)?;
            let section = fhir::section_for(&n.resource)?;
            let prepared = doc::prepare_entry(&n, &summary)?;
            by_section.entry(section).or_default().push((i, prepared));
        }
        let mut out: Vec<Option<(Section, EntryId)>> = vec![None; count];
        for (section, items) in by_section {
            // One automerge change per group of at most CHANGE_BUDGET bytes
            // of versions, so that a large import travels as several
            // envelopes, each within what a relay accepts.
            let mut groups: Vec<Vec<(usize, doc::PreparedEntry)>> = Vec::new();
            let mut bytes = 0;
            for item in items {
                let size = item.1.version.len();
                match groups.last_mut() {
                    Some(group) if bytes + size <= CHANGE_BUDGET => {
                        bytes += size;
                        group.push(item);
                    }
                    _ => {
                        bytes = size;
                        groups.push(vec![item]);
                    }
                }
            }
            for group in groups {
                let (positions, entries): (Vec<usize>, Vec<doc::PreparedEntry>) =
                    group.into_iter().unzip();
                let ids = self.section_mut(section).write_entries(entries)?;
                for (pos, id) in positions.into_iter().zip(ids) {
                    out[pos] = Some((section, id));
                }
            }
        }
        Ok(out.into_iter().flatten().collect())
    }

    /// Add a resource to a given section (the way into wearables and notes;
    /// routed sections still refuse resources that map elsewhere).
    pub fn add_to(&mut self, section: Section, new: NewEntry) -> Result<EntryId, RecordError> {
        let summary = fhir::summarize(&new.resource)?;
        if section.is_routed() {
            let belongs_in = fhir::section_for(&new.resource)?;
            if belongs_in != section {
                return Err(RecordError::ResourceNotForSection {
                    resource_type: summary.resource_type,
                    section,
                    belongs_in,
                });
            }
        }
        self.section_mut(section).add_entry(new)
    }

    /// The section holding entry `id` (scans the present sections).
    pub fn section_of(&self, id: EntryId) -> Option<Section> {
        self.sections
            .values()
            .find(|d| d.contains(id))
            .map(SectionDoc::section)
    }

    fn doc_of_mut(&mut self, id: EntryId) -> Result<&mut SectionDoc, RecordError> {
        self.sections
            .values_mut()
            .find(|d| d.contains(id))
            .ok_or(RecordError::UnknownEntry(id))
    }

    /// Append a corrected version to entry `id`.
    pub fn amend(
        &mut self,
        id: EntryId,
        resource: Value,
        author: IdentityId,
        recorded_at_ms: i64,
    ) -> Result<(), RecordError> {
        self.doc_of_mut(id)?
            .amend_entry(id, resource, author, recorded_at_ms)
    }

    /// Mark entry `id` entered-in-error (hides it).
    pub fn mark_entered_in_error(
        &mut self,
        id: EntryId,
        author: IdentityId,
        recorded_at_ms: i64,
    ) -> Result<(), RecordError> {
        self.doc_of_mut(id)?
            .mark_entered_in_error(id, author, recorded_at_ms)
    }

    /// Entry `id`, hidden or not.
    pub fn entry(&self, id: EntryId) -> Option<Entry> {
        self.sections.values().find_map(|d| d.entry(id))
    }

    /// All versions of entry `id` (see [`SectionDoc::history`]).
    pub fn history(&self, id: EntryId) -> Result<Vec<EntryVersion>, RecordError> {
        self.sections
            .values()
            .find(|d| d.contains(id))
            .ok_or(RecordError::UnknownEntry(id))?
            .history(id)
    }

    /// The entry created from this source system and id, in any section.
    pub fn find_by_source(
        &self,
        source_system: &str,
        source_id: &str,
    ) -> Option<(Section, EntryId)> {
        self.sections.values().find_map(|d| {
            d.find_by_source(source_system, source_id)
                .map(|id| (d.section(), id))
        })
    }

    /// Entries matching `query` across sections, sorted by clinical date
    /// descending (undated last), then id.
    pub fn query(&self, query: &Query) -> Vec<Entry> {
        let mut out: Vec<Entry> = self
            .sections
            .values()
            .filter(|d| query.section.is_none_or(|s| s == d.section()))
            .flat_map(|d| d.query(query))
            .collect();
        doc::sort_for_listing(&mut out);
        out
    }

    /// One summary per section present, in section order.
    pub fn summary(&self) -> Vec<SectionSummary> {
        self.sections.values().map(SectionDoc::summary).collect()
    }
}
