//! Every decoder that reads input from outside redrive, each as one function from bytes: what the fuzz
//! targets (`fuzz/`) and the property tests below drive. For any input each must return, never panic, and
//! use memory in proportion to the input. The functions return nothing: what they decode is thrown away.
//!
//! | input | decoder |
//! |---|---|
//! | a JSONL DLQ line | [`jsonl_message`] |
//! | a URL or endpoint (`--from`, `--to`, `--park`) | [`endpoint`] |
//! | AMQP properties and headers off the wire (`x-death`, ...) | [`amqp_properties`] |
//! | SQS message and system attributes | [`sqs_attributes`] |
//! | a Redis Streams entry | [`redis_entry`] |
//! | a Kafka record's headers (Kafka Connect, Spring) | [`kafka_record`] |
//! | a command filter's answers (the command-profile protocol) | [`command_answer`] |
//! | a plan file | [`plan_file`] |
//! | a run journal | [`journal_file`] |

use std::collections::HashMap;

use aws_sdk_sqs::types::{Message, MessageAttributeValue, MessageSystemAttributeName};

use crate::brokers::{amqp, kafka, pubsub, redis, sqs};
use crate::core::envelope::Origin;
use crate::core::failed_jobs::SqlDialect;
use crate::core::{Destination, Endpoint, endpoint::redact, jsonl, table_options::TableOptions};
use crate::pipeline::{journal, plan::Plan};

