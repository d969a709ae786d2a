//! Recovery and failure rules of the health tracker and the circuit breaker
//! together, as the gateway feeds them (guide §3 rules 8 and 9): sequences of
//! observations and the states after each.

use std::time::{Duration, Instant};

use vmcp_domain::circuit::{Admission, CircuitBreaker, CircuitPolicy, CircuitState};
use vmcp_domain::health::{FailureKind, HealthPolicy, HealthState, HealthTracker, Outcome};

const POLICY: CircuitPolicy = CircuitPolicy {
    enabled: true,
    failure_threshold: 2,
    open_timeout: Duration::from_secs(60),
    recovery_probes: 2,
};

/// One observation as the gateway makes it.
#[derive(Clone, Copy, Debug)]
enum Step {
    /// An active probe answered.
    ProbeOk,
    /// An active probe (or a connect attempt) failed.
    ProbeFailed(FailureKind),
    /// A real call was admitted and failed at the transport.
    CallFailed,
    /// A real call was admitted and answered.
    CallOk,
}

/// Feeds `steps` one second apart (far less than the circuit's 60 s
/// timeout) and returns (health, circuit) after each.
fn run(auth_configured: bool, steps: &[Step]) -> Vec<(HealthState, CircuitState)> {
    let health_policy = HealthPolicy {
        unhealthy_threshold: 2,
        auth_configured,
        ..HealthPolicy::default()
    };
    let mut tracker = HealthTracker::new();
    let mut breaker = CircuitBreaker::new();
    let t0 = Instant::now();
    steps
        .iter()
        .enumerate()
        .map(|(i, step)| {
            let now = t0 + Duration::from_secs(i as u64);
            match *step {
                Step::ProbeOk => {
                    tracker.record(
                        Outcome::ProbeSucceeded {
                            latency: Duration::from_millis(5),
                        },
                        &health_policy,
                    );
                    breaker.on_probe_success(now, &POLICY);
                }
                Step::ProbeFailed(kind) => {
                    tracker.record(Outcome::Failed(kind), &health_policy);
                    if kind.trips_circuit(auth_configured) {
                        breaker.on_failure(now, &POLICY);
                    }
                }
                Step::CallFailed | Step::CallOk => {
                    if matches!(breaker.admit(now, &POLICY), Admission::Rejected { .. }) {
                        // Failed fast: no outcome.
                    } else if matches!(step, Step::CallOk) {
                        tracker.record(Outcome::CallSucceeded, &health_policy);
                        breaker.on_success(now);
                    } else {
                        tracker.record(Outcome::Failed(FailureKind::Timeout), &health_policy);
                        breaker.on_call_failure(now, &POLICY);
                    }
                }
            }
            (tracker.state(), breaker.state())
        })
        .collect()
}

fn routable((health, circuit): (HealthState, CircuitState)) -> bool {
    health.is_routable() && circuit != CircuitState::Open
}

/// One row: what it shows, whether the backend has outgoing auth, the steps,
/// and the (health, circuit) expected after each step.
type RecoveryCase<'a> = (&'a str, bool, &'a [Step], &'a [(HealthState, CircuitState)]);

#[test]
fn recovery_table() {
    use CircuitState::*;
    use HealthState::*;
    use Step::*;
    const DOWN: Step = ProbeFailed(FailureKind::Unreachable);
    const DENIED: Step = ProbeFailed(FailureKind::Unauthorized);
    let cases: &[RecoveryCase] = &[
        (
            "an outage opens the circuit; two good probes make it routable",
            false,
            &[ProbeOk, DOWN, DOWN, DOWN, ProbeOk, ProbeOk],
            &[
                (Healthy, Closed),
                (Healthy, Closed),
                (Unhealthy, Open),
                (Unhealthy, Open),
                (Unhealthy, Open),
                (Healthy, HalfOpen),
            ],
        ),
        (
            "one good probe between failures is not recovery",
            false,
            &[DOWN, DOWN, ProbeOk, DOWN, ProbeOk],
            &[
                (Unhealthy, Closed),
                (Unhealthy, Open),
                (Unhealthy, Open),
                (Unhealthy, Open),
                (Unhealthy, Open),
            ],
        ),
        (
            "a good probe after the half-open step closes the circuit",
            false,
            &[DOWN, DOWN, ProbeOk, ProbeOk, ProbeOk],
            &[
                (Unhealthy, Closed),
                (Unhealthy, Open),
                (Unhealthy, Open),
                (Healthy, HalfOpen),
                (Healthy, Closed),
            ],
        ),
        (
            "calls that fail while pings answer still trip the circuit",
            false,
            &[
                ProbeOk, CallFailed, ProbeOk, CallFailed, ProbeOk, ProbeOk, CallFailed,
            ],
            &[
                (Healthy, Closed),
                (Healthy, Closed),
                // The good probe does not excuse the failed call...
                (Healthy, Closed),
                // ...so the second failed call opens the circuit.
                (Healthy, Open),
                (Healthy, Open),
                (Healthy, HalfOpen),
                // The failed trial call opens it again at once.
                (Healthy, Open),
            ],
        ),
        (
            "good probes end a run of failed probes",
            false,
            &[ProbeOk, DOWN, ProbeOk, DOWN, ProbeOk],
            &[
                (Healthy, Closed),
                (Healthy, Closed),
                (Healthy, Closed),
                (Healthy, Closed),
                (Healthy, Closed),
            ],
        ),
        (
            "a good trial call closes the half-open circuit",
            false,
            &[DOWN, DOWN, ProbeOk, ProbeOk, CallOk],
            &[
                (Unhealthy, Closed),
                (Unhealthy, Open),
                (Unhealthy, Open),
                (Healthy, HalfOpen),
                (Healthy, Closed),
            ],
        ),
        (
            "401/403 without auth never opens the circuit",
            false,
            &[DENIED, DENIED, DENIED, DENIED, DENIED],
            &[
                (Unauthenticated, Closed),
                (Unauthenticated, Closed),
                (Unauthenticated, Closed),
                (Unauthenticated, Closed),
                (Unauthenticated, Closed),
            ],
        ),
        (
            "401/403 with auth configured is a failure like any other",
            true,
            &[DENIED, DENIED, DENIED],
            &[(Unhealthy, Closed), (Unhealthy, Open), (Unhealthy, Open)],
        ),
    ];
    for (name, auth, steps, want) in cases {
        assert_eq!(run(*auth, steps), *want, "{name}");
    }
}

#[test]
fn routable_within_two_probes_of_answering_again() {
    use Step::*;
    const DOWN: Step = ProbeFailed(FailureKind::Unreachable);
    // However long the outage, the circuit's 60 s timeout is not what ends it.
    let mut steps = vec![ProbeOk];
    steps.extend(std::iter::repeat_n(DOWN, 50));
    steps.extend([ProbeOk, ProbeOk]);
    let states = run(false, &steps);
    let first_ok = 51;
    assert!(!routable(states[first_ok]), "one good probe is not enough");
    assert!(routable(states[first_ok + 1]), "{:?}", states[first_ok + 1]);
}

#[test]
fn which_failures_trip_the_circuit() {
    use FailureKind::*;
    let cases = [
        (Timeout, false, true),
        (Unreachable, false, true),
        (Protocol, false, true),
        (Unauthorized, false, false),
        (Unauthorized, true, true),
    ];
    for (kind, auth, want) in cases {
        assert_eq!(kind.trips_circuit(auth), want, "{kind:?} auth={auth}");
    }
}
