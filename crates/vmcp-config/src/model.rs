//! The typed configuration. Field names follow ToolHive vMCP (camelCase);
//! unknown fields are rejected everywhere.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::audit::AuditConfig;
use crate::duration::HumanDuration;
use crate::incoming_auth::IncomingAuth;

/// A whole vmcp configuration file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Config {
    /// Name of this virtual MCP server; shown to clients and in status.
    pub name: String,
    /// The MCPGroup whose members are the backends (Kubernetes discovery).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_ref: Option<String>,
    /// Statically configured backends.
    #[serde(default)]
    pub backends: Vec<BackendConfig>,
    /// Who may use the gateway (client authentication and authorization).
    #[serde(default)]
    pub incoming_auth: IncomingAuth,
    /// Credentials the gateway presents to backends.
    #[serde(default)]
    pub outgoing_auth: OutgoingAuth,
    /// How backend capabilities are merged into one catalogue.
    #[serde(default)]
    pub aggregation: Aggregation,
    /// Logging, timeouts and failure handling.
    #[serde(default)]
    pub operational: Operational,
    /// The gateway's own HTTP endpoint (vmcp extension).
    #[serde(default)]
    pub server: ServerSettings,
    /// The audit log; off when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit: Option<AuditConfig>,
}

/// One backend MCP server.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BackendConfig {
    /// Unique name; the default tool prefix is derived from it.
    pub name: String,
    /// How to reach it.
    pub transport: TransportKind,
    /// Endpoint for `streamable-http` (e.g. `http://host/mcp`) and `sse` (e.g. `http://host/sse`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Program to start for `stdio`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// Arguments for `command`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// Extra environment variables for `command`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
}

/// The wire transport of a backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum TransportKind {
    /// MCP Streamable HTTP (2025-03-26 and later).
    StreamableHttp,
    /// The legacy HTTP+SSE transport (2024-11-05).
    Sse,
    /// A child process speaking MCP over stdin/stdout.
    Stdio,
}

impl TransportKind {
    /// The name used in configuration and status.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::StreamableHttp => "streamable-http",
            Self::Sse => "sse",
            Self::Stdio => "stdio",
        }
    }
}

/// Outgoing (gateway → backend) authentication.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct OutgoingAuth {
    /// Where the settings come from: `inline` (this file) or `discovered` (Kubernetes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<AuthSource>,
    /// Applies to backends without an entry in `backends`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<BackendAuth>,
    /// Per-backend settings, keyed by backend name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub backends: BTreeMap<String, BackendAuth>,
}

impl OutgoingAuth {
    /// The auth settings that apply to `backend`.
    pub fn for_backend(&self, backend: &str) -> Option<&BackendAuth> {
        self.backends.get(backend).or(self.default.as_ref())
    }
}

/// Where outgoing auth settings come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AuthSource {
    /// From this configuration file.
    Inline,
    /// From the backends' Kubernetes objects.
    Discovered,
}

/// One backend's outgoing authentication strategy.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct BackendAuth {
    /// The strategy.
    #[serde(rename = "type")]
    pub kind: AuthType,
    /// Settings for `header_injection`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header_injection: Option<HeaderInjection>,
    /// Settings for `token_exchange`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_exchange: Option<TokenExchange>,
}

/// Supported outgoing auth strategies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AuthType {
    /// Send no credentials.
    Unauthenticated,
    /// Add a fixed header (e.g. an API key) to every request.
    HeaderInjection,
    /// Exchange the caller's token for one meant for the backend (RFC 8693).
    TokenExchange,
}

impl AuthType {
    /// The name used in configuration and status.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unauthenticated => "unauthenticated",
            Self::HeaderInjection => "header_injection",
            Self::TokenExchange => "token_exchange",
        }
    }
}

/// A header added to every request to a backend.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct HeaderInjection {
    /// Header name, e.g. `X-API-Key`.
    pub header_name: String,
    /// Literal value (prefer `headerValueEnv` for secrets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header_value: Option<String>,
    /// Name of an environment variable holding the value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header_value_env: Option<String>,
}

