//! [`HealthRecord`]: one opened record (the patient's own, or one shared
//! with this home's identity) and everything an app does with it: list,
//! query, add, amend, entered-in-error, history; sync with a relay; and,
//! for the owner's devices and managers, sharing (invite, approve, grants,
//! revoke, audit, recovery keys).
//!
//! Record calls are blocking and fast (the record is in memory; writes are
//! one SQLite transaction): apps call them off the UI thread (the Kotlin
//! and Swift wrappers do). Network calls are async and run on the library's
//! tokio runtime.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::Value;

use super::error::{Result, SatchelError};
use super::subscription::{ChangeListener, Subscription};
use super::types::{
    access_events, parse_entry_id, parse_identity_id, parse_sections, AccessMap, AddedEntry,
    AuditRow, ChangeEvent, CopyCurrency, EntryInfo, EntryQuery, GrantChangeInfo, GrantInfo,
    IdentityInfo, IncompleteSection, Invite, InviteTerms, SectionCount, SyncReport, VersionInfo,
};
use crate::profile::Profile;
use crate::record::Section;
use crate::sharing::{base_section, GrantRole};
use crate::store::SqliteStore;
use crate::sync::link::{self, LinkCode};
use crate::sync::sharing as net;
use crate::sync::{RelayClient, RelayUrl, TransportError};

/// The opened profile and the relay session it last used.
pub(crate) struct Inner {
    pub(crate) profile: Profile<SqliteStore>,
    client: Option<RelayClient>,
}

impl Inner {
    /// A client for `relay`, keeping the session token between calls.
    pub(crate) fn client(&mut self, relay: &str) -> Result<RelayClient> {
        let base = relay.trim_end_matches('/');
        match &self.client {
            Some(c) if c.base() == base => Ok(c.clone()),
            _ => Ok(RelayClient::new(base)?),
        }
    }

    pub(crate) fn keep(&mut self, client: RelayClient) {
        self.client = Some(client);
    }

    /// Who may read which sections, for telling what changed.
    pub(crate) fn access_map(&self) -> AccessMap {
        let members = self.profile.members();
        let all: BTreeSet<String> = Section::ALL
            .iter()
            .map(|s| s.as_str().to_string())
            .collect();
        let mut map = AccessMap::new();
        for (id, card) in &members.owner_devices {
            let name = card
                .as_ref()
                .map_or_else(|| "Patient device".to_string(), |c| c.display_name.clone());
            map.insert(id.to_hex(), (name, all.clone()));
        }
        for (id, grant) in &members.grants {
            let sections = grant
                .sections
                .iter()
                .map(|s| base_section(s).to_string())
                .collect();
            map.insert(id.to_hex(), (grant.card.display_name.clone(), sections));
        }
        map
    }

    /// One sync round, and what it changed.
    /// Sections known to be incomplete on this device.
    pub(crate) fn incomplete(&self) -> Result<Vec<IncompleteSection>> {
        let members = self.profile.members();
        Ok(self
            .profile
            .incomplete()?
            .iter()
            .map(|i| IncompleteSection::of(i, members))
            .collect())
    }

    pub(crate) async fn sync_round(
        &mut self,
        client: &mut RelayClient,
    ) -> Result<(SyncReport, Vec<ChangeEvent>)> {
        let before = self.access_map();
        let report = client.sync(&mut self.profile).await?;
        let after = self.access_map();
        let mut sections_changed: Vec<String> = Vec::new();
        if report.merged > 0 {
            for s in &report.sections_pulled {
                let base = s.section().as_str().to_string();
                if !sections_changed.contains(&base) {
                    sections_changed.push(base);
                }
            }
        }
        let mut events: Vec<ChangeEvent> = sections_changed
            .iter()
            .map(|s| ChangeEvent::SectionChanged { section: s.clone() })
            .collect();
        events.extend(access_events(&before, &after));
        let report = SyncReport {
            uploaded: u32::try_from(report.uploaded).unwrap_or(u32::MAX),
            merged: u32::try_from(report.merged).unwrap_or(u32::MAX),
            refused: u32::try_from(report.refused).unwrap_or(u32::MAX),
            sections_changed,
            incomplete: self.incomplete()?,
            set_aside: u32::try_from(self.profile.set_aside_items()?.len()).unwrap_or(u32::MAX),
        };
        Ok((report, events))
    }
}

