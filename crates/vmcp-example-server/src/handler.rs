//! The MCP request handler: a hand-written [`ServerHandler`] over the
//! [`catalogue`](crate::catalogue), so that the tool list can change while
//! the server runs.

use std::{
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use rmcp::{
    ErrorData as McpError, Peer, RoleServer, ServerHandler,
    model::{
        CallToolRequestParams, CallToolResponse, CallToolResult, CompleteRequestParams,
        CompleteResult, CompletionInfo, GetPromptRequestParams, GetPromptResponse, GetPromptResult,
        Implementation, ListPromptsResult, ListResourceTemplatesResult, ListResourcesResult,
        ListToolsResult, PaginatedRequestParams, ProgressNotificationParam, PromptMessage,
        ReadResourceRequestParams, ReadResourceResponse, ReadResourceResult, Reference,
        ResourceContents, Role, ServerCapabilities, ServerConfig, SubscriptionFilter, Tool,
    },
    service::{NotificationContext, RequestContext, SubscriptionContext},
};
use serde_json::{Value, json};
use tokio::{sync::broadcast, time::Instant};

use crate::catalogue::{self, tool_names};

/// Options of an [`ExampleServer`] beyond its name.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ServerOptions {
    /// Offer the latency control tools `set_latency` and `set_call_latency`
    /// (for tests of health checks and timeouts; off by default).
    pub latency_tools: bool,
}

/// The example MCP server.
///
/// Clones share their state (whether `extra` is on, the connected peers),
/// which is what the streamable HTTP service needs: it builds one handler per
/// session or per stateless request from a factory that clones this value.
/// Create a separate server with [`ExampleServer::new`].
#[derive(Clone, Debug)]
pub struct ExampleServer {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    name: String,
    extra_enabled: AtomicBool,
    /// Peers of sessions that went through `initialize`; they receive
    /// `notifications/tools/list_changed` directly. Closed ones are pruned
    /// lazily.
    session_peers: Mutex<Vec<Peer<RoleServer>>>,
    /// Wakes the open `subscriptions/listen` streams (protocol 2026-07-28,
    /// which has no sessions) when the tool list changes.
    tools_changed: broadcast::Sender<()>,
    slow_calls_cancelled: AtomicU64,
    options: ServerOptions,
    /// Added to every answer except `initialize` and the latency tools.
    latency_millis: AtomicU64,
    /// Added to tool calls only.
    call_latency_millis: AtomicU64,
}

impl ExampleServer {
    /// A server whose instance is called `name` (what `whoami` returns and
    /// what the info resource URI contains).
    pub fn new(name: impl Into<String>) -> Self {
        Self::with_options(name, ServerOptions::default())
    }

    /// A server called `name` with the given options.
    pub fn with_options(name: impl Into<String>, options: ServerOptions) -> Self {
        let (tools_changed, _) = broadcast::channel(16);
        Self {
            shared: Arc::new(Shared {
                name: name.into(),
                extra_enabled: AtomicBool::new(false),
                session_peers: Mutex::new(Vec::new()),
                tools_changed,
                slow_calls_cancelled: AtomicU64::new(0),
                options,
                latency_millis: AtomicU64::new(0),
                call_latency_millis: AtomicU64::new(0),
            }),
        }
    }

    /// The instance name.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// Whether the `extra` tool is currently listed.
    pub fn extra_enabled(&self) -> bool {
        self.shared.extra_enabled.load(Ordering::SeqCst)
    }

    /// How many `slow` calls stopped early because they were cancelled; lets
    /// tests check that a cancellation reached the server.
    pub fn slow_calls_cancelled(&self) -> u64 {
        self.shared.slow_calls_cancelled.load(Ordering::SeqCst)
    }

    /// The delay added to every answer (`ping` included) except `initialize`
    /// and the latency tools themselves.
    pub fn latency(&self) -> Duration {
        Duration::from_millis(self.shared.latency_millis.load(Ordering::SeqCst))
    }

    /// Sets [`Self::latency`] (what the `set_latency` tool does).
    pub fn set_latency(&self, latency: Duration) {
        let millis = u64::try_from(latency.as_millis()).unwrap_or(u64::MAX);
        self.shared.latency_millis.store(millis, Ordering::SeqCst);
        tracing::info!(millis, "latency set");
    }

