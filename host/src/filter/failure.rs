//! Turning a trap or limit hit into one readable reason.

use wasmtime::{Trap, WasmBacktrace};

use super::blocking::HostWaitCut;
use super::error::error_chain;
use super::limits::{Limits, format_size};

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

/// Describe a failed call: trap kind or limit, the guest's panic message when there is one,
/// and the innermost guest functions of the wasm backtrace.
pub(crate) fn describe(err: &wasmtime::Error, cx: &FailureContext<'_>) -> String {
    if let Some(cut) = err.downcast_ref::<HostWaitCut>() {
        return cut.to_string();
    }
    let mut reason = match err.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) if cx.stopping => HostWaitCut::Stopping.to_string(),
        Some(Trap::Interrupt) => format!(
            "timed out: still running after the per-message deadline of {}",
            humantime::format_duration(cx.limits.timeout)
        ),
        Some(Trap::OutOfFuel) => format!("fuel exhausted: used its whole budget of {} units", cx.limits.fuel),
        Some(Trap::StackOverflow) => "stack overflow: recursion too deep".to_string(),
        Some(trap) => match (cx.refused_memory, panic_message(cx.stderr)) {
            (Some(size), _) => format!(
                "memory limit hit: tried to grow its memory to {}, the limit is {}",
                format_size(size as u64),
                format_size(cx.limits.memory_bytes)
            ),
            (None, Some(panic)) => format!("panicked: {panic}"),
            (None, None) => match last_line(cx.stderr) {
                Some(line) => format!("trapped: {trap} (stderr: {line})"),
                None => format!("trapped: {trap}"),
            },
        },
        None => format!("error: {}", error_chain(err)),
    };
    if let Some(frames) = backtrace(err) {
        reason.push_str(&format!(" [in {frames}]"));
    }
    reason
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