/// One opened record.
#[derive(uniffi::Object)]
pub struct HealthRecord {
    pub(crate) inner: Arc<Mutex<Inner>>,
}

impl std::fmt::Debug for HealthRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HealthRecord(..)")
    }
}

pub(crate) fn lock(inner: &Mutex<Inner>) -> Result<MutexGuard<'_, Inner>> {
    inner
        .lock()
        .map_err(|_| SatchelError::storage("an earlier call panicked; reopen the record"))
}

/// Strict JSON (a key twice in one object is refused: `fhir::json`).
fn parse_json(json: &str) -> Result<Value> {
    crate::fhir::json::from_str(json).map_err(|e| match e {
        crate::fhir::FhirError::NotJson { line, .. } => {
            SatchelError::invalid(format!("not JSON (line {line})"))
        }
        other => SatchelError::invalid(other.to_string()),
    })
}

fn parse_resources(json: &str) -> Result<Vec<Value>> {
    let value = parse_json(json)?;
    match value {
        Value::Array(items) => Ok(items),
        Value::Object(_) => Ok(vec![value]),
        _ => Err(SatchelError::invalid(
            "expected a FHIR resource, a Bundle or an array of them",
        )),
    }
}

impl HealthRecord {
    pub(crate) fn new(profile: Profile<SqliteStore>) -> Arc<Self> {
        Arc::new(HealthRecord {
            inner: Arc::new(Mutex::new(Inner {
                profile,
                client: None,
            })),
        })
    }

    /// Run `f` with the profile and a relay client on the library runtime,
    /// off the caller's thread; the client's session is kept afterwards.
    pub(super) async fn with_relay<T, F>(&self, relay: String, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: for<'a> FnOnce(
                &'a mut Inner,
                &'a mut RelayClient,
            )
                -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<T>> + 'a>>
            + Send
            + 'static,
    {
        let inner = Arc::clone(&self.inner);
        super::in_background(move |handle| {
            let mut guard = lock(&inner)?;
            let mut client = guard.client(&relay)?;
            let result = handle.block_on(f(&mut guard, &mut client));
            guard.keep(client);
            result
        })
        .await
    }
}

#[uniffi::export]
impl HealthRecord {
    /// The record id (hex).
    pub fn record_id(&self) -> Result<String> {
        Ok(lock(&self.inner)?.profile.record_id().to_hex())
    }

    /// The owner's name (sealed at rest).
    pub fn owner_name(&self) -> Result<String> {
        Ok(lock(&self.inner)?.profile.owner_name().to_string())
    }

    /// This device's identity id (hex).
    pub fn device_id(&self) -> Result<String> {
        Ok(lock(&self.inner)?.profile.device_id().to_hex())
    }

    /// This device's identity: its name, kind and fingerprint (to compare
    /// with what the other side shows when linking or sharing).
    pub fn device(&self) -> Result<IdentityInfo> {
        Ok(IdentityInfo::from(
            lock(&self.inner)?.profile.identity_card(),
        ))
    }

    /// True on the owner's own devices (false in a record shared with us).
    pub fn is_owner_device(&self) -> Result<bool> {
        Ok(lock(&self.inner)?.profile.is_owner_device())
    }

    /// True when this device may invite, grant, revoke and read the audit.
    pub fn may_administer(&self) -> Result<bool> {
        Ok(lock(&self.inner)?.profile.may_administer())
    }

    /// The sections this device can read.
    pub fn readable_sections(&self) -> Result<Vec<String>> {
        Ok(lock(&self.inner)?
            .profile
            .readable_sections()
            .iter()
            .map(|s| s.as_str().to_string())
            .collect())
    }

    /// Add FHIR JSON: one resource, a Bundle, or an array of them. All are
    /// validated first; one bad resource refuses the whole call.
    pub fn add(
        &self,
        resources_json: String,
        source_system: Option<String>,
    ) -> Result<Vec<AddedEntry>> {
        let resources = parse_resources(&resources_json)?;
        // The profile refuses sections this device may not write.
        let mut guard = lock(&self.inner)?;
        let added = guard
            .profile
            .add_resources(resources, source_system.as_deref())?;
        Ok(added
            .into_iter()
            .map(|a| AddedEntry {
                id: a.entry.to_string(),
                section: a.section.as_str().to_string(),
            })
            .collect())
    }

