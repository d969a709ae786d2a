//! The status rules (guide §3, rules 2, 3, 6, 7, 8, 10) as tables.

use vmcp_domain::health::HealthState;
use vmcp_domain::status::{
    BackendSnapshot, BackendStatus, CircuitState, ConditionStatus, HealthSnapshot,
    MAX_REPORTED_BACKENDS, Phase, Status, Timestamp, build_status, condition_types, reasons,
};

fn backend(name: &str, health: HealthState) -> BackendSnapshot {
    BackendSnapshot {
        name: name.to_string(),
        url: format!("http://{name}.svc:8080/mcp"),
        auth_type: Some("unauthenticated".into()),
        auth_config_ref: None,
        health,
        last_health_check: Some(ts(100)),
        message: (!health.is_routable()).then(|| "backend unreachable".to_string()),
        circuit: CircuitState::Closed,
        circuit_last_changed: None,
        consecutive_failures: 0,
    }
}

fn ts(secs: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + secs).expect("valid timestamp")
}

fn snapshot(backends: Vec<BackendSnapshot>) -> HealthSnapshot {
    HealthSnapshot {
        backends,
        discovery_complete: true,
        runtime_error: None,
    }
}

fn cond(status: &Status, type_: &str) -> (ConditionStatus, String) {
    let c = status
        .condition(type_)
        .unwrap_or_else(|| panic!("{type_} missing"));
    (c.status, c.reason.clone())
}

#[test]
fn phase_and_condition_table() {
    use ConditionStatus::{False, True, Unknown};
    use HealthState::*;
    let open = {
        let mut b = backend("b", Healthy);
        b.circuit = CircuitState::Open;
        b
    };
    let cases: Vec<(
        &str,
        HealthSnapshot,
        Phase,
        ConditionStatus,
        &str,
        ConditionStatus,
    )> = vec![
        (
            "all healthy",
            snapshot(vec![backend("a", Healthy), backend("b", Healthy)]),
            Phase::Ready,
            True,
            reasons::ALL_BACKENDS_READY,
            False,
        ),
        (
            "one down is degraded, still ready",
            snapshot(vec![backend("a", Healthy), backend("b", Unhealthy)]),
            Phase::Degraded,
            True,
            reasons::SOME_BACKENDS_UNHEALTHY,
            True,
        ),
        (
            "slow is degraded",
            snapshot(vec![backend("a", Degraded)]),
            Phase::Degraded,
            True,
            reasons::SOME_BACKENDS_UNHEALTHY,
            True,
        ),
        (
            "open circuit is not routable",
            snapshot(vec![backend("a", Healthy), open.clone()]),
            Phase::Degraded,
            True,
            reasons::SOME_BACKENDS_UNHEALTHY,
            True,
        ),
        (
            "all down is failed",
            snapshot(vec![backend("a", Unhealthy), backend("b", Unauthenticated)]),
            Phase::Failed,
            False,
            reasons::NO_BACKENDS_ROUTABLE,
            True,
        ),
        (
            "no results yet is pending",
            snapshot(vec![
                backend("a", HealthState::Unknown),
                backend("b", HealthState::Unknown),
            ]),
            Phase::Pending,
            Unknown,
            reasons::AWAITING_HEALTH_CHECKS,
            Unknown,
        ),
        (
            "down plus unknown is still pending",
            snapshot(vec![
                backend("a", Unhealthy),
                backend("b", HealthState::Unknown),
            ]),
            Phase::Pending,
            Unknown,
            reasons::AWAITING_HEALTH_CHECKS,
            Unknown,
        ),
        (
            "healthy plus unknown serves",
            snapshot(vec![
                backend("a", Healthy),
                backend("b", HealthState::Unknown),
            ]),
            Phase::Degraded,
            True,
            reasons::SOME_BACKENDS_UNHEALTHY,
            True,
        ),
        (
            "no backends is failed",
            snapshot(vec![]),
            Phase::Failed,
            False,
            reasons::NO_BACKENDS,
            False,
        ),
        (
            "discovery not done is pending",
            HealthSnapshot {
                discovery_complete: false,
                ..snapshot(vec![backend("a", Healthy)])
            },
            Phase::Pending,
            Unknown,
            reasons::DISCOVERY_IN_PROGRESS,
            Unknown,
        ),
        (
            "runtime error is failed",
            HealthSnapshot {
                runtime_error: Some("config reload failed".into()),
                ..snapshot(vec![backend("a", Healthy)])
            },
            Phase::Failed,
            False,
            reasons::RUNTIME_ERROR,
            False,
        ),
    ];
    for (name, input, phase, ready, reason, degraded) in cases {
        let status = build_status(&input, Some(4), None, ts(0));
        assert_eq!(status.phase, phase, "{name}: {}", status.message);
        assert_eq!(
            cond(&status, condition_types::READY),
            (ready, reason.to_string()),
            "{name}"
        );
        assert_eq!(
            cond(&status, condition_types::DEGRADED).0,
            degraded,
            "{name}"
        );
        assert!(
            status
                .condition(condition_types::BACKENDS_DISCOVERED)
                .is_some(),
            "{name}"
        );
        for c in &status.conditions {
            assert!(
                !c.reason.is_empty()
                    && c.reason
                        .chars()
                        .next()
                        .is_some_and(|ch| ch.is_ascii_uppercase()),
                "{name}: reason {:?}",
                c.reason
            );
            assert_eq!(c.observed_generation, Some(4), "{name}");
        }
    }
}

