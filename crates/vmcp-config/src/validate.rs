//! Cross-field rules of the configuration that serde cannot express.
//!
//! [`validate`] is pure: it returns every broken rule as a field path and a
//! message, and [`crate::load`] turns those into located issues.

use std::collections::{BTreeMap, BTreeSet};

use crate::audit::AuditConfig;
use crate::field_path;
use crate::incoming_auth::{AuthzType, IncomingAuth, IncomingAuthType, OidcConfig};
use crate::load::FieldPath;
use crate::model::{
    AuthType, BackendAuth, Config, ConflictResolution, ServerSettings, TokenExchange, TransportKind,
};

const LOG_LEVELS: &[&str] = &["trace", "debug", "info", "warn", "error"];

/// Checks `config`; `known_backends` are the backend names written in the
/// file (including backends that failed to parse, so they are not reported
/// again as unknown references).
pub fn validate(config: &Config, known_backends: &BTreeSet<String>) -> Vec<(FieldPath, String)> {
    let mut issues = Vec::new();
    let mut say = |path: FieldPath, message: String| issues.push((path, message));
    // With discovery from a group, backends may be named that this file does not list.
    let discovered = config.group_ref.is_some();
    let is_known = |name: &str| discovered || known_backends.contains(name);

    if config.name.trim().is_empty() {
        say(field_path!["name"], "must not be empty".into());
    }
    if config.backends.is_empty() && known_backends.is_empty() && !discovered {
        say(
            field_path!["backends"],
            "no backends: list at least one, or set groupRef for discovery".into(),
        );
    }

    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for (index, backend) in config.backends.iter().enumerate() {
        let at = field_path!["backends", index];
        if !is_valid_name(&backend.name) {
            say(
                at.join("name"),
                format!(
                    "invalid backend name {:?}: use 1-63 characters of a-z, A-Z, 0-9, '-' and '_', starting with a letter or digit",
                    backend.name
                ),
            );
        }
        if let Some(first) = seen.insert(&backend.name, index) {
            say(
                at.join("name"),
                format!(
                    "duplicate backend name {:?} (also backends[{first}])",
                    backend.name
                ),
            );
        }
        match backend.transport {
            TransportKind::StreamableHttp | TransportKind::Sse => {
                match &backend.url {
                    None => say(
                        at.join("transport"),
                        format!("transport {} needs a url", backend.transport.as_str()),
                    ),
                    Some(url) => {
                        if let Err(problem) = check_http_url(url) {
                            say(at.join("url"), problem);
                        }
                    }
                }
                if backend.command.is_some() {
                    say(
                        at.join("command"),
                        "command is only for transport stdio".into(),
                    );
                }
                if !backend.args.is_empty() || !backend.env.is_empty() {
                    say(
                        at.join("args"),
                        "args and env are only for transport stdio".into(),
                    );
                }
            }
            TransportKind::Stdio => {
                match &backend.command {
                    None => say(
                        at.join("transport"),
                        "transport stdio needs a command".into(),
                    ),
                    Some(command) if command.trim().is_empty() => {
                        say(at.join("command"), "must not be empty".into())
                    }
                    Some(_) => {}
                }
                if backend.url.is_some() {
                    say(
                        at.join("url"),
                        "url is not used with transport stdio; remove it".into(),
                    );
                }
            }
        }
    }

    check_incoming_auth(&config.incoming_auth, &mut say);
    let auth = &config.outgoing_auth;
    if let Some(default) = &auth.default {
        check_auth(
            default,
            &config.incoming_auth,
            field_path!["outgoingAuth", "default"],
            &mut say,
        );
    }
    for (name, backend_auth) in &auth.backends {
        let at = field_path!["outgoingAuth", "backends", name.as_str()];
        if !is_known(name) {
            say(at.clone(), format!("unknown backend {name:?}"));
        }
        check_auth(backend_auth, &config.incoming_auth, at, &mut say);
    }

    let aggregation = &config.aggregation;
    let resolution = &aggregation.conflict_resolution_config;
    if let Some(format) = &resolution.prefix_format
        && !format.contains("{workload}")
    {
        say(
            field_path!["aggregation", "conflictResolutionConfig", "prefixFormat"],
            "must contain {workload}".into(),
        );
    }
    if aggregation.conflict_resolution == ConflictResolution::Priority
        && resolution.priority_order.is_empty()
    {
        say(
            field_path!["aggregation", "conflictResolutionConfig", "priorityOrder"],
            "conflictResolution priority needs priorityOrder (backend names, most preferred first)"
                .into(),
        );
    }
    for (index, name) in resolution.priority_order.iter().enumerate() {
        if !is_known(name) {
            say(
                field_path![
                    "aggregation",
                    "conflictResolutionConfig",
                    "priorityOrder",
                    index
                ],
                format!("unknown backend {name:?}"),
            );
        }
    }
    let mut configured = BTreeSet::new();
    for (index, tools) in aggregation.tools.iter().enumerate() {
        let at = field_path!["aggregation", "tools", index];
        if !is_known(&tools.workload) {
            say(
                at.join("workload"),
                format!("unknown backend {:?}", tools.workload),
            );
        }
        if !configured.insert(tools.workload.as_str()) {
            say(
                at.join("workload"),
                format!("backend {:?} is configured twice", tools.workload),
            );
        }
        for (tool, override_) in &tools.overrides {
            if override_
                .name
                .as_deref()
                .is_some_and(|n| n.trim().is_empty())
            {
                say(
                    at.join("overrides").join(tool.as_str()).join("name"),
                    "must not be empty".into(),
                );
            }
        }
    }

    let operational = &config.operational;
    if let Some(level) = &operational.log_level
        && !LOG_LEVELS.contains(&level.as_str())
    {
        say(
            field_path!["operational", "logLevel"],
            format!(
                "unknown log level {level:?}, expected one of {}",
                LOG_LEVELS.join(", ")
            ),
        );
    }
    if operational.timeouts.default.get().is_zero() {
        say(
            field_path!["operational", "timeouts", "default"],
            "must be above zero".into(),
        );
    }
    for (name, timeout) in &operational.timeouts.per_workload {
        let at = field_path!["operational", "timeouts", "perWorkload", name.as_str()];
        if !is_known(name) {
            say(at.clone(), format!("unknown backend {name:?}"));
        }
        if timeout.get().is_zero() {
            say(at, "must be above zero".into());
        }
    }
    let failure = &operational.failure_handling;
    let fh = |field: &str| field_path!["operational", "failureHandling", field];
    if failure.health_check_interval.get().is_zero() {
        say(fh("healthCheckInterval"), "must be above zero".into());
    }
    if failure.health_check_timeout.get().is_zero() {
        say(fh("healthCheckTimeout"), "must be above zero".into());
    } else if failure.health_check_timeout >= failure.health_check_interval {
        say(
            fh("healthCheckTimeout"),
            format!(
                "must be below healthCheckInterval ({}), or probes would pile up",
                failure.health_check_interval
            ),
        );
    }
    if failure.unhealthy_threshold == 0 {
        say(fh("unhealthyThreshold"), "must be at least 1".into());
    }
    if failure.status_reporting_interval.get().is_zero() {
        say(fh("statusReportingInterval"), "must be above zero".into());
    }
    if failure.circuit_breaker.failure_threshold == 0 {
        say(
            field_path![
                "operational",
                "failureHandling",
                "circuitBreaker",
                "failureThreshold"
            ],
            "must be at least 1".into(),
        );
    }
    if failure.circuit_breaker.timeout.get().is_zero() {
        say(
            field_path![
                "operational",
                "failureHandling",
                "circuitBreaker",
                "timeout"
            ],
            "must be above zero".into(),
        );
    }

    let server = &config.server;
    if server.max_request_bytes < 1024 {
        say(
            field_path!["server", "maxRequestBytes"],
            "must be at least 1024".into(),
        );
    }
    if server.page_size == 0 {
        say(
            field_path!["server", "pageSize"],
            "must be at least 1".into(),
        );
    }
    check_origins(&server.allowed_origins, &mut say);
    check_connections(&server.connections, &mut say);
    check_session_limits(server, &mut say);
    if let Some(audit) = &config.audit {
        check_audit(audit, &mut say);
    }
    issues
}

