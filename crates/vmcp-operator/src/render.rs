//! Every child of a `VirtualMCPServer`, as a pure function of the object,
//! its group and the operator's settings.
//!
//! Each child is the apply configuration the operator sends with
//! server-side apply: only the fields it owns. What the API server or
//! other managers add (defaults, a sidecar injector's labels and
//! containers) is never part of it, so it is never fought over.

use std::collections::BTreeSet;

use serde_json::{Value, json};
use vmcp_crd::VirtualMCPServer;
use vmcp_crd::workload::{ServiceType, SessionAffinity};

use crate::config::{RenderedConfig, digest};
use crate::incoming_auth::PodAdditions;
use crate::merge::merge;
use crate::names::{
    APPLIED_HASH_ANNOTATION, CONFIG_DIR, CONFIG_HASH_ANNOTATION, CONFIG_KEY, CONTAINER, PORT,
    PORT_NAME, config_map_name, deployment_name, labels, selector_labels, service_name,
};
use crate::settings::Settings;

/// The kinds of children, in the order they are applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ChildKind {
    /// The runtime's identity.
    ServiceAccount,
    /// What the runtime may do.
    Role,
    /// Grants the Role to the ServiceAccount.
    RoleBinding,
    /// In front of the pods.
    Service,
    /// `config.yaml`.
    ConfigMap,
    /// The gateway's pods.
    Deployment,
}

impl ChildKind {
    /// All kinds, in apply order.
    pub const ALL: [ChildKind; 6] = [
        Self::ServiceAccount,
        Self::Role,
        Self::RoleBinding,
        Self::Service,
        Self::ConfigMap,
        Self::Deployment,
    ];

    /// `apiVersion` of the kind.
    pub fn api_version(self) -> &'static str {
        match self {
            Self::ServiceAccount | Self::Service | Self::ConfigMap => "v1",
            Self::Role | Self::RoleBinding => "rbac.authorization.k8s.io/v1",
            Self::Deployment => "apps/v1",
        }
    }

    /// `kind` of the kind.
    pub fn kind(self) -> &'static str {
        match self {
            Self::ServiceAccount => "ServiceAccount",
            Self::Role => "Role",
            Self::RoleBinding => "RoleBinding",
            Self::Service => "Service",
            Self::ConfigMap => "ConfigMap",
            Self::Deployment => "Deployment",
        }
    }

    /// Resource name (plural) in the API.
    pub fn plural(self) -> &'static str {
        match self {
            Self::ServiceAccount => "serviceaccounts",
            Self::Role => "roles",
            Self::RoleBinding => "rolebindings",
            Self::Service => "services",
            Self::ConfigMap => "configmaps",
            Self::Deployment => "deployments",
        }
    }
}

/// One child as it is applied.
#[derive(Clone, Debug, PartialEq)]
pub struct Child {
    /// What it is.
    pub kind: ChildKind,
    /// Its name (same namespace as the `VirtualMCPServer`).
    pub name: String,
    /// The apply configuration, with `apiVersion`, `kind`, `metadata`
    /// (owner reference, labels, [`APPLIED_HASH_ANNOTATION`]).
    pub body: Value,
}

/// Why a `VirtualMCPServer` cannot be rendered at all.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    /// `metadata.name`, `namespace` or `uid` is missing (the object does
    /// not come from the API server).
    #[error("the VirtualMCPServer has no {0}")]
    MissingMetadata(&'static str),
}

/// The identity of the owner, taken from its metadata.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner {
    /// `metadata.name`.
    pub name: String,
    /// `metadata.namespace`.
    pub namespace: String,
    /// `metadata.uid`.
    pub uid: String,
    /// `metadata.generation` (0 before the API server set one).
    pub generation: i64,
}

impl Owner {
    /// The owner's identity, or which field is missing.
    pub fn of(vmcp: &VirtualMCPServer) -> Result<Self, RenderError> {
        let meta = &vmcp.metadata;
        Ok(Self {
            name: meta
                .name
                .clone()
                .ok_or(RenderError::MissingMetadata("name"))?,
            namespace: meta
                .namespace
                .clone()
                .ok_or(RenderError::MissingMetadata("namespace"))?,
            uid: meta
                .uid
                .clone()
                .ok_or(RenderError::MissingMetadata("uid"))?,
            generation: meta.generation.unwrap_or(0),
        })
    }

