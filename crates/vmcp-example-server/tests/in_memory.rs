//! The example server driven by rmcp's client over an in-memory pipe.

use std::time::Duration;

use rmcp::{
    ClientHandler, ClientLifecycleMode, ClientServiceExt as _, RoleClient, ServiceExt as _,
    model::{
        CallToolRequest, CallToolRequestParams, CallToolResult, ClientRequest, JsonObject,
        ProgressNotificationParam, ProtocolVersion, ReadResourceRequestParams, ResourceContents,
        ServerNotification, ServerResult, SubscriptionFilter,
    },
    service::{NotificationContext, PeerRequestOptions, RunningService},
};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use vmcp_example_server::{ExampleServer, catalogue::tool_names};

const DEADLINE: Duration = Duration::from_secs(10);

/// What the client saw besides responses.
#[derive(Debug)]
enum Seen {
    ToolsChanged,
    Progress(ProgressNotificationParam),
}

/// A client that forwards the notifications it receives to a channel.
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

type Client = RunningService<RoleClient, Recorder>;

/// Serve `server` on one end of a duplex pipe and connect a legacy
/// (`initialize`) client to the other.
async fn connect(server: ExampleServer) -> anyhow::Result<(Client, mpsc::UnboundedReceiver<Seen>)> {
    let (server_end, client_end) = tokio::io::duplex(64 * 1024);
    tokio::spawn(async move {
        if let Ok(running) = server.serve(server_end).await {
            let _ = running.waiting().await;
        }
    });
    let (tx, rx) = mpsc::unbounded_channel();
    let client = Recorder(tx).serve(client_end).await?;
    Ok((client, rx))
}

fn args(value: Value) -> JsonObject {
    match value {
        Value::Object(map) => map,
        other => panic!("arguments must be an object, got {other}"),
    }
}

async fn call(client: &Client, tool: &str, arguments: Value) -> anyhow::Result<CallToolResult> {
    Ok(client
        .call_tool(CallToolRequestParams::new(tool.to_owned()).with_arguments(args(arguments)))
        .await?)
}

fn text(result: &CallToolResult) -> &str {
    result
        .content
        .first()
        .and_then(|block| block.as_text())
        .map_or("", |text| text.text.as_str())
}

/// The next event, or a panic after [`DEADLINE`].
async fn next_seen(rx: &mut mpsc::UnboundedReceiver<Seen>) -> Seen {
    tokio::time::timeout(DEADLINE, rx.recv())
        .await
        .expect("no notification before the deadline")
        .expect("the client is gone")
}

