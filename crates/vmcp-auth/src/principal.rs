//! The verified caller of a request.

use std::sync::Arc;

use serde_json::{Map, Value};

use crate::authz::CallerEntity;

/// Claims whose values name the caller's groups, first match wins.
const GROUP_CLAIMS: &[&str] = &["groups", "roles", "cognito:groups"];

/// A caller whose token was verified.
#[derive(Clone, Debug, PartialEq)]
pub struct Principal {
    /// The token's `sub`.
    pub subject: Arc<str>,
    /// Group names from the first of `groups`, `roles`, `cognito:groups`.
    pub groups: Vec<String>,
    /// Scopes granted (`scope`, space-separated, or `scp`).
    pub scopes: Vec<String>,
    /// Seconds since the epoch at which the token expires, when it says.
    pub expires_at: Option<u64>,
    /// Every claim of the token (for authorization policies).
    pub claims: Map<String, Value>,
    /// This caller as policies see it, built on first use.
    pub(crate) cedar: CallerEntity,
}

impl Principal {
    /// The principal named by verified `claims`; `None` without a usable `sub`.
    pub fn from_claims(claims: Map<String, Value>) -> Option<Self> {
        let subject = claims
            .get("sub")
            .and_then(Value::as_str)
            .filter(|sub| !sub.is_empty())?;
        let groups = GROUP_CLAIMS
            .iter()
            .find_map(|name| claims.get(*name))
            .map(strings)
            .unwrap_or_default();
        let scopes = claims
            .get("scope")
            .or_else(|| claims.get("scp"))
            .map(strings)
            .unwrap_or_default();
        Some(Self {
            subject: Arc::from(subject),
            groups,
            scopes,
            expires_at: claims.get("exp").and_then(Value::as_u64),
            claims,
            cedar: CallerEntity::default(),
        })
    }

    /// The required scopes this principal lacks.
    pub fn missing_scopes<'a>(&self, required: &'a [String]) -> Vec<&'a str> {
        required
            .iter()
            .filter(|scope| !self.scopes.contains(scope))
            .map(String::as_str)
            .collect()
    }
}

/// A claim as a list of strings: an array of strings, or one
/// space-separated string.
fn strings(value: &Value) -> Vec<String> {
    match value {
        Value::String(text) => text.split_whitespace().map(str::to_owned).collect(),
        Value::Array(items) => items
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => unreachable!("test claims are objects"),
        }
    }

    #[test]
    fn groups_and_scopes_are_read_from_either_shape() {
        let p = Principal::from_claims(claims(json!({
            "sub": "u1", "groups": ["eng", 7, "ops"], "scope": "openid  mcp:tools", "exp": 99
        })))
        .expect("has sub");
        assert_eq!(&*p.subject, "u1");
        assert_eq!(p.groups, ["eng", "ops"]);
        assert_eq!(p.scopes, ["openid", "mcp:tools"]);
        assert_eq!(p.expires_at, Some(99));
        let p = Principal::from_claims(claims(json!({
            "sub": "u2", "roles": "admin", "scp": ["a", "b"]
        })))
        .expect("has sub");
        assert_eq!(p.groups, ["admin"]);
        assert_eq!(p.scopes, ["a", "b"]);
        assert_eq!(p.missing_scopes(&["a".into(), "c".into()]), ["c"]);
    }

    #[test]
    fn a_token_without_a_subject_names_nobody() {
        assert!(Principal::from_claims(claims(json!({"iss": "x"}))).is_none());
        assert!(Principal::from_claims(claims(json!({"sub": ""}))).is_none());
        assert!(Principal::from_claims(claims(json!({"sub": 5}))).is_none());
    }
}
