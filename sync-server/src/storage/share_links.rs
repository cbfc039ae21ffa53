//! What the relay keeps of SMART Health Links ([`ShareLinkStorage`]), a
//! narrow trait every [`super::Storage`] also implements.
//!
//! A link is known by its handle (SHA-256 of the secret id, which the
//! relay never sees stored). Per link: the record it belongs to, who made
//! it, its expiry and revocation times, the Argon2id hash of its passcode
//! (PHC string; never the passcode), the wrong-passcode budget left, the
//! opens left, the `U` flag, its files (JWE compact, as the device made
//! them), the outstanding `location` tokens (SHA-256 of each, with their
//! expiry) and every request for the files (time, the recipient's
//! self-declared name, what happened).
//!
//! The two counters are changed by single conditional updates, so
//! concurrent requests cannot overrun them: a wrong-passcode attempt is
//! reserved ([`ShareLinkStorage::reserve_share_link_attempt`]) before the
//! passcode is checked and given back only when it was right; an open
//! ([`ShareLinkStorage::open_share_link`]) takes one of the opens left in
//! the same transaction that records it.

use async_trait::async_trait;
use satchel_protocol::ids::{IdentityId, RecordId, ShareLinkHandle};
use satchel_protocol::wire::share_links::ShareLinkOpenKind;

use super::{Result, StorageError};

/// One stored file of a link.
#[derive(Clone, PartialEq, Eq)]
pub struct ShareFile {
    /// What it decrypts to.
    pub content_type: String,
    /// The JWE compact text.
    pub jwe: String,
}

impl std::fmt::Debug for ShareFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ShareFile({}, {} bytes)",
            self.content_type,
            self.jwe.len()
        )
    }
}

/// A link to create.
#[derive(Clone, PartialEq, Eq)]
pub struct NewShareLink {
    pub handle: ShareLinkHandle,
    pub record: RecordId,
    /// The owner device or manager that made it.
    pub created_by: IdentityId,
    /// Unix ms; `None`: until revoked.
    pub expires_at_ms: Option<i64>,
    /// Argon2id PHC string of the passcode.
    pub passcode_hash: Option<String>,
    /// Wrong passcodes it survives (with a passcode).
    pub attempts: Option<u32>,
    /// Successful opens it survives.
    pub max_opens: Option<u32>,
    /// Flag `U`.
    pub direct: bool,
    pub files: Vec<ShareFile>,
}

impl std::fmt::Debug for NewShareLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewShareLink")
            .field("handle", &self.handle)
            .field("record", &self.record)
            .field("passcode", &self.passcode_hash.is_some())
            .field("files", &self.files.len())
            .finish_non_exhaustive()
    }
}

/// A stored link (without its files).
#[derive(Clone, PartialEq, Eq)]
pub struct ShareLinkRow {
    pub handle: ShareLinkHandle,
    pub record: RecordId,
    pub created_by: IdentityId,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    pub expires_at_ms: Option<i64>,
    pub revoked_at_ms: Option<i64>,
    /// Argon2id PHC string.
    pub passcode_hash: Option<String>,
    /// Wrong passcodes it still survives.
    pub attempts_left: Option<u32>,
    /// Successful opens left.
    pub opens_left: Option<u32>,
    pub direct: bool,
}

impl std::fmt::Debug for ShareLinkRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShareLinkRow")
            .field("handle", &self.handle)
            .field("record", &self.record)
            .field("revoked_at_ms", &self.revoked_at_ms)
            .field("attempts_left", &self.attempts_left)
            .field("opens_left", &self.opens_left)
            .finish_non_exhaustive()
    }
}

impl ShareLinkRow {
    /// Whether it still answers at `now_ms`: not revoked, not expired, not
    /// used up, not out of passcode attempts.
    pub fn live(&self, now_ms: i64) -> bool {
        self.revoked_at_ms.is_none()
            && self.expires_at_ms.is_none_or(|e| e > now_ms)
            && self.opens_left != Some(0)
            && self.attempts_left != Some(0)
    }
}

/// One request for a link's files.
#[derive(Clone, PartialEq, Eq)]
pub struct ShareOpen {
    pub at_ms: i64,
    /// The recipient's self-declared name (personal data: never logged).
    pub recipient: String,
    pub kind: ShareLinkOpenKind,
}

impl std::fmt::Debug for ShareOpen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ShareOpen({}, {:?})", self.at_ms, self.kind)
    }
}

/// Part of `purge_expired` (both backends; `?1` is now): the files of
/// links that can never be served again: expired, out of passcode
/// attempts, or used up with no `location` token left to fetch them by.
/// (Run after the expired tokens are deleted.)
pub(crate) const PURGE_DEAD_FILES: &str = "DELETE FROM share_link_files WHERE handle IN (
    SELECT handle FROM share_links
    WHERE expires_at_ms <= ?1 OR attempts_left = 0
       OR (opens_left = 0 AND NOT EXISTS (
           SELECT 1 FROM share_link_locations l WHERE l.handle = share_links.handle)))";

