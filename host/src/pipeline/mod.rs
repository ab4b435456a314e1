//! The run loop: source → filter chain → router → rate-limited forwarder → sink → ack.
//!
//! Every stage is a task joined to the next by a bounded channel, so memory stays flat whatever the DLQ's
//! size. Filters run on worker threads (wasm is CPU work). The router restores the source's order before
//! forwarding unless reordering is allowed. A message leaves the DLQ only after its fate is durable
//! elsewhere: confirmed by the destination, or written to the discard archive, and recorded in the journal.

mod gate;
mod journal;
mod rate;
mod report;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

pub use gate::Gate;
pub use journal::{Event, Journal, PastState, journal_key, occurrence_key, replay_id};
pub use rate::{Pacer, Rate, RatePlan};
pub use report::{Counts, Progress, Stats};

use crate::audit::{AuditLog, DiscardArchive, Discarded, archive_key};
use crate::core::{Destination, Endpoint, FileIdentity};
use crate::filter::{ChainOutcome, ChainRunner, EngineSettings, FilterChain, ModuleDisabled, ModuleSpec};
use crate::message::{Envelope, Outcome, REPLAY_COUNT_ATTRIBUTE, REPLAY_ID_ATTRIBUTE, id_digest};
use crate::plan::{PlanCollector, PlanSelection, PlannedModule};
use crate::sink::{Redelivery, Sink, open_sink};
use crate::source::{AckToken, Acker, Delivery, Received, Source, SourceMode, SourceOptions, open_source};

/// Everything a run needs to know.
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
    /// Where parked messages go; `None` leaves them in the DLQ.
    pub park: Option<Destination>,
    /// Most messages sent and not yet confirmed at any time: what a crash can repeat, at most, on a
    /// destination that cannot be read back.
    pub max_in_flight: usize,
    /// Per-module audit logs and the run journal.
    pub audit_dir: PathBuf,
    /// The discard archive.
    pub archive: PathBuf,
    /// For file sources: where to write what is still in the DLQ.
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
    /// AWS profile, region and endpoint for SQS sources and destinations.
    pub aws: crate::sqs::AwsSettings,
    /// Database sources: the operator's row predicate (`--where`).
    pub where_clause: Option<String>,
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
    /// A stage hit an error it cannot work around (archive or journal not writable, source unreadable).
    Error(String),
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

/// One message travelling through the stages, with its [`journal_key`] (computed once, by the reader).
struct Work {
    seq: u64,
    key: String,
    delivery: Delivery,
    /// An earlier run was sending it when it ended: it may already be at the destination.
    in_doubt: bool,
}

struct Decided {
    seq: u64,
    key: String,
    delivery: Delivery,
    in_doubt: bool,
    result: Result<ChainOutcome, ModuleDisabled>,
    /// The decision's audit records could not be written: the message must stay in the DLQ.
    audit_failed: Option<String>,
}

/// A message on its way to the destination: the token to ack it with, and the message as forwarded
/// (same id as in the DLQ).
struct Replay {
    token: AckToken,
    /// The message's [`journal_key`] (taken before the replay count went up).
    key: String,
    outgoing: Envelope,
    /// An earlier run was sending it when it ended.
    in_doubt: bool,
}

struct Discard {
    delivery: Delivery,
    key: String,
    reason: String,
    module: String,
}

/// How a message is settled with its source, with the journal key to record it under (`None`: nothing to
/// journal, e.g. a message an earlier run already recorded as acked).
enum Settle {
    Ack(AckToken, Option<String>),
    Release(AckToken, Option<String>),
}

/// Whether destructive steps (discard, park) may go ahead: only once the canary gate passed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum GateState {
    Pending,
    Open,
    Closed,
}

/// Hold items from `rx` until the gate is decided; `true` when it opened.
async fn hold_until_gate<T>(
    gate: &mut tokio::sync::watch::Receiver<GateState>,
    rx: &mut mpsc::Receiver<T>,
    held: &mut Vec<T>,
) -> bool {
    loop {
        if *gate.borrow() != GateState::Pending {
            return *gate.borrow() == GateState::Open;
        }
        tokio::select! {
            changed = gate.changed() => if changed.is_err() { return false },
            item = rx.recv() => match item {
                Some(item) => held.push(item),
                None => {
                    let _ = gate.wait_for(|s| *s != GateState::Pending).await;
                    return *gate.borrow() == GateState::Open;
                }
            },
        }
    }
}

/// State shared by the stages.
struct Shared {
    config: RunConfig,
    source_identity: String,
    stats: Arc<Stats>,
    stop: CancellationToken,
    stop_reason: Mutex<Option<StopReason>>,
    journal: Option<Journal>,
    started: Instant,
    first_replay: Mutex<Option<Duration>>,
}

impl Shared {
    fn stop_with(&self, reason: StopReason) {
        let mut slot = self.stop_reason.lock().unwrap_or_else(PoisonError::into_inner);
        if slot.is_none() {
            *slot = Some(reason);
        }
        self.stop.cancel();
    }

