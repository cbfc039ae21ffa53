//! One section as an automerge document: entries, versions, the derived
//! index, change exchange.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::OnceLock;

use automerge::transaction::{Transactable, Transaction};
use automerge::{
    ActorId, Automerge, AutomergeError, ChangeHash, ObjId, ObjType, Patch, PatchAction, PatchLog,
    ReadDoc, SaveOptions, ScalarValue, ScalarValueRef, Value as AmValue, ValueRef, ROOT,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::layout::{self, Base, Creation, VersionHeader};
use super::wire;
use super::{RecordError, Section};
use crate::fhir::{self, Coding, ResourceSummary};
use crate::ids::{EntryId, IdentityId};

// Document keys (the layout is described in the module documentation).
const K_SECTION: &str = "section";
const K_LAYOUT: &str = "layout";
const K_VERSIONS: &str = "versions";

/// The document layout this code reads and writes (ROOT `"layout"`).
pub(super) const LAYOUT: u64 = 2;

/// Status of an entry version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EntryStatus {
    /// In force.
    Active,
    /// Recorded by mistake: hidden from listings (sticky, see module docs).
    EnteredInError,
}

impl EntryStatus {
    /// The stored form: `"active"` or `"entered-in-error"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            EntryStatus::Active => "active",
            EntryStatus::EnteredInError => "entered-in-error",
        }
    }
}

impl fmt::Display for EntryStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A resource to add as a new entry.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct NewEntry {
    /// The FHIR R4 resource, stored as given.
    pub resource: Value,
    /// Who records it.
    pub author: IdentityId,
    /// When it is recorded, unix milliseconds.
    pub recorded_at_ms: i64,
    /// Sending system (for de-duplication of re-sends), e.g. a provider's base URL.
    pub source_system: Option<String>,
    /// The resource's id in the sending system.
    pub source_id: Option<String>,
}

impl fmt::Debug for NewEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewEntry")
            .field("resource", &"<redacted>")
            .field("author", &self.author)
            .field("recorded_at_ms", &self.recorded_at_ms)
            .finish_non_exhaustive()
    }
}

/// One immutable version of an entry.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct EntryVersion {
    /// Who wrote this version.
    pub author: IdentityId,
    /// When it was written, unix milliseconds (author's clock).
    pub recorded_at_ms: i64,
    /// `active` or `entered-in-error`.
    pub status: EntryStatus,
    /// Written over the same earlier version as another version of the
    /// entry, without knowing of it (set by `history`; see [`Entry::conflict`]).
    #[serde(default)]
    pub concurrent: bool,
    /// The resource of this version.
    pub resource: Value,
    /// Clinical date (start, unix ms UTC), from the index.
    pub date: Option<i64>,
    /// Clinical date as written in the resource, from the index.
    pub date_text: Option<String>,
    /// Indexed codes.
    pub codes: Vec<Coding>,
    /// Indexed display strings.
    pub displays: Vec<String>,
}

impl fmt::Debug for EntryVersion {
    // Health data stays out of debug output.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EntryVersion")
            .field("author", &self.author)
            .field("recorded_at_ms", &self.recorded_at_ms)
            .field("status", &self.status)
            .field("resource", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// An entry as read: metadata, the current version and the sticky status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    /// Entry id.
    pub id: EntryId,
    /// Section holding it.
    pub section: Section,
    /// Resource type (the same for every version).
    pub resource_type: String,
    /// Sending system, if given at creation.
    pub source_system: Option<String>,
    /// Id in the sending system, if given at creation.
    pub source_id: Option<String>,
    /// Author of the first version.
    pub created_by: IdentityId,
    /// `recorded_at_ms` of the first version.
    pub created_at_ms: i64,
    /// The greatest version by (recorded_at_ms, author, list position).
    pub current: EntryVersion,
    /// Number of versions.
    pub version_count: usize,
    /// `EnteredInError` iff any version has that status (sticky).
    pub status: EntryStatus,
    /// The current version is one of two or more versions written over the
    /// same earlier version (e.g. a dose changed on two devices offline, or
    /// by the patient and a provider at once). It was chosen by the one
    /// rule above, the same on every device, but the other change is not
    /// silently dropped: it is in `history` (marked `concurrent`), and a
    /// screen must say so. An amendment written over the current version
    /// settles it (the history keeps the marks).
    #[serde(default)]
    pub conflict: bool,
}

impl Entry {
    /// Whether the entry is hidden (entered-in-error).
    pub fn is_hidden(&self) -> bool {
        self.status == EntryStatus::EnteredInError
    }
}

/// Counts for one section, read from the index only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SectionSummary {
    /// The section.
    pub section: Section,
    /// Visible entries.
    pub active: usize,
    /// Hidden (entered-in-error) entries.
    pub entered_in_error: usize,
    /// Latest clinical date among visible entries' current versions.
    pub latest_date_ms: Option<i64>,
    /// Visible entries per resource type.
    pub by_resource_type: BTreeMap<String, usize>,
}

/// A filter over entries, evaluated on index fields of each entry's current
/// version only (no resource JSON is parsed to filter).
#[derive(Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Query {
    /// Only this section.
    pub section: Option<Section>,
    /// Clinical date at or after (unix ms). Entries without a date are
    /// excluded when either bound is given.
    pub from_ms: Option<i64>,
    /// Clinical date at or before (unix ms).
    pub to_ms: Option<i64>,
    /// `(system, code)`: an indexed code equal to `code` and, if `system` is
    /// given, with that system.
    pub code: Option<(Option<String>, String)>,
    /// Case-insensitive substring of any indexed display string.
    pub text: Option<String>,
    /// Include hidden (entered-in-error) entries.
    pub include_entered_in_error: bool,
}

