//! The answer to a session `DELETE`: rmcp says `202 Accepted`, but the
//! session is closed by then and clients (the official Python SDK among
//! them) expect `200` or `204` and log anything else as a failure. We
//! answer `204 No Content`.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;

/// Middleware: a successful session `DELETE` answers `204`.
pub async fn session_delete_status(request: Request, next: Next) -> Response {
    if request.method() != Method::DELETE {
        return next.run(request).await;
    }
    let response = next.run(request).await;
    if response.status() != StatusCode::ACCEPTED {
        return response;
    }
    let (mut parts, _) = response.into_parts();
    parts.status = StatusCode::NO_CONTENT;
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.remove(header::CONTENT_TYPE);
    Response::from_parts(parts, Body::empty())
}
