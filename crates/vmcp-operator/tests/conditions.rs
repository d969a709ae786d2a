//! The operator's conditions as tables: observations in, conditions out.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::apps::v1::{DeploymentCondition, DeploymentStatus};
use vmcp_crd::{Condition, ConditionStatus};
use vmcp_operator::conditions::{
    self, Computed, DeploymentView, GroupState, Observations, RbacState, RuntimeReport,
    ServiceState, reasons, types,
};

fn now() -> Timestamp {
    "2026-12-02T12:00:00Z".parse().expect("a time")
}

fn ago(seconds: i64) -> Timestamp {
    now() - SignedDuration::from_secs(seconds)
}

fn available(generation: i64, replicas: i32, config_generation: i64) -> DeploymentView {
    DeploymentView {
        generation,
        desired_replicas: replicas,
        status: Some(DeploymentStatus {
            observed_generation: Some(generation),
            replicas: Some(replicas),
            updated_replicas: Some(replicas),
            ready_replicas: Some(replicas),
            available_replicas: Some(replicas),
            conditions: Some(vec![DeploymentCondition {
                type_: Some("Available".into()),
                status: Some("True".into()),
                ..DeploymentCondition::default()
            }]),
            ..DeploymentStatus::default()
        }),
        config_generation: Some(config_generation),
    }
}

/// Everything fine: generation 4 deployed, the runtime reported 10 s ago.
fn healthy() -> Observations {
    Observations {
        generation: 4,
        group: GroupState::Found,
        config_issues: vec![],
        rbac: RbacState::Applied,
        apply_failure: None,
        deployment: Some(available(2, 1, 4)),
        service: ServiceState::Ready,
        runtime: RuntimeReport {
            timestamp: Some(ago(10)),
            observed_generation: Some(4),
        },
        heartbeat: Duration::from_secs(30),
        now: now(),
    }
}

fn get<'a>(computed: &'a [Computed], type_: &str) -> &'a Computed {
    computed
        .iter()
        .find(|c| c.type_ == type_)
        .unwrap_or_else(|| panic!("no {type_}"))
}

use ConditionStatus::{False, True, Unknown};

