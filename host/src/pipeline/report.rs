//! Counters, the progress display, and the end-of-run summary.

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

/// Live counters, shared by the stages.
#[derive(Default, Debug)]
pub struct Stats {
    /// Messages read from the source in this pass.
    pub read: AtomicU64,
    /// Forwarded and confirmed by the destination.
    pub replayed: AtomicU64,
    /// Left in the DLQ by a filter's `skip`.
    pub skipped: AtomicU64,
    /// Archived and removed from the DLQ.
    pub discarded: AtomicU64,
    /// A filter failed on them: left in the DLQ.
    pub failed: AtomicU64,
    /// Stopped by the loop guard: left in the DLQ or sent to the park destination.
    pub parked: AtomicU64,
    /// Lines or messages that could not be read: left in the DLQ.
    pub malformed: AtomicU64,
    /// Settled by an earlier run (journal): acked now without being forwarded again.
    pub resumed: AtomicU64,
    /// Decided replay or discard but not done because the run was stopping: left in the DLQ.
    pub not_done: AtomicU64,
    /// The destination refused them: left in the DLQ.
    pub send_failed: AtomicU64,
    /// Outside `--since` / `--until`: left in the DLQ.
    pub out_of_window: AtomicU64,
    /// Not in the plan given with `--plan`: left in the DLQ.
    pub not_in_plan: AtomicU64,
    /// The chain decided differently than the plan: left in the DLQ.
    pub plan_drift: AtomicU64,
    /// Settling (ack/release) failed; they are still in the DLQ and a resume acks them.
    pub settle_failed: AtomicU64,
    /// Not settled because the DLQ itself went away under the run (deleted, or lost by a broker that restarted
    /// without its data): there is no DLQ left for them to stay in.
    pub dlq_gone: AtomicU64,
}

impl Stats {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// Messages whose fate in this pass is settled, whatever it is: the progress position.
    pub fn done(&self) -> u64 {
        [
            &self.replayed,
            &self.skipped,
            &self.discarded,
            &self.failed,
            &self.parked,
            &self.malformed,
            &self.resumed,
            &self.not_done,
            &self.send_failed,
            &self.out_of_window,
            &self.not_in_plan,
            &self.plan_drift,
        ]
        .iter()
        .map(|c| Self::get(c))
        .sum()
    }

    /// A snapshot for the summary.
    pub fn snapshot(&self) -> Counts {
        let g = Self::get;
        Counts {
            read: g(&self.read),
            replayed: g(&self.replayed),
            skipped: g(&self.skipped),
            discarded: g(&self.discarded),
            failed: g(&self.failed),
            parked: g(&self.parked),
            malformed: g(&self.malformed),
            resumed: g(&self.resumed),
            not_done: g(&self.not_done),
            send_failed: g(&self.send_failed),
            out_of_window: g(&self.out_of_window),
            not_in_plan: g(&self.not_in_plan),
            plan_drift: g(&self.plan_drift),
            settle_failed: g(&self.settle_failed),
            dlq_gone: g(&self.dlq_gone),
        }
    }
}

/// Counter values at one moment. See [`Stats`] for what each means.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct Counts {
    pub read: u64,
    pub replayed: u64,
    pub skipped: u64,
    pub discarded: u64,
    pub failed: u64,
    pub parked: u64,
    pub malformed: u64,
    pub resumed: u64,
    pub not_done: u64,
    pub send_failed: u64,
    pub out_of_window: u64,
    pub not_in_plan: u64,
    pub plan_drift: u64,
    pub settle_failed: u64,
    pub dlq_gone: u64,
}

/// Shows progress while the run goes: a bar on a terminal, a log line every few seconds otherwise.
pub struct Progress {
    task: Option<tokio::task::JoinHandle<()>>,
    bar: Option<indicatif::ProgressBar>,
}

impl Progress {
    /// Start showing progress of `stats` towards `total` messages (when known).
    pub fn start(stats: Arc<Stats>, total: crate::core::adapter::PassSize, label: &'static str, enabled: bool) -> Self {
        if !enabled {
            return Self { task: None, bar: None };
        }
        let started = Instant::now();
        if std::io::stderr().is_terminal() {
            let bar = indicatif::ProgressBar::no_length();
            let style =
                indicatif::ProgressStyle::with_template("{spinner} {prefix} [{bar:30}] {pos}/{len} eta {eta}  {msg}")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                    .progress_chars("=> ");
            bar.set_style(style);
            bar.set_prefix(label);
            let b = bar.clone();
            let task = tokio::spawn(async move {
                loop {
                    if b.length().is_none()
                        && let Some(n) = total.get()
                    {
                        b.set_length(*n);
                    }
                    let c = stats.snapshot();
                    let done = stats.done();
                    b.set_position(done);
                    b.set_message(format!(
                        "{:.0} msg/s · replay {} · skip {} · discard {} · failed {} · parked {}",
                        done as f64 / started.elapsed().as_secs_f64().max(1e-3),
                        c.replayed,
                        c.skipped,
                        c.discarded,
                        c.failed,
                        c.parked
                    ));
                    tokio::time::sleep(Duration::from_millis(150)).await;
                }
            });
            return Self {
                task: Some(task),
                bar: Some(bar),
            };
        }
        let task = tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(5)).await;
                let c = stats.snapshot();
                let secs = started.elapsed().as_secs_f64().max(1e-3);
                eprintln!(
                    "{label}: {} read{} · replay {} · skip {} · discard {} · failed {} · parked {} · {:.0} msg/s",
                    c.read,
                    total.get().map(|t| format!(" of {t}")).unwrap_or_default(),
                    c.replayed,
                    c.skipped,
                    c.discarded,
                    c.failed,
                    c.parked,
                    stats.done() as f64 / secs
                );
            }
        });
        Self {
            task: Some(task),
            bar: None,
        }
    }

    /// A handle to hide the bar while something else talks to the terminal.
    pub fn pauser(&self) -> Pauser {
        Pauser(self.bar.clone())
    }

    /// Stop showing progress.
    pub fn finish(self) {
        if let Some(task) = self.task {
            task.abort();
        }
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
    }
}

/// Hides and shows the progress bar (around a gate command's output or a prompt).
#[derive(Clone, Default)]
pub struct Pauser(Option<indicatif::ProgressBar>);

impl Pauser {
    /// Hide the bar.
    pub fn pause(&self) {
        if let Some(bar) = &self.0 {
            bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
        }
    }

    /// Show it again.
    pub fn resume(&self) {
        if let Some(bar) = &self.0 {
            bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
        }
    }
}
