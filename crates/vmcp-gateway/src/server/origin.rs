//! `Origin` validation (the MCP Streamable HTTP transport requires it
//! against DNS rebinding): a request from a browser page of an unknown
//! origin gets `403` with a JSON-RPC error, on every path.
//!
//! Allowed: requests without `Origin` (non-browser clients); origins whose
//! host is an accepted `Host` name — the loopback names and
//! `server.allowedHosts` (`*` there does not count: it would let every
//! rebound name in) — over http or https, any port; and the origins listed
//! in `server.allowedOrigins` (`*` allows every origin). An origin that
//! merely equals the request's `Host` is not trusted: that is exactly what
//! a rebinding attack produces.

use std::sync::Arc;

use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;

use super::envelope::INVALID_REQUEST;
use super::http::json_rpc_error;

/// Which `Origin` values are accepted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OriginPolicy {
    /// Hosts (lowercase) whose http/https origins are accepted on any port.
    hosts: Vec<String>,
    /// Exact origins accepted (`scheme://host[:port]`, normalised).
    origins: Vec<String>,
    /// Every origin is accepted.
    any: bool,
}

impl OriginPolicy {
    /// The policy for the accepted `Host` names and the listed origins.
    pub fn new<'a>(
        hosts: impl IntoIterator<Item = &'a str>,
        allowed_origins: impl IntoIterator<Item = &'a str>,
    ) -> Self {
        let mut policy = Self::default();
        for host in hosts {
            if host != "*" {
                policy.hosts.push(host.to_ascii_lowercase());
            }
        }
        for origin in allowed_origins {
            if origin == "*" {
                policy.any = true;
            } else if let Some(normalised) = normalise(origin) {
                policy.origins.push(normalised);
            }
        }
        policy
    }

    /// Whether a request with this `Origin` header value is accepted.
    pub fn allows(&self, origin: &str) -> bool {
        if self.any {
            return true;
        }
        let Ok(url) = url::Url::parse(origin) else {
            return false; // "null", garbage
        };
        if !matches!(url.scheme(), "http" | "https") {
            return false;
        }
        let host_allowed = url.host_str().is_some_and(|host| {
            let bare = host.trim_start_matches('[').trim_end_matches(']');
            self.hosts
                .iter()
                .any(|allowed| allowed == host || allowed == bare)
        });
        host_allowed || self.origins.contains(&url.origin().ascii_serialization())
    }
}

fn normalise(origin: &str) -> Option<String> {
    let url = url::Url::parse(origin).ok()?;
    Some(url.origin().ascii_serialization())
}

/// Middleware: `403` for a request whose `Origin` the policy does not accept.
pub async fn screen_origin(policy: Arc<OriginPolicy>, request: Request, next: Next) -> Response {
    if let Some(origin) = request.headers().get(header::ORIGIN) {
        let allowed = origin.to_str().is_ok_and(|origin| policy.allows(origin));
        if !allowed {
            tracing::warn!(
                origin = ?origin,
                "rejected a request from an unknown Origin (possible DNS rebinding or cross-site request)"
            );
            return json_rpc_error(
                StatusCode::FORBIDDEN,
                INVALID_REQUEST,
                "Origin not allowed: add it to server.allowedOrigins",
            );
        }
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_judged_by_host_list_and_allow_list() {
        let policy = OriginPolicy::new(
            ["localhost", "127.0.0.1", "::1", "vmcp.tools.svc", "*"],
            ["https://app.example.com", "http://dev.example.com:8080"],
        );
        let cases = [
            ("http://localhost", true),
            ("http://localhost:6274", true),
            ("https://LOCALHOST:1", true),
            ("http://127.0.0.1:3000", true),
            ("http://[::1]:3000", true),
            ("https://vmcp.tools.svc", true),
            ("https://app.example.com", true),
            ("https://app.example.com:443", true),
            ("http://app.example.com", false),
            ("http://dev.example.com:8080", true),
            ("http://dev.example.com", false),
            ("http://evil.example", false),
            ("http://localhost.evil.example", false),
            ("null", false),
            ("file://localhost", false),
            ("garbage", false),
        ];
        for (origin, allowed) in cases {
            assert_eq!(policy.allows(origin), allowed, "{origin}");
        }
    }

    #[test]
    fn a_star_allows_any_origin_but_a_star_host_does_not() {
        let hosts_star = OriginPolicy::new(["*"], []);
        assert!(!hosts_star.allows("http://evil.example"));
        let origins_star = OriginPolicy::new(["localhost"], ["*"]);
        assert!(origins_star.allows("http://evil.example"));
    }
}
