//! The sandbox a guest runs in: a deny-all WASI context, captured and capped stdout/stderr,
//! a memory limiter that remembers what it refused, and the collector behind the `log` import.

use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use bytes::Bytes;
use serde::Serialize;
use wasmtime::ResourceLimiter;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};
use wasmtime_wasi::{ResourceTable, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use super::blocking::{BoundedWaits, WaitLimit};
use super::watched::{self, ReadFlag};

/// One line a module logged while handling a message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LogLine {
    /// `trace`, `debug`, `info`, `warn`, `error`, or `stdout` / `stderr` for captured output. Written only
    /// when it is not `info` (most lines are: the audit records stay short).
    #[serde(skip_serializing_if = "is_info")]
    pub level: &'static str,
    /// The text (one line; captured output is split at newlines).
    pub text: String,
}

/// The level an audit record's log line leaves out.
fn is_info(level: &&'static str) -> bool {
    *level == "info"
}

/// Log lines of one call, capped by bytes, with what was dropped.
#[derive(Debug, Default)]
pub(crate) struct LogCollector {
    cap: u64,
    used: u64,
    lines: Vec<LogLine>,
    dropped_lines: u64,
    dropped_bytes: u64,
}

impl LogCollector {
    pub(crate) fn new(cap: u64) -> Self {
        Self {
            cap,
            ..Default::default()
        }
    }

    pub(crate) fn push(&mut self, level: &'static str, text: &str) {
        let len = text.len() as u64;
        if self.used + len > self.cap {
            self.dropped_lines += 1;
            self.dropped_bytes += len;
            return;
        }
        self.used += len;
        self.lines.push(LogLine {
            level,
            text: text.to_owned(),
        });
    }

    /// A note from the host about truncation: always kept, whatever the cap.
    pub(crate) fn push_marker(&mut self, text: String) {
        self.lines.push(LogLine { level: "warn", text });
    }

    /// The lines of the call so far, with a truncation marker when the cap was hit; resets for the next call.
    pub(crate) fn take(&mut self) -> Vec<LogLine> {
        if self.dropped_lines > 0 {
            self.push_marker(format!(
                "[redrive: {} more log lines ({} bytes) dropped: over the log limit of {} per message]",
                self.dropped_lines,
                self.dropped_bytes,
                super::limits::format_size(self.cap)
            ));
        }
        let lines = std::mem::take(&mut self.lines);
        self.used = 0;
        self.dropped_lines = 0;
        self.dropped_bytes = 0;
        lines
    }
}

/// Bytes a guest wrote to stdout or stderr, kept up to a cap; the rest is counted and dropped.
/// The guest never sees a write error, so a chatty filter is not turned into a failing one.
#[derive(Clone)]
pub(crate) struct CapturedOutput {
    inner: Arc<Mutex<CaptureBuf>>,
}

struct CaptureBuf {
    cap: usize,
    buf: Vec<u8>,
    dropped: u64,
}

impl CapturedOutput {
    pub(crate) fn new(cap: usize) -> Self {
        Self {
            inner: Arc::new(Mutex::new(CaptureBuf {
                cap,
                buf: Vec::new(),
                dropped: 0,
            })),
        }
    }

    fn write(&self, data: &[u8]) {
        let mut b = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        let room = b.cap.saturating_sub(b.buf.len());
        let keep = room.min(data.len());
        b.buf.extend_from_slice(&data[..keep]);
        b.dropped += (data.len() - keep) as u64;
    }

    /// Move what was written since the last call into `logs`, one line per line of output.
    pub(crate) fn drain_into(&self, level: &'static str, logs: &mut LogCollector) {
        let (buf, dropped) = {
            let mut b = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
            (std::mem::take(&mut b.buf), std::mem::take(&mut b.dropped))
        };
        if !buf.is_empty() {
            let text = String::from_utf8_lossy(&buf);
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                logs.push(level, line);
            }
        }
        if dropped > 0 {
            logs.push_marker(format!(
                "[redrive: {dropped} bytes of {level} dropped: over the capture limit]"
            ));
        }
    }

    /// Take everything captured so far: the bytes kept and how many were dropped over the cap.
    pub(crate) fn take_bytes(&self) -> (Vec<u8>, u64) {
        let mut b = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        (std::mem::take(&mut b.buf), std::mem::take(&mut b.dropped))
    }

    /// Text captured since the last drain, without draining it.
    pub(crate) fn peek_text(&self) -> String {
        let b = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        String::from_utf8_lossy(&b.buf).into_owned()
    }
}

impl IsTerminal for CapturedOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CapturedOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

/// Largest single write permitted; the guest loops for more.
const WRITE_PERMIT: usize = 64 * 1024;