/// RFC 8693 token exchange for one backend: each call carries a token the
/// identity provider issued for the backend in exchange for the caller's,
/// and the gateway's own requests (initialize, lists, health) carry a
/// token it obtains for itself with the client credentials grant.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TokenExchange {
    /// The identity provider's token endpoint.
    pub token_url: String,
    /// The gateway's client id at the identity provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// The client secret, literally (prefer `clientSecretEnv`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
    /// Name of an environment variable holding the client secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret_env: Option<String>,
    /// The audience to ask for (the backend's client id or resource).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<String>,
    /// Scopes to ask for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
    /// Type of the caller's token; default
    /// `urn:ietf:params:oauth:token-type:access_token`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject_token_type: Option<String>,
}

/// The default `subjectTokenType`.
pub const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";

/// Capability aggregation settings.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Aggregation {
    /// How name clashes between backends are settled.
    #[serde(default)]
    pub conflict_resolution: ConflictResolution,
    /// Parameters of the strategy.
    #[serde(default)]
    pub conflict_resolution_config: ConflictResolutionConfig,
    /// Per-backend tool filters and overrides.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<WorkloadTools>,
    /// Expose no tools at all (resources and prompts only).
    #[serde(default)]
    pub exclude_all_tools: bool,
}

/// Strategies for tool and prompt name clashes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ConflictResolution {
    /// Every name gets the backend prefix (`prefixFormat`).
    #[default]
    Prefix,
    /// Names stay as they are; on a clash the backend earliest in `priorityOrder` wins.
    Priority,
    /// Names stay as they are; a clash is a configuration error (fix it with `overrides`).
    Manual,
}

/// Parameters of the conflict resolution strategy.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ConflictResolutionConfig {
    /// Prefix template for `prefix`; `{workload}` is the backend name. Default `{workload}_`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix_format: Option<String>,
    /// Backend names, most preferred first, for `priority`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub priority_order: Vec<String>,
}

impl ConflictResolutionConfig {
    /// The default prefix template.
    pub const DEFAULT_PREFIX_FORMAT: &'static str = "{workload}_";

    /// The prefix template in force.
    pub fn prefix_format(&self) -> &str {
        self.prefix_format
            .as_deref()
            .unwrap_or(Self::DEFAULT_PREFIX_FORMAT)
    }
}

/// Tool settings for one backend.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct WorkloadTools {
    /// The backend these settings apply to.
    pub workload: String,
    /// If not empty, only these tools (backend names) are exposed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filter: Vec<String>,
    /// Renames and new descriptions, keyed by the backend's tool name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub overrides: BTreeMap<String, ToolOverride>,
    /// Expose none of this backend's tools.
    #[serde(default)]
    pub exclude_all: bool,
}

/// A tool's exposed name and description.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ToolOverride {
    /// New name (conflict resolution still applies to it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// New description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// Operational settings.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Operational {
    /// `trace`, `debug`, `info`, `warn` or `error`; `RUST_LOG` overrides it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_level: Option<String>,
    /// Per-call timeouts.
    #[serde(default)]
    pub timeouts: Timeouts,
    /// Health checks and circuit breaking.
    #[serde(default)]
    pub failure_handling: FailureHandling,
}

/// Per-call timeouts towards backends.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Timeouts {
    /// Timeout of one call to a backend. Default 30s.
    #[serde(default = "defaults::call_timeout")]
    pub default: HumanDuration,
    /// Per-backend timeouts, keyed by backend name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub per_workload: BTreeMap<String, HumanDuration>,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            default: defaults::call_timeout(),
            per_workload: BTreeMap::new(),
        }
    }
}

impl Timeouts {
    /// The call timeout for `backend`.
    pub fn for_backend(&self, backend: &str) -> std::time::Duration {
        self.per_workload
            .get(backend)
            .unwrap_or(&self.default)
            .get()
    }
}

