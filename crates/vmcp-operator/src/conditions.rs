//! The conditions the operator owns on a `VirtualMCPServer`, as pure logic:
//! observations in, conditions out.
//!
//! The runtime owns `Ready`, `BackendsDiscovered` and `Degraded`; the
//! operator never writes them. The operator's conditions describe the
//! infrastructure and whether the runtime is alive:
//!
//! | type | `True` when |
//! |---|---|
//! | `GroupRefValidated` | the `MCPGroup` of `spec.groupRef` exists |
//! | `ConfigValid` | the rendered config passes `vmcp validate`'s checks |
//! | `RBACReady` | the runtime's ServiceAccount, Role, RoleBinding are applied (or `spec.serviceAccount` is used) |
//! | `DeploymentReady` | the Deployment is rolled out and available |
//! | `ServiceReady` | the Service exists (with an address, for `LoadBalancer`) |
//! | `RuntimeReporting` | the runtime's last report is recent and for the deployed config generation |
//! | `Reconciling` | (kstatus) something is still converging |
//! | `Stalled` | (kstatus) progress needs a change of the object or the cluster |
//!
//! `lastTransitionTime` changes only when a condition's `status` flips;
//! every condition carries the `observedGeneration` it was computed for.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::apps::v1::DeploymentStatus;
use vmcp_crd::{Condition, ConditionStatus};

/// Condition types, as named constants.
pub mod types {
    /// The `MCPGroup` exists.
    pub const GROUP_REF_VALIDATED: &str = "GroupRefValidated";
    /// The config is valid.
    pub const CONFIG_VALID: &str = "ConfigValid";
    /// The runtime's RBAC is in place.
    pub const RBAC_READY: &str = "RBACReady";
    /// The Deployment is rolled out and available.
    pub const DEPLOYMENT_READY: &str = "DeploymentReady";
    /// The Service is in place.
    pub const SERVICE_READY: &str = "ServiceReady";
    /// The runtime reports, recently, for the deployed config.
    pub const RUNTIME_REPORTING: &str = "RuntimeReporting";
    /// kstatus: still converging.
    pub const RECONCILING: &str = "Reconciling";
    /// kstatus: stuck until something changes.
    pub const STALLED: &str = "Stalled";

    /// Every type the operator writes, in the order it writes them.
    pub const ALL: [&str; 8] = [
        GROUP_REF_VALIDATED,
        CONFIG_VALID,
        RBAC_READY,
        DEPLOYMENT_READY,
        SERVICE_READY,
        RUNTIME_REPORTING,
        RECONCILING,
        STALLED,
    ];
}

/// Condition reasons, as named constants (CamelCase).
pub mod reasons {
    /// The group exists.
    pub const GROUP_FOUND: &str = "GroupFound";
    /// The group does not exist.
    pub const GROUP_NOT_FOUND: &str = "GroupNotFound";
    /// The config passes validation.
    pub const CONFIG_VALID: &str = "ConfigValid";
    /// The config fails validation.
    pub const CONFIG_INVALID: &str = "ConfigInvalid";
    /// The operator applied the runtime's RBAC.
    pub const RBAC_APPLIED: &str = "RBACApplied";
    /// `spec.serviceAccount` is used; no RBAC is created.
    pub const SERVICE_ACCOUNT_PROVIDED: &str = "ServiceAccountProvided";
    /// An apply of a child failed (RBAC refused, invalid object, ...).
    pub const APPLY_FAILED: &str = "ApplyFailed";
    /// Not provisioned: an earlier condition blocks it.
    pub const NOT_PROVISIONED: &str = "NotProvisioned";
    /// The Deployment is rolled out and available.
    pub const DEPLOYMENT_AVAILABLE: &str = "DeploymentAvailable";
    /// The Deployment's new pods are not all up yet.
    pub const ROLLING_OUT: &str = "RollingOut";
    /// The Deployment has no available pods.
    pub const DEPLOYMENT_UNAVAILABLE: &str = "DeploymentUnavailable";
    /// The Deployment did not progress within its deadline.
    pub const PROGRESS_DEADLINE_EXCEEDED: &str = "ProgressDeadlineExceeded";
    /// The child does not exist (yet).
    pub const MISSING: &str = "Missing";
    /// The Service exists.
    pub const SERVICE_READY: &str = "ServiceReady";
    /// A `LoadBalancer` Service has no address yet.
    pub const AWAITING_LOAD_BALANCER: &str = "AwaitingLoadBalancer";
    /// The runtime reported recently, for the deployed generation.
    pub const REPORTING: &str = "Reporting";
    /// The runtime has not reported yet, and its pods are not up yet.
    pub const AWAITING_RUNTIME: &str = "AwaitingRuntime";
    /// The pods are up but the runtime never reported.
    pub const NEVER_REPORTED: &str = "NeverReported";
    /// The runtime's last report is older than its heartbeat allows.
    pub const REPORT_STALE: &str = "ReportStale";
    /// The runtime reports an older config generation than deployed.
    pub const GENERATION_BEHIND: &str = "GenerationBehind";
    /// Everything is in place.
    pub const RECONCILED: &str = "Reconciled";
    /// Children are being created or rolled out.
    pub const PROGRESSING: &str = "Progressing";
    /// Not stalled.
    pub const NOT_STALLED: &str = "NotStalled";
    /// Stalled; `Reconciling` is `False` meanwhile.
    pub const STALLED: &str = "Stalled";
}