    /// The delay added to tool calls only, on top of [`Self::latency`].
    pub fn call_latency(&self) -> Duration {
        Duration::from_millis(self.shared.call_latency_millis.load(Ordering::SeqCst))
    }

    /// Sets [`Self::call_latency`] (what the `set_call_latency` tool does).
    pub fn set_call_latency(&self, latency: Duration) {
        let millis = u64::try_from(latency.as_millis()).unwrap_or(u64::MAX);
        self.shared
            .call_latency_millis
            .store(millis, Ordering::SeqCst);
        tracing::info!(millis, "tool call latency set");
    }

    /// Waits for the configured latency (plus `extra`) before an answer; a
    /// cancelled request stops waiting (its answer is dropped anyway).
    async fn delay(&self, extra: Duration, context: &RequestContext<RoleServer>) {
        let total = self.latency().saturating_add(extra);
        if total.is_zero() {
            return;
        }
        tokio::select! {
            () = tokio::time::sleep(total) => {}
            () = context.ct.cancelled() => {}
        }
    }

    /// Handles `set_latency` and `set_call_latency`.
    fn latency_tool(
        &self,
        name: &str,
        arguments: Option<rmcp::model::JsonObject>,
    ) -> CallToolResult {
        let args = match catalogue::parse_args::<catalogue::LatencyArgs>(name, arguments) {
            Ok(args) => args,
            Err(message) => return catalogue::error_result(message),
        };
        if args.millis > catalogue::MAX_LATENCY_MILLIS {
            return catalogue::error_result(format!(
                "millis must be at most {}",
                catalogue::MAX_LATENCY_MILLIS
            ));
        }
        let latency = Duration::from_millis(args.millis);
        if name == tool_names::SET_LATENCY {
            self.set_latency(latency);
            catalogue::text_result(format!("latency set to {} ms", args.millis))
        } else {
            self.set_call_latency(latency);
            catalogue::text_result(format!("tool call latency set to {} ms", args.millis))
        }
    }

    /// Flip the `extra` tool and tell every connected peer; returns whether
    /// `extra` is now on.
    pub fn toggle_extra(&self) -> bool {
        let enabled = !self.shared.extra_enabled.fetch_xor(true, Ordering::SeqCst);
        tracing::info!(enabled, "toggled the extra tool");
        self.announce_tools_changed();
        enabled
    }

    fn announce_tools_changed(&self) {
        // An error only means that no listen stream is open.
        let _ = self.shared.tools_changed.send(());
        let peers = {
            let mut peers = self
                .shared
                .session_peers
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            peers.retain(|peer| !peer.is_transport_closed());
            peers.clone()
        };
        // Sent from separate tasks: a slow or stuck session must not hold up
        // the tool call that caused the change, nor the other sessions.
        for peer in peers {
            tokio::spawn(async move {
                if let Err(error) = peer.notify_tool_list_changed().await {
                    tracing::debug!(%error, "could not send tools/list_changed");
                }
            });
        }
    }

    fn register_session_peer(&self, peer: Peer<RoleServer>) {
        let mut peers = self
            .shared
            .session_peers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        peers.retain(|peer| !peer.is_transport_closed());
        peers.push(peer);
    }

    async fn slow(&self, millis: u64, context: &RequestContext<RoleServer>) -> CallToolResult {
        if millis > catalogue::MAX_SLOW_MILLIS {
            return catalogue::error_result(format!(
                "millis must be at most {}",
                catalogue::MAX_SLOW_MILLIS
            ));
        }
        let progress_token = context.meta.get_progress_token();
        let start = Instant::now();
        let done = tokio::time::sleep_until(start + std::time::Duration::from_millis(millis));
        tokio::pin!(done);
        let mut ticks = tokio::time::interval_at(
            start + catalogue::PROGRESS_INTERVAL,
            catalogue::PROGRESS_INTERVAL,
        );
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                biased;
                () = context.ct.cancelled() => {
                    self.shared.slow_calls_cancelled.fetch_add(1, Ordering::SeqCst);
                    let elapsed = start.elapsed().as_millis();
                    tracing::info!(millis, elapsed, "slow call cancelled");
                    // rmcp drops the response to a cancelled request; this
                    // result only matters if the cancellation raced the end.
                    return catalogue::error_result(format!("cancelled after {elapsed} ms"));
                }
                () = &mut done => break,
                _ = ticks.tick() => {
                    let Some(token) = &progress_token else { continue };
                    let elapsed = start.elapsed().as_millis().min(u128::from(millis));
                    let progress = ProgressNotificationParam::new(token.clone(), elapsed as f64)
                        .with_total(millis as f64)
                        .with_message(format!("slept {elapsed} of {millis} ms"));
                    if let Err(error) = context.peer.notify_progress(progress).await {
                        tracing::debug!(%error, "could not send progress");
                    }
                }
            }
        }
        catalogue::text_result(format!("slept {millis} ms"))
    }
}

