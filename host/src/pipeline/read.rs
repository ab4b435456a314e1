//! Stage 1, read: one pass over the source, with the rules applied before any filter runs (resume, plan,
//! time window, `--max`, the loop guard), and the journal key of each message worked out once.

use std::collections::HashMap;
use std::task::Poll;

use anyhow::{Context, Result};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::chunks::{CHUNK, ChunkTx};
use super::journal::PastState;
use super::rate::RatePlan;
use super::report::Stats;
use super::stage::{GateState, Park, Settle, Shared, Work};
use crate::core::adapter::{DEFAULT_MAX_IN_FLIGHT, Received, Source};
use crate::core::digest_set::DigestSet;
use crate::core::ids::JournalKey;

/// The journal keys seen in a pass whose ids can repeat, so the n-th copy of a key is its own message.
#[derive(Default)]
struct Occurrences {
    /// 64 bits of each key's digest, the 48 below its bucket stored: about 12 bytes per message at a million,
    /// the set's growth and its allocator's rounding included.
    seen: DigestSet<u64>,
    /// How often each repeated key came.
    repeated: HashMap<u128, u32>,
}

impl Occurrences {
    fn key_of(&mut self, key: JournalKey) -> JournalKey {
        let digest = key.digest();
        if self.seen.insert(digest as u64) {
            return key;
        }
        let n = self.repeated.entry(digest).or_insert(1);
        *n += 1;
        key.nth(*n)
    }
}

/// How many messages a source may hand out before they are settled to keep a forwarder with this window busy:
/// two seconds of the forwarding rate (more would only wait for the rate limiter), or four windows without one.
pub(super) fn open_window(rate: Option<&RatePlan>, window: usize) -> usize {
    rate.map_or(window * 4, |plan| (plan.rate.0 * 2.0).ceil() as usize)
        .clamp(8, 65_536)
}

/// How many messages a worker of a fleet holds at most (read and not settled): [`open_window`] for the window
/// given, or for [`DEFAULT_MAX_IN_FLIGHT`] whatever the destination (a larger default window there would only
/// let one worker take a small pass whole). The rest stays in the DLQ for the other workers.
fn fleet_window(shared: &Shared) -> Option<usize> {
    shared.fleet.as_ref()?;
    let config = &shared.config;
    Some(open_window(
        config.rate.as_ref(),
        config.max_in_flight.unwrap_or(DEFAULT_MAX_IN_FLIGHT),
    ))
}

/// What the reader has ready for the stages behind it: sent as one chunk each once [`CHUNK`] messages are
/// ready, or as soon as the source has nothing more ready (so nothing waits in here while the source waits).
struct Outbox {
    work: Vec<Work>,
    settles: Vec<Settle>,
    work_tx: ChunkTx<Work>,
    settle_tx: ChunkTx<Settle>,
}

impl Outbox {
    fn new(work_tx: ChunkTx<Work>, settle_tx: ChunkTx<Settle>) -> Self {
        Self {
            work: Vec::with_capacity(CHUNK),
            settles: Vec::new(),
            work_tx,
            settle_tx,
        }
    }

    fn full(&self) -> bool {
        self.work.len() >= CHUNK || self.settles.len() >= CHUNK
    }

    /// Send what is ready; `false` when the deciders are gone (the run is over).
    async fn send(&mut self) -> bool {
        self.settle_tx.send_all(std::mem::take(&mut self.settles)).await.ok();
        if self.work.is_empty() {
            return true; // nothing to send, and no new buffer to allocate
        }
        let work = std::mem::replace(&mut self.work, Vec::with_capacity(CHUNK));
        self.work_tx.send_all(work).await.is_ok()
    }
}

/// The source's next message: taken at once when it is ready, else only after `outbox` went to the stages
/// behind (they work while the source waits). `None` when the run was stopped first.
async fn next_message(
    shared: &Shared,
    source: &mut dyn Source,
    outbox: &mut Outbox,
) -> Option<Result<Option<Received>>> {
    let received = ready_or_after(source.next(), outbox.send(), &shared.stop).await?;
    Some(received.with_context(|| format!("reading {}", shared.source_identity)))
}