/// Whether the group of `spec.groupRef` exists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupState {
    /// It exists.
    Found,
    /// It does not.
    Missing,
}

/// What happened to the runtime's RBAC.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RbacState {
    /// Applied (or already in place).
    Applied,
    /// `spec.serviceAccount` names this account; nothing is created.
    Provided(String),
    /// Not attempted: an earlier condition blocks provisioning.
    Blocked,
    /// The apply failed; the sanitised cause.
    Failed(String),
}

/// The Deployment as observed.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DeploymentView {
    /// `metadata.generation`.
    pub generation: i64,
    /// `spec.replicas` (the API server defaults it to 1).
    pub desired_replicas: i32,
    /// `status`.
    pub status: Option<DeploymentStatus>,
    /// `VMCP_CONFIG_GENERATION` of its pod template: the config generation
    /// it deploys.
    pub config_generation: Option<i64>,
}

/// The Service as observed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServiceState {
    /// It exists and has its address.
    Ready,
    /// A `LoadBalancer` without an ingress address yet.
    AwaitingLoadBalancer,
    /// It does not exist.
    Missing,
}

/// The runtime's last report, from the runtime's fields of the status.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RuntimeReport {
    /// `status.timestamp`.
    pub timestamp: Option<Timestamp>,
    /// `status.observedGeneration`: the config generation it loaded.
    pub observed_generation: Option<i64>,
}

/// Everything the conditions are computed from.
#[derive(Clone, Debug)]
pub struct Observations {
    /// `metadata.generation` of the `VirtualMCPServer`.
    pub generation: i64,
    /// The group.
    pub group: GroupState,
    /// The config's problems (`spec.config.<path>: <message>`).
    pub config_issues: Vec<String>,
    /// The RBAC.
    pub rbac: RbacState,
    /// A failed apply of the ConfigMap, Service or Deployment, sanitised.
    pub apply_failure: Option<String>,
    /// The Deployment, if it exists.
    pub deployment: Option<DeploymentView>,
    /// The Service.
    pub service: ServiceState,
    /// The runtime's last report.
    pub runtime: RuntimeReport,
    /// The runtime's heartbeat (`statusReportingInterval`).
    pub heartbeat: Duration,
    /// Now.
    pub now: Timestamp,
}

/// A condition before its transition time is settled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Computed {
    /// Type.
    pub type_: &'static str,
    /// Status.
    pub status: ConditionStatus,
    /// Reason (one of [`reasons`]).
    pub reason: &'static str,
    /// Message.
    pub message: String,
}

fn cond(
    type_: &'static str,
    status: ConditionStatus,
    reason: &'static str,
    message: impl Into<String>,
) -> Computed {
    Computed {
        type_,
        status,
        reason,
        message: message.into(),
    }
}

/// The most characters of a condition message (the API allows 32768; a
/// long list of config problems is cut, with a count of the rest).
const MESSAGE_LIMIT: usize = 2000;

