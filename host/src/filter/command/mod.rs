//! The command profile: a WASI preview-1 core module exporting `_start` that reads JSON request lines on
//! stdin and answers each with one JSON line on stdout (`guest-sdk/wit/command.schema.json`).
//!
//! For languages without mature component tooling (Go, Zig, AssemblyScript, ...). The contract is the
//! component's, carried as JSON: an `init` request with the configuration, then `decide` requests with one
//! message each; stderr lines become the message's log lines. The same limits as for a component call apply
//! to each message (fuel, deadline, memory).
//!
//! Two ways to run one, following the module's instance policy:
//! - [`run`] (`fresh`): a new instance per message, fed `init` then one `decide`; the module's own start-up
//!   counts against the message's limits.
//! - [`Session`] (`reuse`, the default): one instance kept alive on a thread of its own, fed one request at
//!   a time through its stdin ([`stdin`]), so the language runtime starts once, not per message.

mod session;
mod stdin;

pub(crate) use session::Session;
use stdin::Input;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::Deserialize;
use serde_json::{Value, json};
use wasmtime::{InstancePre, Linker, Store};
use wasmtime_wasi::I32Exit;
use wasmtime_wasi::p1::{self, WasiP1Ctx};

use super::blocking::{CommandWaits, WaitLimit};
use super::component::{CONTRACT, WitMessage};
use super::failure::{self, FailureContext};
use super::failure::{CallFailure, FailureKind};
use super::limits::deadline_ticks;
use super::limits::{Limits, format_size};
use super::sandbox::{CapturedOutput, Limiter, LogCollector, LogLine, deny_all_wasi};
use crate::core::envelope::{AttributeChange, Decision, Verdict};

/// The host state of one command instance.
pub(crate) struct CommandState {
    wasi: WasiP1Ctx,
    limiter: Limiter,
    stdout: CapturedOutput,
    stderr: CapturedOutput,
    input: Input,
    /// How long a blocking host call (`poll_oneoff`) of the current request may wait.
    wait: WaitLimit,
    /// The instance's start: zero of its monotonic clock.
    clock_base: Instant,
}

impl CommandWaits for CommandState {
    fn wait_limit(&self) -> &WaitLimit {
        &self.wait
    }

    fn clock_base(&self) -> Instant {
        self.clock_base
    }

    fn stdin_ready(&self) -> u64 {
        self.input.ready()
    }
}

impl CommandState {
    /// A sandbox with no capabilities: no files, environment, arguments or network; `input` as stdin;
    /// stdout kept up to twice the output limit, stderr up to the log limit.
    fn new(input: Input, limits: &Limits, stopping: Arc<AtomicBool>) -> Self {
        // A decision's body may be base64 (4/3 larger) inside a JSON line; leave room for both answers.
        let output_cap = usize::try_from(limits.max_output_bytes.saturating_mul(2) + (64 << 10)).unwrap_or(usize::MAX);
        let stdout = CapturedOutput::new(output_cap);
        let stderr = CapturedOutput::new(usize::try_from(limits.max_log_bytes).unwrap_or(usize::MAX));
        // stdin itself is served by `stdin::fd_read`; WASI's own stdin stays empty.
        let wasi = deny_all_wasi(&stdout, &stderr).build_p1();
        Self {
            wasi,
            limiter: Limiter::new(limits.memory_bytes),
            stdout,
            stderr,
            input,
            wait: WaitLimit::starting_now(limits.timeout, stopping),
            clock_base: Instant::now(),
        }
    }
}

/// Add WASI preview 1 (backed by the deny-all context of [`CommandState`], with the host's stdin) to a core
/// linker.
pub(crate) fn add_to_linker(linker: &mut Linker<CommandState>) -> wasmtime::Result<()> {
    p1::add_to_linker_sync(linker, |state| &mut state.wasi)?;
    stdin::add_to_linker(linker)
}

/// True when a core module is a command: it exports a `_start` function.
pub(crate) fn is_command(module: &wasmtime::Module) -> bool {
    module
        .exports()
        .any(|export| export.name() == "_start" && export.ty().func().is_some())
}

