//! Views a member makes from its own decrypted copy (a provider's FHIR
//! gateway answering a read), noted durably at the moment of the read and
//! reported to the relay's audit trail (`POST .../audit/views`), where the
//! patient's `satchel audit` shows them. The relay cannot see such reads:
//! without the report the patient would see only the gateway's sync pulls.

use super::engine::Failure;
use super::link::LinkError;
use super::transport::RelayClient;
use super::wire::{self, RecordPath, ReportViewsRequest, ViewReport};
use crate::audit::PendingViews;
use crate::profile::{Profile, ProfileError};
use crate::store::Store;

fn load<S: Store>(profile: &Profile<S>) -> Result<PendingViews, ProfileError> {
    match profile.get_private(PendingViews::PRIVATE_NAME)? {
        Some(bytes) => {
            serde_json::from_slice(&bytes).map_err(|_| ProfileError::Corrupt("pending views"))
        }
        None => Ok(PendingViews::default()),
    }
}

fn save<S: Store>(profile: &mut Profile<S>, views: &PendingViews) -> Result<(), ProfileError> {
    let bytes = serde_json::to_vec(views).map_err(|_| ProfileError::Corrupt("pending views"))?;
    profile.put_private(PendingViews::PRIVATE_NAME, &bytes)
}

/// Note that `shown` (section, entries) were shown at `at_ms`: committed
/// to the record's store before this returns (callers show nothing when it
/// fails).
pub fn note_views<S: Store>(
    profile: &mut Profile<S>,
    shown: &[(String, u64)],
    at_ms: i64,
) -> Result<(), ProfileError> {
    if shown.iter().all(|(_, n)| *n == 0) {
        return Ok(());
    }
    let mut views = load(profile)?;
    for (section, count) in shown {
        views.note(section, *count, at_ms);
    }
    save(profile, &views)
}

/// How many views wait to be reported.
pub fn pending_views<S: Store>(profile: &Profile<S>) -> Result<usize, ProfileError> {
    Ok(load(profile)?.len())
}

/// What a report did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ViewsReported {
    /// Views the relay stored.
    pub stored: u64,
    /// Views it refused: of sections this member may no longer read, or
    /// every view when it is no longer a member (they cannot ever be
    /// stored, so they leave the queue).
    pub refused: u64,
}

/// Report every pending view to the relay, oldest first, a request of at
/// most [`ReportViewsRequest::MAX_VIEWS`] at a time; each answered batch
/// leaves the queue. On a failure that may pass (offline, a relay error)
/// the rest stay pending for the next call.
pub async fn report_views<S: Store>(
    client: &mut RelayClient,
    profile: &mut Profile<S>,
) -> Result<ViewsReported, LinkError> {
    let mut views = load(profile)?;
    let mut done = ViewsReported::default();
    while !views.is_empty() {
        let batch = views.first(ReportViewsRequest::MAX_VIEWS);
        let request = ReportViewsRequest {
            views: batch
                .iter()
                .map(|v| ViewReport {
                    section: v.section.clone(),
                    count: v.count,
                    at_ms: v.at_ms,
                })
                .collect(),
        };
        let n = batch.len();
        match client
            .request::<wire::ReportViews>(&RecordPath(profile.record_id()), &(), Some(&request))
            .await
        {
            Ok(answer) => {
                done.stored += answer.stored;
                done.refused += answer.refused;
            }
            // No longer a member, or the record is gone: never storable.
            Err(Failure::Http {
                status: 403 | 404, ..
            }) => done.refused += n as u64,
            Err(other) => return Err(other.into()),
        }
        views.reported(n);
        save(profile, &views)?;
    }
    if done.refused > 0 {
        tracing::warn!(
            refused = done.refused,
            "the relay refused views of sections this member can no longer read; they leave the queue"
        );
    }
    Ok(done)
}