    fn journal(&self, event: Event, ids: &[&str]) -> Result<()> {
        match &self.journal {
            Some(j) => j.record(event, ids.iter().copied()),
            None => Ok(()),
        }
    }

    fn sync_journal(&self) -> Result<()> {
        self.journal.as_ref().map_or(Ok(()), Journal::sync)
    }
}

/// How long a stage waits for more items to fill a batch that costs an fsync.
const BATCH_LINGER: Duration = Duration::from_millis(5);

/// Fill `batch` up to `max` items from `rx`: what is already queued, then what arrives within `linger`.
async fn recv_batch<T>(rx: &mut mpsc::Receiver<T>, mut batch: Vec<T>, max: usize, linger: Duration) -> Vec<T> {
    let deadline = tokio::time::Instant::now() + linger;
    while batch.len() < max {
        match rx.try_recv() {
            Ok(item) => batch.push(item),
            Err(mpsc::error::TryRecvError::Disconnected) => break,
            Err(mpsc::error::TryRecvError::Empty) if linger.is_zero() => break,
            Err(mpsc::error::TryRecvError::Empty) => match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(item)) => batch.push(item),
                _ => break,
            },
        }
    }
    batch
}

/// Run a replay (or a dry run) to the end of one pass, or until stopped. `interrupt` is cancelled by the
/// caller on Ctrl-C / SIGTERM.
pub async fn run(config: RunConfig, interrupt: CancellationToken) -> Result<RunReport> {
    // Loading compiles (CPU work), and starting instances calls each filter's `init`, which may block in a
    // host call until its deadline: both off the async threads.
    let (chain, runners) = {
        let filters = config.filters.clone();
        let workers = config.workers.max(1);
        let engine = config.engine.clone();
        tokio::task::spawn_blocking(move || -> Result<(FilterChain, Vec<ChainRunner>)> {
            let chain = FilterChain::load(&filters, workers, &engine)?;
            let runners = (0..workers).map(|_| chain.runner()).collect::<Result<_, _>>()?;
            Ok((chain, runners))
        })
        .await??
    };
    let modules: Vec<PlannedModule> = chain
        .modules()
        .iter()
        .map(|m| PlannedModule::from(m.as_ref()))
        .collect();
    if let Some(plan) = &config.plan {
        plan.check_modules(&modules)?;
    }

    let mode = if config.dry_run {
        SourceMode::Peek
    } else {
        SourceMode::Consume
    };
    let source_options = SourceOptions {
        remainder: config.remainder.clone(),
        count_pass: config.progress,
        aws: config.aws.clone(),
        where_clause: config.where_clause.clone(),
    };
    check_distinct_files(&config, &modules)?;
    let audit = AuditLog::open(&config.audit_dir, modules.iter().map(|m| m.name.as_str()))?;
    let audit = Arc::new(Mutex::new(audit));
    // Opened now, so an archive that cannot be written stops the run before anything moves.
    let archive = match config.dry_run {
        true => None,
        false => Some(DiscardArchive::open(&config.archive)?),
    };
    let mut source = open_source(&config.from, mode, &source_options)
        .await
        .with_context(|| format!("cannot open the source {}", config.from))?;
    // The journal holds the run lock: taken before any destination is opened.
    let journal = if config.dry_run {
        None
    } else {
        Some(Journal::open(&config.audit_dir, source.identity())?)
    };
    if let Some(j) = journal.as_ref().filter(|j| j.resumed() > 0) {
        tracing::info!(journal = %j.path().display(), settled = j.resumed(), in_doubt = j.in_doubt(), "resuming: messages settled by earlier runs are not forwarded again");
    }
    let sink = match (&config.to, config.dry_run) {
        (Some(to), false) => Some(
            open_sink(to, &config.from, &config.aws)
                .await
                .with_context(|| format!("cannot open the destination {to}"))?,
        ),
        _ => None,
    };
    let park_sink = match (&config.park, config.dry_run) {
        (Some(park), false) => Some(
            open_sink(park, &config.from, &config.aws)
                .await
                .with_context(|| format!("cannot open the park destination {park}"))?,
        ),
        _ => None,
    };

    let stats = Arc::new(Stats::default());
    let shared = Arc::new(Shared {
        source_identity: source.identity().to_owned(),
        stats: stats.clone(),
        stop: CancellationToken::new(),
        stop_reason: Mutex::new(None),
        journal,
        started: config.started,
        first_replay: Mutex::new(None),
        config,
    });
    {
        let shared = shared.clone();
        let engine = chain.engine().clone();
        tokio::spawn(async move {
            interrupt.cancelled().await;
            shared.stop_with(StopReason::Interrupted);
            // Filter calls under way end now (their messages stay in the DLQ), not at their deadlines.
            engine.interrupt();
        });
    }
    let label = if shared.config.dry_run { "plan" } else { "run" };
    let progress = Progress::start(stats.clone(), source.pass_size(), label, shared.config.progress);

    let workers = shared.config.workers.max(1);
    let (work_tx, work_rx) = mpsc::channel::<Work>(workers * 4);
    let (decided_tx, decided_rx) = mpsc::channel::<Decided>(workers * 4 + 16);
    let (replay_tx, replay_rx) = mpsc::channel::<Replay>(1024);
    let (discard_tx, discard_rx) = mpsc::channel::<Discard>(1024);
    let (park_tx, park_rx) = mpsc::channel::<(Delivery, String)>(256);
    let (settle_tx, settle_rx) = mpsc::channel::<Settle>(4096);

    let initial = if shared.config.canary > 0 {
        GateState::Pending
    } else {
        GateState::Open
    };
    let (gate_tx, gate_rx) = tokio::sync::watch::channel(initial);
    let decide_threads = spawn_deciders(runners, work_rx, decided_tx, audit.clone())?;
    let plan = shared.config.dry_run.then(PlanCollector::default);
    let router = tokio::spawn(route_stage(
        shared.clone(),
        decided_rx,
        replay_tx,
        discard_tx,
        settle_tx.clone(),
        plan,
    ));
    let forwarder = tokio::spawn(forward_stage(
        shared.clone(),
        sink.clone(),
        replay_rx,
        settle_tx.clone(),
        progress.pauser(),
        gate_tx,
    ));
    let archiver = tokio::spawn(discard_stage(
        shared.clone(),
        archive,
        discard_rx,
        settle_tx.clone(),
        gate_rx.clone(),
    ));
    let parker = tokio::spawn(park_stage(
        shared.clone(),
        park_sink,
        park_rx,
        settle_tx.clone(),
        gate_rx,
    ));
    let settler = tokio::spawn(settle_stage(shared.clone(), source.acker(), settle_rx));

    let read_result = read_stage(&shared, source.as_mut(), work_tx, settle_tx, park_tx).await;
    if let Err(e) = &read_result {
        shared.stop_with(StopReason::Error(format!("{e:#}")));
    }
    let plan = router.await.context("router task")??;
    let canary = forwarder.await.context("forwarder task")??;
    archiver.await.context("archive task")??;
    parker.await.context("park task")??;
    settler.await.context("settle task")??;
    for thread in decide_threads {
        let _ = thread.join();
    }
    progress.finish();
    shared.sync_journal()?;
    let audit_files: Vec<PathBuf> = {
        let mut audit = audit.lock().unwrap_or_else(PoisonError::into_inner);
        audit.sync()?;
        chain.modules().iter().map(|m| audit.path_for(&m.name)).collect()
    };
    let source_notes = source.finish().await.context("finishing the source")?;

    let counts = stats.snapshot();
    let config = &shared.config;
    let report = RunReport {
        source: shared.source_identity.clone(),
        destination: sink.as_ref().map(|s| s.describe()),
        stopped: shared
            .stop_reason
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone(),
        canary,
        elapsed_secs: shared.started.elapsed().as_secs_f64(),
        first_replay_secs: shared
            .first_replay
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .map(|d| d.as_secs_f64()),
        audit_files,
        modules,
        audit_dir: config.audit_dir.clone(),
        journal: shared.journal.as_ref().map(|j| j.path().to_owned()),
        archive: (counts.discarded > 0).then(|| config.archive.clone()),
        counts,
        source_notes,
        plan,
    };
    Ok(report)
}

