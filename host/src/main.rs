//! The `redrive` binary: parses the command line and hands it to the library.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

/// jemalloc instead of glibc's malloc: a message is allocated by one pipeline stage and freed by another, on
/// another thread, and glibc's per-arena locks made those threads wait on each other (BENCHMARKS.md, issue 18).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read at its first allocation (its `malloc_conf`, under the prefix tikv-jemallocator
/// builds it with; a C string, so a thin reference to NUL-terminated bytes). One arena per CPU, used by
/// whichever thread runs there, instead of jemalloc's default four per CPU, each keeping the pages its
/// threads freed for ten seconds: the pipeline's threads hand messages to each other, so every arena held
/// some, ~3 MiB in all on two CPUs (BENCHMARKS.md, issue 18). `_RJEM_MALLOC_CONF` in the environment still
/// overrides it.
#[unsafe(export_name = "_rjem_malloc_conf")]
static MALLOC_CONF: &[u8; 20] = b"percpu_arena:percpu\0";

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