fn join_limited(items: &[String]) -> String {
    let mut out = String::new();
    for (index, item) in items.iter().enumerate() {
        let separator = if out.is_empty() { "" } else { "; " };
        if out.len() + separator.len() + item.len() > MESSAGE_LIMIT {
            out.push_str(&format!("{separator}and {} more", items.len() - index));
            break;
        }
        out.push_str(separator);
        out.push_str(item);
    }
    out
}

/// How the Deployment is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Rollout {
    Available,
    RollingOut,
    Unavailable,
    DeadlineExceeded,
}

fn rollout(view: &DeploymentView) -> (Rollout, String) {
    let Some(status) = &view.status else {
        return (
            Rollout::RollingOut,
            "the Deployment has no status yet".into(),
        );
    };
    let conditions = status.conditions.as_deref().unwrap_or_default();
    let find = |type_: &str| {
        conditions
            .iter()
            .find(|c| c.type_.as_deref() == Some(type_))
    };
    if let Some(progressing) = find("Progressing")
        && progressing.status.as_deref() == Some("False")
        && progressing.reason.as_deref() == Some("ProgressDeadlineExceeded")
    {
        return (
            Rollout::DeadlineExceeded,
            "the Deployment did not progress within its deadline".into(),
        );
    }
    let observed = status.observed_generation.unwrap_or(0);
    let updated = status.updated_replicas.unwrap_or(0);
    let available = status.available_replicas.unwrap_or(0);
    let total = status.replicas.unwrap_or(0);
    let desired = view.desired_replicas;
    let counts = format!("{available}/{desired} available, {updated} updated");
    if observed < view.generation || updated < desired || total > updated {
        return (Rollout::RollingOut, format!("rolling out: {counts}"));
    }
    let available_true = find("Available").is_some_and(|c| c.status.as_deref() == Some("True"));
    if available_true && available >= desired {
        (Rollout::Available, counts)
    } else {
        (Rollout::Unavailable, counts)
    }
}

/// When the runtime's report goes stale: the age bound for `heartbeat`.
pub fn report_deadline(heartbeat: Duration) -> Duration {
    vmcp_status::staleness::report_deadline(heartbeat)
}

fn runtime_condition(obs: &Observations, deployment_available: bool) -> Computed {
    use ConditionStatus::{False, True, Unknown};
    let t = types::RUNTIME_REPORTING;
    let deployed = obs.deployment.as_ref().and_then(|d| d.config_generation);
    let Some(timestamp) = obs.runtime.timestamp else {
        return if deployment_available {
            cond(
                t,
                False,
                reasons::NEVER_REPORTED,
                "the gateway's pods are up but the runtime has not reported its status",
            )
        } else {
            cond(
                t,
                Unknown,
                reasons::AWAITING_RUNTIME,
                "waiting for the runtime's first report",
            )
        };
    };
    let age = vmcp_status::staleness::age(timestamp, obs.now);
    let bound = report_deadline(obs.heartbeat);
    if age > bound {
        return cond(
            t,
            False,
            reasons::REPORT_STALE,
            format!(
                "the runtime's last report is {}s old (at most {}s with a {}s heartbeat): the runtime is down or cannot write",
                age.as_secs(),
                bound.as_secs(),
                obs.heartbeat.as_secs()
            ),
        );
    }
    if let (Some(deployed), reported) = (deployed, obs.runtime.observed_generation)
        && reported.unwrap_or(0) < deployed
    {
        return cond(
            t,
            False,
            reasons::GENERATION_BEHIND,
            format!(
                "the runtime reports config generation {}, the deployed config is generation {deployed}",
                reported.map_or_else(|| "none".to_string(), |g| g.to_string())
            ),
        );
    }
    // The message must not move with every report (no age in it): a
    // heartbeat that changes nothing else costs no status write.
    cond(
        t,
        True,
        reasons::REPORTING,
        format!(
            "the runtime reports within {}s (heartbeat {}s)",
            bound.as_secs(),
            obs.heartbeat.as_secs()
        ),
    )
}

