//! Moving a record from one relay to another (`satchel relays move`), in
//! steps that can each be run again, so an interrupted move finishes when
//! it is started again:
//!
//! 1. [`name_new_relay`]: on the old relay, the access log names the new
//!    relay (`add-replica`, labelled with its address) unless it already
//!    does;
//! 2. [`copy_access_log`]: the new relay learns the record (registered by
//!    the creator device) and every statement of its access log, in order
//!    (statements it holds already are answered `200` and skipped);
//! 3. [`upload_everything`]: rounds that upload everything the device holds
//!    that the new relay has not acknowledged, until nothing is left;
//! 4. [`retire_old_relay`]: only then the log retires the old relay
//!    (`retire-relay`, naming the new one), on the new relay and then on
//!    the old one, which from then on refuses the record's devices (the
//!    protocol's rule, [`crate::sharing::Members::relay_serves`]).
//!
//! Nothing here decides who may do what: the statements are checked by the
//! shared rules in `satchel-protocol` on every relay and device.

use crate::crypto::IdentityCard;
use crate::profile::Profile;
use crate::sharing::SignedStatement;
use crate::store::Store;

use super::link::LinkError;
use super::wire::{self, RecordPath, RegisterRequest};
use super::{RelayClient, SyncError, TransportError};

/// Most upload rounds [`upload_everything`] makes before it gives up (each
/// round uploads everything still owed; more than one is needed only when
/// rounds fail midway or new changes arrive meanwhile).
pub const MAX_ROUNDS: usize = 5;

/// Step 1: name the relay of `card` in the record's access log on `old`
/// (the record's current relay), after a sync round so the statement is
/// made on top of the latest log. Returns whether a statement was made
/// (`false`: the log names it already).
pub async fn name_new_relay<S: Store>(
    old: &mut RelayClient,
    profile: &mut Profile<S>,
    card: &IdentityCard,
    label: &str,
) -> Result<bool, LinkError> {
    old.sync(profile).await?;
    if profile.members().replicas.contains_key(&card.id()) {
        return Ok(false);
    }
    let statement = profile.replica_statement(card, label)?;
    super::sharing::post_statement(old, profile, statement).await?;
    Ok(true)
}

/// Step 2: register the record on `new` (from the creator device: the
/// record's root of trust is its creator) and append every statement of
/// the access log this device holds, oldest first. Returns the log's
/// length.
pub async fn copy_access_log<S: Store>(
    new: &mut RelayClient,
    profile: &mut Profile<S>,
) -> Result<usize, LinkError> {
    if new.token().is_none() {
        new.authenticate(&*profile).await?;
    }
    profile.sync_state(new.url().as_str())?;
    if profile.is_creator() {
        new.request::<wire::Register>(
            &(),
            &(),
            Some(&RegisterRequest {
                record_id: profile.record_id(),
                owner: profile.identity_card().clone(),
            }),
        )
        .await?;
        profile.mark_registered()?;
    }
    append_missing(new, profile, profile.access_log()?).await
}

/// Append `statements` in order on `client`'s copy of the log (a statement
/// it holds already is answered `200` and changes nothing); how many were
/// sent.
async fn append_missing<S: Store>(
    client: &mut RelayClient,
    profile: &Profile<S>,
    statements: Vec<SignedStatement>,
) -> Result<usize, LinkError> {
    let count = statements.len();
    for statement in statements {
        client
            .request::<wire::AppendStatement>(
                &RecordPath(profile.record_id()),
                &(),
                Some(&statement),
            )
            .await?;
    }
    Ok(count)
}

/// What [`upload_everything`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Uploaded {
    /// Envelopes uploaded over all rounds.
    pub envelopes: usize,
    /// Rounds made.
    pub rounds: usize,
    /// Envelopes still not acknowledged (0 when the move may finish).
    pub left: usize,
}

/// Step 3: upload everything the device holds to `new` until the new
/// relay has acknowledged every envelope (at most [`MAX_ROUNDS`] rounds).
/// `progress(done, total)` is called as batches are acknowledged.
pub async fn upload_everything<S: Store>(
    new: &mut RelayClient,
    profile: &mut Profile<S>,
    progress: &mut (dyn FnMut(usize, usize) + Send),
) -> Result<Uploaded, LinkError> {
    profile.sync_state(new.url().as_str())?;
    let total = profile.owed_everything()?.0.len();
    let mut done = Uploaded {
        left: total,
        ..Uploaded::default()
    };
    progress(0, total);
    while done.rounds < MAX_ROUNDS && (done.left > 0 || done.rounds == 0) {
        let already = total.saturating_sub(done.left);
        let mut acked = 0;
        let report = new
            .sync_everything(profile, &mut |n| {
                acked += n;
                progress((already + acked).min(total), total);
            })
            .await?;
        done.envelopes += report.uploaded;
        done.rounds += 1;
        done.left = profile.owed_everything()?.0.len();
    }
    progress(total.saturating_sub(done.left), total);
    Ok(done)
}

/// Step 4: retire the old relay (card `old_card`) in the access log,
/// naming the relay of `new_card` as where the record moved: appended on
/// `new`, then the whole log is brought to `old` so that it refuses the
/// record from then on. Run only once `new` acknowledged everything.
/// Returns whether the old relay now refuses the record (`false`: it was
/// unreachable; run the move again to tell it).
pub async fn retire_old_relay<S: Store>(
    old: &mut RelayClient,
    new: &mut RelayClient,
    profile: &mut Profile<S>,
    old_card: &IdentityCard,
    new_card: &IdentityCard,
) -> Result<bool, LinkError> {
    new.sync(profile).await?;
    if profile.members().relay_serves(&old_card.id()).is_ok() {
        let statement = profile.retire_relay_statement(old_card, Some(new_card.id()))?;
        super::sharing::post_statement(new, profile, statement).await?;
    }
    if old.token().is_none() {
        if let Err(e) = old.authenticate(&*profile).await {
            return unreachable_or(e);
        }
    }
    match append_missing(old, profile, profile.access_log()?).await {
        Ok(_) => Ok(true),
        Err(e) => unreachable_or(e),
    }
}

/// An old relay that cannot be reached (or already refuses the record as
/// moved) does not fail the move: `Ok(false)` / `Ok(true)`; anything else
/// is an error.
fn unreachable_or(e: LinkError) -> Result<bool, LinkError> {
    match e {
        LinkError::Transport(TransportError::Sync(SyncError::Offline(_))) => Ok(false),
        LinkError::Transport(TransportError::Sync(SyncError::Refused { code, .. }))
            if code == super::transport::RECORD_MOVED =>
        {
            Ok(true)
        }
        other => Err(other),
    }
}
