//! AMQP 0-9-1 messages ⇄ envelopes: header values as text, dead-letter headers as failure context, and
//! back again to typed headers and properties when a message is published.

use base64::Engine as _;
use chrono::{DateTime, Utc};
use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::core::envelope::{
    ERROR_CLASS_ATTRIBUTES, ERROR_TEXT_ATTRIBUTES, Envelope, FailureContext, Native, Origin, REPLAY_COUNT_ATTRIBUTE,
    is_broker_property,
};

/// Prefix of the attributes that carry AMQP message properties (`amqp.content-type`, ...).
pub const PROPERTY_PREFIX: &str = "amqp.";

/// Header under which `death=move` keeps the broker's dead-letter headers of the original message.
pub const ORIGINAL_DEATH_HEADER: &str = "x-redrive-original-death";

/// Headers the broker writes when it dead-letters or delivers a message. RabbitMQ 3.13+ treats `x-`
/// headers as its own and no longer interprets copies a client publishes.
const BROKER_HEADERS: [&str; 8] = [
    "x-death",
    "x-first-death-queue",
    "x-first-death-reason",
    "x-first-death-exchange",
    "x-last-death-queue",
    "x-last-death-reason",
    "x-last-death-exchange",
    "x-delivery-count",
];

/// The original, typed headers of a message read from RabbitMQ, kept so that publishing it again does
/// not turn numbers, tables and timestamps into strings.
#[derive(Debug)]
pub struct AmqpNative {
    /// Headers as the broker delivered them.
    pub headers: FieldTable,
}

/// What the dead-letter headers say.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DeadLetter {
    /// Queue the message was dead-lettered from (most recent death).
    pub queue: Option<String>,
    /// `rejected`, `expired`, `maxlen`, `delivery_limit`.
    pub reason: Option<String>,
    /// Exchange the message had been published to.
    pub exchange: Option<String>,
    /// Routing keys it had been published with (first is the routing key, then CC / BCC).
    pub routing_keys: Vec<String>,
    /// How often it died this way (`count` of the most recent death).
    pub count: Option<u64>,
    /// Earliest and latest death time over all `x-death` entries.
    pub first_at: Option<DateTime<Utc>>,
    /// See `first_at`.
    pub last_at: Option<DateTime<Utc>>,
}

/// Text of a header value, as filters see it: strings as they are, numbers in decimal, timestamps as unix
/// seconds, tables and arrays as JSON, byte arrays as base64.
pub fn render(value: &AMQPValue) -> String {
    match value {
        AMQPValue::ShortString(s) => s.as_str().to_owned(),
        AMQPValue::LongString(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        other => match to_json(other) {
            Value::String(s) => s,
            json => json.to_string(),
        },
    }
}

fn to_json(value: &AMQPValue) -> Value {
    match value {
        AMQPValue::Boolean(b) => Value::Bool(*b),
        AMQPValue::ShortShortInt(n) => Value::from(*n),
        AMQPValue::ShortShortUInt(n) => Value::from(*n),
        AMQPValue::ShortInt(n) => Value::from(*n),
        AMQPValue::ShortUInt(n) => Value::from(*n),
        AMQPValue::LongInt(n) => Value::from(*n),
        AMQPValue::LongUInt(n) => Value::from(*n),
        AMQPValue::LongLongInt(n) => Value::from(*n),
        AMQPValue::Float(n) => Value::from(f64::from(*n)),
        AMQPValue::Double(n) => Value::from(*n),
        AMQPValue::DecimalValue(d) => Value::from(f64::from(d.value) / 10f64.powi(i32::from(d.scale))),
        AMQPValue::ShortString(s) => Value::from(s.as_str()),
        AMQPValue::LongString(s) => Value::from(String::from_utf8_lossy(s.as_bytes())),
        AMQPValue::FieldArray(a) => Value::Array(a.as_slice().iter().map(to_json).collect()),
        AMQPValue::Timestamp(t) => Value::from(*t),
        AMQPValue::FieldTable(t) => Value::Object(
            t.inner()
                .iter()
                .map(|(k, v)| (k.as_str().to_owned(), to_json(v)))
                .collect(),
        ),
        AMQPValue::ByteArray(b) => Value::from(base64::engine::general_purpose::STANDARD.encode(b.as_slice())),
        AMQPValue::Void => Value::Null,
    }
}

fn as_text(value: &AMQPValue) -> Option<String> {
    match value {
        AMQPValue::ShortString(s) => Some(s.as_str().to_owned()),
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        _ => None,
    }
}

fn as_u64(value: &AMQPValue) -> Option<u64> {
    match value {
        AMQPValue::ShortShortInt(n) => u64::try_from(*n).ok(),
        AMQPValue::ShortShortUInt(n) => Some(u64::from(*n)),
        AMQPValue::ShortInt(n) => u64::try_from(*n).ok(),
        AMQPValue::ShortUInt(n) => Some(u64::from(*n)),
        AMQPValue::LongInt(n) => u64::try_from(*n).ok(),
        AMQPValue::LongUInt(n) => Some(u64::from(*n)),
        AMQPValue::LongLongInt(n) => u64::try_from(*n).ok(),
        AMQPValue::Timestamp(n) => Some(*n),
        other => as_text(other).and_then(|s| s.trim().parse().ok()),
    }
}

fn timestamp(secs: u64) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(i64::try_from(secs).ok()?, 0)
}

