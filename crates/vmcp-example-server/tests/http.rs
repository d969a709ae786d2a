//! The built binary in HTTP mode, driven by rmcp's streamable HTTP client.

use std::{process::Stdio, time::Duration};

use rmcp::{
    ClientHandler, RoleClient, ServiceExt as _,
    model::{
        CallToolRequest, CallToolRequestParams, CallToolResult, ClientRequest, JsonObject,
        ProgressNotificationParam, ServerResult,
    },
    service::{NotificationContext, PeerRequestOptions},
    transport::StreamableHttpClientTransport,
};
use serde_json::{Value, json};
use tokio::{
    io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader},
    process::{Child, Command},
    sync::mpsc,
};

const DEADLINE: Duration = Duration::from_secs(20);

#[derive(Debug)]
enum Seen {
    ToolsChanged,
    Progress(ProgressNotificationParam),
}

struct Recorder(mpsc::UnboundedSender<Seen>);

impl ClientHandler for Recorder {
    async fn on_tool_list_changed(&self, _context: NotificationContext<RoleClient>) {
        let _ = self.0.send(Seen::ToolsChanged);
    }

    async fn on_progress(
        &self,
        params: ProgressNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        let _ = self.0.send(Seen::Progress(params));
    }
}

/// The running binary and the MCP URL it announced.
struct Server {
    child: Child,
    url: String,
}

async fn start(extra_args: &[&str]) -> anyhow::Result<Server> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_vmcp-example-server"))
        .args(["--name", "web", "http", "--port", "0"])
        .args(extra_args)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()?;
    let stdout = child.stdout.take().expect("stdout is piped");
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(DEADLINE, lines.next_line())
        .await
        .expect("no `listening on` line before the deadline")?
        .expect("the server closed stdout without announcing its address");
    let url = line
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line: {line}"))
        .to_owned();
    assert!(
        url.starts_with("http://127.0.0.1:") && url.ends_with("/mcp"),
        "{url}"
    );
    Ok(Server { child, url })
}

/// Send SIGTERM and expect a clean exit before the deadline.
#[cfg(unix)]
async fn stop(mut server: Server) -> anyhow::Result<()> {
    let pid = server.child.id().expect("still running").to_string();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()?;
    assert!(status.success(), "kill -TERM {pid} failed");
    let exit = tokio::time::timeout(DEADLINE, server.child.wait())
        .await
        .expect("no exit before the deadline after SIGTERM")?;
    assert!(exit.success(), "unclean exit: {exit}");
    Ok(())
}

#[cfg(not(unix))]
async fn stop(mut server: Server) -> anyhow::Result<()> {
    server.child.kill().await?;
    Ok(())
}

fn args(value: Value) -> JsonObject {
    match value {
        Value::Object(map) => map,
        other => panic!("arguments must be an object, got {other}"),
    }
}

fn text(result: &CallToolResult) -> &str {
    result
        .content
        .first()
        .and_then(|block| block.as_text())
        .map_or("", |text| text.text.as_str())
}

async fn next_seen(rx: &mut mpsc::UnboundedReceiver<Seen>) -> Seen {
    tokio::time::timeout(DEADLINE, rx.recv())
        .await
        .expect("no notification before the deadline")
        .expect("the client is gone")
}

#[tokio::test]
async fn stateful_http_session() -> anyhow::Result<()> {
    let server = start(&[]).await?;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let client = Recorder(tx)
        .serve(StreamableHttpClientTransport::from_uri(server.url.clone()))
        .await?;

    let tools = client.list_all_tools().await?;
    assert_eq!(tools.len(), 6);
    let echoed = client
        .call_tool(CallToolRequestParams::new("echo").with_arguments(args(json!({"text": "hi"}))))
        .await?;
    assert_eq!(text(&echoed), "hi");
    let me = client
        .call_tool(CallToolRequestParams::new("whoami"))
        .await?;
    assert_eq!(text(&me), "web");

    // Progress rides the request's SSE stream.
    let request = ClientRequest::CallToolRequest(CallToolRequest::new(
        CallToolRequestParams::new("slow").with_arguments(args(json!({"millis": 250}))),
    ));
    let handle = client
        .send_cancellable_request(request, PeerRequestOptions::no_options())
        .await?;
    let token = handle.progress_token.clone();
    match next_seen(&mut rx).await {
        Seen::Progress(progress) => assert_eq!(progress.progress_token, token),
        other => panic!("expected progress, got {other:?}"),
    }
    let response = tokio::time::timeout(DEADLINE, handle.await_response())
        .await
        .expect("no slow result before the deadline")?;
    match response {
        ServerResult::CallToolResult(result) => assert_eq!(text(&result), "slept 250 ms"),
        other => panic!("unexpected response {other:?}"),
    }
    while let Ok(seen) = rx.try_recv() {
        assert!(matches!(seen, Seen::Progress(_)), "{seen:?}");
    }

    // list_changed rides the session's standalone GET stream.
    client
        .call_tool(CallToolRequestParams::new("toggle_extra"))
        .await?;
    assert!(matches!(next_seen(&mut rx).await, Seen::ToolsChanged));
    assert_eq!(client.list_all_tools().await?.len(), 7);

    client.cancel().await?;
    stop(server).await
}

#[tokio::test]
async fn stateless_http_answers_plain_json() -> anyhow::Result<()> {
    let server = start(&["--stateless"]).await?;

    let client = ().serve(StreamableHttpClientTransport::from_uri(server.url.clone())).await?;
    let sum = client
        .call_tool(CallToolRequestParams::new("add").with_arguments(args(json!({"a": 1, "b": 2}))))
        .await?;
    assert_eq!(sum.structured_content, Some(json!({"sum": 3})));
    client.cancel().await?;

    // A bare POST without a session gets a JSON body, not an SSE stream.
    let body = json!({
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {"name": "echo", "arguments": {"text": "plain"}}
    })
    .to_string();
    let (status, content_type, response) = post(&server.url, &body).await?;
    assert_eq!(status, 200, "{response}");
    assert!(
        content_type.starts_with("application/json"),
        "{content_type}"
    );
    let response: Value = serde_json::from_str(&response)?;
    assert_eq!(response["result"]["content"][0]["text"], "plain");

    stop(server).await
}

/// A minimal HTTP/1.1 POST; returns the status, the content type and the body.
async fn post(url: &str, body: &str) -> anyhow::Result<(u16, String, String)> {
    let rest = url.strip_prefix("http://").expect("an http URL");
    let (authority, path) = rest.split_at(rest.find('/').expect("a path"));
    let mut stream = tokio::net::TcpStream::connect(authority).await?;
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {authority}\r\nContent-Type: application/json\r\n\
         Accept: application/json, text/event-stream\r\nMCP-Protocol-Version: 2025-11-25\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await?;
    let mut response = String::new();
    tokio::time::timeout(DEADLINE, stream.read_to_string(&mut response))
        .await
        .expect("no HTTP response before the deadline")?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .expect("a header/body separator");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|status| status.parse().ok())
        .expect("a status code");
    let content_type = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-type")
                .then(|| value.trim().to_owned())
        })
        .unwrap_or_default();
    Ok((status, content_type, body.to_owned()))
}
