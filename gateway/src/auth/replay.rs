//! [`SeenJtis`]: the assertion ids (`jti`) already used, per client, each
//! kept until its assertion's `exp` and dropped after, so memory stays
//! bounded by the assertions of the last five minutes.

use std::collections::HashMap;

/// Most `jti`s remembered at once; past this, new assertions are refused
/// until old ones expire (a client flooding the endpoint cannot grow memory).
const MAX_SEEN: usize = 100_000;

/// Used `jti`s: (client id, jti) → the assertion's `exp` in milliseconds.
#[derive(Debug, Default)]
pub(crate) struct SeenJtis(HashMap<(String, String), i64>);

/// Why a `jti` was not taken.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    /// Already used by this client.
    Replayed,
    /// Too many live `jti`s to remember another.
    Full,
}

impl SeenJtis {
    /// Records a first use of `jti` by `client_id`, valid until `exp_ms`;
    /// drops the expired ones first.
    pub fn take(
        &mut self,
        client_id: &str,
        jti: &str,
        exp_ms: i64,
        now_ms: i64,
    ) -> Result<(), Refused> {
        self.0.retain(|_, exp| *exp > now_ms);
        let key = (client_id.to_owned(), jti.to_owned());
        if self.0.contains_key(&key) {
            return Err(Refused::Replayed);
        }
        if self.0.len() >= MAX_SEEN {
            return Err(Refused::Full);
        }
        self.0.insert(key, exp_ms);
        Ok(())
    }

    /// How many are remembered.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.0.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_jti_from_another_client_is_not_a_replay() {
        let mut seen = SeenJtis::default();
        seen.take("a", "j1", 2_000, 1_000).unwrap();
        seen.take("b", "j1", 2_000, 1_000).unwrap();
        assert_eq!(seen.take("a", "j1", 2_000, 1_500), Err(Refused::Replayed));
    }

    #[test]
    fn expired_jtis_are_dropped() {
        let mut seen = SeenJtis::default();
        seen.take("a", "j1", 2_000, 1_000).unwrap();
        seen.take("a", "j2", 5_000, 1_000).unwrap();
        seen.take("a", "j3", 5_000, 2_000).unwrap();
        assert_eq!(seen.len(), 2, "j1 expired at 2000 and is gone");
    }
}
