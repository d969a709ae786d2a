//! The first look at a POSTed body, before rmcp sees it. rmcp answers
//! every body it cannot deserialize with a plain-text 415; clients and the
//! JSON-RPC spec expect a JSON error with HTTP 400: `-32700` (not JSON),
//! `-32600` (not a JSON-RPC message we take: batches, ids that are not a
//! string or an integer, missing or mistyped fields), `-32602` (a known
//! method whose params do not fit it).
//!
//! [`check`] is pure and allocation-light (values are skipped, not built),
//! so it is cheap on the request path and is the fuzz target for bad input.
//! [`screen`] adds the typed parse rmcp will do, so that *no* body reaches
//! rmcp that it would refuse: whatever rmcp would answer with 415 gets a
//! JSON-RPC error here. Both are linear in the body's size.

use std::borrow::Cow;

use rmcp::model::{ClientJsonRpcMessage, ClientRequest, RequestId};
use serde::Deserialize;
use serde::de::{IgnoredAny, MapAccess, SeqAccess, Visitor};

/// JSON-RPC "Parse error".
pub const PARSE_ERROR: i32 = -32700;
/// JSON-RPC "Invalid Request".
pub const INVALID_REQUEST: i32 = -32600;
/// JSON-RPC "Invalid params".
pub const INVALID_PARAMS: i32 = -32602;

/// Longest detail (a parser message) quoted back to the client.
const MAX_DETAIL: usize = 200;

/// What is wrong with a body.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    /// Not JSON at all.
    #[error("parse error: {0}")]
    NotJson(String),
    /// JSON, but not a JSON-RPC 2.0 message the gateway takes.
    #[error("invalid request: {0}")]
    NotJsonRpc(&'static str),
    /// A JSON-RPC message whose params do not fit its method.
    #[error("invalid params: {message}")]
    InvalidParams {
        /// The request's id, when it has one.
        id: Option<RequestId>,
        /// What did not fit (bounded in length).
        message: String,
    },
}

impl EnvelopeError {
    /// The JSON-RPC error code.
    pub fn code(&self) -> i32 {
        match self {
            Self::NotJson(_) => PARSE_ERROR,
            Self::NotJsonRpc(_) => INVALID_REQUEST,
            Self::InvalidParams { .. } => INVALID_PARAMS,
        }
    }

    /// The JSON-RPC error response body (id null when none could be read).
    pub fn to_response_body(&self) -> String {
        let id = match self {
            Self::InvalidParams { id: Some(id), .. } => id.clone().into_json_value(),
            _ => serde_json::Value::Null,
        };
        serde_json::json!({
            "jsonrpc": "2.0",
            "id": id,
            "error": {"code": self.code(), "message": self.to_string()},
        })
        .to_string()
    }
}

/// What the gateway needs to know about a body that passed [`screen`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Screened {
    /// The body is an `initialize` request (it opens a session), with its id.
    pub initialize: Option<RequestId>,
}

#[derive(Deserialize)]
struct Message<'a> {
    #[serde(borrow)]
    jsonrpc: Option<Cow<'a, str>>,
    #[serde(default, deserialize_with = "present")]
    id: Option<Id>,
    #[serde(borrow, default)]
    method: Option<MethodName<'a>>,
    #[serde(default)]
    result: Option<IgnoredAny>,
    #[serde(default)]
    error: Option<IgnoredAny>,
}

/// A field that is present, even as `null` (plain `Option` reads `null`
/// as absent).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Id>, D::Error> {
    Id::deserialize(d).map(Some)
}

/// A message id as JSON-RPC allows it here: a string or an integer (rmcp's
/// `RequestId`; floats that are whole numbers count, as rmcp reads them).
#[derive(Debug, PartialEq, Eq)]
enum Id {
    Valid,
    Invalid,
}

