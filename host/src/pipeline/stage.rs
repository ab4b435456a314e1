//! What the stages share: the items that travel between them, the state they all see, batching helpers.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::Result;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::body_budget::{BodyBudget, BodyShare};
use super::chunks::{ChunkRx, ChunkTx};
use super::config::{RunConfig, StopReason};
use super::journal::{Event, Journal};
use super::report::Stats;
use super::telemetry::Telemetry;
use crate::core::adapter::{AckToken, Delivery};
use crate::core::envelope::Envelope;
use crate::core::ids::JournalKey;
use crate::filter::{ChainOutcome, ModuleDisabled};

/// One message on its way to the filters, with its journal key (computed once, by the reader).
pub(super) struct Work {
    /// Its place in the pass (the router restores this order).
    pub seq: u64,
    pub key: JournalKey,
    pub delivery: Delivery,
    /// An earlier run was sending it when it ended: it may already be at the destination.
    pub in_doubt: bool,
    /// Its share of the run's message memory.
    pub share: BodyShare,
}

impl Work {
    /// This message with the chain's decision about it.
    pub fn decided(self, result: Result<ChainOutcome, ModuleDisabled>, audit_failed: Option<String>) -> Decided {
        Decided {
            seq: self.seq,
            key: self.key,
            delivery: self.delivery,
            in_doubt: self.in_doubt,
            share: self.share,
            result,
            audit_failed,
        }
    }
}

/// A message the chain decided on.
pub(super) struct Decided {
    pub seq: u64,
    pub key: JournalKey,
    pub delivery: Delivery,
    pub in_doubt: bool,
    pub share: BodyShare,
    /// The chain's outcome, or the module that was disabled before it could decide.
    pub result: Result<ChainOutcome, ModuleDisabled>,
    /// The decision's audit records could not be written: the message must stay in the DLQ.
    pub audit_failed: Option<String>,
}

/// A message on its way to the destination: the token to ack it with, and the message as forwarded.
pub(super) struct Replay {
    pub token: AckToken,
    /// The message's journal key (taken before the replay count went up).
    pub key: JournalKey,
    pub outgoing: Envelope,
    pub in_doubt: bool,
    /// Given back once it was sent.
    pub share: BodyShare,
}

/// A message on its way to the discard archive.
pub(super) struct Discard {
    pub delivery: Delivery,
    pub key: JournalKey,
    pub reason: String,
    pub module: Option<String>,
    /// Given back once it was archived, or while it is held for the canary gate.
    pub share: BodyShare,
}

/// A message stopped by the loop guard, on its way to the park destination.
pub(super) struct Park {
    pub delivery: Delivery,
    pub key: JournalKey,
}

/// How a message is settled with its source, with the journal key to record it under (`None`: nothing to
/// journal, e.g. a message an earlier run already recorded as acked, or one that was never looked at).
pub(super) enum Settle {
    Ack(AckToken, Option<JournalKey>),
    Release(AckToken, Option<JournalKey>),
}

/// Whether destructive steps (discard, park) may go ahead: only once the canary gate passed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum GateState {
    Pending,
    Open,
    Closed,
}

/// Hold items from `rx` until the gate is decided, counting them in `counted` and calling `on_hold` on each
/// (a discard gives back its share of the message memory); `true` when it opened.
pub(super) async fn hold_until_gate<T>(
    gate: &mut watch::Receiver<GateState>,
    rx: &mut ChunkRx<T>,
    held: &mut Vec<T>,
    counted: &std::sync::atomic::AtomicU64,
    on_hold: impl Fn(&mut T),
) -> bool {
    loop {
        if *gate.borrow() != GateState::Pending {
            return *gate.borrow() == GateState::Open;
        }
        tokio::select! {
            changed = gate.changed() => if changed.is_err() { return false },
            item = rx.recv() => match item {
                Some(mut item) => {
                    on_hold(&mut item);
                    held.push(item);
                    counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                None => {
                    let _ = gate.wait_for(|s| *s != GateState::Pending).await;
                    return *gate.borrow() == GateState::Open;
                }
            },
        }
    }
}

/// State shared by the stages.
pub(super) struct Shared {
    pub telemetry: Arc<Telemetry>,
    pub config: RunConfig,
    pub source_identity: String,
    pub stats: Arc<Stats>,
    pub stop: CancellationToken,
    pub stop_reason: Mutex<Option<StopReason>>,
    pub journal: Option<Journal>,
    pub started: Instant,
    pub first_replay: Mutex<Option<Duration>>,
    /// The replays confirmed in this run, for the re-poison breaker (when it is on).
    pub replays: Option<super::breaker::Replays>,
    /// The fleet this worker belongs to (`--fleet`): the shared rate, canary and hold.
    pub fleet: Option<Arc<dyn crate::core::fleet::FleetLink>>,
    /// Discards and parks held until the canary gate decides (they cannot go anywhere before it does).
    pub held_for_gate: std::sync::atomic::AtomicU64,
    /// The run's message memory (`--message-memory`): the reader waits for room in it.
    pub budget: BodyBudget,
}

impl Shared {
    /// Stop the run (the first reason given is the one reported).
    pub fn stop_with(&self, reason: StopReason) {
        let mut slot = self.stop_reason.lock().unwrap_or_else(PoisonError::into_inner);
        if slot.is_none() {
            *slot = Some(reason);
        }
        self.stop.cancel();
    }

    /// Journal `event` for these keys (buffered), when there is a journal (not in a dry run).
    pub fn journal<'a>(&self, event: Event, keys: impl IntoIterator<Item = &'a JournalKey>) -> Result<()> {
        match &self.journal {
            Some(j) => j.record(event, keys),
            None => Ok(()),
        }
    }

    /// Make what was journaled durable.
    pub fn sync_journal(&self) -> Result<()> {
        self.journal.as_ref().map_or(Ok(()), Journal::sync)
    }

    /// Note that a replay was confirmed (for the time to the first replay).
    pub fn first_replay_confirmed(&self) {
        self.first_replay
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_or_insert_with(|| self.started.elapsed());
    }

    /// Leave messages the run did not get to in the DLQ.
    pub async fn release_not_done(
        &self,
        settle_tx: &ChunkTx<Settle>,
        messages: impl IntoIterator<Item = (AckToken, JournalKey)>,
    ) {
        let releases: Vec<Settle> = messages
            .into_iter()
            .map(|(token, key)| Settle::Release(token, Some(key)))
            .collect();
        Stats::add(&self.stats.not_done, releases.len() as u64);
        settle_tx.send_all(releases).await.ok();
    }
}

/// How long a stage waits for more items to fill a batch that costs an fsync.
pub(super) const BATCH_LINGER: Duration = Duration::from_millis(5);
