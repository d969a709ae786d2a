//! Opaque tokens, judged by the issuer's RFC 7662 introspection answer,
//! and a bounded cache of the active ones (keyed by the token's SHA-256,
//! never the token itself), so a session's requests do not each cost a
//! round trip.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::jwt::{CLOCK_SKEW_SECONDS, Expectations};
use crate::principal::Principal;
use crate::rejection::Rejection;

/// Longest time an introspection answer is reused.
pub const MAX_CACHE_AGE: Duration = Duration::from_secs(60);
/// Most answers cached at once.
pub const MAX_CACHED: usize = 10_000;

/// The caller an introspection `answer` names, checked like a JWT's claims
/// (`active`, `iss` when given, `aud` required, `exp`/`nbf`); `now` in
/// seconds since the epoch.
pub fn judge(answer: Value, expect: &Expectations, now: u64) -> Result<Principal, Rejection> {
    let Value::Object(claims) = answer else {
        return Err(Rejection::ProviderUnavailable);
    };
    if claims.get("active") != Some(&Value::Bool(true)) {
        return Err(Rejection::Inactive);
    }
    if let Some(iss) = claims.get("iss")
        && iss.as_str() != Some(expect.issuer.as_str())
    {
        return Err(Rejection::Issuer);
    }
    if !audience_matches(&claims, &expect.audiences) {
        return Err(Rejection::Audience);
    }
    let time = |name: &str| claims.get(name).and_then(Value::as_u64);
    if time("exp").is_some_and(|exp| exp.saturating_add(CLOCK_SKEW_SECONDS) < now) {
        return Err(Rejection::Expired);
    }
    if time("nbf").is_some_and(|nbf| nbf > now.saturating_add(CLOCK_SKEW_SECONDS)) {
        return Err(Rejection::NotYetValid);
    }
    Principal::from_claims(claims).ok_or(Rejection::MissingClaim)
}

fn audience_matches(claims: &Map<String, Value>, accepted: &[String]) -> bool {
    let accepts = |value: &Value| {
        value
            .as_str()
            .is_some_and(|aud| accepted.iter().any(|a| a == aud))
    };
    match claims.get("aud") {
        Some(Value::Array(items)) => items.iter().any(accepts),
        Some(value) => accepts(value),
        None => false,
    }
}

/// Active introspection answers, for at most [`MAX_CACHE_AGE`] and never
/// past the token's `exp`.
#[derive(Default)]
pub struct Cache {
    entries: Mutex<HashMap<[u8; 32], (Principal, Instant)>>,
}

impl Cache {
    /// The cached caller of `token`, when still fresh.
    pub fn get(&self, token: &str) -> Option<Principal> {
        let key = digest(token);
        let mut entries = self.lock();
        match entries.get(&key) {
            Some((principal, until)) if *until > Instant::now() => Some(principal.clone()),
            Some(_) => {
                entries.remove(&key);
                None
            }
            None => None,
        }
    }

    /// Remembers an active `token`; `now` in seconds since the epoch.
    pub fn put(&self, token: &str, principal: &Principal, now: u64) {
        let left = principal.expires_at.map_or(MAX_CACHE_AGE, |exp| {
            Duration::from_secs(exp.saturating_sub(now))
        });
        let until = Instant::now() + left.min(MAX_CACHE_AGE);
        let mut entries = self.lock();
        if entries.len() >= MAX_CACHED {
            let now = Instant::now();
            entries.retain(|_, (_, until)| *until > now);
            if entries.len() >= MAX_CACHED {
                entries.clear();
            }
        }
        entries.insert(digest(token), (principal.clone(), until));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], (Principal, Instant)>> {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn expect() -> Expectations {
        Expectations {
            issuer: "https://idp.example/realms/x".into(),
            audiences: vec!["vmcp".into(), "https://gw.example/mcp".into()],
        }
    }

    #[test]
    fn answers_are_judged_like_claims() {
        let now = 1_000_000;
        let good = json!({"active": true, "sub": "u", "aud": ["other", "vmcp"], "exp": now + 60,
                          "iss": "https://idp.example/realms/x", "scope": "a b"});
        let principal = judge(good.clone(), &expect(), now).expect("active token");
        assert_eq!(principal.scopes, ["a", "b"]);
        let with = |patch: Value| {
            let mut answer = good.clone();
            for (key, value) in patch.as_object().expect("patch").clone() {
                answer[key] = value;
            }
            judge(answer, &expect(), now)
        };
        assert_eq!(with(json!({"active": false})), Err(Rejection::Inactive));
        assert_eq!(with(json!({"active": "true"})), Err(Rejection::Inactive));
        assert_eq!(with(json!({"iss": "https://evil"})), Err(Rejection::Issuer));
        assert_eq!(
            with(json!({"aud": "someone-else"})),
            Err(Rejection::Audience)
        );
        assert_eq!(
            with(json!({"aud": "https://gw.example/mcp"})).map(|_| ()),
            Ok(())
        );
        assert_eq!(with(json!({"exp": now - 31})), Err(Rejection::Expired));
        assert_eq!(with(json!({"nbf": now + 31})), Err(Rejection::NotYetValid));
        assert_eq!(with(json!({"sub": null})), Err(Rejection::MissingClaim));
        let mut no_aud = good.clone();
        no_aud.as_object_mut().expect("object").remove("aud");
        assert_eq!(judge(no_aud, &expect(), now), Err(Rejection::Audience));
    }

    #[test]
    fn the_cache_keeps_no_answer_past_the_token_expiry() {
        let cache = Cache::default();
        let now = 1_000_000;
        let alive = Principal::from_claims(
            json!({"sub": "u", "exp": now + 600})
                .as_object()
                .expect("object")
                .clone(),
        )
        .expect("sub");
        let expiring = Principal::from_claims(
            json!({"sub": "v", "exp": now})
                .as_object()
                .expect("object")
                .clone(),
        )
        .expect("sub");
        cache.put("token-a", &alive, now);
        cache.put("token-b", &expiring, now);
        assert_eq!(cache.get("token-a").map(|p| p.subject), Some("u".into()));
        assert_eq!(cache.get("token-b"), None);
        assert_eq!(cache.get("token-c"), None);
    }
}