#[test]
fn conditions_table() {
    // (case, change to the healthy observations, expectations: type, status, reason)
    type Case = (
        &'static str,
        fn(&mut Observations),
        Vec<(&'static str, ConditionStatus, &'static str)>,
    );
    let table: Vec<Case> = vec![
        (
            "healthy",
            |_| {},
            vec![
                (types::GROUP_REF_VALIDATED, True, reasons::GROUP_FOUND),
                (types::CONFIG_VALID, True, reasons::CONFIG_VALID),
                (types::RBAC_READY, True, reasons::RBAC_APPLIED),
                (types::DEPLOYMENT_READY, True, reasons::DEPLOYMENT_AVAILABLE),
                (types::SERVICE_READY, True, reasons::SERVICE_READY),
                (types::RUNTIME_REPORTING, True, reasons::REPORTING),
                (types::RECONCILING, False, reasons::RECONCILED),
                (types::STALLED, False, reasons::NOT_STALLED),
            ],
        ),
        (
            "group missing",
            |o| {
                o.group = GroupState::Missing;
                o.rbac = RbacState::Blocked;
                o.deployment = None;
                o.service = ServiceState::Missing;
                o.runtime = RuntimeReport::default();
            },
            vec![
                (types::GROUP_REF_VALIDATED, False, reasons::GROUP_NOT_FOUND),
                (types::RBAC_READY, Unknown, reasons::NOT_PROVISIONED),
                (types::DEPLOYMENT_READY, Unknown, reasons::NOT_PROVISIONED),
                (types::SERVICE_READY, Unknown, reasons::NOT_PROVISIONED),
                (types::RUNTIME_REPORTING, Unknown, reasons::AWAITING_RUNTIME),
                (types::RECONCILING, False, reasons::STALLED),
                (types::STALLED, True, reasons::GROUP_NOT_FOUND),
            ],
        ),
        (
            "config invalid, old Deployment keeps running",
            |o| {
                o.config_issues = vec!["spec.config.aggregation: unknown field".into()];
                o.deployment = Some(available(2, 1, 3));
                o.runtime.observed_generation = Some(3);
            },
            vec![
                (types::CONFIG_VALID, False, reasons::CONFIG_INVALID),
                (types::DEPLOYMENT_READY, True, reasons::DEPLOYMENT_AVAILABLE),
                (types::RUNTIME_REPORTING, True, reasons::REPORTING),
                (types::STALLED, True, reasons::CONFIG_INVALID),
                (types::RECONCILING, False, reasons::STALLED),
            ],
        ),
        (
            "config invalid before anything was deployed",
            |o| {
                o.config_issues = vec!["spec.config: unknown field".into()];
                o.deployment = None;
                o.runtime = RuntimeReport::default();
            },
            vec![
                (types::DEPLOYMENT_READY, Unknown, reasons::NOT_PROVISIONED),
                (types::STALLED, True, reasons::CONFIG_INVALID),
            ],
        ),
        (
            "own service account",
            |o| o.rbac = RbacState::Provided("platform".into()),
            vec![
                (types::RBAC_READY, True, reasons::SERVICE_ACCOUNT_PROVIDED),
                (types::STALLED, False, reasons::NOT_STALLED),
            ],
        ),
        (
            "RBAC apply forbidden",
            |o| o.rbac = RbacState::Failed("Role demo-vmcp: forbidden".into()),
            vec![
                (types::RBAC_READY, False, reasons::APPLY_FAILED),
                (types::STALLED, True, reasons::APPLY_FAILED),
            ],
        ),
        (
            "Deployment apply invalid",
            |o| o.apply_failure = Some("Deployment demo: rejected".into()),
            vec![(types::STALLED, True, reasons::APPLY_FAILED)],
        ),
        (
            "Deployment just created",
            |o| {
                o.deployment = Some(DeploymentView {
                    generation: 1,
                    desired_replicas: 1,
                    status: None,
                    config_generation: Some(4),
                });
                o.runtime = RuntimeReport::default();
            },
            vec![
                (types::DEPLOYMENT_READY, False, reasons::ROLLING_OUT),
                (types::RUNTIME_REPORTING, Unknown, reasons::AWAITING_RUNTIME),
                (types::RECONCILING, True, reasons::PROGRESSING),
                (types::STALLED, False, reasons::NOT_STALLED),
            ],
        ),
        (
            "rolling out: the controller has not seen the new generation",
            |o| {
                o.deployment = Some(DeploymentView {
                    generation: 3,
                    ..available(2, 1, 4)
                });
            },
            vec![
                (types::DEPLOYMENT_READY, False, reasons::ROLLING_OUT),
                (types::RECONCILING, True, reasons::PROGRESSING),
            ],
        ),
        (
            "rolling out: old pods still up",
            |o| {
                let mut view = available(2, 1, 4);
                if let Some(status) = view.status.as_mut() {
                    status.replicas = Some(2);
                }
                o.deployment = Some(view);
            },
            vec![(types::DEPLOYMENT_READY, False, reasons::ROLLING_OUT)],
        ),
        (
            "no pod available",
            |o| {
                let mut view = available(2, 1, 4);
                if let Some(status) = view.status.as_mut() {
                    status.available_replicas = Some(0);
                    status.conditions = Some(vec![DeploymentCondition {
                        type_: Some("Available".into()),
                        status: Some("False".into()),
                        ..DeploymentCondition::default()
                    }]);
                }
                o.deployment = Some(view);
            },
            vec![
                (
                    types::DEPLOYMENT_READY,
                    False,
                    reasons::DEPLOYMENT_UNAVAILABLE,
                ),
                (types::RECONCILING, True, reasons::PROGRESSING),
            ],
        ),
        (
            "progress deadline exceeded",
            |o| {
                let mut view = available(2, 1, 4);
                if let Some(status) = view.status.as_mut() {
                    status.conditions = Some(vec![DeploymentCondition {
                        type_: Some("Progressing".into()),
                        status: Some("False".into()),
                        reason: Some("ProgressDeadlineExceeded".into()),
                        ..DeploymentCondition::default()
                    }]);
                }
                o.deployment = Some(view);
            },
            vec![
                (
                    types::DEPLOYMENT_READY,
                    False,
                    reasons::PROGRESS_DEADLINE_EXCEEDED,
                ),
                (types::STALLED, True, reasons::PROGRESS_DEADLINE_EXCEEDED),
            ],
        ),
        (
            "scaled to zero",
            |o| {
                o.deployment = Some(available(2, 0, 4));
            },
            vec![(types::DEPLOYMENT_READY, True, reasons::DEPLOYMENT_AVAILABLE)],
        ),
        (
            "load balancer pending",
            |o| o.service = ServiceState::AwaitingLoadBalancer,
            vec![
                (types::SERVICE_READY, False, reasons::AWAITING_LOAD_BALANCER),
                (types::RECONCILING, True, reasons::PROGRESSING),
            ],
        ),
        (
            "report within the bound (2 x 30 s + 5 s)",
            |o| o.runtime.timestamp = Some(ago(65)),
            vec![(types::RUNTIME_REPORTING, True, reasons::REPORTING)],
        ),
        (
            "report beyond the bound",
            |o| o.runtime.timestamp = Some(ago(66)),
            vec![
                (types::RUNTIME_REPORTING, False, reasons::REPORT_STALE),
                (types::STALLED, False, reasons::NOT_STALLED),
            ],
        ),
        (
            "a faster heartbeat tightens the bound",
            |o| {
                o.heartbeat = Duration::from_secs(5);
                o.runtime.timestamp = Some(ago(16));
            },
            vec![(types::RUNTIME_REPORTING, False, reasons::REPORT_STALE)],
        ),
        (
            "runtime reports the previous generation",
            |o| o.runtime.observed_generation = Some(3),
            vec![
                (types::RUNTIME_REPORTING, False, reasons::GENERATION_BEHIND),
                (types::RECONCILING, True, reasons::PROGRESSING),
            ],
        ),
        (
            "runtime reports no generation",
            |o| o.runtime.observed_generation = None,
            vec![(types::RUNTIME_REPORTING, False, reasons::GENERATION_BEHIND)],
        ),
        (
            "pods up, never reported",
            |o| o.runtime = RuntimeReport::default(),
            vec![(types::RUNTIME_REPORTING, False, reasons::NEVER_REPORTED)],
        ),
    ];
    for (case, change, expected) in table {
        let mut obs = healthy();
        change(&mut obs);
        let computed = conditions::compute(&obs);
        let order: Vec<&str> = computed.iter().map(|c| c.type_).collect();
        assert_eq!(order, types::ALL, "{case}: every type, in order");
        for (type_, status, reason) in expected {
            let got = get(&computed, type_);
            assert_eq!(
                (got.status, got.reason),
                (status, reason),
                "{case}: {type_} ({})",
                got.message
            );
        }
        for c in &computed {
            assert!(!c.message.is_empty(), "{case}: {} has a message", c.type_);
            assert!(
                c.reason
                    .chars()
                    .next()
                    .is_some_and(|ch| ch.is_ascii_uppercase()),
                "{case}: CamelCase reason"
            );
        }
    }
}

