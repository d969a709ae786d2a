//! `spec.incomingAuth` rendered into the gateway's `incomingAuth`
//! configuration section, as a pure function of the object and of what the
//! controller looked up (the referenced `MCPOIDCConfig`, and the keys of
//! the Secret and ConfigMap that one names).
//!
//! - `type: oidc` with `oidcConfigRef` becomes `incomingAuth: {type: oidc,
//!   oidc: {...}}`: the issuer, endpoints, client ID and address rules from
//!   the `MCPOIDCConfig` (`type: inline`), the audience, scopes and resource
//!   URL from the reference. A client secret reaches the container as the
//!   environment variable [`CLIENT_SECRET_ENV`] through `valueFrom.
//!   secretKeyRef` and the configuration names only that variable
//!   (`clientSecretEnv`), so no secret is ever in the ConfigMap. A CA
//!   bundle ConfigMap is mounted at [`CA_BUNDLE_DIR`] and named by
//!   `caBundlePath`.
//! - `authzConfig` `{type: inline, inline: {policies}}` becomes
//!   `incomingAuth.authz: {type: cedar, policies}`.
//! - `spec.config.incomingAuth`, when the author wrote it, wins key by key
//!   (`type`, `oidc`, `authz`): a key set there is used as written and the
//!   operator renders nothing for it (an `oidc` written there means the
//!   `MCPOIDCConfig` is not read at all).
//!
//! Whatever cannot be rendered faithfully (a missing `MCPOIDCConfig`,
//! Secret or key, a source vmcp does not implement) is an issue: the
//! object gets `ConfigValid=False` and is not provisioned, so a gateway
//! that asks for OIDC is never served anonymously or with weaker checks.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value, json};
use vmcp_crd::refs::OidcConfigRef;
use vmcp_crd::{IncomingAuthType, MCPOIDCConfig, OidcConfigSourceType, VirtualMCPServer};

use crate::config::digest;

/// The environment variable that carries the OIDC client secret (the
/// reference operator's name for it).
pub const CLIENT_SECRET_ENV: &str = "VMCP_OIDC_CLIENT_SECRET";
/// Where the CA bundle ConfigMap is mounted.
pub const CA_BUNDLE_DIR: &str = "/etc/vmcp-oidc-ca";
/// The file name of the CA bundle under [`CA_BUNDLE_DIR`].
pub const CA_BUNDLE_FILE: &str = "ca.crt";
/// The pod volume of the CA bundle.
pub const CA_BUNDLE_VOLUME: &str = "oidc-ca-bundle";
/// The ConfigMap key read when `caBundleRef.configMapRef.key` is empty.
pub const DEFAULT_CA_BUNDLE_KEY: &str = "ca.crt";

/// The content of a ConfigMap (`data`).
pub type ConfigMapData = BTreeMap<String, String>;

/// What the controller found for the references of one object.
#[derive(Clone, Debug, Default)]
pub struct Lookups {
    /// The `MCPOIDCConfig` of [`oidc_config_to_read`], if it exists.
    pub oidc_config: Option<MCPOIDCConfig>,
    /// The keys of the Secret its `inline.clientSecretRef` names (`None`:
    /// the Secret does not exist).
    pub client_secret_keys: Option<BTreeSet<String>>,
    /// The content of the ConfigMap its `inline.caBundleRef` names
    /// (`None`: the ConfigMap does not exist).
    pub ca_bundle: Option<ConfigMapData>,
}

/// Extra parts of the gateway's pod: environment variables, volumes and
/// their mounts in the gateway's container.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PodAdditions {
    /// Appended to the container's `env`.
    pub env: Vec<Value>,
    /// Appended to the pod's `volumes`.
    pub volumes: Vec<Value>,
    /// Appended to the container's `volumeMounts`.
    pub volume_mounts: Vec<Value>,
}

