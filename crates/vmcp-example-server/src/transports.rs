//! Serving an [`ExampleServer`] on stdio or on streamable HTTP, and shutting
//! down on SIGTERM or ctrl-c.

use axum::serve::ListenerExt;
use std::{net::SocketAddr, sync::Arc, time::Duration};

use anyhow::Context as _;
use rmcp::{
    ServiceExt as _,
    service::ServerInitializeError,
    transport::{
        StreamableHttpServerConfig, StreamableHttpService,
        streamable_http_server::session::{
            SessionManager, local::LocalSessionManager, never::NeverSessionManager,
        },
    },
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::handler::ExampleServer;

/// The path the MCP endpoint is mounted at.
pub const MCP_PATH: &str = "/mcp";

/// How long open HTTP connections get to finish after shutdown starts.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Options of the HTTP transport.
#[derive(Debug, Clone, Default)]
pub struct HttpOptions {
    /// No sessions, and plain JSON for simple responses.
    pub stateless: bool,
    /// Accepted `Host` header values besides the loopback names.
    pub allowed_hosts: Vec<String>,
}

/// Serve one MCP session on stdin/stdout until the client closes it or
/// `shutdown` is cancelled.
pub async fn serve_stdio(server: ExampleServer, shutdown: CancellationToken) -> anyhow::Result<()> {
    let running = match server
        .serve_with_ct(rmcp::transport::stdio_pipes(), shutdown)
        .await
    {
        Ok(running) => running,
        // The client went away (or we were stopped) before initializing:
        // nothing went wrong on our side.
        Err(ServerInitializeError::ConnectionClosed(_) | ServerInitializeError::Cancelled) => {
            tracing::info!("stdio closed before the session started");
            return Ok(());
        }
        Err(error) => return Err(error).context("starting the stdio session"),
    };
    let reason = running
        .waiting()
        .await
        .context("running the stdio session")?;
    tracing::info!(?reason, "stdio session ended");
    Ok(())
}

/// The axum router serving `server` at [`MCP_PATH`].
///
/// Cancelling `shutdown` ends the open SSE streams, which lets a graceful
/// HTTP shutdown complete.
pub fn router(
    server: ExampleServer,
    options: &HttpOptions,
    shutdown: CancellationToken,
) -> axum::Router {
    let mut allowed_hosts: Vec<String> = ["localhost", "127.0.0.1", "::1"]
        .into_iter()
        .map(String::from)
        .collect();
    allowed_hosts.extend(options.allowed_hosts.iter().cloned());
    let config = StreamableHttpServerConfig::default()
        .with_allowed_hosts(allowed_hosts)
        .with_sse_keep_alive(Some(Duration::from_secs(15)))
        .with_cancellation_token(shutdown)
        .with_legacy_session_mode(!options.stateless)
        .with_json_response(options.stateless);
    if options.stateless {
        mount(server, NeverSessionManager::default(), config)
    } else {
        mount(server, LocalSessionManager::default(), config)
    }
}

fn mount<M: SessionManager>(
    server: ExampleServer,
    sessions: M,
    config: StreamableHttpServerConfig,
) -> axum::Router {
    let service =
        StreamableHttpService::new(move || Ok(server.clone()), Arc::new(sessions), config);
    axum::Router::new().route_service(MCP_PATH, service)
}

/// Serve `server` over streamable HTTP on `listener` until `shutdown` is
/// cancelled, then give open connections [`SHUTDOWN_GRACE`] to finish.
///
/// The listener's IP address is accepted as a `Host` value, unless it is the
/// unspecified address (`0.0.0.0`, `::`): then list the names clients use in
/// [`HttpOptions::allowed_hosts`].
pub async fn serve_http(
    listener: TcpListener,
    server: ExampleServer,
    mut options: HttpOptions,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let bound: SocketAddr = listener.local_addr().context("reading the bound address")?;
    if !bound.ip().is_unspecified() {
        options.allowed_hosts.push(bound.ip().to_string());
    }
    let app = router(server, &options, shutdown.clone());
    // Small SSE frames would otherwise wait on Nagle + delayed ACK.
    let listener = listener.tap_io(|stream| {
        let _ = stream.set_nodelay(true);
    });
    let serve = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown.clone().cancelled_owned())
        .into_future();
    tokio::select! {
        result = serve => result.context("serving HTTP")?,
        () = async {
            shutdown.cancelled().await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        } => tracing::warn!("connections still open after {SHUTDOWN_GRACE:?}; closing them"),
    }
    tracing::info!("HTTP server stopped");
    Ok(())
}

/// Resolves on ctrl-c or, on Unix, SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::warn!(%error, "cannot listen for ctrl-c");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut sigterm) => {
                sigterm.recv().await;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("ctrl-c received, shutting down"),
        () = terminate => tracing::info!("SIGTERM received, shutting down"),
    }
}
