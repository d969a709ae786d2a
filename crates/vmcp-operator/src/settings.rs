//! The operator's own settings: what every gateway it deploys shares.

/// The runtime image deployed when no other is configured: the `vmcp`
/// image of this release (never `:latest`).
pub const DEFAULT_RUNTIME_IMAGE: &str = concat!("ghcr.io/vmcp/vmcp:", env!("CARGO_PKG_VERSION"));

/// Settings that shape every child, whatever the `VirtualMCPServer` says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    /// The `vmcp` image the Deployment runs.
    pub runtime_image: String,
    /// `imagePullPolicy` of the container (`IfNotPresent`, `Always`,
    /// `Never`).
    pub image_pull_policy: String,
    /// The cluster's DNS domain, for `status.url` and the accepted `Host`
    /// names (`cluster.local`).
    pub cluster_domain: String,
    /// CPU request of the container, e.g. `50m`.
    pub cpu_request: String,
    /// Memory request of the container, e.g. `64Mi`.
    pub memory_request: String,
    /// Memory limit of the container, e.g. `256Mi`.
    pub memory_limit: String,
    /// Seconds the runtime drains connections on SIGTERM (`--drain-seconds`).
    pub drain_seconds: u32,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            runtime_image: DEFAULT_RUNTIME_IMAGE.to_string(),
            image_pull_policy: "IfNotPresent".to_string(),
            cluster_domain: "cluster.local".to_string(),
            cpu_request: "50m".to_string(),
            memory_request: "64Mi".to_string(),
            memory_limit: "256Mi".to_string(),
            drain_seconds: 30,
        }
    }
}
