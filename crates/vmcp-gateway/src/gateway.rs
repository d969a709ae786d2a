//! The gateway: backends, their supervisors, the catalogue and the sessions,
//! with one lifecycle.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use vmcp_auth::authz::Policies as AccessPolicies;
use vmcp_config::{BackendConfig, Config};

use vmcp_domain::status::{HealthSnapshot, Status, Timestamp, build_status};

use crate::backend::health::Policies;
use crate::backend::supervisor::{Liveness, Supervisor};
use crate::backend::{Backend, BackendCapabilities, BackendId, BackendSpec, GatewayEvent};
use crate::catalogue::{self, Catalogue, ListChanges};

/// Catalogue changes kept for a slow `subscriptions/listen` before it lags.
const LIST_CHANGES_BACKLOG: usize = 16;
use crate::input_rounds::InputRounds;
use crate::policy_source::PolicySource;
use crate::registry::{self, Registry, Step};
use crate::relay::{Downstream, bounded};
use crate::routes::CallRoutes;
use crate::sessions::{Released, Sessions};

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
    /// Backends are discovered at run time (Kubernetes mode): the gateway
    /// stays not ready, its status `Pending`, until the first
    /// [`Gateway::set_backends`] call has been made and every backend in it
    /// has been tried once. `config.backends` still start right away; the
    /// discovery passes them in its lists too, so they are kept, not
    /// restarted. `false` (CLI mode): ready once every configured backend
    /// has been tried once.
    pub discovery: bool,
}

impl GatewayOptions {
    /// Options for a config with no generation and no discovery (CLI mode).
    pub fn new(config: Config) -> Self {
        Self {
            config,
            generation: None,
            metrics: None,
            discovery: false,
        }
    }
}

/// What a [`Gateway::set_backends`] call changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RegistryChanges {
    /// Backends started under new names.
    pub added: Vec<String>,
    /// Backends whose settings changed: the old connection closed, a new one opened.
    pub replaced: Vec<String>,
    /// Backends stopped and removed.
    pub removed: Vec<String>,
    /// Backends left as they were (connection kept).
    pub kept: Vec<String>,
    /// Names listed more than once (the first entry was used).
    pub duplicates: Vec<String>,
    /// Whether the registry changed at all (a new order counts).
    pub changed: bool,
}

/// The running gateway.
pub struct Gateway {
    config: Arc<Config>,
    registry: ArcSwap<Registry>,
    catalogue: ArcSwap<Catalogue>,
    known: ArcSwap<Catalogue>,
    /// Connected client sessions.
    pub sessions: Arc<Sessions>,
    /// Forwarded requests in flight, for what backends send back.
    pub routes: Arc<CallRoutes>,
    /// 2026-07-28 clients' calls parked while the client answers a backend's questions.
    pub input_rounds: Arc<InputRounds>,
    /// Bounds the notifications relayed to clients at once.
    notifications: Arc<tokio::sync::Semaphore>,
    /// Catalogue changes, for 2026-07-28 clients' `subscriptions/listen`.
    list_changes: tokio::sync::broadcast::Sender<ListChanges>,
    /// Numbers `subscriptions/listen` streams that hold subscriptions.
    listeners: std::sync::atomic::AtomicU64,
    ready: watch::Sender<bool>,
    /// Whether the backend list is complete enough to become ready: always
    /// in CLI mode, after the first `set_backends` in discovery mode.
    discovered: AtomicBool,
    generation: Option<i64>,
    status: watch::Sender<Arc<Status>>,
    draining: AtomicBool,
    in_flight: AtomicUsize,
    idle: Notify,
    /// Cancelled when the drain time is over: calls still in flight end
    /// with a "shutting down" error instead of a cut stream.
    abandon: CancellationToken,
    shutdown: CancellationToken,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    /// Prometheus instruments, if metrics are on.
    metrics: Option<vmcp_status::Metrics>,
    /// Cedar policies (`incomingAuth.authz.type: cedar`), replaced when
    /// their file changes; `None`: every caller may use everything.
    authz: Option<ArcSwap<AccessPolicies>>,
    /// Starts and stops supervisors; its lock also serialises registry changes.
    launcher: Mutex<Launcher>,
}

