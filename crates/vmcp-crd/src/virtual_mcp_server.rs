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

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::condition::Condition;
use crate::refs::{
    AuthzConfigRef, GroupRef, LocalObjectRef, NameRef, OidcConfigRef, TelemetryConfigRef,
};
use crate::workload::{ServiceType, SessionAffinity, SessionStorage};

/// Desired state of a vmcp gateway, in the shape of ToolHive's v1beta1
/// `VirtualMCPServerSpec`. The runtime serves the members of `groupRef`
/// with the settings of `config`; the operator renders the Deployment,
/// Service and ConfigMap from the typed fields. Free-form subtrees
/// (`config` beyond vmcp's own fields, `authServerConfig`,
/// `podTemplateSpec`, `incomingAuth.authzConfig`, whose inline Cedar
/// policies the operator renders) are kept as written.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "toolhive.stacklok.dev",
    version = "v1beta1",
    kind = "VirtualMCPServer",
    plural = "virtualmcpservers",
    shortname = "vmcp",
    shortname = "virtualmcp",
    category = "toolhive",
    namespaced,
    status = "VirtualMCPServerStatus",
    derive = "PartialEq",
    doc = "VirtualMCPServer aggregates the MCP servers of one MCPGroup behind a single MCP endpoint.",
    printcolumn(
        name = "Phase",
        type_ = "string",
        json_path = ".status.phase",
        description = "The phase of the VirtualMCPServer"
    ),
    printcolumn(
        name = "URL",
        type_ = "string",
        json_path = ".status.url",
        description = "Virtual MCP server URL"
    ),
    printcolumn(
        name = "Backends",
        type_ = "integer",
        json_path = ".status.backendCount",
        description = "Discovered backends count"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp",
        description = "Age"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type=='Ready')].status"
    ),
    printcolumn(
        name = "Reporting",
        type_ = "string",
        json_path = ".status.conditions[?(@.type=='RuntimeReporting')].status",
        description = "Whether the runtime reports its status (the operator's RuntimeReporting condition)"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct VirtualMCPServerSpec {
    /// How clients authenticate to the gateway. Required: `type: anonymous`
    /// when they do not.
    pub incoming_auth: IncomingAuth,
    /// How the gateway authenticates to its backends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outgoing_auth: Option<OutgoingAuth>,
    /// Client request headers forwarded as they are to every backend.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-list-type" = "atomic"))]
    pub passthrough_headers: Option<Vec<String>>,
    /// Type of the Service in front of the gateway: `ClusterIP` (the
    /// default), `NodePort` or `LoadBalancer`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "ClusterIP"))]
    pub service_type: Option<ServiceType>,
    /// Service session affinity: `ClientIP` (the default) or `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "ClientIP"))]
    pub session_affinity: Option<SessionAffinity>,
    /// An existing ServiceAccount to run as; one is created when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account: Option<String>,
    /// A pod template merged over the generated one (the gateway's container
    /// is named `vmcp`), kept as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::free_form_object")]
    pub pod_template_spec: Option<serde_json::Value>,
    /// The MCPGroup whose members are this gateway's backends.
    pub group_ref: GroupRef,
    /// The vmcp configuration (the same fields as the configuration file:
    /// `aggregation`, `operational`, ...), kept as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::free_form_object")]
    pub config: Option<serde_json::Value>,
    /// A shared MCPTelemetryConfig.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub telemetry_config_ref: Option<TelemetryConfigRef>,
    /// An EmbeddingServer for the tool optimizer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedding_server_ref: Option<NameRef>,
    /// An embedded OAuth authorization server, kept as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::free_form_object")]
    pub auth_server_config: Option<serde_json::Value>,
    /// Number of gateway replicas; unset leaves it to an autoscaler. With
    /// more than one, a Lease elects the replica that writes the status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub replicas: Option<i32>,
    /// Where sessions are kept, for several replicas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_storage: Option<SessionStorage>,
    /// Pull secrets for the gateway's image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-list-type" = "atomic"))]
    pub image_pull_secrets: Option<Vec<LocalObjectRef>>,
}

/// How clients authenticate to the gateway.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "self.type == 'oidc' ? has(self.oidcConfigRef) : true",
        "message": "spec.incomingAuth.oidcConfigRef is required when type is oidc",
    },
    {
        "rule": "!(has(self.authzConfig) && has(self.authzConfigRef))",
        "message": "authzConfig and authzConfigRef are mutually exclusive; use authzConfigRef to reference a shared MCPAuthzConfig",
    },
]))]
pub struct IncomingAuth {
    /// `anonymous` or `oidc`.
    #[serde(rename = "type")]
    pub type_: IncomingAuthType,
    /// The shared MCPOIDCConfig that validates client tokens (for `oidc`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oidc_config_ref: Option<OidcConfigRef>,
    /// Inline or ConfigMap authorization policies, kept as written (the
    /// operator renders `{type: inline, inline: {policies}}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::free_form_object")]
    pub authz_config: Option<serde_json::Value>,
    /// A shared MCPAuthzConfig (exclusive with `authzConfig`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authz_config_ref: Option<AuthzConfigRef>,
}

/// How clients authenticate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum IncomingAuthType {
    /// No authentication.
    Anonymous,
    /// Bearer tokens from an OIDC provider.
    Oidc,
}

/// How the gateway authenticates to its backends.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OutgoingAuth {
    /// `discovered` (the default: from each member's
    /// `externalAuthConfigRef`) or `inline` (from `backends`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "discovered"))]
    pub source: Option<OutgoingAuthSource>,
    /// For backends without an entry in `backends`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<BackendAuth>,
    /// Per backend, by name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backends: Option<BTreeMap<String, BackendAuth>>,
}

/// Where backend authentication comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum OutgoingAuthSource {
    /// From each member's `externalAuthConfigRef`.
    Discovered,
    /// From `outgoingAuth.backends`.
    Inline,
}

/// How the gateway authenticates to one backend.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct BackendAuth {
    /// `discovered` or `externalAuthConfigRef`.
    #[serde(rename = "type")]
    pub type_: BackendAuthType,
    /// The MCPExternalAuthConfig to use (for `externalAuthConfigRef`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_auth_config_ref: Option<NameRef>,
}

/// One backend's authentication strategy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum BackendAuthType {
    /// From the member's own `externalAuthConfigRef`.
    #[serde(rename = "discovered")]
    Discovered,
    /// From the named MCPExternalAuthConfig.
    #[serde(rename = "externalAuthConfigRef")]
    ExternalAuthConfigRef,
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
    /// Hash of the referenced MCPAuthzConfig (written by the operator).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authz_config_hash: Option<String>,
    /// Hash of the referenced MCPOIDCConfig (written by the operator).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oidc_config_hash: Option<String>,
    /// Hash of the referenced MCPTelemetryConfig (written by the operator).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub telemetry_config_hash: Option<String>,
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
