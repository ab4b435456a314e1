//! The envelope every broker's messages are normalised into, and the decisions filters make about them.

use std::any::Any;
use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Attribute carrying redrive's stable replay id on every forwarded message.
pub const REPLAY_ID_ATTRIBUTE: &str = "x-redrive-replay-id";
/// Attribute carrying how many times redrive has replayed a message.
pub const REPLAY_COUNT_ATTRIBUTE: &str = "x-redrive-replay-count";

/// Prefix a replay gives the dead-letter headers / attributes of the message's broker (`x-death`,
/// `kafka_dlt-*`, `CloudPubSubDeadLetterSource*`, ...), unless told to keep them: consumers see a fresh
/// message, and the history stays with it.
pub const MOVED_ATTRIBUTE_PREFIX: &str = "x-redrive-original-";

/// Prefixes of the attributes sources add from a broker's own properties (`kafka.partition`,
/// `pubsub.ordering_key`, ...): shown to filters, never sent on as attributes.
pub const BROKER_ATTRIBUTE_PREFIXES: [&str; 4] = ["amqp.", "sqs.", "kafka.", "pubsub."];

/// True for an attribute a source added from a broker's own properties (`amqp.priority`, `kafka.partition`,
/// ...): a sink maps its own broker's onto native properties and sends none of them as headers.
pub fn is_broker_property(name: &str) -> bool {
    BROKER_ATTRIBUTE_PREFIXES.iter().any(|p| name.starts_with(p))
}

/// Headers / message attributes applications commonly use for the error that sent a message to the DLQ
/// (Spring AMQP, MassTransit, hand-written consumers), first match wins.
pub const ERROR_TEXT_ATTRIBUTES: [&str; 5] = [
    "x-exception-message",
    "x-error-message",
    "x-error",
    "MT-Fault-Message",
    "error",
];
/// Headers / message attributes commonly carrying the error class, first match wins.
pub const ERROR_CLASS_ATTRIBUTES: [&str; 4] = [
    "x-exception-class",
    "x-exception-type",
    "x-error-class",
    "MT-Fault-ExceptionType",
];

/// One dead letter, normalised across brokers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Envelope {
    /// The message id in its dead-letter queue.
    pub id: String,
    /// The payload, byte for byte.
    pub body: Vec<u8>,
    /// Headers / message attributes in broker order. Non-string values are given as JSON text.
    pub attributes: Vec<(String, String)>,
    /// Where the message came from.
    pub origin: Origin,
    /// Why it is in the dead-letter queue, as far as the broker tells.
    pub failure: FailureContext,
    /// How many times redrive already replayed this message.
    pub replay_count: u32,
    /// What the source noticed while reading it (a malformed dead-letter header, ...). Written to the
    /// audit records; never sent on.
    pub notes: Vec<String>,
    /// The broker's own form of the message, for a sink of the same kind (typed AMQP headers, ...).
    pub native: Native,
    /// True when the broker gives a message a new id each time it is sent (SQS MessageId), so the id
    /// alone tells this dead letter apart from the same payload dead-lettered again after a replay.
    /// When false (AMQP `message-id`, files), the id may be reused and the run journal also keys on
    /// the replay count, delivery count and failure time.
    pub id_unique_per_send: bool,
}

/// Broker-specific data a source attaches to an envelope so that a sink of the same kind can send the
/// message on without loss (e.g. AMQP header types that the string attributes cannot carry).
/// Sinks of other kinds ignore it.
#[derive(Clone, Default)]
pub struct Native(Option<Arc<dyn Any + Send + Sync>>);

impl Native {
    /// Attach `value`.
    pub fn new<T: Any + Send + Sync>(value: T) -> Self {
        Native(Some(Arc::new(value)))
    }

    /// The attached value, if it is a `T`.
    pub fn get<T: Any>(&self) -> Option<&T> {
        self.0.as_deref().and_then(|v| v.downcast_ref())
    }
}

impl PartialEq for Native {
    fn eq(&self, other: &Self) -> bool {
        match (&self.0, &other.0) {
            (None, None) => true,
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

impl Eq for Native {}

impl fmt::Debug for Native {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() { "Native(..)" } else { "Native(none)" })
    }
}

impl Envelope {
    /// True when the message's failure time (the last one, else the first) is in `[since, until)`. A message
    /// whose failure time is unknown is outside any window asked for.
    pub fn failed_within(&self, since: Option<DateTime<Utc>>, until: Option<DateTime<Utc>>) -> bool {
        if since.is_none() && until.is_none() {
            return true;
        }
        let Some(at) = self.failure.last_failed_at.or(self.failure.first_failed_at) else {
            return false;
        };
        since.is_none_or(|s| at >= s) && until.is_none_or(|u| at < u)
    }

