//! The children of a few `VirtualMCPServer`s, as golden YAML
//! (`tests/golden/<case>.yaml`; rewrite with `VMCP_UPDATE_GOLDEN=1`), and
//! the rendering rules as tables.

use std::path::{Path, PathBuf};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use serde_json::{Value, json};
use vmcp_crd::VirtualMCPServer;
use vmcp_operator::config::{ConfigInputs, render_config};
use vmcp_operator::incoming_auth::{Lookups, render_incoming_auth};
use vmcp_operator::names::{APPLIED_HASH_ANNOTATION, CONFIG_HASH_ANNOTATION};
use vmcp_operator::render::{self, Child, ChildKind, Owner};
use vmcp_operator::settings::Settings;

fn gateway(name: &str, spec: Value) -> VirtualMCPServer {
    serde_json::from_value(json!({
        "apiVersion": "toolhive.stacklok.dev/v1beta1",
        "kind": "VirtualMCPServer",
        "metadata": { "name": name, "namespace": "team", "uid": "0000-1111", "generation": 3 },
        "spec": spec,
    }))
    .expect("a valid VirtualMCPServer")
}

fn settings() -> Settings {
    Settings {
        runtime_image: "registry.example/vmcp:1.2.3".into(),
        ..Settings::default()
    }
}

/// Every child, in apply order, as the controller would render them with
/// the Service's ClusterIP `10.0.0.7` and no referenced Secrets.
fn children(vmcp: &VirtualMCPServer) -> Vec<Child> {
    children_with(vmcp, &Lookups::default())
}

/// [`children`] with what the controller found for `spec.incomingAuth`'s
/// references (the referenced Secrets' content is not hashed here).
fn children_with(vmcp: &VirtualMCPServer, found: &Lookups) -> Vec<Child> {
    let owner = Owner::of(vmcp).expect("metadata");
    let settings = settings();
    let incoming = render_incoming_auth(vmcp, found);
    let config = render_config(&ConfigInputs {
        name: &owner.name,
        namespace: &owner.namespace,
        group: &vmcp.spec.group_ref.name,
        config: vmcp.spec.config.as_ref(),
        cluster_domain: &settings.cluster_domain,
        cluster_ip: Some("10.0.0.7"),
        requires_oidc: vmcp.spec.incoming_auth.type_ == vmcp_crd::IncomingAuthType::Oidc,
        incoming_auth: Some(&incoming),
    });
    assert!(config.is_valid(), "{:?}", config.issues);
    let mut out = Vec::new();
    if vmcp.spec.service_account.is_none() {
        out.extend(render::rbac(&owner, &vmcp.spec.group_ref.name));
    }
    out.push(render::service(&owner, vmcp));
    out.push(render::config_map(&owner, &config));
    let hash = render::config_hash(
        &config,
        &render::secrets_digest([]),
        incoming.mounted_digest.as_deref(),
    );
    out.push(render::deployment(
        &owner,
        vmcp,
        &settings,
        &incoming.pod,
        &hash,
    ));
    out
}

fn golden_path(case: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/golden/{case}.yaml"))
}

fn check_golden(case: &str, vmcp: &VirtualMCPServer) {
    check_golden_with(case, vmcp, &Lookups::default());
}

fn check_golden_with(case: &str, vmcp: &VirtualMCPServer, found: &Lookups) {
    let mut yaml = format!(
        "# Golden children of the case `{case}` (crates/vmcp-operator/tests/rendering.rs).\n"
    );
    for child in children_with(vmcp, found) {
        yaml.push_str("---\n");
        yaml.push_str(&serde_saphyr::to_string(&child.body).expect("YAML"));
    }
    let path = golden_path(case);
    if std::env::var_os("VMCP_UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &yaml).expect("write golden file");
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == yaml,
        "{} differs from the rendering; review and rerun with VMCP_UPDATE_GOLDEN=1:\n{yaml}",
        path.display()
    );
}

