//! The runtime status model (the `status` of a `VirtualMCPServer`, the CLI
//! state file, `/status`) and [`build_status`], the one place its rules live.
//!
//! Rules (see `docs/status.md`):
//! - Phase: `Failed` when the runtime is broken or nothing is routable;
//!   `Pending` until the first health results exist; `Degraded` when some
//!   backends are not fully healthy but at least one is routable; `Ready`
//!   when every backend is healthy with a closed circuit.
//! - Conditions `Ready`, `BackendsDiscovered` and `Degraded` are always
//!   present, each with a CamelCase reason and the generation it was
//!   computed for. `Ready` stays `True` while `Degraded` (degraded is not
//!   down). `lastTransitionTime` changes only when `status` flips.
//! - At most [`MAX_REPORTED_BACKENDS`] backends are listed (the least
//!   healthy first); `backendCount` and `message` cover all of them.
//! - Messages are sanitized categories; URLs carry no credentials (the
//!   caller passes display URLs).

use serde::{Deserialize, Serialize};

pub use jiff::Timestamp;

/// Most backends listed in `discoveredBackends`; the rest are summarised.
/// 100 entries keep the object well under 64 KiB.
pub const MAX_REPORTED_BACKENDS: usize = 100;

/// Most backend names quoted in a message.
const MAX_NAMES_IN_MESSAGE: usize = 5;

/// The runtime's overall phase.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Phase {
    /// Starting: no health results yet.
    Pending,
    /// Every backend healthy.
    Ready,
    /// Serving, but some backends are unhealthy, slow or unreachable.
    Degraded,
    /// Nothing routable, or the runtime itself is broken.
    Failed,
}

impl Phase {
    /// The name used on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "Pending",
            Self::Ready => "Ready",
            Self::Degraded => "Degraded",
            Self::Failed => "Failed",
        }
    }
}

/// One backend's state as reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendStatus {
    /// Healthy and routable.
    Ready,
    /// Routable but slow.
    Degraded,
    /// Not routable: failing, unreachable, or its circuit is open.
    Unavailable,
    /// No health result yet.
    Unknown,
    /// Answers, but refuses our credentials (401/403).
    Unauthenticated,
}

impl BackendStatus {
    /// Whether calls are routed to a backend in this state.
    pub fn is_routable(self) -> bool {
        matches!(self, Self::Ready | Self::Degraded)
    }

    /// The name used on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ready => "ready",
            Self::Degraded => "degraded",
            Self::Unavailable => "unavailable",
            Self::Unknown => "unknown",
            Self::Unauthenticated => "unauthenticated",
        }
    }

    /// Order for listing: the least healthy first.
    fn severity(self) -> u8 {
        match self {
            Self::Unavailable => 0,
            Self::Unauthenticated => 1,
            Self::Degraded => 2,
            Self::Unknown => 3,
            Self::Ready => 4,
        }
    }
}

/// A circuit breaker's state, as reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CircuitState {
    /// Calls flow.
    Closed,
    /// Calls fail fast.
    Open,
    /// One trial call is allowed.
    HalfOpen,
}

impl CircuitState {
    /// The name used on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half-open",
        }
    }
}

/// `True`, `False` or `Unknown`, as in Kubernetes conditions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ConditionStatus {
    /// The condition holds.
    True,
    /// It does not.
    False,
    /// Not known yet.
    Unknown,
}

/// Condition types the runtime owns.
pub mod condition_types {
    /// Summary: the gateway serves requests.
    pub const READY: &str = "Ready";
    /// Backend discovery has run.
    pub const BACKENDS_DISCOVERED: &str = "BackendsDiscovered";
    /// Some backends are not fully healthy.
    pub const DEGRADED: &str = "Degraded";
}

