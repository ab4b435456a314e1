//! Sources: where dead letters come from. One file per broker behind one trait.
//!
//! A [`Source`] streams the messages of one bounded pass over a dead-letter queue. Each message carries an
//! [`AckToken`]; the pipeline settles it downstream through the source's [`Acker`]: `ack` removes it from the
//! DLQ (only after the destination confirmed it, or it was archived), `release` leaves it there untouched.
//! The split lets brokers with very different models fit: RabbitMQ delivery tags (ack / nack+requeue), SQS
//! receipt handles (delete / change visibility), Kafka offsets (commit), Redis Streams entry ids (XACK).

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;

use crate::core::{Endpoint, Scheme};
use crate::message::Envelope;

mod amqp;
mod file;
mod postgres;
mod redis;
mod sqs;

pub use amqp::AmqpSource;
pub use file::FileSource;
pub use postgres::PgSource;
pub use redis::RedisSource;
pub use sqs::SqsSource;

/// Identifies one received message to its source, for settling it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AckToken {
    /// Position or tag: line number, delivery tag, offset.
    pub seq: u64,
    /// Broker key where a number is not enough: receipt handle, entry id, partition.
    pub key: String,
}

/// One message received from a source.
#[derive(Debug)]
pub struct Delivery {
    /// The normalised message.
    pub envelope: Envelope,
    /// How to settle it.
    pub token: AckToken,
}

/// What a source yields.
#[derive(Debug)]
#[allow(
    clippy::large_enum_variant,
    reason = "almost every item is a message; boxing would cost an allocation each"
)]
pub enum Received {
    /// A message.
    Message(Delivery),
    /// Something that could not be read as a message. It stays in the DLQ; the problem is reported.
    Malformed {
        /// How to settle it (it is always released).
        token: AckToken,
        /// Where and what: e.g. `line 12: not a message object: ...`.
        problem: String,
    },
}

/// Whether the pass may remove messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceMode {
    /// A replay: acked messages are removed from the DLQ.
    Consume,
    /// A plan or dry run: nothing is ever removed.
    Peek,
}

/// Errors of sources and sinks.
#[derive(Debug, thiserror::Error)]
pub enum AdapterError {
    /// The URL or its options are wrong.
    #[error("{0}")]
    Config(String),
    /// The broker refused, went away or could not be reached (the message says where and why).
    #[error("{0}")]
    Broker(String),
    /// Reading or writing failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, and where.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

impl AdapterError {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        AdapterError::Io {
            context: context.into(),
            source,
        }
    }
}

/// A dead-letter queue, read in one bounded pass.
#[async_trait]
pub trait Source: Send {
    /// A stable identity without credentials (e.g. `file:/abs/dlq.jsonl`, `amqp://host/vhost?queue=q`).
    /// Replay ids and the run journal are derived from it.
    fn identity(&self) -> &str;

    /// How many messages this pass will yield, for progress and ETA. Filled in when known; it may arrive
    /// after the pass started (a file is counted in the background).
    fn pass_size(&self) -> PassSize;

    /// The next message of the pass, or `None` when the pass is complete. Messages that come back to the
    /// DLQ during the run are not part of the pass.
    async fn next(&mut self) -> Result<Option<Received>, AdapterError>;

    /// The handle the pipeline settles messages with.
    fn acker(&self) -> Arc<dyn Acker>;

    /// End the pass: give back whatever is still held, write remainders. Returns lines for the summary.
    async fn finish(&mut self) -> Result<Vec<String>, AdapterError>;
}

/// Settles received messages. Both calls are idempotent.
#[async_trait]
pub trait Acker: Send + Sync {
    /// Remove these messages from the DLQ. Only called once their fate is durable elsewhere.
    async fn ack(&self, tokens: &[AckToken]) -> Result<(), AdapterError>;
    /// Leave these messages in the DLQ, untouched.
    async fn release(&self, tokens: &[AckToken]) -> Result<(), AdapterError>;
}

/// The size of a pass, set once when it becomes known.
pub type PassSize = Arc<std::sync::OnceLock<u64>>;

/// Options that only some sources use.
#[derive(Clone, Debug, Default)]
pub struct SourceOptions {
    /// For sources that cannot delete (files): where to write what is still in the DLQ at the end.
    pub remainder: Option<PathBuf>,
    /// Work out the pass size for a progress display, when that costs extra work (counting a file's lines).
    pub count_pass: bool,
    /// AWS profile, region and endpoint for SQS sources.
    pub aws: crate::sqs::AwsSettings,
    /// Database sources: an SQL predicate the operator wrote (`--where`), added to the row selection.
    pub where_clause: Option<String>,
}

/// Open a source: `file:path/to/dlq.jsonl`, `amqp://user:pass@host/vhost?queue=orders.dlq`,
/// `sqs://orders-dlq` (or an SQS queue URL or ARN), `redis://host:6379/0?stream=orders:dlq`,
/// `postgres://user@host/db?table=failed_jobs`.
pub async fn open_source(
    endpoint: &Endpoint,
    mode: SourceMode,
    options: &SourceOptions,
) -> Result<Box<dyn Source>, AdapterError> {
    if options.where_clause.is_some() && endpoint.scheme() != Scheme::Postgres {
        return Err(AdapterError::Config(
            "--where selects rows of a database table (postgres://...); this source is not one".into(),
        ));
    }
    let url = endpoint.secret_text();
    Ok(match endpoint.scheme() {
        Scheme::File => Box::new(FileSource::open(endpoint.file_path().unwrap_or_default(), mode, options).await?),
        Scheme::Postgres => Box::new(PgSource::open(url, mode, options.where_clause.as_deref()).await?),
        Scheme::Amqp => Box::new(AmqpSource::open(url, mode).await?),
        Scheme::Sqs => Box::new(SqsSource::open(url, mode, &options.aws).await?),
        Scheme::Redis => Box::new(RedisSource::open(url, mode).await?),
    })
}

/// `url` with any password and secret option replaced by `***`, for messages and logs; a URL that cannot be
/// parsed safely is not shown at all.
pub fn redact_url(url: &str) -> String {
    match Endpoint::parse(url) {
        Ok(endpoint) => endpoint.redacted().to_owned(),
        Err(_) => match url.split_once(':') {
            Some((scheme, _)) if !scheme.contains(['/', '@']) => format!("{scheme}:(URL not shown)"),
            _ => "(URL not shown)".to_owned(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn passwords_are_masked() {
        assert_eq!(
            redact_url("amqp://guest:s3cret@h:5672/%2f?queue=q"),
            "amqp://guest:***@h:5672/%2f?queue=q"
        );
        assert_eq!(redact_url("amqp://h/?queue=q"), "amqp://h/?queue=q");
        assert_eq!(redact_url("amqp://user@h"), "amqp://user@h");
        assert_eq!(redact_url("file:dlq.jsonl"), "file:dlq.jsonl");
        assert_eq!(redact_url("amqp://a:b@c@h/x"), "amqp://a:***@h/x");
        assert_eq!(redact_url("amqp://a:b#c@h/x"), "amqp:(URL not shown)");
    }
}
