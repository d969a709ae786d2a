//! Connecting, and the [`Transport`] implementation.

use std::{collections::VecDeque, fmt, sync::Arc, time::Duration};

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt, stream::BoxStream};
use http::{
    HeaderMap, HeaderValue,
    header::{ACCEPT, CACHE_CONTROL, CONTENT_TYPE},
};
use rmcp::{
    RoleClient,
    model::{ClientJsonRpcMessage, ServerJsonRpcMessage},
    transport::Transport,
};
use tokio::{sync::watch, time::Instant};
use url::Url;

use crate::{
    endpoint::{check_sse_url, resolve_endpoint},
    error::{BoxError, SseClientError, redact, truncate},
    parser::{SseEvent, SseParser},
};

/// How much of an error response's body is kept in an error.
const MAX_ERROR_BODY: usize = 512;
/// How much of a successful `POST` response's body is read (and discarded) so the
/// connection can be reused; the rest is dropped with the connection.
const MAX_DRAINED_BODY: usize = 64 * 1024;

/// Settings for [`connect`].
///
/// Build it with [`SseClientConfig::new`] and adjust the public fields. Its `Debug` output
/// shows header names but not their values, which often are credentials.
#[derive(Clone)]
#[non_exhaustive]
pub struct SseClientConfig {
    /// The SSE URL (`http` or `https`), for example `http://127.0.0.1:8000/sse`.
    pub url: Url,
    /// Headers sent with the `GET` that opens the stream and with every `POST`, for example
    /// `Authorization`. `Accept` (on the `GET`) and `Content-Type` (on `POST`s) are set by
    /// the transport and override values given here.
    pub headers: HeaderMap,
    /// The longest time [`connect`] waits for the response headers and the `endpoint`
    /// event together. Default: 10 seconds.
    pub connect_timeout: Duration,
    /// The longest time one `POST` of a message may take, body included. Default: 30
    /// seconds. (The server answers at once with 202; the reply to a request arrives
    /// later on the event stream, so this bounds only the hand-over.)
    pub post_timeout: Duration,
    /// When set, the event stream is considered broken, and the transport ends, if no
    /// bytes at all (keepalive comments included) arrive for this long. Default: `None`.
    ///
    /// Only set it for servers that send keepalives more often than this (the Python SDK
    /// sends a comment every 15 seconds); it detects half-open connections that TCP alone
    /// notices only much later.
    pub idle_timeout: Option<Duration>,
    /// The largest event accepted from the server, in bytes. A larger one ends the
    /// transport (the stream cannot be resynchronised). Default: 16 MiB.
    pub max_event_size: usize,
}

impl SseClientConfig {
    /// Default for [`SseClientConfig::connect_timeout`].
    pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
    /// Default for [`SseClientConfig::post_timeout`].
    pub const DEFAULT_POST_TIMEOUT: Duration = Duration::from_secs(30);
    /// Default for [`SseClientConfig::max_event_size`].
    pub const DEFAULT_MAX_EVENT_SIZE: usize = 16 * 1024 * 1024;

    /// A configuration for `url` with no extra headers and default limits.
    pub fn new(url: Url) -> Self {
        Self {
            url,
            headers: HeaderMap::new(),
            connect_timeout: Self::DEFAULT_CONNECT_TIMEOUT,
            post_timeout: Self::DEFAULT_POST_TIMEOUT,
            idle_timeout: None,
            max_event_size: Self::DEFAULT_MAX_EVENT_SIZE,
        }
    }
}

impl fmt::Debug for SseClientConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SseClientConfig")
            .field("url", &redact(&self.url))
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("connect_timeout", &self.connect_timeout)
            .field("post_timeout", &self.post_timeout)
            .field("idle_timeout", &self.idle_timeout)
            .field("max_event_size", &self.max_event_size)
            .finish()
    }
}

