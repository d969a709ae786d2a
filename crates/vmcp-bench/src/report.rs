//! The markdown report: medians across rounds, the derived comparisons
//! against the goals, CPU time per call, and the gateway's memory.

use std::fmt::Write as _;

use crate::load::{RunStats, Target};
use crate::machine::Machine;
use crate::procs::{CpuSeconds, Memory};

/// Goal: added p50 latency through vmcp with one session, in microseconds.
pub const GOAL_ADDED_P50_US: f64 = 50.0;
/// Goal: vmcp's throughput as a share of the direct one at [`GOAL_RATIO_SESSIONS`].
pub const GOAL_THROUGHPUT_RATIO: f64 = 0.70;
/// Sessions at which the added latency goal is judged.
pub const GOAL_LATENCY_SESSIONS: usize = 1;
/// Sessions at which the throughput goal is judged.
pub const GOAL_RATIO_SESSIONS: usize = 32;

/// One run's numbers and what it measured.
#[derive(Clone, Debug)]
pub struct Measurement {
    /// Round index (0-based).
    pub round: usize,
    /// Concurrent sessions.
    pub sessions: usize,
    /// Direct or via vmcp.
    pub target: Target,
    /// The numbers.
    pub stats: RunStats,
}

/// Everything the report says.
#[derive(Clone, Debug)]
pub struct Report {
    /// The machine and date.
    pub machine: Machine,
    /// The reproducing command.
    pub command: String,
    /// Timed calls per run.
    pub calls: usize,
    /// Warm-up calls per run.
    pub warmup: usize,
    /// Rounds.
    pub rounds: usize,
    /// Every run.
    pub measurements: Vec<Measurement>,
    /// vmcp's memory after the last run.
    pub gateway_memory: Memory,
    /// The backend's memory after the last run, for comparison.
    pub backend_memory: Memory,
    /// p50 and p99 (µs) of sequential `GET /health` to vmcp on one connection.
    pub http_floor: (f64, f64),
}

fn median(mut values: Vec<f64>) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    }
}

fn range(values: &[f64]) -> (f64, f64) {
    let low = values.iter().copied().fold(f64::INFINITY, f64::min);
    let high = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (low, high)
}

fn verdict(met: Option<bool>) -> &'static str {
    match met {
        Some(true) => "**met**",
        Some(false) => "**not met**",
        None => "not measured",
    }
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

impl Report {
    fn session_counts(&self) -> Vec<usize> {
        let mut counts: Vec<usize> = self.measurements.iter().map(|m| m.sessions).collect();
        counts.sort_unstable();
        counts.dedup();
        counts
    }

    fn runs(&self, target: Target, sessions: usize) -> Vec<&RunStats> {
        self.measurements
            .iter()
            .filter(|m| m.target == target && m.sessions == sessions)
            .map(|m| &m.stats)
            .collect()
    }

    /// Per-round pairs (direct, via vmcp) at `sessions`.
    fn pairs(&self, sessions: usize) -> Vec<(&RunStats, &RunStats)> {
        (0..self.rounds)
            .filter_map(|round| {
                let find = |target| {
                    self.measurements
                        .iter()
                        .find(|m| m.round == round && m.sessions == sessions && m.target == target)
                        .map(|m| &m.stats)
                };
                Some((find(Target::Direct)?, find(Target::Gateway)?))
            })
            .collect()
    }

    /// Median over rounds of vmcp's p50 minus the direct p50 of the same round.
    fn added_p50_us(&self, sessions: usize) -> Option<f64> {
        let pairs = self.pairs(sessions);
        (!pairs.is_empty())
            .then(|| median(pairs.iter().map(|(d, v)| v.p50_us() - d.p50_us()).collect()))
    }

    /// Median over rounds of vmcp's calls/s over the direct calls/s of the same round.
    fn throughput_ratio(&self, sessions: usize) -> Option<f64> {
        let pairs = self.pairs(sessions);
        (!pairs.is_empty()).then(|| {
            median(
                pairs
                    .iter()
                    .map(|(d, v)| v.calls_per_sec() / d.calls_per_sec())
                    .collect(),
            )
        })
    }

    fn median_cpu(&self, target: Target, sessions: usize) -> CpuSeconds {
        let runs = self.runs(target, sessions);
        let pick = |f: fn(&CpuSeconds) -> f64| {
            median(runs.iter().map(|r| f(&r.cpu_us_per_call())).collect())
        };
        CpuSeconds {
            client: pick(|c| c.client),
            backend: pick(|c| c.backend),
            gateway: pick(|c| c.gateway),
        }
    }

    /// The whole report as markdown.
    pub fn to_markdown(&self) -> String {
        let mut out = String::new();
        let m = &self.machine;
        let _ = writeln!(out, "- Date: {}", m.date);
        let memory = m
            .memory_gib
            .map(|gib| format!(", {gib:.1} GiB RAM"))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "- Machine: {} CPUs (nproc), {}{memory}, Linux {}, load average {} at start",
            m.cpus, m.cpu_model, m.kernel, m.load_average
        );
        if let Some(git) = &m.git {
            let _ = writeln!(out, "- Commit: {git}");
        }
        let _ = writeln!(out, "- Command: `{}`", self.command);
        let _ = writeln!(
            out,
            "- Method: release `vmcp-example-server` (Streamable HTTP, loopback) and release `vmcp serve` in front of it; \
             tool `echo` direct, `ex_echo` via vmcp; every run opens its sessions (rmcp client, `initialize` done) and \
             warms up ({} calls) before timing {} calls with distinct arguments, every answer checked; \
             {} rounds, direct and via vmcp alternating which goes first; figures are medians over rounds",
            self.warmup, self.calls, self.rounds
        );
        out.push('\n');