/// Condition reasons (CamelCase, stable: automation may match on them).
pub mod reasons {
    /// Every backend is healthy.
    pub const ALL_BACKENDS_READY: &str = "AllBackendsReady";
    /// Some backends are unavailable or slow; the rest are served.
    pub const SOME_BACKENDS_UNHEALTHY: &str = "SomeBackendsUnhealthy";
    /// No backend can take requests.
    pub const NO_BACKENDS_ROUTABLE: &str = "NoBackendsRoutable";
    /// No backend is configured or discovered.
    pub const NO_BACKENDS: &str = "NoBackends";
    /// Waiting for the first health results.
    pub const AWAITING_HEALTH_CHECKS: &str = "AwaitingHealthChecks";
    /// The runtime itself failed.
    pub const RUNTIME_ERROR: &str = "RuntimeError";
    /// Discovery finished.
    pub const BACKEND_DISCOVERY_SUCCEEDED: &str = "BackendDiscoverySucceeded";
    /// Discovery still running.
    pub const DISCOVERY_IN_PROGRESS: &str = "DiscoveryInProgress";
    /// Every backend is fully healthy.
    pub const ALL_BACKENDS_HEALTHY: &str = "AllBackendsHealthy";
}

/// A Kubernetes-style condition.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// The condition's type, the key of the list.
    #[serde(rename = "type")]
    pub type_: String,
    /// Whether it holds.
    pub status: ConditionStatus,
    /// CamelCase reason; always set.
    pub reason: String,
    /// Human-readable detail.
    pub message: String,
    /// When `status` last changed.
    pub last_transition_time: Timestamp,
    /// The configuration generation this was computed for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

/// One backend in the status.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DiscoveredBackend {
    /// Backend name.
    pub name: String,
    /// Endpoint without credentials.
    pub url: String,
    /// Its state.
    pub status: BackendStatus,
    /// Outgoing auth strategy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_type: Option<String>,
    /// Reference to the auth configuration object (Kubernetes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_config_ref: Option<String>,
    /// Time of the last health result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_health_check: Option<Timestamp>,
    /// Sanitized category, e.g. "health check timed out".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Circuit breaker state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub circuit_breaker_state: Option<CircuitState>,
    /// When the circuit last changed state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub circuit_last_changed: Option<Timestamp>,
    /// Failures in a row (probes and calls).
    #[serde(default)]
    pub consecutive_failures: u32,
}

/// The runtime's status.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    /// Overall phase.
    pub phase: Phase,
    /// One-line summary.
    pub message: String,
    /// `Ready`, `BackendsDiscovered`, `Degraded`.
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// Backends, least healthy first, at most [`MAX_REPORTED_BACKENDS`].
    /// Absent when empty on a Kubernetes object (server-side apply drops an
    /// emptied list), hence the default when reading.
    #[serde(default)]
    pub discovered_backends: Vec<DiscoveredBackend>,
    /// All backends, listed or not.
    #[serde(default)]
    pub backend_count: u32,
    /// Generation of the configuration the runtime loaded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// When this status was built.
    pub timestamp: Timestamp,
}

impl Status {
    /// The condition of `type_`, if present.
    pub fn condition(&self, type_: &str) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.type_ == type_)
    }

    /// Whether `other` reports the same state, ignoring also each backend's
    /// `consecutiveFailures`: a counter that grows with every reconnect
    /// attempt of a dead backend is a time series, not a change of state
    /// (its value travels with the next real change or heartbeat). Reporters
    /// that write to shared storage (the API server, a file) compare with
    /// this; see `docs/status.md`.
    pub fn same_report_as(&self, other: &Status) -> bool {
        let strip = |status: &Status| {
            let mut copy = status.clone();
            for backend in &mut copy.discovered_backends {
                backend.consecutive_failures = 0;
            }
            copy
        };
        strip(self).same_content_as(&strip(other))
    }

    /// Whether `other` says the same thing, ignoring the fields that move
    /// on every probe (`timestamp`, each backend's `lastHealthCheck`).
    /// Reporters write only when this is false (or on their heartbeat).
    pub fn same_content_as(&self, other: &Status) -> bool {
        let strip = |status: &Status| {
            let mut copy = status.clone();
            copy.timestamp = Timestamp::UNIX_EPOCH;
            for backend in &mut copy.discovered_backends {
                backend.last_health_check = None;
            }
            copy
        };
        strip(self) == strip(other)
    }
}

