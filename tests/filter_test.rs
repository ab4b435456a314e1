//! End-to-end tests of `redrive filter test`: real filters built from source, the real binary.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;

use common::{assert_failed_with, json_lines, module, redrive, repo, run};
use serde_json::Value;

fn write_input(dir: &std::path::Path, lines: &[&str]) -> String {
    let path = dir.join("input.jsonl");
    fs::write(&path, lines.join("\n") + "\n").unwrap();
    path.display().to_string()
}

/// `redrive filter test MODULES --input INPUT --output json --audit-dir AUDIT`: exit code, stdout, stderr.
fn filter_test_audited(
    dir: &std::path::Path,
    modules: &[String],
    input: &str,
    audit: &std::path::Path,
) -> (i32, String, String) {
    let audit = audit.display().to_string();
    let mut cmd = redrive(dir);
    cmd.args(["filter", "test"])
        .args(modules)
        .args(["--input", input, "--output", "json", "--audit-dir", &audit]);
    run(&mut cmd)
}

/// A module's audit file: the run's header line (its module checked) and the records below it.
fn audit_records(audit: &std::path::Path, module: &str) -> (Value, Vec<Value>) {
    let mut lines = json_lines(&fs::read_to_string(audit.join(format!("{module}.jsonl"))).unwrap());
    let header = lines.remove(0);
    assert_eq!(header["module"], module, "{header}");
    (header, lines)
}

/// Decisions of a JSON run, without the trailing summary.
fn decisions(stdout: &str) -> (Vec<Value>, Value) {
    let mut lines = json_lines(stdout);
    let summary = lines.pop().expect("a summary line");
    (lines, summary["summary"].clone())
}

#[test]
fn example_filters_match_their_expected_decisions() {
    let tmp = tempfile::tempdir().unwrap();
    for name in ["route-by-error", "repair-json", "drop-test-traffic"] {
        for policy in ["reuse", "fresh"] {
            let dir = repo().join("examples/filters").join(name);
            let (code, stdout, stderr) = run(redrive(tmp.path()).args([
                "filter",
                "test",
                &module(name),
                "--input",
                &dir.join("input.jsonl").display().to_string(),
                "--expect",
                &dir.join("expected.jsonl").display().to_string(),
                "--instance",
                policy,
            ]));
            assert_eq!(code, 0, "{name} ({policy}):\n{stdout}\n{stderr}");
            assert!(stdout.contains(" messages: "), "summary line missing:\n{stdout}");
        }
    }
}

