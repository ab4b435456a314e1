//! How many bytes of messages a run holds at once. The channels between the stages bound messages, not bytes
//! (a few thousand at most): with 1 MiB messages from a source that reads ahead, that alone would be gigabytes.
//! So the reader takes a share of this budget for each message it passes on, and waits for room when the
//! budget is spent; the share comes back when the message's body is gone from the run: sent (whatever the
//! destination answered), archived, skipped, or left in the DLQ.
//!
//! Discards held for the canary gate give their share back while the gate is undecided: they cannot move
//! before it does, and the canary needs the replays read behind them (counting them could leave the reader
//! waiting for room that only the gate can free, and the gate waiting for replays the reader cannot read).
//! Parked messages (the loop guard) are not counted: they are few, and bounded by their channel.

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError};

/// Roughly what a message holds besides its body (id, attributes, failure context, keys), counted with it.
const OVERHEAD: usize = 256;

/// The bytes the run may hold in messages read and not yet gone.
#[derive(Clone, Debug)]
pub(super) struct BodyBudget {
    room: Arc<Semaphore>,
    /// The whole budget: a message larger than it takes all of it, and goes through alone.
    total: u32,
}

/// One message's share of the budget; given back when dropped (or [`BodyShare::give_back`]).
#[derive(Debug, Default)]
pub(super) struct BodyShare(Option<OwnedSemaphorePermit>);

impl BodyShare {
    /// Give the share back now; the message no longer counts.
    pub fn give_back(&mut self) {
        self.0 = None;
    }
}

impl BodyBudget {
    /// A budget of `bytes` (clamped to what one semaphore counts, 4 GiB).
    pub fn new(bytes: u64) -> Self {
        let total = u32::try_from(bytes).unwrap_or(u32::MAX).max(1);
        Self {
            room: Arc::new(Semaphore::new(total as usize)),
            total,
        }
    }

    /// What a message with a body of `body_len` bytes takes of the budget.
    fn share_of(&self, body_len: usize) -> u32 {
        u32::try_from(body_len.saturating_add(OVERHEAD))
            .unwrap_or(u32::MAX)
            .min(self.total)
    }

    /// The share for a body of `body_len` bytes if there is room now.
    pub fn try_take(&self, body_len: usize) -> Option<BodyShare> {
        match self.room.clone().try_acquire_many_owned(self.share_of(body_len)) {
            Ok(permit) => Some(BodyShare(Some(permit))),
            Err(TryAcquireError::NoPermits | TryAcquireError::Closed) => None,
        }
    }

    /// The share for a body of `body_len` bytes, once there is room.
    pub async fn take(&self, body_len: usize) -> BodyShare {
        match self.room.clone().acquire_many_owned(self.share_of(body_len)).await {
            Ok(permit) => BodyShare(Some(permit)),
            // The semaphore is never closed; should it be, nothing is counted rather than everything stopped.
            Err(_) => BodyShare(None),
        }
    }

    /// The whole budget, in bytes.
    pub fn limit(&self) -> u64 {
        u64::from(self.total)
    }

    /// Bytes held in messages now.
    pub fn held(&self) -> u64 {
        u64::from(self.total) - self.room.available_permits() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_come_back_when_dropped_or_given_back() {
        let budget = BodyBudget::new(10_000);
        let a = budget.try_take(4_000).unwrap();
        let mut b = budget.try_take(4_000).unwrap();
        assert_eq!(budget.held(), 2 * (4_000 + OVERHEAD as u64));
        assert!(budget.try_take(4_000).is_none(), "no room for a third");
        b.give_back();
        assert!(budget.try_take(4_000).is_some(), "room again once one was given back");
        drop(a);
        assert_eq!(budget.held(), 0);
    }

    #[test]
    fn a_message_larger_than_the_budget_takes_all_of_it() {
        let budget = BodyBudget::new(1_000);
        let big = budget.try_take(1_000_000).expect("alone, it fits");
        assert_eq!(budget.held(), 1_000);
        assert!(budget.try_take(1).is_none());
        drop(big);
        assert_eq!(budget.held(), 0);
    }

    #[tokio::test]
    async fn a_taker_waits_for_room() {
        let budget = BodyBudget::new(1_000);
        let first = budget.try_take(700).unwrap();
        let waiting = {
            let budget = budget.clone();
            tokio::spawn(async move { budget.take(700).await })
        };
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!waiting.is_finished(), "no room yet");
        drop(first);
        let second = tokio::time::timeout(std::time::Duration::from_secs(5), waiting).await;
        assert!(matches!(second, Ok(Ok(_))), "room came back, the taker got its share");
    }
}
