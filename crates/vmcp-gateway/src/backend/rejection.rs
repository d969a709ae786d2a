//! Is an error a backend refusing our credentials (HTTP 401/403)?
//!
//! Decided by type, never by searching error text (a dead backend on port
//! 4031 is not an authentication problem): the error's `source()` chain is
//! walked and each link downcast to the types that carry an HTTP status —
//! rmcp's `AuthRequiredError` / `InsufficientScopeError` (a 401/403 with a
//! `WWW-Authenticate` challenge), rmcp's `HttpStatusError`, reqwest's error,
//! and our legacy SSE client's `SseClientError`.
//!
//! One case has no type: rmcp reports a 401/403 *without* a challenge as the
//! variant `StreamableHttpError::UnexpectedServerResponse`, whose only
//! payload is the message `"HTTP {status}: {body}"` it builds itself. For
//! that variant alone the leading status is read back; the body and any
//! address are never looked at. The real-server tests in
//! `tests/auth_rejection.rs` pin this, so an rmcp upgrade that changes it
//! fails there.

use std::error::Error;

use rmcp::service::{ClientInitializeError, ServiceError};
use rmcp::transport::DynamicTransportError;
use rmcp::transport::streamable_http_client::{
    AuthRequiredError, HttpStatusError, InsufficientScopeError, StreamableHttpError,
};

/// Whether `status` says "not without (other) credentials".
pub fn is_auth_status(status: u16) -> bool {
    matches!(status, 401 | 403)
}

/// Whether the initialization failed because the backend refused us.
pub fn initialize_rejected(err: &ClientInitializeError) -> bool {
    if err.is_authorization_required() || err.auth_challenge().is_some() {
        return true;
    }
    match err {
        ClientInitializeError::TransportError { error, .. } => transport_rejected(error),
        ClientInitializeError::LegacyFallbackFailed { discover, fallback } => {
            initialize_rejected(discover) || initialize_rejected(fallback)
        }
        _ => false,
    }
}

/// Whether a request on an open connection failed because the backend refused us.
pub fn request_rejected(err: &ServiceError) -> bool {
    match err {
        ServiceError::TransportSend(error) => transport_rejected(error),
        _ => false,
    }
}

fn transport_rejected(err: &DynamicTransportError) -> bool {
    chain_rejected(err)
}

