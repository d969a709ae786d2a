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
use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject,
};
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

/// Name of the operator's ServiceAccount, ClusterRole, ClusterRoleBinding
/// (and, in the namespaced variant, Role and RoleBinding).
pub const OPERATOR_NAME: &str = "vmcp-operator";

/// The operator's rules, in order:
///
/// 1. `virtualmcpservers` `get`, `list`, `watch`: the objects it reconciles.
/// 2. `virtualmcpservers/status` `get`, `patch`, `update`: `url` and its
///    conditions (a `patch`); `update` only because the runtime's Role
///    grants it and Kubernetes lets a Role be created only by someone who
///    holds its permissions.
/// 3. `mcpgroups` `get`, `list`, `watch`: groupRef validation and the watch
///    mapped to the gateways.
/// 4. `mcpgroups/status` `get`, `patch`: the group's membership status.
/// 5. `mcpservers`, `mcpserverentries` `get`, `list`, `watch`: members;
///    `mcpoidcconfigs` the same: the OIDC settings a gateway references,
///    rendered into its configuration and watched so a change re-renders
///    it (never written).
/// 6. `serviceaccounts`, `services`, `configmaps` `get`, `list`, `watch`,
///    `create`, `patch`: children (server-side apply is a `patch`, and a
///    `create` when the object is new); no `delete`, `update`: owner
///    references clean up.
/// 7. `secrets` `get`: the content of the Secrets a gateway references,
///    hashed into its pod template; no `list` or `watch`.
/// 8. `deployments` (apps) as in 6.
/// 9. `roles`, `rolebindings` as in 6: the runtime's RBAC.
/// 10. `events` (core) `create`, `patch`, and
/// 11. the same in `events.k8s.io`: its own Events, and the runtime's
///     Role grants them.
/// 12. `leases` `get`, `create`, `update`, `patch`: leader election, and
///     the runtime's Role grants them.
pub fn operator_rules() -> Vec<PolicyRule> {
    let children = ["get", "list", "watch", "create", "patch"];
    vec![
        rule(
            GROUP,
            &["virtualmcpservers"],
            &["get", "list", "watch"],
            None,
        ),
        rule(
            GROUP,
            &["virtualmcpservers/status"],
            &["get", "patch", "update"],
            None,
        ),
        rule(GROUP, &["mcpgroups"], &["get", "list", "watch"], None),
        rule(GROUP, &["mcpgroups/status"], &["get", "patch"], None),
        rule(
            GROUP,
            &["mcpservers", "mcpserverentries", "mcpoidcconfigs"],
            &["get", "list", "watch"],
            None,
        ),
        rule(
            "",
            &["serviceaccounts", "services", "configmaps"],
            &children,
            None,
        ),
        rule("", &["secrets"], &["get"], None),
        rule("apps", &["deployments"], &children, None),
        rule(
            "rbac.authorization.k8s.io",
            &["roles", "rolebindings"],
            &children,
            None,
        ),
        rule("", &["events"], &["create", "patch"], None),
        rule("events.k8s.io", &["events"], &["create", "patch"], None),
        rule(
            "coordination.k8s.io",
            &["leases"],
            &["get", "create", "update", "patch"],
            None,
        ),
    ]
}

fn operator_metadata(namespace: Option<&str>) -> ObjectMeta {
    let labels = BTreeMap::from([
        ("app.kubernetes.io/name".to_string(), "vmcp".to_string()),
        (
            "app.kubernetes.io/component".to_string(),
            "operator".to_string(),
        ),
    ]);
    ObjectMeta {
        name: Some(OPERATOR_NAME.to_string()),
        namespace: namespace.map(str::to_string),
        labels: Some(labels),
        ..ObjectMeta::default()
    }
}

/// The operator's ServiceAccount in `namespace`.
pub fn operator_service_account(namespace: &str) -> ServiceAccount {
    ServiceAccount {
        metadata: operator_metadata(Some(namespace)),
        ..ServiceAccount::default()
    }
}

fn operator_subject(namespace: &str) -> Vec<Subject> {
    vec![Subject {
        api_group: None,
        kind: "ServiceAccount".to_string(),
        name: OPERATOR_NAME.to_string(),
        namespace: Some(namespace.to_string()),
    }]
}

/// The operator's ClusterRole (watching every namespace): [`operator_rules`].
pub fn operator_cluster_role() -> ClusterRole {
    ClusterRole {
        metadata: operator_metadata(None),
        rules: Some(operator_rules()),
        aggregation_rule: None,
    }
}

