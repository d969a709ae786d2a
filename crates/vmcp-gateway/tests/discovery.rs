//! Backends added and removed at run time (`Gateway::set_backends`, the
//! discovery mode Kubernetes uses), driven with rmcp's client against real
//! example-server backends over Streamable HTTP on loopback.

mod support;

use std::collections::BTreeSet;
use std::sync::Arc;

use rmcp::model::ErrorCode;
use serde_json::{Value, json};
use tokio::sync::watch;
use vmcp_config::BackendConfig;
use vmcp_domain::status::{Phase, Status};
use vmcp_gateway::Gateway;

use support::{
    DEADLINE, EXAMPLE_TOOLS, ExampleBackend, Recorder, TestGateway, call, call_error, call_text,
    eventually, gateway_config, set, tool_names, within_deadline,
};

/// A backend entry as discovery would hand it over.
fn backend(entry: Value) -> BackendConfig {
    serde_json::from_value(entry.clone())
        .unwrap_or_else(|err| panic!("not a backend entry ({err}): {entry}"))
}

/// A config with no static backends: everything comes from discovery.
fn discovery_config() -> Value {
    gateway_config(vec![], json!({"groupRef": "discovery-tests"}))
}

/// `backend_`-prefixed example tools.
fn tools_of(backend: &str) -> BTreeSet<String> {
    EXAMPLE_TOOLS
        .iter()
        .map(|tool| format!("{backend}_{tool}"))
        .collect()
}

fn union(a: &BTreeSet<String>, b: &BTreeSet<String>) -> BTreeSet<String> {
    a.union(b).cloned().collect()
}

/// The backend names in the gateway's health snapshot right now.
fn snapshot_names(gateway: &Gateway) -> BTreeSet<String> {
    gateway
        .health_snapshot()
        .backends
        .into_iter()
        .map(|b| b.name)
        .collect()
}

fn status_names(status: &Status) -> BTreeSet<String> {
    status
        .discovered_backends
        .iter()
        .map(|b| b.name.clone())
        .collect()
}

