//! [`KubernetesReporter`]: writes the runtime's status into its
//! `VirtualMCPServer` with server-side apply.
//!
//! The [`ReporterSet`](vmcp_status::ReporterSet) decides when to write (no
//! write without change, heartbeat, retries, newest wins, final flush); this
//! reporter does one write well:
//!
//! - only the runtime's fields, under the field manager
//!   [`FIELD_MANAGER`](crate::status_patch::FIELD_MANAGER);
//! - only while this replica holds the status Lease ([`crate::lease`]); a
//!   replica that becomes the writer writes the latest status at once;
//! - an Event on each phase transition (best effort: a failed Event never
//!   fails the status write);
//! - errors classified for the set: a missing object, RBAC refusal or an
//!   invalid request waits for the next change or heartbeat, everything
//!   else is retried with backoff.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use k8s_openapi::api::core::v1::Event;
use kube::Api;
use kube::api::{DynamicObject, Patch, PatchParams, PostParams};
use tokio::sync::Mutex as AsyncMutex;
use vmcp_domain::status::{Phase, Status};
use vmcp_status::{ReportError, ReportFuture, ReportReason, Reporter};

use crate::api_error::{Failure, report_error};
use crate::events::{Regarding, event_object, phase_event};
use crate::lease::Leadership;
use crate::resources;
use crate::status_patch::{FIELD_MANAGER, apply_body};

/// Longest an Event write may take.
const EVENT_TIMEOUT: Duration = Duration::from_secs(5);

/// Writes status to one `VirtualMCPServer`.
#[derive(Clone)]
pub struct KubernetesReporter {
    shared: Arc<Shared>,
}

struct Shared {
    objects: Api<DynamicObject>,
    events: Api<Event>,
    name: String,
    namespace: String,
    instance: String,
    leadership: Option<Leadership>,
    /// The newest status offered, written when this replica becomes the writer.
    latest: Mutex<Option<Status>>,
    /// Serialises writes; holds what this replica knows of the object.
    writer: AsyncMutex<WriterState>,
}

#[derive(Default)]
struct WriterState {
    /// The phase on the object as last read or written (`None`: not read yet).
    phase: Option<Option<Phase>>,
    /// The object's UID, for Events.
    uid: Option<String>,
}

impl KubernetesReporter {
    /// A reporter for `namespace/name`. With `leadership`, it writes only
    /// while that watch says `true`, and writes the latest status as soon as
    /// it turns `true`; without it, it always writes (one replica).
    /// `instance` names this replica in Events.
    pub fn new(
        client: kube::Client,
        name: String,
        namespace: String,
        instance: String,
        leadership: Option<Leadership>,
    ) -> Self {
        let objects =
            Api::namespaced_with(client.clone(), &namespace, &resources::virtual_mcp_server());
        let events = Api::namespaced(client, &namespace);
        let reporter = Self {
            shared: Arc::new(Shared {
                objects,
                events,
                name,
                namespace,
                instance,
                leadership: leadership.clone(),
                latest: Mutex::new(None),
                writer: AsyncMutex::new(WriterState::default()),
            }),
        };
        if let Some(leadership) = leadership {
            tokio::spawn(write_on_takeover(
                Arc::downgrade(&reporter.shared),
                leadership,
            ));
        }
        reporter
    }

    fn is_writer(&self) -> bool {
        self.shared
            .leadership
            .as_ref()
            .is_none_or(|leadership| *leadership.borrow())
    }
}

impl Reporter for KubernetesReporter {
    fn name(&self) -> &'static str {
        "kubernetes"
    }

    fn apply<'a>(&'a self, status: &'a Status, why: ReportReason) -> ReportFuture<'a> {
        Box::pin(async move {
            *self
                .shared
                .latest
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some(status.clone());
            if !self.is_writer() {
                tracing::debug!(reason = why.as_str(), "another replica writes the status");
                return Ok(());
            }
            self.shared.write_latest().await
        })
    }
}

impl Shared {
    /// Writes the newest status offered. Reading it under the writer lock
    /// means a write that waited for another never sends an older status
    /// after a newer one.
    async fn write_latest(&self) -> Result<(), ReportError> {
        let mut state = self.writer.lock().await;
        let latest = self
            .latest
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let Some(status) = latest else {
            return Ok(());
        };
        let status = &status;
        if state.phase.is_none() {
            self.read_object(&mut state).await;
        }
        let body = apply_body(&self.name, &self.namespace, status).map_err(ReportError::Encode)?;
        let params = PatchParams::apply(FIELD_MANAGER).force();
        self.objects
            .patch_status(&self.name, &params, &Patch::Apply(&body))
            .await
            .map_err(|error| {
                if Failure::of(&error) == Failure::NotFound {
                    // Re-read (UID, phase) when it comes back.
                    state.phase = None;
                }
                report_error(
                    &format!(
                        "cannot write the status of VirtualMCPServer {}/{}",
                        self.namespace, self.name
                    ),
                    error,
                )
            })?;
        let previous = state.phase.flatten();
        state.phase = Some(Some(status.phase));
        if let Some(event) = phase_event(previous, status) {
            let regarding = Regarding {
                name: self.name.clone(),
                namespace: self.namespace.clone(),
                uid: state.uid.clone(),
            };
            let object = event_object(&event, &regarding, &self.instance, jiff::Timestamp::now());
            let created = tokio::time::timeout(
                EVENT_TIMEOUT,
                self.events.create(&PostParams::default(), &object),
            )
            .await;
            match created {
                Ok(Ok(_)) => tracing::debug!(reason = event.reason, "recorded event"),
                Ok(Err(error)) => tracing::warn!(
                    error = %error,
                    "cannot record the {} event: {}",
                    event.reason,
                    Failure::of(&error).hint()
                ),
                Err(_) => tracing::warn!("recording the {} event timed out", event.reason),
            }
        }
        Ok(())
    }

    /// Reads the object's UID and current phase once, so the first write
    /// records an Event only if it changes the phase.
    async fn read_object(&self, state: &mut WriterState) {
        match self.objects.get_status(&self.name).await {
            Ok(object) => {
                state.uid = object.metadata.uid.clone();
                let phase = object
                    .data
                    .get("status")
                    .and_then(|status| status.get("phase"))
                    .and_then(|phase| serde_json::from_value::<Phase>(phase.clone()).ok());
                state.phase = Some(phase);
            }
            Err(error) => {
                tracing::debug!(error = %error, "cannot read the VirtualMCPServer before writing");
            }
        }
    }
}

/// Writes the newest status whenever this replica becomes the writer, until
/// it succeeds, loses the Lease again, or a permanent error says wait.
async fn write_on_takeover(shared: std::sync::Weak<Shared>, mut leadership: Leadership) {
    loop {
        if leadership.wait_for(|leading| *leading).await.is_err() {
            return;
        }
        // Another replica wrote while this one waited: read the object's
        // phase again, so Events follow what it really showed.
        if let Some(shared) = shared.upgrade() {
            shared.writer.lock().await.phase = None;
        }
        let mut delay = Duration::from_millis(250);
        loop {
            let Some(shared) = shared.upgrade() else {
                return;
            };
            match shared.write_latest().await {
                Ok(()) => break,
                Err(error) => {
                    tracing::warn!(error = %error, "cannot write the status after taking over");
                    if !error.is_retryable() {
                        break;
                    }
                }
            }
            drop(shared);
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = leadership.wait_for(|leading| !*leading) => break,
            }
            delay = (delay * 2).min(Duration::from_secs(30));
        }
        if leadership.wait_for(|leading| !*leading).await.is_err() {
            return;
        }
    }
}
