//! Shared helpers for the integration tests that drive the gateway with
//! rmcp's client: an in-process gateway on a loopback port, in-process
//! example-server backends that record every HTTP request reaching them,
//! the real peers (server-everything over stdio, the official Python SDK
//! backend over SSE) and polling with deadlines.
//!
//! Missing peers are failures with a message saying how to install them
//! (`scripts/install-peers.sh`), never skips.

#![allow(dead_code)] // not every test binary uses every helper

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::serve::{ListenerExt, TapIo};
use rmcp::model::{
    CallToolRequestParams, CallToolResult, ErrorData, JsonObject, PaginatedRequestParams,
    ProgressNotificationParam, ProgressToken,
};
use rmcp::service::{NotificationContext, RoleClient, RunningService, ServiceError};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::{ClientHandler, ServiceExt};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::time::Instant;
use tokio_util::sync::{CancellationToken, DropGuard};
use vmcp_example_server::ExampleServer;
use vmcp_gateway::server::{HttpOptions, router};
use vmcp_gateway::{Gateway, GatewayOptions};

/// How long any single wait in these tests may take before it fails.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// The loopback address every server in these tests binds.
pub const LOOPBACK: &str = "127.0.0.1";

/// The example server's tools (without `extra`, which is toggled).
pub const EXAMPLE_TOOLS: &[&str] = &["echo", "add", "whoami", "slow", "fail", "toggle_extra"];

/// The Python backend's tools (without `extra`).
pub const PY_TOOLS: &[&str] = &[
    "echo",
    "add",
    "whoami",
    "slow",
    "fail",
    "stats",
    "toggle_extra",
    "ask_llm",
    "ask_user",
    "ask_url",
    "my_roots",
    "log_all",
    "touch",
    "upstream_state",
    "refuse_subscribe",
];

/// Tools server-everything registers for every client (it may add more,
/// depending on the client's capabilities).
pub const EVERYTHING_CORE_TOOLS: &[&str] = &[
    "echo",
    "get-annotated-message",
    "get-env",
    "get-resource-links",
    "get-resource-reference",
    "get-structured-content",
    "get-sum",
    "get-tiny-image",
    "gzip-file-as-resource",
    "toggle-simulated-logging",
    "toggle-subscriber-updates",
    "trigger-long-running-operation",
];

/// The prompts server-everything offers.
pub const EVERYTHING_PROMPTS: &[&str] = &[
    "simple-prompt",
    "args-prompt",
    "completable-prompt",
    "resource-prompt",
];

/// A set of owned strings.
pub fn set<I, S>(items: I) -> BTreeSet<String>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    items.into_iter().map(|s| s.as_ref().to_owned()).collect()
}

// ---------------------------------------------------------------------------
// waiting

/// Polls `check` every 25 ms until it yields a value; fails with `what`
/// after `within`.
pub async fn eventually<T>(
    within: Duration,
    what: &str,
    mut check: impl AsyncFnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Runs `future` and fails with `what` if it takes longer than [`DEADLINE`].
pub async fn within_deadline<F: Future>(what: &str, future: F) -> F::Output {
    tokio::time::timeout(DEADLINE, future)
        .await
        .unwrap_or_else(|_| panic!("timed out after {DEADLINE:?}: {what}"))
}

/// A free TCP port on the loopback interface (nothing listens on it once
/// this returns).
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind((LOOPBACK, 0)).expect("bind a loopback port");
    listener.local_addr().expect("bound address").port()
}

/// A listener on a free loopback port whose connections have Nagle off (as
/// the real servers do: small SSE frames must not wait for delayed ACKs),
/// and its port.
async fn bind_loopback() -> (NoDelayListener, u16) {
    let listener = tokio::net::TcpListener::bind((LOOPBACK, 0))
        .await
        .expect("bind a loopback port");
    let port = listener.local_addr().expect("bound address").port();
    let nodelay: fn(&mut tokio::net::TcpStream) = |stream| {
        let _ = stream.set_nodelay(true);
    };
    (listener.tap_io(nodelay), port)
}

type NoDelayListener = TapIo<tokio::net::TcpListener, fn(&mut tokio::net::TcpStream)>;

// ---------------------------------------------------------------------------
// the peers

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn require_file(path: &Path, what: &str) {
    assert!(
        path.is_file(),
        "{what} is missing: {} does not exist. Install the test peers with scripts/install-peers.sh",
        path.display()
    );
}

