//! The HTTP client shared by every HTTP backend (pooled connections matter
//! for latency).
//!
//! Certificates of `https` backends are checked against the system's CA
//! certificates. A machine (or a minimal image) without any is not a reason
//! to refuse to start: plain-`http` backends, the usual case inside a
//! cluster, need none. The gateway then logs once why, and `https` backends
//! fail their TLS handshake (reported as unavailable) until certificates are
//! installed.

use std::error::Error;
use std::time::Duration;

/// How long an idle pooled connection to a backend is kept.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// The shared client: system CA certificates, or (without any) none.
pub fn backend_http_client() -> reqwest::Client {
    let builder = || {
        reqwest::Client::builder()
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .tcp_nodelay(true)
    };
    let err = match builder().build() {
        Ok(client) => return client,
        Err(err) => err,
    };
    tracing::error!(
        "cannot load the system's CA certificates ({}); https backends will fail certificate \
         verification until they are installed (e.g. the ca-certificates package)",
        innermost(&err)
    );
    // With an empty root store the builder no longer depends on the machine.
    builder().tls_certs_only([]).build().unwrap_or_default()
}

/// The most specific message in an error's `source()` chain.
fn innermost(err: &(dyn Error + 'static)) -> String {
    let mut current = err;
    while let Some(next) = current.source() {
        current = next;
    }
    current.to_string()
}
