//! `kafka://host:9092?topic=orders`: replayed messages produced to a topic; `--to origin` for a Kafka
//! source: to the topic each message was dead-lettered from (Kafka Connect or Spring headers).
//!
//! The producer is idempotent with `acks=all`: a message counts as forwarded only when its delivery report
//! says the partition leader and its in-sync replicas have it. Keys and headers are kept, the dead-letter
//! headers renamed `x-redrive-original-…` (`death=keep` sends them as they are), `x-redrive-replay-id` and
//! `x-redrive-replay-count` added. Keyed messages are partitioned as Java clients do (murmur2), so a key
//! goes back to the partition its consumers expect; `partition=original` sends each message to the
//! partition it was dead-lettered from.
//!
//! `delivery=exactly-once` makes each batch one transaction, with a record of its replay ids in the replay
//! log topic ([`super::exactly_once`]): a crash can then neither lose a batch nor make one visible twice.
//! From a Kafka source on the same cluster, the transaction also commits the DLQ group's offsets past the
//! batch ([`super::dlq_offsets`]) unless `dlq_offsets=separately`.

use std::time::Duration;

use async_trait::async_trait;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::util::Timeout;

use super::dlq_offsets::DlqGroup;
use super::exactly_once::{
    TransactionError, TransactionFailure, Transactions, failed_for_good_reason, fenced_reason, is_fenced, log_value,
    transactional_id,
};
use super::record::{origin_of, outgoing};
use super::url::{Delivery, DlqOffsets, KafkaUrl, Partitioning};
use super::{explain, metadata_partitions};
use crate::core::adapter::{AdapterError, Redelivery, SendError, SendFailure, Sink};
use crate::core::envelope::{Envelope, REPLAY_ID_ATTRIBUTE};

/// Sends replayed messages to Kafka topics.
pub struct KafkaSink {
    url: KafkaUrl,
    /// `None`: each message's origin topic.
    topic: Option<String>,
    producer: FutureProducer,
    /// `delivery=exactly-once`: the transactional producer's calls.
    transactions: Option<Transactions>,
    /// The Kafka source's group on this cluster, whose offsets each transaction commits
    /// (`dlq_offsets=in-transaction`).
    dlq: Option<DlqGroup>,
}

impl KafkaSink {
    /// A destination topic; it must exist (a typo would otherwise create one where the broker allows it).
    /// `producer_name` names what this sink replays for (the source, and the fleet worker): with
    /// `delivery=exactly-once` the transactional id is derived from it and the destination. `dlq`: the
    /// source's consumer group when the source is a Kafka topic; an exactly-once sink on its cluster commits
    /// the group's offsets in its transactions.
    pub async fn open(url: &str, producer_name: &str, dlq: Option<DlqGroup>) -> Result<Self, AdapterError> {
        Self::connect(url, true, producer_name, dlq).await
    }

    /// `--to origin` for the Kafka source `source_url`: each message to the topic it was dead-lettered from,
    /// on the source's cluster.
    pub async fn origin(source_url: &str, producer_name: &str, dlq: Option<DlqGroup>) -> Result<Self, AdapterError> {
        Self::connect(source_url, false, producer_name, dlq).await
    }

    /// Make the producer and check the URL's topic exists: the destination for `open`; for `origin`, the
    /// source topic, which checks the cluster can be reached with these settings.
    async fn connect(
        url: &str,
        to_url_topic: bool,
        producer_name: &str,
        dlq: Option<DlqGroup>,
    ) -> Result<Self, AdapterError> {
        let url = KafkaUrl::parse(url)?;
        let id = match url.delivery {
            Delivery::AtLeastOnce => None,
            Delivery::ExactlyOnce => Some(transactional_id(&url, producer_name)),
        };
        let producer = producer(&url, id.as_deref())?;
        let client_url = url.clone();
        let client = producer.clone();
        tokio::task::spawn_blocking(move || metadata_partitions(client.client(), &client_url))
            .await
            .map_err(|e| AdapterError::Broker(e.to_string()))??;
        let transactions = match id {
            None => None,
            Some(id) => Some(Transactions::start(producer.clone(), &url, id, transaction_timeout(&url)).await?),
        };
        let dlq = match (&transactions, url.dlq_offsets, dlq) {
            (Some(_), DlqOffsets::InTransaction, Some(group)) => same_cluster(&producer, group, &url).await,
            _ => None,
        };
        Ok(Self {
            topic: to_url_topic.then(|| url.topic.clone()),
            url,
            producer,
            transactions,
            dlq,
        })
    }

