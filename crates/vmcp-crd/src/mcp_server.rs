//! `MCPServer`: a group member that the operator runs as a workload.

// The `printcolumn(...)` entries of `#[kube]` repeat `type_ = "string"`,
// which clippy mistakes for duplicated attributes.
#![allow(clippy::duplicated_attributes)]

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::condition::Condition;

/// Desired state of an MCP server workload. vmcp reads `groupRef`,
/// `transport` and `proxyMode`, and finds the server at `status.url`.
#[derive(
    CustomResource, Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema,
)]
#[kube(
    group = "toolhive.stacklok.dev",
    version = "v1beta1",
    kind = "MCPServer",
    plural = "mcpservers",
    namespaced,
    status = "MCPServerStatus",
    derive = "PartialEq",
    doc = "MCPServer is an MCP server workload; it joins an MCPGroup through spec.groupRef.",
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "URL", type_ = "string", json_path = ".status.url"),
    printcolumn(name = "Group", type_ = "string", json_path = ".spec.groupRef"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct MCPServerSpec {
    /// Container image of the server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// How the server itself speaks MCP: `stdio`, `streamable-http` or `sse`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transport: Option<Transport>,
    /// For a `stdio` server, the HTTP transport of the proxy in front of it:
    /// `sse` or `streamable-http`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_mode: Option<ProxyMode>,
    /// Port the server listens on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: Option<i32>,
    /// Port of the proxy in front of the server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 65535))]
    pub proxy_port: Option<i32>,
    /// Name of the MCPGroup (same namespace) this server belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_ref: Option<String>,
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

/// Observed state of an MCP server workload.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MCPServerStatus {
    /// Phase: `Pending`, `Ready`, `Failed`, `Terminating` or `Stopped`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<MCPServerPhase>,
    /// Where the server (or its proxy) is reachable in the cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Human-readable detail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Conditions, keyed by `type`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::conditions")]
    pub conditions: Option<Vec<Condition>>,
}
