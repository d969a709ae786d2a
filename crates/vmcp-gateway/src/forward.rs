//! Sending one downstream request to its backend: the backend's timeout,
//! cancellation both ways, routes back to the client (progress, server
//! requests), `_meta` passed through, and
//! errors that name the backend but never its address.

use std::sync::Arc;
use std::time::Duration;

use rmcp::model::{ClientRequest, ErrorCode, ErrorData, GetExtensions, ServerResult};
use rmcp::service::{
    Peer, PeerRequestOptions, RequestContext, RoleClient, RoleServer, ServiceError,
};
use serde_json::json;

use vmcp_auth::Principal;
use vmcp_auth::authenticator::bearer_token;
use vmcp_auth::token_exchange::ExchangeError;
use vmcp_domain::health::FailureKind;
use vmcp_status::CallOutcome;

use crate::backend::caller_lanes::LanePeer;
use crate::backend::connect::ConnectError;
use crate::backend::credentials::{CallerToken, CallerTokenError, Credentials};
use crate::backend::{Backend, ConnectionState};
use crate::input_rounds::RoundLink;
use crate::routes::{CallRoutes, Caller};
use crate::sessions::session_id;

/// `_meta` keys of a 2026-07-28 request that describe the client's exchange
/// with the gateway, not the call: never forwarded.
const EXCHANGE_META_KEYS: [&str; 4] = [
    "io.modelcontextprotocol/protocolVersion",
    "io.modelcontextprotocol/clientCapabilities",
    "io.modelcontextprotocol/clientInfo",
    "io.modelcontextprotocol/logLevel",
];

/// JSON-RPC code for a backend that did not answer in time (as in the MCP SDKs).
pub const REQUEST_TIMEOUT: ErrorCode = ErrorCode(-32001);

/// Why a forwarded request produced no backend answer.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    /// The backend is not connected.
    #[error("backend {backend} is unavailable: {reason}")]
    Unavailable {
        /// Backend name.
        backend: String,
        /// Sanitized category.
        reason: String,
    },
    /// The backend did not answer within its timeout.
    #[error("backend {backend} did not answer within {}", humanize(*timeout))]
    Timeout {
        /// Backend name.
        backend: String,
        /// The timeout that expired.
        timeout: Duration,
    },
    /// The connection broke while the request was in flight.
    #[error("backend {backend} connection was lost during the request")]
    ConnectionLost {
        /// Backend name.
        backend: String,
    },
    /// The backend's circuit breaker is open: failing fast.
    #[error("backend {backend} is unavailable: circuit breaker open, next attempt in {}", humanize(*retry_in))]
    CircuitOpen {
        /// Backend name.
        backend: String,
        /// Time until a trial call is allowed.
        retry_in: Duration,
    },
    /// The client cancelled the request.
    #[error("request cancelled by the client")]
    Cancelled,
    /// The backend answered with a result of the wrong kind.
    #[error("backend {backend} sent an unexpected response")]
    Unexpected {
        /// Backend name.
        backend: String,
    },
    /// The gateway is shutting down and the drain time ran out before the
    /// backend answered.
    #[error(
        "the gateway is shutting down: the call to backend {backend} did not finish within the drain time"
    )]
    ShuttingDown {
        /// Backend name.
        backend: String,
    },
    /// No token for the backend could be obtained for this caller (token
    /// exchange): neither a backend failure nor a circuit breaker failure.
    #[error("backend {backend} needs a token for you that could not be obtained: {reason}")]
    Credentials {
        /// Backend name.
        backend: String,
        /// Why (never a token, secret or address).
        reason: CallerTokenError,
    },
    /// The backend answered with a JSON-RPC error; it is passed through unchanged.
    #[error("{0}")]
    Backend(ErrorData),
}