/// `audit`: a bounded data size, a usable file path, a component name.
fn check_audit(audit: &AuditConfig, say: &mut impl FnMut(FieldPath, String)) {
    let at = |field: &str| field_path!["audit", field];
    if audit.max_data_size == 0 || audit.max_data_size > AuditConfig::MAX_DATA_SIZE_LIMIT {
        say(
            at("maxDataSize"),
            format!(
                "must be between 1 and {} bytes",
                AuditConfig::MAX_DATA_SIZE_LIMIT
            ),
        );
    }
    if let Some(file) = &audit.log_file {
        if file.trim().is_empty() {
            say(
                at("logFile"),
                "must not be empty (leave it out to write to stdout)".into(),
            );
        } else if file.ends_with('/') {
            say(at("logFile"), "must name a file, not a directory".into());
        }
    }
    if audit
        .component
        .as_deref()
        .is_some_and(|component| component.trim().is_empty())
    {
        say(at("component"), "must not be empty".into());
    }
    for (index, kind) in audit.event_types.iter().enumerate() {
        if audit.exclude_event_types.contains(kind) {
            say(
                field_path!["audit", "eventTypes", index],
                format!(
                    "{} is also in excludeEventTypes, which wins: list it in one of them",
                    kind.as_str()
                ),
            );
        }
    }
}

