//! The runtime configuration rendered from a `VirtualMCPServer`, and its
//! validation (the same as `vmcp validate`).
//!
//! `spec.config` holds the fields of the vmcp configuration file; the
//! operator adds what the object itself decides: `name` (the object's name
//! unless `spec.config.name` says otherwise), `groupRef` (always
//! `spec.groupRef.name`) and the Service's names in
//! `server.allowedHosts`, so clients inside the cluster pass the `Host`
//! check, and the `incomingAuth` rendered from `spec.incomingAuth`
//! ([`crate::incoming_auth`]), whose keys the author's
//! `spec.config.incomingAuth` keys replace.

use std::fmt::Write as _;

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use vmcp_config::{ConfigError, HumanDuration};

use crate::incoming_auth::RenderedIncomingAuth;
use crate::names::service_name;

/// The rendered configuration of one gateway.
#[derive(Clone, Debug, PartialEq)]
pub struct RenderedConfig {
    /// The `config.yaml` the ConfigMap holds.
    pub yaml: String,
    /// The loaded configuration, when it is valid.
    pub parsed: Option<vmcp_config::Config>,
    /// Every problem, as `spec.config.<path>: <message>`; empty when valid.
    pub issues: Vec<String>,
}

impl RenderedConfig {
    /// Whether `vmcp validate` would accept it.
    pub fn is_valid(&self) -> bool {
        self.issues.is_empty()
    }

    /// The heartbeat of the runtime's status reports
    /// (`operational.failureHandling.statusReportingInterval`), the default
    /// when the configuration is invalid.
    pub fn status_reporting_interval(&self) -> std::time::Duration {
        self.parsed.as_ref().map_or_else(
            || {
                vmcp_config::FailureHandling::default()
                    .status_reporting_interval
                    .0
            },
            |config| {
                let HumanDuration(interval) = config
                    .operational
                    .failure_handling
                    .status_reporting_interval;
                interval
            },
        )
    }
}

/// The inputs of the configuration: the object's identity and spec parts.
#[derive(Clone, Debug)]
pub struct ConfigInputs<'a> {
    /// The `VirtualMCPServer`'s name.
    pub name: &'a str,
    /// Its namespace.
    pub namespace: &'a str,
    /// `spec.groupRef.name`.
    pub group: &'a str,
    /// `spec.config`, as written.
    pub config: Option<&'a Value>,
    /// The cluster DNS domain.
    pub cluster_domain: &'a str,
    /// The Service's ClusterIP, once known (clients may use it as `Host`).
    pub cluster_ip: Option<&'a str>,
    /// `spec.incomingAuth.type` is `oidc`.
    pub requires_oidc: bool,
    /// `spec.incomingAuth` rendered ([`crate::incoming_auth::render_incoming_auth`]).
    pub incoming_auth: Option<&'a RenderedIncomingAuth>,
}

/// The `Host` names of the gateway's Service, short to fully qualified.
pub fn service_hosts(name: &str, namespace: &str, cluster_domain: &str) -> Vec<String> {
    let service = service_name(name);
    vec![
        service.clone(),
        format!("{service}.{namespace}"),
        format!("{service}.{namespace}.svc"),
        format!("{service}.{namespace}.svc.{cluster_domain}"),
    ]
}

