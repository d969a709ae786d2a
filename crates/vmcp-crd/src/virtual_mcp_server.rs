//! `VirtualMCPServer`: one vmcp gateway, and the status its runtime reports.
//!
//! The status schema mirrors `vmcp_domain::status::Status` field for field
//! (the API server prunes anything its schema lacks); the crate's tests
//! check that a status built by the runtime survives a round trip through
//! these types and through the generated schema. `url` is the one field only
//! the operator writes.

// The `printcolumn(...)` entries of `#[kube]` repeat `type_ = "string"`,
// which clippy mistakes for duplicated attributes.
#![allow(clippy::duplicated_attributes)]

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::condition::Condition;

/// Desired state of a vmcp gateway.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "toolhive.stacklok.dev",
    version = "v1beta1",
    kind = "VirtualMCPServer",
    plural = "virtualmcpservers",
    shortname = "vmcp",
    namespaced,
    status = "VirtualMCPServerStatus",
    derive = "PartialEq",
    doc = "VirtualMCPServer aggregates the MCP servers of one MCPGroup behind a single MCP endpoint.",
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "URL", type_ = "string", json_path = ".status.url"),
    printcolumn(
        name = "Backends",
        type_ = "integer",
        json_path = ".status.backendCount"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct VirtualMCPServerSpec {
    /// The MCPGroup whose members are this gateway's backends.
    pub group_ref: GroupRef,
    /// The vmcp configuration (the same fields as the configuration file:
    /// `aggregation`, `operational`, ...), kept as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::free_form_object")]
    pub config: Option<serde_json::Value>,
    /// Number of gateway replicas. With more than one, a Lease elects the
    /// replica that writes the status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub replicas: Option<i32>,
    /// Type of the Service in front of the gateway (e.g. `ClusterIP`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_type: Option<String>,
    /// How clients authenticate to the gateway, kept as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::free_form_object")]
    pub incoming_auth: Option<serde_json::Value>,
    /// How the gateway authenticates to its backends, kept as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::free_form_object")]
    pub outgoing_auth: Option<serde_json::Value>,
}

/// A reference to an MCPGroup in the same namespace.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct GroupRef {
    /// Name of the MCPGroup.
    #[schemars(length(min = 1))]
    pub name: String,
}

/// The gateway's overall phase.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum Phase {
    /// Starting: no health results yet.
    Pending,
    /// Every backend is healthy.
    Ready,
    /// Serving, but some backends are unhealthy, slow or unreachable.
    Degraded,
    /// Nothing is routable, or the runtime itself is broken.
    Failed,
}

/// Observed state of a vmcp gateway. The runtime (field manager
/// `vmcp-runtime`) owns `phase`, `message`, `discoveredBackends`,
/// `backendCount`, `observedGeneration`, `timestamp` and the conditions
/// `Ready`, `BackendsDiscovered` and `Degraded`; the operator owns `url` and
/// its own conditions.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VirtualMCPServerStatus {
    /// Overall phase: `Pending`, `Ready`, `Degraded` or `Failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// One-line summary covering every backend.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Conditions, keyed by `type`. The runtime reports `Ready` (summary),
    /// `BackendsDiscovered` and `Degraded`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::conditions")]
    pub conditions: Option<Vec<Condition>>,
    /// Backends, the least healthy first, at most 100 (`backendCount` and
    /// `message` cover all of them). Keyed by `name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::backends")]
    pub discovered_backends: Option<Vec<DiscoveredBackend>>,
    /// Number of backends, listed or not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub backend_count: Option<i32>,
    /// Generation of the configuration the runtime actually loaded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub observed_generation: Option<i64>,
    /// When the runtime built this status (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("format" = "date-time"))]
    pub timestamp: Option<String>,
    /// Where clients reach the gateway (written by the operator).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// One backend's state as reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum BackendStatus {
    /// Healthy and routable.
    Ready,
    /// Routable but slow.
    Degraded,
    /// Not routable: failing, unreachable, or its circuit is open.
    Unavailable,
    /// No health result yet.
    Unknown,
    /// Answers, but refuses the gateway's credentials (401/403).
    Unauthenticated,
}

/// A circuit breaker's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum CircuitBreakerState {
    /// Calls flow.
    Closed,
    /// Calls fail fast.
    Open,
    /// One trial call is allowed.
    HalfOpen,
}

/// One backend in the status.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DiscoveredBackend {
    /// Backend name, the key of the list.
    pub name: String,
    /// Endpoint, without credentials.
    pub url: String,
    /// State: `ready`, `degraded`, `unavailable`, `unknown` or
    /// `unauthenticated`.
    pub status: BackendStatus,
    /// Outgoing authentication strategy, e.g. `header_injection`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_type: Option<String>,
    /// Reference to the authentication configuration object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_config_ref: Option<String>,
    /// Time of the last health result (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("format" = "date-time"))]
    pub last_health_check: Option<String>,
    /// Sanitized category of the last failure, e.g. `health check timed out`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Circuit breaker state: `closed`, `open` or `half-open`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub circuit_breaker_state: Option<CircuitBreakerState>,
    /// When the circuit last changed state (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("format" = "date-time"))]
    pub circuit_last_changed: Option<String>,
    /// Failures in a row (probes and calls).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub consecutive_failures: Option<i64>,
}