impl fmt::Debug for Query {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Query")
            .field("section", &self.section)
            .field("from_ms", &self.from_ms)
            .field("to_ms", &self.to_ms)
            .field("code", &self.code.as_ref().map(|_| "<redacted>"))
            .field("text", &self.text.as_ref().map(|_| "<redacted>"))
            .field("include_entered_in_error", &self.include_entered_in_error)
            .finish()
    }
}

/// Sort key of a version: (recorded_at_ms, author, list position).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct VersionKey {
    recorded_at: i64,
    author: IdentityId,
    pos: usize,
}

/// The in-memory index of one version.
#[derive(Clone, Copy, PartialEq)]
struct IndexedVersion {
    key: VersionKey,
    status: EntryStatus,
    /// The version it was written over, if recorded.
    base: Option<Base>,
}

/// An entry's immutable metadata, from the version that created it.
#[derive(Clone, PartialEq)]
struct Meta {
    resource_type: String,
    source_system: Option<String>,
    source_id: Option<String>,
    created_by: IdentityId,
    created_at: i64,
}

impl Meta {
    fn new(h: &VersionHeader<'_>, c: &Creation<'_>) -> Self {
        Meta {
            resource_type: c.resource_type.to_string(),
            source_system: c.source_system.map(str::to_string),
            source_id: c.source_id.map(str::to_string),
            created_by: h.author,
            created_at: h.recorded_at,
        }
    }
}

/// The in-memory index of one entry. Holds no resource JSON: only what
/// summaries, filters and lookups need.
#[derive(Clone, PartialEq)]
struct IndexedEntry {
    meta: Meta,
    /// Every readable version, sorted by key; never empty. The last one is
    /// the current version.
    versions: Vec<IndexedVersion>,
    /// Whether any version is entered-in-error.
    hidden: bool,
    /// Clinical date of the current version.
    date: Option<i64>,
    /// Header of the current version (its codes and displays, for queries).
    current_header: Box<[u8]>,
}

impl IndexedEntry {
    fn new(meta: Meta, pos: usize, h: &VersionHeader<'_>, header: &[u8]) -> Self {
        IndexedEntry {
            meta,
            versions: vec![IndexedVersion {
                key: key_of(h, pos),
                status: h.status,
                base: h.base,
            }],
            hidden: h.status == EntryStatus::EnteredInError,
            date: h.date,
            current_header: header.into(),
        }
    }

    /// Add a version (any position: the versions stay sorted).
    fn add(&mut self, pos: usize, h: &VersionHeader<'_>, header: &[u8]) {
        let v = IndexedVersion {
            key: key_of(h, pos),
            status: h.status,
            base: h.base,
        };
        let at = self.versions.partition_point(|x| x.key < v.key);
        if at == self.versions.len() {
            self.date = h.date;
            self.current_header = header.into();
        }
        self.versions.insert(at, v);
        self.hidden |= h.status == EntryStatus::EnteredInError;
    }

    fn status(&self) -> EntryStatus {
        if self.hidden {
            EntryStatus::EnteredInError
        } else {
            EntryStatus::Active
        }
    }

    fn current(&self) -> Option<&IndexedVersion> {
        self.versions.last()
    }

    /// Bases that two or more versions were written over: each is a
    /// conflict (changes made without knowing of each other).
    fn contested_bases(&self) -> Vec<Base> {
        let mut bases: Vec<Base> = self.versions.iter().filter_map(|v| v.base).collect();
        bases.sort_unstable();
        let mut contested: Vec<Base> = bases
            .windows(2)
            .filter(|w| w[0] == w[1])
            .map(|w| w[0])
            .collect();
        contested.dedup();
        contested
    }

    fn current_header(&self) -> Option<VersionHeader<'_>> {
        VersionHeader::decode(&self.current_header)
    }
}

impl VersionKey {
    /// How a later version names this one as its base.
    fn base(&self) -> Base {
        Base {
            recorded_at: self.recorded_at,
            author: self.author,
        }
    }
}

fn key_of(h: &VersionHeader<'_>, pos: usize) -> VersionKey {
    VersionKey {
        recorded_at: h.recorded_at,
        author: h.author,
        pos,
    }
}

/// The index of a section: every entry that has a creating version.
#[derive(Clone, Default, PartialEq)]
struct Index {
    entries: BTreeMap<EntryId, IndexedEntry>,
    /// Versions of entries without a creating version are ignored; whether
    /// there are any (then a creating version arriving later needs a rebuild).
    orphans: bool,
}

/// What [`Index::append`] did with a version.
#[derive(Debug, PartialEq)]
enum Appended {
    /// Indexed (or unreadable, hence skipped, as a rebuild would).
    Done,
    /// The index cannot follow incrementally: rebuild it.
    Rebuild,
}

impl Index {
    /// Build the index in one pass over the versions list: only headers are
    /// decoded, resources are not touched.
    fn build(doc: &Automerge, versions: &ObjId) -> Index {
        let mut entries: BTreeMap<EntryId, IndexedEntry> = BTreeMap::new();
        // Versions seen before their entry's creating version (only in
        // documents written by something else than this code).
        let mut early: Vec<(usize, Box<[u8]>)> = Vec::new();
        for item in doc.list_range(versions, ..) {
            let Some(header) =
                as_bytes(&item.value).and_then(|b| Some(layout::split_version(b)?.0))
            else {
                continue;
            };
            let Some(h) = VersionHeader::decode(header) else {
                continue;
            };
            match (entries.get_mut(&h.entry), &h.creation) {
                (Some(e), _) => e.add(item.index, &h, header),
                (None, Some(c)) => {
                    entries.insert(
                        h.entry,
                        IndexedEntry::new(Meta::new(&h, c), item.index, &h, header),
                    );
                }
                (None, None) => early.push((item.index, header.into())),
            }
        }
        let mut orphans = false;
        for (pos, header) in &early {
            let Some(h) = VersionHeader::decode(header) else {
                continue;
            };
            match entries.get_mut(&h.entry) {
                Some(e) => e.add(*pos, &h, header),
                None => orphans = true,
            }
        }
        Index { entries, orphans }
    }

