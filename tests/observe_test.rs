//! Seeing a run from outside, end to end with the real binary and real filters: the Prometheus metrics
//! endpoint scraped while a run goes (and parsed with a Prometheus text-format parser), a taken port, the
//! completion scripts and the man page.

mod common;

use std::collections::HashMap;
use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{Dirs, file_run, module, pushgateway, redrive, run, spawn_until_line};

/// `n` messages: every 5th a permanent error (skip), every 7th test traffic (discard), the rest replay.
fn write_dlq(dir: &Path, n: usize) -> PathBuf {
    let mut out = String::new();
    for i in 0..n {
        let (error, extra) = match (i % 5, i % 7) {
            (0, _) => ("validation failed: field 'sku' missing", ""),
            (_, 0) => ("upstream timeout after 30s", r#","attributes":{"x-test":"true"}"#),
            _ => ("upstream timeout after 30s", ""),
        };
        out.push_str(&format!(
            r#"{{"id":"m-{i:04}","body":"{{\"order\":{i}}}","failure":{{"error_text":"{error}"}}{extra}}}"#
        ));
        out.push('\n');
    }
    let path = dir.join("dlq.jsonl");
    fs::write(&path, out).unwrap();
    path
}

/// GET `path` from `addr`; the body of a 200 answer.
fn http_get(addr: SocketAddr, path: &str) -> Result<String, String> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(|e| e.to_string())?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).map_err(|e| e.to_string())?;
    let (head, body) = answer.split_once("\r\n\r\n").ok_or("no HTTP answer")?;
    if !head.starts_with("HTTP/1.1 200") {
        return Err(head.to_owned());
    }
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/plain; version=0.0.4"),
        "{head}"
    );
    Ok(body.to_owned())
}

/// Every sample of a scrape, by name and labels (sorted `k=v` pairs joined by `,`).
fn samples(text: &str) -> HashMap<(String, String), f64> {
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))
        .unwrap_or_else(|e| panic!("not Prometheus text format: {e}\n{text}"));
    let mut out = HashMap::new();
    for s in scrape.samples {
        let mut labels: Vec<String> = s.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        labels.sort();
        let value = match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            prometheus_parse::Value::Histogram(buckets) => {
                // The parser folds _bucket lines into one sample: keep the +Inf bucket (the count).
                buckets.last().map_or(0.0, |b| b.count)
            }
            prometheus_parse::Value::Summary(_) => continue,
        };
        out.insert((s.metric, labels.join(",")), value);
    }
    out
}

fn get(samples: &HashMap<(String, String), f64>, name: &str, labels: &str) -> f64 {
    *samples
        .get(&(name.to_owned(), labels.to_owned()))
        .unwrap_or_else(|| panic!("no sample {name}{{{labels}}} in {:#?}", samples.keys()))
}

