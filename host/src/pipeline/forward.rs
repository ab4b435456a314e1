//! Stage 4, forward: pace the replays (rate limit, ramp), send them in batches no larger than the in-flight
//! window, journal each confirmation durably, then ack; the canary gate stops it after the first N.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::sync::watch;

use super::canary::{self, Canary, FleetPart};
use super::chunks::{ChunkRx, ChunkTx};
use super::config::{CanaryReport, StopReason};
use super::crash_point::{self, CrashPoint};
use super::journal::Event;
use super::rate::Pacer;
use super::report::{Pauser, Stats};
use super::stage::{BATCH_LINGER, GateState, Replay, Settle, Shared};
use super::telemetry::CanaryPhase;
use crate::core::adapter::{AckToken, DEFAULT_MAX_IN_FLIGHT, Redelivery, SendError, SendFailure, Sink};
use crate::core::envelope::{Envelope, REPLAY_ID_ATTRIBUTE};
use crate::core::fleet::CanaryVerdict;
use crate::core::ids::{JournalKey, replay_digest};

/// One message of a batch being sent: how to settle it, its journal key, its id (for messages and the canary).
struct Sending {
    token: AckToken,
    key: JournalKey,
    id: String,
    /// Its replay id's digest, when the re-poison breaker watches for it.
    replay: Option<u64>,
}

/// Most messages sent and not yet confirmed at once: `--max-in-flight`, or what the destination's
/// [`Redelivery`] allows ([`Redelivery::default_in_flight`]; [`DEFAULT_MAX_IN_FLIGHT`] in a dry run).
pub(super) fn window(max_in_flight: Option<usize>, sink: Option<&dyn Sink>) -> usize {
    max_in_flight.unwrap_or_else(|| {
        sink.map_or(DEFAULT_MAX_IN_FLIGHT, |sink| {
            sink.redelivery().default_in_flight(sink.max_batch())
        })
    })
}

