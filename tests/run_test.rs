//! End-to-end tests of `redrive run` and `redrive plan` on the embedded default (JSONL files):
//! the real binary, real filters built from source, real files.

mod common;
mod kit;

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Dirs, json_lines, jsonl_values, module, redrive, repo, run};
use serde_json::Value;

/// A DLQ of `n` messages: every 5th has a permanent error (skip), every 7th is test traffic (discard),
/// the rest have transient errors (replay).
fn write_dlq(dir: &Path, n: usize) -> PathBuf {
    let mut out = String::new();
    for i in 0..n {
        let (error, extra) = if i % 5 == 0 {
            ("validation failed: field 'sku' missing", "")
        } else if i % 7 == 0 {
            (
                "upstream timeout after 30s",
                r#","attributes":{"x-test":"true","tenant":"acme"}"#,
            )
        } else {
            ("upstream timeout after 30s", r#","attributes":{"tenant":"acme"}"#)
        };
        out.push_str(&format!(
            r#"{{"id":"m-{i:04}","body":"{{\"order\":{i},\"quantity\":1}}","failure":{{"error_text":"{error}","last_failed_at":"2026-11-2{}T10:00:00Z"}}{extra}}}"#,
            i % 3
        ));
        out.push('\n');
    }
    let path = dir.join("dlq.jsonl");
    fs::write(&path, out).unwrap();
    path
}

fn ids_in(path: &Path) -> Vec<String> {
    jsonl_values(path)
        .into_iter()
        .map(|v| v["id"].as_str().unwrap().to_owned())
        .collect()
}

impl Dirs {
    /// The usual run: three example filters, staging, remainder, audit in the temp dir.
    fn run_cmd(&self, dlq: &Path) -> Command {
        let mut cmd = redrive(&self.p("cache"));
        cmd.args(["run", "--no-progress", "--from", &format!("file:{}", dlq.display())])
            .args(["--to", &format!("file:{}", self.s("staging.jsonl"))])
            .args([
                "--filter",
                &module("route-by-error"),
                "--filter",
                &module("repair-json"),
            ])
            .args(["--filter", &module("drop-test-traffic")])
            .args([
                "--audit-dir",
                &self.s("audit"),
                "--remainder",
                &self.s("remainder.jsonl"),
            ]);
        cmd
    }
    /// Every input id ends in exactly one place: staging, still in the DLQ, or the discard archive.
    fn assert_reconciled(&self, dlq: &Path) -> (usize, usize, usize) {
        let input = ids_in(dlq);
        let staging = ids_in(&self.p("staging.jsonl"));
        let remainder = ids_in(&self.p("remainder.jsonl"));
        let archive = ids_in(&self.p("audit/discarded.jsonl"));
        let mut seen = BTreeMap::<&str, Vec<&str>>::new();
        for (place, ids) in [("staging", &staging), ("remainder", &remainder), ("archive", &archive)] {
            for id in ids {
                seen.entry(id.as_str()).or_default().push(place);
            }
        }
        for id in &input {
            let places = seen.get(id.as_str()).cloned().unwrap_or_default();
            assert_eq!(places.len(), 1, "{id} is in {places:?}: must be in exactly one place");
        }
        assert_eq!(seen.len(), input.len(), "no id may appear that was not in the input");
        (staging.len(), remainder.len(), archive.len())
    }
}

#[test]
fn quickstart_replays_repairs_skips_and_discards_and_every_message_ends_in_one_place() {
    let d = Dirs::new();
    let quickstart = repo().join("examples/quickstart");
    for f in ["dlq.jsonl", "redrive.toml", "fixed_consumer.py"] {
        fs::copy(quickstart.join(f), d.p(f)).unwrap();
    }
    let mut cmd = redrive(&d.p("cache"));
    cmd.args(["run", "--no-progress", "--config", &d.s("redrive.toml")]);
    for f in ["route-by-error", "repair-json", "drop-test-traffic"] {
        cmd.args(["--filter", &module(f)]);
    }
    let started = Instant::now();
    let (code, stdout, stderr) = run(&mut cmd);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stdout.contains("gate `python3 fixed_consumer.py`: passed"), "{stdout}");
    assert!(
        stdout.contains("canary: 10/10 ok") || stderr.contains("canary: 10/10 ok"),
        "{stdout}\n{stderr}"
    );
    // The config sets 100/s ramping from 20/s: a lower bound on time, no upper bound.
    assert!(started.elapsed() >= Duration::from_secs(2), "{:?}", started.elapsed());

    let dlq = d.p("dlq.jsonl");
    let (staged, remaining, archived) = {
        // The quickstart config writes to out/ beside the config file.
        let out = Dirs::at(d.p("out"));
        fs::rename(d.p("out/still-in-dlq.jsonl"), d.p("out/remainder.jsonl")).unwrap();
        out.assert_reconciled(&dlq)
    };
    assert!(
        staged > 300 && remaining > 100 && archived > 30,
        "{staged} {remaining} {archived}"
    );

    // Forwarded messages keep their attributes and gain the replay id and count.
    let staging = json_lines(&fs::read_to_string(d.p("out/staging.jsonl")).unwrap());
    let input: BTreeMap<String, Value> = json_lines(&fs::read_to_string(&dlq).unwrap())
        .into_iter()
        .map(|v| (v["id"].as_str().unwrap().to_owned(), v))
        .collect();
    let mut replay_ids = HashSet::new();
    for msg in &staging {
        let attrs = &msg["attributes"];
        let original = &input[msg["id"].as_str().unwrap()];
        for (k, v) in original["attributes"].as_object().into_iter().flatten() {
            if k != "x-redrive-replay-count" {
                assert_eq!(&attrs[k], v, "attribute {k} kept on {}", msg["id"]);
            }
        }
        let count: u64 = attrs["x-redrive-replay-count"].as_str().unwrap().parse().unwrap();
        assert_eq!(count, original["replay_count"].as_u64().unwrap_or(0) + 1);
        assert!(
            replay_ids.insert(attrs["x-redrive-replay-id"].as_str().unwrap().to_owned()),
            "replay ids unique"
        );
        serde_json::from_str::<Value>(msg["body"].as_str().unwrap()).expect("replayed bodies are valid JSON");
    }
    // Discards are archived whole with their reason.
    for line in json_lines(&fs::read_to_string(d.p("out/audit/discarded.jsonl")).unwrap()) {
        assert!(line["attributes"]["x-redrive-discard-reason"].is_string(), "{line}");
        assert!(line["attributes"]["x-redrive-discarded-by"].is_string(), "{line}");
    }
    use std::os::unix::fs::PermissionsExt;
    for f in ["route-by-error.jsonl", "discarded.jsonl"] {
        let mode = fs::metadata(d.p("out/audit").join(f)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{f}");
    }
}

#[test]
fn a_failed_canary_gate_stops_the_run_after_the_canary_with_nothing_more_changed() {
    let d = Dirs::new();
    let dlq = write_dlq(&d.root, 60);
    let (code, stdout, stderr) = run(d.run_cmd(&dlq).args(["--canary", "5", "--verify-cmd", "exit 1"]));
    assert_eq!(code, 4, "{stdout}\n{stderr}");
    assert!(
        stdout.contains("after the canary: verify command `exit 1` failed"),
        "{stdout}"
    );
    let (staged, remaining, archived) = d.assert_reconciled(&dlq);
    assert_eq!(staged, 5, "only the canary was forwarded");
    assert_eq!(archived, 0, "nothing is discarded before the gate passes");
    assert_eq!(remaining, 55);
}

#[test]
fn the_gate_command_is_told_the_canary_ids() {
    let d = Dirs::new();
    let dlq = write_dlq(&d.root, 40);
    let check = r#"test "$(wc -l)" -eq 4 && test "$(echo "$REDRIVE_CANARY_IDS" | tr , '\n' | wc -l)" -eq 4 && grep -q "$(echo "$REDRIVE_CANARY_IDS" | cut -d, -f1)" "${REDRIVE_STAGING#file:}""#;
    let (code, stdout, stderr) = run(d.run_cmd(&dlq).args(["--canary", "4", "--verify-cmd", check]));
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stdout.contains("passed"), "{stdout}");
    let (staged, _, archived) = d.assert_reconciled(&dlq);
    assert!(staged > 4 && archived > 0);
}