/// `server.allowedOrigins`: `*` or bare origins (`scheme://host[:port]`).
fn check_origins(origins: &[String], say: &mut impl FnMut(FieldPath, String)) {
    const EXPECTED: &str = "expected an origin like \"https://app.example.com\" or \"http://localhost:3000\" (scheme, host and optional port only), or \"*\"";
    for (index, origin) in origins.iter().enumerate() {
        if origin == "*" {
            continue;
        }
        let at = field_path!["server", "allowedOrigins", index];
        match url::Url::parse(origin) {
            Ok(url) if !url.username().is_empty() || url.password().is_some() => {
                // Never echo a value that carries credentials.
                say(at, format!("must not contain credentials; {EXPECTED}"));
            }
            Ok(url)
                if matches!(url.scheme(), "http" | "https")
                    && url.host().is_some()
                    && url.path() == "/"
                    && url.query().is_none()
                    && url.fragment().is_none() => {}
            _ => say(at, format!("{origin:?} is not an origin: {EXPECTED}")),
        }
    }
}

/// `server.connections`: every limit must allow something.
fn check_connections(
    connections: &crate::model::ConnectionSettings,
    say: &mut impl FnMut(FieldPath, String),
) {
    let at = |field: &str| field_path!["server", "connections", field];
    if connections.max == 0 {
        say(at("max"), "must be at least 1".into());
    }
    for (field, value) in [
        ("headerReadTimeout", connections.header_read_timeout),
        ("bodyReadTimeout", connections.body_read_timeout),
        ("idleTimeout", connections.idle_timeout),
    ] {
        if value.get().is_zero() {
            say(at(field), "must be above zero".into());
        }
    }
}

/// The request-path bounds and session limits of `server`.
fn check_session_limits(server: &ServerSettings, say: &mut impl FnMut(FieldPath, String)) {
    if server.max_uri_bytes < 256 {
        say(
            field_path!["server", "maxUriBytes"],
            "must be at least 256".into(),
        );
    }
    if server.max_sessions == 0 {
        say(
            field_path!["server", "maxSessions"],
            "must be at least 1".into(),
        );
    }
    if server.max_sessions_per_client == 0 {
        say(
            field_path!["server", "maxSessionsPerClient"],
            "must be at least 1".into(),
        );
    } else if server.max_sessions_per_client > server.max_sessions {
        say(
            field_path!["server", "maxSessionsPerClient"],
            format!(
                "must not exceed server.maxSessions ({})",
                server.max_sessions
            ),
        );
    }
    if server.session_idle_timeout.get() < std::time::Duration::from_secs(1) {
        say(
            field_path!["server", "sessionIdleTimeout"],
            "must be at least 1s".into(),
        );
    }
}

