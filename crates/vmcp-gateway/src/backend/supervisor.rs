//! One task per backend owning its connection: connect, list capabilities,
//! follow `list_changed`, notice the end of the connection, reconnect with
//! backoff. Nothing here runs on the request path.
//!
//! Reconnects back off exponentially (250 ms, doubling, jittered, capped at
//! one health check interval). The backoff starts afresh only after a
//! connection that *became healthy*: it listed its capabilities, passed its
//! first probe and stayed up for one health check interval. A backend that
//! fails right after `initialize` (a bad `tools/list`, a crash, endless
//! paging) therefore gets at most one attempt per interval once the
//! schedule has grown, not a reconnect storm. Its warnings are rate-limited
//! per backend ([`LogLimiter`]).

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use rmcp::model::PaginatedRequestParams;
use rmcp::service::{Peer, RoleClient};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use vmcp_domain::health::FailureKind;

use super::connect::{self, ConnectError};
use super::listing::{self, ListError, Listed};
use super::rejection;
use super::upstream_handler::{ListKind, UpstreamHandler};
use super::{Backend, BackendCapabilities, BackendId, GatewayEvent};
use crate::log_limit::LogLimiter;
use crate::relay::Downstream;

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
    /// Where progress, log messages, resource updates and server requests go.
    pub downstream: Downstream,
    /// Where capability changes go.
    pub updates: mpsc::UnboundedSender<GatewayEvent>,
    /// Liveness check settings.
    pub liveness: Liveness,
    /// Cancelled at shutdown, or when the backend is removed.
    pub shutdown: CancellationToken,
}

/// First delay before reconnecting a backend that never became healthy.
const BACKOFF_MIN: Duration = Duration::from_millis(250);

/// The reconnect schedule of a backend: exponential from [`BACKOFF_MIN`],
/// with jitter, and never longer than one `interval` (so a backend that
/// comes back is found within one health check interval: while it is down,
/// connect attempts are its probes). `backon` adds up to 100% jitter, so
/// the cap it is given is half the interval.
fn reconnect_backoff(interval: Duration) -> ExponentialBackoff {
    let max = (interval / 2).max(BACKOFF_MIN);
    ExponentialBuilder::default()
        .with_min_delay(BACKOFF_MIN)
        .with_max_delay(max)
        .with_factor(2.0)
        .with_jitter()
        .without_max_times()
        .build()
}

/// Why a connection ended, and whether it had become healthy first.
struct Ended {
    /// Sanitized reason, for status and the log.
    reason: Cow<'static, str>,
    /// The error behind it, for the log only.
    detail: Option<String>,
    /// Listed its capabilities, passed its first probe and stayed up for a
    /// health check interval. Only such a connection resets the backoff.
    became_healthy: bool,
}

/// Closes the callers' own sessions when the supervisor stops.
struct CloseLanes<'a>(&'a Backend);

impl Drop for CloseLanes<'_> {
    fn drop(&mut self) {
        if let Some(lanes) = self.0.lanes() {
            lanes.close_all();
        }
    }
}

