//! `vmcp-operator`: flags, client, leader election, controllers, and the
//! `/healthz`, `/readyz`, `/metrics` endpoints.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use clap::Parser;
use prometheus_client::registry::Registry;
use tracing::{info, warn};
use vmcp_kube::lease::{LeaseElector, LeaseOptions};
use vmcp_operator::controller::{self, Context};
use vmcp_operator::metrics::Metrics;
use vmcp_operator::settings::{DEFAULT_RUNTIME_IMAGE, Settings};

/// Provisions each VirtualMCPServer (RBAC, ConfigMap, Deployment, Service)
/// and reports the infrastructure conditions; the runtime reports the rest.
#[derive(Debug, Parser)]
#[command(name = "vmcp-operator", version)]
struct Args {
    /// Watch only this namespace (default: all namespaces).
    #[arg(long, env = "VMCP_OPERATOR_NAMESPACE")]
    namespace: Option<String>,
    /// The vmcp image the gateways run.
    #[arg(long, env = "VMCP_RUNTIME_IMAGE", default_value = DEFAULT_RUNTIME_IMAGE)]
    runtime_image: String,
    /// imagePullPolicy of the gateway container.
    #[arg(
        long,
        env = "VMCP_RUNTIME_IMAGE_PULL_POLICY",
        default_value = "IfNotPresent"
    )]
    image_pull_policy: String,
    /// The cluster's DNS domain (status.url, accepted Host names).
    #[arg(long, default_value = "cluster.local")]
    cluster_domain: String,
    /// Address of /healthz, /readyz and /metrics.
    #[arg(
        long,
        env = "VMCP_OPERATOR_HEALTH_ADDR",
        default_value = "127.0.0.1:8081"
    )]
    health_addr: SocketAddr,
    /// Elect one active replica with a coordination.k8s.io Lease.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    leader_elect: bool,
    /// Name of the leader-election Lease.
    #[arg(long, default_value = "vmcp-operator")]
    lease_name: String,
    /// Namespace of the Lease (default: --namespace, else POD_NAMESPACE, else `default`).
    #[arg(long, env = "POD_NAMESPACE")]
    lease_namespace: Option<String>,
    /// Validity of the Lease in seconds.
    #[arg(long, default_value_t = 15, value_parser = clap::value_parser!(u64).range(3..=600))]
    lease_seconds: u64,
    /// This replica's identity (default: POD_NAME, else the host name).
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// Log as JSON lines.
    #[arg(long)]
    log_json: bool,
}

#[derive(Clone)]
struct Health {
    registry: Arc<Registry>,
    ready: Arc<AtomicBool>,
}

async fn healthz() -> &'static str {
    "ok"
}

async fn readyz(State(health): State<Health>) -> impl IntoResponse {
    if health.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "starting")
    }
}

async fn metrics_text(State(health): State<Health>) -> impl IntoResponse {
    let mut out = String::new();
    match prometheus_client::encoding::text::encode(&mut out, &health.registry) {
        Ok(()) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            out,
        ),
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "text/plain")],
            String::new(),
        ),
    }
}

fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn terminated() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "vmcp-operator".to_string())
}

/// A client from the environment (in-cluster account, else `KUBECONFIG`).
/// Unlike the runtime's, reads keep kube's long default timeout: the
/// controllers' watches stay open for minutes, and a short read timeout
/// would cut them every few seconds (events missed during the re-list
/// backoff).
async fn connect() -> anyhow::Result<kube::Client> {
    let mut config = kube::Config::infer()
        .await
        .context("no Kubernetes configuration (in-cluster account or KUBECONFIG)")?;
    config.connect_timeout = Some(Duration::from_secs(5));
    kube::Client::try_from(config).context("building the Kubernetes client")
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    init_logging(args.log_json);
    let client = connect().await?;

    let metrics = Metrics::default();
    let mut registry = Registry::default();
    metrics.register(&mut registry);
    let health = Health {
        registry: Arc::new(registry),
        ready: Arc::new(AtomicBool::new(false)),
    };
    let app = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state(health.clone());
    let listener = tokio::net::TcpListener::bind(args.health_addr)
        .await
        .with_context(|| format!("binding {}", args.health_addr))?;
    info!(addr = %args.health_addr, "health and metrics endpoints");
    tokio::spawn(async move {
        if let Err(error) = axum::serve(listener, app).await {
            warn!(error = %error, "health endpoint stopped");
        }
    });

    let identity = args.identity.clone().unwrap_or_else(hostname);
    let settings = Settings {
        runtime_image: args.runtime_image.clone(),
        image_pull_policy: args.image_pull_policy.clone(),
        cluster_domain: args.cluster_domain.clone(),
        ..Settings::default()
    };
    let ctx = Arc::new(Context::new(
        client.clone(),
        settings,
        metrics,
        identity.clone(),
    ));

    let lease = if args.leader_elect {
        let namespace = args
            .lease_namespace
            .clone()
            .or_else(|| args.namespace.clone())
            .unwrap_or_else(|| "default".to_string());
        let options = LeaseOptions::new(
            args.lease_name.clone(),
            namespace,
            identity.clone(),
            Duration::from_secs(args.lease_seconds),
        );
        let handle = LeaseElector::start(client.clone(), options);
        // A standby is healthy and ready: it is waiting by design.
        health.ready.store(true, Ordering::Relaxed);
        let mut leadership = handle.leadership();
        info!(identity = %identity, "waiting for the leader-election Lease");
        tokio::select! {
            changed = leadership.wait_for(|leading| *leading) => {
                changed.context("the Lease election stopped")?;
            }
            () = terminated() => {
                handle.release().await;
                return Ok(());
            }
        }
        info!(identity = %identity, "leading");
        Some((handle, leadership))
    } else {
        health.ready.store(true, Ordering::Relaxed);
        None
    };

    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<&'static str>();
    let watcher = tokio::spawn({
        let leadership = lease.as_ref().map(|(_, l)| l.clone());
        async move {
            let lost = async move {
                match leadership {
                    Some(mut leadership) => {
                        let _ = leadership.wait_for(|leading| !*leading).await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            let why = tokio::select! {
                () = terminated() => "terminated",
                () = lost => "lost the Lease",
            };
            let _ = stop_tx.send(why);
        }
    });
    let (why_tx, why_rx) = tokio::sync::oneshot::channel();
    let shutdown = async move {
        let why = stop_rx.await.unwrap_or("terminated");
        let _ = why_tx.send(why);
    };
    controller::run(ctx, args.namespace.clone(), shutdown).await;
    watcher.abort();
    let why = why_rx.await.unwrap_or("terminated");
    if let Some((handle, _)) = lease {
        handle.release().await;
    }
    if why == "lost the Lease" {
        anyhow::bail!("lost the leader-election Lease; exiting so a restart rejoins the election");
    }
    info!("stopped");
    Ok(())
}
