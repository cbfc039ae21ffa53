//! Share links on the relay that hosts them: create (after a sync, so the
//! relay knows the record and this device), list with who opened them,
//! revoke, and replace the files of live links when the record changed.
//! What the links hold is made by the profile
//! ([`crate::profile::share_links`]); this is the I/O.

use satchel_protocol::wire::share_links::{
    CreateShareLink, ListShareLinks, ReplaceShareLinkFiles, ReplaceShareLinkFilesRequest,
    RevokeShareLink, ShareLinkPath, ShareLinkStatus,
};
use satchel_protocol::wire::RecordPath;

use super::engine::{Failure, RoundReport};
use super::transport::{RelayClient, TransportError};
use crate::ids::ShareLinkHandle;
use crate::profile::share_links::{ShareLinkError, ShareLinkOptions, ShareLinkRecord};
use crate::profile::{Profile, ProfileError};
use crate::share_link::ShlPayload;
use crate::store::Store;

/// Why a share-link operation failed. No content in any message.
#[derive(Debug, thiserror::Error)]
pub enum LinkHostError {
    #[error(transparent)]
    Link(#[from] ShareLinkError),
    #[error(transparent)]
    Profile(#[from] ProfileError),
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error("the relay refused: {0}")]
    Relay(String),
    #[error("no share link of this record on this device matches that id")]
    Unknown,
}

impl From<Failure> for LinkHostError {
    fn from(f: Failure) -> Self {
        LinkHostError::Relay(match f {
            Failure::Offline(why) => format!("the relay could not be reached ({why})"),
            Failure::Http {
                status,
                code,
                message,
                ..
            } => format!("{status} {code}: {message}"),
        })
    }
}

/// Make a link hosted at this client's relay and keep it on this device.
/// Returns the kept record and the link itself (for the QR code).
pub async fn create<S: Store>(
    client: &mut RelayClient,
    profile: &mut Profile<S>,
    options: &ShareLinkOptions,
    now_ms: i64,
) -> Result<(ShareLinkRecord, ShlPayload), LinkHostError> {
    // The relay must know the record, and this device must hold a token.
    client.sync(profile).await?;
    let prepared = profile.prepare_share_link(client.base(), options, now_ms)?;
    client
        .request::<CreateShareLink>(
            &ShareLinkPath {
                record: profile.record_id(),
                handle: prepared.record.handle,
            },
            &(),
            Some(&prepared.request),
        )
        .await?;
    let payload = prepared.record.payload()?;
    profile.keep_share_link(prepared.record.clone())?;
    Ok((prepared.record, payload))
}

/// What the relay says about the record's links (every link, with every
/// request for its files). Syncs first for a token.
pub async fn status<S: Store>(
    client: &mut RelayClient,
    profile: &mut Profile<S>,
) -> Result<Vec<ShareLinkStatus>, LinkHostError> {
    client.sync(profile).await?;
    Ok(client
        .request::<ListShareLinks>(&RecordPath(profile.record_id()), &(), None)
        .await?
        .links)
}

/// Revoke a link: the relay deletes its files and answers 404 from now on.
pub async fn revoke<S: Store>(
    client: &mut RelayClient,
    profile: &mut Profile<S>,
    handle: &ShareLinkHandle,
    now_ms: i64,
) -> Result<(), LinkHostError> {
    client.sync(profile).await?;
    client
        .request::<RevokeShareLink>(
            &ShareLinkPath {
                record: profile.record_id(),
                handle: *handle,
            },
            &(),
            None,
        )
        .await?;
    profile.mark_share_link_revoked(handle, now_ms)?;
    Ok(())
}

/// After a round that changed the record here (something uploaded or
/// merged): replace the files of this device's live links hosted at this
/// relay with files made from the record as it is now. Returns how many
/// were replaced and how many could not be (they keep their older files;
/// the next round that changes the record tries again).
pub(crate) async fn refresh_live<S: Store>(
    client: &RelayClient,
    profile: &mut Profile<S>,
    report: &RoundReport,
    now_ms: i64,
) -> Result<(usize, usize), ProfileError> {
    if report.uploaded == 0 && report.merged == 0 {
        return Ok((0, 0));
    }
    let base = client.base().trim_end_matches('/');
    let due: Vec<ShareLinkRecord> = profile
        .share_links()?
        .into_iter()
        .filter(|l| l.live && l.relay == base && l.is_active(now_ms))
        .collect();
    let (mut done, mut failed) = (0, 0);
    for link in due {
        let file = match profile.refreshed_share_link_file(&link) {
            Ok(file) => file,
            Err(e) => {
                tracing::warn!(link = %link.short_id(), error = %e, "live share link not refreshed");
                failed += 1;
                continue;
            }
        };
        let sent = client
            .request::<ReplaceShareLinkFiles>(
                &ShareLinkPath {
                    record: profile.record_id(),
                    handle: link.handle,
                },
                &(),
                Some(&ReplaceShareLinkFilesRequest { files: vec![file] }),
            )
            .await;
        match sent {
            Ok(_) => {
                profile.mark_share_link_refreshed(&link.handle, now_ms)?;
                done += 1;
            }
            Err(Failure::Http { status: 404, .. }) => {
                // Revoked elsewhere, used up or expired on the relay.
                profile.mark_share_link_revoked(&link.handle, now_ms)?;
            }
            Err(_) => {
                tracing::warn!(link = %link.short_id(), "live share link not refreshed: the relay did not take its files");
                failed += 1;
            }
        }
    }
    Ok((done, failed))
}

/// Issue the patient's emergency card: a passcode-free `U` link to the
/// parts chosen, until revoked. A card issued before is revoked first, so
/// one card works at a time.
pub async fn issue_emergency_card<S: Store>(
    client: &mut RelayClient,
    profile: &mut Profile<S>,
    parts: crate::profile::share_links::EmergencyParts,
    label: Option<String>,
    now_ms: i64,
) -> Result<(ShareLinkRecord, ShlPayload), LinkHostError> {
    revoke_emergency_card(client, profile, now_ms).await?;
    let options = ShareLinkOptions {
        content: crate::profile::share_links::ShareContent::EmergencyCard(parts),
        expires_at_ms: None,
        passcode: None,
        label: Some(label.unwrap_or_else(|| "Emergency health card".to_owned())),
        live: true,
        once: false,
        direct: true,
        emergency_card: true,
    };
    create(client, profile, &options, now_ms).await
}

/// Revoke every active emergency card this device issued at this client's
/// relay. Returns how many were revoked.
pub async fn revoke_emergency_card<S: Store>(
    client: &mut RelayClient,
    profile: &mut Profile<S>,
    now_ms: i64,
) -> Result<usize, LinkHostError> {
    let base = client.base().trim_end_matches('/').to_owned();
    let cards: Vec<ShareLinkHandle> = profile
        .share_links()?
        .into_iter()
        .filter(|l| l.emergency_card && l.is_active(now_ms) && l.relay == base)
        .map(|l| l.handle)
        .collect();
    for handle in &cards {
        revoke(client, profile, handle, now_ms).await?;
    }
    Ok(cards.len())
}

/// Revoke every link of the record the relay still serves, whichever
/// device made it (a lost phone's links too: the relay knows them by
/// handle, no key needed). Returns the handles revoked.
pub async fn revoke_all<S: Store>(
    client: &mut RelayClient,
    profile: &mut Profile<S>,
    now_ms: i64,
) -> Result<Vec<ShareLinkHandle>, LinkHostError> {
    let live: Vec<ShareLinkHandle> = status(client, profile)
        .await?
        .into_iter()
        .filter(|s| s.revoked_at_ms.is_none() && s.expires_at_ms.is_none_or(|e| e > now_ms))
        .map(|s| s.handle)
        .collect();
    for handle in &live {
        revoke(client, profile, handle, now_ms).await?;
    }
    Ok(live)
}