/// Everything needed to start a backend's supervisor, and the running ones.
struct Launcher {
    http: reqwest::Client,
    updates: mpsc::UnboundedSender<GatewayEvent>,
    liveness: Liveness,
    metrics: Option<vmcp_status::Metrics>,
    running: HashMap<BackendId, Running>,
    /// Supervisors of removed backends, still closing their connections.
    stopping: Vec<JoinHandle<()>>,
}

struct Running {
    cancel: CancellationToken,
    task: JoinHandle<()>,
}

impl Launcher {
    fn backend(&self, spec: BackendSpec, config: &Config) -> Arc<Backend> {
        let policies =
            Policies::from_config(&config.operational.failure_handling, spec.auth.is_some());
        Backend::new(spec, policies, self.updates.clone(), self.metrics.clone())
    }

    /// Starts `backend`'s supervisor; it stops with `shutdown` or on removal.
    fn spawn(
        &mut self,
        backend: &Arc<Backend>,
        shutdown: &CancellationToken,
        downstream: Downstream,
    ) {
        let cancel = shutdown.child_token();
        let supervisor = Supervisor {
            backend: backend.clone(),
            http: self.http.clone(),
            downstream,
            updates: self.updates.clone(),
            liveness: self.liveness,
            shutdown: cancel.clone(),
        };
        let task = tokio::spawn(supervisor.run());
        self.running.insert(backend.id(), Running { cancel, task });
    }

    /// Stops `backend`'s supervisor, which closes its connection (a child
    /// process is terminated).
    fn stop(&mut self, backend: &Backend) {
        if let Some(running) = self.running.remove(&backend.id()) {
            running.cancel.cancel();
            self.stopping.retain(|task| !task.is_finished());
            self.stopping.push(running.task);
        }
        // Requests that still hold this backend fail as unavailable instead
        // of waiting on a connection that is closing.
        backend.set_disconnected("backend removed");
    }

    fn take_tasks(&mut self) -> Vec<JoinHandle<()>> {
        let mut tasks: Vec<_> = self.running.drain().map(|(_, r)| r.task).collect();
        tasks.append(&mut self.stopping);
        tasks
    }
}

