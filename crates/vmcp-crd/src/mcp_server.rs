//! `MCPServer`: a group member that the operator runs as a workload.

// The `printcolumn(...)` entries of `#[kube]` repeat `type_ = "string"`,
// which clippy mistakes for duplicated attributes.
#![allow(clippy::duplicated_attributes)]

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::condition::Condition;
use crate::refs::{AuthzConfigRef, GroupRef, NameRef, OidcConfigRef, TelemetryConfigRef};
use crate::workload::{EnvVar, ResourceRequirements, SessionAffinity, SessionStorage};

/// Desired state of an MCP server workload, in the shape of ToolHive's
/// v1beta1 `MCPServerSpec`. The runtime reads `groupRef`, `transport` and
/// `proxyMode`, and finds the server at `status.url`; the operator renders
/// the workload from the typed fields. Subtrees that nothing here acts on
/// (`authzConfig`, `rateLimiting`, `resourceOverrides`, `podTemplateSpec`)
/// are kept as written.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "toolhive.stacklok.dev",
    version = "v1beta1",
    kind = "MCPServer",
    plural = "mcpservers",
    shortname = "mcpserver",
    shortname = "mcpservers",
    category = "toolhive",
    namespaced,
    status = "MCPServerStatus",
    derive = "PartialEq",
    doc = "MCPServer is an MCP server workload; it joins an MCPGroup through spec.groupRef.name.",
    printcolumn(name = "Status", type_ = "string", json_path = ".status.phase"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type=='Ready')].status"
    ),
    printcolumn(
        name = "Replicas",
        type_ = "integer",
        json_path = ".status.readyReplicas"
    ),
    printcolumn(name = "URL", type_ = "string", json_path = ".status.url"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "!(has(self.authzConfig) && has(self.authzConfigRef))",
        "message": "authzConfig and authzConfigRef are mutually exclusive; use authzConfigRef to reference a shared MCPAuthzConfig",
    },
    {
        "rule": "!has(self.rateLimiting) || (has(self.sessionStorage) && self.sessionStorage.provider == 'redis')",
        "message": "rateLimiting requires sessionStorage with provider 'redis'",
    },
]))]
pub struct MCPServerSpec {
    /// Container image of the server.
    pub image: String,
    /// How the server itself speaks MCP: `stdio` (the default),
    /// `streamable-http` or `sse`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "stdio"))]
    pub transport: Option<Transport>,
    /// For a `stdio` server, the HTTP transport of the proxy in front of it:
    /// `streamable-http` (the default) or `sse`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "streamable-http"))]
    pub proxy_mode: Option<ProxyMode>,
    /// Port of the proxy in front of the server (default 8080).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535), extend("default" = 8080))]
    pub proxy_port: Option<i32>,
    /// Port the server itself listens on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub mcp_port: Option<i32>,
    /// Arguments of the server's command.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-list-type" = "atomic"))]
    pub args: Option<Vec<String>>,
    /// Environment of the server, keyed by `name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::env_vars")]
    pub env: Option<Vec<EnvVar>>,
    /// Host paths mounted into the server, keyed by `name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::volumes")]
    pub volumes: Option<Vec<Volume>>,
    /// CPU and memory of the server's container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Secret keys passed to the server as environment variables, keyed by
    /// `name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::secrets")]
    pub secrets: Option<Vec<SecretRef>>,
    /// An existing ServiceAccount to run as; one is created when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account: Option<String>,
    /// The permission profile the server runs with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permission_profile: Option<PermissionProfileRef>,
    /// A pod template merged over the generated one (the server's container
    /// is named `mcp`), kept as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::free_form_object")]
    pub pod_template_spec: Option<serde_json::Value>,
    /// Labels, annotations and environment for the generated proxy
    /// Deployment and Service, kept as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::free_form_object")]
    pub resource_overrides: Option<serde_json::Value>,
    /// A shared MCPOIDCConfig that authenticates the server's clients.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oidc_config_ref: Option<OidcConfigRef>,
    /// Inline or ConfigMap authorization policies, kept as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::free_form_object")]
    pub authz_config: Option<serde_json::Value>,
    /// A shared MCPAuthzConfig (exclusive with `authzConfig`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authz_config_ref: Option<AuthzConfigRef>,
    /// Audit logging.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit: Option<AuditConfig>,
    /// An MCPToolConfig that filters and renames the server's tools.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_config_ref: Option<NameRef>,
    /// An MCPExternalAuthConfig for the server's own outgoing calls.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_auth_config_ref: Option<NameRef>,
    /// An MCPWebhookConfig.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_config_ref: Option<NameRef>,
    /// An embedded authorization server configuration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_server_ref: Option<AuthServerRef>,
    /// A shared MCPTelemetryConfig.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub telemetry_config_ref: Option<TelemetryConfigRef>,
    /// Whether the proxy trusts `X-Forwarded-*` headers (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = false))]
    pub trust_proxy_headers: Option<bool>,
    /// A path prefix an ingress strips before the proxy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_prefix: Option<String>,
    /// The MCPGroup (same namespace) this server belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_ref: Option<GroupRef>,
    /// Service session affinity: `ClientIP` (the default) or `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "ClientIP"))]
    pub session_affinity: Option<SessionAffinity>,
    /// Replicas of the proxy Deployment; unset leaves it to an autoscaler.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub replicas: Option<i32>,
    /// Replicas of the server Deployment behind the proxy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub backend_replicas: Option<i32>,
    /// Where sessions are kept, for several replicas.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_storage: Option<SessionStorage>,
    /// Token-bucket rate limits, kept as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::free_form_object")]
    pub rate_limiting: Option<serde_json::Value>,
}