/// `key=value` lines of `data` (a line without `=` is a key with an empty value): the shape the
/// structured decoders take their fields in.
fn fields(data: &[u8]) -> Vec<(&[u8], &[u8])> {
    data.split(|b| *b == b'\n')
        .map(|line| match line.iter().position(|b| *b == b'=') {
            Some(at) => (&line[..at], &line[at + 1..]),
            None => (line, &line[line.len()..]),
        })
        .collect()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A line of a JSONL DLQ file.
pub fn jsonl_message(data: &[u8]) {
    if let Ok(line) = jsonl::line_text(data, 1) {
        let _ = jsonl::parse_message(line, 1, &Origin::default());
    }
}

/// A URL as given on the command line: the scheme, then each broker's own parser, and the redaction
/// every message uses.
pub fn endpoint(data: &[u8]) {
    let url = text(data);
    let _ = Endpoint::parse(&url);
    let _ = Destination::parse(&url);
    let _ = redact(&url);
    let _ = amqp::AmqpUrl::parse(&url);
    let _ = sqs::SqsUrl::parse(&url);
    let _ = redis::RedisUrl::parse(&url);
    let _ = kafka::KafkaUrl::parse(&url);
    let _ = pubsub::PubSubUrl::parse(&url);
    if let Some((_, query)) = url.split_once('?') {
        for dialect in [SqlDialect::Postgres, SqlDialect::MySql] {
            if let Ok((options, _)) = TableOptions::parse(query, dialect) {
                let _ = options.selection_sql(dialect, Some("id > 1"));
            }
        }
    }
}

/// AMQP basic properties as they come off the wire (the content header), headers and `x-death` included.
pub fn amqp_properties(data: &[u8]) {
    if let Ok((_, properties)) = lapin::protocol::basic::parse_properties(data) {
        let attributes = amqp::headers::attributes(&properties);
        let digest = amqp::headers::content_digest(&attributes, b"body");
        let _ = amqp::headers::envelope("dlq", &properties, attributes, b"body".to_vec(), &digest);
    }
}

/// SQS message attributes (`name=value`; a name starting with `#` is a Number, with `*` Binary) and
/// system attributes (`@Name=value`).
pub fn sqs_attributes(data: &[u8]) {
    let mut typed = HashMap::new();
    let mut system = HashMap::new();
    for (name, value) in fields(data) {
        let name = text(name);
        let (data_type, name) = match name.chars().next() {
            Some('#') => ("Number", name[1..].to_owned()),
            Some('*') => ("Binary", name[1..].to_owned()),
            Some('@') => {
                system.insert(MessageSystemAttributeName::from(&name[1..]), text(value));
                continue;
            }
            _ => ("String", name),
        };
        let mut attribute = MessageAttributeValue::builder().data_type(data_type);
        attribute = match data_type {
            "Binary" => attribute.binary_value(aws_sdk_sqs::primitives::Blob::new(value)),
            _ => attribute.string_value(text(value)),
        };
        if let Ok(attribute) = attribute.build() {
            typed.insert(name, attribute);
        }
    }
    let message = Message::builder()
        .message_id("m")
        .body("body")
        .set_message_attributes(Some(typed))
        .set_attributes(Some(system))
        .build();
    let _ = sqs::attributes::envelope(&message, "dlq", None);
}

/// A Redis Streams entry's fields.
pub fn redis_entry(data: &[u8]) {
    let entry = redis::Entry {
        id: "1-0".into(),
        fields: Some(
            fields(data)
                .into_iter()
                .map(|(k, v)| (k.to_vec(), v.to_vec()))
                .collect(),
        ),
    };
    let _ = redis::envelope(&entry, "dlq", &redis::FieldNames::default());
}

/// A Kafka record: its headers (a header without `=` has a null value), the first line its key.
pub fn kafka_record(data: &[u8]) {
    let mut lines = fields(data).into_iter();
    let key = lines.next().map(|(k, _)| k.to_vec());
    let record = kafka::record::Record {
        topic: "dlq".into(),
        partition: 0,
        offset: 0,
        key,
        value: Some(b"body".to_vec()),
        timestamp_ms: Some(0),
        headers: lines
            .map(|(name, value)| (text(name), (!value.is_empty()).then(|| value.to_vec())))
            .collect(),
    };
    let _ = kafka::record::to_envelope(record);
}

/// A command filter's answer lines: to `init`, and to `decide`.
pub fn command_answer(data: &[u8]) {
    let line = text(data);
    crate::filter::decode_command_answer(&line);
}

/// A plan file (`redrive run --plan FILE`).
pub fn plan_file(data: &[u8]) {
    if let Ok(plan) = Plan::from_bytes(data) {
        let _ = plan.selection();
    }
}

/// A run journal.
pub fn journal_file(data: &[u8]) {
    let _ = journal::read_lines(data);
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// Text shaped like the inputs (JSON punctuation, URL parts, header names, digits) more often than
    /// random bytes would be.
    fn shaped() -> impl Strategy<Value = Vec<u8>> {
        let pieces = prop::sample::select(vec![
            "{",
            "}",
            "[",
            "]",
            "\"",
            ":",
            ",",
            "=",
            "\n",
            "?",
            "&",
            "@",
            "/",
            "%",
            "-",
            "id",
            "body",
            "attributes",
            "failure",
            "error_text",
            "receive_count",
            "replay_count",
            "x-death",
            "count",
            "queue",
            "reason",
            "time",
            "amqp://",
            "sqs://",
            "redis://",
            "kafka://",
            "file:",
            "postgres://",
            "pubsub://",
            "stream",
            "topic",
            "table",
            "verdict",
            "replay",
            "skip",
            "reason",
            "event",
            "acked",
            "__connect.errors.topic",
            "kafka_dlt-original-offset",
            "#",
            "*",
            "@ApproximateReceiveCount",
            "0",
            "1",
            "-1",
            "18446744073709551616",
            "1e999",
            "null",
            "true",
            "\u{feff}",
            "é",
            "\\u0000",
        ]);
        prop::collection::vec(
            prop_oneof![pieces.prop_map(|s| s.as_bytes().to_vec()), any::<Vec<u8>>()],
            0..40,
        )
        .prop_map(|parts| parts.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        #[test]
        fn jsonl_lines_never_panic(data in shaped()) { jsonl_message(&data) }

        #[test]
        fn urls_never_panic(data in shaped()) { endpoint(&data) }

        #[test]
        fn amqp_properties_never_panic(data in any::<Vec<u8>>()) { amqp_properties(&data) }

        #[test]
        fn sqs_attributes_never_panic(data in shaped()) { sqs_attributes(&data) }

        #[test]
        fn redis_entries_never_panic(data in shaped()) { redis_entry(&data) }

        #[test]
        fn kafka_records_never_panic(data in shaped()) { kafka_record(&data) }

        #[test]
        fn command_answers_never_panic(data in shaped()) { command_answer(&data) }

        #[test]
        fn plan_files_never_panic(data in shaped()) { plan_file(&data) }

        #[test]
        fn journals_never_panic(data in shaped()) { journal_file(&data) }

        /// A message written as a JSONL line reads back as the same message (its attributes as a set).
        #[test]
        fn a_jsonl_message_round_trips(
            id in "[^\u{0}]{1,20}",
            body in any::<Vec<u8>>(),
            attributes in prop::collection::vec(("[a-z][a-z0-9-]{0,12}", ".{0,20}"), 0..5),
            replay_count in 0u32..1000,
        ) {
            let mut seen = std::collections::HashSet::new();
            let attributes: Vec<(String, String)> =
                attributes.into_iter().filter(|(k, _)| seen.insert(k.clone())).collect();
            let env = crate::core::Envelope { id, body, attributes, replay_count, ..Default::default() };
            let line = serde_json::to_string(&jsonl::message_to_json(&env)).unwrap();
            let back = jsonl::parse_message(&line, 1, &Origin::default()).unwrap();
            prop_assert_eq!(back.id, env.id);
            prop_assert_eq!(back.body, env.body);
            // A JSON object: the names come back sorted, not in the order they were given.
            let sorted = |mut a: Vec<(String, String)>| { a.sort(); a };
            prop_assert_eq!(sorted(back.attributes), sorted(env.attributes));
            prop_assert_eq!(back.replay_count, env.replay_count);
        }

        /// Redaction never lets a URL's password through.
        #[test]
        fn redaction_hides_the_password(user in "[a-z]{1,8}", password in "[A-Za-z0-9]{6,16}", host in "[a-z]{1,10}") {
            for scheme in ["amqp", "redis", "postgres", "mysql", "kafka"] {
                let url = format!("{scheme}://{user}:{password}@{host}:1234/x?q=1");
                prop_assert!(!redact(&url).contains(&password), "{}", redact(&url));
            }
        }
    }
}
