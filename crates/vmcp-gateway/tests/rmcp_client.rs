//! rmcp's Streamable HTTP client against the gateway running in this
//! process (`Gateway::start` + `server::router` on a loopback port), in front
//! of real backends: the project's example server (in process, over
//! Streamable HTTP, so the tests can toggle and observe it),
//! `@modelcontextprotocol/server-everything` over stdio (npm) and the
//! official Python SDK backend over legacy SSE (PyPI). The real peers come
//! from `scripts/install-peers.sh`; when they are missing the tests fail.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use rmcp::RoleClient;
use rmcp::model::{
    CallToolRequest, CallToolRequestParams, ClientRequest, CompletionContext, ErrorCode,
    GetPromptRequestParams, PingRequest, ProgressToken, ReadResourceRequestParams,
};
use rmcp::service::{PeerRequestOptions, RequestHandle};
use serde_json::{Value, json};
use tokio::time::Instant;

use support::{
    Client, DEADLINE, EVERYTHING_CORE_TOOLS, EVERYTHING_PROMPTS, EXAMPLE_TOOLS, ExampleBackend,
    PY_TOOLS, PyBackend, Recorder, TestGateway, args, call, call_error, call_text, eventually,
    everything_stdio, free_port, gateway_config, set, text_of, tool_names, tool_pages,
    within_deadline,
};

/// `prompts/get`; the text of its first message.
async fn prompt_text(client: &Client, name: &str, arguments: Value) -> String {
    let result = within_deadline(
        &format!("prompts/get {name}"),
        client.get_prompt(GetPromptRequestParams::new(name).with_arguments(args(arguments))),
    )
    .await
    .unwrap_or_else(|err| panic!("prompts/get {name}: {err}"));
    let value = serde_json::to_value(&result).expect("serialize");
    value["messages"][0]["content"]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("prompts/get {name}: no text message in {value}"))
        .to_owned()
}

/// `resources/read`; the text of its first content.
async fn resource_text(client: &Client, uri: &str) -> String {
    let result = within_deadline(
        &format!("resources/read {uri}"),
        client.read_resource(ReadResourceRequestParams::new(uri)),
    )
    .await
    .unwrap_or_else(|err| panic!("resources/read {uri}: {err}"));
    let value = serde_json::to_value(&result).expect("serialize");
    assert_eq!(value["contents"][0]["uri"], uri, "{value}");
    value["contents"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("resources/read {uri}: no text content in {value}"))
        .to_owned()
}

fn slow_request(tool: &str, arguments: Value) -> ClientRequest {
    ClientRequest::CallToolRequest(CallToolRequest::new(
        CallToolRequestParams::new(tool.to_owned()).with_arguments(args(arguments)),
    ))
}

/// Sends a slow `tools/call` whose progress and cancellation the test follows.
async fn send_slow(client: &Client, tool: &str, arguments: Value) -> RequestHandle<RoleClient> {
    within_deadline(
        &format!("send {tool}"),
        client.send_cancellable_request(
            slow_request(tool, arguments),
            PeerRequestOptions::no_options(),
        ),
    )
    .await
    .unwrap_or_else(|err| panic!("send {tool}: {err}"))
}

/// Cancels `handle` once the backend works on it (its first progress came).
async fn cancel_after_first_progress(
    handle: RequestHandle<RoleClient>,
    recorder: &Recorder,
    tool: &str,
) {
    let token = handle.progress_token.clone();
    eventually(
        DEADLINE,
        &format!("the first progress of {tool}"),
        async || (!recorder.progress_for(&token).is_empty()).then_some(()),
    )
    .await;
    within_deadline("cancel", handle.cancel(Some("test cancels".into())))
        .await
        .expect("send notifications/cancelled");
}

/// Moves the client's progress-token counter well away from the small
/// numbers the gateway's upstream clients use, so a token that is passed
/// through unmapped cannot match the client's by accident.
async fn advance_client_tokens(client: &Client) {
    for _ in 0..40 {
        within_deadline(
            "ping",
            client.send_request(ClientRequest::PingRequest(PingRequest::default())),
        )
        .await
        .expect("ping through the gateway");
    }
}

fn assert_increasing(progress: &[rmcp::model::ProgressNotificationParam]) {
    assert!(
        progress.windows(2).all(|w| w[0].progress < w[1].progress),
        "progress must increase: {progress:?}"
    );
}

