//! `delivery=exactly-once`: a transactional producer, and the replay log that lets a resumed run tell what
//! an interrupted one delivered.
//!
//! Each batch is one transaction: its records, and one record in the replay log topic listing the batch's
//! replay ids (`x-redrive-replay-id`). Consumers reading the destination with `isolation.level=read_committed`
//! (librdkafka's default, and Kafka Streams') see a batch whole or not at all. The run journals a batch as
//! `sending` before its transaction starts; when a run ends between the commit and the journal's `confirmed`
//! (the window where an at-least-once producer may send a batch twice), the next run finds those messages in
//! doubt and looks their replay ids up in the replay log: committed ones count as delivered and are not sent
//! again; a transaction that never committed was aborted when the next producer with the same transactional
//! id started, and its messages are sent again.
//!
//! The transactional id is derived from the source and the destination (and the fleet worker), so a resumed
//! run fences the producer of the run it resumes: nothing the old one left open can commit later. A run whose
//! producer was fenced (a second run with the same id started elsewhere while this one hung) stops at its next
//! batch: it can commit nothing more, and what it did not send stays in the DLQ.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, Producer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};
use sha2::{Digest, Sha256};

use super::dlq_offsets::GroupCommit;
use super::explain;
use super::url::KafkaUrl;
use crate::core::adapter::AdapterError;
use crate::core::envelope::{Envelope, REPLAY_ID_ATTRIBUTE};

/// How long a blocking transaction call (init, commit, abort) may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// How often a commit whose outcome the client could not learn is tried again.
const COMMIT_TRIES: usize = 3;

/// How often an abort the client could not finish is tried again.
const ABORT_TRIES: usize = 3;

/// The transactional id of a sink: stable for one source, destination and worker, so a resumed run fences
/// the run it resumes; different for any two of them, so concurrent runs never fence each other.
pub fn transactional_id(destination: &KafkaUrl, producer_name: &str) -> String {
    let mut hash = Sha256::new();
    hash.update(destination.describe().as_bytes());
    hash.update([0]);
    hash.update(producer_name.as_bytes());
    format!("redrive-{}", &hex::encode(hash.finalize())[..24])
}

/// Whether the error code says a newer producer with the same transactional id fenced this one (the broker's
/// code, or librdkafka's own for the state it then enters). Not `INVALID_PRODUCER_EPOCH`: since KIP-588 a
/// transaction can abort that and go on with a bumped epoch.
pub fn is_fenced(code: Option<RDKafkaErrorCode>) -> bool {
    matches!(code, Some(RDKafkaErrorCode::ProducerFenced | RDKafkaErrorCode::Fenced))
}

/// Why a fenced producer can send nothing more, for `what` it was doing.
pub fn fenced_reason(what: &str, id: &str) -> String {
    format!(
        "{what}: another producer took transactional id {id} (a second redrive run on this source and \
         destination, with the same worker name?); this run can send no more"
    )
}

/// Why a transactional producer in a fatal state other than fenced can send nothing more, for `what` it was
/// doing. It names the transactional id: a takeover by another producer with that id can end in such a state too
/// (a broker that answers the old producer with a sequence or producer id error instead of "fenced").
pub fn failed_for_good_reason(what: &str, why: &str, id: &str) -> String {
    format!(
        "{what}: {why}; the producer of transactional id {id} failed for good (did another producer take the id \
         over?), so this run can send no more"
    )
}

/// The replay log record of one committed batch: its replay ids, one per line.
pub fn log_value<'a>(ids: impl Iterator<Item = &'a str>) -> String {
    ids.collect::<Vec<_>>().join("\n")
}

/// The replay ids a replay log record lists.
pub fn logged_ids(value: &[u8]) -> impl Iterator<Item = &str> {
    std::str::from_utf8(value)
        .unwrap_or_default()
        .split('\n')
        .filter(|id| !id.is_empty())
}

/// A transactional producer's calls, made off the async runtime (they block on the broker).
pub struct Transactions {
    producer: FutureProducer,
    url: KafkaUrl,
    /// The `transactional.id`, for messages.
    id: String,
    /// How long `delivered` waits for transactions still open in the replay log to end.
    settle_for: Duration,
    /// One transaction at a time: held by the sender from `begin` to the commit or abort.
    turn: tokio::sync::Mutex<()>,
}

/// What went wrong with a transaction, and what that means for its batch and for the producer.
#[derive(Debug)]
pub struct TransactionError {
    /// What happened, in words, with what to check.
    pub reason: String,
    /// What the failure leaves behind.
    pub failure: TransactionFailure,
}