/// The stored name of an open kind.
pub fn open_kind_to_db(kind: ShareLinkOpenKind) -> &'static str {
    match kind {
        ShareLinkOpenKind::Manifest => "manifest",
        ShareLinkOpenKind::Direct => "direct",
        ShareLinkOpenKind::WrongPasscode => "wrong-passcode",
    }
}

/// Parse a stored open kind.
pub fn open_kind_from_db(s: &str) -> Result<ShareLinkOpenKind> {
    match s {
        "manifest" => Ok(ShareLinkOpenKind::Manifest),
        "direct" => Ok(ShareLinkOpenKind::Direct),
        "wrong-passcode" => Ok(ShareLinkOpenKind::WrongPasscode),
        _ => Err(StorageError::Backend("corrupt share link open kind".into())),
    }
}

/// A stored count (never negative) as `u32`.
pub(crate) fn count_from_db(n: Option<i64>) -> Result<Option<u32>> {
    n.map(|n| {
        u32::try_from(n).map_err(|_| StorageError::Backend("corrupt share link counter".into()))
    })
    .transpose()
}

/// A handle from stored bytes.
pub(crate) fn handle_from_db(bytes: &[u8]) -> Result<ShareLinkHandle> {
    ShareLinkHandle::from_slice(bytes)
        .map_err(|_| StorageError::Backend("corrupt share link handle".into()))
}

/// The share-link part of the relay's storage (both backends).
#[async_trait]
pub trait ShareLinkStorage: Send + Sync {
    /// Store a new link with its files (`Conflict` if the handle exists,
    /// whatever its state; `NotFound` without the record).
    async fn create_share_link(&self, link: NewShareLink, now_ms: i64) -> Result<()>;

    /// A link of `record` by its handle, in whatever state.
    async fn share_link(
        &self,
        record: RecordId,
        handle: ShareLinkHandle,
    ) -> Result<Option<ShareLinkRow>>;

    /// A link by its handle alone (the public routes), in whatever state.
    async fn share_link_by_handle(&self, handle: ShareLinkHandle) -> Result<Option<ShareLinkRow>>;

    /// Replace the files of a live link of `record` (`NotFound` if it is
    /// unknown, revoked, expired, used up or out of attempts); its
    /// outstanding `location` tokens end.
    async fn replace_share_link_files(
        &self,
        record: RecordId,
        handle: ShareLinkHandle,
        files: Vec<ShareFile>,
        now_ms: i64,
    ) -> Result<()>;

    /// Revoke a link of `record`: delete its files and `location` tokens,
    /// mark it revoked (at `now_ms`, or when it first was: idempotent).
    /// Returns the revocation time; `NotFound` if unknown.
    async fn revoke_share_link(
        &self,
        record: RecordId,
        handle: ShareLinkHandle,
        now_ms: i64,
    ) -> Result<i64>;

    /// Every link of `record` (oldest first) with its opens (oldest first).
    async fn list_share_links(
        &self,
        record: RecordId,
    ) -> Result<Vec<(ShareLinkRow, Vec<ShareOpen>)>>;

    /// Take one wrong-passcode attempt from a live passcode link, in one
    /// conditional update: `Some(left)` with what is left after it, `None`
    /// when none is left (or the link is not live). Never below zero,
    /// whatever the concurrency.
    async fn reserve_share_link_attempt(
        &self,
        handle: ShareLinkHandle,
        now_ms: i64,
    ) -> Result<Option<u32>>;

    /// Give back an attempt reserved for a passcode that was right.
    async fn release_share_link_attempt(&self, handle: ShareLinkHandle) -> Result<()>;

    /// Record a request that was not served (a wrong passcode).
    async fn record_share_link_open(&self, handle: ShareLinkHandle, open: ShareOpen) -> Result<()>;

    /// Serve a live link: in one transaction take one of its opens left
    /// (if it counts them), record `open` and return its files in order.
    /// `None` (nothing recorded) if it is not live.
    async fn open_share_link(
        &self,
        handle: ShareLinkHandle,
        open: ShareOpen,
    ) -> Result<Option<Vec<ShareFile>>>;

    /// Remember `location` tokens (SHA-256 of each, with its file's index)
    /// of a link, working until `expires_at_ms`.
    async fn add_share_link_locations(
        &self,
        handle: ShareLinkHandle,
        tokens: Vec<([u8; 32], u32)>,
        expires_at_ms: i64,
    ) -> Result<()>;

    /// The file a `location` token names, if the token is the link's, has
    /// not expired, and the link is neither revoked nor expired.
    async fn share_link_location(
        &self,
        handle: ShareLinkHandle,
        token_hash: [u8; 32],
        now_ms: i64,
    ) -> Result<Option<ShareFile>>;
}
