//! `vmcp serve`: load the config, start the gateway, serve HTTP, and shut
//! down gracefully (drain in-flight calls, close sessions, stop backends).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

use crate::kubernetes::KubernetesMode;
use vmcp_auth::Authenticator;
use vmcp_config::IncomingAuthType;
use vmcp_gateway::audit::AuditSink;
use vmcp_gateway::server::auth::IncomingAuth;
use vmcp_gateway::server::limits::{self, ConnectionLimits};
use vmcp_gateway::server::{HttpOptions, router};
use vmcp_gateway::{Gateway, GatewayOptions};
use vmcp_status::{
    FileReporter, LogReporter, Metrics, MetricsReporter, ProcessEnv, Reporter, ReporterKind,
    ReporterSet, ReportingOptions, StatusSender,
};

/// Time between the last in-flight call finishing and the sessions closing,
/// so its answer is written to the client before the stream ends.
const RESPONSE_FLUSH_GRACE: Duration = Duration::from_millis(500);

/// How often a fresh status is offered to the reporters between changes.
const STATUS_REFRESH: Duration = Duration::from_secs(5);

/// Arguments of `vmcp serve`.
#[derive(Args, Debug)]
pub struct ServeArgs {
    /// The configuration file.
    #[arg(long, short)]
    config: PathBuf,
    /// Address to listen on (loopback by default; use 0.0.0.0 in a container).
    #[arg(long, default_value = "127.0.0.1", env = "VMCP_HOST")]
    host: String,
    /// Port to listen on (0 picks a free one).
    #[arg(long, default_value_t = crate::DEFAULT_PORT, env = "VMCP_PORT")]
    port: u16,
    /// How long to wait for in-flight calls at shutdown.
    #[arg(long, default_value = "30", value_name = "SECONDS")]
    drain_seconds: u64,
    /// Log as JSON lines.
    #[arg(long)]
    log_json: bool,
    /// Where the file reporter writes `<name>.json` (read by `vmcp status`).
    /// Default: $VMCP_STATE_DIR, $XDG_STATE_HOME/vmcp or ~/.local/state/vmcp.
    #[arg(long, env = "VMCP_STATE_DIR")]
    state_dir: Option<PathBuf>,
    /// Status reporters: kubernetes, file, log, none (repeatable or
    /// comma-separated). Default: kubernetes when VMCP_NAME and
    /// VMCP_NAMESPACE are set, else file and log. Metrics are always on.
    #[arg(long = "reporter", value_delimiter = ',')]
    reporters: Vec<vmcp_status::ReporterKind>,
    /// Generation of the configuration (set by the operator), reported as observedGeneration.
    #[arg(long, env = "VMCP_CONFIG_GENERATION")]
    generation: Option<i64>,
    /// Kubernetes: how long the status Lease stays valid without renewal;
    /// a standby replica takes over within this time after the writer dies.
    #[arg(long, env = "VMCP_STATUS_LEASE_SECONDS", default_value_t = 15, value_parser = clap::value_parser!(u64).range(3..=600))]
    status_lease_seconds: u64,
}

/// Client authentication from `incomingAuth` (`None`: anonymous).
fn incoming_auth(config: &vmcp_config::Config) -> anyhow::Result<Option<Arc<IncomingAuth>>> {
    let auth = &config.incoming_auth;
    let (IncomingAuthType::Oidc, Some(oidc)) = (auth.kind, &auth.oidc) else {
        return Ok(None);
    };
    let authenticator = Authenticator::from_config(oidc, |name| std::env::var(name).ok())?;
    tracing::info!(issuer = %oidc.issuer, audience = %oidc.audience, "clients authenticate with bearer tokens (OIDC)");
    Ok(Some(Arc::new(IncomingAuth::new(
        Arc::new(authenticator),
        &config.name,
    ))))
}

