//! The network side of sharing: invites (a one-time code, the invitee's
//! card, the owner's approval of that exact card), posting grants and
//! revocations to the relay's access log, recovery keys and restoring from
//! one, and reading the relay's audit log.
//!
//! Invites reuse the device-link mailbox: the code `satchel-invite:...`
//! carries the relay, the record id and a one-time secret `K`. The invitee
//! posts its identity card MACed with `K`; the owner (or a manager) checks
//! the MAC, shows the card's fingerprint, and only when approved signs the
//! grant (keys wrapped to that card) and answers with the record's facts
//! wrapped to the invitee and MACed with `K`.

use std::time::Duration;

use ring::hmac;
use serde::{Deserialize, Serialize};

use super::link::{
    open_mailbox, poll_link, to_json, AcceptMessage, JoinMessage, LinkCode, LinkError,
};
use super::transport::{RelayClient, TransportError};
use super::wire::{
    self, AccessResponse, AfterQuery, LinkPath, LinkPayload, LinkState, PageQuery, RecordPath,
};
use crate::audit::AuditEventRow;
use crate::crypto::{unwrap_key, wrap_key, Identity, IdentityCard, Role};
use crate::ids::IdentityId;
use crate::profile::{
    learn, now_ms, sign_change, wrap_current, Keyring, MemberInfo, Profile, ProfileError, Unlock,
};
use crate::record::Section;
use crate::sharing::{AccessChange, AccessStatement, GrantRole, RecoveryKey, SignedStatement};
use crate::store::Store;

const INVITE_PREFIX: &str = "satchel-invite:";
const PENDING: &str = "pending-invites";

/// What an invite grants once approved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InviteTerms {
    pub role: GrantRole,
    pub sections: Vec<Section>,
    pub expires_at_ms: Option<i64>,
    pub label: String,
}

/// An invite waiting for the invitee (kept sealed in the inviting
/// profile; the code holds the one-time secret).
#[derive(Serialize, Deserialize)]
pub struct PendingInvite {
    pub link_id: String,
    code: String,
    pub terms: InviteTerms,
    pub created_at_ms: i64,
}

impl std::fmt::Debug for PendingInvite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingInvite")
            .field("link_id", &self.link_id)
            .field("terms", &self.terms)
            .finish_non_exhaustive()
    }
}

fn invite_aad(link_id: &str) -> String {
    format!("satchel/v1/invite|{link_id}")
}

/// The invites this profile made that are not approved yet.
pub fn pending_invites<S: Store>(profile: &Profile<S>) -> Result<Vec<PendingInvite>, LinkError> {
    match profile.get_private(PENDING)? {
        Some(bytes) => serde_json::from_slice(&bytes)
            .map_err(|_| ProfileError::Corrupt("pending invites").into()),
        None => Ok(Vec::new()),
    }
}

fn save_pending<S: Store>(
    profile: &mut Profile<S>,
    list: &[PendingInvite],
) -> Result<(), LinkError> {
    let json = zeroize::Zeroizing::new(to_json(list)?);
    profile.put_private(PENDING, &json)?;
    Ok(())
}

/// Owner or manager: create an invite on the relay. Returns the code to
/// give the invitee (valid for `ttl`).
pub async fn invite<S: Store>(
    client: &mut RelayClient,
    profile: &mut Profile<S>,
    terms: InviteTerms,
    ttl: Duration,
) -> Result<(String, String), LinkError> {
    if !profile.may_administer() {
        return Err(
            ProfileError::NotAllowed("only the owner's devices and managers may invite").into(),
        );
    }
    let code = open_mailbox(client, profile, ttl.as_secs().clamp(60, 604_800)).await?;
    let text = code.encode_as(INVITE_PREFIX)?;
    let mut list = pending_invites(profile)?;
    list.push(PendingInvite {
        link_id: code.link_id()?,
        code: text.clone(),
        terms,
        created_at_ms: crate::profile::now_ms(),
    });
    save_pending(profile, &list)?;
    Ok((code.link_id()?, text))
}

