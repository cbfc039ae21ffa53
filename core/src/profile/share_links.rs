//! The share links this device made: what each shows, its key (sealed at
//! rest under the master key, in the private value `share-links`), and
//! making its files from the record as it is now. I/O-free; the relay
//! calls are in [`crate::sync::share_links`].

use serde::{Deserialize, Serialize};
use serde_json::Value;
use zeroize::Zeroizing;

use super::{Profile, ProfileError, Result};
use crate::ids::ShareLinkHandle;
use crate::profile::ImportError;
use crate::record::Section;
use crate::share_link::{jwe, Flags, ShlPayload};
use crate::store::Store;
use satchel_protocol::wire::share_links::{
    CreateShareLinkRequest, Passcode, ShareLinkFile, ShareLinkId, MAX_PASSCODE_CHARS,
};

const SHARE_LINKS: &str = "share-links";
/// The content type of every file we make.
pub const FHIR_JSON: &str = "application/fhir+json";

/// What a link shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ShareContent {
    /// The International Patient Summary (a `document` Bundle).
    Ips,
    /// These sections' entries (a `collection` Bundle).
    Sections(Vec<Section>),
    /// The emergency card: a small `collection` Bundle of the parts the
    /// patient chose ([`EmergencyParts`]).
    EmergencyCard(EmergencyParts),
}

/// What an emergency card shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmergencyParts {
    /// Allergies and intolerances (all recorded).
    pub allergies: bool,
    /// Medications not stopped, completed or cancelled.
    pub medications: bool,
    /// Conditions not resolved, inactive or in remission.
    pub conditions: bool,
    /// A blood group result, when the record has one (LOINC 882-1,
    /// 883-9, 10331-7).
    pub blood_group: bool,
    /// The emergency contacts of the Patient resource (`contact`).
    pub contact: bool,
}

impl EmergencyParts {
    /// Everything an emergency card can show.
    pub const ALL: EmergencyParts = EmergencyParts {
        allergies: true,
        medications: true,
        conditions: true,
        blood_group: true,
        contact: true,
    };

    fn describe(self) -> String {
        let mut parts = Vec::new();
        for (on, name) in [
            (self.allergies, "allergies"),
            (self.medications, "medications"),
            (self.conditions, "conditions"),
            (self.blood_group, "blood-group"),
            (self.contact, "contact"),
        ] {
            if on {
                parts.push(name);
            }
        }
        format!("emergency card: {}", parts.join(","))
    }
}

/// LOINC codes of blood group results.
const BLOOD_GROUP_CODES: &[&str] = &["882-1", "883-9", "10331-7"];

fn has_code(resource: &Value, codes: &[&str]) -> bool {
    resource
        .get("code")
        .and_then(|c| c.get("coding"))
        .and_then(Value::as_array)
        .is_some_and(|list| {
            list.iter().any(|c| {
                c.get("system").and_then(Value::as_str) == Some("http://loinc.org")
                    && c.get("code")
                        .and_then(Value::as_str)
                        .is_some_and(|code| codes.contains(&code))
            })
        })
}

/// A coded status (`status`, or the first code of `clinicalStatus`).
fn status_of(resource: &Value) -> Option<&str> {
    resource.get("status").and_then(Value::as_str).or_else(|| {
        resource
            .get("clinicalStatus")
            .and_then(|c| c.get("coding"))
            .and_then(Value::as_array)
            .and_then(|l| l.first())
            .and_then(|c| c.get("code"))
            .and_then(Value::as_str)
    })
}

impl EmergencyParts {
    /// The sections an emergency card reads.
    const SECTIONS: [Section; 5] = [
        Section::Demographics,
        Section::Allergies,
        Section::Medications,
        Section::Conditions,
        Section::Labs,
    ];

    /// Whether `entry` belongs on the card; the Patient is cut down to
    /// name, gender, birth date and (if chosen) contacts, as the card is
    /// meant to be shown to strangers.
    fn keep(self, entry: &mut crate::record::Entry) -> bool {
        let resource = &mut entry.current.resource;
        match entry.section {
            Section::Demographics if entry.resource_type == "Patient" => {
                if let Some(obj) = resource.as_object_mut() {
                    let keep = [
                        "resourceType",
                        "id",
                        "name",
                        "gender",
                        "birthDate",
                        "extension",
                    ];
                    obj.retain(|k, _| {
                        keep.contains(&k.as_str()) || (self.contact && k == "contact")
                    });
                }
                true
            }
            Section::Allergies => self.allergies,
            Section::Medications => {
                self.medications
                    && !matches!(
                        status_of(resource),
                        Some("stopped" | "completed" | "cancelled" | "entered-in-error")
                    )
            }
            Section::Conditions => {
                self.conditions
                    && !matches!(
                        status_of(resource),
                        Some("resolved" | "inactive" | "remission" | "entered-in-error")
                    )
            }
            Section::Labs => {
                self.blood_group
                    && entry.resource_type == "Observation"
                    && has_code(resource, BLOOD_GROUP_CODES)
            }
            _ => false,
        }
    }
}

