//! How current a copy is, for people (docs/clinical-safety.md H3 and H11):
//! when it last synced, and, when that was through a replica relay (a
//! clinic's edge relay), when that relay last reached the record's home
//! relay. A copy synced through a replica that has not reached the home
//! relay for a while misses whatever was written elsewhere since: it is
//! called stale. I/O-free: the caller passes the times.

/// A replica may lag its home relay by this much (a few replication
/// rounds) before a copy read through it is called stale.
pub const STALE_AFTER_MS: i64 = 60_000;

/// What a copy can be trusted for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Currency {
    /// Never synced with a relay.
    NeverSynced,
    /// Synced at `synced_ms` with the record's home relay, or with a
    /// replica that had reached it shortly before.
    Current { synced_ms: i64 },
    /// Synced at `synced_ms` through a replica relay that last reached the
    /// home relay at `home_reached_ms` (`None`: not since it started):
    /// changes made elsewhere after that are not in this copy.
    Stale {
        synced_ms: i64,
        home_reached_ms: Option<i64>,
    },
}

/// How current a copy is: `synced_ms` is its last sync, `via_replica`
/// whether that sync went through a replica relay, `home_reached_ms` when
/// that replica last reached the home relay.
pub fn currency(
    synced_ms: Option<i64>,
    via_replica: bool,
    home_reached_ms: Option<i64>,
) -> Currency {
    let Some(synced_ms) = synced_ms else {
        return Currency::NeverSynced;
    };
    if !via_replica {
        return Currency::Current { synced_ms };
    }
    match home_reached_ms {
        Some(reached) if synced_ms.saturating_sub(reached) <= STALE_AFTER_MS => {
            Currency::Current { synced_ms }
        }
        home_reached_ms => Currency::Stale {
            synced_ms,
            home_reached_ms,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_synced_with_its_home_relay_is_current() {
        assert_eq!(currency(None, false, None), Currency::NeverSynced);
        assert_eq!(
            currency(Some(5), false, None),
            Currency::Current { synced_ms: 5 }
        );
    }

    #[test]
    fn a_replica_that_reached_home_lately_gives_a_current_copy() {
        let t = 1_000_000;
        assert_eq!(
            currency(Some(t), true, Some(t - STALE_AFTER_MS)),
            Currency::Current { synced_ms: t }
        );
    }

    #[test]
    fn a_replica_cut_off_from_home_gives_a_stale_copy() {
        let t = 1_000_000;
        assert_eq!(
            currency(Some(t), true, Some(t - STALE_AFTER_MS - 1)),
            Currency::Stale {
                synced_ms: t,
                home_reached_ms: Some(t - STALE_AFTER_MS - 1)
            }
        );
        assert_eq!(
            currency(Some(t), true, None),
            Currency::Stale {
                synced_ms: t,
                home_reached_ms: None
            }
        );
    }
}
