//! The records shared with this provider, as the gateway sees them: which
//! record a patient identifier belongs to ([`PatientIndex`]) and the open
//! records themselves ([`RecordPool`]: opened on demand, at most
//! `capacity` at once, the least recently used closed first).
//!
//! The index of patient identifiers is identifying data: it is kept
//! sealed in the provider's identity vault (private value
//! `gateway-patients`), never in a plain file, and rebuilt for records it
//! lacks by opening them.
//!
//! Each record's store has its own Argon2id salt, so unlocking one with the
//! passphrase costs a full key derivation (19 MiB, about 50 ms). The pool
//! derives each record's vault key once and keeps it (in memory only,
//! zeroized on drop, as the passphrase itself is kept): reopening a record
//! closed for room costs a SQLite open and the record's load, not Argon2.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use satchel_core::home::HomeLayout;
use satchel_core::ids::RecordId;
use satchel_core::profile::{vault_key, IdentityVault, Profile, ProfileError, Unlock, VaultKey};
use satchel_core::store::SqliteStore;
use serde_json::Value;
use zeroize::Zeroizing;

/// One record shared with this provider, opened.
pub type Record = Profile<SqliteStore>;
/// A record in the pool: one user at a time.
pub type SharedRecord = Arc<tokio::sync::Mutex<Record>>;

const INDEX_NAME: &str = "gateway-patients";

/// Errors of opening records.
#[derive(Debug, thiserror::Error)]
pub enum RecordsError {
    #[error("the provider home at {0} has no identity (run `satchel accept` there first)")]
    NoIdentity(PathBuf),
    #[error("record {0} is not shared with this provider")]
    NotShared(RecordId),
    #[error("cannot list the records of the provider home: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Profile(#[from] ProfileError),
    #[error("the sealed patient index is damaged; remove nothing, report it")]
    Index,
    #[error("the record pool's lock was poisoned by an earlier panic")]
    Poisoned,
}

/// `(system, value)` of a patient identifier.
pub type PatientKey = (String, String);

/// Which record each patient identifier belongs to.
#[derive(Debug, Default, Clone, serde::Serialize, serde::Deserialize)]
pub struct PatientIndex {
    /// Record id (hex) -> its Patient's identifiers.
    records: BTreeMap<String, Vec<PatientKey>>,
}

impl PatientIndex {
    /// The records whose Patient carries `key` (normally one).
    pub fn lookup(&self, key: &PatientKey) -> Vec<RecordId> {
        self.records
            .iter()
            .filter(|(_, keys)| keys.contains(key))
            .filter_map(|(rid, _)| rid.parse::<RecordId>().ok())
            .collect()
    }

    /// Whether `record` is indexed.
    pub fn contains(&self, record: &RecordId) -> bool {
        self.records.contains_key(&record.to_hex())
    }

    /// Set the identifiers of `record`.
    pub fn set(&mut self, record: RecordId, keys: Vec<PatientKey>) {
        self.records.insert(record.to_hex(), keys);
    }

    /// How many records are indexed.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether no record is indexed.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }
}

