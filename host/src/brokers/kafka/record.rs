//! A Kafka record as redrive sees it: the envelope read from a dead-letter topic (the Kafka Connect and the
//! Spring header dialects mapped to the failure context and origin), and the record sent for an envelope.
//!
//! - **Kafka Connect** (`errors.deadletterqueue.context.headers.enable=true`): `__connect.errors.topic`,
//!   `.partition`, `.offset`, `.connector.name`, `.task.id`, `.stage`, `.class.name`, `.exception.class.name`,
//!   `.exception.message`, `.exception.stacktrace`, all as UTF-8 text.
//! - **Spring Kafka** (`DeadLetterPublishingRecoverer`): `kafka_dlt-original-topic`, `-original-partition`
//!   (4-byte big-endian int), `-original-offset` and `-original-timestamp` (8-byte big-endian longs),
//!   `-original-consumer-group`, `-exception-fqcn`, `-exception-cause-fqcn`, `-exception-message`,
//!   `-exception-stacktrace`.
//!
//! Filters see every header as an attribute (binary numbers as decimal text, other non-UTF-8 values as base64
//! with a note), and `kafka.topic`, `kafka.partition`, `kafka.offset`, `kafka.timestamp` and `kafka.key`
//! (`kafka.key.base64` when the key is not UTF-8). A header that does not read as its dialect says never
//! stops a run: it becomes a note in the audit record.

use base64::Engine as _;
use chrono::{DateTime, Utc};
use rdkafka::message::{Headers, Message};

use super::url::DeathHeaders;
use crate::core::envelope::{
    Envelope, FailureContext, MOVED_ATTRIBUTE_PREFIX, Native, Origin, REPLAY_COUNT_ATTRIBUTE, is_broker_property,
};

/// Prefix of Kafka Connect's dead-letter headers.
pub const CONNECT_PREFIX: &str = "__connect.errors.";
/// Prefix of Spring Kafka's dead-letter headers.
pub const SPRING_PREFIX: &str = "kafka_dlt-";

/// Spring headers holding big-endian numbers: (name, width in bytes).
const SPRING_NUMBERS: [(&str, usize); 3] = [
    ("kafka_dlt-original-partition", 4),
    ("kafka_dlt-original-offset", 8),
    ("kafka_dlt-original-timestamp", 8),
];

/// One record read from the dead-letter topic.
#[derive(Clone, Debug)]
pub struct Record {
    /// The topic it was read from.
    pub topic: String,
    /// Its partition.
    pub partition: i32,
    /// Its offset.
    pub offset: i64,
    /// Its key.
    pub key: Option<Vec<u8>>,
    /// Its value (`None`: a tombstone).
    pub value: Option<Vec<u8>>,
    /// Its timestamp (milliseconds since the epoch), when it has one.
    pub timestamp_ms: Option<i64>,
    /// Its headers in order (a value may be null).
    pub headers: Vec<(String, Option<Vec<u8>>)>,
}

impl Record {
    /// Copy a message the consumer read.
    pub fn read<M: Message>(m: &M) -> Self {
        Self {
            topic: m.topic().to_owned(),
            partition: m.partition(),
            offset: m.offset(),
            key: m.key().map(<[u8]>::to_vec),
            value: m.payload().map(<[u8]>::to_vec),
            timestamp_ms: m.timestamp().to_millis(),
            headers: m
                .headers()
                .map(|h| {
                    h.iter()
                        .map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec)))
                        .collect()
                })
                .unwrap_or_default(),
        }
    }
}

/// What a Kafka sink needs to send a record on byte for byte.
#[derive(Clone, Debug)]
pub struct KafkaNative {
    /// The key as read.
    pub key: Option<Vec<u8>>,
    /// The headers as read, with the text each was shown to filters as.
    pub headers: Vec<(String, Option<Vec<u8>>, String)>,
    /// The partition it was dead-lettered from, per its headers.
    pub original_partition: Option<i32>,
}

/// The envelope id of a record: `partition-offset` (unique in its topic).
pub fn record_id(partition: i32, offset: i64) -> String {
    format!("{partition}-{offset}")
}

