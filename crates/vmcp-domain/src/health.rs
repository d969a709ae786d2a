//! A backend's health from the outcomes of active probes and real calls.
//!
//! Rules (each a test below):
//! - `Unknown` until the first outcome. With no good state to protect, the
//!   first failure makes it `Unhealthy` at once.
//! - From `Healthy`/`Degraded`, `unhealthy_threshold` failures in a row make
//!   it `Unhealthy`; fewer leave the state alone (one lost probe is noise).
//! - From `Unhealthy`, `recovery_threshold` successes in a row are needed to
//!   come back (no flapping on a backend that answers every other time).
//! - A probe slower than `degraded_latency` `slow_threshold` times in a row
//!   makes it `Degraded`; as many fast probes make it `Healthy` again. Call
//!   latencies are not judged: a slow tool is not a slow backend.
//! - 401/403 with no outgoing auth configured is `Unauthenticated` (alive,
//!   but it wants credentials); with auth configured it is a failure
//!   ("authentication rejected").
//! - A lost connection (process exited, stream closed) is definitive:
//!   `Unhealthy` at once.

use std::time::Duration;

/// A backend's health.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HealthState {
    /// Answers promptly.
    Healthy,
    /// Answers, slowly.
    Degraded,
    /// Does not answer.
    Unhealthy,
    /// No outcome yet.
    Unknown,
    /// Answers 401/403 and we have no credentials for it.
    Unauthenticated,
}

impl HealthState {
    /// Lowercase name for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Healthy => "healthy",
            Self::Degraded => "degraded",
            Self::Unhealthy => "unhealthy",
            Self::Unknown => "unknown",
            Self::Unauthenticated => "unauthenticated",
        }
    }

    /// Whether calls may be routed to a backend in this state.
    pub fn is_routable(self) -> bool {
        matches!(self, Self::Healthy | Self::Degraded)
    }
}

/// Why a probe or call failed, as a sanitized category.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FailureKind {
    /// No answer within the timeout.
    Timeout,
    /// Connection refused, reset or closed; process exited.
    Unreachable,
    /// Answered with something that is not valid MCP.
    Protocol,
    /// Answered 401 or 403.
    Unauthorized,
}

impl FailureKind {
    /// Whether this failure counts towards opening the circuit breaker. A
    /// 401/403 with no outgoing auth configured does not: the backend is
    /// alive and says so on every attempt, so it stays `unauthenticated`
    /// instead of turning `unavailable` when a circuit opens.
    pub fn trips_circuit(self, auth_configured: bool) -> bool {
        !matches!(self, Self::Unauthorized) || auth_configured
    }

    /// Text safe for status messages (no addresses, no error details).
    pub fn category(self, auth_configured: bool) -> &'static str {
        match self {
            Self::Timeout => "health check timed out",
            Self::Unreachable => "backend unreachable",
            Self::Protocol => "backend sent an invalid response",
            Self::Unauthorized if auth_configured => "authentication rejected",
            Self::Unauthorized => "backend requires authentication",
        }
    }
}

/// One observation of a backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// An active probe answered after `latency`.
    ProbeSucceeded {
        /// Round-trip time.
        latency: Duration,
    },
    /// A real call got an answer (its latency says nothing about the backend).
    CallSucceeded,
    /// A probe or call failed.
    Failed(FailureKind),
    /// The connection ended (process exited, stream closed): definitive, so
    /// the backend is unhealthy at once.
    Disconnected,
}

/// Thresholds of the health rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HealthPolicy {
    /// Failures in a row before a healthy backend is unhealthy.
    pub unhealthy_threshold: u32,
    /// Successes in a row before an unhealthy backend is healthy again.
    pub recovery_threshold: u32,
    /// Probe latency above which a probe counts as slow.
    pub degraded_latency: Duration,
    /// Slow (or fast) probes in a row that switch degraded on (or off).
    pub slow_threshold: u32,
    /// Whether outgoing auth is configured for the backend.
    pub auth_configured: bool,
}

impl Default for HealthPolicy {
    fn default() -> Self {
        Self {
            unhealthy_threshold: 3,
            recovery_threshold: 2,
            degraded_latency: Duration::from_secs(2),
            slow_threshold: 2,
            auth_configured: false,
        }
    }
}

