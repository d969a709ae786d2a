//! Backends: one supervised connection per configured MCP server.
//!
//! A [`Backend`] is the shared handle the request path uses: it holds the
//! live client (if any) in an `ArcSwap`, so routing a call costs one atomic
//! load. The [`supervisor`] owns the connection's lifecycle: it connects with
//! the transport-specific code in [`connect`], fetches the backend's
//! capabilities, waits for the connection to end, and reconnects with
//! backoff.

pub mod caller_lanes;
pub mod connect;
pub mod credentials;
pub mod health;
pub mod http_client;
pub mod listing;
pub mod rejection;
pub mod session_watch;
pub mod spec;
pub mod supervisor;
pub mod upstream_handler;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use rmcp::model::{Prompt, Resource, ResourceTemplate, ServerCapabilities, Tool};
use rmcp::service::{Peer, RoleClient};
use tokio::sync::{Notify, mpsc, watch};
use vmcp_domain::status::BackendSnapshot;

use self::caller_lanes::CallerLanes;
use self::credentials::Credentials;
use self::health::{Change, HealthCell, Policies};
use crate::relay::Downstream;

pub use spec::{BackendSpec, Endpoint};

/// What a connected backend offers, as last listed.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BackendCapabilities {
    /// What the backend declared at initialization.
    pub declared: ServerCapabilities,
    /// Its tools, in its own names.
    pub tools: Vec<Tool>,
    /// Its prompts.
    pub prompts: Vec<Prompt>,
    /// Its static resources.
    pub resources: Vec<Resource>,
    /// Its resource templates.
    pub resource_templates: Vec<ResourceTemplate>,
}

/// The connection state of a backend, as the request path and `/status` see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConnectionState {
    /// Not yet tried.
    Starting,
    /// Connected and its capabilities are listed.
    Connected,
    /// Not connected; `reason` is a sanitized category, safe to show to clients.
    Disconnected {
        /// Why, e.g. "connection refused".
        reason: String,
    },
}

impl ConnectionState {
    /// Whether calls can be routed to the backend.
    pub fn is_connected(&self) -> bool {
        matches!(self, Self::Connected)
    }
}

/// Something the aggregator must act on.
#[derive(Debug)]
pub enum GatewayEvent {
    /// A backend's capabilities changed (or it went away).
    Capabilities(supervisor::CapabilityUpdate),
    /// A backend's health or circuit changed.
    HealthChanged(Arc<str>),
    /// Backends were added to or removed from the registry.
    RegistryChanged,
}

/// Identifies one `Backend` instance for the life of the process: a backend
/// removed and added again under the same name gets a new id, so late news
/// from the old instance's supervisor can be told apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BackendId(u64);

impl BackendId {
    fn next() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        Self(NEXT.fetch_add(1, Ordering::Relaxed))
    }
}

impl std::fmt::Display for BackendId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// A backend as the rest of the gateway sees it.
pub struct Backend {
    /// What it is and how to reach it.
    pub spec: BackendSpec,
    id: BackendId,
    name: Arc<str>,
    peer: ArcSwapOption<Peer<RoleClient>>,
    state: watch::Sender<ConnectionState>,
    reconnect: Notify,
    health: std::sync::Mutex<HealthCell>,
    events: mpsc::UnboundedSender<GatewayEvent>,
    metrics: Option<vmcp_status::Metrics>,
    credentials: Credentials,
    lanes: std::sync::OnceLock<CallerLanes>,
}

impl Backend {
    /// A backend that is not connected yet; health changes go to `events`.
    pub fn new(
        spec: BackendSpec,
        policies: Policies,
        events: mpsc::UnboundedSender<GatewayEvent>,
        metrics: Option<vmcp_status::Metrics>,
    ) -> Arc<Self> {
        Arc::new(Self {
            id: BackendId::next(),
            name: spec.name.as_str().into(),
            credentials: Credentials::for_spec(&spec),
            lanes: std::sync::OnceLock::new(),
            spec,
            peer: ArcSwapOption::empty(),
            state: watch::Sender::new(ConnectionState::Starting),
            reconnect: Notify::new(),
            health: std::sync::Mutex::new(HealthCell::new(policies)),
            events,
            metrics,
        })
    }

    /// Applies an observation to the health record; logs and announces changes.
    pub fn observe(&self, observe: impl FnOnce(&mut HealthCell) -> Change) -> Change {
        let (change, message) = {
            let mut cell = self.lock_health();
            let change = observe(&mut cell);
            (change, cell.message())
        };
        if change.any() {
            tracing::info!(
                backend = %self.name,
                health = change.health.map(|h| h.as_str()),
                circuit = change.circuit.map(|c| c.as_str()),
                reason = message,
                "backend health changed"
            );
            let _ = self
                .events
                .send(GatewayEvent::HealthChanged(self.name.clone()));
        }
        change
    }

