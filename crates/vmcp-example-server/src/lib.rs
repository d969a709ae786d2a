//! `vmcp-example-server`: the project's own small MCP server.
//!
//! It backs the quickstart example (over stdio and over HTTP), serves as the
//! fast backend of the gateway's latency benchmark and is a known peer in
//! tests. It offers:
//!
//! - tools `echo {text}`, `add {a, b}`, `whoami`, `slow {millis}` (progress
//!   every 100 ms, stops when cancelled), `fail` (`isError: true`) and
//!   `toggle_extra`, which adds or removes a tool `extra` and announces it
//!   with `notifications/tools/list_changed`;
//! - resource `example://NAME/info` and resource template
//!   `example://items/{id}`;
//! - prompt `greet {name}`, with completion of `name`.
//!
//! With `--latency-tools` it also offers `set_latency {millis}`, which delays
//! every later answer (`ping`, lists, reads, prompts, completions and tool
//! calls; not `initialize`) and `set_call_latency {millis}`, which delays
//! tool calls only. Both apply to every session and answer at once
//! themselves, so a test can make the server slow or make only its tools
//! time out while health probes stay fast.
//!
//! Besides the binary, the crate exposes the handler ([`ExampleServer`]) so
//! tests can serve it in-process, e.g. over `tokio::io::duplex`.

pub mod catalogue;
pub mod cli;
pub mod handler;
pub mod transports;

use std::io::Write as _;

use anyhow::Context as _;
use tokio_util::sync::CancellationToken;

pub use handler::{ExampleServer, ServerOptions};

/// Run the server the command line asks for, until its transport closes or
/// the process gets SIGTERM or ctrl-c.
///
/// In HTTP mode, prints `listening on http://HOST:PORT/mcp` on stdout once
/// the socket is bound.
pub async fn run(cli: cli::Cli) -> anyhow::Result<()> {
    let server = ExampleServer::with_options(
        cli.name,
        ServerOptions {
            latency_tools: cli.latency_tools,
        },
    );
    let shutdown = CancellationToken::new();
    tokio::spawn({
        let shutdown = shutdown.clone();
        async move {
            transports::shutdown_signal().await;
            shutdown.cancel();
        }
    });
    match cli.transport {
        cli::Transport::Stdio => transports::serve_stdio(server, shutdown).await,
        cli::Transport::Http(args) => {
            let listener = tokio::net::TcpListener::bind((args.host.as_str(), args.port))
                .await
                .with_context(|| format!("binding {}:{}", args.host, args.port))?;
            let address = listener.local_addr().context("reading the bound address")?;
            {
                let mut stdout = std::io::stdout().lock();
                writeln!(
                    stdout,
                    "listening on http://{address}{}",
                    transports::MCP_PATH
                )
                .and_then(|()| stdout.flush())
                .context("announcing the address on stdout")?;
            }
            tracing::info!(%address, stateless = args.stateless, "serving MCP over HTTP");
            let options = transports::HttpOptions {
                stateless: args.stateless,
                allowed_hosts: args.allowed_hosts,
            };
            transports::serve_http(listener, server, options, shutdown).await
        }
    }
}