/// `(system, value)` of each `identifier[]` of a Patient resource.
pub fn patient_keys(patient: &Value) -> Vec<PatientKey> {
    patient
        .get("identifier")
        .and_then(Value::as_array)
        .map(|ids| {
            ids.iter()
                .filter_map(|i| {
                    Some((
                        i.get("system")?.as_str()?.to_owned(),
                        i.get("value")?.as_str()?.to_owned(),
                    ))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The open records, at most `capacity` at once.
pub struct RecordPool {
    layout: HomeLayout,
    passphrase: Zeroizing<String>,
    capacity: usize,
    state: Mutex<PoolState>,
}

#[derive(Default)]
struct PoolState {
    open: HashMap<RecordId, (SharedRecord, u64, std::time::Instant)>,
    /// Records closed for room or idleness that a request or an upload
    /// may still hold: a record is never open twice at once (two copies of
    /// one store in memory would each miss the other's changes), so
    /// [`RecordPool::get`] hands back one of these while it lives.
    closing: HashMap<RecordId, std::sync::Weak<tokio::sync::Mutex<Record>>>,
    clock: u64,
    index: PatientIndex,
    /// Each record's vault key, derived once (32 bytes a record).
    keys: HashMap<RecordId, Arc<VaultKey>>,
}

impl PoolState {
    /// Take `rid` out of the open records: closed when its last user is
    /// done with it, and handed back by [`RecordPool::get`] until then.
    fn close(&mut self, rid: RecordId) {
        if let Some((record, _, _)) = self.open.remove(&rid) {
            self.closing.insert(rid, Arc::downgrade(&record));
        }
    }
}

impl RecordPool {
    /// The pool of the provider home at `dir`, unlocked with `passphrase`;
    /// builds the patient index of records it does not know yet (opening
    /// each once).
    pub fn open(
        dir: PathBuf,
        passphrase: Zeroizing<String>,
        capacity: usize,
    ) -> Result<Self, RecordsError> {
        let layout = HomeLayout::new(dir);
        if !layout.identity_db().exists() {
            return Err(RecordsError::NoIdentity(layout.dir().to_path_buf()));
        }
        let pool = Self {
            layout,
            passphrase,
            capacity: capacity.max(1),
            state: Mutex::new(PoolState::default()),
        };
        pool.refresh_index()?;
        Ok(pool)
    }

    fn unlock(&self) -> Unlock<'_> {
        Unlock::Passphrase {
            passphrase: self.passphrase.as_bytes(),
            params: None,
        }
    }

    fn vault(&self) -> Result<IdentityVault<SqliteStore>, RecordsError> {
        let store = SqliteStore::open(&self.layout.identity_db()).map_err(ProfileError::from)?;
        Ok(IdentityVault::open(store, self.unlock())?)
    }

    /// Index the records shared since the index was last saved (and the
    /// ones whose Patient was not yet known).
    pub fn refresh_index(&self) -> Result<usize, RecordsError> {
        let mut vault = self.vault()?;
        let mut index: PatientIndex = match vault.get_private(INDEX_NAME)? {
            Some(bytes) => serde_json::from_slice(&bytes).map_err(|_| RecordsError::Index)?,
            None => PatientIndex::default(),
        };
        let mut changed = false;
        for rid in self.layout.shared_records()? {
            let known = index
                .records
                .get(&rid.to_hex())
                .is_some_and(|k| !k.is_empty());
            if known {
                continue;
            }
            let profile = self.open_profile(rid)?;
            let keys = profile
                .record_patient()
                .map(|p| patient_keys(&p.current.resource))
                .unwrap_or_default();
            index.set(rid, keys);
            changed = true;
        }
        if changed {
            let bytes =
                Zeroizing::new(serde_json::to_vec(&index).map_err(|_| RecordsError::Index)?);
            vault.put_private(INDEX_NAME, &bytes)?;
        }
        let n = index.len();
        self.state.lock().map_err(|_| RecordsError::Poisoned)?.index = index;
        Ok(n)
    }

    /// The records whose Patient carries `key`.
    pub fn lookup(&self, key: &PatientKey) -> Result<Vec<RecordId>, RecordsError> {
        Ok(self
            .state
            .lock()
            .map_err(|_| RecordsError::Poisoned)?
            .index
            .lookup(key))
    }

    /// Whether `record` is shared with this provider.
    pub fn is_shared(&self, record: &RecordId) -> Result<bool, RecordsError> {
        Ok(self
            .state
            .lock()
            .map_err(|_| RecordsError::Poisoned)?
            .index
            .contains(record))
    }

    /// Every record shared with this provider.
    pub fn records(&self) -> Result<Vec<RecordId>, RecordsError> {
        Ok(self
            .state
            .lock()
            .map_err(|_| RecordsError::Poisoned)?
            .index
            .records
            .keys()
            .filter_map(|h| h.parse::<RecordId>().ok())
            .collect())
    }

    fn open_profile(&self, rid: RecordId) -> Result<Record, RecordsError> {
        let path = self.layout.shared_db(&rid);
        if !path.exists() {
            return Err(RecordsError::NotShared(rid));
        }
        let cached = self
            .state
            .lock()
            .map_err(|_| RecordsError::Poisoned)?
            .keys
            .get(&rid)
            .cloned();
        if let Some(key) = cached {
            let store = SqliteStore::open(&path).map_err(ProfileError::from)?;
            match Profile::open(store, Unlock::Key(&key)) {
                Ok(profile) => return Ok(profile),
                // The store was replaced since (a record shared anew):
                // derive its key again.
                Err(ProfileError::WrongKey) => {
                    self.state
                        .lock()
                        .map_err(|_| RecordsError::Poisoned)?
                        .keys
                        .remove(&rid);
                }
                Err(e) => return Err(e.into()),
            }
        }
        let store = SqliteStore::open(&path).map_err(ProfileError::from)?;
        // Argon2id, outside the pool's lock.
        let key = Arc::new(vault_key(&store, self.unlock())?);
        let profile = Profile::open(store, Unlock::Key(&key))?;
        self.state
            .lock()
            .map_err(|_| RecordsError::Poisoned)?
            .keys
            .insert(rid, key);
        Ok(profile)
    }

    /// The record `rid`, opened if it is not (blocking: opening reads the
    /// store, and the first open derives the vault key; call from a
    /// blocking thread).
    pub fn get(&self, rid: RecordId) -> Result<SharedRecord, RecordsError> {
        {
            let mut state = self.state.lock().map_err(|_| RecordsError::Poisoned)?;
            state.clock += 1;
            let now = state.clock;
            if let Some((record, used, at)) = state.open.get_mut(&rid) {
                *used = now;
                *at = std::time::Instant::now();
                return Ok(record.clone());
            }
            if let Some(record) = state.closing.remove(&rid).and_then(|w| w.upgrade()) {
                state
                    .open
                    .insert(rid, (record.clone(), now, std::time::Instant::now()));
                return Ok(record);
            }
            if !state.index.contains(&rid) {
                return Err(RecordsError::NotShared(rid));
            }
        }
        let record: SharedRecord = Arc::new(tokio::sync::Mutex::new(self.open_profile(rid)?));
        let mut state = self.state.lock().map_err(|_| RecordsError::Poisoned)?;
        state.clock += 1;
        let now = state.clock;
        // Another request may have opened it meanwhile: keep the first.
        let record = state
            .open
            .entry(rid)
            .or_insert((record, now, std::time::Instant::now()))
            .0
            .clone();
        while state.open.len() > self.capacity {
            let Some(oldest) = state
                .open
                .iter()
                .filter(|(id, _)| **id != rid)
                .min_by_key(|(_, (_, used, _))| *used)
                .map(|(id, _)| *id)
            else {
                break;
            };
            state.close(oldest);
        }
        Ok(record)
    }

    /// Close the records no request has used for `idle` (each closes
    /// when its last user is done with it). Returns how many.
    pub fn close_idle(&self, idle: std::time::Duration) -> usize {
        let Ok(mut state) = self.state.lock() else {
            return 0;
        };
        let before = state.open.len();
        let idle: Vec<RecordId> = state
            .open
            .iter()
            .filter(|(_, (_, _, at))| at.elapsed() >= idle)
            .map(|(id, _)| *id)
            .collect();
        for rid in idle {
            state.close(rid);
        }
        state.closing.retain(|_, w| w.strong_count() > 0);
        before - state.open.len()
    }

    /// How many records are open now.
    pub fn open_count(&self) -> usize {
        self.state.lock().map(|s| s.open.len()).unwrap_or(0)
    }
}
