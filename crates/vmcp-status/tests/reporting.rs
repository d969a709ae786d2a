//! The reporter set's rules (newest wins, no write when unchanged, the
//! heartbeat, retries with backoff, the final flush) against recording
//! reporters, then the file and metrics reporters.
//!
//! Timing tests run on Tokio's paused clock: the runtime jumps to the next
//! timer whenever every task waits, so elapsed times are exact and nothing
//! sleeps for real. Tests about ordering alone use channels and gates.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc};
use tokio::time::Instant;
use vmcp_domain::status::{
    BackendStatus, CircuitState, DiscoveredBackend, Phase, Status, Timestamp,
};
use vmcp_status::file::{local_hostname, read_state_file};
use vmcp_status::{
    FileReporter, Metrics, MetricsReporter, ReportError, ReportFuture, ReportReason, Reporter,
    ReporterSet, ReportingOptions, WriteOutcome,
};

// ---------------------------------------------------------------- helpers

/// A status whose content is its message (and phase).
fn status(phase: Phase, message: &str) -> Status {
    Status {
        phase,
        message: message.to_string(),
        conditions: Vec::new(),
        discovered_backends: Vec::new(),
        backend_count: 0,
        observed_generation: Some(1),
        timestamp: "2026-01-01T00:00:00Z".parse().expect("a valid timestamp"),
    }
}

fn backend(
    name: &str,
    state: BackendStatus,
    circuit: CircuitState,
    failures: u32,
) -> DiscoveredBackend {
    DiscoveredBackend {
        name: name.to_string(),
        url: format!("http://127.0.0.1:9/{name}"),
        status: state,
        auth_type: None,
        auth_config_ref: None,
        last_health_check: None,
        message: None,
        circuit_breaker_state: Some(circuit),
        circuit_last_changed: None,
        consecutive_failures: failures,
    }
}

/// One call of `apply`, recorded when it starts.
#[derive(Debug)]
struct Attempt {
    message: String,
    phase: Phase,
    reason: ReportReason,
    timestamp: Timestamp,
    at: Instant,
}

/// A reporter that records each attempt, can be held at a gate, can fail
/// its first attempts, and can hang on its first attempts.
struct Recorder {
    name: &'static str,
    attempts: mpsc::UnboundedSender<Attempt>,
    /// When set, each attempt takes one permit before finishing.
    gate: Option<Arc<Semaphore>>,
    /// Attempts left that fail with a transient error.
    fail: AtomicU32,
    /// Attempts left that never finish.
    hang: AtomicU32,
    /// When set, only attempts with this reason fail.
    fail_only: Option<ReportReason>,
}

impl Recorder {
    fn new(name: &'static str) -> (Self, mpsc::UnboundedReceiver<Attempt>) {
        let (attempts, rx) = mpsc::unbounded_channel();
        let recorder = Self {
            name,
            attempts,
            gate: None,
            fail: AtomicU32::new(0),
            hang: AtomicU32::new(0),
            fail_only: None,
        };
        (recorder, rx)
    }

    fn gated(mut self, gate: &Arc<Semaphore>) -> Self {
        self.gate = Some(Arc::clone(gate));
        self
    }

    fn failing(self, times: u32) -> Self {
        self.fail.store(times, Ordering::SeqCst);
        self
    }

    fn failing_only(mut self, reason: ReportReason, times: u32) -> Self {
        self.fail_only = Some(reason);
        self.failing(times)
    }

    fn hanging(self, times: u32) -> Self {
        self.hang.store(times, Ordering::SeqCst);
        self
    }
}

/// Takes one from `counter` if it is above zero.
fn take_one(counter: &AtomicU32) -> bool {
    counter
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
}

