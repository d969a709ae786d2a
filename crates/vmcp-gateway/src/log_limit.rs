//! Rate limit for repeated log lines of one source (e.g. one backend): at
//! most `burst` lines per `window`; the rest are counted, and the next line
//! that goes out says how many were suppressed. Time is passed in.
//!
//! One mechanism for every "this may repeat forever" warning: a backend that
//! fails the same way on every reconnect cannot flood the log, however the
//! reconnects are paced.

use std::time::{Duration, Instant};

/// One source's log budget.
#[derive(Debug)]
pub struct LogLimiter {
    window: Duration,
    burst: u32,
    window_start: Option<Instant>,
    used: u32,
    suppressed: u64,
}

/// Lines per window of a backend's repeated warnings.
pub const BACKEND_BURST: u32 = 5;
/// The window of a backend's repeated warnings.
pub const BACKEND_WINDOW: Duration = Duration::from_secs(60);

impl LogLimiter {
    /// At most `burst` lines per `window`.
    pub fn new(burst: u32, window: Duration) -> Self {
        Self {
            window,
            burst: burst.max(1),
            window_start: None,
            used: 0,
            suppressed: 0,
        }
    }

    /// The budget used for one backend's warnings.
    pub fn per_backend() -> Self {
        Self::new(BACKEND_BURST, BACKEND_WINDOW)
    }

    /// May a line go out at `now`? `Some(n)`: yes, and `n` lines were
    /// suppressed since the last one that went out; `None`: suppress it.
    pub fn admit(&mut self, now: Instant) -> Option<u64> {
        let expired = self
            .window_start
            .is_none_or(|start| now.saturating_duration_since(start) >= self.window);
        if expired {
            self.window_start = Some(now);
            self.used = 0;
        }
        if self.used >= self.burst {
            self.suppressed = self.suppressed.saturating_add(1);
            return None;
        }
        self.used += 1;
        Some(std::mem::take(&mut self.suppressed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_then_suppresses_then_reports_the_count() {
        let t0 = Instant::now();
        let mut limiter = LogLimiter::new(2, Duration::from_secs(60));
        assert_eq!(limiter.admit(t0), Some(0));
        assert_eq!(limiter.admit(t0), Some(0));
        for i in 0..1000 {
            assert_eq!(limiter.admit(t0 + Duration::from_millis(i)), None);
        }
        let next_window = t0 + Duration::from_secs(60);
        assert_eq!(limiter.admit(next_window), Some(1000));
        assert_eq!(limiter.admit(next_window), Some(0));
        assert_eq!(limiter.admit(next_window), None);
    }

    #[test]
    fn a_quiet_source_is_never_suppressed() {
        let t0 = Instant::now();
        let mut limiter = LogLimiter::new(1, Duration::from_secs(10));
        for i in 0..20 {
            assert_eq!(limiter.admit(t0 + Duration::from_secs(10 * i)), Some(0));
        }
    }
}
