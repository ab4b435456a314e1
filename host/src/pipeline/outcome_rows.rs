//! A run's counts as rows a person reads: each outcome with what it means for the message (forwarded and
//! removed, left in the DLQ, archived, ...). The terminal summary and the HTML report both show these rows,
//! so they always say the same.

use super::config::RunReport;

/// One outcome's row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutcomeRow {
    /// The counter's name in `--output json` (`replayed`, `not_done`, ...).
    pub key: &'static str,
    /// What the row is called.
    pub label: &'static str,
    /// How many messages.
    pub count: u64,
    /// What happened to them.
    pub note: String,
    /// Shown even when zero (the four verdicts); the others only when they happened.
    pub always: bool,
}

impl RunReport {
    /// The outcome rows of this run (or plan, when `dry_run`), in the summary's order.
    pub fn outcome_rows(&self, dry_run: bool) -> Vec<OutcomeRow> {
        let c = &self.counts;
        let archive = self
            .archive
            .as_deref()
            .map_or_else(|| "the discard archive".to_owned(), |p| p.display().to_string());
        let row = |key, label, count, note: &str, always| OutcomeRow {
            key,
            label,
            count,
            note: note.to_owned(),
            always,
        };
        let (replayed, replay_note, discarded, discard_note) = if dry_run {
            (
                "would replay",
                "the chain said replay".to_owned(),
                "would discard",
                "the chain said discard".to_owned(),
            )
        } else {
            (
                "replayed",
                "confirmed by the destination, removed from the DLQ".to_owned(),
                "discarded",
                format!("archived to {archive}, removed from the DLQ"),
            )
        };
        let mut rows = vec![
            row("replayed", replayed, c.replayed, &replay_note, true),
            row(
                "skipped",
                "skipped",
                c.skipped,
                "left in the DLQ (a filter said skip)",
                true,
            ),
            row("discarded", discarded, c.discarded, &discard_note, true),
        ];
        rows.extend([
            row(
                "failed",
                "failed",
                c.failed,
                "left in the DLQ (a filter failed: see the audit log)",
                true,
            ),
            row(
                "parked",
                "parked",
                c.parked,
                "loop guard: already replayed --max-replays times",
                false,
            ),
            row(
                "malformed",
                "malformed",
                c.malformed,
                "left in the DLQ (could not be read)",
                false,
            ),
            row(
                "resumed",
                "resumed",
                c.resumed,
                "settled by an earlier run (journal): acked, not forwarded again",
                false,
            ),
            row(
                "not_done",
                "not done",
                c.not_done,
                "left in the DLQ because the run stopped",
                false,
            ),
            row(
                "send_failed",
                "send failed",
                c.send_failed,
                "refused by the destination: left in the DLQ",
                false,
            ),
            row(
                "out_of_window",
                "out of window",
                c.out_of_window,
                "failed outside --since/--until: left in the DLQ",
                false,
            ),
            row("not_in_plan", "not in plan", c.not_in_plan, "left in the DLQ", false),
            row(
                "plan_drift",
                "plan drift",
                c.plan_drift,
                "decided differently than the plan: left in the DLQ",
                false,
            ),
            row(
                "settle_failed",
                "settle failed",
                c.settle_failed,
                "ack/release failed: still in the DLQ; a resumed run acks them",
                false,
            ),
            row(
                "dlq_gone",
                "DLQ gone",
                c.dlq_gone,
                "not settled: the DLQ went away under the run (the replayed ones are at the destination)",
                false,
            ),
        ]);
        rows.retain(|r| r.always || r.count > 0);
        rows
    }
}
