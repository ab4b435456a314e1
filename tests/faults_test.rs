//! Faults from outside the process, on a file replay: signals (SIGHUP, SIGINT twice), a closed stdout, and
//! the audit directory's disk filling up mid-run. Each ends as the README says, loses nothing, and the same
//! command resumes to the end. (kill -9 at random points, broker restarts and cut connections are in the
//! adapter kit, run by every broker's suite.)

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Dirs, file_run, jsonl_values, run};

/// `n` dead letters that the chain replays (all timed out), ids `m-0…`.
fn seed(d: &Dirs, n: usize) {
    let text: String = (0..n)
        .map(|i| {
            format!(
                "{}\n",
                serde_json::json!({"id": format!("m-{i}"), "body": format!("{{\"order\":{i}}}"),
                    "failure": {"error_text": "timeout calling billing"}})
            )
        })
        .collect();
    fs::write(d.p("dlq.jsonl"), text).unwrap();
}

fn replay(d: &Dirs, extra: &[&str]) -> Command {
    let mut cmd = file_run(d, &d.p("dlq.jsonl"), &["route-by-error"]);
    cmd.args(extra);
    cmd
}

fn ids_in(path: &Path) -> Vec<String> {
    jsonl_values(path)
        .iter()
        .filter_map(|v| v["id"].as_str().map(str::to_owned))
        .collect()
}

/// Every seeded message is in exactly one place: the destination (once) or the remainder.
fn assert_each_once(d: &Dirs, n: usize) {
    let mut places: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    let staged = ids_in(&d.p("staging.jsonl"));
    let rest = ids_in(&d.p("remainder.jsonl"));
    for id in &staged {
        places.entry(id.clone()).or_default().push("destination");
    }
    for id in &rest {
        places.entry(id.clone()).or_default().push("remainder");
    }
    for i in 0..n {
        let id = format!("m-{i}");
        assert_eq!(
            places.get(&id).map(Vec::as_slice),
            Some(&["destination"][..]),
            "{id} must be at the destination, once"
        );
    }
    assert_eq!(places.len(), n, "nothing appears that was not seeded");
}

/// The same command again, unpaced, to the end: exit 0, and every message at the destination once.
fn resume_to_the_end(d: &Dirs, n: usize) {
    let (code, stdout, stderr) = run(&mut replay(d, &[]));
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert_each_once(d, n);
}

