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

use async_trait::async_trait;
use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry, MessageSystemAttributeName,
};
use futures_util::StreamExt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{AckToken, Acker, AdapterError, Delivery, PassSize, Received, Source, SourceMode};
use crate::message::REPLAY_ID_ATTRIBUTE;
use crate::pipeline::{journal_key, replay_id};
use crate::retry::Backoff;
use crate::sqs::{self, AwsSettings, QueueInfo, ReleaseAt, SqsClient, SqsUrl, attributes, explain};

/// Batch calls (delete, change visibility) in flight at once.
const BATCH_CALLS: usize = 8;

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

/// One receiver: long-poll, sort out what is new, hand it to the pipeline; until stopped or drained.
async fn receive_loop(shared: Arc<Shared>, tx: mpsc::Sender<Result<Received, AdapterError>>, stop: CancellationToken) {
    let url = &shared.url;
    let mut backoff: Option<Backoff> = None;
    while !stop.is_cancelled() {
        // A receive in flight is never cancelled: its messages would stay invisible, unknown to us.
        let result = shared
            .sqs
            .client
            .receive_message()
            .queue_url(&shared.queue.url)
            .max_number_of_messages(10)
            .wait_time_seconds(url.wait.as_secs() as i32)
            .visibility_timeout(url.visibility.as_secs() as i32)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .message_attribute_names("All")
            .send()
            .await;
        let messages = match result {
            Ok(out) => {
                backoff = None;
                out.messages.unwrap_or_default()
            }
            Err(e) => {
                let explained = explain(&e, &format!("receiving from {}", shared.what()), &shared.sqs.place);
                if e.as_service_error()
                    .and_then(|s| aws_sdk_sqs::error::ProvideErrorMetadata::code(s))
                    == Some("OverLimit")
                {
                    shared.lock().over_limit = true;
                    stop.cancel();
                    break;
                }
                let error = AdapterError::Broker(explained.text.clone());
                if explained.transient {
                    let b = backoff.get_or_insert_with(|| Backoff::new(url.reconnect_for));
                    if b.wait(&shared.identity, &error).await {
                        continue;
                    }
                }
                stop.cancel();
                let _ = tx.send(Err(error)).await;
                break;
            }
        };
        let (fresh, copies_of_deleted) = sort_received(&shared, messages);
        if !copies_of_deleted.is_empty() && shared.mode == SourceMode::Consume {
            let failures = delete(&shared, copies_of_deleted).await;
            for f in failures {
                tracing::warn!(
                    "{}: could not delete a second copy of a replayed message: {f}",
                    shared.identity
                );
            }
        }
        if fresh.is_empty() {
            if drained(&shared).await {
                stop.cancel();
                break;
            }
            // Until every receiver has come back empty, wait for them instead of polling again: a new long
            // poll now would keep this receiver (and the end of the pass) waiting for `wait` once the others
            // find the queue empty. New messages elsewhere, or `wait`, start the next poll.
            if shared.lock().empty_streak < url.receivers {
                tokio::select! {
                    () = stop.cancelled() => break,
                    () = shared.fresh_messages.notified() => {}
                    () = tokio::time::sleep(url.wait) => {}
                }
            }
            continue;
        }
        shared.fresh_messages.notify_waiters();
        for delivery in fresh {
            // Unsent ones stay held and are released by finish.
            tokio::select! {
                biased;
                r = tx.send(Ok(Received::Message(delivery))) => if r.is_err() { return },
                () = stop.cancelled() => return,
            }
        }
    }
}

