//! Stage 3, route: restore the source's order (unless reordering is allowed) and send each decided message
//! where its outcome says: replays to the forwarder, discards to the archive, the rest back to the DLQ.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::Result;
use tokio::sync::mpsc;

use super::config::StopReason;
use super::plan::PlanCollector;
use super::report::Stats;
use super::stage::{Decided, Discard, Replay, Settle, Shared};
use crate::core::envelope::{AttributeChange, Envelope, Outcome, REPLAY_COUNT_ATTRIBUTE, REPLAY_ID_ATTRIBUTE};
use crate::core::ids::{JournalKey, replay_id};
use crate::filter::ChainOutcome;

/// Where routed messages go.
pub(super) struct Routes {
    pub replay_tx: mpsc::Sender<Replay>,
    pub discard_tx: mpsc::Sender<Discard>,
    pub settle_tx: mpsc::Sender<Settle>,
}

/// Route every decided message; returns what a dry run collected for its plan.
pub(super) async fn route_stage(
    shared: Arc<Shared>,
    mut decided_rx: mpsc::Receiver<Decided>,
    routes: Routes,
    mut plan: Option<PlanCollector>,
) -> Result<Option<PlanCollector>> {
    let mut pending: BTreeMap<u64, Decided> = BTreeMap::new();
    let mut next = 0u64;
    while let Some(decided) = decided_rx.recv().await {
        if !shared.config.preserve_order {
            route_one(&shared, decided, &routes, plan.as_mut()).await?;
            continue;
        }
        pending.insert(decided.seq, decided);
        while let Some(decided) = pending.remove(&next) {
            next += 1;
            route_one(&shared, decided, &routes, plan.as_mut()).await?;
        }
    }
    for (_, decided) in std::mem::take(&mut pending) {
        route_one(&shared, decided, &routes, plan.as_mut()).await?;
    }
    Ok(plan)
}

async fn route_one(shared: &Shared, decided: Decided, routes: &Routes, plan: Option<&mut PlanCollector>) -> Result<()> {
    let stats = &shared.stats;
    let settle_tx = &routes.settle_tx;
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
            let counter = match outcome.outcome {
                Outcome::Replay => &stats.replayed,
                _ => &stats.discarded,
            };
            settle_tx.send(release(counter)).await.ok()
        }
        _ if shared.stop.is_cancelled() => settle_tx.send(release(&stats.not_done)).await.ok(),
        Outcome::Replay => {
            let outgoing = outgoing_message(&shared.source_identity, &key, delivery.envelope, outcome);
            let replay = Replay {
                token: delivery.token,
                key,
                outgoing,
                in_doubt,
            };
            routes.replay_tx.send(replay).await.ok()
        }
        Outcome::Discard => {
            let discard = Discard {
                delivery,
                key,
                reason: outcome.reason,
                module: outcome.decided_by,
            };
            routes.discard_tx.send(discard).await.ok()
        }
    };
    Ok(())
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