/// The partition and offset a [`record_id`] names.
pub fn parse_record_id(id: &str) -> Option<(i32, i64)> {
    let (p, o) = id.split_once('-')?;
    Some((p.parse().ok()?, o.parse().ok()?))
}

/// Read a record into an envelope.
pub fn to_envelope(record: Record) -> Envelope {
    let mut notes = Vec::new();
    let mut attributes = vec![
        ("kafka.topic".to_owned(), record.topic.clone()),
        ("kafka.partition".to_owned(), record.partition.to_string()),
        ("kafka.offset".to_owned(), record.offset.to_string()),
    ];
    let timestamp = record.timestamp_ms.and_then(DateTime::<Utc>::from_timestamp_millis);
    if let Some(t) = timestamp {
        attributes.push((
            "kafka.timestamp".into(),
            t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        ));
    }
    match record.key.as_deref().map(std::str::from_utf8) {
        Some(Ok(text)) => attributes.push(("kafka.key".into(), text.to_owned())),
        Some(Err(_)) => attributes.push((
            "kafka.key.base64".into(),
            base64::engine::general_purpose::STANDARD.encode(record.key.as_deref().unwrap_or_default()),
        )),
        None => {}
    }
    let mut native_headers = Vec::with_capacity(record.headers.len());
    for (name, value) in &record.headers {
        let shown = header_text(name, value.as_deref(), &mut notes);
        attributes.push((name.clone(), shown.clone()));
        native_headers.push((name.clone(), value.clone(), shown));
    }
    let text = |name: &str| {
        attributes
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .filter(|v| !v.is_empty())
    };
    let connect = |part: &str| text(&format!("{CONNECT_PREFIX}{part}"));
    let spring = |part: &str| text(&format!("{SPRING_PREFIX}{part}"));
    let original_queue = spring("original-topic").or_else(|| connect("topic"));
    let original_partition = match spring("original-partition").or_else(|| connect("partition")) {
        Some(p) => match p.parse::<i32>() {
            Ok(p) if p >= 0 => Some(p),
            _ => {
                notes.push(format!(
                    "the original partition {p:?} is not a partition number; ignored"
                ));
                None
            }
        },
        None => None,
    };
    if let Some(offset) = connect("offset").filter(|o| o.parse::<i64>().is_err()) {
        notes.push(format!("header {CONNECT_PREFIX}offset {offset:?} is not a number"));
    }
    let failure = FailureContext {
        reason: connect("stage").map(|stage| format!("kafka connect: {}", stage.to_ascii_lowercase())),
        error_text: spring("exception-message").or_else(|| connect("exception.message")),
        error_class: spring("exception-cause-fqcn")
            .or_else(|| spring("exception-fqcn"))
            .or_else(|| connect("exception.class.name")),
        receive_count: None,
        first_failed_at: None,
        last_failed_at: timestamp,
    };
    let replay_count = match text(REPLAY_COUNT_ATTRIBUTE) {
        Some(n) => n.parse().unwrap_or_else(|_| {
            notes.push(format!(
                "header {REPLAY_COUNT_ATTRIBUTE} {n:?} is not a number; taken as 0"
            ));
            0
        }),
        None => 0,
    };
    Envelope {
        id: record_id(record.partition, record.offset),
        body: record.value.unwrap_or_default(),
        attributes,
        origin: Origin {
            system: "kafka".into(),
            dlq: record.topic,
            original_queue,
        },
        failure,
        replay_count,
        notes,
        native: Native::new(KafkaNative {
            key: record.key,
            headers: native_headers,
            original_partition,
        }),
        id_unique_per_send: true,
    }
}

