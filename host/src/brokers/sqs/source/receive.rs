//! The receivers and the heartbeat of an SQS source: long-polling ReceiveMessage, sorting out what is new,
//! telling when the pass is drained, and keeping held messages invisible.

use std::sync::Arc;

use aws_sdk_sqs::types::MessageSystemAttributeName;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::held::{change_visibility, delete};
use super::{Held, MOST_RETURNED_KEPT, Shared};
use crate::brokers::sqs::{self, attributes, explain};
use crate::core::adapter::{AckToken, AdapterError, Delivery, Received, SourceMode};
use crate::core::backoff::Backoff;
use crate::core::envelope::REPLAY_ID_ATTRIBUTE;
use crate::core::ids::{JournalKey, replay_id};

/// One receiver: long-poll, sort out what is new, hand it to the pipeline; until stopped or drained.
pub(super) async fn receive_loop(
    shared: Arc<Shared>,
    tx: mpsc::Sender<Result<Received, AdapterError>>,
    stop: CancellationToken,
) {
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
///
/// Messages that came back (replayed in this run, failed again) are held for the next pass and shown to the
/// re-poison breaker through [`super::SqsArrivals`].
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
            if state.returned.len() < MOST_RETURNED_KEPT {
                state.returned.push(envelope);
            }
            continue;
        }
        state.seq += 1;
        let seq = state.seq;
        state
            .expected_back
            .insert(replay_id(&shared.identity, &JournalKey::of(&envelope)));
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
            token: AckToken { seq, key: Some(id) },
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
pub(super) async fn heartbeat_loop(shared: Arc<Shared>, stop: CancellationToken) {
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
