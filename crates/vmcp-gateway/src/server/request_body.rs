//! Request bodies with a deadline, response bodies that mark the end of a
//! request, and the answers for bodies that are too large or too slow.

use std::error::Error as StdError;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::body::Bytes;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use http_body::{Frame, SizeHint};
use tokio::time::Sleep;

use super::activity::BusyGuard;
use super::envelope::INVALID_REQUEST;
use super::http::json_rpc_error;

/// Why a request body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum RequestBodyError {
    /// The client did not send the whole body within the body-read timeout.
    #[error("request body not received within {0:?}")]
    TimedOut(Duration),
    /// The connection failed while the body was read.
    #[error("request body could not be read")]
    Read(#[source] hyper::Error),
}

/// A request body that fails with [`RequestBodyError::TimedOut`] once
/// `timeout` has passed since its request's headers arrived.
pub struct DeadlineBody {
    inner: hyper::body::Incoming,
    timeout: Duration,
    deadline: Option<Pin<Box<Sleep>>>,
}

impl DeadlineBody {
    /// Wraps a body whose headers arrived just now.
    pub fn new(inner: hyper::body::Incoming, timeout: Duration) -> Self {
        use http_body::Body as _;
        // An empty body has nothing to wait for: no timer.
        let deadline = (!inner.is_end_stream()).then(|| Box::pin(tokio::time::sleep(timeout)));
        Self {
            inner,
            timeout,
            deadline,
        }
    }
}

impl http_body::Body for DeadlineBody {
    type Data = Bytes;
    type Error = RequestBodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, RequestBodyError>>> {
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(frame) => Poll::Ready(frame.map(|f| f.map_err(RequestBodyError::Read))),
            Poll::Pending => {
                let timeout = self.timeout;
                let expired = self
                    .deadline
                    .as_mut()
                    .is_some_and(|deadline| deadline.as_mut().poll(cx).is_ready());
                if expired {
                    Poll::Ready(Some(Err(RequestBodyError::TimedOut(timeout))))
                } else {
                    Poll::Pending
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A response body that keeps its connection busy until it is sent (or dropped).
pub struct GuardedBody {
    inner: Body,
    _busy: BusyGuard,
}

impl GuardedBody {
    /// Wraps `inner`; `busy` is released with it.
    pub fn new(inner: Body, busy: BusyGuard) -> Self {
        Self { inner, _busy: busy }
    }
}

impl http_body::Body for GuardedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// 413 before reading anything when the declared `Content-Length` is above
/// `limit`; the connection is closed after the answer (the body stays unread).
pub fn reject_declared_length(headers: &header::HeaderMap, limit: u64) -> Option<Response> {
    let declared = headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()?;
    (declared > limit).then(|| {
        let message = format!("request body larger than {limit} bytes");
        closing(json_rpc_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            INVALID_REQUEST,
            &message,
        ))
    })
}

/// The answer when reading a request body failed with `err` (from
/// [`axum::body::to_bytes`] with `limit`): 408 when the client was too slow,
/// 400 when the connection failed, else 413 (the length limit).
pub fn body_read_failed(err: &axum::Error, limit: usize) -> Response {
    let mut next: Option<&(dyn StdError + 'static)> = Some(err);
    let mut cause = None;
    while let Some(current) = next {
        if let Some(found) = current.downcast_ref::<RequestBodyError>() {
            cause = Some(found);
            break;
        }
        next = current.source();
    }
    match cause {
        Some(RequestBodyError::TimedOut(timeout)) => closing(json_rpc_error(
            StatusCode::REQUEST_TIMEOUT,
            INVALID_REQUEST,
            &format!(
                "request body not received within {}s",
                timeout.as_secs_f64()
            ),
        )),
        Some(RequestBodyError::Read(_)) => closing(json_rpc_error(
            StatusCode::BAD_REQUEST,
            INVALID_REQUEST,
            "request body could not be read",
        )),
        None => json_rpc_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            INVALID_REQUEST,
            &format!("request body larger than {limit} bytes"),
        ),
    }
}

/// `response` with `Connection: close` (the rest of the request is not read).
pub fn closing(response: impl IntoResponse) -> Response {
    let mut response = response.into_response();
    response.headers_mut().insert(
        header::CONNECTION,
        header::HeaderValue::from_static("close"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_declared_length_above_the_limit_is_refused_without_reading() {
        let mut headers = header::HeaderMap::new();
        assert!(reject_declared_length(&headers, 1024).is_none());
        headers.insert(header::CONTENT_LENGTH, "1024".parse().expect("value"));
        assert!(reject_declared_length(&headers, 1024).is_none());
        headers.insert(
            header::CONTENT_LENGTH,
            "10000000000".parse().expect("value"),
        );
        let response = reject_declared_length(&headers, 1024).expect("refused");
        assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(response.headers()[header::CONNECTION], "close");
    }

    #[test]
    fn body_errors_are_classified_by_type() {
        let timed_out = axum::Error::new(axum::Error::new(RequestBodyError::TimedOut(
            Duration::from_secs(30),
        )));
        assert_eq!(
            body_read_failed(&timed_out, 10).status(),
            StatusCode::REQUEST_TIMEOUT
        );
        let too_long = axum::Error::new(std::io::Error::other("length limit exceeded"));
        assert_eq!(
            body_read_failed(&too_long, 10).status(),
            StatusCode::PAYLOAD_TOO_LARGE
        );
    }
}
