//! How many client connections the gateway keeps open and for how long a
//! client may take to send a request: the settings of the accept loop
//! ([`super::listener`]), the open-files limit they must fit in, and the
//! split of that limit between client connections and everything else.

use std::time::Duration;

use vmcp_config::ServerSettings;

/// Most header-read time a connection of the probe reserve gets: those
/// slots are few, so a client that holds one without sending gives it back
/// quickly.
pub const PROBE_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(2);

/// File descriptors kept free for everything that is not a client
/// connection (state file, backend connections, stdio children's pipes,
/// the listener, the runtime): at least this many...
pub const MIN_SPARE_DESCRIPTORS: u64 = 64;
/// ...and at least this share (1/4) of the open-files limit.
pub const SPARE_DESCRIPTORS_DIVISOR: u64 = 4;

/// The accept loop's settings, from `server.connections` and
/// `server.maxRequestBytes`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Client connections served fully at once.
    pub max_connections: usize,
    /// Connections beyond `max_connections` that only serve the probe paths.
    pub probe_reserve: usize,
    /// Time from accepting a connection (or from the first byte of a later
    /// request) until its request headers are complete.
    pub header_read_timeout: Duration,
    /// Time from a request's headers until its body is complete.
    pub body_read_timeout: Duration,
    /// Time a connection may stay open with no request on it.
    pub idle_timeout: Duration,
    /// Largest request body; a larger declared `Content-Length` gets 413 at once.
    pub max_request_bytes: u64,
}

impl ConnectionLimits {
    /// The limits the configuration asks for.
    pub fn from_config(server: &ServerSettings) -> Self {
        let connections = &server.connections;
        Self {
            max_connections: usize::try_from(connections.max).unwrap_or(usize::MAX),
            probe_reserve: usize::try_from(connections.probe_reserve).unwrap_or(usize::MAX),
            header_read_timeout: connections.header_read_timeout.get(),
            body_read_timeout: connections.body_read_timeout.get(),
            idle_timeout: connections.idle_timeout.get(),
            max_request_bytes: server.max_request_bytes,
        }
    }

    /// These limits with the connection counts lowered to fit `open_files`
    /// (the soft limit of open files), leaving the spare descriptors free.
    /// Returns whether anything was lowered.
    pub fn fit_to(&mut self, open_files: Option<u64>) -> bool {
        let Some(limit) = open_files else {
            return false;
        };
        let spare = MIN_SPARE_DESCRIPTORS.max(limit / SPARE_DESCRIPTORS_DIVISOR);
        let available = usize::try_from(limit.saturating_sub(spare)).unwrap_or(usize::MAX);
        let wanted = self.max_connections.saturating_add(self.probe_reserve);
        if wanted <= available {
            return false;
        }
        // Keep the reserve's proportion small: at most a quarter of what is left.
        let reserve = self.probe_reserve.min(available / 4);
        self.probe_reserve = reserve;
        self.max_connections = available.saturating_sub(reserve).max(1);
        true
    }
}

/// The open-files limit of this process before and after [`raise_open_files_limit`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpenFiles {
    /// Soft limit found at start.
    pub before: u64,
    /// Soft limit now (the hard limit when raising worked).
    pub now: u64,
    /// Hard limit.
    pub hard: u64,
}

impl OpenFiles {
    /// The soft limit now, `None` when unlimited.
    pub fn limit(&self) -> Option<u64> {
        (self.now != nix::sys::resource::RLIM_INFINITY).then_some(self.now)
    }
}

/// Raises the soft open-files limit to the hard limit (each client
/// connection, backend connection and stdio child needs descriptors; the
/// common default of 1024 is low for a gateway) and logs the outcome.
/// `None` when the limit cannot be read.
pub fn raise_open_files_limit() -> Option<OpenFiles> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok(limits) => limits,
        Err(err) => {
            tracing::warn!("cannot read the open-files limit: {err}");
            return None;
        }
    };
    let mut now = soft;
    if soft < hard {
        match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => {
                now = hard;
                tracing::info!(
                    from = soft,
                    to = hard,
                    "raised the open-files limit to the hard limit"
                );
            }
            Err(err) => tracing::warn!(
                soft,
                hard,
                "cannot raise the open-files limit to the hard limit: {err}"
            ),
        }
    } else {
        tracing::info!(limit = soft, "open-files limit (already the hard limit)");
    }
    Some(OpenFiles {
        before: soft,
        now,
        hard,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max: usize, reserve: usize) -> ConnectionLimits {
        ConnectionLimits {
            max_connections: max,
            probe_reserve: reserve,
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            max_request_bytes: 1024,
        }
    }

    #[test]
    fn connection_counts_fit_below_the_open_files_limit() {
        // (max, reserve, open-files limit) -> (max, reserve, lowered)
        let cases = [
            ((4096, 16), None, (4096, 16, false)),
            ((4096, 16), Some(1_048_576), (4096, 16, false)),
            // 1024: 256 spare, 768 for clients.
            ((4096, 16), Some(1024), (752, 16, true)),
            ((700, 16), Some(1024), (700, 16, false)),
            ((760, 16), Some(1024), (752, 16, true)),
            // Tiny limits: the spare minimum wins, the reserve shrinks.
            ((4096, 16), Some(100), (27, 9, true)),
            ((4096, 16), Some(64), (1, 0, true)),
            ((4096, 0), Some(10), (1, 0, true)),
        ];
        for ((max, reserve), open_files, (want_max, want_reserve, want_lowered)) in cases {
            let mut got = limits(max, reserve);
            let lowered = got.fit_to(open_files);
            assert_eq!(
                (got.max_connections, got.probe_reserve, lowered),
                (want_max, want_reserve, want_lowered),
                "max {max}, reserve {reserve}, open files {open_files:?}"
            );
            if let Some(limit) = open_files.filter(|l| *l > MIN_SPARE_DESCRIPTORS) {
                let used = (got.max_connections + got.probe_reserve) as u64;
                assert!(
                    used + MIN_SPARE_DESCRIPTORS <= limit,
                    "{used} leaves too few of {limit}"
                );
            }
        }
    }

    #[test]
    fn raising_the_limit_reports_a_limit_at_or_above_the_start() {
        let open_files = raise_open_files_limit().expect("the limit is readable");
        assert!(open_files.now >= open_files.before);
        assert!(open_files.now <= open_files.hard);
    }
}