/// One backend's health, as the monitor sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackendSnapshot {
    /// Name.
    pub name: String,
    /// Endpoint without credentials.
    pub url: String,
    /// Outgoing auth strategy.
    pub auth_type: Option<String>,
    /// Auth configuration reference (Kubernetes).
    pub auth_config_ref: Option<String>,
    /// Health from probes and calls.
    pub health: crate::health::HealthState,
    /// Last health result.
    pub last_health_check: Option<Timestamp>,
    /// Sanitized category of the last failure, if any.
    pub message: Option<String>,
    /// Circuit breaker state.
    pub circuit: CircuitState,
    /// When the circuit last changed.
    pub circuit_last_changed: Option<Timestamp>,
    /// Failures in a row.
    pub consecutive_failures: u32,
}

impl BackendSnapshot {
    /// The reported state: health, overridden by an open circuit, except
    /// that a backend refusing us for lack of credentials is reported as
    /// such (it is alive; an open circuit would only hide the reason).
    pub fn status(&self) -> BackendStatus {
        use crate::health::HealthState;
        if self.circuit == CircuitState::Open && self.health != HealthState::Unauthenticated {
            return BackendStatus::Unavailable;
        }
        match self.health {
            HealthState::Healthy => BackendStatus::Ready,
            HealthState::Degraded => BackendStatus::Degraded,
            HealthState::Unhealthy => BackendStatus::Unavailable,
            HealthState::Unknown => BackendStatus::Unknown,
            HealthState::Unauthenticated => BackendStatus::Unauthenticated,
        }
    }
}

/// Everything [`build_status`] needs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HealthSnapshot {
    /// Every backend.
    pub backends: Vec<BackendSnapshot>,
    /// Whether backend discovery has completed once.
    pub discovery_complete: bool,
    /// A sanitized description of a runtime failure, if the runtime is broken.
    pub runtime_error: Option<String>,
}