/// What one run of a command instance produced.
pub(crate) struct CommandRun {
    /// The answer lines on stdout, in order, or why the run went wrong.
    pub answers: Result<Vec<String>, CallFailure>,
    /// Fuel the run consumed, where fuel is counted.
    pub fuel: Option<u64>,
    /// stderr, as log lines.
    pub logs: Vec<LogLine>,
}

/// Run a fresh instance on `requests` (already newline-terminated JSON lines) until it exits.
///
/// WASI preview 1 blocks on a Tokio runtime for stdin and stdout, which must not happen on a thread that
/// is running async tasks (a module starting inside `redrive run`'s runtime): there the run moves to a
/// scoped thread of its own. Filter workers are plain threads and run it in place.
pub(crate) fn run(
    pre: &InstancePre<CommandState>,
    limits: &Limits,
    requests: Vec<u8>,
    stopping: Arc<AtomicBool>,
) -> CommandRun {
    if tokio::runtime::Handle::try_current().is_err() {
        return run_here(pre, limits, requests, stopping);
    }
    std::thread::scope(|scope| {
        let worker = std::thread::Builder::new()
            .name("redrive-command".into())
            .spawn_scoped(scope, || run_here(pre, limits, requests, stopping));
        match worker.map(|handle| handle.join()) {
            Ok(Ok(run)) => run,
            Ok(Err(_)) => CommandRun {
                answers: Err(CallFailure::new(
                    FailureKind::Trap,
                    "the host thread running the module panicked",
                )),
                fuel: None,
                logs: Vec::new(),
            },
            Err(e) => CommandRun {
                answers: Err(CallFailure::new(
                    FailureKind::CouldNotStart,
                    format!("cannot start a thread to run the module: {e}"),
                )),
                fuel: None,
                logs: Vec::new(),
            },
        }
    })
}

fn run_here(
    pre: &InstancePre<CommandState>,
    limits: &Limits,
    requests: Vec<u8>,
    stopping: Arc<AtomicBool>,
) -> CommandRun {
    let input = Input::Fixed {
        bytes: requests,
        pos: 0,
    };
    let (answers, fuel, logs) = run_to_end(pre, limits, input, stopping);
    CommandRun { answers, fuel, logs }
}

/// Instantiate the module with `input` as stdin and run `_start` to its end, under one message's limits until
/// the first request arrives (a session resets them per request). Returns what it left behind (see [`ended`])
/// and the fuel it used since the last reset.
fn run_to_end(
    pre: &InstancePre<CommandState>,
    limits: &Limits,
    input: Input,
    stopping: Arc<AtomicBool>,
) -> (Result<Vec<String>, CallFailure>, Option<u64>, Vec<LogLine>) {
    let mut store = Store::new(pre.module().engine(), CommandState::new(input, limits, stopping));
    store.limiter(|state| &mut state.limiter);
    let outcome = limits.refuel(&mut store).and_then(|()| {
        store.set_epoch_deadline(deadline_ticks(limits.timeout));
        let instance = pre.instantiate(&mut store)?;
        let start = instance.get_typed_func::<(), ()>(&mut store, "_start")?;
        start.call(&mut store, ())
    });
    let fuel = limits.fuel_spent(&store);
    let (answers, logs) = ended(outcome, store.data(), limits);
    (answers, fuel, logs)
}

/// What an instance that ended left behind: its answers (or why it failed) and its log lines.
fn ended(
    outcome: wasmtime::Result<()>,
    state: &CommandState,
    limits: &Limits,
) -> (Result<Vec<String>, CallFailure>, Vec<LogLine>) {
    let stderr_text = state.stderr.peek_text();
    let failure = match outcome {
        Ok(()) => None,
        Err(err) => match err.downcast_ref::<I32Exit>() {
            Some(I32Exit(0)) => None,
            Some(I32Exit(code)) => Some(exit_failure(*code, state, limits, &stderr_text)),
            None => Some(failure::describe(
                &err,
                &FailureContext {
                    limits,
                    refused_memory: state.limiter.refused_memory,
                    stderr: &stderr_text,
                    stopping: state.wait.stopping.load(Ordering::Relaxed),
                },
            )),
        },
    };
    let (answers, logs) = collect(&state.stdout, &state.stderr, limits);
    (failure.map_or(answers, Err), logs)
}

