//! What the handler learns about a request while it serves it, for the
//! request's audit event: the backend it chose, and why it failed when the
//! failure has a type the client's JSON-RPC error no longer carries (a
//! policy denial, a forwarding failure). The note rides in the request
//! context's extensions, so the hooks need no new parameters.

use std::sync::{Arc, OnceLock};

use rmcp::model::{Extensions, ServerResult};

use crate::audit::event::Reason;
use crate::forward::ForwardError;

/// The handler's findings about one request (each set at most once).
#[derive(Debug, Default)]
pub struct RequestNote {
    backend: OnceLock<Arc<str>>,
    failure: OnceLock<Reason>,
}

impl RequestNote {
    /// The backend that served (or would have served) the request.
    pub fn backend(&self) -> Option<&Arc<str>> {
        self.backend.get()
    }

    /// Why the request failed, when the handler said.
    pub fn failure(&self) -> Option<Reason> {
        self.failure.get().copied()
    }

    /// Records that a policy denied the request to `backend`.
    pub fn denied(&self, backend: &str) {
        self.set_backend(backend);
        self.set_failure(Reason::Policy);
    }

    fn set_backend(&self, backend: &str) {
        let _ = self.backend.set(Arc::from(backend));
    }

    fn set_failure(&self, reason: Reason) {
        let _ = self.failure.set(reason);
    }
}

/// The note of the request whose context holds `extensions`, if it is audited.
pub fn of(extensions: &Extensions) -> Option<&Arc<RequestNote>> {
    extensions.get::<Arc<RequestNote>>()
}

/// Records that a policy denied the request to `backend`.
pub fn denied(extensions: &Extensions, backend: &str) {
    if let Some(note) = of(extensions) {
        note.denied(backend);
    }
}

/// Records that the request went to `backend`, and how forwarding ended.
pub fn forwarded(
    extensions: &Extensions,
    backend: &str,
    result: &Result<ServerResult, ForwardError>,
) {
    let Some(note) = of(extensions) else { return };
    note.set_backend(backend);
    if let Err(err) = result {
        note.set_failure(forward_reason(err));
    }
}

/// The audit reason of a forwarding failure, by its type.
pub fn forward_reason(err: &ForwardError) -> Reason {
    match err {
        ForwardError::Unavailable { .. } => Reason::Unavailable,
        ForwardError::Timeout { .. } => Reason::Timeout,
        ForwardError::ConnectionLost { .. } => Reason::ConnectionLost,
        ForwardError::CircuitOpen { .. } => Reason::CircuitOpen,
        ForwardError::Cancelled => Reason::Cancelled,
        ForwardError::Unexpected { .. } => Reason::UnexpectedResponse,
        ForwardError::ShuttingDown { .. } => Reason::ShuttingDown,
        ForwardError::Credentials { .. } => Reason::Credentials,
        ForwardError::Backend(_) => Reason::BackendError,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn findings_are_kept_once_and_only_for_audited_requests() {
        let mut extensions = Extensions::default();
        // Not audited: nothing to record into, nothing fails.
        denied(&extensions, "a");
        assert!(of(&extensions).is_none());

        extensions.insert(Arc::new(RequestNote::default()));
        let timeout: Result<ServerResult, ForwardError> = Err(ForwardError::Timeout {
            backend: "b".into(),
            timeout: Duration::from_secs(1),
        });
        forwarded(&extensions, "b", &timeout);
        // A later finding does not overwrite the first.
        denied(&extensions, "c");
        let note = of(&extensions).expect("note");
        assert_eq!(note.backend().map(|b| &**b), Some("b"));
        assert_eq!(note.failure(), Some(Reason::Timeout));
    }

    #[test]
    fn forwarding_failures_map_to_reasons_by_type() {
        let backend = || "b".to_string();
        let cases = [
            (
                ForwardError::Unavailable {
                    backend: backend(),
                    reason: "x".into(),
                },
                Reason::Unavailable,
            ),
            (
                ForwardError::ConnectionLost { backend: backend() },
                Reason::ConnectionLost,
            ),
            (
                ForwardError::CircuitOpen {
                    backend: backend(),
                    retry_in: Duration::from_secs(1),
                },
                Reason::CircuitOpen,
            ),
            (ForwardError::Cancelled, Reason::Cancelled),
            (
                ForwardError::Unexpected { backend: backend() },
                Reason::UnexpectedResponse,
            ),
            (
                ForwardError::ShuttingDown { backend: backend() },
                Reason::ShuttingDown,
            ),
            (
                ForwardError::Backend(rmcp::model::ErrorData::invalid_params("no", None)),
                Reason::BackendError,
            ),
        ];
        for (err, want) in cases {
            assert_eq!(forward_reason(&err), want, "{err}");
        }
    }
}
