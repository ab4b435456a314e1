//! What a run shows while it goes, beyond the outcome counters of [`Stats`]: each module's verdicts,
//! failures and call times, the forwarder's window and rate limit, the canary's phase, pause, the rate over
//! time and the latest decisions. The stages write it; the metrics endpoint, the reports and the live page
//! (`crate::observe`) only read it, and pause / resume / stop reach the run through [`RunControl`].

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Instant;

use serde::Serialize;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::body_budget::BodyBudget;
use super::groups::{ErrorGroup, ErrorGroups};
pub use super::module_stats::{LATENCY_BOUNDS, Latency, LatencySnapshot, ModuleSnapshot, ModuleTelemetry};
use super::report::{Counts, Stats};
use crate::core::adapter::PassSize;
use crate::core::envelope::{Envelope, Outcome};
use crate::core::text::clip;
use crate::filter::ChainOutcome;

/// How many recent decisions are kept for the live page.
const RECENT: usize = 50;
/// How many repaired messages are kept (before and after) for the report.
const REPAIRS: usize = 10;
/// How much of a body a repair sample keeps, in characters.
const REPAIR_CLIP: usize = 4096;
/// Most rate samples kept; past it, every other one is dropped (a long run keeps its whole shape).
const MAX_SAMPLES: usize = 2048;

/// Where the canary stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CanaryPhase {
    /// No canary in this run.
    Off,
    /// The first replays are going out.
    Running,
    /// The canary is out; the gate is checking it.
    Verifying,
    /// The gate passed: the rest of the pass goes.
    Passed,
    /// The gate said no: the run stopped.
    Failed,
}

impl CanaryPhase {
    /// Every phase, for metrics (one series per phase, 1 for the current one).
    pub const ALL: [CanaryPhase; 5] = [
        CanaryPhase::Off,
        CanaryPhase::Running,
        CanaryPhase::Verifying,
        CanaryPhase::Passed,
        CanaryPhase::Failed,
    ];

    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            CanaryPhase::Off => "off",
            CanaryPhase::Running => "running",
            CanaryPhase::Verifying => "verifying",
            CanaryPhase::Passed => "passed",
            CanaryPhase::Failed => "failed",
        }
    }
}

/// Something that happened at one moment of a run, drawn on its rate chart.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MarkKind {
    /// The canary was out and the gate started checking it.
    GateStarted,
    /// The gate passed.
    GatePassed,
    /// The gate said no.
    GateFailed,
    /// Forwarding was paused (live page).
    Paused,
    /// Forwarding resumed.
    Resumed,
    /// The run was told to stop.
    Stopping,
}

/// A [`MarkKind`] at `secs` since the run started.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Mark {
    /// Seconds since the start.
    pub secs: f64,
    /// What happened.
    pub kind: MarkKind,
}

/// The counters at one moment, for the rate chart.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Sample {
    /// Seconds since the start.
    pub secs: f64,
    /// Read from the source so far.
    pub read: u64,
    /// Confirmed by the destination so far.
    pub replayed: u64,
}

/// One decision, as the live page lists it.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct RecentDecision {
    /// Seconds since the start.
    pub secs: f64,
    /// The message id (clipped to 120 characters).
    pub id: String,
    /// The chain's outcome.
    pub outcome: Outcome,
    /// The module that settled it (`None` with `--no-filter`).
    pub module: Option<String>,
    /// Its reason (clipped to 200 characters).
    pub reason: String,
}

/// A message a filter repaired: its body before and after (clipped), for the report's diff.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Repair {
    /// The message id.
    pub id: String,
    /// The first module that changed the body.
    pub module: String,
    /// The body as read (lossy UTF-8, clipped).
    pub before: String,
    /// The body as forwarded (lossy UTF-8, clipped).
    pub after: String,
}

