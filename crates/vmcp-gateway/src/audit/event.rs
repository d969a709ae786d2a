//! Audit events: what was observed about one MCP operation, and the event
//! written for it. Pure: time and the event's id are passed in.
//!
//! The event has the shape of ToolHive's audit events (`metadata.auditId`,
//! `type`, `loggedAt`, `source`, `outcome`, `subjects`, `component`,
//! `target`, `data`), plus `reason` for every outcome but `success`, and
//! `target.backend`. Outcomes: `success`; `denied` (a policy refused);
//! `failure` (the request itself could not be served: unknown name, invalid
//! parameters, cancelled by the client); `error` (the gateway or the
//! backend's connection failed: timeout, unavailable, circuit open, …);
//! `application_error` (the backend answered with a JSON-RPC error, or a
//! tool result with `isError`). Reasons are fixed words, never error text,
//! which could carry internal addresses.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use rmcp::model::ErrorCode;
use serde::Serialize;
use serde_json::{Map, Value};
use vmcp_config::AuditEventType;

use crate::audit::redact::{Capped, capped};

/// How an operation ended, in ToolHive's words.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Served.
    Success,
    /// Refused by an authorization policy.
    Denied,
    /// The request could not be served as asked (the client's side).
    Failure,
    /// The gateway or a backend connection failed.
    Error,
    /// The backend answered with an error.
    ApplicationError,
}

/// Why an operation did not succeed: a fixed vocabulary.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// An authorization policy denied it.
    Policy,
    /// No token for the backend could be obtained for the caller (token exchange).
    Credentials,
    /// Invalid parameters, or a tool or prompt name that is not listed.
    InvalidParams,
    /// The resource is not known.
    NotFound,
    /// The method is not served.
    MethodNotFound,
    /// The request is not valid here (e.g. no session).
    InvalidRequest,
    /// The client cancelled it.
    Cancelled,
    /// The backend did not answer within its timeout.
    Timeout,
    /// The backend is not connected or not healthy.
    Unavailable,
    /// The backend's circuit breaker is open.
    CircuitOpen,
    /// The backend's connection broke during the request.
    ConnectionLost,
    /// The backend answered with a result of the wrong kind.
    UnexpectedResponse,
    /// The gateway was shutting down.
    ShuttingDown,
    /// The backend answered with a JSON-RPC error.
    BackendError,
    /// The tool ran and reported an error (`isError`).
    ToolError,
    /// Any other gateway error.
    Internal,
}

impl Reason {
    /// The outcome this reason belongs to.
    fn outcome(self) -> Outcome {
        match self {
            Self::Policy | Self::Credentials => Outcome::Denied,
            Self::InvalidParams
            | Self::NotFound
            | Self::MethodNotFound
            | Self::InvalidRequest
            | Self::Cancelled => Outcome::Failure,
            Self::BackendError | Self::ToolError => Outcome::ApplicationError,
            Self::Timeout
            | Self::Unavailable
            | Self::CircuitOpen
            | Self::ConnectionLost
            | Self::UnexpectedResponse
            | Self::ShuttingDown
            | Self::Internal => Outcome::Error,
        }
    }

    /// The reason of a gateway-made JSON-RPC error nothing more is known of.
    fn of_code(code: ErrorCode) -> Self {
        match code {
            ErrorCode::INVALID_PARAMS => Self::InvalidParams,
            ErrorCode::RESOURCE_NOT_FOUND => Self::NotFound,
            ErrorCode::METHOD_NOT_FOUND => Self::MethodNotFound,
            ErrorCode::INVALID_REQUEST => Self::InvalidRequest,
            _ => Self::Internal,
        }
    }
}

/// How the handler's call ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Finished {
    /// A result; `tool_error` when it is a tool result with `isError: true`.
    Ok {
        /// The tool reported an error in its result.
        tool_error: bool,
    },
    /// A JSON-RPC error with this code.
    Err(ErrorCode),
}

