//! `MCPOIDCConfig`: shared OIDC provider settings that a `VirtualMCPServer`
//! (`spec.incomingAuth.oidcConfigRef`) references by name in its own
//! namespace. The per-gateway parts (`audience`, `scopes`, `resourceUrl`)
//! live in the reference, not here.
//!
//! Field names and shapes follow ToolHive's v1beta1 type, including its
//! spellings `jwksAllowPrivateIP`, `protectedResourceAllowPrivateIP` and
//! `insecureAllowHTTP` (the vmcp configuration file spells them
//! `...Ip` / `...Http`). vmcp-operator reads these objects and never writes
//! them or their status.

// The `printcolumn(...)` entries of `#[kube]` repeat `type_ = "string"`,
// which clippy mistakes for duplicated attributes.
#![allow(clippy::duplicated_attributes)]

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::condition::Condition;
use crate::refs::{ConfigMapKeyRef, SecretKeyRef};

/// Desired state of a shared OIDC provider configuration: exactly one of
/// `kubernetesServiceAccount` and `inline`, as `type` says.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "toolhive.stacklok.dev",
    version = "v1beta1",
    kind = "MCPOIDCConfig",
    plural = "mcpoidcconfigs",
    shortname = "mcpoidc",
    category = "toolhive",
    namespaced,
    status = "MCPOIDCConfigStatus",
    derive = "PartialEq",
    doc = "MCPOIDCConfig holds OIDC provider settings shared by the workloads of one namespace.",
    printcolumn(name = "Source", type_ = "string", json_path = ".spec.type"),
    printcolumn(
        name = "Valid",
        type_ = "string",
        json_path = ".status.conditions[?(@.type=='Valid')].status"
    ),
    printcolumn(
        name = "References",
        type_ = "integer",
        json_path = ".status.referenceCount"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "self.type == 'kubernetesServiceAccount' ? has(self.kubernetesServiceAccount) : !has(self.kubernetesServiceAccount)",
        "message": "kubernetesServiceAccount must be set when type is 'kubernetesServiceAccount', and must not be set otherwise",
    },
    {
        "rule": "self.type == 'inline' ? has(self.inline) : !has(self.inline)",
        "message": "inline must be set when type is 'inline', and must not be set otherwise",
    },
]))]
pub struct MCPOIDCConfigSpec {
    /// Where the settings come from: `kubernetesServiceAccount` or `inline`.
    #[serde(rename = "type")]
    pub type_: OidcConfigSourceType,
    /// Validation of Kubernetes service account tokens (for
    /// `kubernetesServiceAccount`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubernetes_service_account: Option<KubernetesServiceAccountOidcConfig>,
    /// The provider's settings, written out (for `inline`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inline: Option<InlineOidcConfig>,
}

/// The sources of an `MCPOIDCConfig`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum OidcConfigSourceType {
    /// Kubernetes service account tokens, checked against the cluster's
    /// issuer.
    #[serde(rename = "kubernetesServiceAccount")]
    KubernetesServiceAccount,
    /// The settings in `inline`.
    #[serde(rename = "inline")]
    Inline,
}

impl OidcConfigSourceType {
    /// The name used in manifests.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::KubernetesServiceAccount => "kubernetesServiceAccount",
            Self::Inline => "inline",
        }
    }
}

/// Validation of Kubernetes service account tokens (the audience comes
/// from each workload's reference).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KubernetesServiceAccountOidcConfig {
    /// The service account whose tokens are accepted; the pod's own when
    /// unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account: Option<String>,
    /// The service account's namespace; the workload's when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The cluster's token issuer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("default" = "https://kubernetes.default.svc"))]
    pub issuer: Option<String>,
    /// Where the keys are; from discovery when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_url: Option<String>,
    /// The token introspection endpoint; from discovery when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub introspection_url: Option<String>,
    /// Use the pod's service account CA bundle and token towards the
    /// issuer (true when unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub use_cluster_auth: Option<bool>,
}

/// An OIDC provider's settings shared by several workloads (the audience
/// and scopes come from each workload's reference).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InlineOidcConfig {
    /// The issuer URL: tokens carry it as `iss`, and its discovery document
    /// names the keys.
    pub issuer: String,
    /// Where the keys are; from discovery when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_url: Option<String>,
    /// The RFC 7662 introspection endpoint, for opaque tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub introspection_url: Option<String>,
    /// The workload's OAuth client ID (for introspection).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// The key of a Secret (same namespace) holding the client secret. It
    /// reaches the gateway as an environment variable, never through a
    /// ConfigMap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret_ref: Option<SecretKeyRef>,
    /// A ConfigMap with extra CA certificates trusted for the issuer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_bundle_ref: Option<CaBundleSource>,
    /// A file with a bearer token sent with JWKS and discovery requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_auth_token_path: Option<String>,
    /// Allow the discovery, JWKS and introspection endpoints on private
    /// addresses.
    #[serde(
        rename = "jwksAllowPrivateIP",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(extend("default" = false))]
    pub jwks_allow_private_ip: Option<bool>,
    /// Allow the protected-resource metadata's authorization server on a
    /// private address.
    #[serde(
        rename = "protectedResourceAllowPrivateIP",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(extend("default" = false))]
    pub protected_resource_allow_private_ip: Option<bool>,
    /// Allow `http://` issuer URLs (development only).
    #[serde(
        rename = "insecureAllowHTTP",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(extend("default" = false))]
    pub insecure_allow_http: Option<bool>,
}

/// Where a CA bundle comes from.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CaBundleSource {
    /// A ConfigMap key holding PEM certificates (`ca.crt` when the key is
    /// empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map_ref: Option<ConfigMapKeyRef>,
}

/// Observed state of an `MCPOIDCConfig` (written by ToolHive's operator;
/// vmcp-operator leaves it alone).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MCPOIDCConfigStatus {
    /// Conditions, keyed by `type`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::conditions")]
    pub conditions: Option<Vec<Condition>>,
    /// The generation these conditions were computed for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Hash of the spec, for change detection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_hash: Option<String>,
    /// Number of workloads referencing this object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference_count: Option<i32>,
    /// The workloads referencing this object, keyed by `name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::workload_references")]
    pub referencing_workloads: Option<Vec<WorkloadReference>>,
}

/// A workload that references a shared configuration object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct WorkloadReference {
    /// `MCPServer`, `VirtualMCPServer` or `MCPRemoteProxy`.
    pub kind: WorkloadKind,
    /// Name of the workload.
    #[schemars(length(min = 1))]
    pub name: String,
}

/// Kinds of workloads that reference shared configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum WorkloadKind {
    /// An `MCPServer`.
    #[serde(rename = "MCPServer")]
    McpServer,
    /// A `VirtualMCPServer`.
    #[serde(rename = "VirtualMCPServer")]
    VirtualMcpServer,
    /// An `MCPRemoteProxy`.
    #[serde(rename = "MCPRemoteProxy")]
    McpRemoteProxy,
}