/// Take what the module wrote since the last call: its answer lines on stdout (or why they are unusable)
/// and its stderr as log lines.
fn collect(
    stdout: &CapturedOutput,
    stderr: &CapturedOutput,
    limits: &Limits,
) -> (Result<Vec<String>, CallFailure>, Vec<LogLine>) {
    let (out, dropped) = stdout.take_bytes();
    let mut logs = LogCollector::new(limits.max_log_bytes);
    let (err, err_dropped) = stderr.take_bytes();
    for line in String::from_utf8_lossy(&err).lines().filter(|l| !l.trim().is_empty()) {
        let (level, text) = log_level(line);
        logs.push(level, text);
    }
    if err_dropped > 0 {
        logs.push_marker(format!(
            "[redrive: {err_dropped} bytes of stderr dropped: over the log limit]"
        ));
    }
    let answers = if dropped > 0 {
        Err(CallFailure::new(
            FailureKind::BadOutput,
            format!(
                "output too large: wrote more than {} to stdout, the limit is {} for a body",
                format_size(out.len() as u64),
                format_size(limits.max_output_bytes)
            ),
        ))
    } else {
        Ok(String::from_utf8_lossy(&out)
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(str::to_owned)
            .collect())
    };
    (answers, logs.take())
}

/// One answer of a [`Session`]: what the module wrote for one request, or how the instance ended.
pub(crate) struct Turn {
    /// The answer lines (normally one), or why the request failed.
    pub answers: Result<Vec<String>, CallFailure>,
    /// Fuel used since the request arrived, where fuel is counted.
    pub fuel: Option<u64>,
    /// stderr since the request arrived, as log lines.
    pub logs: Vec<LogLine>,
    /// The instance is gone (it exited or trapped): the session cannot take another request.
    pub ended: bool,
}

impl Turn {
    /// The module asked for more input: its answer to the current request is complete.
    fn answered(stdout: &CapturedOutput, stderr: &CapturedOutput, limits: &Limits, fuel_spent: Option<u64>) -> Self {
        let (answers, logs) = collect(stdout, stderr, limits);
        Self {
            answers,
            fuel: fuel_spent,
            logs,
            ended: false,
        }
    }
}

/// A non-zero exit: a refused memory growth (the guest's allocator gave up), else the code and stderr's last line.
fn exit_failure(code: i32, state: &CommandState, limits: &Limits, stderr: &str) -> CallFailure {
    if let Some(size) = state.limiter.refused_memory {
        return CallFailure::new(
            FailureKind::MemoryRefused,
            format!(
                "memory limit hit: tried to grow its memory to {}, the limit is {} (then exited with code {code})",
                format_size(size as u64),
                format_size(limits.memory_bytes)
            ),
        );
    }
    let reason = match stderr.lines().rev().find(|l| !l.trim().is_empty()) {
        Some(line) => format!("exited with code {code} (stderr: {})", truncate(line.trim(), 300)),
        None => format!("exited with code {code}"),
    };
    CallFailure::new(FailureKind::Trap, reason)
}

fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

/// A stderr line's level from its optional `level: ` prefix.
fn log_level(line: &str) -> (&'static str, &str) {
    for level in ["trace", "debug", "info", "warn", "error"] {
        if let Some(rest) = line.strip_prefix(level).and_then(|r| r.strip_prefix(": ")) {
            return (level, rest);
        }
    }
    ("info", line)
}

/// The `init` request line.
pub(crate) fn init_request(config: &[(String, String)]) -> String {
    let config: Vec<[&str; 2]> = config.iter().map(|(k, v)| [k.as_str(), v.as_str()]).collect();
    let mut line = json!({"contract": CONTRACT, "call": "init", "config": config}).to_string();
    line.push('\n');
    line
}