fn minimal() -> VirtualMCPServer {
    gateway(
        "demo",
        json!({ "incomingAuth": { "type": "anonymous" }, "groupRef": { "name": "tools" } }),
    )
}

fn customised() -> VirtualMCPServer {
    gateway(
        "custom",
        json!({
            "incomingAuth": { "type": "anonymous" },
            "groupRef": { "name": "tools" },
            "replicas": 2,
            "serviceType": "NodePort",
            "sessionAffinity": "None",
            "imagePullSecrets": [{ "name": "pull" }],
            "config": {
                "aggregation": { "conflictResolution": "prefix" },
                "operational": { "failureHandling": { "statusReportingInterval": "10s" } },
                "server": { "allowedHosts": ["gateway.example.com"] },
            },
            "podTemplateSpec": {
                "metadata": { "labels": { "team": "a" }, "annotations": { "note": "x" } },
                "spec": {
                    "nodeSelector": { "pool": "mcp" },
                    "containers": [
                        { "name": "vmcp", "env": [{ "name": "RUST_LOG", "value": "debug" }], "resources": { "limits": { "memory": "512Mi" } } },
                        { "name": "sidecar", "image": "registry.example/sidecar:1" },
                    ],
                },
            },
        }),
    )
}

fn own_account() -> VirtualMCPServer {
    gateway(
        "byo",
        json!({
            "incomingAuth": { "type": "anonymous" },
            "groupRef": { "name": "tools" },
            "serviceAccount": "platform-vmcp",
        }),
    )
}

/// A gateway whose clients authenticate with the `MCPOIDCConfig`
/// `company-sso` (a client secret, a CA bundle) and whose calls inline
/// Cedar policies authorize, and what the controller found for it.
fn oidc_config_ref() -> (VirtualMCPServer, Lookups) {
    let vmcp = gateway(
        "secure",
        json!({
            "groupRef": { "name": "tools" },
            "incomingAuth": {
                "type": "oidc",
                "oidcConfigRef": {
                    "name": "company-sso",
                    "audience": "secure-gateway",
                    "scopes": ["mcp:tools"],
                    "resourceUrl": "https://secure.example.com/mcp",
                },
                "authzConfig": { "type": "inline", "inline": { "policies": [
                    "permit(principal, action == Action::\"call_tool\", resource);",
                ] } },
            },
        }),
    );
    let oidc: vmcp_crd::MCPOIDCConfig = serde_json::from_value(json!({
        "apiVersion": "toolhive.stacklok.dev/v1beta1",
        "kind": "MCPOIDCConfig",
        "metadata": { "name": "company-sso", "namespace": "team" },
        "spec": { "type": "inline", "inline": {
            "issuer": "https://sso.example.com/realms/eng",
            "clientId": "secure-gateway",
            "clientSecretRef": { "name": "sso-client", "key": "secret" },
            "introspectionUrl": "https://sso.example.com/realms/eng/introspect",
            "caBundleRef": { "configMapRef": { "name": "sso-ca", "key": "root.pem" } },
            "jwksAllowPrivateIP": true,
        } },
    }))
    .expect("a valid MCPOIDCConfig");
    let found = Lookups {
        oidc_config: Some(oidc),
        client_secret_keys: Some(["secret".to_string()].into()),
        ca_bundle: Some(
            [(
                "root.pem".to_string(),
                "-----BEGIN CERTIFICATE-----".to_string(),
            )]
            .into(),
        ),
    };
    (vmcp, found)
}

