//! Callers whose tokens were already verified, so a session's requests do
//! not each pay for a signature check or an introspection round trip.
//!
//! Entries are keyed by the SHA-256 of the token (the token itself is never
//! kept), live at most [`MAX_AGE`] and never past the token's `exp`, and
//! there are at most [`MAX_ENTRIES`] of them. Only accepted tokens are kept:
//! a refused token is checked again each time.

use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::bounded_cache::BoundedCache;
use crate::principal::Principal;

/// Longest time a verification is reused. Keys the issuer withdraws and
/// tokens it revokes stop working after at most this long.
pub const MAX_AGE: Duration = Duration::from_secs(60);
/// Most callers kept at once.
pub const MAX_ENTRIES: usize = 10_000;

/// Verified tokens and their callers.
pub struct VerifiedTokens(BoundedCache<[u8; 32], Arc<Principal>>);

impl Default for VerifiedTokens {
    fn default() -> Self {
        Self(BoundedCache::new(MAX_ENTRIES))
    }
}

impl VerifiedTokens {
    /// The caller of `token`, when it was verified recently enough.
    pub fn get(&self, token: &str) -> Option<Arc<Principal>> {
        self.0.get(&digest(token))
    }

    /// Remembers that `token` names `principal`; `now` in seconds since the
    /// epoch. A token that expires within the second is not kept.
    pub fn put(&self, token: &str, principal: &Arc<Principal>, now: u64) {
        let left = principal
            .expires_at
            .map_or(MAX_AGE, |exp| Duration::from_secs(exp.saturating_sub(now)));
        if left.is_zero() {
            return;
        }
        self.0.put(
            digest(token),
            Arc::clone(principal),
            Instant::now() + left.min(MAX_AGE),
        );
    }

    /// How many callers are kept (expired ones included until evicted).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether nothing is kept.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn principal(sub: &str, exp: u64) -> Arc<Principal> {
        let claims = json!({"sub": sub, "exp": exp});
        Arc::new(Principal::from_claims(claims.as_object().expect("object").clone()).expect("sub"))
    }

    #[test]
    fn nothing_is_kept_past_the_token_expiry() {
        let cache = VerifiedTokens::default();
        let now = 1_000_000;
        cache.put("token-a", &principal("u", now + 600), now);
        cache.put("token-b", &principal("v", now), now);
        assert_eq!(
            cache.get("token-a").map(|p| p.subject.clone()),
            Some("u".into())
        );
        assert!(cache.get("token-b").is_none(), "expires now: never kept");
        assert!(cache.get("token-c").is_none());
        assert_eq!(cache.len(), 1);
    }
}
