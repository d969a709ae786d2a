//! Progress notifications from backends back to the client that asked.
//!
//! rmcp gives every upstream request its own progress token, so tokens from
//! different clients never collide upstream. While a forwarded request runs,
//! a [`ProgressGuard`] maps `(backend, upstream token)` to the downstream
//! session and the token the client chose.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rmcp::model::{ProgressNotificationParam, ProgressToken};
use rmcp::service::{Peer, RoleServer};

type Key = (Arc<str>, ProgressToken);

/// The table of in-flight requests that want progress.
#[derive(Default)]
pub struct ProgressRoutes {
    routes: Mutex<HashMap<Key, (Peer<RoleServer>, ProgressToken)>>,
}

impl ProgressRoutes {
    /// Routes `upstream` progress of `backend` to `downstream` on `peer`
    /// until the returned guard is dropped.
    pub fn register(
        self: &Arc<Self>,
        backend: Arc<str>,
        upstream: ProgressToken,
        peer: Peer<RoleServer>,
        downstream: ProgressToken,
    ) -> ProgressGuard {
        let key = (backend, upstream);
        self.lock().insert(key.clone(), (peer, downstream));
        ProgressGuard {
            routes: Arc::clone(self),
            key: Some(key),
        }
    }

    /// Delivers one progress notification from `backend`, if someone waits for it.
    pub async fn deliver(&self, backend: &Arc<str>, mut params: ProgressNotificationParam) {
        let target = self
            .lock()
            .get(&(backend.clone(), params.progress_token.clone()))
            .cloned();
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
        self.lock().len()
    }

    /// Whether no request is routed.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Key, (Peer<RoleServer>, ProgressToken)>> {
        // A panic while holding this lock cannot leave the map inconsistent
        // (single insert/remove/get), so a poisoned lock is still usable.
        self.routes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Removes a progress route when the forwarded request ends.
pub struct ProgressGuard {
    routes: Arc<ProgressRoutes>,
    key: Option<Key>,
}

impl Drop for ProgressGuard {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            self.routes.lock().remove(&key);
        }
    }
}