#[test]
fn golden_oidc_config_ref() {
    let (vmcp, found) = oidc_config_ref();
    check_golden_with("oidc-config-ref", &vmcp, &found);
    let children = children_with(&vmcp, &found);
    let deployment = children
        .iter()
        .find(|c| c.kind == ChildKind::Deployment)
        .expect("a Deployment");
    let typed: Deployment =
        serde_json::from_value(deployment.body.clone()).expect("a valid Deployment");
    let pod = typed.spec.template.spec.expect("pod spec");
    let env = pod.containers[0].env.clone().unwrap_or_default();
    let secret = env
        .iter()
        .find(|e| e.name == "VMCP_OIDC_CLIENT_SECRET")
        .expect("the client secret's env");
    assert_eq!(secret.value, None, "by reference only");
    let key = secret
        .value_from
        .as_ref()
        .and_then(|v| v.secret_key_ref.as_ref())
        .expect("secretKeyRef");
    assert_eq!(
        (key.name.as_str(), key.key.as_str()),
        ("sso-client", "secret")
    );
    let volumes = pod.volumes.unwrap_or_default();
    assert!(volumes.iter().any(|v| v.name == "oidc-ca-bundle"));
}

#[test]
fn golden_minimal() {
    check_golden("minimal", &minimal());
}

#[test]
fn golden_customised() {
    check_golden("customised", &customised());
}

#[test]
fn golden_own_service_account() {
    check_golden("own-service-account", &own_account());
}

#[test]
fn children_are_valid_kubernetes_objects_with_owner_references() {
    for vmcp in [minimal(), customised(), own_account()] {
        for child in children(&vmcp) {
            let body = child.body.clone();
            match child.kind {
                ChildKind::ServiceAccount => {
                    drop(serde_json::from_value::<ServiceAccount>(body).expect("ServiceAccount"))
                }
                ChildKind::Role => drop(serde_json::from_value::<Role>(body).expect("Role")),
                ChildKind::RoleBinding => {
                    drop(serde_json::from_value::<RoleBinding>(body).expect("RoleBinding"))
                }
                ChildKind::Service => {
                    drop(serde_json::from_value::<Service>(body).expect("Service"))
                }
                ChildKind::ConfigMap => {
                    drop(serde_json::from_value::<ConfigMap>(body).expect("ConfigMap"))
                }
                ChildKind::Deployment => {
                    drop(serde_json::from_value::<Deployment>(body).expect("Deployment"))
                }
            }
            let owner = &child.body["metadata"]["ownerReferences"][0];
            assert_eq!(owner["kind"], "VirtualMCPServer", "{:?}", child.kind);
            assert_eq!(owner["uid"], "0000-1111");
            assert_eq!(owner["controller"], true);
            assert!(child.body["metadata"]["annotations"][APPLIED_HASH_ANNOTATION].is_string());
            assert_eq!(
                child.body["metadata"]["labels"]["app.kubernetes.io/managed-by"],
                "vmcp-operator"
            );
        }
    }
}

#[test]
fn child_names_are_the_references() {
    let names: Vec<(ChildKind, String)> = children(&minimal())
        .into_iter()
        .map(|c| (c.kind, c.name))
        .collect();
    assert_eq!(
        names,
        [
            (ChildKind::ServiceAccount, "demo-vmcp".to_string()),
            (ChildKind::Role, "demo-vmcp".to_string()),
            (ChildKind::RoleBinding, "demo-vmcp".to_string()),
            (ChildKind::Service, "vmcp-demo".to_string()),
            (ChildKind::ConfigMap, "demo-vmcp-config".to_string()),
            (ChildKind::Deployment, "demo".to_string()),
        ]
    );
}

#[test]
fn rbac_is_the_shipped_runtime_rbac() {
    let vmcp = minimal();
    let owner = Owner::of(&vmcp).expect("metadata");
    let built = vmcp_crd::rbac::runtime_rbac("demo", "team", "tools");
    let rendered = render::rbac(&owner, "tools");
    let role: Role = serde_json::from_value(rendered[1].body.clone()).expect("Role");
    assert_eq!(
        role.rules, built.role.rules,
        "the Role's rules are deploy/rbac's"
    );
    let binding: RoleBinding =
        serde_json::from_value(rendered[2].body.clone()).expect("RoleBinding");
    assert_eq!(binding.role_ref, built.role_binding.role_ref);
    assert_eq!(binding.subjects, built.role_binding.subjects);
}

fn deployment_of(vmcp: &VirtualMCPServer) -> Value {
    children(vmcp).pop().expect("a Deployment").body
}

