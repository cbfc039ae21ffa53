//! One section as an automerge document: entries, versions, the derived
//! index, change exchange.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::sync::{Arc, OnceLock};

use automerge::iter::{DocItem, DocObjItem};
use automerge::transaction::{Transactable, Transaction};
use automerge::{
    ActorId, Automerge, AutomergeError, ChangeHash, ObjId, ObjType, Patch, PatchAction, PatchLog,
    Prop, ReadDoc, SaveOptions, ScalarValue, ScalarValueRef, Value as AmValue, ValueRef, ROOT,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::layout::{self, MetaRef, VersionHeader};
use super::wire;
use super::{RecordError, Section};
use crate::fhir::{self, Coding, ResourceSummary};
use crate::ids::{EntryId, IdentityId};

// Document keys (the layout is described in the module documentation).
const K_SECTION: &str = "section";
const K_LAYOUT: &str = "layout";
const K_ENTRIES: &str = "entries";
const K_META: &str = "meta";
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
}

/// An entry's immutable metadata (decoded from its `meta` scalar).
#[derive(Clone, PartialEq)]
struct Meta {
    resource_type: String,
    source_system: Option<String>,
    source_id: Option<String>,
    created_by: IdentityId,
    created_at: i64,
}

impl Meta {
    fn decode(bytes: &[u8]) -> Option<Self> {
        let m = MetaRef::decode(bytes)?;
        Some(Meta {
            resource_type: m.resource_type.to_string(),
            source_system: m.source_system.map(str::to_string),
            source_id: m.source_id.map(str::to_string),
            created_by: m.created_by,
            created_at: m.created_at,
        })
    }
}

/// The in-memory index of one entry. Holds no resource JSON: only what
/// summaries, filters and lookups need.
#[derive(Clone, PartialEq)]
struct IndexedEntry {
    /// The entry's `versions` list.
    versions_obj: ObjId,
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

    fn current_header(&self) -> Option<VersionHeader<'_>> {
        VersionHeader::decode(&self.current_header)
    }
}

/// Collects the readable versions of one entry, in list order.
#[derive(Default)]
struct VersionsAcc {
    versions: Vec<IndexedVersion>,
    /// The greatest so far: key, date and header.
    current: Option<(VersionKey, Option<i64>, Box<[u8]>)>,
}

impl VersionsAcc {
    /// Add the version scalar at list position `pos` (skipped if unreadable).
    fn push(&mut self, pos: usize, bytes: &[u8]) {
        let Some((header, _resource)) = layout::split_version(bytes) else {
            return;
        };
        let Some(h) = VersionHeader::decode(header) else {
            return;
        };
        let key = VersionKey {
            recorded_at: h.recorded_at,
            author: h.author,
            pos,
        };
        self.versions.push(IndexedVersion {
            key,
            status: h.status,
        });
        if self.current.as_ref().is_none_or(|(k, ..)| key > *k) {
            self.current = Some((key, h.date, header.into()));
        }
    }

