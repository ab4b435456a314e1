//! End-to-end tests of the command profile: a WASI preview-1 module speaking JSON lines
//! (guest-sdk/wit/command.schema.json), run by the real binary under the same sandbox and limits as components.
//! The module is tests/fixtures/commands/command-probe, built from source; its `mode` config picks a behaviour.

mod common;

use std::fs;

use common::{assert_failed_with, json_lines, module, redrive, run};
use serde_json::Value;

const PROBE: &str = "command-probe";

fn write_input(dir: &std::path::Path, lines: &[String]) -> String {
    let path = dir.join("input.jsonl");
    fs::write(&path, lines.join("\n") + "\n").unwrap();
    path.display().to_string()
}

fn two_messages() -> Vec<String> {
    vec![
        r#"{"id":"p-1","body":"{\"a\":1}","failure":{"error_text":"timeout"}}"#.to_string(),
        r#"{"id":"p-2","body":"x"}"#.to_string(),
    ]
}

/// Run the probe in `mode` on `lines`; returns (exit code, decisions, stderr).
fn probe(mode: &str, lines: &[String], extra: &[&str]) -> (i32, Vec<Value>, String) {
    let tmp = tempfile::tempdir().unwrap();
    let input = write_input(tmp.path(), lines);
    let spec = format!("{}?mode={mode}", module(PROBE));
    let mut cmd = redrive(tmp.path());
    cmd.args(["filter", "test", &spec, "--input", &input, "--output", "json"])
        .args(extra);
    let (code, stdout, stderr) = run(&mut cmd);
    let mut decided = if stdout.trim().is_empty() {
        Vec::new()
    } else {
        json_lines(&stdout)
    };
    decided.pop(); // the summary
    (code, decided, stderr)
}

#[test]
fn bodies_attributes_and_logs_cross_the_protocol_intact() {
    let big = "ü数".repeat(40_000); // 200 KB of multi-byte UTF-8
    let lines = vec![
        r#"{"id":"b-1","body_base64":"AAEC//7/gA==","attributes":{"x-tenant":"café","line\nbreak":"a\"b"}}"#
            .to_string(),
        r#"{"id":"b-2","body":""}"#.to_string(),
        serde_json::json!({"id": "b-3", "body": big, "failure": {"error_text": "数据库 timeout", "receive_count": 4,
            "first_failed_at": "2026-11-01T10:00:00Z"}, "replay_count": 2})
        .to_string(),
    ];
    let tmp = tempfile::tempdir().unwrap();
    let audit = tmp.path().join("audit");
    let input = write_input(tmp.path(), &lines);
    let (code, stdout, stderr) = run(redrive(tmp.path()).args([
        "filter",
        "test",
        &module(PROBE),
        "--input",
        &input,
        "--output",
        "json",
        "--audit-dir",
        &audit.display().to_string(),
        // A budget makes the records say what each call spent (below).
        "--fuel",
        "10_000_000_000",
    ]));
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let decided = json_lines(&stdout);
    let by_id = |id: &str| decided.iter().find(|d| d["id"] == id).unwrap().clone();

    let b1 = by_id("b-1");
    assert_eq!(b1["verdict"], "replay", "{b1}");
    assert_eq!(b1["reason"], "echo b-1");
    assert_eq!(
        b1["body_base64"], "AAEC//7/gA==",
        "binary body given back byte for byte: {b1}"
    );
    let b2 = by_id("b-2");
    assert_eq!(b2["verdict"], "replay", "{b2}");
    let b3 = by_id("b-3");
    assert_eq!(b3["body"].as_str().unwrap(), big, "200 KB body unchanged");

    let records = json_lines(&fs::read_to_string(audit.join(format!("{PROBE}.jsonl"))).unwrap());
    let rec = records.iter().find(|r| r["message_id"] == "b-1").unwrap();
    let logs = rec["logs"].as_array().unwrap();
    let levels: Vec<(&str, &str)> = logs
        .iter()
        // `level` is left out for `info`.
        .map(|l| (l["level"].as_str().unwrap_or("info"), l["text"].as_str().unwrap()))
        .collect();
    for level in ["trace", "debug", "info", "warn", "error"] {
        assert!(levels.contains(&(level, &format!("{level} line"))), "{levels:?}");
    }
    assert!(levels.contains(&("info", "a line without a level")), "{levels:?}");
    assert!(
        logs.iter().all(|l| l["level"] != "info"),
        "an info line's level is left out: {logs:?}"
    );
    assert!(rec["fuel"].as_u64().unwrap() > 0, "{rec}");
    assert_eq!(
        b1["attribute_changes"],
        serde_json::json!([{"set": ["x-probe-len", "7"]}]),
        "the guest saw the 7 binary bytes: {b1}"
    );
    assert_eq!(
        b3["attribute_changes"][0]["set"][1],
        big.len().to_string(),
        "the guest saw every byte of the 200 KB body"
    );
}

