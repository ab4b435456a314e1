//! Apache Kafka (and Kafka-compatible brokers): dead-letter topics as sources, topics as destinations.
//!
//! - [`url`]: `kafka://` URLs, redrive's options and the librdkafka properties passed through.
//! - [`record`]: records ↔ envelopes, the Kafka Connect and Spring dead-letter header dialects.
//! - [`offsets`]: how far a partition's committed offset may move.
//! - `acker`: acks and releases, as commits of the group's offsets.
//! - [`source`]: one pass over a dead-letter topic, committing only past settled messages.
//! - [`arrivals`]: what arrives in the topic while a pass runs, for the re-poison breaker.
//! - [`window`]: `--since` / `--until` as offsets, from the broker's time index.
//! - [`sink`]: an idempotent producer; a message counts as forwarded on its delivery report.
//! - [`exactly_once`]: `delivery=exactly-once`, a transaction per batch and the replay log.
//! - [`dlq_offsets`]: the DLQ group's offsets committed in those transactions, on the source's cluster.
//!
//! The client is librdkafka (the `rdkafka` crate, built from its bundled source).

mod acker;
pub mod arrivals;
pub mod dlq_offsets;
pub mod exactly_once;
pub mod offsets;
mod reader;
pub mod record;
pub mod sink;
pub mod source;
pub mod url;
pub mod window;

use std::time::Duration;

use rdkafka::client::{Client, ClientContext};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

pub use dlq_offsets::DlqGroup;
pub use sink::KafkaSink;
pub use source::KafkaSource;
pub use url::KafkaUrl;

use crate::core::adapter::AdapterError;
use crate::core::endpoint::is_secret_key;

/// How long opening waits for the cluster's metadata.
const METADATA_TIMEOUT: Duration = Duration::from_secs(10);

/// A client error in words, with what to check; secret property values never appear.
pub fn explain(error: &KafkaError, url: &KafkaUrl) -> String {
    let hint = match error.rdkafka_error_code() {
        Some(
            RDKafkaErrorCode::BrokerTransportFailure
            | RDKafkaErrorCode::AllBrokersDown
            | RDKafkaErrorCode::Resolve
            | RDKafkaErrorCode::OperationTimedOut
            | RDKafkaErrorCode::RequestTimedOut,
        ) => Some(format!(
            "cannot reach the broker at {}: is it running, and are the host and port right?",
            url.brokers
        )),
        Some(RDKafkaErrorCode::Authentication | RDKafkaErrorCode::SaslAuthenticationFailed) => Some(
            "authentication failed: check sasl.mechanism, sasl.username and the password (in the URL's user info \
             or sasl.password)"
                .into(),
        ),
        Some(RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::UnknownTopic) => {
            Some(format!("topic `{}` does not exist (check the name)", url.topic))
        }
        Some(
            RDKafkaErrorCode::TopicAuthorizationFailed
            | RDKafkaErrorCode::GroupAuthorizationFailed
            | RDKafkaErrorCode::ClusterAuthorizationFailed,
        ) => Some("not authorised: the user needs READ on the topic and the group, WRITE on a destination".into()),
        _ => None,
    };
    let mut text = error.to_string();
    if let KafkaError::ClientCreation(_) | KafkaError::ClientConfig(..) = error {
        text = format!(
            "the client refused its configuration: {text} (properties given: {}); see librdkafka's CONFIGURATION.md",
            url.shown_properties()
        );
    }
    for (key, value) in &url.client {
        if is_secret_key(key) && !value.is_empty() {
            text = text.replace(value.as_str(), "***");
        }
    }
    match hint {
        Some(hint) => format!("{hint} ({text})"),
        None => text,
    }
}

/// The topic's partitions, from the cluster's metadata: a clear error when the broker cannot be reached or
/// the topic does not exist.
pub fn metadata_partitions<C: ClientContext>(client: &Client<C>, url: &KafkaUrl) -> Result<Vec<i32>, AdapterError> {
    let metadata = client
        .fetch_metadata(Some(&url.topic), METADATA_TIMEOUT)
        .map_err(|e| AdapterError::Broker(format!("{}: {}", url.describe(), explain(&e, url))))?;
    let Some(topic) = metadata.topics().iter().find(|t| t.name() == url.topic) else {
        return Err(AdapterError::Config(format!(
            "{}: topic `{}` does not exist (check the name)",
            url.server, url.topic
        )));
    };
    if let Some(error) = topic.error() {
        let error = KafkaError::MetadataFetch(error.into());
        return Err(AdapterError::Config(format!(
            "{}: {}",
            url.describe(),
            explain(&error, url)
        )));
    }
    if topic.partitions().is_empty() {
        return Err(AdapterError::Config(format!(
            "{}: topic `{}` does not exist (check the name)",
            url.server, url.topic
        )));
    }
    Ok(topic.partitions().iter().map(|p| p.id()).collect())
}