impl Gateway {
    /// Starts supervising every configured backend. Must run inside a Tokio runtime.
    pub fn start(options: GatewayOptions) -> Arc<Self> {
        let config = Arc::new(options.config);
        let (updates_tx, updates_rx) = mpsc::unbounded_channel();
        let pending = build_status(
            &HealthSnapshot::default(),
            options.generation,
            None,
            Timestamp::now(),
        );
        let http = crate::backend::http_client::backend_http_client();
        let failure = &config.operational.failure_handling;
        let liveness = Liveness {
            interval: failure.health_check_interval.get(),
            timeout: failure.health_check_timeout.get(),
            threshold: failure.unhealthy_threshold,
        };
        let policies = PolicySource::from_config(&config);
        let gateway = Arc::new(Self {
            authz: policies
                .as_ref()
                .map(|source| ArcSwap::from_pointee(source.initial())),
            registry: ArcSwap::from_pointee(Registry::default()),
            catalogue: ArcSwap::from_pointee(Catalogue::default()),
            known: ArcSwap::from_pointee(Catalogue::default()),
            input_rounds: Arc::new(InputRounds::default()),
            sessions: Arc::new(Sessions::new(config.server.max_sessions as usize)),
            routes: Arc::new(CallRoutes::default()),
            list_changes: tokio::sync::broadcast::channel(LIST_CHANGES_BACKLOG).0,
            listeners: std::sync::atomic::AtomicU64::new(0),
            notifications: Arc::new(tokio::sync::Semaphore::new(
                crate::relay::MAX_NOTIFICATIONS_IN_FLIGHT,
            )),
            ready: watch::Sender::new(false),
            discovered: AtomicBool::new(!options.discovery),
            generation: options.generation,
            status: watch::Sender::new(Arc::new(pending)),
            draining: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            idle: Notify::new(),
            abandon: CancellationToken::new(),
            shutdown: CancellationToken::new(),
            tasks: Mutex::new(Vec::new()),
            metrics: options.metrics.clone(),
            launcher: Mutex::new(Launcher {
                http,
                updates: updates_tx,
                liveness,
                metrics: options.metrics,
                running: HashMap::new(),
                stopping: Vec::new(),
            }),
            config,
        });
        let configured = gateway
            .config
            .backends
            .iter()
            .map(|b| BackendSpec::from_config(b, &gateway.config))
            .collect();
        gateway.reconcile(configured);
        if !options.discovery && gateway.registry.load().is_empty() {
            gateway.ready.send_replace(true);
        }
        gateway.publish_status();
        let aggregator = tokio::spawn(aggregate(
            Arc::downgrade(&gateway),
            updates_rx,
            gateway.shutdown.clone(),
        ));
        gateway.lock_tasks().push(aggregator);
        if let Some(source) = policies {
            let watcher = tokio::spawn(source.watch(Arc::downgrade(&gateway)));
            gateway.lock_tasks().push(watcher);
        }
        gateway
    }

    /// Replaces the set of backends with `backends` (the full desired list,
    /// static ones included), reconciling by name: new names are started,
    /// missing names are stopped and their capabilities leave the
    /// catalogue, names whose settings changed are restarted, unchanged
    /// ones keep their connections. The list's order is the new precedence
    /// order. A name listed twice keeps its first entry (logged). Outgoing
    /// auth and timeouts come from the gateway's config, as for configured
    /// backends. Connected sessions get `list_changed` for the lists that
    /// change. Must run inside a Tokio runtime.
    ///
    /// In discovery mode the first call completes discovery: readiness
    /// follows once every backend in it has been tried (at once if empty).
    pub fn set_backends(&self, backends: Vec<BackendConfig>) -> RegistryChanges {
        let desired = backends
            .iter()
            .map(|b| BackendSpec::from_config(b, &self.config))
            .collect();
        let changes = self.reconcile(desired);
        // After the registry store: the aggregator must never see this flag
        // with the registry from before this call.
        if !self.discovered.swap(true, Ordering::SeqCst) {
            // Readiness must be evaluated with the flag set.
            self.notify_registry_changed();
        }
        changes
    }

