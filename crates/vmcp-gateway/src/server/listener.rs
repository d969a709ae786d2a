//! The accept loop: admits client connections up to a cap, serves each with
//! HTTP/1.1 under the header-read, body-read and idle deadlines of
//! [`ConnectionLimits`], and shuts down gracefully.
//!
//! Admission happens before a byte is read:
//!
//! 1. below `max_connections`: served fully;
//! 2. else, while the **probe reserve** has room: served for one request
//!    with a short header deadline ([`PROBE_HEADER_READ_TIMEOUT`]); only
//!    `/health`, `/readyz` and `/metrics` are answered, anything else gets
//!    `503` and `Retry-After`. So liveness and readiness probes (and a
//!    scrape) get through while the cap is reached by other clients;
//! 3. else: closed at once.
//!
//! Every request carries the peer address as axum's
//! `ConnectInfo<SocketAddr>`. With [`Metrics`], open connections, refusals
//! and deadline closes are counted (`vmcp_connections_open`,
//! `vmcp_client_refusals_total`, `vmcp_connection_timeouts_total`).

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{Request, Response, StatusCode, header};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;
use vmcp_status::{ClientRefusal, ConnectionDeadline, Metrics};

use super::activity::{Activity, Expiry, WatchedIo};
use super::http::json_rpc_error;
use super::limits::{ConnectionLimits, PROBE_HEADER_READ_TIMEOUT};
use super::request_body::{DeadlineBody, GuardedBody, closing, reject_declared_length};

/// Paths a connection of the probe reserve answers.
pub const PROBE_PATHS: &[&str] = &["/health", "/readyz", "/metrics"];

/// JSON-RPC "server error" code used for "too many connections".
const SERVER_BUSY: i32 = -32000;

/// Time between two warnings about refused connections.
const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Pause after an accept error that is not about one connection (e.g. out
/// of descriptors), so the loop does not spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// Serves `app` on `listener` until `shutdown` resolves, then stops
/// accepting, lets every connection finish its current request, and returns
/// once all are closed. Counts into `metrics` when given.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    metrics: Option<Metrics>,
    shutdown: impl Future<Output = ()>,
) {
    let admission = Admission::new(&limits, metrics.clone());
    let limits = Arc::new(limits);
    let closing_all = CancellationToken::new();
    let tracker = TaskTracker::new();
    let mut refusals = Refusals::default();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    if !is_connection_error(&err) {
                        tracing::warn!("cannot accept a connection: {err}");
                        tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    }
                    continue;
                }
            },
        };
        let Some(slot) = admission.admit() else {
            drop(stream);
            refusals.note(admission.max_connections);
            if let Some(metrics) = &metrics {
                metrics.record_refusal(ClientRefusal::ConnectionLimit);
            }
            continue;
        };
        if let Err(err) = stream.set_nodelay(true) {
            // Responses go out as several small frames; without TCP_NODELAY
            // Nagle plus delayed ACKs add ~40 ms to each.
            tracing::debug!("cannot set TCP_NODELAY: {err}");
        }
        tracker.spawn(serve_connection(
            stream,
            peer,
            app.clone(),
            limits.clone(),
            slot,
            closing_all.clone(),
        ));
    }
    drop(listener);
    closing_all.cancel();
    tracker.close();
    tracker.wait().await;
}

/// A connection's place under the cap; given back (and counted out of
/// `vmcp_connections_open`) when dropped.
struct Slot {
    _permit: OwnedSemaphorePermit,
    /// A probe-reserve slot: one request, probe paths only.
    probe_only: bool,
    metrics: Option<Metrics>,
}

impl Slot {
    fn new(permit: OwnedSemaphorePermit, probe_only: bool, metrics: Option<Metrics>) -> Self {
        if let Some(metrics) = &metrics {
            metrics.connection_opened();
        }
        Self {
            _permit: permit,
            probe_only,
            metrics,
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(metrics) = &self.metrics {
            metrics.connection_closed();
        }
    }
}

/// The connection cap and the probe reserve.
struct Admission {
    full: Arc<Semaphore>,
    probe: Arc<Semaphore>,
    max_connections: usize,
    metrics: Option<Metrics>,
}

impl Admission {
    fn new(limits: &ConnectionLimits, metrics: Option<Metrics>) -> Self {
        let max = limits.max_connections.min(Semaphore::MAX_PERMITS);
        Self {
            full: Arc::new(Semaphore::new(max)),
            probe: Arc::new(Semaphore::new(
                limits.probe_reserve.min(Semaphore::MAX_PERMITS),
            )),
            max_connections: max,
            metrics,
        }
    }

