//! How a module call failed: a typed kind (for grouping failures) and one readable reason.

use serde::Serialize;
use wasmtime::{Trap, WasmBacktrace};

use super::blocking::HostWaitCut;
use super::error::error_chain;
use super::limits::{Limits, format_size};

/// How a module call failed. Written into each failed audit record as `kind`, next to the reason's text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// It trapped: a panic, an unreachable, a stack overflow, an exit with an error code.
    Trap,
    /// It ran, or waited in a host call, past the per-message deadline.
    Timeout,
    /// It used its whole fuel budget.
    OutOfFuel,
    /// It tried to grow its memory past the limit.
    MemoryRefused,
    /// The filter itself returned an error for this message.
    FilterError,
    /// Its answer is unusable: not the contract's shape, or past a cap (body, reason, attribute changes).
    BadOutput,
    /// A new instance (after an earlier failure) could not be started.
    CouldNotStart,
    /// The run was stopping (Ctrl-C / SIGTERM): not the filter's doing.
    Interrupted,
}

impl FailureKind {
    /// Every kind, in a fixed order (for counters indexed by kind).
    pub const ALL: [FailureKind; 8] = [
        FailureKind::Trap,
        FailureKind::Timeout,
        FailureKind::OutOfFuel,
        FailureKind::MemoryRefused,
        FailureKind::FilterError,
        FailureKind::BadOutput,
        FailureKind::CouldNotStart,
        FailureKind::Interrupted,
    ];

    /// The name written in audit records and metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Trap => "trap",
            FailureKind::Timeout => "timeout",
            FailureKind::OutOfFuel => "out_of_fuel",
            FailureKind::MemoryRefused => "memory_refused",
            FailureKind::FilterError => "filter_error",
            FailureKind::BadOutput => "bad_output",
            FailureKind::CouldNotStart => "could_not_start",
            FailureKind::Interrupted => "interrupted",
        }
    }

    /// Its place in [`FailureKind::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// A failed module call: how, and why in words.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct CallFailure {
    /// How it failed.
    pub kind: FailureKind,
    /// Why, for people: the trap or limit, the guest's panic message, the innermost guest functions.
    pub message: String,
}

impl CallFailure {
    /// A failure of `kind` with this reason.
    pub fn new(kind: FailureKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
}

/// What the sandbox knew when a call went wrong.
pub(crate) struct FailureContext<'a> {
    pub limits: &'a Limits,
    /// A memory growth the limiter refused, in bytes.
    pub refused_memory: Option<usize>,
    /// What the guest wrote to stderr during the call.
    pub stderr: &'a str,
    /// The run is stopping: an interrupted call says so instead of "timed out".
    pub stopping: bool,
}

/// Describe a failed call: its kind, and the trap or limit, the guest's panic message when there is one,
/// and the innermost guest functions of the wasm backtrace.
pub(crate) fn describe(err: &wasmtime::Error, cx: &FailureContext<'_>) -> CallFailure {
    if let Some(cut) = err.downcast_ref::<HostWaitCut>() {
        let kind = match cut {
            HostWaitCut::Deadline(_) => FailureKind::Timeout,
            HostWaitCut::Stopping => FailureKind::Interrupted,
        };
        return CallFailure::new(kind, cut.to_string());
    }
    let (kind, mut reason) = match err.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) if cx.stopping => (FailureKind::Interrupted, HostWaitCut::Stopping.to_string()),
        Some(Trap::Interrupt) => (
            FailureKind::Timeout,
            format!(
                "timed out: still running after the per-message deadline of {}",
                humantime::format_duration(cx.limits.timeout)
            ),
        ),
        Some(Trap::OutOfFuel) => (
            FailureKind::OutOfFuel,
            match cx.limits.fuel {
                Some(budget) => format!("fuel exhausted: used its whole budget of {budget} units"),
                None => "fuel exhausted".to_string(),
            },
        ),
        Some(Trap::StackOverflow) => (FailureKind::Trap, "stack overflow: recursion too deep".to_string()),
        Some(trap) => match (cx.refused_memory, panic_message(cx.stderr)) {
            (Some(size), _) => (
                FailureKind::MemoryRefused,
                format!(
                    "memory limit hit: tried to grow its memory to {}, the limit is {}",
                    format_size(size as u64),
                    format_size(cx.limits.memory_bytes)
                ),
            ),
            (None, Some(panic)) => (FailureKind::Trap, format!("panicked: {panic}")),
            (None, None) => match last_line(cx.stderr) {
                Some(line) => (FailureKind::Trap, format!("trapped: {trap} (stderr: {line})")),
                None => (FailureKind::Trap, format!("trapped: {trap}")),
            },
        },
        None => (FailureKind::Trap, format!("error: {}", error_chain(err))),
    };
    if let Some(frames) = backtrace(err) {
        reason.push_str(&format!(" [in {frames}]"));
    }
    CallFailure::new(kind, reason)
}

/// The message of a Rust panic as printed by the default panic hook:
/// `thread '<name>' panicked at src/lib.rs:10:5:\n<message>\nnote: ...`.
pub(crate) fn panic_message(stderr: &str) -> Option<String> {
    let start = stderr.find("panicked at ")?;
    let rest = &stderr[start + "panicked at ".len()..];
    let (location, message) = rest.split_once(":\n")?;
    let message: Vec<&str> = message
        .lines()
        .take_while(|l| !l.starts_with("note: ") && !l.starts_with("stack backtrace:"))
        .collect();
    Some(truncate(&format!("{} (at {location})", message.join(" ").trim()), 500))
}

fn last_line(text: &str) -> Option<String> {
    text.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .map(|l| truncate(l.trim(), 300))
}

fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// Guest function names from the innermost frames, skipping the standard library's panic machinery.
fn backtrace(err: &wasmtime::Error) -> Option<String> {
    const NOISE: &[&str] = &[
        "core::",
        "std::",
        "alloc::",
        "__rust",
        "rust_panic",
        "abort",
        "wit_bindgen",
        "<alloc::",
        "<core::",
        "<std::",
    ];
    let bt = err.downcast_ref::<WasmBacktrace>()?;
    let names: Vec<String> = bt
        .frames()
        .iter()
        .filter_map(|f| f.func_name())
        .map(|name| format!("{:#}", rustc_demangle::demangle(name)))
        .filter(|name| !NOISE.iter().any(|n| name.starts_with(n)))
        .take(4)
        .map(|name| truncate(&name, 120))
        .collect();
    (!names.is_empty()).then(|| names.join(" <- "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_rust_panic_message() {
        let stderr = "\nthread '<unnamed>' panicked at src/lib.rs:12:9:\nboom: cannot handle message m-1\nnote: run with `RUST_BACKTRACE=1` environment variable to display a backtrace\n";
        assert_eq!(
            panic_message(stderr).as_deref(),
            Some("boom: cannot handle message m-1 (at src/lib.rs:12:9)")
        );
        assert_eq!(panic_message("just some output"), None);
    }

    #[test]
    fn truncates_on_char_boundaries() {
        assert_eq!(truncate("héllo", 2), "h…");
        assert_eq!(truncate("abc", 5), "abc");
    }
}