fn container<'a>(deployment: &'a Value, name: &str) -> &'a Value {
    deployment["spec"]["template"]["spec"]["containers"]
        .as_array()
        .expect("containers")
        .iter()
        .find(|c| c["name"] == name)
        .expect("the container")
}

#[test]
fn deployment_rules() {
    let minimal = deployment_of(&minimal());
    let custom = deployment_of(&customised());
    let byo = deployment_of(&own_account());
    // (what, holds)
    let table: Vec<(&str, bool)> = vec![
        (
            "replicas left unset for an autoscaler",
            minimal["spec"].get("replicas").is_none(),
        ),
        ("spec.replicas honoured", custom["spec"]["replicas"] == 2),
        (
            "serve on all interfaces",
            container(&minimal, "vmcp")["args"]
                .as_array()
                .expect("args")
                .iter()
                .any(|a| a == "0.0.0.0"),
        ),
        (
            "config hash on the pod template",
            minimal["spec"]["template"]["metadata"]["annotations"][CONFIG_HASH_ANNOTATION]
                .is_string(),
        ),
        (
            "VMCP_CONFIG_GENERATION is the generation",
            container(&minimal, "vmcp")["env"]
                .as_array()
                .expect("env")
                .iter()
                .any(|e| e["name"] == "VMCP_CONFIG_GENERATION" && e["value"] == "3"),
        ),
        (
            "VMCP_POD_NAME from the downward API",
            container(&minimal, "vmcp")["env"]
                .as_array()
                .expect("env")
                .iter()
                .any(|e| {
                    e["name"] == "VMCP_POD_NAME"
                        && e["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
                }),
        ),
        (
            "read-only root",
            container(&minimal, "vmcp")["securityContext"]["readOnlyRootFilesystem"] == true,
        ),
        (
            "non-root",
            minimal["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] == true,
        ),
        (
            "liveness /health",
            container(&minimal, "vmcp")["livenessProbe"]["httpGet"]["path"] == "/health",
        ),
        (
            "readiness /readyz",
            container(&minimal, "vmcp")["readinessProbe"]["httpGet"]["path"] == "/readyz",
        ),
        (
            "resource requests",
            container(&minimal, "vmcp")["resources"]["requests"]["memory"].is_string(),
        ),
        (
            "own ServiceAccount",
            minimal["spec"]["template"]["spec"]["serviceAccountName"] == "demo-vmcp",
        ),
        (
            "spec.serviceAccount honoured",
            byo["spec"]["template"]["spec"]["serviceAccountName"] == "platform-vmcp",
        ),
        (
            "podTemplateSpec env merged into vmcp",
            container(&custom, "vmcp")["env"]
                .as_array()
                .expect("env")
                .iter()
                .any(|e| e["name"] == "RUST_LOG"),
        ),
        (
            "podTemplateSpec keeps the generated env",
            container(&custom, "vmcp")["env"]
                .as_array()
                .expect("env")
                .iter()
                .any(|e| e["name"] == "VMCP_NAME"),
        ),
        (
            "podTemplateSpec limit overrides",
            container(&custom, "vmcp")["resources"]["limits"]["memory"] == "512Mi",
        ),
        (
            "podTemplateSpec keeps the request",
            container(&custom, "vmcp")["resources"]["requests"]["cpu"] == "50m",
        ),
        (
            "podTemplateSpec sidecar added",
            container(&custom, "sidecar")["image"] == "registry.example/sidecar:1",
        ),
        (
            "podTemplateSpec label added",
            custom["spec"]["template"]["metadata"]["labels"]["team"] == "a",
        ),
        (
            "selector labels kept",
            custom["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/instance"]
                == "custom",
        ),
        (
            "image pull secrets",
            custom["spec"]["template"]["spec"]["imagePullSecrets"][0]["name"] == "pull",
        ),
        (
            "runtime image from the settings",
            container(&minimal, "vmcp")["image"] == "registry.example/vmcp:1.2.3",
        ),
    ];
    for (what, holds) in table {
        assert!(holds, "{what}");
    }
}

#[test]
fn a_selector_label_cannot_be_overridden() {
    let vmcp = gateway(
        "sel",
        json!({
            "incomingAuth": { "type": "anonymous" },
            "groupRef": { "name": "tools" },
            "podTemplateSpec": { "metadata": { "labels": { "app.kubernetes.io/instance": "other" } } },
        }),
    );
    let deployment = deployment_of(&vmcp);
    assert_eq!(
        deployment["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/instance"],
        "sel"
    );
    assert_eq!(
        deployment["spec"]["selector"]["matchLabels"]["app.kubernetes.io/instance"],
        "sel"
    );
}

#[test]
fn service_rules() {
    let table = [
        (minimal(), "ClusterIP", "ClientIP"),
        (customised(), "NodePort", "None"),
    ];
    for (vmcp, type_, affinity) in table {
        let owner = Owner::of(&vmcp).expect("metadata");
        let service = render::service(&owner, &vmcp).body;
        assert_eq!(service["spec"]["type"], type_);
        assert_eq!(service["spec"]["sessionAffinity"], affinity);
        assert_eq!(service["spec"]["ports"][0]["name"], "http");
        assert_eq!(service["spec"]["ports"][0]["port"], 4483);
    }
}

#[test]
fn url_has_the_mcp_path() {
    let owner = Owner::of(&minimal()).expect("metadata");
    assert_eq!(
        render::url(&owner, &settings()),
        "http://vmcp-demo.team.svc.cluster.local:4483/mcp"
    );
}

#[test]
fn a_config_or_secret_change_changes_the_pod_template_hash() {
    let base = deployment_of(&minimal());
    let hash = |d: &Value| {
        d["spec"]["template"]["metadata"]["annotations"][CONFIG_HASH_ANNOTATION].clone()
    };
    let changed_config = gateway(
        "demo",
        json!({
            "incomingAuth": { "type": "anonymous" },
            "groupRef": { "name": "tools" },
            "config": { "operational": { "logLevel": "debug" } },
        }),
    );
    assert_ne!(
        hash(&base),
        hash(&deployment_of(&changed_config)),
        "a config change rolls the pods"
    );
    assert_eq!(
        hash(&base),
        hash(&deployment_of(&minimal())),
        "the same config, the same hash"
    );

    let data_a = std::collections::BTreeMap::from([("password".to_string(), b"one".to_vec())]);
    let data_b = std::collections::BTreeMap::from([("password".to_string(), b"two".to_vec())]);
    let a = render::secrets_digest([("redis", Some(&data_a))]);
    let b = render::secrets_digest([("redis", Some(&data_b))]);
    let missing = render::secrets_digest([("redis", None)]);
    assert_ne!(a, b, "a changed Secret rolls the pods");
    assert_ne!(a, missing);
    assert_eq!(a, render::secrets_digest([("redis", Some(&data_a))]));
}

#[test]
fn referenced_secrets_are_found() {
    let vmcp = gateway(
        "sec",
        json!({
            "incomingAuth": { "type": "anonymous" },
            "groupRef": { "name": "tools" },
            "sessionStorage": { "provider": "redis", "address": "redis:6379", "passwordRef": { "name": "redis", "key": "password" } },
            "podTemplateSpec": { "spec": {
                "containers": [{ "name": "vmcp",
                    "env": [{ "name": "API_KEY", "valueFrom": { "secretKeyRef": { "name": "api", "key": "key" } } }],
                    "envFrom": [{ "secretRef": { "name": "bulk" } }] }],
                "volumes": [{ "name": "certs", "secret": { "secretName": "tls" } }],
            } },
        }),
    );
    let owner = Owner::of(&vmcp).expect("metadata");
    let template = render::pod_template(&owner, &vmcp, &settings(), &Default::default());
    let names: Vec<String> = render::referenced_secrets(&vmcp, &template)
        .into_iter()
        .collect();
    assert_eq!(names, ["api", "bulk", "redis", "tls"]);
}
