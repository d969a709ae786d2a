//! The MCP server a client session talks to: lists come from the catalogue,
//! everything else is forwarded to the owning backend.
#![expect(
    deprecated,
    reason = "logging and resources/subscribe are deprecated by SEP-2577 but still served"
)]

use std::borrow::Cow;
use std::sync::Arc;

use rmcp::ServerHandler;
use rmcp::model::{
    CallToolRequest, CallToolRequestParams, CallToolResponse, ClientRequest, CompleteRequest,
    CompleteRequestParams, CompleteResult, DiscoverResult, ErrorData, GetPromptRequest,
    GetPromptRequestParams, GetPromptResponse, Implementation, InitializeResult, InputResponses,
    ListPromptsResult, ListResourceTemplatesResult, ListResourcesResult, ListToolsResult,
    PaginatedRequestParams, ProtocolVersion, ReadResourceRequest, ReadResourceRequestParams,
    ReadResourceResponse, Reference, ResultType, ServerResult, SetLevelRequestParams,
    SubscribeRequest, SubscribeRequestParams, SubscriptionFilter, UnsubscribeRequestParams,
};
use rmcp::service::{NotificationContext, RequestContext, RoleServer, SubscriptionContext};
use serde_json::Value;
use tokio::sync::broadcast::error::RecvError;
use vmcp_auth::authz::Operation as Access;
use vmcp_config::{AuditEventType, PartialFailureMode};

use crate::audit::{self, Recorder};
use crate::backend::Backend;
use crate::catalogue::ListChanges;
use crate::forward::{ForwardError, forward};
use crate::gateway::Gateway;
use crate::input_rounds::{Exchange, Operation, RoundLink, is_ours};
use crate::server::authorization::{self, target};
use crate::server::capabilities::{BackendOffer, announced};
use crate::server::echo::echoed;
use crate::server::pagination::page;
use crate::sessions::{SessionError, session_id};
use crate::subscriptions::{MAX_PER_SESSION, Upstream};

/// One client session's view of the gateway.
#[derive(Clone)]
pub struct GatewayHandler {
    gateway: Arc<Gateway>,
    audit: Recorder,
}

impl GatewayHandler {
    /// A handler for a new session.
    pub fn new(gateway: Arc<Gateway>) -> Self {
        Self {
            gateway,
            audit: Recorder::disabled(),
        }
    }

    /// The same handler, recording each operation in the audit log.
    pub fn with_audit(mut self, audit: Recorder) -> Self {
        self.audit = audit;
        self
    }

    /// What the caller of this request may do (`incomingAuth.authz`).
    fn access(&self, context: &RequestContext<RoleServer>) -> authorization::Access {
        authorization::Access::new(self.gateway.authz(), &context.extensions)
    }

    fn page_size(&self) -> usize {
        self.gateway.config().server.page_size as usize
    }

    /// Refuses a resource URI longer than `server.maxUriBytes` before any
    /// work is done on it (matching, routing, forwarding).
    fn check_uri_length(&self, uri: &str) -> Result<(), ErrorData> {
        let limit = self.gateway.config().server.max_uri_bytes as usize;
        if uri.len() > limit {
            return Err(ErrorData::invalid_params(
                format!(
                    "resource URI of {} bytes is longer than the limit of {limit} bytes (server.maxUriBytes)",
                    uri.len()
                ),
                None,
            ));
        }
        Ok(())
    }

    /// In `partialFailureMode: fail`, lists fail while any backend is down.
    fn check_partial_failure(&self) -> Result<(), ErrorData> {
        let mode = self
            .gateway
            .config()
            .operational
            .failure_handling
            .partial_failure_mode;
        if mode == PartialFailureMode::Fail {
            let down = self.gateway.unavailable_backends();
            if !down.is_empty() {
                return Err(ErrorData::internal_error(
                    format!(
                        "backends unavailable: {} (partialFailureMode is fail)",
                        down.join(", ")
                    ),
                    None,
                ));
            }
        }
        Ok(())
    }

