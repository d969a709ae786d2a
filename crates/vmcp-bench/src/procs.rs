//! The measured processes: the example backend and the gateway in front of
//! it, both on loopback, killed when dropped (also on error and panic), and
//! their CPU time and memory read from `/proc`.

use std::fmt::Write as _;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use rmcp::ServiceExt as _;
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::{Child, Command};

use crate::issuer::BenchIssuer;
use crate::load;

/// How long each process gets to start and become ready.
const STARTUP_DEADLINE: Duration = Duration::from_secs(30);
/// Time between readiness probes.
const POLL: Duration = Duration::from_millis(50);
/// The backend's name in the generated gateway configuration.
pub const BACKEND_NAME: &str = "ex";
/// Lines of each log shown when something fails.
const LOG_TAIL_LINES: usize = 15;

/// The directory of the running executable (`target/release` under cargo).
pub fn own_bin_dir() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot find the path of vmcp-bench itself")?;
    exe.parent()
        .map(Path::to_path_buf)
        .context("vmcp-bench's path has no parent directory")
}

fn binary(dir: &Path, name: &str) -> anyhow::Result<PathBuf> {
    let path = dir.join(name);
    if !path.is_file() {
        bail!(
            "{} is missing: build it with `cargo build --release -p vmcp -p vmcp-example-server -p vmcp-bench` \
             (or point --bin-dir at a directory holding release builds of vmcp and vmcp-example-server)",
            path.display()
        );
    }
    Ok(path)
}

/// A child process that is killed when this guard drops.
struct Guarded {
    name: &'static str,
    child: Child,
    pid: u32,
    log: PathBuf,
}

impl Guarded {
    fn spawn(name: &'static str, command: &mut Command, log: PathBuf) -> anyhow::Result<Self> {
        let child = command
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {name}"))?;
        let pid = child
            .id()
            .with_context(|| format!("{name} exited at once"))?;
        Ok(Self {
            name,
            child,
            pid,
            log,
        })
    }

    /// The last lines of the process's log, headed by its name and path.
    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let mut out = format!("--- {} ({}) ---", self.name, self.log.display());
        for line in &lines[lines.len().saturating_sub(LOG_TAIL_LINES)..] {
            let _ = write!(out, "\n{line}");
        }
        out
    }

    /// `error`, followed by the tail of this process's log.
    fn with_log(&self, error: anyhow::Error) -> anyhow::Error {
        anyhow::anyhow!("{error:#}\n{}", self.log_tail())
    }

    fn check_alive(&mut self) -> anyhow::Result<()> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => bail!("{} exited unexpectedly ({status})", self.name),
            Err(err) => bail!("cannot check on {}: {err}", self.name),
        }
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        // SIGKILL; tokio reaps the process in the background.
        let _ = self.child.start_kill();
    }
}