#[test]
fn metrics_are_served_while_a_run_goes_and_parse_as_prometheus_text() {
    let d = Dirs::new();
    let dlq = write_dlq(&d.root, 300);
    let mut cmd = file_run(&d, &dlq, &["route-by-error", "repair-json", "drop-test-traffic"]);
    cmd.args(["--rate", "60/s", "--canary", "5", "--metrics", "127.0.0.1:0"]);
    let (mut child, url, reader) = spawn_until_line(&mut cmd, "metrics: http://");
    let addr: SocketAddr = url.trim_end_matches("/metrics").parse().unwrap();

    // Scrape until the run has replayed past its canary, while it is still going.
    let deadline = Instant::now() + Duration::from_secs(60);
    let during = loop {
        let text = http_get(addr, "/metrics").expect("scrape during the run");
        let s = samples(&text);
        if get(&s, "redrive_messages_total", "outcome=replayed") >= 20.0 {
            break (text, s);
        }
        assert!(Instant::now() < deadline, "no progress in 60 s:\n{text}");
        std::thread::sleep(Duration::from_millis(200));
    };
    let (text, s) = during;
    assert_eq!(
        http_get(addr, "/nothing-here").unwrap_err().split(' ').nth(1),
        Some("404")
    );

    let mut stdout = String::new();
    child.stdout.take().unwrap().read_to_string(&mut stdout).unwrap();
    let status = child.wait().unwrap();
    let stderr = reader.join().unwrap();
    assert_eq!(status.code(), Some(0), "{stdout}\n{stderr}");
    let report: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    let counts = &report["counts"];

    // The families the README documents, with their labels.
    for module in ["route-by-error", "repair-json", "drop-test-traffic"] {
        let calls = get(&s, "redrive_module_call_duration_seconds", &format!("module={module}"));
        let decisions: f64 = ["replay", "skip", "discard"]
            .iter()
            .map(|v| {
                get(
                    &s,
                    "redrive_module_decisions_total",
                    &format!("module={module},verdict={v}"),
                )
            })
            .sum();
        assert!(decisions > 0.0, "{module} decided nothing yet:\n{text}");
        assert_eq!(calls, decisions, "{module}: one call per decision (no failures here)");
    }
    assert_eq!(get(&s, "redrive_canary_phase", "phase=passed"), 1.0, "{text}");
    assert_eq!(get(&s, "redrive_canary_phase", "phase=running"), 0.0);
    assert_eq!(get(&s, "redrive_forward_rate_limit", ""), 60.0);
    assert_eq!(get(&s, "redrive_pass_messages", ""), 300.0);
    let remaining = get(&s, "redrive_pass_remaining_messages", "");
    assert!(remaining > 0.0 && remaining < 300.0, "{remaining}");
    assert_eq!(get(&s, "redrive_paused", ""), 0.0);
    assert!(get(&s, "redrive_forward_in_flight", "") <= 64.0);
    let limit = get(&s, "redrive_message_memory_limit_bytes", "");
    assert_eq!(limit, 64.0 * 1024.0 * 1024.0, "the default --message-memory");
    let held = get(&s, "redrive_message_memory_bytes", "");
    assert!(
        held > 0.0 && held <= limit,
        "messages are held mid-run, within the budget: {held}"
    );
    assert_eq!(get(&s, "redrive_broker_retries_total", ""), 0.0);
    assert!(text.contains("redrive_run_info{"), "{text}");
    // Counters seen mid-run never exceed the run's final counts, and the final ones are complete.
    for outcome in ["replayed", "skipped", "discarded"] {
        let mid = get(&s, "redrive_messages_total", &format!("outcome={outcome}"));
        let end = counts[outcome].as_f64().unwrap();
        assert!(mid <= end, "{outcome}: {mid} mid-run > {end} at the end");
    }
    assert!(get(&s, "redrive_messages_read_total", "") <= 300.0);
    assert_eq!(
        counts["replayed"].as_u64().unwrap()
            + counts["skipped"].as_u64().unwrap()
            + counts["discarded"].as_u64().unwrap(),
        300
    );
    // No message id ever becomes a label (bounded cardinality).
    assert!(!text.contains("m-0"), "a message id leaked into the metrics:\n{text}");
    // The endpoint lives as long as the run, no longer.
    assert!(
        TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err(),
        "still listening after the run"
    );
}

#[test]
fn a_taken_metrics_port_stops_the_run_before_anything_moves() {
    let d = Dirs::new();
    let dlq = write_dlq(&d.root, 20);
    let before = fs::read(&dlq).unwrap();
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let mut cmd = redrive(&d.p("cache"));
    cmd.args(["run", "--no-progress", "--from", &format!("file:{}", dlq.display())])
        .args(["--to", &format!("file:{}", d.s("staging.jsonl")), "--no-filter"])
        .args(["--audit-dir", &d.s("audit"), "--metrics", &format!("127.0.0.1:{port}")]);
    let (code, stdout, stderr) = run(&mut cmd);
    assert_eq!(code, 2, "{stdout}\n{stderr}");
    assert!(
        stderr.contains(&format!("--metrics 127.0.0.1:{port}: cannot listen there")) && stderr.contains("pick another"),
        "{stderr}"
    );
    assert!(!d.p("staging.jsonl").exists(), "nothing may be forwarded");
    assert_eq!(fs::read(&dlq).unwrap(), before, "the DLQ is untouched");
    let (code, _, stderr) = run(redrive(&d.p("cache")).args(["run", "--metrics", "localhost:80:80"]));
    assert_eq!(code, 2);
    assert!(stderr.contains("--metrics"), "{stderr}");
}