/// The rendered `incomingAuth`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RenderedIncomingAuth {
    /// What the object decides of the `incomingAuth` section; the author's
    /// `spec.config.incomingAuth` keys replace its keys. `None`: nothing.
    pub section: Option<Map<String, Value>>,
    /// Env, volumes and mounts the section relies on.
    pub pod: PodAdditions,
    /// Why it cannot be rendered, as `spec.<path>: <message>`.
    pub issues: Vec<String>,
    /// Where the rendered `oidc` came from (`MCPOIDCConfig <name>`), to
    /// name it in validation messages.
    pub oidc_origin: Option<String>,
    /// Digest of the `MCPOIDCConfig`'s spec (`status.oidcConfigHash`),
    /// when it was rendered.
    pub oidc_config_hash: Option<String>,
    /// Digest of the mounted CA bundle's content, when one is mounted
    /// (rolls the pods when it changes, like a referenced Secret does).
    pub mounted_digest: Option<String>,
    /// A referenced Secret or ConfigMap is missing. Those kinds are not
    /// watched (that would need `list`/`watch` of every Secret), so the
    /// controller looks again sooner than its resync.
    pub awaiting_reference: bool,
}

/// The name of the `MCPOIDCConfig` the controller must read: the one of
/// `spec.incomingAuth.oidcConfigRef` when the type is `oidc` and the author
/// did not write `spec.config.incomingAuth.oidc` themselves.
pub fn oidc_config_to_read(vmcp: &VirtualMCPServer) -> Option<&str> {
    let incoming = &vmcp.spec.incoming_auth;
    if incoming.type_ != IncomingAuthType::Oidc || author_sets(vmcp, "oidc") {
        return None;
    }
    incoming.oidc_config_ref.as_ref().map(|r| r.name.as_str())
}

/// Whether `spec.config.incomingAuth` sets `key` (a non-object section
/// counts as setting everything: validation reports it as written).
fn author_sets(vmcp: &VirtualMCPServer, key: &str) -> bool {
    match vmcp
        .spec
        .config
        .as_ref()
        .and_then(|c| c.get("incomingAuth"))
    {
        None | Some(Value::Null) => false,
        Some(Value::Object(section)) => section.contains_key(key),
        Some(_) => true,
    }
}

/// `spec.config.incomingAuth.type`, when the author wrote a string there.
fn author_type(vmcp: &VirtualMCPServer) -> Option<&str> {
    vmcp.spec
        .config
        .as_ref()?
        .get("incomingAuth")?
        .get("type")?
        .as_str()
}

/// Renders `spec.incomingAuth` with what the controller found.
pub fn render_incoming_auth(vmcp: &VirtualMCPServer, found: &Lookups) -> RenderedIncomingAuth {
    let incoming = &vmcp.spec.incoming_auth;
    let mut out = RenderedIncomingAuth::default();
    let mut section = Map::new();
    if incoming.type_ == IncomingAuthType::Oidc {
        if let Some(other) = author_type(vmcp).filter(|t| *t != "oidc") {
            out.issues.push(format!(
                "spec.config.incomingAuth.type: {other}, but spec.incomingAuth.type is oidc; remove spec.config.incomingAuth.type or set it to oidc"
            ));
        }
        section.insert("type".into(), "oidc".into());
        if !author_sets(vmcp, "oidc") {
            match &incoming.oidc_config_ref {
                None => out.issues.push(
                    "spec.incomingAuth.oidcConfigRef: required when type is oidc".to_string(),
                ),
                Some(reference) => {
                    if let Some(oidc) = render_oidc(reference, found, &mut out) {
                        section.insert("oidc".into(), Value::Object(oidc));
                    }
                }
            }
        }
    }
    if !author_sets(vmcp, "authz") {
        if incoming.authz_config_ref.is_some() {
            out.issues.push(
                "spec.incomingAuth.authzConfigRef: MCPAuthzConfig is not supported by vmcp-operator yet; use spec.incomingAuth.authzConfig (type: inline) or spec.config.incomingAuth.authz".to_string(),
            );
        } else if let Some(authz) = &incoming.authz_config {
            match render_authz(authz) {
                Ok(authz) => {
                    section.insert("authz".into(), authz);
                }
                Err(issue) => out.issues.push(issue),
            }
        }
    }
    if !section.is_empty() {
        out.section = Some(section);
    }
    out
}

