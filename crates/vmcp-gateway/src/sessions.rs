//! Connected client sessions, so catalogue changes reach them as
//! `notifications/*/list_changed`.
//!
//! Bounded and pruned: a session is keyed by its `Mcp-Session-Id` and
//! removed when rmcp closes it (idle expiry, `DELETE`, shutdown — see
//! `server::session_limits`); peers whose transport closed are swept in
//! amortised constant time per added session, and the table never holds
//! more than its capacity (`server.maxSessions`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rmcp::service::{Peer, RoleServer};

use crate::catalogue::ListChanges;

/// Smallest table size at which closed peers are swept.
const MIN_SWEEP: usize = 64;

/// How a peer is known: its session id, or a number for peers that have
/// none (sessions not served over Streamable HTTP).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Key {
    Session(Arc<str>),
    Anonymous(u64),
}

struct Table {
    peers: HashMap<Key, Peer<RoleServer>>,
    next_anonymous: u64,
    /// Sweep closed peers once the table reaches this size.
    sweep_at: usize,
}

/// The live downstream sessions.
pub struct Sessions {
    table: Mutex<Table>,
    capacity: usize,
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
                peers: HashMap::new(),
                next_anonymous: 0,
                sweep_at: MIN_SWEEP,
            }),
            capacity: capacity.max(1),
        }
    }

    /// Adds a session that finished initialization; `session_id` is its
    /// `Mcp-Session-Id` when it has one. Returns false (and keeps nothing)
    /// when the table is full of live sessions.
    pub fn add(&self, session_id: Option<&str>, peer: Peer<RoleServer>) -> bool {
        let mut table = self.lock();
        if table.peers.len() >= table.sweep_at.min(self.capacity) {
            table.peers.retain(|_, p| !p.is_transport_closed());
            // Doubling keeps the sweeps amortised O(1) per added session.
            table.sweep_at = (table.peers.len() * 2).max(MIN_SWEEP);
        }
        let key = match session_id {
            Some(id) => Key::Session(id.into()),
            None => {
                table.next_anonymous += 1;
                Key::Anonymous(table.next_anonymous)
            }
        };
        if table.peers.len() >= self.capacity && !table.peers.contains_key(&key) {
            tracing::warn!(
                capacity = self.capacity,
                "session table full; this session gets no list_changed notifications"
            );
            return false;
        }
        table.peers.insert(key, peer);
        true
    }

    /// Forgets a session that rmcp closed.
    pub fn remove(&self, session_id: &str) {
        self.lock()
            .peers
            .remove(&Key::Session(Arc::from(session_id)));
    }

    /// Number of live sessions.
    pub fn len(&self) -> usize {
        let mut table = self.lock();
        table.peers.retain(|_, p| !p.is_transport_closed());
        table.peers.len()
    }

    /// Whether there is no live session.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Tells every live session which lists changed. Sending happens in the
    /// background: a slow client never delays the others or the caller.
    pub fn broadcast(&self, changes: ListChanges) {
        if !changes.any() {
            return;
        }
        let peers: Vec<_> = {
            let mut table = self.lock();
            table.peers.retain(|_, p| !p.is_transport_closed());
            table.peers.values().cloned().collect()
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
        // Only insert/remove/retain/clone happen under the lock; a poisoned lock is still consistent.
        self.table
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
