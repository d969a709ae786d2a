//! Starting and stopping the measured processes (loopback only).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// The backend and the gateway in front of it.
pub struct Stack {
    backend: Child,
    gateway: Child,
    /// The backend's MCP URL.
    pub backend_url: String,
    /// The gateway's MCP URL.
    pub gateway_url: String,
    config: PathBuf,
}

fn sibling_binary(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("own path")?;
    let path = exe.with_file_name(name);
    if !path.exists() {
        bail!(
            "{} not found: build it first with `cargo build --release --bin vmcp --bin vmcp-example-server`",
            path.display()
        );
    }
    Ok(path)
}

/// Reads `child`'s `stream` until a line contains `marker`, returns the word after it.
async fn read_url(child: &mut Child, stdout: bool, marker: &str) -> anyhow::Result<String> {
    let mut lines: Box<dyn futures::Stream<Item = std::io::Result<String>> + Unpin + Send> =
        if stdout {
            let out = child.stdout.take().context("stdout piped")?;
            Box::new(tokio_stream_lines(BufReader::new(out)))
        } else {
            let err = child.stderr.take().context("stderr piped")?;
            Box::new(tokio_stream_lines(BufReader::new(err)))
        };
    use futures::StreamExt;
    let found = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next().await {
            let line = line?;
            if let Some(at) = line.find(marker) {
                let url = line[at + marker.len()..]
                    .split_whitespace()
                    .next()
                    .unwrap_or("")
                    .to_string();
                return anyhow::Ok(url);
            }
        }
        bail!("process exited before printing {marker:?}")
    })
    .await
    .context("no address within 30 s")??;
    // Keep draining so the child never blocks on a full pipe.
    tokio::spawn(async move { while lines.next().await.is_some() {} });
    Ok(found)
}

fn tokio_stream_lines<R: tokio::io::AsyncBufRead + Unpin + Send + 'static>(
    reader: R,
) -> impl futures::Stream<Item = std::io::Result<String>> + Unpin + Send {
    Box::pin(futures::stream::unfold(
        reader.lines(),
        |mut lines| async move {
            match lines.next_line().await {
                Ok(Some(line)) => Some((Ok(line), lines)),
                Ok(None) => None,
                Err(err) => Some((Err(err), lines)),
            }
        },
    ))
}

impl Stack {
    /// Starts both processes and waits until the gateway is ready.
    pub async fn start() -> anyhow::Result<Self> {
        let mut backend = Command::new(sibling_binary("vmcp-example-server")?)
            .args(["--name", "ex", "http", "--host", "127.0.0.1", "--port", "0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("start vmcp-example-server")?;
        let backend_url = read_url(&mut backend, true, "listening on ").await?;
        let config = std::env::temp_dir().join(format!("vmcp-bench-{}.yaml", std::process::id()));
        std::fs::write(
            &config,
            format!(
                "name: bench\nbackends:\n  - {{name: ex, transport: streamable-http, url: '{backend_url}'}}\noperational:\n  logLevel: warn\n"
            ),
        )?;
        let mut gateway = Command::new(sibling_binary("vmcp")?)
            .args(["serve", "--port", "0", "--config"])
            .arg(&config)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("start vmcp")?;
        let gateway_url = read_url(&mut gateway, false, "vmcp listening on ").await?;
        let readyz = gateway_url.replace("/mcp", "/readyz");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let ready = reqwest_get_ok(&readyz).await;
            if ready {
                break;
            }
            if tokio::time::Instant::now() > deadline {
                bail!("vmcp not ready within 30 s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(Self {
            backend,
            gateway,
            backend_url,
            gateway_url,
            config,
        })
    }

    /// The gateway's current and peak resident memory, from /proc.
    pub fn gateway_memory(&self) -> (String, String) {
        let status = self
            .gateway
            .id()
            .and_then(|pid| std::fs::read_to_string(format!("/proc/{pid}/status")).ok())
            .unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find(|l| l.starts_with(name))
                .map(|l| l[name.len()..].trim().to_string())
                .unwrap_or_else(|| "?".into())
        };
        (field("VmRSS:"), field("VmHWM:"))
    }

    /// Stops both processes.
    pub async fn stop(mut self) {
        let _ = self.gateway.kill().await;
        let _ = self.backend.kill().await;
        let _ = std::fs::remove_file(&self.config);
    }
}

/// A plain HTTP GET over a raw TCP connection (keeps the bench free of another HTTP client).
async fn reqwest_get_ok(url: &str) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Some(rest) = url.strip_prefix("http://") else {
        return false;
    };
    let Some((authority, path)) = rest.split_once('/') else {
        return false;
    };
    let Ok(mut stream) = tokio::net::TcpStream::connect(authority).await else {
        return false;
    };
    let request = format!("GET /{path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).await.is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).await.is_ok() && &head[9..12] == b"200"
}

/// Machine description for the report.
pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{cores} cores, {cpu}")
}