#[test]
fn backend_states_map_to_reported_statuses() {
    use HealthState::*;
    let status = build_status(
        &snapshot(vec![
            backend("a", Healthy),
            backend("b", Degraded),
            backend("c", Unhealthy),
            backend("d", Unknown),
            backend("e", Unauthenticated),
        ]),
        None,
        None,
        ts(0),
    );
    let by_name = |n: &str| {
        status
            .discovered_backends
            .iter()
            .find(|b| b.name == n)
            .expect("listed")
            .status
    };
    assert_eq!(by_name("a"), BackendStatus::Ready);
    assert_eq!(by_name("b"), BackendStatus::Degraded);
    assert_eq!(by_name("c"), BackendStatus::Unavailable);
    assert_eq!(by_name("d"), BackendStatus::Unknown);
    assert_eq!(by_name("e"), BackendStatus::Unauthenticated);
    // Least healthy first.
    assert_eq!(status.discovered_backends[0].name, "c");
    assert!(
        status.message.contains("c") && status.message.contains("e"),
        "{}",
        status.message
    );
}

#[test]
fn transition_time_moves_only_when_status_flips() {
    use HealthState::*;
    let healthy = snapshot(vec![backend("a", Healthy), backend("b", Healthy)]);
    let first = build_status(&healthy, Some(1), None, ts(0));
    let again = build_status(&healthy, Some(1), Some(&first), ts(30));
    for c in &again.conditions {
        assert_eq!(c.last_transition_time, ts(0), "{} re-reported", c.type_);
    }
    assert!(
        again.same_content_as(&first),
        "a re-report says nothing new"
    );

    let one_down = snapshot(vec![backend("a", Healthy), backend("b", Unhealthy)]);
    let degraded = build_status(&one_down, Some(1), Some(&again), ts(60));
    let time = |s: &Status, t: &str| s.condition(t).expect("present").last_transition_time;
    assert_eq!(
        time(&degraded, condition_types::DEGRADED),
        ts(60),
        "Degraded flipped to True"
    );
    assert_eq!(
        time(&degraded, condition_types::READY),
        ts(0),
        "Ready stayed True (reason changed only)"
    );
    assert!(!degraded.same_content_as(&again));
}

#[test]
fn observed_generation_is_the_loaded_one() {
    let status = build_status(
        &snapshot(vec![backend("a", HealthState::Healthy)]),
        Some(7),
        None,
        ts(0),
    );
    assert_eq!(status.observed_generation, Some(7));
    let none = build_status(
        &snapshot(vec![backend("a", HealthState::Healthy)]),
        None,
        None,
        ts(0),
    );
    assert_eq!(none.observed_generation, None);
}

