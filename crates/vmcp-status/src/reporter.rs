//! The [`Reporter`] trait: one destination of the runtime's status.
//!
//! A reporter only knows how to write one status once. Deciding *when* to
//! write (deduplication, heartbeat, retries, the final flush) is the job of
//! [`ReporterSet`](crate::ReporterSet), so every destination gets the same
//! rules.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;

use vmcp_domain::status::Status;

/// Any error a reporter wraps, with its source chain intact.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The future returned by [`Reporter::apply`].
pub type ReportFuture<'a> = Pin<Box<dyn Future<Output = Result<(), ReportError>> + Send + 'a>>;

/// Why a status is being written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReportReason {
    /// Its content differs from the last status this reporter wrote.
    Changed,
    /// Nothing changed, but the heartbeat interval elapsed: the same status
    /// is written again with a fresh timestamp to prove the writer alive.
    Heartbeat,
    /// The runtime is shutting down cleanly; this is the last write.
    Final,
}

impl ReportReason {
    /// Lower-case name, as used in metric labels and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Changed => "changed",
            Self::Heartbeat => "heartbeat",
            Self::Final => "final",
        }
    }
}

/// A destination of the runtime's status.
///
/// Object safe, so a [`ReporterSet`](crate::ReporterSet) can drive several
/// at once. Each reporter is driven by a single task: `apply` is never
/// called concurrently for the same reporter by the set.
pub trait Reporter: Send + Sync + 'static {
    /// A short, stable name (`"file"`, `"log"`, `"kubernetes"`), used in
    /// logs and as the `reporter` label of `vmcp_status_writes_total`.
    fn name(&self) -> &'static str;

    /// Whether this reporter wants every change of content, counters
    /// included ([`Status::same_content_as`]), rather than only changes of
    /// state ([`Status::same_report_as`], the default). The metrics
    /// reporter does: its gauges are cheap to set and should be current.
    fn wants_counter_changes(&self) -> bool {
        false
    }

    /// Writes `status` once. Errors that [`ReportError::is_retryable`] are
    /// retried with backoff (unless a newer status replaces this one).
    fn apply<'a>(&'a self, status: &'a Status, why: ReportReason) -> ReportFuture<'a>;
}

/// Why a reporter could not write a status.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// A file system operation failed (retried).
    #[error("cannot {action} {}", path.display())]
    Io {
        /// What was being done ("write", "rename", ...).
        action: &'static str,
        /// The file or directory concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The status could not be encoded (not retried: the same status would
    /// fail again).
    #[error("cannot encode the status")]
    Encode(#[source] serde_json::Error),
    /// The destination failed in a way that may pass (an unreachable API
    /// server, a conflict, a timeout); retried.
    #[error("{context}")]
    Transient {
        /// What failed, without secrets.
        context: String,
        /// The underlying error.
        #[source]
        source: BoxError,
    },
    /// The destination refused the status for good (forbidden, invalid);
    /// not retried until a newer status or the next heartbeat.
    #[error("{context}")]
    Permanent {
        /// What failed, without secrets.
        context: String,
        /// The underlying error.
        #[source]
        source: BoxError,
    },
    /// The write did not finish within the write timeout (retried).
    #[error("the write did not finish within {0:?}")]
    TimedOut(std::time::Duration),
}

impl ReportError {
    /// Whether retrying the same status may succeed.
    pub fn is_retryable(&self) -> bool {
        !matches!(self, Self::Encode(_) | Self::Permanent { .. })
    }

    /// A wrapper for a destination-specific error that may pass.
    pub fn transient(context: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Self::Transient {
            context: context.into(),
            source: source.into(),
        }
    }

    /// A wrapper for a destination-specific error that will not pass.
    pub fn permanent(context: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Self::Permanent {
            context: context.into(),
            source: source.into(),
        }
    }
}

/// Writes nowhere; every write succeeds. For `--status-reporter none` and
/// tests.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoopReporter;

impl Reporter for NoopReporter {
    fn name(&self) -> &'static str {
        "none"
    }

    fn apply<'a>(&'a self, _status: &'a Status, _why: ReportReason) -> ReportFuture<'a> {
        Box::pin(std::future::ready(Ok(())))
    }
}

/// The error and its sources on one line: `"a: b: c"`.
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}