#[test]
fn a_command_filter_runs_in_a_replay_and_its_changes_reach_the_destination() {
    let tmp = tempfile::tempdir().unwrap();
    let dlq = tmp.path().join("dlq.jsonl");
    fs::write(
        &dlq,
        r#"{"id":"r-1","body":"{\"n\":1}"}
{"id":"r-2","body_base64":"/wA="}
"#,
    )
    .unwrap();
    let staging = tmp.path().join("staging.jsonl");
    let (code, stdout, stderr) = run(redrive(tmp.path()).args([
        "run",
        "--from",
        &format!("file:{}", dlq.display()),
        "--to",
        &format!("file:{}", staging.display()),
        "--filter",
        &module(PROBE),
        "--audit-dir",
        &tmp.path().join("audit").display().to_string(),
    ]));
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let out = json_lines(&fs::read_to_string(&staging).unwrap());
    assert_eq!(out.len(), 2, "{out:?}");
    assert_eq!(out[0]["body"], "{\"n\":1}");
    assert_eq!(out[0]["attributes"]["x-probe-len"], "7");
    assert_eq!(out[1]["body_base64"], "/wA=");
    assert_eq!(out[1]["attributes"]["x-probe-len"], "2");
}

fn reasons(decided: &[Value]) -> Vec<&str> {
    decided.iter().map(|d| d["reason"].as_str().unwrap()).collect()
}

#[test]
fn by_default_one_instance_serves_many_messages_and_fresh_gives_each_its_own() {
    let three: Vec<String> = (1..=3).map(|i| format!(r#"{{"id":"n-{i}","body":"x"}}"#)).collect();
    let (code, d, stderr) = probe("count", &three, &[]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(reasons(&d), ["call 1", "call 2", "call 3"]);
    let (_, d, _) = probe("count", &three, &["--instance", "fresh"]);
    assert_eq!(reasons(&d), ["call 1", "call 1", "call 1"]);
    // After a failure the next message gets a new instance.
    let (_, d, _) = probe("count", &three, &["--instance", "reuse"]);
    assert_eq!(d.len(), 3);
}

#[test]
fn a_module_that_exits_after_one_message_still_gets_every_message() {
    let three: Vec<String> = (1..=3).map(|i| format!(r#"{{"id":"o-{i}","body":"x"}}"#)).collect();
    let (code, d, stderr) = probe("once", &three, &[]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(reasons(&d), ["call 1", "call 1", "call 1"]);
}

#[test]
fn a_reused_instance_that_traps_is_replaced() {
    // `panic` fails every message; each failure must come from a new instance, not a dead one.
    let (_, d, _) = probe("panic", &two_messages(), &["--instance", "reuse"]);
    assert_failed_with(&d, "panicked: probe refuses message");
    assert!(d[1]["reason"].as_str().unwrap().contains("p-2"), "{}", d[1]);
}

#[test]
fn an_infinite_loop_runs_out_of_fuel_or_time() {
    for policy in ["reuse", "fresh"] {
        let (code, d, stderr) = probe("loop", &two_messages(), &["--fuel", "50000000", "--instance", policy]);
        assert_eq!(code, 0, "{stderr}");
        assert_failed_with(&d, "fuel exhausted: used its whole budget of 50000000 units");
    }
    let (_, d, _) = probe(
        "loop",
        &two_messages(),
        &["--fuel", "1000000000000", "--timeout", "150ms"],
    );
    assert_failed_with(&d, "timed out: still running after the per-message deadline of 150ms");
}

#[test]
fn a_memory_bomb_hits_the_memory_limit() {
    let (_, d, _) = probe("memory", &two_messages(), &["--memory", "16MiB"]);
    assert_failed_with(&d, "memory limit hit");
    assert_failed_with(&d, "the limit is 16.0 MiB");
}

#[test]
fn a_panic_reports_the_guest_message() {
    let (_, d, _) = probe("panic", &two_messages(), &[]);
    assert_failed_with(&d, "panicked: probe refuses message");
    assert!(d[1]["reason"].as_str().unwrap().contains("p-2"), "{}", d[1]);
}

#[test]
fn broken_answers_are_failures_with_the_reason() {
    let cases = [
        ("huge", "output too large"),
        ("silent", "no decision on stdout"),
        ("garbage", "its decision is not JSON"),
        ("exit", "exited with code 3 (stderr: fatal: cannot go on)"),
        ("two", "more than one decision line"),
    ];
    for policy in ["reuse", "fresh"] {
        for (mode, needle) in cases {
            let (code, d, stderr) = probe(mode, &two_messages(), &["--max-output", "1MiB", "--instance", policy]);
            assert_eq!(
                code, 0,
                "{mode} ({policy}): contained, the process exits normally: {stderr}"
            );
            assert_failed_with(&d, needle);
        }
    }
}

#[test]
fn a_refused_configuration_stops_at_start_with_the_filters_words() {
    let tmp = tempfile::tempdir().unwrap();
    let input = write_input(tmp.path(), &two_messages());
    let spec = format!("{}?colour=red", module(PROBE));
    let (code, stdout, stderr) = run(redrive(tmp.path()).args(["filter", "test", &spec, "--input", &input]));
    assert_eq!(code, 2, "{stdout}\n{stderr}");
    assert!(
        stderr.contains(
            "filter `command-probe` refused its configuration: unknown config key 'colour' (known keys: mode)"
        ),
        "{stderr}"
    );
}

#[test]
fn a_core_module_without_start_is_refused_with_what_to_build() {
    let tmp = tempfile::tempdir().unwrap();
    let input = write_input(tmp.path(), &two_messages());
    let empty = tmp.path().join("empty.wasm");
    fs::write(&empty, b"\0asm\x01\0\0\0").unwrap();
    let (code, _, stderr) =
        run(redrive(tmp.path()).args(["filter", "test", &empty.display().to_string(), "--input", &input]));
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("without a `_start` export"), "{stderr}");
    assert!(stderr.contains("command.schema.json"), "{stderr}");
}