impl Reporter for Recorder {
    fn name(&self) -> &'static str {
        self.name
    }

    fn apply<'a>(&'a self, status: &'a Status, why: ReportReason) -> ReportFuture<'a> {
        Box::pin(async move {
            let _ = self.attempts.send(Attempt {
                message: status.message.clone(),
                phase: status.phase,
                reason: why,
                timestamp: status.timestamp,
                at: Instant::now(),
            });
            if let Some(gate) = &self.gate {
                gate.acquire()
                    .await
                    .expect("the gate is never closed")
                    .forget();
            }
            if take_one(&self.hang) {
                std::future::pending::<()>().await;
            }
            if self.fail_only.is_none_or(|only| only == why) && take_one(&self.fail) {
                return Err(ReportError::transient(
                    "test destination unavailable",
                    std::io::Error::other("connection refused"),
                ));
            }
            Ok(())
        })
    }
}

async fn next(rx: &mut mpsc::UnboundedReceiver<Attempt>) -> Attempt {
    rx.recv().await.expect("the reporter task is running")
}

fn options(heartbeat: Duration) -> ReportingOptions {
    let mut options = ReportingOptions::new(heartbeat);
    options.min_retry_delay = Duration::from_millis(100);
    options.max_retry_delay = Duration::from_secs(10);
    options
}

// ------------------------------------------------------- the set's rules

#[tokio::test]
async fn newest_wins_while_a_slow_reporter_is_busy() {
    let gate = Arc::new(Semaphore::new(0));
    let (recorder, mut attempts) = Recorder::new("slow");
    let mut opts = options(Duration::ZERO);
    opts.write_timeout = Duration::from_secs(3600);
    let set = ReporterSet::start(vec![Arc::new(recorder.gated(&gate))], opts);

    set.report(status(Phase::Pending, "0"));
    let first = next(&mut attempts).await;
    assert_eq!(first.message, "0");
    // The write of "0" is stuck at the gate while 100 newer statuses arrive.
    for n in 1..=100 {
        set.report(status(Phase::Ready, &n.to_string()));
    }
    gate.add_permits(1_000);
    let second = next(&mut attempts).await;
    assert_eq!(
        (second.message.as_str(), second.reason),
        ("100", ReportReason::Changed)
    );

    let stats = set.stats();
    set.shutdown(None).await;
    let last = next(&mut attempts).await;
    assert_eq!(
        (last.message.as_str(), last.reason),
        ("100", ReportReason::Final)
    );
    assert!(attempts.try_recv().is_err(), "no other write");
    assert_eq!(stats.writes("slow"), 3);
    assert_eq!(
        stats.count("slow", ReportReason::Changed, WriteOutcome::Ok),
        2
    );
}

#[tokio::test]
async fn a_slow_reporter_does_not_hold_up_the_others() {
    let gate = Arc::new(Semaphore::new(0));
    let (slow, mut slow_attempts) = Recorder::new("slow");
    let (fast, mut fast_attempts) = Recorder::new("fast");
    let mut opts = options(Duration::ZERO);
    opts.write_timeout = Duration::from_secs(3600);
    let set = ReporterSet::start(vec![Arc::new(slow.gated(&gate)), Arc::new(fast)], opts);

    set.report(status(Phase::Pending, "a"));
    assert_eq!(next(&mut slow_attempts).await.message, "a");
    assert_eq!(next(&mut fast_attempts).await.message, "a");
    set.report(status(Phase::Ready, "b"));
    assert_eq!(next(&mut fast_attempts).await.message, "b");

    gate.add_permits(1_000);
    assert_eq!(next(&mut slow_attempts).await.message, "b");
    set.shutdown(None).await;
}