/// The backend config of `@modelcontextprotocol/server-everything` over
/// stdio (the real npm peer); fails when it or `node` is missing.
pub fn everything_stdio(name: &str) -> Value {
    let script = repo_root()
        .join("tests/peers/node_modules/@modelcontextprotocol/server-everything/dist/index.js");
    require_file(&script, "server-everything (npm peer)");
    let node = std::process::Command::new("node")
        .arg("--version")
        .stdin(Stdio::null())
        .output();
    assert!(
        node.as_ref().is_ok_and(|out| out.status.success()),
        "`node --version` failed ({node:?}): Node.js is needed to run server-everything"
    );
    json!({
        "name": name,
        "transport": "stdio",
        "command": "node",
        "args": [script.to_string_lossy(), "stdio"],
    })
}

/// Output of a child process, kept for failure messages.
#[derive(Clone, Default)]
pub struct OutputLog(Arc<Mutex<Vec<String>>>);

impl OutputLog {
    fn follow(&self, stream: impl AsyncRead + Unpin + Send + 'static) {
        let log = self.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stream).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let mut lines = lock(&log.0);
                lines.push(line);
                if lines.len() > 200 {
                    lines.remove(0);
                }
            }
        });
    }

    /// The last lines written.
    pub fn tail(&self) -> String {
        lock(&self.0).join("\n")
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// `tests/peers/py_backend.py` (the official Python MCP SDK) over the
/// legacy HTTP+SSE transport, as a child process on a loopback port. It is
/// killed when dropped.
pub struct PyBackend {
    /// Its `--name` (what `whoami` returns).
    pub name: String,
    /// Its port on 127.0.0.1.
    pub port: u16,
    child: tokio::process::Child,
    /// What it printed.
    pub output: OutputLog,
}

impl PyBackend {
    /// Starts it and waits (with a deadline) until its port accepts connections.
    pub async fn start_sse(name: &str) -> Self {
        let python = repo_root().join(".cache/venv/bin/python");
        let script = repo_root().join("tests/peers/py_backend.py");
        require_file(&python, "the Python venv with the official MCP SDK");
        require_file(&script, "the Python test backend");
        let port = free_port();
        let mut child = tokio::process::Command::new(&python)
            .arg(&script)
            .args(["--transport", "sse", "--port", &port.to_string()])
            .args(["--name", name])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|err| panic!("cannot start {}: {err}", python.display()));
        let output = OutputLog::default();
        output.follow(child.stdout.take().expect("piped stdout"));
        output.follow(child.stderr.take().expect("piped stderr"));
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = child.try_wait().expect("poll the Python backend") {
                panic!(
                    "py_backend {name} exited with {status} before listening:\n{}",
                    output.tail()
                );
            }
            if tokio::net::TcpStream::connect((LOOPBACK, port))
                .await
                .is_ok()
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "py_backend {name} did not listen on {LOOPBACK}:{port} within 30s:\n{}",
                output.tail()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Self {
            name: name.to_owned(),
            port,
            child,
            output,
        }
    }

    /// Its SSE endpoint.
    pub fn sse_url(&self) -> String {
        format!("http://{LOOPBACK}:{}/sse", self.port)
    }

    /// Its backend entry in a gateway config.
    pub fn config(&self) -> Value {
        json!({"name": self.name, "transport": "sse", "url": self.sse_url()})
    }
}

/// One HTTP request that reached an [`ExampleBackend`].
#[derive(Clone, Debug)]
pub struct SeenRequest {
    /// HTTP method.
    pub method: Method,
    /// Its headers.
    pub headers: HeaderMap,
    /// The JSON body, if there was one.
    pub body: Option<Value>,
}

impl SeenRequest {
    /// The JSON-RPC messages in the body (a batch is expanded).
    pub fn messages(&self) -> Vec<&Value> {
        match &self.body {
            Some(Value::Array(batch)) => batch.iter().collect(),
            Some(message) => vec![message],
            None => Vec::new(),
        }
    }
}

type Required = Option<(HeaderName, HeaderValue)>;

/// The project's example server, served in this process over Streamable
/// HTTP on a loopback port, behind a layer that records every request (and
/// optionally refuses those without a given header, with 401).
pub struct ExampleBackend {
    /// The server: its counters and `toggle_extra` are visible to the test.
    pub server: ExampleServer,
    /// Its port on 127.0.0.1.
    pub port: u16,
    requests: Arc<Mutex<Vec<SeenRequest>>>,
    _stop: DropGuard,
}

impl ExampleBackend {
    /// An example server whose instance name is `name`.
    pub async fn start(name: &str) -> Self {
        Self::serve(name, None).await
    }

