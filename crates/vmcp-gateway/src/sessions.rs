//! Connected client sessions and what each asked of the gateway: catalogue
//! changes reach them as `notifications/*/list_changed`, backend log
//! messages at or above the level they set (`logging/setLevel`), resource
//! updates for what they subscribed to, and `roots/list_changed` goes to the
//! backends that asked them for roots.
//!
//! Bounded and pruned: a session is keyed by its `Mcp-Session-Id` and
//! removed when rmcp closes it (idle expiry, `DELETE`, shutdown — see
//! `server::session_limits`); peers whose transport closed are swept in
//! amortised constant time per added session, and the table never holds
//! more than its capacity (`server.maxSessions`).
#![expect(
    deprecated,
    reason = "logging is deprecated by SEP-2577 but still served"
)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rmcp::model::{Extensions, LoggingLevel, RequestId};
use rmcp::service::{Peer, RoleServer};

use crate::catalogue::ListChanges;
use crate::server::session_limits::SESSION_ID_HEADER;
use crate::spare_capacity::release_spare_capacity;
use crate::subscriptions::{SubscribeError, Subscriptions, Upstream};

/// Smallest table size at which closed peers are swept.
const MIN_SWEEP: usize = 64;

/// The `Mcp-Session-Id` of the HTTP request behind a handler call, if any.
pub fn session_id(extensions: &Extensions) -> Option<Arc<str>> {
    extensions
        .get::<http::request::Parts>()
        .and_then(|parts| parts.headers.get(SESSION_ID_HEADER))
        .and_then(|value| value.to_str().ok())
        .map(Arc::from)
}

/// How a peer is known: its session id, or a number for peers that have
/// none (sessions not served over Streamable HTTP).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Key {
    Session(Arc<str>),
    Anonymous(u64),
}

/// Severity rank of a log level: 0 (debug) … 7 (emergency).
fn rank(level: LoggingLevel) -> usize {
    match level {
        LoggingLevel::Debug => 0,
        LoggingLevel::Info => 1,
        LoggingLevel::Notice => 2,
        LoggingLevel::Warning => 3,
        LoggingLevel::Error => 4,
        LoggingLevel::Critical => 5,
        LoggingLevel::Alert => 6,
        LoggingLevel::Emergency => 7,
    }
}

const LEVELS: [LoggingLevel; 8] = [
    LoggingLevel::Debug,
    LoggingLevel::Info,
    LoggingLevel::Notice,
    LoggingLevel::Warning,
    LoggingLevel::Error,
    LoggingLevel::Critical,
    LoggingLevel::Alert,
    LoggingLevel::Emergency,
];

struct Entry {
    peer: Peer<RoleServer>,
    /// Set by `logging/setLevel`; without it the session gets no backend logs.
    log_level: Option<LoggingLevel>,
    /// Backends that asked this session for its roots.
    roots_asked_by: Vec<Arc<str>>,
    /// URL-mode elicitations relayed to this session: (backend, elicitation id).
    url_elicitations: Vec<(Arc<str>, String)>,
    /// For a 2026-07-28 `subscriptions/listen` stream standing in for a
    /// session (it holds resource subscriptions only): the stream's id,
    /// stamped on each update it is sent.
    listen: Option<RequestId>,
}

/// At most this many URL-mode elicitations are remembered per session (for
/// relaying `notifications/elicitation/complete`); the oldest go first.
const MAX_URL_ELICITATIONS: usize = 64;

struct Table {
    entries: HashMap<Key, Entry>,
    next_anonymous: u64,
    /// Sweep closed peers once the table reaches this size.
    sweep_at: usize,
    /// How many sessions set each log level (index: [`rank`]).
    level_counts: [usize; 8],
    subscriptions: Subscriptions,
    /// (backend, elicitation id) → the session it was relayed to.
    url_elicitations: HashMap<(Arc<str>, String), Key>,
}

impl Table {
    /// The most verbose level any session set.
    fn upstream_level(&self) -> Option<LoggingLevel> {
        self.level_counts
            .iter()
            .position(|&n| n > 0)
            .map(|i| LEVELS[i])
    }