#[tokio::test(start_paused = true)]
async fn no_write_when_unchanged_then_heartbeats() {
    let heartbeat = Duration::from_secs(30);
    let (recorder, mut attempts) = Recorder::new("rec");
    let set = ReporterSet::start(vec![Arc::new(recorder)], options(heartbeat));
    let start = Instant::now();

    // 100 reports with the same content over 9.9 s; only the timestamps move.
    for n in 0..100 {
        let mut same = status(Phase::Ready, "all 2 backends ready");
        same.timestamp = Timestamp::now();
        set.report(same);
        if n < 99 {
            tokio::time::advance(Duration::from_millis(100)).await;
        }
    }
    let first = next(&mut attempts).await;
    assert_eq!(first.reason, ReportReason::Changed);
    // The task first runs when the test first yields.
    assert!(first.at - start <= Duration::from_millis(100));
    let start = first.at;

    // The next writes are heartbeats, one interval after the previous write,
    // carrying a fresh timestamp.
    let beat = next(&mut attempts).await;
    assert_eq!(beat.reason, ReportReason::Heartbeat);
    assert_eq!(beat.at - start, heartbeat);
    assert_eq!(beat.message, "all 2 backends ready");
    assert!(beat.timestamp > first.timestamp);
    let beat = next(&mut attempts).await;
    assert_eq!(beat.reason, ReportReason::Heartbeat);
    assert_eq!(beat.at - start, 2 * heartbeat);

    // A change is written at once, and moves the next heartbeat.
    set.report(status(Phase::Degraded, "1 of 2 backends ready"));
    let change = next(&mut attempts).await;
    assert_eq!(change.reason, ReportReason::Changed);
    assert_eq!(change.at - start, 2 * heartbeat);
    tokio::time::advance(Duration::from_secs(10)).await;
    set.report(status(Phase::Degraded, "1 of 2 backends ready"));
    let beat = next(&mut attempts).await;
    assert_eq!(beat.reason, ReportReason::Heartbeat);
    assert_eq!(beat.at - start, 3 * heartbeat);

    let stats = set.stats();
    set.shutdown(None).await;
    assert_eq!(
        stats.count("rec", ReportReason::Changed, WriteOutcome::Ok),
        2
    );
    assert_eq!(
        stats.count("rec", ReportReason::Heartbeat, WriteOutcome::Ok),
        3
    );
    assert_eq!(stats.count("rec", ReportReason::Final, WriteOutcome::Ok), 1);
}

#[tokio::test(start_paused = true)]
async fn a_growing_failure_count_is_not_a_change_but_metrics_follow_it() {
    let heartbeat = Duration::from_secs(30);
    let (recorder, mut attempts) = Recorder::new("rec");
    let metrics = Metrics::new();
    let set = ReporterSet::start(
        vec![
            Arc::new(recorder),
            Arc::new(MetricsReporter::new(metrics.clone())),
        ],
        options(heartbeat),
    );
    let with_failures = |failures: u32| {
        let mut s = status(Phase::Degraded, "1 of 2 backends ready");
        s.backend_count = 2;
        s.discovered_backends = vec![
            backend(
                "dead",
                BackendStatus::Unavailable,
                CircuitState::Open,
                failures,
            ),
            backend("a", BackendStatus::Ready, CircuitState::Closed, 0),
        ];
        s
    };
    set.report(with_failures(3));
    let first = next(&mut attempts).await;
    assert_eq!(first.reason, ReportReason::Changed);
    let start = first.at;

    // A dead backend's reconnect attempts bump its counter every few seconds.
    for failures in 4..10 {
        tokio::time::advance(Duration::from_secs(4)).await;
        set.report(with_failures(failures));
    }
    tokio::task::yield_now().await;
    let gauge = "vmcp_backend_consecutive_failures{backend=\"dead\"} 9";
    assert!(
        metrics.render().lines().any(|l| l == gauge),
        "metrics should follow the counter:\n{}",
        metrics.render()
    );
    // The shared destination hears of it only with the heartbeat.
    let beat = next(&mut attempts).await;
    assert_eq!(beat.reason, ReportReason::Heartbeat);
    assert_eq!(beat.at - start, heartbeat);
    set.shutdown(None).await;
}

#[tokio::test(start_paused = true)]
async fn heartbeat_zero_means_no_heartbeat() {
    let (recorder, mut attempts) = Recorder::new("rec");
    let set = ReporterSet::start(vec![Arc::new(recorder)], options(Duration::ZERO));
    set.report(status(Phase::Ready, "ready"));
    assert_eq!(next(&mut attempts).await.reason, ReportReason::Changed);
    tokio::time::advance(Duration::from_secs(3600)).await;
    set.shutdown(None).await;
    // Straight from the change to the final write.
    assert_eq!(next(&mut attempts).await.reason, ReportReason::Final);
}

