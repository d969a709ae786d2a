//! Incoming (client → gateway) authentication and authorization settings,
//! with ToolHive vMCP's field names (`incomingAuth`).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Who may use the gateway's MCP endpoint.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct IncomingAuth {
    /// `anonymous` (anyone who can reach the endpoint) or `oidc` (bearer tokens).
    #[serde(rename = "type", default)]
    pub kind: IncomingAuthType,
    /// The token issuer and what a token must say, for `oidc`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oidc: Option<OidcConfig>,
    /// Per-operation authorization (Cedar policies).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authz: Option<AuthzConfig>,
}

/// The incoming authentication strategies.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum IncomingAuthType {
    /// No authentication: every client that reaches the endpoint is served.
    #[default]
    Anonymous,
    /// OAuth 2.0 bearer tokens from an OpenID Connect issuer.
    Oidc,
}

impl IncomingAuthType {
    /// The name used in configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Anonymous => "anonymous",
            Self::Oidc => "oidc",
        }
    }
}

/// An OpenID Connect issuer whose tokens the gateway accepts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct OidcConfig {
    /// The issuer URL; tokens must carry it as `iss`, and its discovery
    /// document (`/.well-known/openid-configuration`) names the keys.
    pub issuer: String,
    /// This gateway's OAuth client ID (used for token introspection).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// Name of the environment variable holding the client secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret_env: Option<String>,
    /// The audience a token must name in `aud`.
    pub audience: String,
    /// This endpoint's resource indicator (RFC 8707), shown in the protected
    /// resource metadata; also accepted as `aud`. Defaults to `audience`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource: Option<String>,
    /// Scopes every token must carry (and advertised to clients).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
    /// Fetch keys from this JWKS URL instead of the discovery document's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_url: Option<String>,
    /// RFC 7662 introspection endpoint for opaque (non-JWT) tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub introspection_url: Option<String>,
    /// Allow the authorization server named in the protected resource
    /// metadata to be on a private or loopback address.
    #[serde(default)]
    pub protected_resource_allow_private_ip: bool,
    /// Allow discovery, JWKS and introspection requests to private or
    /// loopback addresses (an in-cluster or local issuer).
    #[serde(default)]
    pub jwks_allow_private_ip: bool,
    /// Allow `http://` issuer, JWKS and introspection URLs (development only).
    #[serde(default)]
    pub insecure_allow_http: bool,
    /// Absolute path of a PEM bundle of extra CA certificates trusted for
    /// the issuer's HTTPS endpoints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_bundle_path: Option<String>,
}

impl OidcConfig {
    /// The resource indicator: `resource`, or `audience` when unset.
    pub fn resource_indicator(&self) -> &str {
        self.resource.as_deref().unwrap_or(&self.audience)
    }
}

/// Authorization of MCP operations.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AuthzConfig {
    /// `cedar` (policies decide) or `none` (every authenticated caller may do everything).
    #[serde(rename = "type")]
    pub kind: AuthzType,
    /// Cedar policy texts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policies: Vec<String>,
    /// Absolute path of a file of Cedar policies, read at start and again
    /// whenever it changes (added to `policies`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policies_file: Option<String>,
}

/// The authorization engines.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AuthzType {
    /// Cedar policies.
    Cedar,
    /// No authorization beyond authentication.
    None,
}
