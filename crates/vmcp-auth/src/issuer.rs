//! The identity provider as the gateway talks to it: its discovery
//! document, its keys and its introspection endpoint.
//!
//! - Discovery (`{issuer}/.well-known/openid-configuration`) is read once,
//!   and its `issuer` must equal the configured one; skipped when `jwksUrl`
//!   is set.
//! - Keys are cached. A token with an unknown `kid` refreshes them, at most
//!   once per [`MIN_REFRESH_INTERVAL`] (one fetch at a time; a flood of
//!   made-up `kid`s costs one request per interval); they are also
//!   refreshed once older than [`MAX_KEY_AGE`]. A failed refresh keeps the
//!   keys held.
//! - Every answer is read up to [`MAX_DOCUMENT_BYTES`]; requests time out
//!   after [`REQUEST_TIMEOUT`]; redirects are not followed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use serde_json::Value;
use tokio::sync::Mutex;

use crate::address_guard::{PublicOnly, names_private_ip};
use crate::keys::KeySet;

/// Least time between two key refreshes caused by unknown `kid`s.
pub const MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(5);
/// Keys older than this are fetched again on the next token.
pub const MAX_KEY_AGE: Duration = Duration::from_secs(3600);
/// Largest discovery, JWKS or introspection answer read.
pub const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;
/// Timeout of one request to the identity provider.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the identity provider could not answer. Shown in logs only (never
/// to clients), and without the URL's query or credentials.
#[derive(Debug, thiserror::Error)]
pub enum IssuerError {
    /// The request failed (connect, TLS, timeout, a private address).
    #[error("request to the identity provider failed: {0}")]
    Request(String),
    /// A non-success HTTP status.
    #[error("the identity provider answered HTTP {0}")]
    Status(u16),
    /// An answer larger than [`MAX_DOCUMENT_BYTES`].
    #[error("the identity provider's answer is larger than {MAX_DOCUMENT_BYTES} bytes")]
    TooLarge,
    /// An answer that is not the expected JSON.
    #[error("the identity provider's answer is not valid: {0}")]
    Invalid(&'static str),
    /// A URL on a private address while those are not allowed.
    #[error(
        "the identity provider's URL is on a private address (set jwksAllowPrivateIp to allow)"
    )]
    PrivateAddress,
    /// Discovery named another issuer.
    #[error("the discovery document names another issuer")]
    IssuerMismatch,
}

/// Where the provider's endpoints are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoints {
    /// The JWKS URL.
    pub jwks_uri: url::Url,
    /// The introspection endpoint, when known.
    pub introspection: Option<url::Url>,
}

struct HeldKeys {
    keys: Arc<KeySet>,
    fetched: Instant,
}

/// The connection to one OpenID Connect issuer.
pub struct Issuer {
    issuer: String,
    http: reqwest::Client,
    allow_private: bool,
    /// Configured endpoints (skip discovery when the JWKS URL is known).
    configured_jwks: Option<url::Url>,
    configured_introspection: Option<url::Url>,
    endpoints: ArcSwapOption<Endpoints>,
    keys: ArcSwapOption<HeldKeys>,
    /// Held while fetching; the instant of the last attempt.
    refresh: Mutex<Option<Instant>>,
}

impl Issuer {
    /// An issuer reached with `http`; `allow_private` lets its URLs resolve
    /// to private addresses.
    pub fn new(
        issuer: &str,
        jwks_url: Option<url::Url>,
        introspection_url: Option<url::Url>,
        http: reqwest::Client,
        allow_private: bool,
    ) -> Self {
        Self {
            issuer: issuer.to_owned(),
            http,
            allow_private,
            configured_jwks: jwks_url,
            configured_introspection: introspection_url,
            endpoints: ArcSwapOption::empty(),
            keys: ArcSwapOption::empty(),
            refresh: Mutex::new(None),
        }
    }

    /// The HTTP client for an issuer: timeouts, no redirects, extra CA
    /// certificates, and (unless allowed) public addresses only.
    pub fn http_client(
        allow_private: bool,
        extra_roots: Vec<reqwest::Certificate>,
    ) -> reqwest::Result<reqwest::Client> {
        let mut builder = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(REQUEST_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none());
        for root in extra_roots {
            builder = builder.add_root_certificate(root);
        }
        if !allow_private {
            builder = builder.dns_resolver(PublicOnly::shared());
        }
        builder.build()
    }

    /// The configured issuer.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The provider's endpoints (discovered once).
    pub async fn endpoints(&self) -> Result<Arc<Endpoints>, IssuerError> {
        if let Some(endpoints) = self.endpoints.load_full() {
            return Ok(endpoints);
        }
        let endpoints = match &self.configured_jwks {
            Some(jwks) => Endpoints {
                jwks_uri: jwks.clone(),
                introspection: self.configured_introspection.clone(),
            },
            None => self.discover().await?,
        };
        let endpoints = Arc::new(endpoints);
        self.endpoints.store(Some(endpoints.clone()));
        Ok(endpoints)
    }