#[tokio::test(start_paused = true)]
async fn failed_writes_are_retried_with_growing_backoff() {
    let (recorder, mut attempts) = Recorder::new("flaky");
    let set = ReporterSet::start(
        vec![Arc::new(recorder.failing(3))],
        options(Duration::from_secs(3600)),
    );
    set.report(status(Phase::Ready, "ready"));
    let mut times = Vec::new();
    for _ in 0..4 {
        let attempt = next(&mut attempts).await;
        assert_eq!(
            (attempt.message.as_str(), attempt.reason),
            ("ready", ReportReason::Changed)
        );
        times.push(attempt.at);
    }
    let gaps: Vec<Duration> = times.windows(2).map(|w| w[1] - w[0]).collect();
    // Exponential from 100 ms with jitter below the base delay:
    // [100, 200), [200, 400), [400, 800).
    for (gap, base) in gaps.iter().zip([100u64, 200, 400]) {
        let base = Duration::from_millis(base);
        assert!(*gap >= base && *gap < 2 * base, "gaps {gaps:?}");
    }

    let stats = set.stats();
    set.shutdown(None).await;
    assert_eq!(
        stats.count("flaky", ReportReason::Changed, WriteOutcome::Error),
        3
    );
    assert_eq!(
        stats.count("flaky", ReportReason::Changed, WriteOutcome::Ok),
        1
    );
    assert_eq!(stats.failures("flaky"), 3);
    assert_eq!(stats.writes("flaky"), 2, "the change and the final write");
}

#[tokio::test(start_paused = true)]
async fn a_newer_status_replaces_the_one_being_retried() {
    let (recorder, mut attempts) = Recorder::new("flaky");
    let set = ReporterSet::start(
        vec![Arc::new(recorder.failing(2))],
        options(Duration::from_secs(3600)),
    );
    set.report(status(Phase::Pending, "old"));
    let first = next(&mut attempts).await;
    assert_eq!(first.message, "old");
    // While the failed write of "old" backs off, "new" arrives.
    set.report(status(Phase::Ready, "new"));
    let second = next(&mut attempts).await;
    assert_eq!(second.message, "new");
    assert!(
        second.at - first.at >= Duration::from_millis(100),
        "the backoff is still honoured"
    );
    let third = next(&mut attempts).await;
    assert_eq!(third.message, "new");
    set.shutdown(None).await;
    let last = next(&mut attempts).await;
    assert_eq!(
        (last.message.as_str(), last.reason),
        ("new", ReportReason::Final)
    );
    assert!(
        attempts.try_recv().is_err(),
        "\"old\" is never written again"
    );
}

#[tokio::test(start_paused = true)]
async fn a_write_that_hangs_times_out_and_is_retried() {
    let (recorder, mut attempts) = Recorder::new("hung");
    let mut opts = options(Duration::from_secs(3600));
    opts.write_timeout = Duration::from_secs(2);
    let set = ReporterSet::start(vec![Arc::new(recorder.hanging(1))], opts);
    set.report(status(Phase::Ready, "ready"));
    let first = next(&mut attempts).await;
    let second = next(&mut attempts).await;
    assert!(second.at - first.at >= Duration::from_secs(2) + Duration::from_millis(100));
    let stats = set.stats();
    set.shutdown(None).await;
    assert_eq!(
        stats.count("hung", ReportReason::Changed, WriteOutcome::Timeout),
        1
    );
    assert_eq!(
        stats.count("hung", ReportReason::Changed, WriteOutcome::Ok),
        1
    );
}

#[tokio::test]
async fn shutdown_flushes_the_final_status() {
    let (recorder, mut attempts) = Recorder::new("rec");
    let set = ReporterSet::start(vec![Arc::new(recorder)], options(Duration::ZERO));
    set.report(status(Phase::Ready, "ready"));
    assert_eq!(next(&mut attempts).await.reason, ReportReason::Changed);
    set.shutdown(Some(status(Phase::Failed, "shutting down")))
        .await;
    let last = next(&mut attempts).await;
    assert_eq!(
        (last.phase, last.message.as_str(), last.reason),
        (Phase::Failed, "shutting down", ReportReason::Final)
    );
}

