//! The canary gate: the first N replays go, then the run stops at the gate (a command, a prompt, or none)
//! before anything else leaves the DLQ; discards and parks wait for its verdict too.

use tokio::sync::watch;

use super::config::{CanaryReport, StopReason};
use super::gate::{self, Gate};
use super::report::Pauser;
use super::stage::{GateState, Shared};
use super::telemetry::CanaryPhase;

/// The canary of one run, driven by the forwarder.
pub(super) struct Canary {
    /// Replays still to go before the gate.
    left: u64,
    /// Ids of the canary's confirmed replays.
    ids: Vec<String>,
    report: Option<CanaryReport>,
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
            gate_tx,
            pauser,
        }
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
