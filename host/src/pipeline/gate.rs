//! The verification gate after the canary batch: a command (exit 0 = go on) or an interactive prompt.

use std::os::fd::AsFd;
use std::path::Path;
use std::process::Stdio;

use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;

/// What decides whether the run goes on after the canary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Gate {
    /// No gate: the canary is just the first batch.
    None,
    /// Run `sh -c <command>`; exit status 0 lets the run go on.
    Command(String),
    /// Ask on the terminal (y/N).
    Prompt,
}

impl std::fmt::Display for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Gate::None => f.write_str("no gate"),
            Gate::Command(cmd) => write!(f, "`{cmd}`"),
            Gate::Prompt => f.write_str("prompt"),
        }
    }
}

/// Run the gate for the canary `ids`, which were replayed to `destination`. `Ok` lets the run go on;
/// `Err` says why it must stop.
///
/// The command runs in `workdir`, gets the ids in `REDRIVE_CANARY_IDS` (comma-separated) and on stdin
/// (one per line), and the destination URL in `REDRIVE_STAGING`. Its output goes to redrive's stderr: stdout
/// carries only the summary (one JSON object with `--output json`).
pub async fn verify(
    gate: &Gate,
    ids: &[String],
    destination: &str,
    workdir: &Path,
    stop: &CancellationToken,
) -> Result<(), String> {
    match gate {
        Gate::None => Ok(()),
        Gate::Command(command) => {
            let to_stderr = std::io::stderr()
                .as_fd()
                .try_clone_to_owned()
                .map_err(|e| format!("cannot give the verify command an output: {e}"))?;
            let mut child = tokio::process::Command::new("sh")
                .arg("-c")
                .arg(command)
                .current_dir(workdir)
                .env("REDRIVE_CANARY_IDS", ids.join(","))
                .env("REDRIVE_STAGING", destination)
                .stdin(Stdio::piped())
                .stdout(Stdio::from(to_stderr))
                .stderr(Stdio::inherit())
                // Its own process group: a stop ends the command and whatever it started.
                .process_group(0)
                .spawn()
                .map_err(|e| format!("cannot start the verify command `{command}`: {e}"))?;
            if let Some(mut stdin) = child.stdin.take() {
                // A command that does not read stdin closes it early: not an error.
                let _ = stdin.write_all((ids.join("\n") + "\n").as_bytes()).await;
            }
            let status = tokio::select! {
                status = child.wait() => status,
                () = stop.cancelled() => {
                    // Stopping (Ctrl-C, SIGTERM): the verdict no longer matters; do not wait for it.
                    if let Some(pid) = child.id().and_then(|id| rustix::process::Pid::from_raw(id as i32)) {
                        let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::TERM);
                    }
                    let _ = child.wait().await;
                    return Err(format!("the run was stopped while the verify command `{command}` ran; it was ended"));
                }
            }
            .map_err(|e| format!("verify command `{command}` could not be waited for: {e}"))?;
            if status.success() {
                Ok(())
            } else {
                Err(format!("verify command `{command}` failed ({status})"))
            }
        }
        Gate::Prompt => {
            let question = format!(
                "The canary of {} messages was replayed to {destination}. Continue with the rest? [y/N] ",
                ids.len()
            );
            let answer = tokio::task::spawn_blocking(move || {
                eprint!("{question}");
                let mut line = String::new();
                std::io::stdin().read_line(&mut line).map(|_| line)
            })
            .await
            .map_err(|e| format!("prompt failed: {e}"))?
            .map_err(|e| format!("cannot read the answer: {e}"))?;
            if matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes") {
                Ok(())
            } else {
                Err("the operator answered no at the canary prompt".into())
            }
        }
    }
}
