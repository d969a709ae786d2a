//! The per-backend circuit breaker. It acts on the request path: while open,
//! calls fail fast instead of waiting for a timeout.
//!
//! `Closed` → `failure_threshold` failures in a row → `Open` → after
//! `open_timeout` the next admission is a single trial (`HalfOpen`) → its
//! success closes the circuit, its failure opens it again. Time is passed
//! in, so the machine is tested without clocks.

use std::time::{Duration, Instant};

pub use crate::status::CircuitState;

/// Settings of a breaker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CircuitPolicy {
    /// Off means always admit.
    pub enabled: bool,
    /// Failures in a row that open the circuit.
    pub failure_threshold: u32,
    /// Time an open circuit waits before a trial.
    pub open_timeout: Duration,
}

/// The answer to "may this call go to the backend?".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Yes.
    Allowed,
    /// Yes, as the single trial of a half-open circuit.
    Trial,
    /// No: fail fast; the circuit may admit a trial after `retry_in`.
    Rejected {
        /// Time until the next trial may be admitted.
        retry_in: Duration,
    },
}

/// One backend's breaker.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CircuitBreaker {
    state: CircuitState,
    failures: u32,
    changed_at: Option<Instant>,
    trial_in_flight: bool,
}

impl Default for CircuitBreaker {
    fn default() -> Self {
        Self::new()
    }
}

impl CircuitBreaker {
    /// A closed breaker.
    pub fn new() -> Self {
        Self {
            state: CircuitState::Closed,
            failures: 0,
            changed_at: None,
            trial_in_flight: false,
        }
    }

    /// Current state.
    pub fn state(&self) -> CircuitState {
        self.state
    }

    /// When the state last changed (`None`: never).
    pub fn changed_at(&self) -> Option<Instant> {
        self.changed_at
    }

    /// Failures in a row.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Decides whether a call may go out now.
    pub fn admit(&mut self, now: Instant, policy: &CircuitPolicy) -> Admission {
        if !policy.enabled {
            return Admission::Allowed;
        }
        match self.state {
            CircuitState::Closed => Admission::Allowed,
            CircuitState::Open => {
                let opened = self.changed_at.unwrap_or(now);
                let waited = now.saturating_duration_since(opened);
                if waited >= policy.open_timeout {
                    self.set(CircuitState::HalfOpen, now);
                    self.trial_in_flight = true;
                    Admission::Trial
                } else {
                    Admission::Rejected {
                        retry_in: policy.open_timeout - waited,
                    }
                }
            }
            CircuitState::HalfOpen if self.trial_in_flight => Admission::Rejected {
                retry_in: Duration::ZERO,
            },
            CircuitState::HalfOpen => {
                self.trial_in_flight = true;
                Admission::Trial
            }
        }
    }

    /// Records a success; returns the new state if it changed.
    pub fn on_success(&mut self, now: Instant) -> Option<CircuitState> {
        self.failures = 0;
        self.trial_in_flight = false;
        (self.state != CircuitState::Closed).then(|| self.set(CircuitState::Closed, now))
    }

    /// Records a failure; returns the new state if it changed.
    pub fn on_failure(&mut self, now: Instant, policy: &CircuitPolicy) -> Option<CircuitState> {
        self.failures = self.failures.saturating_add(1);
        self.trial_in_flight = false;
        if !policy.enabled {
            return None;
        }
        let open = match self.state {
            CircuitState::HalfOpen => true,
            CircuitState::Closed => self.failures >= policy.failure_threshold.max(1),
            CircuitState::Open => false,
        };
        open.then(|| self.set(CircuitState::Open, now))
    }

    /// Forgets an admitted trial that never produced an outcome (e.g. the
    /// caller went away), so the next caller may try.
    pub fn release_trial(&mut self) {
        self.trial_in_flight = false;
    }

    fn set(&mut self, state: CircuitState, now: Instant) -> CircuitState {
        self.state = state;
        self.changed_at = Some(now);
        state
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: CircuitPolicy = CircuitPolicy {
        enabled: true,
        failure_threshold: 3,
        open_timeout: Duration::from_secs(60),
    };

    #[test]
    fn opens_after_threshold_and_fails_fast() {
        let t0 = Instant::now();
        let mut breaker = CircuitBreaker::new();
        assert_eq!(breaker.on_failure(t0, &POLICY), None);
        assert_eq!(breaker.on_failure(t0, &POLICY), None);
        assert_eq!(breaker.on_failure(t0, &POLICY), Some(CircuitState::Open));
        assert_eq!(
            breaker.admit(t0 + Duration::from_secs(10), &POLICY),
            Admission::Rejected {
                retry_in: Duration::from_secs(50)
            }
        );
    }

    #[test]
    fn success_resets_the_count() {
        let t0 = Instant::now();
        let mut breaker = CircuitBreaker::new();
        breaker.on_failure(t0, &POLICY);
        breaker.on_failure(t0, &POLICY);
        breaker.on_success(t0);
        assert_eq!(breaker.on_failure(t0, &POLICY), None);
        assert_eq!(breaker.state(), CircuitState::Closed);
    }

    #[test]
    fn half_open_admits_one_trial_then_closes_or_reopens() {
        let t0 = Instant::now();
        let later = t0 + Duration::from_secs(61);
        let mut breaker = CircuitBreaker::new();
        for _ in 0..3 {
            breaker.on_failure(t0, &POLICY);
        }
        assert_eq!(breaker.admit(later, &POLICY), Admission::Trial);
        assert_eq!(breaker.state(), CircuitState::HalfOpen);
        assert!(
            matches!(breaker.admit(later, &POLICY), Admission::Rejected { .. }),
            "one trial at a time"
        );
        assert_eq!(breaker.on_failure(later, &POLICY), Some(CircuitState::Open));
        assert_eq!(breaker.changed_at(), Some(later));

        let much_later = later + Duration::from_secs(61);
        assert_eq!(breaker.admit(much_later, &POLICY), Admission::Trial);
        assert_eq!(breaker.on_success(much_later), Some(CircuitState::Closed));
        assert_eq!(breaker.admit(much_later, &POLICY), Admission::Allowed);
    }

    #[test]
    fn a_released_trial_lets_the_next_caller_try() {
        let t0 = Instant::now();
        let later = t0 + Duration::from_secs(61);
        let mut breaker = CircuitBreaker::new();
        for _ in 0..3 {
            breaker.on_failure(t0, &POLICY);
        }
        assert_eq!(breaker.admit(later, &POLICY), Admission::Trial);
        breaker.release_trial();
        assert_eq!(breaker.admit(later, &POLICY), Admission::Trial);
    }

    #[test]
    fn disabled_breaker_always_admits() {
        let policy = CircuitPolicy {
            enabled: false,
            ..POLICY
        };
        let t0 = Instant::now();
        let mut breaker = CircuitBreaker::new();
        for _ in 0..10 {
            assert_eq!(breaker.on_failure(t0, &policy), None);
        }
        assert_eq!(breaker.admit(t0, &policy), Admission::Allowed);
    }
}
