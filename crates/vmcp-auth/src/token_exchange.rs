//! Outgoing credentials of one backend under `outgoingAuth` type
//! `token_exchange`:
//!
//! - for a caller's request, the caller's token exchanged at the identity
//!   provider's token endpoint (RFC 8693) for one issued to the backend's
//!   audience and scopes, cached per caller (`sub`) until shortly before it
//!   expires;
//! - for the gateway's own requests (initialize, lists, health checks), a
//!   token of the gateway's client (the client credentials grant), cached
//!   the same way, one fetch at a time.
//!
//! Tokens never appear in errors or logs; errors carry the provider's OAuth
//! error code at most.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::Mutex;
use vmcp_config::{ACCESS_TOKEN_TYPE, TokenExchange};

use crate::bounded_cache::BoundedCache;
use crate::issuer::{Issuer, IssuerError, read_json_body, send_json_request};

/// The RFC 8693 grant type.
pub const TOKEN_EXCHANGE_GRANT: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// Callers whose exchanged tokens are kept at once, per backend.
pub const MAX_CACHED_CALLERS: usize = 10_000;
/// How long a token whose answer gave no `expires_in` is reused.
pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(60);
/// A token is replaced this long before it expires (at most a quarter of its life).
pub const REFRESH_MARGIN: Duration = Duration::from_secs(30);

/// Why the exchanger cannot be set up from the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ExchangeSetupError {
    /// `clientSecretEnv` names an unset or empty variable.
    #[error("tokenExchange.clientSecretEnv: environment variable {0} is not set")]
    SecretMissing(String),
    /// No client id or secret is configured (validation catches this first).
    #[error("tokenExchange needs clientId and clientSecretEnv")]
    NoClient,
    /// `tokenUrl` does not parse (validation catches this first).
    #[error("tokenExchange.tokenUrl: not a valid URL")]
    Url,
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client for the token endpoint: {0}")]
    Http(String),
}

/// Why no token for the backend could be obtained. Shown to the caller and
/// in logs: it never holds a token, a secret or the endpoint's address.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ExchangeError {
    /// The request carried no bearer token to exchange.
    #[error("the call carries no caller token to exchange")]
    NoSubjectToken,
    /// The provider refused, with its OAuth error code.
    #[error("the identity provider refused the token exchange ({0})")]
    Refused(String),
    /// The provider could not be reached or failed.
    #[error("the identity provider could not be reached for the token exchange")]
    Unreachable,
    /// The provider's answer held no usable bearer token.
    #[error("the identity provider's token exchange answer holds no bearer token")]
    BadAnswer,
}

/// Obtains the tokens one backend is called with.
pub struct TokenExchanger {
    http: reqwest::Client,
    token_url: url::Url,
    client_id: String,
    client_secret: String,
    audience: Option<String>,
    scope: Option<String>,
    subject_token_type: String,
    by_caller: BoundedCache<Arc<str>, Arc<str>>,
    own: Mutex<Option<(Arc<str>, Instant)>>,
}

impl TokenExchanger {
    /// From a backend's `tokenExchange`; `env` reads environment variables.
    pub fn from_config(
        config: &TokenExchange,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ExchangeSetupError> {
        let token_url = url::Url::parse(&config.token_url).map_err(|_| ExchangeSetupError::Url)?;
        let client_id = config
            .client_id
            .clone()
            .ok_or(ExchangeSetupError::NoClient)?;
        let client_secret = match (&config.client_secret, &config.client_secret_env) {
            (Some(secret), _) => secret.clone(),
            (None, Some(var)) => env(var)
                .filter(|secret| !secret.is_empty())
                .ok_or_else(|| ExchangeSetupError::SecretMissing(var.clone()))?,
            (None, None) => return Err(ExchangeSetupError::NoClient),
        };
        // The endpoint is the operator's own setting, not something a
        // document named: it may be in-cluster.
        let http = Issuer::http_client(true, Vec::new())
            .map_err(|err| ExchangeSetupError::Http(err.to_string()))?;
        Ok(Self {
            http,
            token_url,
            client_id,
            client_secret,
            audience: config.audience.clone(),
            scope: (!config.scopes.is_empty()).then(|| config.scopes.join(" ")),
            subject_token_type: config
                .subject_token_type
                .clone()
                .unwrap_or_else(|| ACCESS_TOKEN_TYPE.to_owned()),
            by_caller: BoundedCache::new(MAX_CACHED_CALLERS),
            own: Mutex::new(None),
        })
    }

    /// The token to call the backend with for `subject`, whose request
    /// carried `subject_token`.
    pub async fn for_caller(
        &self,
        subject: &Arc<str>,
        subject_token: &str,
    ) -> Result<Arc<str>, ExchangeError> {
        if let Some(token) = self.by_caller.get(subject) {
            return Ok(token);
        }
        let mut form = vec![
            ("grant_type", TOKEN_EXCHANGE_GRANT),
            ("subject_token", subject_token),
            ("subject_token_type", self.subject_token_type.as_str()),
            ("requested_token_type", ACCESS_TOKEN_TYPE),
        ];
        self.add_target(&mut form);
        let (token, until) = self.request(&form).await?;
        self.by_caller
            .put(Arc::clone(subject), Arc::clone(&token), until);
        Ok(token)
    }

    /// The token of the gateway's own requests to the backend.
    pub async fn for_gateway(&self) -> Result<Arc<str>, ExchangeError> {
        let mut own = self.own.lock().await;
        if let Some((token, until)) = &*own
            && *until > Instant::now()
        {
            return Ok(Arc::clone(token));
        }
        let mut form = vec![("grant_type", "client_credentials")];
        self.add_target(&mut form);
        let (token, until) = self.request(&form).await?;
        *own = Some((Arc::clone(&token), until));
        Ok(token)
    }

    fn add_target<'a>(&'a self, form: &mut Vec<(&'static str, &'a str)>) {
        if let Some(audience) = &self.audience {
            form.push(("audience", audience));
        }
        if let Some(scope) = &self.scope {
            form.push(("scope", scope));
        }
    }