    /// Where `env` goes: topic and, for `partition=original`, partition.
    fn target<'a>(&'a self, env: &'a Envelope) -> Result<(&'a str, Option<i32>), SendError> {
        let origin = origin_of(env);
        let topic = match (&self.topic, origin) {
            (Some(topic), _) => topic.as_str(),
            (None, Some((topic, _))) => topic,
            (None, None) => {
                return Err(SendError::refused(
                    "no kafka_dlt-original-topic or __connect.errors.topic header: the topic it came from is \
                     unknown; replay it with --to kafka://...?topic=NAME",
                ));
            }
        };
        let partition = match self.url.partition {
            Partitioning::ByKey => None,
            Partitioning::Original => match origin.and_then(|(_, p)| p) {
                Some(p) => Some(p),
                None => {
                    return Err(SendError::refused(
                        "partition=original, but its headers do not say which partition it came from",
                    ));
                }
            },
        };
        Ok((topic, partition))
    }

    /// Produce `batch` and wait for each record's delivery report.
    async fn produce(&self, batch: &[&Envelope]) -> Vec<Result<(), SendError>> {
        let mut results: Vec<Result<(), SendError>> = vec![Ok(()); batch.len()];
        let mut deliveries = Vec::with_capacity(batch.len());
        for (index, &env) in batch.iter().enumerate() {
            let (topic, partition) = match self.target(env) {
                Ok(target) => target,
                Err(e) => {
                    results[index] = Err(e);
                    continue;
                }
            };
            let (key, headers) = outgoing(env, self.url.death);
            let mut owned = OwnedHeaders::new_with_capacity(headers.len());
            for (name, value) in &headers {
                owned = owned.insert(Header {
                    key: name.as_str(),
                    value: value.as_deref(),
                });
            }
            let mut record = FutureRecord::<[u8], [u8]>::to(topic).payload(&env.body).headers(owned);
            if let Some(key) = key.as_deref() {
                record = record.key(key);
            }
            if let Some(p) = partition {
                record = record.partition(p);
            }
            // The local queue may be full: wait for deliveries to make room.
            let mut record = record;
            loop {
                match self.producer.send_result(record) {
                    Ok(future) => {
                        deliveries.push((index, topic, future));
                        break;
                    }
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        record = back;
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    Err((e, _)) => {
                        results[index] = Err(send_error(&e, topic, &self.url));
                        break;
                    }
                }
            }
        }
        if !deliveries.is_empty() {
            let producer = self.producer.clone();
            let wait = message_timeout(&self.url) + Duration::from_secs(5);
            let _ = tokio::task::spawn_blocking(move || send_now(&producer, wait)).await;
        }
        for (index, topic, future) in deliveries {
            results[index] = match future.await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err((e, _))) => Err(send_error(&e, topic, &self.url)),
                Err(_) => Err(SendError::retryable(
                    "the producer went away before confirming; not confirmed",
                )),
            };
        }
        // A producer in a fatal state (fenced, or an idempotence sequence it cannot repair) fails everything
        // from now on: say why once, as what stops the run.
        if results.iter().any(Result::is_err)
            && let Some(fatal) = self.unusable()
        {
            for result in &mut results {
                if result.is_err() {
                    *result = Err(fatal.clone());
                }
            }
        }
        results
    }

    /// Why the producer can send nothing more, when it is in a fatal state.
    fn unusable(&self) -> Option<SendError> {
        let (code, text) = self.producer.client().fatal_error()?;
        Some(SendError::fatal(match &self.transactions {
            Some(t) if is_fenced(Some(code)) => fenced_reason("producing", t.id()),
            Some(t) => failed_for_good_reason("producing", &format!("{code:?}: {text}"), t.id()),
            None => format!("the producer failed for good ({code:?}: {text}); this run can send no more"),
        }))
    }

    /// Send `batch` as one transaction with its replay log record. Messages the destination refuses are left
    /// out and the rest sent again in a new transaction, once.
    async fn send_in_transactions(
        &self,
        transactions: &Transactions,
        batch: &[Envelope],
    ) -> Vec<Result<(), SendError>> {
        let mut results: Vec<Option<Result<(), SendError>>> = vec![None; batch.len()];
        for (index, env) in batch.iter().enumerate() {
            if let Err(e) = self.target(env) {
                results[index] = Some(Err(e));
            }
        }
        for _ in 0..2 {
            let pending: Vec<usize> = (0..batch.len()).filter(|i| results[*i].is_none()).collect();
            if pending.is_empty() {
                break;
            }
            match self.one_transaction(transactions, batch, &pending).await {
                Ok(()) => {
                    for index in pending {
                        results[index] = Some(Ok(()));
                    }
                    break;
                }
                Err(Aborted::Refused(refused)) => {
                    for (index, e) in refused {
                        results[index] = Some(Err(e));
                    }
                }
                Err(Aborted::Failed(e)) => {
                    for index in pending {
                        results[index] = Some(Err(e.clone()));
                    }
                    break;
                }
            }
        }
        results
            .into_iter()
            .map(|r| {
                r.unwrap_or_else(|| {
                    Err(SendError::retryable(
                        "not sent: the destination refused other messages of its batch twice",
                    ))
                })
            })
            .collect()
    }

    /// One transaction: the messages at `pending`, then the replay log record listing their replay ids, then
    /// the commit.
    async fn one_transaction(
        &self,
        transactions: &Transactions,
        batch: &[Envelope],
        pending: &[usize],
    ) -> Result<(), Aborted> {
        let failed = |reason: String| Aborted::Failed(SendError::retryable(reason));
        transactions.begin().await.map_err(aborted)?;
        let envelopes: Vec<&Envelope> = pending.iter().map(|&i| &batch[i]).collect();
        let produced = self.produce(&envelopes).await;
        let refused: Vec<(usize, SendError)> = pending
            .iter()
            .zip(produced)
            .filter_map(|(&index, result)| result.err().map(|e| (index, e)))
            .collect();
        if let Some((_, first)) = refused.first() {
            if let Some((_, fatal)) = refused.iter().find(|(_, e)| e.failure == SendFailure::Fatal) {
                return Err(Aborted::Failed(fatal.clone()));
            }
            let why = first.reason.clone();
            transactions.abort().await.map_err(aborted)?;
            if refused.iter().all(|(_, e)| e.failure == SendFailure::Refused) {
                return Err(Aborted::Refused(refused));
            }
            return Err(failed(format!("not sent: its transaction was aborted ({why})")));
        }
        // The DLQ group's commit turn, held to the end of the transaction; its positions go in the transaction.
        let group_turn = match &self.dlq {
            Some(group) => Some(group.turn().await),
            None => None,
        };
        let group_commit = self
            .dlq
            .as_ref()
            .map(|group| group.commit_for(envelopes.iter().map(|env| env.id.as_str())));
        if let (Some(group), Some(commit)) = (&self.dlq, &group_commit)
            && let Err(e) = transactions.send_offsets(commit).await
        {
            if e.failure == TransactionFailure::ProducerUnusable {
                return Err(aborted(e));
            }
            transactions.abort().await.map_err(aborted)?;
            return Err(failed(format!(
                "not sent: its transaction was aborted ({}; if the producer's user may not commit the offsets of \
                 group `{}`, add dlq_offsets=separately to the destination URL)",
                e.reason,
                group.name()
            )));
        }
        let ids = log_value(envelopes.iter().filter_map(|env| env.attribute(REPLAY_ID_ATTRIBUTE)));
        let record = FutureRecord::<str, str>::to(transactions.log_topic())
            .key(transactions.id())
            .payload(&ids);
        if let Err((e, _)) = self
            .producer
            .send(record, Timeout::After(message_timeout(&self.url)))
            .await
        {
            if let Some(fatal) = self.unusable() {
                return Err(Aborted::Failed(fatal));
            }
            transactions.abort().await.map_err(aborted)?;
            return Err(failed(format!(
                "not sent: its transaction was aborted (producing to the replay log `{}`: {})",
                transactions.log_topic(),
                explain(&e, &self.url)
            )));
        }
        // A commit left unanswered comes back as `ProducerUnusable`, its reason saying the replay log tells.
        transactions.commit().await.map_err(|e| match e.failure {
            TransactionFailure::NotDone => failed(format!("not sent: {}", e.reason)),
            TransactionFailure::OutcomeUnknown | TransactionFailure::ProducerUnusable => aborted(e),
        })?;
        if let (Some(group), Some(commit)) = (&self.dlq, &group_commit) {
            group.committed(commit);
        }
        drop(group_turn);
        Ok(())
    }
}