/// Refuse a run whose files overlap: the source, the destination, the park destination, the remainder, the
/// discard archive and the audit files must be different files (compared after resolving `..` and
/// symlinks, and by inode for hard links). Checked before anything is opened.
fn check_distinct_files(config: &RunConfig, modules: &[PlannedModule]) -> Result<()> {
    let mut files: Vec<(String, PathBuf)> = Vec::new();
    if let Some(path) = config.from.file_path() {
        files.push(("the source".into(), PathBuf::from(path)));
    }
    for (label, destination) in [("--to", &config.to), ("--park", &config.park)] {
        if let Some(path) = destination
            .as_ref()
            .and_then(Destination::endpoint)
            .and_then(Endpoint::file_path)
        {
            files.push((label.into(), PathBuf::from(path)));
        }
    }
    if let Some(remainder) = &config.remainder {
        files.push(("--remainder".into(), remainder.clone()));
    }
    if !config.dry_run {
        files.push(("the discard archive (--archive)".into(), config.archive.clone()));
    }
    for module in modules {
        files.push((
            format!("the audit file of `{}`", module.name),
            AuditLog::path_in(&config.audit_dir, &module.name),
        ));
    }
    let identities: Vec<FileIdentity> = files.iter().map(|(_, path)| FileIdentity::of(path)).collect();
    for (i, a) in identities.iter().enumerate() {
        for (j, b) in identities.iter().enumerate().skip(i + 1) {
            if a.same_as(b) {
                anyhow::bail!(
                    "{} ({}) and {} ({}) are the same file: each must be a file of its own, or one would \
                     overwrite or re-read the other; give another path",
                    files[j].0,
                    files[j].1.display(),
                    files[i].0,
                    files[i].1.display()
                );
            }
        }
    }
    Ok(())
}

