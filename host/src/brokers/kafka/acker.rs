//! Settling Kafka messages: acks move the group's committed offsets (never past a message that stays),
//! releases hold them.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use rdkafka::consumer::BaseConsumer;

use super::explain;
use super::record::parse_record_id;
use super::source::{PassContext, Shared, commit, lock};
use crate::core::adapter::{AckToken, Acker, AdapterError, SourceMode};

/// Settles messages by moving the group's committed offsets.
pub(super) struct KafkaAcker {
    consumer: Arc<BaseConsumer<PassContext>>,
    shared: Arc<Shared>,
    /// When offsets were last committed: acks commit at most every [`COMMIT_EVERY`]; `finish` and
    /// rebalances commit what is left.
    last_commit: Mutex<Instant>,
}

/// How often acks commit. A commit that lags only makes a killed run's successor read settled messages
/// again, which its journal acks without forwarding.
const COMMIT_EVERY: Duration = Duration::from_millis(250);

impl KafkaAcker {
    pub(super) fn new(consumer: Arc<BaseConsumer<PassContext>>, shared: Arc<Shared>) -> Self {
        Self {
            consumer,
            shared,
            last_commit: Mutex::new(Instant::now()),
        }
    }

    pub(super) fn shared(&self) -> &Shared {
        &self.shared
    }

    pub(super) fn shared_arc(&self) -> Arc<Shared> {
        self.shared.clone()
    }

    fn settle(&self, tokens: &[AckToken], acked: bool) {
        let mut state = lock(&self.shared.state);
        for token in tokens {
            let Some((p, o)) = token.key.as_deref().and_then(parse_record_id) else {
                continue;
            };
            // Not recorded for a partition revoked meanwhile: its new owner reads the message again.
            if acked {
                state.offsets.acked(p, o);
            } else {
                state.offsets.released(p, o);
            }
        }
        drop(state);
        self.shared.settled.notify_all();
    }

    /// Commit every owned partition's position that moved.
    pub(super) async fn commit_settled(&self) -> Result<(), AdapterError> {
        let _one = self.shared.commits.lock().await;
        let positions = {
            let state = lock(&self.shared.state);
            let mut positions = state.offsets.to_commit();
            positions.retain(|(p, _)| state.owned.contains(p));
            positions
        };
        if positions.is_empty() {
            return Ok(());
        }
        let consumer = self.consumer.clone();
        let topic = self.shared.url.topic.clone();
        let committed = {
            let positions = positions.clone();
            tokio::task::spawn_blocking(move || commit(&consumer, &topic, &positions))
                .await
                .map_err(|e| AdapterError::Broker(e.to_string()))?
        };
        match committed {
            Ok(()) => {
                let mut state = lock(&self.shared.state);
                state.down_since = None;
                for (p, position) in positions {
                    state.offsets.committed(p, position);
                }
                Ok(())
            }
            Err(e) => Err(AdapterError::Broker(format!(
                "{}: committing offsets of group `{}`: {}. The messages are settled and journaled; the next run \
                 of the group reads them again and acks them without forwarding",
                self.shared.url.describe(),
                self.shared.url.group,
                explain(&e, &self.shared.url)
            ))),
        }
    }
}

#[async_trait]
impl Acker for KafkaAcker {
    async fn ack(&self, tokens: &[AckToken]) -> Result<(), AdapterError> {
        if self.shared.mode == SourceMode::Peek {
            return Ok(());
        }
        self.settle(tokens, true);
        {
            let mut last = self
                .last_commit
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if last.elapsed() < COMMIT_EVERY {
                return Ok(());
            }
            *last = Instant::now();
        }
        // A commit that fails (a rebalance under way, the broker away) is tried again with the next ack; the
        // messages are settled and journaled either way.
        if let Err(e) = self.commit_settled().await {
            tracing::warn!("{e}");
        }
        Ok(())
    }

    async fn release(&self, tokens: &[AckToken]) -> Result<(), AdapterError> {
        self.settle(tokens, false);
        Ok(())
    }
}
