//! Noticing when a backend's MCP session is silently renewed.
//!
//! rmcp re-initializes a streamable HTTP session that the backend no longer
//! knows (HTTP 404, e.g. after a restart) without telling the handler. The
//! backend then has forgotten everything the gateway told it on behalf of
//! its clients (resource subscriptions, the log level), and may offer
//! something else. This wrapper around the shared HTTP client sees every
//! `initialize` POST; from the second one on it wakes the supervisor, which
//! lists the capabilities again and restores the session state.
//!
//! Under token exchange it is also where each request gets its bearer
//! token: a forwarded call's own ([`CallerToken`]), otherwise the gateway's
//! (see [`super::credentials`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::stream::BoxStream;
use http::{HeaderName, HeaderValue};
use rmcp::model::{ClientJsonRpcMessage, ClientRequest, GetExtensions, JsonRpcMessage};
use rmcp::transport::streamable_http_client::{
    SseError, StreamableHttpClient, StreamableHttpError, StreamableHttpPostResponse,
};
use sse_stream::Sse;
use tokio::sync::Notify;

use super::credentials::{CallerToken, TokenSource};
use crate::log_limit::LogLimiter;

/// The backend HTTP client of one connection, watching for session renewals.
#[derive(Clone)]
pub struct SessionWatch {
    inner: reqwest::Client,
    initialized_once: Arc<AtomicBool>,
    renewed: Arc<Notify>,
    /// Where requests get their bearer token, under token exchange.
    tokens: TokenSource,
    warnings: Arc<std::sync::Mutex<LogLimiter>>,
}

impl SessionWatch {
    /// Wraps `inner`; `renewed` is notified on every `initialize` after the
    /// first; `tokens` supplies bearer tokens under token exchange.
    pub fn new(inner: reqwest::Client, renewed: Arc<Notify>, tokens: TokenSource) -> Self {
        Self {
            inner,
            initialized_once: Arc::new(AtomicBool::new(false)),
            renewed,
            tokens,
            warnings: Arc::new(std::sync::Mutex::new(LogLimiter::per_backend())),
        }
    }

    /// The bearer token of `message`: a forwarded call's own, else the
    /// connection's; `given` when there is no token exchange.
    async fn token_for(
        &self,
        message: Option<&ClientJsonRpcMessage>,
        given: Option<String>,
    ) -> Option<String> {
        if let Some(JsonRpcMessage::Request(request)) = message
            && let Some(CallerToken(token)) = request.request.extensions().get::<CallerToken>()
        {
            self.tokens.saw_caller_token(token);
            return Some(token.to_string());
        }
        let (backend, exchanger) = match &self.tokens {
            TokenSource::Static => return given,
            TokenSource::Caller(_) => {
                return self
                    .tokens
                    .latest_caller_token()
                    .map(|token| token.to_string());
            }
            TokenSource::Gateway { backend, exchanger } => (backend, exchanger),
        };
        match exchanger.for_gateway().await {
            Ok(token) => Some(token.to_string()),
            Err(err) => {
                // Sent without: the backend's refusal marks it unauthenticated.
                let admitted = self
                    .warnings
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .admit(std::time::Instant::now());
                if let Some(suppressed) = admitted {
                    tracing::warn!(
                        backend = &**backend,
                        suppressed,
                        "cannot obtain the gateway's own token for the backend: {err}"
                    );
                }
                given
            }
        }
    }

    fn saw(&self, message: &ClientJsonRpcMessage) {
        let initialize = matches!(
            message,
            JsonRpcMessage::Request(request)
                if matches!(request.request, ClientRequest::InitializeRequest(_))
        );
        if initialize && self.initialized_once.swap(true, Ordering::AcqRel) {
            self.renewed.notify_one();
        }
    }
}

impl StreamableHttpClient for SessionWatch {
    type Error = reqwest::Error;

    async fn post_message(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<StreamableHttpPostResponse, StreamableHttpError<Self::Error>> {
        self.saw(&message);
        let auth_header = self.token_for(Some(&message), auth_header).await;
        self.inner
            .post_message(uri, message, session_id, auth_header, custom_headers)
            .await
    }

    async fn post_message_with_max_sse_event_size(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        max_sse_event_size: usize,
    ) -> Result<StreamableHttpPostResponse, StreamableHttpError<Self::Error>> {
        self.saw(&message);
        let auth_header = self.token_for(Some(&message), auth_header).await;
        self.inner
            .post_message_with_max_sse_event_size(
                uri,
                message,
                session_id,
                auth_header,
                custom_headers,
                max_sse_event_size,
            )
            .await
    }

    async fn delete_session(
        &self,
        uri: Arc<str>,
        session_id: Arc<str>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<(), StreamableHttpError<Self::Error>> {
        let auth_header = self.token_for(None, auth_header).await;
        self.inner
            .delete_session(uri, session_id, auth_header, custom_headers)
            .await
    }

    async fn get_stream(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<BoxStream<'static, Result<Sse, SseError>>, StreamableHttpError<Self::Error>> {
        let auth_header = self.token_for(None, auth_header).await;
        self.inner
            .get_stream(uri, session_id, last_event_id, auth_header, custom_headers)
            .await
    }

    async fn get_stream_with_max_sse_event_size(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        max_sse_event_size: usize,
    ) -> Result<BoxStream<'static, Result<Sse, SseError>>, StreamableHttpError<Self::Error>> {
        let auth_header = self.token_for(None, auth_header).await;
        self.inner
            .get_stream_with_max_sse_event_size(
                uri,
                session_id,
                last_event_id,
                auth_header,
                custom_headers,
                max_sse_event_size,
            )
            .await
    }
}