#[test]
fn stale_report_message_names_the_bound() {
    let mut obs = healthy();
    obs.runtime.timestamp = Some(ago(300));
    let computed = conditions::compute(&obs);
    let message = &get(&computed, types::RUNTIME_REPORTING).message;
    assert!(
        message.contains("300s") && message.contains("65s"),
        "{message}"
    );
}

#[test]
fn next_check_is_just_after_the_report_goes_stale() {
    let mut obs = healthy();
    obs.runtime.timestamp = Some(ago(10));
    assert_eq!(
        conditions::next_check(&obs),
        Some(Duration::from_secs(65 - 10 + 1))
    );
    obs.runtime.timestamp = Some(ago(100));
    assert_eq!(
        conditions::next_check(&obs),
        Some(Duration::from_secs(30)),
        "already stale: look again every heartbeat"
    );
    obs.runtime.timestamp = None;
    assert_eq!(conditions::next_check(&obs), None);
}

#[test]
fn transition_time_changes_only_on_a_flip() {
    let first = conditions::settle(&[], &conditions::compute(&healthy()), 4, ago(100));
    assert!(
        first
            .iter()
            .all(|c| c.last_transition_time == ago(100).to_string())
    );
    assert!(first.iter().all(|c| c.observed_generation == Some(4)));

    // Same statuses a generation later, new messages: times kept.
    let mut obs = healthy();
    obs.generation = 5;
    obs.runtime.timestamp = Some(ago(3));
    let again = conditions::settle(&first, &conditions::compute(&obs), 5, now());
    for c in &again {
        assert_eq!(
            c.last_transition_time,
            ago(100).to_string(),
            "{} did not flip",
            c.type_
        );
        assert_eq!(c.observed_generation, Some(5));
    }

    // The runtime goes stale: only RuntimeReporting flips.
    obs.runtime.timestamp = Some(ago(200));
    let stale = conditions::settle(&again, &conditions::compute(&obs), 5, now());
    for c in &stale {
        let want = if c.type_ == types::RUNTIME_REPORTING {
            now()
        } else {
            ago(100)
        };
        assert_eq!(c.last_transition_time, want.to_string(), "{}", c.type_);
    }
}