#[tokio::test]
async fn shutdown_without_any_status_writes_nothing() {
    let (recorder, mut attempts) = Recorder::new("rec");
    let set = ReporterSet::start(vec![Arc::new(recorder)], options(Duration::ZERO));
    let stats = set.stats();
    set.shutdown(None).await;
    assert!(
        attempts.recv().await.is_none(),
        "the task ended without writing"
    );
    assert_eq!(stats.writes("rec"), 0);
}

#[tokio::test(start_paused = true)]
async fn a_failing_final_write_is_retried_until_it_lands() {
    let (recorder, mut attempts) = Recorder::new("flaky");
    let set = ReporterSet::start(
        vec![Arc::new(recorder.failing_only(ReportReason::Final, 2))],
        options(Duration::ZERO),
    );
    set.report(status(Phase::Ready, "ready"));
    assert_eq!(next(&mut attempts).await.reason, ReportReason::Changed);
    let stats = set.stats();
    set.shutdown(Some(status(Phase::Failed, "stopping"))).await;
    assert_eq!(
        stats.count("flaky", ReportReason::Final, WriteOutcome::Error),
        2
    );
    assert_eq!(
        stats.count("flaky", ReportReason::Final, WriteOutcome::Ok),
        1
    );
}

#[tokio::test(start_paused = true)]
async fn shutdown_is_bounded_by_its_timeout() {
    let (recorder, mut attempts) = Recorder::new("stuck");
    let mut opts = options(Duration::ZERO);
    opts.write_timeout = Duration::from_secs(600);
    opts.shutdown_timeout = Duration::from_secs(5);
    let set = ReporterSet::start(vec![Arc::new(recorder.hanging(u32::MAX))], opts);
    set.report(status(Phase::Ready, "ready"));
    next(&mut attempts).await;
    let start = Instant::now();
    set.shutdown(None).await;
    assert_eq!(start.elapsed(), Duration::from_secs(5));
}