/// `next`'s value at once if it is ready; else `flush` first (`false`: give up), then `next`'s value when it
/// comes, unless `stop` comes first. `next` is dropped unfinished only on a stop or when `flush` gives up (the
/// run is over), so a source need not be cancel-safe otherwise.
async fn ready_or_after<T>(
    next: impl Future<Output = T>,
    flush: impl Future<Output = bool>,
    stop: &CancellationToken,
) -> Option<T> {
    let mut next = std::pin::pin!(next);
    if let Poll::Ready(value) = std::future::poll_fn(|cx| Poll::Ready(next.as_mut().poll(cx))).await {
        return Some(value);
    }
    if !flush.await {
        return None;
    }
    tokio::select! {
        biased;
        () = stop.cancelled() => None,
        value = next => Some(value),
    }
}

/// Read one pass, apply the pre-filter rules, feed the deciders.
pub(super) async fn read_stage(
    shared: &Shared,
    source: &mut dyn Source,
    work_tx: ChunkTx<Work>,
    settle_tx: ChunkTx<Settle>,
    park_tx: ChunkTx<Park>,
    gate_rx: watch::Receiver<GateState>,
) -> Result<()> {
    let mut outbox = Outbox::new(work_tx, settle_tx);
    let read = read_into(shared, source, &mut outbox, &park_tx, gate_rx).await;
    // Whatever ended the pass, what was read goes on: the stages behind settle every message they get.
    outbox.send().await;
    read
}