/// `incomingAuth`: the settings its `type` needs, and nothing it would ignore.
fn check_incoming_auth(auth: &IncomingAuth, say: &mut impl FnMut(FieldPath, String)) {
    let at = |field: &str| field_path!["incomingAuth", field];
    match (auth.kind, &auth.oidc) {
        (IncomingAuthType::Anonymous, Some(_)) => say(
            at("oidc"),
            "only used with type oidc; with type anonymous every client is served, so set type: oidc or remove oidc".into(),
        ),
        (IncomingAuthType::Oidc, None) => say(
            at("type"),
            "type oidc needs oidc {issuer, audience}".into(),
        ),
        (IncomingAuthType::Oidc, Some(oidc)) => check_oidc(oidc, say),
        (IncomingAuthType::Anonymous, None) => {}
    }
    if let Some(authz) = &auth.authz {
        let at = field_path!["incomingAuth", "authz"];
        match authz.kind {
            AuthzType::Cedar if auth.kind == IncomingAuthType::Anonymous => say(
                at.join("type"),
                "cedar policies need a verified caller: use incomingAuth type oidc".into(),
            ),
            AuthzType::Cedar if authz.policies.is_empty() && authz.policies_file.is_none() => say(
                at.join("policies"),
                "type cedar needs at least one policy, in policies or policiesFile (without one, every request is denied)"
                    .into(),
            ),
            AuthzType::Cedar => {
                for (index, problem) in check_cedar_policies(&authz.policies) {
                    say(at.join("policies").join(index), problem);
                }
                if let Some(file) = &authz.policies_file
                    && !std::path::Path::new(file).is_absolute()
                {
                    say(at.join("policiesFile"), "must be an absolute path".into());
                }
            }
            AuthzType::None if !authz.policies.is_empty() || authz.policies_file.is_some() => {
                say(at.join("policies"), "only used with type cedar".into())
            }
            AuthzType::None => {}
        }
    }
}

/// The problems of `incomingAuth.authz.policiesFile`'s content (reads the file).
pub fn policy_file_problems(config: &Config) -> Vec<(FieldPath, String)> {
    let Some(file) = config
        .incoming_auth
        .authz
        .as_ref()
        .filter(|authz| authz.kind == AuthzType::Cedar)
        .and_then(|authz| authz.policies_file.as_ref())
        .filter(|file| std::path::Path::new(file).is_absolute())
    else {
        return Vec::new();
    };
    let at = field_path!["incomingAuth", "authz", "policiesFile"];
    match std::fs::read_to_string(file) {
        Err(err) => vec![(at, format!("cannot read {file}: {err}"))],
        Ok(text) => check_cedar_policies(&[text])
            .into_iter()
            .map(|(_, problem)| (at.clone(), format!("{file}: {problem}")))
            .collect(),
    }
}

/// Every problem of each Cedar policy text (by index), with its line and
/// column in that text.
pub fn check_cedar_policies(texts: &[String]) -> Vec<(usize, String)> {
    use miette::Diagnostic;
    let mut problems = Vec::new();
    for (index, text) in texts.iter().enumerate() {
        if text.trim().is_empty() {
            problems.push((index, "an empty policy text".into()));
            continue;
        }
        let Err(errors) = text.parse::<cedar_policy::PolicySet>() else {
            continue;
        };
        for error in errors.iter() {
            let at = error
                .labels()
                .and_then(|mut labels| labels.next())
                .map(|label| {
                    let before = &text[..label.offset().min(text.len())];
                    let line = before.matches('\n').count() + 1;
                    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
                    format!("line {line}, column {column}: ")
                })
                .unwrap_or_default();
            problems.push((index, format!("invalid Cedar policy: {at}{error}")));
        }
    }
    problems
}