/// Read one pass, apply the pre-filter rules (resume, plan, window, loop guard, --max), feed the deciders.
async fn read_stage(
    shared: &Shared,
    source: &mut dyn Source,
    work_tx: mpsc::Sender<Work>,
    settle_tx: mpsc::Sender<Settle>,
    park_tx: mpsc::Sender<(Delivery, String)>,
) -> Result<()> {
    let config = &shared.config;
    let stats = &shared.stats;
    let mut seq = 0u64;
    // Journal keys seen in this pass (64 bits of their digest), and how often each repeated one came.
    let mut seen: std::collections::HashSet<u64> = std::collections::HashSet::new();
    let mut repeated: std::collections::HashMap<u128, u32> = std::collections::HashMap::new();
    loop {
        let received = tokio::select! {
            biased;
            () = shared.stop.cancelled() => break,
            r = source.next() => r.with_context(|| format!("reading {}", shared.source_identity))?,
        };
        let Some(received) = received else { break };
        let delivery = match received {
            Received::Malformed { token, problem } => {
                tracing::warn!("{}: {problem} (left in the DLQ)", shared.source_identity);
                Stats::add(&stats.malformed, 1);
                settle_tx.send(Settle::Release(token, None)).await.ok();
                continue;
            }
            Received::Message(delivery) => delivery,
        };
        let env = &delivery.envelope;
        let mut key = journal_key(env);
        if !env.id_unique_per_send {
            // Ids may repeat in this DLQ (a file, AMQP message ids): the n-th copy of a key is its own message.
            let digest = id_digest(&key);
            if !seen.insert(digest as u64) {
                let n = repeated.entry(digest).or_insert(1);
                *n += 1;
                key = occurrence_key(key, *n);
            }
        }
        let past = shared.journal.as_ref().and_then(|j| j.past(&key));
        if let Some(past @ (PastState::Acked | PastState::SettledNotAcked)) = past {
            // Settled by an earlier run: ack without forwarding again.
            Stats::add(&stats.resumed, 1);
            let id = (past == PastState::SettledNotAcked).then_some(key);
            settle_tx.send(Settle::Ack(delivery.token, id)).await.ok();
            continue;
        }
        let in_doubt = past == Some(PastState::InDoubt);
        if config.plan.as_ref().is_some_and(|p| p.planned(&env.id).is_none()) {
            Stats::add(&stats.not_in_plan, 1);
            settle_tx.send(Settle::Release(delivery.token, None)).await.ok();
            continue;
        }
        if !in_window(env, config.since, config.until) {
            Stats::add(&stats.out_of_window, 1);
            settle_tx.send(Settle::Release(delivery.token, None)).await.ok();
            continue;
        }
        if config.max.is_some_and(|max| seq >= max) {
            // Past --max: this one stays in the DLQ and the pass ends.
            settle_tx.send(Settle::Release(delivery.token, None)).await.ok();
            break;
        }
        Stats::add(&stats.read, 1);
        if config.max_replays.is_some_and(|max| env.replay_count >= max) {
            Stats::add(&stats.parked, 1);
            if config.park.is_some() && !config.dry_run {
                park_tx.send((delivery, key)).await.ok();
            } else {
                settle_tx.send(Settle::Release(delivery.token, Some(key))).await.ok();
            }
            continue;
        }
        let work = Work {
            seq,
            key,
            delivery,
            in_doubt,
        };
        if work_tx.send(work).await.is_err() {
            break;
        }
        seq += 1;
    }
    Ok(())
}

fn in_window(env: &Envelope, since: Option<DateTime<Utc>>, until: Option<DateTime<Utc>>) -> bool {
    if since.is_none() && until.is_none() {
        return true;
    }
    let Some(at) = env.failure.last_failed_at.or(env.failure.first_failed_at) else {
        return false; // a window was asked for and the failure time is unknown: leave it alone
    };
    since.is_none_or(|s| at >= s) && until.is_none_or(|u| at < u)
}

/// Worker threads: each owns one instance of the chain and writes its audit records.
fn spawn_deciders(
    runners: Vec<ChainRunner>,
    work_rx: mpsc::Receiver<Work>,
    decided_tx: mpsc::Sender<Decided>,
    audit: Arc<Mutex<AuditLog>>,
) -> Result<Vec<std::thread::JoinHandle<()>>> {
    let work_rx = Arc::new(Mutex::new(work_rx));
    runners
        .into_iter()
        .enumerate()
        .map(|(i, mut runner)| {
            let work_rx = work_rx.clone();
            let decided_tx = decided_tx.clone();
            let audit = audit.clone();
            std::thread::Builder::new()
                .name(format!("redrive-filter-{i}"))
                .spawn(move || {
                    loop {
                        let work = work_rx.lock().unwrap_or_else(PoisonError::into_inner).blocking_recv();
                        let Some(Work {
                            seq,
                            key,
                            delivery,
                            in_doubt,
                        }) = work
                        else {
                            break;
                        };
                        let result = runner.decide(&delivery.envelope);
                        let audit_failed = match &result {
                            Ok(outcome) => audit
                                .lock()
                                .unwrap_or_else(PoisonError::into_inner)
                                .write(&outcome.records)
                                .err()
                                .map(|e| format!("{e:#}")),
                            Err(_) => None,
                        };
                        if decided_tx
                            .blocking_send(Decided {
                                seq,
                                key,
                                delivery,
                                in_doubt,
                                result,
                                audit_failed,
                            })
                            .is_err()
                        {
                            break;
                        }
                    }
                })
                .context("cannot start a filter worker thread")
        })
        .collect()
}