/// `group` when the producer's cluster is the source's (same cluster id): the transactions may commit its
/// offsets. Otherwise the source commits them itself, as with `dlq_offsets=separately`.
async fn same_cluster(producer: &FutureProducer, group: DlqGroup, url: &KafkaUrl) -> Option<DlqGroup> {
    let producer = producer.clone();
    let (group, ours, theirs) = tokio::task::spawn_blocking(move || {
        let ours = producer.client().fetch_cluster_id(Duration::from_secs(10));
        let theirs = group.cluster_id();
        (group, ours, theirs)
    })
    .await
    .ok()?;
    match (ours, theirs) {
        (Some(ours), Some(theirs)) if ours == theirs => {
            tracing::info!(
                "{}: each transaction also commits the offsets of group `{}` (dlq_offsets=in-transaction)",
                url.describe(),
                group.name()
            );
            Some(group)
        }
        (ours, theirs) => {
            tracing::info!(
                "{}: not the source's cluster (cluster ids {ours:?} and {theirs:?}): the source commits group \
                 `{}`'s offsets itself, after the journal",
                url.describe(),
                group.name()
            );
            None
        }
    }
}

/// Send everything the producer holds at once, `linger.ms` notwithstanding, and wait (at most `wait`) until
/// each message's delivery report is in. A batch then goes out in one produce request per partition leader
/// instead of one per few records.
fn send_now(producer: &FutureProducer, wait: Duration) {
    let wait_ms = i32::try_from(wait.as_millis()).unwrap_or(i32::MAX);
    // SAFETY: the pointer is the live producer's (borrowed for the call) and `rd_kafka_flush` is thread-safe.
    // Not rdkafka's `Producer::flush`: that polls the main queue in 100 ms steps, and the FutureProducer's own
    // thread takes the delivery reports off it first, so each batch waited 100 ms.
    unsafe {
        rdkafka::bindings::rd_kafka_flush(producer.client().native_ptr(), wait_ms);
    }
}

