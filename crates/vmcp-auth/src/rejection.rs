//! Why a request's credentials are refused. Each reason maps to an HTTP
//! status and an OAuth error code (RFC 6750 §3.1); descriptions are safe to
//! show the client: they never contain the token or the issuer's answers.

/// A refused credential.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// No `Authorization: Bearer` header.
    #[error("authentication required: send an OAuth bearer token")]
    Missing,
    /// The header is not `Bearer <token>`, or the token is not a JWT (and
    /// no introspection endpoint is configured for opaque tokens).
    #[error("the bearer token is malformed")]
    Malformed,
    /// The token's algorithm is not on the allow-list (`none`, HMAC, …).
    #[error("the token's signing algorithm is not accepted")]
    Algorithm,
    /// No key of the issuer matches the token's `kid`.
    #[error("the token is signed by an unknown key")]
    UnknownKey,
    /// The signature does not verify.
    #[error("the token's signature is invalid")]
    Signature,
    /// `exp` has passed.
    #[error("the token has expired")]
    Expired,
    /// `nbf` is still ahead.
    #[error("the token is not valid yet")]
    NotYetValid,
    /// `iss` is not the configured issuer.
    #[error("the token was issued by another issuer")]
    Issuer,
    /// `aud` names neither the configured audience nor the resource.
    #[error("the token is not meant for this server (audience)")]
    Audience,
    /// A required claim (`exp`, `sub`, `iss`, `aud`) is missing or not of its type.
    #[error("the token lacks a required claim")]
    MissingClaim,
    /// The introspection endpoint says the token is not active.
    #[error("the token is not active")]
    Inactive,
    /// The token lacks scopes the server requires.
    #[error("the token lacks required scopes")]
    InsufficientScope {
        /// The scopes the caller needs (all required ones, for the challenge).
        required: Vec<String>,
    },
    /// The token is for another session's caller.
    #[error("this session belongs to another caller")]
    WrongCaller,
    /// The issuer (discovery, keys or introspection) could not be reached.
    #[error("the identity provider is unavailable; try again later")]
    ProviderUnavailable,
}

impl Rejection {
    /// The HTTP status of a response refusing the request.
    pub fn status(&self) -> u16 {
        match self {
            Self::InsufficientScope { .. } | Self::WrongCaller => 403,
            Self::ProviderUnavailable => 503,
            _ => 401,
        }
    }

    /// The OAuth error code for `WWW-Authenticate` (none when no credential was sent).
    pub fn error_code(&self) -> Option<&'static str> {
        match self {
            Self::Missing | Self::ProviderUnavailable | Self::WrongCaller => None,
            Self::InsufficientScope { .. } => Some("insufficient_scope"),
            _ => Some("invalid_token"),
        }
    }

    /// A short label for logs and metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Missing => "missing",
            Self::Malformed => "malformed",
            Self::Algorithm => "algorithm",
            Self::UnknownKey => "unknown_key",
            Self::Signature => "signature",
            Self::Expired => "expired",
            Self::NotYetValid => "not_yet_valid",
            Self::Issuer => "issuer",
            Self::Audience => "audience",
            Self::MissingClaim => "missing_claim",
            Self::Inactive => "inactive",
            Self::InsufficientScope { .. } => "insufficient_scope",
            Self::WrongCaller => "wrong_caller",
            Self::ProviderUnavailable => "provider_unavailable",
        }
    }
}