/// Restore order and send each message where its outcome says.
async fn route_stage(
    shared: Arc<Shared>,
    mut decided_rx: mpsc::Receiver<Decided>,
    replay_tx: mpsc::Sender<Replay>,
    discard_tx: mpsc::Sender<Discard>,
    settle_tx: mpsc::Sender<Settle>,
    mut plan: Option<PlanCollector>,
) -> Result<Option<PlanCollector>> {
    let mut pending: BTreeMap<u64, Decided> = BTreeMap::new();
    let mut next = 0u64;
    while let Some(decided) = decided_rx.recv().await {
        if !shared.config.preserve_order {
            route_one(&shared, decided, &replay_tx, &discard_tx, &settle_tx, plan.as_mut()).await?;
            continue;
        }
        pending.insert(decided.seq, decided);
        while let Some(decided) = pending.remove(&next) {
            next += 1;
            route_one(&shared, decided, &replay_tx, &discard_tx, &settle_tx, plan.as_mut()).await?;
        }
    }
    for (_, decided) in std::mem::take(&mut pending) {
        route_one(&shared, decided, &replay_tx, &discard_tx, &settle_tx, plan.as_mut()).await?;
    }
    Ok(plan)
}

async fn route_one(
    shared: &Shared,
    decided: Decided,
    replay_tx: &mpsc::Sender<Replay>,
    discard_tx: &mpsc::Sender<Discard>,
    settle_tx: &mpsc::Sender<Settle>,
    plan: Option<&mut PlanCollector>,
) -> Result<()> {
    let stats = &shared.stats;
    let Decided {
        key,
        delivery,
        result,
        in_doubt,
        audit_failed,
        ..
    } = decided;
    let outcome = match result {
        Ok(outcome) => outcome,
        Err(disabled) => {
            shared.stop_with(StopReason::ModuleDisabled(disabled.to_string()));
            settle_tx.send(Settle::Release(delivery.token, None)).await.ok();
            return Ok(());
        }
    };
    if let Some(problem) = audit_failed {
        // Every decision leaves its audit records: without them the message is not acted on.
        shared.stop_with(StopReason::Error(problem));
        Stats::add(&stats.not_done, 1);
        settle_tx.send(Settle::Release(delivery.token, None)).await.ok();
        return Ok(());
    }
    if let Some(plan) = plan {
        plan.add(&delivery.envelope, &outcome);
    }
    shared.journal(Event::Decided, &[&key])?;
    if let Some(planned) = shared
        .config
        .plan
        .as_ref()
        .and_then(|p| p.planned(&delivery.envelope.id))
        && planned != outcome.outcome
    {
        tracing::warn!(id = %delivery.envelope.id, planned = %planned, now = %outcome.outcome, "decision differs from the plan; left in the DLQ");
        Stats::add(&stats.plan_drift, 1);
        settle_tx.send(Settle::Release(delivery.token, Some(key))).await.ok();
        return Ok(());
    }
    let release = |counter| {
        Stats::add(counter, 1);
        Settle::Release(delivery.token.clone(), Some(key.clone()))
    };
    match outcome.outcome {
        Outcome::Skip => settle_tx.send(release(&stats.skipped)).await.ok(),
        // Calls cut short by the stop fail as `interrupted`: not the filter's doing.
        Outcome::Failed if shared.stop.is_cancelled() => settle_tx.send(release(&stats.not_done)).await.ok(),
        Outcome::Failed => settle_tx.send(release(&stats.failed)).await.ok(),
        _ if shared.config.dry_run => {
            let counter = if outcome.outcome == Outcome::Replay {
                &stats.replayed
            } else {
                &stats.discarded
            };
            settle_tx.send(release(counter)).await.ok()
        }
        _ if shared.stop.is_cancelled() => settle_tx.send(release(&stats.not_done)).await.ok(),
        Outcome::Replay => {
            let outgoing = outgoing_message(&shared.source_identity, &key, delivery.envelope, outcome);
            replay_tx
                .send(Replay {
                    token: delivery.token,
                    key,
                    outgoing,
                    in_doubt,
                })
                .await
                .ok()
        }
        Outcome::Discard => discard_tx
            .send(Discard {
                delivery,
                key,
                reason: outcome.reason,
                module: outcome.decided_by,
            })
            .await
            .ok(),
    };
    Ok(())
}