    /// The backend a route leads to. It can be gone when it was removed
    /// just now and the catalogue is still being rebuilt: then the name is
    /// as unknown as it is about to be.
    fn backend(
        &self,
        name: &str,
        unknown: impl FnOnce() -> ErrorData,
    ) -> Result<Arc<Backend>, ErrorData> {
        self.gateway.backend(name).ok_or_else(unknown)
    }

    /// The error for a name that is not routable now: "backend X is
    /// unavailable" when a hidden backend owns it, else `unknown`.
    fn not_routable(&self, owner: Option<Arc<str>>, unknown: String) -> ErrorData {
        match owner.and_then(|name| self.gateway.backend(&name)) {
            Some(backend) => ForwardError::Unavailable {
                backend: backend.name().to_string(),
                reason: backend
                    .snapshot()
                    .message
                    .unwrap_or_else(|| "not healthy".to_string()),
            }
            .into(),
            None => ErrorData::invalid_params(unknown, None),
        }
    }

    /// The session a request belongs to (logging and subscriptions are per session).
    fn session(&self, context: &RequestContext<RoleServer>) -> Result<Arc<str>, ErrorData> {
        session_id(&context.extensions)
            .ok_or_else(|| ErrorData::invalid_request(SessionError::NoSession.to_string(), None))
    }

    /// The backend that owns a resource URI (a listed resource, or a template that matches it).
    fn resource_owner(&self, uri: &str) -> Result<Arc<Backend>, ErrorData> {
        // Listed resources first, then the templates that match.
        let owner = self.gateway.catalogue().route_resource(uri).cloned();
        let unknown =
            || ErrorData::resource_not_found(format!("unknown resource: {}", echoed(uri)), None);
        match owner {
            Some(owner) => self.backend(&owner, unknown),
            None => match self.gateway.known_catalogue().route_resource(uri).cloned() {
                Some(owner) => Err(self.not_routable(Some(owner), String::new())),
                None => Err(unknown()),
            },
        }
    }

    /// The backend owning `uri`, if it takes resource subscriptions.
    fn subscription_owner(&self, uri: &str) -> Result<Arc<Backend>, ErrorData> {
        self.check_uri_length(uri)?;
        let backend = self.resource_owner(uri)?;
        let subscribes = backend
            .peer()
            .and_then(|peer| peer.peer_info())
            .and_then(|info| info.capabilities.resources.clone())
            .is_some_and(|resources| resources.subscribe == Some(true));
        if !subscribes {
            return Err(ErrorData::invalid_params(
                format!(
                    "backend {} does not support resource subscriptions",
                    backend.name()
                ),
                None,
            ));
        }
        Ok(backend)
    }

    /// Subscribes `session` (a session, or a listen stream standing in for
    /// one) to `request.uri`: upstream once per URI, refcounted.
    async fn subscribe_for(
        &self,
        session: &Arc<str>,
        request: SubscribeRequestParams,
        context: &RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        let backend = self.subscription_owner(&request.uri)?;
        // Updates tell what a resource holds: subscribing needs read access.
        self.access(context)
            .check(Access::ReadResource, &target(&request.uri, backend.name()))?;
        let sessions = &self.gateway.sessions;
        let deadline = tokio::time::Instant::now() + backend.call_timeout();
        loop {
            let settled = sessions.settled();
            tokio::pin!(settled);
            settled.as_mut().enable();
            let upstream = sessions
                .subscribe(session, &request.uri, backend.name_arc())
                .map_err(|err| ErrorData::invalid_request(err.to_string(), None))?;
            match upstream {
                Upstream::Nothing => return Ok(()),
                Upstream::Subscribe(_) => break,
                // Another session's subscribe to this URI is under way: its
                // outcome decides whether this one joins it or goes first.
                Upstream::Pending | Upstream::Unsubscribe(_) => {
                    if tokio::time::timeout_at(deadline, settled).await.is_err() {
                        return Err(ForwardError::Timeout {
                            backend: backend.name().to_string(),
                            timeout: backend.call_timeout(),
                        }
                        .into());
                    }
                }
            }
        }
        let uri = request.uri.clone();
        let sent = self
            .forward(
                &backend,
                ClientRequest::SubscribeRequest(SubscribeRequest::new(request)),
                context,
            )
            .await;
        // Refused upstream: the session holds nothing either.
        sessions.subscription_settled(session, &uri, sent.is_ok());
        sent.map(|_| ())
    }