/// Record what a receive brought: new messages become deliveries; copies of held ones refresh their
/// receipt handle; copies of deleted ones are returned to be deleted again.
fn sort_received(
    shared: &Shared,
    messages: Vec<aws_sdk_sqs::types::Message>,
) -> (Vec<Delivery>, Vec<(String, String)>) {
    let mut fresh = Vec::new();
    let mut copies_of_deleted = Vec::new();
    let mut state = shared.lock();
    for message in messages {
        let (Some(id), Some(handle)) = (message.message_id.clone(), message.receipt_handle.clone()) else {
            tracing::warn!(
                "{}: SQS returned a message without id or receipt handle; ignored",
                shared.identity
            );
            continue;
        };
        if let Some(held) = state.held.get_mut(&id) {
            held.handle = handle;
            state.received_again += 1;
            continue;
        }
        if state.deleted.contains(&id) {
            copies_of_deleted.push((id, handle));
            continue;
        }
        let group = message
            .attributes
            .as_ref()
            .and_then(|a| a.get(&MessageSystemAttributeName::MessageGroupId))
            .cloned();
        if state.released_now.contains(&id) {
            state.held.insert(
                id,
                Held {
                    handle,
                    released: true,
                    group,
                },
            );
            state.received_again += 1;
            continue;
        }
        let envelope = attributes::envelope(&message, &shared.queue.name, shared.default_origin.as_deref());
        if envelope
            .attribute(REPLAY_ID_ATTRIBUTE)
            .is_some_and(|rid| state.expected_back.contains(rid))
        {
            state.held.insert(
                id,
                Held {
                    handle,
                    released: true,
                    group,
                },
            );
            state.came_back += 1;
            continue;
        }
        state.seq += 1;
        let seq = state.seq;
        state
            .expected_back
            .insert(replay_id(&shared.identity, &journal_key(&envelope)));
        state.held.insert(
            id.clone(),
            Held {
                handle,
                released: false,
                group,
            },
        );
        fresh.push(Delivery {
            envelope,
            token: AckToken { seq, key: id },
        });
    }
    if fresh.is_empty() {
        state.empty_streak += 1;
    } else {
        state.empty_streak = 0;
    }
    (fresh, copies_of_deleted)
}

/// After an empty receive: is the pass over? Every receiver came back empty since the last new message
/// and SQS counts no visible message, or that happened five times over (the count lags behind).
async fn drained(shared: &Shared) -> bool {
    let streak = shared.lock().empty_streak;
    let receivers = shared.url.receivers;
    if streak < receivers {
        return false;
    }
    if streak >= receivers * 5 {
        return true;
    }
    match sqs::queue_info(&shared.sqs, &shared.queue.url, "source").await {
        Ok(info) => info.visible == 0,
        Err(_) => false,
    }
}

/// Keep every held message invisible: extend its visibility every third of the timeout.
async fn heartbeat_loop(shared: Arc<Shared>, stop: CancellationToken) {
    let every = shared.url.visibility / 3;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
        let entries: Vec<(String, String)> = shared
            .lock()
            .held
            .iter()
            .map(|(id, h)| (id.clone(), h.handle.clone()))
            .collect();
        let failures = change_visibility(&shared, entries, shared.url.visibility.as_secs() as i32).await;
        let mut state = shared.lock();
        for (id, problem) in failures {
            // A message deleted meanwhile has no valid handle any more: nothing to keep.
            if state.held.contains_key(&id) {
                state.heartbeat_failures += 1;
                tracing::warn!(
                    "{}: could not extend the visibility of {id} ({problem}); if it reappears it is recognised and not \
                     processed twice",
                    shared.identity
                );
            }
        }
    }
}

/// ChangeMessageVisibilityBatch for `(id, handle)` pairs; returns the ones that failed, with why.
async fn change_visibility(shared: &Shared, entries: Vec<(String, String)>, seconds: i32) -> Vec<(String, String)> {
    let chunks: Vec<Vec<(String, String)>> = entries.chunks(10).map(<[_]>::to_vec).collect();
    futures_util::stream::iter(
        chunks
            .into_iter()
            .map(|chunk| change_visibility_chunk(shared, chunk, seconds)),
    )
    .buffer_unordered(BATCH_CALLS)
    .flat_map(futures_util::stream::iter)
    .collect()
    .await
}

