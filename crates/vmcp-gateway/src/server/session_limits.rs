//! Bounds on client sessions: at most `server.maxSessions` open at once, at
//! most `server.maxSessionsPerClient` per client address, and idle ones
//! closed after `server.sessionIdleTimeout`.
//!
//! - [`SessionLimits`] is the bookkeeping (pure, no I/O): a slot is
//!   reserved before an `initialize` reaches rmcp, bound to the session id
//!   rmcp answers with, and released when rmcp closes that session.
//! - [`LimitedSessionManager`] wraps rmcp's [`LocalSessionManager`]: every
//!   way a session ends (idle expiry, `DELETE`, failed initialization,
//!   shutdown) goes through its `close_session`, which releases the slot and
//!   forgets the session's peer in [`crate::sessions::Sessions`].
//! - [`gate`] is the middleware that refuses an `initialize` beyond the
//!   limits with `503` and a JSON-RPC error, before any session exists.
//!
//! The client address comes from axum's `ConnectInfo<SocketAddr>` request
//! extension; without it (an in-process router) only the total applies.
//! With the gateway's metrics, refusals count into
//! `vmcp_client_refusals_total` and slots in use show as `vmcp_sessions_open`.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::{ConnectInfo, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::Stream;
use rmcp::model::{ClientJsonRpcMessage, ServerJsonRpcMessage};
use rmcp::transport::WorkerTransport;
use rmcp::transport::streamable_http_server::SessionManager;
use rmcp::transport::streamable_http_server::session::local::{
    LocalSessionManager, LocalSessionManagerError, LocalSessionWorker,
};
use rmcp::transport::streamable_http_server::session::{
    EventStore, RestoreOutcome, ServerSseMessage, SessionId,
};
use serde_json::json;
use vmcp_auth::Principal;
use vmcp_status::ClientRefusal;

use super::envelope::Screened;
use crate::gateway::Gateway;
use crate::spare_capacity::{is_sparse, release_spare_capacity};

/// The session header rmcp reads and writes (HTTP header names are case-insensitive).
pub const SESSION_ID_HEADER: &str = "mcp-session-id";

/// JSON-RPC code of "too many sessions" (implementation-defined server error range).
pub const SERVER_BUSY: i32 = -32000;

/// Seconds a refused client is asked to wait before trying again.
const RETRY_AFTER_SECONDS: &str = "5";

/// Why a new session is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Every slot is taken.
    #[error("too many sessions: {max} are open (server.maxSessions); try again later")]
    Full {
        /// `server.maxSessions`.
        max: usize,
    },
    /// This client address holds its whole share.
    #[error(
        "too many sessions from this client: {max} are open (server.maxSessionsPerClient); close one or try again later"
    )]
    ClientFull {
        /// `server.maxSessionsPerClient`.
        max: usize,
    },
}

#[derive(Default)]
struct Slots {
    /// Reserved and bound slots.
    total: usize,
    /// Slots per client address (reserved and bound).
    per_client: HashMap<IpAddr, usize>,
    /// The owner of each bound session.
    owners: HashMap<Arc<str>, Owner>,
}

/// Who opened a session.
struct Owner {
    /// The client address (`None`: not known).
    client: Option<IpAddr>,
    /// The authenticated caller (`None`: anonymous).
    caller: Option<Arc<str>>,
}

/// Session slots, in total and per client address.
pub struct SessionLimits {
    max_total: usize,
    max_per_client: usize,
    slots: Mutex<Slots>,
}

impl Refusal {
    /// The metric label of this refusal.
    pub fn metric(self) -> ClientRefusal {
        match self {
            Self::Full { .. } => ClientRefusal::SessionLimit,
            Self::ClientFull { .. } => ClientRefusal::ClientSessionLimit,
        }
    }
}

impl SessionLimits {
    /// Limits of `max_total` sessions, `max_per_client` per address.
    pub fn new(max_total: usize, max_per_client: usize) -> Arc<Self> {
        Arc::new(Self {
            max_total: max_total.max(1),
            max_per_client: max_per_client.max(1),
            slots: Mutex::new(Slots::default()),
        })
    }

