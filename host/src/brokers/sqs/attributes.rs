//! SQS messages to envelopes and back.
//!
//! Reading: message attributes become envelope attributes (String and Number values as they are, Binary
//! as base64), sorted by name; system attributes become `sqs.<Name>` attributes (`sqs.SentTimestamp`,
//! `sqs.MessageGroupId`, ...). `ApproximateReceiveCount` fills the receive count,
//! `ApproximateFirstReceiveTimestamp` the first failure time, `DeadLetterQueueSourceArn` the origin.
//!
//! Sending: attributes keep their SQS type when a filter did not change them; `sqs.*` and `amqp.*`
//! (another broker's properties) are not sent as attributes. SQS allows 10 attributes per message:
//! redrive adds `x-redrive-replay-id` and `x-redrive-replay-count`, or folds both into one
//! `x-redrive-replay` attribute when only one slot is left; a message with no slot left is refused with a
//! reason, never sent with attributes dropped.

use std::collections::HashMap;

use aws_sdk_sqs::primitives::Blob;
use aws_sdk_sqs::types::{Message, MessageAttributeValue, MessageSystemAttributeName};
use base64::Engine as _;
use chrono::{DateTime, Utc};

use crate::core::envelope::{
    ERROR_CLASS_ATTRIBUTES, ERROR_TEXT_ATTRIBUTES, Envelope, FailureContext, Native, Origin, REPLAY_COUNT_ATTRIBUTE,
    REPLAY_ID_ATTRIBUTE, is_broker_property,
};

/// The one attribute carrying both replay id and count when a message has room for only one more:
/// `{"id":"...","count":N}`.
pub const FOLDED_REPLAY_ATTRIBUTE: &str = "x-redrive-replay";
/// SQS's limit of message attributes per message.
pub const MAX_ATTRIBUTES: usize = 10;
/// Prefix of the envelope attributes carrying SQS system attributes.
pub const SYSTEM_PREFIX: &str = "sqs.";

/// What an SQS source keeps of a message for an SQS sink: typed attributes, FIFO group, origin.
#[derive(Debug)]
pub struct SqsNative {
    /// The message attributes as received, with their types.
    pub attributes: HashMap<String, MessageAttributeValue>,
    /// The FIFO message group.
    pub group_id: Option<String>,
    /// `DeadLetterQueueSourceArn`: the queue it was dead-lettered from.
    pub source_arn: Option<String>,
}