/// Opens the event stream of a legacy HTTP+SSE MCP server and waits for its `endpoint`
/// event.
///
/// On success the server has created a session; the returned transport posts messages to
/// the announced endpoint and yields the server's messages. Hand it to
/// [`rmcp::serve_client`] (or `ServiceExt::serve`) to run the MCP handshake.
///
/// The endpoint is resolved against the URL the stream was finally read from (after
/// redirects) and must have the same origin as [`SseClientConfig::url`]; otherwise
/// [`SseClientError::CrossOriginEndpoint`] is returned.
///
/// `client` is used for the `GET` and every `POST`. It must not have an overall request
/// timeout (`ClientBuilder::timeout`), since that would cut the long-lived event stream; a
/// connect timeout is fine, and a read timeout longer than the server's keepalive interval
/// acts like [`SseClientConfig::idle_timeout`]. Its redirect policy applies: the default
/// one follows redirects, also to other hosts, carrying [`SseClientConfig::headers`] along
/// except the ones `reqwest` treats as sensitive; consider `redirect::Policy::none()`.
pub async fn connect(
    config: SseClientConfig,
    client: reqwest::Client,
) -> Result<SseClientTransport, SseClientError> {
    check_sse_url(&config.url)?;
    let timeout = config.connect_timeout;
    let url = redact(&config.url);
    match tokio::time::timeout(timeout, open(config, client)).await {
        Ok(result) => result,
        Err(_elapsed) => Err(SseClientError::Timeout { url, timeout }),
    }
}

async fn open(
    config: SseClientConfig,
    client: reqwest::Client,
) -> Result<SseClientTransport, SseClientError> {
    let url = redact(&config.url);
    let mut headers = config.headers.clone();
    headers.insert(ACCEPT, HeaderValue::from_static("text/event-stream"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    let response = client
        .get(config.url.clone())
        .headers(headers)
        .send()
        .await
        .map_err(|source| SseClientError::Connect {
            url: url.clone(),
            // The URL is in the variant already, redacted.
            source: source.without_url(),
        })?;

    let status = response.status();
    if !status.is_success() {
        let body = read_error_body(response).await;
        return Err(SseClientError::ConnectStatus { url, status, body });
    }
    if let Some(content_type) = response.headers().get(CONTENT_TYPE) {
        let text = String::from_utf8_lossy(content_type.as_bytes());
        let media_type = text.split(';').next().unwrap_or_default().trim();
        if !media_type.eq_ignore_ascii_case("text/event-stream") {
            return Err(SseClientError::NotEventStream {
                url,
                content_type: truncate(&text, 100),
            });
        }
    }
    let stream_url = response.url().clone();

    let body = response
        .bytes_stream()
        .map_err(|e| Box::new(e) as BoxError)
        .boxed();
    let mut inbound = Inbound::new(body, config.max_event_size, config.idle_timeout);
    let data = inbound.next_endpoint(&url).await?;
    let endpoint = resolve_endpoint(&stream_url, &config.url.origin(), &data)?;
    tracing::debug!(endpoint = %redact(&endpoint), "legacy SSE session opened");

    Ok(SseClientTransport::new(
        inbound,
        Arc::new(Poster {
            client,
            endpoint,
            headers: config.headers,
            timeout: config.post_timeout,
        }),
    ))
}

/// A client transport for MCP's legacy HTTP+SSE transport, made by [`connect`].
///
/// It implements [`Transport<RoleClient>`](Transport):
///
/// * `send` POSTs one JSON-RPC message to the session's endpoint. Sends are independent
///   and may run concurrently; each fails if its `POST` fails or is answered with a
///   non-success status. Once `receive` has seen the stream end, or after `close`, sends
///   fail immediately ([`SseClientError::SessionEnded`], [`SseClientError::Closed`]).
/// * `receive` yields the server's `message` events. It returns `None` once the event
///   stream ends, breaks, stays silent longer than [`SseClientConfig::idle_timeout`], or
///   sends an oversized event, and after `close`. The session is gone then: connect a new
///   transport to continue. Comments, keepalives and unknown events are skipped; a
///   message that is not a valid JSON-RPC message is logged and skipped.
/// * `close` drops the event stream, which ends the session on the server.
///
/// Dropping the transport closes the event stream too.
pub struct SseClientTransport {
    inbound: Option<Inbound>,
    poster: Arc<Poster>,
    closed: bool,
    ended: watch::Sender<bool>,
}

impl SseClientTransport {
    fn new(inbound: Inbound, poster: Arc<Poster>) -> Self {
        Self {
            inbound: Some(inbound),
            poster,
            closed: false,
            ended: watch::Sender::new(false),
        }
    }

    /// The URL messages are posted to, as announced by the server.
    ///
    /// Its query usually holds the session id, which lets anyone holding it post into the
    /// session: avoid logging it whole.
    pub fn endpoint(&self) -> &Url {
        &self.poster.endpoint
    }

    /// A handle that tells when this transport's event stream has ended (the server closed
    /// it, it broke, or the transport was closed or dropped).
    ///
    /// Useful after handing the transport to rmcp, which owns it from then on: for
    /// example to drop the session from a pool and reconnect.
    pub fn end_signal(&self) -> SessionEndSignal {
        SessionEndSignal {
            ended: self.ended.subscribe(),
        }
    }

    fn mark_ended(&mut self) {
        self.inbound = None;
        self.ended.send_replace(true);
    }
}

impl fmt::Debug for SseClientTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SseClientTransport")
            .field("endpoint", &redact(&self.poster.endpoint))
            .field("receiving", &self.inbound.is_some())
            .field("closed", &self.closed)
            .finish_non_exhaustive()
    }
}

