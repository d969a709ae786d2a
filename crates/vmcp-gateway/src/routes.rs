//! Routes from a backend back to the client whose request it is serving.
//!
//! The gateway shares one connection per backend among all client
//! sessions. While a forwarded request runs, a [`RouteGuard`] records who
//! asked: the downstream peer, its request id and, when the client asked
//! for progress, the token it chose. What the backend sends while serving
//! that request goes to that client only:
//!
//! - progress, matched by the upstream progress token (rmcp gives every
//!   upstream request its own, so tokens of different clients never collide);
//! - server-to-client requests (sampling, elicitation, roots), matched by the
//!   upstream request whose response stream they arrived on (SEP-2260: rmcp
//!   marks each inbound request with it). A request without that tie — sent
//!   on a transport without per-request streams (stdio, legacy SSE), or on
//!   the standalone stream, as SDKs do for `roots/list` — is routed only
//!   when exactly one client call is in flight on the backend (the same
//!   coarse rule rmcp applies), and refused otherwise.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rmcp::model::{ClientCapabilities, ProgressNotificationParam, ProgressToken, RequestId};
use rmcp::service::{InboundStreamOrigin, Peer, RoleServer};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::input_rounds::RoundLink;

/// The client call a backend is serving.
#[derive(Clone)]
pub struct Caller {
    /// The downstream session's peer.
    pub peer: Peer<RoleServer>,
    /// The downstream request's id (server-to-client requests ride its stream).
    pub request_id: RequestId,
    /// The downstream session's `Mcp-Session-Id`, when it has one.
    pub session: Option<Arc<str>>,
    /// What a 2026-07-28 client declared in this request's own `_meta`; a
    /// session's capabilities are read from `peer` when needed.
    pub request_capabilities: Option<ClientCapabilities>,
    /// For a 2026-07-28 client: where its questions go, to be answered in
    /// rounds, and the exchange (retry) the call is part of now, which gets
    /// its progress ([`crate::input_rounds`]). `None`: both use `peer`.
    pub rounds: Option<RoundLink>,
}

/// Where a backend's request to the client arrived, as far as the transport knows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// On the response stream of this upstream request.
    Request(RequestId),
    /// Outside any request (a standalone stream).
    Unassociated,
    /// The transport cannot tell (stdio, legacy SSE).
    Unknown,
}

impl Caller {
    /// What the client declared it can do.
    pub fn capabilities(&self) -> ClientCapabilities {
        self.request_capabilities
            .clone()
            .or_else(|| self.peer.peer_info().map(|info| info.capabilities.clone()))
            .unwrap_or_default()
    }
}

impl Origin {
    /// Reads rmcp's mark on an inbound request.
    pub fn of(mark: Option<&InboundStreamOrigin>) -> Self {
        match mark {
            Some(InboundStreamOrigin::OutboundRequest(id)) => Self::Request(id.clone()),
            Some(InboundStreamOrigin::Unassociated) => Self::Unassociated,
            None => Self::Unknown,
        }
    }
}

/// Why a backend's request cannot be tied to a client call.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NoCaller {
    /// The call it belongs to has already ended (or never went through the gateway).
    #[error("the client request it belongs to has ended")]
    Ended,
    /// Not tied to a call, and several are in flight.
    #[error(
        "it is not tied to a client request and {0} client requests are in flight on this backend"
    )]
    Ambiguous(usize),
    /// Not tied to a call, and none is in flight.
    #[error("no client request is in flight on this backend")]
    NoneInFlight,
}

struct Route {
    caller: Caller,
    /// (upstream token, the client's token), when the client asked for
    /// progress (a call in rounds finds its client's token in its exchange).
    progress: Option<(ProgressToken, Option<ProgressToken>)>,
}

#[derive(Default)]
struct Table {
    /// Backend → upstream request id → the call it serves.
    calls: HashMap<Arc<str>, HashMap<RequestId, Route>>,
    /// (backend, upstream progress token) → upstream request id.
    progress: HashMap<(Arc<str>, ProgressToken), RequestId>,
}

/// The table of forwarded requests in flight.
#[derive(Default)]
pub struct CallRoutes {
    table: Mutex<Table>,
    /// Woken on every registration (a backend may be quicker than the bookkeeping).
    registered: Notify,
}

