//! Stage 3, route: restore the source's order (unless reordering is allowed) and send each decided message
//! where its outcome says: replays to the forwarder, discards to the archive, the rest back to the DLQ.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::Result;

use super::chunks::{ChunkRx, ChunkTx};
use super::config::StopReason;
use super::plan::PlanCollector;
use super::report::Stats;
use super::stage::{Decided, Discard, Replay, Settle, Shared};
use crate::core::envelope::{AttributeChange, Envelope, Outcome, REPLAY_COUNT_ATTRIBUTE, REPLAY_ID_ATTRIBUTE};
use crate::core::ids::{JournalKey, replay_id};
use crate::filter::ChainOutcome;

/// Where routed messages go.
pub(super) struct Routes {
    pub replay_tx: ChunkTx<Replay>,
    pub discard_tx: ChunkTx<Discard>,
    pub settle_tx: ChunkTx<Settle>,
}

/// What one chunk of decisions routes to each stage, sent on as one chunk each.
#[derive(Default)]
struct Outbox {
    replays: Vec<Replay>,
    discards: Vec<Discard>,
    settles: Vec<Settle>,
}

impl Outbox {
    async fn send(&mut self, routes: &Routes) {
        routes.replay_tx.send_all(std::mem::take(&mut self.replays)).await.ok();
        routes
            .discard_tx
            .send_all(std::mem::take(&mut self.discards))
            .await
            .ok();
        routes.settle_tx.send_all(std::mem::take(&mut self.settles)).await.ok();
    }
}

/// Route every decided message; returns what a dry run collected for its plan.
pub(super) async fn route_stage(
    shared: Arc<Shared>,
    mut decided_rx: ChunkRx<Decided>,
    routes: Routes,
    mut plan: Option<PlanCollector>,
) -> Result<Option<PlanCollector>> {
    let mut pending: BTreeMap<u64, Decided> = BTreeMap::new();
    let mut next = 0u64;
    let mut outbox = Outbox::default();
    while let Some(chunk) = decided_rx.recv_chunk().await {
        for decided in chunk {
            if !shared.config.preserve_order {
                route_one(&shared, decided, &mut outbox, plan.as_mut());
                continue;
            }
            pending.insert(decided.seq, decided);
            while let Some(decided) = pending.remove(&next) {
                next += 1;
                route_one(&shared, decided, &mut outbox, plan.as_mut());
            }
        }
        outbox.send(&routes).await;
    }
    for (_, decided) in std::mem::take(&mut pending) {
        route_one(&shared, decided, &mut outbox, plan.as_mut());
    }
    outbox.send(&routes).await;
    Ok(plan)
}

fn route_one(shared: &Shared, decided: Decided, outbox: &mut Outbox, plan: Option<&mut PlanCollector>) {
    let stats = &shared.stats;
    let settles = &mut outbox.settles;
    let Decided {
        key,
        delivery,
        result,
        in_doubt,
        audit_failed,
        share,
        ..
    } = decided;
    let outcome = match result {
        Ok(outcome) => outcome,
        Err(disabled) => {
            shared.stop_with(StopReason::ModuleDisabled(disabled.to_string()));
            settles.push(Settle::Release(delivery.token, None));
            return;
        }
    };
    if let Some(problem) = audit_failed {
        // Every decision leaves its audit records: without them the message is not acted on.
        shared.stop_with(StopReason::Error(problem));
        Stats::add(&stats.not_done, 1);
        settles.push(Settle::Release(delivery.token, None));
        return;
    }
    shared.telemetry.decided(&delivery.envelope, &outcome);
    if let Some(plan) = plan {
        plan.add(&delivery.envelope, &outcome);
    }
    if let Some(planned) = shared
        .config
        .plan
        .as_ref()
        .and_then(|p| p.planned(&delivery.envelope.id))
        && planned != outcome.outcome
    {
        tracing::warn!(id = %delivery.envelope.id, planned = %planned, now = %outcome.outcome, "decision differs from the plan; left in the DLQ");
        Stats::add(&stats.plan_drift, 1);
        settles.push(Settle::Release(delivery.token, Some(key)));
        return;
    }
    let release = |counter| {
        Stats::add(counter, 1);
        Settle::Release(delivery.token.clone(), Some(key.clone()))
    };
    match outcome.outcome {
        Outcome::Skip => settles.push(release(&stats.skipped)),
        // Calls cut short by the stop fail as `interrupted`: not the filter's doing.
        Outcome::Failed if shared.stop.is_cancelled() => settles.push(release(&stats.not_done)),
        Outcome::Failed => settles.push(release(&stats.failed)),
        _ if shared.config.dry_run => {
            let counter = match outcome.outcome {
                Outcome::Replay => &stats.replayed,
                _ => &stats.discarded,
            };
            settles.push(release(counter))
        }
        _ if shared.stop.is_cancelled() => settles.push(release(&stats.not_done)),
        Outcome::Replay => {
            let outgoing = outgoing_message(&shared.source_identity, &key, delivery.envelope, outcome);
            let replay = Replay {
                token: delivery.token,
                key,
                outgoing,
                in_doubt,
                share,
            };
            outbox.replays.push(replay)
        }
        Outcome::Discard => {
            let discard = Discard {
                delivery,
                key,
                reason: outcome.reason,
                module: outcome.decided_by,
                share,
            };
            outbox.discards.push(discard)
        }
    }
}

/// The message as it is forwarded: the chain's body and attribute changes, plus the replay id (from its
/// journal `key`) and count.
fn outgoing_message(source_identity: &str, key: &JournalKey, mut out: Envelope, outcome: ChainOutcome) -> Envelope {
    if let Some(body) = outcome.body {
        out.body = body;
    }
    out.apply_attribute_changes(&outcome.attribute_changes);
    let count = out.replay_count + 1;
    out.apply_attribute_changes(&[
        AttributeChange::Set(REPLAY_ID_ATTRIBUTE.into(), replay_id(source_identity, key)),
        AttributeChange::Set(REPLAY_COUNT_ATTRIBUTE.into(), count.to_string()),
    ]);
    out.replay_count = count;
    out
}
