//! `vmcp`: the Virtual MCP Server command line.

mod allocator;
mod kubernetes;
mod logging;
mod serve;
mod status_cmd;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// The port `vmcp serve` listens on unless told otherwise.
pub const DEFAULT_PORT: u16 = 4483;

#[derive(Parser)]
#[command(
    name = "vmcp",
    version,
    about = "Virtual MCP Server: one MCP endpoint in front of many MCP servers"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Serve(serve::ServeArgs),
    /// Check a configuration file and report every problem in it.
    Validate {
        /// The configuration file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Show the status of the gateways on this machine (from their state files).
    Status(status_cmd::StatusArgs),
    /// Print the version.
    Version,
    /// Print the JSON Schema of the configuration file.
    #[command(hide = true)]
    ConfigSchema,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve::run(args),
        Command::Validate { config } => match vmcp_config::load_file(&config) {
            Ok(loaded) => {
                println!(
                    "{}: ok ({} backends)",
                    config.display(),
                    loaded.backends.len()
                );
                ExitCode::SUCCESS
            }
            Err(err) => {
                eprintln!("{err}");
                ExitCode::from(2)
            }
        },
        Command::Status(args) => status_cmd::run(args),
        Command::Version => {
            println!("vmcp {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Command::ConfigSchema => {
            print!("{}", vmcp_config::schema::config_schema_json());
            ExitCode::SUCCESS
        }
    }
}