#[test]
fn health_check_times_alone_are_not_a_change() {
    let mut later = backend("a", HealthState::Healthy);
    later.last_health_check = Some(ts(500));
    let first = build_status(
        &snapshot(vec![backend("a", HealthState::Healthy)]),
        None,
        None,
        ts(0),
    );
    let second = build_status(&snapshot(vec![later]), None, Some(&first), ts(500));
    assert!(second.same_content_as(&first));
}

#[test]
fn large_fleets_are_capped_and_summarised() {
    let backends: Vec<_> = (0..500)
        .map(|i| {
            backend(
                &format!("backend-{i:03}"),
                if i % 50 == 0 {
                    HealthState::Unhealthy
                } else {
                    HealthState::Healthy
                },
            )
        })
        .collect();
    let status = build_status(&snapshot(backends), Some(1), None, ts(0));
    assert_eq!(status.backend_count, 500);
    assert_eq!(status.discovered_backends.len(), MAX_REPORTED_BACKENDS);
    assert!(
        status.discovered_backends[..10]
            .iter()
            .all(|b| b.status == BackendStatus::Unavailable),
        "unhealthy listed first"
    );
    assert!(status.message.contains("and 5 more"), "{}", status.message);
    assert!(status.message.contains("of 500"), "{}", status.message);
    let size = serde_json::to_vec(&status).expect("serializes").len();
    assert!(size < 64 * 1024, "status is {size} bytes");
}

#[test]
fn wire_format_uses_the_reference_names() {
    let status = build_status(
        &snapshot(vec![backend("a", HealthState::Healthy)]),
        Some(2),
        None,
        ts(0),
    );
    let json = serde_json::to_value(&status).expect("serializes");
    for key in [
        "phase",
        "message",
        "conditions",
        "discoveredBackends",
        "backendCount",
        "observedGeneration",
        "timestamp",
    ] {
        assert!(json.get(key).is_some(), "{key} missing in {json}");
    }
    let b = &json["discoveredBackends"][0];
    assert_eq!(b["status"], "ready");
    assert_eq!(b["circuitBreakerState"], "closed");
    assert_eq!(b["consecutiveFailures"], 0);
    assert_eq!(json["conditions"][0]["type"], "Ready");
    assert_eq!(json["conditions"][0]["status"], "True");
    let back: Status = serde_json::from_value(json).expect("round trip");
    assert_eq!(back, status);
}

#[test]
fn failure_counters_are_content_but_not_a_change_of_state() {
    let mut dead = backend("dead", HealthState::Unhealthy);
    dead.consecutive_failures = 3;
    let before = build_status(&snapshot(vec![dead.clone()]), Some(1), None, ts(200));
    dead.consecutive_failures = 4;
    dead.last_health_check = Some(ts(230));
    let after = build_status(
        &snapshot(vec![dead.clone()]),
        Some(1),
        Some(&before),
        ts(230),
    );
    assert!(
        !after.same_content_as(&before),
        "metrics must see the new count"
    );
    assert!(
        after.same_report_as(&before),
        "a shared destination need not be rewritten"
    );

    dead.health = HealthState::Healthy;
    dead.message = None;
    let recovered = build_status(&snapshot(vec![dead]), Some(1), Some(&after), ts(240));
    assert!(
        !recovered.same_report_as(&after),
        "a change of state is a change"
    );
}

#[test]
fn reported_status_by_health_and_circuit() {
    use CircuitState::{Closed, HalfOpen, Open};
    use HealthState::*;
    let cases = [
        (Healthy, Closed, BackendStatus::Ready),
        (Healthy, HalfOpen, BackendStatus::Ready),
        (Healthy, Open, BackendStatus::Unavailable),
        (Degraded, Open, BackendStatus::Unavailable),
        (Unhealthy, Closed, BackendStatus::Unavailable),
        (Unknown, Open, BackendStatus::Unavailable),
        // A backend that keeps answering 401/403 is alive: an open circuit
        // (opened by earlier failures) must not hide why (guide §3 rule 8).
        (Unauthenticated, Closed, BackendStatus::Unauthenticated),
        (Unauthenticated, Open, BackendStatus::Unauthenticated),
    ];
    for (health, circuit, want) in cases {
        let mut b = backend("b", health);
        b.circuit = circuit;
        assert_eq!(b.status(), want, "{health:?} with a {circuit:?} circuit");
    }
}
