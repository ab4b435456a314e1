//! SQS batches: how messages are cut into batch calls, and the one loop every batch call goes through
//! (SendMessageBatch, DeleteMessageBatch, ChangeMessageVisibilityBatch): per-entry results, entries that
//! failed on SQS's side retried with backoff, a whole call SQS refuses optionally split into single entries
//! so one bad entry does not fail its neighbours.

use aws_sdk_sqs::types::BatchResultErrorEntry;

use super::client::Explained;
use crate::core::adapter::AdapterError;
use crate::core::backoff::Backoff;

/// Most entries one SQS batch call takes.
pub const MAX_ENTRIES: usize = 10;

/// Why an entry did not go through, for good.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntryError {
    /// What SQS (or the connection) said.
    pub text: String,
    /// True when it may go through later (throttling, a server error, SQS unreachable); false when SQS
    /// refused this entry.
    pub retryable: bool,
}

/// What one batch call returned, by position in its request.
#[derive(Debug, Default)]
pub struct CallResult {
    /// Positions SQS accepted.
    pub successful: Vec<usize>,
    /// Positions SQS refused, with why.
    pub failed: Vec<(usize, EntryFailure)>,
}

/// An entry SQS refused in a batch call.
#[derive(Clone, Debug)]
pub struct EntryFailure {
    /// SQS's error code.
    pub code: String,
    /// SQS's message.
    pub message: String,
    /// True when the entry itself is at fault (SQS will refuse it again); false for SQS-side failures.
    pub sender_fault: bool,
}

impl CallResult {
    /// Read a batch response: the ids of its successful entries and its failed entries, where each id is
    /// the position (`"0"`, `"1"`, ...) the entry had in the request.
    pub fn from_response<'a>(
        successful: impl IntoIterator<Item = &'a str>,
        failed: impl IntoIterator<Item = BatchResultErrorEntry>,
    ) -> Self {
        Self {
            successful: successful.into_iter().filter_map(|id| id.parse().ok()).collect(),
            failed: failed
                .into_iter()
                .filter_map(|f| {
                    let position = f.id.parse().ok()?;
                    let failure = EntryFailure {
                        message: f.message.unwrap_or_default(),
                        code: f.code,
                        sender_fault: f.sender_fault,
                    };
                    Some((position, failure))
                })
                .collect(),
        }
    }
}

/// What to do when SQS refuses a whole call for a reason that is not transient.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WholeCallRefused {
    /// Every entry fails with the call's reason.
    FailAll,
    /// Try each entry alone, to find the one SQS minds.
    TryEachAlone,
}

/// Run a batch call over `count` entries (at most [`MAX_ENTRIES`]) until each one succeeded or failed for
/// good. `call(entries)` sends the entries with these indices, in this order (request position `i` is
/// `entries[i]`). Entries that failed on SQS's side, and calls that failed transiently, are retried with
/// `backoff`. Returns one result per entry, by index.
pub async fn run_batch<F, Fut>(
    count: usize,
    mut backoff: Backoff,
    place: &str,
    refused: WholeCallRefused,
    mut call: F,
) -> Vec<Result<(), EntryError>>
where
    F: FnMut(Vec<usize>) -> Fut,
    Fut: Future<Output = Result<CallResult, Explained>>,
{
    let mut results: Vec<Option<Result<(), EntryError>>> = vec![None; count];
    let mut queue: Vec<Vec<usize>> = vec![(0..count).collect()];
    while let Some(mut pending) = queue.pop() {
        while !pending.is_empty() {
            let outcome = match call(pending.clone()).await {
                Ok(outcome) => outcome,
                Err(explained) => {
                    let error = AdapterError::Broker(explained.text.clone());
                    if explained.transient && backoff.wait(place, &error).await {
                        continue;
                    }
                    if !explained.transient && pending.len() > 1 && refused == WholeCallRefused::TryEachAlone {
                        queue.extend(pending.drain(..).map(|i| vec![i]));
                        break;
                    }
                    for &i in &pending {
                        results[i] = Some(Err(EntryError {
                            text: explained.text.clone(),
                            retryable: explained.transient,
                        }));
                    }
                    break;
                }
            };
            for position in outcome.successful {
                if let Some(&i) = pending.get(position) {
                    results[i] = Some(Ok(()));
                }
            }
            let mut retry = Vec::new();
            for (position, failure) in outcome.failed {
                let Some(&i) = pending.get(position) else { continue };
                if failure.sender_fault {
                    results[i] = Some(Err(EntryError {
                        text: format!("SQS refused it: {} {}", failure.code, failure.message),
                        retryable: false,
                    }));
                } else {
                    retry.push(i);
                }
            }
            pending = retry;
            let error = AdapterError::Broker(format!("{} entries failed on SQS's side", pending.len()));
            if !pending.is_empty() && !backoff.wait(place, &error).await {
                for &i in &pending {
                    results[i] = Some(Err(EntryError {
                        text: "SQS kept failing it; retries used up".into(),
                        retryable: true,
                    }));
                }
                break;
            }
        }
    }
    results
        .into_iter()
        .map(|r| {
            r.unwrap_or_else(|| {
                Err(EntryError {
                    text: "SQS did not say what became of it".into(),
                    retryable: true,
                })
            })
        })
        .collect()
}