impl<'de> Deserialize<'de> for Id {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct IdVisitor;
        impl<'de> Visitor<'de> for IdVisitor {
            type Value = Id;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON-RPC id")
            }
            fn visit_str<E>(self, _: &str) -> Result<Id, E> {
                Ok(Id::Valid)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Id, E> {
                Ok(Id::Valid)
            }
            fn visit_u64<E>(self, n: u64) -> Result<Id, E> {
                Ok(if i64::try_from(n).is_ok() {
                    Id::Valid
                } else {
                    Id::Invalid
                })
            }
            fn visit_f64<E>(self, f: f64) -> Result<Id, E> {
                const MAX_EXACT: f64 = 9_007_199_254_740_992.0; // 2^53
                Ok(if f.fract() == 0.0 && f.abs() < MAX_EXACT {
                    Id::Valid
                } else {
                    Id::Invalid
                })
            }
            fn visit_bool<E>(self, _: bool) -> Result<Id, E> {
                Ok(Id::Invalid)
            }
            fn visit_unit<E>(self) -> Result<Id, E> {
                Ok(Id::Invalid)
            }
            fn visit_none<E>(self) -> Result<Id, E> {
                Ok(Id::Invalid)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Id, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Id::Invalid)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Id, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Id::Invalid)
            }
        }
        d.deserialize_any(IdVisitor)
    }
}

/// A method must be a string; anything else is recorded as such.
enum MethodName<'a> {
    Text(#[allow(dead_code)] Cow<'a, str>),
    NotText,
}

impl<'de: 'a, 'a> Deserialize<'de> for MethodName<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Any<'b> {
            Text(#[serde(borrow)] Cow<'b, str>),
            Other(IgnoredAny),
        }
        Ok(match Any::deserialize(d)? {
            Any::Text(text) => MethodName::Text(text),
            Any::Other(_) => MethodName::NotText,
        })
    }
}

/// The top level of a body, read without buffering it.
enum Body<'a> {
    One(Message<'a>),
    Batch,
    Other,
}

impl<'de: 'a, 'a> Deserialize<'de> for Body<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct BodyVisitor<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for BodyVisitor<'a> {
            type Value = Body<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON-RPC message")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Body<'a>, A::Error> {
                Message::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(Body::One)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Body<'a>, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Body::Batch)
            }
            fn visit_bool<E>(self, _: bool) -> Result<Body<'a>, E> {
                Ok(Body::Other)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Body<'a>, E> {
                Ok(Body::Other)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Body<'a>, E> {
                Ok(Body::Other)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Body<'a>, E> {
                Ok(Body::Other)
            }
            fn visit_str<E>(self, _: &str) -> Result<Body<'a>, E> {
                Ok(Body::Other)
            }
            fn visit_unit<E>(self) -> Result<Body<'a>, E> {
                Ok(Body::Other)
            }
        }
        d.deserialize_any(BodyVisitor(std::marker::PhantomData))
    }
}

/// Checks that `body` is one JSON-RPC 2.0 message of a shape the gateway
/// takes: a request (string method, string or integer id), a notification
/// (no id) or a response (result or error, with an id). Batches are
/// refused: MCP dropped them in 2025-06-18 and rmcp does not read them.
pub fn check(body: &[u8]) -> Result<(), EnvelopeError> {
    let parsed: Body<'_> = match serde_json::from_slice(body) {
        Ok(parsed) => parsed,
        Err(err) if err.is_data() => {
            return Err(EnvelopeError::NotJsonRpc("not a JSON-RPC message"));
        }
        Err(err) => return Err(EnvelopeError::NotJson(bounded(err.to_string()))),
    };
    match parsed {
        Body::One(message) => check_message(&message),
        Body::Batch => Err(EnvelopeError::NotJsonRpc(
            "batches are not supported: send one JSON-RPC message per request",
        )),
        Body::Other => Err(EnvelopeError::NotJsonRpc(
            "expected a JSON object (one JSON-RPC message)",
        )),
    }
}

/// Client request methods rmcp parses into typed params; one that lands in
/// `CustomRequest` had params that did not fit.
const TYPED_METHODS: &[&str] = &[
    "initialize",
    "ping",
    "completion/complete",
    "logging/setLevel",
    "prompts/get",
    "prompts/list",
    "resources/list",
    "resources/templates/list",
    "resources/read",
    "resources/subscribe",
    "resources/unsubscribe",
    "tools/call",
    "tools/list",
];