/// The text a header is shown to filters as.
fn header_text(name: &str, value: Option<&[u8]>, notes: &mut Vec<String>) -> String {
    let Some(value) = value else {
        return String::new();
    };
    if let Some((_, width)) = SPRING_NUMBERS.iter().find(|(n, _)| *n == name) {
        return match (value.len() == *width, *width) {
            (true, 4) => i32::from_be_bytes(value.try_into().unwrap_or_default()).to_string(),
            (true, _) => i64::from_be_bytes(value.try_into().unwrap_or_default()).to_string(),
            (false, _) => {
                notes.push(format!(
                    "header {name}: expected a {width}-byte big-endian number, got {} bytes; shown base64",
                    value.len()
                ));
                base64::engine::general_purpose::STANDARD.encode(value)
            }
        };
    }
    match std::str::from_utf8(value) {
        Ok(text) => text.to_owned(),
        Err(_) => {
            notes.push(format!("header {name} is not UTF-8; shown base64"));
            base64::engine::general_purpose::STANDARD.encode(value)
        }
    }
}

/// A header as sent: its name and value (a value may be null).
pub type OutgoingHeader = (String, Option<Vec<u8>>);

/// True for a dead-letter header of either dialect.
pub fn is_dead_letter_header(name: &str) -> bool {
    name.starts_with(CONNECT_PREFIX) || name.starts_with(SPRING_PREFIX)
}

/// The key and headers to send for an envelope: attributes as headers (redrive's `kafka.*` and other
/// brokers' `amqp.*` / `sqs.*` properties left out), dead-letter headers renamed unless `death=keep`, a
/// header whose text a filter did not change sent with its original bytes.
pub fn outgoing(env: &Envelope, death: DeathHeaders) -> (Option<Vec<u8>>, Vec<OutgoingHeader>) {
    let native = env.native.get::<KafkaNative>();
    let key = match (env.attribute("kafka.key"), env.attribute("kafka.key.base64")) {
        (Some(text), _) => Some(text.as_bytes().to_vec()),
        (None, Some(b64)) => base64::engine::general_purpose::STANDARD
            .decode(b64)
            .ok()
            .or_else(|| native.and_then(|n| n.key.clone())),
        (None, None) => None,
    };
    let mut headers = Vec::with_capacity(env.attributes.len());
    let mut used = vec![false; native.map_or(0, |n| n.headers.len())];
    for (name, value) in &env.attributes {
        if is_broker_property(name) {
            continue;
        }
        // The first unused original header of this name whose shown text is unchanged: its own bytes.
        let original = native.and_then(|n| {
            let at = n
                .headers
                .iter()
                .enumerate()
                .position(|(i, (k, _, shown))| !used[i] && k == name && shown == value)?;
            used[at] = true;
            Some(n.headers[at].1.clone())
        });
        let bytes = original.unwrap_or_else(|| Some(value.as_bytes().to_vec()));
        let name = if death == DeathHeaders::Move && is_dead_letter_header(name) {
            format!("{MOVED_ATTRIBUTE_PREFIX}{name}")
        } else {
            name.clone()
        };
        headers.push((name, bytes));
    }
    (key, headers)
}