/// Every progress notification the client got carries one of `tokens`.
fn assert_only_tokens(
    progress: &[rmcp::model::ProgressNotificationParam],
    tokens: &[&ProgressToken],
) {
    assert!(
        progress.iter().all(|p| tokens.contains(&&p.progress_token)),
        "progress under a token the client never used (expected {tokens:?}): {progress:?}"
    );
}

// 1 ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merged_tools_are_paginated_and_calls_reach_each_backend() {
    let ex = ExampleBackend::start("ex").await;
    let py = PyBackend::start_sse("pysse").await;
    let gateway = TestGateway::start(gateway_config(
        vec![ex.config("ex"), everything_stdio("everything"), py.config()],
        json!({}),
    ))
    .await;
    let (client, _) = gateway.connect().await;

    let pages = tool_pages(&client).await;
    let sizes: Vec<usize> = pages.iter().map(Vec::len).collect();
    assert!(pages.len() > 1, "pageSize 5 must paginate: {sizes:?}");
    assert!(
        sizes.iter().all(|&n| (1..=5).contains(&n)),
        "every page holds 1..=5 tools: {sizes:?}"
    );
    let names: Vec<String> = pages.concat();
    let unique: BTreeSet<String> = names.iter().cloned().collect();
    assert_eq!(
        unique.len(),
        names.len(),
        "a tool is listed twice: {names:?}"
    );
    let under = |prefix: &str| -> BTreeSet<String> {
        names
            .iter()
            .filter_map(|n| n.strip_prefix(prefix))
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(under("ex_"), set(EXAMPLE_TOOLS), "{names:?}");
    assert_eq!(under("pysse_"), set(PY_TOOLS), "{names:?}");
    let everything = under("everything_");
    assert!(
        set(EVERYTHING_CORE_TOOLS).is_subset(&everything),
        "missing from everything: {:?}",
        set(EVERYTHING_CORE_TOOLS).difference(&everything)
    );
    assert_eq!(
        names.len(),
        EXAMPLE_TOOLS.len() + PY_TOOLS.len() + everything.len(),
        "every tool carries one backend prefix: {names:?}"
    );
    let catalogue: BTreeSet<String> = gateway
        .gateway
        .catalogue()
        .tools
        .iter()
        .map(|t| t.name.to_string())
        .collect();
    assert_eq!(catalogue, unique, "the pages are exactly the catalogue");

    // Distinct arguments come back from the backend that owns each name.
    assert_eq!(
        call_text(&client, "ex_echo", json!({"text": "to-ex-1"})).await,
        "to-ex-1"
    );
    assert_eq!(
        call_text(&client, "pysse_echo", json!({"text": "to-pysse-2"})).await,
        "to-pysse-2"
    );
    assert_eq!(
        call_text(
            &client,
            "everything_echo",
            json!({"message": "to-everything-3"})
        )
        .await,
        "Echo: to-everything-3"
    );
    assert_eq!(call_text(&client, "ex_whoami", json!({})).await, "ex");
    assert_eq!(call_text(&client, "pysse_whoami", json!({})).await, "pysse");
    let sum = call(&client, "ex_add", json!({"a": 2, "b": 40}))
        .await
        .expect("ex_add");
    assert_eq!(sum.structured_content, Some(json!({"sum": 42})));
    assert_eq!(
        call_text(&client, "pysse_add", json!({"a": 5, "b": 6})).await,
        "11"
    );
    assert_eq!(
        call_text(&client, "everything_get-sum", json!({"a": 2, "b": 3})).await,
        "The sum of 2 and 3 is 5."
    );
    // A tool error is a result with isError, passed through.
    let failed = call(&client, "ex_fail", json!({}))
        .await
        .expect("ex_fail answers");
    assert_eq!(failed.is_error, Some(true), "{failed:?}");
    assert_eq!(text_of(&failed), "this tool always fails");

    // The example server saw its own names, with the arguments unchanged.
    assert_eq!(ex.tools_called(), ["echo", "whoami", "add", "fail"]);
    assert_eq!(
        ex.rpc_params("tools/call")[0]["arguments"],
        json!({"text": "to-ex-1"})
    );

    let unknown = call_error(&client, "nobody_has_this", json!({})).await;
    assert_eq!(unknown.code, ErrorCode::INVALID_PARAMS, "{unknown:?}");
    assert!(unknown.message.contains("nobody_has_this"), "{unknown:?}");

    gateway.stop(client).await;
}

