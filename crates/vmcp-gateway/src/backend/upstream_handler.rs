//! The gateway's client-side handler on each backend connection: it turns
//! the backend's notifications into events for the supervisor and routes
//! progress to the waiting client.

use std::sync::Arc;

use rmcp::ClientHandler;
use rmcp::model::{
    ClientCapabilities, ClientConfig, Implementation, ProgressNotificationParam, ProtocolVersion,
};
use rmcp::service::{NotificationContext, RoleClient};
use tokio::sync::mpsc;

use crate::progress::ProgressRoutes;

/// A list the backend said has changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListKind {
    /// `notifications/tools/list_changed`.
    Tools,
    /// `notifications/prompts/list_changed`.
    Prompts,
    /// `notifications/resources/list_changed`.
    Resources,
}

/// Handles what one backend connection sends unprompted.
#[derive(Clone)]
pub struct UpstreamHandler {
    backend: Arc<str>,
    changes: mpsc::Sender<ListKind>,
    progress: Arc<ProgressRoutes>,
}

impl UpstreamHandler {
    /// A handler for `backend` reporting list changes on `changes`.
    pub fn new(
        backend: Arc<str>,
        changes: mpsc::Sender<ListKind>,
        progress: Arc<ProgressRoutes>,
    ) -> Self {
        Self {
            backend,
            changes,
            progress,
        }
    }

    fn changed(&self, kind: ListKind) {
        // A full channel already holds a pending refresh, which will see this change too.
        let _ = self.changes.try_send(kind);
    }
}

impl ClientHandler for UpstreamHandler {
    fn get_info(&self) -> ClientConfig {
        let mut info = ClientConfig::default();
        info.capabilities = ClientCapabilities::default();
        info.client_info = Implementation::new("vmcp", env!("CARGO_PKG_VERSION"));
        // The gateway relays sessions, progress and list_changed, which need the
        // session-based protocol; 2026-07-28 dropped `initialize` and sessions.
        info.protocol_version = ProtocolVersion::V_2025_11_25;
        info
    }

    async fn on_progress(
        &self,
        params: ProgressNotificationParam,
        _: NotificationContext<RoleClient>,
    ) {
        self.progress.deliver(&self.backend, params).await;
    }

    async fn on_tool_list_changed(&self, _: NotificationContext<RoleClient>) {
        self.changed(ListKind::Tools);
    }

    async fn on_prompt_list_changed(&self, _: NotificationContext<RoleClient>) {
        self.changed(ListKind::Prompts);
    }

    async fn on_resource_list_changed(&self, _: NotificationContext<RoleClient>) {
        self.changed(ListKind::Resources);
    }
}
