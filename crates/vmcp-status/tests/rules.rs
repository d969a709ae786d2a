//! The pure rules of reporting, as tables: staleness, reporter selection,
//! the state directory and file names.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use vmcp_domain::status::Timestamp;
use vmcp_status::file::state_file_name;
use vmcp_status::staleness::age;
use vmcp_status::{
    HostProbe, KubernetesTarget, ReporterKind, SelectionSource, StaleReason, WriterInfo,
    default_state_dir, select, staleness,
};

/// A fixed environment: `(name, value)` pairs.
type EnvTable<'a> = &'a [(&'a str, &'a str)];

struct FakeHost {
    hostname: &'static str,
    alive: &'static [u32],
}

impl HostProbe for FakeHost {
    fn hostname(&self) -> &str {
        self.hostname
    }
    fn is_alive(&self, pid: u32) -> bool {
        self.alive.contains(&pid)
    }
}

fn ts(text: &str) -> Timestamp {
    text.parse().expect("test timestamps are valid")
}

#[test]
fn staleness_table() {
    let now = ts("2026-11-01T12:00:00Z");
    let host = FakeHost {
        hostname: "laptop",
        alive: &[100],
    };
    let writer =
        |pid: u32, hostname: &str, heartbeat: u64, written: &str, stopped: bool| WriterInfo {
            pid,
            hostname: hostname.to_string(),
            started_at: ts("2026-11-01T11:00:00Z"),
            heartbeat_seconds: heartbeat,
            written_at: ts(written),
            stopped,
            address: None,
        };
    let outdated = |age: u64, limit: u64| {
        Some(StaleReason::Outdated {
            age: Duration::from_secs(age),
            limit: Duration::from_secs(limit),
        })
    };
    #[rustfmt::skip]
    let cases: Vec<(&str, WriterInfo, Option<StaleReason>)> = vec![
        ("live writer, fresh report", writer(100, "laptop", 30, "2026-11-01T11:59:50Z", false), None),
        ("stopped cleanly", writer(100, "laptop", 30, "2026-11-01T11:59:59Z", true), Some(StaleReason::Stopped)),
        ("stopped wins over a dead pid", writer(200, "laptop", 30, "2026-11-01T11:59:59Z", true), Some(StaleReason::Stopped)),
        ("writer process gone", writer(200, "laptop", 30, "2026-11-01T11:59:59Z", false), Some(StaleReason::WriterGone { pid: 200 })),
        ("other host: pid not checked", writer(200, "server", 30, "2026-11-01T11:59:59Z", false), None),
        ("exactly at the limit (2 x 30 + 5)", writer(100, "laptop", 30, "2026-11-01T11:58:55Z", false), None),
        ("one second past the limit", writer(100, "laptop", 30, "2026-11-01T11:58:54Z", false), outdated(66, 65)),
        ("old report from another host", writer(200, "server", 10, "2026-11-01T11:59:00Z", false), outdated(60, 25)),
        ("live pid but hung writer", writer(100, "laptop", 10, "2026-11-01T11:00:00Z", false), outdated(3600, 25)),
        ("no heartbeat: age proves nothing", writer(100, "laptop", 0, "2026-11-01T10:00:00Z", false), None),
        ("written in the future (clock skew)", writer(100, "laptop", 30, "2026-11-01T12:05:00Z", false), None),
    ];
    for (name, writer, expected) in cases {
        assert_eq!(staleness(&writer, now, &host), expected, "{name}");
    }
}

#[test]
fn stale_reasons_read_well() {
    assert_eq!(StaleReason::Stopped.to_string(), "the gateway stopped");
    assert_eq!(
        StaleReason::WriterGone { pid: 42 }.to_string(),
        "the gateway process 42 is no longer running"
    );
    assert_eq!(
        StaleReason::Outdated {
            age: Duration::from_secs(70),
            limit: Duration::from_secs(65)
        }
        .to_string(),
        "no report for 70s (expected at least every 65s)"
    );
    assert_eq!(
        age(ts("2026-11-01T12:00:00Z"), ts("2026-11-01T12:00:12.5Z")),
        Duration::from_millis(12_500)
    );
}

