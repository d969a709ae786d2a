//! The `vmcp-example-server` binary; see the library for what it serves.

use std::{io::IsTerminal as _, time::Duration};

use anyhow::Context as _;
use clap::Parser as _;
use tracing_subscriber::EnvFilter;
use vmcp_example_server::cli::Cli;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // stdout may carry the MCP stream, so logs go to stderr.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    let result = runtime.block_on(vmcp_example_server::run(cli));
    // A blocking stdin read cannot be interrupted; do not wait for it.
    runtime.shutdown_timeout(Duration::from_millis(500));
    result
}
