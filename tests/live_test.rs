//! The live page of `redrive run --ui`, in a real browser (Debian's Chromium driven by playwright-core;
//! scripts/browser.sh installs both): Pause stops the destination growing, Resume lets it grow again, Stop
//! ends the run as Ctrl-C does, and every message still ends in exactly one place. Requests without the
//! token, with a foreign Host, or controls from another origin are refused.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{Dirs, file_run, jsonl_values, repo, spawn_until_line};

fn write_dlq(path: &Path, n: usize) {
    let mut out = String::new();
    for i in 0..n {
        let error = if i % 5 == 0 {
            "validation failed: sku"
        } else {
            "upstream timeout after 30s"
        };
        out.push_str(&format!(
            "{{\"id\":\"m-{i:04}\",\"body\":\"{{\\\"order\\\":{i}}}\",\"failure\":{{\"error_text\":\"{error}\"}}}}\n"
        ));
    }
    fs::write(path, out).unwrap();
}

/// One raw HTTP request; the status code.
fn status(addr: SocketAddr, request: &str) -> u16 {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok();
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0)
}

fn ids(path: &Path) -> Vec<String> {
    jsonl_values(path)
        .iter()
        .map(|v| v["id"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn pause_resume_and_stop_from_the_live_page_in_a_browser() {
    let tools = std::env::var("REDRIVE_TOOLS_DIR").unwrap_or_else(|_| "/var/tmp/redrive-tools".into());
    let node_modules = Path::new(&tools).join("browser/node_modules");
    assert!(
        node_modules.join("playwright-core").is_dir(),
        "playwright-core is not installed: run scripts/browser.sh (it installs Chromium and playwright-core)"
    );
    let d = Dirs::new();
    let dlq = d.p("dlq.jsonl");
    write_dlq(&dlq, 400);
    let mut cmd = file_run(&d, &dlq, &["route-by-error", "repair-json"]);
    cmd.args(["--rate", "15/s", "--max-in-flight", "4", "--ui", "127.0.0.1:0"]);
    let (mut child, url, reader) = spawn_until_line(&mut cmd, "live page: ");
    let rest = url.strip_prefix("http://").unwrap();
    let (host, query) = rest.split_once("/?token=").unwrap();
    let addr: SocketAddr = host.parse().unwrap();
    assert!(addr.ip().is_loopback());

    // Refused: no token, a wrong token, a foreign Host (DNS rebinding), a control from another origin.
    let get = |path: &str, host: &str| format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    assert_eq!(status(addr, &get("/", host)), 403);
    assert_eq!(status(addr, &get("/?token=0123", host)), 403);
    assert_eq!(status(addr, &get(&format!("/?token={query}"), "evil.example:80")), 403);
    let foreign_stop = format!(
        "POST /stop?token={query} HTTP/1.1\r\nHost: {host}\r\nOrigin: http://evil.example\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    assert_eq!(status(addr, &foreign_stop), 403);
    assert_eq!(status(addr, &get(&format!("/?token={query}"), host)), 200);

    let shot = d.p("live.png");
    let out = Command::new("node")
        .arg(repo().join("tests/live/drive.js"))
        .args([url.as_str(), &d.s("staging.jsonl"), &shot.display().to_string()])
        .env("NODE_PATH", &node_modules)
        .output()
        .expect("cannot run node");
    if !out.status.success() {
        // Whatever the page was left in (paused, say), the run must not outlive the test.
        let _ = child.kill();
    }
    let stdout_run = {
        let mut s = String::new();
        child.stdout.take().unwrap().read_to_string(&mut s).unwrap();
        s
    };
    let code = child.wait().unwrap().code();
    let stderr = reader.join().unwrap();
    assert!(
        out.status.success(),
        "the browser script failed:\n{}\n{}\nredrive: {stderr}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let seen: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let paused = seen["paused"].as_array().unwrap();
    assert_eq!(paused[0], paused[1], "the destination grew while paused: {seen}");
    assert!(
        seen["resumed"].as_u64() > paused[1].as_u64(),
        "no growth after Resume: {seen}"
    );
    assert!(
        seen["recent_rows"].as_u64().unwrap() > 0 && seen["module_rows"] == 2,
        "{seen}"
    );
    assert_eq!(seen["buttons_disabled"], true, "{seen}");
    assert!(fs::read(&shot).unwrap().starts_with(b"\x89PNG"), "no screenshot");

    // Stop is the graceful kill switch: exit 130, and nothing lost or doubled.
    assert_eq!(code, Some(130), "{stdout_run}\n{stderr}");
    let summary: serde_json::Value = serde_json::from_str(stdout_run.trim()).unwrap();
    assert_eq!(summary["stopped"]["kind"], "interrupted", "{summary}");
    let staged = ids(&d.p("staging.jsonl"));
    assert_eq!(summary["counts"]["replayed"].as_u64().unwrap(), staged.len() as u64);
    assert_eq!(
        seen["final"]["replayed"].as_u64().unwrap(),
        staged.len() as u64,
        "the page's last numbers"
    );
    assert!(staged.len() < 400, "stopped before the end");
    let mut places = BTreeMap::<String, u32>::new();
    for id in staged.into_iter().chain(ids(&d.p("remainder.jsonl"))) {
        *places.entry(id).or_default() += 1;
    }
    assert_eq!(places.len(), 400, "every message is somewhere");
    assert!(places.values().all(|n| *n == 1), "a message is in two places");
    assert!(
        TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err(),
        "the page outlived the run"
    );
}
