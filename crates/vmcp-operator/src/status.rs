//! What the operator writes into `status`, and whether it must.
//!
//! The operator applies `status` under its own field manager with only its
//! fields: `url`, `oidcConfigHash` (while an `MCPOIDCConfig` is rendered)
//! and its conditions (`crate::conditions::types::ALL`). The
//! runtime's fields (`phase`, `message`, `discoveredBackends`,
//! `backendCount`, `observedGeneration`, `timestamp`) and conditions
//! (`Ready`, `BackendsDiscovered`, `Degraded`) are never sent, so server-side
//! apply leaves them to the runtime.

use jiff::Timestamp;
use serde_json::{Value, json};
use vmcp_crd::{Condition, ConditionStatus, MCPGroupPhase, MCPGroupStatus, VirtualMCPServerStatus};

use crate::conditions::{Computed, holds, settle};

/// The `status` fields of a `VirtualMCPServer` that the operator owns.
pub const OPERATOR_STATUS_FIELDS: [&str; 3] = ["url", "oidcConfigHash", "conditions"];

/// The operator's part of a `VirtualMCPServer`'s status.
#[derive(Clone, Debug, PartialEq)]
pub struct OperatorStatus {
    /// `status.url`.
    pub url: String,
    /// `status.oidcConfigHash`: the digest of the rendered `MCPOIDCConfig`'s
    /// spec; `None` removes it (no `MCPOIDCConfig` is rendered).
    pub oidc_config_hash: Option<String>,
    /// The operator's conditions, settled.
    pub conditions: Vec<Condition>,
}

impl OperatorStatus {
    /// Whether `current` already holds this: same `url` and
    /// `oidcConfigHash`, each condition present field for field. Then no
    /// write is needed.
    pub fn is_held_by(&self, current: Option<&VirtualMCPServerStatus>) -> bool {
        let Some(current) = current else {
            return false;
        };
        current.url.as_deref() == Some(self.url.as_str())
            && current.oidc_config_hash == self.oidc_config_hash
            && holds(
                current.conditions.as_deref().unwrap_or_default(),
                &self.conditions,
            )
    }

    /// The apply configuration for the `status` subresource of
    /// `namespace/name`.
    pub fn apply_body(&self, name: &str, namespace: &str) -> Value {
        let mut status = json!({ "url": self.url, "conditions": self.conditions });
        if let Some(hash) = &self.oidc_config_hash {
            status["oidcConfigHash"] = json!(hash);
        }
        json!({
            "apiVersion": vmcp_crd::API_VERSION,
            "kind": "VirtualMCPServer",
            "metadata": { "name": name, "namespace": namespace },
            "status": status,
        })
    }
}

/// Condition types of an `MCPGroup`'s status.
pub mod group_types {
    /// The members are listed.
    pub const READY: &str = "Ready";
    /// The printer column `Checked` of the reference.
    pub const SERVERS_CHECKED: &str = "MCPServersChecked";
}

/// Reason of both group conditions.
pub const MEMBERS_LISTED: &str = "MembersListed";

/// The status of an `MCPGroup` with these members (names in any order),
/// keeping transition times from `previous`.
pub fn group_status(
    mut servers: Vec<String>,
    mut entries: Vec<String>,
    generation: i64,
    previous: Option<&MCPGroupStatus>,
    now: Timestamp,
) -> MCPGroupStatus {
    servers.sort();
    servers.dedup();
    entries.sort();
    entries.dedup();
    let message = format!(
        "{} MCPServer(s), {} MCPServerEntry(ies)",
        servers.len(),
        entries.len()
    );
    let previous_conditions = previous
        .and_then(|p| p.conditions.as_deref())
        .unwrap_or_default();
    let computed: Vec<Computed> = [group_types::READY, group_types::SERVERS_CHECKED]
        .into_iter()
        .map(|type_| Computed {
            type_,
            status: ConditionStatus::True,
            reason: MEMBERS_LISTED,
            message: message.clone(),
        })
        .collect();
    let conditions = settle(previous_conditions, &computed, generation, now);
    MCPGroupStatus {
        observed_generation: Some(generation),
        phase: Some(MCPGroupPhase::Ready),
        server_count: Some(i32::try_from(servers.len()).unwrap_or(i32::MAX)),
        servers: Some(servers),
        entry_count: Some(i32::try_from(entries.len()).unwrap_or(i32::MAX)),
        entries: Some(entries),
        remote_proxies: None,
        remote_proxy_count: None,
        conditions: Some(conditions),
    }
}

/// Whether `current` already equals `desired` in every field the operator
/// sends (membership lists compared as sets).
pub fn group_status_held(current: Option<&MCPGroupStatus>, desired: &MCPGroupStatus) -> bool {
    let Some(current) = current else {
        return false;
    };
    let sorted = |list: &Option<Vec<String>>| {
        let mut list = list.clone().unwrap_or_default();
        list.sort();
        list
    };
    current.observed_generation == desired.observed_generation
        && current.phase == desired.phase
        && sorted(&current.servers) == sorted(&desired.servers)
        && current.server_count == desired.server_count
        && sorted(&current.entries) == sorted(&desired.entries)
        && current.entry_count == desired.entry_count
        && holds(
            current.conditions.as_deref().unwrap_or_default(),
            desired.conditions.as_deref().unwrap_or_default(),
        )
}