/// Waits until the published status lists exactly `names`, and checks the
/// live snapshot and `/status` agree.
async fn assert_status_lists(
    gateway: &TestGateway,
    published: &mut watch::Receiver<Arc<Status>>,
    names: &[&str],
) {
    let want = set(names);
    let what = format!("the published status to list exactly {want:?}");
    within_deadline(&what, published.wait_for(|s| status_names(s) == want))
        .await
        .expect("the status channel stays open");
    assert_eq!(snapshot_names(&gateway.gateway), want, "health snapshot");
    let current = gateway.gateway.current_status();
    assert_eq!(status_names(&current), want, "current status");
    assert_eq!(current.backend_count as usize, names.len());
    let (code, body) = gateway.get_json("/status").await;
    assert_eq!(code, 200);
    let listed: BTreeSet<String> = body["discoveredBackends"]
        .as_array()
        .unwrap_or_else(|| panic!("no discoveredBackends in {body}"))
        .iter()
        .map(|b| b["name"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(listed, want, "/status: {body:#}");
}

/// Waits for a tools/list_changed after `seen` of them, then for the tool
/// list to be `want`.
async fn await_tools(
    client: &support::Client,
    recorder: &Recorder,
    seen: usize,
    want: &BTreeSet<String>,
) {
    eventually(DEADLINE, "notifications/tools/list_changed", async || {
        (recorder.tools_changed() > seen).then_some(())
    })
    .await;
    eventually(
        DEADLINE,
        &format!("tools/list to be {want:?}"),
        async || (tool_names(client).await == *want).then_some(()),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backends_added_and_removed_at_run_time_reach_connected_clients() {
    let one = ExampleBackend::start("one").await;
    let two = ExampleBackend::start("two").await;
    let three = ExampleBackend::start("three").await;
    let gateway = TestGateway::start_discovering(discovery_config()).await;
    let gw = gateway.gateway.clone();
    let mut published = gw.subscribe_status();

    // Nothing discovered yet: not ready, Pending, no backends.
    assert!(!gw.is_ready());
    assert_eq!(gw.current_status().phase, Phase::Pending);
    let (code, body) = gateway.get_json("/readyz").await;
    assert_eq!(code, 503, "{body}");
    assert!(gw.backends().is_empty());

    // The first discovery result: one backend.
    let changes = gw.set_backends(vec![backend(one.config("one"))]);
    assert_eq!(changes.added, ["one"]);
    assert!(changes.changed);
    within_deadline("readiness after the first discovery", gw.wait_ready()).await;
    let (code, body) = gateway.get_json("/readyz").await;
    assert_eq!(code, 200, "{body}");
    assert_ne!(gw.current_status().phase, Phase::Pending);
    assert_eq!(gw.backends().len(), 1);
    assert_status_lists(&gateway, &mut published, &["one"]).await;
    let (client, recorder) = gateway.connect().await;
    assert_eq!(tool_names(&client).await, tools_of("one"));
    assert_eq!(call_text(&client, "one_whoami", json!({})).await, "one");

    // A second backend appears: the client is told, its tools are listed and callable.
    let seen = (
        recorder.tools_changed(),
        recorder.prompts_changed(),
        recorder.resources_changed(),
    );
    let first = gw.backend("one").expect("one is registered");
    let changes = gw.set_backends(vec![backend(one.config("one")), backend(two.config("two"))]);
    assert_eq!(changes.added, ["two"]);
    assert_eq!(changes.kept, ["one"]);
    assert!(changes.removed.is_empty() && changes.replaced.is_empty());
    await_tools(
        &client,
        &recorder,
        seen.0,
        &union(&tools_of("one"), &tools_of("two")),
    )
    .await;
    // Its prompt and its info resource are new too.
    eventually(DEADLINE, "prompts and resources list_changed", async || {
        (recorder.prompts_changed() > seen.1 && recorder.resources_changed() > seen.2).then_some(())
    })
    .await;
    assert_eq!(call_text(&client, "two_whoami", json!({})).await, "two");
    assert_eq!(call_text(&client, "one_whoami", json!({})).await, "one");
    assert!(
        Arc::ptr_eq(&first, &gw.backend("one").expect("one is still registered")),
        "an unchanged backend keeps its instance (and its connection)"
    );
    assert_eq!(
        one.rpc_params("initialize").len(),
        1,
        "one was not reconnected"
    );
    assert_status_lists(&gateway, &mut published, &["one", "two"]).await;

    // The same list again changes nothing.
    let changes = gw.set_backends(vec![backend(one.config("one")), backend(two.config("two"))]);
    assert!(!changes.changed, "{changes:?}");
    assert_eq!(changes.kept, ["one", "two"]);

    // The first backend goes away: its tools are gone, not merely unavailable.
    let seen = recorder.tools_changed();
    let changes = gw.set_backends(vec![backend(two.config("two"))]);
    assert_eq!(changes.removed, ["one"]);
    assert_eq!(changes.kept, ["two"]);
    await_tools(&client, &recorder, seen, &tools_of("two")).await;
    let error = call_error(&client, "one_whoami", json!({})).await;
    assert_eq!(error.code, ErrorCode::INVALID_PARAMS, "{error:?}");
    assert!(
        error.message.contains("unknown tool"),
        "a removed backend's tool is unknown, not unavailable: {error:?}"
    );
    assert!(gw.backend("one").is_none());
    let known = gw.known_catalogue();
    assert!(
        known.tools.iter().all(|t| !t.name.starts_with("one_")),
        "the removed backend left the known catalogue: {:?}",
        known.tools
    );
    assert!(known.route_tool("one_whoami").is_none());
    // Its supervisor ended and let go of it.
    eventually(
        DEADLINE,
        "the removed backend's supervisor to end",
        async || (Arc::strong_count(&first) == 1).then_some(()),
    )
    .await;
    assert!(!first.state().is_connected());
    assert_eq!(call_text(&client, "two_whoami", json!({})).await, "two");
    assert_status_lists(&gateway, &mut published, &["two"]).await;

    // It comes back: a new instance, reconnected, its tools listed again.
    let seen = recorder.tools_changed();
    let changes = gw.set_backends(vec![backend(two.config("two")), backend(one.config("one"))]);
    assert_eq!(changes.added, ["one"]);
    await_tools(
        &client,
        &recorder,
        seen,
        &union(&tools_of("one"), &tools_of("two")),
    )
    .await;
    assert_eq!(call_text(&client, "one_whoami", json!({})).await, "one");
    let again = gw.backend("one").expect("one is registered again");
    assert!(
        !Arc::ptr_eq(&first, &again),
        "a re-added backend is a new instance"
    );
    assert_eq!(one.rpc_params("initialize").len(), 2, "one was reconnected");
    assert_status_lists(&gateway, &mut published, &["one", "two"]).await;

    // "two" moves to another server: replaced, calls reach the new one.
    let changes = gw.set_backends(vec![
        backend(three.config("two")),
        backend(one.config("one")),
    ]);
    assert_eq!(changes.replaced, ["two"]);
    assert_eq!(changes.kept, ["one"]);
    eventually(
        DEADLINE,
        "two_whoami to reach the new server",
        async || match call(&client, "two_whoami", json!({})).await {
            Ok(result) => (support::text_of(&result) == "three").then_some(()),
            Err(_) => None,
        },
    )
    .await;
    assert_eq!(three.rpc_params("initialize").len(), 1);
    assert_status_lists(&gateway, &mut published, &["one", "two"]).await;

    // Everything goes: still ready, nothing listed.
    let seen = recorder.tools_changed();
    let changes = gw.set_backends(vec![]);
    assert_eq!(set(&changes.removed), set(["one", "two"]));
    await_tools(&client, &recorder, seen, &BTreeSet::new()).await;
    assert!(gw.is_ready());
    assert_status_lists(&gateway, &mut published, &[]).await;

    gateway.stop(client).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_backends_wait_for_discovery_and_are_not_restarted_by_it() {
    let fixed = ExampleBackend::start("fixed").await;
    let found = ExampleBackend::start("found").await;
    let gateway = TestGateway::start_discovering(gateway_config(
        vec![fixed.config("fixed")],
        json!({"groupRef": "discovery-tests"}),
    ))
    .await;
    let gw = gateway.gateway.clone();

    // The static backend starts at once, but discovery is not complete.
    eventually(DEADLINE, "the static backend's tools", async || {
        (gw.catalogue().route_tool("fixed_whoami").is_some()).then_some(())
    })
    .await;
    assert!(!gw.is_ready(), "ready before the first discovery result");
    assert_eq!(gw.current_status().phase, Phase::Pending);
    let instance = gw
        .backend("fixed")
        .expect("the static backend is registered");

    // Discovery passes the static backend along with what it found.
    let changes = gw.set_backends(vec![
        backend(fixed.config("fixed")),
        backend(found.config("found")),
        // A second entry under a taken name is ignored.
        backend(found.config("fixed")),
    ]);
    assert_eq!(changes.kept, ["fixed"]);
    assert_eq!(changes.added, ["found"]);
    assert_eq!(changes.duplicates, ["fixed"]);
    within_deadline("readiness after the first discovery", gw.wait_ready()).await;
    assert!(
        gw.backend("found")
            .is_some_and(|b| b.state().is_connected()),
        "ready only once the discovered backend was tried"
    );
    assert!(Arc::ptr_eq(
        &instance,
        &gw.backend("fixed").expect("still registered")
    ));
    assert_eq!(fixed.rpc_params("initialize").len(), 1, "not restarted");
    assert!(found.rpc_params("initialize").len() == 1);
    let (client, _) = gateway.connect().await;
    assert_eq!(
        tool_names(&client).await,
        union(&tools_of("fixed"), &tools_of("found"))
    );
    assert_eq!(call_text(&client, "fixed_whoami", json!({})).await, "fixed");
    assert_eq!(call_text(&client, "found_whoami", json!({})).await, "found");
    gateway.stop(client).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_first_discovery_makes_the_gateway_ready_with_no_backends() {
    let gateway = TestGateway::start_discovering(discovery_config()).await;
    let gw = gateway.gateway.clone();
    assert!(!gw.is_ready());
    assert_eq!(gw.current_status().phase, Phase::Pending);
    let mut published = gw.subscribe_status();

    let changes = gw.set_backends(vec![]);
    assert!(!changes.changed);
    within_deadline("readiness after an empty discovery", gw.wait_ready()).await;
    within_deadline(
        "a published status past Pending",
        published.wait_for(|s| s.phase != Phase::Pending),
    )
    .await
    .expect("the status channel stays open");
    let status = gw.current_status();
    assert_ne!(status.phase, Phase::Pending);
    assert!(status.discovered_backends.is_empty());
    assert_eq!(status.backend_count, 0);
    let (code, _) = gateway.get_json("/readyz").await;
    assert_eq!(code, 200);
    gateway.shutdown().await;
}
