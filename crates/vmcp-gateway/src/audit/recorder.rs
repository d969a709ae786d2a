//! The MCP handler's side of the audit log: [`Recorder::begin`] when a
//! request arrives, [`Pending::finish`] with its result. Neither does I/O
//! or waits: the observation is queued for the writer ([`super::sink`]),
//! or dropped and counted when the queue is full.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::ConnectInfo;
use prometheus_client::metrics::counter::Counter;
use rmcp::model::{
    CallToolResponse, ClientConfig, CompleteResult, ErrorData, Extensions, GetPromptResponse,
    ListPromptsResult, ListResourceTemplatesResult, ListResourcesResult, ListToolsResult,
    ReadResourceResponse,
};
use serde_json::Value;
use tokio::sync::mpsc;
use vmcp_config::{AuditConfig, AuditEventType};

use crate::audit::event::{Caller, Finished, Observation, Target};
use crate::audit::note::RequestNote;
use crate::server::authorization::caller;

/// Token claims tried, in order, for a caller's display name.
const DISPLAY_NAME_CLAIMS: &[&str] = &["preferred_username", "name"];

/// Records audit observations; cheap to clone. [`Recorder::disabled`]
/// records nothing.
#[derive(Clone, Debug)]
pub struct Recorder {
    inner: Option<Arc<Inner>>,
}

#[derive(Debug)]
struct Inner {
    config: AuditConfig,
    sender: mpsc::Sender<Observation>,
    dropped: Counter,
}

impl Default for Recorder {
    fn default() -> Self {
        Self::disabled()
    }
}

impl Recorder {
    /// A recorder that records nothing (audit off).
    pub fn disabled() -> Self {
        Self { inner: None }
    }

    pub(crate) fn new(
        config: &AuditConfig,
        sender: mpsc::Sender<Observation>,
        dropped: Counter,
    ) -> Self {
        Self {
            inner: Some(Arc::new(Inner {
                config: config.clone(),
                sender,
                dropped,
            })),
        }
    }

    /// Starts the observation of a request of `kind` (`method`) about
    /// `target`. Puts a [`RequestNote`] into `extensions` for the handler's
    /// findings. `params` is called only when request data is configured.
    pub fn begin(
        &self,
        kind: AuditEventType,
        method: &'static str,
        target: Target,
        extensions: &mut Extensions,
        client: Option<Arc<ClientConfig>>,
        params: impl FnOnce() -> Option<Value>,
    ) -> Pending {
        let Some(inner) = self.inner.as_ref().filter(|i| i.config.audits(kind)) else {
            return Pending { started: None };
        };
        let note = Arc::new(RequestNote::default());
        extensions.insert(Arc::clone(&note));
        let request = inner.config.include_request_data.then(params).flatten();
        Pending {
            started: Some(Started {
                inner: Arc::clone(inner),
                at: Instant::now(),
                kind,
                method,
                target,
                caller: caller_of(extensions, client),
                note,
                request,
            }),
        }
    }

    /// Records an operation that has no result of its own (a notification
    /// such as `notifications/initialized`) as a success.
    pub fn record_notification(
        &self,
        kind: AuditEventType,
        method: &'static str,
        extensions: &Extensions,
        client: Option<Arc<ClientConfig>>,
    ) {
        let Some(inner) = self.inner.as_ref().filter(|i| i.config.audits(kind)) else {
            return;
        };
        inner.queue(Observation {
            kind,
            method,
            caller: caller_of(extensions, client),
            target: Target {
                kind: "server",
                ..Target::default()
            },
            backend: None,
            finished: Finished::Ok { tool_error: false },
            noted: None,
            duration: std::time::Duration::ZERO,
            request: None,
            response: None,
        });
    }
}

impl Inner {
    fn queue(&self, observation: Observation) {
        // Full or closed: never wait, count it.
        if self.sender.try_send(observation).is_err() {
            self.dropped.inc();
        }
    }
}

/// An observation under way; [`Pending::finish`] completes and queues it.
#[must_use = "finish it with the request's result"]
pub struct Pending {
    started: Option<Started>,
}