/// A host path mounted into an MCP server.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Volume {
    /// Volume name; the key of the list.
    pub name: String,
    /// Path on the host.
    pub host_path: String,
    /// Path in the container.
    pub mount_path: String,
    /// Mounted read-only (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = false))]
    pub read_only: Option<bool>,
}

/// A Secret key passed to an MCP server as an environment variable.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretRef {
    /// Name of the Secret; the key of the list.
    pub name: String,
    /// Key in the Secret.
    pub key: String,
    /// Variable name; defaults to the key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_env_name: Option<String>,
}

/// Which permission profile an MCP server runs with.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PermissionProfileRef {
    /// `builtin` (the default) or `configmap`.
    #[serde(rename = "type")]
    #[schemars(extend("default" = "builtin"))]
    pub type_: PermissionProfileType,
    /// A builtin profile (`none`, `network`) or a ConfigMap name.
    pub name: String,
    /// The ConfigMap key holding the profile.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

/// Where a permission profile comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum PermissionProfileType {
    /// A profile built into the proxy.
    Builtin,
    /// A profile in a ConfigMap.
    Configmap,
}

/// Audit logging of an MCP server.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct AuditConfig {
    /// Whether audit logging is on (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = false))]
    pub enabled: Option<bool>,
}

/// A reference to the object configuring an embedded authorization server.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct AuthServerRef {
    /// Kind of the object: `MCPExternalAuthConfig`.
    #[schemars(extend("default" = "MCPExternalAuthConfig"))]
    pub kind: AuthServerKind,
    /// Name of the object.
    #[schemars(length(min = 1))]
    pub name: String,
}

/// The kinds that can configure an embedded authorization server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum AuthServerKind {
    /// An `MCPExternalAuthConfig`.
    #[allow(clippy::upper_case_acronyms)]
    MCPExternalAuthConfig,
}

/// How an MCP server speaks MCP.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Transport {
    /// Standard input and output (behind a proxy).
    Stdio,
    /// MCP streamable HTTP.
    StreamableHttp,
    /// The legacy HTTP+SSE transport.
    Sse,
}

/// The HTTP transport of the proxy in front of a `stdio` server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum ProxyMode {
    /// The legacy HTTP+SSE transport.
    Sse,
    /// MCP streamable HTTP.
    StreamableHttp,
}

/// An MCP server workload's phase.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum MCPServerPhase {
    /// Starting.
    Pending,
    /// Running and reachable at `url`.
    Ready,
    /// Could not be started.
    Failed,
    /// Being deleted.
    Terminating,
    /// Scaled to zero.
    Stopped,
}

/// Observed state of an MCP server workload (written by the operator).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MCPServerStatus {
    /// Conditions, keyed by `type`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::conditions")]
    pub conditions: Option<Vec<Condition>>,
    /// The `metadata.generation` this status is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Hash of the referenced MCPToolConfig.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_config_hash: Option<String>,
    /// Hash of the referenced MCPExternalAuthConfig.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_auth_config_hash: Option<String>,
    /// Hash of the object behind `authServerRef`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_server_config_hash: Option<String>,
    /// Hash of the referenced MCPAuthzConfig.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authz_config_hash: Option<String>,
    /// Hash of the referenced MCPOIDCConfig.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oidc_config_hash: Option<String>,
    /// Hash of the referenced MCPTelemetryConfig.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub telemetry_config_hash: Option<String>,
    /// Hash of the referenced MCPWebhookConfig.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_config_hash: Option<String>,
    /// Where the server (or its proxy) is reachable in the cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Phase: `Pending`, `Ready`, `Failed`, `Terminating` or `Stopped`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<MCPServerPhase>,
    /// Human-readable detail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Ready replicas of the proxy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_replicas: Option<i32>,
}