    fn reference(&self) -> Value {
        json!({
            "apiVersion": vmcp_crd::API_VERSION,
            "kind": "VirtualMCPServer",
            "name": self.name,
            "uid": self.uid,
            "controller": true,
            "blockOwnerDeletion": true,
        })
    }
}

fn metadata(owner: &Owner, name: &str) -> Value {
    json!({
        "name": name,
        "namespace": owner.namespace,
        "labels": labels(&owner.name),
        "ownerReferences": [owner.reference()],
    })
}

/// Sets [`APPLIED_HASH_ANNOTATION`] to the digest of `body` without it.
fn finish(kind: ChildKind, name: String, mut body: Value) -> Child {
    let text = body.to_string();
    let hash = digest([text.as_bytes()]);
    if let Some(meta) = body.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert(
            "annotations".to_string(),
            json!({ APPLIED_HASH_ANNOTATION: hash }),
        );
    }
    Child { kind, name, body }
}

fn typed(kind: ChildKind, object: &impl serde::Serialize) -> Value {
    let mut value = serde_json::to_value(object).unwrap_or(Value::Null);
    if let Some(map) = value.as_object_mut() {
        map.insert("apiVersion".into(), kind.api_version().into());
        map.insert("kind".into(), kind.kind().into());
    }
    value
}

/// The runtime's ServiceAccount, Role and RoleBinding: the builders of
/// `vmcp_crd::rbac` (the source of `deploy/rbac/vmcp-runtime.yaml`), with
/// the owner reference added.
pub fn rbac(owner: &Owner, group: &str) -> Vec<Child> {
    let built = vmcp_crd::rbac::runtime_rbac(&owner.name, &owner.namespace, group);
    let objects = [
        (
            ChildKind::ServiceAccount,
            typed(ChildKind::ServiceAccount, &built.service_account),
        ),
        (ChildKind::Role, typed(ChildKind::Role, &built.role)),
        (
            ChildKind::RoleBinding,
            typed(ChildKind::RoleBinding, &built.role_binding),
        ),
    ];
    objects
        .into_iter()
        .map(|(kind, mut body)| {
            let name = body["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            merge(&mut body, &json!({ "metadata": metadata(owner, &name) }));
            finish(kind, name, body)
        })
        .collect()
}

/// The ConfigMap `<name>-vmcp-config` with `config.yaml`.
pub fn config_map(owner: &Owner, config: &RenderedConfig) -> Child {
    let name = config_map_name(&owner.name);
    let body = json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(owner, &name),
        "data": { CONFIG_KEY: config.yaml },
    });
    finish(ChildKind::ConfigMap, name, body)
}

/// The Service `vmcp-<name>`: `spec.serviceType` (default `ClusterIP`), the
/// port 4483 named `http`, session affinity `ClientIP` unless
/// `spec.sessionAffinity: None` (MCP sessions live in one replica).
pub fn service(owner: &Owner, vmcp: &VirtualMCPServer) -> Child {
    let name = service_name(&owner.name);
    let type_ = match vmcp.spec.service_type.unwrap_or(ServiceType::ClusterIp) {
        ServiceType::ClusterIp => "ClusterIP",
        ServiceType::NodePort => "NodePort",
        ServiceType::LoadBalancer => "LoadBalancer",
    };
    let affinity = match vmcp
        .spec
        .session_affinity
        .unwrap_or(SessionAffinity::ClientIp)
    {
        SessionAffinity::ClientIp => "ClientIP",
        SessionAffinity::None => "None",
    };
    let body = json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(owner, &name),
        "spec": {
            "type": type_,
            "selector": selector_labels(&owner.name),
            "sessionAffinity": affinity,
            "ports": [{
                "name": PORT_NAME,
                "port": PORT,
                "targetPort": PORT_NAME,
                "protocol": "TCP",
            }],
        },
    });
    finish(ChildKind::Service, name, body)
}

/// The ServiceAccount the pods run as: `spec.serviceAccount`, or the one
/// the operator creates.
pub fn pod_service_account(owner: &Owner, vmcp: &VirtualMCPServer) -> String {
    vmcp.spec
        .service_account
        .clone()
        .unwrap_or_else(|| vmcp_crd::rbac::service_account_name(&owner.name))
}

