//! Backends that refuse us (HTTP 401/403) against backends that are simply
//! not there, through the real gateway and real loopback HTTP servers:
//! classification is by type (guide §3 rule 8), and a backend that keeps
//! refusing stays `unauthenticated` — an open circuit must not turn it into
//! `unavailable`.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use support::{DEADLINE, LOOPBACK, TestGateway, eventually, free_port, gateway_config};

/// A loopback HTTP server answering every request with one status (and a
/// `WWW-Authenticate` challenge if given); counts the requests.
struct Refuser {
    port: u16,
    requests: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Refuser {
    async fn start(status: StatusCode, challenge: Option<&'static str>) -> Self {
        let requests = Arc::new(AtomicUsize::new(0));
        let counter = requests.clone();
        let app = axum::Router::new().fallback(move || {
            let counter = counter.clone();
            async move {
                counter.fetch_add(1, Ordering::SeqCst);
                let mut response: Response =
                    (status, "401 403 Unauthorized Forbidden").into_response();
                if let Some(challenge) = challenge {
                    response.headers_mut().insert(
                        header::WWW_AUTHENTICATE,
                        HeaderValue::from_static(challenge),
                    );
                }
                response
            }
        });
        let listener = tokio::net::TcpListener::bind((LOOPBACK, 0))
            .await
            .expect("bind a loopback port");
        let port = listener.local_addr().expect("bound").port();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            port,
            requests,
            task,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{LOOPBACK}:{}{path}", self.port)
    }

    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

impl Drop for Refuser {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Probes every second, and a circuit that opens on the first failure: if
/// rejections counted as failures, the circuit would open at once.
fn fast_failure_handling() -> Value {
    json!({"operational": {"failureHandling": {
        "healthCheckInterval": "1s",
        "healthCheckTimeout": "500ms",
        "unhealthyThreshold": 1,
        "circuitBreaker": {"enabled": true, "failureThreshold": 1, "timeout": "60s"},
    }}})
}

/// A dead loopback port whose number contains "4031", as in the report.
fn dead_port_like_4031() -> u16 {
    for port in [4031, 14031, 24031, 34031, 40310, 40311, 40312] {
        if std::net::TcpListener::bind((LOOPBACK, port)).is_ok() {
            return port;
        }
    }
    free_port()
}

/// Waits until `name` has been tried at least `attempts` more times (as the
/// refuser counts) and returns its status entry then.
async fn status_after_attempts(
    gateway: &TestGateway,
    refuser: &Refuser,
    name: &str,
    attempts: usize,
) -> Value {
    let start = refuser.requests();
    eventually(
        DEADLINE,
        &format!("{attempts} more attempts on {name}"),
        async || (refuser.requests() >= start + attempts).then_some(()),
    )
    .await;
    gateway.backend_status(name).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_unauthenticated_and_stay_so() {
    let cases: [(&str, StatusCode, Option<&'static str>, &str); 5] = [
        (
            "challenge401",
            StatusCode::UNAUTHORIZED,
            Some("Bearer realm=\"mcp\""),
            "streamable-http",
        ),
        (
            "plain401",
            StatusCode::UNAUTHORIZED,
            None,
            "streamable-http",
        ),
        ("plain403", StatusCode::FORBIDDEN, None, "streamable-http"),
        (
            "scope403",
            StatusCode::FORBIDDEN,
            Some("Bearer error=\"insufficient_scope\", scope=\"tools\""),
            "streamable-http",
        ),
        ("sse401", StatusCode::UNAUTHORIZED, None, "sse"),
    ];
    let mut refusers = Vec::new();
    let mut backends = Vec::new();
    for (name, status, challenge, transport) in cases {
        let refuser = Refuser::start(status, challenge).await;
        let path = if transport == "sse" { "/sse" } else { "/mcp" };
        backends.push(json!({"name": name, "transport": transport, "url": refuser.url(path)}));
        refusers.push((name, refuser));
    }
    let gateway = TestGateway::start(gateway_config(backends, fast_failure_handling())).await;
    for (name, refuser) in &refusers {
        // Several reconnect attempts, each refused: far past the circuit's
        // threshold of one failure.
        let entry = status_after_attempts(&gateway, refuser, name, 4).await;
        assert_eq!(entry["status"], "unauthenticated", "{name}: {entry:#}");
        assert_eq!(
            entry["message"], "backend requires authentication",
            "{name}: {entry:#}"
        );
        assert_ne!(entry["circuitBreakerState"], "open", "{name}: {entry:#}");
    }
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_port_is_unavailable_not_an_auth_problem() {
    let port = dead_port_like_4031();
    let url = format!("http://{LOOPBACK}:{port}/mcp");
    let gateway = TestGateway::start(gateway_config(
        vec![json!({"name": "dead", "transport": "streamable-http", "url": url})],
        fast_failure_handling(),
    ))
    .await;
    let entry = eventually(DEADLINE, "dead to be reported", async || {
        let entry = gateway.backend_status("dead").await;
        (entry["status"] != "unknown").then_some(entry)
    })
    .await;
    assert_eq!(entry["status"], "unavailable", "{entry:#}");
    let message = entry["message"].as_str().unwrap_or_default();
    assert!(
        !message.contains("auth"),
        "port {port} must not read as an auth problem: {entry:#}"
    );
    gateway.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_with_credentials_configured_is_a_failure() {
    let refuser = Refuser::start(StatusCode::UNAUTHORIZED, None).await;
    let gateway = TestGateway::start(gateway_config(
        vec![json!({"name": "keyed", "transport": "streamable-http", "url": refuser.url("/mcp")})],
        json!({
            "outgoingAuth": {"source": "inline", "backends": {"keyed": {
                "type": "header_injection",
                "headerInjection": {"headerName": "X-Api-Key", "headerValue": "wrong-key"},
            }}},
            "operational": fast_failure_handling()["operational"].clone(),
        }),
    ))
    .await;
    let entry = status_after_attempts(&gateway, &refuser, "keyed", 2).await;
    assert_eq!(entry["status"], "unavailable", "{entry:#}");
    assert_eq!(entry["message"], "authentication rejected", "{entry:#}");
    gateway.shutdown().await;
}