/// [`check`], then the typed parse rmcp does: a body that passes is one
/// rmcp accepts. Also tells whether the body opens a session.
pub fn screen(body: &[u8]) -> Result<Screened, EnvelopeError> {
    check(body)?;
    match serde_json::from_slice::<ClientJsonRpcMessage>(body) {
        Ok(ClientJsonRpcMessage::Request(request)) => match &request.request {
            // rmcp files a standard method whose params do not fit it under
            // "custom" and answers it with method-not-found: it is invalid params.
            ClientRequest::CustomRequest(custom)
                if TYPED_METHODS.contains(&custom.method.as_str()) =>
            {
                Err(EnvelopeError::InvalidParams {
                    id: Some(request.id),
                    message: format!("params do not fit {}", custom.method),
                })
            }
            ClientRequest::InitializeRequest(_) => Ok(Screened {
                initialize: Some(request.id),
            }),
            _ => Ok(Screened { initialize: None }),
        },
        Ok(_) => Ok(Screened { initialize: None }),
        Err(err) => Err(EnvelopeError::InvalidParams {
            id: request_id(body),
            message: bounded(err.to_string()),
        }),
    }
}

/// The id of a body that passed [`check`] (for the error response).
fn request_id(body: &[u8]) -> Option<RequestId> {
    #[derive(Deserialize)]
    struct WithId {
        id: Option<RequestId>,
    }
    serde_json::from_slice::<WithId>(body).ok()?.id
}

fn bounded(mut detail: String) -> String {
    if detail.len() > MAX_DETAIL {
        let mut cut = MAX_DETAIL;
        while !detail.is_char_boundary(cut) {
            cut -= 1;
        }
        detail.truncate(cut);
        detail.push('…');
    }
    detail
}