/// The `oidc` subsection from the reference and its `MCPOIDCConfig`; adds
/// the env, volume and mount it needs, or the issues.
fn render_oidc(
    reference: &OidcConfigRef,
    found: &Lookups,
    out: &mut RenderedIncomingAuth,
) -> Option<Map<String, Value>> {
    let name = &reference.name;
    let origin = format!("MCPOIDCConfig {name}");
    let at = format!("spec.incomingAuth.oidcConfigRef ({origin})");
    let Some(config) = &found.oidc_config else {
        out.issues.push(format!(
            "spec.incomingAuth.oidcConfigRef: the MCPOIDCConfig {name} does not exist in this namespace"
        ));
        return None;
    };
    let inline = match (config.spec.type_, &config.spec.inline) {
        (OidcConfigSourceType::Inline, Some(inline)) => inline,
        (OidcConfigSourceType::Inline, None) => {
            out.issues
                .push(format!("{at}: type inline, but spec.inline is missing"));
            return None;
        }
        (OidcConfigSourceType::KubernetesServiceAccount, _) => {
            out.issues.push(format!(
                "{at}: type kubernetesServiceAccount is not supported by vmcp-operator yet; use type inline with the cluster's issuer, or spec.config.incomingAuth.oidc"
            ));
            return None;
        }
    };
    let issues_before = out.issues.len();
    if inline
        .jwks_auth_token_path
        .as_deref()
        .is_some_and(|p| !p.is_empty())
    {
        out.issues.push(format!(
            "{at}: inline.jwksAuthTokenPath is not supported by vmcp (it sends no token to the issuer)"
        ));
    }
    let mut oidc = Map::new();
    oidc.insert("issuer".into(), inline.issuer.clone().into());
    oidc.insert("audience".into(), reference.audience.clone().into());
    let mut put = |key: &str, value: Option<&String>| {
        if let Some(value) = value.filter(|v| !v.is_empty()) {
            oidc.insert(key.into(), value.clone().into());
        }
    };
    put("clientId", inline.client_id.as_ref());
    put("resource", reference.resource_url.as_ref());
    put("jwksUrl", inline.jwks_url.as_ref());
    put("introspectionUrl", inline.introspection_url.as_ref());
    if let Some(scopes) = reference.scopes.as_ref().filter(|s| !s.is_empty()) {
        oidc.insert("scopes".into(), json!(scopes));
    }
    // As in the reference: either private-address switch opens every
    // request to the issuer (discovery, keys, introspection) to private
    // addresses.
    let jwks_private = inline.jwks_allow_private_ip == Some(true);
    let resource_private = inline.protected_resource_allow_private_ip == Some(true);
    if jwks_private || resource_private {
        oidc.insert("jwksAllowPrivateIp".into(), true.into());
    }
    if resource_private {
        oidc.insert("protectedResourceAllowPrivateIp".into(), true.into());
    }
    if inline.insecure_allow_http == Some(true) {
        oidc.insert("insecureAllowHttp".into(), true.into());
    }
    if let Some(secret) = &inline.client_secret_ref {
        match &found.client_secret_keys {
            None => {
                out.awaiting_reference = true;
                out.issues.push(format!(
                    "{at}: inline.clientSecretRef: the Secret {:?} does not exist in this namespace",
                    secret.name
                ));
            }
            Some(keys) if !keys.contains(&secret.key) => {
                out.awaiting_reference = true;
                out.issues.push(format!(
                    "{at}: inline.clientSecretRef: the Secret {:?} has no key {:?}",
                    secret.name, secret.key
                ));
            }
            Some(_) => {
                oidc.insert("clientSecretEnv".into(), CLIENT_SECRET_ENV.into());
                out.pod.env.push(json!({
                    "name": CLIENT_SECRET_ENV,
                    "valueFrom": { "secretKeyRef": { "name": secret.name, "key": secret.key } },
                }));
            }
        }
    }
    if let Some(map) = inline
        .ca_bundle_ref
        .as_ref()
        .and_then(|c| c.config_map_ref.as_ref())
    {
        let key = if map.key.is_empty() {
            DEFAULT_CA_BUNDLE_KEY
        } else {
            map.key.as_str()
        };
        let optional = map.optional == Some(true);
        match &found.ca_bundle {
            Some(data) if data.contains_key(key) => {
                let pem = data.get(key).map(String::as_bytes).unwrap_or_default();
                out.mounted_digest = Some(digest([map.name.as_bytes(), key.as_bytes(), pem]));
                oidc.insert(
                    "caBundlePath".into(),
                    format!("{CA_BUNDLE_DIR}/{CA_BUNDLE_FILE}").into(),
                );
                out.pod.volumes.push(json!({
                    "name": CA_BUNDLE_VOLUME,
                    "configMap": { "name": map.name, "items": [{ "key": key, "path": CA_BUNDLE_FILE }] },
                }));
                out.pod.volume_mounts.push(json!({
                    "name": CA_BUNDLE_VOLUME, "mountPath": CA_BUNDLE_DIR, "readOnly": true,
                }));
            }
            // An optional bundle that is absent: the system roots only.
            _ if optional => {}
            None => {
                out.awaiting_reference = true;
                out.issues.push(format!(
                    "{at}: inline.caBundleRef: the ConfigMap {:?} does not exist in this namespace",
                    map.name
                ));
            }
            Some(_) => {
                out.awaiting_reference = true;
                out.issues.push(format!(
                    "{at}: inline.caBundleRef: the ConfigMap {:?} has no key {key:?}",
                    map.name
                ));
            }
        }
    }
    if out.issues.len() > issues_before {
        return None;
    }
    let spec = serde_json::to_string(&config.spec).unwrap_or_default();
    out.oidc_config_hash = Some(digest([spec.as_bytes()]));
    out.oidc_origin = Some(origin);
    Some(oidc)
}

