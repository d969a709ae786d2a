//! Interoperability with the official Python MCP SDK's server (FastMCP, now `MCPServer`)
//! over the legacy HTTP+SSE transport.
//!
//! Needs the pinned test venv (`scripts/install-peers.sh` creates `.cache/venv`) and the
//! backend `tests/peers/py_backend.py`. When either is missing the tests fail, saying so:
//! they never skip silently.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use mcp_legacy_sse::{SseClientConfig, SseClientError, connect};
use rmcp::{
    ClientHandler, RoleClient,
    model::{
        CallToolRequestParams, ClientConfig, Implementation, NumberOrString,
        ProgressNotificationParam, ProgressToken, RequestMetaObject,
    },
    service::{NotificationContext, QuitReason},
};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    process::{Child, Command},
    time::{Instant, timeout},
};

/// How long the Python server may take to start listening.
const STARTUP_DEADLINE: Duration = Duration::from_secs(30);
/// How long any single protocol step may take.
const STEP: Duration = Duration::from_secs(15);

fn repo_root() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    root.canonicalize()
        .unwrap_or_else(|e| panic!("cannot resolve the repository root {}: {e}", root.display()))
}

/// The venv's Python and the backend script; panics with instructions when missing.
fn peer_paths() -> (PathBuf, PathBuf) {
    let root = repo_root();
    let python = root.join(".cache/venv/bin/python");
    let script = root.join("tests/peers/py_backend.py");
    assert!(
        python.exists(),
        "the Python test venv is missing: {} does not exist. Run scripts/install-peers.sh \
         (it creates .cache/venv from tests/peers/requirements.txt).",
        python.display()
    );
    assert!(
        script.exists(),
        "the Python MCP test backend {} is missing",
        script.display()
    );
    (python, script)
}

/// A running `py_backend.py --transport sse`; killed when dropped.
struct PyServer {
    child: Child,
    port: u16,
    stderr: Arc<Mutex<String>>,
}