fn check_message(message: &Message<'_>) -> Result<(), EnvelopeError> {
    if message.jsonrpc.as_deref() != Some("2.0") {
        return Err(EnvelopeError::NotJsonRpc("\"jsonrpc\" must be \"2.0\""));
    }
    if message.id == Some(Id::Invalid) {
        return Err(EnvelopeError::NotJsonRpc(
            "\"id\" must be a string or an integer",
        ));
    }
    match (&message.method, &message.result, &message.error) {
        (Some(MethodName::Text(_)), None, None) => Ok(()),
        (Some(MethodName::NotText), _, _) => {
            Err(EnvelopeError::NotJsonRpc("\"method\" must be a string"))
        }
        (None, Some(_), None) | (None, None, Some(_)) if message.id.is_some() => Ok(()),
        (None, Some(_), None) | (None, None, Some(_)) => {
            Err(EnvelopeError::NotJsonRpc("a response needs an \"id\""))
        }
        _ => Err(EnvelopeError::NotJsonRpc(
            "expected a request, notification or response",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_requests_notifications_and_responses() {
        for body in [
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#,
            r#"{"jsonrpc":"2.0","id":"a","method":"ping"}"#,
            r#"{"jsonrpc":"2.0","id":-7,"method":"ping"}"#,
            r#"{"jsonrpc":"2.0","id":3.0,"method":"ping"}"#,
            r#"{"jsonrpc":"2.0","id":9223372036854775807,"method":"ping"}"#,
            r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
            r#"{"jsonrpc":"2.0","id":"a","result":{}}"#,
            r#"{"jsonrpc":"2.0","id":"a","error":{"code":1,"message":"x"}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"\u00e9","arguments":{"a":[1,2,{"b":null}]}}}"#,
            r#"{"jsonrpc":"2.0","id":2,"method":"no/such/method","params":{"any":"thing"}}"#,
        ] {
            assert_eq!(check(body.as_bytes()), Ok(()), "{body}");
            assert!(screen(body.as_bytes()).is_ok(), "{body}");
        }
    }

    #[test]
    fn classifies_bad_bodies() {
        let cases: &[(&[u8], i32)] = &[
            (b"{", PARSE_ERROR),
            (
                b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"x\"",
                PARSE_ERROR,
            ),
            (b"\xff\xfe", PARSE_ERROR),
            (b"", PARSE_ERROR),
            (b"{}", INVALID_REQUEST),
            (b"42", INVALID_REQUEST),
            (b"\"text\"", INVALID_REQUEST),
            (b"null", INVALID_REQUEST),
            (b"[]", INVALID_REQUEST),
            // Batches: MCP has none since 2025-06-18, rmcp reads none.
            (
                br#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#,
                INVALID_REQUEST,
            ),
            (
                br#"[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","method":"x"}]"#,
                INVALID_REQUEST,
            ),
            // Ids: a string or an integer, nothing else.
            (
                br#"{"jsonrpc":"2.0","id":null,"method":"ping"}"#,
                INVALID_REQUEST,
            ),
            (
                br#"{"jsonrpc":"2.0","id":{},"method":"ping"}"#,
                INVALID_REQUEST,
            ),
            (
                br#"{"jsonrpc":"2.0","id":[1],"method":"ping"}"#,
                INVALID_REQUEST,
            ),
            (
                br#"{"jsonrpc":"2.0","id":true,"method":"ping"}"#,
                INVALID_REQUEST,
            ),
            (
                br#"{"jsonrpc":"2.0","id":1.5,"method":"ping"}"#,
                INVALID_REQUEST,
            ),
            (
                br#"{"jsonrpc":"2.0","id":18446744073709551615,"method":"ping"}"#,
                INVALID_REQUEST,
            ),
            (
                br#"{"jsonrpc":"2.0","id":null,"result":{}}"#,
                INVALID_REQUEST,
            ),
            (br#"{"jsonrpc":"2.0","result":{}}"#, INVALID_REQUEST),
            (br#"{"jsonrpc":"1.0","id":1,"method":"x"}"#, INVALID_REQUEST),
            (br#"{"jsonrpc":2,"id":1,"method":"x"}"#, INVALID_REQUEST),
            (br#"{"id":1,"method":"x"}"#, INVALID_REQUEST),
            (br#"{"jsonrpc":"2.0","id":1,"method":7}"#, INVALID_REQUEST),
            (
                br#"{"jsonrpc":"2.0","id":1,"method":"x","result":1}"#,
                INVALID_REQUEST,
            ),
        ];
        for &(body, code) in cases {
            let err = screen(body).expect_err("must be rejected");
            assert_eq!(
                err.code(),
                code,
                "{:?}: {err}",
                String::from_utf8_lossy(body)
            );
            assert_eq!(check(body).map_err(|e| e.code()), Err(code));
            let response: serde_json::Value =
                serde_json::from_str(&err.to_response_body()).expect("response is JSON");
            assert_eq!(response["error"]["code"], code);
            assert_eq!(response["jsonrpc"], "2.0");
        }
    }

    #[test]
    fn known_methods_with_params_that_do_not_fit_are_invalid_params_with_their_id() {
        let cases: &[(&[u8], serde_json::Value)] = &[
            (
                br#"{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"arguments":{}}}"#,
                serde_json::json!(4),
            ),
            (
                br#"{"jsonrpc":"2.0","id":"r","method":"resources/read","params":{"uri":5}}"#,
                serde_json::json!("r"),
            ),
            (
                br#"{"jsonrpc":"2.0","method":"notifications/progress","params":7}"#,
                serde_json::Value::Null,
            ),
        ];
        for (body, id) in cases {
            assert_eq!(check(body), Ok(()), "the envelope itself is fine");
            let err = screen(body).expect_err("rmcp would refuse it");
            assert_eq!(err.code(), INVALID_PARAMS, "{err}");
            let response: serde_json::Value =
                serde_json::from_str(&err.to_response_body()).expect("response is JSON");
            assert_eq!(&response["id"], id);
        }
    }

    #[test]
    fn an_initialize_request_is_recognised() {
        let init = br#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#;
        assert_eq!(
            screen(init).expect("valid").initialize,
            Some(RequestId::Number(1))
        );
        let ping = br#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
        assert_eq!(screen(ping).expect("valid").initialize, None);
    }

    #[test]
    fn details_quoted_back_are_bounded() {
        let long = format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{{"uri":["{}"]}}}}"#,
            "x".repeat(100_000)
        );
        let err = screen(long.as_bytes()).expect_err("uri must be a string");
        assert!(err.to_response_body().len() < 1000, "{err}");
    }
}