    /// Applies the desired backend list to the registry (see [`registry::plan`]).
    fn reconcile(&self, desired: Vec<BackendSpec>) -> RegistryChanges {
        if self.shutdown.is_cancelled() {
            tracing::debug!("backend list ignored: the gateway is shutting down");
            return RegistryChanges::default();
        }
        let mut launcher = self.lock_launcher();
        let current = self.registry.load_full();
        let current_specs: Vec<&BackendSpec> = current.backends().iter().map(|b| &b.spec).collect();
        let plan = registry::plan(&current_specs, desired);
        for name in &plan.duplicates {
            tracing::warn!(backend = %name, "backend listed more than once; the first entry is used");
        }
        let changes = RegistryChanges {
            added: to_strings(plan.names(Step::Add)),
            replaced: to_strings(plan.names(Step::Replace)),
            kept: to_strings(plan.names(Step::Keep)),
            removed: plan.remove.clone(),
            duplicates: plan.duplicates.clone(),
            changed: !plan.is_noop(&current_specs),
        };
        if !changes.changed {
            return changes;
        }
        let mut next = Vec::with_capacity(plan.next.len());
        let mut started = Vec::new();
        let mut retired = Vec::new();
        for (spec, step) in plan.next {
            let existing = current.get(&spec.name).cloned();
            match (step, existing) {
                (Step::Keep, Some(backend)) => next.push(backend),
                (_, existing) => {
                    retired.extend(existing);
                    let backend = launcher.backend(spec, &self.config);
                    started.push(backend.clone());
                    next.push(backend);
                }
            }
        }
        retired.extend(
            plan.remove
                .iter()
                .filter_map(|name| current.get(name).cloned()),
        );
        // The new registry goes in before any new supervisor runs (so its
        // first report is not taken for a stale one) and before removed ones
        // stop (so nothing routes to a closing connection).
        self.registry.store(Arc::new(Registry::new(next)));
        for backend in &retired {
            launcher.stop(backend);
        }
        for backend in &started {
            launcher.spawn(backend, &self.shutdown, self.downstream());
        }
        drop(launcher);
        tracing::info!(
            added = ?changes.added,
            replaced = ?changes.replaced,
            removed = ?changes.removed,
            "backend registry changed"
        );
        self.notify_registry_changed();
        changes
    }

    fn notify_registry_changed(&self) {
        let _ = self
            .lock_launcher()
            .updates
            .send(GatewayEvent::RegistryChanged);
    }

    /// A fresh number for a `subscriptions/listen` stream's subscriptions.
    pub fn next_listener(&self) -> u64 {
        self.listeners
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }

    /// Catalogue changes from now on (for `subscriptions/listen`). A
    /// listener that falls more than a few changes behind is told it lagged.
    pub fn list_changes(&self) -> tokio::sync::broadcast::Receiver<ListChanges> {
        self.list_changes.subscribe()
    }

    /// The downstream side as backend connections see it.
    pub fn downstream(&self) -> Downstream {
        Downstream {
            routes: self.routes.clone(),
            sessions: self.sessions.clone(),
            notifications: self.notifications.clone(),
        }
    }

    /// A client session finished initialization.
    pub fn session_opened(
        &self,
        session_id: Option<&str>,
        peer: rmcp::service::Peer<rmcp::service::RoleServer>,
    ) {
        let (_, released) = self.sessions.add(session_id, peer);
        self.release_upstream(released);
    }

    /// A client session ended: what only it was subscribed to is
    /// unsubscribed upstream, and backends log no more verbosely than the
    /// remaining sessions want.
    pub fn session_closed(&self, session_id: &str) {
        let released = self.sessions.remove(session_id);
        self.release_upstream(released);
    }

    /// Undoes upstream what ended sessions held (subscriptions, a log level
    /// more verbose than the remaining sessions want).
    pub fn release_upstream(&self, released: Released) {
        self.unsubscribe_upstream(released.subscriptions);
        if let Some(level) = released.log_level {
            self.apply_log_level(level);
        }
    }