/// The message as it is forwarded: the chain's body and attribute changes, plus the replay id (from its
/// journal `key`) and count.
fn outgoing_message(source_identity: &str, key: &str, mut out: Envelope, outcome: ChainOutcome) -> Envelope {
    if let Some(body) = outcome.body {
        out.body = body;
    }
    out.apply_attribute_changes(&outcome.attribute_changes);
    let count = out.replay_count + 1;
    let id = replay_id(source_identity, key);
    out.apply_attribute_changes(&[
        crate::message::AttributeChange::Set(REPLAY_ID_ATTRIBUTE.into(), id),
        crate::message::AttributeChange::Set(REPLAY_COUNT_ATTRIBUTE.into(), count.to_string()),
    ]);
    out.replay_count = count;
    out
}

/// Forward replays: rate limit, canary and gate, send, journal the confirmations, then ack.
async fn forward_stage(
    shared: Arc<Shared>,
    sink: Option<Arc<dyn Sink>>,
    mut replay_rx: mpsc::Receiver<Replay>,
    settle_tx: mpsc::Sender<Settle>,
    pauser: report::Pauser,
    gate_tx: tokio::sync::watch::Sender<GateState>,
) -> Result<Option<CanaryReport>> {
    let config = &shared.config;
    let stats = &shared.stats;
    let Some(sink) = sink else {
        // Dry run: the router never sends replays here.
        while replay_rx.recv().await.is_some() {}
        gate_tx.send_replace(GateState::Open);
        return Ok(None);
    };
    let mut pacer = config.rate.clone().map(Pacer::new);
    let mut canary_left = config.canary;
    let mut canary_ids: Vec<String> = Vec::new();
    let mut canary: Option<CanaryReport> = None;
    // One batch is in flight at a time, so the batch size bounds what a crash can leave in doubt.
    let largest = sink.max_batch().min(config.max_in_flight).max(1);
    let max_batch = match &config.rate {
        // About a tenth of a second's worth, so pacing stays smooth and a stop is prompt.
        Some(plan) => ((plan.rate.0 / 10.0) as usize).clamp(1, largest),
        None => largest,
    };
    let redelivery = sink.redelivery();

    while let Some(first) = replay_rx.recv().await {
        let limit = if canary_left > 0 {
            max_batch.min(canary_left as usize)
        } else {
            max_batch
        };
        // Without a rate limit, linger briefly so one fsync covers many messages.
        let linger = if pacer.is_some() { Duration::ZERO } else { BATCH_LINGER };
        let mut batch = recv_batch(&mut replay_rx, vec![first], limit, linger).await;
        // Pace: each message waits for its permit; a stop while waiting leaves the rest in the DLQ.
        let mut ready = 0;
        if let Some(pacer) = pacer.as_mut() {
            for _ in 0..batch.len() {
                tokio::select! {
                    biased;
                    () = shared.stop.cancelled() => break,
                    () = pacer.ready() => ready += 1,
                }
            }
        } else if !shared.stop.is_cancelled() {
            ready = batch.len();
        }
        let unsent = batch.split_off(ready);
        for item in unsent {
            Stats::add(&stats.not_done, 1);
            settle_tx.send(Settle::Release(item.token, Some(item.key))).await.ok();
        }
        if batch.is_empty() {
            continue;
        }

        let mut settling: Vec<(AckToken, String, String)> = Vec::with_capacity(batch.len());
        let mut envelopes: Vec<Envelope> = Vec::with_capacity(batch.len());
        let mut in_doubt: Vec<usize> = Vec::new();
        for (index, replay) in batch.into_iter().enumerate() {
            if replay.in_doubt {
                in_doubt.push(index);
            }
            settling.push((replay.token, replay.key, replay.outgoing.id.clone()));
            envelopes.push(replay.outgoing);
        }
        let results = send_once(&shared, sink.as_ref(), redelivery, &settling, envelopes, &in_doubt).await?;
        // (token, journal key, message id) of each confirmed message.
        let mut confirmed: Vec<(AckToken, String, String)> = Vec::with_capacity(settling.len());
        for ((token, key, id), result) in settling.into_iter().zip(results) {
            match result {
                Ok(()) => confirmed.push((token, key, id)),
                Err(reason) => {
                    tracing::warn!(id = %id, "not forwarded, left in the DLQ: {reason}");
                    Stats::add(&stats.send_failed, 1);
                    settle_tx.send(Settle::Release(token, Some(key))).await.ok();
                }
            }
        }
        let ids: Vec<&str> = confirmed.iter().map(|(_, key, _)| key.as_str()).collect();
        shared.journal(Event::Confirmed, &ids)?;
        // The confirmations must be durable before anything is acked.
        shared.sync_journal()?;
        if !confirmed.is_empty() {
            shared
                .first_replay
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get_or_insert_with(|| shared.started.elapsed());
        }
        Stats::add(&stats.replayed, confirmed.len() as u64);
        let sent = confirmed.len() as u64;
        for (token, key, id) in confirmed {
            if canary_left > 0 {
                canary_ids.push(id);
            }
            settle_tx.send(Settle::Ack(token, Some(key))).await.ok();
        }
        if canary_left > 0 {
            canary_left = canary_left.saturating_sub(sent.max(1));
            if canary_left == 0 {
                pauser.pause();
                if config.gate != Gate::None {
                    eprintln!(
                        "canary: {} messages replayed to {}; verifying with {}",
                        canary_ids.len(),
                        sink.describe(),
                        config.gate
                    );
                }
                let verdict = gate::verify(&config.gate, &canary_ids, &sink.describe(), &config.workdir).await;
                pauser.resume();
                if let Err(why) = &verdict {
                    shared.stop_with(StopReason::GateFailed(why.clone()));
                }
                gate_tx.send_replace(if verdict.is_ok() {
                    GateState::Open
                } else {
                    GateState::Closed
                });
                // The ramp (if any) starts once the canary is through: canary -> gate -> ramp -> full rate.
                pacer = config.rate.clone().map(Pacer::new);
                canary = Some(CanaryReport {
                    ids: std::mem::take(&mut canary_ids),
                    gate: config.gate.to_string(),
                    passed: verdict.is_ok(),
                });
            }
        }
    }
    sink.close().await.context("closing the destination")?;
    // The pass ended before the canary was complete: there is no gate to wait for.
    gate_tx.send_if_modified(|state| {
        let pending = *state == GateState::Pending;
        if pending {
            *state = if shared.stop.is_cancelled() {
                GateState::Closed
            } else {
                GateState::Open
            };
        }
        pending
    });
    if canary.is_none() && !canary_ids.is_empty() {
        canary = Some(CanaryReport {
            ids: canary_ids,
            gate: format!("{} (not reached: fewer replays than the canary size)", config.gate),
            passed: true,
        });
    }
    Ok(canary)
}