/// A temporary directory removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> anyhow::Result<Self> {
        let path = std::env::temp_dir().join(format!("vmcp-bench-{}", std::process::id()));
        std::fs::create_dir_all(&path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        Ok(Self(path))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The backend and the gateway in front of it. Field order matters: the
/// processes are killed before their directory is removed.
pub struct Stack {
    /// The stand-in issuer the gateway trusts, under `--auth oidc`.
    issuer: Option<Arc<BenchIssuer>>,
    gateway: Guarded,
    backend: Guarded,
    backend_url: String,
    gateway_url: String,
    _dir: TempDir,
}

impl Stack {
    /// Starts the backend, then the gateway in front of it, and waits until
    /// the gateway is ready and offers the backend's echo tool.
    /// With `issuer`, the gateway requires its tokens and decides calls by
    /// a Cedar policy.
    pub async fn start(
        bin_dir: &Path,
        gateway_env: &[(String, String)],
        issuer: Option<Arc<BenchIssuer>>,
    ) -> anyhow::Result<Self> {
        let backend_bin = binary(bin_dir, "vmcp-example-server")?;
        let gateway_bin = binary(bin_dir, "vmcp")?;
        let dir = TempDir::new()?;
        let log_file = |name: &str| -> anyhow::Result<(PathBuf, File)> {
            let path = dir.0.join(name);
            let file =
                File::create(&path).with_context(|| format!("cannot create {}", path.display()))?;
            Ok((path, file))
        };

        let (backend_log, file) = log_file("backend.log")?;
        let mut backend = Guarded::spawn(
            "vmcp-example-server",
            Command::new(&backend_bin)
                .args(["--name", BACKEND_NAME, "http", "--host", "127.0.0.1"])
                .args(["--port", "0"])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(file),
            backend_log,
        )?;
        let backend_url = match read_backend_url(&mut backend).await {
            Ok(url) => url,
            Err(err) => return Err(backend.with_log(err)),
        };

        let port = free_loopback_port()?;
        let config = dir.0.join("vmcp.yaml");
        std::fs::write(
            &config,
            format!(
                "name: vmcp-bench\nbackends:\n  - name: {BACKEND_NAME}\n    transport: streamable-http\n    url: {backend_url}\n{}",
                issuer.as_ref().map(|issuer| issuer.gateway_config()).unwrap_or_default()
            ),
        )
        .with_context(|| format!("cannot write {}", config.display()))?;
        let (gateway_log, file) = log_file("vmcp.log")?;
        let stdout = file.try_clone().context("cannot share the vmcp log file")?;
        let mut gateway = Guarded::spawn(
            "vmcp",
            Command::new(&gateway_bin)
                .arg("serve")
                .arg("--config")
                .arg(&config)
                .args(["--host", "127.0.0.1", "--port", &port.to_string()])
                // Keep the status file in the temporary directory, and do not
                // pick up a Kubernetes environment from the caller.
                .env("VMCP_STATE_DIR", &dir.0)
                .env_remove("VMCP_NAME")
                .env_remove("VMCP_NAMESPACE")
                .env_remove("VMCP_HOST")
                .env_remove("VMCP_PORT")
                .envs(gateway_env.iter().map(|(name, value)| (name, value)))
                .stdin(Stdio::null())
                .stdout(stdout)
                .stderr(file),
            gateway_log,
        )?;
        let gateway_url = format!("http://127.0.0.1:{port}/mcp");
        if let Err(err) = wait_ready(&mut gateway, port).await {
            return Err(gateway.with_log(err));
        }

        let stack = Self {
            issuer,
            gateway,
            backend,
            backend_url,
            gateway_url,
            _dir: dir,
        };
        match stack.wait_for_tool().await {
            Ok(()) => Ok(stack),
            Err(err) => Err(anyhow::anyhow!("{err:#}\n{}", stack.log_tails())),
        }
    }

    /// The stand-in issuer the gateway trusts, under `--auth oidc`.
    pub fn issuer(&self) -> Option<&Arc<BenchIssuer>> {
        self.issuer.as_ref()
    }

    /// The backend's MCP endpoint.
    pub fn backend_url(&self) -> &str {
        &self.backend_url
    }

    /// The gateway's MCP endpoint.
    pub fn gateway_url(&self) -> &str {
        &self.gateway_url
    }

    /// The backend's process id.
    pub fn backend_pid(&self) -> u32 {
        self.backend.pid
    }

    /// The gateway's process id.
    pub fn gateway_pid(&self) -> u32 {
        self.gateway.pid
    }

    /// Fails if either process has exited.
    pub fn check_alive(&self) -> anyhow::Result<()> {
        // `try_wait` needs `&mut`; reading /proc is enough to tell.
        for process in [&self.gateway, &self.backend] {
            if !Path::new(&format!("/proc/{}", process.pid)).exists()
                || proc_state(process.pid) == Some('Z')
            {
                bail!("{} exited unexpectedly", process.name);
            }
        }
        Ok(())
    }

    /// The last lines of both logs, for an error message.
    pub fn log_tails(&self) -> String {
        format!(
            "last log lines:\n{}\n{}",
            self.backend.log_tail(),
            self.gateway.log_tail()
        )
    }

    /// Kills both processes and waits for them to exit.
    pub async fn stop(mut self) {
        for process in [&mut self.gateway, &mut self.backend] {
            let _ = process.child.kill().await;
        }
    }

    /// Polls the gateway's tool list until the backend's echo tool is there.
    async fn wait_for_tool(&self) -> anyhow::Result<()> {
        let tool = load::Target::Gateway.tool();
        let deadline = tokio::time::Instant::now() + STARTUP_DEADLINE;
        let client = load::client_info()
            .serve(load::transport(
                &self.gateway_url,
                self.issuer.as_deref(),
                0,
            )?)
            .await
            .context("cannot open a session with vmcp")?;
        loop {
            let tools = client
                .list_all_tools()
                .await
                .context("tools/list through vmcp failed")?;
            if tools.iter().any(|t| t.name == tool) {
                break;
            }
            if tokio::time::Instant::now() > deadline {
                bail!("vmcp does not offer {tool} after {STARTUP_DEADLINE:?}");
            }
            tokio::time::sleep(POLL).await;
        }
        let _ = client.cancel().await;
        Ok(())
    }
}

/// Reads the backend's `listening on http://…/mcp` line from its stdout.
async fn read_backend_url(backend: &mut Guarded) -> anyhow::Result<String> {
    const MARKER: &str = "listening on ";
    let stdout = backend
        .child
        .stdout
        .take()
        .context("backend stdout is not piped")?;
    let mut lines = BufReader::new(stdout).lines();
    let url = tokio::time::timeout(STARTUP_DEADLINE, async {
        while let Some(line) = lines.next_line().await? {
            if let Some(at) = line.find(MARKER) {
                let url = line[at + MARKER.len()..].trim().to_string();
                return anyhow::Ok(url);
            }
        }
        bail!("vmcp-example-server exited before saying where it listens")
    })
    .await
    .with_context(|| format!("vmcp-example-server did not start within {STARTUP_DEADLINE:?}"))??;
    if !url.starts_with("http://127.0.0.1:") {
        bail!("vmcp-example-server listens on {url}, not on loopback");
    }
    // Keep reading so the backend never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok(url)
}

/// A port that was free a moment ago on 127.0.0.1.
fn free_loopback_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .context("cannot bind a loopback port to find a free one")?;
    Ok(listener
        .local_addr()
        .context("bound socket has no address")?
        .port())
}

