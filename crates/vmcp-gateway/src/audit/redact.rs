//! Secrets out, size bounded: what of a request's or result's JSON may go
//! into an audit event.
//!
//! The rule: a value is replaced by [`REDACTED`] when its key, lowercased
//! and without `-` and `_`, contains one of [`SECRET_KEY_PARTS`] or is one
//! of [`SECRET_KEYS`]; or when the value itself is a string that looks like
//! a credential: a `Bearer`/`Basic` authorization value, or a JWT (three
//! base64url segments, the first starting with `eyJ`). Redaction reaches
//! into nested objects and arrays. A false positive costs an audit reader
//! one value; a false negative would put a secret into a log file, so the
//! rule errs on the side of redacting.

use serde_json::{Map, Value};

/// What a redacted value is replaced with.
pub const REDACTED: &str = "[REDACTED]";

/// Key fragments that mark a secret (after lowercasing and removing `-`, `_`).
pub const SECRET_KEY_PARTS: &[&str] = &[
    "token",
    "secret",
    "passw",
    "authorization",
    "apikey",
    "credential",
    "cookie",
    "privatekey",
    "bearer",
    "signature",
];

/// Whole keys that mark a secret (after the same normalisation).
pub const SECRET_KEYS: &[&str] = &["auth", "key", "pwd", "pass", "otp", "pin", "sessionid"];

/// Whether a JSON object key names a secret.
pub fn is_secret_key(key: &str) -> bool {
    let normalised: String = key
        .chars()
        .filter(|c| *c != '-' && *c != '_')
        .flat_map(char::to_lowercase)
        .collect();
    SECRET_KEYS.contains(&normalised.as_str())
        || SECRET_KEY_PARTS
            .iter()
            .any(|part| normalised.contains(part))
}

/// Whether a string value is itself a credential, whatever its key.
pub fn is_secret_value(value: &str) -> bool {
    let trimmed = value.trim();
    let lower = trimmed.get(..7).map(str::to_ascii_lowercase);
    if matches!(lower.as_deref(), Some("bearer "))
        || trimmed
            .get(..6)
            .is_some_and(|p| p.eq_ignore_ascii_case("basic "))
    {
        return true;
    }
    looks_like_jwt(trimmed)
}

fn looks_like_jwt(text: &str) -> bool {
    let segments: Vec<&str> = text.split('.').collect();
    segments.len() == 3
        && segments[0].starts_with("eyJ")
        && segments.iter().all(|segment| {
            !segment.is_empty()
                && segment
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'=')
        })
}

/// `value` with every secret replaced by [`REDACTED`].
pub fn redact(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(redact_map(map)),
        Value::Array(items) => Value::Array(items.into_iter().map(redact).collect()),
        Value::String(text) if is_secret_value(&text) => Value::String(REDACTED.into()),
        other => other,
    }
}

fn redact_map(map: Map<String, Value>) -> Map<String, Value> {
    map.into_iter()
        .map(|(key, value)| {
            let value = if is_secret_key(&key) && !value.is_null() {
                Value::String(REDACTED.into())
            } else {
                redact(value)
            };
            (key, value)
        })
        .collect()
}

/// Redacted data cut to a size.
#[derive(Clone, Debug, PartialEq)]
pub enum Capped {
    /// The whole (redacted) value: its JSON text fits.
    Whole(Value),
    /// Its JSON text did not fit: the first bytes of it (cut at a character
    /// boundary) and the full size in bytes.
    Cut {
        /// The beginning of the JSON text.
        preview: String,
        /// Bytes of the whole JSON text.
        size: usize,
    },
}

/// `value` redacted, then kept whole when its JSON text has at most
/// `max_bytes` bytes, else cut to a preview of at most `max_bytes` bytes.
pub fn capped(value: Value, max_bytes: usize) -> Capped {
    let value = redact(value);
    let text = value.to_string();
    if text.len() <= max_bytes {
        return Capped::Whole(value);
    }
    let mut end = max_bytes;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    Capped::Cut {
        preview: text[..end].to_string(),
        size: text.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn secret_keys_are_recognised_by_rule() {
        let cases = [
            ("token", true),
            ("access_token", true),
            ("refreshToken", true),
            ("Authorization", true),
            ("X-API-Key", true),
            ("api_key", true),
            ("client-secret", true),
            ("password", true),
            ("db_passwd", true),
            ("key", true),
            ("auth", true),
            ("session_id", true),
            ("aws_credentials", true),
            ("Set-Cookie", true),
            ("private_key", true),
            ("query", false),
            ("author", false),
            ("keyword", false),
            ("monkey_count", false),
            ("path", false),
            ("message", false),
        ];
        for (key, want) in cases {
            assert_eq!(is_secret_key(key), want, "{key}");
        }
    }

    #[test]
    fn credential_shaped_values_are_recognised_whatever_the_key() {
        let cases = [
            ("Bearer abc.def", true),
            ("bearer xyz", true),
            ("Basic dXNlcjpwYXNz", true),
            ("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl", true),
            ("hello world", false),
            ("a.b.c", false),
            ("eyJ.only-two", false),
            ("Bear with me", false),
            ("", false),
        ];
        for (value, want) in cases {
            assert_eq!(is_secret_value(value), want, "{value}");
        }
    }

    #[test]
    fn redaction_reaches_nested_values_and_keeps_the_rest() {
        let input = json!({
            "query": "weather",
            "apiKey": "k-123",
            "nested": {"password": "hunter2", "list": [{"token": 5}, "Bearer s3cr3t", "ok"]},
            "note": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig",
            "secret": null,
        });
        let want = json!({
            "query": "weather",
            "apiKey": REDACTED,
            "nested": {"password": REDACTED, "list": [{"token": REDACTED}, REDACTED, "ok"]},
            "note": REDACTED,
            "secret": null,
        });
        assert_eq!(redact(input), want);
    }

    #[test]
    fn data_is_cut_at_the_limit_on_a_character_boundary_after_redaction() {
        let small = json!({"q": "hi"});
        assert_eq!(capped(small.clone(), 64), Capped::Whole(small));

        let text = "é".repeat(50);
        let big = json!({ "q": text, "password": "x".repeat(500) });
        let Capped::Cut { preview, size } = capped(big, 21) else {
            panic!("expected a cut value");
        };
        assert!(preview.len() <= 21, "{preview}");
        assert!(preview.starts_with("{\"q\":\"é"), "{preview}");
        assert!(!preview.contains("xxx"));
        // The size is that of the redacted text, so it says nothing of the secret.
        let redacted_len = json!({ "q": "é".repeat(50), "password": REDACTED })
            .to_string()
            .len();
        assert_eq!(size, redacted_len);
    }
}