#[test]
fn a_chain_feeds_repaired_bodies_forward_and_stops_at_the_first_skip_or_discard() {
    let tmp = tempfile::tempdir().unwrap();
    let input = write_input(
        tmp.path(),
        &[
            r#"{"id":"c-1","body":"{'order': 1, 'qty': 2,}","failure":{"error_text":"upstream timeout after 30s"}}"#,
            r#"{"id":"c-2","body":"{\"order\": 2}","failure":{"error_text":"validation failed: missing field sku"}}"#,
            r#"{"id":"c-3","body":"{\"order\": 3, \"test\": true}","failure":{"error_text":"503 Service Unavailable"}}"#,
            r#"{"id":"c-4","body":"{\"order\": 4, \"city\": \"Zürich 東京\"}","failure":{"error_text":"connection refused"}}"#,
        ],
    );
    let audit = tmp.path().join("audit");
    let chain = [
        module("route-by-error"),
        module("repair-json"),
        module("drop-test-traffic"),
    ];
    let (code, stdout, stderr) = filter_test_audited(tmp.path(), &chain, &input, &audit);
    assert_eq!(code, 0, "{stderr}");
    let (decided, summary) = decisions(&stdout);
    let by_id = |id: &str| decided.iter().find(|d| d["id"] == id).unwrap().clone();

    let c1 = by_id("c-1");
    assert_eq!(c1["verdict"], "replay", "{c1}");
    assert_eq!(c1["decided_by"], "drop-test-traffic");
    let body: Value = serde_json::from_str(c1["body"].as_str().unwrap()).unwrap();
    assert_eq!(
        body,
        serde_json::json!({"order": 1, "quantity": 2}),
        "repaired and renamed"
    );

    let c2 = by_id("c-2");
    assert_eq!(c2["verdict"], "skip");
    assert_eq!(c2["decided_by"], "route-by-error");
    assert!(c2.get("body").is_none());

    let c3 = by_id("c-3");
    assert_eq!(c3["verdict"], "discard");
    assert_eq!(c3["reason"], "test traffic: body field test=true");

    assert_eq!(by_id("c-4")["verdict"], "replay");
    assert_eq!(summary["replay"], 2);
    assert_eq!(summary["skip"], 1);
    assert_eq!(summary["discard"], 1);

    // One audit record per module that saw each message: c-2 stopped at the first module.
    let records = |m: &str| -> Vec<Value> {
        let path = audit.join(format!("{m}.jsonl"));
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{m} audit file mode");
        // The run's header comes first: the module and its sha256, once for every record below it.
        let (header, lines) = audit_records(&audit, m);
        assert_eq!(header["module_sha256"].as_str().unwrap().len(), 64, "{header}");
        assert!(header["run_started"].is_string(), "{header}");
        lines
    };
    let route = records("route-by-error");
    let repair = records("repair-json");
    let drop = records("drop-test-traffic");
    assert_eq!(route.len(), 4);
    assert_eq!(repair.len(), 3, "c-2 was skipped by the first module");
    assert_eq!(drop.len(), 3);
    let r1 = repair.iter().find(|r| r["message_id"] == "c-1").unwrap();
    assert_eq!(r1["body_sha256_out"].as_str().unwrap().len(), 64, "{r1}");
    assert!(
        route.iter().all(|r| r.get("body_sha256_out").is_none()),
        "a module that keeps the body writes no second hash"
    );
    assert_ne!(r1["body_sha256_in"], r1["body_sha256_out"], "repair changed the body");
    let d1 = drop.iter().find(|r| r["message_id"] == "c-1").unwrap();
    assert_eq!(
        d1["body_sha256_in"], r1["body_sha256_out"],
        "the next module saw the repaired body"
    );
    // The first module gives the hash of the body as delivered; later ones only when an earlier module changed it.
    assert!(route.iter().all(|r| r["body_sha256_in"].as_str().unwrap().len() == 64));
    let r2 = repair.iter().find(|r| r["message_id"] == "c-3").unwrap();
    assert!(r2.get("body_sha256_in").is_none(), "{r2}");
    for r in route.iter().chain(&repair).chain(&drop) {
        assert!(
            r.get("module_sha256").is_none(),
            "the module's hash is in the header only: {r}"
        );
        assert!(r.get("fuel").is_none(), "fuel is counted only with a budget: {r}");
        assert!(r["duration_us"].is_u64());
    }
}