/// Read the dead-letter headers. Anything malformed or foreign is skipped and described in `notes`;
/// reading never fails.
pub fn dead_letter(headers: &FieldTable, notes: &mut Vec<String>) -> DeadLetter {
    let mut dl = DeadLetter::default();
    let table = headers.inner();
    if let Some(value) = table.get("x-death") {
        match value {
            AMQPValue::FieldArray(entries) => {
                for (i, entry) in entries.as_slice().iter().enumerate() {
                    let AMQPValue::FieldTable(entry) = entry else {
                        notes.push(format!("x-death[{i}] is not a table ({}); ignored", render(entry)));
                        continue;
                    };
                    read_death_entry(i, entry.inner(), &mut dl, notes);
                }
            }
            other => notes.push(format!("x-death is not an array ({}); ignored", render(other))),
        }
    }
    let text = |name: &str| table.get(name).and_then(as_text);
    // The x-last-death-* headers (RabbitMQ 3.13+) name the most recent death; x-first-death-* the first.
    dl.queue = dl
        .queue
        .or_else(|| text("x-last-death-queue"))
        .or_else(|| text("x-first-death-queue"));
    dl.reason = dl
        .reason
        .or_else(|| text("x-last-death-reason"))
        .or_else(|| text("x-first-death-reason"));
    dl.exchange = dl
        .exchange
        .or_else(|| text("x-last-death-exchange"))
        .or_else(|| text("x-first-death-exchange"));
    dl
}

fn read_death_entry(
    i: usize,
    entry: &std::collections::BTreeMap<ShortString, AMQPValue>,
    dl: &mut DeadLetter,
    notes: &mut Vec<String>,
) {
    let field = |name: &str| -> Option<&AMQPValue> { entry.get(name) };
    let time = match field("time") {
        Some(v) => match as_u64(v).and_then(timestamp) {
            Some(t) => Some(t),
            None => {
                notes.push(format!("x-death[{i}].time is not a timestamp ({})", render(v)));
                None
            }
        },
        None => None,
    };
    if let Some(t) = time {
        dl.first_at = Some(dl.first_at.map_or(t, |f| f.min(t)));
        dl.last_at = Some(dl.last_at.map_or(t, |l| l.max(t)));
    }
    if i > 0 {
        return; // the first entry is the most recent death: it names queue, reason and route
    }
    dl.queue = field("queue").and_then(as_text);
    dl.reason = field("reason").and_then(as_text);
    dl.exchange = field("exchange").and_then(as_text);
    dl.count = match field("count") {
        Some(v) => {
            let n = as_u64(v);
            if n.is_none() {
                notes.push(format!("x-death[0].count is not a number ({})", render(v)));
            }
            n
        }
        None => None,
    };
    match field("routing-keys") {
        Some(AMQPValue::FieldArray(keys)) => {
            dl.routing_keys = keys.as_slice().iter().filter_map(as_text).collect();
        }
        Some(other) => notes.push(format!("x-death[0].routing-keys is not an array ({})", render(other))),
        None => {}
    }
}

