//! Records written to the dead-letter topic after the pass started, for the re-poison breaker: a consumer
//! of its own with no group, assigned every partition at the high watermark it had when the pass started.
//! It only reads: it joins no group and commits nothing, so the group's offsets and the other workers are
//! untouched.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::{Offset, TopicPartitionList};

use super::explain;
use super::record::{Record, to_envelope};
use super::url::KafkaUrl;
use crate::core::adapter::{AdapterError, Arrivals};
use crate::core::envelope::Envelope;

/// Most records read in one look (the rest waits for the next).
const MOST_PER_POLL: usize = 1000;
/// How long reading the watermarks may take, per partition.
const WATERMARK_TIMEOUT: Duration = Duration::from_secs(10);

/// Where each partition of the topic ends now: (partition, high watermark). A partition whose watermark
/// cannot be read is watched from wherever its end is when the watch starts.
pub(super) fn ends_now<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    url: &KafkaUrl,
    partitions: &[i32],
) -> Vec<(i32, Offset)> {
    partitions
        .iter()
        .map(|p| {
            let end = consumer
                .fetch_watermarks(&url.topic, *p, WATERMARK_TIMEOUT)
                .map_or(Offset::End, |(_, high)| Offset::Offset(high));
            (*p, end)
        })
        .collect()
}

/// Watches the end of every partition of one topic.
pub struct KafkaArrivals {
    url: KafkaUrl,
    from: Vec<(i32, Offset)>,
    consumer: Option<Arc<BaseConsumer>>,
}

impl KafkaArrivals {
    /// Watch `url`'s topic for records at or past `from` (each partition's end when the pass started).
    pub(super) fn new(url: KafkaUrl, from: Vec<(i32, Offset)>) -> Self {
        Self {
            url,
            from,
            consumer: None,
        }
    }

    /// The group-less consumer, assigned at the pass's ends.
    fn watcher(url: &KafkaUrl, from: &[(i32, Offset)]) -> Result<BaseConsumer, AdapterError> {
        // A group-less consumer: librdkafka still wants a group id to create one, and never uses it with
        // `assign` and no commits.
        let consumer: BaseConsumer = url
            .client_config(&[
                ("group.id", "redrive-arrivals-watch"),
                ("enable.auto.commit", "false"),
                ("enable.auto.offset.store", "false"),
                ("enable.partition.eof", "false"),
            ])
            .create()
            .map_err(|e| AdapterError::Config(format!("{}: {}", url.describe(), explain(&e, url))))?;
        let mut list = TopicPartitionList::new();
        for (p, offset) in from {
            list.add_partition_offset(&url.topic, *p, *offset)
                .map_err(|e| AdapterError::Config(e.to_string()))?;
        }
        consumer
            .assign(&list)
            .map_err(|e| AdapterError::Broker(format!("{}: {}", url.describe(), explain(&e, url))))?;
        Ok(consumer)
    }
}

impl Drop for KafkaArrivals {
    /// Closing a librdkafka client takes ~100 ms (its threads wind down), at the end of every run. This one joined
    /// no group and committed nothing, so nothing waits for it: it closes on a thread of its own.
    fn drop(&mut self) {
        if let Some(consumer) = self.consumer.take() {
            let closed = std::thread::Builder::new()
                .name("kafka-watch-close".into())
                .spawn(move || drop(consumer));
            if let Err(e) = closed {
                tracing::debug!("closing the arrivals watcher on this thread: {e}");
            }
        }
    }
}

#[async_trait]
impl Arrivals for KafkaArrivals {
    async fn poll(&mut self) -> Result<Vec<Envelope>, AdapterError> {
        let consumer = match &self.consumer {
            Some(c) => c.clone(),
            None => {
                let (url, from) = (self.url.clone(), self.from.clone());
                let created = tokio::task::spawn_blocking(move || Self::watcher(&url, &from))
                    .await
                    .map_err(|e| AdapterError::Broker(e.to_string()))??;
                self.consumer.insert(Arc::new(created)).clone()
            }
        };
        let url = self.url.clone();
        tokio::task::spawn_blocking(move || {
            let mut seen = Vec::new();
            while seen.len() < MOST_PER_POLL {
                match consumer.poll(Duration::ZERO) {
                    None => break,
                    Some(Ok(m)) => seen.push(to_envelope(Record::read(&m))),
                    Some(Err(e)) if seen.is_empty() => {
                        return Err(AdapterError::Broker(format!(
                            "{}: {}",
                            url.describe(),
                            explain(&e, &url)
                        )));
                    }
                    Some(Err(_)) => break,
                }
            }
            Ok(seen)
        })
        .await
        .map_err(|e| AdapterError::Broker(e.to_string()))?
    }
}
