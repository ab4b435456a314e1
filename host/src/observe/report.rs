//! The HTML report of a plan or a run (`--report FILE`): one self-contained page (inline CSS and SVG, no
//! script, no font, nothing fetched; a Content-Security-Policy that forbids scripts as a second fence) with
//! the totals, the flow through the chain, each module's decisions and call times, the error groups with
//! samples, repaired bodies as diffs, the rate over time with the canary and pauses marked, what is left in
//! the DLQ, and where the audit files are. Everything from a message is escaped and clipped.

use std::fmt::Write as _;
use std::path::Path;

use chrono::{SecondsFormat, Utc};
use similar::{ChangeTag, TextDiff};

use super::charts::{self, DISCARD, FAILED, REPLAY, SKIP, esc};
use crate::core::envelope::Outcome;
use crate::core::text::clip;
use crate::pipeline::telemetry::{Latency, Repair};
use crate::pipeline::{RunReport, Telemetry};

/// Error groups shown in full; the rest are counted in one line.
const GROUPS_SHOWN: usize = 50;

const STYLE: &str = "body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1000px;color:#222;padding:0 1em}\
h1{font-size:1.6em;margin-bottom:.2em}h2{font-size:1.2em;margin-top:1.8em;border-bottom:1px solid #ddd}\
table{border-collapse:collapse;margin:.5em 0}td,th{padding:.25em .7em;border-bottom:1px solid #eee;text-align:left;vertical-align:top}\
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}.route{font-family:monospace;font-size:1.05em}\
.muted{color:#666}.chart text{font:12px system-ui,sans-serif}.chart text.in{fill:#fff}.chart text.axis{fill:#666}\
.chart text.mark{font-size:11px}pre{background:#f6f6f6;padding:.6em;overflow-x:auto;white-space:pre-wrap;word-break:break-all;max-height:30em}\
.add{background:#e6ffec}.del{background:#ffebe9}.diff{font:12px monospace;width:100%}.diff td{border:0;padding:0 .5em;white-space:pre-wrap;word-break:break-all}\
.swatch{display:inline-block;width:.9em;height:.9em;margin:0 .3em 0 1em;vertical-align:-1px}.stopped{color:#c62828;font-weight:600}\
dl.facts{display:grid;grid-template-columns:max-content auto;gap:.2em 1em}dl.facts dt{color:#666}dl.facts dd{margin:0}";

/// Whether the report is of a plan (dry run) or a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReportKind {
    /// `redrive plan --report`.
    Plan,
    /// `redrive run --report`.
    Run,
}

/// Render the report of `report`, with the live numbers `telemetry` kept during it.
pub fn render(report: &RunReport, telemetry: &Telemetry, kind: ReportKind, plan_file: Option<&Path>) -> String {
    let dry_run = kind == ReportKind::Plan;
    let what = if dry_run { "plan" } else { "run" };
    let snapshot = telemetry.snapshot();
    let mut h = String::with_capacity(32 * 1024);
    let _ = write!(
        h,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; img-src data:\">\
         <meta name=\"viewport\" content=\"width=device-width\"><title>redrive {what} report: {}</title><style>{STYLE}</style></head><body>",
        esc(&report.source)
    );
    let _ = write!(
        h,
        "<h1>redrive {what} report</h1><p class=\"route\">{} → {}</p><dl class=\"facts\">\
         <dt>written</dt><dd>{}</dd><dt>elapsed</dt><dd id=\"elapsed\">{:.1} s</dd>",
        esc(&report.source),
        esc(report
            .destination
            .as_deref()
            .unwrap_or("(dry run: nothing forwarded, nothing removed)")),
        Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true),
        report.elapsed_secs,
    );
    if let Some(first) = report.first_replay_secs.filter(|_| !dry_run) {
        let _ = write!(h, "<dt>first replay confirmed</dt><dd>after {first:.1} s</dd>");
    }
    if let Some(stopped) = &report.stopped {
        let _ = write!(
            h,
            "<dt>stopped</dt><dd class=\"stopped\" id=\"stopped\">{}</dd>",
            esc(&stopped.explain())
        );
    }
    h.push_str("</dl>");

    totals(&mut h, report, dry_run);
    let _ = write!(
        h,
        "<h2>Flow through the chain</h2><p class=\"muted\">Each bar is one module, on the scale of the messages read; \
         a message a module passes on (replay) goes to the next.\
         <span class=\"swatch\" style=\"background:{REPLAY}\"></span>replay<span class=\"swatch\" style=\"background:{SKIP}\"></span>skip\
         <span class=\"swatch\" style=\"background:{DISCARD}\"></span>discard<span class=\"swatch\" style=\"background:{FAILED}\"></span>failed</p>{}",
        charts::flow(report.counts.read, &snapshot.modules)
    );
    modules(&mut h, telemetry);
    groups(&mut h, telemetry);
    repairs(&mut h, &telemetry.repairs());
    if !dry_run {
        let _ = write!(
            h,
            "<h2>Rate over time</h2><p class=\"muted\">Messages per second: <span class=\"swatch\" style=\"background:#90a4ae\"></span>read \
             <span class=\"swatch\" style=\"background:{REPLAY}\"></span>replayed (confirmed); dashed lines mark the canary gate, pauses and stops.</p>{}",
            charts::rate(&telemetry.samples(), &telemetry.marks())
        );
    }
    if let Some(returns) = report.returns.as_ref().filter(|r| r.came_back > 0) {
        let _ = write!(
            h,
            "<h2>Came back</h2><p id=\"returns\">{} replays failed again and came back to the DLQ during the run \
             (breaker: {}{}).</p><table><tr><th>count</th><th>error</th><th>e.g.</th></tr>",
            returns.came_back,
            esc(&returns.guard),
            if returns.tripped { ", tripped" } else { "" }
        );
        for e in &returns.errors {
            let _ = write!(
                h,
                "<tr><td class=\"n\">{}</td><td>{}</td><td>{}</td></tr>",
                e.count,
                esc(&clip(&e.pattern, 200)),
                esc(&clip(&e.sample_id, 80))
            );
        }
        h.push_str("</table>");
    }
    if let Some(canary) = &report.canary {
        let _ = write!(
            h,
            "<h2>Canary</h2><p id=\"canary\">{} messages, gate {}: <b>{}</b></p><p class=\"muted\">{}</p>",
            canary.ids.len(),
            esc(&canary.gate),
            if canary.passed { "passed" } else { "failed" },
            esc(&clip(&canary.ids.join(", "), 2000))
        );
    }
    files(&mut h, report, plan_file);
    h.push_str("</body></html>\n");
    h
}

