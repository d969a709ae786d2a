//! The definitions as YAML: the files under `deploy/`.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, JSON,
};
use kube::CustomResourceExt;
use serde::Serialize;

use crate::rbac::{RuntimeRbac, runtime_rbac};
use crate::{MCPGroup, MCPOIDCConfig, MCPServer, MCPServerEntry, VirtualMCPServer};

/// The command that regenerates the files under `deploy/`.
pub const UPDATE_COMMAND: &str = "VMCP_UPDATE_CRDS=1 cargo test -p vmcp-crd --test generated_yaml";

/// The five definitions, in a stable order: `VirtualMCPServer`, `MCPGroup`,
/// `MCPServer`, `MCPServerEntry`, `MCPOIDCConfig`.
///
/// These are the derived definitions with one change: `MCPGroup`, whose
/// spec fields are all optional, defaults a missing `spec` to `{}`, so an
/// object with only metadata is accepted.
pub fn crds() -> Vec<CustomResourceDefinition> {
    let mut group = MCPGroup::crd();
    default_empty_spec(&mut group);
    vec![
        VirtualMCPServer::crd(),
        group,
        MCPServer::crd(),
        MCPServerEntry::crd(),
        MCPOIDCConfig::crd(),
    ]
}

/// The file name of a definition under `deploy/crds/`:
/// `<group>_<plural>.yaml`.
pub fn crd_file_name(crd: &CustomResourceDefinition) -> String {
    format!("{}_{}.yaml", crd.spec.group, crd.spec.names.plural)
}

/// One definition as a YAML file: the "generated" header, then the
/// document after `---`.
pub fn render_crd_yaml(crd: &CustomResourceDefinition) -> String {
    let mut out = header(&[]);
    push_document(&mut out, crd);
    out
}

/// All five definitions ([`crds`]) as one multi-document YAML stream.
pub fn render_yaml() -> String {
    let mut out = header(&[]);
    for crd in crds() {
        push_document(&mut out, &crd);
    }
    out
}

/// The runtime's ServiceAccount, Role and RoleBinding
/// ([`runtime_rbac`]) as one multi-document YAML stream, with a comment
/// block naming the values to substitute and explaining each rule.
pub fn render_rbac_yaml(name: &str, namespace: &str, group: &str) -> String {
    let lease = crate::status_lease_name(name);
    let account = crate::rbac::service_account_name(name);
    let role = crate::rbac::role_name(name);
    let substitutions = [
        (
            format!("namespace `{namespace}`"),
            "the gateway's namespace",
        ),
        (
            format!("resourceNames `{name}`"),
            "the VirtualMCPServer's name, <name>",
        ),
        (format!("resourceNames `{group}`"), "its spec.groupRef.name"),
        (format!("ServiceAccount `{account}`"), "<name>-vmcp"),
        (format!("Role, RoleBinding `{role}`"), "<name>-vmcp"),
        (
            format!("resourceNames `{lease}`"),
            "<name>-vmcp-status (the status Lease)",
        ),
        (
            format!("label app.kubernetes.io/instance `{name}`"),
            "<name>",
        ),
    ];
    let width = substitutions
        .iter()
        .map(|(from, _)| from.len())
        .max()
        .unwrap_or(0);
    let mut notes = vec![
        format!("Least-privilege RBAC for the runtime of the VirtualMCPServer `{name}` in the"),
        format!(
            "namespace `{namespace}`, serving the MCPGroup `{group}`. Nothing is cluster-scoped."
        ),
        String::new(),
        "For another gateway, substitute:".to_string(),
    ];
    notes.extend(
        substitutions
            .iter()
            .map(|(from, to)| format!("  {from:<width$}  ->  {to}")),
    );
    notes.extend(
        [
            "",
            "Rules of the Role, in order (deploy/rbac/README.md explains each):",
            " 1. virtualmcpservers get/list/watch, own object only; list and watch are",
            "    allowed only with the field selector metadata.name=<name>.",
            " 2. virtualmcpservers/status get/patch/update, own object only.",
            " 3. mcpgroups get, own group only.",
            " 4. mcpservers, mcpserverentries get/list/watch: members are dynamic.",
            " 5. events (core) create/patch.",
            " 6. events (events.k8s.io) create/patch.",
            " 7. leases create: resourceNames cannot restrict create (any Lease name).",
            " 8. leases get/update/patch, the status Lease only.",
        ]
        .map(String::from),
    );
    let mut out = header(&notes);
    let RuntimeRbac {
        service_account,
        role,
        role_binding,
    } = runtime_rbac(name, namespace, group);
    push_document(&mut out, &service_account);
    push_document(&mut out, &role);
    push_document(&mut out, &role_binding);
    out
}