#[test]
fn completion_scripts_and_the_man_page_come_from_the_command_line_itself() {
    let d = Dirs::new();
    for (shell, marker) in [
        ("bash", "_redrive()"),
        ("zsh", "#compdef redrive"),
        ("fish", "complete -c redrive"),
        ("powershell", "Register-ArgumentCompleter"),
    ] {
        let (code, stdout, stderr) = run(redrive(&d.p("cache")).args(["completions", shell]));
        assert_eq!(code, 0, "{shell}: {stderr}");
        assert!(stdout.contains(marker), "{shell}: no {marker:?}");
        assert!(
            stdout.contains("metrics-push") && stdout.contains("from"),
            "{shell}: flags missing"
        );
    }
    let (code, _, stderr) = run(redrive(&d.p("cache")).args(["completions", "tcsh"]));
    assert_eq!(code, 2);
    assert!(stderr.contains("possible values"), "{stderr}");
    let (code, stdout, _) = run(redrive(&d.p("cache")).arg("man"));
    assert_eq!(code, 0);
    assert!(
        stdout.starts_with(".ie") || stdout.contains(".TH redrive"),
        "{}",
        &stdout[..200.min(stdout.len())]
    );
    assert!(
        stdout.contains("completions") && stdout.contains("replays dead letters"),
        "man page lacks the commands"
    );
}

#[test]
fn a_short_run_pushes_its_metrics_to_a_pushgateway_at_the_end() {
    let d = Dirs::new();
    let dlq = write_dlq(&d.root, 35);
    let job = format!("redrive-test-{}", std::process::id());
    let group = format!("/metrics/job/{job}");
    let mut cmd = redrive(&d.p("cache"));
    cmd.args([
        "run",
        "--no-progress",
        "-o",
        "json",
        "--from",
        &format!("file:{}", dlq.display()),
    ])
    .args([
        "--to",
        &format!("file:{}", d.s("staging.jsonl")),
        "--filter",
        &module("route-by-error"),
    ])
    .args(["--audit-dir", &d.s("audit"), "--remainder", &d.s("remainder.jsonl")])
    .args(["--metrics-push", &format!("http://127.0.0.1:9091{group}")]);
    let (code, stdout, stderr) = run(&mut cmd);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(!stderr.contains("warning"), "{stderr}");
    let report: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    let (status, body) = pushgateway("GET", "/metrics");
    assert!(status.contains("200"), "{status}");
    let s = samples(&body);
    let replayed = get(
        &s,
        "redrive_messages_total",
        &format!("instance=,job={job},outcome=replayed"),
    );
    assert_eq!(replayed, report["counts"]["replayed"].as_f64().unwrap());
    let skipped = get(
        &s,
        "redrive_messages_total",
        &format!("instance=,job={job},outcome=skipped"),
    );
    assert_eq!(skipped, report["counts"]["skipped"].as_f64().unwrap());
    assert!(skipped > 0.0 && replayed > 0.0);
    let (status, _) = pushgateway("DELETE", &group);
    assert!(status.contains("202") || status.contains("200"), "{status}");

    // A Pushgateway that is not there: the run's result stands, the failed push is a warning.
    let dlq2 = d.p("dlq2.jsonl");
    fs::copy(&dlq, &dlq2).unwrap();
    let closed = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let (code, stdout, stderr) = run(redrive(&d.p("cache"))
        .args(["run", "--no-progress", "--from", &format!("file:{}", dlq2.display())])
        .args(["--to", &format!("file:{}", d.s("staging2.jsonl")), "--no-filter"])
        .args([
            "--audit-dir",
            &d.s("audit2"),
            "--metrics-push",
            &format!("http://127.0.0.1:{closed}"),
        ]));
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(
        stderr.contains("warning: pushing the metrics to http://127.0.0.1:") && stderr.contains("cannot connect"),
        "{stderr}"
    );
    let (code, _, stderr) = run(redrive(&d.p("cache")).args([
        "run",
        "--from",
        "file:x.jsonl",
        "--no-filter",
        "--to",
        "file:y.jsonl",
        "--metrics-push",
        "https://pgw",
    ]));
    assert_eq!(code, 2);
    assert!(stderr.contains("only http://"), "{stderr}");
}
