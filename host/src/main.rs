//! The `redrive` binary: parses the command line and hands it to the library.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

/// jemalloc instead of glibc's malloc: a message is allocated by one pipeline stage and freed by another, on
/// another thread, and glibc's per-arena locks made those threads wait on each other (BENCHMARKS.md, issue 18).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let cli = redrive::cli::Cli::parse();
    // -v raises redrive's own level only; the engine's internals stay at warn unless RUST_LOG says otherwise.
    // The AMQP client logs every broker refusal as an error itself; redrive reports those in its own words.
    // wasmtime-wasi warns on every unimplemented call a guest makes (`sock_accept`...): a filter could flood
    // redrive's own output with them, so they stay off; what a guest does is in its audit record.
    let default_filter = match cli.verbose {
        0 => "warn,lapin=off,wasmtime_wasi=off,wiggle=off",
        1 => "warn,lapin=warn,redrive=debug,wasmtime_wasi=off,wiggle=off",
        _ => "warn,redrive=trace,wasmtime_wasi=off,wiggle=off",
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter)))
        .init();
    redrive::commands::run(cli)
}