    /// Forwards `request` to `backend`. A 2026-07-28 client's call that the
    /// backend has questions for is answered in rounds
    /// ([`crate::input_rounds`]).
    async fn forward(
        &self,
        backend: &Arc<Backend>,
        request: ClientRequest,
        context: &RequestContext<RoleServer>,
    ) -> Result<ServerResult, ErrorData> {
        let mut result = self.forward_in_rounds(backend, request, context).await?;
        if answers_in_rounds(context) {
            mark_complete(&mut result);
        }
        Ok(result)
    }

    async fn forward_in_rounds(
        &self,
        backend: &Arc<Backend>,
        mut request: ClientRequest,
        context: &RequestContext<RoleServer>,
    ) -> Result<ServerResult, ErrorData> {
        let Some(round) = answers_in_rounds(context)
            .then(|| RoundParams::take(backend, &mut request))
            .flatten()
        else {
            return forward_now(&self.gateway, backend, request, context, None).await;
        };
        let rounds = &self.gateway.input_rounds;
        let timeout = backend.call_timeout();
        let exchange = Exchange {
            peer: Some(context.peer.clone()),
            progress_token: context.meta.get_progress_token(),
        };
        match round.state {
            Some(state) if is_ours(&state) => {
                rounds
                    .resume(
                        &state,
                        &round.operation,
                        exchange,
                        round.answers,
                        &context.ct,
                        timeout,
                    )
                    .await
            }
            state => {
                // Not ours: the backend's own rounds, passed through.
                round_params(&mut request, state, round.answers);
                let gateway = Arc::clone(&self.gateway);
                let backend = Arc::clone(backend);
                let mut detached = context.clone();
                rounds
                    .start(
                        round.operation,
                        exchange,
                        &context.ct,
                        timeout,
                        move |link, ct| {
                            // The call outlives this exchange when it is parked.
                            detached.ct = ct;
                            tokio::spawn(async move {
                                forward_now(&gateway, &backend, request, &detached, Some(link))
                                    .await
                            })
                        },
                    )
                    .await
            }
        }
    }
}

/// Forwards one request now, counted as in flight for the drain.
async fn forward_now(
    gateway: &Arc<Gateway>,
    backend: &Backend,
    request: ClientRequest,
    context: &RequestContext<RoleServer>,
    rounds: Option<RoundLink>,
) -> Result<ServerResult, ErrorData> {
    let _in_flight = gateway.begin_request();
    let result = tokio::select! {
        result = forward(backend, request, context, &gateway.routes, rounds) => result,
        () = gateway.in_flight_abandoned() => Err(ForwardError::ShuttingDown {
            backend: backend.name().to_string(),
        }),
    };
    audit::note::forwarded(&context.extensions, backend.name(), &result);
    result.map_err(ErrorData::from)
}

/// Marks a final result as `resultType: complete`, which 2026-07-28 requires
/// (a backend on an older revision does not send it).
fn mark_complete(result: &mut ServerResult) {
    let result_type = match result {
        ServerResult::CallToolResult(r) => &mut r.result_type,
        ServerResult::GetPromptResult(r) => &mut r.result_type,
        ServerResult::ReadResourceResult(r) => &mut r.result_type,
        ServerResult::CompleteResult(r) => &mut r.result_type,
        _ => return,
    };
    result_type.get_or_insert(ResultType::COMPLETE);
}

