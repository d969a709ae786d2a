//! The crate's error type.

use std::time::Duration;

use http::StatusCode;

/// A boxed error from the byte stream underlying the event stream.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything that can go wrong while connecting to a legacy HTTP+SSE MCP server or
/// while sending a message to it.
///
/// URLs inside these errors are shown without user information, query and fragment,
/// because the query of a legacy SSE endpoint carries the session id, which is a
/// bearer capability for the session.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SseClientError {
    /// The configured SSE URL cannot be used: it is not `http`/`https` or has no host.
    #[error("invalid SSE URL {url}: {reason}")]
    InvalidUrl {
        /// The offending URL (redacted).
        url: String,
        /// Why it was refused.
        reason: &'static str,
    },

    /// The `GET` request that opens the event stream failed before a response arrived
    /// (connection refused, DNS failure, TLS error, ...).
    #[error("failed to open the SSE stream at {url}: {source}")]
    Connect {
        /// The SSE URL (redacted).
        url: String,
        /// The HTTP client's error.
        #[source]
        source: reqwest::Error,
    },

    /// The server answered the `GET` request with a non-success status.
    #[error("opening the SSE stream at {url} was rejected with HTTP {status}: {body:?}")]
    ConnectStatus {
        /// The SSE URL (redacted).
        url: String,
        /// The status the server answered with.
        status: StatusCode,
        /// The beginning of the response body, for diagnosis.
        body: String,
    },

    /// The server answered the `GET` request with something that is not an event stream.
    #[error(
        "the response from {url} has content type {content_type:?}, expected text/event-stream"
    )]
    NotEventStream {
        /// The SSE URL (redacted).
        url: String,
        /// The content type the server sent.
        content_type: String,
    },

    /// The `endpoint` event did not arrive within
    /// [`SseClientConfig::connect_timeout`](crate::SseClientConfig::connect_timeout)
    /// (this includes the time to get the response headers).
    #[error("no `endpoint` event from {url} within {timeout:?}")]
    Timeout {
        /// The SSE URL (redacted).
        url: String,
        /// The timeout that elapsed.
        timeout: Duration,
    },

    /// The event stream ended before the `endpoint` event arrived.
    #[error("the SSE stream from {url} ended before the `endpoint` event")]
    EndedBeforeEndpoint {
        /// The SSE URL (redacted).
        url: String,
    },

    /// Reading the event stream failed before the `endpoint` event arrived (network
    /// error, or an event larger than
    /// [`SseClientConfig::max_event_size`](crate::SseClientConfig::max_event_size)).
    #[error("reading the SSE stream from {url} failed before the `endpoint` event: {source}")]
    Stream {
        /// The SSE URL (redacted).
        url: String,
        /// What failed.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },

    /// The data of the `endpoint` event is not a valid URL reference.
    #[error("invalid `endpoint` event data {data:?}: {reason}")]
    InvalidEndpoint {
        /// The event's data (at most a few hundred characters of it).
        data: String,
        /// Why it could not be used.
        reason: String,
    },

    /// The `endpoint` event names a URL whose origin (scheme, host, port) differs from
    /// the configured SSE URL's. It is refused because every message, and the configured
    /// headers (often credentials), would be sent there.
    #[error(
        "the server's message endpoint {endpoint} is not on the SSE URL's origin {expected_origin}; refusing to send messages there"
    )]
    CrossOriginEndpoint {
        /// The endpoint the server announced, resolved (redacted).
        endpoint: String,
        /// The origin of the configured SSE URL.
        expected_origin: String,
    },

    /// A JSON-RPC message could not be serialized.
    #[error("failed to serialize a JSON-RPC message: {0}")]
    Serialize(#[source] serde_json::Error),

    /// The `POST` of a message failed before a response arrived (connection refused,
    /// [`SseClientConfig::post_timeout`](crate::SseClientConfig::post_timeout) elapsed, ...).
    #[error("failed to POST a message to {endpoint}: {source}")]
    Post {
        /// The message endpoint (redacted).
        endpoint: String,
        /// The HTTP client's error.
        #[source]
        source: reqwest::Error,
    },

    /// The server answered the `POST` of a message with a non-success status (for example
    /// 404 once the session has expired on the server).
    #[error("POST of a message to {endpoint} was rejected with HTTP {status}: {body:?}")]
    PostStatus {
        /// The message endpoint (redacted).
        endpoint: String,
        /// The status the server answered with.
        status: StatusCode,
        /// The beginning of the response body, for diagnosis.
        body: String,
    },

    /// The transport was closed with `Transport::close`; it sends nothing any more.
    #[error("the SSE transport is closed")]
    Closed,

    /// The event stream has ended, and the server's session with it; nothing is sent any
    /// more. Connect a new transport to continue.
    #[error("the SSE session has ended (its event stream is gone); reconnect to continue")]
    SessionEnded,
}

impl SseClientError {
    /// The HTTP status the server answered with, when it answered with a
    /// non-success status (opening the stream or posting a message), so
    /// callers classify rejections (401/403) by type instead of by text.
    pub fn http_status(&self) -> Option<StatusCode> {
        match self {
            Self::ConnectStatus { status, .. } | Self::PostStatus { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// `url` without user information, query and fragment, for messages and logs.
pub(crate) fn redact(url: &url::Url) -> String {
    let mut url = url.clone();
    // Both fail only for URLs that cannot have credentials, which then have none.
    let _ = url.set_username("");
    let _ = url.set_password(None);
    url.set_query(None);
    url.set_fragment(None);
    url.to_string()
}

/// At most `max` characters of `text`, with a marker when something was cut.
pub(crate) fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_drops_credentials_query_and_fragment() {
        let url =
            url::Url::parse("https://user:secret@example.com:8443/messages/?session_id=abc#x")
                .expect("valid test URL");
        assert_eq!(redact(&url), "https://example.com:8443/messages/");
    }

    #[test]
    fn truncate_respects_char_boundaries() {
        assert_eq!(truncate("héllo", 2), "hé…");
        assert_eq!(truncate("hé", 2), "hé");
        assert_eq!(truncate("", 2), "");
    }
}
