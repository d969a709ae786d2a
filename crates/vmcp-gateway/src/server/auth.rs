//! Client authentication on the HTTP surface (`incomingAuth.type: oidc`).
//!
//! - `/mcp` needs a valid bearer token ([`require_bearer`]); the verified
//!   caller travels with the request as an `Arc<Principal>` extension, so
//!   handlers (and rmcp's request context) see who is calling. A request on
//!   a session must come from the caller who opened it (`403` otherwise): a
//!   leaked session id is not a credential.
//! - Refusals are `401` (no or bad token), `403` (missing scopes, another
//!   caller's session) or `503` (the identity provider cannot be reached),
//!   each with a JSON-RPC error body and, for `401`/`403`, a
//!   `WWW-Authenticate: Bearer resource_metadata="…"` challenge.
//! - The RFC 9728 protected resource metadata is served at
//!   `/.well-known/oauth-protected-resource` (and with the `/mcp` suffix).
//! - `/status` and `/metrics` ([`guard_operational`]): with
//!   `server.statusAccess: authenticated` (the default) they answer loopback
//!   clients and callers with a valid token; `open` serves them to anyone.
//!   `/health` and `/readyz` are always open (probes carry no token).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Json;
use axum::extract::{ConnectInfo, Request};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use vmcp_auth::challenge::{metadata_url, resource_metadata, www_authenticate};
use vmcp_auth::{Authenticator, Principal, Rejection};

use super::session_limits::{SESSION_ID_HEADER, SessionLimits};

/// JSON-RPC code of an authentication or authorization refusal
/// (implementation-defined server error range).
pub const UNAUTHORIZED: i32 = -32001;

/// The path the gateway serves MCP on (the resource's path when none is configured).
const MCP_PATH: &str = "/mcp";

/// Incoming authentication as the HTTP surface applies it.
pub struct IncomingAuth {
    authenticator: Arc<Authenticator>,
    /// The configured resource indicator, when it is a URL.
    resource_url: Option<url::Url>,
    /// The server's name, shown in the metadata.
    name: String,
}

impl std::fmt::Debug for IncomingAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IncomingAuth")
            .field("issuer", &self.authenticator.issuer())
            .field("resource", &self.authenticator.resource())
            .finish_non_exhaustive()
    }
}

impl IncomingAuth {
    /// Authentication by `authenticator` for the server called `name`.
    pub fn new(authenticator: Arc<Authenticator>, name: &str) -> Self {
        let resource_url = url::Url::parse(authenticator.resource())
            .ok()
            .filter(|url| matches!(url.scheme(), "http" | "https"));
        Self {
            authenticator,
            resource_url,
            name: name.to_owned(),
        }
    }

    /// The resource URL: the configured one, or this endpoint as the
    /// client addressed it (its `Host`).
    fn resource(&self, headers: &HeaderMap) -> Option<url::Url> {
        if let Some(url) = &self.resource_url {
            return Some(url.clone());
        }
        let host = headers.get(header::HOST)?.to_str().ok()?;
        url::Url::parse(&format!("http://{host}{MCP_PATH}")).ok()
    }

    /// The caller of a request, or why it is refused.
    async fn authenticate(&self, headers: &HeaderMap) -> Result<Arc<Principal>, Rejection> {
        let authorization = headers
            .get(header::AUTHORIZATION)
            .map(HeaderValue::as_bytes);
        self.authenticator.authenticate(authorization).await
    }

    /// The response refusing a request.
    fn refuse(&self, headers: &HeaderMap, rejection: &Rejection) -> Response {
        let body = json!({
            "jsonrpc": "2.0",
            "id": null,
            "error": {"code": UNAUTHORIZED, "message": rejection.to_string()},
        });
        let status = StatusCode::from_u16(rejection.status()).unwrap_or(StatusCode::UNAUTHORIZED);
        let mut response = (status, Json(body)).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        } else if let Some(resource) = self.resource(headers) {
            let challenge = www_authenticate(
                &metadata_url(&resource),
                rejection,
                self.authenticator.required_scopes(),
            );
            if let Ok(value) = HeaderValue::from_str(&challenge) {
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, value);
            }
        }
        response
    }

    /// The protected resource metadata document (RFC 9728).
    pub fn metadata(&self, headers: &HeaderMap) -> Response {
        let resource = self
            .resource(headers)
            .map_or_else(|| self.authenticator.resource().to_owned(), String::from);
        let document = resource_metadata(
            &resource,
            self.authenticator.issuer(),
            self.authenticator.required_scopes(),
            &self.name,
        );
        Json(document).into_response()
    }
}

/// Middleware for `/mcp`: a valid bearer token, from the session's own
/// caller when the request names a session.
pub async fn require_bearer(
    auth: Arc<IncomingAuth>,
    limits: Arc<SessionLimits>,
    mut request: Request,
    next: Next,
) -> Response {
    let principal = match auth.authenticate(request.headers()).await {
        Ok(principal) => principal,
        Err(rejection) => {
            tracing::debug!(reason = rejection.label(), "refused a request: {rejection}");
            return auth.refuse(request.headers(), &rejection);
        }
    };
    let session = request
        .headers()
        .get(SESSION_ID_HEADER)
        .and_then(|value| value.to_str().ok());
    if let Some(session) = session
        && let Some(Some(owner)) = limits.caller_of(session)
        && owner != principal.subject
    {
        tracing::warn!("refused a request on a session opened by another caller");
        return auth.refuse(request.headers(), &Rejection::WrongCaller);
    }
    request.extensions_mut().insert(principal);
    next.run(request).await
}

/// Who may read `/status` and `/metrics` under OIDC.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OperationalAccess {
    /// Anyone who reaches the endpoint.
    Open,
    /// Loopback clients, and callers with a valid token.
    Authenticated,
}

/// Middleware for `/status` and `/metrics`.
pub async fn guard_operational(
    auth: Arc<IncomingAuth>,
    access: OperationalAccess,
    request: Request,
    next: Next,
) -> Response {
    let loopback = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .is_some_and(|ConnectInfo(peer)| peer.ip().is_loopback());
    if access == OperationalAccess::Open || loopback {
        return next.run(request).await;
    }
    match auth.authenticate(request.headers()).await {
        Ok(_) => next.run(request).await,
        Err(rejection) => auth.refuse(request.headers(), &rejection),
    }
}