// 2 ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prompts_resources_and_completions_are_routed_and_renamed() {
    let ex = ExampleBackend::start("ex").await;
    let py = PyBackend::start_sse("pysse").await;
    let gateway = TestGateway::start(gateway_config(
        vec![ex.config("ex"), everything_stdio("everything"), py.config()],
        json!({}),
    ))
    .await;
    let (client, _) = gateway.connect().await;

    // Prompts: prefixed names, across pages.
    let prompts: BTreeSet<String> = within_deadline("prompts/list", client.list_all_prompts())
        .await
        .expect("prompts/list")
        .into_iter()
        .map(|p| p.name)
        .collect();
    let mut expected = set(["ex_greet", "pysse_greet"]);
    expected.extend(EVERYTHING_PROMPTS.iter().map(|p| format!("everything_{p}")));
    assert_eq!(prompts, expected);

    assert_eq!(
        prompt_text(&client, "ex_greet", json!({"name": "Ada"})).await,
        "Please greet Ada warmly."
    );
    let gets = ex.rpc_params("prompts/get");
    assert_eq!(gets.len(), 1, "{gets:?}");
    assert_eq!(gets[0]["name"], "greet", "the backend gets its own name");
    assert_eq!(gets[0]["arguments"], json!({"name": "Ada"}));
    assert_eq!(
        prompt_text(&client, "pysse_greet", json!({"name": "Bob"})).await,
        "Hello Bob, greetings from pysse."
    );
    let question = prompt_text(&client, "everything_args-prompt", json!({"city": "Paris"})).await;
    assert!(question.contains("Paris"), "{question}");

    // Static resources keep their URIs and are read from their owner.
    let resources: BTreeSet<String> =
        within_deadline("resources/list", client.list_all_resources())
            .await
            .expect("resources/list")
            .into_iter()
            .map(|r| r.uri.clone())
            .collect();
    for uri in [
        "example://ex/info",
        "py://pysse/info",
        "demo://resource/static/document/features.md",
    ] {
        assert!(resources.contains(uri), "{uri} not in {resources:?}");
    }
    assert_eq!(
        resource_text(&client, "example://ex/info").await,
        "This is vmcp-example-server instance \"ex\"."
    );
    assert_eq!(
        resource_text(&client, "py://pysse/info").await,
        "backend pysse over sse"
    );
    let features = resource_text(&client, "demo://resource/static/document/features.md").await;
    assert!(!features.trim().is_empty(), "features.md is empty");

    // Templates: a URI no listed resource has goes to the template's owner.
    let templates: BTreeSet<String> = within_deadline(
        "resources/templates/list",
        client.list_all_resource_templates(),
    )
    .await
    .expect("resources/templates/list")
    .into_iter()
    .map(|t| t.uri_template.clone())
    .collect();
    for template in [
        "example://items/{id}",
        "py://items/{item_id}",
        "demo://resource/dynamic/text/{resourceId}",
    ] {
        assert!(
            templates.contains(template),
            "{template} not in {templates:?}"
        );
    }
    assert_eq!(
        resource_text(&client, "example://items/42").await,
        "Item 42"
    );
    assert_eq!(
        resource_text(&client, "py://items/9").await,
        "item 9 from pysse"
    );
    let dynamic = resource_text(&client, "demo://resource/dynamic/text/3").await;
    assert!(dynamic.starts_with("Resource 3: "), "{dynamic}");
    let reads: Vec<Value> = ex
        .rpc_params("resources/read")
        .iter()
        .map(|p| p["uri"].clone())
        .collect();
    assert_eq!(
        reads,
        ["example://ex/info", "example://items/42"],
        "exactly the example's URIs reached the example server"
    );

    // Completions: prompt references are renamed, context passes through,
    // template references go to the template's owner.
    let names = within_deadline(
        "completion/complete ex_greet",
        client.complete_prompt_simple("ex_greet", "name", "Al"),
    )
    .await
    .expect("complete ex_greet");
    assert_eq!(names, ["Alan", "Alice"]);
    let completions = ex.rpc_params("completion/complete");
    assert_eq!(completions.len(), 1, "{completions:?}");
    assert_eq!(
        completions[0]["ref"],
        json!({"type": "ref/prompt", "name": "greet"})
    );
    let departments = within_deadline(
        "completion/complete everything_completable-prompt",
        client.complete_prompt_simple("everything_completable-prompt", "department", "Eng"),
    )
    .await
    .expect("complete department");
    assert_eq!(departments, ["Engineering"]);
    let mut context = CompletionContext::new();
    context.arguments = Some([("department".to_owned(), "Sales".to_owned())].into());
    let members = within_deadline(
        "completion/complete with context",
        client.complete_prompt_argument("everything_completable-prompt", "name", "", Some(context)),
    )
    .await
    .expect("complete name");
    assert_eq!(members.values, ["David", "Eve", "Frank"]);
    let ids = within_deadline(
        "completion/complete of a template",
        client.complete_resource_simple(
            "demo://resource/dynamic/text/{resourceId}",
            "resourceId",
            "7",
        ),
    )
    .await
    .expect("complete resourceId");
    assert_eq!(ids, ["7"]);
    assert_eq!(
        ex.rpc_params("completion/complete").len(),
        1,
        "the other completions must not reach the example server"
    );

    gateway.stop(client).await;
}

