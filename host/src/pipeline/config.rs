//! What a run is told (its configuration) and what it tells back (its report).

use std::path::PathBuf;
use std::time::Instant;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::breaker::{ReturnGuard, ReturnsReport};
use super::gate::Gate;
use super::plan::{PlanCollector, PlanSelection, PlannedModule};
use super::rate::RatePlan;
use super::report::Counts;
use crate::core::{Destination, Endpoint};
use crate::filter::{EngineSettings, ModuleSpec};

/// Everything a run needs to know. Broker-specific settings (AWS, `--where`) are not here: they go to the
/// broker when `commands` opens it.
#[derive(Clone, Debug)]
pub struct RunConfig {
    /// The source.
    pub from: Endpoint,
    /// The destination; `None` for a dry run.
    pub to: Option<Destination>,
    /// The filter chain.
    pub filters: Vec<ModuleSpec>,
    /// Threads running filters.
    pub workers: usize,
    /// Forwarding rate; `None` for as fast as the destination confirms.
    pub rate: Option<RatePlan>,
    /// Replays in the canary batch (0: no canary).
    pub canary: u64,
    /// What decides whether to go on after the canary.
    pub gate: Gate,
    /// Where the gate command runs.
    pub workdir: PathBuf,
    /// Take at most this many messages from the source.
    pub max: Option<u64>,
    /// Only messages whose (last) failure is at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Only messages whose (last) failure is before this time.
    pub until: Option<DateTime<Utc>>,
    /// Loop guard: messages replayed this many times already are parked.
    pub max_replays: Option<u32>,
    /// The re-poison breaker: stop when too many replays come back to the DLQ; `None`: off.
    pub returning: Option<ReturnGuard>,
    /// Where parked messages go; `None` leaves them in the DLQ.
    pub park: Option<Destination>,
    /// `--max-in-flight`: most messages sent and not yet confirmed at any time: what a crash can repeat, at
    /// most, on a destination that cannot be read back. `None`: chosen by the destination
    /// ([`crate::core::adapter::Redelivery::default_in_flight`]).
    pub max_in_flight: Option<usize>,
    /// Most bytes the messages read and not yet sent, archived or skipped may take together.
    pub message_memory: u64,
    /// Per-module audit logs and the run journal.
    pub audit_dir: PathBuf,
    /// The discard archive.
    pub archive: PathBuf,
    /// For file sources: where to write what is still in the DLQ (checked against the other files).
    pub remainder: Option<PathBuf>,
    /// Decide everything, change nothing.
    pub dry_run: bool,
    /// Forward in source order (default) or as filters finish.
    pub preserve_order: bool,
    /// Restrict the run to a plan's selection.
    pub plan: Option<PlanSelection>,
    /// Compiled-module cache, compile limits, module size limit.
    pub engine: EngineSettings,
    /// Show progress on stderr.
    pub progress: bool,
    /// When the command started: elapsed time and time to the first replay count from here.
    pub started: Instant,
}

/// Why a run stopped before the end of the pass.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "detail", rename_all = "snake_case")]
pub enum StopReason {
    /// Ctrl-C or SIGTERM.
    Interrupted,
    /// The canary gate said no.
    GateFailed(String),
    /// A module failed too many messages in a row.
    ModuleDisabled(String),
    /// The re-poison breaker: too many of the run's replays came back to the DLQ.
    Returning(String),
    /// A stage hit an error it cannot work around (archive or journal not writable, source unreadable).
    Error(String),
}

impl StopReason {
    /// Why the run stopped and what that left, in words: the summary's and the report's "stopped" line.
    pub fn explain(&self) -> String {
        match self {
            StopReason::Interrupted => {
                "interrupted: in-flight confirms finished, the rest is still in the DLQ".to_owned()
            }
            StopReason::GateFailed(why) => format!("after the canary: {why}; nothing more was forwarded"),
            StopReason::ModuleDisabled(why) => why.clone(),
            StopReason::Returning(why) => {
                format!("{why}; nothing more was forwarded, the rest is still in the DLQ")
            }
            StopReason::Error(why) => format!("error: {why}"),
        }
    }
}

/// The outcome of a run, for the summary.
#[derive(Debug, Serialize)]
pub struct RunReport {
    /// Source identity.
    pub source: String,
    /// Destination, when not a dry run.
    pub destination: Option<String>,
    /// The filter chain that ran.
    pub modules: Vec<PlannedModule>,
    /// Counters.
    pub counts: Counts,
    /// Why it stopped early, if it did.
    pub stopped: Option<StopReason>,
    /// The canary: ids replayed in it and whether the gate passed.
    pub canary: Option<CanaryReport>,
    /// Seconds from start to end.
    pub elapsed_secs: f64,
    /// Seconds from start to the first confirmed replay.
    pub first_replay_secs: Option<f64>,
    /// Audit directory.
    pub audit_dir: PathBuf,
    /// Per-module audit files.
    pub audit_files: Vec<PathBuf>,
    /// The run journal, when one was written.
    pub journal: Option<PathBuf>,
    /// The discard archive, when anything was discarded.
    pub archive: Option<PathBuf>,
    /// What the re-poison breaker saw; `None` when it was off (or a dry run).
    pub returns: Option<ReturnsReport>,
    /// Lines from the source about what is left (remainder file, ...).
    pub source_notes: Vec<String>,
    /// What the dry run decided, for plans.
    #[serde(skip)]
    pub plan: Option<PlanCollector>,
}

/// What happened at the canary gate.
#[derive(Debug, Clone, Serialize)]
pub struct CanaryReport {
    /// Message ids replayed in the canary batch.
    pub ids: Vec<String>,
    /// The gate, as text.
    pub gate: String,
    /// Whether the run went on.
    pub passed: bool,
}
