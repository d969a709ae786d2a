//! `vmcp status` as a user runs it: the built binary against state files
//! written into a temporary directory, in the format of the file reporter.

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use vmcp_domain::status::{
    BackendStatus, CircuitState, DiscoveredBackend, Phase, Status, Timestamp,
};
use vmcp_status::file::local_hostname;
use vmcp_status::{StateFile, WriterInfo};

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(label: &str) -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "vmcp-status-cmd-{label}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("a temp dir");
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

fn seconds_ago(seconds: u64) -> Timestamp {
    Timestamp::now()
        .checked_sub(Duration::from_secs(seconds))
        .expect("a recent time")
}

fn backend(
    name: &str,
    status: BackendStatus,
    circuit: CircuitState,
    failures: u32,
    message: Option<&str>,
) -> DiscoveredBackend {
    DiscoveredBackend {
        name: name.to_string(),
        url: format!("http://127.0.0.1:9/{name}"),
        status,
        auth_type: None,
        auth_config_ref: None,
        last_health_check: Some(seconds_ago(3)),
        message: message.map(str::to_string),
        circuit_breaker_state: Some(circuit),
        circuit_last_changed: None,
        consecutive_failures: failures,
    }
}

fn status_with(phase: Phase, message: &str, backends: Vec<DiscoveredBackend>) -> Status {
    Status {
        phase,
        message: message.to_string(),
        conditions: Vec::new(),
        backend_count: u32::try_from(backends.len()).expect("few"),
        discovered_backends: backends,
        observed_generation: Some(3),
        timestamp: seconds_ago(12),
    }
}

/// A writer that is this test process: alive, on this host.
fn live_writer() -> WriterInfo {
    WriterInfo {
        pid: std::process::id(),
        hostname: local_hostname(),
        started_at: seconds_ago(600),
        heartbeat_seconds: 30,
        written_at: seconds_ago(12),
        stopped: false,
        address: Some("http://127.0.0.1:4483/mcp".into()),
    }
}

/// A process id that existed and is gone (spawned, reaped).
fn dead_pid() -> u32 {
    let mut child = Command::new("true").spawn().expect("`true` runs");
    let pid = child.id();
    child.wait().expect("`true` exits");
    pid
}

/// Writes a state file the way the file reporter does: whole or not at all.
fn write_state(dir: &Path, name: &str, status: Status, writer: WriterInfo) {
    let file = StateFile { status, writer };
    let bytes = serde_json::to_vec_pretty(&file).expect("encodes");
    let temp = dir.join(format!(".{name}.json.tmp"));
    std::fs::write(&temp, bytes).expect("written");
    std::fs::rename(&temp, dir.join(format!("{name}.json"))).expect("renamed");
}

fn degraded() -> Status {
    status_with(
        Phase::Degraded,
        "1 of 2 backends ready; not ready: billing",
        vec![
            backend(
                "billing",
                BackendStatus::Unavailable,
                CircuitState::Open,
                5,
                Some("backend unreachable"),
            ),
            backend(
                "search",
                BackendStatus::Ready,
                CircuitState::Closed,
                0,
                None,
            ),
        ],
    )
}

fn ready() -> Status {
    status_with(
        Phase::Ready,
        "all 1 backends ready",
        vec![backend(
            "search",
            BackendStatus::Ready,
            CircuitState::Closed,
            0,
            None,
        )],
    )
}

