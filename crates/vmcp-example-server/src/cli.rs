//! Command line of the `vmcp-example-server` binary.

use clap::{Args, Parser, Subcommand};

use crate::catalogue;

/// A small example MCP server, over stdio or streamable HTTP.
#[derive(Debug, Parser)]
#[command(name = "vmcp-example-server", version)]
pub struct Cli {
    /// Name of this instance: what the `whoami` tool returns and part of the
    /// info resource URI (`example://NAME/info`).
    #[arg(long, global = true, default_value = catalogue::DEFAULT_INSTANCE_NAME)]
    pub name: String,

    /// Also offer the tools `set_latency {millis}` (delay every answer,
    /// `ping` included) and `set_call_latency {millis}` (delay tool calls
    /// only), for tests of health checks, timeouts and circuit breakers.
    #[arg(long, global = true)]
    pub latency_tools: bool,

    /// How to serve MCP.
    #[command(subcommand)]
    pub transport: Transport,
}

/// The transport to serve MCP on.
#[derive(Debug, Subcommand)]
pub enum Transport {
    /// Serve one MCP session on stdin/stdout (logs go to stderr).
    Stdio,
    /// Serve MCP over streamable HTTP at `/mcp`; prints `listening on
    /// http://HOST:PORT/mcp` on stdout once bound.
    Http(HttpArgs),
}

/// Options of the `http` transport.
#[derive(Debug, Clone, Args)]
pub struct HttpArgs {
    /// Address to bind.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,

    /// Port to bind; 0 picks a free port.
    #[arg(long, default_value_t = 0)]
    pub port: u16,

    /// Serve without sessions: every POST is handled on its own and simple
    /// responses are plain JSON instead of an SSE stream.
    #[arg(long)]
    pub stateless: bool,

    /// Extra value accepted in the `Host` header (repeatable). Loopback names
    /// and the `--host` address are always accepted; anything else is refused
    /// to block DNS rebinding.
    #[arg(long = "allowed-host", value_name = "HOST[:PORT]")]
    pub allowed_hosts: Vec<String>,
}
