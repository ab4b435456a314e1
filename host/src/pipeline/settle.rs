//! Stage 7, settle: ack (remove from the DLQ) and release (leave in it) in batches through the source's
//! acker, and journal what was done.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;

use super::chunks::ChunkRx;
use super::config::StopReason;
use super::crash_point::{self, CrashPoint};
use super::journal::Event;
use super::report::Stats;
use super::stage::{Settle, Shared};
use crate::core::adapter::{Acker, AdapterError};

/// Ack and release in batches, and journal it.
pub(super) async fn settle_stage(
    shared: Arc<Shared>,
    acker: Arc<dyn Acker>,
    mut settle_rx: ChunkRx<Settle>,
) -> Result<()> {
    // Once the DLQ is gone, nothing more is tried there: the run stops, and what is still coming is counted.
    let mut gone = false;
    while let Some(first) = settle_rx.recv().await {
        let batch = settle_rx.recv_batch(vec![first], 512, Duration::ZERO).await;
        let (mut acks, mut releases) = (Vec::new(), Vec::new());
        let (mut acked_keys, mut released_keys) = (Vec::new(), Vec::new());
        for item in batch {
            match item {
                Settle::Ack(token, key) => {
                    acks.push(token);
                    acked_keys.extend(key);
                }
                Settle::Release(token, key) => {
                    releases.push(token);
                    released_keys.extend(key);
                }
            }
        }
        if gone {
            Stats::add(&shared.stats.dlq_gone, (acks.len() + releases.len()) as u64);
            continue;
        }
        if !acks.is_empty() {
            match acker.ack(&acks).await {
                Ok(()) => {
                    crash_point::reached(CrashPoint::Acked);
                    shared.journal(Event::Acked, &acked_keys)?
                }
                Err(AdapterError::Gone(why)) => {
                    dlq_went_away(&shared, why, acks.len() + releases.len());
                    gone = true;
                    continue;
                }
                Err(e) => {
                    tracing::error!(
                        "ack failed, {} messages stay in the DLQ (a resumed run acks them): {e}",
                        acks.len()
                    );
                    Stats::add(&shared.stats.settle_failed, acks.len() as u64);
                }
            }
        }
        if !releases.is_empty() {
            match acker.release(&releases).await {
                Ok(()) => {}
                Err(AdapterError::Gone(why)) => {
                    dlq_went_away(&shared, why, releases.len());
                    gone = true;
                }
                Err(e) => {
                    tracing::warn!("release failed for {} messages: {e}", releases.len());
                    Stats::add(&shared.stats.settle_failed, releases.len() as u64);
                }
            }
            shared.journal(Event::Released, &released_keys)?;
        }
    }
    Ok(())
}

/// The DLQ itself is gone (`why` says how): the run stops, and `messages` that could not be settled are counted
/// as gone with it, not as still in the DLQ.
fn dlq_went_away(shared: &Shared, why: String, messages: usize) {
    tracing::error!("{why}");
    shared.stop_with(StopReason::Error(why));
    Stats::add(&shared.stats.dlq_gone, messages as u64);
}
