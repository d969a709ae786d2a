//! Audit log settings (`audit`), with the field names of ToolHive's audit
//! configuration (`pkg/audit`): one structured event per MCP operation.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The audit log: one JSON line per MCP operation the gateway handles.
///
/// Off unless the section is present; present, it is on unless `enabled`
/// is `false` (ToolHive vMCP turns audit on by the section's presence).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AuditConfig {
    /// Whether events are written. Default true when the section is present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// The `component` of every event. Default `vmcp-server`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub component: Option<String>,
    /// Only these event types are written; empty: all of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub event_types: Vec<AuditEventType>,
    /// These event types are never written (wins over `eventTypes`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude_event_types: Vec<AuditEventType>,
    /// Add the request's parameters (e.g. a tool call's arguments), with
    /// secret-looking fields redacted, cut to `maxDataSize`. Default false.
    #[serde(default)]
    pub include_request_data: bool,
    /// Add the result, with secret-looking fields redacted, cut to
    /// `maxDataSize`. Default false.
    #[serde(default)]
    pub include_response_data: bool,
    /// Record a backend's JSON-RPC error or a tool result with `isError` as
    /// outcome `application_error` (otherwise `success`). Default true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detect_application_errors: Option<bool>,
    /// Most bytes of request data and of response data in one event.
    /// Default 1024.
    #[serde(default = "default_max_data_size")]
    pub max_data_size: u32,
    /// Append events to this file (created with mode 0600); unset: stdout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_file: Option<String>,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            enabled: None,
            component: None,
            event_types: Vec::new(),
            exclude_event_types: Vec::new(),
            include_request_data: false,
            include_response_data: false,
            detect_application_errors: None,
            max_data_size: default_max_data_size(),
            log_file: None,
        }
    }
}

impl AuditConfig {
    /// The component name used when `component` is unset (as ToolHive vMCP).
    pub const DEFAULT_COMPONENT: &'static str = "vmcp-server";
    /// The largest accepted `maxDataSize` (1 MiB), so one event stays a
    /// bounded line.
    pub const MAX_DATA_SIZE_LIMIT: u32 = 1024 * 1024;

    /// Whether events are written.
    pub fn is_enabled(&self) -> bool {
        self.enabled.unwrap_or(true)
    }

    /// The component name of the events.
    pub fn component(&self) -> &str {
        self.component.as_deref().unwrap_or(Self::DEFAULT_COMPONENT)
    }

    /// Whether application errors are told apart from successes.
    pub fn detects_application_errors(&self) -> bool {
        self.detect_application_errors.unwrap_or(true)
    }

    /// Whether events of `kind` are written (`excludeEventTypes` first,
    /// then `eventTypes` if any are listed).
    pub fn audits(&self, kind: AuditEventType) -> bool {
        self.is_enabled()
            && !self.exclude_event_types.contains(&kind)
            && (self.event_types.is_empty() || self.event_types.contains(&kind))
    }
}

fn default_max_data_size() -> u32 {
    1024
}

/// The MCP event types, named as in ToolHive's audit events.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AuditEventType {
    /// `initialize` (recorded when the client confirms with `notifications/initialized`).
    McpInitialize,
    /// `tools/call`.
    McpToolCall,
    /// `tools/list`.
    McpToolsList,
    /// `resources/read`.
    McpResourceRead,
    /// `resources/list` and `resources/templates/list`.
    McpResourcesList,
    /// `prompts/get`.
    McpPromptGet,
    /// `prompts/list`.
    McpPromptsList,
    /// `completion/complete`.
    McpCompletion,
    /// `logging/setLevel`.
    McpLogging,
    /// `resources/subscribe` and `resources/unsubscribe` (vmcp name; ToolHive
    /// records them as `mcp_request`).
    McpResourceSubscription,
    /// Any other request (ToolHive's fallback type).
    McpRequest,
}

impl AuditEventType {
    /// The name in configuration and in events.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::McpInitialize => "mcp_initialize",
            Self::McpToolCall => "mcp_tool_call",
            Self::McpToolsList => "mcp_tools_list",
            Self::McpResourceRead => "mcp_resource_read",
            Self::McpResourcesList => "mcp_resources_list",
            Self::McpPromptGet => "mcp_prompt_get",
            Self::McpPromptsList => "mcp_prompts_list",
            Self::McpCompletion => "mcp_completion",
            Self::McpLogging => "mcp_logging",
            Self::McpResourceSubscription => "mcp_resource_subscription",
            Self::McpRequest => "mcp_request",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exclusion_wins_over_inclusion_and_empty_includes_all() {
        let all = AuditConfig::default();
        assert!(all.audits(AuditEventType::McpToolsList));
        let only_calls = AuditConfig {
            event_types: vec![AuditEventType::McpToolCall, AuditEventType::McpToolsList],
            exclude_event_types: vec![AuditEventType::McpToolsList],
            ..AuditConfig::default()
        };
        assert!(only_calls.audits(AuditEventType::McpToolCall));
        assert!(!only_calls.audits(AuditEventType::McpToolsList));
        assert!(!only_calls.audits(AuditEventType::McpPromptGet));
        let off = AuditConfig {
            enabled: Some(false),
            ..AuditConfig::default()
        };
        assert!(!off.audits(AuditEventType::McpToolCall));
    }

    #[test]
    fn event_type_names_match_serde() {
        for kind in [
            AuditEventType::McpInitialize,
            AuditEventType::McpToolCall,
            AuditEventType::McpResourceSubscription,
            AuditEventType::McpRequest,
        ] {
            let json = serde_json::to_value(kind).expect("serializable");
            assert_eq!(json, kind.as_str());
        }
    }
}
