//! [`SatchelHome`]: the app's data directory, laid out like a CLI home so
//! the same files work on both: `satchel.db` (the patient's own record),
//! `identity.db` (this app's identity as a carer, provider or manager) and
//! `shared/<record id>.db` (records shared with that identity). Every vault
//! key lives in the app's [`SecretStore`].

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::error::{Result, SatchelError};
use super::keystore::{ForeignSecretStore, SecretStore};
use super::record::HealthRecord;
use super::types::{IdentityInfo, IdentityKind};
use crate::crypto::{Identity, Role};
use crate::home::HomeLayout;
use crate::ids::RecordId;
use crate::profile::{IdentityVault, Profile, Unlock};
use crate::sharing::RecoveryKey;
use crate::store::SqliteStore;
use crate::sync::link::{self, LinkCode};
use crate::sync::sharing as net;
use crate::sync::RelayClient;

/// The app's data directory and keystore.
#[derive(uniffi::Object)]
pub struct SatchelHome {
    dir: PathBuf,
    keystore: Arc<ForeignSecretStore>,
}

impl std::fmt::Debug for SatchelHome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SatchelHome(..)")
    }
}

fn io(e: std::io::Error) -> SatchelError {
    SatchelError::storage(format!("file system: {}", e.kind()))
}

/// Remove a half-made store (a failed create or restore leaves nothing).
/// Best effort: the error being reported is the one that made it half-made.
fn remove_db(path: &Path) {
    if let Err(e) = HomeLayout::remove_store(path) {
        tracing::warn!(error = %e.kind(), "a half-made store could not be removed");
    }
}

impl SatchelHome {
    fn layout(&self) -> HomeLayout {
        HomeLayout::new(&self.dir)
    }

    fn own_path(&self) -> PathBuf {
        self.layout().own_db()
    }

    fn identity_path(&self) -> PathBuf {
        self.layout().identity_db()
    }

    fn shared_path(&self, record: &RecordId) -> PathBuf {
        self.layout().shared_db(record)
    }

    fn open_vault(&self) -> Result<IdentityVault<SqliteStore>> {
        let path = self.identity_path();
        if !path.exists() {
            return Err(SatchelError::not_found(
                "this home has no identity yet: accept an invite first",
            ));
        }
        Ok(IdentityVault::open(
            SqliteStore::open(&path)?,
            Unlock::SecretStore(self.keystore.as_ref()),
        )?)
    }

    fn open_at(&self, path: &Path) -> Result<Arc<HealthRecord>> {
        if !path.exists() {
            return Err(SatchelError::not_found("no such record in this home"));
        }
        let profile = Profile::open(
            SqliteStore::open(path)?,
            Unlock::SecretStore(self.keystore.as_ref()),
        )?;
        Ok(HealthRecord::new(profile))
    }
}

#[uniffi::export]
impl SatchelHome {
    /// The home in directory `dir` (created if missing), with vault keys in
    /// `keystore`.
    #[uniffi::constructor]
    pub fn new(dir: String, keystore: Arc<dyn SecretStore>) -> Result<Arc<Self>> {
        let dir = PathBuf::from(dir);
        std::fs::create_dir_all(&dir).map_err(io)?;
        Ok(Arc::new(SatchelHome {
            dir,
            keystore: Arc::new(ForeignSecretStore(keystore)),
        }))
    }

    /// Whether the patient's own record exists here.
    pub fn has_record(&self) -> bool {
        self.own_path().exists()
    }

    /// Create the patient's own record (a new vault key goes to the keystore).
    pub fn create_record(&self, owner_name: String) -> Result<Arc<HealthRecord>> {
        let path = self.own_path();
        if path.exists() {
            return Err(SatchelError::invalid("this home already holds a record"));
        }
        let result = Profile::create(
            SqliteStore::open(&path)?,
            &owner_name,
            Unlock::SecretStore(self.keystore.as_ref()),
        );
        match result {
            Ok(profile) => Ok(HealthRecord::new(profile)),
            Err(e) => {
                remove_db(&path);
                Err(e.into())
            }
        }
    }

    /// Open the patient's own record. A key that does not open it is
    /// [`SatchelError::WrongKey`].
    pub fn open_record(&self) -> Result<Arc<HealthRecord>> {
        self.open_at(&self.own_path())
    }

    /// Ids of the records shared with this home's identity.
    pub fn shared_records(&self) -> Result<Vec<String>> {
        Ok(self
            .layout()
            .shared_records()
            .map_err(io)?
            .iter()
            .map(RecordId::to_hex)
            .collect())
    }

    /// Open a record shared with this home's identity.
    pub fn open_shared(&self, record_id: String) -> Result<Arc<HealthRecord>> {
        let id: RecordId = record_id
            .parse()
            .map_err(|_| SatchelError::invalid("not a record id"))?;
        self.open_at(&self.shared_path(&id))
    }

    /// This home's identity as an invitee, if it has one.
    pub fn identity(&self) -> Result<Option<IdentityInfo>> {
        if !self.identity_path().exists() {
            return Ok(None);
        }
        Ok(Some(IdentityInfo::from(self.open_vault()?.card())))
    }

    /// Invites answered with [`Self::accept_invite`] and not yet approved
    /// (their codes, as given): pass each to [`Self::await_approval`], for
    /// example when the app starts again. Empty without an identity.
    pub fn pending_invites(&self) -> Result<Vec<String>> {
        if !self.identity_path().exists() {
            return Ok(Vec::new());
        }
        Ok(self.open_vault()?.pending_accepts()?)
    }

