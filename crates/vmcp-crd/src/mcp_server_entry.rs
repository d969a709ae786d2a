//! `MCPServerEntry`: a group member that is a remote MCP server, by URL.

// The `printcolumn(...)` entries of `#[kube]` repeat `type_ = "string"`,
// which clippy mistakes for duplicated attributes.
#![allow(clippy::duplicated_attributes)]

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::condition::Condition;

/// A remote MCP server that joins an MCPGroup without a workload.
#[derive(CustomResource, Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "toolhive.stacklok.dev",
    version = "v1beta1",
    kind = "MCPServerEntry",
    plural = "mcpserverentries",
    namespaced,
    status = "MCPServerEntryStatus",
    derive = "PartialEq",
    doc = "MCPServerEntry adds a remote MCP server, by URL, to an MCPGroup.",
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "URL", type_ = "string", json_path = ".spec.remoteURL"),
    printcolumn(name = "Group", type_ = "string", json_path = ".spec.groupRef"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
pub struct MCPServerEntrySpec {
    /// The server's MCP endpoint, e.g. `https://mcp.example.com/mcp`.
    #[serde(rename = "remoteURL")]
    #[schemars(length(min = 1))]
    pub remote_url: String,
    /// How the server speaks MCP: `streamable-http` or `sse`.
    pub transport: RemoteTransport,
    /// Name of the MCPGroup (same namespace) this entry belongs to.
    #[serde(rename = "groupRef")]
    #[schemars(length(min = 1))]
    pub group_ref: String,
}

/// How a remote MCP server speaks MCP.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum RemoteTransport {
    /// MCP streamable HTTP.
    StreamableHttp,
    /// The legacy HTTP+SSE transport.
    Sse,
}

/// An entry's phase.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum MCPServerEntryPhase {
    /// Not validated yet.
    Pending,
    /// Valid and usable.
    Ready,
    /// Invalid (e.g. its group does not exist).
    Failed,
}

/// Observed state of an entry.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MCPServerEntryStatus {
    /// Phase: `Pending`, `Ready` or `Failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<MCPServerEntryPhase>,
    /// Human-readable detail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Conditions, keyed by `type`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::conditions")]
    pub conditions: Option<Vec<Condition>>,
}