    /// The entry's index; `None` without a readable version (such entries
    /// are invisible).
    fn finish(mut self, meta: Meta, versions_obj: ObjId) -> Option<IndexedEntry> {
        let (_, date, current_header) = self.current?;
        self.versions.sort_unstable_by_key(|v| v.key);
        let hidden = self
            .versions
            .iter()
            .any(|v| v.status == EntryStatus::EnteredInError);
        Some(IndexedEntry {
            versions_obj,
            meta,
            versions: self.versions,
            hidden,
            date,
            current_header,
        })
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

fn is_list(v: &ValueRef<'_>) -> bool {
    matches!(v, ValueRef::Object(ObjType::List))
}

fn is_map(v: &ValueRef<'_>) -> bool {
    matches!(v, ValueRef::Object(ObjType::Map))
}

/// An entry key: exactly the 32 lower-case hex digits of an entry id (any
/// other key in the entries map is ignored).
fn parse_entry_key(key: &str) -> Option<EntryId> {
    let bytes = key.as_bytes();
    if bytes.len() != 2 * EntryId::LEN {
        return None;
    }
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut id = [0u8; EntryId::LEN];
    for (out, pair) in id.iter_mut().zip(bytes.chunks_exact(2)) {
        *out = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Some(EntryId(id))
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

/// Read the index of one entry map; `None` if malformed or without a
/// readable version (such entries are invisible).
fn read_entry(doc: &Automerge, obj: &ObjId) -> Option<IndexedEntry> {
    let (mut meta, mut versions_obj) = (None, None);
    for item in doc.map_range(obj, ..) {
        match item.key.as_ref() {
            K_META => meta = as_bytes(&item.value).and_then(Meta::decode),
            K_VERSIONS if is_list(&item.value) => versions_obj = Some(item.id()),
            _ => {}
        }
    }
    let (meta, versions_obj) = (meta?, versions_obj?);
    let mut acc = VersionsAcc::default();
    for item in doc.list_range(&versions_obj, ..) {
        if let Some(bytes) = as_bytes(&item.value) {
            acc.push(item.index, bytes);
        }
    }
    acc.finish(meta, versions_obj)
}

/// The key of the entry a patch touches, or `None` if it touches the
/// document outside the entries (the whole index is then rebuilt).
fn entry_key_of<'p>(patch: &'p Patch, entries: Option<&ObjId>) -> Option<&'p str> {
    let entries = entries?;
    if &patch.obj == entries {
        return match &patch.action {
            PatchAction::PutMap { key, .. } | PatchAction::DeleteMap { key } => Some(key),
            PatchAction::Conflict {
                prop: Prop::Map(key),
            } => Some(key),
            _ => None,
        };
    }
    match patch.path.get(1) {
        Some((obj, Prop::Map(key))) if obj == entries => Some(key),
        _ => None,
    }
}

/// One entry while scanning the document.
struct EntryParts {
    id: EntryId,
    meta: Option<Meta>,
    versions_obj: Option<ObjId>,
    versions: VersionsAcc,
}

/// Build the whole index in one pass over the document (automerge's
/// document iterator visits an object's items before the objects they
/// contain, so every object's role is known when it is reached). Only
/// version headers are decoded. Gives the same result as [`read_entry`] on
/// every entry, at a fraction of the cost.
fn build_index(doc: &Automerge, entries: &ObjId) -> BTreeMap<EntryId, IndexedEntry> {
    /// What an object of the document is: the entries map, or the map or
    /// versions list of `parts[i]`.
    #[derive(Clone, Copy)]
    enum Role {
        Other,
        Entries,
        Entry(usize),
        Versions(usize),
    }
    let mut roles: HashMap<ObjId, Role> = HashMap::new();
    roles.insert(entries.clone(), Role::Entries);
    let mut parts: Vec<EntryParts> = Vec::new();
    let mut last: Option<(Arc<ObjId>, Role)> = None;
    for DocObjItem { obj, item } in doc.iter() {
        let role = match &last {
            Some((o, r)) if Arc::ptr_eq(o, &obj) => *r,
            _ => {
                let r = roles.get(obj.as_ref()).copied().unwrap_or(Role::Other);
                last = Some((obj, r));
                r
            }
        };
        match (role, item) {
            (Role::Entries, DocItem::Map(m)) if is_map(&m.value) => {
                if let Some(id) = parse_entry_key(&m.key) {
                    roles.insert(m.id(), Role::Entry(parts.len()));
                    parts.push(EntryParts {
                        id,
                        meta: None,
                        versions_obj: None,
                        versions: VersionsAcc::default(),
                    });
                }
            }
            (Role::Entry(i), DocItem::Map(m)) => {
                let Some(p) = parts.get_mut(i) else { continue };
                match m.key.as_ref() {
                    K_META => p.meta = as_bytes(&m.value).and_then(Meta::decode),
                    K_VERSIONS if is_list(&m.value) => {
                        let o = m.id();
                        roles.insert(o.clone(), Role::Versions(i));
                        p.versions_obj = Some(o);
                    }
                    _ => {}
                }
            }
            (Role::Versions(i), DocItem::List(l)) => {
                if let (Some(p), Some(bytes)) = (parts.get_mut(i), as_bytes(&l.value)) {
                    p.versions.push(l.index, bytes);
                }
            }
            _ => {}
        }
    }
    parts
        .into_iter()
        .filter_map(|p| {
            let entry = p.versions.finish(p.meta?, p.versions_obj?)?;
            Some((p.id, entry))
        })
        .collect()
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
        tx.put_object(ROOT, K_ENTRIES, ObjType::Map)?;
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

/// The hash of [`genesis`] (computed once per section and process).
fn genesis_hash(section: Section) -> Result<ChangeHash, RecordError> {
    static HASHES: [OnceLock<ChangeHash>; Section::ALL.len()] =
        [const { OnceLock::new() }; Section::ALL.len()];
    let cell = HASHES
        .get(section as usize)
        .ok_or_else(|| RecordError::Automerge("unknown section".into()))?;
    if let Some(hash) = cell.get() {
        return Ok(*hash);
    }
    let (_, hash) = genesis(section)?;
    Ok(*cell.get_or_init(|| hash))
}

fn random_actor() -> ActorId {
    // 16 bytes from the system CSPRNG (via the entry-id generator).
    ActorId::from(&EntryId::random().0[..])
}

/// Above this many incoming operations, or bytes, re-index everything
/// instead of tracking which entries changed (patches copy every value).
const FULL_REINDEX_OPS: usize = 2_000;
const FULL_REINDEX_BYTES: usize = 1 << 20;

/// A new entry, checked and encoded, ready to be written.
pub(super) struct PreparedEntry {
    id: EntryId,
    meta: Vec<u8>,
    version: Vec<u8>,
}

/// Encode a new entry whose resource has been summarised (and checked to
/// fit the section it goes to). The resource JSON is serialised here.
pub(super) fn prepare_entry(
    new: &NewEntry,
    summary: &ResourceSummary,
) -> Result<PreparedEntry, RecordError> {
    let meta = MetaRef {
        resource_type: &summary.resource_type,
        created_by: new.author,
        created_at: new.recorded_at_ms,
        source_system: new.source_system.as_deref(),
        source_id: new.source_id.as_deref(),
    }
    .encode();
    let version = layout::encode_version(new.author, new.recorded_at_ms, summary, &new.resource)
        .map_err(|_| RecordError::Automerge("could not serialise the resource".into()))?;
    Ok(PreparedEntry {
        id: EntryId::random(),
        meta,
        version,
    })
}

/// One section of a record as an automerge document. See the module
/// documentation for the layout and the merge rules.
#[derive(Clone)]
pub struct SectionDoc {
    section: Section,
    doc: Automerge,
    genesis: ChangeHash,
    /// Local changes not yet returned by `take_changes` (or covered by `save`).
    pending: Vec<ChangeHash>,
    /// The index fields of every entry, kept in step with `doc`.
    index: BTreeMap<EntryId, IndexedEntry>,
}

impl fmt::Debug for SectionDoc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SectionDoc")
            .field("section", &self.section)
            .field("entries", &self.index.len())
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
        let (mut doc, genesis) = genesis(section).expect("genesis change of a fresh document");
        doc.set_actor(random_actor());
        SectionDoc {
            section,
            doc,
            genesis,
            pending: vec![genesis],
            index: BTreeMap::new(),
        }
    }

    /// Load a full save (output of [`SectionDoc::save`], compressed or
    /// not). Refuses bytes that are corrupt, belong to another section, or
    /// have another layout version.
    pub fn load(section: Section, bytes: &[u8]) -> Result<Self, RecordError> {
        let genesis = genesis_hash(section)?;
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
        if doc.get_change_meta_by_hash(&genesis).is_none()
            || get_obj(&doc, &ROOT, K_ENTRIES, ObjType::Map).is_none()
        {
            return Err(not_ours());
        }
        doc.set_actor(random_actor());
        let mut loaded = SectionDoc {
            section,
            doc,
            genesis,
            pending: Vec::new(),
            index: BTreeMap::new(),
        };
        loaded.reindex_all();
        Ok(loaded)
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
        let refused = |_| RecordError::Automerge("could not apply changes".into());
        if ops > FULL_REINDEX_OPS || bytes.len() > FULL_REINDEX_BYTES {
            let result = self.doc.apply_changes(changes).map_err(refused);
            self.reindex_all();
            return result;
        }
        let mut log = PatchLog::active();
        let result = self
            .doc
            .apply_changes_log_patches(changes, &mut log)
            .map_err(refused);
        let patches = self.doc.make_patches(&mut log);
        let entries = self.entries_obj();
        let mut touched = BTreeSet::new();
        for patch in &patches {
            match entry_key_of(patch, entries.as_ref()) {
                Some(key) => {
                    if let Some(id) = parse_entry_key(key) {
                        touched.insert(id);
                    }
                }
                None => {
                    self.reindex_all();
                    return result;
                }
            }
        }
        self.reindex(touched);
        result
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
        self.index.len()
    }

    /// Whether the section has no entries.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Whether the section holds entry `id`.
    pub fn contains(&self, id: EntryId) -> bool {
        self.index.contains_key(&id)
    }

    // ----- index maintenance -------------------------------------------------

    fn entries_obj(&self) -> Option<ObjId> {
        get_obj(&self.doc, &ROOT, K_ENTRIES, ObjType::Map)
    }

    /// Rebuild the whole index from the document.
    fn reindex_all(&mut self) {
        self.index = match self.entries_obj() {
            Some(entries) => build_index(&self.doc, &entries),
            None => BTreeMap::new(),
        };
    }

    /// The index as [`read_entry`] sees it, entry by entry (for tests).
    #[cfg(test)]
    fn index_by_entry(&self) -> BTreeMap<EntryId, IndexedEntry> {
        let mut index = BTreeMap::new();
        if let Some(entries) = self.entries_obj() {
            for item in self.doc.map_range(&entries, ..) {
                if !is_map(&item.value) {
                    continue;
                }
                let Some(id) = parse_entry_key(&item.key) else {
                    continue;
                };
                if let Some(e) = read_entry(&self.doc, &item.id()) {
                    index.insert(id, e);
                }
            }
        }
        index
    }

    /// Check the incremental index against fresh rebuilds (for tests).
    #[cfg(test)]
    pub(super) fn assert_index_consistent(&self) {
        let by_entry = self.index_by_entry();
        let built = match self.entries_obj() {
            Some(entries) => build_index(&self.doc, &entries),
            None => BTreeMap::new(),
        };
        assert!(
            by_entry == built,
            "one-pass index differs from per-entry reads"
        );
        assert!(
            self.index == built,
            "incremental index differs from a rebuild"
        );
    }

    /// Re-read some entries from the document.
    fn reindex(&mut self, ids: impl IntoIterator<Item = EntryId>) {
        let entries = self.entries_obj();
        for id in ids {
            let read = entries
                .as_ref()
                .and_then(|e| get_obj(&self.doc, e, &id.to_hex(), ObjType::Map))
                .and_then(|obj| read_entry(&self.doc, &obj));
            match read {
                Some(e) => {
                    self.index.insert(id, e);
                }
                None => {
                    self.index.remove(&id);
                }
            }
        }
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
        let entries = self
            .entries_obj()
            .ok_or_else(|| RecordError::Automerge("section document has no entries map".into()))?;
        // Index the new entries from the very bytes written (as a rebuild would).
        let mut fresh = Vec::with_capacity(prepared.len());
        for p in &prepared {
            let meta = Meta::decode(&p.meta)
                .ok_or_else(|| RecordError::Automerge("could not encode an entry".into()))?;
            let mut versions = VersionsAcc::default();
            versions.push(0, &p.version);
            fresh.push((p.id, meta, versions));
        }
        let lists = self.transact(|tx| {
            let mut lists = Vec::with_capacity(prepared.len());
            for p in prepared {
                let e = tx.put_object(&entries, p.id.to_hex(), ObjType::Map)?;
                tx.put(&e, K_META, ScalarValue::Bytes(p.meta))?;
                let versions = tx.put_object(&e, K_VERSIONS, ObjType::List)?;
                tx.insert(&versions, 0, ScalarValue::Bytes(p.version))?;
                lists.push(versions);
            }
            Ok(lists)
        })?;
        let mut ids = Vec::with_capacity(lists.len());
        for ((id, meta, versions), list) in fresh.into_iter().zip(lists) {
            if let Some(e) = versions.finish(meta, list) {
                self.index.insert(id, e);
            }
            ids.push(id);
        }
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
        let indexed = self.index.get(&id).ok_or(RecordError::UnknownEntry(id))?;
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
        let version = layout::encode_version(author, recorded_at_ms, &summary, &resource)
            .map_err(|_| RecordError::Automerge("could not serialise the resource".into()))?;
        self.append_version(id, version)
    }

    /// Append a version with status entered-in-error (the current version's
    /// resource and index copied). The entry is hidden from then on.
    pub fn mark_entered_in_error(
        &mut self,
        id: EntryId,
        author: IdentityId,
        recorded_at_ms: i64,
    ) -> Result<(), RecordError> {
        let indexed = self.index.get(&id).ok_or(RecordError::UnknownEntry(id))?;
        if indexed.hidden {
            return Err(RecordError::AlreadyEnteredInError(id));
        }
        let current = indexed.current().ok_or(RecordError::UnknownEntry(id))?;
        let version = self
            .with_version_bytes(indexed, current.key.pos, |bytes| {
                layout::reissue_version(bytes, author, recorded_at_ms, EntryStatus::EnteredInError)
            })
            .ok_or(RecordError::UnknownEntry(id))?;
        self.append_version(id, version)
    }

    fn append_version(&mut self, id: EntryId, version: Vec<u8>) -> Result<(), RecordError> {
        let versions = self
            .index
            .get(&id)
            .map(|e| e.versions_obj.clone())
            .ok_or(RecordError::UnknownEntry(id))?;
        let index = self.doc.length(&versions);
        self.transact(|tx| tx.insert(&versions, index, ScalarValue::Bytes(version)))?;
        self.reindex([id]);
        Ok(())
    }

    // ----- reading -----------------------------------------------------------

    /// Run `f` on the bytes of the version at list position `pos` (borrowed
    /// from the document, not copied).
    fn with_version_bytes<R>(
        &self,
        e: &IndexedEntry,
        pos: usize,
        f: impl FnOnce(&[u8]) -> Option<R>,
    ) -> Option<R> {
        let item = self.doc.list_range(&e.versions_obj, pos..pos + 1).next()?;
        f(as_bytes(&item.value)?)
    }

    /// A version as returned: its header decoded, its resource parsed.
    fn full_version(&self, e: &IndexedEntry, v: &IndexedVersion) -> Option<EntryVersion> {
        self.with_version_bytes(e, v.key.pos, |bytes| {
            let (header, resource) = layout::split_version(bytes)?;
            let h = VersionHeader::decode(header)?;
            let resource: Value = serde_json::from_slice(resource).ok()?;
            Some(EntryVersion {
                author: h.author,
                recorded_at_ms: h.recorded_at,
                status: h.status,
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
        Some(Entry {
            id,
            section: self.section,
            resource_type: e.meta.resource_type.clone(),
            source_system: e.meta.source_system.clone(),
            source_id: e.meta.source_id.clone(),
            created_by: e.meta.created_by,
            created_at_ms: e.meta.created_at,
            current: self.full_version(e, e.current()?)?,
            version_count: e.versions.len(),
            status: e.status(),
        })
    }

    /// One entry (hidden or not), or `None` if unknown.
    pub fn entry(&self, id: EntryId) -> Option<Entry> {
        self.build_entry(id, self.index.get(&id)?)
    }

    /// Every version of an entry, ordered by (recorded_at_ms, author, list
    /// position); the last one is the current version.
    pub fn history(&self, id: EntryId) -> Result<Vec<EntryVersion>, RecordError> {
        let e = self.index.get(&id).ok_or(RecordError::UnknownEntry(id))?;
        Ok(e.versions
            .iter()
            .filter_map(|v| self.full_version(e, v))
            .collect())
    }

    /// All entries in id order; hidden ones only if `include_hidden`.
    pub fn entries(&self, include_hidden: bool) -> Vec<Entry> {
        self.index
            .iter()
            .filter(|(_, e)| include_hidden || !e.hidden)
            .filter_map(|(id, e)| self.build_entry(*id, e))
            .collect()
    }

    /// Ids of all entries in id order; hidden ones only if `include_hidden`.
    /// (No resource is read.)
    pub fn entry_ids(&self, include_hidden: bool) -> Vec<EntryId> {
        self.index
            .iter()
            .filter(|(_, e)| include_hidden || !e.hidden)
            .map(|(id, _)| *id)
            .collect()
    }

    /// The entry created with this source system and source id, if any
    /// (visible entries are preferred over hidden ones; then the lowest id).
    pub fn find_by_source(&self, source_system: &str, source_id: &str) -> Option<EntryId> {
        let mut matches = self.index.iter().filter(|(_, e)| {
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
        for e in self.index.values() {
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

    #[test]
    fn entry_keys_are_canonical_hex() {
        let id = EntryId::random();
        assert_eq!(parse_entry_key(&id.to_hex()), Some(id));
        assert_eq!(parse_entry_key(&id.to_hex().to_uppercase()), None);
        assert_eq!(parse_entry_key(&format!(" {}", &id.to_hex()[1..])), None);
        assert_eq!(parse_entry_key(&id.to_hex()[2..]), None);
        assert_eq!(parse_entry_key(""), None);
        assert_eq!(parse_entry_key(&"g".repeat(32)), None);
    }

    /// The genesis change of every section, pinned: changing it (or the
    /// layout it writes) splits devices into documents that cannot merge.
    #[test]
    fn genesis_hashes_are_pinned() {
        let pinned: [(Section, &str); 13] = [
            (
                Section::Demographics,
                "74b7cb30892f895feba826ebc721023406eae2b6e66c3fb8d43c8a0e11bd4749",
            ),
            (
                Section::Allergies,
                "be2027e87ff0fc75219906cf0434560f63bff6efe9977680b059018fd843fb4f",
            ),
            (
                Section::Medications,
                "8bfeb9ffbcbb79590f31aa7757dda731360b1768fcbc41b13d86ca616a7fea86",
            ),
            (
                Section::Conditions,
                "cc9fa4b12beb6ab1286b4db6bd9d6a54af99f4ce19fc2ccc822dac738d7db6fd",
            ),
            (
                Section::Immunizations,
                "0fbbac3dba4e23880236b9d742da9b057da49723b6d08016eaa811f106b18b6d",
            ),
            (
                Section::Procedures,
                "95bec521234e2ad86fb669afe54caddfb218772bc56ed04d539bde2d1ab18d92",
            ),
            (
                Section::Encounters,
                "6dccfdff5e24430f5a7c4a026907fe9bb5d5ea24c2c673d990295a112d668cf1",
            ),
            (
                Section::Vitals,
                "d925811a1efa5a066468db5cea481df545ad0b919b702591cec383c888b5326f",
            ),
            (
                Section::Labs,
                "26edf9d3358a6ac29ae522ba5ca672dadd72b81f3ffbd4a2defff23e61a4c4c6",
            ),
            (
                Section::Documents,
                "73c157f5168bc060ae2e4fa52c1e56fbbd097afdec6161d513e91d9e5cc44a7f",
            ),
            (
                Section::CarePlan,
                "be8f8b4ba800a45eb0aba5fd0e1b062c3350713d2b6a1d7ff421e783b9812ffa",
            ),
            (
                Section::Wearables,
                "66f0f33d26f4185b7281ad803e5b333c59f5319d8143a67fa7b77d7061871d48",
            ),
            (
                Section::Notes,
                "2fcb07cb6243d20e30803f411932c9f06359481159714378c62a320d26d18a0b",
            ),
        ];
        for (section, want) in pinned {
            let (_, hash) = genesis(section).unwrap();
            assert_eq!(hash.to_string(), want, "{section}");
            assert_eq!(genesis_hash(section).unwrap(), hash);
        }
    }
}