/// Polls `GET /readyz` until it answers 200, the process exits, or the deadline passes.
async fn wait_ready(gateway: &mut Guarded, port: u16) -> anyhow::Result<()> {
    let url = format!("http://127.0.0.1:{port}/readyz");
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .context("cannot build the readiness HTTP client")?;
    let deadline = tokio::time::Instant::now() + STARTUP_DEADLINE;
    loop {
        gateway.check_alive()?;
        if let Ok(response) = http.get(&url).send().await
            && response.status().is_success()
        {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            bail!("vmcp was not ready ({url}) within {STARTUP_DEADLINE:?}");
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The state letter from `/proc/PID/stat` (`R`, `S`, `Z`, …).
fn proc_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_comm = &stat[stat.rfind(')')? + 1..];
    after_comm.split_whitespace().next()?.chars().next()
}

/// User plus system CPU time of a process so far, in clock ticks.
fn cpu_ticks(pid: &str) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    let after_comm = stat
        .rfind(')')
        .map(|at| &stat[at + 1..])
        .with_context(|| format!("unexpected format of {path}"))?;
    // After the command name: state is field 3, utime 14, stime 15.
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    let field = |n: usize| -> anyhow::Result<u64> {
        fields
            .get(n - 3)
            .and_then(|f| f.parse().ok())
            .with_context(|| format!("no field {n} in {path}"))
    };
    Ok(field(14)? + field(15)?)
}

/// Clock ticks per second (`getconf CLK_TCK`; 100 on Linux unless configured otherwise).
fn ticks_per_second() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|text| text.trim().parse::<f64>().ok())
        .filter(|ticks| *ticks > 0.0)
        .unwrap_or(100.0)
}

/// CPU seconds used by the bench itself, the backend and the gateway.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct CpuSeconds {
    /// This process (the load generator: the MCP clients).
    pub client: f64,
    /// The example server.
    pub backend: f64,
    /// vmcp.
    pub gateway: f64,
}

/// Takes CPU time readings of the three processes.
pub struct CpuSampler {
    backend: String,
    gateway: String,
    ticks_per_second: f64,
}

impl CpuSampler {
    /// A sampler for `stack`'s processes and this one.
    pub fn new(stack: &Stack) -> anyhow::Result<Self> {
        stack.check_alive()?;
        Ok(Self {
            backend: stack.backend_pid().to_string(),
            gateway: stack.gateway_pid().to_string(),
            ticks_per_second: ticks_per_second(),
        })
    }

    /// CPU seconds used so far by each process.
    pub fn sample(&self) -> anyhow::Result<CpuSeconds> {
        let seconds = |pid: &str| -> anyhow::Result<f64> {
            Ok(cpu_ticks(pid)? as f64 / self.ticks_per_second)
        };
        Ok(CpuSeconds {
            client: seconds("self")?,
            backend: seconds(&self.backend)?,
            gateway: seconds(&self.gateway)?,
        })
    }
}

impl std::ops::Sub for CpuSeconds {
    type Output = Self;

    fn sub(self, earlier: Self) -> Self {
        Self {
            client: self.client - earlier.client,
            backend: self.backend - earlier.backend,
            gateway: self.gateway - earlier.gateway,
        }
    }
}

/// Resident memory of a process, from `/proc/PID/status`.
#[derive(Clone, Debug)]
pub struct Memory {
    /// Current resident set (`VmRSS`), in KiB.
    pub rss_kib: u64,
    /// Peak resident set (`VmHWM`), in KiB.
    pub peak_kib: u64,
}

/// Reads `VmRSS` and `VmHWM` of `pid`.
pub fn memory(pid: u32) -> anyhow::Result<Memory> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    let field = |name: &str| -> anyhow::Result<u64> {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .with_context(|| format!("no {name} in {path}"))
    };
    Ok(Memory {
        rss_kib: field("VmRSS:")?,
        peak_kib: field("VmHWM:")?,
    })
}