impl ShareContent {
    /// For tables: `IPS` or the section names.
    pub fn describe(&self) -> String {
        match self {
            ShareContent::Ips => "IPS".into(),
            ShareContent::Sections(list) => list
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(","),
            ShareContent::EmergencyCard(parts) => parts.describe(),
        }
    }
}

/// What the patient chose for a new link.
#[derive(Clone)]
pub struct ShareLinkOptions {
    pub content: ShareContent,
    /// Unix ms; `None`: until revoked.
    pub expires_at_ms: Option<i64>,
    pub passcode: Option<Zeroizing<String>>,
    /// Shown to the recipient (at most 80 characters).
    pub label: Option<String>,
    /// `L`: the files follow the record at every sync.
    pub live: bool,
    /// Dies after its first successful open.
    pub once: bool,
    /// `U`: one file, fetched directly (no passcode).
    pub direct: bool,
    /// Whether this is the patient's emergency card.
    pub emergency_card: bool,
}

impl std::fmt::Debug for ShareLinkOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShareLinkOptions")
            .field("content", &self.content)
            .field("expires_at_ms", &self.expires_at_ms)
            .field("passcode", &self.passcode.is_some())
            .field("live", &self.live)
            .field("once", &self.once)
            .field("direct", &self.direct)
            .finish_non_exhaustive()
    }
}

/// A link this device made, as it keeps it (sealed).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShareLinkRecord {
    /// The secret id (base64url, 43 characters).
    id: String,
    /// The files' key (base64url of 32 bytes).
    key: String,
    /// The relay hosting it (its address as the profile lists it).
    pub relay: String,
    /// How the relay knows it.
    pub handle: ShareLinkHandle,
    pub label: Option<String>,
    pub content: ShareContent,
    pub created_at_ms: i64,
    pub expires_at_ms: Option<i64>,
    pub live: bool,
    pub passcode: bool,
    pub direct: bool,
    pub once: bool,
    #[serde(default)]
    pub emergency_card: bool,
    /// When its files were last made.
    pub refreshed_at_ms: i64,
    pub revoked_at_ms: Option<i64>,
}

impl std::fmt::Debug for ShareLinkRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShareLinkRecord")
            .field("handle", &self.handle)
            .field("relay", &self.relay)
            .field("created_at_ms", &self.created_at_ms)
            .field("revoked_at_ms", &self.revoked_at_ms)
            .finish_non_exhaustive()
    }
}

impl ShareLinkRecord {
    /// The short id people type (`satchel share-link revoke ID`): the
    /// first 8 hex characters of the handle.
    pub fn short_id(&self) -> String {
        self.handle.to_hex()[..8].to_string()
    }

    /// Whether the link may still be opened at `now_ms` as far as this
    /// device knows (not revoked, not expired).
    pub fn is_active(&self, now_ms: i64) -> bool {
        self.revoked_at_ms.is_none() && self.expires_at_ms.is_none_or(|e| e > now_ms)
    }

    fn key(&self) -> Result<Zeroizing<[u8; 32]>> {
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        use base64::Engine;
        let bytes = Zeroizing::new(
            URL_SAFE_NO_PAD
                .decode(&self.key)
                .map_err(|_| ProfileError::Corrupt("share link"))?,
        );
        let key: [u8; 32] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| ProfileError::Corrupt("share link"))?;
        Ok(Zeroizing::new(key))
    }

    fn shl_id(&self) -> Result<ShareLinkId> {
        ShareLinkId::parse(&self.id).ok_or(ProfileError::Corrupt("share link"))
    }

    /// The link itself (for the QR code and the viewer URL). Holds the
    /// key: show it only to the patient.
    pub fn payload(&self) -> Result<ShlPayload> {
        Ok(ShlPayload {
            url: manifest_url(&self.relay, &self.shl_id()?),
            key: self.key()?,
            exp: self.expires_at_ms.map(|ms| ms.div_euclid(1000)),
            flags: Flags {
                long_term: self.live,
                passcode: self.passcode,
                direct: self.direct,
            },
            label: self.label.clone(),
        })
    }
}

/// The extension that names who contributed a resource to the record.
pub const CONTRIBUTED_BY_URL: &str =
    "https://satchel.health/fhir/StructureDefinition/contributed-by";

