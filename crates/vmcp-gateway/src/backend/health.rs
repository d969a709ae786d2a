//! A backend's health and circuit breaker, fed by the supervisor's probes and
//! by the outcomes of real calls, read by routing, the catalogue and status.

use std::time::Duration;

use vmcp_domain::circuit::{Admission, CircuitBreaker, CircuitPolicy, CircuitState};
use vmcp_domain::health::{FailureKind, HealthPolicy, HealthState, HealthTracker, Outcome};
use vmcp_domain::status::Timestamp;

/// Health policy and circuit policy of one backend.
#[derive(Clone, Copy, Debug)]
pub struct Policies {
    /// Health thresholds.
    pub health: HealthPolicy,
    /// Circuit breaker settings.
    pub circuit: CircuitPolicy,
}

impl Policies {
    /// Policies from the config's `failureHandling`.
    pub fn from_config(failure: &vmcp_config::FailureHandling, auth_configured: bool) -> Self {
        Self {
            health: HealthPolicy {
                unhealthy_threshold: failure.unhealthy_threshold,
                degraded_latency: failure.degraded_latency_threshold.get(),
                auth_configured,
                ..HealthPolicy::default()
            },
            circuit: CircuitPolicy {
                enabled: failure.circuit_breaker.enabled,
                failure_threshold: failure.circuit_breaker.failure_threshold,
                open_timeout: failure.circuit_breaker.timeout.get(),
                recovery_probes: HealthPolicy::default().recovery_threshold,
            },
        }
    }
}

/// What changed after an observation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Change {
    /// New health state, if it changed.
    pub health: Option<HealthState>,
    /// New circuit state, if it changed.
    pub circuit: Option<CircuitState>,
}

impl Change {
    /// Whether anything changed.
    pub fn any(self) -> bool {
        self.health.is_some() || self.circuit.is_some()
    }
}

/// The mutable health record of a backend.
#[derive(Debug)]
pub struct HealthCell {
    policies: Policies,
    tracker: HealthTracker,
    breaker: CircuitBreaker,
    last_check: Option<Timestamp>,
    circuit_changed: Option<Timestamp>,
}

fn now_instant() -> std::time::Instant {
    // Tokio's clock, so tests with paused time drive the breaker too.
    tokio::time::Instant::now().into_std()
}

impl HealthCell {
    /// A backend nothing is known about.
    pub fn new(policies: Policies) -> Self {
        Self {
            policies,
            tracker: HealthTracker::new(),
            breaker: CircuitBreaker::new(),
            last_check: None,
            circuit_changed: None,
        }
    }

    /// Health state.
    pub fn health(&self) -> HealthState {
        self.tracker.state()
    }

    /// Circuit state.
    pub fn circuit(&self) -> CircuitState {
        self.breaker.state()
    }

    /// Whether calls may be routed here (healthy enough, circuit not open).
    pub fn is_routable(&self) -> bool {
        self.tracker.state().is_routable() && self.breaker.state() != CircuitState::Open
    }

    /// Sanitized message for status.
    pub fn message(&self) -> Option<&'static str> {
        if self.breaker.state() == CircuitState::Open
            && self.tracker.state() != HealthState::Unauthenticated
        {
            return Some("circuit breaker open");
        }
        self.tracker.message(&self.policies.health)
    }

    /// Failures in a row.
    pub fn consecutive_failures(&self) -> u32 {
        self.tracker
            .consecutive_failures()
            .max(self.breaker.failures())
    }

    /// Time of the last health result.
    pub fn last_check(&self) -> Option<Timestamp> {
        self.last_check
    }

    /// When the circuit last changed.
    pub fn circuit_changed(&self) -> Option<Timestamp> {
        self.circuit_changed
    }

    /// An active probe's result.
    pub fn probe(&mut self, result: Result<Duration, FailureKind>) -> Change {
        self.last_check = Some(Timestamp::now());
        let now = now_instant();
        match result {
            Ok(latency) => {
                let health = self
                    .tracker
                    .record(Outcome::ProbeSucceeded { latency }, &self.policies.health);
                // Good probes are the evidence a trial looks for: enough of
                // them in a row end an open circuit's wait (see the breaker).
                let circuit = self.breaker.on_probe_success(now, &self.policies.circuit);
                self.note_circuit(circuit);
                Change { health, circuit }
            }
            Err(kind) => self.failed(Outcome::Failed(kind), now),
        }
    }

    /// The connection ended.
    pub fn disconnected(&mut self) -> Change {
        self.last_check = Some(Timestamp::now());
        self.failed(Outcome::Disconnected, now_instant())
    }

    /// May a call go out now? `Err(retry_in)` means fail fast.
    pub fn admit(&mut self) -> Result<(), Duration> {
        match self.breaker.admit(now_instant(), &self.policies.circuit) {
            Admission::Allowed | Admission::Trial => Ok(()),
            Admission::Rejected { retry_in } => Err(retry_in),
        }
    }

    /// A real call got an answer (any answer, errors included: the backend is alive).
    pub fn call_succeeded(&mut self) -> Change {
        let health = self
            .tracker
            .record(Outcome::CallSucceeded, &self.policies.health);
        let circuit = self.breaker.on_success(now_instant());
        self.note_circuit(circuit);
        Change { health, circuit }
    }

    /// A real call failed at the transport or timed out.
    pub fn call_failed(&mut self, kind: FailureKind) -> Change {
        let now = now_instant();
        let health = self
            .tracker
            .record(Outcome::Failed(kind), &self.policies.health);
        let circuit = self.breaker.on_call_failure(now, &self.policies.circuit);
        self.note_circuit(circuit);
        Change { health, circuit }
    }

    /// A call was admitted but ended without an outcome (the client cancelled).
    pub fn call_abandoned(&mut self) {
        self.breaker.release_trial();
    }

    fn failed(&mut self, outcome: Outcome, now: std::time::Instant) -> Change {
        let health = self.tracker.record(outcome, &self.policies.health);
        let trips = match outcome {
            Outcome::Failed(kind) => kind.trips_circuit(self.policies.health.auth_configured),
            _ => true,
        };
        if !trips {
            return Change {
                health,
                circuit: None,
            };
        }
        let circuit = self.breaker.on_failure(now, &self.policies.circuit);
        self.note_circuit(circuit);
        Change { health, circuit }
    }

    fn note_circuit(&mut self, circuit: Option<CircuitState>) {
        if circuit.is_some() {
            self.circuit_changed = Some(Timestamp::now());
        }
    }
}
