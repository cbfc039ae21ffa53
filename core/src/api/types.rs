//! The plain data crossing the FFI boundary (uniffi records and enums) and
//! their conversions from the core's types. Resources cross as FHIR JSON
//! strings; ids as lowercase hex; times as unix milliseconds.

use std::collections::BTreeSet;

use crate::record::{Entry, EntryStatus, EntryVersion, Query, Section, SectionSummary};
use crate::sharing::GrantRole;

use super::error::{Result, SatchelError};

/// A section name (`"medications"`, `"care-plan"`...) from the app.
pub(crate) fn parse_section(name: &str) -> Result<Section> {
    name.parse::<Section>().map_err(|_| {
        SatchelError::invalid(format!(
            "unknown section {name:?}; sections are: {}",
            Section::ALL.map(Section::as_str).join(", ")
        ))
    })
}

pub(crate) fn parse_sections(names: &[String]) -> Result<Vec<Section>> {
    names.iter().map(|n| parse_section(n)).collect()
}

pub(crate) fn parse_entry_id(id: &str) -> Result<crate::ids::EntryId> {
    id.parse()
        .map_err(|_| SatchelError::invalid("not an entry id (32 hex digits)"))
}

pub(crate) fn parse_identity_id(id: &str) -> Result<crate::ids::IdentityId> {
    id.parse()
        .map_err(|_| SatchelError::invalid("not an identity id (64 hex digits)"))
}

/// One version of an entry.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct VersionInfo {
    /// Identity id (hex) of the device or member that wrote it.
    pub author: String,
    pub recorded_at_ms: i64,
    /// False when this version marks the entry entered-in-error.
    pub active: bool,
    /// The FHIR resource of this version, as JSON.
    pub resource_json: String,
    /// Clinical date (start, unix ms UTC) from the index, if any.
    pub date_ms: Option<i64>,
    /// Indexed display strings (for list rows without parsing JSON).
    pub displays: Vec<String>,
    /// Written over the same earlier version as another version, without
    /// knowing of it (set in `history`; see `EntryInfo::conflict`).
    pub concurrent: bool,
}

impl From<&EntryVersion> for VersionInfo {
    fn from(v: &EntryVersion) -> Self {
        VersionInfo {
            author: v.author.to_hex(),
            recorded_at_ms: v.recorded_at_ms,
            active: v.status == EntryStatus::Active,
            resource_json: v.resource.to_string(),
            date_ms: v.date,
            displays: v.displays.clone(),
            concurrent: v.concurrent,
        }
    }
}

/// An entry of the record with its current version.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct EntryInfo {
    /// Entry id (hex).
    pub id: String,
    pub section: String,
    pub resource_type: String,
    pub source_system: Option<String>,
    pub created_by: String,
    pub created_at_ms: i64,
    pub version_count: u32,
    /// True when the entry was marked entered-in-error (hidden from lists).
    pub entered_in_error: bool,
    /// Conflicting changes: two versions were written over the same
    /// earlier one without knowing of each other (e.g. a dose changed on
    /// two devices offline). `current` is chosen by the same rule on every
    /// device; show the entry as conflicting and offer its history.
    pub conflict: bool,
    pub current: VersionInfo,
}

impl From<&Entry> for EntryInfo {
    fn from(e: &Entry) -> Self {
        EntryInfo {
            id: e.id.to_string(),
            section: e.section.as_str().to_string(),
            resource_type: e.resource_type.clone(),
            source_system: e.source_system.clone(),
            created_by: e.created_by.to_hex(),
            created_at_ms: e.created_at_ms,
            version_count: u32::try_from(e.version_count).unwrap_or(u32::MAX),
            entered_in_error: e.status == EntryStatus::EnteredInError,
            conflict: e.conflict,
            current: VersionInfo::from(&e.current),
        }
    }
}

/// What to list (every field optional; the default lists every visible entry).
#[derive(Debug, Clone, Default, PartialEq, Eq, uniffi::Record)]
pub struct EntryQuery {
    #[uniffi(default = None)]
    pub section: Option<String>,
    #[uniffi(default = None)]
    pub from_ms: Option<i64>,
    #[uniffi(default = None)]
    pub to_ms: Option<i64>,
    /// An indexed code (any system).
    #[uniffi(default = None)]
    pub code: Option<String>,
    /// Case-insensitive text in an indexed display string.
    #[uniffi(default = None)]
    pub text: Option<String>,
    #[uniffi(default = false)]
    pub include_entered_in_error: bool,
}

impl EntryQuery {
    pub(crate) fn to_core(&self) -> Result<Query> {
        Ok(Query {
            section: self.section.as_deref().map(parse_section).transpose()?,
            from_ms: self.from_ms,
            to_ms: self.to_ms,
            code: self.code.clone().map(|c| (None, c)),
            text: self.text.clone(),
            include_entered_in_error: self.include_entered_in_error,
        })
    }
}

/// An entry just added.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct AddedEntry {
    pub id: String,
    pub section: String,
}