/// Owner or manager: the invitee's card, once it answered (`None` while
/// it has not). The card is checked against the one-time secret.
pub async fn invitee_card<S: Store>(
    client: &mut RelayClient,
    profile: &mut Profile<S>,
    link_id: &str,
) -> Result<Option<IdentityCard>, LinkError> {
    let pending = pending_invites(profile)?;
    let invite = pending
        .iter()
        .find(|p| p.link_id == link_id)
        .ok_or(LinkError::BadCode)?;
    let code = LinkCode::parse_as(&invite.code, INVITE_PREFIX)?;
    if client.token().is_none() {
        client.sync(profile).await?;
    }
    let state: LinkState = client
        .request::<wire::GetLink>(&LinkPath(code.link()?), &(), None)
        .await?;
    let Some(payload) = state.join else {
        return Ok(None);
    };
    let join: JoinMessage = serde_json::from_slice(&payload).map_err(|_| LinkError::BadProof)?;
    hmac::verify(&code.mac_key()?, &join.card.to_bytes(), &join.mac)
        .map_err(|_| LinkError::BadProof)?;
    join.card.verify().map_err(|_| LinkError::BadProof)?;
    Ok(Some(join.card))
}

/// Owner or manager: approve the invitee whose card was shown (its id must
/// be `expected`, the card the user saw): sign the grant, publish it, and
/// send the invitee the record's facts.
pub async fn approve<S: Store>(
    client: &mut RelayClient,
    profile: &mut Profile<S>,
    link_id: &str,
    expected: &IdentityId,
) -> Result<IdentityCard, LinkError> {
    let card = invitee_card(client, profile, link_id)
        .await?
        .ok_or(LinkError::TimedOut)?;
    if &card.id() != expected {
        return Err(LinkError::BadProof);
    }
    let mut pending = pending_invites(profile)?;
    let index = pending
        .iter()
        .position(|p| p.link_id == link_id)
        .ok_or(LinkError::BadCode)?;
    let terms = pending[index].terms.clone();
    let code = LinkCode::parse_as(&pending[index].code, INVITE_PREFIX)?;
    // Up to date first, so the grant chains onto the relay's head.
    client.sync(profile).await?;
    let statement = profile.grant_statement(
        &card,
        terms.role,
        &terms.sections,
        terms.expires_at_ms,
        &terms.label,
    )?;
    post_statement(client, profile, statement).await?;
    let info = zeroize::Zeroizing::new(to_json(&profile.member_info())?);
    let wrapped = wrap_key(&card, &info, invite_aad(link_id).as_bytes())
        .map_err(|e| LinkError::Profile(e.into()))?;
    let wrapped_json = to_json(&wrapped)?;
    let mac = hmac::sign(&code.mac_key()?, &wrapped_json);
    let accept = AcceptMessage {
        wrapped,
        mac: mac.as_ref().to_vec(),
    };
    let payload = serde_json::to_vec(&accept).map_err(|_| LinkError::Encode)?;
    client
        .request::<wire::AcceptLink>(&LinkPath(code.link()?), &(), Some(&LinkPayload { payload }))
        .await?;
    pending.remove(index);
    save_pending(profile, &pending)?;
    Ok(card)
}

/// Publish a statement this profile signed, then apply it locally. A
/// `409` means the log moved on: sync and make the statement again.
pub async fn post_statement<S: Store>(
    client: &mut RelayClient,
    profile: &mut Profile<S>,
    statement: SignedStatement,
) -> Result<(), LinkError> {
    let cursor = profile.sync_state(client.base())?.access_cursor;
    Ok(client.publish(profile, statement, cursor).await?)
}

/// Parse an invite code.
pub fn parse_invite(code: &str) -> Result<LinkCode, LinkError> {
    LinkCode::parse_as(code, INVITE_PREFIX)
}

/// Invitee: answer an invite with this identity's card.
pub async fn accept(
    client: &mut RelayClient,
    identity: &Identity,
    code: &LinkCode,
) -> Result<(), LinkError> {
    super::link::post_join(client, identity, code).await
}