/// The outcome and reason of an operation: what the handler noted by type
/// first (`noted`), then what the result says.
pub fn classify(
    finished: Finished,
    noted: Option<Reason>,
    detect_application_errors: bool,
) -> (Outcome, Option<Reason>) {
    let reason = match finished {
        Finished::Ok { tool_error: true } => Some(Reason::ToolError),
        Finished::Ok { tool_error: false } => None,
        Finished::Err(code) => Some(noted.unwrap_or_else(|| Reason::of_code(code))),
    };
    match reason {
        None => (Outcome::Success, None),
        Some(reason)
            if reason.outcome() == Outcome::ApplicationError && !detect_application_errors =>
        {
            (Outcome::Success, None)
        }
        Some(reason) => (reason.outcome(), Some(reason)),
    }
}

/// Who made a request.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Caller {
    /// The verified token's `sub`; `None`: anonymous.
    pub subject: Option<Arc<str>>,
    /// A display name from the token (`preferred_username`, else `name`).
    pub user: Option<String>,
    /// The client's name from its `initialize`.
    pub client_name: Option<String>,
    /// The client's version from its `initialize`.
    pub client_version: Option<String>,
    /// The client's IP address.
    pub address: Option<IpAddr>,
}

/// What an operation was about.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Target {
    /// `tool`, `prompt`, `resource` or `server` (lists, initialize).
    pub kind: &'static str,
    /// The tool or prompt name as the client named it.
    pub name: Option<String>,
    /// The resource URI.
    pub uri: Option<String>,
}

/// Everything observed about one operation, before the settings shape it
/// into an event.
#[derive(Clone, Debug, PartialEq)]
pub struct Observation {
    /// The event type.
    pub kind: AuditEventType,
    /// The MCP method.
    pub method: &'static str,
    /// Who asked.
    pub caller: Caller,
    /// What for.
    pub target: Target,
    /// The backend that served it, when one did (or was chosen).
    pub backend: Option<Arc<str>>,
    /// How the handler's call ended.
    pub finished: Finished,
    /// Why it failed, as the handler noted by type.
    pub noted: Option<Reason>,
    /// How long the handler took.
    pub duration: Duration,
    /// The request's parameters (only when `includeRequestData`).
    pub request: Option<Value>,
    /// The result (only when `includeResponseData`).
    pub response: Option<Value>,
}

/// The settings that shape an event.
#[derive(Clone, Debug, PartialEq)]
pub struct EventSettings {
    /// `component` of every event.
    pub component: Arc<str>,
    /// Whether application errors are told apart from successes.
    pub detect_application_errors: bool,
    /// Most bytes of request data and of response data.
    pub max_data_size: usize,
}

/// One audit log line.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditEvent {
    /// The event's id and extra facts.
    pub metadata: Metadata,
    /// The event type (`mcp_tool_call`, …).
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// When the operation ended.
    pub logged_at: jiff::Timestamp,
    /// Where the request came from.
    pub source: Source,
    /// How it ended.
    pub outcome: Outcome,
    /// Why it did not succeed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<Reason>,
    /// Who asked: `user_id` (the token's `sub`), `user` (a display name, or
    /// `anonymous`), `client_name`, `client_version`.
    pub subjects: BTreeMap<&'static str, String>,
    /// The configured component name.
    pub component: Arc<str>,
    /// What for: `type`, `method`, `name` or `uri`, `backend`.
    pub target: BTreeMap<&'static str, String>,
    /// Request and response data, when configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<Map<String, Value>>,
}

/// An event's id and extra facts.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Metadata {
    /// A random UUID.
    pub audit_id: String,
    /// `duration_ms`: how long the operation took.
    pub extra: BTreeMap<&'static str, u64>,
}

/// Where a request came from.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Source {
    /// `network` (with the client's IP address) or `local` (unknown).
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The client's IP address.
    pub value: String,
}

