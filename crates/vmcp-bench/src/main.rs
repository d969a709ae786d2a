//! `vmcp-bench`: the gateway's added latency and its throughput, measured
//! side by side with the backend it fronts, in one run.
//!
//! It starts the release `vmcp-example-server` (HTTP, loopback) and a
//! release `vmcp` in front of it, opens the sessions before timing, then
//! alternates rounds of `tools/call echo` (distinct arguments, every answer
//! checked) direct and through vmcp, at each concurrency, and prints a
//! markdown report with medians across rounds.
//!
//! ```sh
//! cargo build --release --bin vmcp --bin vmcp-example-server -p vmcp-bench
//! target/release/vmcp-bench --calls 20000 --rounds 3
//! ```

mod processes;

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Parser;
use rmcp::ServiceExt;
use rmcp::model::CallToolRequestParams;
use rmcp::service::{RoleClient, RunningService};
use rmcp::transport::StreamableHttpClientTransport;
use serde_json::json;

#[derive(Parser, Debug)]
#[command(about = "Latency and throughput of vmcp vs its backend, side by side")]
struct Args {
    /// Timed calls per round and concurrency level.
    #[arg(long, default_value_t = 20_000)]
    calls: usize,
    /// Rounds per target (medians are reported).
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Concurrency levels (sessions).
    #[arg(long, value_delimiter = ',', default_value = "1,32")]
    sessions: Vec<usize>,
}

type Client = RunningService<RoleClient, ()>;

/// One timed round's numbers.
#[derive(Clone, Copy, Debug)]
struct Round {
    p50_us: f64,
    p99_us: f64,
    calls_per_sec: f64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let stack = processes::Stack::start().await?;
    println!("# vmcp-bench\n");
    println!("- machine: {}", processes::machine());
    println!(
        "- command: `{}`",
        std::env::args().collect::<Vec<_>>().join(" ")
    );
    println!("- backend: vmcp-example-server over Streamable HTTP (loopback), tool `echo`\n");
    println!("| target | sessions | p50 | p99 | calls/s |");
    println!("|---|---|---|---|---|");
    let mut summary = Vec::new();
    for &sessions in &args.sessions {
        let direct_clients = open(&stack.backend_url, sessions).await?;
        let vmcp_clients = open(&stack.gateway_url, sessions).await?;
        warm_up(&direct_clients, "echo").await?;
        warm_up(&vmcp_clients, "ex_echo").await?;
        let (mut direct, mut via) = (Vec::new(), Vec::new());
        for round in 0..args.rounds {
            // Alternate which goes first, so drift on a noisy machine hits both.
            if round % 2 == 0 {
                direct.push(run_round(&direct_clients, "echo", args.calls).await?);
                via.push(run_round(&vmcp_clients, "ex_echo", args.calls).await?);
            } else {
                via.push(run_round(&vmcp_clients, "ex_echo", args.calls).await?);
                direct.push(run_round(&direct_clients, "echo", args.calls).await?);
            }
        }
        let (d, v) = (median_round(&direct), median_round(&via));
        for (name, r) in [("direct", d), ("via vmcp", v)] {
            println!(
                "| {name} | {sessions} | {:.0} µs | {:.0} µs | {:.0} |",
                r.p50_us, r.p99_us, r.calls_per_sec
            );
        }
        summary.push((sessions, d, v));
        for client in direct_clients.into_iter().chain(vmcp_clients) {
            let _ = client.cancel().await;
        }
    }
    println!();
    for (sessions, d, v) in &summary {
        let added = v.p50_us - d.p50_us;
        let ratio = v.calls_per_sec / d.calls_per_sec;
        println!(
            "- {sessions} session(s): added p50 latency {added:.0} µs (goal ≤ 50 µs: {}); throughput ratio {ratio:.2}× (goal ≥ 0.70× at 32 sessions: {})",
            verdict(added <= 50.0),
            if *sessions == 32 {
                verdict(ratio >= 0.7)
            } else {
                "n/a"
            },
        );
    }
    let (rss, peak) = stack.gateway_memory();
    println!("- vmcp memory after the run: RSS {rss}, peak {peak}");
    stack.stop().await;
    Ok(())
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "not met" }
}

async fn open(url: &str, sessions: usize) -> anyhow::Result<Vec<Client>> {
    let mut clients = Vec::with_capacity(sessions);
    for _ in 0..sessions {
        let transport = StreamableHttpClientTransport::from_uri(url.to_string());
        clients.push(
            ().serve(transport)
                .await
                .with_context(|| format!("initialize {url}"))?,
        );
    }
    Ok(clients)
}

async fn call_echo(client: &Client, tool: &str, text: String) -> anyhow::Result<()> {
    let arguments = json!({ "text": text })
        .as_object()
        .cloned()
        .unwrap_or_default();
    let result = client
        .call_tool(CallToolRequestParams::new(tool.to_string()).with_arguments(arguments))
        .await
        .with_context(|| format!("{tool} failed"))?;
    let answer = result
        .content
        .first()
        .and_then(|c| c.as_text())
        .map(|t| t.text.as_str());
    if answer != Some(text.as_str()) {
        bail!("{tool} answered {answer:?} to {text:?}");
    }
    Ok(())
}

async fn warm_up(clients: &[Client], tool: &str) -> anyhow::Result<()> {
    for (session, client) in clients.iter().enumerate() {
        for i in 0..50 {
            call_echo(client, tool, format!("warm-{session}-{i}")).await?;
        }
    }
    Ok(())
}

async fn run_round(clients: &[Client], tool: &str, calls: usize) -> anyhow::Result<Round> {
    let per_session = calls.div_ceil(clients.len());
    let started = Instant::now();
    let results = futures::future::join_all(clients.iter().enumerate().map(
        |(session, client)| async move {
            let mut latencies = Vec::with_capacity(per_session);
            for i in 0..per_session {
                let t = Instant::now();
                call_echo(client, tool, format!("s{session}-c{i}")).await?;
                latencies.push(t.elapsed());
            }
            anyhow::Ok(latencies)
        },
    ))
    .await;
    let wall = started.elapsed();
    let mut all: Vec<Duration> = Vec::with_capacity(per_session * clients.len());
    for result in results {
        all.extend(result?);
    }
    all.sort_unstable();
    let pick = |q: f64| all[((all.len() as f64 - 1.0) * q).round() as usize].as_secs_f64() * 1e6;
    Ok(Round {
        p50_us: pick(0.50),
        p99_us: pick(0.99),
        calls_per_sec: all.len() as f64 / wall.as_secs_f64(),
    })
}

fn median_round(rounds: &[Round]) -> Round {
    let median = |f: fn(&Round) -> f64| {
        let mut values: Vec<f64> = rounds.iter().map(f).collect();
        values.sort_by(f64::total_cmp);
        values[values.len() / 2]
    };
    Round {
        p50_us: median(|r| r.p50_us),
        p99_us: median(|r| r.p99_us),
        calls_per_sec: median(|r| r.calls_per_sec),
    }
}
