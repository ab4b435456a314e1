//! `dlq_offsets=in-transaction` (the default with `delivery=exactly-once`): a transactional destination on
//! the dead-letter topic's own cluster commits the DLQ group's offsets in each batch's transaction
//! (`send_offsets_to_transaction`). The replays and the DLQ position past them then become visible together,
//! and a transaction that never commits moves neither: a run killed after the commit, even one whose journal
//! is lost, leaves the next run nothing of the batch to read again — up to the first message of a partition
//! that stays in the DLQ (skipped, failed, parked), which no commit passes.
//!
//! A transaction commits, per partition the source owns, the position the source's own commit would reach if
//! the transaction's messages were acked: never past a message still open, skipped, failed or parked
//! ([`super::offsets`]). The source's commits (every 250 ms, and at the end) and the transactions take turns
//! through one lock, and both record what they committed, so a position never moves backwards.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerGroupMetadata};
use rdkafka::{Offset, TopicPartitionList};

use super::record::parse_record_id;
use super::source::{PassContext, Shared, lock};

/// How long asking the source's client for its cluster's id may take.
const CLUSTER_ID_TIMEOUT: Duration = Duration::from_secs(10);

/// A Kafka source's consumer group, as a transactional sink replaying its messages uses it.
#[derive(Clone)]
pub struct DlqGroup {
    consumer: Arc<BaseConsumer<PassContext>>,
    shared: Arc<Shared>,
}

/// What one transaction commits for the group.
pub struct GroupCommit {
    /// The offsets and the group membership they are committed in (a rebalance since makes the broker
    /// refuse them, and the transaction is aborted); `None` when no position moves.
    request: Option<(TopicPartitionList, Arc<ConsumerGroupMetadata>)>,
    /// The positions in `request` (partition, offset); empty without a request.
    positions: Vec<(i32, i64)>,
    /// The transaction's messages (partition, offset).
    delivered: Vec<(i32, i64)>,
}

impl GroupCommit {
    /// The offsets and the group membership, for `send_offsets_to_transaction`; `None`: nothing to commit.
    pub fn request(&self) -> Option<(TopicPartitionList, Arc<ConsumerGroupMetadata>)> {
        self.request.clone()
    }
}

impl DlqGroup {
    pub(super) fn new(consumer: Arc<BaseConsumer<PassContext>>, shared: Arc<Shared>) -> Self {
        Self { consumer, shared }
    }

    /// The id of the cluster the source reads from (blocks on the broker; `None` if it does not say).
    pub fn cluster_id(&self) -> Option<String> {
        self.consumer.client().fetch_cluster_id(CLUSTER_ID_TIMEOUT)
    }

    /// The group's name, for messages.
    pub fn name(&self) -> &str {
        &self.shared.url.group
    }

    /// Take the group's commit turn: hold it from [`DlqGroup::commit_for`] until the transaction ended, so
    /// the source's own commits cannot interleave and move a position back.
    pub async fn turn(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.shared.commits.lock().await
    }

    /// What a transaction delivering the messages with these DLQ record ids commits for the group: no
    /// request when no owned partition's position would move (or the consumer is not in the group yet).
    pub fn commit_for<'a>(&self, ids: impl Iterator<Item = &'a str>) -> GroupCommit {
        let delivered: Vec<(i32, i64)> = ids.filter_map(parse_record_id).collect();
        let positions = {
            let state = lock(&self.shared.state);
            let mut positions = state.offsets.to_commit_after(&delivered);
            positions.retain(|(p, _)| state.owned.contains(p));
            positions
        };
        let request = match (positions.is_empty(), self.consumer.group_metadata()) {
            (false, Some(metadata)) => self.offsets(&positions).map(|list| (list, Arc::new(metadata))),
            _ => None,
        };
        let positions = match request {
            Some(_) => positions,
            None => Vec::new(),
        };
        GroupCommit {
            request,
            positions,
            delivered,
        }
    }

    fn offsets(&self, positions: &[(i32, i64)]) -> Option<TopicPartitionList> {
        let mut list = TopicPartitionList::new();
        for (p, position) in positions {
            list.add_partition_offset(&self.shared.url.topic, *p, Offset::Offset(*position))
                .ok()?;
        }
        Some(list)
    }

    /// The transaction carrying `commit` committed: its messages are settled (the pipeline's acks for them,
    /// still to come, change nothing), so the next transaction's positions may pass them before those acks
    /// arrive; and the source's own commits start from its positions.
    pub fn committed(&self, commit: &GroupCommit) {
        let mut state = lock(&self.shared.state);
        state.down_since = None;
        for (p, o) in &commit.delivered {
            state.offsets.acked(*p, *o);
        }
        for (p, position) in &commit.positions {
            state.offsets.committed(*p, *position);
        }
        drop(state);
        self.shared.settled.notify_all();
    }
}