fn wait_for_lines(path: &Path, at_least: usize, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while ids_in(path).len() < at_least {
        assert!(child.try_wait().unwrap().is_none(), "the run ended before it got going");
        assert!(Instant::now() < deadline, "the run did not get going");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn signal(child: &Child, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -{name} failed");
}

/// Wait at most `limit` for `child` ([`common::output_within`]): its exit code, stdout and stderr.
fn wait_within(child: Child, limit: Duration, what: &str) -> (Option<i32>, String, String) {
    let out = common::output_within(child, limit, what);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn spawn(cmd: &mut Command) -> Child {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// The terminal closing (SIGHUP) stops a run as Ctrl-C does: in-flight confirms finish, exit 130, the
/// summary is printed; the same command resumes to the end.
#[test]
fn sighup_drains_like_ctrl_c_and_the_run_resumes() {
    let d = Dirs::new();
    let n = 600;
    seed(&d, n);
    let mut child = spawn(&mut replay(&d, &["--rate", "100/s"]));
    wait_for_lines(&d.p("staging.jsonl"), 20, &mut child);
    signal(&child, "HUP");
    let (code, stdout, stderr) = wait_within(child, Duration::from_secs(15), "after SIGHUP");
    assert_eq!(code, Some(130), "SIGHUP ends like Ctrl-C\n{stdout}\n{stderr}");
    assert!(stderr.contains("stopping: no new messages"), "{stderr}");
    assert!(
        stdout.contains("interrupted"),
        "the summary says why it stopped: {stdout}"
    );
    assert!(ids_in(&d.p("staging.jsonl")).len() < n, "it stopped early");
    resume_to_the_end(&d, n);
}

/// A second Ctrl-C exits at once, without waiting for anything: exit 130, and still nothing lost (the two
/// signals come back to back, so the second lands while the first one's drain is under way or just after).
#[test]
fn a_second_sigint_exits_at_once_and_loses_nothing() {
    let d = Dirs::new();
    let n = 600;
    seed(&d, n);
    let mut child = spawn(&mut replay(&d, &["--rate", "200/s"]));
    wait_for_lines(&d.p("staging.jsonl"), 50, &mut child);
    signal(&child, "INT");
    let _ = Command::new("kill").args(["-INT", &child.id().to_string()]).status();
    let (code, _, stderr) = wait_within(child, Duration::from_secs(10), "after two SIGINTs");
    assert_eq!(code, Some(130), "{stderr}");
    assert!(stderr.contains("stopping: no new messages"), "{stderr}");
    resume_to_the_end(&d, n);
}

/// A stop while the canary's verify command runs ends the command (and what it started) and the run at
/// once, instead of waiting for the command: a verification can take minutes.
#[test]
fn a_stop_during_the_verify_command_ends_it_and_the_run() {
    let d = Dirs::new();
    let n = 300;
    seed(&d, n);
    let marker = format!("sleep 3{}", std::process::id() % 1000);
    let gate = format!("{marker}; echo gate-done");
    let mut child = spawn(&mut replay(&d, &["--canary", "20", "--verify-cmd", &gate]));
    wait_for_lines(&d.p("staging.jsonl"), 20, &mut child);
    std::thread::sleep(Duration::from_millis(500));
    signal(&child, "TERM");
    let (code, stdout, stderr) = wait_within(child, Duration::from_secs(10), "after SIGTERM during the gate");
    assert_eq!(code, Some(130), "{stdout}\n{stderr}");
    assert!(
        !stderr.lines().any(|l| l == "gate-done"),
        "the command was ended: {stderr}"
    );
    let left = Command::new("pgrep").args(["-f", &marker]).output().unwrap();
    assert!(left.stdout.is_empty(), "the verify command's own child is gone too");
    assert_eq!(
        ids_in(&d.p("staging.jsonl")).len(),
        20,
        "nothing after the canary was forwarded"
    );
    resume_to_the_end(&d, n);
}

/// `redrive run … | head -1` closes stdout before the summary: the run does its work, keeps its exit code
/// and does not panic.
#[test]
fn a_closed_stdout_neither_panics_nor_changes_the_exit_code() {
    let d = Dirs::new();
    let n = 200;
    seed(&d, n);
    for output in ["table", "json"] {
        let _ = fs::remove_dir_all(d.p("audit"));
        let _ = fs::remove_file(d.p("staging.jsonl"));
        let mut cmd = common::redrive(&d.p("cache"));
        cmd.args(["run", "--no-progress", "-o", output])
            .arg("--from")
            .arg(format!("file:{}", d.s("dlq.jsonl")))
            .arg("--to")
            .arg(format!("file:{}", d.s("staging.jsonl")))
            .args(["--audit-dir", &d.s("audit"), "--remainder", &d.s("remainder.jsonl")])
            .args(["--filter", &common::module("route-by-error")]);
        let mut child = spawn(&mut cmd);
        drop(child.stdout.take());
        let (code, _, stderr) = wait_within(child, Duration::from_secs(60), "with stdout closed");
        assert_eq!(code, Some(0), "-o {output}: {stderr}");
        assert!(!stderr.contains("panicked"), "-o {output}: {stderr}");
        assert_each_once(&d, n);
    }
}

/// A tmpfs mounted on a directory for the test's life (root only, as in CI).
struct Tmpfs {
    path: std::path::PathBuf,
}

impl Tmpfs {
    fn mount(path: &Path, size: &str) -> Self {
        fs::create_dir_all(path).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0700"), "tmpfs"])
            .arg(path)
            .output()
            .expect("cannot run mount");
        assert!(
            out.status.success(),
            "this test mounts a small tmpfs to fill a disk, which needs root (CI runs as root): run the \
             suite as root. mount said: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Self { path: path.to_owned() }
    }

    fn grow(&self, size: &str) {
        let status = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(&self.path)
            .status()
            .unwrap();
        assert!(status.success(), "remount failed");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.path).status();
    }
}

/// The audit directory's disk fills up mid-run: the run stops with an error that says so, nothing is
/// removed from the DLQ whose audit record, journal entry or archive line was not written, and once there
/// is room the same command finishes. Test traffic is discarded, so the archive is on the full disk too.
#[test]
fn a_full_audit_disk_stops_the_run_clearly_and_the_resumed_run_completes() {
    let d = Dirs::new();
    let n = 3000;
    let text: String = (0..n)
        .map(|i| {
            let mut line = serde_json::json!({"id": format!("m-{i}"), "body": format!("{{\"order\":{i}}}"),
                "failure": {"error_text": "timeout calling billing"}});
            if i % 3 == 0 {
                line["attributes"] = serde_json::json!({"x-test": "true"});
            }
            format!("{line}\n")
        })
        .collect();
    fs::write(d.p("dlq.jsonl"), text).unwrap();
    let disk = Tmpfs::mount(&d.p("audit"), "256k");
    let full_run = || {
        let mut cmd = file_run(&d, &d.p("dlq.jsonl"), &["route-by-error", "drop-test-traffic"]);
        cmd.stdin(Stdio::null());
        cmd
    };
    let (code, stdout, stderr) = run(&mut full_run());
    assert_ne!(
        code, 0,
        "the disk filled, so the run cannot have finished\n{stdout}\n{stderr}"
    );
    let text = format!("{stdout}\n{stderr}");
    assert!(
        text.contains("No space left on device"),
        "the error says the disk is full: {text}"
    );
    assert!(!text.contains("panicked"), "{text}");
    // What was removed so far is somewhere: at the destination or in the archive.
    let staged = ids_in(&d.p("staging.jsonl")).len();
    let archived = ids_in(&d.p("audit/discarded.jsonl")).len();
    assert!(staged + archived < n, "it stopped before the end");

    disk.grow("64m");
    let (code, stdout, stderr) = run(&mut full_run());
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let staged: Vec<String> = ids_in(&d.p("staging.jsonl"));
    let archived: Vec<String> = ids_in(&d.p("audit/discarded.jsonl"));
    let rest = ids_in(&d.p("remainder.jsonl"));
    assert!(rest.is_empty(), "nothing left: {rest:?}");
    let mut places: BTreeMap<String, usize> = BTreeMap::new();
    for id in staged.iter().chain(&archived) {
        *places.entry(id.clone()).or_default() += 1;
    }
    for i in 0..n {
        let id = format!("m-{i}");
        assert_eq!(
            places.get(&id),
            Some(&1),
            "{id}: once, at the destination or in the archive"
        );
        let discarded = archived.contains(&id);
        assert_eq!(discarded, i % 3 == 0, "{id} is where its verdict says");
    }
}
