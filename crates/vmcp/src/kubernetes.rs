//! Kubernetes mode of `vmcp serve`: the status reporter with its Lease, and
//! live discovery of the group's members.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use vmcp_gateway::Gateway;
use vmcp_kube::discovery::with_static;
use vmcp_kube::{
    DiscoveredBackends, DiscoveryOptions, KubernetesReporter, LeaseElector, LeaseHandle,
    LeaseOptions,
};
use vmcp_status::KubernetesTarget;

/// The Kubernetes parts of a running runtime.
pub struct KubernetesMode {
    /// The status reporter (added to the reporter set).
    pub reporter: KubernetesReporter,
    /// The status Lease, released after the final status write.
    pub lease: LeaseHandle,
    /// For the discovery watches.
    watch_client: kube::Client,
    target: KubernetesTarget,
}

/// This replica's name in the Lease and in Events: the pod name (the
/// `HOSTNAME` Kubernetes sets) plus the process id and start time, so a
/// restarted container is a new holder.
fn identity() -> String {
    let host = std::env::var("VMCP_POD_NAME")
        .or_else(|_| std::env::var("HOSTNAME"))
        .unwrap_or_else(|_| "vmcp".to_string());
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{host}-{}-{started:08x}", std::process::id())
}

impl KubernetesMode {
    /// Connects to the API server and starts the Lease election.
    pub async fn start(
        target: KubernetesTarget,
        lease_duration: Duration,
    ) -> Result<Self, vmcp_kube::ConnectError> {
        let clients = vmcp_kube::connect().await?;
        let client = clients.requests;
        let identity = identity();
        let lease = LeaseElector::start(
            client.clone(),
            LeaseOptions::new(
                vmcp_kube::status_lease_name(&target.name),
                target.namespace.clone(),
                identity.clone(),
                lease_duration,
            ),
        );
        let reporter = KubernetesReporter::new(
            client.clone(),
            target.name.clone(),
            target.namespace.clone(),
            identity.clone(),
            Some(lease.leadership()),
        );
        tracing::info!(
            virtual_mcp_server = %format!("{}/{}", target.namespace, target.name),
            identity = %identity,
            "reporting status to Kubernetes"
        );
        Ok(Self {
            reporter,
            lease,
            watch_client: clients.watches,
            target,
        })
    }

    /// Watches the members of `group` and keeps the gateway's backends equal
    /// to the configured ones plus the discovered ones.
    pub fn discover(&self, group: String, gateway: Arc<Gateway>, stop: CancellationToken) {
        let discovered = vmcp_kube::discovery::start(
            self.watch_client.clone(),
            DiscoveryOptions {
                namespace: self.target.namespace.clone(),
                group: group.clone(),
            },
            stop.clone(),
        );
        tracing::info!(group = %group, "discovering backends from the group's MCPServer and MCPServerEntry objects");
        tokio::spawn(follow(discovered, gateway, stop));
    }
}

async fn follow(
    mut discovered: DiscoveredBackends,
    gateway: Arc<Gateway>,
    stop: CancellationToken,
) {
    loop {
        let latest = discovered.borrow_and_update().clone();
        if let Some(backends) = latest {
            let all = with_static(&gateway.config().backends, backends);
            let changes = gateway.set_backends(all);
            tracing::debug!(?changes, "applied discovered backends");
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            changed = discovered.changed() => {
                if changed.is_err() {
                    return;
                }
            }
        }
    }
}
