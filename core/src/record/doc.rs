//! One section as an automerge document: entries, versions, the derived
//! index, change exchange.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::sync::Arc;

use automerge::iter::{DocItem, DocObjItem};
use automerge::transaction::{Transactable, Transaction};
use automerge::{
    ActorId, Automerge, AutomergeError, ChangeHash, ObjId, ObjType, Patch, PatchAction, PatchLog,
    Prop, ReadDoc, ScalarValue, ScalarValueRef, Value as AmValue, ValueRef, ROOT,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::wire;
use super::{RecordError, Section};
use crate::fhir::{self, Coding, ResourceSummary};
use crate::ids::{EntryId, IdentityId};

// Document keys (the layout is described in the module documentation).
const K_SECTION: &str = "section";
const K_ENTRIES: &str = "entries";
const K_RESOURCE_TYPE: &str = "resource_type";
const K_SOURCE_SYSTEM: &str = "source_system";
const K_SOURCE_ID: &str = "source_id";
const K_CREATED_BY: &str = "created_by";
const K_CREATED_AT: &str = "created_at";
const K_VERSIONS: &str = "versions";
const K_AUTHOR: &str = "author";
const K_RECORDED_AT: &str = "recorded_at";
const K_STATUS: &str = "status";
const K_RESOURCE: &str = "resource";
const K_DATE: &str = "date";
const K_DATE_TEXT: &str = "date_text";
const K_CODES: &str = "codes";
const K_DISPLAYS: &str = "displays";

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

    fn parse(s: &str) -> Option<Self> {
        match s {
            "active" => Some(EntryStatus::Active),
            "entered-in-error" => Some(EntryStatus::EnteredInError),
            _ => None,
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

/// The in-memory index of one version (everything but the resource).
#[derive(Clone, PartialEq)]
struct IndexedVersion {
    key: VersionKey,
    status: EntryStatus,
    date: Option<i64>,
    date_text: Option<String>,
    codes: Vec<Coding>,
    displays: Vec<String>,
    obj: ObjId,
}

/// The in-memory index of one entry; `versions` sorted by key, never empty.
#[derive(Clone, PartialEq)]
struct IndexedEntry {
    obj: ObjId,
    resource_type: String,
    source_system: Option<String>,
    source_id: Option<String>,
    created_by: IdentityId,
    created_at: i64,
    versions: Vec<IndexedVersion>,
}

impl IndexedEntry {
    fn hidden(&self) -> bool {
        self.versions
            .iter()
            .any(|v| v.status == EntryStatus::EnteredInError)
    }

    fn status(&self) -> EntryStatus {
        if self.hidden() {
            EntryStatus::EnteredInError
        } else {
            EntryStatus::Active
        }
    }

    fn current(&self) -> Option<&IndexedVersion> {
        self.versions.last()
    }
}

/// What is written for a version.
struct VersionWrite {
    author: IdentityId,
    recorded_at: i64,
    status: EntryStatus,
    resource_json: String,
    date: Option<i64>,
    date_text: Option<String>,
    codes: Vec<String>,
    displays: Vec<String>,
}

impl VersionWrite {
    fn from_summary(
        summary: ResourceSummary,
        resource: &Value,
        author: IdentityId,
        recorded_at: i64,
    ) -> Result<Self, RecordError> {
        let resource_json = serde_json::to_string(resource)
            .map_err(|_| RecordError::Automerge("could not serialise the resource".into()))?;
        Ok(VersionWrite {
            author,
            recorded_at,
            status: EntryStatus::Active,
            resource_json,
            date: summary.date.as_ref().map(|d| d.start_ms),
            date_text: summary.date.map(|d| d.text),
            codes: summary.codes.iter().map(encode_code).collect(),
            displays: summary.displays,
        })
    }
}

/// `system|code`, with `%` and `|` in the system percent-escaped; an absent
/// system is empty (`|code`). The code is everything after the first `|`.
fn encode_code(c: &Coding) -> String {
    let mut out = String::new();
    for ch in c.system.as_deref().unwrap_or("").chars() {
        match ch {
            '%' => out.push_str("%25"),
            '|' => out.push_str("%7C"),
            _ => out.push(ch),
        }
    }
    out.push('|');
    out.push_str(&c.code);
    out
}

fn decode_code(s: &str) -> Option<Coding> {
    let (sys, code) = s.split_once('|')?;
    let system = if sys.is_empty() {
        None
    } else {
        let mut out = String::with_capacity(sys.len());
        let mut rest = sys;
        while let Some(pos) = rest.find('%') {
            out.push_str(&rest[..pos]);
            let esc = rest.get(pos..pos + 3)?;
            match esc {
                "%25" => out.push('%'),
                "%7C" => out.push('|'),
                _ => return None,
            }
            rest = &rest[pos + 3..];
        }
        out.push_str(rest);
        Some(out)
    };
    Some(Coding {
        system,
        code: code.to_string(),
    })
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

fn as_str<'a>(v: &'a ValueRef<'_>) -> Option<&'a str> {
    match v {
        ValueRef::Scalar(ScalarValueRef::Str(s)) => Some(s.as_ref()),
        _ => None,
    }
}

fn as_int(v: &ValueRef<'_>) -> Option<i64> {
    match v {
        ValueRef::Scalar(ScalarValueRef::Int(i)) => Some(*i),
        _ => None,
    }
}

fn str_list(doc: &Automerge, list: &ObjId) -> Vec<String> {
    doc.list_range(list, ..)
        .filter_map(|item| as_str(&item.value).map(str::to_string))
        .collect()
}

/// Read the index of one version map (one pass over its keys).
fn read_version(doc: &Automerge, obj: ObjId, pos: usize) -> Option<IndexedVersion> {
    let (mut author, mut recorded_at, mut status) = (None, None, None);
    let (mut date, mut date_text, mut codes, mut displays) = (None, None, None, None);
    for item in doc.map_range(&obj, ..) {
        match item.key.as_ref() {
            K_AUTHOR => author = as_str(&item.value).and_then(|s| s.parse::<IdentityId>().ok()),
            K_RECORDED_AT => recorded_at = as_int(&item.value),
            K_STATUS => status = as_str(&item.value).and_then(EntryStatus::parse),
            K_DATE => date = as_int(&item.value),
            K_DATE_TEXT => date_text = as_str(&item.value).map(str::to_string),
            K_CODES if matches!(item.value, ValueRef::Object(ObjType::List)) => {
                codes = Some(item.id())
            }
            K_DISPLAYS if matches!(item.value, ValueRef::Object(ObjType::List)) => {
                displays = Some(item.id())
            }
            _ => {}
        }
    }
    Some(IndexedVersion {
        key: VersionKey {
            recorded_at: recorded_at?,
            author: author?,
            pos,
        },
        status: status?,
        date,
        date_text,
        codes: codes
            .map(|l| {
                str_list(doc, &l)
                    .iter()
                    .filter_map(|s| decode_code(s))
                    .collect()
            })
            .unwrap_or_default(),
        displays: displays.map(|l| str_list(doc, &l)).unwrap_or_default(),
        obj,
    })
}

/// Read the index of one entry map; `None` if malformed or without a
/// readable version (such entries are invisible).
fn read_entry(doc: &Automerge, obj: ObjId) -> Option<IndexedEntry> {
    let (mut resource_type, mut source_system, mut source_id) = (None, None, None);
    let (mut created_by, mut created_at, mut versions_obj) = (None, None, None);
    for item in doc.map_range(&obj, ..) {
        match item.key.as_ref() {
            K_RESOURCE_TYPE => resource_type = as_str(&item.value).map(str::to_string),
            K_SOURCE_SYSTEM => source_system = as_str(&item.value).map(str::to_string),
            K_SOURCE_ID => source_id = as_str(&item.value).map(str::to_string),
            K_CREATED_BY => created_by = as_str(&item.value).and_then(|s| s.parse().ok()),
            K_CREATED_AT => created_at = as_int(&item.value),
            K_VERSIONS if matches!(item.value, ValueRef::Object(ObjType::List)) => {
                versions_obj = Some(item.id())
            }
            _ => {}
        }
    }
    let versions_obj = versions_obj?;
    let mut versions: Vec<IndexedVersion> = doc
        .list_range(&versions_obj, ..)
        .filter(|item| matches!(item.value, ValueRef::Object(ObjType::Map)))
        .filter_map(|item| read_version(doc, item.id(), item.index))
        .collect();
    if versions.is_empty() {
        return None;
    }
    versions.sort_by_key(|v| v.key);
    Some(IndexedEntry {
        obj,
        resource_type: resource_type?,
        source_system,
        source_id,
        created_by: created_by?,
        created_at: created_at?,
        versions,
    })
}

/// The key of the entry a patch touches, or `None` if it touches the
/// document outside the entries (the whole index is then rebuilt).
fn entry_key_of(patch: &Patch, entries: Option<&ObjId>) -> Option<String> {
    let entries = entries?;
    if &patch.obj == entries {
        return match &patch.action {
            PatchAction::PutMap { key, .. } | PatchAction::DeleteMap { key } => Some(key.clone()),
            PatchAction::Conflict {
                prop: Prop::Map(key),
            } => Some(key.clone()),
            _ => None,
        };
    }
    match patch.path.get(1) {
        Some((obj, Prop::Map(key))) if obj == entries => Some(key.clone()),
        _ => None,
    }
}

/// What an object of the document is, while scanning it.
#[derive(Clone, Copy)]
enum Role {
    Other,
    Entries,
    Entry(EntryId),
    Versions(EntryId),
    Version(EntryId, usize),
    Codes(EntryId, usize),
    Displays(EntryId, usize),
}

#[derive(Default)]
struct EntryParts {
    obj: Option<ObjId>,
    resource_type: Option<String>,
    source_system: Option<String>,
    source_id: Option<String>,
    created_by: Option<IdentityId>,
    created_at: Option<i64>,
    versions: BTreeMap<usize, VersionParts>,
}

#[derive(Default)]
struct VersionParts {
    obj: Option<ObjId>,
    author: Option<IdentityId>,
    recorded_at: Option<i64>,
    status: Option<EntryStatus>,
    date: Option<i64>,
    date_text: Option<String>,
    codes: Vec<Coding>,
    displays: Vec<String>,
}

impl VersionParts {
    fn finish(self, pos: usize) -> Option<IndexedVersion> {
        Some(IndexedVersion {
            key: VersionKey {
                recorded_at: self.recorded_at?,
                author: self.author?,
                pos,
            },
            status: self.status?,
            date: self.date,
            date_text: self.date_text,
            codes: self.codes,
            displays: self.displays,
            obj: self.obj?,
        })
    }
}

impl EntryParts {
    fn finish(self) -> Option<IndexedEntry> {
        let mut versions: Vec<IndexedVersion> = self
            .versions
            .into_iter()
            .filter_map(|(pos, v)| v.finish(pos))
            .collect();
        if versions.is_empty() {
            return None;
        }
        versions.sort_by_key(|v| v.key);
        Some(IndexedEntry {
            obj: self.obj?,
            resource_type: self.resource_type?,
            source_system: self.source_system,
            source_id: self.source_id,
            created_by: self.created_by?,
            created_at: self.created_at?,
            versions,
        })
    }
}

/// Build the whole index in one pass over the document (automerge's
/// document iterator visits an object's items before the objects they
/// contain, so every object's role is known when it is reached). Gives the
/// same result as [`read_entry`] on every entry, at a fraction of the cost.
fn build_index(doc: &Automerge, entries: &ObjId) -> BTreeMap<EntryId, IndexedEntry> {
    let mut roles: HashMap<ObjId, Role> = HashMap::new();
    roles.insert(entries.clone(), Role::Entries);
    let mut parts: HashMap<EntryId, EntryParts> = HashMap::new();
    let mut last: Option<(Arc<ObjId>, Role)> = None;
    let is_list = |v: &ValueRef<'_>| matches!(v, ValueRef::Object(ObjType::List));
    let is_map = |v: &ValueRef<'_>| matches!(v, ValueRef::Object(ObjType::Map));
    for DocObjItem { obj, item } in doc.iter() {
        let role = match &last {
            Some((o, r)) if Arc::ptr_eq(o, &obj) => *r,
            _ => {
                let r = roles.get(obj.as_ref()).copied().unwrap_or(Role::Other);
                last = Some((obj.clone(), r));
                r
            }
        };
        match (role, item) {
            (Role::Entries, DocItem::Map(m)) if is_map(&m.value) => {
                if let Ok(id) = m.key.parse::<EntryId>() {
                    let o = m.id();
                    roles.insert(o.clone(), Role::Entry(id));
                    parts.entry(id).or_default().obj = Some(o);
                }
            }
            (Role::Entry(id), DocItem::Map(m)) => {
                let p = parts.entry(id).or_default();
                match m.key.as_ref() {
                    K_RESOURCE_TYPE => p.resource_type = as_str(&m.value).map(str::to_string),
                    K_SOURCE_SYSTEM => p.source_system = as_str(&m.value).map(str::to_string),
                    K_SOURCE_ID => p.source_id = as_str(&m.value).map(str::to_string),
                    K_CREATED_BY => p.created_by = as_str(&m.value).and_then(|s| s.parse().ok()),
                    K_CREATED_AT => p.created_at = as_int(&m.value),
                    K_VERSIONS if is_list(&m.value) => {
                        roles.insert(m.id(), Role::Versions(id));
                    }
                    _ => {}
                }
            }
            (Role::Versions(id), DocItem::List(l)) if is_map(&l.value) => {
                let o = l.id();
                roles.insert(o.clone(), Role::Version(id, l.index));
                let v = parts
                    .entry(id)
                    .or_default()
                    .versions
                    .entry(l.index)
                    .or_default();
                v.obj = Some(o);
            }
            (Role::Version(id, pos), DocItem::Map(m)) => {
                let v = parts
                    .entry(id)
                    .or_default()
                    .versions
                    .entry(pos)
                    .or_default();
                match m.key.as_ref() {
                    K_AUTHOR => v.author = as_str(&m.value).and_then(|s| s.parse().ok()),
                    K_RECORDED_AT => v.recorded_at = as_int(&m.value),
                    K_STATUS => v.status = as_str(&m.value).and_then(EntryStatus::parse),
                    K_DATE => v.date = as_int(&m.value),
                    K_DATE_TEXT => v.date_text = as_str(&m.value).map(str::to_string),
                    K_CODES if is_list(&m.value) => {
                        roles.insert(m.id(), Role::Codes(id, pos));
                    }
                    K_DISPLAYS if is_list(&m.value) => {
                        roles.insert(m.id(), Role::Displays(id, pos));
                    }
                    _ => {}
                }
            }
            (Role::Codes(id, pos), DocItem::List(l)) => {
                if let Some(c) = as_str(&l.value).and_then(decode_code) {
                    parts
                        .entry(id)
                        .or_default()
                        .versions
                        .entry(pos)
                        .or_default()
                        .codes
                        .push(c);
                }
            }
            (Role::Displays(id, pos), DocItem::List(l)) => {
                if let Some(d) = as_str(&l.value) {
                    let v = parts
                        .entry(id)
                        .or_default()
                        .versions
                        .entry(pos)
                        .or_default();
                    v.displays.push(d.to_string());
                }
            }
            _ => {}
        }
    }
    parts
        .into_iter()
        .filter_map(|(id, p)| Some((id, p.finish()?)))
        .collect()
}

fn write_str_list(
    tx: &mut Transaction<'_>,
    obj: &ObjId,
    key: &str,
    items: &[String],
) -> Result<(), AutomergeError> {
    let list = tx.put_object(obj, key, ObjType::List)?;
    for (i, s) in items.iter().enumerate() {
        tx.insert(&list, i, s.as_str())?;
    }
    Ok(())
}

fn write_version(
    tx: &mut Transaction<'_>,
    versions: &ObjId,
    index: usize,
    v: &VersionWrite,
) -> Result<(), AutomergeError> {
    let m = tx.insert_object(versions, index, ObjType::Map)?;
    tx.put(&m, K_AUTHOR, v.author.to_hex())?;
    tx.put(&m, K_RECORDED_AT, v.recorded_at)?;
    tx.put(&m, K_STATUS, v.status.as_str())?;
    tx.put(&m, K_RESOURCE, v.resource_json.as_str())?;
    if let Some(d) = v.date {
        tx.put(&m, K_DATE, d)?;
    }
    if let Some(t) = &v.date_text {
        tx.put(&m, K_DATE_TEXT, t.as_str())?;
    }
    write_str_list(tx, &m, K_CODES, &v.codes)?;
    write_str_list(tx, &m, K_DISPLAYS, &v.displays)?;
    Ok(())
}

/// The deterministic first change of every document of `section`: the same
/// bytes (and hash) on every device, so documents created independently
/// share history and merge without conflicting roots. Never change this.
fn genesis(section: Section) -> Result<(Automerge, ChangeHash), RecordError> {
    let mut doc = Automerge::new();
    let actor = format!("satchel/section/{}", section.as_str());
    doc.set_actor(ActorId::from(actor.as_bytes()));
    let result = doc.transact(|tx| -> Result<(), AutomergeError> {
        tx.put(ROOT, K_SECTION, section.as_str())?;
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

fn random_actor() -> ActorId {
    // 16 bytes from the system CSPRNG (via the entry-id generator).
    ActorId::from(&EntryId::random().0[..])
}

/// Above this many incoming operations, re-index everything instead of
/// tracking which entries changed.
const FULL_REINDEX_OPS: usize = 5_000;

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

    /// Load a full save (output of [`SectionDoc::save`]). Refuses bytes that
    /// are corrupt or belong to another section.
    pub fn load(section: Section, bytes: &[u8]) -> Result<Self, RecordError> {
        let (_, genesis) = genesis(section)?;
        let mut doc = Automerge::load_with_options(bytes, wire::strict_load_options())
            .map_err(|_| RecordError::Automerge("corrupt section document".into()))?;
        if doc.get_change_by_hash(&genesis).is_none()
            || get_string(&doc, &ROOT, K_SECTION).as_deref() != Some(section.as_str())
            || get_obj(&doc, &ROOT, K_ENTRIES, ObjType::Map).is_none()
        {
            return Err(RecordError::Automerge(format!(
                "not a document of the {section} section"
            )));
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
    /// for their dependencies). Counts as having handed out every local
    /// change: a following [`SectionDoc::take_changes`] returns only newer ones.
    pub fn save(&mut self) -> Vec<u8> {
        self.pending.clear();
        self.doc.save()
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
        if ops > FULL_REINDEX_OPS {
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
                    if let Ok(id) = key.parse::<EntryId>() {
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
                if !matches!(item.value, ValueRef::Object(ObjType::Map)) {
                    continue;
                }
                let Ok(id) = item.key.parse::<EntryId>() else {
                    continue;
                };
                if let Some(e) = read_entry(&self.doc, item.id()) {
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
                .and_then(|obj| read_entry(&self.doc, obj));
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
            let resource_type = summary.resource_type.clone();
            let version =
                VersionWrite::from_summary(summary, &n.resource, n.author, n.recorded_at_ms)?;
            prepared.push((EntryId::random(), resource_type, n, version));
        }
        if prepared.is_empty() {
            return Ok(Vec::new());
        }
        let entries = self
            .entries_obj()
            .ok_or_else(|| RecordError::Automerge("section document has no entries map".into()))?;
        self.transact(|tx| {
            for (id, resource_type, new, version) in &prepared {
                let e = tx.put_object(&entries, id.to_hex(), ObjType::Map)?;
                tx.put(&e, K_RESOURCE_TYPE, resource_type.as_str())?;
                if let Some(s) = &new.source_system {
                    tx.put(&e, K_SOURCE_SYSTEM, s.as_str())?;
                }
                if let Some(s) = &new.source_id {
                    tx.put(&e, K_SOURCE_ID, s.as_str())?;
                }
                tx.put(&e, K_CREATED_BY, new.author.to_hex())?;
                tx.put(&e, K_CREATED_AT, new.recorded_at_ms)?;
                let versions = tx.put_object(&e, K_VERSIONS, ObjType::List)?;
                write_version(tx, &versions, 0, version)?;
            }
            Ok(())
        })?;
        let ids: Vec<EntryId> = prepared.into_iter().map(|(id, ..)| id).collect();
        self.reindex(ids.iter().copied());
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
        if indexed.hidden() {
            return Err(RecordError::AlreadyEnteredInError(id));
        }
        let summary = fhir::summarize(&resource)?;
        let wrong = RecordError::WrongSection {
            entry: id,
            expected: self.section,
        };
        if summary.resource_type != indexed.resource_type {
            return Err(wrong);
        }
        if self.check_fits(&resource, &summary).is_err() {
            return Err(wrong);
        }
        let version = VersionWrite::from_summary(summary, &resource, author, recorded_at_ms)?;
        self.append_version(id, &version)
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
        if indexed.hidden() {
            return Err(RecordError::AlreadyEnteredInError(id));
        }
        let current = indexed.current().ok_or(RecordError::UnknownEntry(id))?;
        let version = VersionWrite {
            author,
            recorded_at: recorded_at_ms,
            status: EntryStatus::EnteredInError,
            resource_json: get_string(&self.doc, &current.obj, K_RESOURCE)
                .ok_or(RecordError::UnknownEntry(id))?,
            date: current.date,
            date_text: current.date_text.clone(),
            codes: current.codes.iter().map(encode_code).collect(),
            displays: current.displays.clone(),
        };
        self.append_version(id, &version)
    }

    fn append_version(&mut self, id: EntryId, version: &VersionWrite) -> Result<(), RecordError> {
        let obj = self
            .index
            .get(&id)
            .map(|e| e.obj.clone())
            .ok_or(RecordError::UnknownEntry(id))?;
        let versions = get_obj(&self.doc, &obj, K_VERSIONS, ObjType::List)
            .ok_or(RecordError::UnknownEntry(id))?;
        let index = self.doc.length(&versions);
        self.transact(|tx| write_version(tx, &versions, index, version))?;
        self.reindex([id]);
        Ok(())
    }

    // ----- reading -----------------------------------------------------------

    fn full_version(&self, v: &IndexedVersion) -> Option<EntryVersion> {
        let json = get_string(&self.doc, &v.obj, K_RESOURCE)?;
        let resource: Value = serde_json::from_str(&json).ok()?;
        Some(EntryVersion {
            author: v.key.author,
            recorded_at_ms: v.key.recorded_at,
            status: v.status,
            resource,
            date: v.date,
            date_text: v.date_text.clone(),
            codes: v.codes.clone(),
            displays: v.displays.clone(),
        })
    }

    fn build_entry(&self, id: EntryId, e: &IndexedEntry) -> Option<Entry> {
        Some(Entry {
            id,
            section: self.section,
            resource_type: e.resource_type.clone(),
            source_system: e.source_system.clone(),
            source_id: e.source_id.clone(),
            created_by: e.created_by,
            created_at_ms: e.created_at,
            current: self.full_version(e.current()?)?,
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
            .filter_map(|v| self.full_version(v))
            .collect())
    }

    /// All entries in id order; hidden ones only if `include_hidden`.
    pub fn entries(&self, include_hidden: bool) -> Vec<Entry> {
        self.index
            .iter()
            .filter(|(_, e)| include_hidden || !e.hidden())
            .filter_map(|(id, e)| self.build_entry(*id, e))
            .collect()
    }

    /// Ids of all entries in id order; hidden ones only if `include_hidden`.
    /// (No resource is read.)
    pub fn entry_ids(&self, include_hidden: bool) -> Vec<EntryId> {
        self.index
            .iter()
            .filter(|(_, e)| include_hidden || !e.hidden())
            .map(|(id, _)| *id)
            .collect()
    }

    /// The entry created with this source system and source id, if any
    /// (visible entries are preferred over hidden ones; then the lowest id).
    pub fn find_by_source(&self, source_system: &str, source_id: &str) -> Option<EntryId> {
        let mut matches = self.index.iter().filter(|(_, e)| {
            e.source_id.as_deref() == Some(source_id)
                && e.source_system.as_deref() == Some(source_system)
        });
        let mut hidden_match = None;
        for (id, e) in matches.by_ref() {
            if !e.hidden() {
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
            .filter(|(_, e)| query.include_entered_in_error || !e.hidden())
            .filter(|(_, e)| {
                let Some(current) = e.current() else {
                    return false;
                };
                if query.from_ms.is_some() || query.to_ms.is_some() {
                    let Some(date) = current.date else {
                        return false;
                    };
                    if query.from_ms.is_some_and(|from| date < from)
                        || query.to_ms.is_some_and(|to| date > to)
                    {
                        return false;
                    }
                }
                if let Some((system, code)) = &query.code {
                    let hit = current.codes.iter().any(|c| {
                        c.code == *code
                            && system.as_ref().is_none_or(|s| c.system.as_ref() == Some(s))
                    });
                    if !hit {
                        return false;
                    }
                }
                if let Some(text) = &text {
                    if !current
                        .displays
                        .iter()
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
            if e.hidden() {
                summary.entered_in_error += 1;
                continue;
            }
            summary.active += 1;
            match summary.by_resource_type.get_mut(&e.resource_type) {
                Some(n) => *n += 1,
                None => {
                    summary.by_resource_type.insert(e.resource_type.clone(), 1);
                }
            }
            if let Some(date) = e.current().and_then(|v| v.date) {
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
    fn code_encoding_round_trips() {
        let cases = [
            Coding {
                system: Some("http://loinc.org".into()),
                code: "1234-5".into(),
            },
            Coding {
                system: None,
                code: "a|b".into(),
            },
            Coding {
                system: Some("urn:x|y%z".into()),
                code: "c|d%7C".into(),
            },
            Coding {
                system: Some("%7C".into()),
                code: String::new(),
            },
        ];
        for c in cases {
            let enc = encode_code(&c);
            assert_eq!(decode_code(&enc), Some(c));
        }
        assert_eq!(decode_code("no-bar"), None);
        assert_eq!(decode_code("bad%zz|c"), None);
    }
}
