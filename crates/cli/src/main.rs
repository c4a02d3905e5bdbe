//! `dotdo`, the one binary: `dotdo start` serves durable objects over HTTP; `dotdo mcp` is
//! MCP over stdio for a running server; `dotdo bench` measures a server under load.

mod bench;
mod mcp;
mod start;

// Requests build and drop many small JSON values; mimalloc handles that churn with less
// contention and fragmentation than the system allocator.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "dotdo",
    version,
    about = "Durable objects on your own machines: one binary, one SQLite database per object."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve objects over HTTP (default http://127.0.0.1:4000, state in ./.do/state).
    Start(start::StartArgs),
    /// MCP over stdio, for AI clients that spawn a process: a proxy to a running server's
    /// `/mcp` (never opens the state directory itself).
    Mcp(mcp::McpArgs),
    /// Measure a server under load: starts one (or targets --url), runs the scenarios, and
    /// prints a table or JSON lines (see BENCHMARKS.md).
    Bench(bench::BenchArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // On stdio MCP, stderr is the client's log: only what needs attention.
    init_logging(match cli.command {
        Command::Mcp(_) | Command::Bench(_) => "warn",
        // rmcp logs every MCP session at info.
        _ => "info,rmcp=warn",
    });
    let result = match cli.command {
        Command::Start(args) => start::run(args),
        Command::Mcp(args) => mcp::run(args),
        Command::Bench(args) => bench::run(args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Logs go to stderr; `RUST_LOG` picks what (default `default`).
fn init_logging(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}