impl Transport<RoleClient> for SseClientTransport {
    type Error = SseClientError;

    fn send(
        &mut self,
        item: ClientJsonRpcMessage,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send + 'static {
        let poster = if self.closed {
            Err(SseClientError::Closed)
        } else if self.inbound.is_none() {
            Err(SseClientError::SessionEnded)
        } else {
            Ok(Arc::clone(&self.poster))
        };
        async move { poster?.post(&item).await }
    }

    async fn receive(&mut self) -> Option<ServerJsonRpcMessage> {
        let message = self.inbound.as_mut()?.next_message().await;
        if message.is_none() {
            self.mark_ended();
        }
        message
    }

    async fn close(&mut self) -> Result<(), Self::Error> {
        self.closed = true;
        if self.inbound.is_some() {
            tracing::debug!(endpoint = %redact(&self.poster.endpoint), "closing legacy SSE session");
        }
        self.mark_ended();
        Ok(())
    }
}

/// Tells when the event stream of an [`SseClientTransport`] has ended. Cheap to clone.
#[derive(Debug, Clone)]
pub struct SessionEndSignal {
    ended: watch::Receiver<bool>,
}

impl SessionEndSignal {
    /// Whether the stream has ended (or the transport is gone).
    pub fn has_ended(&self) -> bool {
        *self.ended.borrow() || self.ended.has_changed().is_err()
    }

    /// Waits until the stream has ended (or the transport is gone). Returns at once if it
    /// already has.
    pub async fn wait(&self) {
        let mut ended = self.ended.clone();
        // An error means the transport was dropped, which ends the stream as well.
        let _ = ended.wait_for(|ended| *ended).await;
    }
}

/// What sends messages: the endpoint and how to reach it.
struct Poster {
    client: reqwest::Client,
    endpoint: Url,
    headers: HeaderMap,
    timeout: Duration,
}

impl Poster {
    async fn post(&self, message: &ClientJsonRpcMessage) -> Result<(), SseClientError> {
        let body = serde_json::to_vec(message).map_err(SseClientError::Serialize)?;
        let mut headers = self.headers.clone();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let response = self
            .client
            .post(self.endpoint.clone())
            .headers(headers)
            .timeout(self.timeout)
            .body(body)
            .send()
            .await
            .map_err(|source| SseClientError::Post {
                endpoint: redact(&self.endpoint),
                // Its URL would show the session id; the variant has it redacted.
                source: source.without_url(),
            })?;
        let status = response.status();
        if status.is_success() {
            drain(response).await;
            Ok(())
        } else {
            let body = read_error_body(response).await;
            Err(SseClientError::PostStatus {
                endpoint: redact(&self.endpoint),
                status,
                body,
            })
        }
    }
}

/// Reads (and forgets) a small response body so its connection can go back to the pool.
/// Failures do not matter: the server has already accepted the message.
async fn drain(mut response: reqwest::Response) {
    let mut read = 0;
    while read <= MAX_DRAINED_BODY {
        match response.chunk().await {
            Ok(Some(chunk)) => read += chunk.len(),
            Ok(None) | Err(_) => break,
        }
    }
}

/// The beginning of an error response's body, as text.
async fn read_error_body(mut response: reqwest::Response) -> String {
    let mut body = Vec::new();
    while body.len() < MAX_ERROR_BODY * 4 {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            Ok(None) | Err(_) => break,
        }
    }
    truncate(String::from_utf8_lossy(&body).trim(), MAX_ERROR_BODY)
}

/// The receiving half: the event stream's bytes, the parser, and what has been parsed but
/// not yet handed out.
///
/// Every method keeps its state in `self` between awaits, so a call may be cancelled at
/// any await (rmcp polls `receive` inside `select!`) without losing data.
pub(crate) struct Inbound {
    body: BoxStream<'static, Result<Bytes, BoxError>>,
    parser: SseParser,
    events: VecDeque<SseEvent>,
    messages: VecDeque<ServerJsonRpcMessage>,
    idle_timeout: Option<Duration>,
    last_activity: Instant,
}

