//! Backends: one supervised connection per configured MCP server.
//!
//! A [`Backend`] is the shared handle the request path uses: it holds the
//! live client (if any) in an `ArcSwap`, so routing a call costs one atomic
//! load. The [`supervisor`] owns the connection's lifecycle: it connects with
//! the transport-specific code in [`connect`], fetches the backend's
//! capabilities, waits for the connection to end, and reconnects with
//! backoff.

pub mod connect;
pub mod spec;
pub mod supervisor;
pub mod upstream_handler;

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use rmcp::model::{Prompt, Resource, ResourceTemplate, ServerCapabilities, Tool};
use rmcp::service::{Peer, RoleClient};
use tokio::sync::{Notify, watch};

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

/// A backend as the rest of the gateway sees it.
pub struct Backend {
    /// What it is and how to reach it.
    pub spec: BackendSpec,
    peer: ArcSwapOption<Peer<RoleClient>>,
    state: watch::Sender<ConnectionState>,
    reconnect: Notify,
}

impl Backend {
    /// A backend that is not connected yet.
    pub fn new(spec: BackendSpec) -> Arc<Self> {
        Arc::new(Self {
            spec,
            peer: ArcSwapOption::empty(),
            state: watch::Sender::new(ConnectionState::Starting),
            reconnect: Notify::new(),
        })
    }

    /// The backend's name.
    pub fn name(&self) -> &str {
        &self.spec.name
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
            .field("state", &*self.state.borrow())
            .finish()
    }
}
