//! The transport against a scripted in-process HTTP server: what goes over the wire
//! (headers, bodies) and how failures are reported. Fast and without external peers.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use mcp_legacy_sse::{SseClientConfig, SseClientError, SseClientTransport, connect};
use rmcp::{
    RoleClient,
    model::{ClientJsonRpcMessage, ClientRequest, JsonRpcMessage, RequestId},
    transport::Transport,
};
use tokio::{
    io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader},
    net::{TcpListener, TcpStream},
    sync::mpsc,
    time::timeout,
};

const STEP: Duration = Duration::from_secs(10);

/// One request as the fake server saw it.
#[derive(Debug, Clone)]
struct Recorded {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Recorded {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// How the fake server answers.
struct Script {
    get_status: u16,
    get_content_type: &'static str,
    /// Sent on the event stream right after the response headers.
    initial_events: String,
    post_status: u16,
    post_body: &'static str,
}

impl Script {
    fn sse(initial_events: impl Into<String>) -> Self {
        Self {
            get_status: 200,
            get_content_type: "text/event-stream; charset=utf-8",
            initial_events: initial_events.into(),
            post_status: 202,
            post_body: "Accepted",
        }
    }
}

struct Fake {
    port: u16,
    recorded: Arc<Mutex<Vec<Recorded>>>,
    /// Text to write on the event stream; dropping it ends the stream.
    push: Option<mpsc::UnboundedSender<String>>,
    /// Notified when the client has closed the event stream.
    stream_closed: Arc<tokio::sync::Notify>,
}

impl Fake {
    async fn start(script: Script) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("local addr").port();
        let recorded = Arc::new(Mutex::new(Vec::new()));
        let (push, pushed) = mpsc::unbounded_channel();
        let stream_closed = Arc::new(tokio::sync::Notify::new());
        let shared = Arc::new(Shared {
            script,
            stream_closed: Arc::clone(&stream_closed),
            recorded: Arc::clone(&recorded),
            pushed: tokio::sync::Mutex::new(Some(pushed)),
        });
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                tokio::spawn(handle(socket, Arc::clone(&shared)));
            }
        });
        Self {
            port,
            recorded,
            push: Some(push),
            stream_closed,
        }
    }

    fn url(&self) -> url::Url {
        url::Url::parse(&format!("http://127.0.0.1:{}/sse", self.port)).expect("valid URL")
    }

    fn push(&self, text: &str) {
        self.push
            .as_ref()
            .expect("stream still open")
            .send(text.to_owned())
            .expect("the stream is being served");
    }

    fn end_stream(&mut self) {
        self.push = None;
    }

    fn recorded(&self) -> Vec<Recorded> {
        self.recorded
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

struct Shared {
    script: Script,
    stream_closed: Arc<tokio::sync::Notify>,
    recorded: Arc<Mutex<Vec<Recorded>>>,
    pushed: tokio::sync::Mutex<Option<mpsc::UnboundedReceiver<String>>>,
}

async fn handle(socket: TcpStream, shared: Arc<Shared>) {
    let mut socket = BufReader::new(socket);
    loop {
        let Some(request) = read_request(&mut socket).await else {
            return;
        };
        shared
            .recorded
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(request.clone());
        let script = &shared.script;
        if request.method == "GET" {
            if script.get_status != 200 {
                let body = "go away";
                let head = format!(
                    "HTTP/1.1 {} Nope\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\r\n{body}",
                    script.get_status,
                    body.len()
                );
                let _ = socket.get_mut().write_all(head.as_bytes()).await;
                continue;
            }
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: {}\r\ncache-control: no-cache\r\ntransfer-encoding: chunked\r\n\r\n",
                script.get_content_type
            );
            let stream = socket.get_mut();
            if stream.write_all(head.as_bytes()).await.is_err() {
                return;
            }
            if !script.initial_events.is_empty()
                && write_chunk(stream, &script.initial_events).await.is_err()
            {
                return;
            }
            let pushed = shared.pushed.lock().await.take();
            if let Some(mut pushed) = pushed {
                let mut scratch = [0u8; 64];
                loop {
                    tokio::select! {
                        text = pushed.recv() => match text {
                            Some(text) => {
                                if write_chunk(stream, &text).await.is_err() {
                                    break;
                                }
                            }
                            None => {
                                let _ = stream.write_all(b"0\r\n\r\n").await;
                                return;
                            }
                        },
                        // The client sends nothing more on this connection: a read
                        // returning means it closed (or reset) the stream.
                        _ = stream.read(&mut scratch) => break,
                    }
                }
                shared.stream_closed.notify_one();
            }
            return;
        }
        let head = format!(
            "HTTP/1.1 {} Whatever\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\r\n{}",
            script.post_status,
            script.post_body.len(),
            script.post_body
        );
        if socket.get_mut().write_all(head.as_bytes()).await.is_err() {
            return;
        }
    }
}