/// The namespace the shipped operator manifests install into.
pub const OPERATOR_NAMESPACE: &str = "vmcp-system";

/// The operator's ServiceAccount, ClusterRole and ClusterRoleBinding (it
/// watches every namespace) as one YAML stream: `deploy/operator/rbac.yaml`.
pub fn render_operator_rbac_yaml(namespace: &str) -> String {
    let mut out = header(&operator_notes(
        namespace,
        "a ClusterRole and ClusterRoleBinding",
    ));
    push_document(&mut out, &crate::rbac::operator_service_account(namespace));
    push_document(&mut out, &crate::rbac::operator_cluster_role());
    push_document(
        &mut out,
        &crate::rbac::operator_cluster_role_binding(namespace),
    );
    out
}

/// The namespaced variant (`vmcp-operator --namespace <namespace>`): the
/// same rules in a Role and RoleBinding of `namespace`:
/// `deploy/operator/rbac-namespaced.yaml`.
pub fn render_operator_namespaced_rbac_yaml(namespace: &str) -> String {
    let mut out = header(&operator_notes(
        namespace,
        "a Role and RoleBinding (run the operator with --namespace <namespace>)",
    ));
    push_document(&mut out, &crate::rbac::operator_service_account(namespace));
    push_document(&mut out, &crate::rbac::operator_role(namespace));
    push_document(&mut out, &crate::rbac::operator_role_binding(namespace));
    out
}

fn operator_notes(namespace: &str, shape: &str) -> Vec<String> {
    [
        format!(
            "Least-privilege RBAC of vmcp-operator: its ServiceAccount in `{namespace}`, {shape}."
        ),
        "The rules, in order (crates/vmcp-crd/src/rbac.rs, operator_rules, explains each):"
            .to_string(),
        " 1. virtualmcpservers get/list/watch;  2. virtualmcpservers/status get/patch/update;"
            .to_string(),
        " 3. mcpgroups get/list/watch;  4. mcpgroups/status get/patch;".to_string(),
        " 5. mcpservers, mcpserverentries, mcpoidcconfigs get/list/watch;".to_string(),
        " 6. serviceaccounts, services, configmaps get/list/watch/create/patch (no delete);"
            .to_string(),
        " 7. secrets get only (referenced Secrets are hashed into the pod template);".to_string(),
        " 8. deployments, 9. roles, rolebindings as 6;  10., 11. events create/patch;".to_string(),
        " 12. leases get/create/update/patch (leader election).".to_string(),
        "It holds every permission of the runtime Role it creates (Kubernetes requires that);"
            .to_string(),
        "it has no escalate, bind, delete or wildcard.".to_string(),
    ]
    .to_vec()
}

fn header(notes: &[String]) -> String {
    let mut out = format!("# Generated by `{UPDATE_COMMAND}` from crates/vmcp-crd. Do not edit.\n");
    if !notes.is_empty() {
        out.push_str("#\n");
    }
    for line in notes {
        if line.is_empty() {
            out.push_str("#\n");
        } else {
            out.push_str("# ");
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

fn push_document<T: Serialize>(out: &mut String, object: &T) {
    out.push_str("---\n");
    // Kubernetes objects are plain data (string keys, no non-finite
    // floats), which always serialize.
    let yaml = serde_saphyr::to_string(object).expect("Kubernetes objects serialize to YAML");
    out.push_str(&yaml);
    if !yaml.ends_with('\n') {
        out.push('\n');
    }
}

fn default_empty_spec(crd: &mut CustomResourceDefinition) {
    for version in &mut crd.spec.versions {
        let spec = version
            .schema
            .as_mut()
            .and_then(|s| s.open_api_v3_schema.as_mut())
            .and_then(|s| s.properties.as_mut())
            .and_then(|p| p.get_mut("spec"));
        if let Some(spec) = spec {
            spec.default = Some(JSON(serde_json::json!({})));
        }
    }
}
