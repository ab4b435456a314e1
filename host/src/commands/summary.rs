//! The end-of-run summary: counts per outcome with what each means, the canary, where the audit and the
//! journal are, what is left in the DLQ; as a table for people or one JSON object; and the exit code.

use std::path::Path;
use std::time::Duration;

use anyhow::Result;

use super::clip;
use super::exit;
use crate::cli::OutputFormat;
use crate::pipeline::{RunReport, StopReason};

/// The exit code of a run or plan: how it stopped, and whether messages were refused.
pub(super) fn exit_code(report: &RunReport) -> u8 {
    match &report.stopped {
        Some(StopReason::Interrupted) => exit::INTERRUPTED,
        Some(StopReason::GateFailed(_)) => exit::GATE_FAILED,
        Some(StopReason::ModuleDisabled(_)) => exit::MODULE_DISABLED,
        Some(StopReason::Returning(_)) => exit::RETURNING,
        Some(StopReason::Error(_)) => exit::PROBLEMS,
        None if report.counts.send_failed > 0 || report.counts.settle_failed > 0 => exit::PROBLEMS,
        None => exit::OK,
    }
}

/// Print the summary, in `output`'s form.
pub(super) fn print_summary(report: &RunReport, output: OutputFormat, dry_run: bool) -> Result<()> {
    if output == OutputFormat::Json {
        out!("{}", serde_json::to_string(report)?);
        return Ok(());
    }
    let c = &report.counts;
    out!(
        "\nredrive {}  {} → {}   {:.1}s",
        if dry_run { "plan" } else { "run" },
        report.source,
        report
            .destination
            .as_deref()
            .unwrap_or("(dry run: nothing forwarded, nothing removed)"),
        report.elapsed_secs
    );
    let row = |label: &str, n: u64, note: String| out!("  {label:<14}{n:>8}   {note}");
    for r in report.outcome_rows(dry_run) {
        row(r.label, r.count, r.note);
    }
    if let Some(canary) = &report.canary {
        row(
            "canary",
            canary.ids.len() as u64,
            format!(
                "gate {}: {}",
                canary.gate,
                if canary.passed { "passed" } else { "FAILED" }
            ),
        );
    }
    if let Some(stopped) = &report.stopped {
        out!("  stopped       {}", stopped.explain());
    }
    print_returns(report);
    let files: Vec<String> = report
        .audit_files
        .iter()
        .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect();
    out!("  audit         {} ({})", show(&report.audit_dir), files.join(", "));
    if let Some(journal) = &report.journal {
        out!("  journal       {} (re-run the same command to resume)", show(journal));
    }
    for note in &report.source_notes {
        out!("  source        {note}");
    }
    if let Some(first) = report.first_replay_secs
        && !dry_run
    {
        let secs = report.elapsed_secs.max(1e-3);
        out!(
            "  throughput    {:.0} msg/s; first replay confirmed after {}",
            (c.replayed + c.skipped + c.discarded + c.failed + c.parked) as f64 / secs,
            humantime::format_duration(Duration::from_millis((first * 1000.0) as u64))
        );
    }
    Ok(())
}

/// What the re-poison breaker saw: the replays that came back and their errors.
fn print_returns(report: &RunReport) {
    use crate::pipeline::breaker::Watch;
    let Some(returns) = &report.returns else { return };
    match &returns.watched {
        Watch::Unavailable(why) => out!("  came back     not watched: {why}"),
        Watch::Watched if returns.came_back == 0 => {}
        Watch::Watched => {
            out!(
                "  came back{:>8}   replayed, failed again and back in the DLQ (breaker: {})",
                returns.came_back,
                returns.guard
            );
            for e in returns.errors.iter().take(5) {
                out!(
                    "  {:>14}{:>8}   {} (e.g. {})",
                    "",
                    e.count,
                    clip(&e.pattern, 60),
                    e.sample_id
                );
            }
        }
    }
}

/// Print a plan's error groups, largest first.
pub(super) fn print_groups(collector: &crate::pipeline::plan::PlanCollector) {
    use crate::core::envelope::Outcome;
    let groups = collector.groups();
    if groups.is_empty() {
        return;
    }
    out!("\nerror groups (values replaced by placeholders), largest first:");
    out!(
        "  {:>6}  {:>6} {:>6} {:>7} {:>6}  pattern",
        "count",
        "replay",
        "skip",
        "discard",
        "failed"
    );
    for group in groups.iter().take(15) {
        let v = |o: Outcome| group.verdicts.get(&o).copied().unwrap_or(0);
        out!(
            "  {:>6}  {:>6} {:>6} {:>7} {:>6}  {}",
            group.count,
            v(Outcome::Replay),
            v(Outcome::Skip),
            v(Outcome::Discard),
            v(Outcome::Failed),
            clip(&group.pattern, 70)
        );
        for sample in &group.samples {
            out!(
                "  {:>31}  e.g. {} → {}: {}",
                "",
                sample.id,
                sample.verdict,
                clip(&sample.reason, 60)
            );
        }
    }
    if groups.len() > 15 {
        out!("  … {} more groups in the plan file", groups.len() - 15);
    }
}

fn show(path: &Path) -> String {
    path.display().to_string()
}