    /// Answer an invite code with this home's identity (created on first
    /// use with `display_name` and `kind`). Returns the identity: read its
    /// fingerprint out to the record's owner, then [`Self::await_approval`].
    pub async fn accept_invite(
        &self,
        code: String,
        display_name: String,
        kind: IdentityKind,
    ) -> Result<IdentityInfo> {
        let path = self.identity_path();
        let keystore = Arc::clone(&self.keystore);
        super::in_background(move |handle| {
            let code_text = code;
            let code = net::parse_invite(code_text.trim())?;
            let unlock = Unlock::SecretStore(keystore.as_ref());
            let mut vault = if path.exists() {
                IdentityVault::open(SqliteStore::open(&path)?, unlock)?
            } else {
                IdentityVault::create(
                    SqliteStore::open(&path)?,
                    unlock,
                    &display_name,
                    kind.into(),
                    None,
                )?
            };
            let mut client = RelayClient::new(&code.relay)?;
            handle.block_on(vault.answer_invite(&mut client, &code, &code_text))?;
            Ok(IdentityInfo::from(vault.card()))
        })
        .await
    }

    /// After [`Self::accept_invite`]: wait up to `timeout_ms` for the
    /// owner's approval, then set up the shared record and sync it.
    pub async fn await_approval(&self, code: String, timeout_ms: u64) -> Result<Arc<HealthRecord>> {
        let mut vault = self.open_vault()?;
        let keystore = Arc::clone(&self.keystore);
        let shared_dir = self.dir.join(HomeLayout::SHARED_DIR);
        super::in_background(move |handle| {
            let code_text = code;
            let code = net::parse_invite(code_text.trim())?;
            let mut client = RelayClient::new(&code.relay)?;
            let info = handle.block_on(vault.await_approval(
                &mut client,
                &code,
                Duration::from_millis(timeout_ms),
            ))?;
            std::fs::create_dir_all(&shared_dir).map_err(io)?;
            let path = shared_dir.join(format!("{}.db", info.record_id));
            if path.exists() {
                return Err(SatchelError::invalid(
                    "this record is already shared with this home",
                ));
            }
            let mut profile = match vault.join_approved(
                SqliteStore::open(&path)?,
                Unlock::SecretStore(keystore.as_ref()),
                info,
                &code_text,
            ) {
                Ok(p) => p,
                Err(e) => {
                    remove_db(&path);
                    return Err(e.into());
                }
            };
            handle.block_on(client.sync(&mut profile))?;
            Ok(HealthRecord::new(profile))
        })
        .await
    }

    /// A new device of the patient's (a tablet): join the record with the
    /// code shown by [`HealthRecord::offer_device_link`] on their other
    /// device (the code's one-time secret is the proof, so show it as a QR
    /// code or type it; never send it through a third party). Waits up to
    /// `timeout_ms` for the other device to admit this one, then creates the
    /// record here (a new vault key goes to the keystore) and syncs it.
    /// Nothing is kept on failure.
    pub async fn join_device(&self, code: String, timeout_ms: u64) -> Result<Arc<HealthRecord>> {
        let path = self.own_path();
        if path.exists() {
            return Err(SatchelError::invalid("this home already holds a record"));
        }
        let code = LinkCode::parse(code.trim())
            .map_err(|_| SatchelError::invalid("not a device link code"))?;
        let keystore = Arc::clone(&self.keystore);
        super::in_background(move |handle| {
            let identity = Identity::generate("Patient device", Role::PatientDevice, None)?;
            let mut client = RelayClient::new(&code.relay)?;
            let bundle = handle.block_on(link::join(
                &mut client,
                &identity,
                &code,
                Duration::from_millis(timeout_ms),
            ))?;
            let result = Profile::join(
                SqliteStore::open(&path)?,
                Unlock::SecretStore(keystore.as_ref()),
                identity,
                bundle,
            );
            let mut profile = match result {
                Ok(p) => p,
                Err(e) => {
                    remove_db(&path);
                    return Err(e.into());
                }
            };
            if let Err(e) = handle.block_on(client.sync(&mut profile)) {
                drop(profile);
                remove_db(&path);
                return Err(e.into());
            }
            Ok(HealthRecord::new(profile))
        })
        .await
    }

    /// A new device: restore the patient's record from the relay with the
    /// recovery key (the text written down). A key the relay does not know
    /// is [`SatchelError::WrongKey`]; nothing is kept on failure.
    pub async fn restore(
        &self,
        relay_url: String,
        recovery_key: String,
    ) -> Result<Arc<HealthRecord>> {
        let path = self.own_path();
        if path.exists() {
            return Err(SatchelError::invalid("this home already holds a record"));
        }
        let key = RecoveryKey::parse(&recovery_key)
            .map_err(|_| SatchelError::invalid("not a recovery key"))?;
        let keystore = Arc::clone(&self.keystore);
        super::in_background(move |handle| {
            let mut client = RelayClient::new(&relay_url)?;
            let result = handle.block_on(net::restore(
                &mut client,
                &key,
                SqliteStore::open(&path)?,
                Unlock::SecretStore(keystore.as_ref()),
            ));
            match result {
                Ok(profile) => Ok(HealthRecord::new(profile)),
                Err(e) => {
                    remove_db(&path);
                    Err(e.into())
                }
            }
        })
        .await
    }
}