/// Forward replays until the router is done, at most `window` ([`window`]) messages in flight; returns the
/// canary's report.
pub(super) async fn forward_stage(
    shared: Arc<Shared>,
    sink: Option<Arc<dyn Sink>>,
    window: usize,
    mut replay_rx: ChunkRx<Replay>,
    settle_tx: ChunkTx<Settle>,
    pauser: Pauser,
    gate_tx: watch::Sender<GateState>,
) -> Result<Option<CanaryReport>> {
    let config = &shared.config;
    let stats = &shared.stats;
    let Some(sink) = sink else {
        // Dry run: the router never sends replays here.
        while replay_rx.recv_chunk().await.is_some() {}
        gate_tx.send_replace(GateState::Open);
        return Ok(None);
    };
    if config.canary > 0 {
        shared.telemetry.set_canary(CanaryPhase::Running);
    }
    let fleet_part = canary::join_fleet_canary(&shared).await;
    let mut canary = match &fleet_part {
        FleetPart::Passed => Canary::decided_by_the_fleet(&shared, gate_tx, pauser, Ok(())),
        FleetPart::Failed(why) => Canary::decided_by_the_fleet(&shared, gate_tx, pauser, Err(why.clone())),
        FleetPart::Alone | FleetPart::Runs(_) => Canary::new(config.canary, gate_tx, pauser),
    };
    // This worker runs the fleet's canary: the verdict is published once the gate ran.
    let mut fleet_verdict_due = matches!(fleet_part, FleetPart::Runs(_));
    let mut pacer = config.rate.clone().map(Pacer::new);
    let mut paused = shared.telemetry.pause_watch();
    // One batch is in flight at a time, so the batch size bounds what a crash can leave in doubt.
    let largest = sink.max_batch().min(window).max(1);
    tracing::debug!(max_in_flight = window, redelivery = ?sink.redelivery(), "the forwarder's window");
    let max_batch = match &config.rate {
        // About a tenth of a second's worth, so pacing stays smooth and a stop is prompt.
        Some(plan) => ((plan.rate.0 / 10.0) as usize).clamp(1, largest),
        None => largest,
    };
    let destination = sink.describe();

    while let Some(first) = replay_rx.recv().await {
        // Without a rate limit, linger briefly so one fsync covers many messages.
        let linger = if pacer.is_some() { Duration::ZERO } else { BATCH_LINGER };
        let mut batch = replay_rx.recv_batch(vec![first], canary.limit(max_batch), linger).await;
        // Paused (live page, `redrive fleet pause`): this batch waits, nothing more goes out, until resumed or
        // stopped.
        while *paused.borrow_and_update() && !shared.stop.is_cancelled() {
            tokio::select! {
                () = shared.stop.cancelled() => {}
                changed = paused.changed() => if changed.is_err() { break },
            }
        }
        // In a fleet whose Redis cannot be reached: hold until it is back.
        if let Some(fleet) = &shared.fleet {
            tokio::select! {
                () = shared.stop.cancelled() => {}
                () = fleet.reachable() => {}
            }
        }
        shared
            .telemetry
            .set_rate_limit(pacer.as_ref().map(|p| p.current_rate().0));
        // Pace: each message waits for its permit; a stop while waiting leaves the rest in the DLQ.
        let mut ready = 0;
        if let Some(pacer) = pacer.as_mut() {
            for _ in 0..batch.len() {
                // In a fleet the rate is the whole fleet's: each message also takes a token of the shared bucket.
                let rate = pacer.current_rate().0;
                let permit = async {
                    pacer.ready().await;
                    if let Some(fleet) = &shared.fleet {
                        fleet.take(rate).await;
                    }
                };
                tokio::select! {
                    biased;
                    () = shared.stop.cancelled() => break,
                    () = permit => ready += 1,
                }
            }
        } else if !shared.stop.is_cancelled() {
            ready = batch.len();
        }
        let not_done = batch.split_off(ready).into_iter().map(|item| (item.token, item.key));
        shared.release_not_done(&settle_tx, not_done).await;
        if batch.is_empty() {
            continue;
        }

        let mut sending = Vec::with_capacity(batch.len());
        let mut envelopes = Vec::with_capacity(batch.len());
        let mut in_doubt = Vec::new();
        let mut shares = Vec::with_capacity(batch.len());
        for (index, replay) in batch.into_iter().enumerate() {
            if replay.in_doubt {
                in_doubt.push(index);
            }
            let digest = shared
                .replays
                .as_ref()
                .and_then(|_| replay.outgoing.attribute(REPLAY_ID_ATTRIBUTE))
                .and_then(replay_digest);
            sending.push(Sending {
                token: replay.token,
                key: replay.key,
                id: replay.outgoing.id.clone(),
                replay: digest,
            });
            envelopes.push(replay.outgoing);
            shares.push(replay.share);
        }
        shared.telemetry.set_in_flight(sending.len());
        let results = send_once(&shared, sink.as_ref(), &sending, envelopes, &in_doubt).await;
        // The bodies are gone (sent, whatever the answer): their memory is free for the reader.
        drop(shares);
        shared.telemetry.set_in_flight(0);
        let results = results?;
        crash_point::reached(CrashPoint::Sent);
        let mut confirmed = Vec::with_capacity(sending.len());
        let mut refused = Vec::new();
        let mut fatal = None;
        for (message, result) in sending.into_iter().zip(results) {
            match result {
                Ok(()) => confirmed.push(message),
                Err(e) => {
                    let next = match e.failure {
                        SendFailure::Transient => "a later run tries again",
                        SendFailure::Refused => "refused",
                        SendFailure::Fatal => "the destination takes nothing more from this run",
                    };
                    tracing::warn!(id = %message.id, "not forwarded, left in the DLQ ({next}): {e}");
                    Stats::add(&stats.send_failed, 1);
                    refused.push(Settle::Release(message.token, Some(message.key)));
                    if e.failure == SendFailure::Fatal {
                        fatal.get_or_insert(e.reason);
                    }
                }
            }
        }
        settle_tx.send_all(refused).await.ok();
        // The destination can take nothing more: stop, so the rest is released (left in the DLQ) at once
        // instead of each batch failing in turn.
        if let Some(why) = fatal {
            tracing::error!("{destination}: {why}; the run stops, what it did not send stays in the DLQ");
            shared.stop_with(StopReason::Error(format!("{destination}: {why}")));
        }
        shared.journal(Event::Confirmed, confirmed.iter().map(|m| &m.key))?;
        // The confirmations must be durable before anything is acked.
        shared.sync_journal()?;
        crash_point::reached(CrashPoint::Confirmed);
        if !confirmed.is_empty() {
            shared.first_replay_confirmed();
        }
        Stats::add(&stats.replayed, confirmed.len() as u64);
        if let Some(replays) = &shared.replays {
            replays.confirmed(confirmed.iter().filter_map(|m| m.replay));
        }
        let mut ids = Vec::with_capacity(confirmed.len());
        let mut acks = Vec::with_capacity(confirmed.len());
        for message in confirmed {
            ids.push(message.id);
            acks.push(Settle::Ack(message.token, Some(message.key)));
        }
        settle_tx.send_all(acks).await.ok();
        if canary.confirmed(&shared, ids, &destination).await {
            pacer = config.rate.clone().map(Pacer::new);
            if fleet_verdict_due && let (Some(fleet), Some(verdict)) = (&shared.fleet, canary.verdict()) {
                fleet.publish_verdict(&fleet_verdict(verdict)).await;
                fleet_verdict_due = false;
            }
        }
    }
    sink.close().await.context("closing the destination")?;
    let report = canary.finish(&shared);
    if fleet_verdict_due && let Some(fleet) = &shared.fleet {
        match &report {
            // Fewer replays than the canary's size: the pass went through without reaching the gate.
            Some(r) if r.passed && !shared.stop.is_cancelled() => fleet.publish_verdict(&CanaryVerdict::Passed).await,
            _ => fleet.give_up_canary().await,
        }
    }
    drop(fleet_part);
    Ok(report)
}

