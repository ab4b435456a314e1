//! `sqs://orders-staging` (or a queue URL or ARN): send replayed messages to Amazon SQS; and `--to origin`
//! for an SQS source: back to the queue each message was dead-lettered from.
//!
//! Messages go in SendMessageBatch calls of up to 10 entries and 256 KiB; a message bigger than that
//! (up to the queue's MaximumMessageSize) goes alone with SendMessage, and one over the queue's limit is
//! refused with a reason, never truncated. Every entry's result is read: only entries SQS accepted
//! count as forwarded; entries that failed on SQS's side are retried with backoff; a whole call SQS
//! refuses is retried entry by entry, so one bad message does not fail its neighbours.
//!
//! FIFO destinations: each message keeps its group (MessageGroupId), batches of one destination go one
//! after the other so order within a group holds, and the replay id is the MessageDeduplicationId, so
//! a resumed run cannot create a duplicate within SQS's five-minute deduplication window.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use futures_util::StreamExt;
use tokio::sync::Mutex;

use super::attributes::{Outgoing, SqsNative, outgoing};
use super::batch::{CallResult, EntryError, WholeCallRefused, run_batch};
use super::{
    self as sqs, Explained, QueueInfo, SqsClient, SqsUrl, chunk_indices, explain, outcome_unknown, send_call_settings,
};
use crate::core::AwsSettings;
use crate::core::adapter::{AdapterError, SendError, Sink};
use crate::core::backoff::Backoff;
use crate::core::envelope::Envelope;
use crate::core::ids::id_digest;

/// Most bytes one SendMessageBatch call carries (SQS's batch limit, counted as SQS counts).
const BATCH_BYTES: usize = 256 * 1024;

/// Sends replayed messages to SQS.
pub struct SqsSink {
    sqs: SqsClient,
    url: SqsUrl,
    route: Route,
    describe: String,
    /// Origin mode: destinations resolved so far, by ARN.
    resolved: Mutex<HashMap<String, Result<Arc<QueueInfo>, String>>>,
}

enum Route {
    Fixed(Arc<QueueInfo>),
    /// Each message's DeadLetterQueueSourceArn; without one, the DLQ's only source queue (or why not).
    Origin {
        fallback: Result<Arc<QueueInfo>, String>,
    },
}

/// One message ready for SQS, with its place in the batch given to [`Sink::send`].
struct Prepared {
    index: usize,
    /// The message's id, for messages.
    id: String,
    out: Outgoing,
    group_id: Option<String>,
    dedup_id: Option<String>,
}

impl SqsSink {
    /// Open a destination queue; fails clearly when it does not exist or SQS refuses.
    pub async fn open(url: &str, aws: &AwsSettings) -> Result<Self, AdapterError> {
        let parsed = SqsUrl::parse(url)?;
        parsed.refuse_options_of_other_side("destination")?;
        let sqs = sqs::connect(aws, &parsed).await?;
        let queue = sqs::open_queue(&sqs, &parsed.queue, "destination").await?;
        Ok(Self {
            describe: queue.url.clone(),
            route: Route::Fixed(Arc::new(queue)),
            sqs,
            url: parsed,
            resolved: Mutex::new(HashMap::new()),
        })
    }