/// Add (or replace) the contributed-by extension of `resource`.
fn mark_contributed_by(resource: &mut Value, name: String) {
    let Some(obj) = resource.as_object_mut() else {
        return;
    };
    let list = obj
        .entry("extension")
        .or_insert_with(|| Value::Array(Vec::new()));
    let Some(list) = list.as_array_mut() else {
        return;
    };
    list.retain(|x| x.get("url").and_then(Value::as_str) != Some(CONTRIBUTED_BY_URL));
    list.push(serde_json::json!({"url": CONTRIBUTED_BY_URL, "valueString": name}));
}

/// `<relay>/shl/<id>`: the manifest URL of a link.
pub fn manifest_url(relay: &str, id: &ShareLinkId) -> String {
    use satchel_protocol::wire::share_links::{Manifest, ShlPath};
    use satchel_protocol::wire::Endpoint;
    format!(
        "{}{}",
        relay.trim_end_matches('/'),
        Manifest::path(&ShlPath(id))
    )
}

/// `<relay>/view`: the viewer the relay serves.
pub fn viewer_url(relay: &str) -> String {
    use satchel_protocol::wire::share_links::ViewerPage;
    use satchel_protocol::wire::Endpoint;
    format!("{}{}", relay.trim_end_matches('/'), ViewerPage::path(&()))
}

/// A link made and not yet accepted by the relay: send `request`, then
/// keep `record` ([`Profile::keep_share_link`]).
#[derive(Debug)]
pub struct PreparedShareLink {
    pub record: ShareLinkRecord,
    pub request: CreateShareLinkRequest,
}