/// The operator's conditions for `obs`, in [`types::ALL`] order.
pub fn compute(obs: &Observations) -> Vec<Computed> {
    use ConditionStatus::{False, True, Unknown};
    let mut out = Vec::with_capacity(types::ALL.len());
    let mut stalled: Option<(&'static str, String)> = None;
    let mut progressing: Vec<String> = Vec::new();

    let group_ok = obs.group == GroupState::Found;
    out.push(if group_ok {
        cond(
            types::GROUP_REF_VALIDATED,
            True,
            reasons::GROUP_FOUND,
            "the MCPGroup exists",
        )
    } else {
        let message = "the MCPGroup of spec.groupRef does not exist in this namespace";
        stalled.get_or_insert((reasons::GROUP_NOT_FOUND, message.to_string()));
        cond(
            types::GROUP_REF_VALIDATED,
            False,
            reasons::GROUP_NOT_FOUND,
            message,
        )
    });

    out.push(if obs.config_issues.is_empty() {
        cond(
            types::CONFIG_VALID,
            True,
            reasons::CONFIG_VALID,
            "the rendered config is valid",
        )
    } else {
        let message = join_limited(&obs.config_issues);
        stalled.get_or_insert((reasons::CONFIG_INVALID, message.clone()));
        cond(types::CONFIG_VALID, False, reasons::CONFIG_INVALID, message)
    });

    out.push(match &obs.rbac {
        RbacState::Applied => cond(
            types::RBAC_READY,
            True,
            reasons::RBAC_APPLIED,
            "the runtime's ServiceAccount, Role and RoleBinding are applied",
        ),
        RbacState::Provided(account) => cond(
            types::RBAC_READY,
            True,
            reasons::SERVICE_ACCOUNT_PROVIDED,
            format!(
                "the pods run as ServiceAccount {account}; no RBAC is created: grant it the Role of deploy/rbac/vmcp-runtime.yaml (its own VirtualMCPServer and status, get of its MCPGroup, get/list/watch of mcpservers and mcpserverentries, create/patch of events, its status Lease)"
            ),
        ),
        RbacState::Blocked => cond(
            types::RBAC_READY,
            Unknown,
            reasons::NOT_PROVISIONED,
            "not provisioned while the group is missing",
        ),
        RbacState::Failed(cause) => {
            let message = format!("applying the runtime's RBAC failed: {cause}");
            stalled.get_or_insert((reasons::APPLY_FAILED, message.clone()));
            cond(types::RBAC_READY, False, reasons::APPLY_FAILED, message)
        }
    });

    if let Some(cause) = &obs.apply_failure {
        stalled.get_or_insert((reasons::APPLY_FAILED, cause.clone()));
    }

    let mut deployment_available = false;
    out.push(match &obs.deployment {
        None if !group_ok => cond(
            types::DEPLOYMENT_READY,
            Unknown,
            reasons::NOT_PROVISIONED,
            "not provisioned while the group is missing",
        ),
        None if !obs.config_issues.is_empty() => cond(
            types::DEPLOYMENT_READY,
            Unknown,
            reasons::NOT_PROVISIONED,
            "not provisioned while the config is invalid",
        ),
        None => {
            progressing.push("the Deployment is being created".into());
            cond(
                types::DEPLOYMENT_READY,
                False,
                reasons::MISSING,
                "the Deployment does not exist yet",
            )
        }
        Some(view) => {
            let (state, message) = rollout(view);
            match state {
                Rollout::Available => {
                    deployment_available = true;
                    cond(
                        types::DEPLOYMENT_READY,
                        True,
                        reasons::DEPLOYMENT_AVAILABLE,
                        message,
                    )
                }
                Rollout::RollingOut => {
                    progressing.push(message.clone());
                    cond(
                        types::DEPLOYMENT_READY,
                        False,
                        reasons::ROLLING_OUT,
                        message,
                    )
                }
                Rollout::Unavailable => {
                    progressing.push(message.clone());
                    cond(
                        types::DEPLOYMENT_READY,
                        False,
                        reasons::DEPLOYMENT_UNAVAILABLE,
                        message,
                    )
                }
                Rollout::DeadlineExceeded => {
                    stalled.get_or_insert((reasons::PROGRESS_DEADLINE_EXCEEDED, message.clone()));
                    cond(
                        types::DEPLOYMENT_READY,
                        False,
                        reasons::PROGRESS_DEADLINE_EXCEEDED,
                        message,
                    )
                }
            }
        }
    });

    out.push(match obs.service {
        ServiceState::Ready => cond(
            types::SERVICE_READY,
            True,
            reasons::SERVICE_READY,
            "the Service exists",
        ),
        ServiceState::AwaitingLoadBalancer => {
            progressing.push("waiting for the load balancer's address".into());
            cond(
                types::SERVICE_READY,
                False,
                reasons::AWAITING_LOAD_BALANCER,
                "the LoadBalancer Service has no address yet",
            )
        }
        ServiceState::Missing if !group_ok => cond(
            types::SERVICE_READY,
            Unknown,
            reasons::NOT_PROVISIONED,
            "not provisioned while the group is missing",
        ),
        ServiceState::Missing => {
            progressing.push("the Service is being created".into());
            cond(
                types::SERVICE_READY,
                False,
                reasons::MISSING,
                "the Service does not exist yet",
            )
        }
    });

    let runtime = runtime_condition(obs, deployment_available);
    if runtime.reason == reasons::GENERATION_BEHIND || runtime.reason == reasons::AWAITING_RUNTIME {
        progressing.push(runtime.message.clone());
    }
    out.push(runtime);

    match stalled {
        Some((reason, message)) => {
            out.push(cond(
                types::RECONCILING,
                False,
                reasons::STALLED,
                "stalled; see the Stalled condition",
            ));
            out.push(cond(types::STALLED, True, reason, message));
        }
        None => {
            out.push(if progressing.is_empty() {
                cond(
                    types::RECONCILING,
                    False,
                    reasons::RECONCILED,
                    "every child is in place",
                )
            } else {
                cond(
                    types::RECONCILING,
                    True,
                    reasons::PROGRESSING,
                    join_limited(&progressing),
                )
            });
            out.push(cond(
                types::STALLED,
                False,
                reasons::NOT_STALLED,
                "not stalled",
            ));
        }
    }
    out
}

/// When to look again even if nothing changes: just after the runtime's
/// report would go stale (so `RuntimeReporting` flips on time); once it is
/// stale, every heartbeat (a new report also triggers a reconcile through
/// the watch; this only bounds the delay if that event is missed). `None`
/// before the first report.
pub fn next_check(obs: &Observations) -> Option<Duration> {
    let timestamp = obs.runtime.timestamp?;
    let age = vmcp_status::staleness::age(timestamp, obs.now);
    let bound = report_deadline(obs.heartbeat);
    Some(
        bound
            .checked_sub(age)
            .map_or(obs.heartbeat, |left| left + Duration::from_secs(1)),
    )
}

/// Settles transition times: a condition keeps the `lastTransitionTime`
/// of `previous` when its status did not flip, else gets `now`.
pub fn settle(
    previous: &[Condition],
    computed: &[Computed],
    generation: i64,
    now: Timestamp,
) -> Vec<Condition> {
    computed
        .iter()
        .map(|c| {
            let last = previous
                .iter()
                .find(|p| p.type_ == c.type_ && p.status == c.status)
                .map_or_else(|| now.to_string(), |p| p.last_transition_time.clone());
            Condition {
                type_: c.type_.to_string(),
                status: c.status,
                reason: c.reason.to_string(),
                message: c.message.clone(),
                last_transition_time: last,
                observed_generation: Some(generation),
            }
        })
        .collect()
}

/// Whether `current` (the object's conditions) already holds `desired`
/// (the operator's), field for field.
pub fn holds(current: &[Condition], desired: &[Condition]) -> bool {
    desired
        .iter()
        .all(|want| current.iter().any(|have| have == want))
}

/// The conditions that became `False` (or `True`, for `Stalled`) in this
/// step: what deserves a Warning Event.
pub fn new_failures<'a>(previous: &[Condition], desired: &'a [Condition]) -> Vec<&'a Condition> {
    desired
        .iter()
        .filter(|c| {
            let bad = if c.type_ == types::STALLED {
                c.status == ConditionStatus::True
            } else {
                c.status == ConditionStatus::False
                    && c.type_ != types::RECONCILING
                    && c.reason != reasons::MISSING
                    && c.reason != reasons::ROLLING_OUT
            };
            bad && !previous
                .iter()
                .any(|p| p.type_ == c.type_ && p.status == c.status && p.reason == c.reason)
        })
        .collect()
}
