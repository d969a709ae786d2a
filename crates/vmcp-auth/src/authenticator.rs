//! The whole check of one request's `Authorization` header against the
//! configured issuer: JWTs by signature and claims, opaque tokens by
//! introspection (when configured), then the required scopes. Accepted
//! tokens are remembered for a while ([`VerifiedTokens`]), so a session's
//! requests cost one hash and one lookup, not a signature check each.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use vmcp_config::OidcConfig;

use crate::introspection;
use crate::issuer::{Issuer, IssuerError};
use crate::jwt::{self, Expectations};
use crate::principal::Principal;
use crate::rejection::Rejection;
use crate::verified_cache::VerifiedTokens;

/// Seconds between two warnings about an unreachable identity provider.
const WARN_EVERY_SECONDS: u64 = 10;

/// Why authentication cannot be set up from the configuration.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// `clientSecretEnv` names an unset or empty variable.
    #[error("incomingAuth.oidc.clientSecretEnv: environment variable {0} is not set")]
    SecretMissing(String),
    /// `caBundlePath` cannot be read or holds no certificate.
    #[error("incomingAuth.oidc.caBundlePath: {0}")]
    CaBundle(String),
    /// A URL of the configuration does not parse (validation catches this first).
    #[error("incomingAuth.oidc.{0}: not a valid URL")]
    Url(&'static str),
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client for the identity provider: {0}")]
    Http(String),
}

/// Checks bearer tokens for one issuer.
pub struct Authenticator {
    issuer: Issuer,
    expect: Expectations,
    required_scopes: Vec<String>,
    resource: String,
    /// Client credentials for introspection, when configured.
    introspection: Option<(String, String)>,
    verified: VerifiedTokens,
    last_warning: AtomicU64,
}

impl Authenticator {
    /// From `incomingAuth.oidc`; `env` reads environment variables.
    pub fn from_config(
        oidc: &OidcConfig,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, SetupError> {
        let parse = |field: &'static str, text: &Option<String>| {
            text.as_deref()
                .map(|text| url::Url::parse(text).map_err(|_| SetupError::Url(field)))
                .transpose()
        };
        let jwks = parse("jwksUrl", &oidc.jwks_url)?;
        let introspection_url = parse("introspectionUrl", &oidc.introspection_url)?;
        let introspection = match (
            &oidc.introspection_url,
            &oidc.client_id,
            &oidc.client_secret_env,
        ) {
            (Some(_), Some(id), Some(var)) => {
                let secret = env(var)
                    .filter(|secret| !secret.is_empty())
                    .ok_or_else(|| SetupError::SecretMissing(var.clone()))?;
                Some((id.clone(), secret))
            }
            _ => None,
        };
        let roots = match &oidc.ca_bundle_path {
            None => Vec::new(),
            Some(path) => {
                let pem = std::fs::read(path)
                    .map_err(|err| SetupError::CaBundle(format!("cannot read {path}: {err}")))?;
                let roots = reqwest::Certificate::from_pem_bundle(&pem)
                    .map_err(|_| SetupError::CaBundle(format!("{path} is not a PEM bundle")))?;
                if roots.is_empty() {
                    return Err(SetupError::CaBundle(format!("{path} holds no certificate")));
                }
                roots
            }
        };
        let http = Issuer::http_client(oidc.jwks_allow_private_ip, roots)
            .map_err(|err| SetupError::Http(err.to_string()))?;
        let issuer = Issuer::new(
            &oidc.issuer,
            jwks,
            introspection_url,
            http,
            oidc.jwks_allow_private_ip,
        );
        let mut audiences = vec![oidc.audience.clone()];
        if let Some(resource) = &oidc.resource
            && *resource != oidc.audience
        {
            audiences.push(resource.clone());
        }
        Ok(Self {
            issuer,
            expect: Expectations {
                issuer: oidc.issuer.clone(),
                audiences,
            },
            required_scopes: oidc.scopes.clone(),
            resource: oidc.resource_indicator().to_owned(),
            introspection,
            verified: VerifiedTokens::default(),
            last_warning: AtomicU64::new(0),
        })
    }

