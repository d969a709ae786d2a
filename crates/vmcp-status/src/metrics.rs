//! [`Metrics`]: the Prometheus instruments of the runtime, rendered for
//! `/metrics`, and [`MetricsReporter`], which mirrors each status into
//! gauges.
//!
//! From the status (written by [`MetricsReporter`], so they change exactly
//! when the status does):
//!
//! | metric | labels | value |
//! |---|---|---|
//! | `vmcp_phase` | `phase` | 1 for the current phase, 0 for the others |
//! | `vmcp_backends` | | backends known (`backendCount`) |
//! | `vmcp_backend_status` | `backend`, `status` | 1 for the backend's state, 0 for the others |
//! | `vmcp_backend_circuit_state` | `backend`, `state` | 1 for the circuit's state, 0 for the others |
//! | `vmcp_backend_consecutive_failures` | `backend` | failures in a row |
//!
//! Per-backend gauges cover the backends listed in the status (at most
//! [`MAX_REPORTED_BACKENDS`](vmcp_domain::status::MAX_REPORTED_BACKENDS),
//! the least healthy first); a backend that leaves the status leaves them.
//!
//! Called directly by the gateway (off the status path; each call is one
//! read-locked map lookup and atomic updates once the series exists):
//!
//! | metric | labels | recorded by |
//! |---|---|---|
//! | `vmcp_probe_duration_seconds` (histogram) | `backend` | [`Metrics::record_probe`] |
//! | `vmcp_probes_total` | `backend`, `outcome` (`ok`, `error`) | [`Metrics::record_probe`] |
//! | `vmcp_backend_requests_total` | `backend`, `method`, `outcome` | [`Metrics::record_call`] |
//! | `vmcp_backend_request_duration_seconds` (histogram) | `backend`, `method` | [`Metrics::record_call`] |
//! | `vmcp_status_writes_total` | `reporter`, `reason`, `outcome` | [`ReporterSet`](crate::ReporterSet) |
//!
//! Called by the HTTP server, about its clients (no per-client labels: an
//! address is neither bounded nor something to publish):
//!
//! | metric | labels | recorded by |
//! |---|---|---|
//! | `vmcp_connections_open` | | [`Metrics::connection_opened`], [`Metrics::connection_closed`] |
//! | `vmcp_client_refusals_total` | `reason` ([`ClientRefusal`]) | [`Metrics::record_refusal`] |
//! | `vmcp_connection_timeouts_total` | `deadline` ([`ConnectionDeadline`]) | [`Metrics::record_connection_timeout`] |
//! | `vmcp_sessions_open` | | [`Metrics::set_open_sessions`] |

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::{Registry, Unit};
use vmcp_domain::status::{BackendStatus, CircuitState, Phase, Status};

use crate::reporter::{ReportFuture, ReportReason, Reporter};
use crate::set::WriteOutcome;

/// The `Content-Type` of [`Metrics::render`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

const PHASES: [Phase; 4] = [Phase::Pending, Phase::Ready, Phase::Degraded, Phase::Failed];
const BACKEND_STATUSES: [BackendStatus; 5] = [
    BackendStatus::Ready,
    BackendStatus::Degraded,
    BackendStatus::Unavailable,
    BackendStatus::Unknown,
    BackendStatus::Unauthenticated,
];
const CIRCUIT_STATES: [CircuitState; 3] = [
    CircuitState::Closed,
    CircuitState::Open,
    CircuitState::HalfOpen,
];

/// Probe latency buckets (seconds), up to the default 10 s probe timeout.
const PROBE_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Call latency buckets (seconds), up to a minute.
const CALL_BUCKETS: [f64; 13] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// How a call to a backend ended, for `vmcp_backend_requests_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CallOutcome {
    /// A result.
    Ok,
    /// A JSON-RPC error answer (the backend is alive).
    Error,
    /// A transport failure: unreachable, connection lost, bad answer.
    Failure,
    /// No answer within the timeout.
    Timeout,
    /// Not sent: the circuit is open or the backend is not routable.
    Rejected,
}

impl CallOutcome {
    /// Lower-case name, the label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Error => "error",
            Self::Failure => "failure",
            Self::Timeout => "timeout",
            Self::Rejected => "rejected",
        }
    }
}