    /// Entries matching `query`, newest clinical date first.
    pub fn list(&self, query: EntryQuery) -> Result<Vec<EntryInfo>> {
        let query = query.to_core()?;
        Ok(lock(&self.inner)?
            .profile
            .query(&query)
            .iter()
            .map(EntryInfo::from)
            .collect())
    }

    /// One entry (entered-in-error ones included), or null.
    pub fn entry(&self, id: String) -> Result<Option<EntryInfo>> {
        let id = parse_entry_id(&id)?;
        Ok(lock(&self.inner)?
            .profile
            .entry(&id)
            .as_ref()
            .map(EntryInfo::from))
    }

    /// Every version of an entry, oldest first.
    pub fn history(&self, id: String) -> Result<Vec<VersionInfo>> {
        let id = parse_entry_id(&id)?;
        Ok(lock(&self.inner)?
            .profile
            .history(&id)?
            .iter()
            .map(VersionInfo::from)
            .collect())
    }

    /// Amend an entry with a new version of its resource (same type).
    pub fn amend(&self, id: String, resource_json: String) -> Result<()> {
        let id = parse_entry_id(&id)?;
        let resource = parse_json(&resource_json)?;
        let mut guard = lock(&self.inner)?;
        Ok(guard.profile.amend(&id, resource)?)
    }

    /// Mark an entry entered-in-error: hidden from lists, kept in history.
    pub fn mark_entered_in_error(&self, id: String) -> Result<()> {
        let id = parse_entry_id(&id)?;
        let mut guard = lock(&self.inner)?;
        Ok(guard.profile.mark_entered_in_error(&id)?)
    }

    /// Per-section counts (each marked when known to be incomplete).
    pub fn summary(&self) -> Result<Vec<SectionCount>> {
        let guard = lock(&self.inner)?;
        let incomplete = guard.incomplete()?;
        Ok(guard
            .profile
            .summary()
            .iter()
            .map(|s| SectionCount::of(s, &incomplete))
            .collect())
    }

    /// Sections known to be incomplete on this device (gaps in authors'
    /// numbered changes, refused envelopes, changes waiting for others).
    /// Empty when the record is complete as far as this device can tell;
    /// it recovers by itself once the relay serves what is missing.
    pub fn completeness(&self) -> Result<Vec<IncompleteSection>> {
        lock(&self.inner)?.incomplete()
    }

    /// The relays this record syncs with, in order (addresses).
    pub fn relays(&self) -> Result<Vec<String>> {
        Ok(lock(&self.inner)?
            .profile
            .relays()?
            .iter()
            .map(|r| r.as_str().to_string())
            .collect())
    }

    /// Add a relay at the end of the list; false when it is listed already.
    /// (Sync with each listed relay with [`HealthRecord::sync`].)
    pub fn add_relay(&self, relay_url: String) -> Result<bool> {
        let url = RelayUrl::parse(&relay_url).map_err(TransportError::from)?;
        Ok(lock(&self.inner)?.profile.add_relay(&url)?)
    }

    /// Take a relay off the list; false when it was not listed.
    pub fn remove_relay(&self, relay_url: String) -> Result<bool> {
        let url = RelayUrl::parse(&relay_url).map_err(TransportError::from)?;
        Ok(lock(&self.inner)?.profile.remove_relay(&url)?)
    }

    /// How current this copy is: its last sync and, when that went through
    /// a replica relay (a clinic's edge relay), when that relay last reached
    /// the record's home relay. Show `stale` copies as such: changes made
    /// elsewhere since are missing (docs/clinical-safety.md H11).
    pub fn copy_currency(&self) -> Result<CopyCurrency> {
        use crate::sync::currency::Currency;
        let guard = lock(&self.inner)?;
        Ok(match guard.profile.currency()? {
            Currency::NeverSynced => CopyCurrency {
                last_synced_ms: None,
                home_reached_ms: None,
                stale: false,
            },
            Currency::Current { synced_ms } => CopyCurrency {
                last_synced_ms: Some(synced_ms),
                home_reached_ms: None,
                stale: false,
            },
            Currency::Stale {
                synced_ms,
                home_reached_ms,
            } => CopyCurrency {
                last_synced_ms: Some(synced_ms),
                home_reached_ms,
                stale: true,
            },
        })
    }