#[tokio::test(start_paused = true)]
async fn report_is_idempotent_and_shared_across_threads() {
    let (recorder, mut attempts) = Recorder::new("rec");
    let set = ReporterSet::start(vec![Arc::new(recorder)], options(Duration::ZERO));
    let sender = set.sender();
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let sender = sender.clone();
            std::thread::spawn(move || {
                for _ in 0..25 {
                    sender.report(status(Phase::Ready, "same"));
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().expect("reporting never panics");
    }
    assert_eq!(sender.latest().map(|s| s.message), Some("same".to_string()));
    assert_eq!(next(&mut attempts).await.reason, ReportReason::Changed);
    let stats = set.stats();
    set.shutdown(None).await;
    assert_eq!(
        stats.count("rec", ReportReason::Changed, WriteOutcome::Ok),
        1
    );
}

// ------------------------------------------------------ the file reporter

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(label: &str) -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "vmcp-status-{label}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        Self(path)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("the state dir exists")
        .map(|entry| {
            entry
                .expect("a readable entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn file_reporter_writes_status_and_writer() {
    use std::os::unix::fs::PermissionsExt as _;

    let temp = TempDir::new("content");
    let dir = temp.path().join("nested").join("state");
    let reporter =
        FileReporter::new(&dir, "demo gw", Duration::from_secs(30), None).expect("creates the dir");
    assert_eq!(reporter.path(), dir.join("demo_gw.json"));
    let mode = std::fs::metadata(&dir).expect("dir").permissions().mode();
    assert_eq!(mode & 0o777, 0o700);

    let mut written = status(Phase::Degraded, "1 of 2 backends ready");
    written.discovered_backends = vec![backend("a", BackendStatus::Ready, CircuitState::Closed, 0)];
    written.backend_count = 2;
    let before = Timestamp::now();
    reporter
        .apply(&written, ReportReason::Changed)
        .await
        .expect("written");
    let file = read_state_file(reporter.path()).expect("a valid state file");
    assert_eq!(file.status, written);
    assert_eq!(file.writer.pid, std::process::id());
    assert_eq!(file.writer.hostname, local_hostname());
    assert_eq!(file.writer.heartbeat_seconds, 30);
    assert!(!file.writer.stopped);
    assert!(file.writer.written_at >= before && file.writer.written_at >= file.writer.started_at);
    let mode = std::fs::metadata(reporter.path())
        .expect("file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    // The JSON uses the documented names.
    let raw: serde_json::Value =
        serde_json::from_slice(&std::fs::read(reporter.path()).expect("read")).expect("json");
    for key in [
        "pid",
        "hostname",
        "startedAt",
        "heartbeatSeconds",
        "writtenAt",
        "stopped",
    ] {
        assert!(raw["writer"].get(key).is_some(), "writer.{key} in {raw}");
    }
    assert_eq!(raw["status"]["phase"], "Degraded");

    reporter
        .apply(&written, ReportReason::Final)
        .await
        .expect("written");
    assert!(
        read_state_file(reporter.path())
            .expect("valid")
            .writer
            .stopped
    );
    assert_eq!(
        entries(&dir),
        [".demo_gw.json.lock", "demo_gw.json"],
        "no temporary file left"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_reporter_replaces_the_file_atomically() {
    let temp = TempDir::new("atomic");
    let reporter = FileReporter::new(temp.path(), "demo", Duration::from_secs(30), None)
        .expect("creates the dir");
    let path = reporter.path().to_path_buf();
    reporter
        .apply(&status(Phase::Pending, "0"), ReportReason::Changed)
        .await
        .expect("written");

    // A reader parses the file as fast as it can while it is rewritten with
    // statuses of very different sizes: it must never see a partial file.
    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let done = Arc::clone(&done);
        std::thread::spawn(move || {
            let mut reads = 0u32;
            while !done.load(Ordering::Relaxed) {
                let file = read_state_file(&path).expect("always a complete state file");
                assert!(file.status.message.len() <= 20_000);
                reads += 1;
            }
            reads
        })
    };
    for n in 0..200 {
        let message = "x".repeat(if n % 2 == 0 { 10 } else { 20_000 });
        reporter
            .apply(&status(Phase::Ready, &message), ReportReason::Changed)
            .await
            .expect("written");
    }
    done.store(true, Ordering::Relaxed);
    let reads = reader.join().expect("the reader saw only complete files");
    assert!(reads > 0);
    assert_eq!(entries(temp.path()), [".demo.json.lock", "demo.json"]);
}

#[tokio::test]
async fn a_second_writer_of_the_same_name_gets_its_own_file() {
    let temp = TempDir::new("two-writers");
    let heartbeat = Duration::from_secs(30);
    let first = FileReporter::new(temp.path(), "demo", heartbeat, Some("http://a".into()))
        .expect("the first takes demo.json");
    let second = FileReporter::new(temp.path(), "demo", heartbeat, Some("http://b".into()))
        .expect("the second takes the next instance");
    assert_eq!((first.instance(), second.instance()), (1, 2));
    assert_eq!(first.path(), temp.path().join("demo.json"));
    assert_eq!(second.path(), temp.path().join("demo@2.json"));
    for (reporter, message) in [(&first, "first"), (&second, "second")] {
        reporter
            .apply(&status(Phase::Ready, message), ReportReason::Changed)
            .await
            .expect("written");
    }
    for (path, message, address) in [
        (first.path(), "first", "http://a"),
        (second.path(), "second", "http://b"),
    ] {
        let file = read_state_file(path).expect("valid");
        assert_eq!(file.status.message, message, "{}", path.display());
        assert_eq!(file.writer.address.as_deref(), Some(address));
    }

    // The lock goes with its holder: the next writer takes demo.json again.
    drop(first);
    let third = FileReporter::new(temp.path(), "demo", heartbeat, None).expect("demo.json is free");
    assert_eq!(third.instance(), 1);
    assert_eq!(third.path(), temp.path().join("demo.json"));
}

#[test]
fn instance_file_names_round_trip() {
    use vmcp_status::file::{instance_file_name, split_instance};
    #[rustfmt::skip]
    let cases = [
        ("demo", 1, "demo.json"),
        ("demo", 2, "demo@2.json"),
        ("demo gw", 3, "demo_gw@3.json"),
        ("a@2", 1, "a_2.json"),
    ];
    for (name, instance, file) in cases {
        assert_eq!(instance_file_name(name, instance), file);
        let stem = file.strip_suffix(".json").expect("a json file");
        assert_eq!(split_instance(stem).1, instance, "{file}");
    }
    assert_eq!(split_instance("demo@x"), ("demo@x", 1));
}

#[tokio::test]
async fn a_late_write_never_overwrites_a_newer_one() {
    let temp = TempDir::new("late");
    let reporter = FileReporter::new(temp.path(), "demo", Duration::from_secs(30), None)
        .expect("creates the dir");
    let older = status(Phase::Pending, "older");
    let newer = status(Phase::Ready, "newer");
    let late = reporter.apply(&older, ReportReason::Changed);
    let early = reporter.apply(&newer, ReportReason::Changed);
    early.await.expect("written");
    late.await.expect("skipped without error");
    let file = read_state_file(reporter.path()).expect("valid");
    assert_eq!(file.status.message, "newer");
}

#[tokio::test]
async fn the_set_leaves_a_stopped_state_file_at_shutdown() {
    let temp = TempDir::new("set");
    let reporter = FileReporter::new(temp.path(), "demo", Duration::from_secs(30), None)
        .expect("creates the dir");
    let path = reporter.path().to_path_buf();
    let set = ReporterSet::start(vec![Arc::new(reporter)], options(Duration::from_secs(30)));
    set.report(status(Phase::Ready, "all ready"));
    set.shutdown(Some(status(Phase::Failed, "stopped"))).await;
    let file = read_state_file(&path).expect("valid");
    assert!(file.writer.stopped);
    assert_eq!(file.status.phase, Phase::Failed);
}

// ---------------------------------------------------------------- metrics

fn series<'a>(text: &'a str, metric: &str) -> Vec<&'a str> {
    text.lines()
        .filter(|line| {
            line.starts_with(&format!("{metric}{{")) || line.starts_with(&format!("{metric} "))
        })
        .collect()
}

#[tokio::test]
async fn metrics_mirror_the_status_and_forget_departed_backends() {
    let metrics = Metrics::new();
    let reporter = MetricsReporter::new(metrics.clone());
    let mut both = status(Phase::Degraded, "1 of 2 backends ready");
    both.backend_count = 2;
    both.discovered_backends = vec![
        backend("b", BackendStatus::Unavailable, CircuitState::Open, 5),
        backend("a", BackendStatus::Ready, CircuitState::Closed, 0),
    ];
    reporter
        .apply(&both, ReportReason::Changed)
        .await
        .expect("metrics never fail");
    let text = metrics.render();
    for line in [
        "vmcp_phase{phase=\"Degraded\"} 1",
        "vmcp_phase{phase=\"Ready\"} 0",
        "vmcp_backends 2",
        "vmcp_backend_status{backend=\"b\",status=\"unavailable\"} 1",
        "vmcp_backend_status{backend=\"b\",status=\"ready\"} 0",
        "vmcp_backend_status{backend=\"a\",status=\"ready\"} 1",
        "vmcp_backend_circuit_state{backend=\"b\",state=\"open\"} 1",
        "vmcp_backend_circuit_state{backend=\"a\",state=\"closed\"} 1",
        "vmcp_backend_consecutive_failures{backend=\"b\"} 5",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
    assert_eq!(series(&text, "vmcp_backend_status").len(), 10);

    let mut only_a = status(Phase::Ready, "all 1 backends ready");
    only_a.backend_count = 1;
    only_a.discovered_backends = vec![backend("a", BackendStatus::Ready, CircuitState::Closed, 0)];
    reporter
        .apply(&only_a, ReportReason::Changed)
        .await
        .expect("metrics never fail");
    let text = metrics.render();
    for metric in [
        "vmcp_backend_status",
        "vmcp_backend_circuit_state",
        "vmcp_backend_consecutive_failures",
    ] {
        let lines = series(&text, metric);
        assert!(!lines.is_empty(), "{metric} still has backend a");
        assert!(
            lines.iter().all(|line| !line.contains("backend=\"b\"")),
            "{metric} forgot backend b:\n{text}"
        );
    }
    assert!(text.lines().any(|l| l == "vmcp_phase{phase=\"Ready\"} 1"));
    assert!(
        text.lines()
            .any(|l| l == "vmcp_phase{phase=\"Degraded\"} 0")
    );
    assert!(text.lines().any(|l| l == "vmcp_backends 1"));
}

#[tokio::test]
async fn request_path_instruments_and_write_counts_render() {
    use vmcp_status::CallOutcome;

    let metrics = Metrics::new();
    metrics.record_probe("a", Duration::from_millis(30), true);
    metrics.record_probe("a", Duration::from_millis(40), false);
    metrics.record_call(
        "a",
        "tools/call",
        CallOutcome::Ok,
        Duration::from_millis(120),
    );
    metrics.record_call("a", "tools/call", CallOutcome::Rejected, Duration::ZERO);

    let (recorder, mut attempts) = Recorder::new("rec");
    let set = ReporterSet::start(
        vec![Arc::new(recorder)],
        options(Duration::ZERO).with_metrics(metrics.clone()),
    );
    set.report(status(Phase::Ready, "ready"));
    next(&mut attempts).await;
    set.shutdown(None).await;

    let text = metrics.render();
    for line in [
        "# TYPE vmcp_probe_duration_seconds histogram",
        "# UNIT vmcp_probe_duration_seconds seconds",
        "vmcp_probe_duration_seconds_count{backend=\"a\"} 2",
        "vmcp_probe_duration_seconds_bucket{le=\"0.05\",backend=\"a\"} 2",
        "vmcp_probes_total{backend=\"a\",outcome=\"ok\"} 1",
        "vmcp_probes_total{backend=\"a\",outcome=\"error\"} 1",
        "vmcp_backend_requests_total{backend=\"a\",method=\"tools/call\",outcome=\"ok\"} 1",
        "vmcp_backend_requests_total{backend=\"a\",method=\"tools/call\",outcome=\"rejected\"} 1",
        "vmcp_backend_request_duration_seconds_count{backend=\"a\",method=\"tools/call\"} 1",
        "vmcp_status_writes_total{reporter=\"rec\",reason=\"changed\",outcome=\"ok\"} 1",
        "vmcp_status_writes_total{reporter=\"rec\",reason=\"final\",outcome=\"ok\"} 1",
        "# EOF",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
}

#[test]
fn client_limit_instruments_render_from_zero() {
    use vmcp_status::{ClientRefusal, ConnectionDeadline};

    let metrics = Metrics::new();
    let fresh = metrics.render();
    // Every refusal reason and deadline has a series from the start, so an
    // alert on its rate sees the first refusal.
    for line in [
        "vmcp_client_refusals_total{reason=\"connection_limit\"} 0",
        "vmcp_client_refusals_total{reason=\"session_limit\"} 0",
        "vmcp_connection_timeouts_total{deadline=\"idle\"} 0",
        "vmcp_connections_open 0",
        "vmcp_sessions_open 0",
    ] {
        assert!(
            fresh.lines().any(|l| l == line),
            "missing {line:?} in\n{fresh}"
        );
    }

    metrics.connection_opened();
    metrics.connection_opened();
    metrics.connection_closed();
    metrics.record_refusal(ClientRefusal::ConnectionLimit);
    metrics.record_refusal(ClientRefusal::ClientSessionLimit);
    metrics.record_refusal(ClientRefusal::ClientSessionLimit);
    metrics.record_connection_timeout(ConnectionDeadline::HeaderRead);
    metrics.set_open_sessions(7);
    let text = metrics.render();
    for line in [
        "vmcp_connections_open 1",
        "vmcp_client_refusals_total{reason=\"connection_limit\"} 1",
        "vmcp_client_refusals_total{reason=\"client_session_limit\"} 2",
        "vmcp_client_refusals_total{reason=\"probe_reserve\"} 0",
        "vmcp_connection_timeouts_total{deadline=\"header_read\"} 1",
        "vmcp_sessions_open 7",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
}