async fn read_into(
    shared: &Shared,
    source: &mut dyn Source,
    outbox: &mut Outbox,
    park_tx: &ChunkTx<Park>,
    gate_rx: watch::Receiver<GateState>,
) -> Result<()> {
    let config = &shared.config;
    let stats = &shared.stats;
    let mut seq = 0u64;
    let mut occurrences = Occurrences::default();
    let window = fleet_window(shared);
    let mut taken = 0u64;
    loop {
        if outbox.full() && !outbox.send().await {
            break;
        }
        // In a fleet, a worker holds no more than its window, so the DLQ is shared between the workers rather
        // than read ahead by the first one. Discards and parks held for the canary gate do not count while it
        // is undecided (they cannot move before it does, and the canary needs the replays behind them).
        if let Some(window) = window {
            let open = || {
                let held = match *gate_rx.borrow() {
                    GateState::Pending => shared.held_for_gate.load(std::sync::atomic::Ordering::Relaxed),
                    GateState::Open | GateState::Closed => 0,
                };
                taken.saturating_sub(stats.done()).saturating_sub(held)
            };
            if open() >= window as u64 && !outbox.send().await {
                break;
            }
            while open() >= window as u64 && !shared.stop.is_cancelled() {
                tokio::select! {
                    () = shared.stop.cancelled() => {}
                    () = tokio::time::sleep(std::time::Duration::from_millis(5)) => {}
                }
            }
        }
        taken += 1;
        if shared.stop.is_cancelled() {
            break;
        }
        let Some(received) = next_message(shared, source, outbox).await else {
            break;
        };
        let Some(received) = received? else { break };
        let delivery = match received {
            Received::Malformed { token, problem } => {
                tracing::warn!("{}: {problem} (left in the DLQ)", shared.source_identity);
                Stats::add(&stats.malformed, 1);
                outbox.settles.push(Settle::Release(token, None));
                continue;
            }
            Received::Message(delivery) => delivery,
        };
        let env = &delivery.envelope;
        let key = match env.id_unique_per_send {
            true => JournalKey::of(env),
            // Ids may repeat in this DLQ (a file, AMQP message ids).
            false => occurrences.key_of(JournalKey::of(env)),
        };
        let past = shared.journal.as_ref().and_then(|j| j.past(&key));
        if let Some(past @ (PastState::Acked | PastState::SettledNotAcked)) = past {
            // Settled by an earlier run: ack without forwarding again.
            Stats::add(&stats.resumed, 1);
            let key = (past == PastState::SettledNotAcked).then_some(key);
            outbox.settles.push(Settle::Ack(delivery.token, key));
            continue;
        }
        let in_doubt = past == Some(PastState::InDoubt);
        if config.plan.as_ref().is_some_and(|p| p.planned(&env.id).is_none()) {
            Stats::add(&stats.not_in_plan, 1);
            outbox.settles.push(Settle::Release(delivery.token, None));
            continue;
        }
        if !env.failed_within(config.since, config.until) {
            Stats::add(&stats.out_of_window, 1);
            outbox.settles.push(Settle::Release(delivery.token, None));
            continue;
        }
        if config.max.is_some_and(|max| seq >= max) {
            // Past --max: this one stays in the DLQ and the pass ends.
            outbox.settles.push(Settle::Release(delivery.token, None));
            break;
        }
        // Room in the message memory; while there is none, what was read goes on and the stages behind free it.
        let body_len = delivery.envelope.body.len();
        let share = match shared.budget.try_take(body_len) {
            Some(share) => share,
            None => {
                if !outbox.send().await {
                    break;
                }
                tokio::select! {
                    biased;
                    () = shared.stop.cancelled() => {
                        // Not looked at: it stays in the DLQ as if never read.
                        outbox.settles.push(Settle::Release(delivery.token, None));
                        break;
                    }
                    share = shared.budget.take(body_len) => share,
                }
            }
        };
        Stats::add(&stats.read, 1);
        if config.max_replays.is_some_and(|max| env.replay_count >= max) {
            Stats::add(&stats.parked, 1);
            if config.park.is_some() && !config.dry_run {
                park_tx.send(Park { delivery, key }).await.ok();
            } else {
                outbox.settles.push(Settle::Release(delivery.token, Some(key)));
            }
            continue;
        }
        outbox.work.push(Work {
            seq,
            key,
            delivery,
            in_doubt,
            share,
        });
        seq += 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::Rate;

    #[test]
    fn the_open_window_keeps_four_windows_or_two_seconds_of_the_rate() {
        assert_eq!(open_window(None, 64), 256);
        assert_eq!(open_window(None, 500), 2000);
        assert_eq!(open_window(None, 1), 8, "never fewer than 8");
        assert_eq!(open_window(None, 1 << 20), 65_536, "never more than 65 536");
        let plan = |rate: f64| RatePlan {
            rate: Rate(rate),
            burst: 1,
            ramp: None,
        };
        assert_eq!(
            open_window(Some(&plan(100.0)), 500),
            200,
            "the rate decides, not the window"
        );
        assert_eq!(open_window(Some(&plan(0.5)), 64), 8);
    }

    #[tokio::test]
    async fn a_ready_message_is_taken_without_sending_the_chunk() {
        let flushed = std::cell::Cell::new(false);
        let flush = async {
            flushed.set(true);
            true
        };
        let got = ready_or_after(async { 7 }, flush, &CancellationToken::new()).await;
        assert_eq!(got, Some(7));
        assert!(
            !flushed.get(),
            "the chunk waits for more while the source has messages ready"
        );
    }

    #[tokio::test]
    async fn the_chunk_goes_on_before_the_reader_waits_for_the_source() {
        let (more_tx, more_rx) = tokio::sync::oneshot::channel::<u32>();
        let (flushed_tx, flushed_rx) = tokio::sync::oneshot::channel::<()>();
        // The source's next message comes only once the chunk read so far reached the stages behind.
        tokio::spawn(async move {
            if flushed_rx.await.is_ok() {
                let _ = more_tx.send(8);
            }
        });
        let flush = async {
            let _ = flushed_tx.send(());
            true
        };
        let next = async { more_rx.await.unwrap_or(0) };
        let got = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            ready_or_after(next, flush, &CancellationToken::new()),
        )
        .await;
        assert_eq!(got, Ok(Some(8)), "the reader held its chunk while the source waited");
    }

    #[tokio::test]
    async fn a_stop_ends_the_wait_and_so_does_a_gone_stage() {
        let stop = CancellationToken::new();
        stop.cancel();
        let never = std::future::pending::<u32>();
        assert_eq!(ready_or_after(never, async { true }, &stop).await, None);
        let never = std::future::pending::<u32>();
        let running = CancellationToken::new();
        let gone = ready_or_after(never, async { false }, &running);
        let gone = tokio::time::timeout(std::time::Duration::from_secs(5), gone).await;
        assert_eq!(
            gone,
            Ok(None),
            "the stages behind are gone: the reader stops rather than wait"
        );
    }

    #[test]
    fn the_nth_copy_of_a_key_gets_its_own_key() {
        let mut seen = Occurrences::default();
        let key = |text: &str| JournalKey::from_journal(text.into());
        assert_eq!(seen.key_of(key("a#r0")), key("a#r0"));
        assert_eq!(seen.key_of(key("b#r0")), key("b#r0"));
        let second = seen.key_of(key("a#r0"));
        assert_ne!(second, key("a#r0"));
        assert_ne!(seen.key_of(key("a#r0")), second, "a third copy differs from the second");
    }
}