    async fn discover(&self) -> Result<Endpoints, IssuerError> {
        let base = self.issuer.trim_end_matches('/');
        let url = url::Url::parse(&format!("{base}/.well-known/openid-configuration"))
            .map_err(|_| IssuerError::Invalid("issuer URL"))?;
        let document = self.get_json(url).await?;
        if document.get("issuer").and_then(Value::as_str) != Some(self.issuer.as_str()) {
            return Err(IssuerError::IssuerMismatch);
        }
        let url_field = |name: &str| {
            document
                .get(name)
                .and_then(Value::as_str)
                .and_then(|text| url::Url::parse(text).ok())
        };
        Ok(Endpoints {
            jwks_uri: url_field("jwks_uri").ok_or(IssuerError::Invalid("jwks_uri"))?,
            introspection: self.configured_introspection.clone(),
        })
    }

    /// The keys held now, refreshed first when they are missing, too old,
    /// or lack `kid` (subject to the refresh interval).
    pub async fn keys(&self, kid: Option<&str>) -> Result<Arc<KeySet>, IssuerError> {
        let fits = |held: &HeldKeys| {
            held.fetched.elapsed() < MAX_KEY_AGE && kid.is_none_or(|kid| held.keys.has_kid(kid))
        };
        if let Some(held) = self.keys.load_full()
            && fits(&held)
        {
            return Ok(held.keys.clone());
        }
        let mut last_attempt = self.refresh.lock().await;
        // Another request may have refreshed while this one waited.
        let held = self.keys.load_full();
        if let Some(held) = &held
            && fits(held)
        {
            return Ok(held.keys.clone());
        }
        let may_fetch = last_attempt.is_none_or(|at| at.elapsed() >= MIN_REFRESH_INTERVAL);
        if !may_fetch {
            return held
                .map(|held| held.keys.clone())
                .ok_or(IssuerError::Request("keys not fetched yet".into()));
        }
        *last_attempt = Some(Instant::now());
        match self.fetch_keys().await {
            Ok(keys) => {
                tracing::debug!(keys = keys.len(), "fetched the identity provider's keys");
                let keys = Arc::new(keys);
                self.keys.store(Some(Arc::new(HeldKeys {
                    keys: keys.clone(),
                    fetched: Instant::now(),
                })));
                Ok(keys)
            }
            Err(err) => match held {
                Some(held) => {
                    tracing::warn!("could not refresh the identity provider's keys: {err}");
                    Ok(held.keys.clone())
                }
                None => Err(err),
            },
        }
    }

    async fn fetch_keys(&self) -> Result<KeySet, IssuerError> {
        let endpoints = self.endpoints().await?;
        let document = self.get_json(endpoints.jwks_uri.clone()).await?;
        let keys = KeySet::from_json(&document);
        if keys.is_empty() {
            return Err(IssuerError::Invalid("the JWKS has no usable signature key"));
        }
        Ok(keys)
    }

    /// Asks the introspection endpoint about `token` (RFC 7662).
    pub async fn introspect(
        &self,
        token: &str,
        client_id: &str,
        client_secret: &str,
    ) -> Result<Value, IssuerError> {
        let endpoints = self.endpoints().await?;
        let url = endpoints
            .introspection
            .clone()
            .ok_or(IssuerError::Invalid("no introspection endpoint"))?;
        self.guard(&url)?;
        let request = self
            .http
            .post(url)
            .basic_auth(client_id, Some(client_secret))
            .form(&[("token", token), ("token_type_hint", "access_token")]);
        self.read_json(request).await
    }

    async fn get_json(&self, url: url::Url) -> Result<Value, IssuerError> {
        self.guard(&url)?;
        self.read_json(self.http.get(url)).await
    }

    fn guard(&self, url: &url::Url) -> Result<(), IssuerError> {
        if !self.allow_private && names_private_ip(url) {
            return Err(IssuerError::PrivateAddress);
        }
        Ok(())
    }

    async fn read_json(&self, request: reqwest::RequestBuilder) -> Result<Value, IssuerError> {
        let response = send_json_request(request).await?;
        if !response.status().is_success() {
            return Err(IssuerError::Status(response.status().as_u16()));
        }
        read_json_body(response).await
    }
}

/// Sends a request that expects a JSON answer.
pub(crate) async fn send_json_request(
    request: reqwest::RequestBuilder,
) -> Result<reqwest::Response, IssuerError> {
    request
        .header(reqwest::header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(|err| IssuerError::Request(describe(&err)))
}

/// The answer's body as JSON, read up to [`MAX_DOCUMENT_BYTES`].
pub(crate) async fn read_json_body(mut response: reqwest::Response) -> Result<Value, IssuerError> {
    if response
        .content_length()
        .is_some_and(|length| length > MAX_DOCUMENT_BYTES as u64)
    {
        return Err(IssuerError::TooLarge);
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|err| IssuerError::Request(describe(&err)))?
    {
        if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
            return Err(IssuerError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    serde_json::from_slice(&body).map_err(|_| IssuerError::Invalid("not JSON"))
}

/// A request error without its URL (which may carry a query or credentials).
fn describe(err: &reqwest::Error) -> String {
    let kind = if err.is_timeout() {
        "timed out"
    } else if err.is_connect() {
        "could not connect"
    } else {
        "failed"
    };
    let mut source = std::error::Error::source(err);
    let mut cause = String::new();
    while let Some(err) = source {
        cause = err.to_string();
        source = err.source();
    }
    if cause.is_empty() {
        kind.to_owned()
    } else {
        format!("{kind}: {cause}")
    }
}