impl CallRoutes {
    /// Routes what `backend` sends while serving upstream request `upstream`
    /// to `caller`, until the returned guard is dropped. `progress` is
    /// (upstream token, the client's token) when the client asked for progress.
    pub fn register(
        self: &Arc<Self>,
        backend: Arc<str>,
        upstream: RequestId,
        caller: Caller,
        progress: Option<(ProgressToken, Option<ProgressToken>)>,
    ) -> RouteGuard {
        {
            let mut table = self.lock();
            if let Some((token, _)) = &progress {
                table
                    .progress
                    .insert((backend.clone(), token.clone()), upstream.clone());
            }
            table
                .calls
                .entry(backend.clone())
                .or_default()
                .insert(upstream.clone(), Route { caller, progress });
        }
        self.registered.notify_waiters();
        RouteGuard {
            routes: Arc::clone(self),
            key: Some((backend, upstream)),
        }
    }

    /// The call a request from `backend` that arrived at `origin` belongs to.
    pub fn caller(&self, backend: &str, origin: &Origin) -> Result<Caller, NoCaller> {
        let table = self.lock();
        let calls = table.calls.get(backend);
        match origin {
            Origin::Request(id) => calls
                .and_then(|calls| calls.get(id))
                .map(|route| route.caller.clone())
                .ok_or(NoCaller::Ended),
            Origin::Unassociated | Origin::Unknown => {
                match calls.map(|calls| calls.len()).unwrap_or(0) {
                    0 => Err(NoCaller::NoneInFlight),
                    1 => Ok(calls
                        .and_then(|calls| calls.values().next())
                        .map(|route| route.caller.clone())
                        .ok_or(NoCaller::NoneInFlight)?),
                    n => Err(NoCaller::Ambiguous(n)),
                }
            }
        }
    }

    /// Like [`Self::caller`], but a request tied to an upstream request not
    /// registered yet waits for it until `deadline`: the backend can answer
    /// on the request's stream before the forwarding side has recorded it.
    pub async fn wait_caller(
        &self,
        backend: &str,
        origin: &Origin,
        deadline: Instant,
    ) -> Result<Caller, NoCaller> {
        loop {
            let registered = self.registered.notified();
            tokio::pin!(registered);
            registered.as_mut().enable();
            match self.caller(backend, origin) {
                Err(NoCaller::Ended) => {}
                found => return found,
            }
            if tokio::time::timeout_at(deadline, registered).await.is_err() {
                return Err(NoCaller::Ended);
            }
        }
    }

    /// Delivers one progress notification from `backend`, if someone waits for it.
    pub async fn deliver_progress(
        &self,
        backend: &Arc<str>,
        mut params: ProgressNotificationParam,
    ) {
        let target = {
            let table = self.lock();
            table
                .progress
                .get(&(backend.clone(), params.progress_token.clone()))
                .and_then(|upstream| table.calls.get(backend)?.get(upstream))
                .and_then(|route| match &route.caller.rounds {
                    Some(link) => {
                        let exchange = link.exchange.load();
                        Some((exchange.peer.clone()?, exchange.progress_token.clone()?))
                    }
                    None => {
                        let (_, downstream) = route.progress.as_ref()?;
                        Some((route.caller.peer.clone(), downstream.clone()?))
                    }
                })
        };
        let Some((peer, downstream)) = target else {
            tracing::debug!(backend = %backend, "progress for an unknown or finished request dropped");
            return;
        };
        params.progress_token = downstream;
        if let Err(err) = peer.notify_progress(params).await {
            tracing::debug!(backend = %backend, error = %err, "client went away before progress could be delivered");
        }
    }

    /// Number of requests currently routed (for tests and metrics).
    pub fn len(&self) -> usize {
        self.lock().calls.values().map(HashMap::len).sum()
    }

    /// Whether no request is routed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn remove(&self, backend: &Arc<str>, upstream: &RequestId) {
        let mut table = self.lock();
        let Some(calls) = table.calls.get_mut(backend) else {
            return;
        };
        let route = calls.remove(upstream);
        if calls.is_empty() {
            table.calls.remove(backend);
        }
        if let Some((token, _)) = route.and_then(|route| route.progress) {
            table.progress.remove(&(backend.clone(), token));
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        // Each operation leaves the maps consistent before it can panic, so a
        // poisoned lock is still usable.
        self.table
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Removes a route when the forwarded request ends.
pub struct RouteGuard {
    routes: Arc<CallRoutes>,
    key: Option<(Arc<str>, RequestId)>,
}

impl Drop for RouteGuard {
    fn drop(&mut self) {
        if let Some((backend, upstream)) = self.key.take() {
            self.routes.remove(&backend, &upstream);
        }
    }
}
