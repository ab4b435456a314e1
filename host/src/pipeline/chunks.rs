//! The channels between the stages carry messages in chunks: one channel operation, and at most one wake-up
//! of the stage behind, per chunk instead of per message. A stage sends what it has ready as one chunk; the
//! receiving side takes messages one at a time or as batches, as it needs.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::sync::mpsc;

/// The most messages the reader puts in one chunk before sending it (it sends sooner when the source has
/// nothing more ready). Small enough that two filter threads share a pass evenly and a chunk's wait stays
/// well under a millisecond for the filters; large enough that the hand-off costs little per message.
pub(super) const CHUNK: usize = 32;

/// A channel of chunks holding up to `chunks` chunks (bounded: memory stays flat whatever the DLQ's size).
pub(super) fn chunk_channel<T>(chunks: usize) -> (ChunkTx<T>, ChunkRx<T>) {
    let (tx, rx) = mpsc::channel(chunks.max(1));
    (
        ChunkTx { tx },
        ChunkRx {
            rx,
            buffered: VecDeque::new(),
        },
    )
}

/// The sending side of a chunk channel.
pub(super) struct ChunkTx<T> {
    tx: mpsc::Sender<Vec<T>>,
}

impl<T> Clone for ChunkTx<T> {
    fn clone(&self) -> Self {
        Self { tx: self.tx.clone() }
    }
}

/// The receiving side is gone (its stage ended, so the run is ending).
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Closed;

impl<T> ChunkTx<T> {
    /// Send one message on its own (a chunk of one).
    pub async fn send(&self, item: T) -> Result<(), Closed> {
        self.send_all(vec![item]).await
    }

    /// Send `items` as one chunk (nothing when there are none).
    pub async fn send_all(&self, items: Vec<T>) -> Result<(), Closed> {
        if items.is_empty() {
            return Ok(());
        }
        self.tx.send(items).await.map_err(|_| Closed)
    }

    /// Send `items` as one chunk from a thread outside the async runtime (a filter thread).
    pub fn blocking_send_all(&self, items: Vec<T>) -> Result<(), Closed> {
        if items.is_empty() {
            return Ok(());
        }
        self.tx.blocking_send(items).map_err(|_| Closed)
    }
}

/// The receiving side of a chunk channel.
pub(super) struct ChunkRx<T> {
    rx: mpsc::Receiver<Vec<T>>,
    /// What is left of the chunks received so far, in order.
    buffered: VecDeque<T>,
}

impl<T> ChunkRx<T> {
    /// The next message; `None` once every sender is gone and everything was taken. Cancel-safe: a message
    /// received is never lost by dropping this future.
    pub async fn recv(&mut self) -> Option<T> {
        loop {
            if let Some(item) = self.buffered.pop_front() {
                return Some(item);
            }
            let chunk = self.rx.recv().await?;
            self.buffered.extend(chunk);
        }
    }

    /// What is buffered, or else the next chunk as it was sent; `None` at the end. Cancel-safe.
    pub async fn recv_chunk(&mut self) -> Option<Vec<T>> {
        if !self.buffered.is_empty() {
            return Some(self.buffered.drain(..).collect());
        }
        self.rx.recv().await
    }

    /// The next chunk, from a thread outside the async runtime (what is buffered first).
    pub fn blocking_recv_chunk(&mut self) -> Option<Vec<T>> {
        if !self.buffered.is_empty() {
            return Some(self.buffered.drain(..).collect());
        }
        self.rx.blocking_recv()
    }

    /// A message already here, without waiting.
    fn try_recv(&mut self) -> Result<T, mpsc::error::TryRecvError> {
        loop {
            if let Some(item) = self.buffered.pop_front() {
                return Ok(item);
            }
            let chunk = self.rx.try_recv()?;
            self.buffered.extend(chunk);
        }
    }

    /// Fill `batch` up to `max` messages: what is already here, then what arrives within `linger`. What does
    /// not fit stays for the next call.
    pub async fn recv_batch(&mut self, mut batch: Vec<T>, max: usize, linger: Duration) -> Vec<T> {
        let deadline = tokio::time::Instant::now() + linger;
        while batch.len() < max {
            match self.try_recv() {
                Ok(item) => batch.push(item),
                Err(mpsc::error::TryRecvError::Disconnected) => break,
                Err(mpsc::error::TryRecvError::Empty) if linger.is_zero() => break,
                Err(mpsc::error::TryRecvError::Empty) => {
                    match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                        Ok(Some(chunk)) => self.buffered.extend(chunk),
                        _ => break,
                    }
                }
            }
        }
        batch
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn messages_come_out_in_the_order_they_went_in_whatever_the_chunks() {
        let (tx, mut rx) = chunk_channel::<u32>(4);
        tx.send_all(vec![1, 2, 3]).await.unwrap();
        tx.send(4).await.unwrap();
        tx.send_all(Vec::new()).await.unwrap();
        tx.send_all(vec![5, 6]).await.unwrap();
        drop(tx);
        assert_eq!(rx.recv().await, Some(1));
        assert_eq!(rx.recv_chunk().await, Some(vec![2, 3]), "the rest of the first chunk");
        assert_eq!(rx.recv_chunk().await, Some(vec![4]));
        assert_eq!(rx.recv().await, Some(5));
        assert_eq!(rx.recv().await, Some(6));
        assert_eq!(rx.recv().await, None);
        assert_eq!(rx.recv_chunk().await, None);
    }

    #[tokio::test]
    async fn a_batch_stops_at_its_size_and_keeps_the_rest_for_the_next() {
        let (tx, mut rx) = chunk_channel::<u32>(4);
        tx.send_all((0..10).collect()).await.unwrap();
        tx.send_all((10..13).collect()).await.unwrap();
        let first = rx.recv_batch(Vec::new(), 4, Duration::ZERO).await;
        assert_eq!(first, vec![0, 1, 2, 3]);
        let second = rx.recv_batch(vec![99], 8, Duration::ZERO).await;
        assert_eq!(second, vec![99, 4, 5, 6, 7, 8, 9, 10], "across the chunks' boundary");
        drop(tx);
        let rest = rx.recv_batch(Vec::new(), 8, Duration::from_millis(50)).await;
        assert_eq!(rest, vec![11, 12], "the end of the channel ends the batch");
        assert_eq!(rx.recv().await, None);
    }

    #[tokio::test]
    async fn a_batch_waits_for_more_only_within_its_linger() {
        let (tx, mut rx) = chunk_channel::<u32>(4);
        tx.send(1).await.unwrap();
        let later = tx.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(2)).await;
            later.send(2).await.unwrap();
        });
        let batch = rx.recv_batch(Vec::new(), 8, Duration::from_millis(50)).await;
        assert_eq!(batch, vec![1, 2], "the message sent within the linger joins the batch");
        let batch = rx.recv_batch(Vec::new(), 8, Duration::from_millis(5)).await;
        assert!(batch.is_empty(), "nothing more came: {batch:?}");
    }

    #[tokio::test]
    async fn sending_to_a_stage_that_ended_says_so() {
        let (tx, rx) = chunk_channel::<u32>(1);
        drop(rx);
        assert_eq!(tx.send_all(vec![7, 8]).await, Err(Closed));
        assert_eq!(
            tx.send_all(Vec::new()).await,
            Ok(()),
            "nothing to send: nothing to refuse"
        );
    }
}
