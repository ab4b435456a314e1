//! The promise, tested by trying to break it (the data-safety issue): nothing lost, nothing forwarded twice
//! by accident, filters cannot hurt the host. Each test drives the real binary on real files with real
//! filters built from source, in the way a careless operator or a hostile filter would.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Dirs, jsonl_values, module, redrive, run};
use serde_json::Value;

impl Dirs {
    fn cmd(&self) -> Command {
        redrive(&self.p("cache"))
    }
    /// `redrive run` from the file `source` (in the temp dir) to `staging.jsonl` through `filter`, with the
    /// audit in `audit/`.
    fn replay(&self, source: &str, filter: &str) -> Command {
        self.replay_audited(source, filter, "audit")
    }
    /// [`replay`](Self::replay) with the audit in `audit`.
    fn replay_audited(&self, source: &str, filter: &str, audit: &str) -> Command {
        let mut cmd = self.cmd();
        cmd.args(["run", "--no-progress", "--from", &format!("file:{}", self.s(source))])
            .args(["--to", &format!("file:{}", self.s("staging.jsonl")), "--filter", filter])
            .args(["--audit-dir", &self.s(audit)]);
        cmd
    }
}

/// One JSONL message line (with its newline).
fn line(id: &str, body: &str, error: &str) -> String {
    let v = serde_json::json!({"id": id, "body": body, "failure": {"error_text": error}});
    format!("{v}\n")
}