/// Everything a run shows while it goes. Cheap to write from every stage (atomics; short locks for the
/// rare parts).
#[derive(Debug)]
pub struct Telemetry {
    /// The outcome counters.
    pub stats: Arc<Stats>,
    modules: Vec<ModuleTelemetry>,
    pass: OnceLock<PassSize>,
    started: Instant,
    in_flight: AtomicU64,
    /// The run's message memory, once the pipeline made it.
    message_memory: OnceLock<BodyBudget>,
    rate_limit: Mutex<Option<f64>>,
    canary: Mutex<CanaryPhase>,
    paused: watch::Sender<bool>,
    samples: Mutex<Vec<Sample>>,
    marks: Mutex<Vec<Mark>>,
    recent: Mutex<VecDeque<RecentDecision>>,
    groups: Mutex<ErrorGroups>,
    repairs: Mutex<Vec<Repair>>,
    /// Keep error groups, repairs and the latest decisions (for a report or the live page); counting alone
    /// costs less per message.
    details: bool,
}

/// A whole [`Telemetry`] read at one moment (what `/metrics`, the live page and the report show).
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Snapshot {
    /// Seconds since the start.
    pub secs: f64,
    /// The outcome counters.
    pub counts: Counts,
    /// Messages settled in this pass, whatever their fate.
    pub done: u64,
    /// The pass's size, once known.
    pub pass_size: Option<u64>,
    /// Per module, in chain order.
    pub modules: Vec<ModuleSnapshot>,
    /// Sent and not yet confirmed.
    pub in_flight: u64,
    /// Bytes of the messages held now (read, and not yet sent, archived or skipped).
    pub message_bytes: u64,
    /// What they may take at most (`--message-memory`); 0 before the pipeline started.
    pub message_memory: u64,
    /// The forwarding rate limit now (messages per second), if there is one.
    pub rate_limit: Option<f64>,
    /// Where the canary stands.
    pub canary: CanaryPhase,
    /// Whether forwarding is paused.
    pub paused: bool,
    /// Broker operations retried after an error, all brokers.
    pub retries: u64,
}

impl Snapshot {
    /// Messages of the pass not settled yet, once the pass's size is known.
    pub fn remaining(&self) -> Option<u64> {
        self.pass_size.map(|total| total.saturating_sub(self.done))
    }
}

