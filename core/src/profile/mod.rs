//! A profile is one unlocked home on a device: the vault that guards its
//! keys, the device identity, and the record loaded from the encrypted store.
//!
//! It owns the key hierarchy at rest and the rule that nothing clinical
//! reaches a [`Store`] unsealed:
//!
//! ```text
//! vault key (Argon2id(passphrase) on desktop, or the platform keystore via SecretStore)
//!   └─ wraps the random master key                     meta "vault"       (AES-256-GCM)
//!        ├─ wraps the device identity's secrets        meta "identity"
//!        ├─ wraps each section key, per epoch          meta "section-key/<section>/<epoch>"
//!        └─ wraps the profile details (owner name)     meta "profile"
//! section key (per section, per epoch)
//!   └─ seals every change and snapshot of that section as a signed Envelope
//! ```
//!
//! Unlocking reads only the vault header, derives the vault key and opens the
//! master key; a wrong passphrase or key fails there, before anything is
//! written. Changes to the record are validated in full before any section
//! document is touched, then sealed and committed in one atomic batch.
//!
//! The record model itself is I/O-free ([`crate::record`]); this module is the
//! thin shell that moves its bytes to and from a [`Store`].

mod access;
mod bundle;
mod direct;
mod home;
pub mod import;
mod journal;
use journal::{load_section, log_bytes, read_device_seq, SectionState};
mod keyring;
mod parallel;
pub(crate) mod payload;
mod relays;
mod replica;
mod secret_store;
pub mod share_links;
mod vault;
mod wearables;

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::crypto::{CryptoError, Identity, IdentityCard, Role, SectionKey};
use crate::fhir::{self, FhirError};
use crate::ids::{EntryId, IdentityId, RecordId};
use crate::record::{Entry, EntryVersion, Query, Record, RecordError, Section, SectionSummary};
use crate::store::{SectionLog, Store, StoreError, WriteBatch};
use satchel_protocol::LogName;

/// The sync state lives in `sync/` (the engine's input); re-exported here
/// for the profile's callers.
pub use crate::sync::SyncState;
pub use access::GrantChange;
pub use bundle::DeviceBundle;
pub use direct::AccessFork;
pub use home::{AnswerError, IdentityVault, MemberInfo};
pub use import::ImportError;
pub use replica::{ApplyReport, Rejected, SetAside};
pub use secret_store::{MemorySecretStore, SecretStore, SecretStoreError};
pub use vault::{vault_key, Unlock, VaultHeader, VaultKey, VaultKind};
pub use wearables::{IngestReport, CHUNKS_LOG};

/// After this many stored changes past its snapshot, a section is compacted
/// into a fresh snapshot so opening it stays fast.
pub const SNAPSHOT_EVERY: usize = 32;

/// ... or once the changes past its snapshot hold this many bytes and at
/// least as many as the snapshot itself: replaying large changes costs more
/// than loading a compact snapshot, and tying the threshold to the snapshot's
/// size keeps the cost of rewriting snapshots linear in what was written.
pub const SNAPSHOT_TAIL_BYTES: usize = 256 * 1024;

