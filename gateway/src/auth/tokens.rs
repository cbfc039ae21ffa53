//! [`AccessTokens`]: the live access tokens. A token is 32 random bytes,
//! base64url; only its SHA-256 is kept, with the client, the granted scopes
//! and the expiry (five minutes). Expired tokens are dropped on every call.

use std::collections::HashMap;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::digest::{digest, SHA256};
use ring::rand::{SecureRandom, SystemRandom};

use super::scopes::Scopes;

/// How long an access token lives, in milliseconds.
pub(crate) const TOKEN_LIFETIME_MS: i64 = 5 * 60 * 1000;

/// Most live tokens kept; past this, issuing fails until some expire.
const MAX_TOKENS: usize = 100_000;

/// What a live token grants.
#[derive(Debug, Clone)]
pub(crate) struct TokenRecord {
    pub client_id: String,
    pub scopes: Scopes,
    pub expires_ms: i64,
}

/// Live access tokens by SHA-256 of the token.
#[derive(Debug, Default)]
pub(crate) struct AccessTokens(HashMap<[u8; 32], TokenRecord>);

/// Why no token was issued.
#[derive(Debug)]
pub(crate) enum IssueError {
    /// The system random generator failed.
    Random,
    /// Too many live tokens.
    Full,
}

impl AccessTokens {
    /// A new token for `client_id` with `scopes`, expiring `lifetime_ms`
    /// (normally [`TOKEN_LIFETIME_MS`]) after `now_ms`.
    pub fn issue(
        &mut self,
        rng: &SystemRandom,
        client_id: &str,
        scopes: Scopes,
        now_ms: i64,
        lifetime_ms: i64,
    ) -> Result<String, IssueError> {
        self.drop_expired(now_ms);
        if self.0.len() >= MAX_TOKENS {
            return Err(IssueError::Full);
        }
        let mut bytes = [0u8; 32];
        rng.fill(&mut bytes).map_err(|_| IssueError::Random)?;
        let token = URL_SAFE_NO_PAD.encode(bytes);
        self.0.insert(
            hash(&token),
            TokenRecord {
                client_id: client_id.to_owned(),
                scopes,
                expires_ms: now_ms + lifetime_ms,
            },
        );
        Ok(token)
    }

    /// What `token` grants at `now_ms`, if it is live.
    pub fn lookup(&mut self, token: &str, now_ms: i64) -> Option<TokenRecord> {
        self.drop_expired(now_ms);
        self.0.get(&hash(token)).cloned()
    }

    fn drop_expired(&mut self, now_ms: i64) {
        self.0.retain(|_, record| record.expires_ms > now_ms);
    }

    /// How many are live.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.0.len()
    }
}

/// SHA-256 of a token.
fn hash(token: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest(&SHA256, token.as_bytes()).as_ref());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expired_tokens_are_dropped_and_only_hashes_are_kept() {
        let rng = SystemRandom::new();
        let mut tokens = AccessTokens::default();
        let first = tokens
            .issue(&rng, "gp", Scopes::default(), 0, TOKEN_LIFETIME_MS)
            .unwrap();
        tokens
            .issue(&rng, "gp", Scopes::default(), 200_000, TOKEN_LIFETIME_MS)
            .unwrap();
        assert_eq!(tokens.len(), 2);
        assert!(tokens.lookup(&first, TOKEN_LIFETIME_MS).is_none());
        assert_eq!(tokens.len(), 1, "the first token expired and was dropped");
        assert!(!format!("{tokens:?}").contains(&first));
    }
}
