//! The custom resources vmcp reads and writes, as untyped API resources.
//!
//! The runtime only touches a few fields of each object, so it reads them
//! through small views ([`crate::discovery`]) instead of the full CRD types:
//! an operator running a newer CRD version with extra fields never breaks
//! the runtime.

use kube::core::ApiResource;

/// API group of every vmcp custom resource.
pub const GROUP: &str = "toolhive.stacklok.dev";
/// API version the runtime speaks.
pub const VERSION: &str = "v1beta1";
/// `apiVersion` of the objects.
pub const API_VERSION: &str = "toolhive.stacklok.dev/v1beta1";

fn resource(kind: &str, plural: &str) -> ApiResource {
    ApiResource {
        group: GROUP.to_string(),
        version: VERSION.to_string(),
        api_version: API_VERSION.to_string(),
        kind: kind.to_string(),
        plural: plural.to_string(),
    }
}

/// `VirtualMCPServer`: the object whose status the runtime reports.
pub fn virtual_mcp_server() -> ApiResource {
    resource("VirtualMCPServer", "virtualmcpservers")
}

/// `MCPServer`: a group member run by the operator (URL in `status.url`).
pub fn mcp_server() -> ApiResource {
    resource("MCPServer", "mcpservers")
}

/// `MCPServerEntry`: a group member that is a remote URL (`spec.remoteURL`).
pub fn mcp_server_entry() -> ApiResource {
    resource("MCPServerEntry", "mcpserverentries")
}
