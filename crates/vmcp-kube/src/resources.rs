//! The custom resources vmcp reads and writes, as untyped API resources.
//!
//! The names come from the CRD types in `vmcp-crd` (the same types that
//! generate `deploy/crds`), but the runtime only touches a few fields of
//! each object, so it reads them through small views
//! ([`crate::discovery`]) instead of the full types: an operator running a
//! newer CRD version with extra or changed spec fields never breaks the
//! runtime.

use kube::core::ApiResource;
use vmcp_crd::{MCPServer, MCPServerEntry, VirtualMCPServer};

pub use vmcp_crd::API_VERSION;

/// `VirtualMCPServer`: the object whose status the runtime reports.
pub fn virtual_mcp_server() -> ApiResource {
    ApiResource::erase::<VirtualMCPServer>(&())
}

/// `MCPServer`: a group member run by the operator (URL in `status.url`).
pub fn mcp_server() -> ApiResource {
    ApiResource::erase::<MCPServer>(&())
}

/// `MCPServerEntry`: a group member that is a remote URL (`spec.remoteUrl`).
pub fn mcp_server_entry() -> ApiResource {
    ApiResource::erase::<MCPServerEntry>(&())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources_are_the_crds() {
        let vmcp = virtual_mcp_server();
        assert_eq!(vmcp.api_version, "toolhive.stacklok.dev/v1beta1");
        assert_eq!(vmcp.plural, "virtualmcpservers");
        assert_eq!(mcp_server().plural, "mcpservers");
        assert_eq!(mcp_server_entry().plural, "mcpserverentries");
        assert_eq!(mcp_server_entry().kind, "MCPServerEntry");
    }
}
