//! `sqs://orders-dlq` (or a queue URL or ARN): an Amazon SQS dead-letter queue.
//!
//! Several receivers (`receivers=4`) long-poll ReceiveMessage in batches of 10 with all message and
//! system attributes. Every received message is *held* by the source until it is settled:
//!
//! - **ack** (replayed and confirmed, or archived): DeleteMessageBatch, reading each entry's result.
//! - **release** (skip, failed, parked, not done): the message stays held, invisible, until the pass
//!   ends, then becomes visible again (ChangeMessageVisibility 0), so one pass never sees it twice.
//!   With `release=now` it becomes visible at once (not for FIFO queues: SQS would hand the same
//!   message back immediately).
//! - **heartbeat**: every third of the visibility timeout (`visibility=60s`), the visibility of every
//!   held message is extended, so a slow canary gate or a low rate never lets a message reappear and
//!   be processed twice.
//!
//! A message received again (its visibility lapsed, or SQS delivered a copy) is recognised by its
//! MessageId and not yielded twice; a copy of one already deleted is deleted. A message redrive
//! replayed in this run that failed again and came back (same replay id) waits for the next pass.
//! The pass ends when every receiver came back empty since the last new message and SQS reports no
//! visible messages (or, as the count lags, after five such rounds).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};

mod held;
mod receive;

use async_trait::async_trait;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{self as sqs, QueueInfo, ReleaseAt, SqsClient, SqsUrl};
use crate::core::AwsSettings;
use crate::core::adapter::{AckToken, Acker, AdapterError, Arrivals, PassSize, Received, Source, SourceMode};
use crate::core::envelope::Envelope;
use held::{change_visibility, delete};
use receive::{heartbeat_loop, receive_loop};

/// Most messages that came back kept between two looks of the re-poison breaker.
const MOST_RETURNED_KEPT: usize = 10_000;

/// The messages the receivers recognised as this run's replays coming back (they cannot be looked at
/// without receiving them, so the pass's receivers do it; they are held for the next pass).
struct SqsArrivals {
    shared: Arc<Shared>,
}

#[async_trait]
impl Arrivals for SqsArrivals {
    async fn poll(&mut self) -> Result<Vec<Envelope>, AdapterError> {
        let mut state = self.shared.state.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(std::mem::take(&mut state.returned))
    }
}

/// Reads one pass over an SQS queue.
pub struct SqsSource {
    shared: Arc<Shared>,
    pass_size: PassSize,
    rx: Option<mpsc::Receiver<Result<Received, AdapterError>>>,
    receivers: Vec<JoinHandle<()>>,
    heartbeat: Option<JoinHandle<()>>,
    /// Stops the receivers (pass drained, or finish).
    stop_receiving: CancellationToken,
    /// Stops the heartbeat (finish, after the receivers stopped).
    stop_heartbeat: CancellationToken,
}

/// What the source, its receivers, heartbeat and acker share.
struct Shared {
    sqs: SqsClient,
    url: SqsUrl,
    queue: QueueInfo,
    identity: String,
    mode: SourceMode,
    default_origin: Option<String>,
    state: Mutex<State>,
    /// Woken when a receive brought new messages: receivers that came back empty wait on it.
    fresh_messages: tokio::sync::Notify,
}

#[derive(Default)]
struct State {
    /// Every received message not deleted yet, by MessageId.
    held: HashMap<String, Held>,
    /// Messages deleted in this pass (a copy received later is deleted too).
    deleted: HashSet<String>,
    /// Released at once (`release=now`): held until the end if received again.
    released_now: HashSet<String>,
    /// Replay ids the messages yielded in this pass will carry when forwarded: a message carrying one
    /// came back during the run and belongs to the next pass.
    expected_back: HashSet<String>,
    seq: u64,
    /// Empty receives (no new message) since the last new message, across receivers.
    empty_streak: usize,
    came_back: u64,
    /// Messages that came back, not yet shown to the re-poison breaker.
    returned: Vec<Envelope>,
    received_again: u64,
    heartbeat_failures: u64,
    over_limit: bool,
}

struct Held {
    handle: String,
    released: bool,
    group: Option<String>,
}