/// The event for `observation`, logged `at`, with id `audit_id`.
pub fn build_event(
    observation: Observation,
    settings: &EventSettings,
    at: jiff::Timestamp,
    audit_id: String,
) -> AuditEvent {
    let (outcome, reason) = classify(
        observation.finished,
        observation.noted,
        settings.detect_application_errors,
    );
    let caller = observation.caller;
    let mut subjects = BTreeMap::new();
    subjects.insert(
        "user",
        caller
            .user
            .or_else(|| caller.subject.as_deref().map(str::to_string))
            .unwrap_or_else(|| "anonymous".to_string()),
    );
    if let Some(subject) = caller.subject {
        subjects.insert("user_id", subject.to_string());
    }
    if let Some(name) = caller.client_name {
        subjects.insert("client_name", name);
    }
    if let Some(version) = caller.client_version {
        subjects.insert("client_version", version);
    }
    let source = match caller.address {
        Some(address) => Source {
            kind: "network",
            value: address.to_string(),
        },
        None => Source {
            kind: "local",
            value: String::new(),
        },
    };
    let mut target = BTreeMap::new();
    target.insert("type", observation.target.kind.to_string());
    target.insert("method", observation.method.to_string());
    if let Some(name) = observation.target.name {
        target.insert("name", name);
    }
    if let Some(uri) = observation.target.uri {
        target.insert("uri", uri);
    }
    if let Some(backend) = observation.backend {
        target.insert("backend", backend.to_string());
    }
    let mut data = Map::new();
    for (key, value) in [
        ("request", observation.request),
        ("response", observation.response),
    ] {
        if let Some(value) = value {
            put_capped(&mut data, key, value, settings.max_data_size);
        }
    }
    let duration_ms = u64::try_from(observation.duration.as_millis()).unwrap_or(u64::MAX);
    AuditEvent {
        metadata: Metadata {
            audit_id,
            extra: BTreeMap::from([("duration_ms", duration_ms)]),
        },
        kind: observation.kind.as_str(),
        logged_at: at,
        source,
        outcome,
        reason,
        subjects,
        component: Arc::clone(&settings.component),
        target,
        data: (!data.is_empty()).then_some(data),
    }
}

