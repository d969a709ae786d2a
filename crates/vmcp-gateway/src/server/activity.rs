//! What one client connection is doing, and when it has waited too long.
//!
//! A connection is in one of three phases:
//!
//! - **awaiting a head**: accepted (or the first byte of a next request has
//!   arrived) and the request headers are not complete yet — bounded by the
//!   header-read timeout;
//! - **busy**: a request is being served, from its complete headers until its
//!   response body has been sent — never cut here, so the MCP event stream
//!   (GET) and slow tool calls last as long as they need (the request body
//!   has its own deadline, see [`super::request_body`]);
//! - **idle**: kept alive between requests with nothing arriving — bounded by
//!   the idle timeout.
//!
//! [`Activity`] holds the phase; the socket wrapper [`WatchedIo`] notes the
//! first byte of a next request, [`BusyGuard`] marks a request from its
//! headers to the end of its response, and [`Activity::expired`] resolves
//! when the phase's deadline has passed.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::time::Instant;

/// Where a connection stands (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Waiting for request headers since the instant.
    AwaitingHead(Instant),
    /// Serving this many requests.
    Busy(usize),
    /// Nothing in flight and nothing arriving since the instant.
    Idle(Instant),
}

/// Why a connection was closed by its deadline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expiry {
    /// The request headers did not arrive in time.
    HeaderRead,
    /// The connection stayed idle too long.
    Idle,
}

/// The phase of one connection and its two deadlines.
#[derive(Debug)]
pub struct Activity {
    phase: Mutex<Phase>,
    changed: Notify,
    header_read_timeout: Duration,
    idle_timeout: Duration,
}

impl Activity {
    /// A connection accepted now: awaiting its first request's headers.
    pub fn new(header_read_timeout: Duration, idle_timeout: Duration) -> Arc<Self> {
        Arc::new(Self {
            phase: Mutex::new(Phase::AwaitingHead(Instant::now())),
            changed: Notify::new(),
            header_read_timeout,
            idle_timeout,
        })
    }

    /// The phase now.
    pub fn phase(&self) -> Phase {
        *self.lock()
    }

    /// A request's headers are complete: busy until the guard drops (at the
    /// end of its response body).
    pub fn begin_request(self: &Arc<Self>) -> BusyGuard {
        {
            let mut phase = self.lock();
            *phase = match *phase {
                Phase::Busy(n) => Phase::Busy(n + 1),
                Phase::AwaitingHead(_) | Phase::Idle(_) => Phase::Busy(1),
            };
        }
        self.changed.notify_one();
        BusyGuard {
            activity: self.clone(),
        }
    }

    /// Bytes arrived: on an idle connection, a next request has begun.
    fn bytes_arrived(&self) {
        let mut phase = self.lock();
        if let Phase::Idle(_) = *phase {
            *phase = Phase::AwaitingHead(Instant::now());
            drop(phase);
            self.changed.notify_one();
        }
    }

    fn end_request(&self) {
        {
            let mut phase = self.lock();
            *phase = match *phase {
                Phase::Busy(n) if n > 1 => Phase::Busy(n - 1),
                _ => Phase::Idle(Instant::now()),
            };
        }
        self.changed.notify_one();
    }

    /// The deadline of the phase now, and what passing it means.
    fn deadline(&self) -> Option<(Instant, Expiry)> {
        match self.phase() {
            Phase::AwaitingHead(since) => {
                Some((since + self.header_read_timeout, Expiry::HeaderRead))
            }
            Phase::Idle(since) => Some((since + self.idle_timeout, Expiry::Idle)),
            Phase::Busy(_) => None,
        }
    }

    /// Resolves once the connection has spent too long awaiting a head or idle.
    pub async fn expired(&self) -> Expiry {
        loop {
            let changed = self.changed.notified();
            match self.deadline() {
                Some((deadline, expiry)) => {
                    if Instant::now() >= deadline {
                        return expiry;
                    }
                    tokio::select! {
                        () = tokio::time::sleep_until(deadline) => {}
                        () = changed => {}
                    }
                }
                None => changed.await,
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, Phase> {
        // The phase is a plain value; a panic elsewhere cannot leave it torn.
        self.phase
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Keeps a connection busy from a request's headers until dropped.
#[derive(Debug)]
pub struct BusyGuard {
    activity: Arc<Activity>,
}

impl Drop for BusyGuard {
    fn drop(&mut self) {
        self.activity.end_request();
    }
}

/// A socket that tells its [`Activity`] when bytes arrive.
#[derive(Debug)]
pub struct WatchedIo<T> {
    io: T,
    activity: Arc<Activity>,
}

impl<T> WatchedIo<T> {
    /// Wraps `io`.
    pub fn new(io: T, activity: Arc<Activity>) -> Self {
        Self { io, activity }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for WatchedIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.bytes_arrived();
        }
        polled
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for WatchedIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: Duration = Duration::from_secs(10);
    const IDLE: Duration = Duration::from_secs(60);

    async fn expires_after(activity: &Activity) -> (Expiry, Duration) {
        let start = Instant::now();
        let expiry = activity.expired().await;
        (expiry, start.elapsed())
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_that_sends_nothing_expires_after_the_header_timeout() {
        let activity = Activity::new(HEAD, IDLE);
        assert_eq!(expires_after(&activity).await, (Expiry::HeaderRead, HEAD));
    }

    #[tokio::test(start_paused = true)]
    async fn a_busy_connection_never_expires_and_idles_after_its_response() {
        let activity = Activity::new(HEAD, IDLE);
        let guard = activity.begin_request();
        let waiting = tokio::time::timeout(Duration::from_secs(3600), activity.expired()).await;
        assert!(waiting.is_err(), "a busy connection expired: {waiting:?}");
        drop(guard);
        assert!(matches!(activity.phase(), Phase::Idle(_)));
        assert_eq!(expires_after(&activity).await, (Expiry::Idle, IDLE));
    }

    #[tokio::test(start_paused = true)]
    async fn a_byte_on_an_idle_connection_starts_the_header_timeout() {
        let activity = Activity::new(HEAD, IDLE);
        drop(activity.begin_request());
        tokio::time::sleep(Duration::from_secs(30)).await;
        activity.bytes_arrived();
        assert!(matches!(activity.phase(), Phase::AwaitingHead(_)));
        assert_eq!(expires_after(&activity).await, (Expiry::HeaderRead, HEAD));
    }

    #[tokio::test(start_paused = true)]
    async fn overlapping_requests_keep_the_connection_busy_until_the_last_ends() {
        let activity = Activity::new(HEAD, IDLE);
        let first = activity.begin_request();
        let second = activity.begin_request();
        drop(first);
        assert_eq!(activity.phase(), Phase::Busy(1));
        // Bytes during a request do not reset anything.
        activity.bytes_arrived();
        assert_eq!(activity.phase(), Phase::Busy(1));
        drop(second);
        assert!(matches!(activity.phase(), Phase::Idle(_)));
    }
}