fn humanize(d: Duration) -> String {
    if d >= Duration::from_secs(1) && d.subsec_millis() != 0 {
        format!("{:.1}s", d.as_secs_f64())
    } else if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

impl From<ForwardError> for ErrorData {
    fn from(err: ForwardError) -> Self {
        let message = err.to_string();
        let (code, backend, reason) = match &err {
            ForwardError::Backend(data) => return data.clone(),
            ForwardError::Unavailable { backend, .. } => {
                (ErrorCode::INTERNAL_ERROR, backend, "unavailable")
            }
            ForwardError::Timeout { backend, .. } => (REQUEST_TIMEOUT, backend, "timeout"),
            ForwardError::ConnectionLost { backend } => {
                (ErrorCode::INTERNAL_ERROR, backend, "connection_lost")
            }
            ForwardError::Unexpected { backend } => {
                (ErrorCode::INTERNAL_ERROR, backend, "unexpected_response")
            }
            ForwardError::CircuitOpen { backend, .. } => {
                (ErrorCode::INTERNAL_ERROR, backend, "circuit_open")
            }
            ForwardError::ShuttingDown { backend } => {
                (ErrorCode::INTERNAL_ERROR, backend, "shutting_down")
            }
            ForwardError::Credentials { backend, .. } => {
                (ErrorCode::INTERNAL_ERROR, backend, "credentials")
            }
            ForwardError::Cancelled => {
                return ErrorData::new(ErrorCode::INTERNAL_ERROR, message, None);
            }
        };
        ErrorData::new(
            code,
            message,
            Some(json!({"backend": backend, "reason": reason})),
        )
    }
}

impl ForwardError {
    /// The error for a response of the wrong kind from `backend`.
    pub fn unexpected(backend: &Backend) -> Self {
        Self::Unexpected {
            backend: backend.name().to_string(),
        }
    }
}

/// Sends `request` to `backend` on behalf of the downstream request
/// `context`, through the backend's circuit breaker, and records the
/// outcome in the backend's health.
///
/// `rounds` is set for a 2026-07-28 client: what the backend asks it goes
/// there, to be answered in rounds ([`crate::input_rounds`]), and progress
/// follows the client's retries.
pub async fn forward(
    backend: &Backend,
    request: ClientRequest,
    context: &RequestContext<RoleServer>,
    routes: &Arc<CallRoutes>,
    rounds: Option<RoundLink>,
) -> Result<ServerResult, ForwardError> {
    let method = method_name(&request);
    let started = tokio::time::Instant::now();
    let result = forward_checked(backend, request, context, routes, rounds).await;
    if let Some(metrics) = backend.metrics() {
        let outcome = match &result {
            Ok(_) => CallOutcome::Ok,
            Err(ForwardError::Backend(_)) => CallOutcome::Error,
            Err(ForwardError::Timeout { .. }) => CallOutcome::Timeout,
            Err(
                ForwardError::CircuitOpen { .. }
                | ForwardError::Unavailable { .. }
                | ForwardError::Credentials { .. },
            ) => CallOutcome::Rejected,
            Err(_) => CallOutcome::Failure,
        };
        metrics.record_call(backend.name(), method, outcome, started.elapsed());
    }
    result
}

/// The MCP method of a forwarded request (a fixed set: metric labels stay bounded).
fn method_name(request: &ClientRequest) -> &'static str {
    match request {
        ClientRequest::CallToolRequest(_) => "tools/call",
        ClientRequest::GetPromptRequest(_) => "prompts/get",
        ClientRequest::ReadResourceRequest(_) => "resources/read",
        ClientRequest::CompleteRequest(_) => "completion/complete",
        _ => "other",
    }
}

async fn forward_checked(
    backend: &Backend,
    request: ClientRequest,
    context: &RequestContext<RoleServer>,
    routes: &Arc<CallRoutes>,
    rounds: Option<RoundLink>,
) -> Result<ServerResult, ForwardError> {
    // Within `unhealthyGracePeriod` an unhealthy backend is still listed:
    // its calls fail fast instead of waiting on it.
    if backend.peer().is_some() && !backend.is_healthy_enough() {
        return Err(ForwardError::Unavailable {
            backend: backend.name().to_string(),
            reason: backend
                .snapshot()
                .message
                .unwrap_or_else(|| "backend unhealthy".to_string()),
        });
    }
    // Before the circuit breaker: a caller without a usable token is not
    // the backend's failure, and takes no trial call from it.
    let mut request = request;
    let upstream = upstream_for(backend, &mut request, context).await?;
    if backend.peer().is_some()
        && let Err(retry_in) = backend.admit()
    {
        return Err(ForwardError::CircuitOpen {
            backend: backend.name().to_string(),
            retry_in,
        });
    }
    let result = send(backend, upstream, request, context, routes, rounds).await;
    match &result {
        Ok(_) | Err(ForwardError::Backend(_)) => {
            backend.observe(|health| health.call_succeeded());
        }
        Err(ForwardError::Timeout { .. }) => {
            backend.observe(|health| health.call_failed(FailureKind::Timeout));
        }
        Err(ForwardError::ConnectionLost { .. }) => {
            backend.observe(|health| health.call_failed(FailureKind::Unreachable));
        }
        Err(ForwardError::Unexpected { .. }) => {
            backend.observe(|health| health.call_failed(FailureKind::Protocol));
        }
        Err(ForwardError::Cancelled | ForwardError::ShuttingDown { .. }) => {
            backend.observe(|health| {
                health.call_abandoned();
                Default::default()
            });
        }
        Err(
            ForwardError::Unavailable { .. }
            | ForwardError::CircuitOpen { .. }
            | ForwardError::Credentials { .. },
        ) => {}
    }
    result
}