    /// Index a version appended at the end of the list (position `pos`).
    fn append(&mut self, pos: usize, bytes: &[u8]) -> Appended {
        let Some(header) = layout::split_version(bytes).map(|(h, _)| h) else {
            return Appended::Done;
        };
        let Some(h) = VersionHeader::decode(header) else {
            return Appended::Done;
        };
        match (self.entries.get_mut(&h.entry), &h.creation) {
            (Some(e), _) => e.add(pos, &h, header),
            (None, Some(_)) if self.orphans => return Appended::Rebuild,
            (None, Some(c)) => {
                let e = IndexedEntry::new(Meta::new(&h, c), pos, &h, header);
                self.entries.insert(h.entry, e);
            }
            (None, None) => self.orphans = true,
        }
        Appended::Done
    }
}

// ----- reading helpers -------------------------------------------------------

fn get_string(doc: &Automerge, obj: &ObjId, key: &str) -> Option<String> {
    match doc.get(obj, key) {
        Ok(Some((AmValue::Scalar(s), _))) => match s.as_ref() {
            ScalarValue::Str(s) => Some(s.to_string()),
            _ => None,
        },
        _ => None,
    }
}

fn get_obj(doc: &Automerge, obj: &ObjId, key: &str, ty: ObjType) -> Option<ObjId> {
    match doc.get(obj, key) {
        Ok(Some((AmValue::Object(t), id))) if t == ty => Some(id),
        _ => None,
    }
}

fn as_bytes<'a>(v: &'a ValueRef<'_>) -> Option<&'a [u8]> {
    match v {
        ValueRef::Scalar(ScalarValueRef::Bytes(b)) => Some(b.as_ref()),
        _ => None,
    }
}

/// The layout version stored in ROOT, if any.
fn layout_of(doc: &Automerge) -> Option<u64> {
    match doc.get(ROOT, K_LAYOUT) {
        Ok(Some((AmValue::Scalar(s), _))) => match s.as_ref() {
            ScalarValue::Uint(n) => Some(*n),
            ScalarValue::Int(n) => u64::try_from(*n).ok(),
            _ => None,
        },
        _ => None,
    }
}

/// The deterministic first change of every document of `section`: the same
/// bytes (and hash) on every device, so documents created independently
/// share history and merge without conflicting roots. Never change this
/// within a layout version.
fn genesis(section: Section) -> Result<(Automerge, ChangeHash), RecordError> {
    let mut doc = Automerge::new();
    let actor = format!("satchel/section/{}", section.as_str());
    doc.set_actor(ActorId::from(actor.as_bytes()));
    let result = doc.transact(|tx| -> Result<(), AutomergeError> {
        tx.put(ROOT, K_SECTION, section.as_str())?;
        tx.put(ROOT, K_LAYOUT, LAYOUT)?;
        tx.put_object(ROOT, K_VERSIONS, ObjType::List)?;
        Ok(())
    });
    match result {
        Ok(success) => match success.hash {
            Some(hash) => Ok((doc, hash)),
            None => Err(RecordError::Automerge(
                "could not create the section document".into(),
            )),
        },
        Err(_) => Err(RecordError::Automerge(
            "could not create the section document".into(),
        )),
    }
}

/// The genesis document and change hash of a section (made once per
/// section and process). Boxed: an empty cell of a document is kilobytes
/// of initialised data in the library file, an empty cell of a box is a
/// pointer's worth (docs/mobile.md "Size").
fn genesis_cached(section: Section) -> Result<&'static (Automerge, ChangeHash), RecordError> {
    static CACHE: [OnceLock<Box<(Automerge, ChangeHash)>>; Section::ALL.len()] =
        [const { OnceLock::new() }; Section::ALL.len()];
    let cell = CACHE
        .get(section as usize)
        .ok_or_else(|| RecordError::Automerge("unknown section".into()))?;
    if let Some(cached) = cell.get() {
        return Ok(cached);
    }
    let made = Box::new(genesis(section)?);
    Ok(cell.get_or_init(|| made))
}

fn random_actor() -> ActorId {
    // 16 bytes from the system CSPRNG (via the entry-id generator).
    ActorId::from(&EntryId::random().0[..])
}

/// Incoming changes are followed incrementally (from automerge's patches)
/// only below this many operations and bytes, and while they are small
/// next to the document; otherwise the index is rebuilt in one pass, which
/// is cheaper than logging patches (they copy every value).
const INCREMENTAL_MAX_OPS: usize = 2_000;
const INCREMENTAL_MAX_BYTES: usize = 1 << 20;

#[cfg(test)]
thread_local! {
    /// Lets tests force the incremental (`Some(true)`) or the rebuilding
    /// (`Some(false)`) way of following incoming changes.
    pub(super) static FORCE_INCREMENTAL: std::cell::Cell<Option<bool>> =
        const { std::cell::Cell::new(None) };
}

/// A new entry, checked and encoded, ready to be written.
pub(super) struct PreparedEntry {
    id: EntryId,
    pub(super) version: Vec<u8>,
}

/// Encode a new entry whose resource has been summarised (and checked to
/// fit the section it goes to). The resource JSON is serialised here.
pub(super) fn prepare_entry(
    new: &NewEntry,
    summary: &ResourceSummary,
) -> Result<PreparedEntry, RecordError> {
    let id = EntryId::random();
    let creation = Creation {
        resource_type: &summary.resource_type,
        source_system: new.source_system.as_deref(),
        source_id: new.source_id.as_deref(),
    };
    let version = layout::encode_version(
        id,
        new.author,
        new.recorded_at_ms,
        Some(creation),
        None,
        summary,
        &new.resource,
    )
    .map_err(|_| RecordError::Automerge("could not serialise the resource".into()))?;
    Ok(PreparedEntry { id, version })
}

