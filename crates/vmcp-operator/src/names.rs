//! Names, labels and annotations of the children of one `VirtualMCPServer`.
//!
//! The child names and the port are the reference operator's, so
//! dashboards, NetworkPolicies and overrides written for it keep working.

use std::collections::BTreeMap;

pub use vmcp_crd::rbac::{role_name, service_account_name};

/// The field manager of every write the operator makes.
pub const FIELD_MANAGER: &str = "vmcp-operator";

/// The gateway's container in the pod template.
pub const CONTAINER: &str = "vmcp";
/// The gateway's port, in the container and on the Service.
pub const PORT: i32 = 4483;
/// The name of that port.
pub const PORT_NAME: &str = "http";
/// The key of the rendered configuration in the ConfigMap.
pub const CONFIG_KEY: &str = "config.yaml";
/// Where the ConfigMap is mounted in the container.
pub const CONFIG_DIR: &str = "/etc/vmcp";

/// Pod-template annotation: hash of the rendered config and of every
/// referenced Secret, so that a change rolls the pods.
pub const CONFIG_HASH_ANNOTATION: &str = "vmcp.toolhive.stacklok.dev/config-hash";
/// Annotation on every child: hash of what the operator last applied, so
/// that a change of the desired object (including a field it stops
/// sending) is applied even when the current object still contains it.
pub const APPLIED_HASH_ANNOTATION: &str = "vmcp.toolhive.stacklok.dev/applied-hash";

/// The Deployment: `<name>`.
pub fn deployment_name(vmcp: &str) -> String {
    vmcp.to_string()
}

/// The Service: `vmcp-<name>`.
pub fn service_name(vmcp: &str) -> String {
    format!("vmcp-{vmcp}")
}

/// The ConfigMap with `config.yaml`: `<name>-vmcp-config`.
pub fn config_map_name(vmcp: &str) -> String {
    format!("{vmcp}-vmcp-config")
}

/// The labels that select the gateway's pods (the Deployment's selector,
/// the Service's selector). Immutable once a Deployment exists.
pub fn selector_labels(vmcp: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_string(), "vmcp".to_string()),
        ("app.kubernetes.io/instance".to_string(), vmcp.to_string()),
    ])
}

/// The labels of every child: the selector labels, the component and
/// `app.kubernetes.io/managed-by: vmcp-operator`.
pub fn labels(vmcp: &str) -> BTreeMap<String, String> {
    let mut labels = selector_labels(vmcp);
    labels.insert(
        "app.kubernetes.io/component".to_string(),
        "runtime".to_string(),
    );
    labels.insert(
        "app.kubernetes.io/managed-by".to_string(),
        FIELD_MANAGER.to_string(),
    );
    labels
}