struct Started {
    inner: Arc<Inner>,
    at: Instant,
    kind: AuditEventType,
    method: &'static str,
    target: Target,
    caller: Caller,
    note: Arc<RequestNote>,
    request: Option<Value>,
}

impl Pending {
    /// Completes the observation with the handler's `result` and queues it.
    pub fn finish<T: AuditedResult>(self, result: &Result<T, ErrorData>) {
        let Some(started) = self.started else { return };
        let finished = match result {
            Ok(value) => Finished::Ok {
                tool_error: value.tool_error(),
            },
            Err(err) => Finished::Err(err.code),
        };
        let response = match result {
            Ok(value) if started.inner.config.include_response_data => value.data(),
            _ => None,
        };
        started.inner.queue(Observation {
            kind: started.kind,
            method: started.method,
            caller: started.caller,
            target: started.target,
            backend: started.note.backend().cloned(),
            finished,
            noted: started.note.failure(),
            duration: started.at.elapsed(),
            request: started.request,
            response,
        });
    }
}

/// Who sent the request whose context holds `extensions`; `client` is
/// what the client said of itself at `initialize`.
fn caller_of(extensions: &Extensions, client: Option<Arc<ClientConfig>>) -> Caller {
    let principal = caller(extensions);
    let user = principal.as_ref().and_then(|p| {
        DISPLAY_NAME_CLAIMS
            .iter()
            .find_map(|claim| p.claims.get(*claim).and_then(Value::as_str))
            .map(str::to_string)
    });
    let client = client.map(|info| info.client_info.clone());
    let address = extensions
        .get::<http::request::Parts>()
        .and_then(|parts| parts.extensions.get::<ConnectInfo<SocketAddr>>())
        .map(|ConnectInfo(address)| address.ip());
    Caller {
        subject: principal.map(|p| Arc::clone(&p.subject)),
        user,
        client_name: client.as_ref().map(|c| c.name.clone()),
        client_version: client.map(|c| c.version),
        address,
    }
}

/// A handler result as audit data.
pub trait AuditedResult {
    /// Whether it is a tool result with `isError: true`.
    fn tool_error(&self) -> bool {
        false
    }
    /// The result as JSON (for `includeResponseData`).
    fn data(&self) -> Option<Value>;
}

impl AuditedResult for () {
    fn data(&self) -> Option<Value> {
        None
    }
}

impl AuditedResult for CallToolResponse {
    fn tool_error(&self) -> bool {
        matches!(self, Self::Complete(result) if result.is_error == Some(true))
    }
    fn data(&self) -> Option<Value> {
        match self {
            Self::Complete(result) => serde_json::to_value(result).ok(),
            Self::InputRequired(result) => serde_json::to_value(result).ok(),
            Self::Task(result) => serde_json::to_value(result).ok(),
            _ => None,
        }
    }
}

impl AuditedResult for GetPromptResponse {
    fn data(&self) -> Option<Value> {
        match self {
            Self::Complete(result) => serde_json::to_value(result).ok(),
            Self::InputRequired(result) => serde_json::to_value(result).ok(),
            _ => None,
        }
    }
}

impl AuditedResult for ReadResourceResponse {
    fn data(&self) -> Option<Value> {
        match self {
            Self::Complete(result) => serde_json::to_value(result).ok(),
            Self::InputRequired(result) => serde_json::to_value(result).ok(),
            _ => None,
        }
    }
}

macro_rules! audited_as_json {
    ($($result:ty),* $(,)?) => {
        $(impl AuditedResult for $result {
            fn data(&self) -> Option<Value> {
                serde_json::to_value(self).ok()
            }
        })*
    };
}

audited_as_json!(
    CompleteResult,
    ListToolsResult,
    ListPromptsResult,
    ListResourcesResult,
    ListResourceTemplatesResult,
);

#[cfg(test)]
mod tests {
    use super::*;
    use rmcp::model::ErrorCode;
    use serde_json::json;
    use vmcp_auth::Principal;

    use crate::audit::event::Reason;
    use crate::audit::note;