#[test]
fn holds_compares_every_field() {
    let desired = conditions::settle(&[], &conditions::compute(&healthy()), 4, now());
    assert!(conditions::holds(&desired, &desired));
    let mut with_runtime = desired.clone();
    with_runtime.push(Condition {
        type_: "Ready".into(),
        status: True,
        reason: "AllBackendsReady".into(),
        message: "m".into(),
        last_transition_time: now().to_string(),
        observed_generation: Some(4),
    });
    assert!(
        conditions::holds(&with_runtime, &desired),
        "the runtime's conditions do not matter"
    );
    let mut changed = desired.clone();
    changed[0].message = "other".into();
    assert!(!conditions::holds(&changed, &desired));
    assert!(
        !conditions::holds(&desired[1..], &desired),
        "a missing condition needs a write"
    );
}

#[test]
fn only_new_failures_make_events() {
    let healthy_conditions = conditions::settle(&[], &conditions::compute(&healthy()), 4, now());
    assert!(conditions::new_failures(&[], &healthy_conditions).is_empty());
    let mut obs = healthy();
    obs.group = GroupState::Missing;
    let missing = conditions::settle(&healthy_conditions, &conditions::compute(&obs), 4, now());
    let failures: Vec<&str> = conditions::new_failures(&healthy_conditions, &missing)
        .iter()
        .map(|c| c.type_.as_str())
        .collect();
    assert_eq!(failures, [types::GROUP_REF_VALIDATED, types::STALLED]);
    assert!(
        conditions::new_failures(&missing, &missing).is_empty(),
        "no Event on a re-report"
    );
}

#[test]
fn a_heartbeat_alone_changes_no_condition() {
    let mut early = healthy();
    early.runtime.timestamp = Some(ago(40));
    let mut late = healthy();
    late.runtime.timestamp = Some(ago(1));
    assert_eq!(
        conditions::compute(&early),
        conditions::compute(&late),
        "a newer report with the same content must not change the operator's status"
    );
}

#[test]
fn retries_back_off_per_object() {
    use vmcp_operator::controller::{RETRY, RETRY_MAX, retry_delay};
    let table = [
        (1, RETRY),
        (2, RETRY * 2),
        (3, RETRY * 4),
        (7, RETRY * 64),
        (8, RETRY_MAX),
        (u32::MAX, RETRY_MAX),
    ];
    for (failures, want) in table {
        assert_eq!(
            retry_delay(failures),
            want.min(RETRY_MAX),
            "failure {failures}"
        );
    }
}