/// Turn a received message into an envelope. `dlq` is the queue's name; `default_origin` the name of the
/// one queue that dead-letters into it, used when the message does not say.
pub fn envelope(message: &Message, dlq: &str, default_origin: Option<&str>) -> Envelope {
    let mut notes = Vec::new();
    let typed = message.message_attributes.clone().unwrap_or_default();
    let system = message.attributes.as_ref();
    let sys = |name: MessageSystemAttributeName| system.and_then(|s| s.get(&name)).map(String::as_str);

    let mut names: Vec<&String> = typed.keys().collect();
    names.sort();
    let mut attributes = Vec::with_capacity(typed.len() + 6);
    let mut folded_replay = None;
    for name in names {
        let value = &typed[name];
        match render(value) {
            Some(text) if name == FOLDED_REPLAY_ATTRIBUTE => folded_replay = Some(text),
            Some(text) => attributes.push((name.clone(), text)),
            None => notes.push(format!(
                "message attribute `{name}` has data type {} with no value redrive can read; it is kept only \
                 when the message goes to SQS unchanged",
                value.data_type
            )),
        }
    }
    if let Some(text) = folded_replay {
        match serde_json::from_str::<FoldedReplay>(&text) {
            Ok(f) => {
                attributes.push((REPLAY_ID_ATTRIBUTE.into(), f.id));
                attributes.push((REPLAY_COUNT_ATTRIBUTE.into(), f.count.to_string()));
            }
            Err(e) => notes.push(format!(
                "{FOLDED_REPLAY_ATTRIBUTE} is not readable ({e}); taken as never replayed"
            )),
        }
    }
    let mut system_names: Vec<_> = system.map(|s| s.iter().collect()).unwrap_or_default();
    system_names.sort_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
    for (name, value) in system_names {
        attributes.push((format!("{SYSTEM_PREFIX}{}", name.as_str()), value.clone()));
    }

    let text_of = |names: &[&str]| {
        names
            .iter()
            .find_map(|n| attributes.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone()))
    };
    let replay_count = match attributes.iter().find(|(k, _)| k == REPLAY_COUNT_ATTRIBUTE) {
        Some((_, v)) => v.trim().parse::<u32>().unwrap_or_else(|_| {
            notes.push(format!("{REPLAY_COUNT_ATTRIBUTE} is not a number ({v}); taken as 0"));
            0
        }),
        None => 0,
    };
    let source_arn = sys(MessageSystemAttributeName::DeadLetterQueueSourceArn).map(str::to_owned);
    let original_queue = source_arn
        .as_deref()
        .map(|arn| arn.rsplit(':').next().unwrap_or(arn).to_owned())
        .or_else(|| default_origin.map(str::to_owned));
    let failure = FailureContext {
        // SQS moves a message to its DLQ for one reason only.
        reason: source_arn.as_ref().map(|_| "maxReceiveCount".to_owned()),
        error_text: text_of(&ERROR_TEXT_ATTRIBUTES),
        error_class: text_of(&ERROR_CLASS_ATTRIBUTES),
        receive_count: sys(MessageSystemAttributeName::ApproximateReceiveCount).and_then(|v| v.parse().ok()),
        first_failed_at: sys(MessageSystemAttributeName::ApproximateFirstReceiveTimestamp).and_then(millis),
        last_failed_at: None,
    };
    Envelope {
        id: message.message_id.clone().unwrap_or_default(),
        body: message.body.clone().unwrap_or_default().into_bytes(),
        origin: Origin {
            system: "sqs".into(),
            dlq: dlq.to_owned(),
            original_queue,
        },
        failure,
        replay_count,
        notes,
        native: Native::new(SqsNative {
            attributes: typed,
            group_id: sys(MessageSystemAttributeName::MessageGroupId).map(str::to_owned),
            source_arn,
        }),
        attributes,
        id_unique_per_send: true,
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct FoldedReplay {
    id: String,
    count: u32,
}

/// An attribute value as text: String and Number values as they are, Binary as base64. `None` for the
/// list types SQS reserves (no value redrive can show).
pub fn render(value: &MessageAttributeValue) -> Option<String> {
    if value.data_type.starts_with("Binary") {
        value
            .binary_value
            .as_ref()
            .map(|b| base64::engine::general_purpose::STANDARD.encode(b.as_ref()))
    } else {
        value.string_value.clone()
    }
}

fn millis(text: &str) -> Option<DateTime<Utc>> {
    text.parse::<i64>().ok().and_then(DateTime::from_timestamp_millis)
}

/// A message ready to send to SQS.
#[derive(Clone, Debug)]
pub struct Outgoing {
    /// The body (SQS bodies are text).
    pub body: String,
    /// Message attributes, at most 10.
    pub attributes: HashMap<String, MessageAttributeValue>,
    /// Bytes SQS counts against its size limits: body plus attribute names, types and values.
    pub size: usize,
    /// The FIFO group the message had, if any.
    pub group_id: Option<String>,
    /// The replay id (FIFO deduplication id).
    pub replay_id: Option<String>,
}

/// Prepare an envelope for SQS, or say why SQS cannot take it (the message then stays in the DLQ).
pub fn outgoing(env: &Envelope) -> Result<Outgoing, String> {
    let body = sqs_body(&env.body)?;
    let native = env.native.get::<SqsNative>();
    let mut attributes = HashMap::new();
    let mut replay_id = None;
    let mut replay_count = None;
    for (name, value) in &env.attributes {
        if is_broker_property(name) {
            continue; // broker properties of the source, not message attributes
        }
        if name == REPLAY_ID_ATTRIBUTE {
            replay_id = Some(value.clone());
            continue;
        }
        if name == REPLAY_COUNT_ATTRIBUTE {
            replay_count = Some(value.clone());
            continue;
        }
        if name == FOLDED_REPLAY_ATTRIBUTE {
            continue;
        }
        check_attribute_name(name)?;
        let typed = match native.and_then(|n| n.attributes.get(name)) {
            Some(original) if render(original).as_deref() == Some(value.as_str()) => original.clone(),
            _ => {
                if value.is_empty() {
                    return Err(format!(
                        "attribute `{name}` is empty, and SQS does not accept empty attribute values; \
                         remove it or give it a value with a filter"
                    ));
                }
                string_attribute("String", value)
            }
        };
        attributes.insert(name.clone(), typed);
    }
    let user = attributes.len();
    match (&replay_id, &replay_count) {
        (Some(id), Some(count)) if user + 2 <= MAX_ATTRIBUTES => {
            attributes.insert(REPLAY_ID_ATTRIBUTE.into(), string_attribute("String", id));
            attributes.insert(REPLAY_COUNT_ATTRIBUTE.into(), string_attribute("Number", count));
        }
        (Some(id), Some(count)) if user < MAX_ATTRIBUTES => {
            let folded = serde_json::to_string(&FoldedReplay {
                id: id.clone(),
                count: count.parse().unwrap_or(0),
            })
            .map_err(|e| e.to_string())?;
            attributes.insert(FOLDED_REPLAY_ATTRIBUTE.into(), string_attribute("String", &folded));
        }
        (Some(_), Some(_)) => {
            return Err(format!(
                "the message has {user} attributes; SQS allows {MAX_ATTRIBUTES} and redrive needs one for its \
                 replay id. Remove one with a filter (or replay to another kind of destination)"
            ));
        }
        _ if user > MAX_ATTRIBUTES => {
            return Err(format!(
                "the message has {user} attributes; SQS allows {MAX_ATTRIBUTES}. Remove some with a filter"
            ));
        }
        _ => {}
    }
    let size = body.len()
        + attributes
            .iter()
            .map(|(name, v)| {
                name.len()
                    + v.data_type.len()
                    + v.string_value.as_ref().map_or(0, String::len)
                    + v.binary_value.as_ref().map_or(0, |b| b.as_ref().len())
            })
            .sum::<usize>();
    Ok(Outgoing {
        body,
        attributes,
        size,
        group_id: native
            .and_then(|n| n.group_id.clone())
            .or_else(|| env.attribute("sqs.MessageGroupId").map(str::to_owned)),
        replay_id,
    })
}

fn string_attribute(data_type: &str, value: &str) -> MessageAttributeValue {
    let mut attribute = MessageAttributeValue::builder()
        .data_type(data_type)
        .build()
        .unwrap_or_else(|_| unreachable!("the data type, the only required field, is set"));
    attribute.string_value = Some(value.to_owned());
    attribute
}

/// A binary attribute value (for tests and tools that build messages).
pub fn binary_attribute(bytes: &[u8]) -> MessageAttributeValue {
    let mut attribute = string_attribute("Binary", "");
    attribute.string_value = None;
    attribute.binary_value = Some(Blob::new(bytes));
    attribute
}

/// The body as SQS text: UTF-8, at least one character, only the characters SQS accepts
/// (#x9 #xA #xD #x20-#xD7FF #xE000-#xFFFD #x10000-#x10FFFF).
fn sqs_body(body: &[u8]) -> Result<String, String> {
    let text = std::str::from_utf8(body).map_err(|e| {
        format!(
            "the body is not UTF-8 text (invalid byte at offset {}), and SQS bodies are text; a filter can \
             re-encode it (e.g. as base64)",
            e.valid_up_to()
        )
    })?;
    if text.is_empty() {
        return Err("the body is empty, and SQS needs at least one character".into());
    }
    if let Some((at, c)) = text.char_indices().find(|&(_, c)| !sqs_char(c)) {
        return Err(format!(
            "the body contains U+{:04X} at byte {at}, a character SQS does not accept; a filter can remove or \
             escape it",
            c as u32
        ));
    }
    Ok(text.to_owned())
}

fn sqs_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

/// Attribute names SQS accepts: 1-256 of `A-Z a-z 0-9 _ - .`, no `..`, not starting or ending with `.`,
/// not starting with `AWS.` or `Amazon.`.
fn check_attribute_name(name: &str) -> Result<(), String> {
    let lower = name.to_ascii_lowercase();
    let ok = !name.is_empty()
        && name.len() <= 256
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        && !name.starts_with('.')
        && !name.ends_with('.')
        && !name.contains("..")
        && !lower.starts_with("aws.")
        && !lower.starts_with("amazon.");
    if ok {
        Ok(())
    } else {
        Err(format!(
            "attribute name `{name}` is not allowed by SQS (1-256 of letters, digits, _ - and ., no .. and no \
             AWS./Amazon. prefix); rename it with a filter"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn received(attrs: &[(&str, MessageAttributeValue)]) -> Message {
        let mut b = Message::builder()
            .message_id("m-1")
            .receipt_handle("rh")
            .body("{\"a\":1}")
            .attributes(MessageSystemAttributeName::ApproximateReceiveCount, "4")
            .attributes(
                MessageSystemAttributeName::ApproximateFirstReceiveTimestamp,
                "1763900000000",
            )
            .attributes(MessageSystemAttributeName::SentTimestamp, "1763899999000")
            .attributes(MessageSystemAttributeName::MessageGroupId, "g1")
            .attributes(
                MessageSystemAttributeName::DeadLetterQueueSourceArn,
                "arn:aws:sqs:eu-west-1:123456789012:orders",
            );
        for (k, v) in attrs {
            b = b.message_attributes(*k, v.clone());
        }
        b.build()
    }

    #[test]
    fn reads_attributes_failure_context_and_origin() {
        let m = received(&[
            ("tenant", string_attribute("String", "acme")),
            ("attempt", string_attribute("Number", "3")),
            ("sig", binary_attribute(&[0, 1, 2])),
            ("error", string_attribute("String", "timeout talking to db")),
            (REPLAY_COUNT_ATTRIBUTE, string_attribute("Number", "2")),
        ]);
        let env = envelope(&m, "orders-dlq", None);
        assert_eq!(env.id, "m-1");
        assert!(env.id_unique_per_send);
        assert_eq!(env.replay_count, 2);
        assert_eq!(env.attribute("tenant"), Some("acme"));
        assert_eq!(env.attribute("attempt"), Some("3"));
        assert_eq!(env.attribute("sig"), Some("AAEC"));
        assert_eq!(env.attribute("sqs.SentTimestamp"), Some("1763899999000"));
        assert_eq!(env.failure.receive_count, Some(4));
        assert_eq!(env.failure.error_text.as_deref(), Some("timeout talking to db"));
        assert_eq!(
            env.failure.first_failed_at.unwrap().timestamp_millis(),
            1_763_900_000_000
        );
        assert_eq!(env.origin.original_queue.as_deref(), Some("orders"));
        assert_eq!(env.origin.dlq, "orders-dlq");
    }

    #[test]
    fn unchanged_attributes_keep_their_type_and_changed_ones_become_strings() {
        let m = received(&[
            ("attempt", string_attribute("Number", "3")),
            ("sig", binary_attribute(&[0, 1, 2])),
            ("note", string_attribute("String.custom", "x")),
        ]);
        let mut env = envelope(&m, "dlq", None);
        env.apply_attribute_changes(&[
            crate::core::envelope::AttributeChange::Set("note".into(), "changed".into()),
            crate::core::envelope::AttributeChange::Set(REPLAY_ID_ATTRIBUTE.into(), "abc".into()),
            crate::core::envelope::AttributeChange::Set(REPLAY_COUNT_ATTRIBUTE.into(), "1".into()),
        ]);
        env.attributes.push(("kafka.partition".into(), "2".into()));
        env.attributes.push(("pubsub.ordering_key".into(), "k".into()));
        let out = outgoing(&env).unwrap();
        assert_eq!(out.attributes.len(), 5, "{:?}", out.attributes.keys());
        assert_eq!(out.attributes["attempt"].data_type, "Number");
        assert_eq!(
            out.attributes["sig"].binary_value.as_ref().unwrap().as_ref(),
            &[0, 1, 2]
        );
        assert_eq!(out.attributes["note"].data_type, "String");
        assert_eq!(out.attributes["note"].string_value.as_deref(), Some("changed"));
        assert_eq!(out.attributes[REPLAY_COUNT_ATTRIBUTE].data_type, "Number");
        assert!(!out.attributes.keys().any(|k| k.starts_with("sqs.")));
        assert_eq!(out.group_id.as_deref(), Some("g1"));
        assert_eq!(out.replay_id.as_deref(), Some("abc"));
    }

    #[test]
    fn replay_attributes_fold_when_only_one_slot_is_left_and_refuse_when_none() {
        let mut env = Envelope {
            body: b"x".to_vec(),
            attributes: (0..9).map(|i| (format!("a{i}"), "v".to_owned())).collect(),
            ..Default::default()
        };
        env.attributes.push((REPLAY_ID_ATTRIBUTE.into(), "rid".into()));
        env.attributes.push((REPLAY_COUNT_ATTRIBUTE.into(), "3".into()));
        let out = outgoing(&env).unwrap();
        assert_eq!(out.attributes.len(), 10);
        let folded = out.attributes[FOLDED_REPLAY_ATTRIBUTE].string_value.clone().unwrap();
        assert_eq!(folded, r#"{"id":"rid","count":3}"#);

        // Reading it back restores both attributes.
        let mut b = Message::builder().message_id("n").body("x");
        for (k, v) in &out.attributes {
            b = b.message_attributes(k, v.clone());
        }
        let back = envelope(&b.build(), "dlq", None);
        assert_eq!(back.replay_count, 3);
        assert_eq!(back.attribute(REPLAY_ID_ATTRIBUTE), Some("rid"));

        env.attributes.push(("a9".into(), "v".into()));
        let err = outgoing(&env).unwrap_err();
        assert!(err.contains("has 10 attributes"), "{err}");
    }

    #[test]
    fn bodies_sqs_cannot_carry_are_refused_with_a_reason() {
        let env = |body: &[u8]| Envelope {
            body: body.to_vec(),
            ..Default::default()
        };
        assert!(outgoing(&env(b"")).unwrap_err().contains("empty"));
        assert!(outgoing(&env(&[0xff, 0xfe])).unwrap_err().contains("not UTF-8"));
        assert!(outgoing(&env(b"a\0b")).unwrap_err().contains("U+0000"));
        assert!(outgoing(&env("ünïcødé ✓ 𝄞".as_bytes())).is_ok());
        let mut bad_name = env(b"x");
        bad_name.attributes.push(("has space".into(), "v".into()));
        assert!(outgoing(&bad_name).unwrap_err().contains("not allowed by SQS"));
        let mut empty = env(b"x");
        empty.attributes.push(("e".into(), String::new()));
        assert!(outgoing(&empty).unwrap_err().contains("empty attribute"));
    }
}
