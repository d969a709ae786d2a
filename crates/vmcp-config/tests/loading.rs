//! Loading real files: the bundled examples, every-error-at-once reporting,
//! and the committed JSON Schema.

use std::path::PathBuf;

use vmcp_config::{ConfigError, ConflictResolution, TransportKind, load_file, load_str};

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn issues_of(text: &str) -> Vec<String> {
    match load_str(text, "test.yaml") {
        Err(ConfigError::Invalid { issues, .. }) => issues.iter().map(|i| i.to_string()).collect(),
        other => panic!("expected validation issues, got {other:?}"),
    }
}

#[test]
fn every_bundled_example_is_valid() {
    let dir = repo_root().join("examples");
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).expect("examples/ exists") {
        let path = entry.expect("readable dir entry").path();
        if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            load_file(&path).unwrap_or_else(|err| panic!("{}: {err}", path.display()));
            count += 1;
        }
    }
    assert!(count >= 2, "expected the bundled examples, found {count}");
}

#[test]
fn quickstart_has_the_documented_shape() {
    let config = load_file(&repo_root().join("examples/quickstart.yaml")).expect("valid");
    assert_eq!(config.name, "quickstart");
    let kinds: Vec<_> = config.backends.iter().map(|b| b.transport).collect();
    assert_eq!(kinds, [TransportKind::Stdio, TransportKind::StreamableHttp]);
    assert_eq!(
        config.aggregation.conflict_resolution,
        ConflictResolution::Prefix
    );
    assert_eq!(
        config.operational.timeouts.for_backend("beta").as_secs(),
        10
    );
    assert_eq!(
        config.operational.timeouts.for_backend("alpha").as_secs(),
        30
    );
}

#[test]
fn defaults_match_the_reference() {
    let config = load_str(
        "name: x\nbackends:\n  - {name: a, transport: streamable-http, url: 'http://127.0.0.1:1/mcp'}\n",
        "t.yaml",
    )
    .expect("valid");
    let fh = &config.operational.failure_handling;
    assert_eq!(fh.health_check_interval.get().as_secs(), 30);
    assert_eq!(fh.unhealthy_threshold, 3);
    assert_eq!(fh.health_check_timeout.get().as_secs(), 10);
    assert_eq!(fh.status_reporting_interval.get().as_secs(), 30);
    assert!(fh.circuit_breaker.enabled);
    assert_eq!(fh.circuit_breaker.failure_threshold, 5);
    assert_eq!(fh.circuit_breaker.timeout.get().as_secs(), 60);
    assert_eq!(
        config
            .aggregation
            .conflict_resolution_config
            .prefix_format(),
        "{workload}_"
    );
}

#[test]
fn reports_all_problems_at_once_with_line_and_field() {
    let text = "\
name: demo
backends:
  - name: a
    transport: streamable-http
  - name: b
    transport: grpc
    url: http://127.0.0.1:1/mcp
  - name: c
    transport: stdio
    command: ./server
    colour: blue
aggregation:
  conflictResolution: priority
operational:
  timeouts:
    default: 30
  failureHandling:
    healthCheckInterval: 5s
    healthCheckTimeout: 10s
bogus: true
";
    let issues = issues_of(text);
    let expect = [
        "test.yaml:4: backends[0].transport: transport streamable-http needs a url",
        "test.yaml:6: backends[1].transport: unknown variant `grpc`",
        "test.yaml:11: backends[2].colour: unknown field `colour`",
        "test.yaml:16: operational.timeouts.default: invalid type",
        "test.yaml:20: bogus: unknown field",
    ];
    for want in expect {
        assert!(
            issues.iter().any(|i| i.starts_with(want)),
            "missing {want:?} in {issues:#?}"
        );
    }
    // Priority without an order, and the probe timeout above the interval,
    // are cross-field rules; operational failed to parse so only the former shows.
    assert!(
        issues.iter().any(|i| i.contains("priorityOrder")),
        "{issues:#?}"
    );
}

#[test]
fn cross_field_rules_name_the_field() {
    let text = "\
name: demo
backends:
  - name: a
    transport: sse
    url: ftp://example.com/sse
  - name: a
    transport: stdio
    command: x
outgoingAuth:
  backends:
    nobody:
      type: header_injection
      headerInjection:
        headerName: X-Key
operational:
  timeouts:
    perWorkload:
      ghost: 1s
  failureHandling:
    healthCheckInterval: 5s
    healthCheckTimeout: 5s
";
    let issues = issues_of(text);
    let expect = [
        "test.yaml:5: backends[0].url: url scheme must be http or https",
        "test.yaml:6: backends[1].name: duplicate backend name \"a\"",
        "test.yaml:12: outgoingAuth.backends.nobody: unknown backend \"nobody\"",
        "test.yaml:14: outgoingAuth.backends.nobody.headerInjection: set exactly one of headerValue and headerValueEnv",
        "test.yaml:18: operational.timeouts.perWorkload.ghost: unknown backend",
        "test.yaml:21: operational.failureHandling.healthCheckTimeout: must be below healthCheckInterval",
    ];
    for want in expect {
        assert!(
            issues.iter().any(|i| i.starts_with(want)),
            "missing {want:?} in {issues:#?}"
        );
    }
}

#[test]
fn yaml_syntax_errors_carry_a_position() {
    match load_str("name: x\nbackends: [\n", "broken.yaml") {
        Err(ConfigError::Syntax { file, line, .. }) => {
            assert_eq!(file, "broken.yaml");
            assert!(line >= 2, "line {line}");
        }
        other => panic!("expected a syntax error, got {other:?}"),
    }
}

#[test]
fn committed_schema_is_current() {
    let path = repo_root().join("schema/vmcp-config.schema.json");
    let generated = vmcp_config::schema::config_schema_json();
    if std::env::var_os("VMCP_UPDATE_SCHEMA").is_some() {
        std::fs::write(&path, &generated).expect("write schema");
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "schema/vmcp-config.schema.json is stale: run `VMCP_UPDATE_SCHEMA=1 cargo test -p vmcp-config --test loading`"
    );
}

#[test]
fn session_limits_and_uri_bound_have_safe_defaults_and_are_checked() {
    let config = load_str(
        "name: x\nbackends:\n  - {name: a, transport: streamable-http, url: 'http://127.0.0.1:1/mcp'}\n",
        "t.yaml",
    )
    .expect("valid");
    let server = &config.server;
    assert_eq!(server.max_uri_bytes, 65536);
    assert_eq!(server.max_sessions, 1000);
    assert_eq!(server.max_sessions_per_client, 100);
    assert_eq!(server.session_idle_timeout.get().as_secs(), 300);

    let issues = issues_of(
        "\
name: x
backends:
  - {name: a, transport: streamable-http, url: 'http://127.0.0.1:1/mcp'}
server:
  maxUriBytes: 10
  maxSessions: 5
  maxSessionsPerClient: 6
  sessionIdleTimeout: 0s
",
    );
    for want in [
        "server.maxUriBytes: must be at least 256",
        "server.maxSessionsPerClient: must not exceed server.maxSessions (5)",
        "server.sessionIdleTimeout: must be at least 1s",
    ] {
        assert!(
            issues.iter().any(|issue| issue.contains(want)),
            "missing {want:?} in {issues:#?}"
        );
    }
    assert_eq!(issues.len(), 3, "{issues:#?}");
}