impl Telemetry {
    /// Telemetry for a run of the chain `modules` (names, in order), counting only.
    pub fn new<'a>(modules: impl IntoIterator<Item = &'a str>) -> Arc<Self> {
        Self::build(modules, false)
    }

    /// Telemetry that also keeps error groups, repaired bodies and the latest decisions.
    pub fn detailed<'a>(modules: impl IntoIterator<Item = &'a str>) -> Arc<Self> {
        Self::build(modules, true)
    }

    fn build<'a>(modules: impl IntoIterator<Item = &'a str>, details: bool) -> Arc<Self> {
        let (paused, _) = watch::channel(false);
        Arc::new(Telemetry {
            stats: Arc::new(Stats::default()),
            modules: modules.into_iter().map(ModuleTelemetry::new).collect(),
            pass: OnceLock::new(),
            started: Instant::now(),
            in_flight: AtomicU64::new(0),
            message_memory: OnceLock::new(),
            rate_limit: Mutex::new(None),
            canary: Mutex::new(CanaryPhase::Off),
            paused,
            samples: Mutex::new(Vec::new()),
            marks: Mutex::new(Vec::new()),
            recent: Mutex::new(VecDeque::with_capacity(RECENT)),
            groups: Mutex::new(ErrorGroups::default()),
            repairs: Mutex::new(Vec::new()),
            details,
        })
    }

    /// Seconds since the run started.
    pub fn secs(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// The pass's size (set once, when the source is open).
    pub(super) fn set_pass(&self, pass: PassSize) {
        let _ = self.pass.set(pass);
    }

    /// Count one message's decision (the router does, one message at a time): every module's verdict or
    /// failure and call time, its error group, the latest decisions, and a sample of repairs.
    pub(super) fn decided(&self, env: &Envelope, outcome: &ChainOutcome) {
        let id = env.id.as_str();
        for (i, record) in outcome.records.iter().enumerate() {
            let module = match self.modules.get(i) {
                Some(m) if m.name == record.module => m,
                _ => match self.modules.iter().find(|m| m.name == record.module) {
                    Some(m) => m,
                    None => continue,
                },
            };
            module.record(record);
        }
        if !self.details {
            return;
        }
        let mut recent = self.recent.lock().unwrap_or_else(PoisonError::into_inner);
        if recent.len() == RECENT {
            recent.pop_front();
        }
        recent.push_back(RecentDecision {
            secs: self.secs(),
            id: clip(id, 120),
            outcome: outcome.outcome,
            module: outcome.decided_by.clone(),
            reason: clip(&outcome.reason, 200),
        });
        drop(recent);
        self.groups
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .add(env, outcome);
        if let Some(after) = &outcome.body {
            let mut repairs = self.repairs.lock().unwrap_or_else(PoisonError::into_inner);
            // Only a module changes a body, so there is always one to name (looked up once the repair is kept).
            if repairs.len() < REPAIRS
                && *after != env.body
                && let Some(module) = outcome
                    .records
                    .iter()
                    .find(|r| r.body_sha256_out.is_some())
                    .map(|r| r.module.clone())
                    .or_else(|| outcome.decided_by.clone())
            {
                repairs.push(Repair {
                    id: clip(id, 120),
                    module,
                    before: clip(&String::from_utf8_lossy(&env.body), REPAIR_CLIP),
                    after: clip(&String::from_utf8_lossy(after), REPAIR_CLIP),
                });
            }
        }
    }

    /// Messages sent and not yet confirmed, now.
    pub(super) fn set_in_flight(&self, n: usize) {
        self.in_flight.store(n as u64, Ordering::Relaxed);
    }

    /// Show how much of the run's message memory is held.
    pub(super) fn watch_message_memory(&self, budget: BodyBudget) {
        let _ = self.message_memory.set(budget);
    }

    /// The forwarding rate limit, now.
    pub(super) fn set_rate_limit(&self, rate: Option<f64>) {
        *self.rate_limit.lock().unwrap_or_else(PoisonError::into_inner) = rate;
    }

    /// The canary moved on; gate phases are marked on the rate chart.
    pub(super) fn set_canary(&self, phase: CanaryPhase) {
        *self.canary.lock().unwrap_or_else(PoisonError::into_inner) = phase;
        let mark = match phase {
            CanaryPhase::Verifying => Some(MarkKind::GateStarted),
            CanaryPhase::Passed => Some(MarkKind::GatePassed),
            CanaryPhase::Failed => Some(MarkKind::GateFailed),
            CanaryPhase::Off | CanaryPhase::Running => None,
        };
        if let Some(kind) = mark {
            self.mark(kind);
        }
    }

    /// Note something on the rate chart.
    pub(super) fn mark(&self, kind: MarkKind) {
        let secs = self.secs();
        self.marks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Mark { secs, kind });
    }

    /// Take a rate sample (the run does, every second).
    pub(super) fn sample(&self) {
        let sample = Sample {
            secs: self.secs(),
            read: self.stats.read.load(Ordering::Relaxed),
            replayed: self.stats.replayed.load(Ordering::Relaxed),
        };
        let mut samples = self.samples.lock().unwrap_or_else(PoisonError::into_inner);
        if samples.len() >= MAX_SAMPLES {
            let mut keep = false;
            samples.retain(|_| {
                keep = !keep;
                keep
            });
        }
        samples.push(sample);
    }

    /// Whether forwarding is paused, and its changes.
    pub(super) fn pause_watch(&self) -> watch::Receiver<bool> {
        self.paused.subscribe()
    }

    /// Everything now.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            secs: self.secs(),
            counts: self.stats.snapshot(),
            done: self.stats.done(),
            pass_size: self.pass.get().and_then(|p| p.get().copied()),
            modules: self.modules.iter().map(ModuleTelemetry::snapshot).collect(),
            in_flight: self.in_flight.load(Ordering::Relaxed),
            message_bytes: self.message_memory.get().map_or(0, BodyBudget::held),
            message_memory: self.message_memory.get().map_or(0, BodyBudget::limit),
            rate_limit: *self.rate_limit.lock().unwrap_or_else(PoisonError::into_inner),
            canary: *self.canary.lock().unwrap_or_else(PoisonError::into_inner),
            paused: *self.paused.borrow(),
            retries: crate::core::backoff::retries(),
        }
    }

    /// The module call time histograms, in chain order (for quantiles).
    pub fn modules(&self) -> &[ModuleTelemetry] {
        &self.modules
    }

    /// The rate samples so far.
    pub fn samples(&self) -> Vec<Sample> {
        self.samples.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Confirmed replays per second between the last two samples (0 before there are two).
    pub fn replay_rate(&self) -> f64 {
        let samples = self.samples.lock().unwrap_or_else(PoisonError::into_inner);
        match samples.as_slice() {
            [.., a, b] if b.secs > a.secs => b.replayed.saturating_sub(a.replayed) as f64 / (b.secs - a.secs),
            _ => 0.0,
        }
    }

    /// The chart marks so far.
    pub fn marks(&self) -> Vec<Mark> {
        self.marks.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// The error groups so far, largest first.
    pub fn groups(&self) -> Vec<ErrorGroup> {
        self.groups
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .sorted()
            .into_iter()
            .cloned()
            .collect()
    }

    /// Repaired messages (the first few), before and after.
    pub fn repairs(&self) -> Vec<Repair> {
        self.repairs.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// The latest decisions, oldest first.
    pub fn recent(&self) -> Vec<RecentDecision> {
        self.recent
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .cloned()
            .collect()
    }
}

/// Pause, resume and stop a run from outside the pipeline (the live page). Stop is the graceful kill
/// switch: the same as a first Ctrl-C.
#[derive(Clone, Debug)]
pub struct RunControl {
    telemetry: Arc<Telemetry>,
    interrupt: CancellationToken,
}

impl RunControl {
    /// Control the run that writes `telemetry` and stops on `interrupt`.
    pub fn new(telemetry: Arc<Telemetry>, interrupt: CancellationToken) -> Self {
        RunControl { telemetry, interrupt }
    }

    /// Hold the forwarder before its next batch (nothing is read past what it already holds).
    pub fn pause(&self) {
        if !self.telemetry.paused.send_replace(true) {
            self.telemetry.mark(MarkKind::Paused);
        }
    }

    /// Let the forwarder go on.
    pub fn resume(&self) {
        if self.telemetry.paused.send_replace(false) {
            self.telemetry.mark(MarkKind::Resumed);
        }
    }

    /// Whether the run was told to stop (by anyone: the page, Ctrl-C, SIGTERM).
    pub fn stopping(&self) -> bool {
        self.interrupt.is_cancelled()
    }

    /// Stop the run gracefully: no new messages, in-flight confirms finish, the rest stays in the DLQ.
    pub fn stop(&self) {
        if !self.interrupt.is_cancelled() {
            self.telemetry.mark(MarkKind::Stopping);
            self.telemetry.paused.send_replace(false);
            self.interrupt.cancel();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pause_resume_and_stop_are_marked_once_each() {
        let t = Telemetry::new(["a"]);
        let stop = CancellationToken::new();
        let control = RunControl::new(t.clone(), stop.clone());
        let watch = t.pause_watch();
        control.pause();
        control.pause();
        assert!(*watch.borrow());
        control.resume();
        control.stop();
        control.stop();
        assert!(stop.is_cancelled());
        let kinds: Vec<MarkKind> = t.marks().iter().map(|m| m.kind).collect();
        assert_eq!(kinds, vec![MarkKind::Paused, MarkKind::Resumed, MarkKind::Stopping]);
    }

    #[test]
    fn samples_thin_out_instead_of_growing_without_end() {
        let t = Telemetry::new([]);
        for _ in 0..MAX_SAMPLES + 10 {
            t.sample();
        }
        assert!(t.samples().len() <= MAX_SAMPLES / 2 + 11);
    }
}
