//! Logging to the message's audit record.
//!
//! On WebAssembly each call goes to the host's `log` import: the line is written
//! to the audit record of the message being decided (lines beyond the module's
//! log limit are dropped and replaced by a truncation marker).
//!
//! Natively (unit tests, benchmarks) the lines are kept in a thread-local
//! buffer instead, so tests can check what a filter logged with
//! [`take_native_logs`]:
//!
//! ```
//! use redrive_guest::log;
//!
//! log::info(format!("matched {}", "timeout"));
//! log::warn("odd message");
//! let lines = log::take_native_logs();
//! assert_eq!(lines[0].level, log::Level::Info);
//! assert_eq!(lines[0].text, "matched timeout");
//! assert_eq!(lines.len(), 2);
//! assert!(log::take_native_logs().is_empty());
//! ```

use std::fmt;

/// Severity of a log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// Very detailed tracing.
    Trace,
    /// Debugging detail.
    Debug,
    /// Normal information, e.g. which rule matched.
    Info,
    /// Something unexpected that the filter handled.
    Warn,
    /// Something went wrong.
    Error,
}

impl Level {
    /// Lowercase name: `"trace"`, `"debug"`, `"info"`, `"warn"` or `"error"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Trace => "trace",
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One captured log line (see [`take_native_logs`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// Severity.
    pub level: Level,
    /// The text as logged.
    pub text: String,
}

/// Writes a line at the given level to the message's audit record.
pub fn log(level: Level, text: impl AsRef<str>) {
    imp::log(level, text.as_ref());
}

/// Logs at [`Level::Trace`].
pub fn trace(text: impl AsRef<str>) {
    log(Level::Trace, text);
}

/// Logs at [`Level::Debug`].
pub fn debug(text: impl AsRef<str>) {
    log(Level::Debug, text);
}

/// Logs at [`Level::Info`].
pub fn info(text: impl AsRef<str>) {
    log(Level::Info, text);
}

/// Logs at [`Level::Warn`].
pub fn warn(text: impl AsRef<str>) {
    log(Level::Warn, text);
}

/// Logs at [`Level::Error`].
pub fn error(text: impl AsRef<str>) {
    log(Level::Error, text);
}

/// Native builds keep at most this many lines per thread until
/// [`take_native_logs`] empties the buffer; later lines are dropped, so a
/// benchmark that calls a filter millions of times does not grow without bound.
pub const NATIVE_LOG_CAPACITY: usize = 10_000;

/// Returns and clears the lines logged so far on this thread.
///
/// Only native builds capture lines; on WebAssembly they go to the host and
/// this always returns an empty list.
pub fn take_native_logs() -> Vec<LogLine> {
    imp::take()
}

#[cfg(target_arch = "wasm32")]
mod imp {
    use super::Level;
    use crate::bindings::redrive::filter::host;
    use crate::bindings::redrive::filter::types::LogLevel;

    pub(super) fn log(level: Level, text: &str) {
        let level = match level {
            Level::Trace => LogLevel::Trace,
            Level::Debug => LogLevel::Debug,
            Level::Info => LogLevel::Info,
            Level::Warn => LogLevel::Warn,
            Level::Error => LogLevel::Error,
        };
        host::log(level, text);
    }

    pub(super) fn take() -> Vec<super::LogLine> {
        Vec::new()
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod imp {
    use super::{Level, LogLine, NATIVE_LOG_CAPACITY};
    use std::cell::RefCell;

    thread_local! {
        static NATIVE_LOGS: RefCell<Vec<LogLine>> = const { RefCell::new(Vec::new()) };
    }

    pub(super) fn take() -> Vec<LogLine> {
        NATIVE_LOGS.with(|logs| std::mem::take(&mut *logs.borrow_mut()))
    }

    pub(super) fn log(level: Level, text: &str) {
        NATIVE_LOGS.with(|logs| {
            let mut logs = logs.borrow_mut();
            if logs.len() < NATIVE_LOG_CAPACITY {
                logs.push(LogLine {
                    level,
                    text: text.to_string(),
                });
            }
        });
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;

    #[test]
    fn every_level_is_captured_in_order() {
        let _ = take_native_logs();
        trace("t");
        debug(String::from("d"));
        info("i");
        warn("w");
        error(format!("e{}", 1));
        log(Level::Info, "direct");
        let lines = take_native_logs();
        let got: Vec<(Level, &str)> = lines.iter().map(|l| (l.level, l.text.as_str())).collect();
        assert_eq!(
            got,
            vec![
                (Level::Trace, "t"),
                (Level::Debug, "d"),
                (Level::Info, "i"),
                (Level::Warn, "w"),
                (Level::Error, "e1"),
                (Level::Info, "direct"),
            ]
        );
        assert!(take_native_logs().is_empty());
    }

    #[test]
    fn buffer_is_capped() {
        let _ = take_native_logs();
        for i in 0..NATIVE_LOG_CAPACITY + 5 {
            debug(i.to_string());
        }
        let lines = take_native_logs();
        assert_eq!(lines.len(), NATIVE_LOG_CAPACITY);
        assert_eq!(lines.last().unwrap().text, (NATIVE_LOG_CAPACITY - 1).to_string());
        assert_eq!(Level::Warn.to_string(), "warn");
    }
}