impl Supervisor {
    /// Runs until shutdown (or removal); closes the connection on the way out.
    pub async fn run(self) {
        let name: Arc<str> = self.backend.name().into();
        self.backend.install_lanes(&self.http, &self.downstream);
        let _lanes = CloseLanes(&self.backend);
        let mut backoff = reconnect_backoff(self.liveness.interval);
        let mut log = LogLimiter::per_backend();
        loop {
            let (changes_tx, changes_rx) = mpsc::channel(8);
            let handler = UpstreamHandler::new(
                name.clone(),
                changes_tx,
                self.downstream.clone(),
                self.backend.call_timeout(),
            );
            let renewed = handler.renewed();
            let attempt = tokio::select! {
                _ = self.shutdown.cancelled() => return,
                attempt = connect::connect(&self.backend.spec, self.backend.credentials(), &self.http, handler) => attempt,
            };
            match attempt {
                Ok(service) => {
                    let Some(ended) = self
                        .serve_connection(&name, service, changes_rx, renewed)
                        .await
                    else {
                        return;
                    };
                    if let Some(suppressed) = log.admit(Instant::now().into_std()) {
                        tracing::warn!(
                            backend = %name,
                            reason = %ended.reason,
                            error = ended.detail.as_deref(),
                            suppressed,
                            "backend connection lost; reconnecting"
                        );
                    }
                    self.backend.observe(|health| health.disconnected());
                    self.mark_down(&name, &ended.reason);
                    if ended.became_healthy {
                        // It worked for a while: try again at once, then back off afresh.
                        backoff = reconnect_backoff(self.liveness.interval);
                        continue;
                    }
                }
                Err(err) => {
                    if let Some(suppressed) = log.admit(Instant::now().into_std()) {
                        tracing::warn!(backend = %name, error = %err, suppressed, "cannot connect to backend");
                    }
                    self.connect_failed(&name, &err);
                }
            }
            let delay = backoff.next().unwrap_or(self.liveness.interval);
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = tokio::time::sleep(delay) => {}
            }
        }
    }

    fn connect_failed(&self, name: &Arc<str>, err: &ConnectError) {
        let kind = err.failure_kind();
        self.backend.observe(|health| health.probe(Err(kind)));
        self.mark_down(name, err.category(self.backend.spec.auth.is_some()));
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

    /// Serves one open connection; returns how it ended, or `None` at shutdown.
    async fn serve_connection(
        &self,
        name: &Arc<str>,
        service: connect::UpstreamService,
        mut changes: mpsc::Receiver<ListKind>,
        renewed: Arc<tokio::sync::Notify>,
    ) -> Option<Ended> {
        let peer = service.peer().clone();
        let cancel = service.cancellation_token();
        let mut ended = tokio::spawn(service.waiting());
        let timeout = self.backend.call_timeout();
        let mut healthy_at = None;
        let end =
            |reason: Cow<'static, str>, detail: Option<String>, healthy_at: Option<Instant>| {
                Some(Ended {
                    reason,
                    detail,
                    became_healthy: healthy_at.is_some_and(|at| Instant::now() >= at),
                })
            };
        let outcome = 'serve: {
            let listed = tokio::select! {
                _ = self.shutdown.cancelled() => break 'serve None,
                listed = list_capabilities(&peer, timeout) => listed,
            };
            let mut capabilities = match listed {
                Ok(capabilities) => capabilities,
                Err(err) => break 'serve end(err.reason(), err.detail(), None),
            };
            tracing::info!(
                backend = %name,
                tools = capabilities.tools.len(),
                prompts = capabilities.prompts.len(),
                resources = capabilities.resources.len(),
                "backend connected"
            );
            self.backend.set_connected(peer.clone());
            self.restore(name, &peer);
            // The first probe right away: a backend is routable only with a health result.
            let first = tokio::select! {
                _ = self.shutdown.cancelled() => break 'serve None,
                first = self.probe(&peer) => first,
            };
            if first.is_ok() {
                healthy_at = Some(Instant::now() + self.liveness.interval);
            }
            self.backend.observe(|health| health.probe(first));
            self.publish(name, &capabilities);
            let mut failed_pings = 0u32;
            let mut tick = tokio::time::interval(self.liveness.interval);
            tick.reset();
            loop {
                tokio::select! {
                    _ = self.shutdown.cancelled() => break 'serve None,
                    _ = &mut ended => break 'serve end("connection closed".into(), None, healthy_at),
                    () = renewed.notified() => {
                        // A new backend session: it may offer something else
                        // now and has forgotten what sessions asked of it.
                        tracing::info!(backend = %name, "backend session renewed; listing again");
                        let mut relisted = Ok(());
                        for kind in [ListKind::Tools, ListKind::Prompts, ListKind::Resources] {
                            relisted = relist(&peer, &mut capabilities, kind, timeout).await;
                            if relisted.is_err() {
                                break;
                            }
                        }
                        match relisted {
                            Ok(()) => self.publish(name, &capabilities),
                            Err(err) => break 'serve end(err.reason(), err.detail(), healthy_at),
                        }
                        self.restore(name, &peer);
                    }
                    Some(kind) = changes.recv() => {
                        match relist(&peer, &mut capabilities, kind, timeout).await {
                            Ok(()) => self.publish(name, &capabilities),
                            Err(err) => break 'serve end(err.reason(), err.detail(), healthy_at),
                        }
                    }
                    _ = self.backend.reconnect_requested().notified() => {
                        let result = self.probe(&peer).await;
                        let failed = result.is_err();
                        self.backend.observe(|health| health.probe(result));
                        if failed {
                            break 'serve end("connection lost".into(), None, healthy_at);
                        }
                    }
                    _ = tick.tick() => {
                        if let Some(lanes) = self.backend.lanes() {
                            lanes.close_idle();
                        }
                        let result = self.probe(&peer).await;
                        let failed = result.is_err();
                        self.backend.observe(|health| health.probe(result));
                        if failed {
                            failed_pings += 1;
                            if failed_pings >= self.liveness.threshold {
                                break 'serve end("health check failed".into(), None, healthy_at);
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
        outcome
    }

    /// Subscriptions and the log level sessions asked for, sent again to a
    /// new backend session (in the background: probes go on meanwhile).
    fn restore(&self, name: &Arc<str>, peer: &Peer<RoleClient>) {
        let (downstream, name, peer) = (self.downstream.clone(), name.clone(), peer.clone());
        let timeout = self.backend.call_timeout();
        tokio::spawn(async move { downstream.restore(&name, &peer, timeout).await });
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
) -> Result<BackendCapabilities, ListError> {
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

/// Refreshes one list, if the backend declared that capability; each list
/// is bounded in pages and items (see [`listing`]).
async fn relist(
    peer: &Peer<RoleClient>,
    capabilities: &mut BackendCapabilities,
    kind: ListKind,
    timeout: Duration,
) -> Result<(), ListError> {
    let declared = &capabilities.declared;
    let params = |cursor| Some(PaginatedRequestParams::default().with_cursor(cursor));
    let result = tokio::time::timeout(timeout, async {
        match kind {
            ListKind::Tools if declared.tools.is_some() => {
                capabilities.tools = listing::all(Listed::Tools, |cursor| async move {
                    let page = peer.list_tools(params(cursor)).await?;
                    Ok((page.tools, page.next_cursor))
                })
                .await?;
            }
            ListKind::Prompts if declared.prompts.is_some() => {
                capabilities.prompts = listing::all(Listed::Prompts, |cursor| async move {
                    let page = peer.list_prompts(params(cursor)).await?;
                    Ok((page.prompts, page.next_cursor))
                })
                .await?;
            }
            ListKind::Resources if declared.resources.is_some() => {
                capabilities.resources = listing::all(Listed::Resources, |cursor| async move {
                    let page = peer.list_resources(params(cursor)).await?;
                    Ok((page.resources, page.next_cursor))
                })
                .await?;
                capabilities.resource_templates =
                    listing::all(Listed::ResourceTemplates, |cursor| async move {
                        let page = peer.list_resource_templates(params(cursor)).await?;
                        Ok((page.resource_templates, page.next_cursor))
                    })
                    .await?;
            }
            _ => {}
        }
        Ok::<(), ListError>(())
    })
    .await;
    match result {
        Ok(result) => result,
        Err(_) => Err(ListError::TimedOut),
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
        Ok(Err(err)) if rejection::request_rejected(&err) => Err(FailureKind::Unauthorized),
        Ok(Err(_)) => Err(FailureKind::Unreachable),
        Err(_) => Err(FailureKind::Timeout),
    }
}
