//! The `redrive` binary: parses the command line and hands it to the library.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = redrive::cli::Cli::parse();
    // -v raises redrive's own level only; the engine's internals stay at warn unless RUST_LOG says otherwise.
    // The AMQP client logs every broker refusal as an error itself; redrive reports those in its own words.
    let default_filter = match cli.verbose {
        0 => "warn,lapin=off",
        1 => "warn,lapin=warn,redrive=debug",
        _ => "warn,redrive=trace",
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter)))
        .init();
    redrive::cli::run(cli)
}