impl OutputStream for CapturedOutput {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        CapturedOutput::write(self, &bytes);
        Ok(())
    }
    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }
    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(WRITE_PERMIT)
    }
}

#[async_trait::async_trait]
impl Pollable for CapturedOutput {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for CapturedOutput {
    fn poll_write(self: Pin<&mut Self>, _cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        CapturedOutput::write(&self, buf);
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Caps linear memory and table growth, and remembers a refused memory growth so the failure
/// can say "memory limit hit" instead of the allocator's abort it turns into inside the guest.
pub(crate) struct Limiter {
    memory_cap: usize,
    /// The size a refused `memory.grow` asked for.
    pub(crate) refused_memory: Option<usize>,
}

impl Limiter {
    /// A limiter allowing linear memories up to `memory_cap` bytes.
    pub(crate) fn new(memory_cap: u64) -> Self {
        Self {
            memory_cap: usize::try_from(memory_cap).unwrap_or(usize::MAX),
            refused_memory: None,
        }
    }
}

/// Table elements any one table may grow to.
const MAX_TABLE_ELEMENTS: usize = 1 << 20;

impl ResourceLimiter for Limiter {
    fn memory_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        if desired > self.memory_cap {
            self.refused_memory = Some(desired);
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(&mut self, _current: usize, desired: usize, _maximum: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}

/// The host state of one guest instance.
pub(crate) struct GuestState {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(crate) limiter: Limiter,
    pub(crate) logs: LogCollector,
    pub(crate) stdout: CapturedOutput,
    pub(crate) stderr: CapturedOutput,
    /// How long a blocking host call of the current call may wait.
    pub(crate) wait: WaitLimit,
}

/// WASI with no capabilities: no files, no preopens, no environment, no arguments, no network, stdin empty;
/// stdout and stderr go to the given captures. Shared by both profiles of the contract.
pub(crate) fn deny_all_wasi(stdout: &CapturedOutput, stderr: &CapturedOutput) -> WasiCtxBuilder {
    let mut builder = WasiCtxBuilder::new();
    builder
        .stdout(stdout.clone())
        .stderr(stderr.clone())
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false);
    builder
}

impl GuestState {
    /// A sandbox with no capabilities: no files, no preopens, no environment, no arguments, no network,
    /// stdin closed, stdout/stderr captured up to `log_cap` bytes each; blocking host calls bounded by `wait`.
    /// With `watch`, the clocks and random sources set that flag when the guest reads them (`watched.rs`).
    pub(crate) fn new(memory_cap: u64, log_cap: u64, wait: WaitLimit, watch: Option<&ReadFlag>) -> Self {
        let stdout = CapturedOutput::new(log_cap as usize);
        let stderr = CapturedOutput::new(log_cap as usize);
        let mut builder = deny_all_wasi(&stdout, &stderr);
        if let Some(flag) = watch {
            watched::watch(&mut builder, flag);
        }
        let wasi = builder.build();
        Self {
            wasi,
            table: ResourceTable::new(),
            limiter: Limiter::new(memory_cap),
            logs: LogCollector::new(log_cap),
            stdout,
            stderr,
            wait,
        }
    }

    /// Whether host resources (streams, pollables) handed to the guest are still open.
    pub(crate) fn holds_resources(&self) -> bool {
        !self.table.is_empty()
    }

    /// Everything logged during the call that just ended: `log` lines, then stdout, then stderr.
    pub(crate) fn take_logs(&mut self) -> Vec<LogLine> {
        self.stdout.drain_into("stdout", &mut self.logs);
        self.stderr.drain_into("stderr", &mut self.logs);
        self.logs.take()
    }
}

impl BoundedWaits for GuestState {
    fn table(&mut self) -> &mut ResourceTable {
        &mut self.table
    }

    fn wait_limit(&self) -> &WaitLimit {
        &self.wait
    }
}

impl WasiView for GuestState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_collector_caps_and_marks_truncation() {
        let mut logs = LogCollector::new(10);
        logs.push("info", "12345");
        logs.push("info", "67890");
        logs.push("info", "overflow");
        logs.push("info", "more");
        let lines = logs.take();
        assert_eq!(lines.len(), 3);
        assert!(
            lines[2].text.contains("2 more log lines (12 bytes) dropped"),
            "{:?}",
            lines[2]
        );
        assert!(logs.take().is_empty(), "take resets");
    }

    #[test]
    fn captured_output_keeps_up_to_the_cap_and_splits_lines() {
        let out = CapturedOutput::new(8);
        out.write(b"one\ntwo\nthree\n");
        let mut logs = LogCollector::new(1024);
        out.drain_into("stdout", &mut logs);
        let lines = logs.take();
        assert_eq!(lines[0].text, "one");
        assert_eq!(lines[1].text, "two");
        assert!(lines[2].text.contains("6 bytes of stdout dropped"));
    }
}