/// Whether the client of this request speaks 2026-07-28 (or later), where
/// a server asks for input by answering, not by sending requests.
fn answers_in_rounds(context: &RequestContext<RoleServer>) -> bool {
    context
        .meta
        .protocol_version()
        .is_some_and(|version| version.as_str() >= ProtocolVersion::V_2026_07_28.as_str())
}

/// The multi round-trip parameters of a call, taken out of it.
struct RoundParams {
    operation: Operation,
    state: Option<String>,
    answers: Option<InputResponses>,
}

impl RoundParams {
    /// Takes `requestState` and `inputResponses` out of a call that can
    /// need input (`tools/call`, `prompts/get`, `resources/read`).
    fn take(backend: &Backend, request: &mut ClientRequest) -> Option<Self> {
        let (method, target, state, answers) = match request {
            ClientRequest::CallToolRequest(r) => (
                "tools/call",
                r.params.name.to_string(),
                r.params.request_state.take(),
                r.params.input_responses.take(),
            ),
            ClientRequest::GetPromptRequest(r) => (
                "prompts/get",
                r.params.name.clone(),
                r.params.request_state.take(),
                r.params.input_responses.take(),
            ),
            ClientRequest::ReadResourceRequest(r) => (
                "resources/read",
                r.params.uri.clone(),
                r.params.request_state.take(),
                r.params.input_responses.take(),
            ),
            _ => return None,
        };
        Some(Self {
            operation: Operation {
                method,
                target: format!("{}/{target}", backend.name()),
            },
            state,
            answers,
        })
    }
}

/// Puts a backend's own `requestState` and the answers for it back into the call.
fn round_params(
    request: &mut ClientRequest,
    state: Option<String>,
    answers: Option<InputResponses>,
) {
    match request {
        ClientRequest::CallToolRequest(r) => {
            r.params.request_state = state;
            r.params.input_responses = answers;
        }
        ClientRequest::GetPromptRequest(r) => {
            r.params.request_state = state;
            r.params.input_responses = answers;
        }
        ClientRequest::ReadResourceRequest(r) => {
            r.params.request_state = state;
            r.params.input_responses = answers;
        }
        _ => {}
    }
}

/// A `subscriptions/listen` stream that holds resource subscriptions,
/// released (upstream too) when the stream ends.
struct Listener {
    gateway: Arc<Gateway>,
    id: Arc<str>,
}

impl Listener {
    fn add(
        gateway: &Arc<Gateway>,
        request: &RequestContext<RoleServer>,
    ) -> Result<Self, ErrorData> {
        let id: Arc<str> = Arc::from(format!("listen-{}", gateway.next_listener()));
        let (added, released) =
            gateway
                .sessions
                .add_listener(&id, request.peer.clone(), request.id.clone());
        gateway.release_upstream(released);
        if !added {
            return Err(ErrorData::internal_error(
                "the gateway holds too many sessions to hold this stream's subscriptions",
                None,
            ));
        }
        Ok(Self {
            gateway: Arc::clone(gateway),
            id,
        })
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.gateway.session_closed(&self.id);
    }
}

fn cursor(request: &Option<PaginatedRequestParams>) -> Option<&str> {
    request.as_ref().and_then(|r| r.cursor.as_deref())
}

impl ServerHandler for GatewayHandler {
    fn get_info(&self) -> InitializeResult {
        let backends = self.gateway.backends();
        let declared: Vec<_> = backends
            .iter()
            .map(|backend| {
                let declared = backend
                    .peer()
                    .and_then(|peer| peer.peer_info())
                    .map(|info| info.capabilities.clone());
                (declared, backend.is_routable())
            })
            .collect();
        let capabilities = announced(declared.iter().map(|(declared, routable)| BackendOffer {
            declared: declared.as_ref(),
            routable: *routable,
        }));
        InitializeResult::new(capabilities).with_server_info(Implementation::new(
            self.gateway.config().name.clone(),
            env!("CARGO_PKG_VERSION"),
        ))
    }

