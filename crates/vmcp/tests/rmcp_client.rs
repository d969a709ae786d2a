//! rmcp's client talking to the real `vmcp` binary, in front of real peers:
//! the project's example server over Streamable HTTP (in this process, so the
//! test can observe it) and `@modelcontextprotocol/server-everything` over
//! stdio (installed by `scripts/install-peers.sh`; missing means failure).

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use rmcp::model::{
    CallToolRequestParams, ClientCapabilities, ClientConfig, Implementation,
    PaginatedRequestParams, ProgressNotificationParam, ProtocolVersion,
};
use rmcp::service::{NotificationContext, RoleClient, RunningService};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::{ClientHandler, ServiceExt};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio_util::sync::CancellationToken;
use vmcp_example_server::ExampleServer;
use vmcp_example_server::transports::{HttpOptions, router};

/// Records what the gateway sends unprompted.
#[derive(Clone, Default)]
struct Recorder {
    tool_list_changed: Arc<AtomicUsize>,
    progress: Arc<std::sync::Mutex<Vec<ProgressNotificationParam>>>,
}

impl ClientHandler for Recorder {
    fn get_info(&self) -> ClientConfig {
        let mut info = ClientConfig::default();
        info.capabilities = ClientCapabilities::default();
        info.client_info = Implementation::new("rmcp-test-client", "1");
        info.protocol_version = ProtocolVersion::V_2025_06_18;
        info
    }

    async fn on_tool_list_changed(&self, _: NotificationContext<RoleClient>) {
        self.tool_list_changed.fetch_add(1, Ordering::SeqCst);
    }

    async fn on_progress(
        &self,
        params: ProgressNotificationParam,
        _: NotificationContext<RoleClient>,
    ) {
        self.progress.lock().expect("not poisoned").push(params);
    }
}

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Polls `check` until it holds or `within` passes.
async fn eventually(within: Duration, what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + within;
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

struct Stack {
    example: ExampleServer,
    gateway: tokio::process::Child,
    url: String,
    _shutdown: tokio_util::sync::DropGuard,
}

async fn start_stack() -> Stack {
    let everything = repo_root()
        .join("tests/peers/node_modules/@modelcontextprotocol/server-everything/dist/index.js");
    assert!(
        everything.exists(),
        "{} missing: run scripts/install-peers.sh",
        everything.display()
    );

    let example = ExampleServer::new("ex");
    let shutdown = CancellationToken::new();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let backend_port = listener.local_addr().expect("bound").port();
    let app = router(example.clone(), &HttpOptions::default(), shutdown.clone());
    tokio::spawn(
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown.clone().cancelled_owned())
            .into_future(),
    );

    let config = format!(
        "name: rmcp-client-test\nbackends:\n  - {{name: ex, transport: streamable-http, url: 'http://127.0.0.1:{backend_port}/mcp'}}\n  - {{name: everything, transport: stdio, command: node, args: ['{}', 'stdio']}}\nserver:\n  pageSize: 4\n",
        everything.display()
    );
    let config_path = std::env::temp_dir().join(format!(
        "vmcp-rmcp-client-{}-{backend_port}.yaml",
        std::process::id()
    ));
    std::fs::write(&config_path, config).expect("write config");
    let mut gateway = tokio::process::Command::new(env!("CARGO_BIN_EXE_vmcp"))
        .args(["serve", "--port", "0", "--config"])
        .arg(&config_path)
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start vmcp");
    // vmcp logs its address once bound.
    let stderr = gateway.stderr.take().expect("piped");
    let mut lines = BufReader::new(stderr).lines();
    let url = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.expect("read stderr") {
            if let Some(at) = line.find("vmcp listening on ") {
                let rest = &line[at + "vmcp listening on ".len()..];
                return rest.split_whitespace().next().expect("url").to_string();
            }
        }
        panic!("vmcp exited before listening");
    })
    .await
    .expect("vmcp listening within 30s");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let readyz = url.replace("/mcp", "/readyz");
    eventually(Duration::from_secs(30), "vmcp ready", async || {
        reqwest::get(&readyz)
            .await
            .is_ok_and(|r| r.status().is_success())
    })
    .await;
    Stack {
        example,
        gateway,
        url,
        _shutdown: shutdown.drop_guard(),
    }
}

async fn connect(url: &str) -> (RunningService<RoleClient, Recorder>, Recorder) {
    let recorder = Recorder::default();
    let transport = StreamableHttpClientTransport::from_uri(url.to_string());
    let client = recorder
        .clone()
        .serve(transport)
        .await
        .expect("initialize through vmcp");
    (client, recorder)
}

async fn all_tool_names(client: &RunningService<RoleClient, Recorder>) -> (Vec<String>, usize) {
    let mut names = Vec::new();
    let mut pages = 0;
    let mut cursor = None;
    loop {
        let page = client
            .list_tools(Some(PaginatedRequestParams::default().with_cursor(cursor)))
            .await
            .expect("tools/list");
        pages += 1;
        names.extend(page.tools.iter().map(|t| t.name.to_string()));
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => return (names, pages),
        }
    }
}