async fn write_chunk(stream: &mut TcpStream, text: &str) -> std::io::Result<()> {
    let chunk = format!("{:x}\r\n{text}\r\n", text.len());
    stream.write_all(chunk.as_bytes()).await?;
    stream.flush().await
}

async fn read_request(socket: &mut BufReader<TcpStream>) -> Option<Recorded> {
    let mut line = String::new();
    if socket.read_line(&mut line).await.ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_owned();
    let target = parts.next()?.to_owned();
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        socket.read_line(&mut line).await.ok()?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':')?;
        headers.push((name.trim().to_owned(), value.trim().to_owned()));
    }
    let length = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    socket.read_exact(&mut body).await.ok()?;
    Some(Recorded {
        method,
        target,
        headers,
        body,
    })
}

fn ping(id: i64) -> ClientJsonRpcMessage {
    ClientJsonRpcMessage::request(
        ClientRequest::PingRequest(Default::default()),
        RequestId::Number(id),
    )
}

async fn open(fake: &Fake, configure: impl FnOnce(&mut SseClientConfig)) -> SseClientTransport {
    let mut config = SseClientConfig::new(fake.url());
    configure(&mut config);
    timeout(STEP, connect(config, reqwest::Client::new()))
        .await
        .expect("connect within the deadline")
        .expect("connect")
}

async fn connect_error(
    fake: &Fake,
    configure: impl FnOnce(&mut SseClientConfig),
) -> SseClientError {
    let mut config = SseClientConfig::new(fake.url());
    configure(&mut config);
    timeout(STEP, connect(config, reqwest::Client::new()))
        .await
        .expect("connect returns within the deadline")
        .expect_err("connect fails")
}

const ENDPOINT: &str = "event: endpoint\r\ndata: /messages/?session_id=s1\r\n\r\n";

#[tokio::test]
async fn headers_and_bodies_on_the_wire() {
    let fake = Fake::start(Script::sse(ENDPOINT)).await;
    let mut transport = open(&fake, |config| {
        config
            .headers
            .insert("x-api-key", http::HeaderValue::from_static("k-123"));
        config.headers.insert(
            http::header::ACCEPT,
            http::HeaderValue::from_static("application/json"),
        );
    })
    .await;
    assert_eq!(
        transport.endpoint().as_str(),
        format!("http://127.0.0.1:{}/messages/?session_id=s1", fake.port)
    );

    Transport::<RoleClient>::send(&mut transport, ping(41))
        .await
        .expect("send");

    let recorded = fake.recorded();
    assert_eq!(recorded.len(), 2, "{recorded:#?}");
    let get = &recorded[0];
    assert_eq!((get.method.as_str(), get.target.as_str()), ("GET", "/sse"));
    assert_eq!(get.header("x-api-key"), Some("k-123"));
    assert_eq!(get.header("accept"), Some("text/event-stream"));
    let post = &recorded[1];
    assert_eq!(
        (post.method.as_str(), post.target.as_str()),
        ("POST", "/messages/?session_id=s1")
    );
    assert_eq!(post.header("x-api-key"), Some("k-123"));
    assert_eq!(post.header("content-type"), Some("application/json"));
    let body: serde_json::Value = serde_json::from_slice(&post.body).expect("JSON body");
    assert_eq!(
        body,
        serde_json::json!({ "jsonrpc": "2.0", "id": 41, "method": "ping" })
    );
}

#[tokio::test]
async fn concurrent_sends_all_arrive() {
    let fake = Fake::start(Script::sse(ENDPOINT)).await;
    let mut transport = open(&fake, |_| {}).await;
    // Like rmcp, spawn each send: the futures are 'static and run concurrently.
    let sends: Vec<_> = (0..20)
        .map(|i| tokio::spawn(Transport::<RoleClient>::send(&mut transport, ping(i))))
        .collect();
    let results = timeout(STEP, futures::future::join_all(sends))
        .await
        .expect("sends within the deadline");
    assert!(
        results.iter().all(|r| matches!(r, Ok(Ok(())))),
        "{results:?}"
    );
    let mut ids: Vec<i64> = fake
        .recorded()
        .iter()
        .filter(|r| r.method == "POST")
        .map(|r| {
            serde_json::from_slice::<serde_json::Value>(&r.body).expect("JSON")["id"]
                .as_i64()
                .expect("numeric id")
        })
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, (0..20).collect::<Vec<_>>());
}

