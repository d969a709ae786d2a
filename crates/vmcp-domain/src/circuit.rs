//! The per-backend circuit breaker. It acts on the request path: while open,
//! calls fail fast instead of waiting for a timeout.
//!
//! `Closed` → `failure_threshold` failures in a row → `Open` → after
//! `open_timeout` the next admission is a single trial (`HalfOpen`) → its
//! success closes the circuit, its failure opens it again.
//!
//! Active probes are the same evidence a trial looks for, so they end an
//! open circuit's wait early: `recovery_probes` successful probes in a row
//! while open make it `HalfOpen` (routable again; the next call is the
//! trial), and a successful probe while half-open closes it unless a trial
//! call is under way (then the trial decides). Any failure
//! resets that count, so a backend that answers pings but fails calls still
//! trips the circuit and goes back to `Open` on its first failed trial.
//! Time is passed in, so the machine is tested without clocks.

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
    /// Successful probes in a row that end an open circuit's wait early
    /// (hysteresis: one good probe is not enough).
    pub recovery_probes: u32,
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
    probe_successes: u32,
    /// Whether the current run of failures includes a failed call.
    calls_in_run: bool,
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
            probe_successes: 0,
            calls_in_run: false,
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

    /// Records a successful call; returns the new state if it changed.
    pub fn on_success(&mut self, now: Instant) -> Option<CircuitState> {
        self.failures = 0;
        self.calls_in_run = false;
        self.trial_in_flight = false;
        (self.state != CircuitState::Closed).then(|| self.set(CircuitState::Closed, now))
    }

    /// Records a successful active probe; returns the new state if it changed.
    /// Closed: ends a run of failed probes, but not one with failed calls in
    /// it (answering pings does not excuse failing calls; only a good call
    /// does). Open: counts towards `recovery_probes`, then half-open.
    /// Half-open: closes, unless a trial call is under way (its outcome decides).
    pub fn on_probe_success(
        &mut self,
        now: Instant,
        policy: &CircuitPolicy,
    ) -> Option<CircuitState> {
        match self.state {
            CircuitState::Closed if self.calls_in_run => None,
            // A trial call is under way: its outcome decides, not the probe.
            CircuitState::HalfOpen if self.trial_in_flight => None,
            CircuitState::Closed | CircuitState::HalfOpen => self.on_success(now),
            CircuitState::Open if !policy.enabled => self.on_success(now),
            CircuitState::Open => {
                self.probe_successes = self.probe_successes.saturating_add(1);
                if self.probe_successes >= policy.recovery_probes.max(1) {
                    self.trial_in_flight = false;
                    Some(self.set(CircuitState::HalfOpen, now))
                } else {
                    None
                }
            }
        }
    }

    /// Records a failed call; returns the new state if it changed.
    pub fn on_call_failure(
        &mut self,
        now: Instant,
        policy: &CircuitPolicy,
    ) -> Option<CircuitState> {
        self.calls_in_run = true;
        self.on_failure(now, policy)
    }

    /// Records a failure (of a probe or a connect attempt); returns the new
    /// state if it changed.
    pub fn on_failure(&mut self, now: Instant, policy: &CircuitPolicy) -> Option<CircuitState> {
        self.failures = self.failures.saturating_add(1);
        self.trial_in_flight = false;
        self.probe_successes = 0;
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
        self.probe_successes = 0;
        if state == CircuitState::Closed {
            self.calls_in_run = false;
        }
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
        recovery_probes: 2,
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

    #[test]
    fn good_probes_end_the_wait_of_an_open_circuit() {
        let t0 = Instant::now();
        let soon = t0 + Duration::from_secs(1);
        let mut breaker = CircuitBreaker::new();
        for _ in 0..3 {
            breaker.on_failure(t0, &POLICY);
        }
        assert_eq!(
            breaker.on_probe_success(soon, &POLICY),
            None,
            "one good probe is noise"
        );
        assert_eq!(breaker.state(), CircuitState::Open);
        assert_eq!(
            breaker.on_probe_success(soon, &POLICY),
            Some(CircuitState::HalfOpen),
            "two in a row: routable again, long before the 60 s timeout"
        );
        assert_eq!(breaker.admit(soon, &POLICY), Admission::Trial);
        assert_eq!(breaker.on_success(soon), Some(CircuitState::Closed));
    }

    #[test]
    fn a_failure_between_good_probes_restarts_the_count() {
        let t0 = Instant::now();
        let mut breaker = CircuitBreaker::new();
        for _ in 0..3 {
            breaker.on_failure(t0, &POLICY);
        }
        breaker.on_probe_success(t0, &POLICY);
        breaker.on_failure(t0, &POLICY);
        assert_eq!(breaker.on_probe_success(t0, &POLICY), None);
        assert_eq!(breaker.state(), CircuitState::Open);
    }

    #[test]
    fn answering_pings_does_not_save_a_backend_whose_calls_fail() {
        let t0 = Instant::now();
        let mut breaker = CircuitBreaker::new();
        for _ in 0..3 {
            breaker.on_failure(t0, &POLICY);
        }
        breaker.on_probe_success(t0, &POLICY);
        breaker.on_probe_success(t0, &POLICY);
        assert_eq!(breaker.admit(t0, &POLICY), Admission::Trial);
        assert_eq!(
            breaker.on_failure(t0, &POLICY),
            Some(CircuitState::Open),
            "the failed trial call opens it again"
        );
    }

    #[test]
    fn a_good_probe_closes_a_half_open_circuit() {
        let t0 = Instant::now();
        let mut breaker = CircuitBreaker::new();
        for _ in 0..3 {
            breaker.on_failure(t0, &POLICY);
        }
        breaker.on_probe_success(t0, &POLICY);
        breaker.on_probe_success(t0, &POLICY);
        assert_eq!(
            breaker.on_probe_success(t0, &POLICY),
            Some(CircuitState::Closed)
        );
    }

    #[test]
    fn a_good_probe_does_not_preempt_a_trial_call_under_way() {
        let t0 = Instant::now();
        let mut breaker = CircuitBreaker::new();
        for _ in 0..3 {
            breaker.on_failure(t0, &POLICY);
        }
        breaker.on_probe_success(t0, &POLICY);
        breaker.on_probe_success(t0, &POLICY);
        assert_eq!(breaker.state(), CircuitState::HalfOpen);
        assert_eq!(breaker.admit(t0, &POLICY), Admission::Trial);
        assert_eq!(breaker.on_probe_success(t0, &POLICY), None);
        assert_eq!(
            breaker.on_call_failure(t0, &POLICY),
            Some(CircuitState::Open)
        );
    }
}