/// Run one hostile fixture on two messages and return the decisions.
fn hostile(name: &str, extra: &[&str]) -> (Vec<Value>, String) {
    let tmp = tempfile::tempdir().unwrap();
    let input = write_input(
        tmp.path(),
        &[r#"{"id":"h-1","body":"{\"a\":1}"}"#, r#"{"id":"h-2","body":"x"}"#],
    );
    let mut cmd = redrive(tmp.path());
    cmd.args(["filter", "test", &module(name), "--input", &input, "--output", "json"])
        .args(extra);
    let started = std::time::Instant::now();
    let (code, stdout, stderr) = run(&mut cmd);
    assert_eq!(
        code, 0,
        "{name} must be contained and the process exit normally:\n{stdout}\n{stderr}"
    );
    eprintln!("{name}: {:?}", started.elapsed());
    let (decided, _) = decisions(&stdout);
    assert_eq!(decided.len(), 2, "{stdout}");
    (decided, stderr)
}

#[test]
fn an_infinite_loop_runs_out_of_fuel() {
    let (d, _) = hostile("hostile-infinite-loop", &["--fuel", "50000000"]);
    assert_failed_with(&d, "fuel exhausted: used its whole budget of 50000000 units");
}

#[test]
fn an_infinite_loop_without_a_fuel_budget_hits_the_deadline() {
    let (d, _) = hostile("hostile-infinite-loop", &["--timeout", "150ms"]);
    assert_failed_with(&d, "timed out: still running after the per-message deadline of 150ms");
}

#[test]
fn with_a_fuel_budget_every_record_says_what_the_module_spent() {
    let tmp = tempfile::tempdir().unwrap();
    let audit = tmp.path().join("audit");
    let input = write_input(
        tmp.path(),
        &[
            r#"{"id":"f-1","body":"{\"order\":1}","failure":{"error_text":"timeout"}}"#,
            r#"{"id":"f-2","body":"{\"order\":2,}","failure":{"error_text":"timeout"}}"#,
        ],
    );
    // Only the second module has a budget: the first's records say what it spent all the same.
    let modules = [
        module("route-by-error"),
        format!("{}?redrive.fuel=1_000_000_000", module("repair-json")),
    ];
    let (code, _, stderr) = filter_test_audited(tmp.path(), &modules, &input, &audit);
    assert_eq!(code, 0, "{stderr}");
    for m in ["route-by-error", "repair-json"] {
        let (_, records) = audit_records(&audit, m);
        assert_eq!(records.len(), 2, "{m}: {records:?}");
        for r in &records {
            assert!(r["fuel"].as_u64().unwrap() > 0, "{m}: fuel recorded: {r}");
        }
    }
}

#[test]
fn an_infinite_loop_hits_the_deadline_when_fuel_is_plentiful() {
    let (d, _) = hostile(
        "hostile-infinite-loop",
        &["--fuel", "1000000000000", "--timeout", "150ms"],
    );
    assert_failed_with(&d, "timed out: still running after the per-message deadline of 150ms");
    assert!(
        d[0]["reason"].as_str().unwrap().contains("[in "),
        "backtrace names the guest function: {}",
        d[0]
    );
}

#[test]
fn a_memory_bomb_hits_the_memory_limit() {
    let (d, _) = hostile("hostile-memory-bomb", &["--memory", "16MiB"]);
    assert_failed_with(&d, "memory limit hit");
    assert_failed_with(&d, "the limit is 16.0 MiB");
}

#[test]
fn deep_recursion_is_a_stack_overflow() {
    let (d, _) = hostile("hostile-deep-recursion", &[]);
    assert_failed_with(&d, "stack overflow");
    assert_failed_with(&d, "hostile_deep_recursion::recurse");
}

#[test]
fn a_panic_reports_the_guest_message_and_the_next_message_gets_a_fresh_instance() {
    let (d, _) = hostile("hostile-panic", &[]);
    assert_failed_with(&d, "panicked: boom: cannot handle message");
    // The second message reached decide in a new instance (a trapped one refuses every call).
    assert!(
        d[1]["reason"]
            .as_str()
            .unwrap()
            .contains("boom: cannot handle message h-2"),
        "{}",
        d[1]
    );
}

#[test]
fn an_oversized_body_is_refused() {
    let (d, _) = hostile(
        "hostile-huge-output",
        &["--max-output", "1MiB", "--config", "size=4194304"],
    );
    assert_failed_with(&d, "output too large: returned a body of 4.0 MiB, the limit is 1.0 MiB");
}

#[test]
fn an_error_from_decide_is_a_failure_with_the_filters_message() {
    let (d, _) = hostile("hostile-decide-err", &[]);
    assert_failed_with(&d, "filter returned an error: cannot decide message h-");
}

#[test]
fn log_floods_are_capped_with_a_marker_without_failing_the_message() {
    let tmp = tempfile::tempdir().unwrap();
    let audit = tmp.path().join("audit");
    let (d, _) = hostile(
        "hostile-log-flood",
        &[
            "--config",
            "lines=20000",
            "--max-log",
            "8KiB",
            "--audit-dir",
            &audit.display().to_string(),
        ],
    );
    for decision in &d {
        assert_eq!(decision["verdict"], "replay", "{decision}");
    }
    let records = json_lines(&fs::read_to_string(audit.join("hostile-log-flood.jsonl")).unwrap());
    let logs = records[1]["logs"].as_array().unwrap();
    let kept: usize = logs.iter().map(|l| l["text"].as_str().unwrap().len()).sum();
    assert!(kept < 8 * 1024 + 512, "log volume capped, kept {kept} bytes");
    let texts: Vec<&str> = logs.iter().map(|l| l["text"].as_str().unwrap()).collect();
    assert!(
        texts
            .iter()
            .any(|t| t.contains("more log lines") && t.contains("dropped")),
        "{texts:?}"
    );
    assert!(texts.iter().any(|t| t.contains("bytes of stdout dropped")), "{texts:?}");
}

#[test]
fn stdout_and_stderr_floods_are_captured_and_capped() {
    let (d, _) = hostile("hostile-stdout-flood", &[]);
    for decision in &d {
        assert_eq!(decision["verdict"], "replay");
        assert_eq!(decision["reason"], "printed a lot");
    }
}

#[test]
fn a_failing_init_is_a_start_up_error_naming_the_module() {
    let tmp = tempfile::tempdir().unwrap();
    let input = write_input(tmp.path(), &[r#"{"id":"a","body":"x"}"#]);
    let (code, stdout, stderr) =
        run(redrive(tmp.path()).args(["filter", "test", &module("hostile-init-fails"), "--input", &input]));
    assert_eq!(code, 2, "{stdout}{stderr}");
    assert!(
        stderr.contains("filter `hostile-init-fails` refused its configuration: missing required config key 'api_key'"),
        "{stderr}"
    );
    let (code, _, stderr) = run(redrive(tmp.path()).args([
        "filter",
        "test",
        &format!("{}?default=maybe", module("route-by-error")),
        "--input",
        &input,
    ]));
    assert_eq!(code, 2);
    assert!(
        stderr.contains("filter `route-by-error` refused its configuration") && stderr.contains("default"),
        "{stderr}"
    );
}

/// Under `--instance fresh` the snapshot attempt runs `init` at load; when `init` fails, that failure is the
/// start-up error, worded as with a reused instance, and `init` does not run a second time to find it again.
#[test]
fn a_failing_init_under_fresh_instances_is_the_same_error_found_once() {
    let tmp = tempfile::tempdir().unwrap();
    let input = write_input(tmp.path(), &[r#"{"id":"a","body":"x"}"#]);
    // The module, the words of its error line, and what else the reused run's output must say.
    for (spec, error, detail) in [
        (
            module("hostile-init-fails"),
            "refused its configuration",
            "refused its configuration",
        ),
        (
            format!("{}?default=maybe", module("route-by-error")),
            "refused its configuration",
            "refused its configuration",
        ),
        (
            format!("{}?panic-in-init=true", module("state-probe")),
            "failed to start",
            "told to panic in init",
        ),
    ] {
        let error_line = |stderr: &str| {
            stderr
                .lines()
                .find(|l| l.contains(error))
                .map(|l| l[l.find("filter `").unwrap_or(0)..].to_string())
        };
        let (code, _, reused) = run(redrive(tmp.path()).args(["filter", "test", &spec, "--input", &input]));
        assert_eq!(code, 2, "{reused}");
        let (code, _, fresh) = run(redrive(tmp.path()).env("RUST_LOG", "redrive=debug").args([
            "filter",
            "test",
            &spec,
            "--input",
            &input,
            "--instance",
            "fresh",
        ]));
        assert_eq!(code, 2, "{fresh}");
        assert!(error_line(&reused).is_some(), "{reused}");
        assert!(reused.contains(detail), "{reused}");
        assert_eq!(error_line(&fresh), error_line(&reused), "{fresh}");
        assert!(
            !fresh.contains("run `init` for every message"),
            "`init` failed in the snapshot attempt and was run again:\n{fresh}"
        );
    }
}

#[test]
fn a_module_that_keeps_failing_is_disabled_and_the_run_stops() {
    let tmp = tempfile::tempdir().unwrap();
    let lines: Vec<String> = (1..=6).map(|i| format!(r#"{{"id":"f-{i}","body":"x"}}"#)).collect();
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    let input = write_input(tmp.path(), &refs);
    let (code, stdout, stderr) = run(redrive(tmp.path()).args([
        "filter",
        "test",
        &module("hostile-decide-err"),
        "--input",
        &input,
        "--max-failures",
        "3",
        "--output",
        "json",
    ]));
    assert_eq!(code, 3, "{stdout}{stderr}");
    let (decided, _) = decisions(&stdout);
    assert_eq!(decided.len(), 3, "stopped after three failures in a row");
    assert!(
        stderr.contains("filter `hostile-decide-err` is disabled: it failed 3 messages in a row"),
        "{stderr}"
    );
}

#[test]
fn malformed_lines_are_reported_with_their_number_and_do_not_stop_the_rest() {
    let tmp = tempfile::tempdir().unwrap();
    let input = write_input(
        tmp.path(),
        &[
            r#"{"id":"ok-1","body":"{}"}"#,
            r#"{"id":"broken","body":"#,
            r#"{"body":"no id"}"#,
            r#"{"id":"ok-2","body_base64":"AAECAw=="}"#,
        ],
    );
    let (code, stdout, stderr) = run(redrive(tmp.path()).args([
        "filter",
        "test",
        &module("drop-test-traffic"),
        "--input",
        &input,
        "-o",
        "json",
    ]));
    assert_eq!(code, 1, "malformed input makes the exit code 1");
    assert!(stderr.contains("line 2: not a message object"), "{stderr}");
    assert!(stderr.contains("line 3:"), "{stderr}");
    let (decided, summary) = decisions(&stdout);
    assert_eq!(
        decided.iter().map(|d| d["id"].as_str().unwrap()).collect::<Vec<_>>(),
        ["ok-1", "ok-2"]
    );
    assert_eq!(summary["malformed_lines"], 2);
}

#[test]
fn mismatched_expectations_are_listed_and_fail_the_command() {
    let tmp = tempfile::tempdir().unwrap();
    let input = write_input(
        tmp.path(),
        &[
            r#"{"id":"a","body":"{}","attributes":{"x-test":"true"}}"#,
            r#"{"id":"b","body":"{}"}"#,
        ],
    );
    let expect = tmp.path().join("expect.jsonl");
    fs::write(
        &expect,
        concat!(
            r#"{"id":"a","verdict":"discard","reason":"test traffic: attribute x-test=true"}"#,
            "\n",
            r#"{"id":"b","verdict":"skip"}"#,
            "\n",
            r#"{"id":"c","verdict":"replay"}"#,
            "\n"
        ),
    )
    .unwrap();
    let (code, _, stderr) = run(redrive(tmp.path()).args([
        "filter",
        "test",
        &module("drop-test-traffic"),
        "--input",
        &input,
        "--expect",
        &expect.display().to_string(),
    ]));
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("mismatch: b: verdict replay (not test traffic), expected skip"),
        "{stderr}"
    );
    assert!(
        stderr.contains("mismatch: c: expected replay, but no decision was made for it"),
        "{stderr}"
    );
    assert!(!stderr.contains("mismatch: a:"), "{stderr}");
}

#[test]
fn compiled_modules_are_cached_between_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let input = write_input(tmp.path(), &[r#"{"id":"a","body":"{}"}"#]);
    let args = ["filter", "test", "-v", &module("route-by-error"), "--input", &input];
    let (code, _, first) = run(redrive(&cache).args(args));
    assert_eq!(code, 0, "{first}");
    assert!(first.contains("cache=Compiled"), "{first}");
    let artifacts: Vec<_> = fs::read_dir(&cache).unwrap().collect();
    assert_eq!(artifacts.len(), 1, "one compiled artifact stored");
    let (code, _, second) = run(redrive(&cache).args(args));
    assert_eq!(code, 0);
    assert!(second.contains("cache=Hit"), "{second}");
}

#[test]
fn files_that_are_not_components_are_refused_clearly() {
    let tmp = tempfile::tempdir().unwrap();
    let input = write_input(tmp.path(), &[r#"{"id":"a","body":"{}"}"#]);
    let text = tmp.path().join("notes.wasm");
    fs::write(&text, "hello").unwrap();
    let core = tmp.path().join("core.wasm");
    fs::write(&core, b"\0asm\x01\0\0\0").unwrap();
    for (path, needle) in [
        (text, "is not a WebAssembly file"),
        (core, "is a core WebAssembly module without a `_start` export"),
        (tmp.path().join("missing.wasm"), "cannot read filter module"),
    ] {
        let (code, _, stderr) =
            run(redrive(tmp.path()).args(["filter", "test", &path.display().to_string(), "--input", &input]));
        assert_eq!(code, 2, "{stderr}");
        assert!(stderr.contains(needle), "{stderr}");
    }
}

#[test]
fn bad_flags_and_specs_name_what_is_wrong() {
    let tmp = tempfile::tempdir().unwrap();
    let input = write_input(tmp.path(), &[r#"{"id":"a","body":"{}"}"#]);
    let m = module("route-by-error");
    for (args, needle) in [
        (vec!["--memory", "lots"], "`--memory`"),
        (vec!["--timeout", "soon"], "`--timeout`"),
        (vec!["--instance", "shared"], "expected `reuse` or `fresh`"),
        (vec!["--config", "novalue"], "is not key=value"),
    ] {
        let mut cmd = redrive(tmp.path());
        cmd.args(["filter", "test", &m, "--input", &input]).args(&args);
        let (code, _, stderr) = run(&mut cmd);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
    let (code, _, stderr) =
        run(redrive(tmp.path()).args(["filter", "test", &format!("{m}?redrive.memroy=1"), "--input", &input]));
    assert_eq!(code, 2);
    assert!(
        stderr.contains("unknown setting") && stderr.contains("memory"),
        "{stderr}"
    );
}

/// `redrive filter test` of the state-probe fixture (config `query`) on three messages, with debug logs: the
/// reasons it gave, in order, and stderr.
fn probe_instances(dir: &std::path::Path, query: &str, policy: &str) -> (Vec<String>, String) {
    let input = write_input(
        dir,
        &[
            r#"{"id":"s-1","body":"{}"}"#,
            r#"{"id":"s-2","body":"{}"}"#,
            r#"{"id":"s-3","body":"{}"}"#,
        ],
    );
    let (code, stdout, stderr) = run(redrive(dir).env("RUST_LOG", "redrive=debug").args([
        "filter",
        "test",
        &format!("{}?{query}", module("state-probe")),
        "--input",
        &input,
        "--output",
        "json",
        "--instance",
        policy,
    ]));
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let (decided, _) = decisions(&stdout);
    let reasons = decided
        .iter()
        .map(|d| d["reason"].as_str().unwrap_or_default().to_string())
        .collect();
    (reasons, stderr)
}

#[test]
fn fresh_instances_start_from_the_state_init_left_without_running_it_again() {
    let tmp = tempfile::tempdir().unwrap();
    let (reasons, stderr) = probe_instances(tmp.path(), "label=blue", "fresh");
    assert_eq!(reasons, ["init=1 decide=1 label=blue"; 3], "{stderr}");
    assert!(
        stderr.contains("pre_initialised=true"),
        "the snapshot was not used:\n{stderr}"
    );
    // A second run loads the snapshot from the cache, without running `init` at all.
    let (reasons, stderr) = probe_instances(tmp.path(), "label=blue", "fresh");
    assert_eq!(reasons, ["init=1 decide=1 label=blue"; 3], "{stderr}");
    assert!(stderr.contains("cache=Hit pre_initialised=true"), "{stderr}");
    // The same module reusing its instance: one init, the counts go on.
    let (reasons, _) = probe_instances(tmp.path(), "label=blue", "reuse");
    assert_eq!(
        reasons,
        [
            "init=1 decide=1 label=blue",
            "init=1 decide=2 label=blue",
            "init=1 decide=3 label=blue"
        ]
    );
    // Another configuration gets its own snapshot, not the cached one of the first.
    let (reasons, stderr) = probe_instances(tmp.path(), "label=green", "fresh");
    assert_eq!(reasons, ["init=1 decide=1 label=green"; 3], "{stderr}");
}

/// Where a snapshot would not be faithful, every message runs `init` as before, and the debug log says why.
#[test]
fn fresh_instances_run_init_per_message_when_init_leaves_a_stream_open_or_reads_the_clock() {
    let tmp = tempfile::tempdir().unwrap();
    for (query, why) in [
        ("stderr-in-init=true", "`init` left host resources"),
        ("clock-in-init=true", "`init` read the clock or random bytes"),
    ] {
        let said = format!("fresh instances run `init` for every message: {why}");
        // The second load finds the refusal in the cache instead of instrumenting and running `init` again.
        for (load, remembered) in [(1, false), (2, true)] {
            let (reasons, stderr) = probe_instances(tmp.path(), query, "fresh");
            assert_eq!(
                reasons, ["init=1 decide=1 label=none"; 3],
                "{query}, load {load}: {stderr}"
            );
            assert!(
                stderr.contains("pre_initialised=false"),
                "{query}, load {load}: {stderr}"
            );
            assert!(stderr.contains(&said), "{query}, load {load}: {stderr}");
            assert_eq!(
                stderr.contains("found by an earlier load, remembered in the cache"),
                remembered,
                "{query}, load {load}: {stderr}"
            );
        }
    }
}