/// Invitee: wait (up to `timeout`) for the approval; returns what a member
/// profile needs.
pub async fn await_approval(
    client: &mut RelayClient,
    identity: &Identity,
    code: &LinkCode,
    timeout: Duration,
) -> Result<MemberInfo, LinkError> {
    if client.token().is_none() {
        client.authenticate(identity).await?;
    }
    let payload = poll_link(client, code, timeout, |s| s.accept).await?;
    let accept: AcceptMessage =
        serde_json::from_slice(&payload).map_err(|_| LinkError::BadProof)?;
    let wrapped_json = to_json(&accept.wrapped)?;
    hmac::verify(&code.mac_key()?, &wrapped_json, &accept.mac).map_err(|_| LinkError::BadProof)?;
    let bytes = unwrap_key(
        identity,
        &accept.wrapped,
        invite_aad(&code.link_id()?).as_bytes(),
    )
    .map_err(|_| LinkError::BadProof)?;
    let info: MemberInfo = serde_json::from_slice(&bytes).map_err(|_| LinkError::BadProof)?;
    if info.record_id != code.record_id {
        return Err(LinkError::BadProof);
    }
    Ok(info)
}

/// Owner or manager: revoke `identity` (from `sections`, or entirely),
/// rotating the keys it loses.
pub async fn revoke<S: Store>(
    client: &mut RelayClient,
    profile: &mut Profile<S>,
    identity: &IdentityId,
    sections: Option<&[Section]>,
) -> Result<(), LinkError> {
    client.sync(profile).await?;
    let statement = profile.revoke_statement(identity, sections)?;
    post_statement(client, profile, statement).await
}

/// The identity card a relay shows (`GET /v1/relay`), checked: it must
/// verify and be a relay's. Compare its fingerprint with the relay's
/// operator before naming it a replica.
pub async fn relay_identity(client: &mut RelayClient) -> Result<IdentityCard, LinkError> {
    let shown = client
        .request::<wire::RelayIdentity>(&(), &(), None)
        .await?;
    if shown.card.verify().is_err()
        || shown.card.role != crate::crypto::Role::Relay
        || shown.fingerprint != shown.card.fingerprint()
    {
        return Err(LinkError::BadRelayIdentity);
    }
    Ok(shown.card)
}

/// Owner device or manager: name the relay of `card` a replica of the
/// record (see [`Profile::replica_statement`]), on the record's relay.
pub async fn add_replica<S: Store>(
    client: &mut RelayClient,
    profile: &mut Profile<S>,
    card: &IdentityCard,
    label: &str,
) -> Result<(), LinkError> {
    client.sync(profile).await?;
    let statement = profile.replica_statement(card, label)?;
    post_statement(client, profile, statement).await
}

/// What an `add-recovery` statement seals for the recovery key.
#[derive(Serialize, Deserialize)]
struct RecoveryInfo {
    info: MemberInfo,
}

/// Owner device: make a recovery key, add its identity to the access log
/// and return the key to print.
pub async fn make_recovery_key<S: Store>(
    client: &mut RelayClient,
    profile: &mut Profile<S>,
) -> Result<RecoveryKey, LinkError> {
    client.sync(profile).await?;
    let key =
        RecoveryKey::generate(profile.record_id()).map_err(|e| LinkError::Profile(e.into()))?;
    let identity = key.identity().map_err(|_| LinkError::BadCode)?;
    let facts = zeroize::Zeroizing::new(to_json(&RecoveryInfo {
        info: profile.member_info(),
    })?);
    let sealed = key.seal(&facts).map_err(|_| LinkError::BadCode)?;
    let statement = profile.recovery_statement(identity.card(), sealed)?;
    post_statement(client, profile, statement).await?;
    Ok(key)
}