/// The fleet's form of this worker's gate verdict.
fn fleet_verdict(verdict: &Result<(), String>) -> CanaryVerdict {
    match verdict {
        Ok(()) => CanaryVerdict::Passed,
        Err(why) => CanaryVerdict::Failed(why.clone()),
    }
}

/// Send a batch so that nothing is sent twice that can be helped: messages an earlier run was sending when
/// it ended are first looked for at a destination that can be read back, and sends to such a destination are
/// journaled (durably) before they start, so the next run knows what to look for.
async fn send_once(
    shared: &Shared,
    sink: &dyn Sink,
    sending: &[Sending],
    envelopes: Vec<Envelope>,
    in_doubt: &[usize],
) -> Result<Vec<Result<(), SendError>>> {
    if sink.redelivery() != Redelivery::Checkable {
        crash_point::reached(CrashPoint::Sending);
        return Ok(sink.send(&envelopes).await);
    }
    let mut results: Vec<Option<Result<(), SendError>>> = vec![None; envelopes.len()];
    if !in_doubt.is_empty() {
        let doubtful: Vec<Envelope> = in_doubt.iter().map(|&i| envelopes[i].clone()).collect();
        match sink.delivered(&doubtful).await {
            Ok(found) => {
                for (&index, there) in in_doubt.iter().zip(found) {
                    if there {
                        tracing::info!(id = %sending[index].id, "already at the destination (sent by an earlier run); not sent again");
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
        shared.journal(Event::Sending, pending.iter().map(|&i| &sending[i].key))?;
        shared.sync_journal()?;
        crash_point::reached(CrashPoint::Sending);
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
        .map(|r| r.unwrap_or_else(|| Err(SendError::retryable("not sent"))))
        .collect())
}

#[cfg(test)]
mod tests {
    use async_trait::async_trait;

    use super::*;
    use crate::core::adapter::AdapterError;

    /// A sink that only says what it can tell after a crash.
    struct Says(Redelivery);

    #[async_trait]
    impl Sink for Says {
        fn describe(&self) -> String {
            "test".to_owned()
        }
        fn max_batch(&self) -> usize {
            200
        }
        fn redelivery(&self) -> Redelivery {
            self.0
        }
        async fn send(&self, batch: &[Envelope]) -> Vec<Result<(), SendError>> {
            batch.iter().map(|_| Ok(())).collect()
        }
        async fn close(&self) -> Result<(), AdapterError> {
            Ok(())
        }
    }

    #[test]
    fn the_flag_decides_else_what_a_crash_can_repeat() {
        let possible = Says(Redelivery::Possible);
        let checkable = Says(Redelivery::Checkable);
        let deduplicated = Says(Redelivery::Deduplicated);
        assert_eq!(window(None, Some(&possible)), DEFAULT_MAX_IN_FLIGHT);
        assert_eq!(window(None, Some(&checkable)), 200);
        assert_eq!(window(None, Some(&deduplicated)), 200);
        assert_eq!(window(Some(8), Some(&deduplicated)), 8);
        assert_eq!(window(Some(1000), Some(&possible)), 1000);
        assert_eq!(
            window(None, None),
            DEFAULT_MAX_IN_FLIGHT,
            "a dry run has no destination"
        );
    }
}