    async fn request(&self, form: &[(&str, &str)]) -> Result<(Arc<str>, Instant), ExchangeError> {
        let asked = Instant::now();
        let request = self
            .http
            .post(self.token_url.clone())
            .basic_auth(&self.client_id, Some(&self.client_secret))
            .form(form);
        let response = send_json_request(request).await.map_err(unreachable)?;
        let status = response.status();
        let answer = read_json_body(response).await;
        if !status.is_success() {
            return Err(match answer {
                Ok(body) if status.is_client_error() => ExchangeError::Refused(error_code(&body)),
                _ => ExchangeError::Unreachable,
            });
        }
        let answer = answer.map_err(|_| ExchangeError::BadAnswer)?;
        issued_token(&answer, asked)
    }
}

fn unreachable(err: IssuerError) -> ExchangeError {
    tracing::debug!("token endpoint request failed: {err}");
    ExchangeError::Unreachable
}

/// The token of a successful answer, and until when to use it.
fn issued_token(answer: &Value, asked: Instant) -> Result<(Arc<str>, Instant), ExchangeError> {
    let token = answer
        .get("access_token")
        .and_then(Value::as_str)
        .filter(|token| !token.is_empty() && token.bytes().all(|b| b.is_ascii_graphic()))
        .ok_or(ExchangeError::BadAnswer)?;
    let bearer = answer
        .get("token_type")
        .and_then(Value::as_str)
        .is_none_or(|kind| kind.eq_ignore_ascii_case("bearer"));
    if !bearer {
        return Err(ExchangeError::BadAnswer);
    }
    let lifetime = answer
        .get("expires_in")
        .and_then(Value::as_u64)
        .map_or(DEFAULT_LIFETIME, Duration::from_secs);
    let margin = REFRESH_MARGIN.min(lifetime / 4);
    Ok((Arc::from(token), asked + (lifetime - margin)))
}

/// The OAuth `error` code of a refusal, if it is one (only `[a-z_]`, at most
/// 64 characters: never free text from the provider).
fn error_code(body: &Value) -> String {
    body.get("error")
        .and_then(Value::as_str)
        .filter(|code| {
            !code.is_empty()
                && code.len() <= 64
                && code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
        })
        .unwrap_or("no error code")
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_answer_is_used_until_shortly_before_it_expires() {
        let asked = Instant::now();
        let (token, until) = issued_token(
            &json!({"access_token": "abc", "token_type": "Bearer", "expires_in": 300}),
            asked,
        )
        .expect("usable");
        assert_eq!(&*token, "abc");
        assert_eq!(until, asked + Duration::from_secs(270));
        let (_, until) =
            issued_token(&json!({"access_token": "abc", "expires_in": 8}), asked).expect("usable");
        assert_eq!(
            until,
            asked + Duration::from_secs(6),
            "a quarter of a short life"
        );
        let (_, until) = issued_token(&json!({"access_token": "abc"}), asked).expect("usable");
        assert_eq!(until, asked + Duration::from_secs(45));
    }

    #[test]
    fn answers_without_a_bearer_token_are_refused() {
        let asked = Instant::now();
        for bad in [
            json!({}),
            json!({"access_token": ""}),
            json!({"access_token": 7}),
            json!({"access_token": "a b"}),
            json!({"access_token": "abc", "token_type": "N_A"}),
        ] {
            assert_eq!(
                issued_token(&bad, asked).map(|_| ()),
                Err(ExchangeError::BadAnswer),
                "{bad}"
            );
        }
    }

    #[test]
    fn only_a_plain_oauth_error_code_is_repeated() {
        assert_eq!(
            error_code(&json!({"error": "invalid_target"})),
            "invalid_target"
        );
        for bad in [
            json!({"error": "Token eyJhbGciOi is bad"}),
            json!({"error": "x".repeat(65)}),
            json!({"error_description": "secret"}),
            json!("text"),
        ] {
            assert_eq!(error_code(&bad), "no error code", "{bad}");
        }
    }
}