/// Why the stream stopped delivering bytes.
enum StreamStop {
    Ended,
    Failed(BoxError),
}

impl Inbound {
    pub(crate) fn new(
        body: BoxStream<'static, Result<Bytes, BoxError>>,
        max_event_size: usize,
        idle_timeout: Option<Duration>,
    ) -> Self {
        Self {
            body,
            parser: SseParser::new(max_event_size),
            events: VecDeque::new(),
            messages: VecDeque::new(),
            idle_timeout,
            last_activity: Instant::now(),
        }
    }

    /// Reads until the `endpoint` event and returns its data. Events before it are skipped.
    async fn next_endpoint(&mut self, url: &str) -> Result<String, SseClientError> {
        loop {
            while let Some(event) = self.events.pop_front() {
                match event.event.as_str() {
                    "endpoint" => return Ok(event.data),
                    "message" => {
                        tracing::warn!("skipping an SSE message event sent before the endpoint")
                    }
                    other => tracing::debug!(event = other, "skipping unknown SSE event"),
                }
            }
            match self.read_more().await {
                Ok(()) => {}
                Err(StreamStop::Ended) => {
                    return Err(SseClientError::EndedBeforeEndpoint {
                        url: url.to_owned(),
                    });
                }
                Err(StreamStop::Failed(source)) => {
                    return Err(SseClientError::Stream {
                        url: url.to_owned(),
                        source,
                    });
                }
            }
        }
    }

    /// The next server message, or `None` when the stream is over.
    pub(crate) async fn next_message(&mut self) -> Option<ServerJsonRpcMessage> {
        loop {
            if let Some(message) = self.messages.pop_front() {
                return Some(message);
            }
            if let Some(event) = self.events.pop_front() {
                match event.event.as_str() {
                    "message" => self.decode(&event.data),
                    "endpoint" => tracing::debug!("ignoring a repeated SSE endpoint event"),
                    other => tracing::debug!(event = other, "skipping unknown SSE event"),
                }
                continue;
            }
            match self.read_more().await {
                Ok(()) => {}
                Err(StreamStop::Ended) => {
                    tracing::debug!("legacy SSE stream ended");
                    return None;
                }
                Err(StreamStop::Failed(error)) => {
                    tracing::warn!(%error, "legacy SSE stream failed; ending the session");
                    return None;
                }
            }
        }
    }

    /// Queues the JSON-RPC message(s) in a `message` event's data; logs and drops what is
    /// not one. A JSON array is taken as a batch (allowed by protocol 2024-11-05).
    fn decode(&mut self, data: &str) {
        if data.trim_start().starts_with('[') {
            match serde_json::from_str::<Vec<serde_json::Value>>(data) {
                Ok(batch) => {
                    for value in batch {
                        match serde_json::from_value(value) {
                            Ok(message) => self.messages.push_back(message),
                            Err(error) => {
                                tracing::warn!(%error, "skipping an invalid JSON-RPC message in a batch from the SSE stream")
                            }
                        }
                    }
                }
                Err(error) => tracing::warn!(
                    %error,
                    data = %truncate(data, 200),
                    "skipping a malformed message event from the SSE stream"
                ),
            }
            return;
        }
        match serde_json::from_str(data) {
            Ok(message) => self.messages.push_back(message),
            Err(error) => tracing::warn!(
                %error,
                data = %truncate(data, 200),
                "skipping a malformed message event from the SSE stream"
            ),
        }
    }