    /// `--to origin` for the SQS source `source_url`: each message goes back to the queue named by its
    /// DeadLetterQueueSourceArn; a message without one goes to the one queue whose redrive policy names
    /// the DLQ (ListDeadLetterSourceQueues), and fails with a reason when there are none or several.
    pub async fn origin(source_url: &str, aws: &AwsSettings) -> Result<Self, AdapterError> {
        let parsed = SqsUrl::parse(source_url)?;
        let sqs = sqs::connect(aws, &parsed).await?;
        let dlq = sqs::open_queue(&sqs, &parsed.queue, "source").await?;
        let fallback = match sqs::list_source_queues(&sqs, &dlq.url).await {
            Ok(urls) => match urls.as_slice() {
                [one] => Ok(Arc::new(sqs::queue_info(&sqs, one, "origin").await?)),
                [] => Err(format!(
                    "no queue names {} as its dead-letter queue (ListDeadLetterSourceQueues is empty) and the message \
                     has no DeadLetterQueueSourceArn; replay it with --to <queue>",
                    dlq.name
                )),
                many => Err(format!(
                    "{} queues name {} as their dead-letter queue ({}) and the message has no \
                     DeadLetterQueueSourceArn, so its origin is ambiguous; replay it with --to <one of them>",
                    many.len(),
                    dlq.name,
                    many.iter()
                        .map(|u| u.rsplit('/').next().unwrap_or(u))
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
            },
            Err(e) => Err(format!("the origin is unknown: {e}")),
        };
        let describe = match &fallback {
            Ok(q) => format!("origin (DeadLetterQueueSourceArn of each message, else {})", q.url),
            Err(why) => {
                tracing::warn!("--to origin: {why}");
                "origin (DeadLetterQueueSourceArn of each message)".to_owned()
            }
        };
        Ok(Self {
            describe,
            route: Route::Origin { fallback },
            sqs,
            url: parsed,
            resolved: Mutex::new(HashMap::new()),
        })
    }

    /// The queue a message goes to, or why it cannot go anywhere.
    async fn target(&self, env: &Envelope) -> Result<Arc<QueueInfo>, String> {
        let fallback = match &self.route {
            Route::Fixed(queue) => return Ok(queue.clone()),
            Route::Origin { fallback } => fallback,
        };
        let Some(arn) = env.native.get::<SqsNative>().and_then(|n| n.source_arn.clone()) else {
            return fallback.clone();
        };
        let mut resolved = self.resolved.lock().await;
        if let Some(known) = resolved.get(&arn) {
            return known.clone();
        }
        let result = match SqsUrl::parse(&arn) {
            Ok(parsed) => sqs::open_queue(&self.sqs, &parsed.queue, "origin")
                .await
                .map(Arc::new)
                .map_err(|e| e.to_string()),
            Err(e) => Err(format!("DeadLetterQueueSourceArn {arn}: {e}")),
        };
        resolved.insert(arn, result.clone());
        result
    }

    /// Prepare one message for `queue`, or say why it cannot go.
    fn prepare(&self, index: usize, env: &Envelope, queue: &QueueInfo) -> Result<Prepared, String> {
        let out = outgoing(env)?;
        if out.size > queue.max_message_size {
            return Err(format!(
                "the message is {} bytes with its attributes, and queue {} accepts at most {} (MaximumMessageSize); \
                 it is not truncated: shrink it with a filter or raise the queue's limit",
                out.size, queue.name, queue.max_message_size
            ));
        }
        let (group_id, dedup_id) = if queue.fifo {
            let group = out
                .group_id
                .clone()
                .or_else(|| self.url.group_id.clone())
                .unwrap_or_else(|| env.id.clone());
            let dedup = out
                .replay_id
                .clone()
                .unwrap_or_else(|| format!("{:032x}", id_digest(&env.id)));
            (Some(group), Some(dedup))
        } else {
            (None, None)
        };
        Ok(Prepared {
            index,
            id: env.id.clone(),
            out,
            group_id,
            dedup_id,
        })
    }

    /// Send one chunk (≤ 10 entries, ≤ 256 KiB, or one big message) to `queue`, through the one SQS batch
    /// loop: entries that failed on SQS's side are retried, a whole call SQS refuses is retried entry by
    /// entry.
    async fn send_chunk(
        &self,
        queue: &QueueInfo,
        all: &[Prepared],
        chunk: Vec<usize>,
    ) -> Vec<(usize, Result<(), SendError>)> {
        let chunk: Vec<&Prepared> = chunk.into_iter().map(|i| &all[i]).collect();
        if let [one] = chunk.as_slice()
            && one.out.size > BATCH_BYTES
        {
            return vec![(one.index, self.send_one(queue, one).await)];
        }
        let what = format!("sending to queue `{}`", queue.name);
        let results = run_batch(
            chunk.len(),
            Backoff::new(self.url.reconnect_for),
            &self.sqs.place,
            WholeCallRefused::TryEachAlone,
            |positions| {
                let entries = positions
                    .iter()
                    .enumerate()
                    .map(|(i, &entry)| batch_entry(i, chunk[entry]))
                    .collect::<Result<Vec<_>, _>>();
                let sent: Vec<&Prepared> = positions.iter().map(|&entry| chunk[entry]).collect();
                let what = &what;
                async move {
                    let entries = entries.map_err(|e| Explained {
                        text: e.to_string(),
                        transient: false,
                    })?;
                    let out = self
                        .sqs
                        .client
                        .send_message_batch()
                        .queue_url(&queue.url)
                        .set_entries(Some(entries))
                        .customize()
                        .config_override(send_call_settings())
                        .send()
                        .await
                        .map_err(|e| {
                            let explained = explain(&e, what, &self.sqs.place);
                            if outcome_unknown(&e) {
                                for p in &sent {
                                    report_unknown_outcome(p, &explained);
                                }
                            }
                            explained
                        })?;
                    Ok(CallResult::from_response(
                        out.successful.iter().map(|ok| ok.id.as_str()),
                        out.failed,
                    ))
                }
            },
        )
        .await;
        chunk
            .iter()
            .zip(results)
            .map(|(p, result)| (p.index, result.map_err(send_error)))
            .collect()
    }

    /// SendMessage for a message too big to share a batch.
    async fn send_one(&self, queue: &QueueInfo, p: &Prepared) -> Result<(), SendError> {
        let mut backoff = Backoff::new(self.url.reconnect_for);
        loop {
            let sent = self
                .sqs
                .client
                .send_message()
                .queue_url(&queue.url)
                .message_body(&p.out.body)
                .set_message_attributes(Some(p.out.attributes.clone()))
                .set_message_group_id(p.group_id.clone())
                .set_message_deduplication_id(p.dedup_id.clone())
                .customize()
                .config_override(send_call_settings())
                .send()
                .await;
            match sent {
                Ok(_) => return Ok(()),
                Err(e) => {
                    let explained = explain(&e, &format!("sending to queue `{}`", queue.name), &self.sqs.place);
                    if outcome_unknown(&e) {
                        report_unknown_outcome(p, &explained);
                    }
                    let error = AdapterError::Broker(explained.text.clone());
                    if !(explained.transient && backoff.wait(&self.sqs.place, &error).await) {
                        return Err(match explained.transient {
                            true => SendError::retryable(explained.text),
                            false => SendError::refused(explained.text),
                        });
                    }
                }
            }
        }
    }
}

/// A send went out and its answer was lost: SQS may hold the message already, so trying again (now, or in a
/// later run) may make a second copy. Said once per message and try, so the copies a run may have made are
/// counted, never silent. A FIFO destination deduplicates them by the replay id.
fn report_unknown_outcome(p: &Prepared, why: &Explained) {
    match p.dedup_id {
        Some(_) => tracing::warn!(
            id = %p.id,
            "no answer to its send ({}); sending it again is safe: the FIFO queue drops a copy with the same \
             deduplication id within five minutes",
            why.text
        ),
        None => tracing::warn!(
            id = %p.id,
            "no answer to its send ({}); it may have arrived, so a copy may arrive twice (with the same replay id)",
            why.text
        ),
    }
}

fn send_error(e: EntryError) -> SendError {
    match e.retryable {
        true => SendError::retryable(e.text),
        false => SendError::refused(e.text),
    }
}

fn batch_entry(i: usize, p: &Prepared) -> Result<SendMessageBatchRequestEntry, aws_sdk_sqs::error::BuildError> {
    SendMessageBatchRequestEntry::builder()
        .id(i.to_string())
        .message_body(&p.out.body)
        .set_message_attributes((!p.out.attributes.is_empty()).then(|| p.out.attributes.clone()))
        .set_message_group_id(p.group_id.clone())
        .set_message_deduplication_id(p.dedup_id.clone())
        .build()
}

#[async_trait]
impl Sink for SqsSink {
    fn describe(&self) -> String {
        self.describe.clone()
    }

    fn max_batch(&self) -> usize {
        100
    }

    async fn send(&self, batch: &[Envelope]) -> Vec<Result<(), SendError>> {
        let mut results: Vec<Result<(), SendError>> = vec![Err(SendError::retryable("not sent")); batch.len()];
        // Group by destination, keeping batch order within each.
        let mut by_queue: Vec<(Arc<QueueInfo>, Vec<Prepared>)> = Vec::new();
        for (index, env) in batch.iter().enumerate() {
            let prepared = match self.target(env).await {
                Ok(queue) => self.prepare(index, env, &queue).map(|p| (queue, p)),
                Err(why) => Err(why),
            };
            match prepared {
                Ok((queue, p)) => match by_queue.iter_mut().find(|(q, _)| q.url == queue.url) {
                    Some((_, list)) => list.push(p),
                    None => by_queue.push((queue, vec![p])),
                },
                Err(why) => results[index] = Err(SendError::refused(why)),
            }
        }
        for (queue, prepared) in &by_queue {
            let chunks = chunk_indices(prepared.len(), BATCH_BYTES, |i| prepared[i].out.size);
            // FIFO: one call after the other, so order within each group holds.
            let in_flight = if queue.fifo { 1 } else { self.url.concurrency };
            let done: Vec<Vec<(usize, Result<(), SendError>)>> =
                futures_util::stream::iter(chunks.into_iter().map(|chunk| self.send_chunk(queue, prepared, chunk)))
                    .buffered(in_flight)
                    .collect()
                    .await;
            for (index, result) in done.into_iter().flatten() {
                results[index] = result;
            }
        }
        results
    }

    async fn close(&self) -> Result<(), AdapterError> {
        Ok(())
    }
}