    /// What sessions that ended leave to undo upstream, given the log
    /// level backends were set to before they ended.
    fn released(
        &self,
        before: Option<LoggingLevel>,
        subscriptions: Vec<(Arc<str>, String)>,
    ) -> Released {
        let after = self.upstream_level();
        Released {
            subscriptions,
            // Nobody wants logs any more: quiet the backends as far as MCP allows.
            log_level: (after != before).then(|| after.unwrap_or(LoggingLevel::Emergency)),
        }
    }

    /// Removes one session and everything it held; returns what to
    /// unsubscribe upstream.
    fn remove(&mut self, key: &Key) -> Vec<(Arc<str>, String)> {
        let Some(entry) = self.entries.remove(key) else {
            return Vec::new();
        };
        if let Some(level) = entry.log_level {
            self.level_counts[rank(level)] -= 1;
        }
        for pending in entry.url_elicitations {
            self.url_elicitations.remove(&pending);
        }
        release_spare_capacity(&mut self.entries);
        release_spare_capacity(&mut self.url_elicitations);
        match key {
            Key::Session(id) => self.subscriptions.drop_session(id),
            Key::Anonymous(_) => Vec::new(),
        }
    }

    /// Drops sessions whose transport closed; returns what to unsubscribe upstream.
    fn sweep(&mut self) -> Vec<(Arc<str>, String)> {
        let closed: Vec<Key> = self
            .entries
            .iter()
            .filter(|(_, e)| e.peer.is_transport_closed())
            .map(|(k, _)| k.clone())
            .collect();
        closed.iter().flat_map(|key| self.remove(key)).collect()
    }
}

/// What ended sessions leave to undo upstream.
#[derive(Debug, Default, PartialEq)]
pub struct Released {
    /// (backend, URI) subscriptions no session holds any more.
    pub subscriptions: Vec<(Arc<str>, String)>,
    /// The log level backends should now be set to, when it changed (it
    /// only becomes less verbose when sessions end).
    pub log_level: Option<LoggingLevel>,
}

/// Why a per-session request was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SessionError {
    /// The request came without `Mcp-Session-Id`, or for a session the table does not hold.
    #[error("this request needs an initialized session (Mcp-Session-Id)")]
    NoSession,
    /// Too many subscriptions.
    #[error(transparent)]
    Subscribe(#[from] SubscribeError),
}

/// The live downstream sessions.
pub struct Sessions {
    table: Mutex<Table>,
    capacity: usize,
    /// Woken when an upstream subscribe settles (sessions may wait for it).
    settled: tokio::sync::Notify,
}

impl Default for Sessions {
    fn default() -> Self {
        Self::new(usize::MAX)
    }
}

impl Sessions {
    /// A table holding at most `capacity` sessions.
    pub fn new(capacity: usize) -> Self {
        Self {
            table: Mutex::new(Table {
                entries: HashMap::new(),
                next_anonymous: 0,
                sweep_at: MIN_SWEEP,
                level_counts: [0; 8],
                subscriptions: Subscriptions::default(),
                url_elicitations: HashMap::new(),
            }),
            capacity: capacity.max(1),
            settled: tokio::sync::Notify::new(),
        }
    }

    /// Adds a session that finished initialization; `session_id` is its
    /// `Mcp-Session-Id` when it has one. Returns false (and keeps nothing)
    /// when the table is full of live sessions, and the (backend, URI)
    /// subscriptions of swept sessions to release upstream.
    pub fn add(&self, session_id: Option<&str>, peer: Peer<RoleServer>) -> (bool, Released) {
        let mut table = self.lock();
        let before = table.upstream_level();
        let mut released = Vec::new();
        if table.entries.len() >= table.sweep_at.min(self.capacity) {
            released = table.sweep();
            // Doubling keeps the sweeps amortised O(1) per added session.
            table.sweep_at = (table.entries.len() * 2).max(MIN_SWEEP);
        }
        let key = match session_id {
            Some(id) => Key::Session(id.into()),
            None => {
                table.next_anonymous += 1;
                Key::Anonymous(table.next_anonymous)
            }
        };
        if table.entries.len() >= self.capacity && !table.entries.contains_key(&key) {
            tracing::warn!(
                capacity = self.capacity,
                "session table full; this session gets no list_changed notifications"
            );
            let released = table.released(before, released);
            return (false, released);
        }
        released.extend(table.remove(&key));
        table.entries.insert(
            key,
            Entry {
                peer,
                log_level: None,
                roots_asked_by: Vec::new(),
                url_elicitations: Vec::new(),
                listen: None,
            },
        );
        let released = table.released(before, released);
        (true, released)
    }

