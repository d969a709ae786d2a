//! `vmcp-bench`: how much latency and throughput vmcp costs on a `tools/call`.
//!
//! One command starts the release `vmcp-example-server` (streamable HTTP on
//! loopback) and a release `vmcp serve` in front of it, then, for every
//! session count and in several rounds, drives the example server's `echo`
//! tool straight at the backend and through the gateway (`ex_echo`),
//! alternating which goes first. Sessions are initialized and warmed up
//! before timing; every call has its own argument and its answer is checked.
//! The report (markdown, on stdout) gives the median over rounds of p50,
//! p99 and calls/s, the added latency and throughput ratio against the
//! goals, CPU time per call of each process, and the gateway's memory.
//!
//! With `--auth oidc` the gateway requires bearer JWTs from a stand-in
//! issuer the bench runs (each session its own caller) and decides each
//! call with a Cedar policy; run it next to a plain run to see what
//! authentication and authorization add.
//!
//! ```sh
//! cargo build --release -p vmcp -p vmcp-example-server -p vmcp-bench
//! cargo run --release -p vmcp-bench -- --calls 20000
//! cargo run --release -p vmcp-bench -- --calls 20000 --targets vmcp --sessions 32 --auth oidc
//! ```

mod issuer;
mod load;
mod machine;
mod procs;
mod report;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use clap::Parser;

use crate::load::{Endpoint, RunStats, Target};
use crate::procs::{CpuSampler, Stack};
use crate::report::{Measurement, Report};

/// Requests of the loopback HTTP floor measurement.
const FLOOR_REQUESTS: usize = 5_000;

/// Pause between runs, so one run's stragglers do not land in the next.
const SETTLE: Duration = Duration::from_millis(200);

/// Benchmark `tools/call` of an echo tool, direct to the backend and through vmcp.
#[derive(Debug, Parser)]
#[command(name = "vmcp-bench", version)]
pub struct Args {
    /// Timed calls per run, split evenly over the run's sessions.
    #[arg(long, default_value_t = 20_000)]
    pub calls: usize,
    /// Untimed warm-up calls per run (at least 20 per session).
    #[arg(long, default_value_t = 2_000)]
    pub warmup: usize,
    /// Rounds; each round measures every (sessions, target) pair once.
    #[arg(long, default_value_t = 5)]
    pub rounds: usize,
    /// Concurrent sessions to measure, comma separated.
    #[arg(long, value_delimiter = ',', default_values_t = [1, 32])]
    pub sessions: Vec<usize>,
    /// Targets to measure, comma separated: `direct`, `vmcp` (both for the
    /// comparison; one alone is handy when profiling).
    #[arg(long, value_delimiter = ',', default_values_t = [TargetArg::Direct, TargetArg::Vmcp])]
    pub targets: Vec<TargetArg>,
    /// Extra environment variable for the gateway process, e.g.
    /// `TOKIO_WORKER_THREADS=1` (repeatable; for experiments).
    #[arg(long = "gateway-env", value_name = "NAME=VALUE", value_parser = parse_env)]
    pub gateway_env: Vec<(String, String)>,
    /// Client authentication at the gateway: `none`, or `oidc` (each
    /// session sends its own caller's JWT from a stand-in issuer, verified
    /// by the gateway, and a Cedar policy decides each call).
    #[arg(long, value_enum, default_value_t = AuthArg::None)]
    pub auth: AuthArg,
    /// Directory holding the release `vmcp` and `vmcp-example-server`
    /// binaries (default: the directory of this executable).
    #[arg(long)]
    pub bin_dir: Option<PathBuf>,
}

/// `--auth` on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum AuthArg {
    /// Anonymous clients.
    None,
    /// Bearer JWTs and a Cedar policy.
    Oidc,
}

/// A target on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum TargetArg {
    /// Straight to the backend.
    Direct,
    /// Through vmcp.
    Vmcp,
}

impl std::fmt::Display for TargetArg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Direct => "direct",
            Self::Vmcp => "vmcp",
        })
    }
}