async fn change_visibility_chunk(shared: &Shared, chunk: Vec<(String, String)>, seconds: i32) -> Vec<(String, String)> {
    let request = chunk
        .iter()
        .enumerate()
        .map(|(i, (_, handle))| {
            ChangeMessageVisibilityBatchRequestEntry::builder()
                .id(i.to_string())
                .receipt_handle(handle)
                .visibility_timeout(seconds)
                .build()
        })
        .collect::<Result<Vec<_>, _>>();
    let request = match request {
        Ok(r) => r,
        Err(e) => return chunk.iter().map(|(id, _)| (id.clone(), e.to_string())).collect(),
    };
    let result = shared
        .sqs
        .client
        .change_message_visibility_batch()
        .queue_url(&shared.queue.url)
        .set_entries(Some(request))
        .send()
        .await;
    match result {
        Ok(out) => out
            .failed
            .into_iter()
            .filter_map(|f| {
                let i: usize = f.id.parse().ok()?;
                Some((
                    chunk.get(i)?.0.clone(),
                    format!("{}: {}", f.code, f.message.unwrap_or_default()),
                ))
            })
            .collect(),
        Err(e) => {
            let text = explain(&e, "changing visibility", &shared.sqs.place).text;
            chunk.iter().map(|(id, _)| (id.clone(), text.clone())).collect()
        }
    }
}

/// DeleteMessageBatch for `(id, handle)` pairs, retrying transient failures; records what was deleted
/// and returns what could not be, with why.
async fn delete(shared: &Shared, entries: Vec<(String, String)>) -> Vec<String> {
    let chunks: Vec<Vec<(String, String)>> = entries.chunks(10).map(<[_]>::to_vec).collect();
    futures_util::stream::iter(chunks.into_iter().map(|chunk| delete_chunk(shared, chunk)))
        .buffer_unordered(BATCH_CALLS)
        .flat_map(futures_util::stream::iter)
        .collect()
        .await
}

async fn delete_chunk(shared: &Shared, chunk: Vec<(String, String)>) -> Vec<String> {
    let mut backoff = Backoff::new(shared.url.reconnect_for);
    let mut pending: Vec<(String, String)> = chunk;
    let mut failures = Vec::new();
    while !pending.is_empty() {
        let request = pending
            .iter()
            .enumerate()
            .map(|(i, (_, handle))| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(handle)
                    .build()
            })
            .collect::<Result<Vec<_>, _>>();
        let request = match request {
            Ok(r) => r,
            Err(e) => {
                failures.extend(pending.iter().map(|(id, _)| format!("{id}: {e}")));
                break;
            }
        };
        let result = shared
            .sqs
            .client
            .delete_message_batch()
            .queue_url(&shared.queue.url)
            .set_entries(Some(request))
            .send()
            .await;
        let out = match result {
            Ok(out) => out,
            Err(e) => {
                let explained = explain(&e, &format!("deleting from {}", shared.what()), &shared.sqs.place);
                let error = AdapterError::Broker(explained.text.clone());
                if explained.transient && backoff.wait(&shared.identity, &error).await {
                    continue;
                }
                failures.extend(pending.iter().map(|(id, _)| format!("{id}: {}", explained.text)));
                break;
            }
        };
        {
            let mut state = shared.lock();
            for ok in &out.successful {
                if let Some((id, _)) = ok.id.parse::<usize>().ok().and_then(|i| pending.get(i)) {
                    state.held.remove(id);
                    state.deleted.insert(id.clone());
                }
            }
        }
        let mut retry = Vec::new();
        for failed in out.failed {
            let Some(entry) = failed.id.parse::<usize>().ok().and_then(|i| pending.get(i)) else {
                continue;
            };
            if !failed.sender_fault && sqs::is_transient_code(&failed.code) {
                retry.push(entry.clone());
            } else {
                let message = failed.message.unwrap_or_default();
                failures.push(format!("{}: {} {message}", entry.0, failed.code));
            }
        }
        pending = retry;
        let error = AdapterError::Broker(format!("{} deletes failed for now", pending.len()));
        if !pending.is_empty() && !backoff.wait(&shared.identity, &error).await {
            failures.extend(
                pending
                    .iter()
                    .map(|(id, _)| format!("{id}: still failing after retries")),
            );
            break;
        }
    }
    failures
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
                .filter_map(|t| state.held.get(&t.key).map(|h| (t.key.clone(), h.handle.clone())))
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
                if let Some(held) = state.held.get_mut(&token.key) {
                    held.released = true;
                }
            }
            return Ok(());
        }
        let entries: Vec<(String, String)> = {
            let mut state = self.shared.lock();
            let mut entries = Vec::with_capacity(tokens.len());
            for token in tokens {
                if let Some(held) = state.held.remove(&token.key) {
                    entries.push((token.key.clone(), held.handle));
                    state.released_now.insert(token.key.clone());
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