    fn admit(&self) -> Option<Slot> {
        if let Ok(permit) = self.full.clone().try_acquire_owned() {
            return Some(Slot::new(permit, false, self.metrics.clone()));
        }
        let permit = self.probe.clone().try_acquire_owned().ok()?;
        Some(Slot::new(permit, true, self.metrics.clone()))
    }
}

/// Warns about refused connections, at most once per [`REFUSAL_LOG_INTERVAL`].
#[derive(Default)]
struct Refusals {
    since_last_log: u64,
    last_log: Option<Instant>,
}

impl Refusals {
    fn note(&mut self, max_connections: usize) {
        self.since_last_log += 1;
        let due = self
            .last_log
            .is_none_or(|at| at.elapsed() >= REFUSAL_LOG_INTERVAL);
        if due {
            tracing::warn!(
                max_connections,
                refused = self.since_last_log,
                "connection limit reached: refusing new connections (server.connections.max)"
            );
            self.since_last_log = 0;
            self.last_log = Some(Instant::now());
        }
    }
}

/// Serves one connection until it ends, its deadline passes, or shutdown.
async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    app: Router,
    limits: Arc<ConnectionLimits>,
    slot: Slot,
    closing_all: CancellationToken,
) {
    let probe_only = slot.probe_only;
    let metrics = slot.metrics.clone();
    let header_read_timeout = if probe_only {
        limits.header_read_timeout.min(PROBE_HEADER_READ_TIMEOUT)
    } else {
        limits.header_read_timeout
    };
    let activity = Activity::new(header_read_timeout, limits.idle_timeout);
    let io = TokioIo::new(WatchedIo::new(stream, activity.clone()));
    let service = {
        let activity = activity.clone();
        hyper::service::service_fn(move |request: Request<hyper::body::Incoming>| {
            let busy = activity.begin_request();
            let app = app.clone();
            let limits = limits.clone();
            let metrics = metrics.clone();
            async move {
                let response = handle(request, peer, app, &limits, probe_only, metrics).await;
                Ok::<_, Infallible>(response.map(|body| Body::new(GuardedBody::new(body, busy))))
            }
        })
    };
    let mut http = hyper::server::conn::http1::Builder::new();
    // Deadlines are ours (see `Activity`): hyper's header timer would also
    // cut idle keep-alive connections at the header deadline.
    http.header_read_timeout(None).keep_alive(!probe_only);
    let connection = http.serve_connection(io, service);
    let mut connection = std::pin::pin!(connection);
    let mut shutting_down = false;
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(err) = result {
                    tracing::debug!(%peer, "connection ended: {err}");
                }
                break;
            }
            expiry = activity.expired() => {
                let deadline = match expiry {
                    Expiry::HeaderRead => {
                        tracing::debug!(%peer, "closing connection: request headers not received in time");
                        ConnectionDeadline::HeaderRead
                    }
                    Expiry::Idle => {
                        tracing::debug!(%peer, "closing idle connection");
                        ConnectionDeadline::Idle
                    }
                };
                if let Some(metrics) = &slot.metrics {
                    metrics.record_connection_timeout(deadline);
                }
                break;
            }
            () = closing_all.cancelled(), if !shutting_down => {
                connection.as_mut().graceful_shutdown();
                shutting_down = true;
            }
        }
    }
    drop(slot);
}

/// One request: the checks that need no body, then the app.
async fn handle(
    request: Request<hyper::body::Incoming>,
    peer: SocketAddr,
    app: Router,
    limits: &ConnectionLimits,
    probe_only: bool,
    metrics: Option<Metrics>,
) -> Response<Body> {
    if let Some(refused) = reject_declared_length(request.headers(), limits.max_request_bytes) {
        return refused;
    }
    if probe_only && !PROBE_PATHS.contains(&request.uri().path()) {
        if let Some(metrics) = &metrics {
            metrics.record_refusal(ClientRefusal::ProbeReserve);
        }
        return busy();
    }
    let timeout = limits.body_read_timeout;
    let mut request = request.map(|body| Body::new(DeadlineBody::new(body, timeout)));
    request.extensions_mut().insert(ConnectInfo(peer));
    match app.oneshot(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    }
}

/// The answer on a probe-reserve connection for anything but a probe.
fn busy() -> Response<Body> {
    let mut response = closing(json_rpc_error(
        StatusCode::SERVICE_UNAVAILABLE,
        SERVER_BUSY,
        "too many connections; retry later",
    ));
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
    response
}

/// Errors that concern only the connection being accepted (the client gave
/// up before we took it): the next accept may succeed at once.
fn is_connection_error(err: &std::io::Error) -> bool {
    matches!(
        err.kind(),
        std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::ConnectionReset
    )
}
