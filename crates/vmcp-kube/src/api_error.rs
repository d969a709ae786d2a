//! How an API error affects the runtime: retry soon, or wait for the next
//! status or heartbeat.

use vmcp_status::ReportError;

/// What an API failure means for a write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// The object (or its namespace) does not exist; it may come back.
    NotFound,
    /// RBAC refuses the request: the Role is missing or too narrow.
    Forbidden,
    /// The token is not accepted.
    Unauthorized,
    /// The request was invalid (a schema mismatch, a CRD too old).
    Invalid,
    /// A conflict, throttling, a server error or no connection: passes.
    Transient,
}

impl Failure {
    /// Classifies an error of the Kubernetes client.
    pub fn of(error: &kube::Error) -> Self {
        match error {
            kube::Error::Api(status) => Self::of_code(status.code),
            _ => Self::Transient,
        }
    }

    /// Classifies an HTTP status code of the API server.
    pub fn of_code(code: u16) -> Self {
        match code {
            404 | 410 => Self::NotFound,
            403 => Self::Forbidden,
            401 => Self::Unauthorized,
            400 | 415 | 422 => Self::Invalid,
            _ => Self::Transient,
        }
    }

    /// A hint for the operator reading the log.
    pub fn hint(self) -> &'static str {
        match self {
            Self::NotFound => "the object does not exist (deleted, or not created yet)",
            Self::Forbidden => "forbidden by RBAC: check the runtime's Role (deploy/rbac)",
            Self::Unauthorized => "the service account token was not accepted",
            Self::Invalid => {
                "the API server rejected the request: is the CRD up to date (deploy/crds)?"
            }
            Self::Transient => "the API server is unreachable or busy",
        }
    }

    /// Whether retrying the same request soon may succeed.
    pub fn is_transient(self) -> bool {
        matches!(self, Self::Transient)
    }
}

/// Wraps a client error for the reporter set: transient failures are retried
/// with backoff, the rest wait for the next status or heartbeat (so a deleted
/// object or a missing Role never turns into a tight retry loop).
pub fn report_error(action: &str, error: kube::Error) -> ReportError {
    let failure = Failure::of(&error);
    let context = format!("{action}: {}", failure.hint());
    if failure.is_transient() {
        ReportError::transient(context, error)
    } else {
        ReportError::permanent(context, error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_map_to_failures() {
        let table = [
            (404, Failure::NotFound),
            (403, Failure::Forbidden),
            (401, Failure::Unauthorized),
            (422, Failure::Invalid),
            (409, Failure::Transient),
            (429, Failure::Transient),
            (500, Failure::Transient),
            (503, Failure::Transient),
        ];
        for (code, want) in table {
            assert_eq!(Failure::of_code(code), want, "HTTP {code}");
        }
    }
}
