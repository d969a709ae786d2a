//! Identity for vmcp: who is calling, and what the gateway calls backends with.
//!
//! A request's bearer token is verified against the configured OpenID
//! Connect issuer, and the caller it names becomes a [`Principal`].
//!
//! - [`authz`]: Cedar policies deciding which caller may call, get or read what.
//! - [`principal`]: the verified caller (subject, groups, scopes, claims).
//! - [`rejection`]: why a token is refused, classified by type, with the
//!   HTTP status and OAuth error code each reason gets.
//! - [`jwt`]: JWT verification against a key set (pure: no I/O).
//! - [`keys`]: the issuer's keys, as read from its JWKS.
//! - [`address_guard`]: keeps issuer requests off private addresses unless allowed.
//! - [`issuer`]: discovery, the JWKS cache (refreshed on an unknown key, rate
//!   limited) and RFC 7662 introspection — the I/O half.
//! - [`introspection`]: reading introspection answers.
//! - [`bounded_cache`]: the expiring, bounded map behind both token caches.
//! - [`verified_cache`]: recently accepted tokens (by digest) and their callers.
//! - [`challenge`]: `WWW-Authenticate` and the RFC 9728 protected resource metadata.
//! - [`authenticator`]: the whole check for one `Authorization` header.
//! - [`token_exchange`]: outgoing tokens for a backend (RFC 8693 exchange of
//!   the caller's token; the gateway's own by client credentials).

pub mod address_guard;
pub mod authenticator;
pub mod authz;
pub mod bounded_cache;
pub mod challenge;
pub mod introspection;
pub mod issuer;
pub mod jwt;
pub mod keys;
pub mod principal;
pub mod rejection;
pub mod token_exchange;
pub mod verified_cache;

pub use authenticator::{Authenticator, SetupError};
pub use principal::Principal;
pub use rejection::Rejection;