/// How long a delivery may take before it counts as failed (`reconnect=`).
fn message_timeout(url: &KafkaUrl) -> Duration {
    url.reconnect_for
        .clamp(Duration::from_secs(1), Duration::from_secs(3_600))
}

/// How long the broker lets a transaction stay open before aborting it: a little more than a delivery may
/// take (librdkafka requires at least that).
fn transaction_timeout(url: &KafkaUrl) -> Duration {
    message_timeout(url) + Duration::from_secs(10)
}

fn producer(url: &KafkaUrl, transactional_id: Option<&str>) -> Result<FutureProducer, AdapterError> {
    let timeout_ms = message_timeout(url).as_millis().to_string();
    let transaction_ms = transaction_timeout(url).as_millis().to_string();
    let mut config = url.client_config(&[
        ("enable.idempotence", "true"),
        ("acks", "all"),
        ("partitioner", "murmur2_random"),
        // A batch is queued whole and then sent at once (`send_now`). Without a linger the first record would
        // leave alone and the rest in a few more requests, each a round trip (bench/kafka: 64 records took
        // 4.1 ms per batch that way, 1.5 ms sent at once).
        ("linger.ms", "5"),
        ("message.timeout.ms", &timeout_ms),
    ]);
    if let Some(id) = transactional_id {
        config.set("transactional.id", id);
        config.set("transaction.timeout.ms", &transaction_ms);
    }
    config
        .create()
        .map_err(|e| AdapterError::Config(format!("{}: {}", url.describe(), explain(&e, url))))
}

