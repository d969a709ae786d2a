//! The HTTP surface: `/mcp` (Streamable HTTP), `/health`, `/readyz`,
//! `/status`, `/metrics`, and under OIDC the protected resource metadata
//! (see [`super::auth`]).

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use vmcp_auth::challenge::METADATA_PATH;
use vmcp_config::StatusAccess;

use super::auth::{self, IncomingAuth, OperationalAccess};
use super::envelope;
use super::handler::GatewayHandler;
use super::origin::{OriginPolicy, screen_origin};
use super::request_body::body_read_failed;
use super::session_delete::session_delete_status;
use super::session_limits::{self, LimitedSessionManager, SessionLimits};
use crate::audit::Recorder;
use crate::gateway::Gateway;

/// `Host` names always accepted: the loopback ones.
pub const LOOPBACK_HOSTS: &[&str] = &["localhost", "127.0.0.1", "::1", "[::1]"];

/// Settings of the HTTP surface.
#[derive(Clone, Debug)]
pub struct HttpOptions {
    /// Extra accepted `Host` names (`*` accepts any).
    pub allowed_hosts: Vec<String>,
    /// Largest accepted request body.
    pub max_request_bytes: usize,
    /// Browser origins accepted besides those of the accepted hosts (`*` = any).
    pub allowed_origins: Vec<String>,
    /// Cancelled to close every MCP session (at the end of a graceful shutdown).
    pub sessions_cancel: CancellationToken,
    /// Served at `/metrics` when set.
    pub metrics: Option<vmcp_status::Metrics>,
    /// Client authentication (`incomingAuth.type: oidc`); `None`: anonymous.
    pub incoming_auth: Option<Arc<IncomingAuth>>,
    /// Who may read `/status` and `/metrics` under authentication.
    pub status_access: OperationalAccess,
    /// Records each MCP operation in the audit log (disabled by default).
    pub audit: Recorder,
}

impl HttpOptions {
    /// Options from the gateway's `server` settings.
    pub fn from_gateway(gateway: &Gateway, sessions_cancel: CancellationToken) -> Self {
        let server = &gateway.config().server;
        Self {
            allowed_hosts: server.allowed_hosts.clone(),
            max_request_bytes: usize::try_from(server.max_request_bytes).unwrap_or(usize::MAX),
            allowed_origins: server.allowed_origins.clone(),
            sessions_cancel,
            metrics: None,
            incoming_auth: None,
            status_access: match server.status_access {
                StatusAccess::Authenticated => OperationalAccess::Authenticated,
                StatusAccess::Open => OperationalAccess::Open,
            },
            audit: Recorder::disabled(),
        }
    }
}

/// The gateway's HTTP application.
pub fn router(gateway: Arc<Gateway>, options: HttpOptions) -> Router {
    let mut config = StreamableHttpServerConfig::default()
        .with_cancellation_token(options.sessions_cancel.clone())
        .with_max_request_body_bytes(options.max_request_bytes)
        .with_sse_keep_alive(Some(Duration::from_secs(15)));
    config = if options.allowed_hosts.iter().any(|h| h == "*") {
        config.disable_allowed_hosts()
    } else {
        config.with_allowed_hosts(
            LOOPBACK_HOSTS
                .iter()
                .map(|h| h.to_string())
                .chain(options.allowed_hosts.iter().cloned()),
        )
    };
    let for_sessions = gateway.clone();
    let audit = options.audit.clone();
    let (sessions, limits) = session_manager(&gateway);
    let mcp = StreamableHttpService::new(
        move || Ok(GatewayHandler::new(for_sessions.clone()).with_audit(audit.clone())),
        sessions.clone(),
        config,
    );
    let limit = options.max_request_bytes;
    let slots = limits.clone();
    let mut mcp = Router::new()
        .fallback_service(mcp)
        .layer(middleware::from_fn(move |request, next| {
            session_limits::gate(limits.clone(), sessions.clone(), request, next)
        }))
        .layer(middleware::from_fn(move |request, next| {
            screen_body(limit, request, next)
        }))
        .layer(middleware::from_fn(session_delete_status));
    if let Some(auth) = options.incoming_auth.clone() {
        // Outermost: nothing of an unauthenticated request is read.
        mcp = mcp.layer(middleware::from_fn(move |request, next| {
            auth::require_bearer(auth.clone(), slots.clone(), request, next)
        }));
    }
    let origins = origin_policy(&options);
    let mut operational = Router::new().route("/status", get(status));
    if let Some(metrics) = options.metrics {
        operational = operational.route(
            "/metrics",
            get(move || {
                let metrics = metrics.clone();
                async move {
                    (
                        [(header::CONTENT_TYPE, vmcp_status::metrics::CONTENT_TYPE)],
                        metrics.render(),
                    )
                }
            }),
        );
    }
    let mut app = Router::new()
        .nest_service("/mcp", mcp)
        .route("/health", get(health))
        .route("/readyz", get(readyz));
    if let Some(auth) = options.incoming_auth {
        let access = options.status_access;
        let guard = auth.clone();
        operational = operational.layer(middleware::from_fn(move |request, next| {
            auth::guard_operational(guard.clone(), access, request, next)
        }));
        let metadata = move |headers: HeaderMap| {
            let auth = auth.clone();
            async move { auth.metadata(&headers) }
        };
        app = app
            .route(METADATA_PATH, get(metadata.clone()))
            .route(&format!("{METADATA_PATH}/mcp"), get(metadata));
    }
    app.merge(operational)
        .with_state(gateway)
        .layer(middleware::from_fn(move |request, next| {
            screen_origin(origins.clone(), request, next)
        }))
}