    /// Who has access: the owner's devices, then grants.
    pub fn grants(&self) -> Result<Vec<GrantInfo>> {
        let guard = lock(&self.inner)?;
        let m = guard.profile.members();
        let now = super::now_ms();
        let mut out = Vec::new();
        for (id, card) in &m.owner_devices {
            out.push(GrantInfo {
                identity: id.to_hex(),
                display_name: card
                    .as_ref()
                    .map_or_else(|| "Patient device".to_string(), |c| c.display_name.clone()),
                role: None,
                sections: Section::ALL
                    .iter()
                    .map(|s| s.as_str().to_string())
                    .collect(),
                expires_at_ms: None,
                label: if m.recovery.contains(id) {
                    "recovery key".to_string()
                } else {
                    String::new()
                },
                live: true,
            });
        }
        for (id, g) in &m.grants {
            out.push(GrantInfo {
                identity: id.to_hex(),
                display_name: g.card.display_name.clone(),
                role: Some(g.role.into()),
                sections: g.sections.iter().cloned().collect(),
                expires_at_ms: g.expires_at_ms,
                label: g.label.clone(),
                live: g.live_at(now),
            });
        }
        Ok(out)
    }

    /// One sync round with the relay at `relay_url`.
    pub async fn sync(&self, relay_url: String) -> Result<SyncReport> {
        self.with_relay(relay_url, |inner, client| {
            Box::pin(async move { Ok(inner.sync_round(client).await?.0) })
        })
        .await
    }

    /// Keep syncing in the background: a round now, then one whenever the
    /// relay pushes a change. `listener` hears what changed. Stop with
    /// [`Subscription::stop`] (or by dropping the subscription).
    pub fn subscribe(
        &self,
        relay_url: String,
        listener: Arc<dyn ChangeListener>,
    ) -> Result<Arc<Subscription>> {
        Subscription::start(Arc::clone(&self.inner), relay_url, listener)
    }

    /// Step 1 of adding another of the patient's devices (a tablet): make a
    /// one-time link on the relay and return its code. Show it on this
    /// screen (text or QR) for the new device's
    /// [`SatchelHome::join_device`](super::SatchelHome::join_device), then
    /// call [`Self::complete_device_link`]. Only the patient's own devices
    /// link devices.
    pub async fn offer_device_link(&self, relay_url: String) -> Result<String> {
        self.with_relay(relay_url, |inner, client| {
            Box::pin(async move {
                if !inner.profile.is_owner_device() {
                    return Err(SatchelError::NotAllowed {
                        reason: "only the patient's own devices can link a new device".into(),
                    });
                }
                Ok(link::offer(client, &mut inner.profile).await?.encode()?)
            })
        })
        .await
    }

    /// Step 2: wait up to `timeout_ms` for the new device to answer `code`
    /// (the record stays usable meanwhile: nothing is held while waiting),
    /// check its proof of the code, then add it to the record and send it
    /// the keys. Returns the new device's identity: its fingerprint must be
    /// the one the new device shows.
    pub async fn complete_device_link(
        &self,
        relay_url: String,
        code: String,
        timeout_ms: u64,
    ) -> Result<IdentityInfo> {
        let code = LinkCode::parse(code.trim())
            .map_err(|_| SatchelError::invalid("not a device link code"))?;
        let inner = Arc::clone(&self.inner);
        super::in_background(move |handle| {
            // An authenticated client, taken without keeping the record locked.
            let mut client = {
                let mut guard = lock(&inner)?;
                if !guard.profile.is_owner_device() {
                    return Err(SatchelError::NotAllowed {
                        reason: "only the patient's own devices can link a new device".into(),
                    });
                }
                let mut client = guard.client(&relay_url)?;
                if client.token().is_none() {
                    handle.block_on(client.authenticate(&guard.profile))?;
                }
                client
            };
            let card = handle.block_on(link::await_device(
                &client,
                &code,
                Duration::from_millis(timeout_ms),
            ))?;
            let mut guard = lock(&inner)?;
            handle.block_on(link::admit_device(
                &mut client,
                &mut guard.profile,
                &code,
                &card,
            ))?;
            guard.keep(client);
            Ok(IdentityInfo::from(&card))
        })
        .await
    }

