//! One measured run: open the sessions, warm them up, then drive
//! `tools/call` of the echo tool from every session at once, each call with
//! its own argument and its answer checked, timing every call.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use rmcp::ServiceExt as _;
use rmcp::model::{CallToolRequestParams, ClientConfig, Implementation, ProtocolVersion};
use rmcp::service::{RoleClient, RunningService};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use tokio::task::JoinSet;

use crate::issuer::BenchIssuer;
use crate::procs::{BACKEND_NAME, CpuSampler, CpuSeconds};

/// Least warm-up calls per session.
const MIN_WARMUP_PER_SESSION: usize = 20;
/// A call not answered within this fails the run (and ends its session's loop).
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the calls go.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Target {
    /// Straight to the example server.
    Direct,
    /// Through vmcp.
    Gateway,
}

impl Target {
    /// The name used in the report.
    pub fn label(self) -> &'static str {
        match self {
            Self::Direct => "direct",
            Self::Gateway => "via vmcp",
        }
    }

    /// The echo tool's name at this target (the gateway prefixes it).
    pub fn tool(self) -> String {
        match self {
            Self::Direct => "echo".to_string(),
            Self::Gateway => format!("{BACKEND_NAME}_echo"),
        }
    }
}

/// A target's MCP endpoint.
#[derive(Clone)]
pub struct Endpoint {
    /// Which target.
    pub target: Target,
    url: String,
    tool: String,
    /// Signs each session's own bearer token (`--auth oidc`).
    issuer: Option<Arc<BenchIssuer>>,
}

impl Endpoint {
    /// The endpoint of `target` at `url`.
    pub fn new(target: Target, url: &str) -> Self {
        Self {
            target,
            url: url.to_string(),
            tool: target.tool(),
            issuer: None,
        }
    }

    /// The same endpoint, each session with its own caller's token from `issuer`.
    pub fn with_tokens(mut self, issuer: Arc<BenchIssuer>) -> Self {
        self.issuer = Some(issuer);
        self
    }

    /// The transport of session number `session`.
    pub fn transport(
        &self,
        session: usize,
    ) -> anyhow::Result<StreamableHttpClientTransport<reqwest::Client>> {
        transport(&self.url, self.issuer.as_deref(), session)
    }
}

/// A streamable HTTP transport to `url`, with caller `bench-<session>`'s
/// token from `issuer` when there is one.
pub fn transport(
    url: &str,
    issuer: Option<&BenchIssuer>,
    session: usize,
) -> anyhow::Result<StreamableHttpClientTransport<reqwest::Client>> {
    let mut config = StreamableHttpClientTransportConfig::with_uri(url.to_string());
    if let Some(issuer) = issuer {
        config = config.auth_header(issuer.token(&format!("bench-{session}"))?);
    }
    Ok(StreamableHttpClientTransport::from_config(config))
}

/// What the bench says about itself at `initialize`: a protocol version
/// with sessions (the newest rmcp knows has none).
pub fn client_info() -> ClientConfig {
    let mut info = ClientConfig::default();
    info.protocol_version = ProtocolVersion::LATEST_WITH_INITIALIZE;
    info.client_info = Implementation::new("vmcp-bench", env!("CARGO_PKG_VERSION"));
    info
}

type Session = RunningService<RoleClient, ClientConfig>;

/// The numbers of one run.
#[derive(Clone, Debug)]
pub struct RunStats {
    /// Every timed call's latency, sorted.
    latencies: Vec<Duration>,
    /// From the first timed call's start to the last one's end.
    wall: Duration,
    /// CPU time each process spent during the timed calls.
    pub cpu: CpuSeconds,
}

impl RunStats {
    /// Median latency in microseconds.
    pub fn p50_us(&self) -> f64 {
        quantile_us(&self.latencies, 0.50)
    }

    /// 99th percentile latency in microseconds.
    pub fn p99_us(&self) -> f64 {
        quantile_us(&self.latencies, 0.99)
    }

    /// Completed calls per second of wall time.
    pub fn calls_per_sec(&self) -> f64 {
        self.latencies.len() as f64 / self.wall.as_secs_f64()
    }

    /// CPU microseconds per call, per process.
    pub fn cpu_us_per_call(&self) -> CpuSeconds {
        let per = 1e6 / self.latencies.len() as f64;
        CpuSeconds {
            client: self.cpu.client * per,
            backend: self.cpu.backend * per,
            gateway: self.cpu.gateway * per,
        }
    }
}

/// The `q` quantile (nearest rank) of `sorted`, in microseconds; NaN when empty.
fn quantile_us(sorted: &[Duration], q: f64) -> f64 {
    let n = sorted.len();
    if n == 0 {
        return f64::NAN;
    }
    let rank = ((q * n as f64).ceil() as usize).clamp(1, n);
    sorted[rank - 1].as_secs_f64() * 1e6
}

/// One session's timed calls.
struct SessionResult {
    latencies: Vec<Duration>,
    first_start: Instant,
    last_end: Instant,
    errors: usize,
    first_error: Option<String>,
}