/// Origins accepted: those of the accepted hosts, and the listed ones.
fn origin_policy(options: &HttpOptions) -> Arc<OriginPolicy> {
    let hosts = LOOPBACK_HOSTS
        .iter()
        .copied()
        .chain(options.allowed_hosts.iter().map(String::as_str));
    let origins = options.allowed_origins.iter().map(String::as_str);
    Arc::new(OriginPolicy::new(hosts, origins))
}

/// The session manager and the session slots, from the `server` settings.
fn session_manager(gateway: &Arc<Gateway>) -> (Arc<LimitedSessionManager>, Arc<SessionLimits>) {
    let server = &gateway.config().server;
    let limits = SessionLimits::new(
        server.max_sessions as usize,
        server.max_sessions_per_client as usize,
    );
    let manager = LimitedSessionManager::new(gateway.clone(), limits.clone());
    (Arc::new(manager), limits)
}

/// Rejects oversized POST bodies and any body rmcp would not read (not
/// JSON, not JSON-RPC, params that do not fit) with proper JSON-RPC errors
/// before rmcp parses them; marks the request with what it found.
async fn screen_body(limit: usize, request: Request, next: Next) -> Response {
    if request.method() != Method::POST {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let bytes = match axum::body::to_bytes(body, limit).await {
        Ok(bytes) => bytes,
        Err(err) => return body_read_failed(&err, limit),
    };
    let screened = match envelope::screen(&bytes) {
        Ok(screened) => screened,
        Err(err) => {
            return (
                StatusCode::BAD_REQUEST,
                [(header::CONTENT_TYPE, "application/json")],
                err.to_response_body(),
            )
                .into_response();
        }
    };
    let mut request = Request::from_parts(parts, Body::from(bytes));
    request.extensions_mut().insert(screened);
    next.run(request).await
}

/// A JSON-RPC error response with `id: null` (the request was not read).
pub(crate) fn json_rpc_error(status: StatusCode, code: i32, message: &str) -> Response {
    let body = json!({"jsonrpc": "2.0", "id": null, "error": {"code": code, "message": message}});
    (status, Json(body)).into_response()
}

async fn health() -> impl IntoResponse {
    Json(json!({"status": "ok"}))
}

async fn readyz(State(gateway): State<Arc<Gateway>>) -> impl IntoResponse {
    if gateway.is_draining() {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"ready": false, "reason": "shutting down"})),
        )
    } else if gateway.is_ready() {
        (StatusCode::OK, Json(json!({"ready": true})))
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"ready": false, "reason": "first backend discovery has not finished"})),
        )
    }
}

async fn status(State(gateway): State<Arc<Gateway>>) -> impl IntoResponse {
    Json(gateway.current_status())
}