/// The topic a message was dead-lettered from and, when known, its partition.
pub fn origin_of(env: &Envelope) -> Option<(&str, Option<i32>)> {
    if env.origin.system != "kafka" {
        return None;
    }
    let topic = env.origin.original_queue.as_deref()?;
    Some((
        topic,
        env.native.get::<KafkaNative>().and_then(|n| n.original_partition),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(headers: Vec<(&str, Option<Vec<u8>>)>) -> Record {
        Record {
            topic: "orders.DLT".into(),
            partition: 2,
            offset: 41,
            key: Some(b"k1".to_vec()),
            value: Some(b"{}".to_vec()),
            timestamp_ms: Some(1_700_000_000_123),
            headers: headers.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
        }
    }

    #[test]
    fn spring_headers_give_the_failure_and_origin() {
        let env = to_envelope(record(vec![
            ("kafka_dlt-original-topic", Some(b"orders".to_vec())),
            ("kafka_dlt-original-partition", Some(3i32.to_be_bytes().to_vec())),
            ("kafka_dlt-original-offset", Some(77i64.to_be_bytes().to_vec())),
            (
                "kafka_dlt-exception-fqcn",
                Some(b"o.s.k.l.ListenerExecutionFailedException".to_vec()),
            ),
            (
                "kafka_dlt-exception-cause-fqcn",
                Some(b"java.net.SocketTimeoutException".to_vec()),
            ),
            ("kafka_dlt-exception-message", Some(b"timeout calling billing".to_vec())),
        ]));
        assert_eq!(env.id, "2-41");
        assert_eq!(env.origin.original_queue.as_deref(), Some("orders"));
        assert_eq!(origin_of(&env), Some(("orders", Some(3))));
        assert_eq!(env.failure.error_text.as_deref(), Some("timeout calling billing"));
        assert_eq!(
            env.failure.error_class.as_deref(),
            Some("java.net.SocketTimeoutException")
        );
        assert_eq!(env.attribute("kafka_dlt-original-offset"), Some("77"));
        assert_eq!(env.attribute("kafka.key"), Some("k1"));
        assert!(env.failure.last_failed_at.is_some());
        assert!(env.notes.is_empty(), "{:?}", env.notes);
    }

    #[test]
    fn connect_headers_give_the_failure_and_origin() {
        let env = to_envelope(record(vec![
            ("__connect.errors.topic", Some(b"payments".to_vec())),
            ("__connect.errors.partition", Some(b"1".to_vec())),
            ("__connect.errors.offset", Some(b"9".to_vec())),
            ("__connect.errors.stage", Some(b"VALUE_CONVERTER".to_vec())),
            (
                "__connect.errors.exception.class.name",
                Some(b"org.apache.kafka.connect.errors.DataException".to_vec()),
            ),
            (
                "__connect.errors.exception.message",
                Some(b"Converting byte[] to Kafka Connect data failed".to_vec()),
            ),
        ]));
        assert_eq!(origin_of(&env), Some(("payments", Some(1))));
        assert_eq!(env.failure.reason.as_deref(), Some("kafka connect: value_converter"));
        assert!(env.failure.error_text.as_deref().unwrap().starts_with("Converting"));
    }

    #[test]
    fn malformed_headers_become_notes_and_bytes_survive() {
        let env = to_envelope(record(vec![
            ("kafka_dlt-original-partition", Some(vec![1, 2])),
            ("trace", Some(vec![0xff, 0x00])),
            ("empty", None),
            ("__connect.errors.offset", Some(b"nine".to_vec())),
        ]));
        assert_eq!(env.notes.len(), 4, "{:?}", env.notes);
        assert!(env.notes[2].contains("original partition"), "{:?}", env.notes);
        let (key, headers) = outgoing(&env, DeathHeaders::Move);
        assert_eq!(key.as_deref(), Some(&b"k1"[..]));
        assert_eq!(
            headers[0],
            (
                "x-redrive-original-kafka_dlt-original-partition".into(),
                Some(vec![1, 2])
            )
        );
        assert_eq!(headers[1], ("trace".into(), Some(vec![0xff, 0x00])));
        assert_eq!(headers[2], ("empty".into(), None));
    }

    #[test]
    fn a_header_a_filter_changed_is_sent_as_its_new_text() {
        let mut env = to_envelope(record(vec![(
            "kafka_dlt-original-offset",
            Some(77i64.to_be_bytes().to_vec()),
        )]));
        env.attributes.retain(|(k, _)| k != "kafka_dlt-original-offset");
        env.attributes.push(("kafka_dlt-original-offset".into(), "78".into()));
        env.attributes.push(("x-redrive-replay-id".into(), "r-1".into()));
        let (_, headers) = outgoing(&env, DeathHeaders::Keep);
        assert_eq!(headers[0], ("kafka_dlt-original-offset".into(), Some(b"78".to_vec())));
        assert_eq!(headers[1], ("x-redrive-replay-id".into(), Some(b"r-1".to_vec())));
    }

    #[test]
    fn no_broker_property_is_sent_as_a_header() {
        let mut env = to_envelope(record(vec![]));
        for name in ["pubsub.ordering_key", "amqp.priority", "sqs.SentTimestamp", "tenant"] {
            env.attributes.push((name.into(), "1".into()));
        }
        let (_, headers) = outgoing(&env, DeathHeaders::Move);
        let names: Vec<&str> = headers.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, vec!["tenant"]);
    }
}
