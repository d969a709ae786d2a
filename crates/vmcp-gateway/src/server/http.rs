//! The HTTP surface: `/mcp` (Streamable HTTP), `/health`, `/readyz`, `/status`.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::handler::GatewayHandler;
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
    /// Cancelled to close every MCP session (at the end of a graceful shutdown).
    pub sessions_cancel: CancellationToken,
}

impl HttpOptions {
    /// Options from the gateway's `server` settings.
    pub fn from_gateway(gateway: &Gateway, sessions_cancel: CancellationToken) -> Self {
        let server = &gateway.config().server;
        Self {
            allowed_hosts: server.allowed_hosts.clone(),
            max_request_bytes: usize::try_from(server.max_request_bytes).unwrap_or(usize::MAX),
            sessions_cancel,
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
    let mcp = StreamableHttpService::new(
        move || Ok(GatewayHandler::new(for_sessions.clone())),
        Arc::new(LocalSessionManager::default()),
        config,
    );
    Router::new()
        .nest_service("/mcp", mcp)
        .route("/health", get(health))
        .route("/readyz", get(readyz))
        .route("/status", get(status))
        .with_state(gateway)
}

async fn health() -> impl IntoResponse {
    Json(json!({"status": "ok"}))
}

async fn readyz(State(gateway): State<Arc<Gateway>>) -> impl IntoResponse {
    if gateway.is_ready() {
        (StatusCode::OK, Json(json!({"ready": true})))
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"ready": false, "reason": "first backend discovery has not finished"})),
        )
    }
}

async fn status(State(gateway): State<Arc<Gateway>>) -> impl IntoResponse {
    Json(gateway.status())
}