/// Send a batch so that nothing is sent twice that can be helped: messages an earlier run was sending when it
/// ended are first looked for at a destination that can be read back, and sends to such a destination are
/// journaled (durably) before they start, so the next run knows what to look for.
async fn send_once(
    shared: &Shared,
    sink: &dyn Sink,
    redelivery: Redelivery,
    settling: &[(AckToken, String, String)],
    envelopes: Vec<Envelope>,
    in_doubt: &[usize],
) -> Result<Vec<Result<(), String>>> {
    if redelivery != Redelivery::Checkable {
        return Ok(sink.send(&envelopes).await);
    }
    let mut results: Vec<Option<Result<(), String>>> = vec![None; envelopes.len()];
    if !in_doubt.is_empty() {
        let doubtful: Vec<Envelope> = in_doubt.iter().map(|&i| envelopes[i].clone()).collect();
        match sink.delivered(&doubtful).await {
            Ok(found) => {
                for (&index, there) in in_doubt.iter().zip(found) {
                    if there {
                        tracing::info!(id = %settling[index].2, "already at the destination (sent by an earlier run); not sent again");
                        results[index] = Some(Ok(()));
                    }
                }
            }
            Err(e) => {
                tracing::warn!("cannot check the destination for messages sent before a crash, sending them again: {e}")
            }
        }
    }
    let pending: Vec<usize> = (0..envelopes.len()).filter(|i| results[*i].is_none()).collect();
    if !pending.is_empty() {
        let keys: Vec<&str> = pending.iter().map(|&i| settling[i].1.as_str()).collect();
        shared.journal(Event::Sending, &keys)?;
        shared.sync_journal()?;
        let batch: Vec<Envelope> = match pending.len() == envelopes.len() {
            true => envelopes,
            false => pending.iter().map(|&i| envelopes[i].clone()).collect(),
        };
        for (&index, result) in pending.iter().zip(sink.send(&batch).await) {
            results[index] = Some(result);
        }
    }
    Ok(results
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err("not sent".into())))
        .collect())
}

