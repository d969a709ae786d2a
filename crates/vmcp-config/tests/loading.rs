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
        "test.yaml:6: backends[1].transport: unknown value \"grpc\", expected one of streamable-http, sse, stdio",
        "test.yaml:11: backends[2].colour: unknown field, expected one of name, transport",
        "test.yaml:16: operational.timeouts.default: expected a duration",
        "test.yaml:19: operational.failureHandling.healthCheckTimeout: must be below healthCheckInterval",
        "test.yaml:20: bogus: unknown field",
    ];
    for want in expect {
        assert!(
            issues.iter().any(|i| i.starts_with(want)),
            "missing {want:?} in {issues:#?}"
        );
    }
    // Priority without an order is a cross-field rule; it is checked although
    // other sections have type errors.
    assert!(
        issues.iter().any(|i| i.contains("priorityOrder")),
        "{issues:#?}"
    );
}

/// Every problem of a file in one run, however many share a section or a
/// mapping: each case lists the issues `vmcp validate` prints, in order.
#[test]
fn every_problem_is_reported_in_one_run() {
    let head = "name: demo\nbackends:\n  - {name: ok, transport: stdio, command: ./s}\n";
    let cases: &[(&str, &str, &[&str])] = &[
        (
            "several bad fields in one backend",
            "  - name: a
    transport: streamable-http
    url: [1]
    colour: blue
    args: {x: 1}
",
            &[
                "t.yaml:6: backends[1].url: expected a string, found a list",
                "t.yaml:7: backends[1].colour: unknown field, expected one of name, transport, url, command, args, env",
                "t.yaml:8: backends[1].args: expected a list, found a mapping",
            ],
        ),
        (
            "bad fields in two backends, a required field wrong and one missing",
            "  - name: a
    transport: grpc
    url: 5
  - transport: stdio
    command: 7
",
            &[
                "t.yaml:5: backends[1].transport: unknown value \"grpc\", expected one of streamable-http, sse, stdio",
                "t.yaml:6: backends[1].url: expected a string, found an integer",
                "t.yaml:7: backends[2].name: missing required field",
                "t.yaml:8: backends[2].command: expected a string, found an integer",
            ],
        ),
        (
            "a bad duration, a bad number and an unknown field in operational",
            "operational:
  logLevel: loud
  timeouts:
    default: 5x
    perWorkload: {ok: 1s, ghost: 2s}
  failureHandling:
    unhealthyThreshold: three
    healthCheckInterval: 10s
    healthCheckTimeout: 20s
    retries: 2
    circuitBreaker: {enabled: sometimes, timeout: -1s}
",
            &[
                "t.yaml:5: operational.logLevel: unknown log level \"loud\", expected one of trace, debug, info, warn, error",
                "t.yaml:7: operational.timeouts.default: invalid value \"5x\", expected a duration such as \"500ms\", \"30s\" or \"1m30s\"",
                "t.yaml:8: operational.timeouts.perWorkload.ghost: unknown backend \"ghost\"",
                "t.yaml:10: operational.failureHandling.unhealthyThreshold: expected u32, found a string",
                "t.yaml:13: operational.failureHandling.retries: unknown field, expected one of healthCheckInterval",
                "t.yaml:14: operational.failureHandling.circuitBreaker.enabled: expected a boolean, found a string",
                "t.yaml:14: operational.failureHandling.circuitBreaker.timeout: invalid value \"-1s\", expected a duration such as \"500ms\", \"30s\" or \"1m30s\"",
            ],
        ),
        (
            "cross-field rules beside type errors in other mappings and an unknown field",
            "aggregation:
  conflictResolution: priority
  tools:
    - {workload: ok, excludeAll: maybe}
operational:
  failureHandling:
    healthCheckInterval: 5s
    healthCheckTimeout: 5s
    retries: 2
  timeouts: {default: 0s}
",
            &[
                "t.yaml:5: aggregation.conflictResolutionConfig.priorityOrder: conflictResolution priority needs priorityOrder (backend names, most preferred first)",
                "t.yaml:7: aggregation.tools[0].excludeAll: expected a boolean, found a string",
                "t.yaml:11: operational.failureHandling.healthCheckTimeout: must be below healthCheckInterval (5s), or probes would pile up",
                "t.yaml:12: operational.failureHandling.retries: unknown field, expected one of healthCheckInterval",
                "t.yaml:13: operational.timeouts.default: must be above zero",
            ],
        ),
        (
            "a rule about a mapping with an unreadable value waits for the fix",
            "  - name: a
    transport: sse
    url: {host: x}
operational:
  failureHandling:
    healthCheckInterval: soon
    healthCheckTimeout: 40s
",
            // Not "transport sse needs a url" nor "healthCheckTimeout must be
            // below healthCheckInterval (30s)": both would judge a default.
            &[
                "t.yaml:6: backends[1].url: expected a string, found a mapping",
                "t.yaml:9: operational.failureHandling.healthCheckInterval: invalid value \"soon\", expected a duration such as \"500ms\", \"30s\" or \"1m30s\"",
            ],
        ),
        (
            "broken sections, unknown sections and a broken list together",
            "outgoingAuth: 5
aggregation: [prefix]
server: {pageSize: 0, maxRequestBytes: lots}
extra: 1
",
            &[
                "t.yaml:4: outgoingAuth: expected a mapping, found an integer",
                "t.yaml:5: aggregation: expected a mapping, found a list",
                // pageSize: 0 is reported once maxRequestBytes beside it reads.
                "t.yaml:6: server.maxRequestBytes: expected u64, found a string",
                "t.yaml:7: extra: unknown field, expected one of name, groupRef, backends, incomingAuth, outgoingAuth, aggregation, operational, server",
            ],
        ),
    ];
    for (what, tail, want) in cases {
        let text = format!("{head}{tail}");
        let got = match load_str(&text, "t.yaml") {
            Err(ConfigError::Invalid { issues, .. }) => {
                issues.iter().map(|i| i.to_string()).collect::<Vec<_>>()
            }
            other => panic!("{what}: expected issues, got {other:?}"),
        };
        // Each issue in order, starting with the expected text (lists of
        // field names may grow).
        let matches =
            got.len() == want.len() && got.iter().zip(want.iter()).all(|(g, w)| g.starts_with(w));
        assert!(matches, "{what}: got {got:#?}\nwant {want:#?}");
    }
}

