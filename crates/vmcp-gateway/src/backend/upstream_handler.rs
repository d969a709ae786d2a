//! The gateway's client-side handler on each backend connection: it turns
//! the backend's notifications into events for the supervisor and relays
//! progress, log messages, resource updates and server-to-client requests
//! to the clients they belong to ([`crate::relay`]).
#![expect(
    deprecated,
    reason = "sampling, roots and logging are deprecated by SEP-2577 but still served"
)]

use std::sync::Arc;
use std::time::Duration;

use rmcp::ClientHandler;
use rmcp::model::{
    ClientCapabilities, ClientConfig, ClientResult, CreateMessageRequest,
    CreateMessageRequestParams, CreateMessageResult, CustomNotification, ElicitRequest,
    ElicitRequestParams, ElicitResult, ElicitationCapability, ErrorData, FormElicitationCapability,
    Implementation, ListRootsRequest, ListRootsResult, LoggingMessageNotificationParam,
    ProgressNotificationParam, ProtocolVersion, ResourceUpdatedNotificationParam,
    RootsCapabilities, SamplingCapability, ServerRequest, UrlElicitationCapability,
};
use rmcp::service::{NotificationContext, RequestContext, RoleClient};
use tokio::sync::{Notify, mpsc};

use crate::relay::Downstream;

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
    /// The name its forwarded requests are registered under in the call
    /// routes: the backend's, or a caller connection's own
    /// ([`super::caller_lanes`]), whose request ids are its own.
    routes_key: Arc<str>,
    changes: mpsc::Sender<ListKind>,
    downstream: Downstream,
    /// The backend's call timeout, which also bounds its requests to clients.
    timeout: Duration,
    /// Notified when the transport renews the backend session on its own.
    renewed: Arc<Notify>,
}

impl UpstreamHandler {
    /// A handler for `backend` reporting list changes on `changes` and
    /// relaying to `downstream`.
    pub fn new(
        backend: Arc<str>,
        changes: mpsc::Sender<ListKind>,
        downstream: Downstream,
        timeout: Duration,
    ) -> Self {
        Self {
            routes_key: Arc::clone(&backend),
            backend,
            changes,
            downstream,
            timeout,
            renewed: Arc::new(Notify::new()),
        }
    }

    /// The same handler for a connection whose calls are registered under
    /// `routes_key`.
    pub fn with_routes_key(mut self, routes_key: Arc<str>) -> Self {
        self.routes_key = routes_key;
        self
    }

    /// Notified when the transport silently re-initializes the backend
    /// session ([`super::session_watch`]).
    pub fn renewed(&self) -> Arc<Notify> {
        self.renewed.clone()
    }

    async fn relay(
        &self,
        request: ServerRequest,
        context: &RequestContext<RoleClient>,
    ) -> Result<ClientResult, ErrorData> {
        self.downstream
            .request(&self.routes_key, self.timeout, request, context)
            .await
    }

    fn changed(&self, kind: ListKind) {
        // A full channel already holds a pending refresh, which will see this change too.
        let _ = self.changes.try_send(kind);
    }
}

impl ClientHandler for UpstreamHandler {
    fn get_info(&self) -> ClientConfig {
        let mut info = ClientConfig::default();
        // Offered on behalf of the clients: a request reaches a client only
        // when that client declared the capability (see crate::relay).
        let mut capabilities = ClientCapabilities::default();
        capabilities.sampling = Some(SamplingCapability::default());
        capabilities.elicitation = Some(
            ElicitationCapability::new()
                .with_form(FormElicitationCapability::new())
                .with_url(UrlElicitationCapability::new()),
        );
        let mut roots = RootsCapabilities::default();
        roots.list_changed = Some(true);
        capabilities.roots = Some(roots);
        info.capabilities = capabilities;
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
        self.downstream
            .routes
            .deliver_progress(&self.routes_key, params)
            .await;
    }

    async fn on_logging_message(
        &self,
        params: LoggingMessageNotificationParam,
        _: NotificationContext<RoleClient>,
    ) {
        self.downstream.log(&self.backend, params);
    }

    async fn on_resource_updated(
        &self,
        params: ResourceUpdatedNotificationParam,
        _: NotificationContext<RoleClient>,
    ) {
        self.downstream.resource_updated(&self.backend, params);
    }

    async fn on_custom_notification(
        &self,
        notification: CustomNotification,
        _: NotificationContext<RoleClient>,
    ) {
        if notification.method == ELICITATION_COMPLETE
            && !self
                .downstream
                .elicitation_complete(&self.routes_key, notification)
        {
            tracing::debug!(backend = %self.backend, "elicitation completion for an unknown elicitation dropped");
        }
    }

    async fn create_message(
        &self,
        params: CreateMessageRequestParams,
        context: RequestContext<RoleClient>,
    ) -> Result<CreateMessageResult, ErrorData> {
        let request = ServerRequest::CreateMessageRequest(CreateMessageRequest::new(params));
        match self.relay(request, &context).await? {
            ClientResult::CreateMessageResult(result) => Ok(*result),
            _ => Err(unexpected_answer()),
        }
    }

    async fn list_roots(
        &self,
        context: RequestContext<RoleClient>,
    ) -> Result<ListRootsResult, ErrorData> {
        let request = ServerRequest::ListRootsRequest(ListRootsRequest::default());
        match self.relay(request, &context).await? {
            ClientResult::ListRootsResult(result) => Ok(result),
            _ => Err(unexpected_answer()),
        }
    }

    async fn create_elicitation(
        &self,
        params: ElicitRequestParams,
        context: RequestContext<RoleClient>,
    ) -> Result<ElicitResult, ErrorData> {
        let request = ServerRequest::ElicitRequest(ElicitRequest::new(params));
        match self.relay(request, &context).await? {
            ClientResult::ElicitResult(result) => Ok(result),
            _ => Err(unexpected_answer()),
        }
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

/// Sent by a backend when a URL-mode elicitation finished out of band.
const ELICITATION_COMPLETE: &str = "notifications/elicitation/complete";

fn unexpected_answer() -> ErrorData {
    ErrorData::internal_error("the client sent an answer of the wrong kind", None)
}