/// `incomingAuth.oidc`. URLs are never echoed (they may carry credentials).
fn check_oidc(oidc: &OidcConfig, say: &mut impl FnMut(FieldPath, String)) {
    let at = |field: &str| field_path!["incomingAuth", "oidc", field];
    let urls = [
        ("issuer", Some(&oidc.issuer)),
        ("jwksUrl", oidc.jwks_url.as_ref()),
        ("introspectionUrl", oidc.introspection_url.as_ref()),
    ];
    for (field, url) in urls {
        let Some(url) = url else { continue };
        if let Err(problem) = check_http_url(url) {
            say(at(field), problem);
        } else if url::Url::parse(url).is_ok_and(|url| url.scheme() == "http")
            && !oidc.insecure_allow_http
        {
            say(
                at(field),
                "must use https (set insecureAllowHttp: true for local development only)".into(),
            );
        }
    }
    if oidc.audience.trim().is_empty() {
        say(at("audience"), "must not be empty".into());
    }
    if let Some(resource) = &oidc.resource
        && let Err(problem) = check_http_url(resource)
    {
        say(
            at("resource"),
            format!("must be this endpoint's URL: {problem}"),
        );
    }
    if oidc.introspection_url.is_some()
        && (oidc.client_id.is_none() || oidc.client_secret_env.is_none())
    {
        say(
            at("introspectionUrl"),
            "token introspection needs clientId and clientSecretEnv".into(),
        );
    }
    if let Some(env) = &oidc.client_secret_env
        && !is_env_name(env)
    {
        say(
            at("clientSecretEnv"),
            "must be the name of an environment variable (letters, digits and '_'), not the secret itself".into(),
        );
    }
    if let Some(path) = &oidc.ca_bundle_path
        && !std::path::Path::new(path).is_absolute()
    {
        say(at("caBundlePath"), "must be an absolute path".into());
    }
    for (index, scope) in oidc.scopes.iter().enumerate() {
        if scope.is_empty()
            || scope
                .chars()
                .any(|c| c.is_whitespace() || c == '"' || c == '\\')
        {
            say(
                field_path!["incomingAuth", "oidc", "scopes", index],
                "a scope is one word without spaces, quotes or backslashes".into(),
            );
        }
    }
}

/// An environment variable name as shells accept it.
fn is_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn check_auth(
    auth: &BackendAuth,
    incoming: &IncomingAuth,
    at: FieldPath,
    say: &mut impl FnMut(FieldPath, String),
) {
    if auth.token_exchange.is_some() && auth.kind != AuthType::TokenExchange {
        say(
            at.join("tokenExchange"),
            "only used with type token_exchange".into(),
        );
    }
    if auth.kind == AuthType::TokenExchange {
        match &auth.token_exchange {
            None => say(
                at.join("type"),
                "type token_exchange needs tokenExchange {tokenUrl, clientId, clientSecretEnv, audience}".into(),
            ),
            Some(exchange) => check_token_exchange(exchange, incoming, at.join("tokenExchange"), say),
        }
        if incoming.kind != IncomingAuthType::Oidc {
            say(
                at.join("type"),
                "token_exchange exchanges the caller's token: it needs incomingAuth type oidc"
                    .into(),
            );
        }
    }
    match (auth.kind, &auth.header_injection) {
        (AuthType::Unauthenticated | AuthType::TokenExchange, Some(_)) => say(
            at.join("headerInjection"),
            "only used with type header_injection".into(),
        ),
        (AuthType::HeaderInjection, None) => say(
            at.join("type"),
            "type header_injection needs headerInjection {headerName, headerValue or headerValueEnv}".into(),
        ),
        (AuthType::HeaderInjection, Some(header)) => {
            let at = at.join("headerInjection");
            if http::HeaderName::from_bytes(header.header_name.as_bytes()).is_err() {
                // Never echoed: a token pasted here by mistake is a secret (see `crate::secret`).
                say(at.join("headerName"), "not a valid HTTP header name (letters, digits and !#$%&'*+-.^_`|~ only)".into());
            }
            match (&header.header_value, &header.header_value_env) {
                (Some(_), Some(_)) | (None, None) => say(
                    at,
                    "set exactly one of headerValue and headerValueEnv".into(),
                ),
                (Some(value), None) if http::HeaderValue::from_str(value).is_err() => {
                    say(at.join("headerValue"), "not a valid HTTP header value".into())
                }
                _ => {}
            }
        }
        (AuthType::Unauthenticated | AuthType::TokenExchange, None) => {}
    }
}