    /// Takes a slot for a session that `client` is about to open.
    pub fn reserve(self: &Arc<Self>, client: Option<IpAddr>) -> Result<Reservation, Refusal> {
        let mut slots = self.lock();
        if slots.total >= self.max_total {
            return Err(Refusal::Full {
                max: self.max_total,
            });
        }
        if let Some(address) = client {
            let held = slots.per_client.entry(address).or_default();
            if *held >= self.max_per_client {
                return Err(Refusal::ClientFull {
                    max: self.max_per_client,
                });
            }
            *held += 1;
        }
        slots.total += 1;
        Ok(Reservation {
            limits: Arc::clone(self),
            client,
            caller: None,
            pending: true,
        })
    }

    /// Frees the slot of a session that ended. Idempotent, and a no-op for
    /// sessions never bound.
    pub fn release(&self, session_id: &str) {
        let mut slots = self.lock();
        if let Some(owner) = slots.owners.remove(session_id) {
            slots.free(owner.client);
            release_spare_capacity(&mut slots.owners);
            release_spare_capacity(&mut slots.per_client);
        }
    }

    /// The authenticated caller who opened a session: `None` for a session
    /// not (or no longer) bound, `Some(None)` for an anonymous one.
    pub fn caller_of(&self, session_id: &str) -> Option<Option<Arc<str>>> {
        self.lock()
            .owners
            .get(session_id)
            .map(|owner| owner.caller.clone())
    }

    /// Sessions holding a slot (reserved or open).
    pub fn in_use(&self) -> usize {
        self.lock().total
    }

