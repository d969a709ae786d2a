//! A stand-in identity provider for `--auth oidc`: an ES256 key made at
//! start, its discovery document and JWKS served on loopback, and tokens
//! signed with it. The gateway verifies them as it would a real issuer's
//! (discovery, JWKS, signature, claims) and decides each call with a Cedar
//! policy, so the run measures what authentication and authorization add.

use std::sync::Arc;

use anyhow::Context as _;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use axum::Json;
use axum::routing::get;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use tokio::task::JoinHandle;

use crate::procs::BACKEND_NAME;

/// The audience of the tokens (the gateway's `incomingAuth.oidc.audience`).
pub const AUDIENCE: &str = "vmcp-bench";
/// The group every token's caller is in, which the policy permits.
pub const GROUP: &str = "bench";
/// Lifetime of a token: longer than any run.
const LIFETIME_SECONDS: u64 = 3600;

/// The running stand-in issuer.
pub struct BenchIssuer {
    url: String,
    key: EncodingKey,
    server: JoinHandle<()>,
}

impl BenchIssuer {
    /// Makes a key and serves discovery and JWKS on 127.0.0.1.
    pub async fn start() -> anyhow::Result<Self> {
        let pkcs8 =
            EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
                .map_err(|_| anyhow::anyhow!("cannot generate an ES256 key"))?;
        let key = EncodingKey::from_ec_der(pkcs8.as_ref());
        let mut jwk = Jwk::from_encoding_key(&key, Algorithm::ES256)
            .context("cannot describe the key as a JWK")?;
        jwk.common.key_id = Some("bench".into());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("cannot listen on loopback for the stand-in issuer")?;
        let url = format!("http://{}", listener.local_addr()?);
        let discovery: Arc<Value> = Arc::new(json!({
            "issuer": url,
            "jwks_uri": format!("{url}/jwks"),
        }));
        let jwks = Arc::new(serde_json::to_value(JwkSet { keys: vec![jwk] })?);
        let app = axum::Router::new()
            .route(
                "/.well-known/openid-configuration",
                get(move || {
                    let discovery = Arc::clone(&discovery);
                    async move { Json((*discovery).clone()) }
                }),
            )
            .route(
                "/jwks",
                get(move || {
                    let jwks = Arc::clone(&jwks);
                    async move { Json((*jwks).clone()) }
                }),
            );
        let server = tokio::spawn(async move {
            if let Err(err) = axum::serve(listener, app).await {
                eprintln!("vmcp-bench: the stand-in issuer stopped: {err}");
            }
        });
        Ok(Self { url, key, server })
    }

    /// A token for caller `subject`, in [`GROUP`].
    pub fn token(&self, subject: &str) -> anyhow::Result<String> {
        let now = jsonwebtoken::get_current_timestamp();
        let claims = json!({
            "iss": self.url, "aud": AUDIENCE, "sub": subject, "iat": now,
            "exp": now + LIFETIME_SECONDS, "groups": [GROUP], "scope": "openid profile",
            "preferred_username": subject,
        });
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some("bench".into());
        jsonwebtoken::encode(&header, &claims, &self.key).context("cannot sign a token")
    }

    /// The gateway configuration that trusts this issuer and permits the
    /// group's calls to the benchmark's backend (YAML, appended to the rest).
    pub fn gateway_config(&self) -> String {
        format!(
            "incomingAuth:\n  type: oidc\n  oidc:\n    issuer: {url}\n    audience: {AUDIENCE}\n    \
             insecureAllowHttp: true\n    jwksAllowPrivateIp: true\n  authz:\n    type: cedar\n    \
             policies:\n      - 'permit(principal in THVGroup::\"{GROUP}\", action == Action::\"call_tool\", resource in MCP::\"{BACKEND_NAME}\");'\n",
            url = self.url
        )
    }
}

impl Drop for BenchIssuer {
    fn drop(&mut self) {
        self.server.abort();
    }
}