/// The pod template before `spec.podTemplateSpec` is merged in, without
/// the config-hash annotation; `extra` adds what the rendered
/// `incomingAuth` needs (the client secret's env, the CA bundle volume).
fn base_pod_template(
    owner: &Owner,
    vmcp: &VirtualMCPServer,
    settings: &Settings,
    extra: &PodAdditions,
) -> Value {
    let args = [
        "serve".to_string(),
        "--config".to_string(),
        format!("{CONFIG_DIR}/{CONFIG_KEY}"),
        "--host".to_string(),
        "0.0.0.0".to_string(),
        "--port".to_string(),
        PORT.to_string(),
        "--drain-seconds".to_string(),
        settings.drain_seconds.to_string(),
    ];
    let mut pod_spec = json!({
        "serviceAccountName": pod_service_account(owner, vmcp),
        "terminationGracePeriodSeconds": i64::from(settings.drain_seconds) + 15,
        "securityContext": {
            "runAsNonRoot": true,
            "runAsUser": 65532,
            "runAsGroup": 65532,
            "seccompProfile": { "type": "RuntimeDefault" },
        },
        "containers": [{
            "name": CONTAINER,
            "image": settings.runtime_image,
            "imagePullPolicy": settings.image_pull_policy,
            "args": args,
            "env": [
                { "name": "VMCP_NAME", "value": owner.name },
                { "name": "VMCP_NAMESPACE", "valueFrom": { "fieldRef": { "fieldPath": "metadata.namespace" } } },
                { "name": "VMCP_CONFIG_GENERATION", "value": owner.generation.to_string() },
                { "name": "VMCP_POD_NAME", "valueFrom": { "fieldRef": { "fieldPath": "metadata.name" } } },
            ],
            "ports": [{ "name": PORT_NAME, "containerPort": PORT, "protocol": "TCP" }],
            "livenessProbe": {
                "httpGet": { "path": "/health", "port": PORT_NAME },
                "periodSeconds": 10,
                "failureThreshold": 3,
            },
            "readinessProbe": {
                "httpGet": { "path": "/readyz", "port": PORT_NAME },
                "periodSeconds": 2,
                "failureThreshold": 1,
            },
            "resources": {
                "requests": { "cpu": settings.cpu_request, "memory": settings.memory_request },
                "limits": { "memory": settings.memory_limit },
            },
            "securityContext": {
                "allowPrivilegeEscalation": false,
                "readOnlyRootFilesystem": true,
                "runAsNonRoot": true,
                "capabilities": { "drop": ["ALL"] },
            },
            "volumeMounts": [
                { "name": "config", "mountPath": CONFIG_DIR, "readOnly": true },
                { "name": "tmp", "mountPath": "/tmp" },
            ],
        }],
        "volumes": [
            { "name": "config", "configMap": { "name": config_map_name(&owner.name) } },
            { "name": "tmp", "emptyDir": {} },
        ],
    });
    let container = &mut pod_spec["containers"][0];
    for (key, items) in [("env", &extra.env), ("volumeMounts", &extra.volume_mounts)] {
        if let Some(list) = container[key].as_array_mut() {
            list.extend(items.iter().cloned());
        }
    }
    if let Some(volumes) = pod_spec["volumes"].as_array_mut() {
        volumes.extend(extra.volumes.iter().cloned());
    }
    if let Some(secrets) = &vmcp.spec.image_pull_secrets {
        let names: Vec<Value> = secrets.iter().map(|s| json!({ "name": s.name })).collect();
        pod_spec["imagePullSecrets"] = Value::Array(names);
    }
    json!({
        "metadata": { "labels": labels(&owner.name) },
        "spec": pod_spec,
    })
}

/// The pod template: the generated one with `spec.podTemplateSpec` merged
/// over it (containers, env, volumes by name), the selector labels kept.
pub fn pod_template(
    owner: &Owner,
    vmcp: &VirtualMCPServer,
    settings: &Settings,
    extra: &PodAdditions,
) -> Value {
    let mut template = base_pod_template(owner, vmcp, settings, extra);
    if let Some(overlay) = vmcp
        .spec
        .pod_template_spec
        .as_ref()
        .filter(|o| o.is_object())
    {
        merge(&mut template, overlay);
    }
    let selector = serde_json::to_value(selector_labels(&owner.name)).unwrap_or(Value::Null);
    merge(
        &mut template,
        &json!({ "metadata": { "labels": selector } }),
    );
    template
}