/// A transaction call failed: nothing of the batch counts as sent; a producer that can do nothing more stops
/// the run.
fn aborted(e: TransactionError) -> Aborted {
    Aborted::Failed(match e.failure {
        TransactionFailure::ProducerUnusable => SendError::fatal(e.reason),
        TransactionFailure::NotDone | TransactionFailure::OutcomeUnknown => SendError::retryable(e.reason),
    })
}

/// Why a transaction was aborted.
enum Aborted {
    /// The destination refused these messages (index, why): the others may go in a new transaction.
    Refused(Vec<(usize, SendError)>),
    /// Nothing of it was delivered (or whether it was is unknown) for this reason.
    Failed(SendError),
}

/// A failed delivery in words; whether sending again may work.
fn send_error(error: &KafkaError, topic: &str, url: &KafkaUrl) -> SendError {
    let reason = format!("producing to `{topic}`: {}", explain(error, url));
    match error.rdkafka_error_code() {
        Some(
            RDKafkaErrorCode::MessageSizeTooLarge
            | RDKafkaErrorCode::UnknownTopicOrPartition
            | RDKafkaErrorCode::UnknownTopic
            | RDKafkaErrorCode::UnknownPartition
            | RDKafkaErrorCode::TopicAuthorizationFailed
            | RDKafkaErrorCode::InvalidRecord,
        ) => SendError::refused(reason),
        _ => SendError::retryable(format!("{reason}; not confirmed")),
    }
}

#[async_trait]
impl Sink for KafkaSink {
    fn describe(&self) -> String {
        match &self.topic {
            Some(_) => self.url.describe(),
            None => format!("the origin topics on {}", self.url.server),
        }
    }

    fn max_batch(&self) -> usize {
        500
    }

    async fn send(&self, batch: &[Envelope]) -> Vec<Result<(), SendError>> {
        match &self.transactions {
            None => self.produce(&batch.iter().collect::<Vec<_>>()).await,
            Some(transactions) => {
                let _turn = transactions.turn().await;
                self.send_in_transactions(transactions, batch).await
            }
        }
    }

    fn redelivery(&self) -> Redelivery {
        match &self.transactions {
            None => Redelivery::Possible,
            Some(_) => Redelivery::Checkable,
        }
    }

    async fn delivered(&self, batch: &[Envelope]) -> Result<Vec<bool>, AdapterError> {
        match &self.transactions {
            None => Ok(vec![false; batch.len()]),
            Some(transactions) => transactions.delivered(batch).await,
        }
    }

    async fn close(&self) -> Result<(), AdapterError> {
        let producer = self.producer.clone();
        let url = self.url.clone();
        tokio::task::spawn_blocking(move || producer.flush(Duration::from_secs(30)))
            .await
            .map_err(|e| AdapterError::Broker(e.to_string()))?
            .map_err(|e| AdapterError::Broker(format!("{}: flushing: {}", url.describe(), explain(&e, &url))))
    }
}
