//! Opening a client connection to a backend, one function per transport.
//! Each returns a running rmcp client whose initialization has finished.

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue};
use rmcp::ServiceExt;
use rmcp::service::{ClientInitializeError, RoleClient, RunningService};
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::{StreamableHttpClientTransport, TokioChildProcess};
use tokio::io::{AsyncBufReadExt, BufReader};
use vmcp_config::{AuthType, TransportKind};
use vmcp_domain::health::FailureKind;

use super::credentials::{Credentials, TokenSource};
use super::rejection;
use super::session_watch::SessionWatch;
use super::spec::{BackendSpec, Endpoint};
use super::upstream_handler::UpstreamHandler;

/// A connected backend client.
pub type UpstreamService = RunningService<RoleClient, UpstreamHandler>;

/// Why a connection could not be opened. The [`ConnectError::category`] is
/// safe to show to clients and in status; the full error goes to the log.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The environment variable named by `headerValueEnv` is not set.
    #[error("environment variable {0} (headerValueEnv) is not set")]
    MissingHeaderEnv(String),
    /// A configured header name or value is not valid HTTP.
    #[error("invalid outgoing auth header: {0}")]
    InvalidHeader(String),
    /// The configuration does not match the transport.
    #[error("backend endpoint does not match its transport")]
    EndpointMismatch,
    /// Token exchange is configured but cannot be used.
    #[error("token exchange cannot be used: {0}")]
    Credentials(String),
    /// Every caller session of the backend is taken (and still opening).
    #[error("too many callers are opening their own session with the backend")]
    TooManyCallers,
    /// The connection ended as soon as it was opened.
    #[error("the connection closed right after it was opened")]
    Closed,
    /// The child process could not be started.
    #[error("cannot start the backend process: {0}")]
    Spawn(#[source] std::io::Error),
    /// The MCP initialization handshake failed.
    #[error("MCP initialization failed: {0}")]
    Initialize(#[source] Box<ClientInitializeError>),
    /// The legacy SSE connection could not be opened.
    #[error("legacy SSE connection failed: {0}")]
    Sse(#[source] mcp_legacy_sse::SseClientError),
    /// Connecting took longer than the backend's timeout.
    #[error("connecting timed out after {0:?}")]
    Timeout(Duration),
}

impl ConnectError {
    /// What kind of failure this is for the health record: a 401/403 is
    /// [`FailureKind::Unauthorized`] (decided by type, see [`super::rejection`]).
    pub fn failure_kind(&self) -> FailureKind {
        match self {
            Self::Timeout(_) => FailureKind::Timeout,
            Self::Initialize(err) if rejection::initialize_rejected(err) => {
                FailureKind::Unauthorized
            }
            Self::Sse(err)
                if err
                    .http_status()
                    .is_some_and(|s| rejection::is_auth_status(s.as_u16())) =>
            {
                FailureKind::Unauthorized
            }
            _ => FailureKind::Unreachable,
        }
    }

    /// A short, sanitized description: no addresses, no secrets.
    pub fn category(&self, auth_configured: bool) -> &'static str {
        if self.failure_kind() == FailureKind::Unauthorized {
            return FailureKind::Unauthorized.category(auth_configured);
        }
        match self {
            Self::MissingHeaderEnv(_) | Self::InvalidHeader(_) | Self::Credentials(_) => {
                "outgoing auth misconfigured"
            }
            Self::EndpointMismatch => "backend misconfigured",
            Self::Spawn(_) => "backend process failed to start",
            Self::Timeout(_) => "connection timed out",
            Self::Sse(_) | Self::Closed => "connection failed",
            Self::TooManyCallers => "too many callers",
            Self::Initialize(_) => "initialization failed",
        }
    }
}

/// Connects to `spec` and completes the MCP handshake within the backend's
/// timeout: the gateway's own (shared) connection.
pub async fn connect(
    spec: &BackendSpec,
    credentials: &Credentials,
    http: &reqwest::Client,
    handler: UpstreamHandler,
) -> Result<UpstreamService, ConnectError> {
    let tokens = match credentials {
        Credentials::Static => TokenSource::Static,
        Credentials::Exchange(exchanger) => TokenSource::Gateway {
            backend: spec.name.as_str().into(),
            exchanger: Arc::clone(exchanger),
        },
        Credentials::Unusable(reason) => return Err(ConnectError::Credentials(reason.clone())),
    };
    connect_with(spec, tokens, http, handler).await
}

/// [`connect`] with the bearer tokens of `tokens` (a caller's own
/// connection passes its token here; see [`super::caller_lanes`]).
pub async fn connect_with(
    spec: &BackendSpec,
    tokens: TokenSource,
    http: &reqwest::Client,
    handler: UpstreamHandler,
) -> Result<UpstreamService, ConnectError> {
    let timeout = spec.call_timeout;
    let attempt = async {
        if !matches!(tokens, TokenSource::Static) && spec.transport != TransportKind::StreamableHttp
        {
            return Err(ConnectError::Credentials(
                "token_exchange works with streamable-http backends only".into(),
            ));
        }
        match (&spec.transport, &spec.endpoint) {
            (TransportKind::StreamableHttp, Endpoint::Url(url)) => {
                let config = StreamableHttpClientTransportConfig::with_uri(url.as_str())
                    .max_concurrent_requests(spec.max_in_flight);
                streamable_http(config, auth_headers(spec)?, tokens, http, handler).await
            }
            (TransportKind::Sse, Endpoint::Url(url)) => {
                legacy_sse(url, auth_headers(spec)?, http, handler, timeout).await
            }
            (TransportKind::Stdio, Endpoint::Command { program, args, env }) => {
                stdio(&spec.name, program, args, env, handler).await
            }
            _ => Err(ConnectError::EndpointMismatch),
        }
    };
    tokio::time::timeout(timeout, attempt)
        .await
        .map_err(|_| ConnectError::Timeout(timeout))?
}

/// The headers outgoing auth adds to every HTTP request.
fn auth_headers(spec: &BackendSpec) -> Result<HeaderMap, ConnectError> {
    let mut headers = HeaderMap::new();
    let Some(auth) = &spec.auth else {
        return Ok(headers);
    };
    if auth.kind != AuthType::HeaderInjection {
        return Ok(headers);
    }
    let Some(injection) = &auth.header_injection else {
        return Err(ConnectError::InvalidHeader(
            "headerInjection is missing".into(),
        ));
    };
    let value = match (&injection.header_value, &injection.header_value_env) {
        (Some(value), _) => value.clone(),
        (None, Some(var)) => {
            std::env::var(var).map_err(|_| ConnectError::MissingHeaderEnv(var.clone()))?
        }
        (None, None) => {
            return Err(ConnectError::InvalidHeader(
                "no headerValue or headerValueEnv".into(),
            ));
        }
    };
    let name = HeaderName::from_bytes(injection.header_name.as_bytes()).map_err(|_| {
        ConnectError::InvalidHeader(format!("bad header name {:?}", injection.header_name))
    })?;
    let mut value = HeaderValue::from_str(&value)
        .map_err(|_| ConnectError::InvalidHeader(format!("bad value for header {name}")))?;
    value.set_sensitive(true);
    headers.insert(name, value);
    Ok(headers)
}

async fn streamable_http(
    mut config: StreamableHttpClientTransportConfig,
    headers: HeaderMap,
    tokens: TokenSource,
    http: &reqwest::Client,
    handler: UpstreamHandler,
) -> Result<UpstreamService, ConnectError> {
    config.custom_headers = headers
        .into_iter()
        .filter_map(|(k, v)| Some((k?, v)))
        .collect();
    // A restarted backend forgets our session; re-initialize instead of
    // failing (the supervisor is told, to list and restore again).
    config.reinit_on_expired_session = true;
    // Stateless servers answer without a session id.
    config.allow_stateless = true;
    let client = SessionWatch::new(http.clone(), handler.renewed(), tokens);
    let transport = StreamableHttpClientTransport::with_client(client, config);
    handler
        .serve(transport)
        .await
        .map_err(|err| ConnectError::Initialize(Box::new(err)))
}

async fn legacy_sse(
    url: &str,
    headers: HeaderMap,
    http: &reqwest::Client,
    handler: UpstreamHandler,
    timeout: Duration,
) -> Result<UpstreamService, ConnectError> {
    let parsed = url::Url::parse(url).map_err(|_| ConnectError::EndpointMismatch)?;
    let mut config = mcp_legacy_sse::SseClientConfig::new(parsed);
    config.headers = headers;
    config.connect_timeout = timeout;
    config.post_timeout = timeout;
    let transport = mcp_legacy_sse::connect(config, http.clone())
        .await
        .map_err(ConnectError::Sse)?;
    handler
        .serve(transport)
        .await
        .map_err(|err| ConnectError::Initialize(Box::new(err)))
}

async fn stdio(
    backend: &str,
    program: &str,
    args: &[String],
    env: &std::collections::BTreeMap<String, String>,
    handler: UpstreamHandler,
) -> Result<UpstreamService, ConnectError> {
    let mut command = tokio::process::Command::new(program);
    command.args(args).envs(env).kill_on_drop(true);
    let (transport, stderr) = TokioChildProcess::builder(command)
        .stderr(Stdio::piped())
        .spawn()
        .map_err(ConnectError::Spawn)?;
    if let Some(stderr) = stderr {
        let backend: Arc<str> = backend.into();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                tracing::debug!(backend = %backend, "stderr: {line}");
            }
        });
    }
    handler
        .serve(transport)
        .await
        .map_err(|err| ConnectError::Initialize(Box::new(err)))
}
