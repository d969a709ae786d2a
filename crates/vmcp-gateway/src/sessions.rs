//! Connected client sessions, so catalogue changes reach them as
//! `notifications/*/list_changed`.

use std::sync::Mutex;

use rmcp::service::{Peer, RoleServer};

use crate::catalogue::ListChanges;

/// The live downstream sessions.
#[derive(Default)]
pub struct Sessions {
    peers: Mutex<Vec<Peer<RoleServer>>>,
}

impl Sessions {
    /// Adds a session that finished initialization.
    pub fn add(&self, peer: Peer<RoleServer>) {
        let mut peers = self.lock();
        peers.retain(|p| !p.is_transport_closed());
        peers.push(peer);
    }

    /// Number of live sessions.
    pub fn len(&self) -> usize {
        let mut peers = self.lock();
        peers.retain(|p| !p.is_transport_closed());
        peers.len()
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
            let mut peers = self.lock();
            peers.retain(|p| !p.is_transport_closed());
            peers.clone()
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

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Peer<RoleServer>>> {
        // Only push/retain/clone happen under the lock; a poisoned lock is still consistent.
        self.peers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
