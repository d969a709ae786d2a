//! [`LogReporter`]: the status as log lines (`info` on a change, `debug` on
//! a heartbeat).

use std::fmt::Write as _;

use vmcp_domain::status::{CircuitState, Status};

use crate::reporter::{ReportFuture, ReportReason, Reporter};

/// Most backends spelled out in one log line; the rest are counted.
const MAX_BACKENDS_IN_LINE: usize = 20;

/// Logs each status change at `info` (phase, message, each backend's state
/// in one compact field) and each heartbeat at `debug`.
#[derive(Clone, Copy, Debug, Default)]
pub struct LogReporter;

impl LogReporter {
    /// A log reporter.
    pub fn new() -> Self {
        Self
    }
}

impl Reporter for LogReporter {
    fn name(&self) -> &'static str {
        "log"
    }

    fn apply<'a>(&'a self, status: &'a Status, why: ReportReason) -> ReportFuture<'a> {
        let phase = status.phase.as_str();
        let message = status.message.as_str();
        let backends = compact_backends(status);
        match why {
            ReportReason::Changed => {
                tracing::info!(phase, message, backends, "status changed");
            }
            ReportReason::Heartbeat => {
                tracing::debug!(phase, message, backends, "status unchanged");
            }
            ReportReason::Final => {
                tracing::info!(phase, message, backends, "final status");
            }
        }
        Box::pin(std::future::ready(Ok(())))
    }
}

/// `"a=ready b=unavailable(circuit=open,failures=5)"`: each listed backend's
/// state, with the circuit and the failure count only when they matter.
pub fn compact_backends(status: &Status) -> String {
    let mut line = String::new();
    for backend in status.discovered_backends.iter().take(MAX_BACKENDS_IN_LINE) {
        if !line.is_empty() {
            line.push(' ');
        }
        // Writing to a String cannot fail.
        let _ = write!(line, "{}={}", backend.name, backend.status.as_str());
        let circuit = backend
            .circuit_breaker_state
            .filter(|state| *state != CircuitState::Closed);
        let mut extras = Vec::new();
        if let Some(circuit) = circuit {
            extras.push(format!("circuit={}", circuit.as_str()));
        }
        if backend.consecutive_failures > 0 {
            extras.push(format!("failures={}", backend.consecutive_failures));
        }
        if !extras.is_empty() {
            let _ = write!(line, "({})", extras.join(","));
        }
    }
    let total = usize::try_from(status.backend_count).unwrap_or(usize::MAX);
    let shown = status.discovered_backends.len().min(MAX_BACKENDS_IN_LINE);
    if total > shown {
        let _ = write!(line, " +{} more", total - shown);
    }
    line
}