impl SqsSource {
    /// Resolve the queue and read its attributes; nothing is received until the first [`Source::next`].
    pub async fn open(url: &str, mode: SourceMode, aws: &AwsSettings) -> Result<Self, AdapterError> {
        let parsed = SqsUrl::parse(url)?;
        parsed.refuse_options_of_other_side("source")?;
        let sqs = sqs::connect(aws, &parsed).await?;
        let queue = sqs::open_queue(&sqs, &parsed.queue, "source").await?;
        if queue.fifo && parsed.release == ReleaseAt::Now {
            return Err(AdapterError::Config(format!(
                "{}: release=now does not work with a FIFO queue: SQS would hand a released message straight \
                 back (it is first in its group). Leave release at its default (end of pass)",
                parsed.describe()
            )));
        }
        let default_origin = single_source_queue(&sqs, &queue).await;
        if queue.not_visible > 0 {
            tracing::warn!(
                "{}: SQS reports about {} messages in flight (held by another consumer or a stopped run); they \
                 are not part of this pass until their visibility timeout ends",
                queue.url,
                queue.not_visible
            );
        }
        let pass_size = PassSize::default();
        let _ = pass_size.set(queue.visible);
        Ok(Self {
            shared: Arc::new(Shared {
                identity: queue.url.clone(),
                sqs,
                url: parsed,
                queue,
                mode,
                default_origin,
                state: Mutex::new(State::default()),
                fresh_messages: tokio::sync::Notify::new(),
            }),
            pass_size,
            rx: None,
            receivers: Vec::new(),
            heartbeat: None,
            stop_receiving: CancellationToken::new(),
            stop_heartbeat: CancellationToken::new(),
        })
    }

    fn start(&mut self) -> mpsc::Receiver<Result<Received, AdapterError>> {
        let (tx, rx) = mpsc::channel(10 * self.shared.url.receivers);
        for _ in 0..self.shared.url.receivers {
            self.receivers.push(tokio::spawn(receive_loop(
                self.shared.clone(),
                tx.clone(),
                self.stop_receiving.clone(),
            )));
        }
        self.heartbeat = Some(tokio::spawn(heartbeat_loop(
            self.shared.clone(),
            self.stop_heartbeat.clone(),
        )));
        rx
    }
}

