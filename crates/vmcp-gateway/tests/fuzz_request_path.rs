//! Stable-toolchain fuzzing of the request path: mutated JSON-RPC bodies go
//! through the real HTTP router (`/mcp`) and the envelope check, and must
//! never panic, hang or produce a 5xx. The same entry points are cargo-fuzz
//! targets under `fuzz/` for longer coverage-guided runs on nightly.
//!
//! `VMCP_FUZZ_SECONDS` sets the time budget (default 5 s; CI uses more).

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;
use vmcp_gateway::server::{HttpOptions, envelope, router};
use vmcp_gateway::{Gateway, GatewayOptions};

const SEEDS: &[&str] = &[
    r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"fuzz","version":"1"}}}"#,
    r#"{"jsonrpc":"2.0","id":2,"method":"tools/list","params":{"cursor":"o1"}}"#,
    r#"{"jsonrpc":"2.0","id":"x","method":"tools/call","params":{"name":"a_echo","arguments":{"text":"hi"},"_meta":{"progressToken":7}}}"#,
    r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":3}}"#,
    r#"{"jsonrpc":"2.0","id":5,"result":{}}"#,
    r#"{"jsonrpc":"2.0","id":6,"method":"resources/read","params":{"uri":"a://items/1"}}"#,
    r#"{"jsonrpc":"2.0","id":7,"method":"completion/complete","params":{"ref":{"type":"ref/prompt","name":"a_greet"},"argument":{"name":"name","value":"A"}}}"#,
];

/// xorshift64*: deterministic, dependency-free randomness for mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const TOKENS: &[&[u8]] = &[
    b"{",
    b"}",
    b"[",
    b"]",
    b"\"",
    b":",
    b",",
    b"null",
    b"true",
    b"-1",
    b"1e999",
    b"\"2.0\"",
    b"\\u0000",
    b"\xff",
    b"\"method\"",
    b"\"id\"",
    b"\"params\"",
    b"99999999999999999999",
];

fn mutate(rng: &mut Rng, input: &[u8]) -> Vec<u8> {
    let mut data = input.to_vec();
    for _ in 0..=rng.below(4) {
        match rng.below(7) {
            0 if !data.is_empty() => {
                let i = rng.below(data.len());
                data[i] ^= 1 << rng.below(8);
            }
            1 if !data.is_empty() => data.truncate(rng.below(data.len())),
            2 => {
                let token = TOKENS[rng.below(TOKENS.len())];
                let at = rng.below(data.len() + 1);
                data.splice(at..at, token.iter().copied());
            }
            3 if !data.is_empty() => {
                let start = rng.below(data.len());
                let end = (start + rng.below(32)).min(data.len());
                data.drain(start..end);
            }
            4 => {
                let other = SEEDS[rng.below(SEEDS.len())].as_bytes();
                let cut = rng.below(other.len());
                let at = rng.below(data.len() + 1);
                data.truncate(at);
                data.extend_from_slice(&other[cut..]);
            }
            5 => {
                let depth = 1 + rng.below(400);
                data = [b"[".repeat(depth), data, b"]".repeat(depth)].concat();
            }
            _ => {}
        }
    }
    data
}

fn budget() -> Duration {
    let secs = std::env::var("VMCP_FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    Duration::from_secs(secs)
}

#[test]
fn envelope_check_never_panics_on_mutated_input() {
    let mut rng = Rng(0x5eed_0001);
    let deadline = Instant::now() + budget() / 2;
    let mut runs = 0u64;
    while Instant::now() < deadline {
        let seed = SEEDS[rng.below(SEEDS.len())].as_bytes();
        let body = mutate(&mut rng, seed);
        let _ = envelope::check(&body);
        runs += 1;
    }
    // Unmutated seeds are valid; the check must not reject real traffic.
    for seed in SEEDS {
        assert_eq!(envelope::check(seed.as_bytes()), Ok(()), "{seed}");
    }
    assert!(runs > 1000, "only {runs} inputs in the budget");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_request_path_answers_mutated_bodies_without_5xx() {
    let config = vmcp_config::load_str(
        // Session caps lifted: the fuzzer opens many sessions, and a 503 at the
        // cap is a deliberate answer (tested on its own), not a fault.
        "name: fuzz\nbackends:\n  - {name: a, transport: streamable-http, url: 'http://127.0.0.1:9/mcp'}\nserver: {maxSessions: 1000000, maxSessionsPerClient: 1000000}\n",
        "fuzz.yaml",
    )
    .expect("valid config");
    let gateway = Gateway::start(GatewayOptions::new(config));
    let cancel = CancellationToken::new();
    let app = router(
        gateway.clone(),
        HttpOptions {
            max_request_bytes: 64 * 1024,
            ..HttpOptions::from_gateway(&gateway, cancel.clone())
        },
    );
    let mut rng = Rng(0x5eed_0002);
    let deadline = Instant::now() + budget() / 2;
    let mut runs = 0u64;
    while Instant::now() < deadline {
        let seed = SEEDS[rng.below(SEEDS.len())].as_bytes();
        let body = if rng.below(10) == 0 {
            seed.to_vec()
        } else {
            mutate(&mut rng, seed)
        };
        let request = Request::post("/mcp")
            .header("host", "127.0.0.1")
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(Body::from(body.clone()))
            .expect("valid request");
        let response = tokio::time::timeout(Duration::from_secs(10), app.clone().oneshot(request))
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "no answer within 10s for {:?}",
                    String::from_utf8_lossy(&body)
                )
            })
            .expect("infallible service");
        assert!(
            !response.status().is_server_error(),
            "{} for {:?}",
            response.status(),
            String::from_utf8_lossy(&body)
        );
        // Whatever the body, the answer is never rmcp's plain-text 415:
        // anything rmcp cannot read gets a JSON-RPC error from the screening.
        assert_ne!(
            response.status(),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "415 for {:?}",
            String::from_utf8_lossy(&body)
        );
        if envelope::screen(&body).is_err() {
            assert!(
                matches!(
                    response.status(),
                    StatusCode::BAD_REQUEST | StatusCode::PAYLOAD_TOO_LARGE
                ),
                "{} for invalid body {:?}",
                response.status(),
                String::from_utf8_lossy(&body)
            );
        }
        runs += 1;
    }
    cancel.cancel();
    gateway.shutdown().await;
    assert!(runs > 100, "only {runs} requests in the budget");
}
