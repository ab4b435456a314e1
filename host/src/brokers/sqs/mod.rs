//! Amazon SQS plumbing shared by the `sqs://` source and sink: queue addresses and their options, AWS
//! clients built from the standard AWS configuration chain, queue attributes, and AWS errors explained
//! in words.
//!
//! A queue is named three ways, all resolving to its queue URL (which is also its identity in the run
//! journal and in replay ids):
//!
//! - `sqs://orders-dlq` (looked up with GetQueueUrl in the configured region and account),
//! - its queue URL, `https://sqs.eu-west-1.amazonaws.com/123456789012/orders-dlq` (the region comes from
//!   the host; a URL on another host, such as a local endpoint, also names the endpoint),
//! - its ARN, `arn:aws:sqs:eu-west-1:123456789012:orders-dlq`.
//!
//! Options follow a `?`: `sqs://orders-dlq?receivers=4&visibility=60s`.

pub mod attributes;
mod batch;
mod client;
mod sink;
mod source;
mod url;

pub use batch::chunk_indices;
pub use client::{
    Explained, QueueInfo, SqsClient, connect, explain, http_client, is_transient_code, list_source_queues, open_queue,
    outcome_unknown, queue_info, send_call_settings,
};
pub use sink::SqsSink;
pub use source::SqsSource;
pub use url::{QueueRef, ReleaseAt, SqsUrl};