    /// Adds a 2026-07-28 `subscriptions/listen` stream under `id`, to hold
    /// its resource subscriptions like a session; `false` when the table is
    /// full of live sessions. [`Self::remove`] ends it. Also returns what
    /// swept sessions leave to release upstream.
    pub fn add_listener(
        &self,
        id: &str,
        peer: Peer<RoleServer>,
        stream: RequestId,
    ) -> (bool, Released) {
        let mut table = self.lock();
        let before = table.upstream_level();
        let swept = if table.entries.len() >= self.capacity {
            table.sweep()
        } else {
            Vec::new()
        };
        if table.entries.len() >= self.capacity {
            let released = table.released(before, swept);
            return (false, released);
        }
        table.entries.insert(
            Key::Session(Arc::from(id)),
            Entry {
                peer,
                log_level: None,
                roots_asked_by: Vec::new(),
                url_elicitations: Vec::new(),
                listen: Some(stream),
            },
        );
        let released = table.released(before, swept);
        (true, released)
    }

    /// Forgets a session that rmcp closed; returns what it held that
    /// nobody else needs.
    pub fn remove(&self, session_id: &str) -> Released {
        let mut table = self.lock();
        let before = table.upstream_level();
        let subscriptions = table.remove(&Key::Session(Arc::from(session_id)));
        table.released(before, subscriptions)
    }

    /// Number of live sessions.
    pub fn len(&self) -> usize {
        let table = self.lock();
        table
            .entries
            .values()
            .filter(|e| e.listen.is_none() && !e.peer.is_transport_closed())
            .count()
    }

    /// Whether there is no live session.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Sets `session`'s log level; returns the new upstream level (the most
    /// verbose any session set) when it changed.
    pub fn set_log_level(
        &self,
        session: &Arc<str>,
        level: LoggingLevel,
    ) -> Result<Option<LoggingLevel>, SessionError> {
        let mut table = self.lock();
        let before = table.upstream_level();
        let entry = table
            .entries
            .get_mut(&Key::Session(session.clone()))
            .ok_or(SessionError::NoSession)?;
        let old = entry.log_level.replace(level);
        if let Some(old) = old {
            table.level_counts[rank(old)] -= 1;
        }
        table.level_counts[rank(level)] += 1;
        let after = table.upstream_level();
        Ok((after != before).then_some(after).flatten())
    }

    /// The level backends should log at: the most verbose any session set.
    pub fn upstream_log_level(&self) -> Option<LoggingLevel> {
        self.lock().upstream_level()
    }

    /// The sessions that want a log message of `level`.
    pub fn log_receivers(&self, level: LoggingLevel) -> Vec<Peer<RoleServer>> {
        let table = self.lock();
        if table.level_counts[..=rank(level)].iter().all(|&n| n == 0) {
            return Vec::new();
        }
        table
            .entries
            .values()
            .filter(|e| e.log_level.is_some_and(|set| rank(set) <= rank(level)))
            .filter(|e| !e.peer.is_transport_closed())
            .map(|e| e.peer.clone())
            .collect()
    }

    /// `session` subscribes to `uri` of `backend`; returns what to do upstream.
    pub fn subscribe(
        &self,
        session: &Arc<str>,
        uri: &str,
        backend: &Arc<str>,
    ) -> Result<Upstream, SessionError> {
        let mut table = self.lock();
        if !table.entries.contains_key(&Key::Session(session.clone())) {
            return Err(SessionError::NoSession);
        }
        Ok(table.subscriptions.subscribe(session, uri, backend)?)
    }

    /// `session` unsubscribes from `uri`; returns what to do upstream.
    pub fn unsubscribe(&self, session: &Arc<str>, uri: &str) -> Upstream {
        self.lock().subscriptions.unsubscribe(session, uri)
    }

    /// The upstream subscribe `session` sent for `uri` settled: accepted
    /// (other sessions join it) or refused (the session holds nothing, and
    /// a waiting session becomes the first). Wakes the waiting sessions.
    pub fn subscription_settled(&self, session: &Arc<str>, uri: &str, accepted: bool) {
        {
            let mut table = self.lock();
            if accepted {
                table.subscriptions.confirm(uri);
            } else {
                table.subscriptions.unsubscribe(session, uri);
            }
        }
        self.settled.notify_waiters();
    }

