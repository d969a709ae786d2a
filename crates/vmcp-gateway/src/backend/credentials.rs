//! The credentials a backend's requests carry beyond static headers: under
//! `outgoingAuth` type `token_exchange`, each forwarded call carries the
//! caller's token exchanged for the backend's audience, and the gateway's
//! own requests (initialize, lists, pings, subscriptions) carry the
//! gateway's client credentials token.
//!
//! Backends that check tokens bind their sessions to the token's subject
//! (the official SDKs do), so a caller's calls cannot share the gateway's
//! session: they go on the caller's own session ([`super::caller_lanes`]).
//! A forwarded call's token rides on the upstream request as a
//! [`CallerToken`] extension; the HTTP client of the connection
//! ([`super::session_watch`]) turns it into the `Authorization` header, and
//! uses the connection's [`TokenSource`] for everything else.

use std::sync::{Arc, PoisonError, RwLock};

use vmcp_auth::token_exchange::{ExchangeError, TokenExchanger};
use vmcp_config::AuthType;

use super::spec::BackendSpec;

/// A backend's dynamic credentials.
pub enum Credentials {
    /// None beyond the static headers of `header_injection`, if any.
    Static,
    /// Token exchange.
    Exchange(Arc<TokenExchanger>),
    /// Token exchange is configured but cannot work (e.g. its secret is not
    /// set); the reason is safe to show.
    Unusable(String),
}

impl Credentials {
    /// The credentials `spec` asks for; secrets are read from the environment.
    pub fn for_spec(spec: &BackendSpec) -> Self {
        let Some(auth) = &spec.auth else {
            return Self::Static;
        };
        if auth.kind != AuthType::TokenExchange {
            return Self::Static;
        }
        let Some(config) = &auth.token_exchange else {
            return Self::Unusable("tokenExchange is missing".into());
        };
        match TokenExchanger::from_config(config, |var| std::env::var(var).ok()) {
            Ok(exchanger) => Self::Exchange(Arc::new(exchanger)),
            Err(err) => Self::Unusable(err.to_string()),
        }
    }

    /// The exchanger, when the backend uses one.
    pub fn exchanger(&self) -> Option<&Arc<TokenExchanger>> {
        match self {
            Self::Exchange(exchanger) => Some(exchanger),
            _ => None,
        }
    }
}

/// Where a connection's requests get their bearer token when they do not
/// carry a [`CallerToken`].
#[derive(Clone)]
pub enum TokenSource {
    /// None: static headers only.
    Static,
    /// The gateway's own token, for the shared connection.
    Gateway {
        /// The backend's name (for warnings).
        backend: Arc<str>,
        /// Where the token comes from.
        exchanger: Arc<TokenExchanger>,
    },
    /// A caller's own connection: the token of its latest call.
    Caller(Arc<RwLock<Arc<str>>>),
}

impl TokenSource {
    /// A caller's connection whose first token is `token`.
    pub fn caller(token: Arc<str>) -> Self {
        Self::Caller(Arc::new(RwLock::new(token)))
    }

    /// Remembers the token of a caller's latest call (for the requests of
    /// its connection that carry none, such as notifications).
    pub fn saw_caller_token(&self, token: &Arc<str>) {
        if let Self::Caller(latest) = self {
            let mut latest = latest.write().unwrap_or_else(PoisonError::into_inner);
            if **latest != **token {
                *latest = Arc::clone(token);
            }
        }
    }

    /// The latest caller token of a caller's connection.
    pub fn latest_caller_token(&self) -> Option<Arc<str>> {
        match self {
            Self::Caller(latest) => Some(Arc::clone(
                &latest.read().unwrap_or_else(PoisonError::into_inner),
            )),
            _ => None,
        }
    }
}

/// The token a forwarded call carries to its backend (an extension of the
/// upstream request; never serialized).
#[derive(Clone)]
pub struct CallerToken(pub Arc<str>);

/// Why a call got no token for its backend. It is the caller's problem or
/// the identity provider's, never the backend's: it counts as neither a
/// backend failure nor a circuit breaker failure.
#[derive(Debug, thiserror::Error)]
pub enum CallerTokenError {
    /// Token exchange is configured but unusable.
    #[error("outgoing auth misconfigured: {0}")]
    Unusable(String),
    /// The exchange failed.
    #[error(transparent)]
    Exchange(#[from] ExchangeError),
    /// The backend refused the caller's exchanged token.
    #[error("the backend refused the token issued for you")]
    Refused,
}
