//! vmcp's status reporting.
//!
//! The runtime builds a [`Status`](vmcp_domain::status::Status) whenever its
//! health picture changes and hands it to a [`ReporterSet`]; the set writes
//! it to every selected destination by the rules of `docs/status.md`
//! (no write when nothing changed, a heartbeat, newest wins, retries with
//! backoff, a final flush on shutdown).
//!
//! - [`reporter`]: the [`Reporter`] trait, [`ReportReason`], [`ReportError`],
//!   and [`NoopReporter`].
//! - [`set`]: [`ReporterSet`], the one task per reporter that applies those
//!   rules, and [`StatusSender`], the handle the runtime reports through.
//! - [`log`], [`file`](mod@file), [`metrics`]: the CLI-mode reporters (log lines, the
//!   state file read by `vmcp status`, Prometheus gauges) and the request
//!   path instruments of [`Metrics`].
//! - [`select`](mod@select): which reporters to run, from flags and the environment.
//! - [`staleness`](mod@staleness): whether a state file still tells the truth.
//! - [`env`](mod@env): the environment behind a trait, for tests.
//!
//! The Kubernetes reporter lives in its own crate and implements
//! [`Reporter`].

pub mod env;
pub mod file;
pub mod log;
pub mod metrics;
pub mod reporter;
pub mod select;
pub mod set;
pub mod staleness;

pub use env::{Env, ProcessEnv};
pub use file::{FileReporter, StateFile, WriterInfo, default_state_dir};
pub use log::LogReporter;
pub use metrics::{CallOutcome, ClientRefusal, ConnectionDeadline, Metrics, MetricsReporter};
pub use reporter::{NoopReporter, ReportError, ReportFuture, ReportReason, Reporter};
pub use select::{KubernetesTarget, ReporterKind, Selection, SelectionSource, select};
pub use set::{ReporterSet, ReportingOptions, StatusSender, WriteOutcome, WriteStats};
pub use staleness::{HostProbe, LocalHost, StaleReason, staleness};