/// Why a client was turned away, for `vmcp_client_refusals_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ClientRefusal {
    /// A connection closed at accept: `server.connections.max` plus the
    /// probe reserve are in use.
    ConnectionLimit,
    /// A request other than a probe on a probe-reserve connection (`503`).
    ProbeReserve,
    /// An `initialize` beyond `server.maxSessions` (`503`).
    SessionLimit,
    /// An `initialize` beyond `server.maxSessionsPerClient` (`503`).
    ClientSessionLimit,
}

impl ClientRefusal {
    /// Snake-case name, the label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ConnectionLimit => "connection_limit",
            Self::ProbeReserve => "probe_reserve",
            Self::SessionLimit => "session_limit",
            Self::ClientSessionLimit => "client_session_limit",
        }
    }
}

/// Which deadline closed a client connection, for
/// `vmcp_connection_timeouts_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConnectionDeadline {
    /// Request headers not complete in time (`server.connections.headerReadTimeout`).
    HeaderRead,
    /// No request for `server.connections.idleTimeout`.
    Idle,
}

impl ConnectionDeadline {
    /// Snake-case name, the label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::HeaderRead => "header_read",
            Self::Idle => "idle",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RefusalLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DeadlineLabels {
    deadline: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PhaseLabels {
    phase: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BackendLabels {
    backend: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BackendStatusLabels {
    backend: String,
    status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CircuitLabels {
    backend: String,
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProbeLabels {
    backend: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    backend: String,
    method: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MethodLabels {
    backend: String,
    method: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WriteLabels {
    reporter: &'static str,
    reason: &'static str,
    outcome: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// The runtime's Prometheus instruments. Cheap to clone (shared).
#[derive(Clone, Debug)]
pub struct Metrics {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    registry: Registry,
    phase: Family<PhaseLabels, Gauge>,
    backends: Gauge,
    backend_status: Family<BackendStatusLabels, Gauge>,
    circuit_state: Family<CircuitLabels, Gauge>,
    consecutive_failures: Family<BackendLabels, Gauge>,
    probe_duration: HistogramFamily<BackendLabels>,
    probes: Family<ProbeLabels, Counter>,
    requests: Family<CallLabels, Counter>,
    request_duration: HistogramFamily<MethodLabels>,
    status_writes: Family<WriteLabels, Counter>,
    connections_open: Gauge,
    refusals: Family<RefusalLabels, Counter>,
    connection_timeouts: Family<DeadlineLabels, Counter>,
    sessions_open: Gauge,
    /// Backends that have per-backend gauges.
    listed: Mutex<BTreeSet<String>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// The instruments in a fresh registry.
    pub fn new() -> Self {
        Self::with_registry(Registry::default())
    }

    /// The instruments added to `registry`, which may already hold the
    /// caller's own metrics; [`render`](Self::render) renders them all.
    pub fn with_registry(mut registry: Registry) -> Self {
        let probe_histogram: fn() -> Histogram = || Histogram::new(PROBE_BUCKETS);
        let call_histogram: fn() -> Histogram = || Histogram::new(CALL_BUCKETS);
        let phase = Family::<PhaseLabels, Gauge>::default();
        let backends = Gauge::default();
        let backend_status = Family::<BackendStatusLabels, Gauge>::default();
        let circuit_state = Family::<CircuitLabels, Gauge>::default();
        let consecutive_failures = Family::<BackendLabels, Gauge>::default();
        let probe_duration =
            HistogramFamily::<BackendLabels>::new_with_constructor(probe_histogram);
        let probes = Family::<ProbeLabels, Counter>::default();
        let requests = Family::<CallLabels, Counter>::default();
        let request_duration =
            HistogramFamily::<MethodLabels>::new_with_constructor(call_histogram);
        let status_writes = Family::<WriteLabels, Counter>::default();
        let connections_open = Gauge::default();
        let refusals = Family::<RefusalLabels, Counter>::default();
        let connection_timeouts = Family::<DeadlineLabels, Counter>::default();
        let sessions_open = Gauge::default();

        registry.register(
            "vmcp_phase",
            "The runtime's phase: 1 for the current one",
            phase.clone(),
        );
        registry.register(
            "vmcp_backends",
            "Backends known to the runtime",
            backends.clone(),
        );
        registry.register(
            "vmcp_backend_status",
            "Each backend's state: 1 for the current one",
            backend_status.clone(),
        );
        registry.register(
            "vmcp_backend_circuit_state",
            "Each backend's circuit breaker state: 1 for the current one",
            circuit_state.clone(),
        );
        registry.register(
            "vmcp_backend_consecutive_failures",
            "Failures in a row per backend (probes and calls)",
            consecutive_failures.clone(),
        );
        registry.register_with_unit(
            "vmcp_probe_duration",
            "Health probe latency per backend",
            Unit::Seconds,
            probe_duration.clone(),
        );
        registry.register(
            "vmcp_probes",
            "Health probes per backend and outcome",
            probes.clone(),
        );
        registry.register(
            "vmcp_backend_requests",
            "Calls forwarded to backends per method and outcome",
            requests.clone(),
        );
        registry.register_with_unit(
            "vmcp_backend_request_duration",
            "Latency of calls forwarded to backends",
            Unit::Seconds,
            request_duration.clone(),
        );
        registry.register(
            "vmcp_status_writes",
            "Status write attempts per reporter, reason and outcome",
            status_writes.clone(),
        );
        registry.register(
            "vmcp_connections_open",
            "Client connections being served (the probe reserve included)",
            connections_open.clone(),
        );
        registry.register(
            "vmcp_client_refusals",
            "Clients turned away at a limit, per reason",
            refusals.clone(),
        );
        registry.register(
            "vmcp_connection_timeouts",
            "Client connections closed by a deadline, per deadline",
            connection_timeouts.clone(),
        );
        registry.register(
            "vmcp_sessions_open",
            "Client sessions holding a slot (server.maxSessions)",
            sessions_open.clone(),
        );
        for reason in [
            ClientRefusal::ConnectionLimit,
            ClientRefusal::ProbeReserve,
            ClientRefusal::SessionLimit,
            ClientRefusal::ClientSessionLimit,
        ] {
            // Present from the start, at 0, so a rate() alert has a series.
            refusals
                .get_or_create(&RefusalLabels {
                    reason: reason.as_str(),
                })
                .inc_by(0);
        }
        for deadline in [ConnectionDeadline::HeaderRead, ConnectionDeadline::Idle] {
            connection_timeouts
                .get_or_create(&DeadlineLabels {
                    deadline: deadline.as_str(),
                })
                .inc_by(0);
        }
        for each in PHASES {
            // Every phase is present from the start, at 0.
            phase
                .get_or_create(&PhaseLabels {
                    phase: each.as_str(),
                })
                .set(0);
        }
        Self {
            inner: Arc::new(Inner {
                registry,
                phase,
                backends,
                backend_status,
                circuit_state,
                consecutive_failures,
                probe_duration,
                probes,
                requests,
                request_duration,
                status_writes,
                connections_open,
                refusals,
                connection_timeouts,
                sessions_open,
                listed: Mutex::new(BTreeSet::new()),
            }),
        }
    }

    /// Every metric in the OpenMetrics text format ([`CONTENT_TYPE`]).
    pub fn render(&self) -> String {
        let mut text = String::new();
        if let Err(error) =
            prometheus_client::encoding::text::encode(&mut text, &self.inner.registry)
        {
            // Only the writer can fail, and writing to a String does not.
            tracing::error!(%error, "cannot render the metrics");
        }
        text
    }

    /// Records one health probe of `backend`.
    pub fn record_probe(&self, backend: &str, duration: Duration, ok: bool) {
        let inner = &self.inner;
        inner
            .probe_duration
            .get_or_create(&BackendLabels {
                backend: backend.to_string(),
            })
            .observe(duration.as_secs_f64());
        inner
            .probes
            .get_or_create(&ProbeLabels {
                backend: backend.to_string(),
                outcome: if ok { "ok" } else { "error" },
            })
            .inc();
    }

    /// Records one call forwarded to `backend`. `method` is the MCP method
    /// (`tools/call`, `resources/read`, ...): pass only known method names,
    /// as each distinct value is a new series.
    pub fn record_call(
        &self,
        backend: &str,
        method: &str,
        outcome: CallOutcome,
        duration: Duration,
    ) {
        let inner = &self.inner;
        inner
            .requests
            .get_or_create(&CallLabels {
                backend: backend.to_string(),
                method: method.to_string(),
                outcome: outcome.as_str(),
            })
            .inc();
        if outcome != CallOutcome::Rejected {
            inner
                .request_duration
                .get_or_create(&MethodLabels {
                    backend: backend.to_string(),
                    method: method.to_string(),
                })
                .observe(duration.as_secs_f64());
        }
    }

    /// Counts one status write attempt.
    pub fn record_status_write(
        &self,
        reporter: &'static str,
        reason: ReportReason,
        outcome: WriteOutcome,
    ) {
        self.inner
            .status_writes
            .get_or_create(&WriteLabels {
                reporter,
                reason: reason.as_str(),
                outcome: outcome.as_str(),
            })
            .inc();
    }

    /// Counts a client connection taken into service.
    pub fn connection_opened(&self) {
        self.inner.connections_open.inc();
    }

    /// Counts the end of a connection counted by
    /// [`connection_opened`](Self::connection_opened).
    pub fn connection_closed(&self) {
        self.inner.connections_open.dec();
    }

    /// Counts one client turned away.
    pub fn record_refusal(&self, reason: ClientRefusal) {
        self.inner
            .refusals
            .get_or_create(&RefusalLabels {
                reason: reason.as_str(),
            })
            .inc();
    }

    /// Counts one connection closed by `deadline`.
    pub fn record_connection_timeout(&self, deadline: ConnectionDeadline) {
        self.inner
            .connection_timeouts
            .get_or_create(&DeadlineLabels {
                deadline: deadline.as_str(),
            })
            .inc();
    }

    /// Sets the number of sessions holding a slot.
    pub fn set_open_sessions(&self, sessions: usize) {
        self.inner
            .sessions_open
            .set(i64::try_from(sessions).unwrap_or(i64::MAX));
    }

    /// Sets the status gauges from `status`, dropping the series of
    /// backends it no longer lists.
    pub fn observe_status(&self, status: &Status) {
        let inner = &self.inner;
        let mut listed = inner.listed.lock().unwrap_or_else(PoisonError::into_inner);
        for phase in PHASES {
            inner
                .phase
                .get_or_create(&PhaseLabels {
                    phase: phase.as_str(),
                })
                .set(i64::from(phase == status.phase));
        }
        inner.backends.set(i64::from(status.backend_count));

        let now: BTreeSet<String> = status
            .discovered_backends
            .iter()
            .map(|backend| backend.name.clone())
            .collect();
        for gone in listed.difference(&now) {
            inner.remove_backend(gone);
        }
        for backend in &status.discovered_backends {
            for state in BACKEND_STATUSES {
                inner
                    .backend_status
                    .get_or_create(&BackendStatusLabels {
                        backend: backend.name.clone(),
                        status: state.as_str(),
                    })
                    .set(i64::from(state == backend.status));
            }
            for state in CIRCUIT_STATES {
                let labels = CircuitLabels {
                    backend: backend.name.clone(),
                    state: state.as_str(),
                };
                match backend.circuit_breaker_state {
                    Some(current) => {
                        inner
                            .circuit_state
                            .get_or_create(&labels)
                            .set(i64::from(state == current));
                    }
                    None => {
                        inner.circuit_state.remove(&labels);
                    }
                }
            }
            inner
                .consecutive_failures
                .get_or_create(&BackendLabels {
                    backend: backend.name.clone(),
                })
                .set(i64::from(backend.consecutive_failures));
        }
        *listed = now;
    }
}

impl Inner {
    fn remove_backend(&self, backend: &str) {
        for state in BACKEND_STATUSES {
            self.backend_status.remove(&BackendStatusLabels {
                backend: backend.to_string(),
                status: state.as_str(),
            });
        }
        for state in CIRCUIT_STATES {
            self.circuit_state.remove(&CircuitLabels {
                backend: backend.to_string(),
                state: state.as_str(),
            });
        }
        self.consecutive_failures.remove(&BackendLabels {
            backend: backend.to_string(),
        });
    }
}

/// Mirrors each status into the status gauges of [`Metrics`].
#[derive(Clone, Debug)]
pub struct MetricsReporter {
    metrics: Metrics,
}

impl MetricsReporter {
    /// A reporter updating `metrics`.
    pub fn new(metrics: Metrics) -> Self {
        Self { metrics }
    }
}

impl Reporter for MetricsReporter {
    fn name(&self) -> &'static str {
        "metrics"
    }

    fn wants_counter_changes(&self) -> bool {
        true
    }

    fn apply<'a>(&'a self, status: &'a Status, _why: ReportReason) -> ReportFuture<'a> {
        self.metrics.observe_status(status);
        Box::pin(std::future::ready(Ok(())))
    }
}
