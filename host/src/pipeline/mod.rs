//! The run: source → filter chain → router → rate-limited forwarder → sink → ack, one file per stage:
//!
//! - [`read`](read.rs): one pass over the source, resume / plan / window / `--max` / loop guard;
//! - [`decide`](decide.rs): filter worker threads, audit records;
//! - [`route`](route.rs): source order restored, each outcome to its stage;
//! - [`forward`](forward.rs) with the [`canary`](canary.rs) gate: paced, confirmed, journaled sends;
//! - [`discard`](discard.rs), [`park`](park.rs), [`settle`](settle.rs): archive, park destination, ack/release.
//!
//! Every stage is a task joined to the next by a bounded channel, so the messages held at once do not grow
//! with the DLQ's size; the channels bound messages, and the body budget their bytes (`--message-memory`,
//! 64 MiB by default: the reader waits for room). What does grow is ~12 bytes per message for
//! the key digests of a DLQ whose ids may repeat and 8 per replay for the re-poison breaker (a
//! [`DigestSet`](crate::core::digest_set::DigestSet); the breaker's capped: [`breaker`]), plus the digests a
//! resumed run loads (16 bytes per message: [`past`]).
//!
//! A message leaves the DLQ only after its fate is durable elsewhere: confirmed by the destination, or
//! written to the discard archive, and recorded in the journal. The pipeline sees brokers only through the
//! `core` traits: `commands` opens them ([`prepare`] first, then the source, its [`Journal`] (the run
//! lock), the destinations) and hands them to [`run`].

mod body_budget;
pub mod breaker;
mod canary;
mod chunks;
mod config;
pub mod crash_point;
mod decide;
mod discard;
mod files;
mod forward;
pub mod gate;
pub mod groups;
pub mod journal;
pub mod module_stats;
mod outcome_rows;
mod park;
pub mod past;
pub mod plan;
mod rate;
mod read;
mod report;
mod route;
mod settle;
mod stage;
pub mod telemetry;

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use anyhow::{Context, Result};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

pub use config::{CanaryReport, RunConfig, RunReport, StopReason};
pub use gate::Gate;
pub use journal::{Event, Journal, PastState};
pub use outcome_rows::OutcomeRow;
pub use rate::{Pacer, Rate, RatePlan};
pub use report::{Counts, Progress, Stats};
pub use telemetry::{RunControl, Telemetry};

use crate::audit::{AuditLog, DiscardArchive};
use crate::core::adapter::{Sink, Source, error_chain};
use crate::filter::{ChainRunner, FilterChain};
use chunks::{CHUNK, chunk_channel};
use plan::{PlanCollector, PlannedModule};
use stage::{Decided, Discard, GateState, Park, Replay, Settle, Shared, Work};

/// What a run sets up before any broker is opened, so that a mistake stops it before anything moves: the
/// filter chain with each worker's instances started, the files checked to be distinct, the audit files
/// and the discard archive opened.
pub struct Prepared {
    chain: FilterChain,
    runners: Vec<ChainRunner>,
    modules: Vec<PlannedModule>,
    audit: AuditLog,
    archive: Option<DiscardArchive>,
}

impl Prepared {
    /// The modules of the chain, as a plan records them.
    pub fn modules(&self) -> &[PlannedModule] {
        &self.modules
    }
}

/// Load the chain (compiling off the async threads; starting instances calls each filter's `init`, which may
/// block in a host call until its deadline), check a `--plan`'s modules and the run's files, open the
/// audit files and the archive.
pub async fn prepare(config: &RunConfig) -> Result<Prepared> {
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
    files::check_distinct_files(config, &modules)?;
    let audit = AuditLog::open(&config.audit_dir, chain.modules().iter().map(|m| m.as_ref()))?;
    let archive = match config.dry_run {
        true => None,
        false => Some(DiscardArchive::open(&config.archive)?),
    };
    Ok(Prepared {
        chain,
        runners,
        modules,
        audit,
        archive,
    })
}