    async fn discover(&self, _: RequestContext<RoleServer>) -> Result<DiscoverResult, ErrorData> {
        let mut info = self.get_info();
        // What the gateway cannot do for a 2026-07-28 client yet is not
        // offered to it: backend log messages (they are not tied to the
        // request that caused them).
        info.capabilities.logging = None;
        Ok(DiscoverResult::from_server_info(
            self.supported_protocol_versions().into_owned(),
            info,
        ))
    }

    fn supported_protocol_versions(&self) -> Cow<'static, [ProtocolVersion]> {
        Cow::Borrowed(ProtocolVersion::known_up_to(&ProtocolVersion::V_2026_07_28))
    }

    fn accepted_subscription_filter(
        &self,
        requested: &SubscriptionFilter,
    ) -> Option<SubscriptionFilter> {
        // List changes, and updates of the resources whose backend takes
        // subscriptions (at most as many as a session may hold).
        let mut accepted = requested.clone();
        accepted.resource_subscriptions = requested.resource_subscriptions.as_ref().map(|uris| {
            uris.iter()
                .filter(|uri| self.subscription_owner(uri).is_ok())
                .take(MAX_PER_SESSION)
                .cloned()
                .collect()
        });
        Some(accepted)
    }

    async fn listen(&self, context: SubscriptionContext) -> Result<(), ErrorData> {
        let mut changes = self.gateway.list_changes();
        let uris = context
            .accepted()
            .resource_subscriptions
            .clone()
            .unwrap_or_default();
        // Resource subscriptions are held like a session's, for as long as the stream lasts.
        let _listener = if uris.is_empty() {
            None
        } else {
            let request = context.request_context();
            let listener = Listener::add(&self.gateway, request)?;
            for uri in uris {
                self.subscribe_for(&listener.id, SubscribeRequestParams::new(uri), request)
                    .await?;
            }
            Some(listener)
        };
        loop {
            let changes = tokio::select! {
                () = context.cancelled() => return Ok(()),
                change = changes.recv() => match change {
                    Ok(changes) => changes,
                    // Missed some: every list may have changed.
                    Err(RecvError::Lagged(_)) => ListChanges { tools: true, prompts: true, resources: true },
                    Err(RecvError::Closed) => return Ok(()),
                },
            };
            let sink = context.sink();
            let accepted = sink.accepted();
            // A send fails only when the listener is gone; the next loop turn sees it.
            if changes.tools && accepted.tools_list_changed == Some(true) {
                let _ = sink.notify_tool_list_changed().await;
            }
            if changes.prompts && accepted.prompts_list_changed == Some(true) {
                let _ = sink.notify_prompt_list_changed().await;
            }
            if changes.resources && accepted.resources_list_changed == Some(true) {
                let _ = sink.notify_resource_list_changed().await;
            }
        }
    }

    async fn on_initialized(&self, context: NotificationContext<RoleServer>) {
        self.audit.record_notification(
            AuditEventType::McpInitialize,
            "notifications/initialized",
            &context.extensions,
            context.peer.peer_info(),
        );
        let session_id = session_id(&context.extensions);
        self.gateway
            .session_opened(session_id.as_deref(), context.peer);
    }

    async fn set_level(
        &self,
        request: SetLevelRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        let session = self.session(&context)?;
        let changed = self
            .gateway
            .sessions
            .set_log_level(&session, request.level)
            .map_err(|err| ErrorData::invalid_request(err.to_string(), None))?;
        if let Some(level) = changed {
            self.gateway.apply_log_level(level);
        }
        Ok(())
    }

    async fn subscribe(
        &self,
        request: SubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        let session = self.session(&context)?;
        self.subscribe_for(&session, request, &context).await
    }

    async fn unsubscribe(
        &self,
        request: UnsubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        let session = self.session(&context)?;
        if let Upstream::Unsubscribe(backend) =
            self.gateway.sessions.unsubscribe(&session, &request.uri)
        {
            // The session no longer gets updates either way; a failure
            // upstream only leaves the backend sending updates nobody relays.
            self.gateway
                .unsubscribe_upstream(vec![(backend, request.uri)]);
        }
        Ok(())
    }

    async fn on_roots_list_changed(&self, context: NotificationContext<RoleServer>) {
        let Some(session) = session_id(&context.extensions) else {
            return;
        };
        for name in self.gateway.sessions.roots_askers(&session) {
            let Some(peer) = self.gateway.backend(&name).and_then(|b| b.peer()) else {
                continue;
            };
            tokio::spawn(async move {
                let _ = peer.notify_roots_list_changed().await;
            });
        }
    }

    async fn list_tools(
        &self,
        request: Option<PaginatedRequestParams>,
        mut context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let kind = AuditEventType::McpToolsList;
        let audit = self.begin_audit(kind, "tools/list", server_target(), &mut context, || None);
        let result = self.serve_list_tools(request, context).await;
        audit.finish(&result);
        result
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        mut context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let target = named_target("tool", &request.name);
        let arguments = || request.arguments.clone().map(Value::Object);
        let kind = AuditEventType::McpToolCall;
        let audit = self.begin_audit(kind, "tools/call", target, &mut context, arguments);
        let result = self.serve_call_tool(request, context).await;
        audit.finish(&result);
        result
    }

    async fn list_prompts(
        &self,
        request: Option<PaginatedRequestParams>,
        mut context: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, ErrorData> {
        let kind = AuditEventType::McpPromptsList;
        let audit = self.begin_audit(kind, "prompts/list", server_target(), &mut context, || None);
        let result = self.serve_list_prompts(request, context).await;
        audit.finish(&result);
        result
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        mut context: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, ErrorData> {
        let target = named_target("prompt", &request.name);
        let arguments = || request.arguments.clone().map(Value::Object);
        let kind = AuditEventType::McpPromptGet;
        let audit = self.begin_audit(kind, "prompts/get", target, &mut context, arguments);
        let result = self.serve_get_prompt(request, context).await;
        audit.finish(&result);
        result
    }

    async fn list_resources(
        &self,
        request: Option<PaginatedRequestParams>,
        mut context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        let kind = AuditEventType::McpResourcesList;
        let audit = self.begin_audit(
            kind,
            "resources/list",
            server_target(),
            &mut context,
            || None,
        );
        let result = self.serve_list_resources(request, context).await;
        audit.finish(&result);
        result
    }

    async fn list_resource_templates(
        &self,
        request: Option<PaginatedRequestParams>,
        mut context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        let kind = AuditEventType::McpResourcesList;
        let method = "resources/templates/list";
        let audit = self.begin_audit(kind, method, server_target(), &mut context, || None);
        let result = self.serve_list_resource_templates(request, context).await;
        audit.finish(&result);
        result
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        mut context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        let target = resource_target(&request.uri);
        let kind = AuditEventType::McpResourceRead;
        let audit = self.begin_audit(kind, "resources/read", target, &mut context, || None);
        let result = self.serve_read_resource(request, context).await;
        audit.finish(&result);
        result
    }

    async fn complete(
        &self,
        request: CompleteRequestParams,
        mut context: RequestContext<RoleServer>,
    ) -> Result<CompleteResult, ErrorData> {
        let target = match &request.r#ref {
            Reference::Prompt(prompt) => named_target("prompt", &prompt.name),
            Reference::Resource(resource) => resource_target(&resource.uri),
            _ => server_target(),
        };
        let argument = || serde_json::to_value(&request.argument).ok();
        let kind = AuditEventType::McpCompletion;
        let audit = self.begin_audit(kind, "completion/complete", target, &mut context, argument);
        let result = self.serve_complete(request, context).await;
        audit.finish(&result);
        result
    }
}

