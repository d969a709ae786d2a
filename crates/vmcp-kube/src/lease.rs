//! One status writer among several replicas: a `coordination.k8s.io` Lease.
//!
//! Every replica runs a [`LeaseElector`]. The holder renews the Lease every
//! [`LeaseOptions::renew_every`]; the others look at it every
//! [`LeaseOptions::retry_every`] and take it over once it has not been
//! renewed for [`LeaseOptions::duration`]. A holder that cannot renew within
//! [`LeaseOptions::renew_deadline`] stops writing before anyone else may
//! start, so two replicas never write at once. On a clean shutdown the
//! holder releases the Lease, so a standby takes over at its next look.
//!
//! Every update carries the `resourceVersion` it was computed from, so two
//! replicas racing for an expired Lease cannot both win: the API server
//! refuses the second with a conflict.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Api;
use kube::api::PostParams;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::api_error::Failure;

/// A lasting Lease failure is logged as a warning again after this long.
const WARN_AGAIN_AFTER: Duration = Duration::from_secs(60);

/// Timing and names of the status Lease.
#[derive(Clone, Debug)]
pub struct LeaseOptions {
    /// Lease name (`<vmcp name>-vmcp-status`).
    pub name: String,
    /// Namespace of the `VirtualMCPServer`.
    pub namespace: String,
    /// This replica's identity (pod name plus a random suffix).
    pub identity: String,
    /// How long a Lease stays valid without renewal.
    pub duration: Duration,
    /// The holder gives up writing when it could not renew for this long
    /// (shorter than `duration`).
    pub renew_deadline: Duration,
    /// How often the holder renews.
    pub renew_every: Duration,
    /// How often a standby looks at the Lease.
    pub retry_every: Duration,
}

impl LeaseOptions {
    /// Defaults for a Lease of `duration`: renew every third of it, give up
    /// after two thirds, look every 2 s (or a fifth of it, if shorter).
    pub fn new(name: String, namespace: String, identity: String, duration: Duration) -> Self {
        Self {
            name,
            namespace,
            identity,
            duration,
            renew_deadline: duration * 2 / 3,
            renew_every: duration / 3,
            retry_every: (duration / 5).min(Duration::from_secs(2)),
        }
    }
}

/// The Lease name for the status of the `VirtualMCPServer` `vmcp_name`:
/// the one the shipped RBAC (`deploy/rbac`) grants.
pub use vmcp_crd::rbac::status_lease_name;

/// What the elector knows about the Lease from its last read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LeaseView {
    /// No Lease exists.
    Absent,
    /// A Lease exists.
    Present {
        /// Its holder, if any (empty after a release).
        holder: Option<String>,
        /// When the holder last renewed, by its clock.
        renew_time: Option<Timestamp>,
        /// `leaseDurationSeconds`, if set.
        duration: Option<Duration>,
    },
}

/// What to do after reading the Lease.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Create it, holding it.
    Create,
    /// It is ours: renew it.
    Renew,
    /// It is free or expired: take it.
    Acquire,
    /// Someone else holds it validly.
    Wait,
}

/// Decides what to do with `view`. A Lease is expired when its renew time
/// plus its duration lies in the past, by this replica's clock.
///
/// Pure, so the rules are tested as a table.
pub fn decide(view: &LeaseView, me: &str, now: Timestamp, default_duration: Duration) -> Decision {
    match view {
        LeaseView::Absent => Decision::Create,
        LeaseView::Present {
            holder,
            renew_time,
            duration,
        } => match holder.as_deref() {
            Some(holder) if holder == me => Decision::Renew,
            None | Some("") => Decision::Acquire,
            Some(_) => {
                let duration = duration.unwrap_or(default_duration);
                let expired = match renew_time {
                    None => true,
                    Some(renewed) => match jiff::SignedDuration::try_from(duration) {
                        Ok(valid) => renewed
                            .checked_add(valid)
                            .map(|until| until <= now)
                            .unwrap_or(false),
                        Err(_) => false,
                    },
                };
                if expired {
                    Decision::Acquire
                } else {
                    Decision::Wait
                }
            }
        },
    }
}

/// Whether this replica is the status writer, as a watch.
pub type Leadership = watch::Receiver<bool>;

/// Runs the election for one replica.
pub struct LeaseElector {
    api: Api<Lease>,
    options: LeaseOptions,
    leader: watch::Sender<bool>,
}

