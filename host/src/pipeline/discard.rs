//! Stage 5, discard: once the canary gate opened, write discarded messages to the archive (fsync), journal
//! that, then ack them. If the archive cannot be written, they stay in the DLQ and the run stops.

use std::sync::Arc;

use anyhow::{Context, Result};
use tokio::sync::watch;

use super::chunks::{ChunkRx, ChunkTx};
use super::config::StopReason;
use super::crash_point::{self, CrashPoint};
use super::journal::Event;
use super::report::Stats;
use super::stage::{BATCH_LINGER, Discard, GateState, Settle, Shared, hold_until_gate};
use crate::audit::{DiscardArchive, Discarded};
use crate::core::adapter::error_chain;
use crate::core::ids::archive_key;

/// Archive discarded messages durably, then ack them.
pub(super) async fn discard_stage(
    shared: Arc<Shared>,
    mut archive: Option<DiscardArchive>,
    mut discard_rx: ChunkRx<Discard>,
    settle_tx: ChunkTx<Settle>,
    mut gate: watch::Receiver<GateState>,
) -> Result<()> {
    // Nothing is discarded before the canary gate passed; held messages are kept in memory meanwhile
    // (they are only the discards decided while the canary is out).
    let mut held = Vec::new();
    // Held discards give back their share of the message memory: the canary needs the replays behind them.
    let give_back = |d: &mut Discard| d.share.give_back();
    if !hold_until_gate(&mut gate, &mut discard_rx, &mut held, &shared.held_for_gate, give_back).await {
        let not_done = |chunk: Vec<Discard>| chunk.into_iter().map(|d| (d.delivery.token, d.key));
        shared.release_not_done(&settle_tx, not_done(held)).await;
        while let Some(chunk) = discard_rx.recv_chunk().await {
            shared.release_not_done(&settle_tx, not_done(chunk)).await;
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
        let batch = discard_rx.recv_batch(batch, 256, BATCH_LINGER).await;
        let written = archive
            .as_mut()
            .context("a dry run has no discard archive")
            .and_then(|a| write_batch(&shared, a, &batch));
        if let Err(e) = written {
            // Without the archive a discard could not be undone: keep them in the DLQ and stop.
            shared.stop_with(StopReason::Error(error_chain(e.as_ref())));
            let not_done = batch.into_iter().map(|d| (d.delivery.token, d.key));
            shared.release_not_done(&settle_tx, not_done).await;
            continue;
        }
        crash_point::reached(CrashPoint::Archived);
        shared.journal(Event::Archived, batch.iter().map(|d| &d.key))?;
        shared.sync_journal()?;
        Stats::add(&shared.stats.discarded, batch.len() as u64);
        let acks = batch.into_iter().map(|d| Settle::Ack(d.delivery.token, Some(d.key)));
        settle_tx.send_all(acks.collect()).await.ok();
    }
    Ok(())
}

fn write_batch(shared: &Shared, archive: &mut DiscardArchive, batch: &[Discard]) -> Result<()> {
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
            module: d.module.as_deref(),
            key,
        })
        .collect();
    tokio::task::block_in_place(|| archive.write(&shared.source_identity, &rows))
}