/// Walks `err` and its sources.
pub fn chain_rejected(err: &(dyn Error + 'static)) -> bool {
    let mut current = Some(err);
    while let Some(link) = current {
        if link_rejected(link) {
            return true;
        }
        current = link.source();
    }
    false
}

fn link_rejected(link: &(dyn Error + 'static)) -> bool {
    if link.is::<AuthRequiredError>() || link.is::<InsufficientScopeError>() {
        return true;
    }
    if let Some(status) = link.downcast_ref::<HttpStatusError>() {
        return is_auth_status(status.status);
    }
    if let Some(err) = link.downcast_ref::<reqwest::Error>() {
        return err.status().is_some_and(|s| is_auth_status(s.as_u16()));
    }
    if let Some(err) = link.downcast_ref::<mcp_legacy_sse::SseClientError>() {
        return err
            .http_status()
            .is_some_and(|s| is_auth_status(s.as_u16()));
    }
    if let Some(err) = link.downcast_ref::<StreamableHttpError<reqwest::Error>>() {
        return match err {
            StreamableHttpError::AuthRequired(_) | StreamableHttpError::InsufficientScope(_) => {
                true
            }
            StreamableHttpError::Client(err) => {
                err.status().is_some_and(|s| is_auth_status(s.as_u16()))
            }
            StreamableHttpError::UnexpectedServerResponse(message) => {
                unexpected_response_status(message).is_some_and(is_auth_status)
            }
            StreamableHttpError::HttpStatus(status) => is_auth_status(status.status),
            _ => false,
        };
    }
    false
}

/// The status rmcp put at the front of an `UnexpectedServerResponse`
/// (`"HTTP 401 Unauthorized: …"`: the status code's `Display`), if it did.
fn unexpected_response_status(message: &str) -> Option<u16> {
    let rest = message.strip_prefix("HTTP ")?;
    let code = rest.get(..3)?;
    if !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if !matches!(rest.as_bytes().get(3), Some(b' ' | b':')) {
        return None;
    }
    code.parse().ok()
}

#[cfg(test)]
mod tests {
    use std::any::TypeId;
    use std::borrow::Cow;

    use super::*;

    type HttpError = StreamableHttpError<reqwest::Error>;

    #[derive(Debug, thiserror::Error)]
    #[error("wrapper")]
    struct Wrapper(#[source] Box<dyn Error + Send + Sync>);

    fn init_error(error: impl Error + Send + Sync + 'static) -> ClientInitializeError {
        ClientInitializeError::TransportError {
            error: DynamicTransportError::from_parts(
                "test transport",
                TypeId::of::<()>(),
                Box::new(error),
            ),
            context: "initialize".into(),
        }
    }

    fn unexpected(message: &'static str) -> HttpError {
        HttpError::UnexpectedServerResponse(Cow::Borrowed(message))
    }

    fn sse_status(status: u16) -> mcp_legacy_sse::SseClientError {
        mcp_legacy_sse::SseClientError::ConnectStatus {
            url: "http://127.0.0.1:4031/sse".into(),
            status: http::StatusCode::from_u16(status).expect("valid status"),
            body: "401 403 Unauthorized Forbidden".into(),
        }
    }

    #[test]
    fn classification_table() {
        let cases: Vec<(&str, ClientInitializeError, bool)> = vec![
            (
                "401 with a challenge",
                init_error(HttpError::AuthRequired(AuthRequiredError::new(
                    "Bearer realm=\"mcp\"".into(),
                ))),
                true,
            ),
            (
                "403 with a challenge",
                init_error(HttpError::InsufficientScope(InsufficientScopeError::new(
                    "Bearer error=\"insufficient_scope\"".into(),
                    None,
                ))),
                true,
            ),
            (
                "plain 401 as rmcp formats it",
                init_error(unexpected("HTTP 401 Unauthorized: go away")),
                true,
            ),
            (
                "plain 403 as rmcp formats it",
                init_error(unexpected("HTTP 403 Forbidden: <html>no</html>")),
                true,
            ),
            (
                "a 404 whose body says 401",
                init_error(unexpected("HTTP 404 Not Found: error 401 Unauthorized")),
                false,
            ),
            (
                "a response message that is not a status",
                init_error(unexpected("HTTP 4031 on port 4031: Unauthorized")),
                false,
            ),
            (
                "a 500 as status metadata",
                init_error(HttpError::HttpStatus(HttpStatusError::new(500, None))),
                false,
            ),
            (
                "a 403 as status metadata",
                init_error(HttpError::HttpStatus(HttpStatusError::new(403, None))),
                true,
            ),
            (
                "wrapped challenge",
                init_error(Wrapper(Box::new(HttpError::AuthRequired(
                    AuthRequiredError::new("Bearer".into()),
                )))),
                true,
            ),
            ("legacy SSE answered 401", init_error(sse_status(401)), true),
            (
                "legacy SSE answered 403",
                init_error(Wrapper(Box::new(sse_status(403)))),
                true,
            ),
            (
                "legacy SSE answered 502 with 401 in the body",
                init_error(sse_status(502)),
                false,
            ),
            (
                "an I/O error naming port 4031 and 'Unauthorized'",
                init_error(std::io::Error::other(
                    "connection refused: 127.0.0.1:4031 Unauthorized 403",
                )),
                false,
            ),
            (
                "connection closed during initialize",
                ClientInitializeError::ConnectionClosed("401 Unauthorized".into()),
                false,
            ),
        ];
        for (name, err, want) in cases {
            assert_eq!(initialize_rejected(&err), want, "{name}");
        }
    }

    #[test]
    fn requests_on_an_open_connection_are_classified_too() {
        let rejected = ServiceError::TransportSend(DynamicTransportError::from_parts(
            "t",
            TypeId::of::<()>(),
            Box::new(unexpected("HTTP 401 Unauthorized: no")),
        ));
        assert!(request_rejected(&rejected));
        let refused = ServiceError::TransportSend(DynamicTransportError::from_parts(
            "t",
            TypeId::of::<()>(),
            Box::new(std::io::Error::other("port 4031")),
        ));
        assert!(!request_rejected(&refused));
        assert!(!request_rejected(&ServiceError::UnexpectedResponse));
    }
}