/// What a failed transaction call leaves behind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransactionFailure {
    /// The call failed and nothing of the transaction was committed: the batch may be sent again.
    NotDone,
    /// Whether the transaction committed is unknown (a commit whose answer was lost): the replay log tells.
    OutcomeUnknown,
    /// The producer can do nothing more: fenced by a newer producer with its transactional id, or in a
    /// fatal state. The run must stop.
    ProducerUnusable,
}

impl Transactions {
    /// Make sure the replay log topic exists, then register the transactional id (fencing an earlier
    /// producer with the same id, and aborting whatever it left open).
    pub async fn start(
        producer: FutureProducer,
        url: &KafkaUrl,
        id: String,
        settle_for: Duration,
    ) -> Result<Self, AdapterError> {
        ensure_log_topic(url).await?;
        let me = Self {
            producer,
            url: url.clone(),
            id,
            settle_for,
            turn: tokio::sync::Mutex::new(()),
        };
        me.blocking("registering the transactional producer", |p| {
            p.init_transactions(CALL_TIMEOUT)
        })
        .await
        .map_err(|e| {
            AdapterError::Broker(format!(
                "{}: delivery=exactly-once: {} (the broker must support transactions; the user needs WRITE and \
                 DESCRIBE on transactional id {})",
                url.server, e.reason, me.id
            ))
        })?;
        tracing::info!(
            "{}: delivery=exactly-once with transactional id {} (a later run on this source and destination \
             takes it over)",
            url.describe(),
            me.id
        );
        Ok(me)
    }

    /// The replay log topic.
    pub fn log_topic(&self) -> &str {
        &self.url.replay_log
    }

    /// The transactional id, for the log record's key.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Wait for the transaction before this one to end; hold the guard until this one ends.
    pub async fn turn(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.turn.lock().await
    }

    /// Start a transaction.
    pub async fn begin(&self) -> Result<(), TransactionError> {
        self.blocking("starting a transaction", |p| p.begin_transaction()).await
    }

    /// Abort the open transaction: none of its records become visible to read-committed consumers. An
    /// abort the client could not finish (a timeout) is tried again; one that still fails leaves the
    /// transaction open and the producer unable to start another, so it is `ProducerUnusable` (the broker
    /// aborts the transaction when its timeout passes or the next run's producer registers).
    pub async fn abort(&self) -> Result<(), TransactionError> {
        let unanswered = |p: &FutureProducer| p.abort_transaction(CALL_TIMEOUT);
        self.until_answered("aborting a transaction", ABORT_TRIES, unanswered)
            .await
            .map_err(|e| match e.failure {
                // Fenced or failed for good: its reason says so already.
                TransactionFailure::ProducerUnusable => e,
                TransactionFailure::NotDone | TransactionFailure::OutcomeUnknown => TransactionError {
                    reason: format!(
                        "{}; the transaction stays open until the broker aborts it, so the producer of \
                         transactional id {} can send no more (what this run did not send stays in the DLQ)",
                        e.reason, self.id
                    ),
                    failure: TransactionFailure::ProducerUnusable,
                },
            })
    }

    /// Add the DLQ group's offsets to the open transaction: they commit with it, or not at all.
    pub async fn send_offsets(&self, commit: &GroupCommit) -> Result<(), TransactionError> {
        let Some((offsets, metadata)) = commit.request() else {
            return Ok(());
        };
        self.blocking(
            "committing the dead-letter topic's offsets in the transaction",
            move |p| p.send_offsets_to_transaction(&offsets, &metadata, CALL_TIMEOUT),
        )
        .await
    }

    /// Commit the open transaction. A commit the client could not finish is tried again, and after
    /// `COMMIT_TRIES` (3) leaves the producer unusable (`ProducerUnusable`: whether it committed is for the replay
    /// log to tell); one the broker refused is aborted.
    pub async fn commit(&self) -> Result<(), TransactionError> {
        let unanswered = |p: &FutureProducer| p.commit_transaction(CALL_TIMEOUT);
        match self
            .until_answered("committing a transaction", COMMIT_TRIES, unanswered)
            .await
        {
            Ok(()) => Ok(()),
            // The commit may still be under way in the client: until it ends, no other transaction can start
            // ("Conflicting commit_transaction API call is already in progress"), so the run stops here rather
            // than fail every later batch.
            Err(e) if e.failure == TransactionFailure::OutcomeUnknown => Err(TransactionError {
                reason: format!(
                    "{}; whether the batch was delivered is unknown (the next run looks it up in the replay \
                     log), and no other transaction can start until that commit ends, so the producer of \
                     transactional id {} can send no more",
                    e.reason, self.id
                ),
                failure: TransactionFailure::ProducerUnusable,
            }),
            // Nothing can be aborted either: the broker aborts it when the next producer registers.
            Err(e) if e.failure == TransactionFailure::ProducerUnusable => Err(e),
            // Refused: abort, so the producer can start the next one.
            Err(e) => match self.abort().await {
                Ok(()) => Err(e),
                Err(abort) => Err(TransactionError {
                    reason: format!("{}; {}", e.reason, abort.reason),
                    failure: abort.failure,
                }),
            },
        }
    }