/// The audited operations: each is served by its `serve_*` method here and
/// recorded by the trait method of the same name above.
impl GatewayHandler {
    /// Starts the audit observation of the request in `context`.
    fn begin_audit(
        &self,
        kind: AuditEventType,
        method: &'static str,
        target: audit::event::Target,
        context: &mut RequestContext<RoleServer>,
        params: impl FnOnce() -> Option<Value>,
    ) -> audit::Pending {
        let client = context.peer.peer_info();
        self.audit.begin(
            kind,
            method,
            target,
            &mut context.extensions,
            client,
            params,
        )
    }

    async fn serve_list_tools(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        self.check_partial_failure()?;
        let catalogue = self.gateway.catalogue();
        let visible = self.access(&context).tools(&catalogue);
        let (tools, next) = page(&visible, cursor(&request), self.page_size())?;
        let mut result = ListToolsResult::with_all_items(tools);
        result.next_cursor = next;
        Ok(result)
    }

    async fn serve_call_tool(
        &self,
        mut request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let catalogue = self.gateway.catalogue();
        let route = catalogue.route_tool(&request.name).ok_or_else(|| {
            let owner = self
                .gateway
                .known_catalogue()
                .route_tool(&request.name)
                .map(|r| r.backend.clone());
            self.not_routable(owner, format!("unknown tool: {}", echoed(&request.name)))
        })?;
        self.access(&context)
            .check_call(&catalogue, &request.name, &route.backend)?;
        let backend = self.backend(&route.backend, || {
            ErrorData::invalid_params(format!("unknown tool: {}", echoed(&request.name)), None)
        })?;
        request.name = Cow::Owned(route.name.clone());
        drop(catalogue);
        match self
            .forward(
                &backend,
                ClientRequest::CallToolRequest(CallToolRequest::new(request)),
                &context,
            )
            .await?
        {
            ServerResult::CallToolResult(result) => Ok(CallToolResponse::Complete(result)),
            ServerResult::InputRequiredResult(result) => {
                Ok(CallToolResponse::InputRequired(result))
            }
            _ => Err(ForwardError::unexpected(&backend).into()),
        }
    }

