//! The first look at a POSTed body, before rmcp sees it: is it JSON, and is
//! it JSON-RPC? rmcp answers both mistakes with a plain-text 415; clients
//! and the JSON-RPC spec expect a JSON error (`-32700` parse error,
//! `-32600` invalid request) with HTTP 400.
//!
//! [`check`] is pure and allocation-light (values are skipped, not built),
//! so it is cheap on the request path and is the fuzz target for bad input.

use serde::Deserialize;
use serde::de::IgnoredAny;

/// JSON-RPC "Parse error".
pub const PARSE_ERROR: i32 = -32700;
/// JSON-RPC "Invalid Request".
pub const INVALID_REQUEST: i32 = -32600;

/// What is wrong with a body.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    /// Not JSON at all.
    #[error("parse error: {0}")]
    NotJson(String),
    /// JSON, but not a JSON-RPC 2.0 message or batch of them.
    #[error("invalid request: {0}")]
    NotJsonRpc(&'static str),
}

impl EnvelopeError {
    /// The JSON-RPC error code.
    pub fn code(&self) -> i32 {
        match self {
            Self::NotJson(_) => PARSE_ERROR,
            Self::NotJsonRpc(_) => INVALID_REQUEST,
        }
    }

    /// The JSON-RPC error response body (id null: we could not read one).
    pub fn to_response_body(&self) -> String {
        serde_json::json!({
            "jsonrpc": "2.0",
            "id": null,
            "error": {"code": self.code(), "message": self.to_string()},
        })
        .to_string()
    }
}

#[derive(Deserialize)]
struct Message<'a> {
    #[serde(borrow)]
    jsonrpc: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    method: Option<MethodName<'a>>,
    #[serde(default)]
    result: Option<IgnoredAny>,
    #[serde(default)]
    error: Option<IgnoredAny>,
}

/// A method must be a string; anything else is recorded as such.
enum MethodName<'a> {
    Text(#[allow(dead_code)] std::borrow::Cow<'a, str>),
    NotText,
}

impl<'de: 'a, 'a> Deserialize<'de> for MethodName<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Any<'b> {
            Text(#[serde(borrow)] std::borrow::Cow<'b, str>),
            Other(IgnoredAny),
        }
        Ok(match Any::deserialize(d)? {
            Any::Text(text) => MethodName::Text(text),
            Any::Other(_) => MethodName::NotText,
        })
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Body<'a> {
    One(#[serde(borrow)] Message<'a>),
    Batch(#[serde(borrow)] Vec<Message<'a>>),
    Other(IgnoredAny),
}

/// Checks that `body` is a JSON-RPC 2.0 message (or a non-empty batch).
pub fn check(body: &[u8]) -> Result<(), EnvelopeError> {
    let parsed: Body<'_> = match serde_json::from_slice(body) {
        Ok(parsed) => parsed,
        Err(err) if err.is_data() => {
            return Err(EnvelopeError::NotJsonRpc("not a JSON-RPC message"));
        }
        Err(err) => return Err(EnvelopeError::NotJson(err.to_string())),
    };
    match parsed {
        Body::One(message) => check_message(&message),
        Body::Batch(messages) if messages.is_empty() => {
            Err(EnvelopeError::NotJsonRpc("empty batch"))
        }
        Body::Batch(messages) => messages.iter().try_for_each(check_message),
        Body::Other(_) => Err(EnvelopeError::NotJsonRpc(
            "expected a JSON object or array of objects",
        )),
    }
}

fn check_message(message: &Message<'_>) -> Result<(), EnvelopeError> {
    if message.jsonrpc.as_deref() != Some("2.0") {
        return Err(EnvelopeError::NotJsonRpc("\"jsonrpc\" must be \"2.0\""));
    }
    match (&message.method, &message.result, &message.error) {
        (Some(MethodName::Text(_)), None, None) => Ok(()),
        (Some(MethodName::NotText), _, _) => {
            Err(EnvelopeError::NotJsonRpc("\"method\" must be a string"))
        }
        (None, Some(_), None) | (None, None, Some(_)) => Ok(()),
        _ => Err(EnvelopeError::NotJsonRpc(
            "expected a request, notification or response",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_requests_notifications_responses_and_batches() {
        for body in [
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#,
            r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
            r#"{"jsonrpc":"2.0","id":"a","result":{}}"#,
            r#"{"jsonrpc":"2.0","id":"a","error":{"code":1,"message":"x"}}"#,
            r#"[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","method":"x"}]"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"\u00e9","arguments":{"a":[1,2,{"b":null}]}}}"#,
        ] {
            assert_eq!(check(body.as_bytes()), Ok(()), "{body}");
        }
    }

    #[test]
    fn classifies_bad_bodies() {
        let cases: [(&[u8], i32); 10] = [
            (b"{", PARSE_ERROR),
            (
                b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"x\"",
                PARSE_ERROR,
            ),
            (b"\xff\xfe", PARSE_ERROR),
            (b"", PARSE_ERROR),
            (b"{}", INVALID_REQUEST),
            (b"42", INVALID_REQUEST),
            (b"[]", INVALID_REQUEST),
            (br#"{"jsonrpc":"1.0","id":1,"method":"x"}"#, INVALID_REQUEST),
            (br#"{"jsonrpc":"2.0","id":1,"method":7}"#, INVALID_REQUEST),
            (
                br#"{"jsonrpc":"2.0","id":1,"method":"x","result":1}"#,
                INVALID_REQUEST,
            ),
        ];
        for (body, code) in cases {
            let err = check(body).expect_err("must be rejected");
            assert_eq!(
                err.code(),
                code,
                "{:?}: {err}",
                String::from_utf8_lossy(body)
            );
            let response: serde_json::Value =
                serde_json::from_str(&err.to_response_body()).expect("response is JSON");
            assert_eq!(response["error"]["code"], code);
        }
    }
}