/// One section of a record as an automerge document. See the module
/// documentation for the layout and the merge rules.
#[derive(Clone)]
pub struct SectionDoc {
    section: Section,
    doc: Automerge,
    genesis: ChangeHash,
    /// The versions list (ROOT `"versions"`).
    versions: ObjId,
    /// Local changes not yet returned by `take_changes` (or covered by `save`).
    pending: Vec<ChangeHash>,
    /// The index of every entry, kept in step with `doc`.
    index: Index,
}

impl fmt::Debug for SectionDoc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SectionDoc")
            .field("section", &self.section)
            .field("entries", &self.index.entries.len())
            .field("pending_changes", &self.pending.len())
            .finish_non_exhaustive()
    }
}

impl SectionDoc {
    /// A new, empty section document. Its first change is the section's
    /// deterministic genesis change (included in the first `take_changes`);
    /// later changes use a fresh random actor.
    pub fn new(section: Section) -> Self {
        // Creating the genesis change only fails if automerge itself is broken.
        #[allow(clippy::expect_used)]
        let (doc, genesis) = genesis_cached(section).expect("genesis change of a fresh document");
        let (mut doc, genesis) = (doc.clone(), *genesis);
        #[allow(clippy::expect_used)]
        let versions = get_obj(&doc, &ROOT, K_VERSIONS, ObjType::List)
            .expect("the genesis change creates the versions list");
        doc.set_actor(random_actor());
        SectionDoc {
            section,
            doc,
            genesis,
            versions,
            pending: vec![genesis],
            index: Index::default(),
        }
    }

    /// Load a full save (output of [`SectionDoc::save`], compressed or
    /// not). Refuses bytes that are corrupt, belong to another section, or
    /// have another layout version.
    pub fn load(section: Section, bytes: &[u8]) -> Result<Self, RecordError> {
        let genesis = genesis_cached(section)?.1;
        wire::chunks(bytes)
            .map_err(|_| RecordError::Automerge("corrupt section document".into()))?;
        let mut doc = Automerge::load_with_options(bytes, wire::strict_load_options())
            .map_err(|_| RecordError::Automerge("corrupt section document".into()))?;
        let not_ours =
            || RecordError::Automerge(format!("not a document of the {section} section"));
        if get_string(&doc, &ROOT, K_SECTION).as_deref() != Some(section.as_str()) {
            return Err(not_ours());
        }
        match layout_of(&doc) {
            Some(LAYOUT) => {}
            Some(other) => {
                return Err(RecordError::Automerge(format!(
                    "section document has layout {other}; this version reads layout {LAYOUT} only"
                )))
            }
            None => {
                return Err(RecordError::Automerge(format!(
                "section document has no layout version; this version reads layout {LAYOUT} only"
            )))
            }
        }
        if doc.get_change_meta_by_hash(&genesis).is_none() {
            return Err(not_ours());
        }
        let versions = get_obj(&doc, &ROOT, K_VERSIONS, ObjType::List).ok_or_else(not_ours)?;
        doc.set_actor(random_actor());
        let index = Index::build(&doc, &versions);
        Ok(SectionDoc {
            section,
            doc,
            genesis,
            versions,
            pending: Vec::new(),
            index,
        })
    }

    /// The section.
    pub fn section(&self) -> Section {
        self.section
    }

    /// A full, compact save of the document (including changes still waiting
    /// for their dependencies), without DEFLATE: callers compress (and
    /// encrypt) it as they see fit. Counts as having handed out every local
    /// change: a following [`SectionDoc::take_changes`] returns only newer ones.
    pub fn save(&mut self) -> Vec<u8> {
        self.pending.clear();
        self.doc.save_with_options(SaveOptions {
            deflate: false,
            retain_orphans: true,
        })
    }

    /// The bytes of every local change made since the previous
    /// `take_changes`, `save` or `load` (empty if none). Changes received
    /// through [`SectionDoc::apply_changes`] are never included.
    pub fn take_changes(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        for hash in std::mem::take(&mut self.pending) {
            if let Some(change) = self.doc.get_change_by_hash(&hash) {
                out.extend_from_slice(change.raw_bytes());
            }
        }
        out
    }

    /// Like [`SectionDoc::take_changes`], but grouped: consecutive changes
    /// whose bytes together stay within `budget` (a single larger change is
    /// a group of its own), so each group can travel as its own envelope.
    pub fn take_change_groups(&mut self, budget: usize) -> Vec<Vec<u8>> {
        let mut groups: Vec<Vec<u8>> = Vec::new();
        for hash in std::mem::take(&mut self.pending) {
            let Some(change) = self.doc.get_change_by_hash(&hash) else {
                continue;
            };
            let raw = change.raw_bytes();
            match groups.last_mut() {
                Some(last) if last.len() + raw.len() <= budget => last.extend_from_slice(raw),
                _ => groups.push(raw.to_vec()),
            }
        }
        groups
    }