/// Everything that can go wrong with a profile. Messages never carry health
/// data: at most section names, entry ids and resource type names.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProfileError {
    #[error("no Satchel profile here; create one first (satchel init)")]
    NotInitialised,
    #[error("a Satchel profile already exists here")]
    AlreadyInitialised,
    #[error("wrong passphrase or key: the vault could not be opened (nothing was changed)")]
    WrongKey,
    #[error("the platform keystore has no key for this profile")]
    MissingVaultKey,
    #[error("keystore failure: {0}")]
    SecretStore(#[from] SecretStoreError),
    #[error(
        "stored data failed its integrity check ({0}); the store may be damaged or tampered with"
    )]
    Corrupt(&'static str),
    #[error(transparent)]
    Fhir(#[from] FhirError),
    #[error(transparent)]
    Record(#[from] RecordError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    #[error("the access log does not verify: {0}")]
    Sharing(#[from] crate::sharing::SharingError),
    #[error("this device holds no key for the {0} section (no grant to write it)")]
    NoKey(&'static str),
    #[error("not allowed: {0}")]
    NotAllowed(&'static str),
    #[error("this identity may not write the {0} section (its grant does not include writing it, or has ended); nothing was changed")]
    ReadOnly(&'static str),
    #[error(transparent)]
    Wearables(#[from] crate::wearables::WearablesError),
    #[error("this change would be {bytes} bytes sealed, over the {limit} bytes a relay accepts in one envelope (the {section} section); nothing was changed. Split a large Bundle into smaller files, and attach large documents (scans, PDFs) as separate, smaller resources or keep them outside the record")]
    TooLarge {
        section: &'static str,
        bytes: usize,
        limit: usize,
    },
}

pub type Result<T> = std::result::Result<T, ProfileError>;

/// Sealed profile details (the owner's name is personal data).
#[derive(Serialize, Deserialize)]
struct ProfileDetails {
    owner_name: String,
    /// The device that created the record: the root of its access log.
    creator: IdentityId,
    /// Its card (for wrapping rotated keys to it), when known.
    #[serde(default)]
    creator_card: Option<IdentityCard>,
}

const META_VAULT: &str = "vault";
const META_RECORD: &str = "record-id";
const META_IDENTITY: &str = "identity";
const META_PROFILE: &str = "profile";
const META_DEVICE_SEQ: &str = "device-seq";

/// Every section key this device holds, by (section, epoch), sealed as one
/// JSON map under the master key.
pub(crate) const META_KEYRING: &str = "keyring";

/// Before key epochs: one key per section, epoch 0.
pub(crate) fn legacy_section_key_meta(section: Section) -> String {
    format!("section-key/{}/0", section.as_str())
}

pub(crate) use access::sign_change;
pub(crate) use keyring::{
    learn, load_keyring, parse_key_name, seal_keyring, wrap_current, Keyring,
};

pub(crate) fn aad(record: &RecordId, what: &str) -> Vec<u8> {
    format!("satchel/v1/at-rest|{record}|{what}").into_bytes()
}

/// Unix time in milliseconds (the device clock).
pub(crate) fn now_ms() -> i64 {
    let now = time::OffsetDateTime::now_utc();
    i64::try_from(now.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

/// An entry an input went to (see [`Profile::add_resources`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Added {
    pub section: Section,
    pub entry: EntryId,
}

/// An unlocked profile over a store.
pub struct Profile<S: Store> {
    store: S,
    /// The master key, bound to the record id: everything at rest is
    /// sealed through it.
    vault: vault::Vault,
    identity: Identity,
    owner_name: String,
    /// Every section key this device holds, by (section, epoch). A member
    /// with a grant holds only its sections'; after a rotation the owner's
    /// devices hold every epoch.
    keys: Keyring,
    record: Record,
    sections: BTreeMap<Section, SectionState>,
    /// Next sequence number for envelopes written by this device.
    device_seq: u64,
    /// Set when an in-memory change could not be persisted; the profile
    /// must be reopened before more writes.
    poisoned: bool,
    /// The verified access log: its root and the members it establishes.
    access: access::AccessState,
    /// Wearables index and chunks, read on first use.
    wearables: wearables::WearablesState,
}

/// A profile signs as its device identity without handing the secret out.
impl<S: Store> crate::crypto::Signer for Profile<S> {
    fn signer_id(&self) -> IdentityId {
        self.identity.id()
    }

    fn signer_card(&self) -> &IdentityCard {
        self.identity.card()
    }

    fn sign_message(&self, message: &[u8]) -> [u8; 64] {
        self.identity.sign(message)
    }
}

impl<S: Store> std::fmt::Debug for Profile<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Profile")
            .field("record_id", &self.record.id)
            .field("device", &self.identity.id())
            .finish_non_exhaustive()
    }
}

impl<S: Store> Profile<S> {
    /// Create a new record and this device's identity in an empty store.
    /// Every section gets its key now, so devices that join later receive
    /// all keys at once.
    pub fn create(store: S, owner_name: &str, unlock: Unlock<'_>) -> Result<Self> {
        // The card is public (the relay keeps it): it names the device, not the patient.
        let identity = Identity::generate("Patient device", Role::PatientDevice, None)?;
        let keys = Section::ALL
            .iter()
            .map(|s| Ok(((*s, 0), SectionKey::generate()?)))
            .collect::<Result<Keyring>>()?;
        let details = ProfileDetails {
            owner_name: owner_name.to_string(),
            creator: identity.id(),
            creator_card: Some(identity.card().clone()),
        };
        Self::initialise(store, unlock, RecordId::random(), identity, details, keys)
    }

    /// Set up this device as another device of an existing record, from the
    /// bundle an owner device sent it (see [`crate::sync::link`]). The record
    /// itself arrives by syncing.
    pub fn join(
        store: S,
        unlock: Unlock<'_>,
        identity: Identity,
        bundle: DeviceBundle,
    ) -> Result<Self> {
        let keys = bundle.section_keys()?;
        let details = ProfileDetails {
            owner_name: bundle.owner_name.clone(),
            creator: bundle.creator,
            creator_card: bundle.creator_card.clone(),
        };
        Self::initialise(store, unlock, bundle.record_id, identity, details, keys)
    }

    fn initialise(
        mut store: S,
        unlock: Unlock<'_>,
        record_id: RecordId,
        identity: Identity,
        details: ProfileDetails,
        keys: Keyring,
    ) -> Result<Self> {
        if store.get_meta(META_VAULT)?.is_some() {
            return Err(ProfileError::AlreadyInitialised);
        }
        let (vault, header) = vault::Vault::create(record_id, unlock)?;
        let details_json =
            serde_json::to_vec(&details).map_err(|_| ProfileError::Corrupt("profile details"))?;
        let mut batch = WriteBatch::new();
        batch
            .put_meta(META_RECORD, record_id.to_hex().into_bytes())
            .put_meta(
                META_IDENTITY,
                vault.seal(META_IDENTITY, &identity.to_secret_bytes())?,
            )
            .put_meta(META_PROFILE, vault.seal(META_PROFILE, &details_json)?)
            .put_meta(META_DEVICE_SEQ, 1u64.to_be_bytes().to_vec());
        batch.put_meta(META_KEYRING, seal_keyring(&vault, &keys)?);
        batch.put_meta(META_VAULT, header);
        store.commit(batch)?;
        Ok(Self {
            store,
            vault,
            identity,
            owner_name: details.owner_name,
            keys,
            record: Record::new(record_id),
            sections: BTreeMap::new(),
            device_seq: 1,
            poisoned: false,
            access: access::AccessState::root(record_id, details.creator, details.creator_card),
            wearables: Default::default(),
        })
    }

    /// Unlock an existing profile and load its record. Writes nothing.
    pub fn open(store: S, unlock: Unlock<'_>) -> Result<Self> {
        if store.get_meta(META_VAULT)?.is_none() {
            return Err(ProfileError::NotInitialised);
        }
        let record_id: RecordId = store
            .get_meta(META_RECORD)?
            .and_then(|b| String::from_utf8(b).ok())
            .and_then(|s| s.parse().ok())
            .ok_or(ProfileError::Corrupt("record id"))?;
        let vault = vault::Vault::unlock(&store, record_id, unlock)?;

        let identity_bytes = vault.open_meta(&store, META_IDENTITY, "identity")?;
        let identity = Identity::from_secret_bytes(&identity_bytes)?;
        let details: ProfileDetails =
            serde_json::from_slice(&vault.open_meta(&store, META_PROFILE, "profile details")?)
                .map_err(|_| ProfileError::Corrupt("profile details"))?;
        let device_seq = read_device_seq(&store)?;
        let keys = load_keyring(&store, &vault)?;
        let log = access::load_access_log(&store, &vault)?;
        let mut access =
            access::AccessState::root(record_id, details.creator, details.creator_card);
        access.members = access
            .verify(&log)
            .map_err(|_| ProfileError::Corrupt("access log"))?;

        let mut profile = Self {
            store,
            vault,
            identity,
            owner_name: details.owner_name,
            keys,
            record: Record::new(record_id),
            sections: BTreeMap::new(),
            device_seq,
            poisoned: false,
            access,
            wearables: Default::default(),
        };
        profile.load_all_sections()?;
        Ok(profile)
    }

    fn load_all_sections(&mut self) -> Result<()> {
        self.wearables = Default::default();
        // Read every section's log (the store is one connection), then
        // decrypt and load the documents on every core, largest first.
        let mut logs = Vec::new();
        for name in self.store.sections()? {
            // Stored log names: parsed once, here.
            let log: LogName = name
                .parse()
                .map_err(|_| ProfileError::Corrupt("section name"))?;
            if wearables::handles(log) {
                continue;
            }
            let section = log.section();
            let log = self.store.load_section(log)?;
            logs.push((section, log));
        }
        logs.sort_by_key(|(_, log)| std::cmp::Reverse(log_bytes(log)));
        // Each worker takes its section's log and frees it once loaded, so
        // the ciphertexts do not all stay in memory until the end.
        let logs: Vec<(Section, Mutex<Option<SectionLog>>)> = logs
            .into_iter()
            .map(|(section, log)| (section, Mutex::new(Some(log))))
            .collect();
        let (keys, record_id) = (&self.keys, self.record.id);
        let loaded = parallel::map(&logs, 2, |(section, slot)| {
            let log = slot
                .lock()
                .ok()
                .and_then(|mut log| log.take())
                .ok_or(ProfileError::Corrupt("a section could not be loaded"))?;
            load_section(keys, record_id, *section, log)
        });
        for ((section, _), result) in logs.iter().zip(loaded) {
            let (doc, state) =
                result.ok_or(ProfileError::Corrupt("a section could not be loaded"))??;
            self.record.insert_section(doc);
            self.sections.insert(*section, state);
        }
        Ok(())
    }

    /// Re-read the record from the store, picking up what another process
    /// (a `satchel sync` next to a running app, say) wrote since opening.
    pub fn refresh(&mut self) -> Result<()> {
        self.record = Record::new(self.record.id);
        self.sections.clear();
        self.device_seq = read_device_seq(&self.store)?;
        self.poisoned = false;
        self.keys = load_keyring(&self.store, &self.vault)?;
        let log = access::load_access_log(&self.store, &self.vault)?;
        self.access.members = self
            .access
            .verify(&log)
            .map_err(|_| ProfileError::Corrupt("access log"))?;
        self.load_all_sections()
    }

    /// A section's key for its current epoch: what new changes are sealed
    /// with. A member without a grant for the section has none.
    fn section_key(&self, section: Section) -> Result<(u32, &SectionKey)> {
        let epoch = self.access.members.epoch(section.as_str());
        self.keys
            .get(&(section, epoch))
            .map(|k| (epoch, k))
            .ok_or(ProfileError::NoKey(section.as_str()))
    }

    /// The record's id.
    pub fn record_id(&self) -> RecordId {
        self.record.id
    }

    /// The record (read-only; change it through the profile so every change
    /// is sealed and stored).
    pub fn record(&self) -> &Record {
        &self.record
    }

    /// This device's public identity card.
    pub fn identity_card(&self) -> &IdentityCard {
        self.identity.card()
    }

    /// This device's identity id.
    pub fn device_id(&self) -> IdentityId {
        self.identity.id()
    }

    /// The name the record's owner gave at creation.
    pub fn owner_name(&self) -> &str {
        &self.owner_name
    }

    /// The store underneath (read-only access).
    pub fn store(&self) -> &S {
        &self.store
    }

    /// Close the profile and give the store back.
    pub fn into_store(self) -> S {
        self.store
    }

    /// Add FHIR resources (single resources and/or Bundles, already parsed):
    /// the same write path and checks as [`Profile::import_resources`]
    /// (validation, the wrong-patient check, this identity's write rights,
    /// de-duplication of re-sent resources), which it calls. All or
    /// nothing; durable when this returns. Returns the entries the input
    /// went to, in input order (new, updated or unchanged).
    pub fn add_resources(
        &mut self,
        resources: Vec<Value>,
        source_system: Option<&str>,
    ) -> std::result::Result<Vec<Added>, ImportError> {
        let incoming = fhir::import::resources_from_values(resources)
            .map_err(|(index, reason)| ImportError::InInput { index, reason })?;
        let report = self.import_resources(incoming, source_system)?;
        Ok(report.entries)
    }

    /// Amend an entry: a new version; every earlier version stays in history.
    pub fn amend(&mut self, entry: &EntryId, resource: Value) -> Result<()> {
        self.check_writable()?;
        if let Some(e) = self.record.entry(*entry) {
            self.check_may_write(e.section)?;
        }
        let author = self.identity.id();
        self.record.amend(*entry, resource, author, now_ms())?;
        self.persist(WriteBatch::new())
    }

    /// Mark an entry entered-in-error: hidden from normal views, kept in history.
    pub fn mark_entered_in_error(&mut self, entry: &EntryId) -> Result<()> {
        self.check_writable()?;
        if let Some(e) = self.record.entry(*entry) {
            self.check_may_write(e.section)?;
        }
        let author = self.identity.id();
        self.record
            .mark_entered_in_error(*entry, author, now_ms())?;
        self.persist(WriteBatch::new())
    }

    /// One entry (hidden ones included).
    pub fn entry(&self, entry: &EntryId) -> Option<Entry> {
        self.record.entry(*entry)
    }

    /// Every version of an entry (see [`SectionDoc::history`]).
    pub fn history(&self, entry: &EntryId) -> Result<Vec<EntryVersion>> {
        Ok(self.record.history(*entry)?)
    }

    /// Entries matching a query, newest clinical date first.
    pub fn query(&self, query: &Query) -> Vec<Entry> {
        self.record.query(query)
    }

    /// Per-section counts and latest dates, from the index fields only.
    pub fn summary(&self) -> Vec<SectionSummary> {
        self.record.summary()
    }

    /// Client-side enforcement: this identity may write `section` now
    /// (owner devices always; members by their live grant, see
    /// [`crate::sharing::Members::may_write`]). Checked before anything is
    /// changed, so a refused write leaves nothing queued that the relay and
    /// every other device would refuse.
    pub(crate) fn check_may_write(&self, section: Section) -> Result<()> {
        if self
            .access
            .members
            .may_write(&self.identity.id(), section.as_str(), now_ms())
        {
            Ok(())
        } else {
            Err(ProfileError::ReadOnly(section.as_str()))
        }
    }

    fn check_writable(&self) -> Result<()> {
        if self.poisoned {
            return Err(ProfileError::Corrupt(
                "an earlier write failed; reopen the profile",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod sharing_tests;
#[cfg(test)]
mod tests;