fn check_token_exchange(
    exchange: &TokenExchange,
    incoming: &IncomingAuth,
    at: FieldPath,
    say: &mut impl FnMut(FieldPath, String),
) {
    let insecure_allowed = incoming
        .oidc
        .as_ref()
        .is_some_and(|oidc| oidc.insecure_allow_http);
    match url::Url::parse(&exchange.token_url) {
        Err(_) => say(at.join("tokenUrl"), "invalid url".into()),
        Ok(url) if !matches!(url.scheme(), "http" | "https") || url.host().is_none() => say(
            at.join("tokenUrl"),
            "must be an https url with a host".into(),
        ),
        Ok(url) if url.scheme() == "http" && !insecure_allowed => say(
            at.join("tokenUrl"),
            "must use https: it receives the client secret and callers' tokens (incomingAuth.oidc.insecureAllowHttp: true allows http for local development)".into(),
        ),
        Ok(_) => {}
    }
    if exchange
        .client_id
        .as_deref()
        .is_none_or(|id| id.trim().is_empty())
    {
        say(
            at.join("clientId"),
            "required: the gateway authenticates to the token endpoint as this client".into(),
        );
    }
    match (&exchange.client_secret, &exchange.client_secret_env) {
        (Some(_), Some(_)) => say(
            at.clone(),
            "set one of clientSecret and clientSecretEnv, not both".into(),
        ),
        (None, None) => say(
            at.join("clientSecretEnv"),
            "required (or clientSecret): the name of an environment variable holding the client secret".into(),
        ),
        (None, Some(var)) if !is_env_name(var) => say(
            at.join("clientSecretEnv"),
            "must be an environment variable name (letters, digits, _)".into(),
        ),
        _ => {}
    }
    if exchange
        .audience
        .as_deref()
        .is_some_and(|aud| aud.trim().is_empty())
    {
        say(at.join("audience"), "must not be empty when set".into());
    }
    for (index, scope) in exchange.scopes.iter().enumerate() {
        if scope.is_empty() || scope.contains(char::is_whitespace) {
            say(
                at.join("scopes").join(index),
                "a scope is one word, without spaces".into(),
            );
        }
    }
    if let Some(kind) = &exchange.subject_token_type
        && !kind.starts_with("urn:ietf:params:oauth:token-type:")
    {
        say(
            at.join("subjectTokenType"),
            "must be an RFC 8693 token type, e.g. urn:ietf:params:oauth:token-type:access_token"
                .into(),
        );
    }
}

fn check_http_url(text: &str) -> Result<(), String> {
    let url = url::Url::parse(text).map_err(|err| format!("invalid url: {err}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        // The url is not echoed, not even its scheme: `user:password@host`
        // without a scheme reads as scheme `user` (see `crate::secret`).
        return Err("url scheme must be http or https".into());
    }
    if url.host().is_none() {
        return Err("url needs a host".into());
    }
    Ok(())
}

/// Backend names: letters, digits, `-` and `_`, 1-63 characters, so they are
/// safe in tool prefixes, metric labels and Kubernetes object names.
pub fn is_valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric())
        && name.len() <= 63
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}
