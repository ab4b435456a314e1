//! The HTML reports of `redrive plan --report` and `redrive run --report`, opened in a real browser
//! (Debian's Chromium, headless; scripts/browser.sh installs it): the numbers on the page equal the run's
//! `--output json`, and hostile message content renders as text, never as markup or script.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::process::Command;

use common::{Dirs, module, redrive, repo, run};

/// The page as the browser built it (after parsing, with scripts allowed to run if any could).
fn dom(page: &Path) -> String {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "chromium".to_owned());
    let profile = tempfile::tempdir().unwrap();
    let out = Command::new(&chromium)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("--dump-dom")
        .arg(format!("file://{}", page.display()))
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run {chromium} ({e}): the report tests need Chromium; run scripts/browser.sh (Debian: apt-get install chromium)")
        });
    assert!(
        out.status.success(),
        "{chromium} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// `data-count="key">N<` pairs of the totals table.
fn counts_on_page(dom: &str) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for piece in dom.split("data-count=\"").skip(1) {
        let (key, rest) = piece.split_once('"').unwrap();
        let value = rest.trim_start_matches('>').split('<').next().unwrap();
        out.insert(key.to_owned(), value.trim().parse().unwrap());
    }
    out
}

fn title(dom: &str) -> &str {
    dom.split("<title>")
        .nth(1)
        .and_then(|t| t.split("</title>").next())
        .unwrap_or("")
}

#[test]
fn the_quickstart_run_report_shows_the_numbers_of_its_json_summary() {
    let d = Dirs::new();
    let quickstart = repo().join("examples/quickstart");
    for f in ["dlq.jsonl", "redrive.toml", "fixed_consumer.py"] {
        fs::copy(quickstart.join(f), d.p(f)).unwrap();
    }
    let mut cmd = redrive(&d.p("cache"));
    cmd.args(["run", "--no-progress", "-o", "json", "--config", &d.s("redrive.toml")])
        .args(["--report", &d.s("run.html")]);
    for f in ["route-by-error", "repair-json", "drop-test-traffic"] {
        cmd.args(["--filter", &module(f)]);
    }
    let (code, stdout, stderr) = run(&mut cmd);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let summary: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    let page = dom(&d.p("run.html"));
    assert!(
        title(&page).starts_with("redrive run report: file:"),
        "{}",
        title(&page)
    );
    let on_page = counts_on_page(&page);
    for (key, value) in summary["counts"].as_object().unwrap() {
        let value = value.as_u64().unwrap();
        match on_page.get(key) {
            Some(shown) => assert_eq!(*shown, value, "{key}"),
            // Rows that did not happen are left out, as in the terminal summary.
            None => assert_eq!(value, 0, "{key} = {value} is missing from the page"),
        }
    }
    assert!(
        on_page["replayed"] > 0 && on_page["skipped"] > 0 && on_page["discarded"] > 0,
        "{on_page:?}"
    );
    let c = &summary["counts"];
    let left = ["skipped", "failed", "malformed", "not_done", "send_failed"]
        .iter()
        .map(|k| c[k].as_u64().unwrap())
        .sum::<u64>();
    assert_eq!(on_page["left"], left);
    // The sections a reader looks for, and the files.
    for needle in [
        "Flow through the chain",
        "Per module",
        "Error groups",
        "Repaired messages",
        "Rate over time",
        "gate passed",
        "route-by-error.jsonl",
        "journal",
        "<svg",
    ] {
        assert!(page.contains(needle), "the report has no {needle:?}");
    }
    // Self-contained: nothing to fetch, no script.
    let html = fs::read_to_string(d.p("run.html")).unwrap();
    for forbidden in ["<script", "http://", "https://", "@import", "url("] {
        assert!(!html.contains(forbidden), "the report contains {forbidden:?}");
    }
}

#[test]
fn hostile_message_content_renders_as_text_in_a_plan_report() {
    let d = Dirs::new();
    let hostile = "</svg></table><script>document.title='pwned'</script><img src=x onerror=\"document.title='pwned'\">";
    let long = "x".repeat(200_000);
    let lines = [
        // Repaired by repair-json (a trailing comma): its body before and after is in the report.
        serde_json::json!({
            "id": format!("<b>{hostile}"),
            "body": format!("{{\"order\":1,\"note\":\"{}\",}}", hostile.replace('"', "\\\"")),
            "failure": {"error_text": format!("upstream timeout {hostile}")},
        }),
        serde_json::json!({
            "id": "long-1",
            "body": format!("{{\"note\":\"{long}\",}}"),
            "failure": {"error_text": format!("upstream timeout {long}")},
        }),
    ];
    let dlq = d.p("dlq.jsonl");
    fs::write(&dlq, lines.iter().map(|l| format!("{l}\n")).collect::<String>()).unwrap();
    let mut cmd = redrive(&d.p("cache"));
    cmd.args(["plan", "--no-progress", "--from", &format!("file:{}", dlq.display())])
        .args([
            "--filter",
            &module("route-by-error"),
            "--filter",
            &module("repair-json"),
        ])
        .args(["--audit-dir", &d.s("audit"), "--plan-out", &d.s("plan.json")])
        .args(["--report", &d.s("plan.html")]);
    let (code, stdout, stderr) = run(&mut cmd);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let html = fs::read_to_string(d.p("plan.html")).unwrap();
    let lower = html.to_lowercase();
    assert!(
        !lower.contains("<script") && !lower.contains("<img") && !lower.contains("<b>"),
        "markup from a message reached the page"
    );
    assert!(html.contains("&lt;script&gt;"), "the hostile text is shown, escaped");
    assert!(html.len() < 200_000, "long lines are clipped ({} bytes)", html.len());
    let page = dom(&d.p("plan.html"));
    assert!(
        title(&page).starts_with("redrive plan report"),
        "title changed: {}",
        title(&page)
    );
    assert!(!page.contains("pwned\"") && !title(&page).contains("pwned"));
    let on_page = counts_on_page(&page);
    assert_eq!(on_page["replayed"], 2, "{on_page:?}");
    assert_eq!(on_page["left"], 2, "a plan changes nothing");
    assert!(
        page.contains("Repaired messages") && page.contains("plan.json"),
        "{page}"
    );
}
