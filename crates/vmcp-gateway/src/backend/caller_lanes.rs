//! Each caller's own session with a token-exchange backend.
//!
//! A backend that checks tokens binds each MCP session to the subject whose
//! token opened it (the official SDKs answer "session not found" to anyone
//! else). The gateway's shared session, opened with its own token, serves
//! lists and health checks; a caller's calls go on a session opened with
//! the caller's exchanged token — a *lane* — made on the caller's first call
//! and reused until it has been idle for [`LANE_IDLE`].
//!
//! Bounded: at most [`MAX_LANES`] per backend. Lanes idle for [`LANE_IDLE`]
//! are closed on the backend's health checks; when all are taken, idle
//! lanes close first, then the least recently used one. A lane whose connection ended
//! is replaced on its caller's next call. Lane request ids are the lane's
//! own, so what the backend sends for a call (progress, sampling,
//! elicitation) is routed under the lane's own key.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use rmcp::service::{Peer, RoleClient};
use tokio::sync::{OnceCell, mpsc};

use super::connect::{self, ConnectError, UpstreamService};
use super::credentials::TokenSource;
use super::spec::BackendSpec;
use super::upstream_handler::UpstreamHandler;
use crate::relay::Downstream;

/// Most callers with their own session, per backend.
pub const MAX_LANES: usize = 256;
/// A lane unused this long is closed.
pub const LANE_IDLE: Duration = Duration::from_secs(300);

/// One caller's session.
struct Lane {
    service: UpstreamService,
    peer: Arc<Peer<RoleClient>>,
    routes_key: Arc<str>,
    last_used: Mutex<Instant>,
}

type Slot = Arc<OnceCell<Arc<Lane>>>;

/// The lanes of one backend.
pub struct CallerLanes {
    spec: BackendSpec,
    http: reqwest::Client,
    downstream: Downstream,
    lanes: Mutex<HashMap<Arc<str>, Slot>>,
    next_id: AtomicU64,
}

/// The connection a caller's call goes on. It keeps the session open while
/// held, even if the lane is evicted meanwhile (a call longer than
/// [`LANE_IDLE`] is not cut).
pub struct LanePeer {
    /// The caller's session.
    pub peer: Arc<Peer<RoleClient>>,
    /// The key its calls are routed under.
    pub routes_key: Arc<str>,
    _lane: Arc<Lane>,
}

impl CallerLanes {
    /// Lanes to the backend `spec` describes.
    pub fn new(spec: BackendSpec, http: reqwest::Client, downstream: Downstream) -> Self {
        Self {
            spec,
            http,
            downstream,
            lanes: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
        }
    }

    /// The session of `subject`, opened with `token` if it has none yet.
    pub async fn for_caller(
        &self,
        subject: &Arc<str>,
        token: &Arc<str>,
    ) -> Result<LanePeer, ConnectError> {
        // A lane whose connection ended is replaced once.
        for _ in 0..2 {
            let slot = self.slot(subject).ok_or(ConnectError::TooManyCallers)?;
            let lane = slot
                .get_or_try_init(|| self.open(Arc::clone(token)))
                .await
                .inspect_err(|_| self.forget(subject, &slot))?;
            if lane.service.is_transport_closed() {
                self.forget(subject, &slot);
                continue;
            }
            *lane
                .last_used
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Instant::now();
            return Ok(LanePeer {
                peer: Arc::clone(&lane.peer),
                routes_key: Arc::clone(&lane.routes_key),
                _lane: Arc::clone(lane),
            });
        }
        Err(ConnectError::Closed)
    }

    /// Closes the lanes unused for [`LANE_IDLE`].
    pub fn close_idle(&self) {
        close_idle(&mut self.lock(), Instant::now());
    }

    /// Closes every lane (the backend is going away).
    pub fn close_all(&self) {
        self.lock().clear();
    }

    /// `subject`'s slot; `None` when every slot is taken by a lane still
    /// being opened.
    fn slot(&self, subject: &Arc<str>) -> Option<Slot> {
        let mut lanes = self.lock();
        if let Some(slot) = lanes.get(subject) {
            return Some(Arc::clone(slot));
        }
        if lanes.len() >= MAX_LANES {
            make_room(&mut lanes);
            if lanes.len() >= MAX_LANES {
                return None;
            }
        }
        let slot = Slot::default();
        lanes.insert(Arc::clone(subject), Arc::clone(&slot));
        Some(slot)
    }

    /// Drops `subject`'s lane if it is still `slot` (not a newer one).
    fn forget(&self, subject: &Arc<str>, slot: &Slot) {
        let mut lanes = self.lock();
        if lanes
            .get(subject)
            .is_some_and(|held| Arc::ptr_eq(held, slot))
        {
            lanes.remove(subject);
        }
    }

    async fn open(&self, token: Arc<str>) -> Result<Arc<Lane>, ConnectError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let routes_key: Arc<str> = format!("{}\u{1f}lane-{id}", self.spec.name).into();
        // A lane's list changes also reach the shared session, which lists.
        let (changes, _) = mpsc::channel(1);
        let handler = UpstreamHandler::new(
            self.spec.name.as_str().into(),
            changes,
            self.downstream.clone(),
            self.spec.call_timeout,
        )
        .with_routes_key(Arc::clone(&routes_key));
        let service =
            connect::connect_with(&self.spec, TokenSource::caller(token), &self.http, handler)
                .await?;
        Ok(Arc::new(Lane {
            peer: Arc::new(service.peer().clone()),
            service,
            routes_key,
            last_used: Mutex::new(Instant::now()),
        }))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Arc<str>, Slot>> {
        self.lanes.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// When `slot`'s lane was last used (`None` while it is being opened).
fn last_used(slot: &Slot) -> Option<Instant> {
    slot.get().map(|lane| {
        *lane
            .last_used
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    })
}

/// Drops the lanes unused for [`LANE_IDLE`] at `now` (a lane still being
/// opened stays).
fn close_idle(lanes: &mut HashMap<Arc<str>, Slot>, now: Instant) {
    lanes.retain(|_, slot| {
        last_used(slot).is_none_or(|used| now.saturating_duration_since(used) < LANE_IDLE)
    });
}

/// Closes idle lanes, or else the least recently used one.
fn make_room(lanes: &mut HashMap<Arc<str>, Slot>) {
    close_idle(lanes, Instant::now());
    if lanes.len() < MAX_LANES {
        return;
    }
    let oldest = lanes
        .iter()
        .filter_map(|(subject, slot)| Some((last_used(slot)?, Arc::clone(subject))))
        .min_by_key(|(used, _)| *used)
        .map(|(_, subject)| subject);
    if let Some(subject) = oldest {
        lanes.remove(&subject);
    }
}