/// The running election: its leadership watch, and a way to end it.
pub struct LeaseHandle {
    leadership: Leadership,
    stop: CancellationToken,
    task: tokio::sync::Mutex<Option<JoinHandle<()>>>,
}

impl LeaseHandle {
    /// Whether this replica writes the status now, as a watch.
    pub fn leadership(&self) -> Leadership {
        self.leadership.clone()
    }

    /// Stops the election; when this replica holds the Lease, releases it
    /// so a standby takes over without waiting for it to expire. Call after
    /// the final status write.
    pub async fn release(&self) {
        self.stop.cancel();
        let task = self.task.lock().await.take();
        if let Some(task) = task {
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
    }
}

impl LeaseElector {
    /// Starts the election in a background task.
    pub fn start(client: kube::Client, options: LeaseOptions) -> LeaseHandle {
        let api = Api::namespaced(client, &options.namespace);
        let (leader, leadership) = watch::channel(false);
        let stop = CancellationToken::new();
        let elector = Self {
            api,
            options,
            leader,
        };
        let task = tokio::spawn(elector.run(stop.clone()));
        LeaseHandle {
            leadership,
            stop,
            task: tokio::sync::Mutex::new(Some(task)),
        }
    }

    async fn run(self, stop: CancellationToken) {
        // When this replica last renewed successfully (monotonic clock).
        let mut renewed_at: Option<Instant> = None;
        // The last failure logged as a warning, so a lasting one (a missing
        // Role, a long API outage) is not repeated every round.
        let mut last_warned: Option<(Failure, Instant)> = None;
        loop {
            let leading = match self.try_acquire_or_renew().await {
                Ok(true) => {
                    renewed_at = Some(Instant::now());
                    last_warned = None;
                    true
                }
                Ok(false) => {
                    renewed_at = None;
                    last_warned = None;
                    false
                }
                Err(error) => {
                    let still_valid =
                        renewed_at.is_some_and(|at| at.elapsed() < self.options.renew_deadline);
                    let failure = Failure::of(&error);
                    let repeat = last_warned.is_some_and(|(last, at)| {
                        last == failure && at.elapsed() < WARN_AGAIN_AFTER
                    });
                    if repeat {
                        tracing::debug!(lease = %self.options.name, error = %error, "the status lease is still unavailable");
                    } else {
                        last_warned = Some((failure, Instant::now()));
                        tracing::warn!(
                            lease = %self.options.name,
                            error = %error,
                            "cannot take or renew the status lease: {}",
                            failure.hint()
                        );
                    }
                    if !still_valid {
                        renewed_at = None;
                    }
                    still_valid
                }
            };
            self.set_leader(leading);
            let pause = if leading {
                self.options.renew_every
            } else {
                self.options.retry_every
            };
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep(pause) => {}
            }
        }
        if *self.leader.borrow() {
            self.set_leader(false);
            self.release().await;
        }
    }

    fn set_leader(&self, leading: bool) {
        let changed = self.leader.send_if_modified(|current| {
            let changed = *current != leading;
            *current = leading;
            changed
        });
        if changed {
            if leading {
                tracing::info!(lease = %self.options.name, identity = %self.options.identity, "this replica now writes the status");
            } else {
                tracing::info!(lease = %self.options.name, "this replica no longer writes the status");
            }
        }
    }