/// The attributes of a delivered message, as filters see them: its properties as `amqp.*`, then every
/// header rendered as text.
pub fn attributes(properties: &BasicProperties) -> Vec<(String, String)> {
    let headers = properties.headers().as_ref().map(FieldTable::inner);
    let mut attributes = Vec::with_capacity(headers.map_or(0, |h| h.len()) + 4);
    property_attributes(properties, &mut attributes);
    for (name, value) in headers.into_iter().flatten() {
        attributes.push((name.as_str().to_owned(), render(value)));
    }
    attributes
}

/// Build the envelope of a message delivered from `queue`, from its [`attributes`]; `digest` is its
/// [`content_digest`], the id of a message that has no message-id property.
pub fn envelope(
    queue: &str,
    properties: &BasicProperties,
    attributes: Vec<(String, String)>,
    body: Vec<u8>,
    digest: &str,
) -> Envelope {
    let empty = FieldTable::default();
    let headers = properties.headers().as_ref().unwrap_or(&empty);
    let mut notes = Vec::new();
    let dl = dead_letter(headers, &mut notes);
    let header_text = |names: &[&str]| {
        names
            .iter()
            .find_map(|n| headers.inner().get(*n).map(render))
            .filter(|s| !s.is_empty())
    };
    // Quorum queues count delivery attempts; otherwise the death count is the best there is.
    let receive_count = headers
        .inner()
        .get("x-delivery-count")
        .and_then(as_u64)
        .or(dl.count)
        .map(|n| u32::try_from(n).unwrap_or(u32::MAX));
    let replay_count = match headers.inner().get(REPLAY_COUNT_ATTRIBUTE) {
        Some(v) => as_u64(v).map_or_else(
            || {
                notes.push(format!(
                    "{REPLAY_COUNT_ATTRIBUTE} is not a number ({}); taken as 0",
                    render(v)
                ));
                0
            },
            |n| u32::try_from(n).unwrap_or(u32::MAX),
        ),
        None => 0,
    };
    let id = match properties.message_id() {
        Some(id) if !id.as_str().is_empty() => id.as_str().to_owned(),
        _ => format!("sha256:{digest}"),
    };
    Envelope {
        id,
        origin: Origin {
            system: "rabbitmq".into(),
            dlq: queue.to_owned(),
            original_queue: dl.queue.clone(),
        },
        failure: FailureContext {
            reason: dl.reason.clone(),
            error_text: header_text(&ERROR_TEXT_ATTRIBUTES),
            error_class: header_text(&ERROR_CLASS_ATTRIBUTES),
            receive_count,
            first_failed_at: dl.first_at,
            last_failed_at: dl.last_at,
        },
        body,
        attributes,
        replay_count,
        notes,
        native: Native::new(AmqpNative {
            headers: headers.clone(),
        }),
        id_unique_per_send: false,
    }
}

/// A digest of everything that makes up a delivered message (its [`attributes`]: properties and headers;
/// and its body): it tells messages apart when they carry no message id, and recognises a redelivery of
/// the same message.
pub fn content_digest(attributes: &[(String, String)], body: &[u8]) -> String {
    let mut hash = Sha256::new();
    for (k, v) in attributes {
        hash.update(k.as_bytes());
        hash.update([0]);
        hash.update(v.as_bytes());
        hash.update([0]);
    }
    hash.update([1]);
    hash.update(body);
    hex::encode(&hash.finalize()[..16])
}

fn property_attributes(p: &BasicProperties, out: &mut Vec<(String, String)>) {
    let mut add = |name: &str, value: Option<String>| {
        if let Some(value) = value {
            out.push((format!("{PROPERTY_PREFIX}{name}"), value));
        }
    };
    let s = |v: &Option<ShortString>| v.as_ref().map(|s| s.as_str().to_owned());
    add("content-type", s(p.content_type()));
    add("content-encoding", s(p.content_encoding()));
    add("correlation-id", s(p.correlation_id()));
    add("reply-to", s(p.reply_to()));
    add("message-id", s(p.message_id()));
    add("timestamp", p.timestamp().map(|t| t.to_string()));
    add("type", s(p.kind()));
    add("user-id", s(p.user_id()));
    add("app-id", s(p.app_id()));
    add("priority", p.priority().map(|n| n.to_string()));
    add("expiration", s(p.expiration()));
}