    /// Owner or manager: create an invite; give the code to the invitee
    /// (a link or QR code). It stays valid for `valid_for_secs`.
    pub async fn invite(
        &self,
        relay_url: String,
        terms: InviteTerms,
        valid_for_secs: u64,
    ) -> Result<Invite> {
        let role: GrantRole = terms.role.into();
        let sections = parse_sections(&terms.sections)?;
        if sections.is_empty() && role != GrantRole::Manager {
            return Err(SatchelError::invalid("name the sections to share"));
        }
        let core_terms = net::InviteTerms {
            role,
            sections,
            expires_at_ms: terms.expires_at_ms,
            label: terms.label,
        };
        self.with_relay(relay_url, move |inner, client| {
            Box::pin(async move {
                let (invite_id, code) = net::invite(
                    client,
                    &mut inner.profile,
                    core_terms,
                    Duration::from_secs(valid_for_secs),
                )
                .await?;
                Ok(Invite { invite_id, code })
            })
        })
        .await
    }

    /// Owner or manager: who answered the invite (null while nobody has).
    /// Show the fingerprint and compare it with the invitee's.
    /// What approving `terms` for `identity` (hex id, from
    /// [`HealthRecord::invitee`]) would change when it already holds a
    /// grant: sections gained and lost (lost ones are rotated). `None` for
    /// someone without a grant.
    pub fn grant_change(
        &self,
        identity: String,
        terms: InviteTerms,
    ) -> Result<Option<GrantChangeInfo>> {
        let id = parse_identity_id(&identity)?;
        let sections = parse_sections(&terms.sections)?;
        Ok(lock(&self.inner)?
            .profile
            .grant_change(&id, terms.role.into(), &sections)
            .map(GrantChangeInfo::from))
    }

    pub async fn invitee(
        &self,
        relay_url: String,
        invite_id: String,
    ) -> Result<Option<IdentityInfo>> {
        self.with_relay(relay_url, move |inner, client| {
            Box::pin(async move {
                let card = net::invitee_card(client, &mut inner.profile, &invite_id).await?;
                Ok(card.as_ref().map(IdentityInfo::from))
            })
        })
        .await
    }

    /// Owner or manager: approve the identity that answered (its id, as
    /// shown by [`Self::invitee`]): signs the grant and sends the keys.
    pub async fn approve(
        &self,
        relay_url: String,
        invite_id: String,
        identity: String,
    ) -> Result<IdentityInfo> {
        let expected = parse_identity_id(&identity)?;
        self.with_relay(relay_url, move |inner, client| {
            Box::pin(async move {
                let card = net::approve(client, &mut inner.profile, &invite_id, &expected).await?;
                Ok(IdentityInfo::from(&card))
            })
        })
        .await
    }

    /// Owner or manager: revoke `identity` from `sections` (null: from
    /// everything). Keys are rotated; what was already seen stays seen.
    pub async fn revoke(
        &self,
        relay_url: String,
        identity: String,
        sections: Option<Vec<String>>,
    ) -> Result<()> {
        let id = parse_identity_id(&identity)?;
        let sections = sections.as_deref().map(parse_sections).transpose()?;
        self.with_relay(relay_url, move |inner, client| {
            Box::pin(async move {
                net::revoke(client, &mut inner.profile, &id, sections.as_deref()).await?;
                Ok(())
            })
        })
        .await
    }

    /// Owner or manager: every pull and push the relay recorded.
    pub async fn audit(&self, relay_url: String) -> Result<Vec<AuditRow>> {
        self.with_relay(relay_url, move |inner, client| {
            Box::pin(async move {
                if !inner.profile.may_administer() {
                    return Err(SatchelError::NotAllowed {
                        reason: "only the record's owner and managers may read its audit".into(),
                    });
                }
                let rows = net::fetch_audit(client, &mut inner.profile).await?;
                let members = inner.profile.members();
                Ok(rows
                    .into_iter()
                    .map(|r| AuditRow {
                        place: crate::audit::place(members, r.relay.as_ref()),
                        at_ms: r.at_ms,
                        identity: r.identity.to_hex(),
                        action: r.action,
                        section: r.section,
                        count: u64::try_from(r.count).unwrap_or(0),
                    })
                    .collect())
            })
        })
        .await
    }

    /// Owner device: make a recovery key (the text to write down). Anyone
    /// holding it can restore the record on a new device.
    pub async fn create_recovery_key(&self, relay_url: String) -> Result<String> {
        self.with_relay(relay_url, move |inner, client| {
            Box::pin(async move {
                let key = net::make_recovery_key(client, &mut inner.profile).await?;
                Ok(key.to_printable().to_string())
            })
        })
        .await
    }
}
