//! Retrying with exponential backoff for a bounded time: reconnects to brokers, retried sends.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::adapter::AdapterError;

/// Retries of this process so far, all brokers together (for the run's metrics).
static RETRIES: AtomicU64 = AtomicU64::new(0);

/// How many times a broker operation was retried after an error in this process (reconnects, resent
/// batches): what `redrive_broker_retries_total` shows.
pub fn retries() -> u64 {
    RETRIES.load(Ordering::Relaxed)
}

/// Exponential backoff (250 ms doubling to 5 s) until a deadline.
pub struct Backoff {
    deadline: tokio::time::Instant,
    delay: Duration,
}

impl Backoff {
    /// Start retrying for up to `limit`.
    pub fn new(limit: Duration) -> Self {
        Backoff {
            deadline: tokio::time::Instant::now() + limit,
            delay: Duration::from_millis(250),
        }
    }

    /// After a failed attempt: log it, wait, and return `true` to try again — or `false` when the next
    /// attempt would come after the deadline.
    pub async fn wait(&mut self, what: &str, error: &AdapterError) -> bool {
        if tokio::time::Instant::now() + self.delay >= self.deadline {
            return false;
        }
        RETRIES.fetch_add(1, Ordering::Relaxed);
        tracing::warn!("{what}: {error}; retrying in {} ms", self.delay.as_millis());
        tokio::time::sleep(self.delay).await;
        self.delay = (self.delay * 2).min(Duration::from_secs(5));
        true
    }
}
