//! Stage 6, park: messages the loop guard stopped (replayed `--max-replays` times already) go to the park
//! destination once the canary gate opened, one at a time, and are acked when it confirmed; without a park
//! destination they stay in the DLQ.

use std::sync::Arc;

use anyhow::{Context, Result};
use tokio::sync::watch;

use super::chunks::{ChunkRx, ChunkTx};
use super::journal::Event;
use super::stage::{GateState, Park, Settle, Shared, hold_until_gate};
use crate::core::adapter::Sink;

/// Send parked messages to the park destination, then ack them; on refusal leave them in the DLQ.
pub(super) async fn park_stage(
    shared: Arc<Shared>,
    sink: Option<Arc<dyn Sink>>,
    mut park_rx: ChunkRx<Park>,
    settle_tx: ChunkTx<Settle>,
    mut gate: watch::Receiver<GateState>,
) -> Result<()> {
    let mut held = Vec::new();
    let open = hold_until_gate(&mut gate, &mut park_rx, &mut held, &shared.held_for_gate, |_| {}).await;
    let mut held = held.into_iter();
    loop {
        let Park { delivery, key } = match held.next() {
            Some(p) => p,
            None => match park_rx.recv().await {
                Some(p) => p,
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
                shared.journal(Event::Parked, [&key])?;
                shared.sync_journal()?;
                settle_tx.send(Settle::Ack(delivery.token, Some(key))).await.ok();
            }
            Some(Err(e)) => {
                tracing::warn!(id = %delivery.envelope.id, "could not park ({e}); left in the DLQ");
                settle_tx.send(Settle::Release(delivery.token, None)).await.ok();
            }
            None => {
                tracing::warn!(id = %delivery.envelope.id, "the park destination answered nothing; left in the DLQ");
                settle_tx.send(Settle::Release(delivery.token, None)).await.ok();
            }
        }
    }
    if let Some(sink) = sink {
        sink.close().await.context("closing the park destination")?;
    }
    Ok(())
}
