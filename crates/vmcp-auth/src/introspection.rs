//! Opaque tokens, judged by the issuer's RFC 7662 introspection answer
//! (accepted ones are kept in [`crate::verified_cache`] like verified JWTs).

use serde_json::{Map, Value};

use crate::jwt::{CLOCK_SKEW_SECONDS, Expectations};
use crate::principal::Principal;
use crate::rejection::Rejection;

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
}