/// Health checking and circuit breaking.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct FailureHandling {
    /// Time between active probes of a backend. Default 30s.
    #[serde(default = "defaults::health_check_interval")]
    pub health_check_interval: HumanDuration,
    /// Consecutive failures before a backend is unhealthy. Default 3.
    #[serde(default = "defaults::unhealthy_threshold")]
    pub unhealthy_threshold: u32,
    /// Timeout of one probe; must be below the interval. Default 10s.
    #[serde(default = "defaults::health_check_timeout")]
    pub health_check_timeout: HumanDuration,
    /// A probe slower than this marks the backend degraded. Default 2s.
    #[serde(default = "defaults::degraded_latency")]
    pub degraded_latency_threshold: HumanDuration,
    /// Heartbeat of the status reporters when nothing changes. Default 30s.
    #[serde(default = "defaults::status_reporting_interval")]
    pub status_reporting_interval: HumanDuration,
    /// `fail`: a capability list fails if any backend fails; `best_effort`: serve what answers.
    #[serde(default)]
    pub partial_failure_mode: PartialFailureMode,
    /// Per-backend circuit breaker on the request path.
    #[serde(default)]
    pub circuit_breaker: CircuitBreakerConfig,

    // --- Catalogue grace (a vmcp extension; the reference has no such knob) ---
    /// How long an unhealthy backend's capabilities stay in the catalogue
    /// before they are withdrawn (calls to them fail fast meanwhile), so a
    /// short outage does not make clients re-list. Default 0s: withdrawn at once.
    #[serde(default = "defaults::unhealthy_grace_period")]
    pub unhealthy_grace_period: HumanDuration,
}

impl Default for FailureHandling {
    fn default() -> Self {
        Self {
            health_check_interval: defaults::health_check_interval(),
            unhealthy_threshold: defaults::unhealthy_threshold(),
            health_check_timeout: defaults::health_check_timeout(),
            degraded_latency_threshold: defaults::degraded_latency(),
            status_reporting_interval: defaults::status_reporting_interval(),
            partial_failure_mode: PartialFailureMode::default(),
            circuit_breaker: CircuitBreakerConfig::default(),
            unhealthy_grace_period: defaults::unhealthy_grace_period(),
        }
    }
}

/// What a list request does when some backends cannot answer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PartialFailureMode {
    /// Answer with an error naming the failed backends.
    Fail,
    /// Answer with what the healthy backends offer.
    #[default]
    BestEffort,
}

/// Circuit breaker settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CircuitBreakerConfig {
    /// Whether calls to a failing backend fail fast. Default true.
    #[serde(default = "defaults::yes")]
    pub enabled: bool,
    /// Consecutive failures that open the circuit. Default 5.
    #[serde(default = "defaults::failure_threshold")]
    pub failure_threshold: u32,
    /// Time an open circuit waits before one trial call. Default 60s.
    #[serde(default = "defaults::circuit_timeout")]
    pub timeout: HumanDuration,
}

impl Default for CircuitBreakerConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            failure_threshold: defaults::failure_threshold(),
            timeout: defaults::circuit_timeout(),
        }
    }
}

/// The gateway's own endpoint (a vmcp extension to the format).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ServerSettings {
    /// `Host` header values accepted besides loopback names (e.g. the Service DNS name).
    /// `*` accepts any host.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_hosts: Vec<String>,
    /// Largest accepted request body in bytes. Default 4 MiB.
    #[serde(default = "defaults::max_request_bytes")]
    pub max_request_bytes: u64,
    /// Items per page in list responses. Default 100.
    #[serde(default = "defaults::page_size")]
    pub page_size: u32,
    /// Browser `Origin` values accepted besides those whose host is an
    /// accepted `Host` name (`scheme://host[:port]`; `*` accepts any).
    /// Requests without `Origin` are not affected.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_origins: Vec<String>,
    /// Limits of the client connections.
    #[serde(default)]
    pub connections: ConnectionSettings,

    // Request-path bounds and client sessions (hardening against hostile clients).
    /// Longest accepted resource URI in bytes (`resources/read`, completion
    /// references); longer ones get an invalid-params error. Default 65536.
    #[serde(default = "defaults::max_uri_bytes")]
    pub max_uri_bytes: u32,
    /// Most client sessions open at once; beyond it `initialize` gets 503.
    /// Default 1000.
    #[serde(default = "defaults::max_sessions")]
    pub max_sessions: u32,
    /// Most sessions one client address may hold (its share of
    /// `maxSessions`). Default 100.
    #[serde(default = "defaults::max_sessions_per_client")]
    pub max_sessions_per_client: u32,
    /// A session without any request for this long is closed. Default 5m.
    #[serde(default = "defaults::session_idle_timeout")]
    pub session_idle_timeout: HumanDuration,
    /// Who may read `/status` and `/metrics` when `incomingAuth` is `oidc`.
    /// Default `authenticated`.
    #[serde(default)]
    pub status_access: StatusAccess,
}

