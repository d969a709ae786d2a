//! One task per backend owning its connection: connect, list capabilities,
//! follow `list_changed`, notice the end of the connection, reconnect with
//! backoff. Nothing here runs on the request path.

use std::sync::Arc;
use std::time::Duration;

use rmcp::service::{Peer, RoleClient};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use vmcp_domain::health::FailureKind;

use super::connect::{self, ConnectError};
use super::upstream_handler::{ListKind, UpstreamHandler};
use super::{Backend, BackendCapabilities, BackendId, GatewayEvent};
use crate::progress::ProgressRoutes;

/// A backend's capabilities changed: `None` means it is gone.
#[derive(Debug)]
pub struct CapabilityUpdate {
    /// The backend.
    pub backend: Arc<str>,
    /// Which instance of it (a backend re-added under the same name is another).
    pub id: BackendId,
    /// What it offers now, if connected.
    pub capabilities: Option<Arc<BackendCapabilities>>,
}

/// Settings of the liveness check the supervisor runs on an open connection.
#[derive(Clone, Copy, Debug)]
pub struct Liveness {
    /// Time between pings.
    pub interval: Duration,
    /// Timeout of one ping.
    pub timeout: Duration,
    /// Failed pings in a row before the connection is dropped and reopened.
    pub threshold: u32,
}

/// Everything a supervisor needs.
pub struct Supervisor {
    /// The backend it owns.
    pub backend: Arc<Backend>,
    /// Shared HTTP client.
    pub http: reqwest::Client,
    /// Where progress notifications go.
    pub progress: Arc<ProgressRoutes>,
    /// Where capability changes go.
    pub updates: mpsc::UnboundedSender<GatewayEvent>,
    /// Liveness check settings.
    pub liveness: Liveness,
    /// Cancelled at shutdown, or when the backend is removed.
    pub shutdown: CancellationToken,
}

const BACKOFF_MIN: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

impl Supervisor {
    /// Runs until shutdown (or removal); closes the connection on the way out.
    pub async fn run(self) {
        let name: Arc<str> = self.backend.name().into();
        let mut backoff = BACKOFF_MIN;
        loop {
            let (changes_tx, changes_rx) = mpsc::channel(8);
            let handler = UpstreamHandler::new(name.clone(), changes_tx, self.progress.clone());
            let attempt = tokio::select! {
                _ = self.shutdown.cancelled() => return,
                attempt = connect::connect(&self.backend.spec, &self.http, handler) => attempt,
            };
            match attempt {
                Ok(service) => {
                    let reason = self.serve_connection(&name, service, changes_rx).await;
                    match reason {
                        None => return,
                        Some(reason) => {
                            tracing::warn!(backend = %name, reason, "backend connection lost; reconnecting");
                            self.backend.observe(|health| health.disconnected());
                            self.mark_down(&name, reason);
                            // The connection worked: try again at once before backing off.
                            backoff = BACKOFF_MIN;
                            continue;
                        }
                    }
                }
                Err(err) => self.connect_failed(&name, &err),
            }
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = tokio::time::sleep(jitter(backoff)) => {}
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    fn connect_failed(&self, name: &Arc<str>, err: &ConnectError) {
        tracing::warn!(backend = %name, error = %err, "cannot connect to backend");
        let kind = if err.looks_unauthorized() {
            FailureKind::Unauthorized
        } else if matches!(err, ConnectError::Timeout(_)) {
            FailureKind::Timeout
        } else {
            FailureKind::Unreachable
        };
        self.backend.observe(|health| health.probe(Err(kind)));
        self.mark_down(name, err.category());
    }

    fn mark_down(&self, name: &Arc<str>, reason: &str) {
        self.backend.set_disconnected(reason);
        let _ = self
            .updates
            .send(GatewayEvent::Capabilities(CapabilityUpdate {
                backend: name.clone(),
                id: self.backend.id(),
                capabilities: None,
            }));
    }

    /// Serves one open connection; returns why it ended, or `None` at shutdown.
    async fn serve_connection(
        &self,
        name: &Arc<str>,
        service: connect::UpstreamService,
        mut changes: mpsc::Receiver<ListKind>,
    ) -> Option<&'static str> {
        let peer = service.peer().clone();
        let cancel = service.cancellation_token();
        let mut ended = tokio::spawn(service.waiting());
        let timeout = self.backend.call_timeout();
        let reason = 'serve: {
            let listed = tokio::select! {
                _ = self.shutdown.cancelled() => break 'serve None,
                listed = list_capabilities(&peer, timeout) => listed,
            };
            let mut capabilities = match listed {
                Ok(capabilities) => capabilities,
                Err(reason) => break 'serve Some(reason),
            };
            tracing::info!(
                backend = %name,
                tools = capabilities.tools.len(),
                prompts = capabilities.prompts.len(),
                resources = capabilities.resources.len(),
                "backend connected"
            );
            self.backend.set_connected(peer.clone());
            // The first probe right away: a backend is routable only with a health result.
            let first = tokio::select! {
                _ = self.shutdown.cancelled() => break 'serve None,
                first = self.probe(&peer) => first,
            };
            self.backend.observe(|health| health.probe(first));
            self.publish(name, &capabilities);
            let mut failed_pings = 0u32;
            let mut tick = tokio::time::interval(self.liveness.interval);
            tick.reset();
            loop {
                tokio::select! {
                    _ = self.shutdown.cancelled() => break 'serve None,
                    _ = &mut ended => break 'serve Some("connection closed"),
                    Some(kind) = changes.recv() => {
                        match relist(&peer, &mut capabilities, kind, timeout).await {
                            Ok(()) => self.publish(name, &capabilities),
                            Err(reason) => break 'serve Some(reason),
                        }
                    }
                    _ = self.backend.reconnect_requested().notified() => {
                        let result = self.probe(&peer).await;
                        let failed = result.is_err();
                        self.backend.observe(|health| health.probe(result));
                        if failed {
                            break 'serve Some("connection lost");
                        }
                    }
                    _ = tick.tick() => {
                        let result = self.probe(&peer).await;
                        let failed = result.is_err();
                        self.backend.observe(|health| health.probe(result));
                        if failed {
                            failed_pings += 1;
                            if failed_pings >= self.liveness.threshold {
                                break 'serve Some("health check failed");
                            }
                        } else {
                            failed_pings = 0;
                        }
                    }
                }
            }
        };
        cancel.cancel();
        if !ended.is_finished() {
            let _ = tokio::time::timeout(Duration::from_secs(5), &mut ended).await;
        }
        reason
    }

