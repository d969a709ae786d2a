//! vmcp in Kubernetes: the runtime's side of the `VirtualMCPServer`.
//!
//! - [`reporter`]: the status reporter (server-side apply of the runtime's
//!   fields under its own field manager, Events on phase transitions);
//! - [`lease`]: one writer among replicas (a `coordination.k8s.io` Lease);
//! - [`discovery`]: the group's `MCPServer` and `MCPServerEntry` objects
//!   as live backends;
//! - [`status_patch`], [`events`], [`api_error`]: the pure parts (what is
//!   sent, which Event, how an API failure is handled), tested as tables.
//!
//! The operator owns the object's spec, `status.url` and the infrastructure
//! conditions; see `docs/status.md` for the split.

use std::time::Duration;

pub mod api_error;
pub mod discovery;
pub mod events;
pub mod lease;
pub mod reporter;
pub mod resources;
pub mod status_patch;

pub use discovery::{DiscoveredBackends, DiscoveryOptions};
pub use lease::{LeaseElector, LeaseHandle, LeaseOptions, status_lease_name};
pub use reporter::KubernetesReporter;
pub use status_patch::FIELD_MANAGER;

/// Why the runtime cannot talk to Kubernetes at all.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// Neither a kubeconfig nor the in-cluster service account was found.
    #[error(
        "no Kubernetes configuration (no in-cluster service account, no KUBECONFIG or ~/.kube/config)"
    )]
    Config(#[source] kube::config::InferConfigError),
    /// The client could not be built from the configuration.
    #[error("cannot build the Kubernetes client")]
    Client(#[source] kube::Error),
}

/// Longest wait for an answer to a request (status writes, Lease renewals,
/// Events), so a hung API server never blocks a writer forever.
const REQUEST_READ_TIMEOUT: Duration = Duration::from_secs(15);

/// Longest silence on a watch: above the 290 s after which kube-rs' watcher
/// asks the API server to end each watch (bookmarks come more often). With
/// the request timeout, an idle watch was cut every 15 s and re-established,
/// with a warning each time.
const WATCH_READ_TIMEOUT: Duration = Duration::from_secs(295);

/// Longest wait for a connection to the API server.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Longest wait to send a request.
const WRITE_TIMEOUT: Duration = Duration::from_secs(15);

/// The runtime's two clients of one API server (same credentials).
#[derive(Clone)]
pub struct Clients {
    /// For requests: answers within [`REQUEST_READ_TIMEOUT`].
    pub requests: kube::Client,
    /// For watches, which stay silent while nothing changes.
    pub watches: kube::Client,
}

/// Clients from the environment: in-cluster service account, else
/// `KUBECONFIG` / `~/.kube/config`.
pub async fn connect() -> Result<Clients, ConnectError> {
    let mut config = kube::Config::infer().await.map_err(ConnectError::Config)?;
    config.connect_timeout = Some(CONNECT_TIMEOUT);
    config.write_timeout = Some(WRITE_TIMEOUT);
    let mut watches = config.clone();
    config.read_timeout = Some(REQUEST_READ_TIMEOUT);
    watches.read_timeout = Some(WATCH_READ_TIMEOUT);
    Ok(Clients {
        requests: kube::Client::try_from(config).map_err(ConnectError::Client)?,
        watches: kube::Client::try_from(watches).map_err(ConnectError::Client)?,
    })
}
