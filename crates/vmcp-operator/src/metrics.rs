//! The operator's metrics: reconciles, errors, their duration, API writes,
//! and the reconciles in flight per kind.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels naming the kind a controller reconciles.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    /// `VirtualMCPServer` or `MCPGroup`.
    pub kind: String,
}

/// Labels of one API write.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WriteLabels {
    /// What was written: a child kind, `status`, `Event`.
    pub resource: String,
}

/// The operator's metrics, registered once.
#[derive(Clone, Debug)]
pub struct Metrics {
    reconciles: Family<KindLabel, Counter>,
    errors: Family<KindLabel, Counter>,
    duration: Family<KindLabel, Histogram>,
    in_flight: Family<KindLabel, Gauge>,
    writes: Family<WriteLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            reconciles: Family::default(),
            errors: Family::default(),
            duration: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.001, 2.0, 14))
            }),
            in_flight: Family::default(),
            writes: Family::default(),
        }
    }
}

impl Metrics {
    /// Registers every metric under `vmcp_operator_`.
    pub fn register(&self, registry: &mut Registry) {
        let registry = registry.sub_registry_with_prefix("vmcp_operator");
        registry.register(
            "reconciles",
            "Reconciles run, by kind",
            self.reconciles.clone(),
        );
        registry.register(
            "reconcile_errors",
            "Reconciles that failed and were retried, by kind",
            self.errors.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Duration of one reconcile, by kind",
            self.duration.clone(),
        );
        registry.register(
            "reconciles_in_flight",
            "Reconciles running now, by kind (the part of the work queue being processed)",
            self.in_flight.clone(),
        );
        registry.register(
            "api_writes",
            "Writes sent to the API server (applies, status applies, Events), by resource",
            self.writes.clone(),
        );
    }

    fn kind(kind: &str) -> KindLabel {
        KindLabel {
            kind: kind.to_string(),
        }
    }

    /// A reconcile of `kind` starts; the guard ends it.
    pub fn start(&self, kind: &'static str) -> ReconcileGuard {
        self.in_flight.get_or_create(&Self::kind(kind)).inc();
        ReconcileGuard {
            metrics: self.clone(),
            kind,
            started: std::time::Instant::now(),
        }
    }

    /// A reconcile of `kind` failed.
    pub fn error(&self, kind: &str) {
        self.errors.get_or_create(&Self::kind(kind)).inc();
    }

    /// One API write of `resource`.
    pub fn write(&self, resource: &str) {
        self.writes
            .get_or_create(&WriteLabels {
                resource: resource.to_string(),
            })
            .inc();
    }

    fn finish(&self, kind: &str, took: Duration) {
        let label = Self::kind(kind);
        self.in_flight.get_or_create(&label).dec();
        self.reconciles.get_or_create(&label).inc();
        self.duration
            .get_or_create(&label)
            .observe(took.as_secs_f64());
    }
}

/// Ends a reconcile's measurement when dropped.
#[derive(Debug)]
pub struct ReconcileGuard {
    metrics: Metrics,
    kind: &'static str,
    started: std::time::Instant,
}

impl Drop for ReconcileGuard {
    fn drop(&mut self) {
        self.metrics.finish(self.kind, self.started.elapsed());
    }
}
