//! References from one custom resource to another object in the same
//! namespace, in the shapes of ToolHive's v1beta1 types (`groupRef`,
//! `telemetryConfigRef`, `oidcConfigRef`, ...).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// A reference to an MCPGroup in the same namespace: `groupRef: {name: ...}`
/// on every kind that joins or serves a group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct GroupRef {
    /// Name of the MCPGroup.
    #[schemars(length(min = 1))]
    pub name: String,
}

/// A reference to another object by name only (an `MCPExternalAuthConfig`,
/// `MCPToolConfig`, `MCPWebhookConfig` or `EmbeddingServer`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct NameRef {
    /// Name of the object.
    pub name: String,
}

/// A reference to an `MCPAuthzConfig` (shared authorization policies).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct AuthzConfigRef {
    /// Name of the MCPAuthzConfig.
    #[schemars(length(min = 1))]
    pub name: String,
}

/// A reference to an `MCPTelemetryConfig` (shared OpenTelemetry settings).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TelemetryConfigRef {
    /// Name of the MCPTelemetryConfig.
    #[schemars(length(min = 1))]
    pub name: String,
    /// Service name reported in telemetry; defaults to the workload's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_name: Option<String>,
}

/// A reference to an `MCPOIDCConfig` (shared OIDC provider settings), with
/// the per-workload overrides.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OidcConfigRef {
    /// Name of the MCPOIDCConfig.
    #[schemars(length(min = 1))]
    pub name: String,
    /// Audience the tokens must carry.
    #[schemars(length(min = 1))]
    pub audience: String,
    /// Resource URL announced in the protected-resource metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_url: Option<String>,
    /// Scopes announced to clients.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-list-type" = "atomic"))]
    pub scopes: Option<Vec<String>>,
}

/// A key of a Secret in the same namespace.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SecretKeyRef {
    /// Name of the Secret.
    pub name: String,
    /// Key in the Secret.
    pub key: String,
}

/// A key of a ConfigMap (the shape of `corev1.ConfigMapKeySelector`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ConfigMapKeyRef {
    /// Name of the ConfigMap.
    #[serde(default)]
    #[schemars(extend("default" = ""))]
    pub name: String,
    /// Key in the ConfigMap.
    pub key: String,
    /// Whether the ConfigMap or its key may be missing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub optional: Option<bool>,
}

/// A pull secret by name (the shape of `corev1.LocalObjectReference`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct LocalObjectRef {
    /// Name of the Secret.
    #[serde(default)]
    #[schemars(extend("default" = ""))]
    pub name: String,
}