/// Tracks one backend's health.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthTracker {
    state: HealthState,
    consecutive_failures: u32,
    consecutive_successes: u32,
    slow_streak: u32,
    fast_streak: u32,
    last_failure: Option<FailureKind>,
}

impl Default for HealthTracker {
    fn default() -> Self {
        Self::new()
    }
}

impl HealthTracker {
    /// A backend nothing is known about.
    pub fn new() -> Self {
        Self {
            state: HealthState::Unknown,
            consecutive_failures: 0,
            consecutive_successes: 0,
            slow_streak: 0,
            fast_streak: 0,
            last_failure: None,
        }
    }

    /// The current state.
    pub fn state(&self) -> HealthState {
        self.state
    }

    /// Failures in a row.
    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures
    }

    /// The sanitized category of the current trouble, if the backend is not healthy.
    pub fn message(&self, policy: &HealthPolicy) -> Option<&'static str> {
        match self.state {
            HealthState::Healthy | HealthState::Unknown => None,
            HealthState::Degraded => Some("health checks are slow"),
            HealthState::Unhealthy | HealthState::Unauthenticated => self
                .last_failure
                .map(|k| k.category(policy.auth_configured)),
        }
    }

    /// Records an outcome; returns the new state if it changed.
    pub fn record(&mut self, outcome: Outcome, policy: &HealthPolicy) -> Option<HealthState> {
        let before = self.state;
        match outcome {
            Outcome::Failed(FailureKind::Unauthorized) if !policy.auth_configured => {
                self.last_failure = Some(FailureKind::Unauthorized);
                self.consecutive_failures = 0;
                self.consecutive_successes = 0;
                self.state = HealthState::Unauthenticated;
            }
            Outcome::Failed(kind) => {
                self.last_failure = Some(kind);
                self.consecutive_failures = self.consecutive_failures.saturating_add(1);
                self.consecutive_successes = 0;
                let threshold_reached =
                    self.consecutive_failures >= policy.unhealthy_threshold.max(1);
                if matches!(
                    self.state,
                    HealthState::Unknown | HealthState::Unauthenticated
                ) || threshold_reached
                {
                    self.state = HealthState::Unhealthy;
                }
            }
            Outcome::Disconnected => {
                self.last_failure = Some(FailureKind::Unreachable);
                self.consecutive_failures = self.consecutive_failures.saturating_add(1);
                self.consecutive_successes = 0;
                self.state = HealthState::Unhealthy;
            }
            Outcome::ProbeSucceeded { latency } => {
                self.succeeded(policy);
                let slow = latency > policy.degraded_latency;
                if slow {
                    self.slow_streak = self.slow_streak.saturating_add(1);
                    self.fast_streak = 0;
                } else {
                    self.fast_streak = self.fast_streak.saturating_add(1);
                    self.slow_streak = 0;
                }
                self.state = match self.state {
                    HealthState::Unknown | HealthState::Unauthenticated => {
                        if slow {
                            HealthState::Degraded
                        } else {
                            HealthState::Healthy
                        }
                    }
                    HealthState::Unhealthy
                        if self.consecutive_successes >= policy.recovery_threshold.max(1) =>
                    {
                        if slow {
                            HealthState::Degraded
                        } else {
                            HealthState::Healthy
                        }
                    }
                    HealthState::Healthy if self.slow_streak >= policy.slow_threshold.max(1) => {
                        HealthState::Degraded
                    }
                    HealthState::Degraded if self.fast_streak >= policy.slow_threshold.max(1) => {
                        HealthState::Healthy
                    }
                    unchanged => unchanged,
                };
            }
            Outcome::CallSucceeded => {
                self.succeeded(policy);
                self.state = match self.state {
                    HealthState::Unknown | HealthState::Unauthenticated => HealthState::Healthy,
                    HealthState::Unhealthy
                        if self.consecutive_successes >= policy.recovery_threshold.max(1) =>
                    {
                        HealthState::Healthy
                    }
                    unchanged => unchanged,
                };
            }
        }
        (self.state != before).then_some(self.state)
    }

    fn succeeded(&mut self, _policy: &HealthPolicy) {
        self.consecutive_failures = 0;
        self.consecutive_successes = self.consecutive_successes.saturating_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use HealthState::*;

    const FAST: Outcome = Outcome::ProbeSucceeded {
        latency: Duration::from_millis(5),
    };
    const SLOW: Outcome = Outcome::ProbeSucceeded {
        latency: Duration::from_secs(3),
    };
    const DOWN: Outcome = Outcome::Failed(FailureKind::Unreachable);
    const TIMEOUT: Outcome = Outcome::Failed(FailureKind::Timeout);
    const DENIED: Outcome = Outcome::Failed(FailureKind::Unauthorized);

    /// Runs outcomes from a fresh tracker and returns the state after each.
    fn run(policy: HealthPolicy, outcomes: &[Outcome]) -> Vec<HealthState> {
        let mut tracker = HealthTracker::new();
        outcomes
            .iter()
            .map(|o| {
                tracker.record(*o, &policy);
                tracker.state()
            })
            .collect()
    }

    #[test]
    fn rules_as_a_table() {
        let p = HealthPolicy::default();
        let cases: &[(&str, &[Outcome], &[HealthState])] = &[
            ("first success", &[FAST], &[Healthy]),
            (
                "first failure has nothing to protect",
                &[DOWN],
                &[Unhealthy],
            ),
            ("slow first answer", &[SLOW], &[Degraded]),
            (
                "below threshold is noise",
                &[FAST, DOWN, DOWN, FAST],
                &[Healthy, Healthy, Healthy, Healthy],
            ),
            (
                "threshold reached",
                &[FAST, DOWN, TIMEOUT, DOWN],
                &[Healthy, Healthy, Healthy, Unhealthy],
            ),
            (
                "one recovery is not enough",
                &[DOWN, FAST, DOWN, FAST, FAST],
                &[Unhealthy, Unhealthy, Unhealthy, Unhealthy, Healthy],
            ),
            (
                "one slow probe does not degrade",
                &[FAST, SLOW, FAST, SLOW],
                &[Healthy, Healthy, Healthy, Healthy],
            ),
            (
                "two slow probes degrade",
                &[FAST, SLOW, SLOW],
                &[Healthy, Healthy, Degraded],
            ),
            (
                "two fast probes restore",
                &[SLOW, FAST, SLOW, FAST, FAST],
                &[Degraded, Degraded, Degraded, Degraded, Healthy],
            ),
            (
                "401 without auth is unauthenticated",
                &[DENIED],
                &[Unauthenticated],
            ),
            (
                "unauthenticated then answers",
                &[DENIED, FAST],
                &[Unauthenticated, Healthy],
            ),
            (
                "call success recovers like a probe",
                &[DOWN, Outcome::CallSucceeded, Outcome::CallSucceeded],
                &[Unhealthy, Unhealthy, Healthy],
            ),
        ];
        for (name, outcomes, want) in cases {
            assert_eq!(run(p, outcomes), *want, "{name}");
        }
    }

    #[test]
    fn unauthorized_with_auth_configured_is_a_failure() {
        let p = HealthPolicy {
            auth_configured: true,
            unhealthy_threshold: 2,
            ..Default::default()
        };
        assert_eq!(
            run(p, &[FAST, DENIED, DENIED]),
            [Healthy, Healthy, Unhealthy]
        );
        let mut tracker = HealthTracker::new();
        tracker.record(DENIED, &p);
        assert_eq!(tracker.message(&p), Some("authentication rejected"));
    }

    #[test]
    fn record_reports_only_transitions_and_counts_failures() {
        let p = HealthPolicy::default();
        let mut tracker = HealthTracker::new();
        assert_eq!(tracker.record(FAST, &p), Some(Healthy));
        assert_eq!(tracker.record(FAST, &p), None);
        assert_eq!(tracker.record(TIMEOUT, &p), None);
        assert_eq!(tracker.consecutive_failures(), 1);
        tracker.record(TIMEOUT, &p);
        assert_eq!(tracker.record(TIMEOUT, &p), Some(Unhealthy));
        assert_eq!(tracker.message(&p), Some("health check timed out"));
        assert_eq!(tracker.consecutive_failures(), 3);
    }
}