#[test]
fn the_rate_limit_is_honoured() {
    let d = Dirs::new();
    let dlq = write_dlq(&d.root, 40); // 28 replays
    let started = Instant::now();
    let (code, _, stderr) = run(d.run_cmd(&dlq).args(["--rate", "20/s", "--burst", "1"]));
    assert_eq!(code, 0, "{stderr}");
    let elapsed = started.elapsed();
    let (staged, _, _) = d.assert_reconciled(&dlq);
    let floor = Duration::from_secs_f64((staged - 1) as f64 / 20.0);
    assert!(
        elapsed >= floor,
        "{staged} replays at 20/s took {elapsed:?}, less than {floor:?}"
    );
}

/// Without `--max-in-flight`, a file destination (which drops a replay id it already holds, so a crash repeats
/// nothing) gets batches as large as the file sink takes; the flag still decides when given.
#[test]
fn the_window_is_the_destinations_batch_where_a_crash_repeats_nothing() {
    for (flag, window) in [(None, "256"), (Some("8"), "8")] {
        let d = Dirs::new();
        let dlq = write_dlq(&d.root, 20);
        let mut cmd = d.run_cmd(&dlq);
        cmd.arg("-v");
        if let Some(n) = flag {
            cmd.args(["--max-in-flight", n]);
        }
        let (code, _, stderr) = run(&mut cmd);
        assert_eq!(code, 0, "{stderr}");
        let said = stderr
            .lines()
            .find(|l| l.contains("the forwarder's window"))
            .unwrap_or_else(|| panic!("no window logged with -v: {stderr}"));
        assert!(said.contains(&format!("max_in_flight={window} ")), "{flag:?}: {said}");
    }
}