    /// Whether there are local changes not yet taken.
    pub fn has_pending_changes(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Merge bytes from another replica's `take_changes` or `save`.
    /// Idempotent; accepts any order: changes whose dependencies are missing
    /// are held (see [`SectionDoc::missing_deps`]) and applied when the
    /// dependencies arrive. Bytes that are corrupt, or changes that do not
    /// descend from this section's genesis, are refused as a whole.
    pub fn apply_changes(&mut self, bytes: &[u8]) -> Result<(), RecordError> {
        if bytes.is_empty() {
            return Ok(());
        }
        let changes =
            wire::decode_changes(bytes).map_err(|msg| RecordError::Automerge(msg.to_string()))?;
        if changes
            .iter()
            .any(|c| c.deps().is_empty() && c.hash() != self.genesis)
        {
            return Err(RecordError::Automerge(format!(
                "changes belong to another document than the {} section",
                self.section
            )));
        }
        let ops: usize = changes.iter().map(|c| c.len()).sum();
        let doc_ops = usize::try_from(self.doc.stats().num_ops).unwrap_or(usize::MAX);
        #[allow(unused_mut)]
        let mut incremental = ops <= INCREMENTAL_MAX_OPS
            && bytes.len() <= INCREMENTAL_MAX_BYTES
            && ops.saturating_mul(4) <= doc_ops;
        #[cfg(test)]
        if let Some(force) = FORCE_INCREMENTAL.with(std::cell::Cell::get) {
            incremental = force;
        }
        let refused = |_| RecordError::Automerge("could not apply changes".into());
        if !incremental {
            let result = self.doc.apply_changes(changes).map_err(refused);
            self.reindex_all();
            return result;
        }
        let before = self.doc.length(&self.versions);
        let mut log = PatchLog::active();
        let result = self
            .doc
            .apply_changes_log_patches(changes, &mut log)
            .map_err(refused);
        let patches = self.doc.make_patches(&mut log);
        if result.is_err() || !self.follow_appends(before, &patches) {
            self.reindex_all();
        }
        result
    }

    /// Index the versions that `patches` append at the end of the versions
    /// list (which had `len` elements). `false` if the patches do anything
    /// else (e.g. concurrent inserts that shift positions): the index must
    /// then be rebuilt.
    fn follow_appends(&mut self, mut len: usize, patches: &[Patch]) -> bool {
        for patch in patches {
            let values = match &patch.action {
                PatchAction::Insert { index, values }
                    if patch.obj == self.versions && *index == len =>
                {
                    values
                }
                _ => return false,
            };
            for (value, _, _) in values.iter() {
                if let AmValue::Scalar(s) = value {
                    if let ScalarValue::Bytes(b) = s.as_ref() {
                        if self.index.append(len, b) == Appended::Rebuild {
                            return false;
                        }
                    }
                }
                len += 1;
            }
        }
        true
    }

    /// Current heads of the document.
    pub fn heads(&self) -> Vec<ChangeHash> {
        self.doc.get_heads()
    }

    /// Hashes of changes we need before held changes can be applied (empty
    /// when nothing is waiting).
    pub fn missing_deps(&self) -> Vec<ChangeHash> {
        self.doc.get_missing_deps(&[])
    }

    /// Number of entries (including hidden ones).
    pub fn len(&self) -> usize {
        self.index.entries.len()
    }

    /// Whether the section has no entries.
    pub fn is_empty(&self) -> bool {
        self.index.entries.is_empty()
    }

    /// Whether the section holds entry `id`.
    pub fn contains(&self, id: EntryId) -> bool {
        self.index.entries.contains_key(&id)
    }

    // ----- index maintenance -------------------------------------------------

    /// Rebuild the whole index from the document (finding the versions
    /// list anew: only foreign changes could replace it, but then every
    /// replica must read the same one).
    fn reindex_all(&mut self) {
        match get_obj(&self.doc, &ROOT, K_VERSIONS, ObjType::List) {
            Some(list) => {
                self.index = Index::build(&self.doc, &list);
                self.versions = list;
            }
            None => self.index = Index::default(),
        }
    }

    /// Check the incremental index against a fresh rebuild (for tests).
    #[cfg(test)]
    pub(super) fn assert_index_consistent(&self) {
        let mut rebuilt = self.clone();
        rebuilt.reindex_all();
        assert!(
            self.versions == rebuilt.versions && self.index == rebuilt.index,
            "incremental index differs from a rebuild"
        );
    }

    // ----- writing -----------------------------------------------------------

    fn transact<O>(
        &mut self,
        f: impl FnOnce(&mut Transaction<'_>) -> Result<O, AutomergeError>,
    ) -> Result<O, RecordError> {
        match self.doc.transact(f) {
            Ok(success) => {
                if let Some(hash) = success.hash {
                    self.pending.push(hash);
                }
                Ok(success.result)
            }
            Err(_) => Err(RecordError::Automerge(
                "could not write to the section document".into(),
            )),
        }
    }

    /// Append version scalars at the end of the versions list, as one
    /// change, and index them.
    fn append_versions(&mut self, versions: Vec<Vec<u8>>) -> Result<(), RecordError> {
        let list = self.versions.clone();
        let start = self.doc.length(&list);
        // Index from the very bytes written (before they move into the
        // document); should the write fail, the index is rebuilt.
        let mut rebuild = false;
        for (i, v) in versions.iter().enumerate() {
            rebuild |= self.index.append(start + i, v) == Appended::Rebuild;
        }
        let written = self.transact(|tx| {
            for (i, v) in versions.into_iter().enumerate() {
                tx.insert(&list, start + i, ScalarValue::Bytes(v))?;
            }
            Ok(())
        });
        if rebuild || written.is_err() {
            self.reindex_all();
        }
        written
    }

    /// Append raw version scalars as one local change, unchecked: what a
    /// misbehaving peer with write access could author. Only the fuzzing
    /// facade (`crate::fuzzing`) calls it, to hand such changes to
    /// [`SectionDoc::apply_changes`] of another replica.
    pub(crate) fn append_unchecked_versions(
        &mut self,
        versions: Vec<Vec<u8>>,
    ) -> Result<(), RecordError> {
        self.append_versions(versions)
    }

    /// Check that a summarised resource may live in this section.
    fn check_fits(&self, resource: &Value, summary: &ResourceSummary) -> Result<(), RecordError> {
        if self.section.is_routed() {
            let belongs_in = fhir::section_for(resource)?;
            if belongs_in != self.section {
                return Err(RecordError::ResourceNotForSection {
                    resource_type: summary.resource_type.clone(),
                    section: self.section,
                    belongs_in,
                });
            }
        } else if summary.resource_type == "Bundle" {
            return Err(fhir::FhirError::NoSection("Bundle".into()).into());
        }
        Ok(())
    }

    /// Add a new entry. The resource is checked ([`fhir::summarize`]) and
    /// must belong to this section ([`fhir::section_for`]; the wearables and
    /// notes sections accept any known type except `Bundle`).
    pub fn add_entry(&mut self, new: NewEntry) -> Result<EntryId, RecordError> {
        let mut ids = self.add_entries(vec![new])?;
        ids.pop()
            .ok_or_else(|| RecordError::Automerge("no entry was written".into()))
    }

    /// Add several entries as one change (all or nothing): every resource is
    /// checked as in [`SectionDoc::add_entry`] before anything is written.
    pub fn add_entries(&mut self, new: Vec<NewEntry>) -> Result<Vec<EntryId>, RecordError> {
        let mut prepared = Vec::with_capacity(new.len());
        for n in new {
            let summary = fhir::summarize(&n.resource)?;
            self.check_fits(&n.resource, &summary)?;
            prepared.push(prepare_entry(&n, &summary)?);
        }
        self.write_entries(prepared)
    }

    /// Write prepared entries as one change (the caller checked that they
    /// belong here). Returns their ids, in order.
    pub(super) fn write_entries(
        &mut self,
        prepared: Vec<PreparedEntry>,
    ) -> Result<Vec<EntryId>, RecordError> {
        if prepared.is_empty() {
            return Ok(Vec::new());
        }
        let (ids, versions): (Vec<EntryId>, Vec<Vec<u8>>) =
            prepared.into_iter().map(|p| (p.id, p.version)).unzip();
        self.append_versions(versions)?;
        Ok(ids)
    }

    /// Append a new version with a corrected resource. The resource must
    /// have the entry's resource type and belong to this section (else
    /// [`RecordError::WrongSection`]); a hidden entry cannot be amended.
    pub fn amend_entry(
        &mut self,
        id: EntryId,
        resource: Value,
        author: IdentityId,
        recorded_at_ms: i64,
    ) -> Result<(), RecordError> {
        let indexed = self
            .index
            .entries
            .get(&id)
            .ok_or(RecordError::UnknownEntry(id))?;
        if indexed.hidden {
            return Err(RecordError::AlreadyEnteredInError(id));
        }
        let summary = fhir::summarize(&resource)?;
        let wrong = RecordError::WrongSection {
            entry: id,
            expected: self.section,
        };
        if summary.resource_type != indexed.meta.resource_type {
            return Err(wrong);
        }
        if self.check_fits(&resource, &summary).is_err() {
            return Err(wrong);
        }
        let base = indexed.current().map(|v| v.key.base());
        let version =
            layout::encode_version(id, author, recorded_at_ms, None, base, &summary, &resource)
                .map_err(|_| RecordError::Automerge("could not serialise the resource".into()))?;
        self.append_versions(vec![version])
    }

    /// Append a version with status entered-in-error (the current version's
    /// resource and index copied). The entry is hidden from then on.
    pub fn mark_entered_in_error(
        &mut self,
        id: EntryId,
        author: IdentityId,
        recorded_at_ms: i64,
    ) -> Result<(), RecordError> {
        let indexed = self
            .index
            .entries
            .get(&id)
            .ok_or(RecordError::UnknownEntry(id))?;
        if indexed.hidden {
            return Err(RecordError::AlreadyEnteredInError(id));
        }
        let current = indexed.current().ok_or(RecordError::UnknownEntry(id))?;
        let version = self
            .with_version_bytes(current.key.pos, |bytes| {
                layout::reissue_version(
                    bytes,
                    author,
                    recorded_at_ms,
                    EntryStatus::EnteredInError,
                    current.key.base(),
                )
            })
            .ok_or(RecordError::UnknownEntry(id))?;
        self.append_versions(vec![version])
    }

    // ----- reading -----------------------------------------------------------

    /// Run `f` on the bytes of the version at list position `pos`.
    fn with_version_bytes<R>(&self, pos: usize, f: impl FnOnce(&[u8]) -> Option<R>) -> Option<R> {
        match self.doc.get(&self.versions, pos) {
            Ok(Some((AmValue::Scalar(s), _))) => match s.as_ref() {
                ScalarValue::Bytes(b) => f(b),
                _ => None,
            },
            _ => None,
        }
    }

    /// A version as returned: its header decoded, its resource parsed.
    fn full_version(&self, v: &IndexedVersion) -> Option<EntryVersion> {
        self.with_version_bytes(v.key.pos, |bytes| {
            let (header, resource) = layout::split_version(bytes)?;
            let h = VersionHeader::decode(header)?;
            let resource: Value = serde_json::from_slice(resource).ok()?;
            Some(EntryVersion {
                author: h.author,
                recorded_at_ms: h.recorded_at,
                status: h.status,
                concurrent: false,
                resource,
                date: h.date,
                date_text: h.date_text.map(str::to_string),
                codes: h
                    .codes
                    .codes()
                    .map(|(system, code)| Coding {
                        system: system.map(str::to_string),
                        code: code.to_string(),
                    })
                    .collect(),
                displays: h.displays.strs().map(str::to_string).collect(),
            })
        })
    }

    fn build_entry(&self, id: EntryId, e: &IndexedEntry) -> Option<Entry> {
        let contested = e.contested_bases();
        let newest = e.current()?;
        let mut current = self.full_version(newest)?;
        current.concurrent = newest.base.is_some_and(|b| contested.contains(&b));
        Some(Entry {
            id,
            section: self.section,
            resource_type: e.meta.resource_type.clone(),
            source_system: e.meta.source_system.clone(),
            source_id: e.meta.source_id.clone(),
            created_by: e.meta.created_by,
            created_at_ms: e.meta.created_at,
            version_count: e.versions.len(),
            status: e.status(),
            conflict: current.concurrent,
            current,
        })
    }

    /// One entry (hidden or not), or `None` if unknown.
    pub fn entry(&self, id: EntryId) -> Option<Entry> {
        self.build_entry(id, self.index.entries.get(&id)?)
    }

    /// Every version of an entry, ordered by (recorded_at_ms, author, list
    /// position); the last one is the current version.
    pub fn history(&self, id: EntryId) -> Result<Vec<EntryVersion>, RecordError> {
        let e = self
            .index
            .entries
            .get(&id)
            .ok_or(RecordError::UnknownEntry(id))?;
        let contested = e.contested_bases();
        Ok(e.versions
            .iter()
            .filter_map(|v| {
                let mut full = self.full_version(v)?;
                full.concurrent = v.base.is_some_and(|b| contested.contains(&b));
                Some(full)
            })
            .collect())
    }

    /// All entries in id order; hidden ones only if `include_hidden`.
    pub fn entries(&self, include_hidden: bool) -> Vec<Entry> {
        self.index
            .entries
            .iter()
            .filter(|(_, e)| include_hidden || !e.hidden)
            .filter_map(|(id, e)| self.build_entry(*id, e))
            .collect()
    }

    /// Ids of all entries in id order; hidden ones only if `include_hidden`.
    /// (No resource is read.)
    pub fn entry_ids(&self, include_hidden: bool) -> Vec<EntryId> {
        self.index
            .entries
            .iter()
            .filter(|(_, e)| include_hidden || !e.hidden)
            .map(|(id, _)| *id)
            .collect()
    }

    /// The entry created with this source system and source id, if any
    /// (visible entries are preferred over hidden ones; then the lowest id).
    pub fn find_by_source(&self, source_system: &str, source_id: &str) -> Option<EntryId> {
        let mut matches = self.index.entries.iter().filter(|(_, e)| {
            e.meta.source_id.as_deref() == Some(source_id)
                && e.meta.source_system.as_deref() == Some(source_system)
        });
        let mut hidden_match = None;
        for (id, e) in matches.by_ref() {
            if !e.hidden {
                return Some(*id);
            }
            hidden_match = hidden_match.or(Some(*id));
        }
        hidden_match
    }

    /// Entries matching `query` (index fields of the current version only),
    /// sorted by clinical date descending (undated last), then id.
    pub fn query(&self, query: &Query) -> Vec<Entry> {
        if query.section.is_some_and(|s| s != self.section) {
            return Vec::new();
        }
        let text = query.text.as_ref().map(|t| t.to_lowercase());
        let mut out: Vec<Entry> = self
            .index
            .entries
            .iter()
            .filter(|(_, e)| query.include_entered_in_error || !e.hidden)
            .filter(|(_, e)| {
                if query.from_ms.is_some() || query.to_ms.is_some() {
                    let Some(date) = e.date else {
                        return false;
                    };
                    if query.from_ms.is_some_and(|from| date < from)
                        || query.to_ms.is_some_and(|to| date > to)
                    {
                        return false;
                    }
                }
                if query.code.is_none() && text.is_none() {
                    return true;
                }
                let Some(current) = e.current_header() else {
                    return false;
                };
                if let Some((system, code)) = &query.code {
                    let hit = current.codes.codes().any(|(s, c)| {
                        c == code && system.as_deref().is_none_or(|want| s == Some(want))
                    });
                    if !hit {
                        return false;
                    }
                }
                if let Some(text) = &text {
                    if !current
                        .displays
                        .strs()
                        .any(|d| d.to_lowercase().contains(text.as_str()))
                    {
                        return false;
                    }
                }
                true
            })
            .filter_map(|(id, e)| self.build_entry(*id, e))
            .collect();
        sort_for_listing(&mut out);
        out
    }

    /// Counts from the in-memory index (no resource JSON, no document reads).
    pub fn summary(&self) -> SectionSummary {
        let mut summary = SectionSummary {
            section: self.section,
            active: 0,
            entered_in_error: 0,
            latest_date_ms: None,
            by_resource_type: BTreeMap::new(),
        };
        for e in self.index.entries.values() {
            if e.hidden {
                summary.entered_in_error += 1;
                continue;
            }
            summary.active += 1;
            match summary.by_resource_type.get_mut(&e.meta.resource_type) {
                Some(n) => *n += 1,
                None => {
                    summary
                        .by_resource_type
                        .insert(e.meta.resource_type.clone(), 1);
                }
            }
            if let Some(date) = e.date {
                summary.latest_date_ms = Some(summary.latest_date_ms.map_or(date, |d| d.max(date)));
            }
        }
        summary
    }
}

/// Clinical date descending (undated last), then id ascending.
pub(crate) fn sort_for_listing(entries: &mut [Entry]) {
    entries.sort_by(|a, b| {
        b.current
            .date
            .cmp(&a.current.date)
            .then_with(|| a.id.cmp(&b.id))
    });
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn resource(code: &str) -> Value {
        serde_json::json!({
            "resourceType": "Condition",
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": code}]},
            "onsetDateTime": "2012"
        })
    }

    fn new_entry(code: &str) -> NewEntry {
        NewEntry {
            resource: resource(code),
            author: IdentityId([1; 32]),
            recorded_at_ms: 1,
            source_system: None,
            source_id: None,
        }
    }

    #[test]
    fn saves_without_deflate_and_loads_both() {
        let mut a = SectionDoc::new(Section::Conditions);
        let resource = serde_json::json!({"resourceType": "Condition",
            "note": [{"text": "x".repeat(4000)}]});
        a.add_entry(NewEntry {
            resource,
            ..new_entry("1")
        })
        .unwrap();
        let plain = a.save();
        let deflated = a.doc.save();
        assert!(
            deflated.len() < plain.len() / 4,
            "save is not DEFLATE-compressed"
        );
        for bytes in [&plain, &deflated] {
            let b = SectionDoc::load(Section::Conditions, bytes).unwrap();
            assert_eq!(b.entries(true), a.entries(true));
            b.assert_index_consistent();
        }
    }

    #[test]
    fn other_layouts_are_refused() {
        for layout in [None, Some(1u64), Some(3)] {
            let mut doc = Automerge::new();
            doc.transact(|tx| -> Result<(), AutomergeError> {
                tx.put(ROOT, K_SECTION, "conditions")?;
                if let Some(l) = layout {
                    tx.put(ROOT, K_LAYOUT, l)?;
                }
                tx.put_object(ROOT, "entries", ObjType::Map)?;
                Ok(())
            })
            .unwrap();
            let err = SectionDoc::load(Section::Conditions, &doc.save()).unwrap_err();
            let RecordError::Automerge(msg) = err else {
                panic!("{err:?}")
            };
            assert!(msg.contains("layout") && msg.contains('2'), "{msg}");
        }
    }

    /// Versions list items this code never writes (other values, unreadable
    /// bytes, versions before or without their creating version) are
    /// ignored the same way by every path that indexes.
    #[test]
    fn foreign_items_are_ignored_consistently() {
        let base = SectionDoc::new(Section::Conditions);
        let summary = crate::fhir::summarize(&resource("x")).unwrap();
        let entry = EntryId::random();
        let amend = |at: i64| {
            layout::encode_version(
                entry,
                IdentityId([2; 32]),
                at,
                None,
                None,
                &summary,
                &resource("a"),
            )
            .unwrap()
        };
        let creation = layout::encode_version(
            entry,
            IdentityId([1; 32]),
            5,
            Some(Creation {
                resource_type: "Condition",
                source_system: None,
                source_id: None,
            }),
            None,
            &summary,
            &resource("x"),
        )
        .unwrap();
        for incremental in [false, true] {
            FORCE_INCREMENTAL.with(|f| f.set(Some(incremental)));
            let mut writer = base.clone();
            let mut reader = base.clone();
            let _ = writer.take_changes();
            let step = |w: &mut SectionDoc, r: &mut SectionDoc, value: ScalarValue| {
                let list = w.versions.clone();
                let at = w.doc.length(&list);
                w.transact(|tx| tx.insert(&list, at, value)).unwrap();
                w.reindex_all();
                r.apply_changes(&w.take_changes()).unwrap();
                r.assert_index_consistent();
                assert!(r.index == w.index);
            };
            step(
                &mut writer,
                &mut reader,
                ScalarValue::Str("not a version".into()),
            );
            step(&mut writer, &mut reader, ScalarValue::Bytes(vec![1, 2, 3]));
            step(&mut writer, &mut reader, ScalarValue::Bytes(amend(7)));
            assert!(reader.is_empty() && reader.index.orphans);
            step(
                &mut writer,
                &mut reader,
                ScalarValue::Bytes(creation.clone()),
            );
            assert_eq!(reader.len(), 1);
            let e = reader.entry(entry).unwrap();
            assert_eq!((e.version_count, e.created_at_ms), (2, 5));
            assert_eq!(e.current.resource, resource("a"));
            // A second creating version of the same entry is one more version.
            step(
                &mut writer,
                &mut reader,
                ScalarValue::Bytes(creation.clone()),
            );
            assert_eq!(reader.entry(entry).unwrap().version_count, 3);
            let mut own = reader.clone();
            own.add_entry(new_entry("own")).unwrap();
            own.amend_entry(entry, resource("b"), IdentityId([3; 32]), 9)
                .unwrap();
            own.assert_index_consistent();
            assert_eq!(own.len(), 2);
        }
        FORCE_INCREMENTAL.with(|f| f.set(None));
    }

    /// The genesis change of every section, pinned: changing it (or the
    /// layout it writes) splits devices into documents that cannot merge.
    #[test]
    fn genesis_hashes_are_pinned() {
        let pinned: [(Section, &str); 13] = [
            (
                Section::Demographics,
                "5ae8c0d7d10c64767877eac259bd5f61aad697d4cfb6751999f8d495f7ee8c1d",
            ),
            (
                Section::Allergies,
                "704643e162e01e2c102543b10be8dff4f858285fa3d1028d34d421c331fc1889",
            ),
            (
                Section::Medications,
                "689b671134335b6aebfa02932047f1da1ffa0ea2b121991eff43f1de3f26acfc",
            ),
            (
                Section::Conditions,
                "fb7a50bdcad6d9b5ac0a0f7a9e755eb04c4a4d414b01d891f27e631661421d69",
            ),
            (
                Section::Immunizations,
                "e01e8ef6f4809b360908c242554efd9d18836cc6c5fa29d187d23df313cfffac",
            ),
            (
                Section::Procedures,
                "029c1a4e399c03fc3611a6c7762805b26a0ce9a8b8181a6d9434e2f88fa55bed",
            ),
            (
                Section::Encounters,
                "edfb3c8779e99d483b3a7fa066aa7d60fd6165384e67f5522a11e474719fbdfd",
            ),
            (
                Section::Vitals,
                "683c4c9e8eebdede0ce6d308ca7148f699ba6e3d8093463c62a605d2440dcdfa",
            ),
            (
                Section::Labs,
                "ccbafb510747a3da80122f8217f7154b76977873cdf2ac7f75a14232c01dee41",
            ),
            (
                Section::Documents,
                "e3f697493933f2bbed565a87aedc3a65a2830f55e1a39c00889a65a824c73caf",
            ),
            (
                Section::CarePlan,
                "54c46900e6dea1ad4baf0c9bc326290c8df90f9d613a7a07928f9b0702d40197",
            ),
            (
                Section::Wearables,
                "07efe4c5cdab8691204374832d42dd53290823b9a9ac21fe9619a18d70fa13fd",
            ),
            (
                Section::Notes,
                "375b5a3d2e18ae8600532ca108cc61da83b3aed1296e622b9ee6bccee94028e4",
            ),
        ];
        for (section, want) in pinned {
            let (_, hash) = genesis(section).unwrap();
            assert_eq!(hash.to_string(), want, "{section}");
            assert_eq!(genesis_cached(section).unwrap().1, hash);
        }
    }
}
