//! Sinks: where replayed messages go. One file per destination behind one trait.
//!
//! [`Sink::send`] resolves only when the destination confirmed each message (publisher confirms, per-entry
//! batch results, fsync), entry by entry: the pipeline acks a source message only after its entry is `Ok`.

use std::sync::Arc;

use async_trait::async_trait;

use crate::message::Envelope;
use crate::source::AdapterError;

mod file;

pub use file::FileSink;

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

/// Open a sink from its URL: `file:path/to/staging.jsonl`.
pub async fn open_sink(url: &str) -> Result<Arc<dyn Sink>, AdapterError> {
    match url.split_once(':') {
        Some(("file", path)) => Ok(Arc::new(FileSink::open(path).await?)),
        Some((scheme, _)) if !scheme.is_empty() && !scheme.contains(['/', '\\']) => Err(AdapterError::Config(format!(
            "unsupported destination `{scheme}:`; supported: file:path/to/staging.jsonl"
        ))),
        _ => Err(AdapterError::Config(format!(
            "destination {url:?} has no scheme; write file:{url} for a JSONL file"
        ))),
    }
}