    /// The issuer clients get tokens from.
    pub fn issuer(&self) -> &str {
        self.issuer.issuer()
    }

    /// The resource indicator of this endpoint.
    pub fn resource(&self) -> &str {
        &self.resource
    }

    /// The scopes a token must carry.
    pub fn required_scopes(&self) -> &[String] {
        &self.required_scopes
    }

    /// The caller of a request with this `Authorization` header value.
    pub async fn authenticate(
        &self,
        authorization: Option<&[u8]>,
    ) -> Result<Arc<Principal>, Rejection> {
        let token = bearer_token(authorization.ok_or(Rejection::Missing)?)?;
        if token.len() > jwt::MAX_TOKEN_BYTES {
            return Err(Rejection::Malformed);
        }
        let principal = match self.verified.get(token) {
            Some(principal) => principal,
            None => {
                let principal = Arc::new(self.verify(token).await?);
                self.verified.put(token, &principal, unix_now());
                principal
            }
        };
        // Checked on every request, cached or not: the setting is the
        // gateway's, not the token's.
        if !principal.missing_scopes(&self.required_scopes).is_empty() {
            return Err(Rejection::InsufficientScope {
                required: self.required_scopes.clone(),
            });
        }
        Ok(principal)
    }

    /// The caller `token` names, checked with the issuer's keys (a JWT) or
    /// by introspection (an opaque token, when configured).
    async fn verify(&self, token: &str) -> Result<Principal, Rejection> {
        if jwt::looks_like_jwt(token) {
            let (algorithm, kid) = jwt::header(token)?;
            let keys = self
                .issuer
                .keys(kid.as_deref())
                .await
                .map_err(|err| self.unavailable(&err))?;
            return jwt::verify_parsed(token, algorithm, kid.as_deref(), &keys, &self.expect);
        }
        let Some((client_id, secret)) = &self.introspection else {
            return Err(Rejection::Malformed);
        };
        let answer = self
            .issuer
            .introspect(token, client_id, secret)
            .await
            .map_err(|err| self.unavailable(&err))?;
        introspection::judge(answer, &self.expect, unix_now())
    }

    /// Logs (at most every few seconds) why the provider failed.
    fn unavailable(&self, err: &IssuerError) -> Rejection {
        let now = unix_now();
        let last = self.last_warning.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= WARN_EVERY_SECONDS
            && self
                .last_warning
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!("cannot check bearer tokens: {err}");
        }
        Rejection::ProviderUnavailable
    }
}

/// The token of a `Bearer` credential (scheme case-insensitive, RFC 6750 §2.1).
pub fn bearer_token(header: &[u8]) -> Result<&str, Rejection> {
    let text = std::str::from_utf8(header).map_err(|_| Rejection::Malformed)?;
    let (scheme, token) = text.split_once(' ').ok_or(Rejection::Malformed)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(Rejection::Malformed);
    }
    let token = token.trim();
    let b64token = |c: char| c.is_ascii_alphanumeric() || "-._~+/=".contains(c);
    if token.is_empty() || !token.chars().all(b64token) {
        return Err(Rejection::Malformed);
    }
    Ok(token)
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_bearer_credentials_carry_a_token() {
        assert_eq!(bearer_token(b"Bearer abc.def-_~+/="), Ok("abc.def-_~+/="));
        assert_eq!(bearer_token(b"bearer  tok"), Ok("tok"));
        for bad in [
            &b"Basic dXNlcjpwdw=="[..],
            b"Bearer",
            b"Bearer ",
            b"Bearer a b",
            b"\xff",
        ] {
            assert_eq!(bearer_token(bad), Err(Rejection::Malformed), "{bad:?}");
        }
    }
}