fn parse_env(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((name, value)) if !name.is_empty() => Ok((name.to_string(), value.to_string())),
        _ => Err(format!("expected NAME=VALUE, got {text:?}")),
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("vmcp-bench: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async {
        tokio::select! {
            outcome = run(args) => outcome,
            signal = interrupted() => Err(anyhow::anyhow!("interrupted by {signal}")),
        }
    });
    // Every child process was killed when its guard dropped.
    match outcome {
        Ok(report) => {
            print!("{report}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("vmcp-bench: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Resolves on SIGINT or SIGTERM, naming it.
async fn interrupted() -> &'static str {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => "SIGINT",
        () = terminate => "SIGTERM",
    }
}

async fn run(args: Args) -> anyhow::Result<String> {
    check_args(&args)?;
    let machine = machine::describe();
    let bin_dir = match &args.bin_dir {
        Some(dir) => dir.clone(),
        None => procs::own_bin_dir()?,
    };
    let issuer = match args.auth {
        AuthArg::None => None,
        AuthArg::Oidc => Some(Arc::new(issuer::BenchIssuer::start().await?)),
    };
    let stack = Stack::start(&bin_dir, &args.gateway_env, issuer).await?;
    let outcome = measure(&args, &stack).await;
    match outcome {
        Ok(measurements) => {
            eprintln!("HTTP floor: GET /health …");
            let http_floor = load::http_floor(stack.gateway_url(), FLOOR_REQUESTS)
                .await
                .context("measuring the loopback HTTP floor")?;
            let gateway_memory = procs::memory(stack.gateway_pid())?;
            let backend_memory = procs::memory(stack.backend_pid())?;
            let report = Report {
                command: machine::command_line(),
                machine,
                calls: args.calls,
                warmup: args.warmup,
                rounds: args.rounds,
                measurements,
                gateway_memory,
                http_floor,
                backend_memory,
            };
            stack.stop().await;
            Ok(report.to_markdown())
        }
        Err(err) => Err(anyhow::anyhow!("{err:#}\n{}", stack.log_tails())),
    }
}

fn check_args(args: &Args) -> anyhow::Result<()> {
    if cfg!(debug_assertions) && args.bin_dir.is_none() {
        bail!(
            "this is a debug build of vmcp-bench; run it with \
             `cargo run --release -p vmcp-bench` so that it and the binaries it starts are optimized"
        );
    }
    if args.rounds == 0 {
        bail!("--rounds must be at least 1");
    }
    if args.targets.is_empty() {
        bail!("--targets needs direct, vmcp or both");
    }
    if args.sessions.is_empty() || args.sessions.contains(&0) {
        bail!("--sessions needs one or more positive session counts");
    }
    if let Some(&most) = args.sessions.iter().max()
        && args.calls < most
    {
        bail!(
            "--calls ({}) must be at least the largest session count ({most})",
            args.calls
        );
    }
    Ok(())
}

/// Every round, every session count, both targets; the first target
/// alternates between rounds so neither always runs on a cooler machine.
async fn measure(args: &Args, stack: &Stack) -> anyhow::Result<Vec<Measurement>> {
    let direct = Endpoint::new(Target::Direct, stack.backend_url());
    let mut gateway = Endpoint::new(Target::Gateway, stack.gateway_url());
    if let Some(issuer) = stack.issuer() {
        gateway = gateway.with_tokens(Arc::clone(issuer));
    }
    let mut measurements = Vec::new();
    let wanted = |endpoint: &&Endpoint| match endpoint.target {
        Target::Direct => args.targets.contains(&TargetArg::Direct),
        Target::Gateway => args.targets.contains(&TargetArg::Vmcp),
    };
    let per_round = [&direct, &gateway].into_iter().filter(wanted).count();
    let total_runs = args.rounds * args.sessions.len() * per_round;
    let mut done = 0;
    for round in 0..args.rounds {
        for &sessions in &args.sessions {
            let order = if round % 2 == 0 {
                [&direct, &gateway]
            } else {
                [&gateway, &direct]
            };
            for endpoint in order.into_iter().filter(wanted) {
                done += 1;
                eprint!(
                    "[{done}/{total_runs}] round {} · {} · {sessions} session(s) … ",
                    round + 1,
                    endpoint.target.label()
                );
                let cpu = CpuSampler::new(stack)?;
                let stats: RunStats = load::run(endpoint, sessions, args.calls, args.warmup, &cpu)
                    .await
                    .with_context(|| {
                        format!(
                            "round {} {} with {sessions} session(s)",
                            round + 1,
                            endpoint.target.label()
                        )
                    })?;
                eprintln!(
                    "p50 {:.1} µs, p99 {:.1} µs, {:.0} calls/s",
                    stats.p50_us(),
                    stats.p99_us(),
                    stats.calls_per_sec()
                );
                measurements.push(Measurement {
                    round,
                    sessions,
                    target: endpoint.target,
                    stats,
                });
                stack.check_alive()?;
                tokio::time::sleep(SETTLE).await;
            }
        }
    }
    Ok(measurements)
}