/// Who may read `/status` and `/metrics` under OIDC (with anonymous
/// incoming auth they are open, like `/mcp`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum StatusAccess {
    /// Loopback clients, and callers with a valid token.
    #[default]
    Authenticated,
    /// Anyone who reaches the endpoint (e.g. a Prometheus scraping from another pod).
    Open,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            allowed_hosts: Vec::new(),
            max_request_bytes: defaults::max_request_bytes(),
            page_size: defaults::page_size(),
            allowed_origins: Vec::new(),
            connections: ConnectionSettings::default(),
            max_uri_bytes: defaults::max_uri_bytes(),
            max_sessions: defaults::max_sessions(),
            max_sessions_per_client: defaults::max_sessions_per_client(),
            session_idle_timeout: defaults::session_idle_timeout(),
            status_access: StatusAccess::default(),
        }
    }
}

/// Limits of the client connections (a vmcp extension to the format): how
/// many may be open, and how long a client may take to send a request or
/// keep an idle connection.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ConnectionSettings {
    /// Most client connections open at once; lowered at start to fit the
    /// open-files limit. Default 4096.
    #[serde(default = "defaults::max_connections")]
    pub max: u32,
    /// Extra connections, beyond `max`, that only serve `/health`,
    /// `/readyz` and `/metrics`, so probes get through while `max` is
    /// reached. Default 16.
    #[serde(default = "defaults::probe_reserve")]
    pub probe_reserve: u32,
    /// Time a client has to send a request's headers. Default 10s.
    #[serde(default = "defaults::header_read_timeout")]
    pub header_read_timeout: HumanDuration,
    /// Time a client has to send a request's body, from its headers on. Default 30s.
    #[serde(default = "defaults::body_read_timeout")]
    pub body_read_timeout: HumanDuration,
    /// Time a connection may stay open between requests. Default 60s.
    #[serde(default = "defaults::idle_timeout")]
    pub idle_timeout: HumanDuration,
}

impl Default for ConnectionSettings {
    fn default() -> Self {
        Self {
            max: defaults::max_connections(),
            probe_reserve: defaults::probe_reserve(),
            header_read_timeout: defaults::header_read_timeout(),
            body_read_timeout: defaults::body_read_timeout(),
            idle_timeout: defaults::idle_timeout(),
        }
    }
}

/// Default values, named so the schema and docs can refer to them.
pub mod defaults {
    use super::HumanDuration;

    pub(crate) fn unhealthy_grace_period() -> HumanDuration {
        HumanDuration::from_secs(0)
    }

    pub(crate) fn call_timeout() -> HumanDuration {
        HumanDuration::from_secs(30)
    }
    pub(crate) fn health_check_interval() -> HumanDuration {
        HumanDuration::from_secs(30)
    }
    pub(crate) fn unhealthy_threshold() -> u32 {
        3
    }
    pub(crate) fn health_check_timeout() -> HumanDuration {
        HumanDuration::from_secs(10)
    }
    pub(crate) fn degraded_latency() -> HumanDuration {
        HumanDuration::from_secs(2)
    }
    pub(crate) fn status_reporting_interval() -> HumanDuration {
        HumanDuration::from_secs(30)
    }
    pub(crate) fn yes() -> bool {
        true
    }
    pub(crate) fn failure_threshold() -> u32 {
        5
    }
    pub(crate) fn circuit_timeout() -> HumanDuration {
        HumanDuration::from_secs(60)
    }
    pub(crate) fn max_request_bytes() -> u64 {
        4 * 1024 * 1024
    }
    pub(crate) fn page_size() -> u32 {
        100
    }
    pub(crate) fn max_connections() -> u32 {
        4096
    }
    pub(crate) fn probe_reserve() -> u32 {
        16
    }
    pub(crate) fn header_read_timeout() -> HumanDuration {
        HumanDuration::from_secs(10)
    }
    pub(crate) fn body_read_timeout() -> HumanDuration {
        HumanDuration::from_secs(30)
    }
    pub(crate) fn idle_timeout() -> HumanDuration {
        HumanDuration::from_secs(60)
    }
    pub(crate) fn max_uri_bytes() -> u32 {
        64 * 1024
    }
    pub(crate) fn max_sessions() -> u32 {
        1000
    }
    pub(crate) fn max_sessions_per_client() -> u32 {
        100
    }
    pub(crate) fn session_idle_timeout() -> HumanDuration {
        HumanDuration::from_secs(300)
    }
}