    async fn serve_list_prompts(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, ErrorData> {
        self.check_partial_failure()?;
        let catalogue = self.gateway.catalogue();
        let visible = self.access(&context).prompts(&catalogue);
        let (prompts, next) = page(&visible, cursor(&request), self.page_size())?;
        let mut result = ListPromptsResult::with_all_items(prompts);
        result.next_cursor = next;
        Ok(result)
    }

    async fn serve_get_prompt(
        &self,
        mut request: GetPromptRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, ErrorData> {
        let catalogue = self.gateway.catalogue();
        let route = catalogue.route_prompt(&request.name).ok_or_else(|| {
            let owner = self
                .gateway
                .known_catalogue()
                .route_prompt(&request.name)
                .map(|r| r.backend.clone());
            self.not_routable(owner, format!("unknown prompt: {}", echoed(&request.name)))
        })?;
        self.access(&context)
            .check(Access::GetPrompt, &target(&request.name, &route.backend))?;
        let backend = self.backend(&route.backend, || {
            ErrorData::invalid_params(format!("unknown prompt: {}", echoed(&request.name)), None)
        })?;
        request.name = route.name.clone();
        drop(catalogue);
        match self
            .forward(
                &backend,
                ClientRequest::GetPromptRequest(GetPromptRequest::new(request)),
                &context,
            )
            .await?
        {
            ServerResult::GetPromptResult(result) => Ok(GetPromptResponse::Complete(result)),
            ServerResult::InputRequiredResult(result) => {
                Ok(GetPromptResponse::InputRequired(result))
            }
            _ => Err(ForwardError::unexpected(&backend).into()),
        }
    }

    async fn serve_list_resources(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        self.check_partial_failure()?;
        let catalogue = self.gateway.catalogue();
        let visible = self.access(&context).resources(&catalogue);
        let (resources, next) = page(&visible, cursor(&request), self.page_size())?;
        let mut result = ListResourcesResult::with_all_items(resources);
        result.next_cursor = next;
        Ok(result)
    }

    async fn serve_list_resource_templates(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        self.check_partial_failure()?;
        let catalogue = self.gateway.catalogue();
        let visible = self.access(&context).templates(&catalogue);
        let (templates, next) = page(&visible, cursor(&request), self.page_size())?;
        let mut result = ListResourceTemplatesResult::with_all_items(templates);
        result.next_cursor = next;
        Ok(result)
    }

    async fn serve_read_resource(
        &self,
        request: ReadResourceRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        self.check_uri_length(&request.uri)?;
        let backend = self.resource_owner(&request.uri)?;
        self.access(&context)
            .check(Access::ReadResource, &target(&request.uri, backend.name()))?;
        match self
            .forward(
                &backend,
                ClientRequest::ReadResourceRequest(ReadResourceRequest::new(request)),
                &context,
            )
            .await?
        {
            ServerResult::ReadResourceResult(result) => Ok(ReadResourceResponse::Complete(result)),
            ServerResult::InputRequiredResult(result) => {
                Ok(ReadResourceResponse::InputRequired(result))
            }
            _ => Err(ForwardError::unexpected(&backend).into()),
        }
    }

    async fn serve_complete(
        &self,
        mut request: CompleteRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CompleteResult, ErrorData> {
        let catalogue = self.gateway.catalogue();
        let owner = match &mut request.r#ref {
            Reference::Prompt(prompt) => {
                let route = catalogue.route_prompt(&prompt.name).ok_or_else(|| {
                    ErrorData::invalid_params(
                        format!("unknown prompt: {}", echoed(&prompt.name)),
                        None,
                    )
                })?;
                // Completions reveal a prompt's arguments: as private as the prompt.
                self.access(&context)
                    .check(Access::GetPrompt, &target(&prompt.name, &route.backend))?;
                prompt.name = route.name.clone();
                route.backend.clone()
            }
            Reference::Resource(resource) => {
                self.check_uri_length(&resource.uri)?;
                let owner = catalogue
                    .route_template(&resource.uri)
                    .or_else(|| catalogue.route_resource(&resource.uri))
                    .cloned()
                    .ok_or_else(|| {
                        ErrorData::invalid_params(
                            format!("unknown resource template: {}", echoed(&resource.uri)),
                            None,
                        )
                    })?;
                self.access(&context)
                    .check(Access::ReadResource, &target(&resource.uri, &owner))?;
                owner
            }
            _ => {
                return Err(ErrorData::invalid_params(
                    "unsupported completion reference",
                    None,
                ));
            }
        };
        let backend = self.backend(&owner, || {
            ErrorData::invalid_params("unknown completion reference", None)
        })?;
        drop(catalogue);
        match self
            .forward(
                &backend,
                ClientRequest::CompleteRequest(CompleteRequest::new(request)),
                &context,
            )
            .await?
        {
            ServerResult::CompleteResult(result) => Ok(result),
            _ => Err(ForwardError::unexpected(&backend).into()),
        }
    }
}

/// The target of an operation on the gateway as a whole (lists).
fn server_target() -> audit::event::Target {
    audit::event::Target {
        kind: "server",
        ..Default::default()
    }
}

/// A tool or prompt, by the name the client used.
fn named_target(kind: &'static str, name: &str) -> audit::event::Target {
    audit::event::Target {
        kind,
        name: Some(name.to_string()),
        uri: None,
    }
}

/// A resource, by URI.
fn resource_target(uri: &str) -> audit::event::Target {
    audit::event::Target {
        kind: "resource",
        name: None,
        uri: Some(uri.to_string()),
    }
}
