//! Least-privilege RBAC for the runtime of one `VirtualMCPServer`.
//!
//! Everything is namespaced (a `Role`, never a `ClusterRole`) and, where
//! Kubernetes allows, restricted to named objects with `resourceNames`:
//!
//! 1. `virtualmcpservers` `get`, `list`, `watch` of its own object only.
//!    With `resourceNames`, a `list` or `watch` is allowed only when it
//!    carries the field selector `metadata.name=<name>`; an unfiltered list
//!    of the namespace is denied.
//! 2. `virtualmcpservers/status` `get`, `patch`, `update` of its own object:
//!    the status reports (server-side apply is a `patch`).
//! 3. `mcpgroups` `get` of its own group only.
//! 4. `mcpservers` and `mcpserverentries` `get`, `list`, `watch`: group
//!    members come and go, so their names are not known in advance (and a
//!    label or field selector on `spec.groupRef` cannot be expressed in RBAC).
//! 5. `events` `create`, `patch` in the core group, and
//! 6. the same in `events.k8s.io`: Events on phase changes (either API).
//! 7. `leases` `create`: the status-writer Lease. `create` cannot be
//!    restricted by `resourceNames` (the authorizer sees no name before the
//!    object exists), so this allows creating any Lease in the namespace.
//! 8. `leases` `get`, `update`, `patch` of [`status_lease_name`] only: one
//!    replica at a time writes the status.
//!
//! `deploy/rbac/vmcp-runtime.yaml` is rendered from these builders.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::GROUP;

/// Name of the Lease that elects the replica writing the status of the
/// `VirtualMCPServer` `vmcp_name`: `<vmcp_name>-vmcp-status`.
pub fn status_lease_name(vmcp_name: &str) -> String {
    format!("{vmcp_name}-vmcp-status")
}

/// Name of the runtime's ServiceAccount: `<vmcp_name>-vmcp`.
pub fn service_account_name(vmcp_name: &str) -> String {
    format!("{vmcp_name}-vmcp")
}

/// Name of the runtime's Role and RoleBinding: `<vmcp_name>-vmcp`, the
/// name the reference operator gives them (the same as the
/// ServiceAccount's), so that tooling written for it finds them.
pub fn role_name(vmcp_name: &str) -> String {
    format!("{vmcp_name}-vmcp")
}

/// The ServiceAccount, Role and RoleBinding of one runtime.
#[derive(Clone, Debug, PartialEq)]
pub struct RuntimeRbac {
    /// The identity the runtime's pods run as.
    pub service_account: ServiceAccount,
    /// What the runtime may do.
    pub role: Role,
    /// Grants [`RuntimeRbac::role`] to [`RuntimeRbac::service_account`].
    pub role_binding: RoleBinding,
}

/// All RBAC objects for the runtime of the `VirtualMCPServer` `name` in
/// `namespace`, serving the MCPGroup `group`.
pub fn runtime_rbac(name: &str, namespace: &str, group: &str) -> RuntimeRbac {
    RuntimeRbac {
        service_account: runtime_service_account(name, namespace),
        role: runtime_role(name, namespace, group),
        role_binding: runtime_role_binding(name, namespace),
    }
}

/// The runtime's ServiceAccount, [`service_account_name`].
pub fn runtime_service_account(name: &str, namespace: &str) -> ServiceAccount {
    ServiceAccount {
        metadata: metadata(service_account_name(name), name, namespace),
        ..ServiceAccount::default()
    }
}

/// The runtime's Role, [`role_name`]: the rules listed in the module
/// documentation, in that order.
pub fn runtime_role(name: &str, namespace: &str, group: &str) -> Role {
    let lease = status_lease_name(name);
    Role {
        metadata: metadata(role_name(name), name, namespace),
        rules: Some(vec![
            rule(
                GROUP,
                &["virtualmcpservers"],
                &["get", "list", "watch"],
                Some(name),
            ),
            rule(
                GROUP,
                &["virtualmcpservers/status"],
                &["get", "patch", "update"],
                Some(name),
            ),
            rule(GROUP, &["mcpgroups"], &["get"], Some(group)),
            rule(
                GROUP,
                &["mcpservers", "mcpserverentries"],
                &["get", "list", "watch"],
                None,
            ),
            rule("", &["events"], &["create", "patch"], None),
            rule("events.k8s.io", &["events"], &["create", "patch"], None),
            rule("coordination.k8s.io", &["leases"], &["create"], None),
            rule(
                "coordination.k8s.io",
                &["leases"],
                &["get", "update", "patch"],
                Some(&lease),
            ),
        ]),
    }
}

/// The RoleBinding granting [`runtime_role`] to [`runtime_service_account`].
pub fn runtime_role_binding(name: &str, namespace: &str) -> RoleBinding {
    RoleBinding {
        metadata: metadata(role_name(name), name, namespace),
        role_ref: RoleRef {
            api_group: Some("rbac.authorization.k8s.io".to_string()),
            kind: "Role".to_string(),
            name: role_name(name),
        },
        subjects: Some(vec![Subject {
            api_group: None,
            kind: "ServiceAccount".to_string(),
            name: service_account_name(name),
            namespace: Some(namespace.to_string()),
        }]),
    }
}

fn metadata(object_name: String, vmcp_name: &str, namespace: &str) -> ObjectMeta {
    let labels = BTreeMap::from([
        ("app.kubernetes.io/name".to_string(), "vmcp".to_string()),
        (
            "app.kubernetes.io/instance".to_string(),
            vmcp_name.to_string(),
        ),
        (
            "app.kubernetes.io/component".to_string(),
            "runtime".to_string(),
        ),
    ]);
    ObjectMeta {
        name: Some(object_name),
        namespace: Some(namespace.to_string()),
        labels: Some(labels),
        ..ObjectMeta::default()
    }
}

fn rule(api_group: &str, resources: &[&str], verbs: &[&str], name: Option<&str>) -> PolicyRule {
    let strings = |items: &[&str]| items.iter().map(|s| (*s).to_string()).collect();
    PolicyRule {
        api_groups: Some(vec![api_group.to_string()]),
        resources: Some(strings(resources)),
        verbs: strings(verbs),
        resource_names: name.map(|n| vec![n.to_string()]),
        non_resource_urls: None,
    }
}
