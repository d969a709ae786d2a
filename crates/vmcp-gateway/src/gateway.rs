//! The gateway: backends, their supervisors, the catalogue and the sessions,
//! with one lifecycle.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use vmcp_config::Config;

use vmcp_domain::status::{HealthSnapshot, Status, Timestamp, build_status};

use crate::backend::health::Policies;
use crate::backend::supervisor::{Liveness, Supervisor};
use crate::backend::{Backend, BackendCapabilities, BackendSpec, GatewayEvent};
use crate::catalogue::{self, Catalogue};
use crate::progress::ProgressRoutes;
use crate::sessions::Sessions;

/// How to start a gateway.
#[derive(Clone, Debug)]
pub struct GatewayOptions {
    /// The loaded configuration.
    pub config: Config,
    /// Generation of that configuration (Kubernetes: the object's
    /// `metadata.generation` the config was rendered from), reported as
    /// `observedGeneration`.
    pub generation: Option<i64>,
    /// Prometheus instruments for probes and calls, if metrics are on.
    pub metrics: Option<vmcp_status::Metrics>,
}

impl GatewayOptions {
    /// Options for a config with no generation (CLI mode).
    pub fn new(config: Config) -> Self {
        Self {
            config,
            generation: None,
            metrics: None,
        }
    }
}

/// The running gateway.
pub struct Gateway {
    config: Arc<Config>,
    backends: Vec<Arc<Backend>>,
    by_name: HashMap<String, Arc<Backend>>,
    catalogue: ArcSwap<Catalogue>,
    known: ArcSwap<Catalogue>,
    /// Connected client sessions.
    pub sessions: Sessions,
    /// Progress routes of forwarded requests.
    pub progress: Arc<ProgressRoutes>,
    ready: watch::Sender<bool>,
    generation: Option<i64>,
    status: watch::Sender<Arc<Status>>,
    draining: std::sync::atomic::AtomicBool,
    in_flight: AtomicUsize,
    idle: Notify,
    shutdown: CancellationToken,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl Gateway {
    /// Starts supervising every configured backend. Must run inside a Tokio runtime.
    pub fn start(options: GatewayOptions) -> Arc<Self> {
        let config = Arc::new(options.config);
        let (updates_tx, updates_rx) = mpsc::unbounded_channel();
        let backends: Vec<Arc<Backend>> = config
            .backends
            .iter()
            .map(|b| {
                let spec = BackendSpec::from_config(b, &config);
                let policies = Policies::from_config(
                    &config.operational.failure_handling,
                    spec.auth.is_some(),
                );
                Backend::new(spec, policies, updates_tx.clone(), options.metrics.clone())
            })
            .collect();
        let pending = build_status(
            &HealthSnapshot::default(),
            options.generation,
            None,
            Timestamp::now(),
        );
        let gateway = Arc::new(Self {
            by_name: backends
                .iter()
                .map(|b| (b.name().to_string(), b.clone()))
                .collect(),
            backends,
            catalogue: ArcSwap::from_pointee(Catalogue::default()),
            known: ArcSwap::from_pointee(Catalogue::default()),
            sessions: Sessions::default(),
            progress: Arc::new(ProgressRoutes::default()),
            ready: watch::Sender::new(false),
            generation: options.generation,
            status: watch::Sender::new(Arc::new(pending)),
            draining: std::sync::atomic::AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            idle: Notify::new(),
            shutdown: CancellationToken::new(),
            tasks: Mutex::new(Vec::new()),
            config,
        });
        if gateway.backends.is_empty() {
            gateway.ready.send_replace(true);
        }
        gateway.publish_status();
        // Reused connections matter for latency; the pool is shared by all HTTP backends.
        let http = reqwest::Client::builder()
            .pool_idle_timeout(Duration::from_secs(90))
            .tcp_nodelay(true)
            .build()
            .unwrap_or_default();
        let failure = &gateway.config.operational.failure_handling;
        let liveness = Liveness {
            interval: failure.health_check_interval.get(),
            timeout: failure.health_check_timeout.get(),
            threshold: failure.unhealthy_threshold,
        };
        let mut tasks = Vec::new();
        for backend in &gateway.backends {
            let supervisor = Supervisor {
                backend: backend.clone(),
                http: http.clone(),
                progress: gateway.progress.clone(),
                updates: updates_tx.clone(),
                liveness,
                shutdown: gateway.shutdown.clone(),
            };
            tasks.push(tokio::spawn(supervisor.run()));
        }
        tasks.push(tokio::spawn(aggregate(
            Arc::downgrade(&gateway),
            updates_rx,
            gateway.shutdown.clone(),
        )));
        *gateway.lock_tasks() = tasks;
        gateway
    }

    /// The configuration in force.
    pub fn config(&self) -> &Arc<Config> {
        &self.config
    }

    /// The current catalogue (one atomic load).
    pub fn catalogue(&self) -> Arc<Catalogue> {
        self.catalogue.load_full()
    }

    /// The catalogue every backend would offer if all were routable: tells
    /// which backend owns a name that is currently hidden.
    pub fn known_catalogue(&self) -> Arc<Catalogue> {
        self.known.load_full()
    }

    /// A backend by name.
    pub fn backend(&self, name: &str) -> Option<&Arc<Backend>> {
        self.by_name.get(name)
    }

    /// All backends, in config order.
    pub fn backends(&self) -> &[Arc<Backend>] {
        &self.backends
    }

    /// Whether the first discovery has finished (every backend tried once).
    pub fn is_ready(&self) -> bool {
        *self.ready.borrow()
    }

    /// Marks the gateway as shutting down: readiness turns false while
    /// requests are still served.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    /// Whether shutdown has begun.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// Waits until [`Gateway::is_ready`].
    pub async fn wait_ready(&self) {
        let mut ready = self.ready.subscribe();
        let _ = ready.wait_for(|r| *r).await;
    }

    /// Names of backends that cannot take requests now.
    pub fn unavailable_backends(&self) -> Vec<&str> {
        self.backends
            .iter()
            .filter(|b| !b.state().is_connected())
            .map(|b| b.name())
            .collect()
    }

    /// Counts a request as in flight until the guard drops (for draining).
    pub fn begin_request(self: &Arc<Self>) -> InFlightGuard {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        InFlightGuard {
            gateway: self.clone(),
        }
    }

    /// Requests in flight now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    /// Waits until no request is in flight, or `timeout`; returns whether drained.
    pub async fn drain(&self, timeout: Duration) -> bool {
        let wait = async {
            loop {
                let idle = self.idle.notified();
                if self.in_flight() == 0 {
                    return;
                }
                idle.await;
            }
        };
        tokio::time::timeout(timeout, wait).await.is_ok()
    }

    /// Stops the supervisors and closes every backend connection (child
    /// processes are terminated).
    pub async fn shutdown(&self) {
        self.shutdown.cancel();
        let tasks = std::mem::take(&mut *self.lock_tasks());
        for task in tasks {
            let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
        }
    }

    /// The health of every backend now.
    pub fn health_snapshot(&self) -> HealthSnapshot {
        HealthSnapshot {
            backends: self.backends.iter().map(|b| b.snapshot()).collect(),
            discovery_complete: self.is_ready(),
            runtime_error: None,
        }
    }

    /// The status as of now (fresh health times), for `/status`.
    pub fn current_status(&self) -> Status {
        let previous = self.status.borrow().clone();
        build_status(
            &self.health_snapshot(),
            self.generation,
            Some(&previous),
            Timestamp::now(),
        )
    }

    /// The last published status; it changes only when its content does.
    pub fn subscribe_status(&self) -> watch::Receiver<Arc<Status>> {
        self.status.subscribe()
    }

    /// Rebuilds the status and publishes it if its content changed.
    fn publish_status(&self) {
        let next = self.current_status();
        self.status.send_if_modified(|current| {
            if current.same_content_as(&next) {
                false
            } else {
                *current = Arc::new(next);
                true
            }
        });
    }

    fn lock_tasks(&self) -> std::sync::MutexGuard<'_, Vec<JoinHandle<()>>> {
        // Only whole-vector swaps happen under this lock.
        self.tasks
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Keeps a request counted as in flight.
pub struct InFlightGuard {
    gateway: Arc<Gateway>,
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        if self.gateway.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.gateway.idle.notify_waiters();
        }
    }
}