/// Counts of one section.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct SectionCount {
    pub section: String,
    pub active: u32,
    pub entered_in_error: u32,
    pub latest_date_ms: Option<i64>,
    /// Known to miss changes on this device (see
    /// `HealthRecord.completeness`): never show it as a complete list.
    pub incomplete: bool,
}

impl SectionCount {
    /// `s`, marked incomplete when its section is among `incomplete`.
    pub(crate) fn of(s: &SectionSummary, incomplete: &[IncompleteSection]) -> Self {
        let section = s.section.as_str().to_string();
        SectionCount {
            incomplete: incomplete
                .iter()
                .any(|i| crate::sharing::base_section(&i.section) == section),
            section,
            active: u32::try_from(s.active).unwrap_or(u32::MAX),
            entered_in_error: u32::try_from(s.entered_in_error).unwrap_or(u32::MAX),
            latest_date_ms: s.latest_date_ms,
        }
    }
}

/// How approving an invite changes an existing grant of the same identity
/// (show it before approving). Sections it loses are rotated, as a
/// revocation does.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct GrantChangeInfo {
    pub role_before: AccessRole,
    pub gained: Vec<String>,
    pub lost: Vec<String>,
}

impl From<crate::profile::GrantChange> for GrantChangeInfo {
    fn from(c: crate::profile::GrantChange) -> Self {
        let names = |l: Vec<Section>| l.iter().map(|s| s.as_str().to_string()).collect();
        GrantChangeInfo {
            role_before: c.role_before.into(),
            gained: names(c.gained),
            lost: names(c.lost),
        }
    }
}

/// Changes of one author known to be missing from a section.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct MissingChanges {
    /// The author's identity id (hex).
    pub author: String,
    /// Its display name, when the access log knows its card.
    pub author_name: Option<String>,
    pub changes: u64,
}

/// A section (or one of its logs) known to be incomplete on this device.
/// It recovers by itself once the relay serves what is missing.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct IncompleteSection {
    pub section: String,
    /// Gaps in authors' numbered changes.
    pub missing: Vec<MissingChanges>,
    /// Envelopes the relay served that failed verification.
    pub refused: u32,
    /// Changes waiting for earlier changes not received.
    pub held_back: u32,
}

impl IncompleteSection {
    pub(crate) fn of(
        i: &crate::sync::ledger::Incomplete,
        members: &crate::sharing::Members,
    ) -> Self {
        IncompleteSection {
            section: i.log.as_str().to_string(),
            missing: i
                .missing
                .iter()
                .map(|(author, n)| MissingChanges {
                    author: author.to_hex(),
                    author_name: members.card(author).map(|c| c.display_name.clone()),
                    changes: *n,
                })
                .collect(),
            refused: u32::try_from(i.refused.len()).unwrap_or(u32::MAX),
            held_back: u32::try_from(i.held_back).unwrap_or(u32::MAX),
        }
    }
}

/// What a sync round did.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct SyncReport {
    pub uploaded: u32,
    pub merged: u32,
    pub refused: u32,
    /// Sections that received changes from the relay.
    pub sections_changed: Vec<String>,
    /// Sections known to be incomplete after the round (empty: complete as
    /// far as this device can tell).
    pub incomplete: Vec<IncompleteSection>,
    /// Local changes the relay has refused for good (kept on the device).
    pub set_aside: u32,
}

/// The kind of access an invite grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum AccessRole {
    /// Reads the granted sections (a carer, a clinician).
    Reader,
    /// Reads and writes the granted sections (a provider contributing).
    Writer,
    /// Full control of every section, may grant and revoke (a parent).
    Manager,
}

impl From<AccessRole> for GrantRole {
    fn from(r: AccessRole) -> Self {
        match r {
            AccessRole::Reader => GrantRole::Reader,
            AccessRole::Writer => GrantRole::Writer,
            AccessRole::Manager => GrantRole::Manager,
        }
    }
}

impl From<GrantRole> for AccessRole {
    fn from(r: GrantRole) -> Self {
        match r {
            GrantRole::Reader => AccessRole::Reader,
            GrantRole::Writer => AccessRole::Writer,
            GrantRole::Manager => AccessRole::Manager,
        }
    }
}

/// What kind of principal an identity is (shown to the owner when approving).
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Enum)]
pub enum IdentityKind {
    Carer,
    Provider,
    Manager,
}

impl From<IdentityKind> for crate::crypto::Role {
    fn from(k: IdentityKind) -> Self {
        match k {
            IdentityKind::Carer => crate::crypto::Role::Carer,
            IdentityKind::Provider => crate::crypto::Role::Provider,
            IdentityKind::Manager => crate::crypto::Role::Manager,
        }
    }
}

/// The terms of an invite.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct InviteTerms {
    pub role: AccessRole,
    /// Section names (ignored for managers: every section).
    pub sections: Vec<String>,
    #[uniffi(default = None)]
    pub expires_at_ms: Option<i64>,
    /// Shown in the grants list; visible to the relay, so no clinical detail.
    #[uniffi(default = "")]
    pub label: String,
}

/// An invite created by the owner: give `code` to the invitee.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct Invite {
    pub invite_id: String,
    pub code: String,
}