/// Builds the status from a health snapshot. `previous` keeps condition
/// transition times; `generation` is the generation of the loaded config.
pub fn build_status(
    snapshot: &HealthSnapshot,
    generation: Option<i64>,
    previous: Option<&Status>,
    now: Timestamp,
) -> Status {
    let total = snapshot.backends.len();
    let states: Vec<BackendStatus> = snapshot
        .backends
        .iter()
        .map(BackendSnapshot::status)
        .collect();
    let count = |wanted: fn(BackendStatus) -> bool| states.iter().filter(|s| wanted(**s)).count();
    let routable = count(BackendStatus::is_routable);
    let ready = count(|s| s == BackendStatus::Ready);
    let unknown = count(|s| s == BackendStatus::Unknown);
    let not_ready_names = names_where(snapshot, &states, |s| {
        s != BackendStatus::Ready && s != BackendStatus::Unknown
    });

    use ConditionStatus::{False, True, Unknown};
    let (phase, ready_cond, message) = if let Some(error) = &snapshot.runtime_error {
        (
            Phase::Failed,
            (False, reasons::RUNTIME_ERROR),
            format!("runtime error: {error}"),
        )
    } else if !snapshot.discovery_complete {
        (
            Phase::Pending,
            (Unknown, reasons::DISCOVERY_IN_PROGRESS),
            "discovering backends".to_string(),
        )
    } else if total == 0 {
        (
            Phase::Failed,
            (False, reasons::NO_BACKENDS),
            "no backends discovered".to_string(),
        )
    } else if routable == 0 && unknown > 0 {
        (
            Phase::Pending,
            (Unknown, reasons::AWAITING_HEALTH_CHECKS),
            format!("waiting for health checks of {unknown} of {total} backends"),
        )
    } else if routable == 0 {
        (
            Phase::Failed,
            (False, reasons::NO_BACKENDS_ROUTABLE),
            format!("no backend is routable: {not_ready_names}"),
        )
    } else if ready == total {
        (
            Phase::Ready,
            (True, reasons::ALL_BACKENDS_READY),
            format!("all {total} backends ready"),
        )
    } else {
        let mut message = format!("{ready} of {total} backends ready");
        if !not_ready_names.is_empty() {
            message.push_str(&format!("; not ready: {not_ready_names}"));
        }
        if unknown > 0 {
            message.push_str(&format!("; {unknown} awaiting health checks"));
        }
        (
            Phase::Degraded,
            (True, reasons::SOME_BACKENDS_UNHEALTHY),
            message,
        )
    };

    let discovered = if !snapshot.discovery_complete {
        (
            Unknown,
            reasons::DISCOVERY_IN_PROGRESS,
            "discovering backends".to_string(),
        )
    } else if total == 0 {
        (
            False,
            reasons::NO_BACKENDS,
            "no backends discovered".to_string(),
        )
    } else {
        (
            True,
            reasons::BACKEND_DISCOVERY_SUCCEEDED,
            format!("discovered {total} backends"),
        )
    };
    let degraded = match phase {
        Phase::Pending => (
            Unknown,
            reasons::AWAITING_HEALTH_CHECKS,
            "waiting for health checks".to_string(),
        ),
        Phase::Degraded => (True, reasons::SOME_BACKENDS_UNHEALTHY, message.clone()),
        Phase::Failed if snapshot.runtime_error.is_none() && total > 0 => {
            (True, reasons::NO_BACKENDS_ROUTABLE, message.clone())
        }
        Phase::Failed => (False, ready_cond.1, message.clone()),
        Phase::Ready => (False, reasons::ALL_BACKENDS_HEALTHY, message.clone()),
    };

    let condition = |type_: &str, (status, reason, text): (ConditionStatus, &str, String)| {
        let last_transition_time = previous
            .and_then(|p| p.condition(type_))
            .filter(|c| c.status == status)
            .map_or(now, |c| c.last_transition_time);
        Condition {
            type_: type_.to_string(),
            status,
            reason: reason.to_string(),
            message: text,
            last_transition_time,
            observed_generation: generation,
        }
    };
    let conditions = vec![
        condition(
            condition_types::READY,
            (ready_cond.0, ready_cond.1, message.clone()),
        ),
        condition(condition_types::BACKENDS_DISCOVERED, discovered),
        condition(condition_types::DEGRADED, degraded),
    ];

    let mut listed: Vec<(BackendStatus, &BackendSnapshot)> =
        states.iter().copied().zip(&snapshot.backends).collect();
    listed.sort_by(|(a, x), (b, y)| {
        a.severity()
            .cmp(&b.severity())
            .then_with(|| x.name.cmp(&y.name))
    });
    let discovered_backends = listed
        .into_iter()
        .take(MAX_REPORTED_BACKENDS)
        .map(|(status, b)| DiscoveredBackend {
            name: b.name.clone(),
            url: b.url.clone(),
            status,
            auth_type: b.auth_type.clone(),
            auth_config_ref: b.auth_config_ref.clone(),
            last_health_check: b.last_health_check,
            message: b.message.clone(),
            circuit_breaker_state: Some(b.circuit),
            circuit_last_changed: b.circuit_last_changed,
            consecutive_failures: b.consecutive_failures,
        })
        .collect();
    let mut message = message;
    if total > MAX_REPORTED_BACKENDS {
        message.push_str(&format!(
            " (listing the {MAX_REPORTED_BACKENDS} least healthy of {total})"
        ));
    }
    Status {
        phase,
        message,
        conditions,
        discovered_backends,
        backend_count: u32::try_from(total).unwrap_or(u32::MAX),
        observed_generation: generation,
        timestamp: now,
    }
}

/// Up to [`MAX_NAMES_IN_MESSAGE`] names (sorted) of backends whose state matches.
fn names_where(
    snapshot: &HealthSnapshot,
    states: &[BackendStatus],
    wanted: impl Fn(BackendStatus) -> bool,
) -> String {
    let mut names: Vec<&str> = snapshot
        .backends
        .iter()
        .zip(states)
        .filter(|(_, s)| wanted(**s))
        .map(|(b, _)| b.name.as_str())
        .collect();
    names.sort_unstable();
    let extra = names.len().saturating_sub(MAX_NAMES_IN_MESSAGE);
    let mut text = names
        .into_iter()
        .take(MAX_NAMES_IN_MESSAGE)
        .collect::<Vec<_>>()
        .join(", ");
    if extra > 0 {
        text.push_str(&format!(" and {extra} more"));
    }
    text
}