/// Applies capability updates to the catalogue, one rebuild per burst, and
/// tells sessions what changed.
async fn aggregate(
    gateway: std::sync::Weak<Gateway>,
    mut updates: mpsc::UnboundedReceiver<GatewayEvent>,
    shutdown: CancellationToken,
) {
    let mut snapshots: HashMap<Arc<str>, Arc<BackendCapabilities>> = HashMap::new();
    let mut reported: HashSet<Arc<str>> = HashSet::new();
    loop {
        let first = tokio::select! {
            _ = shutdown.cancelled() => return,
            event = updates.recv() => match event {
                Some(event) => event,
                None => return,
            },
        };
        let mut burst = vec![first];
        while let Ok(next) = updates.try_recv() {
            burst.push(next);
        }
        let Some(gateway) = gateway.upgrade() else {
            return;
        };
        for event in burst {
            let GatewayEvent::Capabilities(update) = event else {
                continue;
            };
            reported.insert(update.backend.clone());
            // A backend that went away keeps its last known capabilities, so
            // a call to one of them gets "backend unavailable", not "unknown tool".
            if let Some(capabilities) = update.capabilities {
                snapshots.insert(update.backend, capabilities);
            }
        }
        let known: Vec<_> = gateway
            .backends
            .iter()
            .filter_map(|b| {
                let key: &str = b.name();
                snapshots
                    .get_key_value(key)
                    .map(|(k, v)| (k.clone(), v.clone()))
            })
            .collect();
        // Only routable backends (healthy enough, circuit not open) are offered.
        let routable: Vec<_> = known
            .iter()
            .filter(|(name, _)| gateway.backend(name).is_some_and(|b| b.is_routable()))
            .cloned()
            .collect();
        gateway.known.store(Arc::new(catalogue::build(
            &known,
            &gateway.config.aggregation,
        )));
        let next = catalogue::build(&routable, &gateway.config.aggregation);
        let previous = gateway.catalogue.swap(Arc::new(next));
        for conflict in &gateway.catalogue.load().conflicts {
            if !previous.conflicts.contains(conflict) {
                tracing::warn!("{conflict}");
            }
        }
        let changes = gateway.catalogue.load().changes_since(&previous);
        gateway.sessions.broadcast(changes);
        if !gateway.is_ready() && reported.len() >= gateway.backends.len() {
            tracing::info!(
                tools = gateway.catalogue.load().tools.len(),
                unavailable = ?gateway.unavailable_backends(),
                "first backend discovery finished"
            );
            gateway.ready.send_replace(true);
        }
        gateway.publish_status();
    }
}