/// Renders and validates the configuration.
pub fn render_config(inputs: &ConfigInputs<'_>) -> RenderedConfig {
    let mut issues = Vec::new();
    let mut root = match inputs.config {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(map)) => map.clone(),
        Some(_) => {
            issues.push("spec.config: must be an object".to_string());
            Map::new()
        }
    };
    root.entry("name")
        .or_insert_with(|| Value::String(inputs.name.to_string()));
    root.insert(
        "groupRef".to_string(),
        Value::String(inputs.group.to_string()),
    );
    add_allowed_hosts(&mut root, inputs);
    if let Some(rendered) = inputs.incoming_auth {
        issues.extend(rendered.issues.iter().cloned());
        add_incoming_auth(&mut root, rendered);
    }
    let value = Value::Object(root);
    // JSON data always serializes to YAML.
    let yaml = serde_saphyr::to_string(&value).unwrap_or_default();
    let parsed = if issues.is_empty() {
        match vmcp_config::load_str(&yaml, "spec.config") {
            Ok(config) => Some(config),
            Err(error) => {
                let origin = inputs.incoming_auth.and_then(|r| r.oidc_origin.as_deref());
                issues.extend(describe(&error, origin));
                None
            }
        }
    } else {
        None
    };
    if inputs.requires_oidc
        && let Some(config) = &parsed
        && config.incoming_auth.kind != vmcp_config::IncomingAuthType::Oidc
    {
        // Never serve clients unauthenticated when the object asks for
        // OIDC (a safety net: the renderer already refuses an author's
        // `type` other than oidc).
        issues.push(format!(
            "spec.incomingAuth: type oidc, but the rendered configuration's incomingAuth.type is {}; the gateway is never served without OIDC",
            config.incoming_auth.kind.as_str()
        ));
    }
    RenderedConfig {
        yaml,
        parsed,
        issues,
    }
}

fn add_allowed_hosts(root: &mut Map<String, Value>, inputs: &ConfigInputs<'_>) {
    let server = root
        .entry("server")
        .or_insert_with(|| Value::Object(Map::new()));
    // A non-object `server` is left for validation to report.
    let Value::Object(server) = server else {
        return;
    };
    let hosts = server
        .entry("allowedHosts")
        .or_insert_with(|| Value::Array(Vec::new()));
    let Value::Array(hosts) = hosts else {
        return;
    };
    let mut wanted = service_hosts(inputs.name, inputs.namespace, inputs.cluster_domain);
    wanted.extend(inputs.cluster_ip.map(str::to_string));
    for host in wanted {
        let host = Value::String(host);
        if !hosts.contains(&host) {
            hosts.push(host);
        }
    }
}

/// Puts the rendered `incomingAuth` under the author's keys: a key of
/// `spec.config.incomingAuth` wins; a non-object section is left as
/// written for validation to report.
fn add_incoming_auth(root: &mut Map<String, Value>, rendered: &RenderedIncomingAuth) {
    let Some(section) = &rendered.section else {
        return;
    };
    let merged = match root.remove("incomingAuth") {
        None | Some(Value::Null) => Value::Object(section.clone()),
        Some(Value::Object(author)) => {
            let mut merged = section.clone();
            merged.extend(author);
            Value::Object(merged)
        }
        Some(other) => other,
    };
    root.insert("incomingAuth".to_string(), merged);
}

/// The problems of a configuration that did not load, with field paths
/// under `spec.config` (line numbers of the rendered file mean nothing to
/// the author of the object, so they are left out). Problems of an
/// `incomingAuth.oidc` rendered from an `MCPOIDCConfig` name that object
/// (`oidc_origin`) instead, since the author did not write it in
/// `spec.config`.
fn describe(error: &ConfigError, oidc_origin: Option<&str>) -> Vec<String> {
    match error {
        ConfigError::Invalid { issues, .. } => issues
            .iter()
            .map(|issue| {
                let path = issue.path.to_string();
                match oidc_origin {
                    _ if issue.path.0.is_empty() => format!("spec.config: {}", issue.message),
                    Some(origin) if path.starts_with("incomingAuth.oidc") => format!(
                        "spec.incomingAuth.oidcConfigRef ({origin}): rendered {path}: {}",
                        issue.message
                    ),
                    _ => format!("spec.config.{path}: {}", issue.message),
                }
            })
            .collect(),
        ConfigError::Syntax { message, .. } => vec![format!("spec.config: {message}")],
        ConfigError::Io { .. } => vec!["spec.config: cannot be read".to_string()],
    }
}

/// A short hex digest of `parts`, each length-prefixed so that no two
/// different lists hash alike.
pub fn digest<'a>(parts: impl IntoIterator<Item = &'a [u8]>) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part);
    }
    let bytes = hasher.finalize();
    let mut out = String::with_capacity(32);
    for byte in bytes.iter().take(16) {
        let _ = write!(out, "{byte:02x}");
    }
    out
}