/// Values of fields that may hold a secret never appear in an error,
/// whatever is wrong with them; other values are shown where that helps.
#[test]
fn errors_never_show_a_secret_value() {
    const SECRET: &str = "sk-live-4242";
    let auth = |header: &str| {
        format!(
            "name: demo
backends:
  - {{name: a, transport: streamable-http, url: 'http://127.0.0.1:1/mcp'}}
outgoingAuth:
  backends:
    a:
      type: header_injection
      headerInjection:
{header}"
        )
    };
    let backend = |fields: &str| {
        format!(
            "name: demo\nbackends:\n  - name: a\n    transport: stdio\n    command: ./s\n{fields}"
        )
    };
    let cases = [
        (
            "a numeric headerValue",
            auth("        headerName: X-Key\n        headerValue: 4242424242\n"),
            "4242424242",
            "outgoingAuth.backends.a.headerInjection.headerValue: expected a string, found an integer",
        ),
        (
            "a bearer token pasted into headerName",
            auth(&format!(
                "        headerName: Bearer {SECRET}\n        headerValueEnv: KEY\n"
            )),
            SECRET,
            "outgoingAuth.backends.a.headerInjection.headerName: not a valid HTTP header name",
        ),
        (
            "a token as headerValueEnv's value, of the wrong type",
            auth(&format!(
                "        headerName: X-Key\n        headerValueEnv: [{SECRET}]\n"
            )),
            SECRET,
            "outgoingAuth.backends.a.headerInjection.headerValueEnv: expected a string, found a list",
        ),
        (
            "a token pasted into the auth type",
            format!(
                "name: demo\nbackends: [{{name: a, transport: stdio, command: x}}]\noutgoingAuth:\n  default: {{type: {SECRET}}}\n"
            ),
            SECRET,
            "outgoingAuth.default.type: unknown value, expected one of unauthenticated, header_injection",
        ),
        (
            "a numeric API key in a stdio server's env",
            backend("    env: {API_KEY: 4242424242}\n"),
            "4242424242",
            "backends[0].env.API_KEY: expected a string, found an integer",
        ),
        (
            "a token in args",
            backend(&format!("    args: [--token, {{{SECRET}: 1}}]\n")),
            SECRET,
            "backends[0].args[1]: expected a string, found a mapping",
        ),
        (
            "credentials in a url without a scheme",
            format!(
                "name: demo\nbackends:\n  - {{name: a, transport: sse, url: 'admin:{SECRET}@example.com/sse'}}\n"
            ),
            SECRET,
            "backends[0].url: url scheme must be http or https",
        ),
        (
            "a user name in a url read as its scheme",
            format!(
                "name: demo\nbackends:\n  - {{name: a, transport: sse, url: '{SECRET}:pw@example.com/sse'}}\n"
            ),
            SECRET,
            "backends[0].url: url scheme must be http or https",
        ),
    ];
    for (what, text, secret, want) in cases {
        let issues = issues_of(&text);
        assert!(
            issues.iter().any(|i| i.contains(want)),
            "{what}: missing {want:?} in {issues:#?}"
        );
        for issue in &issues {
            assert!(
                !issue.contains(secret),
                "{what}: {issue:?} shows the secret"
            );
        }
    }
}