// 3 ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_reaches_the_client_under_its_own_token() {
    let ex = ExampleBackend::start("ex").await;
    let py = PyBackend::start_sse("pysse").await;
    let gateway = TestGateway::start(gateway_config(
        vec![ex.config("ex"), py.config()],
        json!({}),
    ))
    .await;
    let (client, recorder) = gateway.connect().await;
    advance_client_tokens(&client).await;

    let handle = send_slow(&client, "ex_slow", json!({"millis": 600})).await;
    let token = handle.progress_token.clone();
    let answer = within_deadline("ex_slow to finish", handle.await_response())
        .await
        .expect("ex_slow");
    let rmcp::model::ServerResult::CallToolResult(result) = answer else {
        panic!("unexpected answer to ex_slow: {answer:?}");
    };
    assert_eq!(text_of(&result), "slept 600 ms");
    let ours = recorder.progress_for(&token);
    assert!(
        ours.len() >= 2,
        "at least 2 progress notifications under the client's token {token:?}; got {:?}",
        recorder.progress()
    );
    assert_increasing(&ours);
    assert!(ours.iter().all(|p| p.total == Some(600.0)), "{ours:?}");
    assert_only_tokens(&recorder.progress(), &[&token]);
    // The example server got the gateway's own token, not the client's.
    let upstream = &ex.rpc_params("tools/call")[0]["_meta"]["progressToken"];
    assert!(
        !upstream.is_null(),
        "the gateway asks the backend for progress"
    );
    assert_ne!(
        *upstream,
        serde_json::to_value(&token).expect("serialize"),
        "the client's token must be mapped, not passed through"
    );

    // The same through the Python SDK over SSE.
    let handle = send_slow(&client, "pysse_slow", json!({"seconds": 0.5})).await;
    let py_token = handle.progress_token.clone();
    assert_ne!(py_token, token);
    within_deadline("pysse_slow to finish", handle.await_response())
        .await
        .expect("pysse_slow");
    let py_progress = recorder.progress_for(&py_token);
    assert!(
        py_progress.len() >= 2,
        "at least 2 progress notifications from pysse under {py_token:?}; got {:?}",
        recorder.progress()
    );
    assert_increasing(&py_progress);
    assert_only_tokens(&recorder.progress(), &[&token, &py_token]);

    eventually(DEADLINE, "progress routes to be released", async || {
        gateway.gateway.routes.is_empty().then_some(())
    })
    .await;
    gateway.stop(client).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_call_cancels_it_at_the_backend() {
    let ex = ExampleBackend::start("ex").await;
    let py = PyBackend::start_sse("pysse").await;
    let gateway = TestGateway::start(gateway_config(
        vec![ex.config("ex"), py.config()],
        json!({}),
    ))
    .await;
    let (client, recorder) = gateway.connect().await;

    assert_eq!(ex.server.slow_calls_cancelled(), 0);
    let handle = send_slow(&client, "ex_slow", json!({"millis": 30000})).await;
    cancel_after_first_progress(handle, &recorder, "ex_slow").await;
    eventually(
        Duration::from_secs(5),
        "the example server to see the cancellation",
        async || (ex.server.slow_calls_cancelled() == 1).then_some(()),
    )
    .await;
    // The backend got a notifications/cancelled for the forwarded request's id.
    let call_id = ex
        .requests()
        .iter()
        .flat_map(|r| r.messages().into_iter().cloned().collect::<Vec<_>>())
        .find(|m| m["method"] == "tools/call" && m["params"]["name"] == "slow")
        .map(|m| m["id"].clone())
        .expect("the slow call reached the example server");
    let cancels = ex.rpc_params("notifications/cancelled");
    assert!(
        cancels.iter().any(|c| c["requestId"] == call_id),
        "no notifications/cancelled for request {call_id}: {cancels:?}"
    );
    eventually(DEADLINE, "the gateway to finish the request", async || {
        (gateway.gateway.in_flight() == 0 && gateway.gateway.routes.is_empty()).then_some(())
    })
    .await;

    // The same through the Python SDK over SSE (its `stats` tool counts).
    let handle = send_slow(&client, "pysse_slow", json!({"seconds": 30})).await;
    cancel_after_first_progress(handle, &recorder, "pysse_slow").await;
    let stats = eventually(
        Duration::from_secs(5),
        "pysse to see the cancellation",
        async || {
            let text = call_text(&client, "pysse_stats", json!({})).await;
            let stats: Value = serde_json::from_str(&text).expect("stats is JSON");
            (stats["cancelled"] == 1).then_some(stats)
        },
    )
    .await;
    assert_eq!(stats["in_flight"], 0, "{stats}");
    assert_eq!(stats["completed"], 0, "{stats}");

    gateway.stop(client).await;
}