        let _ = writeln!(
            out,
            "| target | sessions | p50 | p99 | calls/s | calls/s range over rounds |"
        );
        let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|");
        for sessions in self.session_counts() {
            for target in [Target::Direct, Target::Gateway] {
                let runs = self.runs(target, sessions);
                if runs.is_empty() {
                    continue;
                }
                let rates: Vec<f64> = runs.iter().map(|r| r.calls_per_sec()).collect();
                let (low, high) = range(&rates);
                let _ = writeln!(
                    out,
                    "| {} | {sessions} | {:.0} µs | {:.0} µs | {:.0} | {low:.0}–{high:.0} |",
                    target.label(),
                    median(runs.iter().map(|r| r.p50_us()).collect()),
                    median(runs.iter().map(|r| r.p99_us()).collect()),
                    median(rates),
                );
            }
        }
        for sessions in self.session_counts() {
            if let (Some(added), Some(ratio)) =
                (self.added_p50_us(sessions), self.throughput_ratio(sessions))
            {
                let _ = writeln!(
                    out,
                    "| **added by vmcp** | {sessions} | {added:+.0} µs (p50) | | {ratio:.2}× direct | |"
                );
            }
        }
        out.push('\n');

        let latency = self.added_p50_us(GOAL_LATENCY_SESSIONS);
        let ratio = self.throughput_ratio(GOAL_RATIO_SESSIONS);
        let _ = writeln!(out, "| goal | measured | verdict |");
        let _ = writeln!(out, "|---|---:|---|");
        let _ = writeln!(
            out,
            "| added p50 latency ≤ {GOAL_ADDED_P50_US:.0} µs ({GOAL_LATENCY_SESSIONS} session) | {} | {} |",
            latency.map_or("—".to_string(), |v| format!("{v:+.0} µs")),
            verdict(latency.map(|v| v <= GOAL_ADDED_P50_US))
        );
        let _ = writeln!(
            out,
            "| throughput ≥ {GOAL_THROUGHPUT_RATIO:.2}× direct ({GOAL_RATIO_SESSIONS} sessions) | {} | {} |",
            ratio.map_or("—".to_string(), |v| format!("{v:.2}×")),
            verdict(ratio.map(|v| v >= GOAL_THROUGHPUT_RATIO))
        );
        out.push('\n');

        let _ = writeln!(
            out,
            "CPU time per call (user + system, from /proc, median over rounds); \
             \"CPU ceiling\" is {} CPUs ÷ total CPU per call, the most calls/s this machine could do if every core were busy:\n",
            m.cpus
        );
        let _ = writeln!(
            out,
            "| target | sessions | bench client | backend | vmcp | total | CPU ceiling |"
        );
        let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|");
        for sessions in self.session_counts() {
            for target in [Target::Direct, Target::Gateway] {
                if self.runs(target, sessions).is_empty() {
                    continue;
                }
                let cpu = self.median_cpu(target, sessions);
                // The idle gateway is not on the direct path.
                let (gateway, total) = match target {
                    Target::Direct => ("—".to_string(), cpu.client + cpu.backend),
                    Target::Gateway => (
                        format!("{:.0} µs", cpu.gateway),
                        cpu.client + cpu.backend + cpu.gateway,
                    ),
                };
                let _ = writeln!(
                    out,
                    "| {} | {sessions} | {:.0} µs | {:.0} µs | {gateway} | {total:.0} µs | {:.0}/s |",
                    target.label(),
                    cpu.client,
                    cpu.backend,
                    m.cpus as f64 * 1e6 / total
                );
            }
        }
        out.push('\n');

        let _ = writeln!(
            out,
            "Memory after the run: vmcp VmRSS {:.1} MiB, VmHWM (peak) {:.1} MiB; backend VmRSS {:.1} MiB, VmHWM {:.1} MiB.\n",
            mib(self.gateway_memory.rss_kib),
            mib(self.gateway_memory.peak_kib),
            mib(self.backend_memory.rss_kib),
            mib(self.backend_memory.peak_kib),
        );

        let _ = writeln!(
            out,
            "Loopback HTTP floor: sequential `GET /health` to vmcp on one kept-alive connection \
             (reqwest → axum, the stacks of the gateway's extra hop, no MCP): p50 {:.0} µs, p99 {:.0} µs.\n",
            self.http_floor.0, self.http_floor.1
        );

        let _ = writeln!(out, "<details><summary>Every run</summary>\n");
        let _ = writeln!(
            out,
            "| round | sessions | target | p50 | p99 | calls/s | CPU µs/call client / backend / vmcp |"
        );
        let _ = writeln!(out, "|---:|---:|---|---:|---:|---:|---:|");
        for run in &self.measurements {
            let cpu = run.stats.cpu_us_per_call();
            let _ = writeln!(
                out,
                "| {} | {} | {} | {:.0} µs | {:.0} µs | {:.0} | {:.0} / {:.0} / {:.0} |",
                run.round + 1,
                run.sessions,
                run.target.label(),
                run.stats.p50_us(),
                run.stats.p99_us(),
                run.stats.calls_per_sec(),
                cpu.client,
                cpu.backend,
                cpu.gateway
            );
        }
        let _ = writeln!(out, "\n</details>");
        out
    }
}