/// The `decide` request line for one message.
pub(crate) fn decide_request(msg: &WitMessage) -> String {
    let attributes: Vec<[&str; 2]> = msg.attributes.iter().map(|(k, v)| [k.as_str(), v.as_str()]).collect();
    let mut message = json!({
        "id": msg.id,
        "attributes": attributes,
        "origin": {
            "system": msg.origin.system,
            "dlq": msg.origin.dlq,
            "original_queue": msg.origin.original_queue,
        },
        "failure": {
            "reason": msg.failure.reason,
            "error_text": msg.failure.error_text,
            "error_class": msg.failure.error_class,
            "receive_count": msg.failure.receive_count,
            "first_failed_at_ms": msg.failure.first_failed_at_ms,
            "last_failed_at_ms": msg.failure.last_failed_at_ms,
        },
        "replay_count": msg.replay_count,
    });
    if let Value::Object(obj) = &mut message {
        match std::str::from_utf8(&msg.body) {
            Ok(text) => obj.insert("body".into(), Value::String(text.to_owned())),
            Err(_) => obj.insert("body_base64".into(), Value::String(BASE64.encode(&msg.body))),
        };
    }
    let mut line = json!({"contract": CONTRACT, "call": "decide", "message": message}).to_string();
    line.push('\n');
    line
}

/// Read the answer to `init`: `Ok(())` for `{"ok": true}`, `Err(message)` for `{"error": ...}`.
/// The outer error is a protocol violation.
pub(crate) fn parse_init_answer(line: &str) -> Result<Result<(), String>, String> {
    let value: Value = serde_json::from_str(line)
        .map_err(|e| format!("its answer to `init` is not JSON ({e}): {}", truncate(line, 200)))?;
    if let Some(message) = error_answer(&value)? {
        return Ok(Err(message));
    }
    match value.get("ok") {
        Some(Value::Bool(true)) => Ok(Ok(())),
        _ => Err(format!(
            "its answer to `init` must be {{\"ok\": true}} or {{\"error\": \"...\"}}, got: {}",
            truncate(line, 200)
        )),
    }
}