/// `data[key]`: the value whole, or its beginning as text with
/// `<key>Truncated: true` and `<key>Bytes`.
fn put_capped(data: &mut Map<String, Value>, key: &str, value: Value, max: usize) {
    match capped(value, max) {
        Capped::Whole(value) => {
            data.insert(key.to_string(), value);
        }
        Capped::Cut { preview, size } => {
            data.insert(key.to_string(), Value::String(preview));
            data.insert(format!("{key}Truncated"), Value::Bool(true));
            data.insert(format!("{key}Bytes"), Value::from(size));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn settings() -> EventSettings {
        EventSettings {
            component: Arc::from("vmcp-server"),
            detect_application_errors: true,
            max_data_size: 64,
        }
    }

    fn observation() -> Observation {
        Observation {
            kind: AuditEventType::McpToolCall,
            method: "tools/call",
            caller: Caller {
                subject: Some(Arc::from("user-123")),
                user: Some("alice".into()),
                client_name: Some("mcp".into()),
                client_version: Some("1.0".into()),
                address: Some("127.0.0.1".parse().expect("ip")),
            },
            target: Target {
                kind: "tool",
                name: Some("everything_echo".into()),
                uri: None,
            },
            backend: Some(Arc::from("everything")),
            finished: Finished::Ok { tool_error: false },
            noted: None,
            duration: Duration::from_millis(12),
            request: None,
            response: None,
        }
    }

    #[test]
    fn outcomes_follow_the_noted_type_first_then_the_result() {
        use Finished::{Err, Ok};
        let cases = [
            (
                Ok { tool_error: false },
                None,
                true,
                (Outcome::Success, None),
            ),
            (
                Ok { tool_error: true },
                None,
                true,
                (Outcome::ApplicationError, Some(Reason::ToolError)),
            ),
            (
                Ok { tool_error: true },
                None,
                false,
                (Outcome::Success, None),
            ),
            // -32001 is both the gateway's "denied" and "timeout" code: only
            // the noted type tells them apart.
            (
                Err(ErrorCode(-32001)),
                Some(Reason::Policy),
                true,
                (Outcome::Denied, Some(Reason::Policy)),
            ),
            (
                Err(ErrorCode(-32001)),
                Some(Reason::Timeout),
                true,
                (Outcome::Error, Some(Reason::Timeout)),
            ),
            // A backend's own error code is not taken for the gateway's.
            (
                Err(ErrorCode::INVALID_PARAMS),
                Some(Reason::BackendError),
                true,
                (Outcome::ApplicationError, Some(Reason::BackendError)),
            ),
            (
                Err(ErrorCode::INVALID_PARAMS),
                None,
                true,
                (Outcome::Failure, Some(Reason::InvalidParams)),
            ),
            (
                Err(ErrorCode::RESOURCE_NOT_FOUND),
                None,
                true,
                (Outcome::Failure, Some(Reason::NotFound)),
            ),
            (
                Err(ErrorCode::INTERNAL_ERROR),
                None,
                true,
                (Outcome::Error, Some(Reason::Internal)),
            ),
            (
                Err(ErrorCode::INTERNAL_ERROR),
                Some(Reason::Cancelled),
                true,
                (Outcome::Failure, Some(Reason::Cancelled)),
            ),
        ];
        for (finished, noted, detect, want) in cases {
            assert_eq!(
                classify(finished, noted, detect),
                want,
                "{finished:?} {noted:?} {detect}"
            );
        }
    }

    #[test]
    fn an_event_has_the_reference_shape() {
        let at: jiff::Timestamp = "2026-12-04T18:00:00Z".parse().expect("time");
        let event = build_event(observation(), &settings(), at, "id-1".into());
        let json = serde_json::to_value(&event).expect("serializable");
        assert_eq!(
            json,
            json!({
                "metadata": {"auditId": "id-1", "extra": {"duration_ms": 12}},
                "type": "mcp_tool_call",
                "loggedAt": "2026-12-04T18:00:00Z",
                "source": {"type": "network", "value": "127.0.0.1"},
                "outcome": "success",
                "subjects": {
                    "user": "alice",
                    "user_id": "user-123",
                    "client_name": "mcp",
                    "client_version": "1.0"
                },
                "component": "vmcp-server",
                "target": {
                    "type": "tool",
                    "method": "tools/call",
                    "name": "everything_echo",
                    "backend": "everything"
                }
            })
        );
    }

    #[test]
    fn an_anonymous_denied_call_names_its_reason_and_no_data_unless_given() {
        let mut seen = observation();
        seen.caller = Caller::default();
        seen.finished = Finished::Err(ErrorCode(-32001));
        seen.noted = Some(Reason::Policy);
        let at = jiff::Timestamp::UNIX_EPOCH;
        let json = serde_json::to_value(build_event(seen, &settings(), at, "x".into()))
            .expect("serializable");
        assert_eq!(json["outcome"], "denied");
        assert_eq!(json["reason"], "policy");
        assert_eq!(json["subjects"], json!({"user": "anonymous"}));
        assert_eq!(json["source"], json!({"type": "local", "value": ""}));
        assert!(json.get("data").is_none());
    }

    #[test]
    fn data_is_redacted_and_capped() {
        let mut seen = observation();
        seen.request =
            Some(json!({"name": "echo", "arguments": {"message": "hi", "api_key": "k"}}));
        seen.response = Some(json!({"content": [{"type": "text", "text": "x".repeat(200)}]}));
        let at = jiff::Timestamp::UNIX_EPOCH;
        let settings = EventSettings {
            max_data_size: 100,
            ..settings()
        };
        let json = serde_json::to_value(build_event(seen, &settings, at, "x".into()))
            .expect("serializable");
        let data = &json["data"];
        assert_eq!(
            data["request"],
            json!({"name": "echo", "arguments": {"message": "hi", "api_key": "[REDACTED]"}})
        );
        assert_eq!(data["responseTruncated"], true);
        assert!(data["response"].as_str().expect("preview").len() <= 100);
        assert!(data["responseBytes"].as_u64().expect("size") > 200);
        assert!(data.get("requestTruncated").is_none());
    }
}