// 4 ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_list_changes_reach_the_client() {
    let ex = ExampleBackend::start("ex").await;
    let py = PyBackend::start_sse("pysse").await;
    let gateway = TestGateway::start(gateway_config(
        vec![ex.config("ex"), py.config()],
        json!({}),
    ))
    .await;
    let (client, recorder) = gateway.connect().await;
    let before = tool_names(&client).await;
    assert!(!before.contains("ex_extra") && !before.contains("pysse_extra"));
    assert_eq!(recorder.tools_changed(), 0);

    assert_eq!(
        call_text(&client, "ex_toggle_extra", json!({})).await,
        "the extra tool is now listed"
    );
    assert!(ex.server.extra_enabled());
    eventually(
        DEADLINE,
        "tools/list_changed after ex_toggle_extra",
        async || (recorder.tools_changed() >= 1).then_some(()),
    )
    .await;
    eventually(DEADLINE, "ex_extra to be listed", async || {
        tool_names(&client).await.contains("ex_extra").then_some(())
    })
    .await;
    assert_eq!(
        call_text(&client, "ex_extra", json!({})).await,
        "extra tool of ex"
    );
    assert_eq!(
        tool_names(&client).await,
        before
            .iter()
            .cloned()
            .chain(["ex_extra".to_owned()])
            .collect(),
        "only ex_extra was added"
    );

    let seen = recorder.tools_changed();
    assert_eq!(
        call_text(&client, "ex_toggle_extra", json!({})).await,
        "the extra tool is no longer listed"
    );
    eventually(
        DEADLINE,
        "tools/list_changed after the second toggle",
        async || (recorder.tools_changed() > seen).then_some(()),
    )
    .await;
    eventually(DEADLINE, "ex_extra to disappear", async || {
        (!tool_names(&client).await.contains("ex_extra")).then_some(())
    })
    .await;
    let gone = call_error(&client, "ex_extra", json!({})).await;
    assert!(gone.message.contains("ex_extra"), "{gone:?}");

    // The Python SDK announces its change on the SSE stream.
    let seen = recorder.tools_changed();
    assert_eq!(
        call_text(&client, "pysse_toggle_extra", json!({})).await,
        "added"
    );
    eventually(DEADLINE, "tools/list_changed after pysse", async || {
        (recorder.tools_changed() > seen).then_some(())
    })
    .await;
    eventually(DEADLINE, "pysse_extra to be listed", async || {
        tool_names(&client)
            .await
            .contains("pysse_extra")
            .then_some(())
    })
    .await;
    assert_eq!(
        call_text(&client, "pysse_extra", json!({})).await,
        "extra from pysse"
    );

    gateway.stop(client).await;
}

