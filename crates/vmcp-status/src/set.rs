//! [`ReporterSet`]: drives several reporters at once, one task each.
//!
//! The runtime hands every new status to [`StatusSender::report`], which
//! only replaces the value of a `tokio::sync::watch` channel: it never
//! blocks, never fails, and costs the same however slow the reporters are.
//! Each reporter's task then follows the rules of `docs/status.md`:
//!
//! - **No write when nothing changed.** A status is written only when the
//!   state it reports differs ([`Status::same_report_as`]; counters such as
//!   `consecutiveFailures` do not count) from the last one this reporter
//!   wrote, or when the heartbeat elapsed since its last write
//!   (then the latest status is written again with a fresh timestamp,
//!   reason [`ReportReason::Heartbeat`]).
//! - **Newest wins.** The channel holds only the latest status; a task picks
//!   it up when its previous write finishes, so statuses reported during a
//!   slow write collapse into one write of the newest, and an older status
//!   is never written after a newer one.
//! - **Nothing is lost.** A failed write is retried with exponential backoff
//!   and jitter (`backon`); a newer status replaces the one being retried.
//!   Each write is bounded by a timeout.
//! - **Final flush.** [`ReporterSet::shutdown`] writes the last status once
//!   more with reason [`ReportReason::Final`] and waits for it, bounded by
//!   a timeout.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use vmcp_domain::status::{Status, Timestamp};

use crate::metrics::Metrics;
use crate::reporter::{ReportError, ReportReason, Reporter, error_chain};

/// How a [`ReporterSet`] schedules writes.
#[derive(Clone, Debug)]
pub struct ReportingOptions {
    /// Rewrite an unchanged status this often, so readers can tell a live
    /// writer from a dead one. `Duration::ZERO` turns the heartbeat off.
    /// The runtime passes `operational.failureHandling.statusReportingInterval`.
    pub heartbeat: Duration,
    /// Longest a single write may take before it counts as failed.
    pub write_timeout: Duration,
    /// Longest [`ReporterSet::shutdown`] waits for the final writes.
    pub shutdown_timeout: Duration,
    /// First retry delay after a failed write.
    pub min_retry_delay: Duration,
    /// Retry delays grow up to this.
    pub max_retry_delay: Duration,
    /// Where to count writes as `vmcp_status_writes_total`, if anywhere.
    pub metrics: Option<Metrics>,
}

impl ReportingOptions {
    /// Defaults with the given heartbeat.
    pub fn new(heartbeat: Duration) -> Self {
        Self {
            heartbeat,
            write_timeout: Duration::from_secs(10),
            shutdown_timeout: Duration::from_secs(10),
            min_retry_delay: Duration::from_millis(250),
            max_retry_delay: Duration::from_secs(30),
            metrics: None,
        }
    }

    /// The same options, counting writes in `metrics`.
    pub fn with_metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    fn backoff(&self) -> ExponentialBackoff {
        ExponentialBuilder::default()
            .with_min_delay(self.min_retry_delay)
            .with_max_delay(self.max_retry_delay)
            .with_factor(2.0)
            .with_jitter()
            .without_max_times()
            .build()
    }
}

impl Default for ReportingOptions {
    /// A 30 s heartbeat, the default `statusReportingInterval`.
    fn default() -> Self {
        Self::new(Duration::from_secs(30))
    }
}

/// How one write attempt ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WriteOutcome {
    /// Written.
    Ok,
    /// The reporter returned an error.
    Error,
    /// The write exceeded [`ReportingOptions::write_timeout`].
    Timeout,
}

impl WriteOutcome {
    /// Lower-case name, as used in metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Error => "error",
            Self::Timeout => "timeout",
        }
    }
}