    /// Sessions holding a slot for `client`.
    pub fn in_use_by(&self, client: IpAddr) -> usize {
        self.lock().per_client.get(&client).copied().unwrap_or(0)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Slots> {
        // Every update is a few integer/map operations; a poisoned lock is still consistent.
        self.slots
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Slots {
    fn free(&mut self, client: Option<IpAddr>) {
        self.total = self.total.saturating_sub(1);
        if let Some(address) = client
            && let Some(held) = self.per_client.get_mut(&address)
        {
            *held -= 1;
            if *held == 0 {
                self.per_client.remove(&address);
            }
        }
    }
}

/// A slot taken for a session being opened; freed on drop unless bound.
pub struct Reservation {
    limits: Arc<SessionLimits>,
    client: Option<IpAddr>,
    caller: Option<Arc<str>>,
    pending: bool,
}

impl Reservation {
    /// Records the authenticated caller opening the session: later requests
    /// on it must come from the same caller.
    pub fn for_caller(mut self, caller: Option<Arc<str>>) -> Self {
        self.caller = caller;
        self
    }

    /// Hands the slot to the session rmcp opened; [`SessionLimits::release`]
    /// frees it. A session that ended before it was bound was released
    /// while unknown: the caller checks that it is still open *after*
    /// binding and releases it otherwise (see [`gate`]).
    pub fn bind(mut self, session_id: &str) {
        self.pending = false;
        let owner = Owner {
            client: self.client,
            caller: self.caller.take(),
        };
        self.limits
            .lock()
            .owners
            .insert(Arc::from(session_id), owner);
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.pending {
            self.limits.lock().free(self.client);
        }
    }
}

/// rmcp's in-memory session manager, with slots released and peers
/// forgotten when a session ends.
pub struct LimitedSessionManager {
    inner: LocalSessionManager,
    limits: Arc<SessionLimits>,
    gateway: Arc<Gateway>,
}

impl LimitedSessionManager {
    /// A manager whose sessions close after `server.sessionIdleTimeout`
    /// without a request.
    pub fn new(gateway: Arc<Gateway>, limits: Arc<SessionLimits>) -> Self {
        let mut inner = LocalSessionManager::default();
        inner.session_config.keep_alive = Some(gateway.config().server.session_idle_timeout.get());
        Self {
            inner,
            limits,
            gateway,
        }
    }

    /// Whether rmcp still holds the session.
    pub async fn is_open(&self, session_id: &str) -> bool {
        self.inner.sessions.read().await.contains_key(session_id)
    }

    /// Sessions rmcp holds now.
    pub async fn open_sessions(&self) -> usize {
        self.inner.sessions.read().await.len()
    }

    /// Shrinks rmcp's session table once a burst of sessions has ended
    /// (checked under the read lock, so closes rarely take the write lock).
    async fn release_spare_capacity(&self) {
        let sparse = {
            let sessions = self.inner.sessions.read().await;
            is_sparse(sessions.len(), sessions.capacity())
        };
        if sparse {
            release_spare_capacity(&mut *self.inner.sessions.write().await);
        }
    }

    /// Publishes the slots in use as `vmcp_sessions_open`.
    fn publish_in_use(&self) {
        if let Some(metrics) = self.gateway.metrics() {
            metrics.set_open_sessions(self.limits.in_use());
        }
    }

    fn record_refusal(&self, refusal: Refusal) {
        if let Some(metrics) = self.gateway.metrics() {
            metrics.record_refusal(refusal.metric());
        }
    }
}

impl SessionManager for LimitedSessionManager {
    type Error = LocalSessionManagerError;
    type Transport = WorkerTransport<LocalSessionWorker>;

    async fn create_session(&self) -> Result<(SessionId, Self::Transport), Self::Error> {
        self.inner.create_session().await
    }

    async fn initialize_session(
        &self,
        id: &SessionId,
        message: ClientJsonRpcMessage,
    ) -> Result<ServerJsonRpcMessage, Self::Error> {
        self.inner.initialize_session(id, message).await
    }

    async fn has_session(&self, id: &SessionId) -> Result<bool, Self::Error> {
        self.inner.has_session(id).await
    }

    async fn close_session(&self, id: &SessionId) -> Result<(), Self::Error> {
        let closed = self.inner.close_session(id).await;
        self.release_spare_capacity().await;
        self.limits.release(id);
        self.gateway.session_closed(id);
        self.publish_in_use();
        closed
    }

    async fn create_stream(
        &self,
        id: &SessionId,
        message: ClientJsonRpcMessage,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error> {
        self.inner.create_stream(id, message).await
    }

    async fn accept_message(
        &self,
        id: &SessionId,
        message: ClientJsonRpcMessage,
    ) -> Result<(), Self::Error> {
        self.inner.accept_message(id, message).await
    }

    async fn create_standalone_stream(
        &self,
        id: &SessionId,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error> {
        self.inner.create_standalone_stream(id).await
    }

    async fn resume(
        &self,
        id: &SessionId,
        last_event_id: String,
    ) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error> {
        self.inner.resume(id, last_event_id).await
    }

    async fn restore_session(
        &self,
        id: SessionId,
    ) -> Result<RestoreOutcome<Self::Transport>, Self::Error> {
        self.inner.restore_session(id).await
    }

    fn event_store(&self) -> Option<Arc<dyn EventStore>> {
        self.inner.event_store()
    }
}

/// Middleware: an `initialize` without a session (the only request that
/// opens one) needs a slot; without one it gets `503` and a JSON-RPC error.
/// Runs after the body screening, which marks such requests.
pub async fn gate(
    limits: Arc<SessionLimits>,
    manager: Arc<LimitedSessionManager>,
    request: Request,
    next: Next,
) -> Response {
    let opens_session = !request.headers().contains_key(SESSION_ID_HEADER)
        && request
            .extensions()
            .get::<Screened>()
            .is_some_and(|screened| screened.initialize.is_some());
    if !opens_session {
        return next.run(request).await;
    }
    let client = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(address)| address.ip());
    let caller = request
        .extensions()
        .get::<Arc<Principal>>()
        .map(|principal| principal.subject.clone());
    let reservation = match limits.reserve(client) {
        Ok(reservation) => reservation.for_caller(caller),
        Err(refusal) => {
            let id = request
                .extensions()
                .get::<Screened>()
                .and_then(|screened| screened.initialize.clone())
                .map_or(serde_json::Value::Null, |id| id.into_json_value());
            tracing::warn!(client = ?client, "{refusal}");
            manager.record_refusal(refusal);
            return refused(&refusal, id);
        }
    };
    let response = next.run(request).await;
    let session_id = response
        .headers()
        .get(SESSION_ID_HEADER)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    if let Some(session_id) = session_id {
        reservation.bind(&session_id);
        // Closed meanwhile (a failed handshake): its release found no owner.
        if !manager.is_open(&session_id).await {
            limits.release(&session_id);
        }
    } else {
        drop(reservation);
    }
    manager.publish_in_use();
    response
}

fn refused(refusal: &Refusal, id: serde_json::Value) -> Response {
    let body = json!({
        "jsonrpc": "2.0",
        "id": id,
        "error": {"code": SERVER_BUSY, "message": refusal.to_string()},
    });
    let mut response = (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
    response.headers_mut().insert(
        header::RETRY_AFTER,
        HeaderValue::from_static(RETRY_AFTER_SECONDS),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> Option<IpAddr> {
        Some(IpAddr::from([127, 0, 0, last]))
    }

    #[test]
    fn caps_the_total_and_each_clients_share() {
        let limits = SessionLimits::new(3, 2);
        let a1 = limits.reserve(ip(1)).expect("first");
        let a2 = limits.reserve(ip(1)).expect("second");
        assert_eq!(
            limits.reserve(ip(1)).err(),
            Some(Refusal::ClientFull { max: 2 })
        );
        let b1 = limits.reserve(ip(2)).expect("another client");
        assert_eq!(limits.reserve(ip(3)).err(), Some(Refusal::Full { max: 3 }));
        assert_eq!(limits.in_use(), 3);
        drop((a1, a2, b1));
        assert_eq!(limits.in_use(), 0, "unbound reservations are given back");
        assert_eq!(limits.in_use_by(IpAddr::from([127, 0, 0, 1])), 0);
        assert!(
            limits.lock().per_client.is_empty(),
            "addresses without sessions are forgotten (the table stays bounded by open sessions)"
        );
    }

    #[test]
    fn a_bound_slot_lasts_until_its_session_is_released() {
        let limits = SessionLimits::new(1, 1);
        let slot = limits.reserve(ip(1)).expect("free");
        slot.bind("s1");
        assert!(limits.reserve(ip(2)).is_err(), "still held");
        limits.release("s1");
        limits.release("s1");
        assert_eq!(limits.in_use(), 0, "released once, however often asked");
        assert!(limits.reserve(ip(2)).is_ok());
    }

    #[test]
    fn a_session_remembers_its_caller_until_released() {
        let limits = SessionLimits::new(2, 2);
        limits
            .reserve(ip(1))
            .expect("free")
            .for_caller(Some(Arc::from("alice")))
            .bind("s1");
        limits.reserve(ip(1)).expect("free").bind("s2");
        assert_eq!(limits.caller_of("s1"), Some(Some(Arc::from("alice"))));
        assert_eq!(limits.caller_of("s2"), Some(None));
        limits.release("s1");
        assert_eq!(limits.caller_of("s1"), None);
    }

    #[test]
    fn releasing_before_and_after_binding_frees_the_slot_once() {
        let limits = SessionLimits::new(2, 2);
        let slot = limits.reserve(None).expect("free");
        // rmcp closed the session (and released an unknown id) before the
        // initialize response reached the gate, which then binds and
        // releases it because it is no longer open.
        limits.release("s1");
        assert_eq!(limits.in_use(), 1, "an unknown id frees nothing");
        slot.bind("s1");
        limits.release("s1");
        assert_eq!(limits.in_use(), 0);
    }
}
