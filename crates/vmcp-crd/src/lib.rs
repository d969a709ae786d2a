//! vmcp's Kubernetes custom resources (`toolhive.stacklok.dev/v1beta1`),
//! their generated `CustomResourceDefinition`s, and the least-privilege RBAC
//! of the runtime.
//!
//! The names follow ToolHive's vMCP resources so that manifests move between
//! the two:
//!
//! - [`VirtualMCPServer`]: one gateway; its `status` is the runtime's status
//!   model (`vmcp_domain::status::Status`) plus the operator's `url`.
//! - [`MCPGroup`]: a named set of backends.
//! - [`MCPServer`] and [`MCPServerEntry`]: group members (a workload run by
//!   the operator, and a remote URL).
//! - [`MCPOIDCConfig`]: OIDC provider settings shared by the gateways of a
//!   namespace (`spec.incomingAuth.oidcConfigRef`).
//!
//! Field names, shapes, required fields, enums, defaults, printer columns
//! and short names follow ToolHive's v1beta1 Go types, so a manifest written
//! for ToolHive applies unchanged (`docs/kubernetes.md`, "Compatibility with
//! ToolHive manifests"). Fields that vmcp or its operator act on are typed;
//! subtrees nothing here acts on are declared as objects that keep unknown
//! fields, so they are accepted and preserved as written.
//!
//! [`crds`] returns the five definitions in a stable order; [`render_yaml`]
//! renders them as the YAML committed under `deploy/crds/`. The runtime's
//! RBAC (the YAML under `deploy/rbac/`) is built by [`rbac`].

pub mod condition;
pub mod mcp_group;
pub mod mcp_oidc_config;
pub mod mcp_server;
pub mod mcp_server_entry;
pub mod rbac;
pub mod refs;
pub mod render;
mod schema;
pub mod virtual_mcp_server;
pub mod workload;

pub use condition::{Condition, ConditionStatus};
pub use mcp_group::{MCPGroup, MCPGroupPhase, MCPGroupSpec, MCPGroupStatus};
pub use mcp_oidc_config::{
    InlineOidcConfig, MCPOIDCConfig, MCPOIDCConfigSpec, MCPOIDCConfigStatus, OidcConfigSourceType,
};
pub use mcp_server::{
    MCPServer, MCPServerPhase, MCPServerSpec, MCPServerStatus, ProxyMode, Transport,
};
pub use mcp_server_entry::{
    MCPServerEntry, MCPServerEntryPhase, MCPServerEntrySpec, MCPServerEntryStatus, RemoteTransport,
};
pub use rbac::status_lease_name;
pub use refs::GroupRef;
pub use render::{crds, render_crd_yaml, render_yaml};
pub use virtual_mcp_server::{
    BackendStatus, CircuitBreakerState, DiscoveredBackend, IncomingAuth, IncomingAuthType, Phase,
    VirtualMCPServer, VirtualMCPServerSpec, VirtualMCPServerStatus,
};

/// API group of every vmcp custom resource.
pub const GROUP: &str = "toolhive.stacklok.dev";
/// The one served and stored version.
pub const VERSION: &str = "v1beta1";
/// `apiVersion` of the objects: `toolhive.stacklok.dev/v1beta1`.
pub const API_VERSION: &str = "toolhive.stacklok.dev/v1beta1";