/// What to do with the broker's dead-letter headers when a message is published again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeathHeaders {
    /// Move `x-death`, `x-first-death-*`, `x-last-death-*` and `x-delivery-count` into one table header,
    /// [`ORIGINAL_DEATH_HEADER`] (the default).
    Move,
    /// Publish them unchanged.
    Keep,
}

fn short(what: &str, s: &str) -> Result<ShortString, String> {
    ShortString::try_new(s).map_err(|_| format!("{what} is longer than AMQP's 255-byte limit ({} bytes)", s.len()))
}

/// Properties and headers for publishing `env`: `amqp.*` attributes become properties (except
/// `expiration`, so a replayed message does not expire again, and `user-id`, which the broker checks
/// against the publishing user), every other attribute a header. A header whose text is unchanged
/// since the source read it keeps its original AMQP type.
pub fn outgoing_properties(env: &Envelope, death: DeathHeaders, persistent: bool) -> Result<BasicProperties, String> {
    let original = env.native.get::<AmqpNative>().map(|n| n.headers.inner());
    let mut props = BasicProperties::default();
    if persistent {
        props = props.with_delivery_mode(2);
    }
    let mut headers = std::collections::BTreeMap::new();
    let mut moved = std::collections::BTreeMap::new();
    for (name, value) in &env.attributes {
        if let Some(property) = name.strip_prefix(PROPERTY_PREFIX) {
            let v = || short(name, value);
            props = match property {
                "content-type" => props.with_content_type(v()?),
                "content-encoding" => props.with_content_encoding(v()?),
                "correlation-id" => props.with_correlation_id(v()?),
                "reply-to" => props.with_reply_to(v()?),
                "message-id" => props.with_message_id(v()?),
                "type" => props.with_type(v()?),
                "app-id" => props.with_app_id(v()?),
                "timestamp" => match value.trim().parse() {
                    Ok(t) => props.with_timestamp(t),
                    Err(_) => return Err(format!("{name} is not a unix timestamp: {value:?}")),
                },
                "priority" => match value.trim().parse() {
                    Ok(p) => props.with_priority(p),
                    Err(_) => return Err(format!("{name} is not a priority 0-255: {value:?}")),
                },
                // expiration: dropped so the replay does not expire again; user-id: checked by the broker
                // against the publishing user; anything else is not an AMQP property.
                _ => props,
            };
            continue;
        }
        if is_broker_property(name) {
            continue; // another broker's property (`kafka.partition`, `sqs.SentTimestamp`, ...): not a header
        }
        let typed = match original.and_then(|o| o.get(name.as_str())) {
            Some(v) if render(v) == *value => v.clone(),
            _ if name == REPLAY_COUNT_ATTRIBUTE => value.parse::<i64>().map_or_else(
                |_| AMQPValue::LongString(LongString::from(value.as_str())),
                AMQPValue::LongLongInt,
            ),
            _ => AMQPValue::LongString(LongString::from(value.as_str())),
        };
        let key = short("header name", name)?;
        if death == DeathHeaders::Move && BROKER_HEADERS.contains(&name.as_str()) {
            moved.insert(key, typed);
        } else {
            headers.insert(key, typed);
        }
    }
    if !moved.is_empty() {
        headers.insert(
            ShortString::from(ORIGINAL_DEATH_HEADER),
            AMQPValue::FieldTable(FieldTable::from(moved)),
        );
    }
    Ok(props.with_headers(FieldTable::from(headers)))
}

