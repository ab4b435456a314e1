//! JSONL files, the embedded default: `file:path/dlq.jsonl` as a source (a DLQ export) and as a destination
//! (a staging file). The format is [`crate::core::jsonl`].

mod arrivals;
mod sink;
mod source;

pub use sink::FileSink;
pub use source::FileSource;