/// Large messages behind a slow forwarder: the file source could read the whole DLQ ahead (the stages hold up
/// to a thousand replays), but the bodies held at once stay within `--message-memory`, so the run's memory
/// stays near that budget instead of the DLQ's size. 48 messages of 2 MiB at 16/s with a budget of 8 MiB.
#[test]
fn large_messages_are_held_within_the_message_memory() {
    let d = Dirs::new();
    let n = 48;
    let body = "x".repeat(2 << 20);
    let mut dlq = String::new();
    for i in 0..n {
        dlq.push_str(&format!(
            r#"{{"id":"big-{i}","body":"{body}","failure":{{"error_text":"upstream timeout after 30s"}}}}"#
        ));
        dlq.push('\n');
    }
    let path = d.root.join("big.jsonl");
    fs::write(&path, dlq).unwrap();
    let mut cmd = redrive(&d.p("cache"));
    cmd.args([
        "run",
        "--no-progress",
        "--no-filter",
        "--from",
        &format!("file:{}", path.display()),
    ])
    .args(["--to", &format!("file:{}", d.s("staging.jsonl"))])
    .args([
        "--audit-dir",
        &d.s("audit"),
        "--rate",
        "16/s",
        "--message-memory",
        "8MiB",
    ]);
    let child = spawn_run(&mut cmd);
    let status = format!("/proc/{}/status", child.id());
    let watcher = std::thread::spawn(move || {
        let mut peak_kib = 0u64;
        while let Ok(text) = fs::read_to_string(&status) {
            let rss = text
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok());
            match rss {
                Some(kib) => peak_kib = peak_kib.max(kib),
                None => break, // a zombie: it has exited
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        peak_kib
    });
    let out = child.wait_with_output().unwrap();
    let peak_mib = watcher.join().unwrap() / 1024;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(ids_in(&d.p("staging.jsonl")).len(), n, "every message replayed");
    assert!(
        peak_mib < 90,
        "peak RSS {peak_mib} MiB: more than the 8 MiB budget and the run's own ~40 MiB allow (the DLQ is 96 MiB)"
    );
}

/// The binary sets jemalloc's options itself (`_rjem_malloc_conf` in host/src/main.rs: one arena per CPU, which
/// took ~3 MiB off the 1M benchmark's peak RSS). jemalloc ignores a symbol it does not look for, so a prefix
/// renamed by a tikv-jemallocator upgrade would drop the setting silently; the statistics jemalloc prints at
/// exit name the options it read.
#[test]
fn the_binary_gives_jemalloc_one_arena_per_cpu() {
    let d = Dirs::new();
    let (code, _, stderr) = run(redrive(&d.p("cache"))
        .arg("--version")
        .env("_RJEM_MALLOC_CONF", "stats_print:true"));
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains(r#"Global variable malloc_conf: "percpu_arena:percpu""#),
        "jemalloc did not read the binary's malloc_conf:\n{stderr}"
    );
    assert!(stderr.contains(r#"opt.percpu_arena: "percpu""#), "{stderr}");
}

/// Discards wait for the canary gate, but they give back their share of the message memory while they wait:
/// here the first 40 messages (64 KiB each) are test traffic to discard and the replays come after them, so
/// with a 1 MiB budget counting the held discards the reader would wait for room only the gate could free,
/// and the gate for canary replays the reader could not read. The run must finish, every message in one place.
#[test]
fn discards_held_for_the_canary_do_not_use_up_the_message_memory() {
    let d = Dirs::new();
    // A JSON body (repair-json discards what it cannot parse), 64 KiB.
    let body = format!(r#"{{\"pad\":\"{}\"}}"#, "y".repeat(64 << 10));
    let mut dlq = String::new();
    for i in 0..60 {
        let test = if i < 40 {
            r#","attributes":{"x-test":"true"}"#
        } else {
            ""
        };
        dlq.push_str(&format!(
            r#"{{"id":"m-{i:02}","body":"{body}","failure":{{"error_text":"upstream timeout after 30s"}}{test}}}"#
        ));
        dlq.push('\n');
    }
    let path = d.root.join("dlq.jsonl");
    fs::write(&path, dlq).unwrap();
    let mut cmd = d.run_cmd(&path);
    cmd.args(["--canary", "5", "--message-memory", "1MiB"]);
    let mut child = spawn_run(&mut cmd);
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().ok();
            panic!("the run did not finish within a minute: the reader and the canary gate wait on each other");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let (staged, remainder, archived) = d.assert_reconciled(&path);
    assert_eq!((staged, remainder, archived), (20, 0, 40));
}

/// The instance pool reserves tens of GiB of address space (not memory). Under `ulimit -v` (or valgrind) that
/// is refused; the run then says so and goes on with instances allocated on demand, compiling its modules the
/// same way, instead of refusing to start.
#[test]
fn a_limited_address_space_falls_back_to_instances_on_demand() {
    let d = Dirs::new();
    let dlq = write_dlq(&d.root, 40);
    let usual = d.run_cmd(&dlq);
    let mut limited = Command::new("sh");
    limited
        .arg("-c")
        .arg("ulimit -v 6000000 && exec \"$0\" \"$@\"")
        .arg(usual.get_program())
        .args(usual.get_args())
        .envs(usual.get_envs().filter_map(|(k, v)| v.map(|v| (k, v))))
        .current_dir(usual.get_current_dir().unwrap_or(&d.root));
    let (code, _, stderr) = run(&mut limited);
    assert_eq!(code, 0, "{stderr}");
    assert!(
        stderr.contains("instances get their memory on demand"),
        "the fallback is said\n{stderr}"
    );
    let (staged, _, archived) = d.assert_reconciled(&dlq);
    assert!(
        staged > 0 && archived > 0,
        "the filters ran: {staged} staged, {archived} archived"
    );
}

fn spawn_run(cmd: &mut Command) -> std::process::Child {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()
}

/// Wait until the staging file holds at least `n` lines (bounded).
fn wait_for_staging(d: &Dirs, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while ids_in(&d.p("staging.jsonl")).len() < n {
        assert!(Instant::now() < deadline, "the run did not get going");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn kill_9_mid_run_then_resume_loses_nothing_and_forwards_nothing_twice() {
    let d = Dirs::new();
    let dlq = write_dlq(&d.root, 300);
    let mut child = spawn_run(d.run_cmd(&dlq).args(["--rate", "200/s"]));
    wait_for_staging(&d, 40);
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let before = ids_in(&d.p("staging.jsonl")).len();
    assert!(before < 200, "killed mid-run ({before} forwarded)");

    let (code, stdout, stderr) = run(&mut d.run_cmd(&dlq));
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(
        stdout.contains("resumed"),
        "the summary counts what the journal settled: {stdout}"
    );
    let staging = ids_in(&d.p("staging.jsonl"));
    let unique: HashSet<&String> = staging.iter().collect();
    assert_eq!(unique.len(), staging.len(), "a message was forwarded twice");
    d.assert_reconciled(&dlq);
}

#[test]
fn ctrl_c_drains_in_flight_confirms_and_loses_nothing() {
    let d = Dirs::new();
    let dlq = write_dlq(&d.root, 300);
    let child = spawn_run(d.run_cmd(&dlq).args(["--rate", "100/s"]));
    wait_for_staging(&d, 20);
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(130), "{stdout}\n{stderr}");
    assert!(stderr.contains("stopping: no new messages"), "{stderr}");
    assert!(stdout.contains("interrupted"), "{stdout}");
    let (staged, remaining, _) = d.assert_reconciled(&dlq);
    assert!(staged < 240 && remaining > 60, "stopped early: {staged} staged");
}

#[test]
fn malformed_lines_are_reported_with_their_number_and_stay_in_the_dlq() {
    let d = Dirs::new();
    let dlq = d.p("dlq.jsonl");
    fs::write(
        &dlq,
        concat!(
            r#"{"id":"a","body":"{}","failure":{"error_text":"timeout"}}"#,
            "\n{\"id\": \"broken\", \"body\": \n",
            r#"{"id":"b","body":"{}","failure":{"error_text":"timeout"}}"#,
            "\n"
        ),
    )
    .unwrap();
    let (code, stdout, stderr) = run(&mut d.run_cmd(&dlq));
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stderr.contains("line 2: not a message object"), "{stderr}");
    assert!(stdout.contains("malformed"), "{stdout}");
    assert_eq!(ids_in(&d.p("staging.jsonl")), ["a", "b"]);
    let rest = fs::read_to_string(d.p("remainder.jsonl")).unwrap();
    assert_eq!(
        rest, "{\"id\": \"broken\", \"body\": \n",
        "the malformed line stays, byte for byte"
    );
}

#[test]
fn plan_then_run_plan_replays_exactly_the_planned_set() {
    let d = Dirs::new();
    let dlq = write_dlq(&d.root, 50);
    let filter = d.p("route.wasm");
    fs::copy(module("route-by-error"), &filter).unwrap();
    let plan_file = d.s("plan.json");
    let (code, stdout, stderr) = run(redrive(&d.p("cache")).args([
        "plan",
        "--from",
        &format!("file:{}", dlq.display()),
        "--filter",
        &filter.display().to_string(),
        "--plan-out",
        &plan_file,
        "--audit-dir",
        &d.s("plan-audit"),
    ]));
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stdout.contains("error groups"), "{stdout}");
    assert!(
        stdout.contains("upstream timeout after <n>s"),
        "errors are grouped: {stdout}"
    );
    assert_eq!(
        fs::read_to_string(&dlq).unwrap().lines().count(),
        50,
        "plan changes nothing"
    );
    let plan: Value = serde_json::from_str(&fs::read_to_string(&plan_file).unwrap()).unwrap();
    let planned_replays: HashSet<String> = plan["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["verdict"] == "replay")
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .collect();

    // The DLQ gains messages after the plan: they must not be replayed.
    let mut text = fs::read_to_string(&dlq).unwrap();
    text.push_str(r#"{"id":"late-1","body":"{}","failure":{"error_text":"timeout"}}"#);
    text.push('\n');
    fs::write(&dlq, text).unwrap();

    let run_plan = |d: &Dirs| {
        let mut cmd = redrive(&d.p("cache"));
        cmd.args(["run", "--no-progress", "--from", &format!("file:{}", dlq.display())])
            .args([
                "--to",
                &format!("file:{}", d.s("staging.jsonl")),
                "--filter",
                &filter.display().to_string(),
            ])
            .args([
                "--plan",
                &plan_file,
                "--audit-dir",
                &d.s("audit"),
                "--remainder",
                &d.s("remainder.jsonl"),
            ]);
        run(&mut cmd)
    };
    let (code, stdout, stderr) = run_plan(&d);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let staged: HashSet<String> = ids_in(&d.p("staging.jsonl")).into_iter().collect();
    assert_eq!(staged, planned_replays);
    assert!(ids_in(&d.p("remainder.jsonl")).contains(&"late-1".to_string()));

    // A changed module is refused.
    fs::copy(module("drop-test-traffic"), &filter).unwrap();
    let (code, _, stderr) = run_plan(&d);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("changed since the plan was made"), "{stderr}");
}

#[test]
fn the_loop_guard_parks_messages_replayed_too_often() {
    let d = Dirs::new();
    let dlq = d.p("dlq.jsonl");
    fs::write(
        &dlq,
        concat!(
            r#"{"id":"fresh","body":"{}","failure":{"error_text":"timeout"}}"#,
            "\n",
            r#"{"id":"looping","body":"{}","failure":{"error_text":"timeout"},"attributes":{"x-redrive-replay-count":"3"}}"#,
            "\n"
        ),
    )
    .unwrap();
    let (code, stdout, stderr) = run(d.run_cmd(&dlq).args(["--max-replays", "3"]));
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("parked"), "{stdout}");
    assert_eq!(ids_in(&d.p("staging.jsonl")), ["fresh"]);
    assert_eq!(ids_in(&d.p("remainder.jsonl")), ["looping"]);

    // With --park, parked messages move to the park destination and leave the DLQ.
    let d2 = Dirs::new();
    let park = format!("file:{}", d2.s("parked.jsonl"));
    let (code, _, stderr) = run(d2.run_cmd(&dlq).args(["--max-replays", "3", "--park", &park]));
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(ids_in(&d2.p("parked.jsonl")), ["looping"]);
    assert!(ids_in(&d2.p("remainder.jsonl")).is_empty());
}

#[test]
fn max_and_time_window_select_what_is_taken() {
    let d = Dirs::new();
    let dlq = write_dlq(&d.root, 30);
    let (code, stdout, stderr) = run(d.run_cmd(&dlq).args(["--max", "6", "--output", "json"]));
    assert_eq!(code, 0, "{stderr}");
    let summary: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(summary["counts"]["read"], 6);
    assert_eq!(
        d.assert_reconciled(&dlq).1,
        30 - summary["counts"]["replayed"].as_u64().unwrap() as usize
            - summary["counts"]["discarded"].as_u64().unwrap() as usize
    );

    let d = Dirs::new();
    let dlq = write_dlq(&d.root, 30);
    let (code, stdout, _) = run(d.run_cmd(&dlq).args([
        "--since",
        "2026-11-21T00:00:00Z",
        "--until",
        "2026-11-22T00:00:00Z",
        "-o",
        "json",
    ]));
    assert_eq!(code, 0);
    let summary: Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(summary["counts"]["read"], 10, "only the 2026-11-21 failures");
    assert_eq!(summary["counts"]["out_of_window"], 20);
}

#[test]
fn bad_run_flags_are_refused_with_a_clear_message() {
    let d = Dirs::new();
    let dlq = write_dlq(&d.root, 3);
    let from = format!("file:{}", dlq.display());
    let m = module("route-by-error");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["run", "--from", &from, "--filter", &m], "no destination"),
        (
            vec![
                "run",
                "--from",
                &from,
                "--filter",
                &m,
                "--to",
                "file:x.jsonl",
                "--rate",
                "fast",
            ],
            "--rate",
        ),
        (
            vec![
                "run",
                "--from",
                &from,
                "--filter",
                &m,
                "--to",
                "file:x.jsonl",
                "--verify-cmd",
                "true",
            ],
            "needs a canary",
        ),
        (
            vec![
                "run",
                "--from",
                &from,
                "--filter",
                &m,
                "--to",
                "file:x.jsonl",
                "--canary",
                "2",
                "--verify",
                "prompt",
            ],
            "needs a terminal",
        ),
        (
            vec!["run", "--from", "dlq.jsonl", "--filter", &m, "--to", "file:x.jsonl"],
            "has no scheme",
        ),
        (
            vec!["run", "--from", "nats:x", "--filter", &m, "--to", "file:x.jsonl"],
            "--from: unsupported scheme `nats:`",
        ),
        (vec!["run", "--from", &from, "--to", "file:x.jsonl"], "no filters"),
    ];
    for (args, needle) in cases {
        let mut cmd = redrive(&d.p("cache"));
        cmd.current_dir(&d.root).args(&args).stdin(Stdio::null());
        let (code, _, stderr) = run(&mut cmd);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
}

/// The file adapter under the adapter kit. Not listed: `dropped_connection` (a file has no connection),
/// `to_origin` (a file records no origin to send back to), `password_never_printed` (a path has none).
struct FileKit {
    dirs: Dirs,
    /// Staging lines already sent back by `fail_again`.
    failed_again: usize,
}

impl kit::Broker for FileKit {
    fn new(_test: &str) -> Self {
        FileKit {
            dirs: Dirs::new(),
            failed_again: 0,
        }
    }

    fn seed(&mut self, n: u64) {
        let mut text = String::new();
        for order in 0..n {
            let mut line = serde_json::json!({"id": format!("m-{order}"), "body": kit::body_of(order)});
            if let Some(error) = kit::error_of(order) {
                line["failure"] = serde_json::json!({ "error_text": error });
            }
            if kit::is_test_traffic(order) {
                line["attributes"] = serde_json::json!({"x-test": "true"});
            }
            text.push_str(&format!("{line}\n"));
        }
        fs::write(self.dirs.p("dlq.jsonl"), text).unwrap();
    }

    fn source_url(&self) -> String {
        format!("file:{}", self.dirs.s("dlq.jsonl"))
    }

    fn destination_url(&self) -> String {
        format!("file:{}", self.dirs.s("staging.jsonl"))
    }

    fn run_args(&self) -> Vec<String> {
        vec!["--remainder".into(), self.dirs.s("rest.jsonl")]
    }

    fn destination_count(&mut self) -> usize {
        jsonl_values(&self.dirs.p("staging.jsonl")).len()
    }

    fn at_destination(&mut self) -> Vec<kit::Arrived> {
        kit::file_arrivals(&self.dirs.p("staging.jsonl"))
    }

    fn in_dlq(&mut self) -> Vec<u64> {
        let rest = self.dirs.p("rest.jsonl");
        let file = if rest.exists() { rest } else { self.dirs.p("dlq.jsonl") };
        jsonl_values(&file)
            .iter()
            .filter_map(|v| kit::order_of_body(v["body"].as_str()?))
            .collect()
    }

    fn random_kills(&self) -> usize {
        80
    }

    fn fail_again(&mut self) -> Vec<u64> {
        use std::io::Write;
        let staged = jsonl_values(&self.dirs.p("staging.jsonl"));
        let mut back = Vec::new();
        let mut text = String::new();
        for mut line in staged.into_iter().skip(self.failed_again) {
            let order = kit::order_of_body(line["body"].as_str().unwrap()).unwrap();
            line["failure"] = serde_json::json!({ "error_text": format!("still failing: sku {order} unknown") });
            text.push_str(&format!("{line}\n"));
            back.push(order);
        }
        self.failed_again += back.len();
        let mut dlq = fs::OpenOptions::new()
            .append(true)
            .open(self.dirs.p("dlq.jsonl"))
            .unwrap();
        dlq.write_all(text.as_bytes()).unwrap();
        back
    }

    fn crash_copies(&self) -> kit::Copies {
        kit::Copies::None
    }

    fn mistakes(&self) -> Vec<kit::Mistake> {
        fs::create_dir_all(self.dirs.p("a-directory")).unwrap();
        vec![
            kit::Mistake {
                what: "a missing file",
                url: format!("file:{}", self.dirs.s("no-such.jsonl")),
                says: "cannot open the DLQ file",
            },
            kit::Mistake {
                what: "a directory",
                url: format!("file:{}", self.dirs.s("a-directory")),
                says: "not a regular file",
            },
        ]
    }
}

kit::suite!(FileKit:
    reconciles,
    plan_changes_nothing,
    kill_9_then_resume,
    kill_9_at_random_points,
    crash_at_each_step,
    returning_replays_trip_the_breaker,
    mistakes_are_exit_2,
);