/// Split `0..len` into chunks of at most 10 whose sizes (from `size`) add up to at most `max_bytes`;
/// an item bigger than `max_bytes` gets a chunk of its own.
pub fn chunk_indices(len: usize, max_bytes: usize, size: impl Fn(usize) -> usize) -> Vec<Vec<usize>> {
    let mut chunks: Vec<Vec<usize>> = Vec::new();
    let mut current = Vec::new();
    let mut bytes = 0;
    for i in 0..len {
        let n = size(i);
        if !current.is_empty() && (current.len() == 10 || bytes + n > max_bytes) {
            chunks.push(std::mem::take(&mut current));
            bytes = 0;
        }
        current.push(i);
        bytes += n;
    }
    if !current.is_empty() {
        chunks.push(current);
    }
    chunks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn entries_failing_on_sqs_side_are_retried_and_a_refused_call_is_split() {
        use std::sync::Mutex;
        let calls: Mutex<Vec<Vec<usize>>> = Mutex::new(Vec::new());
        let backoff = Backoff::new(std::time::Duration::from_secs(5));
        // Entry 1 fails on SQS's side once, entry 2 is refused for good; the rest go through.
        let results = run_batch(4, backoff, "test", WholeCallRefused::FailAll, |entries| {
            let first_try = calls.lock().unwrap().is_empty();
            calls.lock().unwrap().push(entries.clone());
            async move {
                let mut result = CallResult::default();
                for (position, &entry) in entries.iter().enumerate() {
                    let failure = |sender_fault| EntryFailure {
                        code: "X".into(),
                        message: "m".into(),
                        sender_fault,
                    };
                    match entry {
                        1 if first_try => result.failed.push((position, failure(false))),
                        2 => result.failed.push((position, failure(true))),
                        _ => result.successful.push(position),
                    }
                }
                Ok(result)
            }
        })
        .await;
        assert_eq!(results[0], Ok(()));
        assert_eq!(results[1], Ok(()), "retried");
        assert!(matches!(&results[2], Err(e) if !e.retryable));
        assert_eq!(results[3], Ok(()));
        assert_eq!(calls.lock().unwrap()[1], vec![1], "only the failed entry is sent again");

        let alone = run_batch(
            3,
            Backoff::new(std::time::Duration::ZERO),
            "test",
            WholeCallRefused::TryEachAlone,
            |entries| async move {
                match entries.as_slice() {
                    [1] => Err(Explained {
                        text: "too big".into(),
                        transient: false,
                    }),
                    [_] => Ok(CallResult {
                        successful: vec![0],
                        failed: Vec::new(),
                    }),
                    _ => Err(Explained {
                        text: "batch refused".into(),
                        transient: false,
                    }),
                }
            },
        )
        .await;
        assert_eq!(alone[0], Ok(()));
        assert!(matches!(&alone[1], Err(e) if e.text == "too big"));
        assert_eq!(alone[2], Ok(()));
    }

    #[test]
    fn chunks_respect_count_and_bytes() {
        let sizes = [100, 100, 300, 50, 50, 50, 50, 50, 50, 50, 50, 50, 50];
        let chunks = chunk_indices(sizes.len(), 400, |i| sizes[i]);
        assert_eq!(chunks, vec![vec![0, 1], vec![2, 3, 4], vec![5, 6, 7, 8, 9, 10, 11, 12]]);
        let chunks = chunk_indices(3, 100, |i| [10, 500, 10][i]);
        assert_eq!(chunks, vec![vec![0], vec![1], vec![2]], "a big item goes alone");
        let chunks = chunk_indices(23, usize::MAX, |_| 1);
        assert_eq!(chunks.iter().map(Vec::len).collect::<Vec<_>>(), vec![10, 10, 3]);
    }
}