/// Why a link could not be made. No content in any message.
#[derive(Debug, thiserror::Error)]
pub enum ShareLinkError {
    #[error(transparent)]
    Profile(#[from] ProfileError),
    #[error(transparent)]
    Export(#[from] ImportError),
    #[error(transparent)]
    Payload(#[from] crate::share_link::PayloadError),
    #[error(transparent)]
    Jwe(#[from] jwe::JweError),
    #[error("{0}")]
    Invalid(&'static str),
}

impl<S: Store> Profile<S> {
    /// The file of a link showing `content`, as the record is now: the
    /// Bundle (each resource marked with who contributed it), encrypted
    /// under `key`.
    pub fn share_link_file(
        &self,
        content: &ShareContent,
        key: &[u8; 32],
    ) -> std::result::Result<ShareLinkFile, ShareLinkError> {
        let bundle = match content {
            ShareContent::Ips => self.export_ips_of(
                self.contributed_entries(Some(&crate::fhir::ips::IpsSection::RECORD_SECTIONS)),
            )?,
            ShareContent::Sections(list) => {
                self.export_fhir_of(self.contributed_entries(Some(list)), Some(list))?
            }
            ShareContent::EmergencyCard(parts) => {
                let sections = EmergencyParts::SECTIONS;
                let mut entries = self.contributed_entries(Some(&sections));
                entries.retain_mut(|e| parts.keep(e));
                self.export_fhir_of(entries, Some(&sections))?
            }
        };
        let json = Zeroizing::new(
            serde_json::to_vec(&bundle).map_err(|_| ShareLinkError::Invalid("bundle"))?,
        );
        drop(bundle);
        Ok(ShareLinkFile {
            content_type: FHIR_JSON.into(),
            jwe: jwe::encrypt(key, FHIR_JSON, &json)?,
        })
    }

    /// The visible entries of `sections`, each resource carrying the
    /// extension that names who contributed it (the first version's author:
    /// the name on their card, with their organisation), for readers who
    /// have no access log to look it up in.
    fn contributed_entries(&self, sections: Option<&[Section]>) -> Vec<crate::record::Entry> {
        let members = self.members();
        let mut entries = self.visible_entries(sections);
        for e in &mut entries {
            let Some(card) = members.card(&e.created_by) else {
                continue;
            };
            let name = match &card.organisation {
                Some(org) if !org.is_empty() => format!("{} ({org})", card.display_name),
                _ => card.display_name.clone(),
            };
            mark_contributed_by(&mut e.current.resource, name);
        }
        entries
    }

    /// Make a new link hosted at `relay`: a fresh id and key, its file,
    /// and the relay's request. Nothing is stored until
    /// [`Profile::keep_share_link`].
    pub fn prepare_share_link(
        &self,
        relay: &str,
        options: &ShareLinkOptions,
        now_ms: i64,
    ) -> std::result::Result<PreparedShareLink, ShareLinkError> {
        if options.direct && options.passcode.is_some() {
            return Err(ShareLinkError::Invalid(
                "a direct (U) link cannot have a passcode",
            ));
        }
        if let Some(pc) = &options.passcode {
            if pc.is_empty() || pc.chars().count() > MAX_PASSCODE_CHARS {
                return Err(ShareLinkError::Invalid(
                    "the passcode must be 1 to 128 characters",
                ));
            }
        }
        if options.expires_at_ms.is_some_and(|e| e <= now_ms) {
            return Err(ShareLinkError::Invalid("the expiry is in the past"));
        }
        if let ShareContent::Sections(list) = &options.content {
            if list.is_empty() {
                return Err(ShareLinkError::Invalid("name at least one section"));
            }
        }
        let id = ShareLinkId::random().map_err(ProfileError::from)?;
        let key: Zeroizing<[u8; 32]> =
            Zeroizing::new(crate::crypto::random::array().map_err(ProfileError::from)?);
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        use base64::Engine;
        let record = ShareLinkRecord {
            id: id.to_text(),
            key: URL_SAFE_NO_PAD.encode(*key),
            relay: relay.trim_end_matches('/').to_string(),
            handle: id.handle(),
            label: options.label.clone(),
            content: options.content.clone(),
            created_at_ms: now_ms,
            expires_at_ms: options.expires_at_ms,
            live: options.live,
            passcode: options.passcode.is_some(),
            direct: options.direct,
            once: options.once,
            emergency_card: options.emergency_card,
            refreshed_at_ms: now_ms,
            revoked_at_ms: None,
        };
        // Every payload rule (URL length, label, flags) before anything is sent.
        record.payload()?.validate()?;
        let file = self.share_link_file(&options.content, &key)?;
        let request = CreateShareLinkRequest {
            expires_at_ms: options.expires_at_ms,
            passcode: options
                .passcode
                .as_ref()
                .map(|p| Passcode(p.as_str().to_owned())),
            attempts: None,
            max_opens: options.once.then_some(1),
            direct: options.direct,
            files: vec![file],
        };
        Ok(PreparedShareLink { record, request })
    }

    /// The links this device made, oldest first.
    pub fn share_links(&self) -> Result<Vec<ShareLinkRecord>> {
        match self.get_private(SHARE_LINKS)? {
            None => Ok(Vec::new()),
            Some(bytes) => {
                serde_json::from_slice(&bytes).map_err(|_| ProfileError::Corrupt("share links"))
            }
        }
    }

    fn save_share_links(&mut self, links: &[ShareLinkRecord]) -> Result<()> {
        let bytes = Zeroizing::new(
            serde_json::to_vec(links).map_err(|_| ProfileError::Corrupt("share links"))?,
        );
        self.put_private(SHARE_LINKS, &bytes)
    }

    /// Keep a link the relay accepted.
    pub fn keep_share_link(&mut self, record: ShareLinkRecord) -> Result<()> {
        let mut links = self.share_links()?;
        links.retain(|l| l.handle != record.handle);
        links.push(record);
        self.save_share_links(&links)
    }

    /// The link whose handle starts with `prefix` (at least 4 hex
    /// characters; one match only).
    pub fn find_share_link(&self, prefix: &str) -> Result<Option<ShareLinkRecord>> {
        let prefix = prefix.trim().to_ascii_lowercase();
        if prefix.len() < 4 {
            return Ok(None);
        }
        let mut hits: Vec<ShareLinkRecord> = self
            .share_links()?
            .into_iter()
            .filter(|l| l.handle.to_hex().starts_with(&prefix))
            .collect();
        Ok(if hits.len() == 1 { hits.pop() } else { None })
    }

    /// Record that a link was revoked (at `at_ms`).
    pub fn mark_share_link_revoked(&mut self, handle: &ShareLinkHandle, at_ms: i64) -> Result<()> {
        let mut links = self.share_links()?;
        for l in links.iter_mut().filter(|l| &l.handle == handle) {
            l.revoked_at_ms.get_or_insert(at_ms);
        }
        self.save_share_links(&links)
    }

    /// Fresh files for a live link (a new IV; the record as it is now).
    pub fn refreshed_share_link_file(
        &self,
        link: &ShareLinkRecord,
    ) -> std::result::Result<ShareLinkFile, ShareLinkError> {
        let key = link.key()?;
        self.share_link_file(&link.content, &key)
    }

    /// Record that a live link's files were replaced at `at_ms`.
    pub fn mark_share_link_refreshed(
        &mut self,
        handle: &ShareLinkHandle,
        at_ms: i64,
    ) -> Result<()> {
        let mut links = self.share_links()?;
        for l in links.iter_mut().filter(|l| &l.handle == handle) {
            l.refreshed_at_ms = at_ms;
        }
        self.save_share_links(&links)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn passcode_options_are_redacted() {
        let o = ShareLinkOptions {
            content: ShareContent::Ips,
            expires_at_ms: None,
            passcode: Some(Zeroizing::new("4711".into())),
            label: None,
            live: false,
            once: false,
            direct: false,
            emergency_card: false,
        };
        assert!(!format!("{o:?}").contains("4711"));
        assert_eq!(
            ShareContent::Sections(vec![Section::Allergies, Section::Medications]).describe(),
            "allergies,medications"
        );
    }
}