/// The connection a call goes on: the backend's shared one, or under token
/// exchange the caller's own session (see [`crate::backend::caller_lanes`]),
/// with the caller's exchanged token attached to `request`.
struct Upstream {
    peer: Option<Arc<Peer<RoleClient>>>,
    routes_key: Arc<str>,
    /// Keeps a caller's session open until the call is over.
    _lane: Option<LanePeer>,
}

async fn upstream_for(
    backend: &Backend,
    request: &mut ClientRequest,
    context: &RequestContext<RoleServer>,
) -> Result<Upstream, ForwardError> {
    let failed = |reason: CallerTokenError| ForwardError::Credentials {
        backend: backend.name().to_string(),
        reason,
    };
    let exchanger = match backend.credentials() {
        Credentials::Static => {
            return Ok(Upstream {
                peer: backend.peer(),
                routes_key: Arc::clone(backend.name_arc()),
                _lane: None,
            });
        }
        Credentials::Unusable(reason) => {
            return Err(failed(CallerTokenError::Unusable(reason.clone())));
        }
        Credentials::Exchange(exchanger) => exchanger,
    };
    // The shared connection says whether the backend is up: without it, a
    // caller's session would only wait out its connect timeout.
    if backend.peer().is_none() {
        return Ok(Upstream {
            peer: None,
            routes_key: Arc::clone(backend.name_arc()),
            _lane: None,
        });
    }
    let parts = context.extensions.get::<http::request::Parts>();
    let caller = parts.and_then(|parts| parts.extensions.get::<Arc<Principal>>());
    let token = parts
        .and_then(|parts| parts.headers.get(http::header::AUTHORIZATION))
        .and_then(|value| bearer_token(value.as_bytes()).ok());
    let (Some(caller), Some(token)) = (caller, token) else {
        return Err(failed(ExchangeError::NoSubjectToken.into()));
    };
    let exchanged = exchanger
        .for_caller(&caller.subject, token)
        .await
        .map_err(|err| failed(err.into()))?;
    let Some(lanes) = backend.lanes() else {
        // The backend's supervisor has not started yet.
        return Err(ForwardError::Unavailable {
            backend: backend.name().to_string(),
            reason: "not connected yet".into(),
        });
    };
    let lane = lanes
        .for_caller(&caller.subject, &exchanged)
        .await
        .map_err(|err| lane_failed(backend, &err))?;
    request.extensions_mut().insert(CallerToken(exchanged));
    Ok(Upstream {
        peer: Some(Arc::clone(&lane.peer)),
        routes_key: Arc::clone(&lane.routes_key),
        _lane: Some(lane),
    })
}

/// A caller's session could not be opened: refused for this caller (its
/// token), or the backend cannot be reached. Neither is counted against the
/// backend here; its shared connection's health already says whether it is up.
fn lane_failed(backend: &Backend, err: &ConnectError) -> ForwardError {
    tracing::debug!(backend = backend.name(), error = %err, "cannot open a caller's session");
    if err.failure_kind() == FailureKind::Unauthorized {
        return ForwardError::Credentials {
            backend: backend.name().to_string(),
            reason: CallerTokenError::Refused,
        };
    }
    ForwardError::Unavailable {
        backend: backend.name().to_string(),
        reason: err.category(true).to_owned(),
    }
}