// 5 ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn priority_resolution_lets_the_preferred_backend_answer() {
    let alpha = ExampleBackend::start("alpha").await;
    let beta = ExampleBackend::start("beta").await;
    // Config order says alpha first; priorityOrder says beta.
    let gateway = TestGateway::start(gateway_config(
        vec![alpha.config("alpha"), beta.config("beta")],
        json!({"aggregation": {
            "conflictResolution": "priority",
            "conflictResolutionConfig": {"priorityOrder": ["beta", "alpha"]},
        }}),
    ))
    .await;
    let (client, _) = gateway.connect().await;

    let pages = tool_pages(&client).await;
    let names: Vec<String> = pages.concat();
    assert_eq!(names.len(), EXAMPLE_TOOLS.len(), "{names:?}");
    assert_eq!(set(&names), set(EXAMPLE_TOOLS), "names stay unprefixed");

    assert_eq!(call_text(&client, "whoami", json!({})).await, "beta");
    assert_eq!(
        call_text(&client, "echo", json!({"text": "prio-1"})).await,
        "prio-1"
    );
    assert_eq!(beta.tools_called(), ["whoami", "echo"]);
    assert_eq!(
        beta.rpc_params("tools/call")[1]["arguments"],
        json!({"text": "prio-1"})
    );
    assert!(
        alpha.tools_called().is_empty(),
        "alpha must not be called: {:?}",
        alpha.tools_called()
    );
    // The prompt and the shared template go to beta too.
    assert_eq!(
        prompt_text(&client, "greet", json!({"name": "Grace"})).await,
        "Please greet Grace warmly."
    );
    assert_eq!(resource_text(&client, "example://items/7").await, "Item 7");
    assert_eq!(beta.rpc_params("prompts/get").len(), 1);
    assert_eq!(beta.rpc_params("resources/read").len(), 1);
    assert!(alpha.rpc_params("prompts/get").is_empty());
    assert!(alpha.rpc_params("resources/read").is_empty());
    // Distinct URIs stay reachable on both.
    assert_eq!(
        resource_text(&client, "example://alpha/info").await,
        "This is vmcp-example-server instance \"alpha\"."
    );

    gateway.stop(client).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_resolution_with_overrides_reaches_both_backends() {
    let alpha = ExampleBackend::start("alpha").await;
    let beta = ExampleBackend::start("beta").await;
    let gateway = TestGateway::start(gateway_config(
        vec![alpha.config("alpha"), beta.config("beta")],
        json!({"aggregation": {
            "conflictResolution": "manual",
            "tools": [{
                "workload": "alpha",
                "overrides": {
                    "echo": {"name": "alpha_echo", "description": "alpha's echo"},
                    "whoami": {"name": "alpha_whoami"},
                },
            }],
        }}),
    ))
    .await;
    let (client, _) = gateway.connect().await;

    let tools = within_deadline("tools/list", client.list_all_tools())
        .await
        .expect("tools/list");
    let names: Vec<String> = tools.iter().map(|t| t.name.to_string()).collect();
    for name in ["echo", "alpha_echo", "whoami", "alpha_whoami"] {
        assert_eq!(
            names.iter().filter(|n| *n == name).count(),
            1,
            "{name} must be listed once: {names:?}"
        );
    }
    let alpha_echo = tools
        .iter()
        .find(|t| t.name == "alpha_echo")
        .expect("alpha_echo listed");
    assert_eq!(alpha_echo.description.as_deref(), Some("alpha's echo"));
    // A clash left unresolved hides every claimant.
    assert!(
        !names.iter().any(|n| n == "add"),
        "add clashes and must be hidden: {names:?}"
    );
    let hidden = call_error(&client, "add", json!({"a": 1, "b": 2})).await;
    assert!(hidden.message.contains("add"), "{hidden:?}");

    assert_eq!(call_text(&client, "whoami", json!({})).await, "beta");
    assert_eq!(call_text(&client, "alpha_whoami", json!({})).await, "alpha");
    assert_eq!(
        call_text(&client, "echo", json!({"text": "to-beta"})).await,
        "to-beta"
    );
    assert_eq!(
        call_text(&client, "alpha_echo", json!({"text": "to-alpha"})).await,
        "to-alpha"
    );
    // Each backend saw its own tool names, with the right arguments.
    assert_eq!(alpha.tools_called(), ["whoami", "echo"]);
    assert_eq!(beta.tools_called(), ["whoami", "echo"]);
    assert_eq!(
        alpha.rpc_params("tools/call")[1]["arguments"],
        json!({"text": "to-alpha"})
    );
    assert_eq!(
        beta.rpc_params("tools/call")[1]["arguments"],
        json!({"text": "to-beta"})
    );

    gateway.stop(client).await;
}