    /// Sends `resources/unsubscribe` for each (backend, URI), in the background.
    #[expect(
        deprecated,
        reason = "resources/unsubscribe is what pre-2026-07-28 backends speak"
    )]
    pub fn unsubscribe_upstream(&self, released: Vec<(Arc<str>, String)>) {
        for (backend, uri) in released {
            let Some(owner) = self.backend(&backend) else {
                continue;
            };
            let (Some(peer), timeout) = (owner.peer(), owner.call_timeout()) else {
                continue;
            };
            tokio::spawn(async move {
                let params = rmcp::model::UnsubscribeRequestParams::new(uri);
                if let Err(err) = bounded(timeout, peer.unsubscribe(params)).await {
                    tracing::debug!(backend = %backend, error = %err, "unsubscribe upstream failed");
                }
            });
        }
    }

    /// Tells every connected backend that offers logging to log at `level`
    /// (the most verbose level any session asked for), in the background.
    #[expect(
        deprecated,
        reason = "logging is deprecated by SEP-2577 but still served"
    )]
    pub fn apply_log_level(&self, level: rmcp::model::LoggingLevel) {
        for backend in self.backends().iter() {
            let Some(peer) = backend.peer() else {
                continue;
            };
            let offers = peer
                .peer_info()
                .is_some_and(|info| info.capabilities.logging.is_some());
            if !offers {
                continue;
            }
            let (name, timeout) = (backend.name_arc().clone(), backend.call_timeout());
            tokio::spawn(async move {
                let params = rmcp::model::SetLevelRequestParams::new(level);
                if let Err(err) = bounded(timeout, peer.set_level(params)).await {
                    tracing::debug!(backend = %name, error = %err, "logging/setLevel upstream failed");
                }
            });
        }
    }

    /// The Prometheus instruments, if metrics are on.
    pub fn metrics(&self) -> Option<&vmcp_status::Metrics> {
        self.metrics.as_ref()
    }

    /// The configuration in force.
    pub fn config(&self) -> &Arc<Config> {
        &self.config
    }

    /// The authorization policies in force, when `incomingAuth.authz` is `cedar`.
    pub fn authz(&self) -> Option<Arc<AccessPolicies>> {
        self.authz.as_ref().map(ArcSwap::load_full)
    }

    /// Puts `policies` in force (a reload; ignored without `cedar`).
    pub fn replace_policies(&self, policies: AccessPolicies) {
        if let Some(current) = &self.authz {
            current.store(Arc::new(policies));
        }
    }

    /// Tells every session (and `subscriptions/listen` stream) that these lists may differ.
    pub fn announce_list_changes(&self, changes: ListChanges) {
        self.sessions.broadcast(changes);
        let _ = self.list_changes.send(changes);
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

    /// A backend by name (one atomic load and a hash lookup).
    pub fn backend(&self, name: &str) -> Option<Arc<Backend>> {
        self.registry.load().get(name).cloned()
    }

    /// All backends now, in precedence order (config, then discovery order).
    pub fn backends(&self) -> Arc<[Arc<Backend>]> {
        self.registry.load().backends().clone()
    }

    /// The backend registry now.
    pub fn registry(&self) -> Arc<Registry> {
        self.registry.load_full()
    }

    /// Whether the first discovery has finished (the backend list is known
    /// and every backend in it was tried once).
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
    pub fn unavailable_backends(&self) -> Vec<String> {
        self.registry
            .load()
            .backends()
            .iter()
            .filter(|b| !b.state().is_connected())
            .map(|b| b.name().to_string())
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

    /// Ends every call still in flight (and any new one) with a "shutting
    /// down" error: for when the drain time is over.
    pub fn abandon_in_flight(&self) {
        self.abandon.cancel();
    }

    /// Resolves once [`Gateway::abandon_in_flight`] was called.
    pub async fn in_flight_abandoned(&self) {
        self.abandon.cancelled().await;
    }

    /// Stops the supervisors and closes every backend connection (child
    /// processes are terminated).
    pub async fn shutdown(&self) {
        self.shutdown.cancel();
        let mut tasks = std::mem::take(&mut *self.lock_tasks());
        tasks.append(&mut self.lock_launcher().take_tasks());
        for task in tasks {
            let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
        }
    }

    /// The health of every backend now.
    pub fn health_snapshot(&self) -> HealthSnapshot {
        HealthSnapshot {
            backends: self
                .registry
                .load()
                .backends()
                .iter()
                .map(|b| b.snapshot())
                .collect(),
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

    fn lock_launcher(&self) -> std::sync::MutexGuard<'_, Launcher> {
        // Nothing under this lock panics between related updates in a way
        // that leaves the map and the registry disagreeing about a backend
        // that is still routed.
        self.launcher
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

/// Applies capability updates and registry changes to the catalogue, one
/// rebuild per burst, and tells sessions what changed.
async fn aggregate(
    gateway: std::sync::Weak<Gateway>,
    mut updates: mpsc::UnboundedReceiver<GatewayEvent>,
    shutdown: CancellationToken,
) {
    // Keyed by backend instance: a backend removed and added again under the
    // same name starts from nothing.
    let mut snapshots: HashMap<BackendId, Arc<BackendCapabilities>> = HashMap::new();
    let mut reported: HashSet<BackendId> = HashSet::new();
    let mut grace = CatalogueGrace::default();
    loop {
        let wake = grace.next_expiry();
        let first = tokio::select! {
            _ = shutdown.cancelled() => return,
            event = updates.recv() => match event {
                Some(event) => Some(event),
                None => return,
            },
            // A grace period ran out: rebuild without news.
            _ = sleep_until_some(wake) => None,
        };
        let mut burst: Vec<GatewayEvent> = first.into_iter().collect();
        while let Ok(next) = updates.try_recv() {
            burst.push(next);
        }
        let Some(gateway) = gateway.upgrade() else {
            return;
        };
        // The flag before the registry: once discovery is complete, the
        // registry read next is at least the one that completed it.
        let discovered = gateway.discovered.load(Ordering::SeqCst);
        let registry = gateway.registry.load_full();
        for event in burst {
            let GatewayEvent::Capabilities(update) = event else {
                continue;
            };
            // Late news from a removed (or replaced) backend's supervisor
            // must not bring it back.
            if !registry.contains(&update.backend, update.id) {
                continue;
            }
            reported.insert(update.id);
            // A backend that went away keeps its last known capabilities, so
            // a call to one of them gets "backend unavailable", not "unknown tool".
            if let Some(capabilities) = update.capabilities {
                snapshots.insert(update.id, capabilities);
            }
        }
        // A removed backend leaves no trace: its names become unknown.
        let present: HashSet<BackendId> = registry.backends().iter().map(|b| b.id()).collect();
        snapshots.retain(|id, _| present.contains(id));
        reported.retain(|id| present.contains(id));
        let mut known = Vec::with_capacity(snapshots.len());
        let mut routable = Vec::with_capacity(snapshots.len());
        let period = gateway
            .config
            .operational
            .failure_handling
            .unhealthy_grace_period
            .get();
        let now = tokio::time::Instant::now();
        let mut offered = HashSet::new();
        for backend in registry.backends().iter() {
            let Some(capabilities) = snapshots.get(&backend.id()) else {
                continue;
            };
            let entry = (backend.name_arc().clone(), capabilities.clone());
            // Only routable backends (healthy enough, circuit not open) are
            // offered, and, within the grace period, those that just stopped being.
            if grace.offer(backend.id(), backend.is_routable(), now, period) {
                offered.insert(backend.id());
                routable.push(entry.clone());
            }
            known.push(entry);
        }
        grace.keep_only(&offered);
        let Some((known, next)) = build_off_runtime(gateway.config.clone(), known, routable).await
        else {
            continue;
        };
        gateway.known.store(Arc::new(known));
        let previous = gateway.catalogue.swap(Arc::new(next));
        let old_conflicts: HashSet<&String> = previous.conflicts.iter().collect();
        for conflict in &gateway.catalogue.load().conflicts {
            if !old_conflicts.contains(conflict) {
                tracing::warn!("{conflict}");
            }
        }
        let changes = gateway.catalogue.load().changes_since(&previous);
        gateway.sessions.broadcast(changes);
        if changes.any() {
            // No listener is not an error.
            let _ = gateway.list_changes.send(changes);
        }
        if !gateway.is_ready()
            && discovered
            && registry
                .backends()
                .iter()
                .all(|b| reported.contains(&b.id()))
        {
            tracing::info!(
                backends = registry.len(),
                tools = gateway.catalogue.load().tools.len(),
                unavailable = ?gateway.unavailable_backends(),
                "first backend discovery finished"
            );
            gateway.ready.send_replace(true);
        }
        gateway.publish_status();
    }
}

/// Which backends stay in the catalogue a while after they stop being
/// routable (`failureHandling.unhealthyGracePeriod`; zero: none do).
#[derive(Debug, Default)]
struct CatalogueGrace {
    /// Offered in the last catalogue.
    offered: HashSet<BackendId>,
    /// When each offered but unroutable backend is withdrawn.
    withdraw_at: HashMap<BackendId, tokio::time::Instant>,
}

impl CatalogueGrace {
    /// Whether to offer a backend now: routable, or offered last time and
    /// unroutable for less than `period`.
    fn offer(
        &mut self,
        id: BackendId,
        routable: bool,
        now: tokio::time::Instant,
        period: Duration,
    ) -> bool {
        if routable {
            self.withdraw_at.remove(&id);
            return true;
        }
        if period.is_zero() || !self.offered.contains(&id) {
            return false;
        }
        let until = *self.withdraw_at.entry(id).or_insert(now + period);
        now < until
    }

    /// Records what was offered; forgets the rest.
    fn keep_only(&mut self, offered: &HashSet<BackendId>) {
        self.withdraw_at.retain(|id, _| offered.contains(id));
        self.offered.clone_from(offered);
    }

    /// When the next grace period ends, if one is running.
    fn next_expiry(&self) -> Option<tokio::time::Instant> {
        self.withdraw_at.values().min().copied()
    }
}

/// Sleeps until `deadline`, or forever without one.
async fn sleep_until_some(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Builds the known and the routable catalogue on the blocking pool: a
/// large catalogue is real CPU work, and the runtime threads serve
/// `/health` and every request meanwhile. `None` if the build panicked
/// (logged; the previous catalogue stays).
async fn build_off_runtime(
    config: Arc<Config>,
    known: Vec<(Arc<str>, Arc<BackendCapabilities>)>,
    routable: Vec<(Arc<str>, Arc<BackendCapabilities>)>,
) -> Option<(Catalogue, Catalogue)> {
    let built = tokio::task::spawn_blocking(move || {
        (
            catalogue::build(&known, &config.aggregation),
            catalogue::build(&routable, &config.aggregation),
        )
    })
    .await;
    built
        .inspect_err(|err| tracing::error!("catalogue rebuild failed: {err}"))
        .ok()
}

fn to_strings(names: Vec<&str>) -> Vec<String> {
    names.into_iter().map(str::to_string).collect()
}

/// The Cedar policies of `incomingAuth.authz` (checked by validation; if
/// they still fail to load, every request is denied rather than allowed).
#[cfg(test)]
mod tests {
    use std::time::Duration;

    use rmcp::model::{ServerCapabilities, Tool};

    use super::*;
    use crate::backend::supervisor::CapabilityUpdate;

    fn discovery_gateway() -> Arc<Gateway> {
        let config = vmcp_config::load_str("name: unit\ngroupRef: g\n", "unit.yaml")
            .expect("a valid config");
        Gateway::start(GatewayOptions {
            discovery: true,
            ..GatewayOptions::new(config)
        })
    }

    /// A backend nothing listens for (connecting fails at once, so it never
    /// reports capabilities of its own).
    fn unreachable(name: &str) -> BackendConfig {
        BackendConfig {
            name: name.into(),
            transport: vmcp_config::TransportKind::StreamableHttp,
            url: Some("http://127.0.0.1:1/mcp".into()),
            command: None,
            args: Vec::new(),
            env: Default::default(),
        }
    }

    fn offering(name: &str, id: BackendId, tool: &str) -> GatewayEvent {
        let tool = Tool::new(
            tool.to_string(),
            "test tool",
            Arc::new(serde_json::Map::new()),
        );
        GatewayEvent::Capabilities(CapabilityUpdate {
            backend: name.into(),
            id,
            capabilities: Some(Arc::new(BackendCapabilities {
                declared: ServerCapabilities::default(),
                tools: vec![tool],
                ..Default::default()
            })),
        })
    }

    async fn until(what: &str, mut check: impl FnMut() -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !check() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn late_news_from_a_removed_instance_does_not_bring_it_back() {
        let gateway = discovery_gateway();
        let updates = gateway.lock_launcher().updates.clone();
        gateway.set_backends(vec![unreachable("a")]);
        let old = gateway.backend("a").expect("registered").id();
        updates
            .send(offering("a", old, "old"))
            .expect("aggregator runs");
        until("a's tool in the known catalogue", || {
            gateway.known_catalogue().route_tool("a_old").is_some()
        })
        .await;
        // Removed, then added again under the same name: a new instance.
        gateway.set_backends(vec![]);
        until("a's tool to leave the known catalogue", || {
            gateway.known_catalogue().route_tool("a_old").is_none()
        })
        .await;
        gateway.set_backends(vec![unreachable("a"), unreachable("b")]);
        let new_a = gateway.backend("a").expect("registered again").id();
        let b = gateway.backend("b").expect("registered").id();
        assert_ne!(old, new_a);
        // The old instance's supervisor reports late; then a marker from b.
        updates
            .send(offering("a", old, "stale"))
            .expect("aggregator runs");
        updates
            .send(offering("b", b, "marker"))
            .expect("aggregator runs");
        until("b's marker in the known catalogue", || {
            gateway.known_catalogue().route_tool("b_marker").is_some()
        })
        .await;
        let known = gateway.known_catalogue();
        assert!(
            known.route_tool("a_stale").is_none() && known.route_tool("a_old").is_none(),
            "the removed instance's capabilities came back: {:?}",
            known.tools
        );
        // The current instance's report counts.
        updates
            .send(offering("a", new_a, "fresh"))
            .expect("aggregator runs");
        until("a's fresh tool", || {
            gateway.known_catalogue().route_tool("a_fresh").is_some()
        })
        .await;
        gateway.shutdown().await;
    }

    #[tokio::test]
    async fn a_removed_backend_leaves_the_known_catalogue() {
        let gateway = discovery_gateway();
        gateway.set_backends(vec![unreachable("a"), unreachable("b")]);
        let a = gateway.backend("a").expect("registered").id();
        let updates = gateway.lock_launcher().updates.clone();
        updates
            .send(offering("a", a, "tool"))
            .expect("aggregator runs");
        until("a's tool in the known catalogue", || {
            gateway.known_catalogue().route_tool("a_tool").is_some()
        })
        .await;
        // Disconnected backends keep their names known (so calls say
        // "unavailable"); removed ones lose them.
        gateway.set_backends(vec![unreachable("b")]);
        until("a's tool to leave the known catalogue", || {
            gateway.known_catalogue().route_tool("a_tool").is_none()
        })
        .await;
        assert_eq!(gateway.backends().len(), 1);
        assert!(gateway.backend("a").is_none());
        gateway.shutdown().await;
    }

    #[tokio::test]
    async fn discovery_mode_is_pending_until_the_first_list_is_tried() {
        let gateway = discovery_gateway();
        assert!(!gateway.is_ready());
        assert_eq!(
            gateway.current_status().phase,
            vmcp_domain::status::Phase::Pending
        );
        gateway.set_backends(vec![unreachable("a")]);
        // Ready once "a" was tried, even though it failed.
        tokio::time::timeout(Duration::from_secs(10), gateway.wait_ready())
            .await
            .expect("ready after the first discovery was tried");
        let snapshot = gateway.health_snapshot();
        assert!(snapshot.discovery_complete);
        assert_eq!(snapshot.backends.len(), 1);
        assert_eq!(snapshot.backends[0].name, "a");
        gateway.shutdown().await;
    }
}