async fn send(
    backend: &Backend,
    upstream: Upstream,
    request: ClientRequest,
    context: &RequestContext<RoleServer>,
    routes: &Arc<CallRoutes>,
    rounds: Option<RoundLink>,
) -> Result<ServerResult, ForwardError> {
    let name = backend.name();
    let Some(peer) = upstream.peer else {
        let reason = match backend.state() {
            ConnectionState::Disconnected { reason } => reason,
            _ => "not connected yet".to_string(),
        };
        return Err(ForwardError::Unavailable {
            backend: name.to_string(),
            reason,
        });
    };
    // Pass the client's `_meta` through, but not its progress token: rmcp
    // gives the upstream request its own, which we map back below. Nor what
    // describes the client's own exchange with the gateway under 2026-07-28
    // (version, capabilities, identity, log level): the gateway's connection
    // to the backend speaks for itself.
    let mut meta = context.meta.clone();
    let downstream_token = meta.get_progress_token();
    let wants_progress = downstream_token.is_some();
    // A call in rounds may get a progress token on a later exchange.
    let in_rounds = rounds.is_some();
    meta.0.0.remove("progressToken");
    meta.0
        .0
        .retain(|key, _| !EXCHANGE_META_KEYS.contains(&key.as_str()));
    let options = PeerRequestOptions::no_options().with_meta(meta);
    let timeout = backend.call_timeout();
    // One deadline covers queueing the request and waiting for the answer.
    let deadline = tokio::time::Instant::now() + timeout;
    let timed_out = || ForwardError::Timeout {
        backend: name.to_string(),
        timeout,
    };
    let mut handle = tokio::select! {
        sent = tokio::time::timeout_at(deadline, peer.send_request_with_option(request, options)) => match sent {
            Ok(sent) => sent.map_err(|err| classify(backend, err))?,
            Err(_) => return Err(timed_out()),
        },
        _ = context.ct.cancelled() => return Err(ForwardError::Cancelled),
    };
    // Until the answer, what the backend sends for this request (progress,
    // sampling, elicitation, roots) goes to this client.
    let _route = routes.register(
        upstream.routes_key,
        handle.id.clone(),
        Caller {
            peer: context.peer.clone(),
            request_id: context.id.clone(),
            session: session_id(&context.extensions),
            // Decoded only for a call in rounds: session calls never pay for it.
            request_capabilities: in_rounds
                .then(|| context.meta.client_capabilities())
                .flatten(),
            rounds,
        },
        (wants_progress || in_rounds).then(|| (handle.progress_token.clone(), downstream_token)),
    );
    enum Outcome {
        Answered(
            Box<Result<Result<ServerResult, ServiceError>, tokio::sync::oneshot::error::RecvError>>,
        ),
        TimedOut,
        Cancelled,
    }
    let outcome = tokio::select! {
        answer = tokio::time::timeout_at(deadline, &mut handle.rx) => match answer {
            Ok(answer) => Outcome::Answered(Box::new(answer)),
            Err(_) => Outcome::TimedOut,
        },
        _ = context.ct.cancelled() => Outcome::Cancelled,
    };
    if wants_progress && matches!(outcome, Outcome::Answered(_)) {
        // rmcp hands progress to spawned tasks but the answer straight to us:
        // let already-queued progress go out before the answer does.
        for _ in 0..4 {
            tokio::task::yield_now().await;
        }
    }
    match outcome {
        Outcome::Answered(answer) => match *answer {
            Ok(Ok(result)) => Ok(result),
            Ok(Err(err)) => Err(classify(backend, err)),
            Err(_) => {
                // The client service dropped the request: its connection ended.
                backend.report_transport_failure();
                Err(ForwardError::ConnectionLost {
                    backend: name.to_string(),
                })
            }
        },
        Outcome::TimedOut => {
            cancel_upstream(handle, "timed out at the gateway");
            Err(timed_out())
        }
        Outcome::Cancelled => {
            cancel_upstream(handle, "cancelled by the client");
            Err(ForwardError::Cancelled)
        }
    }
}

/// Tells the backend to stop working on a request, without making the
/// caller wait: a hung backend may not even accept the notification.
fn cancel_upstream(
    handle: rmcp::service::RequestHandle<rmcp::service::RoleClient>,
    reason: &'static str,
) {
    tokio::spawn(async move {
        let _ = handle.cancel(Some(reason.to_string())).await;
    });
}

fn classify(backend: &Backend, err: ServiceError) -> ForwardError {
    let name = backend.name().to_string();
    match err {
        ServiceError::McpError(data) => ForwardError::Backend(data),
        ServiceError::Timeout { timeout } => ForwardError::Timeout {
            backend: name,
            timeout,
        },
        ServiceError::Cancelled { .. } => ForwardError::Cancelled,
        ServiceError::TransportSend(_) | ServiceError::TransportClosed => {
            tracing::warn!(backend = %name, error = %err, "request to backend failed at the transport");
            backend.report_transport_failure();
            ForwardError::ConnectionLost { backend: name }
        }
        other => {
            tracing::warn!(backend = %name, error = %other, "unexpected answer from backend");
            ForwardError::Unexpected { backend: name }
        }
    }
}
