//! Stage 2, decide: filter worker threads (wasm is CPU work), each with its own instances of the chain,
//! writing the audit records of every decision before it goes on.

use std::sync::{Arc, Mutex, PoisonError};

use anyhow::{Context, Result};

use super::chunks::{ChunkRx, ChunkTx};
use super::stage::{Decided, Work};
use crate::audit::{AuditLines, AuditLog};
use crate::core::adapter::error_chain;
use crate::filter::ChainRunner;

/// The filter workers, to wait for once the pass is read.
pub(super) enum Deciders {
    /// One thread per runner.
    Threads(Vec<std::thread::JoinHandle<()>>),
    /// The chain of no modules (`--no-filter`): a task passes each message on, without a thread hand-off.
    PassThrough(tokio::task::JoinHandle<()>),
}

impl Deciders {
    /// Wait until every worker has ended (`work_rx` closed and drained).
    pub(super) async fn join(self) {
        match self {
            Deciders::Threads(threads) => {
                let _ = tokio::task::spawn_blocking(move || {
                    for thread in threads {
                        let _ = thread.join();
                    }
                })
                .await;
            }
            Deciders::PassThrough(task) => {
                let _ = task.await;
            }
        }
    }
}

/// Start one worker thread per runner (a task instead for the chain of no modules); they end when `work_rx`
/// closes. A worker takes a chunk of messages at a time and passes their decisions on as one chunk.
pub(super) fn spawn_deciders(
    mut runners: Vec<ChainRunner>,
    work_rx: ChunkRx<Work>,
    decided_tx: ChunkTx<Decided>,
    audit: Arc<Mutex<AuditLog>>,
) -> Result<Deciders> {
    if runners.first().is_some_and(ChainRunner::is_empty) {
        let runner = runners.swap_remove(0);
        return Ok(Deciders::PassThrough(tokio::spawn(pass_through(
            runner, work_rx, decided_tx,
        ))));
    }
    let work_rx = Arc::new(Mutex::new(work_rx));
    runners
        .into_iter()
        .enumerate()
        .map(|(i, runner)| {
            let (work_rx, decided_tx, audit) = (work_rx.clone(), decided_tx.clone(), audit.clone());
            std::thread::Builder::new()
                .name(format!("redrive-filter-{i}"))
                .spawn(move || decide_loop(runner, &work_rx, &decided_tx, &audit))
                .context("cannot start a filter worker thread")
        })
        .collect::<Result<_>>()
        .map(Deciders::Threads)
}

/// The chain of no modules: each message is decided (replay, nothing to audit) on the async runtime.
async fn pass_through(mut runner: ChainRunner, mut work_rx: ChunkRx<Work>, decided_tx: ChunkTx<Decided>) {
    while let Some(chunk) = work_rx.recv_chunk().await {
        let decided = chunk
            .into_iter()
            .map(|work| {
                let result = runner.decide(&work.delivery.envelope);
                work.decided(result, None)
            })
            .collect();
        if decided_tx.send_all(decided).await.is_err() {
            return;
        }
    }
}

fn decide_loop(
    mut runner: ChainRunner,
    work_rx: &Mutex<ChunkRx<Work>>,
    decided_tx: &ChunkTx<Decided>,
    audit: &Mutex<AuditLog>,
) {
    // Records are serialised here, outside the audit log's lock; only the copy into its buffers is inside.
    let mut lines = AuditLines::default();
    loop {
        let chunk = work_rx
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .blocking_recv_chunk();
        let Some(chunk) = chunk else {
            return;
        };
        let mut decided = Vec::with_capacity(chunk.len());
        for work in chunk {
            let result = runner.decide(&work.delivery.envelope);
            let audit_failed = match &result {
                Ok(outcome) => lines
                    .encode(&outcome.records)
                    .and_then(|()| audit.lock().unwrap_or_else(PoisonError::into_inner).append(&lines))
                    .err()
                    .map(|e| error_chain(e.as_ref())),
                Err(_) => None,
            };
            decided.push(work.decided(result, audit_failed));
        }
        if decided_tx.blocking_send_all(decided).is_err() {
            return;
        }
    }
}
