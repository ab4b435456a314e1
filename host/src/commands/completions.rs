//! `redrive completions SHELL` and `redrive man`: shell completion scripts (clap_complete) and the man page
//! (clap_mangen), both generated from the same definitions as the command line itself, so they never drift.

use std::io::Write;

use anyhow::{Context, Result};
use clap::CommandFactory;

use super::exit;
use crate::cli::{Cli, CompletionsArgs, Shell};

/// Print the completion script for `args.shell` on stdout.
pub fn completions(args: &CompletionsArgs) -> Result<u8> {
    let shell = match args.shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
        Shell::Fish => clap_complete::Shell::Fish,
        Shell::Powershell => clap_complete::Shell::PowerShell,
        Shell::Elvish => clap_complete::Shell::Elvish,
    };
    let mut command = Cli::command();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut command, "redrive", &mut out);
    write_stdout(&out)
}

/// Print the man page (roff) on stdout.
pub fn man() -> Result<u8> {
    let mut out = Vec::new();
    clap_mangen::Man::new(Cli::command())
        .render(&mut out)
        .context("rendering the man page")?;
    write_stdout(&out)
}

fn write_stdout(bytes: &[u8]) -> Result<u8> {
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(bytes).and_then(|()| stdout.flush()) {
        Ok(()) => Ok(exit::OK),
        // `redrive man | head`: a closed pipe is not an error worth a message.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(exit::OK),
        Err(e) => Err(e).context("writing to stdout"),
    }
}