async fn call_text(
    client: &RunningService<RoleClient, Recorder>,
    tool: &str,
    args: serde_json::Value,
) -> String {
    let arguments = args.as_object().cloned().unwrap_or_default();
    let result = client
        .call_tool(CallToolRequestParams::new(tool.to_string()).with_arguments(arguments))
        .await
        .unwrap_or_else(|err| panic!("{tool}: {err}"));
    result
        .content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.clone()))
        .collect::<Vec<_>>()
        .join("")
}

fn slow_call(millis: u64) -> rmcp::model::ClientRequest {
    let arguments = json!({ "millis": millis })
        .as_object()
        .cloned()
        .unwrap_or_default();
    rmcp::model::ClientRequest::CallToolRequest(rmcp::model::CallToolRequest::new(
        CallToolRequestParams::new("ex_slow").with_arguments(arguments),
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rmcp_client_sees_one_merged_server() {
    let mut stack = start_stack().await;
    let (client, recorder) = connect(&stack.url).await;

    let (names, pages) = all_tool_names(&client).await;
    assert!(pages > 1, "page size 4 must paginate {} tools", names.len());
    let unique: std::collections::HashSet<_> = names.iter().collect();
    assert_eq!(
        unique.len(),
        names.len(),
        "every tool exactly once: {names:?}"
    );
    for expected in [
        "ex_echo",
        "ex_whoami",
        "ex_slow",
        "everything_echo",
        "everything_get-sum",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} missing from {names:?}"
        );
    }

    // Routing: distinct arguments come back from the right backend.
    assert_eq!(
        call_text(&client, "ex_echo", json!({"text": "via-rmcp-1"})).await,
        "via-rmcp-1"
    );
    assert_eq!(call_text(&client, "ex_whoami", json!({})).await, "ex");
    let everything = call_text(&client, "everything_echo", json!({"message": "via-rmcp-2"})).await;
    assert!(everything.contains("via-rmcp-2"), "{everything}");

    // Unknown tool: a JSON-RPC error, not a crash.
    let err = client
        .call_tool(CallToolRequestParams::new("nobody_has_this"))
        .await
        .expect_err("unknown tool must fail");
    assert!(err.to_string().contains("unknown tool"), "{err}");

    // Progress reaches the client under the token the client chose (rmcp
    // assigns one per request; the gateway maps the backend's back to it).
    let slow = client
        .peer()
        .send_cancellable_request(
            slow_call(450),
            rmcp::service::PeerRequestOptions::no_options(),
        )
        .await
        .expect("sent");
    let token = slow.progress_token.clone();
    slow.await_response().await.expect("slow call");
    let progress = recorder.progress.lock().expect("not poisoned").clone();
    let ours: Vec<_> = progress
        .iter()
        .filter(|p| p.progress_token == token)
        .collect();
    assert!(ours.len() >= 2, "progress under {token:?}: {progress:?}");
    assert!(
        ours.windows(2).all(|w| w[0].progress < w[1].progress),
        "{ours:?}"
    );

    // A backend's list_changed reaches the client and changes the catalogue.
    let before = recorder.tool_list_changed.load(Ordering::SeqCst);
    call_text(&client, "ex_toggle_extra", json!({})).await;
    eventually(
        Duration::from_secs(10),
        "tools/list_changed through vmcp",
        async || recorder.tool_list_changed.load(Ordering::SeqCst) > before,
    )
    .await;
    eventually(Duration::from_secs(10), "ex_extra listed", async || {
        all_tool_names(&client)
            .await
            .0
            .iter()
            .any(|n| n == "ex_extra")
    })
    .await;

    // Cancelling a call at the client cancels it at the backend.
    let cancelled_before = stack.example.slow_calls_cancelled();
    let slow = client
        .peer()
        .send_cancellable_request(
            slow_call(30000),
            rmcp::service::PeerRequestOptions::no_options(),
        )
        .await
        .expect("sent");
    // Wait until the backend is working on it (its first progress arrived).
    let slow_token = slow.progress_token.clone();
    eventually(
        Duration::from_secs(10),
        "the slow call to start",
        async || {
            recorder
                .progress
                .lock()
                .expect("not poisoned")
                .iter()
                .any(|p| p.progress_token == slow_token)
        },
    )
    .await;
    slow.cancel(Some("test".into())).await.expect("cancel sent");
    eventually(
        Duration::from_secs(10),
        "the backend to see the cancellation",
        async || stack.example.slow_calls_cancelled() > cancelled_before,
    )
    .await;

    client.cancel().await.expect("close client");
    stack.gateway.kill().await.expect("stop vmcp");
}
