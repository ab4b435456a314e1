//! Shared helpers for the end-to-end tests: build filters from source once, run the real binary.

#![allow(dead_code)]

pub mod fleet;
pub mod own_redis;
pub mod proxy;
#[cfg(feature = "sqs")]
pub mod sqs;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::Duration;

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host/ has a parent")
        .to_path_buf()
}

/// Build every filter and fixture from source (once per test binary) and return `build/filters`.
/// Cargo's own lock makes concurrent test binaries wait for each other.
pub fn filters() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let status = Command::new("bash")
                .arg(repo().join("scripts/build-filters.sh"))
                .current_dir(repo())
                .status()
                .expect("cannot run scripts/build-filters.sh");
            assert!(
                status.success(),
                "scripts/build-filters.sh failed: run scripts/setup.sh first"
            );
            repo().join("build/filters")
        })
        .clone()
}

/// Path of one built filter module.
pub fn module(name: &str) -> String {
    filters().join(format!("{name}.wasm")).display().to_string()
}

/// A `redrive` command with its own compiled-module cache directory.
pub fn redrive(cache: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_redrive"));
    cmd.env("REDRIVE_CACHE_DIR", cache)
        .env_remove("RUST_LOG")
        .current_dir(repo());
    cmd
}

/// Run, returning (exit code, stdout, stderr).
pub fn run(cmd: &mut Command) -> (i32, String, String) {
    let Output { status, stdout, stderr } = cmd.output().expect("cannot run redrive");
    (
        status.code().unwrap_or(-1),
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

/// Parse JSONL output into values.
pub fn json_lines(stdout: &str) -> Vec<serde_json::Value> {
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l}: {e}")))
        .collect()
}

/// Every decision is `failed`, with a reason containing `needle`.
pub fn assert_failed_with(decided: &[serde_json::Value], needle: &str) {
    assert!(!decided.is_empty(), "no decisions");
    for d in decided {
        assert_eq!(d["verdict"], "failed", "{d}");
        let reason = d["reason"].as_str().unwrap();
        assert!(reason.contains(needle), "reason {reason:?} should contain {needle:?}");
    }
}

/// A temporary directory for one test, removed at the end, with helpers for paths in it.
pub struct Dirs {
    _tmp: Option<tempfile::TempDir>,
    /// The directory.
    pub root: PathBuf,
}

impl Dirs {
    /// A new empty directory.
    pub fn new() -> Self {
        let tmp = tempfile::tempdir().expect("a temporary directory");
        let root = tmp.path().to_owned();
        Self { _tmp: Some(tmp), root }
    }

    /// An existing directory (another `Dirs`' subdirectory), not removed by this one.
    pub fn at(root: PathBuf) -> Self {
        Self { _tmp: None, root }
    }

    /// The path of `name` in it.
    pub fn p(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// The path of `name` in it, as text.
    pub fn s(&self, name: &str) -> String {
        self.p(name).display().to_string()
    }
}

/// Every line of a JSONL file that parses, as JSON values (none when the file does not exist).
pub fn jsonl_values(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// `redrive run --no-progress -o json` from the file DLQ `dlq` to `staging.jsonl` in `d` through the built
/// filters `filters`, with the audit directory and the remainder in `d`.
pub fn file_run(d: &Dirs, dlq: &Path, filters: &[&str]) -> Command {
    let mut cmd = redrive(&d.p("cache"));
    cmd.args(["run", "--no-progress", "-o", "json"])
        .arg("--from")
        .arg(format!("file:{}", dlq.display()))
        .arg("--to")
        .arg(format!("file:{}", d.s("staging.jsonl")))
        .args(["--audit-dir", &d.s("audit"), "--remainder", &d.s("remainder.jsonl")]);
    for f in filters {
        cmd.args(["--filter", &module(f)]);
    }
    cmd
}

/// Wait at most `limit` for `child` (its output piped) and return its output; kill -9 it and fail, naming
/// `what` it was waiting after, when it is still running then.
pub fn output_within(child: std::process::Child, limit: std::time::Duration, what: &str) -> Output {
    let pid = child.id();
    let waiter = std::thread::spawn(move || child.wait_with_output().unwrap());
    let start = std::time::Instant::now();
    while !waiter.is_finished() {
        if start.elapsed() > limit {
            let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
            let stderr = waiter
                .join()
                .map(|out| String::from_utf8_lossy(&out.stderr).into_owned())
                .unwrap_or_default();
            panic!("{what}: still running after {limit:?}; killed. Its stderr:\n{stderr}");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    waiter.join().unwrap()
}

/// Start `cmd` with its output piped and wait (two minutes at most) for a stderr line starting with
/// `prefix`. Returns the child, the rest of that line, and the thread collecting the whole of stderr.
pub fn spawn_until_line(
    cmd: &mut Command,
    prefix: &str,
) -> (std::process::Child, String, std::thread::JoinHandle<String>) {
    let wanted = prefix.to_owned();
    let pick = move |line: &str| line.strip_prefix(wanted.as_str()).map(str::to_owned);
    spawn_until(
        cmd,
        &format!("a line starting with {prefix:?}"),
        pick,
        Duration::from_secs(120),
    )
}

/// Start `cmd` with its output piped and wait (`within` at most) for the first stderr line `pick` takes
/// something from (`what` names it in the failure). Returns the child, what `pick` took, and the thread
/// collecting the whole of stderr.
pub fn spawn_until(
    cmd: &mut Command,
    what: &str,
    pick: impl Fn(&str) -> Option<String> + Send + 'static,
    within: Duration,
) -> (std::process::Child, String, std::thread::JoinHandle<String>) {
    use std::io::BufRead;
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("cannot start redrive");
    let stderr = child.stderr.take().expect("piped stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(taken) = pick(&line) {
                tx.send(taken).ok();
            }
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    match rx.recv_timeout(within) {
        Ok(taken) => (child, taken, reader),
        Err(_) => {
            let _ = child.kill();
            panic!("redrive printed no {what}:\n{}", reader.join().unwrap_or_default());
        }
    }
}

/// One raw HTTP request to the Pushgateway on 127.0.0.1:9091; the status line and the body.
pub fn pushgateway(method: &str, path: &str) -> (String, String) {
    use std::io::{Read, Write};
    let addr: std::net::SocketAddr = "127.0.0.1:9091".parse().unwrap();
    let mut stream = std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(2))
        .expect("no Prometheus Pushgateway on 127.0.0.1:9091: run scripts/services.sh");
    stream.set_read_timeout(Some(std::time::Duration::from_secs(5))).ok();
    write!(
        stream,
        "{method} {path} HTTP/1.0\r\nHost: 127.0.0.1:9091\r\nContent-Length: 0\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    // HTTP/1.0, so the body comes whole: to an HTTP/1.1 request the Pushgateway answers a body of more than
    // 2 KiB in chunks, and a chunk's size line could fall inside a series' line.
    assert!(
        !head.to_ascii_lowercase().contains("transfer-encoding: chunked"),
        "the Pushgateway answered in chunks: {head}"
    );
    (head.lines().next().unwrap_or("").to_owned(), body.to_owned())
}