    /// Resolves the next time any upstream subscribe settles.
    pub fn settled(&self) -> tokio::sync::futures::Notified<'_> {
        self.settled.notified()
    }

    /// The sessions subscribed to `uri` of `backend`, with the listen
    /// stream's id for those that are one.
    pub fn subscribers(
        &self,
        backend: &str,
        uri: &str,
    ) -> Vec<(Peer<RoleServer>, Option<RequestId>)> {
        let table = self.lock();
        table
            .subscriptions
            .subscribers(backend, uri)
            .into_iter()
            .filter_map(|id| table.entries.get(&Key::Session(id)))
            .map(|e| (e.peer.clone(), e.listen.clone()))
            .collect()
    }

    /// Every URI of `backend` some session is subscribed to (to subscribe
    /// again after a reconnect).
    pub fn subscribed_uris(&self, backend: &str) -> Vec<String> {
        self.lock().subscriptions.uris_of(backend)
    }

    /// Records that `backend` asked `session` for its roots.
    pub fn roots_asked(&self, session: &Arc<str>, backend: &Arc<str>) {
        let mut table = self.lock();
        if let Some(entry) = table.entries.get_mut(&Key::Session(session.clone()))
            && !entry.roots_asked_by.contains(backend)
        {
            entry.roots_asked_by.push(backend.clone());
        }
    }

    /// Records that `backend`'s URL-mode elicitation `id` went to `session`,
    /// so its `notifications/elicitation/complete` can follow.
    pub fn url_elicitation_sent(&self, session: &Arc<str>, backend: &Arc<str>, id: &str) {
        let mut table = self.lock();
        let key = Key::Session(session.clone());
        let pending = (backend.clone(), id.to_string());
        let Some(entry) = table.entries.get_mut(&key) else {
            return;
        };
        if entry.url_elicitations.contains(&pending) {
            return;
        }
        let evicted = (entry.url_elicitations.len() >= MAX_URL_ELICITATIONS)
            .then(|| entry.url_elicitations.remove(0));
        entry.url_elicitations.push(pending.clone());
        if let Some(evicted) = evicted {
            table.url_elicitations.remove(&evicted);
        }
        table.url_elicitations.insert(pending, key);
    }

    /// The session `backend`'s URL-mode elicitation `id` went to, forgotten
    /// from now on.
    pub fn url_elicitation_done(&self, backend: &Arc<str>, id: &str) -> Option<Peer<RoleServer>> {
        let mut table = self.lock();
        let pending = (backend.clone(), id.to_string());
        let key = table.url_elicitations.remove(&pending)?;
        let entry = table.entries.get_mut(&key)?;
        entry.url_elicitations.retain(|p| p != &pending);
        Some(entry.peer.clone())
    }

    /// The backends that asked `session` for its roots.
    pub fn roots_askers(&self, session: &Arc<str>) -> Vec<Arc<str>> {
        self.lock()
            .entries
            .get(&Key::Session(session.clone()))
            .map(|e| e.roots_asked_by.clone())
            .unwrap_or_default()
    }

    /// Tells every live session which lists changed. Sending happens in the
    /// background: a slow client never delays the others or the caller.
    pub fn broadcast(&self, changes: ListChanges) {
        if !changes.any() {
            return;
        }
        let peers: Vec<_> = {
            let table = self.lock();
            table
                .entries
                .values()
                // Listen streams get list changes from their own loop.
                .filter(|e| e.listen.is_none() && !e.peer.is_transport_closed())
                .map(|e| e.peer.clone())
                .collect()
        };
        for peer in peers {
            tokio::spawn(async move {
                // A failed send means the session is gone; it is pruned on the next pass.
                if changes.tools {
                    let _ = peer.notify_tool_list_changed().await;
                }
                if changes.prompts {
                    let _ = peer.notify_prompt_list_changed().await;
                }
                if changes.resources {
                    let _ = peer.notify_resource_list_changed().await;
                }
            });
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        // Every operation leaves the table consistent before it could panic;
        // a poisoned lock is still usable.
        self.table
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