    /// Make `call` up to `tries` times while its outcome is unknown (the client timed out and says to call
    /// again to resume); the last such error after that, or the first other one.
    async fn until_answered(
        &self,
        what: &'static str,
        tries: usize,
        call: impl Fn(&FutureProducer) -> Result<(), KafkaError> + Clone + Send + 'static,
    ) -> Result<(), TransactionError> {
        let mut last = None;
        for _ in 0..tries {
            match self.blocking(what, call.clone()).await {
                Ok(()) => return Ok(()),
                Err(e) if e.failure == TransactionFailure::OutcomeUnknown => last = Some(e),
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| TransactionError {
            reason: format!("{what}: no answer"),
            failure: TransactionFailure::OutcomeUnknown,
        }))
    }

    async fn blocking(
        &self,
        what: &'static str,
        call: impl FnOnce(&FutureProducer) -> Result<(), KafkaError> + Send + 'static,
    ) -> Result<(), TransactionError> {
        let producer = self.producer.clone();
        let e = match tokio::task::spawn_blocking(move || call(&producer)).await {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(e)) => e,
            Err(e) => {
                return Err(TransactionError {
                    reason: format!("{what}: {e}"),
                    failure: TransactionFailure::OutcomeUnknown,
                });
            }
        };
        // The client's own fatal state counts too: after one, every call fails, not always as fatal itself.
        let fatal_state = self.producer.client().fatal_error().map(|(code, _)| code);
        let (retriable, fatal) = match &e {
            KafkaError::Transaction(t) => (t.is_retriable(), t.is_fatal() || fatal_state.is_some()),
            _ => (false, fatal_state.is_some()),
        };
        let fenced = is_fenced(e.rdkafka_error_code()) || is_fenced(fatal_state);
        let (reason, failure) = match (fenced, fatal) {
            (true, _) => (fenced_reason(what, &self.id), TransactionFailure::ProducerUnusable),
            (false, true) => (
                failed_for_good_reason(what, &explain(&e, &self.url), &self.id),
                TransactionFailure::ProducerUnusable,
            ),
            (false, false) if retriable => (
                format!("{what}: {}", explain(&e, &self.url)),
                TransactionFailure::OutcomeUnknown,
            ),
            (false, false) => (
                format!("{what}: {}", explain(&e, &self.url)),
                TransactionFailure::NotDone,
            ),
        };
        Err(TransactionError { reason, failure })
    }

    /// Whether each message's replay id is in a committed replay log record: read the whole log up to its
    /// end, read-committed, waiting (up to the transaction timeout) for transactions still open to end.
    pub async fn delivered(&self, batch: &[Envelope]) -> Result<Vec<bool>, AdapterError> {
        let wanted: HashSet<String> = batch
            .iter()
            .filter_map(|env| env.attribute(REPLAY_ID_ATTRIBUTE).map(str::to_owned))
            .collect();
        let url = self.url.clone();
        let deadline = Instant::now() + self.settle_for;
        let asked = wanted.len();
        let found = tokio::task::spawn_blocking(move || read_log(&url, wanted, deadline))
            .await
            .map_err(|e| AdapterError::Broker(e.to_string()))??;
        tracing::info!(
            "replay log `{}`: {} of {asked} messages in doubt were delivered",
            self.url.replay_log,
            found.len()
        );
        Ok(batch
            .iter()
            .map(|env| env.attribute(REPLAY_ID_ATTRIBUTE).is_some_and(|id| found.contains(id)))
            .collect())
    }
}

/// The ids of `wanted` that a committed record of the replay log lists.
fn read_log(url: &KafkaUrl, mut wanted: HashSet<String>, deadline: Instant) -> Result<HashSet<String>, AdapterError> {
    let topic = url.replay_log.as_str();
    let broker =
        |e: KafkaError| AdapterError::Broker(format!("{}: reading `{topic}`: {}", url.server, explain(&e, url)));
    let consumer: BaseConsumer = url
        .client_config(&[
            ("group.id", "redrive-replay-log-reader"),
            ("enable.auto.commit", "false"),
            ("enable.partition.eof", "true"),
            ("isolation.level", "read_committed"),
        ])
        .create()
        .map_err(broker)?;
    let (_, high) = consumer.fetch_watermarks(topic, 0, CALL_TIMEOUT).map_err(broker)?;
    let mut found = HashSet::new();
    let mut list = TopicPartitionList::new();
    list.add_partition_offset(topic, 0, Offset::Beginning).map_err(broker)?;
    consumer.assign(&list).map_err(broker)?;
    loop {
        if wanted.is_empty() {
            return Ok(found);
        }
        let position = consumer
            .position()
            .ok()
            .and_then(|list| list.find_partition(topic, 0).map(|p| p.offset()));
        let at_end = matches!(position, Some(Offset::Offset(p)) if p >= high);
        if high == 0 || at_end {
            return Ok(found);
        }
        if Instant::now() >= deadline {
            return Err(AdapterError::Broker(format!(
                "{}: `{topic}` did not become readable up to offset {high} in time (read to {position:?}; a \
                 transaction still open?)",
                url.server
            )));
        }
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(record)) => {
                for id in logged_ids(record.payload().unwrap_or_default()) {
                    if let Some(id) = wanted.take(id) {
                        found.insert(id);
                    }
                }
            }
            Some(Err(KafkaError::PartitionEOF(_))) | None => {}
            Some(Err(e)) => return Err(broker(e)),
        }
    }
}