/// Archive discarded messages durably, then ack them.
async fn discard_stage(
    shared: Arc<Shared>,
    mut archive: Option<DiscardArchive>,
    mut discard_rx: mpsc::Receiver<Discard>,
    settle_tx: mpsc::Sender<Settle>,
    mut gate: tokio::sync::watch::Receiver<GateState>,
) -> Result<()> {
    // Nothing is discarded before the canary gate passed; held messages are kept in memory meanwhile
    // (they are only the discards decided while the canary is out).
    let mut held = Vec::new();
    if !hold_until_gate(&mut gate, &mut discard_rx, &mut held).await {
        for d in held
            .into_iter()
            .chain(std::iter::from_fn(|| discard_rx.try_recv().ok()))
        {
            release_not_done(&shared, &settle_tx, d.delivery, d.key).await;
        }
        while let Some(d) = discard_rx.recv().await {
            release_not_done(&shared, &settle_tx, d.delivery, d.key).await;
        }
        return Ok(());
    }
    let mut held = held.into_iter();
    loop {
        let first = match held.next() {
            Some(item) => item,
            None => match discard_rx.recv().await {
                Some(item) => item,
                None => break,
            },
        };
        let mut batch = vec![first];
        batch.extend(held.by_ref().take(255));
        let batch = recv_batch(&mut discard_rx, batch, 256, BATCH_LINGER).await;
        let written = archive
            .as_mut()
            .context("a dry run has no discard archive")
            .and_then(|a| {
                let keys: Vec<String> = batch
                    .iter()
                    .map(|d| archive_key(&shared.source_identity, &d.key))
                    .collect();
                let rows: Vec<Discarded<'_>> = batch
                    .iter()
                    .zip(&keys)
                    .map(|(d, key)| Discarded {
                        envelope: &d.delivery.envelope,
                        reason: &d.reason,
                        module: &d.module,
                        key,
                    })
                    .collect();
                tokio::task::block_in_place(|| a.write(&shared.source_identity, &rows))
            });
        if let Err(e) = written {
            // Without the archive a discard could not be undone: keep them in the DLQ and stop.
            shared.stop_with(StopReason::Error(format!("{e:#}")));
            for d in batch {
                release_not_done(&shared, &settle_tx, d.delivery, d.key).await;
            }
            continue;
        }
        let ids: Vec<&str> = batch.iter().map(|d| d.key.as_str()).collect();
        shared.journal(Event::Archived, &ids)?;
        shared.sync_journal()?;
        Stats::add(&shared.stats.discarded, batch.len() as u64);
        for d in batch {
            settle_tx.send(Settle::Ack(d.delivery.token, Some(d.key))).await.ok();
        }
    }
    Ok(())
}

/// Leave a message the run did not get to in the DLQ.
async fn release_not_done(shared: &Shared, settle_tx: &mpsc::Sender<Settle>, delivery: Delivery, key: String) {
    Stats::add(&shared.stats.not_done, 1);
    settle_tx.send(Settle::Release(delivery.token, Some(key))).await.ok();
}

/// Send parked messages to the park destination, then ack them; on refusal leave them in the DLQ.
async fn park_stage(
    shared: Arc<Shared>,
    sink: Option<Arc<dyn Sink>>,
    mut park_rx: mpsc::Receiver<(Delivery, String)>,
    settle_tx: mpsc::Sender<Settle>,
    mut gate: tokio::sync::watch::Receiver<GateState>,
) -> Result<()> {
    let mut held = Vec::new();
    let open = hold_until_gate(&mut gate, &mut park_rx, &mut held).await;
    let mut held = held.into_iter();
    loop {
        let (delivery, key) = match held.next() {
            Some(d) => d,
            None => match park_rx.recv().await {
                Some(d) => d,
                None => break,
            },
        };
        let (Some(sink), true) = (&sink, open) else {
            settle_tx.send(Settle::Release(delivery.token, None)).await.ok();
            continue;
        };
        let result = sink.send(std::slice::from_ref(&delivery.envelope)).await;
        match result.into_iter().next() {
            Some(Ok(())) => {
                shared.journal(Event::Parked, &[&key])?;
                shared.sync_journal()?;
                settle_tx.send(Settle::Ack(delivery.token, Some(key))).await.ok();
            }
            other => {
                tracing::warn!(id = %delivery.envelope.id, "could not park ({other:?}); left in the DLQ");
                settle_tx.send(Settle::Release(delivery.token, None)).await.ok();
            }
        }
    }
    if let Some(sink) = sink {
        sink.close().await.context("closing the park destination")?;
    }
    Ok(())
}

/// Ack and release in batches, and journal it.
async fn settle_stage(shared: Arc<Shared>, acker: Arc<dyn Acker>, mut settle_rx: mpsc::Receiver<Settle>) -> Result<()> {
    while let Some(first) = settle_rx.recv().await {
        let batch = recv_batch(&mut settle_rx, vec![first], 512, Duration::ZERO).await;
        let (mut acks, mut releases) = (Vec::new(), Vec::new());
        let (mut acked_ids, mut released_ids) = (Vec::new(), Vec::new());
        for item in batch {
            match item {
                Settle::Ack(token, id) => {
                    acks.push(token);
                    acked_ids.extend(id);
                }
                Settle::Release(token, id) => {
                    releases.push(token);
                    released_ids.extend(id);
                }
            }
        }
        if !acks.is_empty() {
            match acker.ack(&acks).await {
                Ok(()) => {
                    let ids: Vec<&str> = acked_ids.iter().map(String::as_str).collect();
                    shared.journal(Event::Acked, &ids)?;
                }
                Err(e) => {
                    tracing::error!(
                        "ack failed, {} messages stay in the DLQ (a resumed run acks them): {e}",
                        acks.len()
                    );
                    Stats::add(&shared.stats.settle_failed, acks.len() as u64);
                }
            }
        }
        if !releases.is_empty() {
            if let Err(e) = acker.release(&releases).await {
                tracing::warn!("release failed for {} messages: {e}", releases.len());
                Stats::add(&shared.stats.settle_failed, releases.len() as u64);
            }
            let ids: Vec<&str> = released_ids.iter().map(String::as_str).collect();
            shared.journal(Event::Released, &ids)?;
        }
    }
    Ok(())
}