/// `Some(message)` when the answer is `{"error": "..."}`.
fn error_answer(value: &Value) -> Result<Option<String>, String> {
    match value.get("error") {
        None => Ok(None),
        Some(Value::String(message)) => Ok(Some(message.clone())),
        Some(other) => Err(format!("`error` must be a string, got {other}")),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDecision {
    verdict: Verdict,
    reason: String,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    body_base64: Option<String>,
    #[serde(default)]
    attribute_changes: Option<Vec<RawChange>>,
}

#[derive(Deserialize)]
#[serde(tag = "op", rename_all = "lowercase", deny_unknown_fields)]
enum RawChange {
    Set { name: String, value: String },
    Remove { name: String },
}

/// Read the answer to `decide`: a decision, or the filter's own error (`{"error": ...}`), or what is
/// wrong with the answer.
pub(crate) fn parse_decision(line: &str) -> Result<Decision, CallFailure> {
    let bad = |message: String| CallFailure::new(FailureKind::BadOutput, message);
    let value: Value = serde_json::from_str(line)
        .map_err(|e| bad(format!("its decision is not JSON ({e}): {}", truncate(line, 200))))?;
    if let Some(message) = error_answer(&value).map_err(bad)? {
        return Err(CallFailure::new(
            FailureKind::FilterError,
            format!("filter returned an error: {message}"),
        ));
    }
    let raw: RawDecision = serde_json::from_value(value).map_err(|e| {
        bad(format!(
            "its decision does not fit guest-sdk/wit/command.schema.json ({e}): {}",
            truncate(line, 200)
        ))
    })?;
    let body = match (raw.body, raw.body_base64) {
        (Some(_), Some(_)) => {
            return Err(bad("its decision gives both `body` and `body_base64`; give one".into()));
        }
        (Some(text), None) => Some(text.into_bytes()),
        (None, Some(b64)) => Some(
            BASE64
                .decode(b64.as_bytes())
                .map_err(|e| bad(format!("its decision's `body_base64` is not valid base64: {e}")))?,
        ),
        (None, None) => None,
    };
    Ok(Decision {
        verdict: raw.verdict,
        reason: raw.reason,
        body,
        attribute_changes: raw
            .attribute_changes
            .unwrap_or_default()
            .into_iter()
            .map(|c| match c {
                RawChange::Set { name, value } => AttributeChange::Set(name, value),
                RawChange::Remove { name } => AttributeChange::Remove(name),
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions_are_read_with_bodies_and_changes() {
        let d = parse_decision(
            r#"{"verdict":"replay","reason":"fixed","body_base64":"AAH/","attribute_changes":[{"op":"set","name":"a","value":"1"},{"op":"remove","name":"b"}]}"#,
        )
        .unwrap();
        assert_eq!(d.verdict, Verdict::Replay);
        assert_eq!(d.body.as_deref(), Some(&[0u8, 1, 255][..]));
        assert_eq!(
            d.attribute_changes,
            vec![
                AttributeChange::Set("a".into(), "1".into()),
                AttributeChange::Remove("b".into())
            ]
        );
        let d = parse_decision(r#"{"verdict":"skip","reason":"r","body":"é"}"#).unwrap();
        assert_eq!(d.body.as_deref(), Some("é".as_bytes()));
        assert_eq!(
            parse_decision(r#"{"verdict":"discard","reason":""}"#).unwrap().body,
            None
        );
    }

    #[test]
    fn bad_decisions_say_what_is_wrong() {
        let e = parse_decision(r#"{"error":"no such order"}"#).unwrap_err();
        assert_eq!(e.message, "filter returned an error: no such order");
        assert_eq!(e.kind, FailureKind::FilterError);
        let e = parse_decision(r#"{"verdit":"skip","reason":"r"}"#).unwrap_err();
        assert!(e.message.contains("unknown field `verdit`"), "{e}");
        let e = parse_decision(r#"{"verdict":"maybe","reason":"r"}"#).unwrap_err();
        assert!(e.message.contains("command.schema.json"), "{e}");
        let e = parse_decision("not json").unwrap_err();
        assert!(e.message.contains("not JSON"), "{e}");
        let e = parse_decision(r#"{"verdict":"skip","reason":"r","body":"a","body_base64":"YQ=="}"#).unwrap_err();
        assert!(e.message.contains("both"), "{e}");
        let e = parse_decision(r#"{"verdict":"replay","reason":"r","attribute_changes":[{"op":"rename","name":"a"}]}"#)
            .unwrap_err();
        assert!(e.message.contains("rename"), "{e}");
    }

    #[test]
    fn init_answers() {
        assert_eq!(parse_init_answer(r#"{"ok":true}"#), Ok(Ok(())));
        assert_eq!(parse_init_answer(r#"{"error":"bad key"}"#), Ok(Err("bad key".into())));
        assert!(parse_init_answer(r#"{"ok":false}"#).is_err());
        assert!(parse_init_answer("").is_err());
    }

    #[test]
    fn requests_carry_every_key_and_binary_bodies_as_base64() {
        let line = init_request(&[("k".into(), "v".into()), ("k".into(), "w".into())]);
        assert!(line.ends_with('\n') && !line.trim_end().contains('\n'));
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["call"], "init");
        assert_eq!(v["contract"], CONTRACT);
        assert_eq!(v["config"], json!([["k", "v"], ["k", "w"]]));

        let origin = crate::core::envelope::Origin {
            system: "file".into(),
            dlq: "dlq.jsonl".into(),
            original_queue: None,
        };
        let env = crate::core::jsonl::parse_message(r#"{"id":"m-1","body_base64":"AJ+Slg=="}"#, 1, &origin).unwrap();
        let msg = super::super::component::to_wit(&env, &env.body, &[("a\nb".into(), "ü".into())]);
        let line = decide_request(&msg);
        assert!(!line.trim_end().contains('\n'), "one line: {line}");
        let v: Value = serde_json::from_str(&line).unwrap();
        let m = &v["message"];
        assert_eq!(m["body_base64"], "AJ+Slg==");
        assert!(m.get("body").is_none());
        assert_eq!(m["attributes"], json!([["a\nb", "ü"]]));
        for key in [
            "reason",
            "error_text",
            "error_class",
            "receive_count",
            "first_failed_at_ms",
            "last_failed_at_ms",
        ] {
            assert_eq!(m["failure"][key], Value::Null, "{key}");
        }
        assert_eq!(m["origin"]["original_queue"], Value::Null);
        assert_eq!(m["replay_count"], 0);
    }

    #[test]
    fn stderr_prefixes_set_levels() {
        assert_eq!(log_level("warn: careful"), ("warn", "careful"));
        assert_eq!(log_level("error: bad"), ("error", "bad"));
        assert_eq!(log_level("plain"), ("info", "plain"));
        assert_eq!(log_level("warning: x"), ("info", "warning: x"));
    }
}