/// Poll `condition` every 10 ms until it holds, or panic after [`DEADLINE`].
async fn eventually(what: &str, condition: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !condition() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn advertises_itself_and_its_tools() -> anyhow::Result<()> {
    let (client, _rx) = connect(ExampleServer::new("alpha")).await?;

    let info = client.peer_info().expect("initialized");
    let server_info = info.server_info.as_ref().expect("server info");
    assert_eq!(server_info.name, "vmcp-example-server");
    assert_eq!(server_info.version, env!("CARGO_PKG_VERSION"));
    let tools_capability = info.capabilities.tools.as_ref().expect("tools capability");
    assert_eq!(tools_capability.list_changed, Some(true));
    assert!(info.capabilities.resources.is_some());
    assert!(info.capabilities.prompts.is_some());
    assert!(info.capabilities.completions.is_some());

    let tools = client.list_all_tools().await?;
    let names: Vec<_> = tools.iter().map(|tool| tool.name.as_ref()).collect();
    assert_eq!(
        names,
        ["echo", "add", "whoami", "slow", "fail", "toggle_extra"]
    );

    let pong = client
        .send_request(ClientRequest::PingRequest(Default::default()))
        .await?;
    assert!(matches!(pong, ServerResult::EmptyResult(_)), "{pong:?}");

    client.cancel().await?;
    Ok(())
}

#[tokio::test]
async fn tools_answer() -> anyhow::Result<()> {
    let (client, _rx) = connect(ExampleServer::new("alpha")).await?;

    let echoed = call(&client, "echo", json!({"text": "hello, world"})).await?;
    assert_eq!(text(&echoed), "hello, world");
    assert_eq!(echoed.is_error, Some(false));

    let sum = call(&client, "add", json!({"a": 2, "b": 3.5})).await?;
    assert_eq!(sum.structured_content, Some(json!({"sum": 5.5})));
    let sum = call(&client, "add", json!({"a": 40, "b": 2})).await?;
    assert_eq!(text(&sum), r#"{"sum":42}"#);

    let me = call(&client, "whoami", json!({})).await?;
    assert_eq!(text(&me), "alpha");

    let failed = call(&client, "fail", json!({})).await?;
    assert_eq!(failed.is_error, Some(true));

    let bad_arguments = call(&client, "echo", json!({"txt": "typo"})).await?;
    assert_eq!(bad_arguments.is_error, Some(true));
    assert!(text(&bad_arguments).contains("invalid arguments"));

    let unknown = call(&client, "extra", json!({})).await;
    assert!(unknown.is_err(), "extra is off: {unknown:?}");

    let slept = call(&client, "slow", json!({"millis": 20})).await?;
    assert_eq!(text(&slept), "slept 20 ms");

    client.cancel().await?;
    Ok(())
}

#[tokio::test]
async fn toggle_extra_announces_the_change_to_every_session() -> anyhow::Result<()> {
    let server = ExampleServer::new("alpha");
    let (client, mut rx) = connect(server.clone()).await?;
    let (other, mut other_rx) = connect(server.clone()).await?;

    let toggled = call(&client, tool_names::TOGGLE_EXTRA, json!({})).await?;
    assert_eq!(text(&toggled), "the extra tool is now listed");
    assert!(matches!(next_seen(&mut rx).await, Seen::ToolsChanged));
    assert!(matches!(next_seen(&mut other_rx).await, Seen::ToolsChanged));

    let tools = other.list_all_tools().await?;
    assert!(tools.iter().any(|tool| tool.name == "extra"));
    let extra = call(&other, "extra", json!({})).await?;
    assert_eq!(text(&extra), "extra tool of alpha");

    call(&other, tool_names::TOGGLE_EXTRA, json!({})).await?;
    assert!(matches!(next_seen(&mut rx).await, Seen::ToolsChanged));
    let tools = client.list_all_tools().await?;
    assert!(tools.iter().all(|tool| tool.name != "extra"));
    assert!(!server.extra_enabled());

    client.cancel().await?;
    other.cancel().await?;
    Ok(())
}

#[tokio::test]
async fn toggle_extra_reaches_listen_subscriptions() -> anyhow::Result<()> {
    let server = ExampleServer::new("alpha");
    let (server_end, client_end) = tokio::io::duplex(64 * 1024);
    tokio::spawn({
        let server = server.clone();
        async move {
            if let Ok(running) = server.serve(server_end).await {
                let _ = running.waiting().await;
            }
        }
    });
    // Protocol 2026-07-28: no initialize, no session; notifications only
    // flow on a subscriptions/listen stream.
    let client = ()
        .serve_with_lifecycle(
            client_end,
            ClientLifecycleMode::Discover {
                preferred_versions: vec![ProtocolVersion::V_2026_07_28],
            },
        )
        .await?;
    let mut subscription = client
        .listen(SubscriptionFilter::builder().tools_list_changed().build())
        .await?;
    assert_eq!(subscription.acknowledged().tools_list_changed, Some(true));

    server.toggle_extra();
    let notification = tokio::time::timeout(DEADLINE, subscription.next())
        .await
        .expect("no notification before the deadline")?;
    assert!(
        matches!(
            notification,
            Some(ServerNotification::ToolListChangedNotification(_))
        ),
        "{notification:?}"
    );
    let tools = client.list_all_tools().await?;
    assert!(tools.iter().any(|tool| tool.name == "extra"));

    subscription.cancel().await?;
    client.cancel().await?;
    Ok(())
}

#[tokio::test]
async fn slow_reports_progress_and_stops_when_cancelled() -> anyhow::Result<()> {
    let server = ExampleServer::new("alpha");
    let (client, mut rx) = connect(server.clone()).await?;

    let request = ClientRequest::CallToolRequest(CallToolRequest::new(
        CallToolRequestParams::new("slow").with_arguments(args(json!({"millis": 60_000}))),
    ));
    let handle = client
        .send_cancellable_request(request, PeerRequestOptions::no_options())
        .await?;
    let token = handle.progress_token.clone();
    let mut last = -1.0;
    for _ in 0..2 {
        match next_seen(&mut rx).await {
            Seen::Progress(progress) => {
                assert_eq!(progress.progress_token, token);
                assert_eq!(progress.total, Some(60_000.0));
                assert!(progress.progress > last, "progress must increase");
                last = progress.progress;
            }
            other => panic!("expected progress, got {other:?}"),
        }
    }

    handle.cancel(Some("test is done".to_owned())).await?;
    eventually("the server saw the cancellation", || {
        server.slow_calls_cancelled() == 1
    })
    .await;

    client.cancel().await?;
    Ok(())
}

#[tokio::test]
async fn resources_prompts_and_completion() -> anyhow::Result<()> {
    let (client, _rx) = connect(ExampleServer::new("alpha")).await?;

    let resources = client.list_all_resources().await?;
    assert_eq!(resources.len(), 1);
    assert_eq!(resources[0].uri, "example://alpha/info");
    let templates = client.list_all_resource_templates().await?;
    assert_eq!(templates.len(), 1);
    assert_eq!(templates[0].uri_template, "example://items/{id}");

    for (uri, expected) in [
        ("example://alpha/info", "instance \"alpha\""),
        ("example://items/42", "Item 42"),
    ] {
        let read = client
            .read_resource(ReadResourceRequestParams::new(uri))
            .await?;
        match read.contents.as_slice() {
            [ResourceContents::TextResourceContents { uri: got, text, .. }] => {
                assert_eq!(got, uri);
                assert!(text.contains(expected), "{text}");
            }
            other => panic!("unexpected contents for {uri}: {other:?}"),
        }
    }
    let missing = client
        .read_resource(ReadResourceRequestParams::new("example://nowhere"))
        .await;
    assert!(missing.is_err());

    let prompts = client.list_all_prompts().await?;
    assert_eq!(prompts.len(), 1);
    assert_eq!(prompts[0].name, "greet");
    let prompt = client
        .get_prompt(
            rmcp::model::GetPromptRequestParams::new("greet")
                .with_arguments(args(json!({"name": "Ada"}))),
        )
        .await?;
    let message = prompt.messages.first().expect("one message");
    assert_eq!(
        message.content.as_text().map(|text| text.text.as_str()),
        Some("Please greet Ada warmly.")
    );

    let completion = client.complete_prompt_simple("greet", "name", "al").await?;
    assert_eq!(completion, ["Alan", "Alice"]);

    client.cancel().await?;
    Ok(())
}

#[tokio::test]
async fn latency_tools_are_off_by_default() -> anyhow::Result<()> {
    let (client, _rx) = connect(ExampleServer::new("alpha")).await?;
    let tools = client.list_all_tools().await?;
    assert!(
        tools
            .iter()
            .all(|tool| !tool.name.starts_with("set_") && !tool.name.contains("latency")),
        "{tools:?}"
    );
    let refused = call(&client, tool_names::SET_LATENCY, json!({"millis": 10})).await;
    assert!(
        refused.is_err(),
        "set_latency without --latency-tools: {refused:?}"
    );
    client.cancel().await?;
    Ok(())
}

#[tokio::test]
async fn latency_tools_delay_answers_and_ping_or_only_tool_calls() -> anyhow::Result<()> {
    let server = ExampleServer::with_options(
        "alpha",
        vmcp_example_server::ServerOptions {
            latency_tools: true,
        },
    );
    let (client, _rx) = connect(server.clone()).await?;
    let names: Vec<_> = client
        .list_all_tools()
        .await?
        .into_iter()
        .map(|tool| tool.name.to_string())
        .collect();
    assert_eq!(
        names,
        [
            "echo",
            "add",
            "whoami",
            "slow",
            "fail",
            "toggle_extra",
            "set_latency",
            "set_call_latency"
        ]
    );
    let ping = async || -> anyhow::Result<Duration> {
        let started = tokio::time::Instant::now();
        client
            .send_request(ClientRequest::PingRequest(Default::default()))
            .await?;
        Ok(started.elapsed())
    };
    let echo = async || -> anyhow::Result<Duration> {
        let started = tokio::time::Instant::now();
        let echoed = call(&client, "echo", json!({"text": "hi"})).await?;
        assert_eq!(text(&echoed), "hi");
        Ok(started.elapsed())
    };
    const SHORT: Duration = Duration::from_millis(150);
    // Far above SHORT: a delay that did not apply shows up clearly.
    const LONG: Duration = Duration::from_secs(3);

    // Everything, ping included.
    let set = call(&client, tool_names::SET_LATENCY, json!({"millis": 150})).await?;
    assert_eq!(text(&set), "latency set to 150 ms");
    assert_eq!(server.latency(), SHORT);
    assert!(ping().await? >= SHORT);
    assert!(echo().await? >= SHORT);
    let started = tokio::time::Instant::now();
    client.list_all_tools().await?;
    assert!(started.elapsed() >= SHORT);

    // The control tools themselves answer at once, even behind a long latency.
    server.set_latency(LONG);
    let started = tokio::time::Instant::now();
    let reset = call(&client, tool_names::SET_LATENCY, json!({"millis": 0})).await?;
    assert_eq!(text(&reset), "latency set to 0 ms");
    assert!(started.elapsed() < LONG / 2, "{:?}", started.elapsed());
    assert_eq!(server.latency(), Duration::ZERO);

    // Tool calls only: ping stays fast.
    let set = call(
        &client,
        tool_names::SET_CALL_LATENCY,
        json!({"millis": 3000}),
    )
    .await?;
    assert_eq!(text(&set), "tool call latency set to 3000 ms");
    assert!(ping().await? < LONG / 2);
    assert!(echo().await? >= LONG);
    call(&client, tool_names::SET_CALL_LATENCY, json!({"millis": 0})).await?;
    assert!(echo().await? < LONG / 2);

    let too_long = call(&client, tool_names::SET_LATENCY, json!({"millis": 600_001})).await?;
    assert_eq!(too_long.is_error, Some(true));
    assert_eq!(server.latency(), Duration::ZERO);
    let bad = call(&client, tool_names::SET_CALL_LATENCY, json!({"ms": 1})).await?;
    assert_eq!(bad.is_error, Some(true));

    client.cancel().await?;
    Ok(())
}
