//! Kubernetes Events for phase transitions of the `VirtualMCPServer`, so
//! `kubectl describe vmcp` tells when and why the gateway became degraded.

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, Time};
use vmcp_domain::status::{Phase, Status};

use crate::resources::API_VERSION;
use crate::status_patch::FIELD_MANAGER;

/// An Event to record, before it becomes a Kubernetes object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PhaseEvent {
    /// `Normal` or `Warning`.
    pub type_: &'static str,
    /// CamelCase reason, e.g. `PhaseDegraded`.
    pub reason: &'static str,
    /// What happened, with the status message (already sanitised).
    pub message: String,
}

/// The Event for moving from `previous` (unknown: `None`) to the phase of
/// `status`; `None` when the phase did not change.
pub fn phase_event(previous: Option<Phase>, status: &Status) -> Option<PhaseEvent> {
    let next = status.phase;
    if previous == Some(next) {
        return None;
    }
    let (type_, reason) = match next {
        Phase::Pending => ("Normal", "PhasePending"),
        Phase::Ready => ("Normal", "PhaseReady"),
        Phase::Degraded => ("Warning", "PhaseDegraded"),
        Phase::Failed => ("Warning", "PhaseFailed"),
    };
    let from = previous.map_or("unknown", Phase::as_str);
    Some(PhaseEvent {
        type_,
        reason,
        message: format!("phase {from} → {}: {}", next.as_str(), status.message),
    })
}

/// The object an Event is about.
#[derive(Clone, Debug, Default)]
pub struct Regarding {
    /// Name of the `VirtualMCPServer`.
    pub name: String,
    /// Its namespace.
    pub namespace: String,
    /// Its UID, when known (`kubectl describe` matches on it).
    pub uid: Option<String>,
}

/// A core/v1 Event object for `event` about `regarding`, reported by the
/// replica `instance`.
pub fn event_object(
    event: &PhaseEvent,
    regarding: &Regarding,
    instance: &str,
    now: Timestamp,
) -> Event {
    let suffix = now.as_nanosecond().rem_euclid(1 << 40);
    Event {
        metadata: ObjectMeta {
            name: Some(format!("{}.{suffix:x}", regarding.name)),
            namespace: Some(regarding.namespace.clone()),
            ..ObjectMeta::default()
        },
        involved_object: ObjectReference {
            api_version: Some(API_VERSION.to_string()),
            kind: Some("VirtualMCPServer".to_string()),
            name: Some(regarding.name.clone()),
            namespace: Some(regarding.namespace.clone()),
            uid: regarding.uid.clone(),
            field_path: Some("status".to_string()),
            ..ObjectReference::default()
        },
        type_: Some(event.type_.to_string()),
        reason: Some(event.reason.to_string()),
        message: Some(event.message.clone()),
        action: Some("ReportStatus".to_string()),
        source: Some(EventSource {
            component: Some(FIELD_MANAGER.to_string()),
            host: None,
        }),
        reporting_component: Some(FIELD_MANAGER.to_string()),
        reporting_instance: Some(instance.to_string()),
        first_timestamp: Some(Time(now)),
        last_timestamp: Some(Time(now)),
        event_time: Some(MicroTime(now)),
        count: Some(1),
        ..Event::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vmcp_domain::status::{HealthSnapshot, build_status};

    #[test]
    fn only_transitions_make_events() {
        let mut status = build_status(&HealthSnapshot::default(), None, None, Timestamp::now());
        status.phase = Phase::Degraded;
        status.message = "1 of 2 backends unavailable: b".into();
        assert_eq!(phase_event(Some(Phase::Degraded), &status), None);
        let event = phase_event(Some(Phase::Ready), &status).expect("a transition");
        assert_eq!(event.type_, "Warning");
        assert_eq!(event.reason, "PhaseDegraded");
        assert!(
            event.message.contains("Ready → Degraded"),
            "{}",
            event.message
        );
        status.phase = Phase::Ready;
        let first = phase_event(None, &status).expect("first report");
        assert_eq!((first.type_, first.reason), ("Normal", "PhaseReady"));
    }

    #[test]
    fn event_objects_name_the_virtual_mcp_server() {
        let regarding = Regarding {
            name: "demo".into(),
            namespace: "team".into(),
            uid: Some("u-1".into()),
        };
        let event = PhaseEvent {
            type_: "Normal",
            reason: "PhaseReady",
            message: "m".into(),
        };
        let object = event_object(&event, &regarding, "pod-a", Timestamp::now());
        assert_eq!(
            object.involved_object.kind.as_deref(),
            Some("VirtualMCPServer")
        );
        assert_eq!(object.involved_object.uid.as_deref(), Some("u-1"));
        assert_eq!(object.metadata.namespace.as_deref(), Some("team"));
        assert!(object.metadata.name.expect("named").starts_with("demo."));
    }
}
