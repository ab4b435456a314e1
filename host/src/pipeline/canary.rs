//! The canary gate: the first N replays go, then the run stops at the gate (a command, a prompt, or none)
//! before anything else leaves the DLQ; discards and parks wait for its verdict too.

use std::sync::Arc;

use tokio::sync::watch;

use super::config::{CanaryReport, StopReason};
use super::gate::{self, Gate};
use super::report::Pauser;
use super::stage::{GateState, Shared};
use super::telemetry::CanaryPhase;
use crate::core::fleet::{CanaryRole, CanaryVerdict, FleetLink, VerdictOrLease};

/// How this worker takes part in its fleet's canary (one canary for the whole fleet).
pub(super) enum FleetPart {
    /// Not in a fleet, or no canary: the run's own canary, if any.
    Alone,
    /// This worker runs the fleet's canary; the lease is renewed while this lives.
    Runs(#[expect(dead_code, reason = "held for its Drop: the lease is renewed while it lives")] LeaseKeeper),
    /// Another worker ran it and the gate passed: no canary here.
    Passed,
    /// Another worker ran it and the gate said no (why).
    Failed(String),
}

/// Renews the fleet's canary lease every second until dropped.
pub(super) struct LeaseKeeper(tokio::task::JoinHandle<()>);

impl Drop for LeaseKeeper {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Ask the fleet who runs the canary; a worker that does not run it waits here for the verdict (or for the
/// lease, when the worker running it went away). `Alone` when the run stops meanwhile.
pub(super) async fn join_fleet_canary(shared: &Shared) -> FleetPart {
    let Some(fleet) = shared.fleet.clone() else {
        return FleetPart::Alone;
    };
    if shared.config.canary == 0 || shared.config.dry_run {
        return FleetPart::Alone;
    }
    let keeper = |fleet: Arc<dyn FleetLink>| {
        LeaseKeeper(tokio::spawn(async move {
            loop {
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                fleet.hold_canary().await;
            }
        }))
    };
    let role = tokio::select! {
        () = shared.stop.cancelled() => return FleetPart::Alone,
        role = fleet.canary_role() => role,
    };
    if role == CanaryRole::Runs {
        return FleetPart::Runs(keeper(fleet));
    }
    eprintln!("canary: another worker of the fleet runs it; waiting for its verdict");
    shared.telemetry.set_canary(CanaryPhase::Verifying);
    let outcome = tokio::select! {
        () = shared.stop.cancelled() => return FleetPart::Alone,
        outcome = fleet.wait_verdict() => outcome,
    };
    match outcome {
        VerdictOrLease::Verdict(CanaryVerdict::Passed) => {
            shared.telemetry.set_canary(CanaryPhase::Passed);
            FleetPart::Passed
        }
        VerdictOrLease::Verdict(CanaryVerdict::Failed(why)) => {
            shared.telemetry.set_canary(CanaryPhase::Failed);
            FleetPart::Failed(why)
        }
        VerdictOrLease::Lease => {
            eprintln!("canary: the worker running the fleet's canary went away; this one runs it");
            shared.telemetry.set_canary(CanaryPhase::Running);
            FleetPart::Runs(keeper(fleet))
        }
    }
}

/// The canary of one run, driven by the forwarder.
pub(super) struct Canary {
    /// Replays still to go before the gate.
    left: u64,
    /// Ids of the canary's confirmed replays.
    ids: Vec<String>,
    report: Option<CanaryReport>,
    /// The gate's verdict, once it ran.
    verdict: Option<Result<(), String>>,
    gate_tx: watch::Sender<GateState>,
    pauser: Pauser,
}

impl Canary {
    /// A canary of `size` replays (0: none, the gate is open from the start).
    pub fn new(size: u64, gate_tx: watch::Sender<GateState>, pauser: Pauser) -> Self {
        if size == 0 {
            gate_tx.send_replace(GateState::Open);
        }
        Self {
            left: size,
            ids: Vec::new(),
            report: None,
            verdict: None,
            gate_tx,
            pauser,
        }
    }

    /// No canary here: the fleet's canary, run by another worker, decided (`Err`: the gate said no, and
    /// the run stops).
    pub fn decided_by_the_fleet(
        shared: &Shared,
        gate_tx: watch::Sender<GateState>,
        pauser: Pauser,
        verdict: Result<(), String>,
    ) -> Self {
        let canary = Self::new(0, gate_tx, pauser);
        if let Err(why) = &verdict {
            canary.gate_tx.send_replace(GateState::Closed);
            shared.stop_with(StopReason::GateFailed(format!(
                "the fleet's canary (run by another worker): {why}"
            )));
        }
        canary
    }

    /// The gate's verdict, once it ran in this worker.
    pub fn verdict(&self) -> Option<&Result<(), String>> {
        self.verdict.as_ref()
    }

    /// Most messages the next batch may carry: the canary's rest while it is out.
    pub fn limit(&self, max_batch: usize) -> usize {
        match self.left {
            0 => max_batch,
            left => max_batch.min(usize::try_from(left).unwrap_or(usize::MAX)),
        }
    }

    /// Count a batch's confirmed replays; when the canary is complete, run the gate. Returns true when the
    /// gate just ran (the ramp starts from there: canary, gate, ramp, full rate).
    pub async fn confirmed(&mut self, shared: &Shared, ids: Vec<String>, destination: &str) -> bool {
        if self.left == 0 {
            return false;
        }
        // A batch that confirmed nothing still counts one, so a canary cannot wait forever.
        self.left = self.left.saturating_sub((ids.len() as u64).max(1));
        self.ids.extend(ids);
        if self.left > 0 {
            return false;
        }
        let config = &shared.config;
        self.pauser.pause();
        if config.gate != Gate::None {
            eprintln!(
                "canary: {} messages replayed to {destination}; verifying with {}",
                self.ids.len(),
                config.gate
            );
        }
        shared.telemetry.set_canary(CanaryPhase::Verifying);
        let verdict = gate::verify(&config.gate, &self.ids, destination, &config.workdir, &shared.stop).await;
        self.pauser.resume();
        shared.telemetry.set_canary(match verdict {
            Ok(()) => CanaryPhase::Passed,
            Err(_) => CanaryPhase::Failed,
        });
        if let Err(why) = &verdict {
            shared.stop_with(StopReason::GateFailed(why.clone()));
        }
        self.gate_tx.send_replace(match verdict {
            Ok(()) => GateState::Open,
            Err(_) => GateState::Closed,
        });
        self.report = Some(CanaryReport {
            ids: std::mem::take(&mut self.ids),
            gate: config.gate.to_string(),
            passed: verdict.is_ok(),
        });
        self.verdict = Some(verdict);
        true
    }

    /// The pass ended. A canary never completed has no gate to wait for: discards and parks go ahead unless
    /// the run is stopping.
    pub fn finish(self, shared: &Shared) -> Option<CanaryReport> {
        let stopping = shared.stop.is_cancelled();
        self.gate_tx.send_if_modified(|state| {
            let pending = *state == GateState::Pending;
            if pending {
                *state = if stopping { GateState::Closed } else { GateState::Open };
            }
            pending
        });
        match self.report {
            Some(report) => Some(report),
            None if !self.ids.is_empty() => {
                shared.telemetry.set_canary(CanaryPhase::Passed);
                Some(CanaryReport {
                    ids: self.ids,
                    gate: format!(
                        "{} (not reached: fewer replays than the canary size)",
                        shared.config.gate
                    ),
                    passed: true,
                })
            }
            None => None,
        }
    }
}
