//! SMART Health Links on [`HealthRecord`]: the calls `satchel share-link`
//! and `satchel emergency-card` make (docs/sharing-links.md). The link
//! text returned holds the link's key: show it to the patient only (as a QR
//! code, or to copy), never log it.

use zeroize::Zeroizing;

use super::error::{Result, SatchelError};
use super::record::{lock, HealthRecord};
use super::types::parse_sections;
use crate::profile::share_links::{
    viewer_url, EmergencyParts, ShareContent, ShareLinkOptions, ShareLinkRecord,
};
use crate::share_link::ShlPayload;
use crate::sync::share_links::{self as host, LinkHostError};

/// What a new link shows and how it may be opened.
#[derive(Clone, PartialEq, Eq, uniffi::Record)]
pub struct ShareLinkRequest {
    /// Section names; `None`: the International Patient Summary.
    pub sections: Option<Vec<String>>,
    /// Unix ms after which it stops working; `None`: until revoked.
    pub expires_at_ms: Option<i64>,
    /// A passcode the recipient must type (tell it to them separately).
    pub passcode: Option<String>,
    /// Shown to the recipient before opening (at most 80 characters).
    pub label: Option<String>,
    /// The files follow the record at every sync.
    pub live: bool,
    /// Works for one successful open only.
    pub once: bool,
}

impl std::fmt::Debug for ShareLinkRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShareLinkRequest")
            .field("sections", &self.sections)
            .field("expires_at_ms", &self.expires_at_ms)
            .field("passcode", &self.passcode.is_some())
            .field("live", &self.live)
            .field("once", &self.once)
            .finish_non_exhaustive()
    }
}

/// A link made on this device.
#[derive(Clone, PartialEq, Eq, uniffi::Record)]
pub struct ShareLinkInfo {
    /// Short id (`satchel share-link list`): what revoke takes.
    pub id: String,
    pub label: Option<String>,
    /// `IPS`, section names, or `emergency card: ...`.
    pub shows: String,
    pub created_at_ms: i64,
    pub expires_at_ms: Option<i64>,
    pub revoked_at_ms: Option<i64>,
    pub live: bool,
    pub passcode: bool,
    pub emergency_card: bool,
    /// The bare `shlink:/...` (holds the key).
    pub shlink: String,
    /// The relay's viewer with the link in the fragment (holds the key):
    /// what the QR code encodes.
    pub viewer_url: String,
}

impl std::fmt::Debug for ShareLinkInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShareLinkInfo")
            .field("id", &self.id)
            .field("created_at_ms", &self.created_at_ms)
            .field("revoked_at_ms", &self.revoked_at_ms)
            .finish_non_exhaustive()
    }
}

/// One request for a link's files, as the relay recorded it.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct ShareLinkOpenInfo {
    /// The link's short id.
    pub link: String,
    pub at_ms: i64,
    /// `share link LABEL (RECIPIENT)`.
    pub who: String,
    /// `viewed` or `wrong passcode`.
    pub action: String,
}

/// What an emergency card shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, uniffi::Record)]
pub struct EmergencyCardParts {
    pub allergies: bool,
    pub medications: bool,
    pub conditions: bool,
    pub blood_group: bool,
    pub contact: bool,
}

impl From<LinkHostError> for SatchelError {
    fn from(e: LinkHostError) -> Self {
        match e {
            LinkHostError::Transport(e) => e.into(),
            LinkHostError::Profile(e) => e.into(),
            LinkHostError::Unknown => SatchelError::not_found(e.to_string()),
            LinkHostError::Relay(reason) => SatchelError::Relay { reason },
            LinkHostError::Link(e) => SatchelError::invalid(e.to_string()),
        }
    }
}

fn info(record: &ShareLinkRecord, payload: &ShlPayload) -> Result<ShareLinkInfo> {
    let invalid = |e: crate::share_link::PayloadError| SatchelError::invalid(e.to_string());
    Ok(ShareLinkInfo {
        id: record.short_id(),
        label: record.label.clone(),
        shows: record.content.describe(),
        created_at_ms: record.created_at_ms,
        expires_at_ms: record.expires_at_ms,
        revoked_at_ms: record.revoked_at_ms,
        live: record.live,
        passcode: record.passcode,
        emergency_card: record.emergency_card,
        shlink: payload.to_shlink().map_err(invalid)?.to_string(),
        viewer_url: payload
            .to_viewer_url(&viewer_url(&record.relay))
            .map_err(invalid)?
            .to_string(),
    })
}