    /// The credentials its requests carry beyond static headers.
    pub fn credentials(&self) -> &Credentials {
        &self.credentials
    }

    /// Callers' own sessions, under token exchange (once the supervisor runs).
    pub fn lanes(&self) -> Option<&CallerLanes> {
        self.lanes.get()
    }

    /// Sets up callers' own sessions, when the backend uses token exchange.
    pub fn install_lanes(&self, http: &reqwest::Client, downstream: &Downstream) {
        if self.credentials.exchanger().is_some() {
            let _ = self.lanes.set(CallerLanes::new(
                self.spec.clone(),
                http.clone(),
                downstream.clone(),
            ));
        }
    }

    /// Prometheus instruments, if metrics are on.
    pub fn metrics(&self) -> Option<&vmcp_status::Metrics> {
        self.metrics.as_ref()
    }

    /// May a call go out now? `Err(retry_in)`: the circuit is open, fail fast.
    pub fn admit(&self) -> Result<(), Duration> {
        let (admitted, changed) = {
            let mut cell = self.lock_health();
            let before = cell.circuit();
            let admitted = cell.admit();
            (admitted, cell.circuit() != before)
        };
        if changed {
            let _ = self
                .events
                .send(GatewayEvent::HealthChanged(self.name.clone()));
        }
        admitted
    }

    /// Whether its health lets calls through (the circuit decides separately).
    pub fn is_healthy_enough(&self) -> bool {
        self.lock_health().health().is_routable()
    }

    /// Whether the catalogue should offer this backend's capabilities.
    pub fn is_routable(&self) -> bool {
        self.state.borrow().is_connected() && self.lock_health().is_routable()
    }

    /// The backend's health for status building.
    pub fn snapshot(&self) -> BackendSnapshot {
        let cell = self.lock_health();
        BackendSnapshot {
            name: self.spec.name.clone(),
            url: self.spec.display_endpoint(),
            auth_type: Some(self.spec.auth_type().to_string()),
            auth_config_ref: None,
            health: cell.health(),
            last_health_check: cell.last_check(),
            // While disconnected, the connect error's category is the more
            // precise one ("outgoing auth misconfigured", "backend process
            // failed to start"); otherwise the health record's.
            message: match &*self.state.borrow() {
                ConnectionState::Disconnected { reason } => Some(reason.clone()),
                _ => cell.message().map(str::to_string),
            },
            circuit: cell.circuit(),
            circuit_last_changed: cell.circuit_changed(),
            consecutive_failures: cell.consecutive_failures(),
        }
    }

    fn lock_health(&self) -> std::sync::MutexGuard<'_, HealthCell> {
        // Observations are single method calls on plain data; a panic inside
        // one cannot leave the record half-updated in a way later reads mind.
        self.health
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The backend's name.
    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// The backend's name, shared.
    pub fn name_arc(&self) -> &Arc<str> {
        &self.name
    }

    /// This instance's identity.
    pub fn id(&self) -> BackendId {
        self.id
    }

    /// The client to send requests on, while connected.
    pub fn peer(&self) -> Option<Arc<Peer<RoleClient>>> {
        self.peer.load_full()
    }

    /// The current connection state.
    pub fn state(&self) -> ConnectionState {
        self.state.borrow().clone()
    }

    /// Watches the connection state.
    pub fn watch_state(&self) -> watch::Receiver<ConnectionState> {
        self.state.subscribe()
    }

    /// The per-call timeout.
    pub fn call_timeout(&self) -> Duration {
        self.spec.call_timeout
    }

    /// Tells the supervisor that the connection looks broken (a call failed
    /// at the transport level), so it reconnects instead of waiting.
    pub fn report_transport_failure(&self) {
        self.reconnect.notify_one();
    }

    pub(crate) fn set_connected(&self, peer: Peer<RoleClient>) {
        self.peer.store(Some(Arc::new(peer)));
        self.state.send_replace(ConnectionState::Connected);
    }

    pub(crate) fn set_disconnected(&self, reason: &str) {
        self.peer.store(None);
        self.state.send_replace(ConnectionState::Disconnected {
            reason: reason.to_string(),
        });
    }

    pub(crate) fn reconnect_requested(&self) -> &Notify {
        &self.reconnect
    }
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backend")
            .field("name", &self.spec.name)
            .field("id", &self.id)
            .field("state", &*self.state.borrow())
            .finish()
    }
}