/// Binds [`operator_cluster_role`] to the operator's ServiceAccount in
/// `namespace`.
pub fn operator_cluster_role_binding(namespace: &str) -> ClusterRoleBinding {
    ClusterRoleBinding {
        metadata: operator_metadata(None),
        role_ref: RoleRef {
            api_group: Some("rbac.authorization.k8s.io".to_string()),
            kind: "ClusterRole".to_string(),
            name: OPERATOR_NAME.to_string(),
        },
        subjects: Some(operator_subject(namespace)),
    }
}

/// The namespaced variant (`vmcp-operator --namespace <namespace>`): the
/// same rules in a Role of `namespace`.
pub fn operator_role(namespace: &str) -> Role {
    Role {
        metadata: operator_metadata(Some(namespace)),
        rules: Some(operator_rules()),
    }
}

/// Binds [`operator_role`] to the operator's ServiceAccount, both in
/// `namespace`.
pub fn operator_role_binding(namespace: &str) -> RoleBinding {
    RoleBinding {
        metadata: operator_metadata(Some(namespace)),
        role_ref: RoleRef {
            api_group: Some("rbac.authorization.k8s.io".to_string()),
            kind: "Role".to_string(),
            name: OPERATOR_NAME.to_string(),
        },
        subjects: Some(operator_subject(namespace)),
    }
}

/// Whether `granted` allows everything `wanted` asks (same API group,
/// resource and verb; a rule without `resourceNames` covers any name).
/// Kubernetes requires this of whoever creates or binds a Role.
pub fn covers(granted: &[PolicyRule], wanted: &[PolicyRule]) -> bool {
    wanted.iter().all(|want| {
        let groups = want.api_groups.as_deref().unwrap_or_default();
        let resources = want.resources.as_deref().unwrap_or_default();
        groups.iter().all(|group| {
            resources.iter().all(|resource| {
                want.verbs.iter().all(|verb| {
                    granted.iter().any(|rule| {
                        let has = |list: &Option<Vec<String>>, item: &str| {
                            list.as_deref()
                                .unwrap_or_default()
                                .iter()
                                .any(|x| x == item || x == "*")
                        };
                        has(&rule.api_groups, group)
                            && has(&rule.resources, resource)
                            && rule.verbs.iter().any(|v| v == verb || v == "*")
                            && match (&rule.resource_names, &want.resource_names) {
                                (None, _) => true,
                                (Some(names), Some(wanted)) => {
                                    wanted.iter().all(|n| names.contains(n))
                                }
                                (Some(_), None) => false,
                            }
                    })
                })
            })
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_operator_holds_every_permission_of_the_runtime_role_it_creates() {
        let runtime = runtime_role("demo", "team", "tools");
        let rules = runtime.rules.unwrap_or_default();
        assert!(covers(&operator_rules(), &rules));
    }

    #[test]
    fn covers_is_strict() {
        let read = vec![rule("", &["configmaps"], &["get"], None)];
        let named = vec![rule("", &["configmaps"], &["get"], Some("a"))];
        let table = [
            (&read, rule("", &["configmaps"], &["get"], Some("x")), true),
            (&read, rule("", &["configmaps"], &["patch"], None), false),
            (&read, rule("", &["secrets"], &["get"], None), false),
            (&read, rule("apps", &["configmaps"], &["get"], None), false),
            (&named, rule("", &["configmaps"], &["get"], None), false),
            (&named, rule("", &["configmaps"], &["get"], Some("a")), true),
            (
                &named,
                rule("", &["configmaps"], &["get"], Some("b")),
                false,
            ),
        ];
        for (granted, wanted, want) in table {
            assert_eq!(
                covers(granted, std::slice::from_ref(&wanted)),
                want,
                "{wanted:?}"
            );
        }
    }

    #[test]
    fn the_operator_cannot_delete_or_read_secrets_in_bulk() {
        for rule in operator_rules() {
            assert!(
                !rule
                    .verbs
                    .iter()
                    .any(|v| v == "delete" || v == "*" || v == "escalate" || v == "bind")
            );
            if rule
                .resources
                .as_deref()
                .unwrap_or_default()
                .iter()
                .any(|r| r == "secrets")
            {
                assert_eq!(rule.verbs, ["get"]);
            }
        }
    }
}