#[test]
fn reporter_selection_table() {
    use ReporterKind::{File, Kubernetes, Log, None};
    let k8s_env: EnvTable = &[("VMCP_NAME", "demo"), ("VMCP_NAMESPACE", "tools")];
    let name_only: EnvTable = &[("VMCP_NAME", "demo")];
    let empty_values: EnvTable = &[("VMCP_NAME", ""), ("VMCP_NAMESPACE", "tools")];
    let no_env: EnvTable = &[];
    let target = Some(KubernetesTarget {
        name: "demo".to_string(),
        namespace: "tools".to_string(),
    });
    // (case, environment, explicit choice, reporters, source)
    type Case<'a> = (
        &'a str,
        EnvTable<'a>,
        &'a [ReporterKind],
        &'a [ReporterKind],
    );
    #[rustfmt::skip]
    let cases: [(Case, SelectionSource); 10] = [
        (("CLI mode", no_env, &[], &[File, Log]), SelectionSource::Default),
        (("Kubernetes environment", k8s_env, &[], &[Kubernetes]), SelectionSource::KubernetesEnvironment),
        (("name without namespace", name_only, &[], &[File, Log]), SelectionSource::Default),
        (("empty name counts as unset", empty_values, &[], &[File, Log]), SelectionSource::Default),
        (("explicit wins over Kubernetes", k8s_env, &[Log], &[Log]), SelectionSource::Explicit),
        (("explicit wins over default", no_env, &[File], &[File]), SelectionSource::Explicit),
        (("explicit several, deduplicated", k8s_env, &[Kubernetes, Log, Kubernetes], &[Kubernetes, Log]), SelectionSource::Explicit),
        (("none alone: no reporters", k8s_env, &[None], &[]), SelectionSource::Explicit),
        (("none with others is ignored", no_env, &[None, Log], &[Log]), SelectionSource::Explicit),
        (("explicit Kubernetes outside Kubernetes", no_env, &[Kubernetes], &[Kubernetes]), SelectionSource::Explicit),
    ];
    for ((name, env, explicit, kinds), source) in cases {
        let selection = select(&env, explicit);
        assert_eq!(selection.kinds, kinds, "{name}");
        assert_eq!(selection.source, source, "{name}");
        let expected_target = if std::ptr::eq(env, k8s_env) {
            target.clone()
        } else {
            Option::None
        };
        assert_eq!(selection.kubernetes, expected_target, "{name}");
    }
}

#[test]
fn reporter_kinds_parse() {
    for kind in ReporterKind::ALL {
        assert_eq!(ReporterKind::from_str(kind.as_str()).ok(), Some(kind));
    }
    assert_eq!(
        ReporterKind::from_str("K8s").ok(),
        Some(ReporterKind::Kubernetes)
    );
    let error = ReporterKind::from_str("syslog").expect_err("unknown kind");
    assert!(error.to_string().contains("syslog"), "{error}");
}

#[test]
fn default_state_dir_table() {
    #[rustfmt::skip]
    let cases: Vec<(&str, EnvTable, Option<&str>)> = vec![
        ("explicit override", &[("VMCP_STATE_DIR", "/srv/vmcp"), ("XDG_STATE_HOME", "/x"), ("HOME", "/home/a")], Some("/srv/vmcp")),
        ("XDG state home", &[("XDG_STATE_HOME", "/x/state"), ("HOME", "/home/a")], Some("/x/state/vmcp")),
        ("home", &[("HOME", "/home/a")], Some("/home/a/.local/state/vmcp")),
        ("empty override ignored", &[("VMCP_STATE_DIR", ""), ("HOME", "/home/a")], Some("/home/a/.local/state/vmcp")),
        ("relative XDG ignored", &[("XDG_STATE_HOME", "state"), ("HOME", "/home/a")], Some("/home/a/.local/state/vmcp")),
        ("nothing known", &[], None),
    ];
    for (name, env, expected) in cases {
        assert_eq!(
            default_state_dir(&env),
            expected.map(PathBuf::from),
            "{name}"
        );
    }
    // A closure is an environment too.
    let env = |name: &str| (name == "HOME").then(|| "/root".to_string());
    assert_eq!(
        default_state_dir(&env),
        Some(PathBuf::from("/root/.local/state/vmcp"))
    );
}

#[test]
fn state_file_names_are_safe() {
    #[rustfmt::skip]
    let cases = [
        ("demo", "demo.json"),
        ("team-a.gateway_1", "team-a.gateway_1.json"),
        ("../etc/passwd", "_._etc_passwd.json"),
        (".hidden", "_hidden.json"),
        ("with space", "with_space.json"),
        ("", "vmcp.json"),
    ];
    for (name, file) in cases {
        assert_eq!(state_file_name(name), file, "{name:?}");
    }
}

#[test]
fn log_lines_show_backends_compactly() {
    use vmcp_domain::status::{BackendStatus, CircuitState, DiscoveredBackend, Phase, Status};
    use vmcp_status::log::compact_backends;

    let backend = |name: &str, status, circuit, failures| DiscoveredBackend {
        name: name.to_string(),
        url: String::new(),
        status,
        auth_type: None,
        auth_config_ref: None,
        last_health_check: None,
        message: None,
        circuit_breaker_state: circuit,
        circuit_last_changed: None,
        consecutive_failures: failures,
    };
    let mut status = Status {
        phase: Phase::Degraded,
        message: String::new(),
        conditions: Vec::new(),
        discovered_backends: vec![
            backend("b", BackendStatus::Unavailable, Some(CircuitState::Open), 5),
            backend("c", BackendStatus::Degraded, Some(CircuitState::Closed), 1),
            backend("a", BackendStatus::Ready, Some(CircuitState::Closed), 0),
            backend("d", BackendStatus::Unknown, None, 0),
        ],
        backend_count: 4,
        observed_generation: None,
        timestamp: ts("2026-11-01T12:00:00Z"),
    };
    assert_eq!(
        compact_backends(&status),
        "b=unavailable(circuit=open,failures=5) c=degraded(failures=1) a=ready d=unknown"
    );
    status.backend_count = 250;
    assert!(compact_backends(&status).ends_with("d=unknown +246 more"));
}