/// Opens `sessions` sessions to `endpoint`, warms them up, times `calls`
/// calls spread over them, and closes them.
pub async fn run(
    endpoint: &Endpoint,
    sessions: usize,
    calls: usize,
    warmup: usize,
    cpu: &CpuSampler,
) -> anyhow::Result<RunStats> {
    let mut open = Vec::with_capacity(sessions);
    for session in 0..sessions {
        let transport = endpoint.transport(session)?;
        let client = client_info()
            .serve(transport)
            .await
            .with_context(|| format!("initialize of session {session} failed"))?;
        open.push(client);
    }

    let warmup_each = warmup.div_ceil(sessions).max(MIN_WARMUP_PER_SESSION);
    let (open, warm) = drive_all(open, &endpoint.tool, "w", |_| warmup_each).await?;
    fail_on_errors(&warm, "warm-up")?;

    let before = cpu.sample()?;
    let (open, timed) = drive_all(open, &endpoint.tool, "c", |session| {
        calls / sessions + usize::from(session < calls % sessions)
    })
    .await?;
    let used = cpu.sample()? - before;
    fail_on_errors(&timed, "timed calls")?;

    for client in open {
        let _ = client.cancel().await;
    }

    let first_start = timed.iter().map(|r| r.first_start).min();
    let last_end = timed.iter().map(|r| r.last_end).max();
    let (Some(first_start), Some(last_end)) = (first_start, last_end) else {
        bail!("no calls were made");
    };
    let mut latencies: Vec<Duration> = timed.into_iter().flat_map(|r| r.latencies).collect();
    if latencies.len() != calls {
        bail!("{} calls were timed, {calls} expected", latencies.len());
    }
    latencies.sort_unstable();
    Ok(RunStats {
        latencies,
        wall: last_end - first_start,
        cpu: used,
    })
}

fn fail_on_errors(results: &[SessionResult], phase: &str) -> anyhow::Result<()> {
    let errors: usize = results.iter().map(|r| r.errors).sum();
    if errors > 0 {
        let first = results
            .iter()
            .find_map(|r| r.first_error.clone())
            .unwrap_or_default();
        bail!("{errors} failed or wrong answers during the {phase}; first: {first}");
    }
    Ok(())
}

/// Runs every session's calls concurrently, one task per session, and
/// hands the sessions back with their results (in session order).
async fn drive_all(
    sessions: Vec<Session>,
    tool: &str,
    tag: &'static str,
    calls_for: impl Fn(usize) -> usize,
) -> anyhow::Result<(Vec<Session>, Vec<SessionResult>)> {
    let mut tasks = JoinSet::new();
    for (index, session) in sessions.into_iter().enumerate() {
        let tool = tool.to_string();
        let count = calls_for(index);
        tasks.spawn(async move {
            let result = drive(&session, &tool, index, tag, count).await;
            (index, session, result)
        });
    }
    let mut done = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        done.push(joined.context("a session task panicked")?);
    }
    done.sort_by_key(|(index, _, _)| *index);
    Ok(done
        .into_iter()
        .map(|(_, session, result)| (session, result))
        .unzip())
}

/// `count` sequential calls on one session with arguments
/// `s{session}-{tag}{i}`, each answer compared with its argument.
async fn drive(
    session: &Session,
    tool: &str,
    index: usize,
    tag: &str,
    count: usize,
) -> SessionResult {
    let mut result = SessionResult {
        latencies: Vec::with_capacity(count),
        first_start: Instant::now(),
        last_end: Instant::now(),
        errors: 0,
        first_error: None,
    };
    for i in 0..count {
        let text = format!("s{index}-{tag}{i}");
        let mut arguments = serde_json::Map::new();
        arguments.insert("text".to_string(), serde_json::Value::String(text.clone()));
        let params = CallToolRequestParams::new(tool.to_string()).with_arguments(arguments);
        let started = Instant::now();
        let answer = tokio::time::timeout(CALL_TIMEOUT, session.call_tool(params)).await;
        let ended = Instant::now();
        if i == 0 {
            result.first_start = started;
        }
        result.last_end = ended;
        result.latencies.push(ended - started);
        let problem = match answer {
            // The session is unusable: stop here rather than wait on every call.
            Err(_) => {
                result.errors += 1;
                result.first_error.get_or_insert(format!(
                    "{tool}({text:?}) not answered within {CALL_TIMEOUT:?}"
                ));
                break;
            }
            Ok(Err(err)) => {
                result.errors += 1;
                result
                    .first_error
                    .get_or_insert(format!("{tool}({text:?}) failed: {err}"));
                break;
            }
            Ok(Ok(answer)) if answer.is_error == Some(true) => {
                Some(format!("{tool}({text:?}) returned a tool error"))
            }
            Ok(Ok(answer)) => {
                let echoed: String = answer
                    .content
                    .iter()
                    .filter_map(|c| c.as_text().map(|t| t.text.as_str()))
                    .collect();
                (echoed != text).then(|| format!("{tool}({text:?}) answered {echoed:?}"))
            }
        };
        if let Some(problem) = problem {
            result.errors += 1;
            result.first_error.get_or_insert(problem);
        }
    }
    result
}

/// Latency of the cheapest HTTP exchange the gateway serves: sequential
/// `GET /health` on one kept-alive connection, with the HTTP stacks the
/// gateway's extra hop uses (reqwest to axum) and no MCP at all.
/// Returns (p50, p99) in microseconds.
pub async fn http_floor(gateway_mcp_url: &str, requests: usize) -> anyhow::Result<(f64, f64)> {
    let url = gateway_mcp_url
        .strip_suffix("/mcp")
        .map(|base| format!("{base}/health"))
        .context("the gateway URL does not end in /mcp")?;
    let http = reqwest::Client::builder()
        .tcp_nodelay(true)
        .build()
        .context("cannot build an HTTP client")?;
    let mut latencies = Vec::with_capacity(requests);
    for i in 0..requests + requests / 10 {
        let started = Instant::now();
        let response = http.get(&url).send().await.context("GET /health failed")?;
        if !response.status().is_success() {
            bail!("GET /health answered {}", response.status());
        }
        response.bytes().await.context("reading /health failed")?;
        if i >= requests / 10 {
            latencies.push(started.elapsed());
        }
    }
    latencies.sort_unstable();
    Ok((quantile_us(&latencies, 0.50), quantile_us(&latencies, 0.99)))
}