/// What [`WriteStats`] counts by: reporter, reason, outcome.
type WriteKey = (&'static str, ReportReason, WriteOutcome);

/// Write attempts per reporter, reason and outcome. Cheap to clone; stays
/// readable after the set is shut down.
#[derive(Clone, Debug, Default)]
pub struct WriteStats {
    counts: Arc<Mutex<HashMap<WriteKey, u64>>>,
}

impl WriteStats {
    /// Successful writes of `reporter`, whatever the reason.
    pub fn writes(&self, reporter: &str) -> u64 {
        self.sum(|(name, _, outcome)| *name == reporter && *outcome == WriteOutcome::Ok)
    }

    /// Attempts of `reporter` with this reason and outcome.
    pub fn count(&self, reporter: &str, reason: ReportReason, outcome: WriteOutcome) -> u64 {
        self.sum(|(name, r, o)| *name == reporter && *r == reason && *o == outcome)
    }

    /// Attempts of `reporter` that failed (errors and timeouts).
    pub fn failures(&self, reporter: &str) -> u64 {
        self.sum(|(name, _, outcome)| *name == reporter && *outcome != WriteOutcome::Ok)
    }

    fn sum(&self, wanted: impl Fn(&WriteKey) -> bool) -> u64 {
        let counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        counts
            .iter()
            .filter(|(key, _)| wanted(key))
            .map(|(_, n)| n)
            .sum()
    }

    fn record(&self, reporter: &'static str, reason: ReportReason, outcome: WriteOutcome) {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        *counts.entry((reporter, reason, outcome)).or_default() += 1;
    }
}

/// The runtime's side of a [`ReporterSet`]: hand it every new status.
/// Cheap to clone and to share between threads.
#[derive(Clone, Debug)]
pub struct StatusSender {
    tx: Arc<watch::Sender<Option<Status>>>,
}

impl StatusSender {
    /// Makes `status` the latest. Never blocks and never fails: the
    /// reporters pick it up when they are ready (older unwritten statuses
    /// are dropped). Reporting the same content again writes nothing.
    pub fn report(&self, status: Status) {
        self.tx.send_replace(Some(status));
    }

    /// The latest status reported, if any.
    pub fn latest(&self) -> Option<Status> {
        self.tx.borrow().clone()
    }
}

/// A running set of reporters, one task each. Dropping it without
/// [`shutdown`](Self::shutdown) stops the tasks after a best-effort final
/// write that nobody waits for.
#[derive(Debug)]
pub struct ReporterSet {
    sender: StatusSender,
    cancel: CancellationToken,
    tasks: Vec<(&'static str, JoinHandle<()>)>,
    stats: WriteStats,
    shutdown_timeout: Duration,
}

impl ReporterSet {
    /// Spawns one task per reporter.
    ///
    /// # Panics
    ///
    /// When called outside a Tokio runtime.
    pub fn start(reporters: Vec<Arc<dyn Reporter>>, options: ReportingOptions) -> Self {
        let (tx, _) = watch::channel(None);
        let cancel = CancellationToken::new();
        let stats = WriteStats::default();
        let options = Arc::new(options);
        let tasks = reporters
            .into_iter()
            .map(|reporter| {
                let name = reporter.name();
                let worker = Worker {
                    reporter,
                    rx: tx.subscribe(),
                    cancel: cancel.clone(),
                    options: Arc::clone(&options),
                    stats: stats.clone(),
                };
                (name, tokio::spawn(worker.run()))
            })
            .collect();
        Self {
            sender: StatusSender { tx: Arc::new(tx) },
            cancel,
            tasks,
            stats,
            shutdown_timeout: options.shutdown_timeout,
        }
    }

    /// A handle to report statuses from anywhere in the runtime.
    pub fn sender(&self) -> StatusSender {
        self.sender.clone()
    }

    /// Same as [`StatusSender::report`].
    pub fn report(&self, status: Status) {
        self.sender.report(status);
    }

    /// Write counts, readable after shutdown too.
    pub fn stats(&self) -> WriteStats {
        self.stats.clone()
    }

    /// Successful writes of `reporter` so far.
    pub fn writes(&self, reporter: &str) -> u64 {
        self.stats.writes(reporter)
    }

    /// Stops reporting: makes `final_status` the latest (when given), writes
    /// the latest status once more with reason [`ReportReason::Final`] on
    /// every reporter, and waits for those writes (retried on failure) for
    /// at most [`ReportingOptions::shutdown_timeout`]. Reporters still busy
    /// then are abandoned with a warning.
    pub async fn shutdown(mut self, final_status: Option<Status>) {
        if let Some(status) = final_status {
            self.sender.report(status);
        }
        self.cancel.cancel();
        let tasks = std::mem::take(&mut self.tasks);
        let deadline = Instant::now() + self.shutdown_timeout;
        for (name, mut task) in tasks {
            match tokio::time::timeout_at(deadline, &mut task).await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => {
                    tracing::error!(reporter = name, error = %error, "status reporter task failed");
                }
                Err(_) => {
                    task.abort();
                    tracing::warn!(
                        reporter = name,
                        timeout = ?self.shutdown_timeout,
                        "status reporter did not flush the final status in time"
                    );
                }
            }
        }
    }
}

impl Drop for ReporterSet {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// One reporter's task.
struct Worker {
    reporter: Arc<dyn Reporter>,
    rx: watch::Receiver<Option<Status>>,
    cancel: CancellationToken,
    options: Arc<ReportingOptions>,
    stats: WriteStats,
}

/// A status waiting to be written.
struct Pending {
    status: Status,
    reason: ReportReason,
}

/// A task's memory between writes.
struct State {
    /// The last status this reporter wrote.
    applied: Option<Status>,
    /// When it wrote last (or started).
    last_write: Instant,
    /// What to write next.
    pending: Option<Pending>,
    /// The backoff of the current failure streak.
    backoff: Option<ExponentialBackoff>,
    /// No attempt before this (backing off).
    retry_at: Option<Instant>,
    /// Failed attempts in a row.
    failures: u32,
}

impl Worker {
    async fn run(mut self) {
        let mut state = State {
            applied: None,
            last_write: Instant::now(),
            pending: None,
            backoff: None,
            retry_at: None,
            failures: 0,
        };
        loop {
            if self.cancel.is_cancelled() {
                break;
            }
            if state.pending.is_some() && state.retry_at.is_none() {
                self.attempt(&mut state).await;
                continue;
            }
            let heartbeat_at = (state.pending.is_none()
                && !self.options.heartbeat.is_zero()
                && self.rx.borrow().is_some())
            .then(|| state.last_write + self.options.heartbeat);
            tokio::select! {
                biased;
                () = self.cancel.cancelled() => break,
                changed = self.rx.changed() => {
                    if changed.is_err() {
                        // Every sender is gone: nobody can report any more.
                        break;
                    }
                    self.take_latest(&mut state);
                }
                () = sleep_until(state.retry_at) => state.retry_at = None,
                () = sleep_until(heartbeat_at) => self.heartbeat(&mut state),
            }
        }
        self.flush_final().await;
    }

    /// Whether the destination already shows what `latest` says, so it
    /// needs no write (see [`Reporter::wants_counter_changes`]).
    fn already_applied(&self, state: &State, latest: &Status) -> bool {
        state.applied.as_ref().is_some_and(|applied| {
            if self.reporter.wants_counter_changes() {
                latest.same_content_as(applied)
            } else {
                latest.same_report_as(applied)
            }
        })
    }

    /// A new status was reported: decide whether it needs writing.
    fn take_latest(&mut self, state: &mut State) {
        let Some(latest) = self.rx.borrow_and_update().clone() else {
            return;
        };
        let unchanged = self.already_applied(state, &latest);
        match (&mut state.pending, unchanged) {
            (_, false) => {
                // Replaces whatever was pending; a running backoff is kept, so
                // a failing destination is not hammered by a stream of changes.
                state.pending = Some(Pending {
                    status: latest,
                    reason: ReportReason::Changed,
                });
            }
            (Some(pending), true) if pending.reason == ReportReason::Heartbeat => {
                pending.status = with_fresh_timestamp(latest);
            }
            (_, true) => {
                // The destination already shows this content.
                state.pending = None;
                state.backoff = None;
                state.retry_at = None;
            }
        }
    }

    /// The heartbeat elapsed with nothing pending: write the latest again.
    fn heartbeat(&mut self, state: &mut State) {
        let Some(latest) = self.rx.borrow_and_update().clone() else {
            return;
        };
        let unchanged = self.already_applied(state, &latest);
        state.pending = Some(if unchanged {
            Pending {
                status: with_fresh_timestamp(latest),
                reason: ReportReason::Heartbeat,
            }
        } else {
            // Only after a write refused for good: try the newest again.
            Pending {
                status: latest,
                reason: ReportReason::Changed,
            }
        });
    }

    /// Writes the pending status once and updates the state.
    async fn attempt(&self, state: &mut State) {
        let Some(pending) = state.pending.take() else {
            return;
        };
        match self.write(&pending.status, pending.reason).await {
            Ok(()) => {
                if state.failures > 0 {
                    tracing::info!(
                        reporter = self.reporter.name(),
                        failed_attempts = state.failures,
                        "status written again after failures"
                    );
                }
                state.applied = Some(pending.status);
                state.last_write = Instant::now();
                state.backoff = None;
                state.retry_at = None;
                state.failures = 0;
            }
            Err(error) => {
                state.failures += 1;
                let retryable = error.is_retryable();
                let reporter = self.reporter.name();
                let error = error_chain(&error);
                if state.failures == 1 || !retryable {
                    tracing::warn!(reporter, reason = pending.reason.as_str(), %error, retryable, "cannot write the status");
                } else {
                    tracing::debug!(reporter, reason = pending.reason.as_str(), %error, attempt = state.failures, "cannot write the status");
                }
                if retryable {
                    let options = &self.options;
                    let delay = state
                        .backoff
                        .get_or_insert_with(|| options.backoff())
                        .next()
                        .unwrap_or(options.max_retry_delay);
                    state.retry_at = Some(Instant::now() + delay);
                    state.pending = Some(pending);
                } else {
                    // Wait for a newer status or the next heartbeat.
                    state.last_write = Instant::now();
                    state.backoff = None;
                    state.retry_at = None;
                }
            }
        }
    }

    /// At shutdown: writes the latest status with reason `Final`, retrying
    /// until it succeeds, fails for good, or the set gives up waiting.
    async fn flush_final(&self) {
        let Some(status) = self.rx.borrow().clone() else {
            return;
        };
        let mut backoff = self.options.backoff();
        loop {
            match self.write(&status, ReportReason::Final).await {
                Ok(()) => return,
                Err(error) if error.is_retryable() => {
                    tracing::debug!(reporter = self.reporter.name(), error = %error_chain(&error), "cannot write the final status, retrying");
                    let delay = backoff.next().unwrap_or(self.options.max_retry_delay);
                    tokio::time::sleep(delay).await;
                }
                Err(error) => {
                    tracing::warn!(reporter = self.reporter.name(), error = %error_chain(&error), "cannot write the final status");
                    return;
                }
            }
        }
    }

    /// One bounded write, counted.
    async fn write(&self, status: &Status, reason: ReportReason) -> Result<(), ReportError> {
        let timeout = self.options.write_timeout;
        let result = tokio::time::timeout(timeout, self.reporter.apply(status, reason))
            .await
            .unwrap_or(Err(ReportError::TimedOut(timeout)));
        let outcome = match &result {
            Ok(()) => WriteOutcome::Ok,
            Err(ReportError::TimedOut(_)) => WriteOutcome::Timeout,
            Err(_) => WriteOutcome::Error,
        };
        let name = self.reporter.name();
        self.stats.record(name, reason, outcome);
        if let Some(metrics) = &self.options.metrics {
            metrics.record_status_write(name, reason, outcome);
        }
        result
    }
}

fn with_fresh_timestamp(mut status: Status) -> Status {
    status.timestamp = Timestamp::now();
    status
}

/// Sleeps until `deadline`, or forever without one.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}