    /// Reads one chunk and parses it.
    async fn read_more(&mut self) -> Result<(), StreamStop> {
        let next = match self.idle_timeout {
            None => self.body.next().await,
            Some(idle) => {
                // The deadline lives in `self`, so polls cancelled by the caller do not
                // restart the idle clock.
                match tokio::time::timeout_at(self.last_activity + idle, self.body.next()).await {
                    Ok(next) => next,
                    Err(_elapsed) => {
                        return Err(StreamStop::Failed(
                            format!("no data for {idle:?} (idle timeout)").into(),
                        ));
                    }
                }
            }
        };
        match next {
            None => Err(StreamStop::Ended),
            Some(Err(error)) => Err(StreamStop::Failed(error)),
            Some(Ok(chunk)) => {
                self.last_activity = Instant::now();
                self.parser
                    .feed(&chunk, &mut self.events)
                    .map_err(|e| StreamStop::Failed(Box::new(e)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rmcp::model::JsonRpcMessage;

    fn inbound_from(chunks: Vec<Result<&'static str, &'static str>>) -> Inbound {
        let body = futures::stream::iter(chunks.into_iter().map(|chunk| match chunk {
            Ok(text) => Ok(Bytes::from_static(text.as_bytes())),
            Err(error) => Err(BoxError::from(error)),
        }))
        .boxed();
        Inbound::new(body, SseClientConfig::DEFAULT_MAX_EVENT_SIZE, None)
    }

    /// A loopback port nothing listens on (bound, then released).
    fn closed_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("bind an ephemeral port")
            .port()
    }

    fn transport_from(chunks: Vec<Result<&'static str, &'static str>>) -> SseClientTransport {
        let poster = Poster {
            client: reqwest::Client::new(),
            endpoint: Url::parse(&format!(
                "http://127.0.0.1:{}/messages/?session_id=x",
                closed_port()
            ))
            .expect("valid test URL"),
            headers: HeaderMap::new(),
            timeout: Duration::from_secs(1),
        };
        SseClientTransport::new(inbound_from(chunks), Arc::new(poster))
    }

    const RESPONSE: &str = "event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\n\n";
    const PING: &str =
        "event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":\"srv-1\",\"method\":\"ping\"}\n\n";

    fn ping() -> ClientJsonRpcMessage {
        ClientJsonRpcMessage::request(
            rmcp::model::ClientRequest::PingRequest(Default::default()),
            rmcp::model::RequestId::Number(1),
        )
    }

    fn is_response(message: &ServerJsonRpcMessage, id: i64) -> bool {
        matches!(message, JsonRpcMessage::Response(r) if r.id == rmcp::model::RequestId::Number(id))
    }

    #[test]
    fn config_debug_hides_header_values_and_url_secrets() {
        let mut config = SseClientConfig::new(
            Url::parse("https://u:pw@h.example/sse?token=t0p").expect("valid test URL"),
        );
        config.headers.insert(
            http::header::AUTHORIZATION,
            HeaderValue::from_static("Bearer s3cret"),
        );
        let debug = format!("{config:?}");
        assert!(debug.contains("authorization"), "{debug}");
        for secret in ["s3cret", "pw", "t0p"] {
            assert!(!debug.contains(secret), "{secret} in {debug}");
        }
    }

    #[tokio::test]
    async fn endpoint_is_found_after_comments_and_other_events() {
        let mut inbound = inbound_from(vec![
            Ok(": hello\n\nevent: other\ndata: x\n\nevent: mess"),
            Ok("age\ndata: {}\n\nevent: endpoint\ndata: /m?s=1\n\n"),
            Ok(RESPONSE),
        ]);
        assert_eq!(
            inbound.next_endpoint("u").await.expect("endpoint"),
            "/m?s=1"
        );
        let message = inbound.next_message().await.expect("the response");
        assert!(is_response(&message, 1), "{message:?}");
        assert!(inbound.next_message().await.is_none());
    }

    #[tokio::test]
    async fn events_in_the_same_chunk_as_the_endpoint_are_kept() {
        let mut inbound = inbound_from(vec![Ok(
            "event: endpoint\ndata: /m\n\nevent: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\n\n",
        )]);
        inbound.next_endpoint("u").await.expect("endpoint");
        assert!(inbound.next_message().await.is_some());
    }

    #[tokio::test]
    async fn stream_ending_or_failing_before_the_endpoint_is_an_error() {
        let mut ended = inbound_from(vec![Ok(": only a comment\n\n")]);
        assert!(matches!(
            ended.next_endpoint("u").await,
            Err(SseClientError::EndedBeforeEndpoint { .. })
        ));
        let mut failed = inbound_from(vec![Err("connection reset")]);
        let error = failed.next_endpoint("u").await.expect_err("failed");
        assert!(matches!(error, SseClientError::Stream { .. }));
        assert!(error.to_string().contains("connection reset"));
    }

    #[tokio::test]
    async fn malformed_and_unknown_events_are_skipped() {
        let mut inbound = inbound_from(vec![
            Ok("event: message\ndata: {not json\n\n"),
            Ok("event: message\ndata: {\"jsonrpc\":\"2.0\",\"nonsense\":true}\n\n"),
            Ok("event: message\ndata: \n\n"),
            Ok("event: surprise\ndata: {}\n\n: keepalive\n\n"),
            Ok("event: endpoint\ndata: /other\n\n"),
            Ok(PING),
        ]);
        let message = inbound.next_message().await.expect("the ping");
        assert!(
            matches!(&message, JsonRpcMessage::Request(r) if r.id == rmcp::model::RequestId::String("srv-1".into())),
            "{message:?}"
        );
        assert!(inbound.next_message().await.is_none());
    }

    #[tokio::test]
    async fn batches_are_split() {
        let mut inbound = inbound_from(vec![Ok(
            "data: [{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}, 7, {\"jsonrpc\":\"2.0\",\"id\":2,\"result\":{}}]\n\n",
        )]);
        let first = inbound.next_message().await.expect("first");
        let second = inbound.next_message().await.expect("second");
        assert!(is_response(&first, 1) && is_response(&second, 2));
        assert!(inbound.next_message().await.is_none());
    }

    #[tokio::test]
    async fn oversized_event_ends_the_stream() {
        let body = futures::stream::iter(vec![
            Ok(Bytes::from_static(
                b"data: 0123456789012345678901234567890123456789\n\n",
            )),
            Ok(Bytes::from_static(RESPONSE.as_bytes())),
        ])
        .boxed();
        let mut inbound = Inbound::new(body, 16, None);
        assert!(inbound.next_message().await.is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn idle_timeout_ends_a_silent_stream() {
        let body = futures::stream::iter(vec![Ok(Bytes::from_static(RESPONSE.as_bytes()))])
            .chain(futures::stream::pending())
            .boxed();
        let mut inbound = Inbound::new(body, 1024, Some(Duration::from_secs(30)));
        assert!(inbound.next_message().await.is_some());
        let started = Instant::now();
        assert!(inbound.next_message().await.is_none());
        assert!(started.elapsed() >= Duration::from_secs(30));
    }

    #[tokio::test(start_paused = true)]
    async fn idle_clock_survives_cancelled_receives() {
        let body = futures::stream::pending().boxed();
        let mut inbound = Inbound::new(body, 1024, Some(Duration::from_secs(30)));
        for _ in 0..2 {
            let poll = tokio::time::timeout(Duration::from_secs(10), inbound.next_message()).await;
            assert!(poll.is_err(), "still waiting");
        }
        // 20 s have passed: the next poll ends after the remaining 10 s, not another 30 s.
        let started = Instant::now();
        assert!(inbound.next_message().await.is_none());
        assert_eq!(started.elapsed(), Duration::from_secs(10));
    }

    #[tokio::test]
    async fn transport_receive_ends_and_signals() {
        let mut transport = transport_from(vec![Ok(PING), Err("reset")]);
        let signal = transport.end_signal();
        assert!(!signal.has_ended());
        assert!(
            Transport::<RoleClient>::receive(&mut transport)
                .await
                .is_some()
        );
        assert!(
            Transport::<RoleClient>::receive(&mut transport)
                .await
                .is_none()
        );
        assert!(signal.has_ended());
        signal.wait().await;
        let result = Transport::<RoleClient>::send(&mut transport, ping()).await;
        assert!(
            matches!(result, Err(SseClientError::SessionEnded)),
            "{result:?}"
        );
        // Stays ended.
        assert!(
            Transport::<RoleClient>::receive(&mut transport)
                .await
                .is_none()
        );
    }

    #[tokio::test]
    async fn close_ends_receive_and_refuses_sends() {
        let mut transport = transport_from(vec![Ok(PING)]);
        let signal = transport.end_signal();
        Transport::<RoleClient>::close(&mut transport)
            .await
            .expect("close");
        assert!(signal.has_ended());
        assert!(
            Transport::<RoleClient>::receive(&mut transport)
                .await
                .is_none()
        );
        let result = Transport::<RoleClient>::send(&mut transport, ping()).await;
        assert!(matches!(result, Err(SseClientError::Closed)), "{result:?}");
    }

    #[tokio::test]
    async fn dropping_the_transport_ends_the_signal() {
        let transport = transport_from(vec![Ok(PING)]);
        let signal = transport.end_signal();
        drop(transport);
        assert!(signal.has_ended());
        signal.wait().await;
    }

    #[tokio::test]
    async fn send_to_an_unreachable_endpoint_fails() {
        let mut transport = transport_from(vec![]);
        let result = Transport::<RoleClient>::send(&mut transport, ping()).await;
        assert!(
            matches!(result, Err(SseClientError::Post { .. })),
            "{result:?}"
        );
        let message = result.expect_err("refused").to_string();
        assert!(!message.contains("session_id"), "{message}");
    }
}