/// The brokers of a run, opened by the caller in this order: the source, its journal (which holds the run
/// lock), then the destinations.
pub struct Opened {
    /// The DLQ.
    pub source: Box<dyn Source>,
    /// The run journal; `None` for a dry run.
    pub journal: Option<Journal>,
    /// The destination; `None` for a dry run.
    pub sink: Option<Arc<dyn Sink>>,
    /// The park destination, if any.
    pub park: Option<Arc<dyn Sink>>,
    /// The fleet this run is a worker of (`--fleet`), if any.
    pub fleet: Option<Arc<dyn crate::core::fleet::FleetLink>>,
}

/// What a stage task returned: see [`or_stop`]; a task that panicked stops the run too.
fn ended<T: Default>(shared: &Shared, joined: Result<Result<T>, tokio::task::JoinError>, stage: &str) -> T {
    match joined {
        Ok(result) => or_stop(shared, result),
        Err(e) => or_stop(shared, Err(anyhow::anyhow!("the {stage} task failed: {e}"))),
    }
}

/// A step's value; a failed step stops the run with its error (the first error is the one reported) and
/// counts as having produced nothing.
fn or_stop<T: Default>(shared: &Shared, result: Result<T>) -> T {
    result.unwrap_or_else(|e| {
        shared.stop_with(StopReason::Error(error_chain(e.as_ref())));
        T::default()
    })
}