/// `spec.incomingAuth.authzConfig` (the reference's shape: `type` `inline`
/// or `configMap`, default `configMap`) as the configuration's `authz`.
fn render_authz(authz: &Value) -> Result<Value, String> {
    const AT: &str = "spec.incomingAuth.authzConfig";
    match authz
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or("configMap")
    {
        "inline" => {
            let inline = &authz["inline"];
            let Some(policies) = inline["policies"].as_array() else {
                return Err(format!(
                    "{AT}.inline.policies: a list of Cedar policies is required"
                ));
            };
            let policies: Option<Vec<&str>> = policies.iter().map(Value::as_str).collect();
            let Some(policies) = policies else {
                return Err(format!(
                    "{AT}.inline.policies: each policy must be a string"
                ));
            };
            let entities = inline["entitiesJson"].as_str().map(str::trim);
            if entities.is_some_and(|e| !e.is_empty() && e != "[]") {
                return Err(format!(
                    "{AT}.inline.entitiesJson: Cedar entities are not supported by vmcp; write policies on the caller's claims"
                ));
            }
            Ok(json!({ "type": "cedar", "policies": policies }))
        }
        "configMap" => Err(format!(
            "{AT}: type configMap is not supported by vmcp-operator yet; use type inline or spec.config.incomingAuth.authz"
        )),
        other => Err(format!(
            "{AT}.type: {other:?} is not one of inline, configMap"
        )),
    }
}