/// The name of the one queue whose redrive policy points at this DLQ, if there is exactly one.
async fn single_source_queue(sqs: &SqsClient, queue: &QueueInfo) -> Option<String> {
    match sqs::list_source_queues(sqs, &queue.url).await {
        Ok(urls) if urls.len() == 1 => urls[0].rsplit('/').next().map(str::to_owned),
        _ => None,
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn what(&self) -> String {
        format!("source queue `{}`", self.queue.name)
    }
}

#[async_trait]
impl Source for SqsSource {
    fn identity(&self) -> &str {
        &self.shared.identity
    }

    fn pass_size(&self) -> PassSize {
        self.pass_size.clone()
    }

    async fn next(&mut self) -> Result<Option<Received>, AdapterError> {
        if self.rx.is_none() {
            self.rx = Some(self.start());
        }
        let Some(rx) = self.rx.as_mut() else { return Ok(None) };
        match rx.recv().await {
            Some(Ok(received)) => Ok(Some(received)),
            Some(Err(e)) => Err(e),
            None => Ok(None),
        }
    }

    fn acker(&self) -> Arc<dyn Acker> {
        Arc::new(SqsAcker {
            shared: self.shared.clone(),
        })
    }

    fn arrivals(&self) -> Option<Box<dyn Arrivals>> {
        Some(Box::new(SqsArrivals {
            shared: self.shared.clone(),
        }))
    }

    async fn finish(&mut self) -> Result<Vec<String>, AdapterError> {
        self.stop_receiving.cancel();
        self.rx = None; // receivers blocked on a full channel see it closed
        for receiver in self.receivers.drain(..) {
            let _ = receiver.await;
        }
        self.stop_heartbeat.cancel();
        if let Some(heartbeat) = self.heartbeat.take() {
            let _ = heartbeat.await;
        }
        let shared = &self.shared;
        let (entries, blocked_groups) = {
            let state = shared.lock();
            let entries: Vec<(String, String)> = state
                .held
                .iter()
                .map(|(id, h)| (id.clone(), h.handle.clone()))
                .collect();
            let groups: HashSet<&String> = state
                .held
                .values()
                .filter(|h| h.released)
                .filter_map(|h| h.group.as_ref())
                .collect();
            (entries, groups.len())
        };
        let mut notes = Vec::new();
        let total = entries.len();
        let failures = change_visibility(shared, entries, 0).await;
        if total > 0 {
            notes.push(format!(
                "{} messages made visible again in the DLQ (skipped, failed, parked or not done)",
                total - failures.len()
            ));
        }
        if !failures.is_empty() {
            notes.push(format!(
                "{} messages could not be made visible at once (e.g. {}: {}); they reappear when their visibility \
                 timeout ({}) ends",
                failures.len(),
                failures[0].0,
                failures[0].1,
                humantime::format_duration(shared.url.visibility)
            ));
        }
        let mut state = shared.lock();
        state.held.clear();
        if state.came_back > 0 {
            notes.push(format!(
                "{} messages came back to the DLQ during this run (replayed, then failed again); they are left for \
                 the next pass",
                state.came_back
            ));
        }
        if shared.queue.fifo && blocked_groups > 0 {
            notes.push(format!(
                "{blocked_groups} FIFO message groups stopped at a message that stays in the DLQ: SQS hands out the \
                 rest of a group only after it, so their later messages wait for a later pass"
            ));
        }
        if state.over_limit {
            notes.push(
                "SQS refused to hand out more messages (OverLimit: too many in flight, 120,000 for a standard \
                 queue); run again to continue"
                    .into(),
            );
        }
        if state.heartbeat_failures > 0 {
            notes.push(format!(
                "{} visibility extensions failed (see the warnings)",
                state.heartbeat_failures
            ));
        }
        Ok(notes)
    }
}

/// Deletes (ack) and releases messages of an [`SqsSource`].
struct SqsAcker {
    shared: Arc<Shared>,
}

#[async_trait]
impl Acker for SqsAcker {
    async fn ack(&self, tokens: &[AckToken]) -> Result<(), AdapterError> {
        if self.shared.mode == SourceMode::Peek {
            return Ok(());
        }
        let entries: Vec<(String, String)> = {
            let state = self.shared.lock();
            tokens
                .iter()
                .filter_map(|t| {
                    let key = t.key.as_ref()?;
                    state.held.get(key).map(|h| (key.clone(), h.handle.clone()))
                })
                .collect()
        };
        let failures = delete(&self.shared, entries).await;
        if failures.is_empty() {
            Ok(())
        } else {
            Err(AdapterError::Broker(format!(
                "{} of {} deletes from {} failed (they stay in the DLQ; a resumed run removes them without \
                 forwarding again): {}",
                failures.len(),
                tokens.len(),
                self.shared.what(),
                failures.iter().take(3).cloned().collect::<Vec<_>>().join("; ")
            )))
        }
    }

    async fn release(&self, tokens: &[AckToken]) -> Result<(), AdapterError> {
        if self.shared.url.release == ReleaseAt::End || self.shared.mode == SourceMode::Peek {
            let mut state = self.shared.lock();
            for token in tokens {
                if let Some(held) = token.key.as_ref().and_then(|key| state.held.get_mut(key)) {
                    held.released = true;
                }
            }
            return Ok(());
        }
        let entries: Vec<(String, String)> = {
            let mut state = self.shared.lock();
            let mut entries = Vec::with_capacity(tokens.len());
            for key in tokens.iter().filter_map(|t| t.key.as_ref()) {
                if let Some(held) = state.held.remove(key) {
                    entries.push((key.clone(), held.handle));
                    state.released_now.insert(key.clone());
                }
            }
            entries
        };
        let failures = change_visibility(&self.shared, entries, 0).await;
        if failures.is_empty() {
            Ok(())
        } else {
            Err(AdapterError::Broker(format!(
                "{} messages could not be made visible at once (they reappear after their visibility timeout): {}",
                failures.len(),
                failures
                    .iter()
                    .take(3)
                    .map(|(id, e)| format!("{id}: {e}"))
                    .collect::<Vec<_>>()
                    .join("; ")
            )))
        }
    }
}