/// Create the replay log topic (one partition) unless it exists.
async fn ensure_log_topic(url: &KafkaUrl) -> Result<(), AdapterError> {
    let topic = url.replay_log.as_str();
    let admin: AdminClient<DefaultClientContext> = url
        .client_config(&[])
        .create()
        .map_err(|e| AdapterError::Config(format!("{}: {}", url.describe(), explain(&e, url))))?;
    let new = NewTopic::new(topic, 1, TopicReplication::Fixed(-1));
    let results = admin
        .create_topics([&new], &AdminOptions::new().operation_timeout(Some(CALL_TIMEOUT)))
        .await
        .map_err(|e| AdapterError::Broker(format!("{}: creating `{topic}`: {}", url.server, explain(&e, url))))?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((_, code)) => {
                return Err(AdapterError::Config(format!(
                    "{}: delivery=exactly-once needs the replay log topic `{topic}`, and creating it failed: {code} \
                     (create it with one partition, or name another with replay_log=)",
                    url.server
                )));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transactional_ids_are_stable_and_distinct() {
        let a = KafkaUrl::parse("kafka://h:9092?topic=staging").unwrap();
        let b = KafkaUrl::parse("kafka://h:9092?topic=other").unwrap();
        let id = transactional_id(&a, "kafka://h:9092?topic=orders.DLT");
        assert_eq!(id, transactional_id(&a, "kafka://h:9092?topic=orders.DLT"));
        assert!(id.starts_with("redrive-") && id.len() == "redrive-".len() + 24, "{id}");
        assert_ne!(id, transactional_id(&b, "kafka://h:9092?topic=orders.DLT"));
        assert_ne!(id, transactional_id(&a, "kafka://h:9092?topic=payments.DLT"));
        assert_ne!(id, transactional_id(&a, "kafka://h:9092?topic=orders.DLT worker w-1"));
    }

    /// An abort that fails leaves the transaction open, so the run must stop: the reason names the transactional
    /// id and says so. (A producer without `transactional.id` refuses every transaction call at once, without a
    /// broker, so the refusal stands in for a failed abort.)
    #[tokio::test]
    async fn a_failed_abort_stops_the_run_and_names_the_transactional_id() {
        let url = KafkaUrl::parse("kafka://127.0.0.1:9?topic=staging").unwrap();
        let producer: FutureProducer = url.client_config(&[]).create().unwrap();
        let transactions = Transactions {
            producer,
            url,
            id: "redrive-abc".to_owned(),
            settle_for: Duration::from_secs(1),
            turn: tokio::sync::Mutex::new(()),
        };
        let e = transactions.abort().await.unwrap_err();
        assert_eq!(e.failure, TransactionFailure::ProducerUnusable, "{}", e.reason);
        assert!(e.reason.starts_with("aborting a transaction: "), "{}", e.reason);
        assert!(
            e.reason.contains("transactional id redrive-abc can send no more"),
            "{}",
            e.reason
        );
        // A refused commit is aborted, and that abort's failure is what stops the run.
        let e = transactions.commit().await.unwrap_err();
        assert_eq!(e.failure, TransactionFailure::ProducerUnusable, "{}", e.reason);
        assert!(e.reason.starts_with("committing a transaction: "), "{}", e.reason);
        assert!(e.reason.contains("transactional id redrive-abc"), "{}", e.reason);
    }

    #[test]
    fn a_log_record_lists_its_ids() {
        let value = log_value(["r-1", "r-2", "r-3"].into_iter());
        assert_eq!(logged_ids(value.as_bytes()).collect::<Vec<_>>(), ["r-1", "r-2", "r-3"]);
        assert_eq!(logged_ids(b"").count(), 0);
        assert_eq!(logged_ids(&[0xff, 0xfe]).count(), 0, "not UTF-8: no ids");
    }
}