fn totals(h: &mut String, report: &RunReport, dry_run: bool) {
    let c = &report.counts;
    let _ = write!(
        h,
        "<h2>Totals</h2><table id=\"totals\"><tr><th>read</th><td class=\"n\" data-count=\"read\">{}</td><td>taken from the DLQ in this pass (the loop guard and the filters decide on these)</td></tr>",
        c.read
    );
    for row in report.outcome_rows(dry_run) {
        let _ = write!(
            h,
            "<tr><th>{}</th><td class=\"n\" data-count=\"{}\">{}</td><td>{}</td></tr>",
            esc(row.label),
            row.key,
            row.count,
            esc(&row.note)
        );
    }
    let left = if dry_run {
        c.read + c.malformed + c.out_of_window + c.not_in_plan
    } else {
        c.skipped
            + c.failed
            + c.malformed
            + c.not_done
            + c.send_failed
            + c.out_of_window
            + c.not_in_plan
            + c.plan_drift
            + c.settle_failed
    };
    let _ = write!(
        h,
        "<tr><th>left in the DLQ</th><td class=\"n\" data-count=\"left\">{left}</td><td>{}</td></tr></table>",
        if dry_run {
            "a plan changes nothing: every message is still there"
        } else {
            "of this pass (parked messages go to the park destination, or stay when there is none)"
        }
    );
}

fn modules(h: &mut String, telemetry: &Telemetry) {
    h.push_str(
        "<h2>Per module</h2><table id=\"modules\"><tr><th>module</th><th class=\"n\">replay</th><th class=\"n\">skip</th>\
         <th class=\"n\">discard</th><th class=\"n\">failed</th><th class=\"n\">calls</th><th class=\"n\">mean</th>\
         <th class=\"n\">p50 ≤</th><th class=\"n\">p99 ≤</th><th>failures by kind</th></tr>",
    );
    for module in telemetry.modules() {
        let s = module.snapshot();
        let l = &s.latency;
        let mean = if l.count == 0 { 0.0 } else { l.sum_secs / l.count as f64 };
        let bound = |q| Latency::quantile(l, q).map_or_else(|| "—".to_owned(), duration);
        let kinds: Vec<String> = s.failures.iter().map(|(k, n)| format!("{} {n}", k.as_str())).collect();
        let _ = write!(
            h,
            "<tr data-module=\"{}\"><th>{}</th><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
             <td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td>{}</td></tr>",
            esc(&s.name),
            esc(&s.name),
            s.replay,
            s.skip,
            s.discard,
            s.failed(),
            l.count,
            duration(mean),
            bound(0.5),
            bound(0.99),
            esc(&kinds.join(", "))
        );
    }
    h.push_str("</table>");
}

