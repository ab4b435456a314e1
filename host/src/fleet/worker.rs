//! One worker of a fleet: it joins the fleet's run, ticks four times a second (keeps the run alive, reads
//! the fleet's control state and applies it as the live page's buttons do: pause, resume, stop), writes its
//! status every second, and is the pipeline's [`FleetLink`]: the shared rate, the shared canary, and the
//! hold on forwarding while the fleet's Redis cannot be reached.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::FleetUrl;
use super::canary::{self, LeaseAttempt};
use super::rate::{SharedRate, Take};
use super::run::{self, Control, WorkerCounts, WorkerState, WorkerStatus};
use super::store::{Store, StoreError};
use crate::core::fleet::{CanaryRole, CanaryVerdict, FleetLink, VerdictOrLease};
use crate::pipeline::{RunControl, Telemetry};

/// How often a worker ticks.
const TICK: Duration = Duration::from_millis(250);
/// Ticks between two status writes.
const STATUS_EVERY: u32 = 4;
/// Failed ticks in a row after which forwarding holds.
const UNREACHABLE_AFTER: u32 = 2;

/// A worker's link to its fleet.
pub struct Worker {
    store: Store,
    run: String,
    id: String,
    source: String,
    started: String,
    rate: SharedRate,
    reachable: watch::Sender<bool>,
    waiting_for_canary: AtomicBool,
}

/// One look at the fleet's canary.
enum CanaryLook {
    /// The verdict is given.
    Verdict(CanaryVerdict),
    /// No verdict, and this worker took the lease: it runs the canary.
    LeaseTaken,
    /// No verdict, and another worker holds the lease.
    HeldElsewhere,
}

/// A worker joined to its fleet, ticking until [`Member::leave`].
pub struct Member {
    /// The link the pipeline uses.
    pub worker: Arc<Worker>,
    ticker: tokio::task::JoinHandle<()>,
    stop_ticking: CancellationToken,
}

impl Worker {
    fn status(&self, telemetry: &Telemetry, state: WorkerState) -> WorkerStatus {
        let snapshot = telemetry.snapshot();
        let c = snapshot.counts;
        WorkerStatus {
            id: self.id.clone(),
            host: crate::core::files::host_name(),
            pid: std::process::id(),
            source: self.source.clone(),
            started: self.started.clone(),
            seen: 0,
            state,
            counts: WorkerCounts {
                replayed: c.replayed,
                skipped: c.skipped,
                discarded: c.discarded,
                failed: c.failed,
                parked: c.parked,
            },
            rate: telemetry.replay_rate(),
        }
    }

    /// Where the fleet's canary stands: its verdict if there is one, else the lease taken if nobody holds
    /// it. Waits while the fleet's Redis cannot be reached.
    async fn look_at_canary(&self) -> CanaryLook {
        loop {
            self.reachable().await;
            match canary::verdict(&self.store, &self.run).await {
                Ok(Some(verdict)) => return CanaryLook::Verdict(verdict),
                Ok(None) => {}
                Err(e) => {
                    self.retry_pause(&e).await;
                    continue;
                }
            }
            match canary::try_lease(&self.store, &self.run, &self.id).await {
                Ok(LeaseAttempt::Taken) => return CanaryLook::LeaseTaken,
                Ok(LeaseAttempt::HeldElsewhere) => return CanaryLook::HeldElsewhere,
                // Published between the two looks: read it.
                Ok(LeaseAttempt::Decided) => {}
                Err(e) => self.retry_pause(&e).await,
            }
        }
    }

    async fn retry_pause(&self, error: &StoreError) {
        tracing::debug!("{error}");
        tokio::time::sleep(TICK).await;
    }
}

/// A new worker's id: its host, its pid and four random hex digits (`web-3-4121-0a9f`), of letters, digits,
/// `.` and `-` only, so it can label metrics and name a Pushgateway group as it is.
pub fn new_worker_id() -> String {
    let host: String = crate::core::files::host_name()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!(
        "{host}-{}-{:04x}",
        std::process::id(),
        getrandom::u32().unwrap_or_default() & 0xffff
    )
}

impl Member {
    /// Join the fleet at `url` as worker `id` (see [`new_worker_id`]) reading `source` (shown without credentials), applying the
    /// fleet's control to `control`. Fails when the fleet's Redis cannot be reached at the start.
    pub async fn join(
        url: FleetUrl,
        id: String,
        source: String,
        telemetry: Arc<Telemetry>,
        control: RunControl,
    ) -> anyhow::Result<Self> {
        let store = Store::new(url.clone());
        let candidate = format!(
            "{}-{:06x}",
            chrono::Utc::now().format("%Y%m%dT%H%M%S"),
            getrandom::u32().unwrap_or_default() & 0x00ff_ffff
        );
        let run = run::join(&store, &candidate).await.map_err(|e| {
            anyhow::anyhow!(
                "--fleet {}: {e}. Is Redis running there? Every worker of a fleet needs it at the start",
                url.describe()
            )
        })?;
        if run == candidate {
            tracing::info!("fleet {}: started run {run} as worker {id}", url.name);
        } else {
            tracing::info!("fleet {}: joined run {run} as worker {id}", url.name);
        }
        let (reachable, _) = watch::channel(true);
        let worker = Arc::new(Worker {
            store,
            run,
            id,
            source,
            started: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            rate: SharedRate::default(),
            reachable,
            waiting_for_canary: AtomicBool::new(false),
        });
        let stop_ticking = CancellationToken::new();
        let ticker = tokio::spawn(tick_loop(worker.clone(), telemetry, control, stop_ticking.clone()));
        Ok(Self {
            worker,
            ticker,
            stop_ticking,
        })
    }