    /// One active probe, timed into the metrics.
    async fn probe(&self, peer: &Peer<RoleClient>) -> Result<Duration, FailureKind> {
        let started = tokio::time::Instant::now();
        let result = ping(peer, self.liveness.timeout).await;
        if let Some(metrics) = self.backend.metrics() {
            metrics.record_probe(self.backend.name(), started.elapsed(), result.is_ok());
        }
        result
    }

    fn publish(&self, name: &Arc<str>, capabilities: &BackendCapabilities) {
        let _ = self
            .updates
            .send(GatewayEvent::Capabilities(CapabilityUpdate {
                backend: name.clone(),
                id: self.backend.id(),
                capabilities: Some(Arc::new(capabilities.clone())),
            }));
    }
}

/// Lists everything the backend declared it offers.
async fn list_capabilities(
    peer: &Peer<RoleClient>,
    timeout: Duration,
) -> Result<BackendCapabilities, &'static str> {
    let declared = peer
        .peer_info()
        .map(|info| info.capabilities.clone())
        .unwrap_or_default();
    let mut capabilities = BackendCapabilities {
        declared,
        ..Default::default()
    };
    for kind in [ListKind::Tools, ListKind::Prompts, ListKind::Resources] {
        relist(peer, &mut capabilities, kind, timeout).await?;
    }
    Ok(capabilities)
}

/// Refreshes one list, if the backend declared that capability.
async fn relist(
    peer: &Peer<RoleClient>,
    capabilities: &mut BackendCapabilities,
    kind: ListKind,
    timeout: Duration,
) -> Result<(), &'static str> {
    let declared = &capabilities.declared;
    let result = tokio::time::timeout(timeout, async {
        match kind {
            ListKind::Tools if declared.tools.is_some() => {
                capabilities.tools = peer.list_all_tools().await?;
            }
            ListKind::Prompts if declared.prompts.is_some() => {
                capabilities.prompts = peer.list_all_prompts().await?;
            }
            ListKind::Resources if declared.resources.is_some() => {
                capabilities.resources = peer.list_all_resources().await?;
                capabilities.resource_templates = peer.list_all_resource_templates().await?;
            }
            _ => {}
        }
        Ok::<(), rmcp::service::ServiceError>(())
    })
    .await;
    match result {
        Ok(Ok(())) => Ok(()),
        Ok(Err(err)) => {
            tracing::warn!(error = %err, "listing backend capabilities failed");
            Err("listing capabilities failed")
        }
        Err(_) => Err("listing capabilities timed out"),
    }
}

/// An MCP ping (always a POST on HTTP transports) within `timeout`: its
/// latency, or why it failed. An error answer still proves the backend alive.
async fn ping(peer: &Peer<RoleClient>, timeout: Duration) -> Result<Duration, FailureKind> {
    let request = rmcp::model::ClientRequest::PingRequest(rmcp::model::PingRequest::default());
    let started = tokio::time::Instant::now();
    match tokio::time::timeout(timeout, peer.send_request(request)).await {
        Ok(Ok(_)) | Ok(Err(rmcp::service::ServiceError::McpError(_))) => Ok(started.elapsed()),
        Ok(Err(rmcp::service::ServiceError::UnexpectedResponse)) => Err(FailureKind::Protocol),
        Ok(Err(_)) => Err(FailureKind::Unreachable),
        Err(_) => Err(FailureKind::Timeout),
    }
}

/// Spreads reconnects of many backends apart (±25%), without a random number generator.
fn jitter(base: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let factor = 0.75 + f64::from(nanos % 1000) / 2000.0;
    base.mul_f64(factor)
}