fn groups(h: &mut String, telemetry: &Telemetry) {
    let groups = telemetry.groups();
    if groups.is_empty() {
        return;
    }
    h.push_str(
        "<h2>Error groups</h2><p class=\"muted\">Messages whose error differs only in values (ids, numbers, quoted text), largest first.</p>\
         <table id=\"groups\"><tr><th class=\"n\">count</th><th class=\"n\">replay</th><th class=\"n\">skip</th><th class=\"n\">discard</th>\
         <th class=\"n\">failed</th><th>pattern and samples</th></tr>",
    );
    for group in groups.iter().take(GROUPS_SHOWN) {
        let v = |o: Outcome| group.verdicts.get(&o).copied().unwrap_or(0);
        let samples: Vec<String> = group
            .samples
            .iter()
            .map(|s| {
                format!(
                    "<li><code>{}</code> → {}: {}</li>",
                    esc(&clip(&s.id, 120)),
                    s.verdict,
                    esc(&clip(&s.reason, 300))
                )
            })
            .collect();
        let _ = write!(
            h,
            "<tr><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
             <td><code>{}</code><ul>{}</ul></td></tr>",
            group.count,
            v(Outcome::Replay),
            v(Outcome::Skip),
            v(Outcome::Discard),
            v(Outcome::Failed),
            esc(&clip(&group.pattern, 500)),
            samples.join("")
        );
    }
    if groups.len() > GROUPS_SHOWN {
        let rest: u64 = groups[GROUPS_SHOWN..].iter().map(|g| g.count).sum();
        let _ = write!(
            h,
            "<tr><td class=\"n\">{rest}</td><td colspan=\"5\">in {} smaller groups</td></tr>",
            groups.len() - GROUPS_SHOWN
        );
    }
    h.push_str("</table>");
}

fn repairs(h: &mut String, repairs: &[Repair]) {
    if repairs.is_empty() {
        return;
    }
    let _ = write!(
        h,
        "<h2>Repaired messages</h2><p class=\"muted\">The first {} messages a filter changed, body before and after (JSON pretty-printed; clipped).</p>",
        repairs.len()
    );
    for r in repairs {
        let _ = write!(
            h,
            "<h3><code>{}</code> <span class=\"muted\">repaired by {}</span></h3><table class=\"diff\">",
            esc(&r.id),
            esc(&r.module)
        );
        let (before, after) = (pretty(&r.before), pretty(&r.after));
        for change in TextDiff::from_lines(&before, &after).iter_all_changes() {
            let (class, sign) = match change.tag() {
                ChangeTag::Delete => ("del", "-"),
                ChangeTag::Insert => ("add", "+"),
                ChangeTag::Equal => ("", " "),
            };
            let _ = write!(
                h,
                "<tr class=\"{class}\"><td>{sign}</td><td>{}</td></tr>",
                esc(change.value().trim_end_matches('\n'))
            );
        }
        h.push_str("</table>");
    }
}

fn files(h: &mut String, report: &RunReport, plan_file: Option<&Path>) {
    h.push_str("<h2>Files</h2><dl class=\"facts\">");
    let mut row = |label: &str, value: String| {
        let _ = write!(h, "<dt>{label}</dt><dd><code>{}</code></dd>", esc(&value));
    };
    row("audit directory", report.audit_dir.display().to_string());
    for file in &report.audit_files {
        row("audit log", file.display().to_string());
    }
    if let Some(journal) = &report.journal {
        row(
            "journal",
            format!("{} (re-run the same command to resume)", journal.display()),
        );
    }
    if let Some(archive) = &report.archive {
        row("discard archive", archive.display().to_string());
    }
    if let Some(plan) = plan_file {
        row(
            "plan",
            format!("{} (replay exactly this with redrive run --plan)", plan.display()),
        );
    }
    for note in &report.source_notes {
        row("source", note.clone());
    }
    h.push_str("</dl>");
}

/// A body pretty-printed when it is JSON, so a diff shows the fields that changed.
fn pretty(body: &str) -> String {
    match serde_json::from_str::<serde_json::Value>(body) {
        Ok(value) => serde_json::to_string_pretty(&value).unwrap_or_else(|_| body.to_owned()),
        Err(_) => body.to_owned(),
    }
}

/// Seconds as µs / ms / s.
fn duration(secs: f64) -> String {
    if secs < 1e-3 {
        format!("{:.0} µs", secs * 1e6)
    } else if secs < 1.0 {
        format!("{:.1} ms", secs * 1e3)
    } else {
        format!("{secs:.2} s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_in_their_unit() {
        assert_eq!(duration(0.000_05), "50 µs");
        assert_eq!(duration(0.0123), "12.3 ms");
        assert_eq!(duration(2.0), "2.00 s");
    }

    #[test]
    fn json_bodies_are_pretty_printed_for_the_diff() {
        assert_eq!(pretty("{\"a\":1}"), "{\n  \"a\": 1\n}");
        assert_eq!(pretty("not json"), "not json");
    }
}