/// Errors of [`restore`] beyond transport ones.
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("the relay holds no record for this recovery key, or the key was replaced or revoked (wrong key?)")]
    UnknownKey,
    #[error(transparent)]
    Link(#[from] LinkError),
    #[error(transparent)]
    Profile(#[from] ProfileError),
}

async fn fetch_log(
    client: &RelayClient,
    record: crate::ids::RecordId,
) -> Result<Vec<SignedStatement>, LinkError> {
    let mut out = Vec::new();
    let mut after = 0u64;
    loop {
        let page: AccessResponse = client
            .request::<wire::Statements>(&RecordPath(record), &AfterQuery { after }, None)
            .await?;
        let Some(last) = page.statements.last().map(|s| s.seq) else {
            break;
        };
        after = last;
        let more = page.more;
        out.extend(page.statements.into_iter().map(|e| e.signed));
        if !more {
            break;
        }
    }
    Ok(out)
}

/// A fresh device: restore the record from the relay with only the
/// recovery key. Creates this device's identity, adds it to the log as an
/// owner device (signed by the recovery identity), and syncs everything.
pub async fn restore<S: Store>(
    client: &mut RelayClient,
    key: &RecoveryKey,
    store: S,
    unlock: Unlock<'_>,
) -> Result<Profile<S>, RestoreError> {
    let recovery = key.identity().map_err(|_| RestoreError::UnknownKey)?;
    client
        .authenticate(&recovery)
        .await
        .map_err(|_| RestoreError::UnknownKey)?;
    let log = fetch_log(client, key.record_id)
        .await
        .map_err(|_| RestoreError::UnknownKey)?;
    // Our add-recovery statement carries the record's facts.
    let info = log
        .iter()
        .filter_map(|s| serde_json::from_slice::<AccessStatement>(&s.statement).ok())
        .find_map(|s| match s.change {
            AccessChange::AddRecovery {
                recovery: card,
                sealed,
                ..
            } if card.id() == recovery.id() => key.open(&sealed),
            _ => None,
        })
        .ok_or(RestoreError::UnknownKey)?;
    let info: RecoveryInfo = serde_json::from_slice(&info).map_err(|_| RestoreError::UnknownKey)?;
    let info = info.info;
    // The recovery identity, as the log establishes it, learns the keys
    // wrapped to it and signs this device in: pure functions of the
    // verified log, no profile needed.
    let members = crate::sharing::verify_log(
        key.record_id,
        info.creator,
        info.creator_card.as_ref(),
        &log,
    )
    .map_err(ProfileError::from)?;
    if !members.owner_devices.contains_key(&recovery.id()) {
        return Err(RestoreError::UnknownKey);
    }
    let mut keys = Keyring::new();
    learn(&mut keys, &recovery, key.record_id, &log);
    let device = Identity::generate("Patient device", Role::PatientDevice, None)
        .map_err(ProfileError::from)?;
    let wraps = wrap_current(&keys, &members, device.card(), &Section::ALL)?;
    let statement = sign_change(
        &recovery,
        &members,
        AccessChange::AddDevice {
            device: device.card().clone(),
            keys: wraps,
        },
        now_ms(),
    )?;
    client
        .request::<wire::AppendStatement>(&RecordPath(key.record_id), &(), Some(&statement))
        .await
        .map_err(LinkError::from)?;
    let mut profile = Profile::create_member(store, unlock, device, info)?;
    client.set_token(None);
    client.sync(&mut profile).await.map_err(LinkError::from)?;
    Ok(profile)
}

/// Owner or manager: every pull and push the relay recorded for the record.
pub async fn fetch_audit<S: Store>(
    client: &mut RelayClient,
    profile: &mut Profile<S>,
) -> Result<Vec<AuditEventRow>, LinkError> {
    client.sync(profile).await?;
    let mut out = Vec::new();
    let mut after = 0u64;
    loop {
        let page = client
            .request::<wire::Audit>(
                &RecordPath(profile.record_id()),
                &PageQuery {
                    after,
                    limit: Some(1000),
                },
                None,
            )
            .await?;
        for e in page.events {
            let (Ok(seq), Ok(count)) = (i64::try_from(e.seq), i64::try_from(e.count)) else {
                return Err(LinkError::Transport(TransportError::Sync(
                    super::engine::SyncError::Protocol,
                )));
            };
            out.push(AuditEventRow {
                seq,
                at_ms: e.at_ms,
                identity: e.identity,
                action: e.action.as_str().to_owned(),
                section: e.section,
                count,
                relay: e.relay,
            });
        }
        if !page.more || page.next <= after {
            break;
        }
        after = page.next;
    }
    Ok(out)
}

/// Owner device: end every relay session (bearer token) of `identity`, a
/// member or device of the record, at once on every relay instance.
/// Returns how many sessions ended. The identity can log in again while it
/// is a member: revoke its access as well to keep it out.
pub async fn end_sessions<S: Store>(
    client: &mut RelayClient,
    profile: &mut Profile<S>,
    identity: IdentityId,
) -> Result<u64, LinkError> {
    client.sync(profile).await?;
    let ended = client
        .request::<wire::RevokeSessions>(
            &RecordPath(profile.record_id()),
            &(),
            Some(&wire::RevokeSessionsRequest { identity }),
        )
        .await?;
    Ok(ended.revoked)
}