/// Names of the Secrets the gateway's pods read: `spec.sessionStorage.
/// passwordRef`, and in the pod template env `secretKeyRef`s, `envFrom`
/// `secretRef`s and `secret` volumes. A change in any of them rolls the
/// pods (their content is part of [`CONFIG_HASH_ANNOTATION`]).
pub fn referenced_secrets(vmcp: &VirtualMCPServer, template: &Value) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    if let Some(password) = vmcp
        .spec
        .session_storage
        .as_ref()
        .and_then(|s| s.password_ref.as_ref())
    {
        names.insert(password.name.clone());
    }
    let spec = &template["spec"];
    let containers = ["containers", "initContainers"]
        .iter()
        .filter_map(|key| spec[*key].as_array())
        .flatten();
    for container in containers {
        for env in container["env"].as_array().into_iter().flatten() {
            if let Some(name) = env["valueFrom"]["secretKeyRef"]["name"].as_str() {
                names.insert(name.to_string());
            }
        }
        for from in container["envFrom"].as_array().into_iter().flatten() {
            if let Some(name) = from["secretRef"]["name"].as_str() {
                names.insert(name.to_string());
            }
        }
    }
    for volume in spec["volumes"].as_array().into_iter().flatten() {
        if let Some(name) = volume["secret"]["secretName"].as_str() {
            names.insert(name.to_string());
        }
    }
    names
}

/// The config hash of the pod template: the rendered `config.yaml`, the
/// digest of the referenced Secrets' content (see [`secrets_digest`]) and
/// the digest of mounted ConfigMaps' content when there are any (the OIDC
/// CA bundle, `RenderedIncomingAuth::mounted_digest`).
pub fn config_hash(
    config: &RenderedConfig,
    secrets_digest: &str,
    mounted_digest: Option<&str>,
) -> String {
    match mounted_digest {
        None => digest([config.yaml.as_bytes(), secrets_digest.as_bytes()]),
        Some(mounted) => digest([
            config.yaml.as_bytes(),
            secrets_digest.as_bytes(),
            mounted.as_bytes(),
        ]),
    }
}

/// The content of a Secret (`data`, with `stringData` folded in).
pub type SecretData = std::collections::BTreeMap<String, Vec<u8>>;

/// A digest of Secrets by name and content (`None`: the Secret is missing).
/// Keys are hashed in order, so the digest depends on content only.
pub fn secrets_digest<'a>(
    secrets: impl IntoIterator<Item = (&'a str, Option<&'a SecretData>)>,
) -> String {
    let mut parts: Vec<Vec<u8>> = Vec::new();
    for (name, data) in secrets {
        parts.push(name.as_bytes().to_vec());
        match data {
            None => parts.push(b"<missing>".to_vec()),
            Some(data) => {
                for (key, value) in data {
                    parts.push(key.as_bytes().to_vec());
                    parts.push(value.clone());
                }
            }
        }
    }
    digest(parts.iter().map(Vec::as_slice))
}

/// The Deployment `<name>`: one container `vmcp` running
/// `vmcp serve --config /etc/vmcp/config.yaml --host 0.0.0.0`, the
/// identity from the downward API, probes, a non-root read-only security
/// context, resource requests, the config-hash annotation;
/// `spec.replicas` only when the object sets it (otherwise an autoscaler
/// may own it).
pub fn deployment(
    owner: &Owner,
    vmcp: &VirtualMCPServer,
    settings: &Settings,
    extra: &PodAdditions,
    config_hash: &str,
) -> Child {
    let name = deployment_name(&owner.name);
    let mut template = pod_template(owner, vmcp, settings, extra);
    merge(
        &mut template,
        &json!({ "metadata": { "annotations": { CONFIG_HASH_ANNOTATION: config_hash } } }),
    );
    let mut spec = json!({
        "selector": { "matchLabels": selector_labels(&owner.name) },
        "template": template,
    });
    if let Some(replicas) = vmcp.spec.replicas {
        spec["replicas"] = json!(replicas);
    }
    let body = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(owner, &name),
        "spec": spec,
    });
    finish(ChildKind::Deployment, name, body)
}

/// Where clients reach the gateway: `http://vmcp-<name>.<namespace>.svc.
/// <domain>:4483/mcp`.
pub fn url(owner: &Owner, settings: &Settings) -> String {
    format!(
        "http://{}.{}.svc.{}:{PORT}/mcp",
        service_name(&owner.name),
        owner.namespace,
        settings.cluster_domain
    )
}