/// Where the message was dead-lettered from: the exchange and routing key it had been published with,
/// from the original `x-death` headers.
pub fn origin_route(env: &Envelope) -> Result<(String, String), String> {
    let Some(native) = env.native.get::<AmqpNative>() else {
        return Err(
            "--to origin needs the message's x-death header, and this message was not read from RabbitMQ".into(),
        );
    };
    let mut notes = Vec::new();
    let dl = dead_letter(&native.headers, &mut notes);
    match (dl.exchange, dl.routing_keys.into_iter().next()) {
        (Some(exchange), Some(key)) => Ok((exchange, key)),
        (Some(exchange), None) if !exchange.is_empty() => Ok((exchange, String::new())),
        _ => match dl.queue {
            // Published to the default exchange, or only x-first-death-queue is known: the queue itself.
            Some(queue) => Ok((String::new(), queue)),
            None => Err("no x-death header says where it was dead-lettered from; use an explicit destination".into()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lapin::types::FieldArray;

    fn array(values: Vec<AMQPValue>) -> AMQPValue {
        AMQPValue::FieldArray(FieldArray::from(values))
    }

    /// An envelope as the source builds it.
    fn make(queue: &str, properties: &BasicProperties, body: &[u8]) -> Envelope {
        let attributes = attributes(properties);
        let digest = content_digest(&attributes, body);
        envelope(queue, properties, attributes, body.to_vec(), &digest)
    }

    fn death(queue: &str, reason: &str, count: i64, time: u64, exchange: &str, key: &str) -> AMQPValue {
        let mut t = FieldTable::default();
        t.insert("queue".into(), AMQPValue::LongString(queue.into()));
        t.insert("reason".into(), AMQPValue::LongString(reason.into()));
        t.insert("count".into(), AMQPValue::LongLongInt(count));
        t.insert("time".into(), AMQPValue::Timestamp(time));
        t.insert("exchange".into(), AMQPValue::LongString(exchange.into()));
        t.insert("routing-keys".into(), array(vec![AMQPValue::LongString(key.into())]));
        AMQPValue::FieldTable(t)
    }

    fn props(headers: FieldTable) -> BasicProperties {
        BasicProperties::default()
            .with_message_id("m-1".into())
            .with_content_type("application/json".into())
            .with_expiration("60000".into())
            .with_headers(headers)
    }

    #[test]
    fn reads_x_death_into_the_failure_context_and_origin() {
        let mut h = FieldTable::default();
        h.insert(
            "x-death".into(),
            array(vec![
                death("orders", "rejected", 3, 1_800_000_100, "orders-x", "orders.created"),
                death("orders.retry", "expired", 1, 1_800_000_000, "", "orders.retry"),
            ]),
        );
        h.insert("x-exception-message".into(), AMQPValue::LongString("timeout".into()));
        h.insert("tenant".into(), AMQPValue::LongInt(7));
        let env = make("orders.dlq", &props(h), b"{}");
        assert_eq!(env.id, "m-1");
        assert_eq!(env.origin.original_queue.as_deref(), Some("orders"));
        assert_eq!(env.failure.reason.as_deref(), Some("rejected"));
        assert_eq!(env.failure.receive_count, Some(3));
        assert_eq!(env.failure.error_text.as_deref(), Some("timeout"));
        assert_eq!(env.failure.first_failed_at.unwrap().timestamp(), 1_800_000_000);
        assert_eq!(env.failure.last_failed_at.unwrap().timestamp(), 1_800_000_100);
        assert_eq!(env.attribute("tenant"), Some("7"));
        assert_eq!(env.attribute("amqp.content-type"), Some("application/json"));
        assert!(env.notes.is_empty(), "{:?}", env.notes);
        assert_eq!(
            origin_route(&env).unwrap(),
            ("orders-x".into(), "orders.created".into())
        );
    }

    #[test]
    fn quorum_queues_delivery_count_is_the_receive_count() {
        let mut h = FieldTable::default();
        h.insert("x-delivery-count".into(), AMQPValue::LongLongInt(4));
        h.insert("x-first-death-queue".into(), AMQPValue::LongString("orders.q".into()));
        h.insert(
            "x-first-death-reason".into(),
            AMQPValue::LongString("delivery_limit".into()),
        );
        let env = make("orders.dlq", &props(h), b"");
        assert_eq!(env.failure.receive_count, Some(4));
        assert_eq!(env.failure.reason.as_deref(), Some("delivery_limit"));
        assert_eq!(env.origin.original_queue.as_deref(), Some("orders.q"));
        assert_eq!(origin_route(&env).unwrap(), (String::new(), "orders.q".into()));
    }

    #[test]
    fn malformed_dead_letter_headers_become_notes_not_errors() {
        let mut h = FieldTable::default();
        let mut bad = FieldTable::default();
        bad.insert("time".into(), AMQPValue::LongString("yesterday".into()));
        bad.insert("count".into(), AMQPValue::Boolean(true));
        h.insert(
            "x-death".into(),
            array(vec![AMQPValue::FieldTable(bad), AMQPValue::LongString("junk".into())]),
        );
        h.insert(REPLAY_COUNT_ATTRIBUTE.into(), AMQPValue::LongString("many".into()));
        let env = make("q", &props(h), b"");
        assert_eq!(env.notes.len(), 4, "{:?}", env.notes);
        assert_eq!(env.replay_count, 0);
        assert!(env.failure.last_failed_at.is_none());
        let mut h = FieldTable::default();
        h.insert("x-death".into(), AMQPValue::LongString("not an array".into()));
        let env = make("q", &props(h), b"");
        assert_eq!(
            env.notes,
            vec!["x-death is not an array (not an array); ignored".to_string()]
        );
    }

    #[test]
    fn publishing_keeps_types_moves_death_headers_and_drops_expiration() {
        let mut h = FieldTable::default();
        h.insert("x-death".into(), array(vec![death("q", "rejected", 1, 5, "", "q")]));
        h.insert("x-first-death-queue".into(), AMQPValue::LongString("q".into()));
        h.insert("tenant".into(), AMQPValue::LongInt(7));
        h.insert("flag".into(), AMQPValue::Boolean(true));
        let mut env = make("dlq", &props(h), b"x");
        env.apply_attribute_changes(&[
            crate::core::envelope::AttributeChange::Set("flag".into(), "false".into()),
            crate::core::envelope::AttributeChange::Set(REPLAY_COUNT_ATTRIBUTE.into(), "1".into()),
        ]);
        let p = outgoing_properties(&env, DeathHeaders::Move, true).unwrap();
        let headers = p.headers().as_ref().unwrap().inner();
        assert_eq!(headers.get("tenant"), Some(&AMQPValue::LongInt(7)));
        assert_eq!(headers.get("flag"), Some(&AMQPValue::LongString("false".into())));
        assert_eq!(headers.get(REPLAY_COUNT_ATTRIBUTE), Some(&AMQPValue::LongLongInt(1)));
        assert!(headers.get("x-death").is_none());
        let AMQPValue::FieldTable(moved) = &headers[ORIGINAL_DEATH_HEADER] else {
            panic!("moved death headers")
        };
        assert!(moved.contains_key("x-death") && moved.contains_key("x-first-death-queue"));
        assert_eq!(p.expiration(), &None);
        assert_eq!(p.delivery_mode(), &Some(2));
        assert_eq!(p.message_id().as_ref().map(ShortString::as_str), Some("m-1"));

        let kept = outgoing_properties(&env, DeathHeaders::Keep, false).unwrap();
        let headers = kept.headers().as_ref().unwrap().inner();
        assert!(headers.contains_key("x-death") && !headers.contains_key(ORIGINAL_DEATH_HEADER));
        assert_eq!(kept.delivery_mode(), &None);
    }

    #[test]
    fn other_brokers_properties_are_not_sent_as_headers() {
        let mut env = make("dlq", &props(FieldTable::default()), b"x");
        for name in ["kafka.partition", "sqs.SentTimestamp", "pubsub.ordering_key", "tenant"] {
            env.attributes.push((name.into(), "1".into()));
        }
        let p = outgoing_properties(&env, DeathHeaders::Move, true).unwrap();
        let headers = p.headers().as_ref().unwrap().inner();
        let names: Vec<&str> = headers.keys().map(ShortString::as_str).collect();
        assert_eq!(names, vec!["tenant"]);
    }

    #[test]
    fn a_message_without_id_gets_a_stable_content_id() {
        let p = BasicProperties::default();
        let (a, b, c) = (make("q", &p, b"same"), make("q", &p, b"same"), make("q", &p, b"other"));
        assert!(a.id.starts_with("sha256:"));
        assert_eq!(a.id, b.id);
        assert_ne!(a.id, c.id);
    }

    #[test]
    fn overlong_header_names_are_an_error_not_a_panic() {
        let env = Envelope {
            attributes: vec![("h".repeat(300), "v".into())],
            ..Default::default()
        };
        let err = outgoing_properties(&env, DeathHeaders::Move, true).unwrap_err();
        assert!(err.contains("255-byte"), "{err}");
    }
}