fn vmcp_status(dir: &Path, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vmcp"))
        .arg("status")
        .arg("--state-dir")
        .arg(dir)
        .args(extra)
        .output()
        .expect("the vmcp binary runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn code(output: &Output) -> i32 {
    output.status.code().expect("exited, not killed")
}

#[test]
fn table_for_a_degraded_gateway() {
    let dir = TempDir::new("table");
    write_state(dir.path(), "demo", degraded(), live_writer());
    let output = vmcp_status(dir.path(), &[]);
    let text = stdout(&output);
    assert_eq!(
        code(&output),
        1,
        "Degraded exits 1:\n{text}{}",
        stderr(&output)
    );
    // Ages are rendered when the command runs: allow one second of delay.
    let a_second_later = |line: &str| {
        line.replace("12s ago", "13s ago")
            .replace("3s ago", "4s ago")
    };
    for expected in [
        "Gateway:    demo",
        "Phase:      Degraded",
        "Message:    1 of 2 backends ready; not ready: billing",
        "Writer:     pid ",
        ", http://127.0.0.1:4483/mcp, since 10m0s ago",
        "Reported:   12s ago (heartbeat 30s)",
        "BACKEND  STATUS       CIRCUIT  FAILURES  LAST CHECK  MESSAGE",
        "billing  unavailable  open     5         3s ago      backend unreachable",
        "search   ready        closed   0         3s ago      -",
    ] {
        assert!(
            text.contains(expected) || text.contains(&a_second_later(expected)),
            "{expected:?} missing in\n{text}"
        );
    }
    assert!(!text.contains("STALE"), "{text}");
}

#[test]
fn exit_codes_follow_the_phase() {
    #[rustfmt::skip]
    let cases = [
        (Phase::Ready, 0),
        (Phase::Degraded, 1),
        (Phase::Pending, 2),
        (Phase::Failed, 2),
    ];
    for (phase, expected) in cases {
        let dir = TempDir::new("codes");
        let mut status = ready();
        status.phase = phase;
        write_state(dir.path(), "demo", status, live_writer());
        let output = vmcp_status(dir.path(), &[]);
        assert_eq!(code(&output), expected, "{phase:?}:\n{}", stdout(&output));
        assert!(stdout(&output).contains(&format!("Phase:      {}", phase.as_str())));
    }
}

#[test]
fn stale_reports_are_marked_and_exit_2() {
    let dead = dead_pid();
    #[rustfmt::skip]
    let cases: [(&str, WriterInfo, &str); 3] = [
        ("dead pid", WriterInfo { pid: dead, ..live_writer() }, &format!("the gateway process {dead} is no longer running")),
        ("old writtenAt", WriterInfo { written_at: seconds_ago(600), ..live_writer() }, "no report for 600s (expected at least every 65s)"),
        ("stopped", WriterInfo { stopped: true, ..live_writer() }, "the gateway stopped"),
    ];
    for (name, writer, reason) in cases {
        let dir = TempDir::new("stale");
        write_state(dir.path(), "demo", ready(), writer);

        let output = vmcp_status(dir.path(), &[]);
        let text = stdout(&output);
        assert_eq!(code(&output), 2, "{name}: a stale Ready exits 2:\n{text}");
        assert!(
            text.contains(&format!("Phase:      Ready  STALE: {reason}")),
            "{name}: {text}"
        );

        let output = vmcp_status(dir.path(), &["--json", "--name", "demo"]);
        assert_eq!(code(&output), 2, "{name}");
        let json: serde_json::Value =
            serde_json::from_slice(&output.stdout).expect("--json prints JSON");
        assert_eq!(json["stale"], true, "{name}");
        assert_eq!(json["staleReason"], reason, "{name}");
    }
}

#[test]
fn json_is_the_state_file_plus_staleness() {
    let dir = TempDir::new("json");
    write_state(dir.path(), "demo", degraded(), live_writer());
    let output = vmcp_status(dir.path(), &["--json", "--name", "demo"]);
    assert_eq!(code(&output), 1);
    let json: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("--json prints JSON");
    assert_eq!(json["name"], "demo");
    assert_eq!(json["stale"], false);
    assert_eq!(json["staleReason"], serde_json::Value::Null);
    assert_eq!(json["status"]["phase"], "Degraded");
    assert_eq!(
        json["status"]["discoveredBackends"][0]["circuitBreakerState"],
        "open"
    );
    assert_eq!(json["writer"]["pid"], std::process::id());
    assert_eq!(json["writer"]["heartbeatSeconds"], 30);
    // The state file round-trips through the output.
    let file: StateFile = serde_json::from_value(json).expect("a state file");
    assert_eq!(file.status, degraded_with_times(&file.status));

    // Without --name: an array of every gateway.
    write_state(dir.path(), "other", ready(), live_writer());
    let output = vmcp_status(dir.path(), &["--json"]);
    let json: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("--json prints JSON");
    let names: Vec<&str> = json
        .as_array()
        .expect("an array")
        .iter()
        .map(|entry| entry["name"].as_str().expect("a name"))
        .collect();
    assert_eq!(names, ["demo", "other"]);
}

/// `degraded()` with the times of `actual` (they were taken at another
/// instant).
fn degraded_with_times(actual: &Status) -> Status {
    let mut expected = degraded();
    expected.timestamp = actual.timestamp;
    for (backend, seen) in expected
        .discovered_backends
        .iter_mut()
        .zip(&actual.discovered_backends)
    {
        backend.last_health_check = seen.last_health_check;
    }
    expected
}

#[test]
fn the_worst_gateway_decides_the_exit_code() {
    let dir = TempDir::new("worst");
    write_state(dir.path(), "a-ready", ready(), live_writer());
    let output = vmcp_status(dir.path(), &[]);
    assert_eq!(code(&output), 0);

    write_state(dir.path(), "b-degraded", degraded(), live_writer());
    let output = vmcp_status(dir.path(), &[]);
    let text = stdout(&output);
    assert_eq!(code(&output), 1, "{text}");
    assert!(text.contains("Gateway:    a-ready") && text.contains("Gateway:    b-degraded"));

    // --name looks at one gateway only.
    let output = vmcp_status(dir.path(), &["--name", "a-ready"]);
    assert_eq!(code(&output), 0);
    assert!(!stdout(&output).contains("b-degraded"));

    write_state(
        dir.path(),
        "c-stopped",
        ready(),
        WriterInfo {
            stopped: true,
            ..live_writer()
        },
    );
    let output = vmcp_status(dir.path(), &[]);
    assert_eq!(code(&output), 2, "{}", stdout(&output));
}

#[test]
fn missing_and_corrupt_state_files_are_named() {
    let dir = TempDir::new("missing");
    let output = vmcp_status(dir.path(), &[]);
    assert_eq!(code(&output), 2);
    assert!(
        stderr(&output).contains(&format!("no state files in {}", dir.path().display())),
        "{}",
        stderr(&output)
    );

    let output = vmcp_status(&dir.path().join("does-not-exist"), &[]);
    assert_eq!(code(&output), 2);
    assert!(stderr(&output).contains("no state files in"));

    let output = vmcp_status(dir.path(), &["--name", "ghost"]);
    assert_eq!(code(&output), 2);
    let expected = format!(
        "no state file for gateway \"ghost\": {} does not exist",
        dir.path().join("ghost.json").display()
    );
    assert!(stderr(&output).contains(&expected), "{}", stderr(&output));

    write_state(dir.path(), "good", ready(), live_writer());
    std::fs::write(dir.path().join("broken.json"), b"{\"status\": ").expect("written");
    let output = vmcp_status(dir.path(), &[]);
    let text = stdout(&output);
    assert_eq!(code(&output), 2, "{text}");
    let broken = dir.path().join("broken.json");
    assert!(
        text.contains(&format!(
            "Error:      {} is not a valid vmcp state file",
            broken.display()
        )),
        "{text}"
    );
    assert!(
        text.contains("Gateway:    good"),
        "the good one is still shown"
    );

    let output = vmcp_status(dir.path(), &["--json"]);
    assert_eq!(code(&output), 2);
    assert!(stderr(&output).contains(&broken.display().to_string()));
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!(json.as_array().map(Vec::len), Some(1));
}

#[test]
fn the_state_dir_comes_from_the_environment() {
    let dir = TempDir::new("env");
    write_state(dir.path(), "demo", ready(), live_writer());
    let output = Command::new(env!("CARGO_BIN_EXE_vmcp"))
        .arg("status")
        .env("VMCP_STATE_DIR", dir.path())
        .output()
        .expect("the vmcp binary runs");
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    assert!(stdout(&output).contains("Gateway:    demo"));
}

#[test]
fn watch_redraws_until_interrupted() {
    let dir = TempDir::new("watch");
    write_state(dir.path(), "demo", ready(), live_writer());
    let mut child = Command::new(env!("CARGO_BIN_EXE_vmcp"))
        .arg("status")
        .arg("--state-dir")
        .arg(dir.path())
        .args(["--watch", "--interval", "100ms"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("the vmcp binary runs");
    let mut out = child.stdout.take().expect("piped");
    let (chunks, frames) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buffer = [0u8; 4096];
        while let Ok(n) = out.read(&mut buffer) {
            if n == 0 || chunks.send(buffer[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    // Wait for three frames, the last one after the gateway degraded.
    let mut seen = String::new();
    let mut changed = false;
    while seen.matches("Gateway:    demo").count() < 3 || !seen.contains("Phase:      Degraded") {
        let chunk = frames
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("no redraw; output so far:\n{seen}"));
        seen.push_str(&String::from_utf8_lossy(&chunk));
        if !changed && seen.contains("Gateway:    demo") {
            write_state(dir.path(), "demo", degraded(), live_writer());
            changed = true;
        }
    }
    let interrupted = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(interrupted.success());
    let status = child.wait().expect("vmcp exits");
    assert_eq!(
        status.code(),
        Some(1),
        "Ctrl-C ends --watch with the last code"
    );
    assert!(seen.contains("every 100ms"), "{seen}");
}