/// The identity that answered an invite, to check with the person.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct IdentityInfo {
    pub identity: String,
    pub display_name: String,
    /// Compare this with what the invitee reads out before approving.
    pub fingerprint: String,
}

impl From<&crate::crypto::IdentityCard> for IdentityInfo {
    fn from(c: &crate::crypto::IdentityCard) -> Self {
        IdentityInfo {
            identity: c.id().to_hex(),
            display_name: c.display_name.clone(),
            fingerprint: c.fingerprint(),
        }
    }
}

/// Someone with access to the record.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct GrantInfo {
    pub identity: String,
    pub display_name: String,
    /// `None` for the owner's own devices and recovery keys.
    pub role: Option<AccessRole>,
    pub sections: Vec<String>,
    pub expires_at_ms: Option<i64>,
    pub label: String,
    /// False once expired.
    pub live: bool,
}

/// One pull or push the relay recorded.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct AuditRow {
    pub at_ms: i64,
    pub identity: String,
    /// `pull` (viewed) or `push` (contributed).
    pub action: String,
    pub section: String,
    pub count: u64,
    /// Where it happened: "home relay", or the label of the replica relay
    /// (a clinic's edge relay) that recorded it.
    pub place: String,
}

/// How current a copy is ([`super::record::HealthRecord::copy_currency`]).
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct CopyCurrency {
    /// The last sync with a relay (Unix ms); `None`: never synced.
    pub last_synced_ms: Option<i64>,
    /// When stale: when the replica relay it synced through last reached
    /// the record's home relay (`None`: not since that relay started).
    pub home_reached_ms: Option<i64>,
    /// Synced through a replica relay cut off from the home relay: show
    /// it as stale (changes made elsewhere are missing).
    pub stale: bool,
}

/// Something a subscription noticed.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Enum)]
pub enum ChangeEvent {
    /// New changes of this section were merged.
    SectionChanged { section: String },
    /// Someone gained access to the record (a new device or grantee).
    NewContributor {
        identity: String,
        display_name: String,
    },
    /// Someone lost access to these sections (`identity` may be this device).
    AccessRevoked {
        identity: String,
        sections: Vec<String>,
    },
}

/// Who may read what: one identity's sections, for comparing before/after.
pub(crate) type AccessMap = std::collections::BTreeMap<String, (String, BTreeSet<String>)>;

/// The access events between two views of the members (pure).
pub(crate) fn access_events(before: &AccessMap, after: &AccessMap) -> Vec<ChangeEvent> {
    let mut events = Vec::new();
    for (id, (name, _)) in after {
        if !before.contains_key(id) {
            events.push(ChangeEvent::NewContributor {
                identity: id.clone(),
                display_name: name.clone(),
            });
        }
    }
    for (id, (_, sections_before)) in before {
        let now = after.get(id).map(|(_, s)| s.clone()).unwrap_or_default();
        let lost: Vec<String> = sections_before.difference(&now).cloned().collect();
        if !lost.is_empty() {
            events.push(ChangeEvent::AccessRevoked {
                identity: id.clone(),
                sections: lost,
            });
        }
    }
    events
}

/// What one direct sync (edge sync, no relay) did.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct DirectSyncReport {
    /// The other device's name, fingerprint and identity id (hex), as its
    /// identity key proved over the channel. Compare the fingerprint with
    /// the one the other device shows.
    pub peer_name: String,
    pub peer_fingerprint: String,
    pub peer_identity: String,
    /// Both devices already held the same changes: nothing was exchanged.
    pub in_sync: bool,
    /// Access changes (devices, grants, revocations) learned from the peer.
    pub statements_learned: u64,
    /// Changes sent to the other device.
    pub sent: u64,
    /// Changes received: new and stored, already here, refused by the checks
    /// (not stored).
    pub stored: u64,
    pub known: u64,
    pub refused: u64,
    /// Bytes on the wire (framing and encryption included), out and in.
    pub bytes_sent: u64,
    pub bytes_received: u64,
}

impl From<&crate::nearby::session::DirectReport> for DirectSyncReport {
    fn from(r: &crate::nearby::session::DirectReport) -> Self {
        DirectSyncReport {
            peer_name: r.peer.display_name.clone(),
            peer_fingerprint: r.peer.fingerprint(),
            peer_identity: r.peer.id().to_hex(),
            in_sync: r.in_sync,
            statements_learned: u64::try_from(r.statements_learned).unwrap_or(u64::MAX),
            sent: r.sent,
            stored: r.merged,
            known: r.known,
            refused: r.refused,
            bytes_sent: r.bytes_sent,
            bytes_received: r.bytes_received,
        }
    }
}

/// A device of one of the record's members found on the local network
/// (mDNS). What it says about itself until a direct sync proves it.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct NearbyDeviceInfo {
    /// The device's name and identity id (hex), from its sealed advert.
    pub name: String,
    pub identity: String,
    /// The fingerprint of the identity card this record's access log holds
    /// for that identity; null when the access log does not know it (yet).
    pub fingerprint: Option<String>,
    /// Its addresses (IPv4 first, then IPv6), as text.
    pub addresses: Vec<String>,
    /// The port of its direct-sync listener.
    pub port: u16,
}