// 6 ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_backend_timeout_fails_only_that_backend() {
    let ex = ExampleBackend::start("ex").await;
    let other = ExampleBackend::start("other").await;
    let gateway = TestGateway::start(gateway_config(
        vec![ex.config("ex"), other.config("other")],
        json!({"operational": {"timeouts": {"default": "30s", "perWorkload": {"ex": "500ms"}}}}),
    ))
    .await;
    let (client, _) = gateway.connect().await;

    let started = Instant::now();
    let (timed_out, finished) = tokio::join!(
        async {
            let error = call_error(&client, "ex_slow", json!({"millis": 5000})).await;
            (error, started.elapsed())
        },
        async {
            let text = call_text(&client, "other_slow", json!({"millis": 1000})).await;
            (text, started.elapsed())
        },
    );
    let (error, error_after) = timed_out;
    assert_eq!(error.code, ErrorCode(-32001), "{error:?}");
    assert!(error.message.contains("backend ex "), "{error:?}");
    assert_eq!(
        error.data,
        Some(json!({"backend": "ex", "reason": "timeout"})),
        "{error:?}"
    );
    assert!(
        error_after >= Duration::from_millis(450) && error_after < Duration::from_millis(1500),
        "the timeout error came after {error_after:?}"
    );
    let (text, other_after) = finished;
    assert_eq!(text, "slept 1000 ms");
    assert!(
        other_after >= Duration::from_millis(1000),
        "{other_after:?}"
    );
    // The gateway told the backend to stop.
    eventually(
        Duration::from_secs(5),
        "ex to see the timed-out call cancelled",
        async || (ex.server.slow_calls_cancelled() == 1).then_some(()),
    )
    .await;
    // One timeout does not take the backend away.
    assert_eq!(
        call_text(&client, "ex_echo", json!({"text": "still here"})).await,
        "still here"
    );

    gateway.stop(client).await;
}

// 7 ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_down_at_start_leaves_the_others_working() {
    let ex = ExampleBackend::start("ex").await;
    let closed = free_port();
    let started = Instant::now();
    let gateway = TestGateway::start(gateway_config(
        vec![
            ex.config("ex"),
            json!({"name": "down", "transport": "streamable-http",
                   "url": format!("http://127.0.0.1:{closed}/mcp")}),
        ],
        json!({}),
    ))
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "readiness took {:?}",
        started.elapsed()
    );
    let (code, ready) = gateway.get_json("/readyz").await;
    assert_eq!(code, 200, "{ready}");

    let (client, _) = gateway.connect().await;
    let names = tool_names(&client).await;
    assert!(
        names.iter().all(|n| n.starts_with("ex_")),
        "only ex's tools: {names:?}"
    );
    assert_eq!(names.len(), EXAMPLE_TOOLS.len(), "{names:?}");
    assert_eq!(call_text(&client, "ex_whoami", json!({})).await, "ex");
    let error = call_error(&client, "down_echo", json!({"text": "anyone?"})).await;
    let rendered = format!("{error:?}");
    assert!(
        !rendered.contains(&closed.to_string()) && !rendered.contains("127.0.0.1"),
        "the error reveals the address: {rendered}"
    );

    let entry = eventually(DEADLINE, "/status to show down unavailable", async || {
        let entry = gateway.backend_status("down").await;
        (entry["status"] == "unavailable").then_some(entry)
    })
    .await;
    let message = entry["message"]
        .as_str()
        .unwrap_or_else(|| panic!("down has no message: {entry}"));
    assert!(!message.is_empty(), "{entry}");
    for leak in [
        closed.to_string().as_str(),
        "127.0.0.1",
        "localhost",
        "http",
    ] {
        assert!(
            !message.contains(leak),
            "the status message reveals {leak}: {message}"
        );
    }
    assert_eq!(gateway.backend_status("ex").await["status"], "ready");

    gateway.stop(client).await;
}

// 8 ---------------------------------------------------------------------------

const CHILD_MARKER: &str = "VMCP_RMCP_CLIENT_TEST_CHILD";
const KEY_ENV: &str = "VMCP_RMCP_CLIENT_TEST_API_KEY";
const UNSET_KEY_ENV: &str = "VMCP_RMCP_CLIENT_TEST_UNSET_API_KEY";
const KEY: &str = "k3y-from-the-environment";

