//! Sinks: where replayed messages go. One file per destination behind one trait.
//!
//! [`Sink::send`] resolves only when the destination confirmed each message (publisher confirms, per-entry
//! batch results, fsync), entry by entry: the pipeline acks a source message only after its entry is `Ok`.

use std::sync::Arc;

use async_trait::async_trait;

use crate::core::{Destination, Endpoint, Scheme};
use crate::message::Envelope;
use crate::source::AdapterError;

mod amqp;
mod file;
mod redis;
mod sqs;

pub use amqp::AmqpSink;
pub use file::FileSink;
pub use redis::RedisSink;
pub use sqs::SqsSink;

/// What a destination can tell about a message sent just before a crash (it may or may not have arrived).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Redelivery {
    /// It cannot be read back (RabbitMQ, SQS): a message in flight at a crash is sent again on resume, with
    /// the same replay id, at most `--max-in-flight` of them per crash.
    Possible,
    /// The sink recognises a replay id it already holds and does not add it again (a file).
    Deduplicated,
    /// It can be asked whether messages arrived ([`Sink::delivered`]): sends are journaled ahead, and a
    /// resumed run asks before sending again (a Redis stream).
    Checkable,
}

/// A destination for replayed messages.
#[async_trait]
pub trait Sink: Send + Sync {
    /// Where messages go, without credentials.
    fn describe(&self) -> String;

    /// Most messages one `send` call should carry.
    fn max_batch(&self) -> usize;

    /// What the destination can tell about a message sent before a crash.
    fn redelivery(&self) -> Redelivery {
        Redelivery::Possible
    }

    /// For [`Redelivery::Checkable`] sinks: whether each message (by its replay id) is already there.
    async fn delivered(&self, batch: &[Envelope]) -> Result<Vec<bool>, AdapterError> {
        Ok(vec![false; batch.len()])
    }

    /// Send a batch. One result per message, in order; `Ok` means the destination confirmed it.
    async fn send(&self, batch: &[Envelope]) -> Vec<Result<(), String>>;

    /// Flush and close.
    async fn close(&self) -> Result<(), AdapterError>;
}

/// Open a destination: `file:path/to/staging.jsonl`, `amqp://host/vhost?queue=staging`,
/// `amqp://host/vhost?exchange=orders&routing_key=created`, `sqs://orders-staging` (or an SQS queue URL or
/// ARN), `redis://host/db?stream=name`; or `origin`, back where each message of `source` came from.
/// `aws` applies to SQS.
pub async fn open_sink(
    destination: &Destination,
    source: &Endpoint,
    aws: &crate::sqs::AwsSettings,
) -> Result<Arc<dyn Sink>, AdapterError> {
    let endpoint = match destination {
        Destination::Origin => {
            let url = source.secret_text();
            return match source.scheme() {
                Scheme::Amqp => Ok(Arc::new(AmqpSink::origin(url).await?)),
                Scheme::Sqs => Ok(Arc::new(SqsSink::origin(url, aws).await?)),
                Scheme::Redis => Ok(Arc::new(RedisSink::origin(url).await?)),
                Scheme::File | Scheme::Postgres => Err(AdapterError::Config(format!(
                    "--to origin needs a broker source that records where each message was dead-lettered from \
                     (amqp://..., sqs://... or redis://...); {source} does not"
                ))),
            };
        }
        Destination::To(endpoint) => endpoint,
    };
    let url = endpoint.secret_text();
    match endpoint.scheme() {
        Scheme::File => Ok(Arc::new(
            FileSink::open(endpoint.file_path().unwrap_or_default()).await?,
        )),
        Scheme::Amqp => Ok(Arc::new(AmqpSink::open(url).await?)),
        Scheme::Sqs => Ok(Arc::new(SqsSink::open(url, aws).await?)),
        Scheme::Redis => Ok(Arc::new(RedisSink::open(url).await?)),
        Scheme::Postgres => Err(AdapterError::Config(
            "a postgres:// table is a source only; replay to a queue, a stream or a file".into(),
        )),
    }
}
