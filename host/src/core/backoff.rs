//! Retrying with exponential backoff for a bounded time: reconnects to brokers, retried sends.

use std::time::Duration;

use super::adapter::AdapterError;

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
        tracing::warn!("{what}: {error}; retrying in {} ms", self.delay.as_millis());
        tokio::time::sleep(self.delay).await;
        self.delay = (self.delay * 2).min(Duration::from_secs(5));
        true
    }
}