    fn config() -> AuditConfig {
        AuditConfig {
            include_request_data: true,
            exclude_event_types: vec![AuditEventType::McpToolsList],
            ..AuditConfig::default()
        }
    }

    /// Extensions as rmcp passes them: the HTTP request's parts, with the
    /// verified caller and the client's address.
    fn request_extensions() -> Extensions {
        let (mut parts, ()) = http::Request::new(()).into_parts();
        let claims = json!({"sub": "user-1", "preferred_username": "alice"});
        let Value::Object(claims) = claims else {
            unreachable!("an object")
        };
        let principal = Principal::from_claims(claims).expect("has sub");
        parts.extensions.insert(Arc::new(principal));
        let address: SocketAddr = "10.1.2.3:5555".parse().expect("address");
        parts.extensions.insert(ConnectInfo(address));
        let mut extensions = Extensions::default();
        extensions.insert(parts);
        extensions
    }

    fn tool_target() -> Target {
        Target {
            kind: "tool",
            name: Some("a_echo".into()),
            uri: None,
        }
    }

    #[test]
    fn a_denied_call_is_observed_with_its_caller_backend_and_reason() {
        let (sender, mut receiver) = mpsc::channel(8);
        let recorder = Recorder::new(&config(), sender, Counter::default());
        let mut extensions = request_extensions();
        let pending = recorder.begin(
            AuditEventType::McpToolCall,
            "tools/call",
            tool_target(),
            &mut extensions,
            None,
            || Some(json!({"message": "hi"})),
        );
        // What the authorization check does when a policy refuses.
        note::denied(&extensions, "a");
        pending.finish::<CallToolResponse>(&Err(ErrorData::new(ErrorCode(-32001), "no", None)));
        let seen = receiver.try_recv().expect("queued");
        assert_eq!(seen.kind, AuditEventType::McpToolCall);
        assert_eq!(seen.caller.subject.as_deref(), Some("user-1"));
        assert_eq!(seen.caller.user.as_deref(), Some("alice"));
        assert_eq!(seen.caller.address, Some("10.1.2.3".parse().expect("ip")));
        assert_eq!(seen.backend.as_deref(), Some("a"));
        assert_eq!(seen.noted, Some(Reason::Policy));
        assert_eq!(seen.finished, Finished::Err(ErrorCode(-32001)));
        assert_eq!(seen.request, Some(json!({"message": "hi"})));
        assert_eq!(seen.response, None, "response data is not configured");
    }

    #[test]
    fn excluded_types_and_a_disabled_recorder_record_nothing() {
        let (sender, mut receiver) = mpsc::channel(8);
        let recorder = Recorder::new(&config(), sender, Counter::default());
        let mut extensions = Extensions::default();
        let pending = recorder.begin(
            AuditEventType::McpToolsList,
            "tools/list",
            Target::default(),
            &mut extensions,
            None,
            || panic!("request data is not read for an excluded type"),
        );
        pending.finish(&Ok(ListToolsResult::with_all_items(Vec::new())));
        assert!(receiver.try_recv().is_err());
        assert!(note::of(&extensions).is_none(), "no note for the handler");

        let mut extensions = Extensions::default();
        Recorder::disabled()
            .begin(
                AuditEventType::McpToolCall,
                "tools/call",
                tool_target(),
                &mut extensions,
                None,
                || panic!("not read when audit is off"),
            )
            .finish::<()>(&Ok(()));
        assert!(note::of(&extensions).is_none());
    }

    #[test]
    fn a_full_queue_drops_and_counts_without_waiting() {
        let (sender, mut receiver) = mpsc::channel(1);
        let dropped = Counter::default();
        let recorder = Recorder::new(&AuditConfig::default(), sender, dropped.clone());
        for _ in 0..3 {
            recorder.record_notification(
                AuditEventType::McpInitialize,
                "notifications/initialized",
                &Extensions::default(),
                None,
            );
        }
        assert_eq!(dropped.get(), 2);
        let first = receiver.try_recv().expect("one queued");
        assert_eq!(first.caller, Caller::default(), "anonymous, no address");
        assert!(receiver.try_recv().is_err());
    }
}