/// (id, body) of every message line of a JSONL file.
fn messages_in(path: &Path) -> Vec<(String, String)> {
    jsonl_values(path)
        .into_iter()
        .map(|v| {
            (
                v["id"].as_str().unwrap_or_default().to_owned(),
                v["body"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

fn replay_all() -> String {
    format!("{}?default=replay", module("route-by-error"))
}

fn skip_all() -> String {
    format!("{}?default=skip", module("route-by-error"))
}

/// Run with a bound on wall time: a hang is a failure, not a stuck test suite.
fn run_bounded(cmd: &mut Command, limit: Duration) -> (i32, String, String) {
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let started = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if started.elapsed() > limit {
            child.kill().ok();
            let out = child.wait_with_output().unwrap();
            panic!(
                "redrive still running after {limit:?}: killed.\nstdout: {}\nstderr: {}",
                String::from_utf8_lossy(&out.stdout),
                clip(&String::from_utf8_lossy(&out.stderr))
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// One count of a `--output json` summary.
fn count(stdout: &str, name: &str) -> u64 {
    let summary: Value = serde_json::from_str(stdout.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("not a JSON summary ({e}): {stdout}"));
    summary["counts"][name]
        .as_u64()
        .unwrap_or_else(|| panic!("no count {name}: {summary}"))
}

fn clip(text: &str) -> String {
    if text.len() <= 4000 {
        return text.to_owned();
    }
    let mut end = 4000;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes in all)", &text[..end], text.len())
}

// ---- 1. the discard archive knows a message by its source and journal key, never by bare id ----

#[test]
fn two_sources_sharing_one_archive_keep_every_discarded_message() {
    let d = Dirs::new();
    for source in ["a", "b"] {
        let mut text = String::new();
        for i in 0..20 {
            text.push_str(&line(&format!("test-{i}"), &format!("{source}-{i}"), "timeout"));
        }
        fs::write(d.p(&format!("{source}.jsonl")), text).unwrap();
    }
    for source in ["a", "b"] {
        let (code, stdout, stderr) = run(d
            .replay(&format!("{source}.jsonl"), &module("drop-test-traffic"))
            .args(["--remainder", &d.s(&format!("{source}.rest.jsonl")), "--output", "json"]));
        assert_eq!(code, 0, "{stdout}\n{stderr}");
        assert_eq!(count(&stdout, "discarded"), 20, "{stdout}");
        assert!(messages_in(&d.p(&format!("{source}.rest.jsonl"))).is_empty());
    }
    let archived: Vec<String> = messages_in(&d.p("audit/discarded.jsonl"))
        .into_iter()
        .map(|(_, body)| body)
        .collect();
    for source in ["a", "b"] {
        for i in 0..20 {
            let body = format!("{source}-{i}");
            assert_eq!(
                archived.iter().filter(|b| **b == body).count(),
                1,
                "{body} was removed from its DLQ as archived, so it must be in the archive exactly once: {archived:?}"
            );
        }
    }
}

// ---- 2. temporary files never collide with an input or output; outputs are checked pairwise ----

#[test]
fn the_remainder_temporary_file_never_overwrites_the_source() {
    let d = Dirs::new();
    let mut text = String::new();
    for i in 0..100 {
        text.push_str(&line(&format!("m-{i}"), "{}", "validation failed"));
    }
    fs::write(d.p("dlq.tmp"), &text).unwrap();
    let (code, stdout, stderr) = run(d
        .replay("dlq.tmp", &skip_all())
        .args(["--remainder", &d.s("dlq.jsonl")]));
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert_eq!(
        fs::read_to_string(d.p("dlq.tmp")).unwrap(),
        text,
        "the source must be untouched"
    );
    assert_eq!(
        messages_in(&d.p("dlq.jsonl")).len(),
        100,
        "all 100 skipped are still in the DLQ"
    );
}

#[test]
fn outputs_that_are_the_same_file_as_the_source_or_each_other_are_refused_before_anything_moves() {
    let d = Dirs::new();
    let text = line("m-1", "{}", "timeout");
    fs::write(d.p("dlq.jsonl"), &text).unwrap();
    fs::hard_link(d.p("dlq.jsonl"), d.p("dlq-hardlink.jsonl")).unwrap();
    std::os::unix::fs::symlink(d.p("dlq.jsonl"), d.p("dlq-symlink.jsonl")).unwrap();
    fs::create_dir(d.p("sub")).unwrap();
    let source = format!("file:{}", d.s("dlq.jsonl"));
    let dotted = format!("{}/sub/../staging.jsonl", d.root.display());
    let cases: Vec<(&str, Vec<String>)> = vec![
        ("--to is the source", vec!["--to".into(), source.clone()]),
        (
            "--to is a hard link to the source",
            vec!["--to".into(), format!("file:{}", d.s("dlq-hardlink.jsonl"))],
        ),
        (
            "--remainder is the source",
            vec![
                "--to".into(),
                format!("file:{}", d.s("staging.jsonl")),
                "--remainder".into(),
                d.s("dlq.jsonl"),
            ],
        ),
        (
            "--remainder is a symlink to the source",
            vec![
                "--to".into(),
                format!("file:{}", d.s("staging.jsonl")),
                "--remainder".into(),
                d.s("dlq-symlink.jsonl"),
            ],
        ),
        (
            "--archive is the source",
            vec![
                "--to".into(),
                format!("file:{}", d.s("staging.jsonl")),
                "--archive".into(),
                d.s("dlq.jsonl"),
            ],
        ),
        (
            "--remainder is the destination (spelled differently)",
            vec![
                "--to".into(),
                format!("file:{}", d.s("staging.jsonl")),
                "--remainder".into(),
                dotted.clone(),
            ],
        ),
        (
            "--archive is the destination",
            vec![
                "--to".into(),
                format!("file:{}", d.s("staging.jsonl")),
                "--archive".into(),
                dotted.clone(),
            ],
        ),
    ];
    for (what, args) in cases {
        let (code, stdout, stderr) = run(d
            .cmd()
            .args(["run", "--no-progress", "--from", &source, "--filter", &replay_all()])
            .args(["--audit-dir", &d.s("audit")])
            .args(&args));
        assert_eq!(code, 2, "{what}: must be refused\n{stdout}\n{stderr}");
        assert!(stderr.contains("same file"), "{what}: say why: {stderr}");
        assert_eq!(
            fs::read_to_string(d.p("dlq.jsonl")).unwrap(),
            text,
            "{what}: source untouched"
        );
        assert!(!d.p("staging.jsonl").exists(), "{what}: nothing may have moved");
    }
}

// ---- 3. duplicate ids in a file source ----

#[test]
fn messages_sharing_an_id_in_a_file_are_each_forwarded_once_across_a_resume() {
    let d = Dirs::new();
    let text = [
        line("dup", "first copy", "timeout"),
        line("dup", "second copy", "timeout"),
        line("other", "third", "timeout"),
    ]
    .concat();
    fs::write(d.p("dlq.jsonl"), &text).unwrap();
    let run_once = |extra: &[&str]| {
        let (code, stdout, stderr) = run(d
            .replay("dlq.jsonl", &replay_all())
            .args(["--remainder", &d.s("rest.jsonl")])
            .args(extra));
        assert_eq!(code, 0, "{stdout}\n{stderr}");
    };
    run_once(&["--max", "1"]);
    run_once(&[]);
    let staged: Vec<String> = messages_in(&d.p("staging.jsonl")).into_iter().map(|(_, b)| b).collect();
    let rest: Vec<String> = messages_in(&d.p("rest.jsonl")).into_iter().map(|(_, b)| b).collect();
    for body in ["first copy", "second copy", "third"] {
        let places = staged.iter().filter(|b| *b == body).count() + rest.iter().filter(|b| *b == body).count();
        assert_eq!(places, 1, "{body:?}: staged {staged:?}, still in the DLQ {rest:?}");
        assert!(staged.iter().any(|b| b == body), "{body:?} was replayed");
    }
    let ids: Vec<String> = fs::read_to_string(d.p("staging.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["attributes"]["x-redrive-replay-id"].to_string())
        .collect();
    assert_ne!(
        ids[0], ids[1],
        "two different dead letters carry two different replay ids"
    );
}

// ---- 4. an unterminated last line is incomplete: it stays, byte for byte ----

#[test]
fn an_unterminated_last_line_is_left_for_the_next_run_and_nothing_appended_is_lost() {
    let d = Dirs::new();
    let complete = line("a", "complete", "timeout");
    let unterminated = line("b", "no newline yet", "timeout").trim_end().to_owned();
    fs::write(d.p("dlq.jsonl"), format!("{complete}{unterminated}")).unwrap();
    let appended = line("late", "appended by the application", "timeout");
    // The gate runs mid-run: an application appends a well-formed line, as to any JSONL file.
    let gate = format!("printf '%s\\n' '{}' >> {}", appended.trim_end(), d.s("dlq.jsonl"));
    let (code, stdout, stderr) = run(d.replay("dlq.jsonl", &replay_all()).args([
        "--remainder",
        &d.s("rest.jsonl"),
        "--canary",
        "1",
        "--verify-cmd",
        &gate,
    ]));
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert_eq!(
        messages_in(&d.p("staging.jsonl")),
        [("a".to_owned(), "complete".to_owned())],
        "only the complete line was taken"
    );
    assert!(
        stdout.contains("no final newline"),
        "the summary says why a line was left: {stdout}"
    );
    let rest = fs::read_to_string(d.p("rest.jsonl")).unwrap();
    assert_eq!(
        rest,
        format!("{unterminated}{appended}"),
        "the unterminated line and what was appended to it stay, byte for byte"
    );
}

// ---- 5. one run per DLQ at a time ----

fn slow_run(d: &Dirs, audit: &str) -> Command {
    let mut cmd = d.replay_audited("dlq.jsonl", &replay_all(), audit);
    cmd.arg("--rate=200/s");
    cmd
}

#[test]
fn a_second_run_on_the_same_dlq_is_refused_while_the_first_holds_it() {
    let d = Dirs::new();
    let text: String = (0..300).map(|i| line(&format!("m-{i}"), "{}", "timeout")).collect();
    fs::write(d.p("dlq.jsonl"), &text).unwrap();
    let first = slow_run(&d, "audit")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while messages_in(&d.p("staging.jsonl")).len() < 20 {
        assert!(Instant::now() < deadline, "the first run did not get going");
        std::thread::sleep(Duration::from_millis(20));
    }
    for audit in ["audit", "other-audit"] {
        let (code, stdout, stderr) = run(&mut slow_run(&d, audit));
        assert_eq!(code, 2, "a second run ({audit}) must be refused\n{stdout}\n{stderr}");
        assert!(
            stderr.contains(&format!("pid {}", first.id())),
            "the refusal names the holder: {stderr}"
        );
    }
    let out = first.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let staged = messages_in(&d.p("staging.jsonl"));
    assert_eq!(staged.len(), 300, "every message forwarded exactly once");
    let mut ids: Vec<&String> = staged.iter().map(|(id, _)| id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 300, "no message forwarded twice");
}

#[test]
fn a_lock_file_left_by_a_dead_process_is_taken_over() {
    let d = Dirs::new();
    fs::write(d.p("dlq.jsonl"), line("m-1", "{}", "timeout")).unwrap();
    // A run that ends removes its lock files: the journal's, and the file source's in the runtime directory.
    let runtime = d.p("runtime");
    let (code, stdout, stderr) = run(slow_run(&d, "audit").env("XDG_RUNTIME_DIR", &runtime));
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let left: Vec<_> = fs::read_dir(runtime.join("redrive"))
        .expect("the run's runtime directory")
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "lock files left in the runtime directory: {left:?}");
    let in_audit = |ext: &str| -> Vec<PathBuf> {
        fs::read_dir(d.p("audit"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == ext))
            .collect()
    };
    assert_eq!(
        in_audit("lock"),
        Vec::<PathBuf>::new(),
        "no lock file left in the audit dir"
    );
    // One left by a process that was killed (the lock itself died with it) is taken over.
    let journals: Vec<PathBuf> = in_audit("jsonl")
        .into_iter()
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("journal-"))
        .collect();
    assert_eq!(journals.len(), 1, "one run journal in the audit dir: {journals:?}");
    fs::write(
        journals[0].with_extension("lock"),
        "pid 999999 on host gone since 2026-01-01T00:00:00Z\n",
    )
    .unwrap();
    fs::write(d.p("dlq.jsonl"), line("m-2", "{}", "timeout")).unwrap();
    let (code, stdout, stderr) = run(&mut slow_run(&d, "audit"));
    assert_eq!(code, 0, "a stale lock must not block: {stdout}\n{stderr}");
}

// ---- 7. blocking host calls honour the deadline; instances are always returned; SIGTERM works ----

fn sleepers(d: &Dirs, sleeping: usize, healthy: usize) {
    let mut text = String::new();
    for i in 0..sleeping {
        text.push_str(&line(&format!("sleep-{i}"), "{}", "timeout"));
    }
    for i in 0..healthy {
        text.push_str(&line(&format!("ok-{i}"), "{}", "timeout"));
    }
    fs::write(d.p("dlq.jsonl"), text).unwrap();
}

fn sleep_run(d: &Dirs, filter: &str, extra: &[&str]) -> Command {
    let timeout = if extra.contains(&"--timeout") {
        &[][..]
    } else {
        &["--timeout", "200ms"][..]
    };
    let mut cmd = d.replay("dlq.jsonl", filter);
    cmd.args(["--max-failures", "1000"])
        .args(timeout)
        .args(["--workers", "2"])
        .args(extra);
    cmd
}

#[test]
fn a_command_filter_sleeping_in_a_host_call_fails_only_its_own_messages() {
    let d = Dirs::new();
    sleepers(&d, 40, 20);
    let filter = format!("{}?mode=sleep", module("command-probe"));
    let (code, stdout, stderr) = run_bounded(&mut sleep_run(&d, &filter, &[]), Duration::from_secs(90));
    assert_eq!(code, 0, "{stdout}\n{}", clip(&stderr));
    let staged: Vec<String> = messages_in(&d.p("staging.jsonl"))
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    assert_eq!(staged.len(), 20, "every healthy message replayed: {staged:?}\n{stdout}");
    assert!(staged.iter().all(|id| id.starts_with("ok-")));
    let audit = fs::read_to_string(d.p("audit/command-probe.jsonl")).unwrap();
    let failed: Vec<Value> = audit
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|r| r["verdict"] == "failed")
        .collect();
    assert_eq!(failed.len(), 40);
    for r in &failed {
        assert!(r["reason"].as_str().unwrap().contains("timed out"), "{r}");
    }
}

#[test]
fn a_command_filter_sleeping_with_a_fresh_instance_per_message_does_not_hang_the_run() {
    let d = Dirs::new();
    sleepers(&d, 6, 4);
    let filter = format!("{}?mode=sleep", module("command-probe"));
    let mut cmd = sleep_run(&d, &filter, &["--instance", "fresh"]);
    let (code, stdout, stderr) = run_bounded(&mut cmd, Duration::from_secs(60));
    assert_eq!(code, 0, "{stdout}\n{}", clip(&stderr));
    assert_eq!(messages_in(&d.p("staging.jsonl")).len(), 4, "{stdout}");
}

#[test]
fn a_component_sleeping_in_decide_fails_its_message_at_the_deadline() {
    let d = Dirs::new();
    sleepers(&d, 6, 4);
    let filter = format!("{}?in=decide", module("hostile-sleep"));
    let mut cmd = sleep_run(&d, &filter, &["--output", "json"]);
    let (code, stdout, stderr) = run_bounded(&mut cmd, Duration::from_secs(60));
    assert_eq!(code, 0, "{stdout}\n{}", clip(&stderr));
    assert_eq!(messages_in(&d.p("staging.jsonl")).len(), 4, "{stdout}");
    assert_eq!(count(&stdout, "failed"), 6, "{stdout}");
}

#[test]
fn a_component_sleeping_in_init_is_a_clear_start_error() {
    let d = Dirs::new();
    sleepers(&d, 0, 3);
    let filter = format!("{}?in=init", module("hostile-sleep"));
    let (code, stdout, stderr) = run_bounded(&mut sleep_run(&d, &filter, &[]), Duration::from_secs(60));
    assert_eq!(code, 2, "{stdout}\n{stderr}");
    assert!(
        stderr.contains("hostile-sleep") && stderr.contains("timed out"),
        "{stderr}"
    );
    assert!(!d.p("staging.jsonl").exists() || messages_in(&d.p("staging.jsonl")).is_empty());
}

#[test]
fn sigterm_stops_a_run_whose_filter_sleeps() {
    let d = Dirs::new();
    sleepers(&d, 200, 0);
    let filter = format!("{}?in=decide&secs=60", module("hostile-sleep"));
    // A long deadline: SIGTERM must not wait for it.
    let mut cmd = sleep_run(&d, &filter, &["--timeout", "30s"]);
    let child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    std::thread::sleep(Duration::from_secs(3));
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let out = common::output_within(child, Duration::from_secs(10), "after the first SIGTERM");
    assert_eq!(out.status.code(), Some(130), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(messages_in(&d.p("staging.jsonl")).is_empty(), "nothing was replayed");
}

// ---- 8. host work a filter causes is capped ----

fn oversized_run(d: &Dirs, filter: &str, n: usize) -> Command {
    let text: String = (0..n).map(|i| line(&format!("m-{i}"), "{}", "timeout")).collect();
    fs::write(d.p("dlq.jsonl"), text).unwrap();
    let mut cmd = d.replay("dlq.jsonl", filter);
    cmd.args(["--max-failures", "1000", "--output", "json"]);
    cmd
}

#[test]
fn a_decision_with_too_many_attribute_changes_fails_quickly() {
    let d = Dirs::new();
    let filter = format!("{}?what=attributes&count=150000", module("hostile-oversized"));
    let started = Instant::now();
    let (code, stdout, stderr) = run_bounded(&mut oversized_run(&d, &filter, 5), Duration::from_secs(60));
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(count(&stdout, "failed"), 5, "{stdout}");
    let audit = fs::read_to_string(d.p("audit/hostile-oversized.jsonl")).unwrap();
    assert!(
        audit.contains("attribute changes"),
        "the audit says why: {}",
        clip(&audit)
    );
}

#[test]
fn a_huge_reason_fails_the_message_and_stays_out_of_the_audit() {
    let d = Dirs::new();
    let filter = format!("{}?what=reason", module("hostile-oversized"));
    let (code, stdout, stderr) = run_bounded(&mut oversized_run(&d, &filter, 20), Duration::from_secs(120));
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert_eq!(count(&stdout, "failed"), 20, "{stdout}");
    let size = fs::metadata(d.p("audit/hostile-oversized.jsonl")).unwrap().len();
    assert!(size < 1 << 20, "the audit log is {size} bytes");
}

/// A core WebAssembly module with a `_start` export: `functions` functions of `instructions`
/// (`i32.const 0; drop`) each.
fn core_module(functions: usize, instructions: usize) -> Vec<u8> {
    fn leb(mut n: usize, out: &mut Vec<u8>) {
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }
    fn section(id: u8, body: &[u8], out: &mut Vec<u8>) {
        out.push(id);
        leb(body.len(), out);
        out.extend_from_slice(body);
    }
    let mut out = b"\0asm\x01\0\0\0".to_vec();
    section(1, &[1, 0x60, 0, 0], &mut out);
    let mut funcs = Vec::new();
    leb(functions, &mut funcs);
    funcs.extend(std::iter::repeat_n(0u8, functions));
    section(3, &funcs, &mut out);
    section(7, b"\x01\x06_start\x00\x00", &mut out);
    let mut body = vec![0u8];
    for _ in 0..instructions {
        body.extend_from_slice(&[0x41, 0x00, 0x1a]);
    }
    body.push(0x0b);
    let mut code = Vec::new();
    leb(functions, &mut code);
    for _ in 0..functions {
        leb(body.len(), &mut code);
        code.extend_from_slice(&body);
    }
    section(10, &code, &mut out);
    out
}

#[test]
fn compiling_a_module_is_bounded_in_memory_and_refused_with_a_clear_error() {
    let d = Dirs::new();
    let path = d.p("huge.wasm");
    fs::write(&path, core_module(4, 2_500_000)).unwrap();
    let filter = path.display().to_string();
    let mut cmd = oversized_run(&d, &filter, 1);
    cmd.args(["--compile-memory", "512MiB", "--no-cache"]);
    let (code, stdout, stderr) = run_bounded(&mut cmd, Duration::from_secs(90));
    assert_eq!(code, 2, "{stdout}\n{stderr}");
    assert!(
        stderr.contains("huge") && stderr.contains("512.0 MiB") && stderr.contains("compil"),
        "names the module and the limit: {stderr}"
    );
    assert!(!d.p("staging.jsonl").exists());
}

#[test]
fn a_module_over_the_size_limit_is_refused_before_compiling() {
    let d = Dirs::new();
    let path = d.p("big.wasm");
    fs::write(&path, core_module(1, 400_000)).unwrap();
    let mut cmd = oversized_run(&d, &path.display().to_string(), 1);
    cmd.args(["--max-module-size", "1MiB"]);
    let started = Instant::now();
    let (code, stdout, stderr) = run_bounded(&mut cmd, Duration::from_secs(30));
    assert_eq!(code, 2, "{stdout}\n{stderr}");
    assert!(
        stderr.contains("1.0 MiB") && stderr.contains("--max-module-size"),
        "{stderr}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn a_filter_flooding_wasi_calls_does_not_flood_redrives_own_output() {
    let d = Dirs::new();
    let filter = format!("{}?mode=sockets", module("command-probe"));
    let (code, stdout, stderr) = run_bounded(&mut oversized_run(&d, &filter, 2), Duration::from_secs(120));
    assert_eq!(code, 0, "{stdout}\n{}", clip(&stderr));
    assert!(
        stderr.len() < 16 << 10,
        "redrive's stderr is {} bytes: {}",
        stderr.len(),
        clip(&stderr)
    );
}

// ---- 10. the compiled-module cache is not trusted as found ----

#[test]
fn a_cache_directory_writable_by_others_is_not_used() {
    let d = Dirs::new();
    fs::create_dir(d.p("shared-cache")).unwrap();
    fs::set_permissions(d.p("shared-cache"), fs::Permissions::from_mode(0o777)).unwrap();
    fs::write(d.p("dlq.jsonl"), line("m-1", "{}", "timeout")).unwrap();
    let (code, stdout, stderr) = run(d
        .replay("dlq.jsonl", &replay_all())
        .args(["--cache-dir", &d.s("shared-cache")]));
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stderr.contains("writable by other users"), "{stderr}");
    assert_eq!(
        fs::read_dir(d.p("shared-cache")).unwrap().count(),
        0,
        "nothing was written to or read from it"
    );
}

#[test]
fn a_cached_artifact_swapped_for_another_modules_is_not_run() {
    let d = Dirs::new();
    fs::write(d.p("dlq.jsonl"), line("test-1", "{}", "validation failed")).unwrap();
    // The decision line (the summary after it has timings).
    let decide = |filter: &str| {
        let (code, stdout, stderr) = run(d
            .cmd()
            .args([
                "filter",
                "test",
                filter,
                "--input",
                &d.s("dlq.jsonl"),
                "--output",
                "json",
            ])
            .args(["--cache-dir", &d.s("cache")]));
        assert_eq!(code, 0, "{stdout}\n{stderr}");
        stdout.lines().next().unwrap_or_default().to_owned()
    };
    let route = module("route-by-error");
    let drop = module("drop-test-traffic");
    let route_decision = decide(&route);
    assert!(route_decision.contains("permanent error"), "{route_decision}");
    decide(&drop);
    let artifacts: Vec<PathBuf> = fs::read_dir(d.p("cache"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    assert_eq!(artifacts.len(), 2, "{artifacts:?}");
    let digest = |path: &str| {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(fs::read(path).unwrap()))
    };
    let route_digest = digest(&route);
    let (route_artifact, drop_artifact) = match artifacts[0]
        .file_name()
        .unwrap()
        .to_string_lossy()
        .contains(&route_digest[..16])
    {
        true => (&artifacts[0], &artifacts[1]),
        false => (&artifacts[1], &artifacts[0]),
    };
    fs::copy(drop_artifact, route_artifact).unwrap();
    let after = decide(&route);
    assert_eq!(
        after, route_decision,
        "route-by-error must still decide as route-by-error"
    );
}

// ---- 11. symlinks in the audit directory are refused ----

fn audited_run(d: &Dirs, filter: &str) -> (i32, String, String) {
    run(d.replay("dlq.jsonl", filter).args(["--remainder", &d.s("rest.jsonl")]))
}

#[test]
fn an_audit_file_that_is_a_symlink_is_refused_and_its_target_untouched() {
    let d = Dirs::new();
    fs::write(d.p("dlq.jsonl"), line("m-1", "{}", "timeout")).unwrap();
    fs::write(d.p("victim"), "precious\n").unwrap();
    fs::create_dir(d.p("audit")).unwrap();
    fs::set_permissions(d.p("audit"), fs::Permissions::from_mode(0o700)).unwrap();
    std::os::unix::fs::symlink(d.p("victim"), d.p("audit/route-by-error.jsonl")).unwrap();
    let (code, stdout, stderr) = audited_run(&d, &replay_all());
    assert_eq!(code, 2, "refused before anything moves: {stdout}\n{stderr}");
    assert!(stderr.contains("symlink"), "{stderr}");
    assert_eq!(fs::read_to_string(d.p("victim")).unwrap(), "precious\n");
    assert!(messages_in(&d.p("staging.jsonl")).is_empty(), "nothing replayed");
}

#[test]
fn an_archive_that_is_a_symlink_is_refused_and_nothing_is_discarded() {
    let d = Dirs::new();
    fs::write(d.p("dlq.jsonl"), line("test-1", "{}", "timeout")).unwrap();
    fs::write(d.p("victim"), "precious\n").unwrap();
    fs::create_dir(d.p("audit")).unwrap();
    fs::set_permissions(d.p("audit"), fs::Permissions::from_mode(0o700)).unwrap();
    std::os::unix::fs::symlink(d.p("victim"), d.p("audit/discarded.jsonl")).unwrap();
    let (code, stdout, stderr) = audited_run(&d, &module("drop-test-traffic"));
    assert_eq!(code, 2, "refused before anything moves: {stdout}\n{stderr}");
    assert!(stderr.contains("symlink"), "{stderr}");
    assert_eq!(fs::read_to_string(d.p("victim")).unwrap(), "precious\n");
    assert!(
        !d.p("rest.jsonl").exists(),
        "the run did not start, the DLQ file is as it was"
    );
}

#[test]
fn a_planted_temporary_file_symlink_is_never_written_through() {
    let d = Dirs::new();
    fs::write(d.p("dlq.jsonl"), line("m-1", "{}", "validation failed")).unwrap();
    fs::write(d.p("victim"), "precious\n").unwrap();
    std::os::unix::fs::symlink(d.p("victim"), d.p("rest.tmp")).unwrap();
    let (code, stdout, stderr) = audited_run(&d, &skip_all());
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert_eq!(fs::read_to_string(d.p("victim")).unwrap(), "precious\n");
    assert_eq!(messages_in(&d.p("rest.jsonl")).len(), 1);
}

#[test]
fn the_audit_directory_is_private_and_a_shared_one_is_refused() {
    let d = Dirs::new();
    fs::write(d.p("dlq.jsonl"), line("m-1", "{}", "timeout")).unwrap();
    let (code, stdout, stderr) = audited_run(&d, &replay_all());
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let mode = fs::metadata(d.p("audit")).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "created private");
    fs::set_permissions(d.p("audit"), fs::Permissions::from_mode(0o777)).unwrap();
    fs::write(d.p("dlq.jsonl"), line("m-2", "{}", "timeout")).unwrap();
    let (code, stdout, stderr) = audited_run(&d, &replay_all());
    assert_eq!(code, 2, "{stdout}\n{stderr}");
    assert!(stderr.contains("writable by other users"), "{stderr}");
}

// ---- smaller: bad input files ----

#[test]
fn filter_test_reports_an_invalid_utf8_line_and_goes_on() {
    let d = Dirs::new();
    let mut bytes = line("a", "{}", "timeout").into_bytes();
    bytes.extend_from_slice(b"{\"id\":\"bad\",\"body\":\"\xff\xfe\"}\n");
    bytes.extend_from_slice(line("b", "{}", "timeout").as_bytes());
    fs::write(d.p("input.jsonl"), bytes).unwrap();
    let (code, stdout, stderr) = run(d.cmd().args([
        "filter",
        "test",
        &replay_all(),
        "--input",
        &d.s("input.jsonl"),
        "--output",
        "json",
    ]));
    assert_eq!(code, 1, "a bad line is a problem, not a crash: {stdout}\n{stderr}");
    assert!(stderr.contains("line 2") && stderr.contains("UTF-8"), "{stderr}");
    let decided: Vec<String> = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| v["id"].as_str().map(str::to_owned))
        .collect();
    assert!(
        decided.contains(&"a".to_owned()) && decided.contains(&"b".to_owned()),
        "{stdout}"
    );
}

#[test]
fn a_byte_order_mark_is_named_as_such() {
    let d = Dirs::new();
    let mut bytes = b"\xef\xbb\xbf".to_vec();
    bytes.extend_from_slice(line("a", "{}", "timeout").as_bytes());
    fs::write(d.p("dlq.jsonl"), bytes).unwrap();
    let (code, stdout, stderr) = audited_run(&d, &replay_all());
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stderr.contains("byte-order mark"), "{stderr}");
    assert_eq!(
        messages_in(&d.p("rest.jsonl")).len(),
        0,
        "the BOM line stays in the remainder as is"
    );
    assert!(fs::read(d.p("rest.jsonl")).unwrap().starts_with(b"\xef\xbb\xbf{"));
}

#[test]
fn a_fifo_or_a_directory_as_the_source_is_refused_at_once() {
    let d = Dirs::new();
    let status = Command::new("mkfifo").arg(d.p("dlq.fifo")).status().unwrap();
    assert!(status.success());
    fs::create_dir(d.p("dlq.dir")).unwrap();
    for (name, kind) in [("dlq.fifo", "FIFO"), ("dlq.dir", "directory")] {
        let (code, stdout, stderr) = run_bounded(&mut d.replay(name, &replay_all()), Duration::from_secs(20));
        assert_eq!(code, 2, "{kind}: {stdout}\n{stderr}");
        assert!(
            stderr.contains(kind) && stderr.contains("regular file"),
            "{kind}: {stderr}"
        );
    }
}

#[test]
fn journal_and_summary_agree_with_what_moved_after_all_of_the_above() {
    // A plain run after every refusal above still works end to end: the guards refuse only what is wrong.
    let d = Dirs::new();
    let text: String = (0..50)
        .map(|i| match i % 3 {
            0 => line(&format!("m-{i}"), "{}", "validation failed"),
            1 => line(&format!("test-{i}"), "{}", "timeout"),
            _ => line(&format!("m-{i}"), "{}", "upstream timeout"),
        })
        .collect();
    fs::write(d.p("dlq.jsonl"), &text).unwrap();
    let (code, stdout, stderr) = run(d
        .replay("dlq.jsonl", &module("route-by-error"))
        .args(["--filter", &module("drop-test-traffic")])
        .args(["--remainder", &d.s("rest.jsonl"), "--output", "json"]));
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let mut places: BTreeMap<String, usize> = BTreeMap::new();
    for file in ["staging.jsonl", "rest.jsonl", "audit/discarded.jsonl"] {
        for (id, _) in messages_in(&d.p(file)) {
            *places.entry(id).or_default() += 1;
        }
    }
    assert_eq!(places.len(), 50);
    assert!(places.values().all(|n| *n == 1), "{places:?}");
    let _ = std::io::stdout().flush();
}
