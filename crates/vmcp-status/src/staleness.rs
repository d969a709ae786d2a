//! Whether a state file still tells the truth ([`staleness`]).
//!
//! A report is stale when:
//! 1. its writer stopped cleanly (`writer.stopped`), or
//! 2. its writer ran on this host and its process is gone, or
//! 3. it was written longer ago than twice the writer's heartbeat plus
//!    [`STALE_GRACE`] (a writer on another host, a hung writer, a reused
//!    pid). Without a heartbeat (`heartbeatSeconds: 0`) age alone proves
//!    nothing and this check is skipped.
//!
//! The check is a pure function of the file, the time and a [`HostProbe`],
//! so each rule is a table test.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use vmcp_domain::status::Timestamp;

use crate::file::{WriterInfo, local_hostname};

/// Slack added to twice the heartbeat before a report counts as old.
pub const STALE_GRACE: Duration = Duration::from_secs(5);

/// What the reader knows about its own host.
pub trait HostProbe {
    /// This host's name, compared with the writer's.
    fn hostname(&self) -> &str;
    /// Whether process `pid` exists on this host.
    fn is_alive(&self, pid: u32) -> bool;
}

/// The real host: its name and `/proc`.
#[derive(Clone, Debug)]
pub struct LocalHost {
    hostname: String,
}

impl LocalHost {
    /// Reads the host name once.
    pub fn new() -> Self {
        Self {
            hostname: local_hostname(),
        }
    }
}

impl Default for LocalHost {
    fn default() -> Self {
        Self::new()
    }
}

impl HostProbe for LocalHost {
    fn hostname(&self) -> &str {
        &self.hostname
    }

    fn is_alive(&self, pid: u32) -> bool {
        let proc = Path::new("/proc");
        if !proc.join("self").exists() {
            // No procfs: liveness cannot be told; leave it to the age check.
            return true;
        }
        proc.join(pid.to_string()).exists()
    }
}

/// Why a report is stale.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StaleReason {
    /// The writer shut down cleanly after this report.
    Stopped,
    /// The writer's process no longer exists on this host.
    WriterGone {
        /// Its process id.
        pid: u32,
    },
    /// The report is older than the writer's heartbeat allows.
    Outdated {
        /// How old it is.
        age: Duration,
        /// The most it may be.
        limit: Duration,
    },
}

impl fmt::Display for StaleReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Stopped => f.write_str("the gateway stopped"),
            Self::WriterGone { pid } => {
                write!(f, "the gateway process {pid} is no longer running")
            }
            Self::Outdated { age, limit } => write!(
                f,
                "no report for {}s (expected at least every {}s)",
                age.as_secs(),
                limit.as_secs()
            ),
        }
    }
}

/// Whether the report written by `writer` is stale at `now`, and why.
pub fn staleness(writer: &WriterInfo, now: Timestamp, host: &dyn HostProbe) -> Option<StaleReason> {
    if writer.stopped {
        return Some(StaleReason::Stopped);
    }
    if writer.hostname == host.hostname() && !host.is_alive(writer.pid) {
        return Some(StaleReason::WriterGone { pid: writer.pid });
    }
    if writer.heartbeat_seconds == 0 {
        return None;
    }
    let limit = report_deadline(Duration::from_secs(writer.heartbeat_seconds));
    let age = age(writer.written_at, now);
    (age > limit).then_some(StaleReason::Outdated { age, limit })
}

/// How old a report may get before it counts as stale, for a writer with
/// `heartbeat`: twice the heartbeat plus [`STALE_GRACE`]. The same bound
/// serves `vmcp status` (state files) and the operator (the
/// `RuntimeReporting` condition of a `VirtualMCPServer`).
pub fn report_deadline(heartbeat: Duration) -> Duration {
    heartbeat.saturating_mul(2) + STALE_GRACE
}

/// Time from `then` to `now`; zero when `then` is in the future.
pub fn age(then: Timestamp, now: Timestamp) -> Duration {
    let millis = now.as_millisecond().saturating_sub(then.as_millisecond());
    Duration::from_millis(u64::try_from(millis).unwrap_or(0))
}
