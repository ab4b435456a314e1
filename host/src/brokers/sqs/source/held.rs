//! What a source does with the messages it holds, in batches of ten through the one SQS batch loop
//! ([`run_batch`]): change their visibility (heartbeat, release) and delete them (ack).

use aws_sdk_sqs::types::{ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry};
use futures_util::StreamExt;

use super::Shared;
use crate::brokers::sqs::batch::{CallResult, MAX_ENTRIES, WholeCallRefused, run_batch};
use crate::brokers::sqs::explain;
use crate::core::backoff::Backoff;

/// Batch calls (delete, change visibility) in flight at once.
const BATCH_CALLS: usize = 8;

/// ChangeMessageVisibilityBatch for `(id, handle)` pairs; returns the ones that failed, with why.
pub(super) async fn change_visibility(
    shared: &Shared,
    entries: Vec<(String, String)>,
    seconds: i32,
) -> Vec<(String, String)> {
    let what = format!("changing visibility in {}", shared.what());
    let what = what.as_str();
    in_batches(entries, |chunk| async move {
        let results = run_batch(
            chunk.len(),
            Backoff::new(shared.url.reconnect_for),
            &shared.identity,
            WholeCallRefused::FailAll,
            |positions| {
                let request = positions.iter().enumerate().map(|(i, &entry)| {
                    ChangeMessageVisibilityBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(&chunk[entry].1)
                        .visibility_timeout(seconds)
                        .build()
                });
                let request = request.collect::<Result<Vec<_>, _>>();
                async move {
                    let request = request.map_err(|e| refused_request(&e))?;
                    let out = shared
                        .sqs
                        .client
                        .change_message_visibility_batch()
                        .queue_url(&shared.queue.url)
                        .set_entries(Some(request))
                        .send()
                        .await
                        .map_err(|e| explain(&e, what, &shared.sqs.place))?;
                    Ok(CallResult::from_response(
                        out.successful.iter().map(|ok| ok.id.as_str()),
                        out.failed,
                    ))
                }
            },
        )
        .await;
        failures(chunk, results)
    })
    .await
}

/// DeleteMessageBatch for `(id, handle)` pairs, retrying transient failures; records what was deleted
/// and returns what could not be, as `id: why`.
pub(super) async fn delete(shared: &Shared, entries: Vec<(String, String)>) -> Vec<String> {
    let what = format!("deleting from {}", shared.what());
    let what = what.as_str();
    let failed = in_batches(entries, |chunk| async move {
        let results = run_batch(
            chunk.len(),
            Backoff::new(shared.url.reconnect_for),
            &shared.identity,
            WholeCallRefused::FailAll,
            |positions| {
                let request = positions.iter().enumerate().map(|(i, &entry)| {
                    DeleteMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(&chunk[entry].1)
                        .build()
                });
                let request = request.collect::<Result<Vec<_>, _>>();
                async move {
                    let request = request.map_err(|e| refused_request(&e))?;
                    let out = shared
                        .sqs
                        .client
                        .delete_message_batch()
                        .queue_url(&shared.queue.url)
                        .set_entries(Some(request))
                        .send()
                        .await
                        .map_err(|e| explain(&e, what, &shared.sqs.place))?;
                    Ok(CallResult::from_response(
                        out.successful.iter().map(|ok| ok.id.as_str()),
                        out.failed,
                    ))
                }
            },
        )
        .await;
        {
            let mut state = shared.lock();
            for ((id, _), result) in chunk.iter().zip(&results) {
                if result.is_ok() {
                    state.held.remove(id);
                    state.deleted.insert(id.clone());
                }
            }
        }
        failures(chunk, results)
    })
    .await;
    failed.into_iter().map(|(id, why)| format!("{id}: {why}")).collect()
}

/// Run `per_chunk` on chunks of at most ten entries, [`BATCH_CALLS`] at a time; collect what it returns.
async fn in_batches<F, Fut>(entries: Vec<(String, String)>, per_chunk: F) -> Vec<(String, String)>
where
    F: Fn(Vec<(String, String)>) -> Fut,
    Fut: Future<Output = Vec<(String, String)>>,
{
    let chunks: Vec<Vec<(String, String)>> = entries.chunks(MAX_ENTRIES).map(<[_]>::to_vec).collect();
    futures_util::stream::iter(chunks.into_iter().map(per_chunk))
        .buffer_unordered(BATCH_CALLS)
        .flat_map(futures_util::stream::iter)
        .collect()
        .await
}

/// The `(id, why)` of the entries of `chunk` that failed.
fn failures(
    chunk: Vec<(String, String)>,
    results: Vec<Result<(), crate::brokers::sqs::batch::EntryError>>,
) -> Vec<(String, String)> {
    chunk
        .into_iter()
        .zip(results)
        .filter_map(|((id, _), result)| result.err().map(|e| (id, e.text)))
        .collect()
}

/// A request the SDK would not build (a missing field): not worth retrying.
fn refused_request(e: &aws_sdk_sqs::error::BuildError) -> crate::brokers::sqs::Explained {
    crate::brokers::sqs::Explained {
        text: e.to_string(),
        transient: false,
    }
}
