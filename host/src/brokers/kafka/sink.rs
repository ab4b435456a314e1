//! `kafka://host:9092?topic=orders`: replayed messages produced to a topic; `--to origin` for a Kafka
//! source: to the topic each message was dead-lettered from (Kafka Connect or Spring headers).
//!
//! The producer is idempotent with `acks=all`: a message counts as forwarded only when its delivery report
//! says the partition leader and its in-sync replicas have it. Keys and headers are kept, the dead-letter
//! headers renamed `x-redrive-original-…` (`death=keep` sends them as they are), `x-redrive-replay-id` and
//! `x-redrive-replay-count` added. Keyed messages are partitioned as Java clients do (murmur2), so a key
//! goes back to the partition its consumers expect; `partition=original` sends each message to the
//! partition it was dead-lettered from.

use std::time::Duration;

use async_trait::async_trait;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;

use super::record::{origin_of, outgoing};
use super::url::{KafkaUrl, Partitioning};
use super::{explain, metadata_partitions};
use crate::core::adapter::{AdapterError, SendError, Sink};
use crate::core::envelope::Envelope;

/// Sends replayed messages to Kafka topics.
pub struct KafkaSink {
    url: KafkaUrl,
    /// `None`: each message's origin topic.
    topic: Option<String>,
    producer: FutureProducer,
}

impl KafkaSink {
    /// A destination topic; it must exist (a typo would otherwise create one where the broker allows it).
    pub async fn open(url: &str) -> Result<Self, AdapterError> {
        Self::connect(url, true).await
    }

    /// `--to origin` for the Kafka source `source_url`: each message to the topic it was dead-lettered from,
    /// on the source's cluster.
    pub async fn origin(source_url: &str) -> Result<Self, AdapterError> {
        Self::connect(source_url, false).await
    }

    /// Make the producer and check the URL's topic exists: the destination for `open`; for `origin`, the
    /// source topic, which checks the cluster can be reached with these settings.
    async fn connect(url: &str, to_url_topic: bool) -> Result<Self, AdapterError> {
        let url = KafkaUrl::parse(url)?;
        let producer = producer(&url)?;
        let client_url = url.clone();
        let client = producer.clone();
        tokio::task::spawn_blocking(move || metadata_partitions(client.client(), &client_url))
            .await
            .map_err(|e| AdapterError::Broker(e.to_string()))??;
        Ok(Self {
            topic: to_url_topic.then(|| url.topic.clone()),
            url,
            producer,
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
}

fn producer(url: &KafkaUrl) -> Result<FutureProducer, AdapterError> {
    let timeout_ms = url.reconnect_for.as_millis().clamp(1_000, 3_600_000).to_string();
    url.client_config(&[
        ("enable.idempotence", "true"),
        ("acks", "all"),
        ("partitioner", "murmur2_random"),
        // A batch is handed over whole and awaited: waiting for more records only delays its delivery reports
        // (5 ms per batch of the in-flight window; bench/kafka: 0 is 1.3-1.5x the throughput of 5).
        ("linger.ms", "0"),
        ("message.timeout.ms", &timeout_ms),
    ])
    .create()
    .map_err(|e| AdapterError::Config(format!("{}: {}", url.describe(), explain(&e, url))))
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
        let mut results: Vec<Result<(), SendError>> = vec![Ok(()); batch.len()];
        let mut deliveries = Vec::with_capacity(batch.len());
        for (index, env) in batch.iter().enumerate() {
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
        for (index, topic, future) in deliveries {
            results[index] = match future.await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err((e, _))) => Err(send_error(&e, topic, &self.url)),
                Err(_) => Err(SendError::retryable(
                    "the producer went away before confirming; not confirmed",
                )),
            };
        }
        results
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