/// However broken a file is, the report (and the work) is bounded.
#[test]
fn the_report_is_bounded() {
    let mut text = String::from("name: demo\nbackends:\n");
    for i in 0..(vmcp_config::load::MAX_ISSUES + 50) {
        text.push_str(&format!(
            "  - {{name: b{i}, transport: stdio, command: x, bad: 1}}\n"
        ));
    }
    let issues = issues_of(&text);
    assert_eq!(
        issues.len(),
        vmcp_config::load::MAX_ISSUES + 1,
        "{issues:#?}"
    );
    assert!(
        issues
            .last()
            .is_some_and(|i| i.contains("stopped after 100 problems")),
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
fn connection_limits_and_origins_have_safe_defaults_and_are_checked() {
    let config = load_str(
        "name: x\nbackends:\n  - {name: a, transport: streamable-http, url: 'http://127.0.0.1:1/mcp'}\n",
        "t.yaml",
    )
    .expect("valid");
    let connections = &config.server.connections;
    assert_eq!(connections.max, 4096);
    assert_eq!(connections.probe_reserve, 16);
    assert_eq!(connections.header_read_timeout.get().as_secs(), 10);
    assert_eq!(connections.body_read_timeout.get().as_secs(), 30);
    assert_eq!(connections.idle_timeout.get().as_secs(), 60);
    assert!(config.server.allowed_origins.is_empty());

    let text = "\
name: demo
backends:
  - {name: a, transport: streamable-http, url: 'http://127.0.0.1:1/mcp'}
server:
  allowedOrigins:
    - https://app.example.com
    - http://localhost:3000
    - '*'
    - https://app.example.com/path
    - app.example.com
    - ftp://files.example.com
    - https://user:pw@app.example.com
  connections:
    max: 0
    headerReadTimeout: 0s
    idleTimeout: 0s
";
    let issues = issues_of(text);
    let expect = [
        "test.yaml:9: server.allowedOrigins[3]: \"https://app.example.com/path\" is not an origin",
        "test.yaml:10: server.allowedOrigins[4]: \"app.example.com\" is not an origin",
        "test.yaml:11: server.allowedOrigins[5]: \"ftp://files.example.com\" is not an origin",
        "test.yaml:12: server.allowedOrigins[6]:",
        "test.yaml:14: server.connections.max: must be at least 1",
        "test.yaml:15: server.connections.headerReadTimeout: must be above zero",
        "test.yaml:16: server.connections.idleTimeout: must be above zero",
    ];
    for want in expect {
        assert!(
            issues.iter().any(|i| i.starts_with(want)),
            "missing {want:?} in {issues:#?}"
        );
    }
    assert_eq!(issues.len(), expect.len(), "{issues:#?}");
    assert!(
        !issues.iter().any(|i| i.contains("pw@")),
        "an origin with credentials is echoed: {issues:#?}"
    );
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

#[test]
fn incoming_oidc_auth_reads_the_reference_fields() {
    let config = load_str(
        "name: x\nbackends:\n  - {name: a, transport: streamable-http, url: 'http://127.0.0.1:1/mcp'}\n\
         incomingAuth:\n  type: oidc\n  oidc:\n    issuer: https://idp.example/realms/r\n    clientId: vmcp\n    \
         clientSecretEnv: VMCP_SECRET\n    audience: vmcp\n    resource: https://gw.example/mcp\n    \
         scopes: [openid, 'mcp:tools']\n    introspectionUrl: https://idp.example/introspect\n    jwksAllowPrivateIp: true\n",
        "test.yaml",
    )
    .expect("valid");
    let auth = &config.incoming_auth;
    assert_eq!(auth.kind, vmcp_config::IncomingAuthType::Oidc);
    let oidc = auth.oidc.as_ref().expect("oidc section");
    assert_eq!(oidc.resource_indicator(), "https://gw.example/mcp");
    assert_eq!(oidc.scopes, ["openid", "mcp:tools"]);
    assert!(oidc.jwks_allow_private_ip && !oidc.insecure_allow_http);
    let anonymous = load_str(
        "name: x\nbackends:\n  - {name: a, transport: stdio, command: x}\nincomingAuth: {type: anonymous}\n",
        "test.yaml",
    )
    .expect("valid");
    assert_eq!(
        anonymous.incoming_auth.kind,
        vmcp_config::IncomingAuthType::Anonymous
    );
}

#[test]
fn incoming_auth_problems_are_reported_together_without_echoing_urls() {
    let issues = issues_of(
        "name: x\nbackends:\n  - {name: a, transport: stdio, command: x}\n\
         incomingAuth:\n  type: oidc\n  oidc:\n    issuer: 'http://user:hunter2@idp.example/r'\n    audience: ''\n    \
         introspectionUrl: https://idp.example/i\n    clientSecretEnv: 'sk-live secret'\n    caBundlePath: ca.pem\n    \
         scopes: ['two words']\n  authz:\n    type: cedar\n    policies:\n      - 'permit(principal, action, resource);'\n      - \"permit(principal, action, resource)\\nwhen { principal.x == };\"\n      - 'allow(everyone);'\n",
    );
    let text = issues.join("\n");
    for expected in [
        "incomingAuth.oidc.issuer: must use https",
        "incomingAuth.oidc.audience: must not be empty",
        "incomingAuth.oidc.introspectionUrl: token introspection needs clientId and clientSecretEnv",
        "incomingAuth.oidc.clientSecretEnv: must be the name of an environment variable",
        "incomingAuth.oidc.caBundlePath: must be an absolute path",
        "incomingAuth.oidc.scopes[0]: a scope is one word",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
    assert!(
        !text.contains("hunter2") && !text.contains("sk-live"),
        "{text}"
    );
    let issues = issues_of(
        "name: x\nbackends:\n  - {name: a, transport: stdio, command: x}\nincomingAuth: {type: oidc}\n",
    );
    assert!(
        issues
            .iter()
            .any(|i| i.contains("incomingAuth.type: type oidc needs oidc")),
        "{issues:?}"
    );
    let issues = issues_of(
        "name: x\nbackends:\n  - {name: a, transport: stdio, command: x}\n\
         incomingAuth: {type: anonymous, oidc: {issuer: 'https://i', audience: a}}\n",
    );
    assert!(
        issues
            .iter()
            .any(|i| i.contains("incomingAuth.oidc: only used with type oidc")),
        "{issues:?}"
    );
    let issues = issues_of(
        "name: x\nbackends:\n  - {name: a, transport: stdio, command: x}\nincomingAuth: {type: local}\n",
    );
    assert!(
        issues.iter().any(|i| i.contains("incomingAuth.type")),
        "{issues:?}"
    );
}

#[test]
fn token_exchange_reads_the_reference_fields() {
    let config = load_str(
        "name: x\nbackends:\n  - {name: a, transport: streamable-http, url: 'https://a.example/mcp'}\n\
         incomingAuth:\n  type: oidc\n  oidc: {issuer: 'https://idp.example/r', audience: vmcp}\n\
         outgoingAuth:\n  backends:\n    a:\n      type: token_exchange\n      tokenExchange:\n        \
         tokenUrl: https://idp.example/r/token\n        clientId: vmcp\n        clientSecretEnv: VMCP_SECRET\n        \
         audience: a-mcp\n        scopes: [read, write]\n",
        "test.yaml",
    )
    .expect("valid");
    let auth = config.outgoing_auth.for_backend("a").expect("a's auth");
    assert_eq!(auth.kind, vmcp_config::AuthType::TokenExchange);
    let exchange = auth.token_exchange.as_ref().expect("tokenExchange");
    assert_eq!(exchange.audience.as_deref(), Some("a-mcp"));
    assert_eq!(exchange.scopes, ["read", "write"]);
    assert_eq!(exchange.subject_token_type, None);
}

#[test]
fn token_exchange_problems_are_reported_together_without_echoing_secrets() {
    let issues = issues_of(
        "name: x\nbackends:\n  - {name: a, transport: streamable-http, url: 'https://a.example/mcp'}\n\
         outgoingAuth:\n  backends:\n    a:\n      type: token_exchange\n      tokenExchange:\n        \
         tokenUrl: 'http://user:hunter2@idp.example/token'\n        clientSecret: sk-live-1\n        \
         clientSecretEnv: VMCP_SECRET\n        scopes: ['two words']\n        subjectTokenType: jwt\n",
    );
    let text = issues.join("\n");
    for expected in [
        "outgoingAuth.backends.a.tokenExchange.tokenUrl: must use https",
        "outgoingAuth.backends.a.tokenExchange.clientId: required",
        "outgoingAuth.backends.a.tokenExchange: set one of clientSecret and clientSecretEnv, not both",
        "outgoingAuth.backends.a.tokenExchange.scopes[0]: a scope is one word",
        "outgoingAuth.backends.a.tokenExchange.subjectTokenType: must be an RFC 8693 token type",
        "outgoingAuth.backends.a.type: token_exchange exchanges the caller's token: it needs incomingAuth type oidc",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
    assert!(
        !text.contains("hunter2") && !text.contains("sk-live"),
        "{text}"
    );
    let issues = issues_of(
        "name: x\nbackends:\n  - {name: a, transport: streamable-http, url: 'https://a.example/mcp'}\n\
         outgoingAuth:\n  backends:\n    a: {type: token_exchange}\n",
    );
    assert!(
        issues
            .iter()
            .any(|i| i.contains("a.type: type token_exchange needs tokenExchange")),
        "{issues:?}"
    );
}

#[test]
fn a_policies_file_is_checked_when_the_config_file_is_loaded() {
    let dir = std::env::temp_dir().join(format!("vmcp-policies-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let policies = dir.join("policies.cedar");
    std::fs::write(
        &policies,
        "permit(principal, action, resource);\nforbid(principal, action,\n",
    )
    .expect("write policies");
    let config = dir.join("vmcp.yaml");
    let text = |file: &str| {
        format!(
            "name: x\nbackends:\n  - {{name: a, transport: stdio, command: x}}\n\
             incomingAuth:\n  type: oidc\n  oidc: {{issuer: 'https://idp.example/r', audience: vmcp}}\n  \
             authz:\n    type: cedar\n    policiesFile: '{file}'\n"
        )
    };
    std::fs::write(&config, text(&policies.display().to_string())).expect("write config");
    let err = vmcp_config::load_file(&config).expect_err("a broken policy in the file");
    let shown = err.to_string();
    assert!(
        shown.contains("incomingAuth.authz.policiesFile")
            && shown.contains("invalid Cedar policy: line 2"),
        "{shown}"
    );
    // Text alone names the file but does not read it.
    assert!(load_str(&text(&policies.display().to_string()), "t.yaml").is_ok());
    let issues = issues_of(&text("relative.cedar"));
    assert!(
        issues
            .iter()
            .any(|i| i.contains("policiesFile: must be an absolute path")),
        "{issues:?}"
    );
    std::fs::write(&policies, "permit(principal, action, resource);\n").expect("rewrite");
    assert!(vmcp_config::load_file(&config).is_ok());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn audit_is_off_by_default_and_reads_the_reference_fields() {
    let base = "name: x\nbackends:\n  - {name: a, transport: streamable-http, url: 'http://127.0.0.1:1/mcp'}\n";
    let config = load_str(base, "t.yaml").expect("valid");
    assert_eq!(config.audit, None, "no audit section: audit is off");

    let text = format!(
        "{base}audit:\n  component: gw\n  eventTypes: [mcp_tool_call, mcp_prompt_get]\n  excludeEventTypes: [mcp_tools_list]\n  includeRequestData: true\n  maxDataSize: 256\n  logFile: /var/log/vmcp/audit.log\n"
    );
    let audit = load_str(&text, "t.yaml")
        .expect("valid")
        .audit
        .expect("audit section");
    assert!(audit.is_enabled(), "present without enabled: on");
    assert_eq!(audit.component(), "gw");
    assert!(audit.audits(vmcp_config::AuditEventType::McpToolCall));
    assert!(!audit.audits(vmcp_config::AuditEventType::McpToolsList));
    assert!(audit.include_request_data && !audit.include_response_data);
    assert_eq!(audit.max_data_size, 256);
    assert_eq!(audit.log_file.as_deref(), Some("/var/log/vmcp/audit.log"));

    let empty = load_str(&format!("{base}audit: {{}}\n"), "t.yaml")
        .expect("valid")
        .audit
        .expect("audit section");
    assert_eq!(empty.max_data_size, 1024, "the reference's default");
    assert_eq!(empty.component(), "vmcp-server");
}

#[test]
fn audit_problems_are_reported_together_with_their_paths() {
    let text = "\
name: x
backends:
  - {name: a, transport: streamable-http, url: 'http://127.0.0.1:1/mcp'}
audit:
  eventTypes: [mcp_tool_call, mcp_bogus]
  excludeEventTypes: [mcp_tool_call]
  maxDataSize: 0
  logFile: ''
  colour: red
";
    let issues = issues_of(text);
    let expect = [
        "test.yaml:5: audit.eventTypes[1]: ",
        "test.yaml:9: audit.colour: unknown field",
    ];
    for want in expect {
        assert!(
            issues.iter().any(|i| i.starts_with(want)),
            "missing {want:?} in {issues:#?}"
        );
    }
    // With a value left out, the cross-field rules of the section wait for
    // the next run; once the typos are fixed they are all reported.
    let fixed = text
        .replace(", mcp_bogus", "")
        .replace("  colour: red\n", "");
    let issues = issues_of(&fixed);
    let expect = [
        "test.yaml:5: audit.eventTypes[0]: mcp_tool_call is also in excludeEventTypes",
        "test.yaml:7: audit.maxDataSize: must be between 1 and 1048576 bytes",
        "test.yaml:8: audit.logFile: must not be empty",
    ];
    for want in expect {
        assert!(
            issues.iter().any(|i| i.starts_with(want)),
            "missing {want:?} in {issues:#?}"
        );
    }
    assert_eq!(issues.len(), 3, "{issues:#?}");
}
