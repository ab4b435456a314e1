//! One module per command; each exposes `run(args) -> Result<exit code>`. [`run()`] dispatches a parsed
//! command line, and [`exit`] holds the exit codes every command shares.

/// `println!` for a run's summary lines: a closed stdout (`redrive run … | head -1`) must not panic after the
/// run did its work, nor change its exit code. What could not be written is lost to the reader only; the run's
/// state is in its journal, audit files and exit code.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}

pub mod compile;
pub mod completions;
pub mod config_file;
pub mod filter_new;
pub mod filter_test;
pub mod fleet;
pub mod inspect;
pub mod run;
mod run_flags;
pub mod sandbox;
mod summary;

use std::process::ExitCode;

use crate::cli::{Cli, Command, FilterCommand, FleetCommand};

/// Exit codes shared by every command.
pub mod exit {
    /// Everything went as asked.
    pub const OK: u8 = 0;
    /// The command ran, and found problems: expectation mismatches, malformed input lines.
    pub const PROBLEMS: u8 = 1;
    /// Bad usage, configuration, or a module that cannot start.
    pub const USAGE: u8 = 2;
    /// A module was disabled after failing too many messages in a row.
    pub const MODULE_DISABLED: u8 = 3;
    /// The canary gate said no: nothing after the canary was forwarded.
    pub const GATE_FAILED: u8 = 4;
    /// The re-poison breaker stopped the run: too many replays came back to the DLQ.
    pub const RETURNING: u8 = 5;
    /// Stopped by Ctrl-C or SIGTERM (in-flight confirms finished, the rest left in the DLQ).
    pub const INTERRUPTED: u8 = 130;
}

/// Run a parsed command line; the returned code is the process's exit code.
pub fn run(cli: Cli) -> ExitCode {
    let result = match cli.command {
        Command::Run(args) => run::run(&args),
        Command::Plan(args) => run::plan(&args),
        Command::Filter(FilterCommand::Test(args)) => filter_test::run(&args),
        Command::Filter(FilterCommand::New(args)) => filter_new::run(&args),
        Command::Inspect(args) => inspect::run(&args),
        Command::Fleet(FleetCommand::Stop(args)) => fleet::control(&args, fleet::Control::Stop),
        Command::Fleet(FleetCommand::Pause(args)) => fleet::control(&args, fleet::Control::Pause),
        Command::Fleet(FleetCommand::Resume(args)) => fleet::control(&args, fleet::Control::Run),
        Command::Fleet(FleetCommand::Status(args)) => fleet::status(&args),
        Command::Completions(args) => completions::completions(&args),
        Command::Man => completions::man(),
        Command::InternalCompile(args) => compile::run(&args),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            // Each cause once: an error that shows its source in its own text would otherwise repeat it.
            eprintln!("error: {}", crate::core::adapter::error_chain(err.as_ref()));
            ExitCode::from(exit::USAGE)
        }
    }
}

pub(crate) use crate::core::text::clip;