    /// The run ended: write the worker's last status and stop ticking.
    pub async fn leave(self, telemetry: &Telemetry) {
        self.stop_ticking.cancel();
        let _ = self.ticker.await;
        let w = &self.worker;
        let status = w.status(telemetry, WorkerState::Finished);
        if let Err(e) = run::tick(&w.store, &w.run, &w.id, Some(&status)).await {
            tracing::warn!("fleet: could not write this worker's last status: {e}");
        }
    }
}

async fn tick_loop(worker: Arc<Worker>, telemetry: Arc<Telemetry>, control: RunControl, stop: CancellationToken) {
    let mut applied = Control::Run;
    let mut failures = 0u32;
    let mut ticks = 0u32;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(TICK) => {}
        }
        ticks = ticks.wrapping_add(1);
        let status = (ticks % STATUS_EVERY == 1).then(|| {
            let state = if control.stopping() {
                WorkerState::Stopping
            } else if worker.waiting_for_canary.load(Ordering::SeqCst) {
                WorkerState::WaitingForCanary
            } else if applied == Control::Pause {
                WorkerState::Paused
            } else {
                WorkerState::Running
            };
            worker.status(&telemetry, state)
        });
        match run::tick(&worker.store, &worker.run, &worker.id, status.as_ref()).await {
            Ok((wanted, _now)) => {
                failures = 0;
                if !worker.reachable.send_replace(true) {
                    tracing::warn!(
                        "fleet {}: its Redis is back; forwarding goes on",
                        worker.store.url().name
                    );
                }
                if wanted != applied {
                    match wanted {
                        Control::Pause => {
                            tracing::warn!("fleet {}: paused by `redrive fleet pause`", worker.store.url().name);
                            control.pause();
                        }
                        Control::Run => {
                            tracing::warn!("fleet {}: resumed by `redrive fleet resume`", worker.store.url().name);
                            control.resume();
                        }
                        Control::Stop => {
                            tracing::warn!(
                                "fleet {}: stopped by `redrive fleet stop`: draining as Ctrl-C does",
                                worker.store.url().name
                            );
                            control.stop();
                        }
                    }
                    applied = wanted;
                }
            }
            Err(e) => {
                failures += 1;
                if failures == UNREACHABLE_AFTER && worker.reachable.send_replace(false) {
                    tracing::warn!(
                        "fleet {}: {e}; forwarding holds until it is back (the brokers' own locking and the run journal \
                         still keep every message to one worker, once)",
                        worker.store.url().name
                    );
                }
            }
        }
    }
}

#[async_trait]
impl FleetLink for Worker {
    async fn take(&self, per_second: f64) {
        loop {
            if self.rate.spend_local().await {
                return;
            }
            self.reachable().await;
            match self.rate.take(&self.store, per_second).await {
                Ok(Take::Granted(_)) => return,
                Ok(Take::Wait(wait)) => tokio::time::sleep(wait.min(Duration::from_secs(1))).await,
                Err(e) => self.retry_pause(&e).await,
            }
        }
    }

    async fn reachable(&self) {
        let mut rx = self.reachable.subscribe();
        while !*rx.borrow_and_update() {
            if rx.changed().await.is_err() {
                return;
            }
        }
    }

    async fn canary_role(&self) -> CanaryRole {
        match self.look_at_canary().await {
            // A verdict given already (a worker that joins late) is this worker's too.
            CanaryLook::Verdict(_) | CanaryLook::HeldElsewhere => CanaryRole::Waits,
            CanaryLook::LeaseTaken => CanaryRole::Runs,
        }
    }

    async fn hold_canary(&self) {
        if let Err(e) = canary::renew(&self.store, &self.run, &self.id).await {
            tracing::debug!("fleet: renewing the canary lease: {e}");
        }
    }

    async fn publish_verdict(&self, verdict: &CanaryVerdict) {
        loop {
            self.reachable().await;
            match canary::publish(&self.store, &self.run, &self.id, verdict).await {
                Ok(()) => return,
                Err(e) => self.retry_pause(&e).await,
            }
        }
    }

    async fn give_up_canary(&self) {
        if let Err(e) = canary::release(&self.store, &self.run, &self.id).await {
            tracing::debug!("fleet: letting the canary lease go: {e}");
        }
    }

    async fn wait_verdict(&self) -> VerdictOrLease {
        self.waiting_for_canary.store(true, Ordering::SeqCst);
        let outcome = loop {
            match self.look_at_canary().await {
                CanaryLook::Verdict(verdict) => break VerdictOrLease::Verdict(verdict),
                CanaryLook::LeaseTaken => break VerdictOrLease::Lease,
                CanaryLook::HeldElsewhere => tokio::time::sleep(TICK).await,
            }
        };
        self.waiting_for_canary.store(false, Ordering::SeqCst);
        outcome
    }
}