impl PyServer {
    async fn start(name: &str) -> Self {
        let (python, script) = peer_paths();
        let port = free_port();
        let mut child = Command::new(&python)
            .arg(&script)
            .args([
                "--transport",
                "sse",
                "--port",
                &port.to_string(),
                "--name",
                name,
            ])
            .env("PYTHONUNBUFFERED", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {} {}: {e}",
                    python.display(),
                    script.display()
                )
            });

        let stderr = Arc::new(Mutex::new(String::new()));
        if let Some(pipe) = child.stderr.take() {
            let sink = Arc::clone(&stderr);
            tokio::spawn(async move {
                let mut lines = BufReader::new(pipe).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    let mut text = sink.lock().unwrap_or_else(|p| p.into_inner());
                    text.push_str(&line);
                    text.push('\n');
                }
            });
        }

        let mut server = Self {
            child,
            port,
            stderr,
        };
        server.wait_until_listening().await;
        server
    }

    async fn wait_until_listening(&mut self) {
        let deadline = Instant::now() + STARTUP_DEADLINE;
        loop {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok()
            {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "the Python SSE server exited with {status} before listening on port {}; its stderr:\n{}",
                    self.port,
                    self.stderr()
                );
            }
            assert!(
                Instant::now() < deadline,
                "the Python SSE server did not listen on port {} within {STARTUP_DEADLINE:?}; its stderr:\n{}",
                self.port,
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn sse_url(&self) -> url::Url {
        url::Url::parse(&format!("http://127.0.0.1:{}/sse", self.port)).expect("valid URL")
    }

    fn stderr(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    async fn kill(&mut self) {
        self.child.start_kill().expect("kill the Python server");
        timeout(STEP, self.child.wait())
            .await
            .expect("the killed server exits")
            .expect("wait for the killed server");
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("bind an ephemeral loopback port")
        .port()
}

/// A client handler that counts progress notifications.
#[derive(Clone, Default)]
struct TestClient {
    progress: Arc<AtomicUsize>,
}

impl ClientHandler for TestClient {
    async fn on_progress(
        &self,
        _params: ProgressNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        self.progress.fetch_add(1, Ordering::SeqCst);
    }

    fn get_info(&self) -> ClientConfig {
        let mut config = ClientConfig::default();
        config.client_info = Implementation::new("mcp-legacy-sse-test", "0.0.0");
        config
    }
}

fn text_of(result: &rmcp::model::CallToolResult) -> String {
    result
        .content
        .iter()
        .filter_map(|content| content.as_text().map(|text| text.text.as_str()))
        .collect()
}

fn args(value: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
    match value {
        serde_json::Value::Object(map) => map,
        other => panic!("tool arguments must be an object, got {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tools_work_and_the_transport_ends_when_the_server_dies() {
    let mut server = PyServer::start("pysse-a").await;

    let transport = timeout(
        STEP,
        connect(
            SseClientConfig::new(server.sse_url()),
            reqwest::Client::new(),
        ),
    )
    .await
    .expect("connect within the deadline")
    .unwrap_or_else(|e| panic!("connect failed: {e}; server stderr:\n{}", server.stderr()));
    assert_eq!(transport.endpoint().path(), "/messages/");
    assert!(
        transport
            .endpoint()
            .query()
            .is_some_and(|q| q.starts_with("session_id=")),
        "endpoint {} has no session id",
        transport.endpoint()
    );
    let session_end = transport.end_signal();

    let handler = TestClient::default();
    let progress = Arc::clone(&handler.progress);
    let client = timeout(STEP, rmcp::serve_client(handler, transport))
        .await
        .expect("initialize within the deadline")
        .unwrap_or_else(|e| {
            panic!(
                "initialize failed: {e}; server stderr:\n{}",
                server.stderr()
            )
        });
    let server_info = client.peer_info().expect("initialized");
    eprintln!(
        "negotiated protocol {:?} with {:?}",
        server_info.protocol_version, server_info.server_info
    );

    let tools = timeout(STEP, client.list_all_tools())
        .await
        .expect("tools/list within the deadline")
        .expect("tools/list");
    let names: Vec<&str> = tools.iter().map(|tool| tool.name.as_ref()).collect();
    for expected in ["echo", "add", "whoami", "slow"] {
        assert!(names.contains(&expected), "no tool {expected} in {names:?}");
    }

    let marker = "legacy-sse says hi ✓ 7f3a";
    let echoed = timeout(
        STEP,
        client.call_tool(
            CallToolRequestParams::new("echo")
                .with_arguments(args(serde_json::json!({ "text": marker }))),
        ),
    )
    .await
    .expect("echo within the deadline")
    .expect("echo");
    assert_ne!(echoed.is_error, Some(true), "echo failed: {echoed:?}");
    assert_eq!(text_of(&echoed), marker);

    // Several requests in flight at once exercise concurrent sends.
    let sums = futures::future::join_all((0..8).map(|i| {
        client.call_tool(
            CallToolRequestParams::new("add")
                .with_arguments(args(serde_json::json!({ "a": i, "b": 1000 }))),
        )
    }));
    let sums = timeout(STEP, sums).await.expect("adds within the deadline");
    for (i, sum) in sums.into_iter().enumerate() {
        assert_eq!(text_of(&sum.expect("add")), (i + 1000).to_string());
    }

    let whoami = timeout(STEP, client.call_tool(CallToolRequestParams::new("whoami")))
        .await
        .expect("whoami within the deadline")
        .expect("whoami");
    assert_eq!(text_of(&whoami), "pysse-a");

    // Server-to-client notifications: progress of a short slow() call.
    let mut slow = CallToolRequestParams::new("slow")
        .with_arguments(args(serde_json::json!({ "seconds": 0.35 })));
    slow.meta = Some(RequestMetaObject::with_progress_token(ProgressToken(
        NumberOrString::String("legacy-sse-progress".into()),
    )));
    let slept = timeout(STEP, client.call_tool(slow))
        .await
        .expect("slow within the deadline")
        .expect("slow");
    assert_eq!(text_of(&slept), "slept 0.35 on pysse-a");
    assert!(
        progress.load(Ordering::SeqCst) >= 1,
        "no progress notification arrived"
    );

    // A request in flight when the server dies must fail rather than hang.
    let peer = client.peer().clone();
    let before = progress.load(Ordering::SeqCst);
    let mut endless = CallToolRequestParams::new("slow")
        .with_arguments(args(serde_json::json!({ "seconds": 60 })));
    endless.meta = Some(RequestMetaObject::with_progress_token(ProgressToken(
        NumberOrString::String("legacy-sse-in-flight".into()),
    )));
    let in_flight = tokio::spawn(async move { peer.call_tool_once(endless).await });
    // Its first progress notification shows the server is working on it.
    let deadline = Instant::now() + STEP;
    while progress.load(Ordering::SeqCst) == before {
        assert!(
            Instant::now() < deadline,
            "the 60 s slow() call reported no progress"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    assert!(!session_end.has_ended());
    let killed = Instant::now();
    server.kill().await;

    timeout(STEP, session_end.wait())
        .await
        .expect("the transport notices the dead server within the deadline");
    eprintln!("session end noticed {:?} after the kill", killed.elapsed());
    let outcome = timeout(STEP, in_flight)
        .await
        .expect("the in-flight request ends within the deadline")
        .expect("the request task does not panic");
    assert!(
        outcome.is_err(),
        "a request in flight on a dead server succeeded: {outcome:?}"
    );
    eprintln!("in-flight request ended with {outcome:?}");
    // Without consuming the service, the peer tells once the service loop has stopped.
    let deadline = Instant::now() + STEP;
    while !client.peer().is_transport_closed() {
        assert!(
            Instant::now() < deadline,
            "the peer still reports an open transport"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!(
        "after the session ended: peer.is_transport_closed() = true, RunningService::is_closed() = {}",
        client.is_closed()
    );
    let quit = timeout(STEP, client.waiting())
        .await
        .expect("the service stops within the deadline")
        .expect("the service task does not panic");
    assert!(matches!(quit, QuitReason::Closed), "quit reason {quit:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configured_headers_reach_the_server() {
    // The SDK's DNS-rebinding protection (on for a loopback bind) answers 403 to a foreign
    // `Origin`, so a configured `Origin` header shows whether headers arrive.
    let server = PyServer::start("pysse-b").await;

    let mut foreign = SseClientConfig::new(server.sse_url());
    foreign.headers.insert(
        http::header::ORIGIN,
        http::HeaderValue::from_static("http://evil.example"),
    );
    let refused = timeout(STEP, connect(foreign, reqwest::Client::new()))
        .await
        .expect("answer within the deadline");
    match refused {
        Err(SseClientError::ConnectStatus { status, .. }) => {
            assert_eq!(status, http::StatusCode::FORBIDDEN)
        }
        other => panic!("expected a 403 for a foreign Origin, got {other:?}"),
    }

    let mut local = SseClientConfig::new(server.sse_url());
    let origin = format!("http://127.0.0.1:{}", server.port);
    local
        .headers
        .insert(http::header::ORIGIN, origin.parse().expect("valid header"));
    let transport = timeout(STEP, connect(local, reqwest::Client::new()))
        .await
        .expect("connect within the deadline")
        .expect("an allowed Origin is accepted");
    // POSTs carry the header too: the handshake and a call succeed with it.
    let client = timeout(STEP, rmcp::serve_client(TestClient::default(), transport))
        .await
        .expect("initialize within the deadline")
        .expect("initialize");
    let whoami = timeout(STEP, client.call_tool(CallToolRequestParams::new("whoami")))
        .await
        .expect("whoami within the deadline")
        .expect("whoami");
    assert_eq!(text_of(&whoami), "pysse-b");
    let mut client = client;
    timeout(STEP, client.close())
        .await
        .expect("close within the deadline")
        .expect("close");
}