impl Default for ExampleServer {
    fn default() -> Self {
        Self::new(catalogue::DEFAULT_INSTANCE_NAME)
    }
}

impl ServerHandler for ExampleServer {
    fn get_info(&self) -> ServerConfig {
        let capabilities = ServerCapabilities::builder()
            .enable_completions()
            .enable_prompts()
            .enable_resources()
            .enable_tools()
            .enable_tool_list_changed()
            .build();
        ServerConfig::new(capabilities)
            .with_server_info(
                Implementation::new(catalogue::SERVER_NAME, env!("CARGO_PKG_VERSION"))
                    .with_title(self.name()),
            )
            .with_instructions(format!(
                "Example MCP server instance \"{}\": tools echo, add, whoami, slow, fail and \
                 toggle_extra{}; resources {} and {}; prompt greet.",
                self.name(),
                if self.shared.options.latency_tools {
                    ", plus set_latency and set_call_latency"
                } else {
                    ""
                },
                catalogue::info_uri(self.name()),
                catalogue::ITEM_URI_TEMPLATE,
            ))
    }

    async fn ping(&self, context: RequestContext<RoleServer>) -> Result<(), McpError> {
        self.delay(Duration::ZERO, &context).await;
        Ok(())
    }

    async fn on_initialized(&self, context: NotificationContext<RoleServer>) {
        tracing::debug!("session initialized");
        self.register_session_peer(context.peer);
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        self.delay(Duration::ZERO, &context).await;
        let mut tools = catalogue::tools(self.extra_enabled());
        if self.shared.options.latency_tools {
            tools.extend(catalogue::latency_tools());
        }
        Ok(ListToolsResult::with_all_items(tools))
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        catalogue::tool(name, self.extra_enabled()).or_else(|| {
            self.shared
                .options
                .latency_tools
                .then(|| {
                    catalogue::latency_tools()
                        .into_iter()
                        .find(|tool| tool.name == name)
                })
                .flatten()
        })
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        use catalogue::{
            AddArgs, EchoArgs, NoArgs, SlowArgs, error_result, parse_args, text_result,
        };

        let name = request.name.as_ref();
        let arguments = request.arguments;
        if self.shared.options.latency_tools
            && matches!(name, tool_names::SET_LATENCY | tool_names::SET_CALL_LATENCY)
        {
            // Never delayed: a test must be able to turn a long latency off.
            return Ok(self.latency_tool(name, arguments).into());
        }
        self.delay(self.call_latency(), &context).await;
        let result = match name {
            tool_names::ECHO => {
                parse_args::<EchoArgs>(name, arguments).map(|args| text_result(args.text))
            }
            tool_names::ADD => parse_args::<AddArgs>(name, arguments).map(|args| {
                match catalogue::sum(&args.a, &args.b) {
                    Some(sum) => CallToolResult::structured(json!({ "sum": sum })),
                    None => error_result("the sum is not a finite number"),
                }
            }),
            tool_names::WHOAMI => {
                parse_args::<NoArgs>(name, arguments).map(|_| text_result(self.name()))
            }
            tool_names::SLOW => match parse_args::<SlowArgs>(name, arguments) {
                Ok(args) => Ok(self.slow(args.millis, &context).await),
                Err(message) => Err(message),
            },
            tool_names::FAIL => parse_args::<NoArgs>(name, arguments)
                .map(|_| error_result("this tool always fails")),
            tool_names::TOGGLE_EXTRA => parse_args::<NoArgs>(name, arguments).map(|_| {
                if self.toggle_extra() {
                    text_result("the extra tool is now listed")
                } else {
                    text_result("the extra tool is no longer listed")
                }
            }),
            tool_names::EXTRA if self.extra_enabled() => parse_args::<NoArgs>(name, arguments)
                .map(|_| text_result(format!("extra tool of {}", self.name()))),
            _ => return Err(unknown_tool(name)),
        };
        Ok(result.unwrap_or_else(error_result).into())
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, McpError> {
        self.delay(Duration::ZERO, &context).await;
        Ok(ListResourcesResult::with_all_items(vec![
            catalogue::info_resource(self.name()),
        ]))
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, McpError> {
        self.delay(Duration::ZERO, &context).await;
        Ok(ListResourceTemplatesResult::with_all_items(vec![
            catalogue::item_template(),
        ]))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, McpError> {
        self.delay(Duration::ZERO, &context).await;
        let uri = request.uri;
        let text = if uri == catalogue::info_uri(self.name()) {
            catalogue::info_text(self.name())
        } else if let Some(text) = catalogue::item_text(&uri) {
            text
        } else {
            return Err(McpError::resource_not_found(
                format!("no resource at {uri}"),
                Some(json!({ "uri": uri })),
            ));
        };
        Ok(ReadResourceResult::new(vec![ResourceContents::text(text, uri)]).into())
    }

    async fn list_prompts(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, McpError> {
        self.delay(Duration::ZERO, &context).await;
        Ok(ListPromptsResult::with_all_items(vec![
            catalogue::greet_prompt(),
        ]))
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, McpError> {
        self.delay(Duration::ZERO, &context).await;
        if request.name != catalogue::GREET_PROMPT {
            return Err(McpError::invalid_params(
                format!("unknown prompt: {}", request.name),
                None,
            ));
        }
        let name = request
            .arguments
            .as_ref()
            .and_then(|arguments| arguments.get("name"))
            .and_then(Value::as_str)
            .ok_or_else(|| {
                McpError::invalid_params("the greet prompt needs a string argument `name`", None)
            })?;
        let result = GetPromptResult::new(vec![PromptMessage::new_text(
            Role::User,
            catalogue::greeting(name),
        )])
        .with_description(format!("A greeting for {name}"));
        Ok(result.into())
    }

    async fn complete(
        &self,
        request: CompleteRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CompleteResult, McpError> {
        self.delay(Duration::ZERO, &context).await;
        let values = match &request.r#ref {
            Reference::Prompt(prompt)
                if prompt.name == catalogue::GREET_PROMPT && request.argument.name == "name" =>
            {
                catalogue::complete_greet_name(&request.argument.value)
            }
            _ => Vec::new(),
        };
        let completion = CompletionInfo::with_all_values(values)
            .map_err(|message| McpError::internal_error(message, None))?;
        Ok(CompleteResult::new(completion))
    }

    fn accepted_subscription_filter(
        &self,
        _requested: &SubscriptionFilter,
    ) -> Option<SubscriptionFilter> {
        Some(SubscriptionFilter::builder().tools_list_changed().build())
    }

    async fn listen(&self, context: SubscriptionContext) -> Result<(), McpError> {
        let mut changes = self.shared.tools_changed.subscribe();
        if context.accepted().tools_list_changed != Some(true) {
            // Nothing this server could send: hold the stream until it ends.
            context.cancelled().await;
            return Ok(());
        }
        loop {
            tokio::select! {
                () = context.cancelled() => return Ok(()),
                change = changes.recv() => {
                    // Lagging only means several changes collapsed into one.
                    if let Err(broadcast::error::RecvError::Closed) = change {
                        return Ok(());
                    }
                    if let Err(error) = context.sink().notify_tool_list_changed().await {
                        tracing::debug!(%error, "subscription closed");
                        return Ok(());
                    }
                }
            }
        }
    }
}

fn unknown_tool(name: &str) -> McpError {
    McpError::invalid_params(
        format!("unknown tool: {name}"),
        Some(json!({ "name": name })),
    )
}