    /// Like [`ExampleBackend::start`], but every request without
    /// `header: value` is refused with 401.
    pub async fn start_requiring_header(name: &str, header: &str, value: &str) -> Self {
        let header = HeaderName::from_bytes(header.as_bytes()).expect("a valid header name");
        let value = HeaderValue::from_str(value).expect("a valid header value");
        Self::serve(name, Some((header, value))).await
    }

    async fn serve(name: &str, required: Required) -> Self {
        let server = ExampleServer::new(name);
        let stop = CancellationToken::new();
        let requests: Arc<Mutex<Vec<SeenRequest>>> = Arc::default();
        let app = vmcp_example_server::transports::router(
            server.clone(),
            &vmcp_example_server::transports::HttpOptions::default(),
            stop.clone(),
        )
        .layer(middleware::from_fn({
            let requests = requests.clone();
            move |request, next| record(requests.clone(), required.clone(), request, next)
        }));
        let (listener, port) = bind_loopback().await;
        tokio::spawn(
            axum::serve(listener, app)
                .with_graceful_shutdown(stop.clone().cancelled_owned())
                .into_future(),
        );
        Self {
            server,
            port,
            requests,
            _stop: stop.drop_guard(),
        }
    }

    /// Its MCP endpoint.
    pub fn url(&self) -> String {
        format!("http://{LOOPBACK}:{}/mcp", self.port)
    }