    /// Value of the first attribute named `name`.
    pub fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// Apply attribute changes in order; see [`apply_attribute_changes`].
    pub fn apply_attribute_changes(&mut self, changes: &[AttributeChange]) {
        apply_attribute_changes(&mut self.attributes, changes);
    }
}

/// Apply attribute changes in order: `Set` replaces the first attribute of that name (or appends),
/// `Remove` drops every attribute of that name.
pub fn apply_attribute_changes(attributes: &mut Vec<(String, String)>, changes: &[AttributeChange]) {
    for change in changes {
        match change {
            AttributeChange::Set(name, value) => match attributes.iter_mut().find(|(k, _)| k == name) {
                Some(slot) => slot.1.clone_from(value),
                None => attributes.push((name.clone(), value.clone())),
            },
            AttributeChange::Remove(name) => attributes.retain(|(k, _)| k != name),
        }
    }
}

/// Where a message came from.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    /// The broker kind: `file`, `rabbitmq`, `sqs`, `redis`, `kafka`, `database`, ...
    pub system: String,
    /// Name of the dead-letter queue.
    pub dlq: String,
    /// The queue or topic the message was dead-lettered from, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original_queue: Option<String>,
}

/// Why a message was dead-lettered, as far as it is known.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailureContext {
    /// Broker-level reason: `rejected`, `expired`, `maxlen`, ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Error text recorded by the failing consumer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_text: Option<String>,
    /// Error class or type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_class: Option<String>,
    /// Deliveries before the message was dead-lettered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receive_count: Option<u32>,
    /// First failure time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_failed_at: Option<DateTime<Utc>>,
    /// Last failure time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failed_at: Option<DateTime<Utc>>,
}

impl FailureContext {
    /// True when nothing at all is known about the failure.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// A filter's verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Forward, then remove from the DLQ.
    Replay,
    /// Leave in the DLQ.
    Skip,
    /// Archive, then remove from the DLQ.
    Discard,
}

impl Verdict {
    /// Lower-case name, as written in outputs.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Replay => "replay",
            Verdict::Skip => "skip",
            Verdict::Discard => "discard",
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A change to a message's attributes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AttributeChange {
    /// Add or replace an attribute.
    Set(String, String),
    /// Remove an attribute.
    Remove(String),
}

/// One module's decision about one message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// What happens to the message.
    pub verdict: Verdict,
    /// Why.
    pub reason: String,
    /// A replacement body, when the filter repaired the payload.
    pub body: Option<Vec<u8>>,
    /// Attribute changes, applied in order.
    pub attribute_changes: Vec<AttributeChange>,
}

/// What became of a message after the whole filter chain: a verdict, or `failed`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Forward it.
    Replay,
    /// Leave it in the DLQ.
    Skip,
    /// Archive and remove it.
    Discard,
    /// A filter trapped, timed out, hit a limit or returned an error: the message stays in the DLQ.
    Failed,
}

impl Outcome {
    /// Lower-case name, as written in outputs.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Replay => "replay",
            Outcome::Skip => "skip",
            Outcome::Discard => "discard",
            Outcome::Failed => "failed",
        }
    }
}

impl From<Verdict> for Outcome {
    fn from(v: Verdict) -> Self {
        match v {
            Verdict::Replay => Outcome::Replay,
            Verdict::Skip => Outcome::Skip,
            Verdict::Discard => Outcome::Discard,
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The failure-time window a run selects (`--since`, `--until`), both ends open by default. The pipeline
/// checks every message against it ([`Envelope::failed_within`]); a source that can seek by time (Kafka)
/// also starts and stops its pass there.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TimeWindow {
    /// Only messages that failed at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Only messages that failed before this time.
    pub until: Option<DateTime<Utc>>,
}

impl TimeWindow {
    /// True when neither end is set.
    pub fn is_open(&self) -> bool {
        self.since.is_none() && self.until.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_properties_are_the_prefixed_attributes_only() {
        for name in [
            "amqp.priority",
            "sqs.SentTimestamp",
            "kafka.partition",
            "pubsub.ordering_key",
        ] {
            assert!(is_broker_property(name), "{name}");
        }
        for name in ["tenant", "x-redrive-replay-id", "kafka_dlt-original-topic", "amqp"] {
            assert!(!is_broker_property(name), "{name}");
        }
    }

    #[test]
    fn attribute_changes_apply_in_order() {
        let mut env = Envelope {
            attributes: vec![
                ("a".into(), "1".into()),
                ("b".into(), "2".into()),
                ("a".into(), "3".into()),
            ],
            ..Default::default()
        };
        env.apply_attribute_changes(&[
            AttributeChange::Set("b".into(), "20".into()),
            AttributeChange::Remove("a".into()),
            AttributeChange::Set("c".into(), "30".into()),
        ]);
        assert_eq!(
            env.attributes,
            vec![("b".into(), "20".into()), ("c".into(), "30".into())]
        );
        assert_eq!(env.attribute("c"), Some("30"));
        assert_eq!(env.attribute("a"), None);
    }
}