    /// One round: read, decide, write. `Ok(true)` when this replica holds
    /// the Lease afterwards.
    async fn try_acquire_or_renew(&self) -> Result<bool, kube::Error> {
        let now = Timestamp::now();
        let current = self.api.get_opt(&self.options.name).await?;
        let view = match &current {
            None => LeaseView::Absent,
            Some(lease) => view_of(lease),
        };
        match decide(&view, &self.options.identity, now, self.options.duration) {
            Decision::Wait => Ok(false),
            Decision::Create => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.options.name.clone()),
                        namespace: Some(self.options.namespace.clone()),
                        ..ObjectMeta::default()
                    },
                    spec: Some(self.held_spec(now, None, 0)),
                };
                match self.api.create(&PostParams::default(), &lease).await {
                    Ok(_) => Ok(true),
                    // Someone else created it first.
                    Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
                    Err(error) => Err(error),
                }
            }
            decision @ (Decision::Renew | Decision::Acquire) => {
                let Some(mut lease) = current else {
                    return Ok(false);
                };
                let spec = lease.spec.take().unwrap_or_default();
                let acquiring = decision == Decision::Acquire;
                let transitions = spec.lease_transitions.unwrap_or(0) + i32::from(acquiring);
                let acquired_at = if acquiring { None } else { spec.acquire_time };
                lease.spec = Some(self.held_spec(now, acquired_at, transitions));
                // The resourceVersion read above makes this a compare-and-swap.
                match self
                    .api
                    .replace(&self.options.name, &PostParams::default(), &lease)
                    .await
                {
                    Ok(_) => Ok(true),
                    Err(kube::Error::Api(status)) if status.code == 409 => Ok(false),
                    Err(error) => Err(error),
                }
            }
        }
    }

    fn held_spec(
        &self,
        now: Timestamp,
        acquired: Option<MicroTime>,
        transitions: i32,
    ) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.options.identity.clone()),
            lease_duration_seconds: Some(
                i32::try_from(self.options.duration.as_secs().max(1)).unwrap_or(i32::MAX),
            ),
            acquire_time: Some(acquired.unwrap_or(MicroTime(now))),
            renew_time: Some(MicroTime(now)),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        }
    }

    /// Gives the Lease up: clears the holder, keeping the object.
    async fn release(&self) {
        let result = async {
            let Some(mut lease) = self.api.get_opt(&self.options.name).await? else {
                return Ok(());
            };
            let mut spec = lease.spec.take().unwrap_or_default();
            if spec.holder_identity.as_deref() != Some(self.options.identity.as_str()) {
                return Ok(());
            }
            spec.holder_identity = None;
            spec.renew_time = None;
            lease.spec = Some(spec);
            self.api
                .replace(&self.options.name, &PostParams::default(), &lease)
                .await
                .map(|_| ())
        }
        .await;
        match result {
            Ok(()) => tracing::info!(lease = %self.options.name, "released the status lease"),
            Err(error) => {
                tracing::warn!(lease = %self.options.name, error = %error, "cannot release the status lease; it expires on its own")
            }
        }
    }
}

fn view_of(lease: &Lease) -> LeaseView {
    let spec = lease.spec.as_ref();
    LeaseView::Present {
        holder: spec.and_then(|s| s.holder_identity.clone()),
        renew_time: spec.and_then(|s| s.renew_time.as_ref()).map(|t| t.0),
        duration: spec
            .and_then(|s| s.lease_duration_seconds)
            .and_then(|secs| u64::try_from(secs).ok())
            .map(Duration::from_secs),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(holder: Option<&str>, renewed_secs_ago: Option<i64>, now: Timestamp) -> LeaseView {
        LeaseView::Present {
            holder: holder.map(str::to_string),
            renew_time: renewed_secs_ago.map(|ago| {
                now.checked_sub(jiff::SignedDuration::from_secs(ago))
                    .expect("in range")
            }),
            duration: Some(Duration::from_secs(15)),
        }
    }

    #[test]
    fn decisions() {
        let now = Timestamp::now();
        let d = Duration::from_secs(15);
        let table = [
            (LeaseView::Absent, Decision::Create),
            (held(Some("me"), Some(3), now), Decision::Renew),
            (held(Some("me"), Some(300), now), Decision::Renew),
            (held(Some("other"), Some(3), now), Decision::Wait),
            (held(Some("other"), Some(14), now), Decision::Wait),
            (held(Some("other"), Some(15), now), Decision::Acquire),
            (held(Some("other"), Some(60), now), Decision::Acquire),
            (held(Some("other"), None, now), Decision::Acquire),
            (held(None, Some(1), now), Decision::Acquire),
            (held(Some(""), Some(1), now), Decision::Acquire),
        ];
        for (view, want) in table {
            assert_eq!(decide(&view, "me", now, d), want, "{view:?}");
        }
    }

    #[test]
    fn default_timing_keeps_renewal_inside_the_deadline() {
        let options = LeaseOptions::new(
            "l".into(),
            "ns".into(),
            "me".into(),
            Duration::from_secs(15),
        );
        assert!(options.renew_every < options.renew_deadline);
        assert!(options.renew_deadline < options.duration);
        assert_eq!(options.retry_every, Duration::from_secs(2));
        assert_eq!(status_lease_name("demo"), "demo-vmcp-status");
    }
}