    /// Its backend entry in a gateway config, under `name`.
    pub fn config(&self, name: &str) -> Value {
        json!({"name": name, "transport": "streamable-http", "url": self.url()})
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<SeenRequest> {
        lock(&self.requests).clone()
    }

    /// The `params` of every JSON-RPC request or notification with `method`
    /// received so far, in order.
    pub fn rpc_params(&self, method: &str) -> Vec<Value> {
        self.requests()
            .iter()
            .flat_map(|request| {
                request
                    .messages()
                    .into_iter()
                    .filter(|m| m["method"] == method)
                    .map(|m| m["params"].clone())
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// The names of the tools called on this backend so far, in order.
    pub fn tools_called(&self) -> Vec<String> {
        self.rpc_params("tools/call")
            .iter()
            .map(|p| p["name"].as_str().unwrap_or_default().to_owned())
            .collect()
    }
}

async fn record(
    requests: Arc<Mutex<Vec<SeenRequest>>>,
    required: Required,
    request: Request,
    next: Next,
) -> Response {
    let (parts, body) = request.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, 16 * 1024 * 1024).await else {
        return (StatusCode::BAD_REQUEST, "unreadable body").into_response();
    };
    lock(&requests).push(SeenRequest {
        method: parts.method.clone(),
        headers: parts.headers.clone(),
        body: serde_json::from_slice(&bytes).ok(),
    });
    if let Some((name, value)) = &required
        && parts.headers.get(name) != Some(value)
    {
        return (StatusCode::UNAUTHORIZED, "missing or wrong API key").into_response();
    }
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

// ---------------------------------------------------------------------------
// the gateway

/// A gateway config: `backends`, `server.pageSize: 5`, with `extra` merged
/// on top (objects merge key by key; anything else replaces).
pub fn gateway_config(backends: Vec<Value>, extra: Value) -> Value {
    let mut config = json!({
        "name": "rmcp-client-tests",
        "backends": backends,
        "server": {"pageSize": 5},
    });
    merge(&mut config, extra);
    config
}

fn merge(base: &mut Value, extra: Value) {
    match (base, extra) {
        (Value::Object(base), Value::Object(extra)) => {
            for (key, value) in extra {
                merge(base.entry(key).or_insert(Value::Null), value);
            }
        }
        (base, extra) => *base = extra,
    }
}

/// The gateway, started in this process and served by axum on a loopback port.
pub struct TestGateway {
    /// The running gateway.
    pub gateway: Arc<Gateway>,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    sessions: CancellationToken,
    served: tokio::task::JoinHandle<()>,
}

impl TestGateway {
    /// Loads `config` (JSON is YAML), starts the gateway and its HTTP
    /// surface, and waits (with a deadline) for the first discovery to finish.
    pub async fn start(config: Value) -> Self {
        let started = Self::launch(config, false).await;
        if tokio::time::timeout(DEADLINE, started.gateway.wait_ready())
            .await
            .is_err()
        {
            panic!(
                "the gateway was not ready within {DEADLINE:?}; status: {}",
                serde_json::to_string_pretty(&started.gateway.current_status()).unwrap_or_default()
            );
        }
        started
    }

    /// Like [`TestGateway::start`], but in discovery mode (backends come
    /// from `Gateway::set_backends`), and without waiting for readiness.
    pub async fn start_discovering(config: Value) -> Self {
        Self::launch(config, true).await
    }

    async fn launch(config: Value, discovery: bool) -> Self {
        let text = serde_json::to_string_pretty(&config).expect("serialize the config");
        let config = vmcp_config::load_str(&text, "rmcp-client-test.yaml")
            .unwrap_or_else(|err| panic!("the test config was rejected: {err}\n{text}"));
        let gateway = Gateway::start(GatewayOptions {
            discovery,
            ..GatewayOptions::new(config)
        });
        let sessions = CancellationToken::new();
        let app = router(
            gateway.clone(),
            HttpOptions::from_gateway(&gateway, sessions.clone()),
        );
        let (listener, port) = bind_loopback().await;
        let served = tokio::spawn({
            let stop = sessions.clone();
            async move {
                let _ = axum::serve(listener, app)
                    .with_graceful_shutdown(stop.cancelled_owned())
                    .await;
            }
        });
        Self {
            gateway,
            base: format!("http://{LOOPBACK}:{port}"),
            sessions,
            served,
        }
    }

    /// The MCP endpoint.
    pub fn mcp_url(&self) -> String {
        format!("{}/mcp", self.base)
    }

    /// Connects rmcp's Streamable HTTP client to `/mcp`.
    pub async fn connect(&self) -> (Client, Recorder) {
        let recorder = Recorder::default();
        let transport = StreamableHttpClientTransport::from_uri(self.mcp_url());
        let client = within_deadline(
            "rmcp's client to initialize through the gateway",
            recorder.clone().serve(transport),
        )
        .await
        .expect("initialize through the gateway");
        (client, recorder)
    }

    /// `GET path` on the gateway: status code and JSON body.
    pub async fn get_json(&self, path: &str) -> (u16, Value) {
        let url = format!("{}{path}", self.base);
        let response = within_deadline(&format!("GET {url}"), reqwest::get(&url))
            .await
            .unwrap_or_else(|err| panic!("GET {url}: {err}"));
        let status = response.status().as_u16();
        let text = response.text().await.expect("read the body");
        let body = serde_json::from_str(&text)
            .unwrap_or_else(|err| panic!("GET {url}: not JSON ({err}): {text}"));
        (status, body)
    }

    /// `discoveredBackends[name]` from `GET /status`.
    pub async fn backend_status(&self, name: &str) -> Value {
        let (code, status) = self.get_json("/status").await;
        assert_eq!(code, 200, "/status answered {code}: {status}");
        status["discoveredBackends"]
            .as_array()
            .and_then(|backends| backends.iter().find(|b| b["name"] == name))
            .cloned()
            .unwrap_or_else(|| panic!("{name} is not in /status: {status:#}"))
    }

    /// Closes the client, then stops the gateway (closing every backend
    /// connection and child process) and its HTTP server.
    pub async fn stop(self, client: Client) {
        let _ = tokio::time::timeout(Duration::from_secs(5), client.cancel()).await;
        self.shutdown().await;
    }

    /// Stops the gateway (closing every backend connection and child
    /// process) and its HTTP server.
    pub async fn shutdown(self) {
        self.sessions.cancel();
        within_deadline("the gateway to shut down", self.gateway.shutdown()).await;
        let _ = tokio::time::timeout(Duration::from_secs(5), self.served).await;
    }
}

// ---------------------------------------------------------------------------
// the client

/// rmcp's client connected to the gateway.
pub type Client = RunningService<RoleClient, Recorder>;

#[derive(Default)]
struct Seen {
    tools_changed: usize,
    prompts_changed: usize,
    resources_changed: usize,
    progress: Vec<ProgressNotificationParam>,
}

/// The client's handler: records the notifications the gateway sends.
#[derive(Clone, Default)]
pub struct Recorder(Arc<Mutex<Seen>>);

impl Recorder {
    /// How many `notifications/tools/list_changed` arrived.
    pub fn tools_changed(&self) -> usize {
        lock(&self.0).tools_changed
    }

    /// How many `notifications/prompts/list_changed` arrived.
    pub fn prompts_changed(&self) -> usize {
        lock(&self.0).prompts_changed
    }

    /// How many `notifications/resources/list_changed` arrived.
    pub fn resources_changed(&self) -> usize {
        lock(&self.0).resources_changed
    }

    /// Every progress notification that arrived.
    pub fn progress(&self) -> Vec<ProgressNotificationParam> {
        lock(&self.0).progress.clone()
    }

    /// The progress notifications that carry `token`.
    pub fn progress_for(&self, token: &ProgressToken) -> Vec<ProgressNotificationParam> {
        lock(&self.0)
            .progress
            .iter()
            .filter(|p| &p.progress_token == token)
            .cloned()
            .collect()
    }
}

impl ClientHandler for Recorder {
    async fn on_tool_list_changed(&self, _: NotificationContext<RoleClient>) {
        lock(&self.0).tools_changed += 1;
    }

    async fn on_prompt_list_changed(&self, _: NotificationContext<RoleClient>) {
        lock(&self.0).prompts_changed += 1;
    }

    async fn on_resource_list_changed(&self, _: NotificationContext<RoleClient>) {
        lock(&self.0).resources_changed += 1;
    }

    async fn on_progress(
        &self,
        params: ProgressNotificationParam,
        _: NotificationContext<RoleClient>,
    ) {
        lock(&self.0).progress.push(params);
    }
}

/// A JSON object as tool arguments.
pub fn args(value: Value) -> JsonObject {
    match value {
        Value::Object(map) => map,
        other => panic!("tool arguments must be an object, got {other}"),
    }
}

/// The text blocks of a tool result, joined.
pub fn text_of(result: &CallToolResult) -> String {
    result
        .content
        .iter()
        .filter_map(|block| block.as_text().map(|t| t.text.clone()))
        .collect::<Vec<_>>()
        .join("")
}

/// `tools/call`; the raw outcome.
pub async fn call(
    client: &Client,
    tool: &str,
    arguments: Value,
) -> Result<CallToolResult, ServiceError> {
    within_deadline(
        &format!("tools/call {tool}"),
        client
            .call_tool(CallToolRequestParams::new(tool.to_owned()).with_arguments(args(arguments))),
    )
    .await
}

/// `tools/call` that must succeed without `isError`; its text.
pub async fn call_text(client: &Client, tool: &str, arguments: Value) -> String {
    let result = call(client, tool, arguments)
        .await
        .unwrap_or_else(|err| panic!("tools/call {tool} failed: {err}"));
    assert_ne!(
        result.is_error,
        Some(true),
        "tools/call {tool} returned a tool error: {result:?}"
    );
    text_of(&result)
}

/// `tools/call` that must fail with a JSON-RPC error; that error.
pub async fn call_error(client: &Client, tool: &str, arguments: Value) -> ErrorData {
    match call(client, tool, arguments).await {
        Err(ServiceError::McpError(error)) => error,
        other => panic!("tools/call {tool}: expected a JSON-RPC error, got {other:?}"),
    }
}

/// Every page of `tools/list`, following `nextCursor` (at most 100 pages).
pub async fn tool_pages(client: &Client) -> Vec<Vec<String>> {
    let mut pages = Vec::new();
    let mut cursor = None;
    for _ in 0..100 {
        let page = within_deadline(
            "tools/list",
            client.list_tools(Some(PaginatedRequestParams::default().with_cursor(cursor))),
        )
        .await
        .expect("tools/list");
        pages.push(page.tools.iter().map(|t| t.name.to_string()).collect());
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => return pages,
        }
    }
    panic!("tools/list kept returning nextCursor for 100 pages: {pages:?}");
}

/// Every tool name, over all pages.
pub async fn tool_names(client: &Client) -> BTreeSet<String> {
    tool_pages(client).await.into_iter().flatten().collect()
}

/// Runs the test `test_name` of this test binary again in a child process
/// with `set` in its environment and `unset` removed from it, and fails
/// unless exactly that test ran and passed. For tests that need process
/// environment variables (setting them in-process needs `unsafe`).
pub async fn rerun_in_child(test_name: &str, set: &[(&str, &str)], unset: &[&str]) {
    let exe = std::env::current_exe().expect("the test binary's path");
    let mut command = tokio::process::Command::new(exe);
    command
        .args([test_name, "--exact", "--nocapture", "--test-threads", "1"])
        .stdin(Stdio::null())
        .kill_on_drop(true);
    for (key, value) in set {
        command.env(key, value);
    }
    for key in unset {
        command.env_remove(key);
    }
    let output = tokio::time::timeout(Duration::from_secs(120), command.output())
        .await
        .unwrap_or_else(|_| panic!("the child run of {test_name} took over 120s"))
        .unwrap_or_else(|err| panic!("cannot run the child test {test_name}: {err}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.contains("1 passed"),
        "the child run of {test_name} failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        output.status
    );
}