#[tokio::test]
async fn server_messages_arrive_and_noise_is_skipped() {
    let mut fake = Fake::start(Script::sse(format!(": welcome\r\n\r\n{ENDPOINT}"))).await;
    let mut transport = open(&fake, |_| {}).await;
    let ended = transport.end_signal();

    fake.push(": ping - keepalive\r\n\r\n");
    fake.push("event: unknown\r\ndata: {}\r\n\r\n");
    fake.push("event: message\r\ndata: {broken json\r\n\r\n");
    fake.push("event: message\r\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\r\n\r\n");
    fake.push("event: message\r\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/tools/list_changed\"}\r\n\r\n");

    let first = timeout(STEP, Transport::<RoleClient>::receive(&mut transport))
        .await
        .expect("a message within the deadline")
        .expect("a message");
    assert!(
        matches!(&first, JsonRpcMessage::Response(r) if r.id == RequestId::Number(1)),
        "{first:?}"
    );
    let second = timeout(STEP, Transport::<RoleClient>::receive(&mut transport))
        .await
        .expect("a message within the deadline")
        .expect("a message");
    assert!(
        matches!(&second, JsonRpcMessage::Notification(_)),
        "{second:?}"
    );

    assert!(!ended.has_ended());
    fake.end_stream();
    let after = timeout(STEP, Transport::<RoleClient>::receive(&mut transport))
        .await
        .expect("the end within the deadline");
    assert!(after.is_none(), "{after:?}");
    assert!(ended.has_ended());
}

#[tokio::test]
async fn rejected_post_is_an_error_with_status_and_body() {
    let mut script = Script::sse(ENDPOINT);
    script.post_status = 404;
    script.post_body = "Could not find session";
    let fake = Fake::start(script).await;
    let mut transport = open(&fake, |_| {}).await;
    let error = Transport::<RoleClient>::send(&mut transport, ping(1))
        .await
        .expect_err("404");
    match &error {
        SseClientError::PostStatus { status, body, .. } => {
            assert_eq!(*status, http::StatusCode::NOT_FOUND);
            assert_eq!(body, "Could not find session");
        }
        other => panic!("unexpected error {other:?}"),
    }
    assert!(
        !error.to_string().contains("s1"),
        "session id leaked: {error}"
    );
}

#[tokio::test]
async fn cross_origin_endpoint_is_refused() {
    let fake = Fake::start(Script::sse(
        "event: endpoint\r\ndata: http://127.0.0.2:1/steal?session_id=s1\r\n\r\n",
    ))
    .await;
    let error = connect_error(&fake, |_| {}).await;
    assert!(
        matches!(error, SseClientError::CrossOriginEndpoint { .. }),
        "{error:?}"
    );
    assert!(
        error.to_string().contains("http://127.0.0.2:1/steal"),
        "{error}"
    );
}

#[tokio::test]
async fn get_rejection_and_wrong_content_type_are_reported() {
    let mut script = Script::sse(ENDPOINT);
    script.get_status = 401;
    let fake = Fake::start(script).await;
    match connect_error(&fake, |_| {}).await {
        SseClientError::ConnectStatus { status, body, .. } => {
            assert_eq!(status, http::StatusCode::UNAUTHORIZED);
            assert_eq!(body, "go away");
        }
        other => panic!("unexpected error {other:?}"),
    }

    let mut script = Script::sse(ENDPOINT);
    script.get_content_type = "application/json";
    let fake = Fake::start(script).await;
    let error = connect_error(&fake, |_| {}).await;
    assert!(
        matches!(error, SseClientError::NotEventStream { .. }),
        "{error:?}"
    );
}

#[tokio::test]
async fn missing_endpoint_times_out() {
    let fake = Fake::start(Script::sse(": no endpoint here\r\n\r\n")).await;
    let error = connect_error(&fake, |config| {
        config.connect_timeout = Duration::from_millis(300);
    })
    .await;
    assert!(matches!(error, SseClientError::Timeout { .. }), "{error:?}");
}

#[tokio::test]
async fn stream_ending_before_the_endpoint_is_reported() {
    let mut fake = Fake::start(Script::sse(": bye\r\n\r\n")).await;
    fake.end_stream();
    let error = connect_error(&fake, |_| {}).await;
    assert!(
        matches!(error, SseClientError::EndedBeforeEndpoint { .. }),
        "{error:?}"
    );
}

#[tokio::test]
async fn refused_connection_is_reported() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    };
    let url = url::Url::parse(&format!("http://127.0.0.1:{port}/sse")).expect("valid URL");
    let error = timeout(
        STEP,
        connect(SseClientConfig::new(url), reqwest::Client::new()),
    )
    .await
    .expect("within the deadline")
    .expect_err("refused");
    assert!(matches!(error, SseClientError::Connect { .. }), "{error:?}");
}

#[tokio::test]
async fn close_and_drop_hang_up_the_event_stream() {
    let fake = Fake::start(Script::sse(ENDPOINT)).await;
    let mut transport = open(&fake, |_| {}).await;
    Transport::<RoleClient>::close(&mut transport)
        .await
        .expect("close");
    timeout(STEP, fake.stream_closed.notified())
        .await
        .expect("the server sees the stream closed after close()");

    let fake = Fake::start(Script::sse(ENDPOINT)).await;
    let transport = open(&fake, |_| {}).await;
    drop(transport);
    timeout(STEP, fake.stream_closed.notified())
        .await
        .expect("the server sees the stream closed after drop");
}
