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

/// A client from the environment: in-cluster service account, else
/// `KUBECONFIG` / `~/.kube/config`. Requests time out, so a hung API server
/// never blocks a writer forever.
pub async fn connect() -> Result<kube::Client, ConnectError> {
    let mut config = kube::Config::infer().await.map_err(ConnectError::Config)?;
    config.connect_timeout = Some(std::time::Duration::from_secs(5));
    config.read_timeout = Some(std::time::Duration::from_secs(15));
    config.write_timeout = Some(std::time::Duration::from_secs(15));
    kube::Client::try_from(config).map_err(ConnectError::Client)
}
