//! `MCPServerEntry`: a group member that is a remote MCP server, by URL.

// The `printcolumn(...)` entries of `#[kube]` repeat `type_ = "string"`,
// which clippy mistakes for duplicated attributes.
#![allow(clippy::duplicated_attributes)]

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::condition::Condition;
use crate::refs::{ConfigMapKeyRef, GroupRef, NameRef, SecretKeyRef};

/// A remote MCP server that joins an MCPGroup without a workload, in the
/// shape of ToolHive's v1beta1 `MCPServerEntrySpec`. The runtime reads
/// `groupRef`, `remoteUrl` and `transport`.
#[derive(CustomResource, Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "toolhive.stacklok.dev",
    version = "v1beta1",
    kind = "MCPServerEntry",
    plural = "mcpserverentries",
    shortname = "mcpentry",
    category = "toolhive",
    namespaced,
    status = "MCPServerEntryStatus",
    derive = "PartialEq",
    doc = "MCPServerEntry adds a remote MCP server, by URL, to an MCPGroup.",
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Transport", type_ = "string", json_path = ".spec.transport"),
    printcolumn(name = "Remote URL", type_ = "string", json_path = ".spec.remoteUrl"),
    printcolumn(name = "Group", type_ = "string", json_path = ".spec.groupRef.name"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct MCPServerEntrySpec {
    /// The server's MCP endpoint, e.g. `https://mcp.example.com/mcp`.
    #[schemars(regex(pattern = r"^https?://"))]
    pub remote_url: String,
    /// Allows `remoteUrl` to name a private or in-cluster address (default
    /// false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = false))]
    pub allow_private_endpoint: Option<bool>,
    /// How the server speaks MCP: `streamable-http` or `sse`.
    pub transport: RemoteTransport,
    /// The MCPGroup (same namespace) this entry belongs to.
    pub group_ref: GroupRef,
    /// An MCPExternalAuthConfig for the calls to the server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_auth_config_ref: Option<NameRef>,
    /// Headers added to every request to the server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header_forward: Option<HeaderForward>,
    /// CA certificates that verify the server's TLS certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_bundle_ref: Option<CaBundleRef>,
}

/// Headers added to the requests to a remote server.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HeaderForward {
    /// Header names and values, as written (not secret).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub add_plaintext_headers: Option<BTreeMap<String, String>>,
    /// Headers whose values come from Secrets, keyed by `headerName`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::header_secrets")]
    pub add_headers_from_secret: Option<Vec<HeaderFromSecret>>,
}

/// A header whose value is a Secret key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HeaderFromSecret {
    /// Header name; the key of the list.
    #[schemars(length(min = 1, max = 255))]
    pub header_name: String,
    /// The Secret key holding the value.
    pub value_secret_ref: SecretKeyRef,
}

/// Where CA certificates come from.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CaBundleRef {
    /// A ConfigMap key holding PEM certificates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map_ref: Option<ConfigMapKeyRef>,
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
    /// Valid and usable.
    Valid,
    /// Not validated yet.
    Pending,
    /// Invalid (e.g. its group does not exist).
    Failed,
}

/// Observed state of an entry.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MCPServerEntryStatus {
    /// The `metadata.generation` this status is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Phase: `Valid`, `Pending` or `Failed`.
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