#[uniffi::export]
impl HealthRecord {
    /// Owner or manager: make a SMART Health Link hosted at `relay_url`.
    pub async fn create_share_link(
        &self,
        relay_url: String,
        request: ShareLinkRequest,
    ) -> Result<ShareLinkInfo> {
        let content = match &request.sections {
            None => ShareContent::Ips,
            Some(list) => ShareContent::Sections(parse_sections(list)?),
        };
        let options = ShareLinkOptions {
            content,
            expires_at_ms: request.expires_at_ms,
            passcode: request.passcode.clone().map(Zeroizing::new),
            label: request.label.clone(),
            live: request.live,
            once: request.once,
            direct: false,
            emergency_card: false,
        };
        self.with_relay(relay_url, move |inner, client| {
            Box::pin(async move {
                require_admin(inner.profile.may_administer())?;
                let (record, payload) = host::create(
                    client,
                    &mut inner.profile,
                    &options,
                    crate::profile::now_ms(),
                )
                .await?;
                info(&record, &payload)
            })
        })
        .await
    }

    /// The links made on this device, oldest first (revoked ones too).
    pub fn share_links(&self) -> Result<Vec<ShareLinkInfo>> {
        let guard = lock(&self.inner)?;
        guard
            .profile
            .share_links()?
            .iter()
            .map(|r| info(r, &r.payload()?))
            .collect()
    }

    /// Revoke the link `id` (its short id): it stops working at once.
    pub async fn revoke_share_link(&self, id: String) -> Result<()> {
        let record = lock(&self.inner)?
            .profile
            .find_share_link(&id)?
            .ok_or_else(|| {
                SatchelError::not_found("no share link made on this device has that id")
            })?;
        let relay = record.relay.clone();
        self.with_relay(relay, move |inner, client| {
            Box::pin(async move {
                host::revoke(
                    client,
                    &mut inner.profile,
                    &record.handle,
                    crate::profile::now_ms(),
                )
                .await?;
                Ok(())
            })
        })
        .await
    }

    /// Revoke every link of the record the relay at `relay_url` still
    /// serves, made on any device (after losing a phone). Returns the short
    /// ids revoked.
    pub async fn revoke_all_share_links(&self, relay_url: String) -> Result<Vec<String>> {
        self.with_relay(relay_url, move |inner, client| {
            Box::pin(async move {
                require_admin(inner.profile.may_administer())?;
                let revoked =
                    host::revoke_all(client, &mut inner.profile, crate::profile::now_ms()).await?;
                Ok(revoked
                    .iter()
                    .map(|h| h.to_hex()[..8].to_string())
                    .collect())
            })
        })
        .await
    }

    /// Every request the relay at `relay_url` recorded for the record's
    /// links, oldest first (for the audit screen).
    pub async fn share_link_opens(&self, relay_url: String) -> Result<Vec<ShareLinkOpenInfo>> {
        self.with_relay(relay_url, move |inner, client| {
            Box::pin(async move {
                require_admin(inner.profile.may_administer())?;
                let statuses = host::status(client, &mut inner.profile).await?;
                let links = inner.profile.share_links()?;
                Ok(crate::audit::share_link_views(&links, &statuses)
                    .into_iter()
                    .map(|v| ShareLinkOpenInfo {
                        link: v.link,
                        at_ms: v.at_ms,
                        who: v.who,
                        action: v.action,
                    })
                    .collect())
            })
        })
        .await
    }

    /// Issue the emergency card (revoking the one issued before): a live,
    /// passcode-free link for a wallet card or a lock-screen widget.
    pub async fn issue_emergency_card(
        &self,
        relay_url: String,
        parts: EmergencyCardParts,
    ) -> Result<ShareLinkInfo> {
        let parts = EmergencyParts {
            allergies: parts.allergies,
            medications: parts.medications,
            conditions: parts.conditions,
            blood_group: parts.blood_group,
            contact: parts.contact,
        };
        self.with_relay(relay_url, move |inner, client| {
            Box::pin(async move {
                require_admin(inner.profile.may_administer())?;
                let (record, payload) = host::issue_emergency_card(
                    client,
                    &mut inner.profile,
                    parts,
                    None,
                    crate::profile::now_ms(),
                )
                .await?;
                info(&record, &payload)
            })
        })
        .await
    }

    /// The emergency card in force, if one was issued on this device (for
    /// the lock-screen widget).
    pub fn emergency_card(&self) -> Result<Option<ShareLinkInfo>> {
        let now = crate::profile::now_ms();
        let guard = lock(&self.inner)?;
        let card = guard
            .profile
            .share_links()?
            .into_iter()
            .rfind(|l| l.emergency_card && l.is_active(now));
        card.map(|c| info(&c, &c.payload()?)).transpose()
    }

    /// Revoke the emergency card at `relay_url`. Returns whether one was
    /// in force.
    pub async fn revoke_emergency_card(&self, relay_url: String) -> Result<bool> {
        self.with_relay(relay_url, move |inner, client| {
            Box::pin(async move {
                Ok(host::revoke_emergency_card(
                    client,
                    &mut inner.profile,
                    crate::profile::now_ms(),
                )
                .await?
                    > 0)
            })
        })
        .await
    }
}

fn require_admin(may: bool) -> Result<()> {
    if may {
        Ok(())
    } else {
        Err(SatchelError::NotAllowed {
            reason: "only the record's owner and managers may make or read share links".into(),
        })
    }
}