/// Runs itself again in a child process whose environment holds the key
/// (setting a variable in this process would need `unsafe`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn header_injection_from_the_environment_reaches_the_backend() {
    if std::env::var_os(CHILD_MARKER).is_none() {
        support::rerun_in_child(
            "header_injection_from_the_environment_reaches_the_backend",
            &[(CHILD_MARKER, "1"), (KEY_ENV, KEY)],
            &[UNSET_KEY_ENV],
        )
        .await;
        return;
    }
    assert_eq!(std::env::var(KEY_ENV).as_deref(), Ok(KEY));
    assert!(std::env::var_os(UNSET_KEY_ENV).is_none());

    let keyed = ExampleBackend::start_requiring_header("keyed", "X-Api-Key", KEY).await;
    let nokey = ExampleBackend::start("nokey").await;
    let plain = ExampleBackend::start("plain").await;
    let injection = |env: &str| {
        json!({"type": "header_injection",
               "headerInjection": {"headerName": "X-Api-Key", "headerValueEnv": env}})
    };
    let gateway = TestGateway::start(gateway_config(
        vec![
            keyed.config("keyed"),
            nokey.config("nokey"),
            plain.config("plain"),
        ],
        json!({"outgoingAuth": {"source": "inline", "backends": {
            "keyed": injection(KEY_ENV),
            "nokey": injection(UNSET_KEY_ENV),
        }}}),
    ))
    .await;
    let (client, _) = gateway.connect().await;

    assert_eq!(call_text(&client, "keyed_whoami", json!({})).await, "keyed");
    assert_eq!(call_text(&client, "plain_whoami", json!({})).await, "plain");
    let names = tool_names(&client).await;
    assert!(names.contains("keyed_echo") && names.contains("plain_echo"));
    assert!(
        !names.iter().any(|n| n.starts_with("nokey_")),
        "nokey cannot be reached without its key: {names:?}"
    );

    // Every request to the keyed backend carried the key (it refuses others).
    let requests = keyed.requests();
    assert!(
        requests
            .iter()
            .any(|r| r.messages().iter().any(|m| m["method"] == "initialize")),
        "{requests:?}"
    );
    for request in &requests {
        assert_eq!(
            request.headers.get("x-api-key").map(|v| v.as_bytes()),
            Some(KEY.as_bytes()),
            "{} request without the key: {:?}",
            request.method,
            request.body
        );
    }
    // The header goes only where it is configured.
    assert!(!plain.requests().is_empty());
    assert!(
        plain
            .requests()
            .iter()
            .all(|r| !r.headers.contains_key("x-api-key")),
        "plain got an X-Api-Key header"
    );
    // Without its variable the gateway does not even try nokey.
    assert!(
        nokey.requests().is_empty(),
        "nokey was contacted: {:?}",
        nokey.requests()
    );

    let entry = eventually(DEADLINE, "/status to show nokey unavailable", async || {
        let entry = gateway.backend_status("nokey").await;
        (entry["status"] == "unavailable").then_some(entry)
    })
    .await;
    assert_eq!(entry["authType"], "header_injection", "{entry}");
    assert!(entry["message"].is_string(), "{entry}");
    assert_eq!(gateway.backend_status("keyed").await["status"], "ready");
    assert_eq!(gateway.backend_status("plain").await["status"], "ready");
    let (_, status) = gateway.get_json("/status").await;
    assert!(
        !status.to_string().contains(KEY),
        "/status reveals the key: {status}"
    );

    gateway.stop(client).await;
}

/// A backend whose `headerValueEnv` variable is unset is never contacted:
/// `/status` must give the gateway's own reason ("outgoing auth
/// misconfigured", `ConnectError::category`), not blame the backend.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unset_header_env_var_is_reported_as_misconfigured_auth() {
    assert!(
        std::env::var_os(UNSET_KEY_ENV).is_none(),
        "{UNSET_KEY_ENV} must not be set for this test"
    );
    let nokey = ExampleBackend::start("nokey").await;
    let plain = ExampleBackend::start("plain").await;
    let gateway = TestGateway::start(gateway_config(
        vec![nokey.config("nokey"), plain.config("plain")],
        json!({"outgoingAuth": {"backends": {"nokey": {
            "type": "header_injection",
            "headerInjection": {"headerName": "X-Api-Key", "headerValueEnv": UNSET_KEY_ENV},
        }}}}),
    ))
    .await;
    let entry = eventually(DEADLINE, "/status to show nokey unavailable", async || {
        let entry = gateway.backend_status("nokey").await;
        (entry["status"] == "unavailable").then_some(entry)
    })
    .await;
    assert!(nokey.requests().is_empty(), "nokey was contacted");
    assert_eq!(gateway.backend_status("plain").await["status"], "ready");
    assert_eq!(
        entry["message"], "outgoing auth misconfigured",
        "/status blames the backend for the gateway's unset {UNSET_KEY_ENV}: {entry}"
    );
    gateway.shutdown().await;
}
