//! Sinks: where replayed messages go. One file per destination behind one trait.
//!
//! [`Sink::send`] resolves only when the destination confirmed each message (publisher confirms, per-entry
//! batch results, fsync), entry by entry: the pipeline acks a source message only after its entry is `Ok`.

use std::sync::Arc;

use async_trait::async_trait;

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

/// A destination for replayed messages.
#[async_trait]
pub trait Sink: Send + Sync {
    /// Where messages go, without credentials.
    fn describe(&self) -> String;

    /// Most messages one `send` call should carry.
    fn max_batch(&self) -> usize;

    /// Send a batch. One result per message, in order; `Ok` means the destination confirmed it.
    async fn send(&self, batch: &[Envelope]) -> Vec<Result<(), String>>;

    /// Flush and close.
    async fn close(&self) -> Result<(), AdapterError>;
}

/// The destination name that sends each message back where it was dead-lettered from.
pub const ORIGIN: &str = "origin";

/// Open a sink from its URL: `file:path/to/staging.jsonl`, `amqp://host/vhost?queue=staging`,
/// `amqp://host/vhost?exchange=orders&routing_key=created`, `sqs://orders-staging` (or an SQS queue URL or
/// ARN); or `origin` with the source's URL. `aws` applies to SQS.
pub async fn open_sink(
    url: &str,
    source_url: &str,
    aws: &crate::sqs::AwsSettings,
) -> Result<Arc<dyn Sink>, AdapterError> {
    if url == ORIGIN {
        return match source_url.split_once(':') {
            Some(("amqp" | "amqps", _)) => Ok(Arc::new(AmqpSink::origin(source_url).await?)),
            Some(("sqs" | "http" | "https" | "arn", _)) => Ok(Arc::new(SqsSink::origin(source_url, aws).await?)),
            Some(("redis" | "rediss", _)) => Ok(Arc::new(RedisSink::origin(source_url).await?)),
            _ => Err(AdapterError::Config(format!(
                "--to origin needs a broker source that records where each message was dead-lettered from \
                 (amqp://..., sqs://... or redis://...); {} does not",
                crate::source::redact_url(source_url)
            ))),
        };
    }
    match url.split_once(':') {
        Some(("file", path)) => Ok(Arc::new(FileSink::open(path).await?)),
        Some(("amqp" | "amqps", _)) => Ok(Arc::new(AmqpSink::open(url).await?)),
        Some(("sqs" | "http" | "https" | "arn", _)) => Ok(Arc::new(SqsSink::open(url, aws).await?)),
        Some(("redis" | "rediss", _)) => Ok(Arc::new(RedisSink::open(url).await?)),
        Some((scheme, _)) if !scheme.is_empty() && !scheme.contains(['/', '\\']) => Err(AdapterError::Config(format!(
            "unsupported destination `{scheme}:`; supported: file:path/to/staging.jsonl, \
             amqp://host/vhost?queue=name or ?exchange=name&routing_key=key, sqs://queue-name, \
             redis://host/db?stream=name, origin"
        ))),
        _ => Err(AdapterError::Config(format!(
            "destination {url:?} has no scheme; write file:{url} for a JSONL file"
        ))),
    }
}