/// Runs the gateway until SIGTERM or Ctrl-C.
pub fn run(args: ServeArgs) -> ExitCode {
    let config = match vmcp_config::load_file(&args.config) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("{err}");
            return ExitCode::from(2);
        }
    };
    crate::logging::init(config.operational.log_level.as_deref(), args.log_json);
    crate::allocator::enable_background_purging();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(args, config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!("{err:#}");
            eprintln!("vmcp: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// The audit log, when `audit` is present and enabled; a log file that
/// cannot be opened stops the start.
fn start_audit(config: &vmcp_config::Config) -> anyhow::Result<Option<AuditSink>> {
    let Some(audit) = config.audit.as_ref().filter(|audit| audit.is_enabled()) else {
        return Ok(None);
    };
    let sink = AuditSink::start(audit)?;
    tracing::info!(
        destination = audit.log_file.as_deref().unwrap_or("stdout"),
        "audit log on"
    );
    Ok(Some(sink))
}

async fn serve(args: ServeArgs, config: vmcp_config::Config) -> anyhow::Result<()> {
    // Before anything listens: a missing secret or CA bundle stops the start.
    let incoming_auth = incoming_auth(&config)?;
    let audit = start_audit(&config)?;
    // First, so backends and stdio children start under the raised limit.
    let open_files = limits::raise_open_files_limit();
    let connection_limits = fit_connection_limits(&config, open_files);
    let address: SocketAddr = format!("{}:{}", bracket_ipv6(&args.host), args.port)
        .parse()
        .with_context(|| format!("invalid listen address {}:{}", args.host, args.port))?;
    let listener = tokio::net::TcpListener::bind(address)
        .await
        .with_context(|| format!("cannot listen on {address}"))?;
    let local = listener.local_addr().context("listener has no address")?;

    let mut registry = prometheus_client::registry::Registry::default();
    if let Some(audit) = &audit {
        audit.register(&mut registry);
    }
    let metrics = Metrics::with_registry(registry);
    let (reporting, kubernetes) = start_reporting(&args, &config, &metrics, local).await?;
    // In Kubernetes mode with a group, the backends come from the group's
    // members (plus any listed in the config).
    let group = kubernetes.as_ref().and_then(|_| config.group_ref.clone());
    let gateway = Gateway::start(GatewayOptions {
        config,
        generation: args.generation,
        metrics: Some(metrics.clone()),
        discovery: group.is_some(),
    });
    let discovery_stop = CancellationToken::new();
    if let (Some(kubernetes), Some(group)) = (&kubernetes, group) {
        kubernetes.discover(group, gateway.clone(), discovery_stop.clone());
    }
    let forwarding = tokio::spawn(forward_status(gateway.clone(), reporting.sender()));
    let sessions_cancel = CancellationToken::new();
    let mut http_options = HttpOptions::from_gateway(&gateway, sessions_cancel.clone());
    http_options.metrics = Some(metrics.clone());
    http_options.incoming_auth = incoming_auth;
    http_options.audit = audit.as_ref().map(AuditSink::recorder).unwrap_or_default();
    let app = router(gateway.clone(), http_options);
    tracing::info!(address = %local, backends = gateway.backends().len(), "vmcp listening on http://{local}/mcp");

    // Shutdown order: on a signal, readiness turns 503 (load balancers stop
    // sending) while the server keeps serving; once in-flight calls are done
    // (or the drain time is up) the listener closes and sessions end.
    let draining = CancellationToken::new();
    let closed = CancellationToken::new();
    tokio::spawn(wait_for_signals(draining.clone()));
    let drain = {
        let gateway = gateway.clone();
        let draining = draining.clone();
        let closed = closed.clone();
        let drain_for = Duration::from_secs(args.drain_seconds);
        tokio::spawn(async move {
            draining.cancelled().await;
            gateway.start_draining();
            tracing::info!(
                in_flight = gateway.in_flight(),
                "shutting down: draining in-flight requests"
            );
            if !gateway.drain(drain_for).await {
                tracing::warn!(
                    in_flight = gateway.in_flight(),
                    "drain timed out; ending the remaining calls with an error"
                );
                gateway.abandon_in_flight();
            }
            // Give the last answers a moment to reach their clients, then
            // close the listener and end the event streams.
            tokio::time::sleep(RESPONSE_FLUSH_GRACE).await;
            closed.cancel();
            sessions_cancel.cancel();
        })
    };
    vmcp_gateway::server::listener::serve(
        listener,
        app,
        connection_limits,
        Some(metrics),
        async move { closed.cancelled().await },
    )
    .await;
    let _ = drain.await;
    discovery_stop.cancel();
    gateway.shutdown().await;
    forwarding.abort();
    reporting.shutdown(Some(gateway.current_status())).await;
    if let Some(kubernetes) = kubernetes {
        // After the final write, so the next writer starts from it.
        kubernetes.lease.release().await;
    }
    tracing::info!("vmcp stopped");
    Ok(())
}

/// The configured connection limits, lowered (and logged) to leave spare
/// descriptors below the open-files limit.
fn fit_connection_limits(
    config: &vmcp_config::Config,
    open_files: Option<limits::OpenFiles>,
) -> ConnectionLimits {
    let mut connection_limits = ConnectionLimits::from_config(&config.server);
    let configured = connection_limits.clone();
    let limit = open_files.and_then(|o| o.limit());
    if connection_limits.fit_to(limit) {
        tracing::warn!(
            configured_max = configured.max_connections,
            configured_probe_reserve = configured.probe_reserve,
            max = connection_limits.max_connections,
            probe_reserve = connection_limits.probe_reserve,
            open_files_limit = limit,
            "server.connections lowered to leave descriptors for backends and the state file"
        );
    }
    connection_limits
}

/// Builds the reporters the environment or `--reporter` asks for; in
/// Kubernetes mode also the connection to the API server.
async fn start_reporting(
    args: &ServeArgs,
    config: &vmcp_config::Config,
    metrics: &Metrics,
    local: SocketAddr,
) -> anyhow::Result<(ReporterSet, Option<KubernetesMode>)> {
    let heartbeat = config
        .operational
        .failure_handling
        .status_reporting_interval
        .get();
    let selection = vmcp_status::select(&ProcessEnv, &args.reporters);
    let mut reporters: Vec<Arc<dyn Reporter>> =
        vec![Arc::new(MetricsReporter::new(metrics.clone()))];
    let mut kubernetes = None;
    for kind in &selection.kinds {
        match kind {
            ReporterKind::File => {
                let dir = args
                    .state_dir
                    .clone()
                    .or_else(|| vmcp_status::default_state_dir(&ProcessEnv))
                    .context("no state directory: pass --state-dir or set VMCP_STATE_DIR")?;
                let address = format!("http://{local}/mcp");
                let file = FileReporter::new(dir, &config.name, heartbeat, Some(address))
                    .context("cannot prepare the status file")?;
                if file.instance() > 1 {
                    tracing::warn!(path = %file.path().display(), "another running gateway named {:?} reports to this state directory; this one reports to its own file (see `vmcp status`)", config.name);
                }
                tracing::info!(path = %file.path().display(), "status file");
                reporters.push(Arc::new(file));
            }
            ReporterKind::Log => reporters.push(Arc::new(LogReporter::new())),
            ReporterKind::Kubernetes => {
                let target = selection.kubernetes.clone().context(
                    "the kubernetes reporter needs VMCP_NAME and VMCP_NAMESPACE (the VirtualMCPServer to report to)",
                )?;
                let lease = Duration::from_secs(args.status_lease_seconds);
                match KubernetesMode::start(target, lease).await {
                    Ok(mode) => {
                        reporters.push(Arc::new(mode.reporter.clone()));
                        kubernetes = Some(mode);
                    }
                    Err(err) => {
                        // No configuration at all cannot fix itself; keep
                        // serving (no crash loop) and say so loudly.
                        tracing::error!(
                            "cannot reach Kubernetes, reporting status to the log instead: {:#}",
                            anyhow::Error::new(err)
                        );
                        reporters.push(Arc::new(LogReporter::new()));
                    }
                }
            }
            ReporterKind::None => {}
        }
    }
    let set = ReporterSet::start(
        reporters,
        ReportingOptions::new(heartbeat).with_metrics(metrics.clone()),
    );
    Ok((set, kubernetes))
}

/// Sends every status change to the reporters, and a fresh status (current
/// health-check times) now and then so heartbeats carry current data;
/// unchanged content costs no write.
async fn forward_status(gateway: Arc<Gateway>, sender: StatusSender) {
    let mut changes = gateway.subscribe_status();
    let mut refresh = tokio::time::interval(STATUS_REFRESH);
    loop {
        tokio::select! {
            changed = changes.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            _ = refresh.tick() => {}
        }
        sender.report(gateway.current_status());
    }
}

fn bracket_ipv6(host: &str) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

async fn wait_for_signals(stop: CancellationToken) {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(err) => {
                tracing::warn!("cannot listen for SIGTERM: {err}");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        _ = terminate => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    stop.cancel();
    // A second signal means "now".
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async {
            if let Ok(mut signal) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                signal.recv().await;
            } else {
                std::future::pending::<()>().await;
            }
        } => {}
    }
    tracing::warn!("second signal: exiting immediately");
    std::process::exit(130);
}