/// Run a replay (or a dry run) to the end of one pass, or until stopped. `interrupt` is cancelled by the
/// caller on Ctrl-C / SIGTERM (or the live page's Stop); the run writes what it does into `telemetry`
/// (made with [`Prepared::modules`]' names) as it goes.
pub async fn run(
    config: RunConfig,
    prepared: Prepared,
    opened: Opened,
    interrupt: CancellationToken,
    telemetry: Arc<Telemetry>,
) -> Result<RunReport> {
    let Prepared {
        chain,
        runners,
        modules,
        audit,
        archive,
    } = prepared;
    let Opened {
        mut source,
        journal,
        sink,
        park,
        fleet,
    } = opened;
    if let Some(j) = journal.as_ref().filter(|j| j.resumed() > 0) {
        tracing::info!(journal = %j.path().display(), settled = j.resumed(), in_doubt = j.in_doubt(), "resuming: messages settled by earlier runs are not forwarded again");
    }
    let audit = Arc::new(Mutex::new(audit));
    let stats = telemetry.stats.clone();
    telemetry.set_pass(source.pass_size());
    let window = forward::window(config.max_in_flight, sink.as_deref());
    source.set_open_window(read::open_window(config.rate.as_ref(), window));
    let shared = Arc::new(Shared {
        telemetry: telemetry.clone(),
        source_identity: source.identity().to_owned(),
        stats: stats.clone(),
        stop: CancellationToken::new(),
        stop_reason: Mutex::new(None),
        journal,
        started: config.started,
        first_replay: Mutex::new(None),
        replays: config.returning.filter(|_| !config.dry_run).map(breaker::Replays::new),
        fleet,
        held_for_gate: std::sync::atomic::AtomicU64::new(0),
        budget: body_budget::BodyBudget::new(config.message_memory),
        config,
    });
    telemetry.watch_message_memory(shared.budget.clone());
    let breaker_done = CancellationToken::new();
    let breaker = shared.replays.is_some().then(|| {
        tokio::spawn(breaker::breaker_stage(
            shared.clone(),
            source.arrivals(),
            breaker_done.clone(),
        ))
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
    let sampler = {
        let telemetry = telemetry.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
            loop {
                tick.tick().await;
                telemetry.sample();
            }
        })
    };
    let label = if shared.config.dry_run { "plan" } else { "run" };
    let progress = Progress::start(stats.clone(), source.pass_size(), label, shared.config.progress);

    let workers = shared.config.workers.max(1);
    // The channels carry chunks of up to CHUNK (32) messages (chunks.rs), and bound chunks: at most ~64 messages
    // waiting per filter thread (with 4 a thread ran dry and slept, a futex wake and a context switch per few
    // messages; BENCHMARKS.md), ~1 024 replays and discards, 128 chunks of settlements (a chunk of acks is one
    // confirmed batch, up to --max-in-flight; a settlement is a token and a key). This bounds messages; their
    // bytes are bounded by the message memory (`shared.budget`), which the reader takes from.
    let (work_tx, work_rx) = chunk_channel::<Work>(workers * 64 / CHUNK);
    let (decided_tx, decided_rx) = chunk_channel::<Decided>(workers * 64 / CHUNK + 1);
    let (replay_tx, replay_rx) = chunk_channel::<Replay>(1024 / CHUNK);
    let (discard_tx, discard_rx) = chunk_channel::<Discard>(1024 / CHUNK);
    let (park_tx, park_rx) = chunk_channel::<Park>(256);
    let (settle_tx, settle_rx) = chunk_channel::<Settle>(4096 / CHUNK);
    let (gate_tx, gate_rx) = watch::channel(match shared.config.canary {
        0 => GateState::Open,
        _ => GateState::Pending,
    });

    let deciders = decide::spawn_deciders(runners, work_rx, decided_tx, audit.clone())?;
    let routes = route::Routes {
        replay_tx,
        discard_tx,
        settle_tx: settle_tx.clone(),
    };
    let plan = shared.config.dry_run.then(PlanCollector::default);
    let router = tokio::spawn(route::route_stage(shared.clone(), decided_rx, routes, plan));
    let forwarder = tokio::spawn(forward::forward_stage(
        shared.clone(),
        sink.clone(),
        window,
        replay_rx,
        settle_tx.clone(),
        progress.pauser(),
        gate_tx,
    ));
    let archiver = tokio::spawn(discard::discard_stage(
        shared.clone(),
        archive,
        discard_rx,
        settle_tx.clone(),
        gate_rx.clone(),
    ));
    let parker = tokio::spawn(park::park_stage(
        shared.clone(),
        park,
        park_rx,
        settle_tx.clone(),
        gate_rx.clone(),
    ));
    let settler = tokio::spawn(settle::settle_stage(shared.clone(), source.acker(), settle_rx));

    or_stop(
        &shared,
        read::read_stage(&shared, source.as_mut(), work_tx, settle_tx, park_tx, gate_rx).await,
    );
    // A stage that fails (a full disk under the journal, an archive that cannot be written) stops the run
    // with its error; the others drain, the source is finished and the summary says what happened.
    let plan = ended(&shared, router.await, "router");
    let canary = ended(&shared, forwarder.await, "forwarder");
    ended(&shared, archiver.await, "archive");
    ended(&shared, parker.await, "park");
    ended(&shared, settler.await, "settle");
    breaker_done.cancel();
    let returns = match breaker {
        Some(task) => Some(task.await.context("breaker task")?),
        None => None,
    };
    deciders.join().await;
    progress.finish();
    sampler.abort();
    telemetry.sample();
    or_stop(&shared, shared.sync_journal());
    let audit_files: Vec<PathBuf> = {
        let mut audit = audit.lock().unwrap_or_else(PoisonError::into_inner);
        or_stop(&shared, audit.sync());
        chain.modules().iter().map(|m| audit.path_for(&m.name)).collect()
    };
    // The pass's work is done and journaled whatever happens here: a source that cannot finish (a broker
    // gone quiet) stops the run with its error, and the summary is still printed.
    let source_notes = or_stop(&shared, source.finish().await.context("finishing the source"));

    let counts = stats.snapshot();
    let config = &shared.config;
    Ok(RunReport {
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
        returns,
        source_notes,
        plan,
    })
}
