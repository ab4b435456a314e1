//! Redis Streams plumbing shared by the `redis://` source and sink: URLs and their options, connecting,
//! raw stream replies, and entries to envelopes and back.
//!
//! `redis://[user:password@]host:port/db?stream=orders:dlq[&group=redrive&consumer=redrive&...]`

mod arrivals;
mod sink;
mod source;

pub use sink::RedisSink;
pub use source::RedisSource;

use std::time::Duration;

use ::redis::Value;
use base64::Engine as _;
use chrono::{DateTime, Utc};

use crate::core::envelope::{
    Envelope, FailureContext, MOVED_ATTRIBUTE_PREFIX, Native, Origin, REPLAY_COUNT_ATTRIBUTE, is_broker_property,
};
use crate::core::{
    adapter::AdapterError,
    endpoint::{duration_option, non_empty_option, redact},
};

/// How acked entries leave the DLQ stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AckMode {
    /// XACK and XDEL: the entry is gone (default).
    Delete,
    /// XACK only: the entry stays in the stream, acknowledged for the group.
    Ack,
}

/// What a replay does with the dead-letter fields (error, failed_at, attempts, original_stream).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeathFields {
    /// Rename them `x-redrive-original-<name>` (default): consumers see a fresh entry, the history stays.
    Move,
    /// Send them unchanged.
    Keep,
}

/// Which fields of an entry carry what.
#[derive(Clone, Debug)]
pub struct FieldNames {
    /// The body: the first of these that is present.
    pub body: Vec<String>,
    /// The error text.
    pub error: String,
    /// When it failed (RFC 3339, or Unix seconds or milliseconds).
    pub failed_at: String,
    /// How many times it was tried.
    pub attempts: String,
    /// The stream it came from.
    pub origin: String,
}

impl Default for FieldNames {
    fn default() -> Self {
        FieldNames {
            body: vec!["payload".into(), "body".into()],
            error: "error".into(),
            failed_at: "failed_at".into(),
            attempts: "attempts".into(),
            origin: "original_stream".into(),
        }
    }
}

impl FieldNames {
    fn dead_letter(&self) -> [&str; 4] {
        [&self.error, &self.failed_at, &self.attempts, &self.origin]
    }
}

/// A parsed `redis://` URL.
#[derive(Clone, Debug)]
pub struct RedisUrl {
    /// The connection part, credentials included (never printed).
    pub connect: String,
    /// `redis://host:port/db` without credentials, for messages and identities.
    pub server: String,
    /// The stream (`stream=`), required.
    pub stream: String,
    /// Source: consumer group (`group=`, default `redrive`).
    pub group: String,
    /// Source: consumer name in the group (`consumer=`, default `redrive`).
    pub consumer: String,
    /// Source: XACK + XDEL, or XACK only (`ack=delete|ack`).
    pub ack: AckMode,
    /// Source: claim entries pending for other consumers this long (`claim=10m`); off by default.
    pub claim: Option<Duration>,
    /// Source: entries per read (`count=`, default 100).
    pub count: usize,
    /// Field names (`body_field=`, `error_field=`, `failed_at_field=`, `attempts_field=`, `origin_field=`).
    pub fields: FieldNames,
    /// Sink: `MAXLEN ~ N` on XADD (`maxlen=`).
    pub maxlen: Option<u64>,
    /// Sink: what happens to dead-letter fields (`death=move|keep`).
    pub death: DeathFields,
    /// How long to keep reconnecting after a dropped connection (`reconnect=`, default 60 s).
    pub reconnect_for: Duration,
}

impl RedisUrl {
    /// Parse `redis://[user:password@]host[:port][/db]?stream=NAME&...`.
    pub fn parse(text: &str) -> Result<Self, AdapterError> {
        if text.starts_with("rediss://") {
            return Err(AdapterError::Config(format!(
                "{}: TLS (rediss://) is not supported yet; use redis:// through a TLS tunnel",
                redact(text)
            )));
        }
        let Some(rest) = text.strip_prefix("redis://") else {
            return Err(AdapterError::Config(format!("{} is not a redis:// URL", redact(text))));
        };
        let (base, query) = rest.split_once('?').unwrap_or((rest, ""));
        let connect = format!("redis://{base}");
        let host_part = base.rsplit_once('@').map_or(base, |(_, h)| h);
        let server = format!("redis://{}", if host_part.is_empty() { "127.0.0.1" } else { host_part });
        let mut url = RedisUrl {
            connect,
            server,
            stream: String::new(),
            group: "redrive".into(),
            consumer: "redrive".into(),
            ack: AckMode::Delete,
            claim: None,
            count: 100,
            fields: FieldNames::default(),
            maxlen: None,
            death: DeathFields::Move,
            reconnect_for: Duration::from_secs(60),
        };
        for (key, value) in form_urlencoded::parse(query.as_bytes()) {
            url.set(&key, &value)
                .map_err(|e| AdapterError::Config(format!("{}: option `{key}`: {e}", url.server)))?;
        }
        if url.stream.is_empty() {
            return Err(AdapterError::Config(format!(
                "{}: name the stream, e.g. {}?stream=orders:dlq",
                url.server, url.server
            )));
        }
        Ok(url)
    }

    fn set(&mut self, key: &str, value: &str) -> Result<(), String> {
        let non_empty = || non_empty_option(value);
        let duration = || duration_option(value);
        match key {
            "stream" => self.stream = non_empty()?,
            "group" => self.group = non_empty()?,
            "consumer" => self.consumer = non_empty()?,
            "ack" => {
                self.ack = match value {
                    "delete" => AckMode::Delete,
                    "ack" => AckMode::Ack,
                    _ => {
                        return Err(format!(
                            "expected `delete` (XACK + XDEL) or `ack` (XACK only), got {value:?}"
                        ));
                    }
                }
            }
            "claim" => self.claim = Some(duration()?),
            "count" => {
                self.count = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=10_000).contains(n))
                    .ok_or_else(|| format!("expected 1 to 10000, got {value:?}"))?
            }
            "body_field" => self.fields.body = vec![non_empty()?],
            "error_field" => self.fields.error = non_empty()?,
            "failed_at_field" => self.fields.failed_at = non_empty()?,
            "attempts_field" => self.fields.attempts = non_empty()?,
            "origin_field" => self.fields.origin = non_empty()?,
            "maxlen" => {
                self.maxlen = Some(value.parse().map_err(|_| format!("expected a number, got {value:?}"))?);
            }
            "death" => {
                self.death = match value {
                    "move" => DeathFields::Move,
                    "keep" => DeathFields::Keep,
                    _ => return Err(format!("expected `move` or `keep`, got {value:?}")),
                }
            }
            "reconnect" => self.reconnect_for = duration()?,
            _ => {
                return Err(
                    "unknown option; Redis options are stream, group, consumer, ack, claim, count, body_field, \
                     error_field, failed_at_field, attempts_field, origin_field, maxlen, death, reconnect"
                        .into(),
                );
            }
        }
        Ok(())
    }

    /// `redis://host:port/db?stream=NAME`, no credentials.
    pub fn describe(&self) -> String {
        format!("{}?stream={}", self.server, self.stream)
    }

    /// Connect (5 s timeout), with errors in words.
    pub async fn connect(&self, role: &str) -> Result<::redis::aio::MultiplexedConnection, AdapterError> {
        let client = ::redis::Client::open(self.connect.as_str())
            .map_err(|e| AdapterError::Config(format!("{}: not a valid Redis URL: {e}", self.server)))?;
        let config = ::redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(5)))
            .set_response_timeout(Some(Duration::from_secs(30)));
        let mut connection = client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(|e| AdapterError::Broker(self.explain(&e, &format!("cannot connect the {role}"))))?;
        // Named, so that operators (and tests) can tell redrive's connections apart in CLIENT LIST.
        let name = format!("redrive-{}-{role}", std::process::id());
        ::redis::cmd("CLIENT")
            .arg("SETNAME")
            .arg(&name)
            .query_async::<()>(&mut connection)
            .await
            .map_err(|e| AdapterError::Broker(self.explain(&e, "CLIENT SETNAME")))?;
        Ok(connection)
    }

    /// The stream or its group vanished while a run used it, found `when`.
    pub fn lost(&self, when: &str) -> String {
        format!(
            "{}: stream `{}` or its consumer group `{}` is gone ({when}). Redis lost it: restarted without \
             persistence, or the key was deleted. What the stream held is gone from Redis and no run can bring it \
             back; the journal and audit log in the audit directory list what this run forwarded and settled before \
             it went",
            self.server, self.stream, self.group
        )
    }

    /// A client error in words, naming the command and what to check.
    pub fn explain(&self, err: &::redis::RedisError, what: &str) -> String {
        let hint = if err.is_io_error() || err.is_connection_dropped() {
            "; is Redis running there?"
        } else if err.code() == Some("NOAUTH")
            || err.code() == Some("WRONGPASS")
            || err.kind() == ::redis::ErrorKind::AuthenticationFailed
        {
            "; check the user and password in the URL"
        } else if err.code() == Some("NOGROUP") {
            return self.lost(&format!("{what}: {err}"));
        } else {
            ""
        };
        format!("{}: {what}: {err}{hint}", self.server)
    }
}

/// True when retrying on a new connection may help.
pub fn is_connection_error(err: &::redis::RedisError) -> bool {
    err.is_io_error() || err.is_connection_dropped() || err.is_timeout() || err.is_unrecoverable_error()
}

/// One stream entry: its id and its fields in order. `fields` is `None` for an entry that was deleted
/// while pending.
#[derive(Clone, Debug)]
pub struct Entry {
    /// `1700000000000-0`.
    pub id: String,
    /// Field-value pairs, in order.
    pub fields: Option<Vec<(Vec<u8>, Vec<u8>)>>,
}

/// Parse the entries of an XREADGROUP reply (one stream) or of XRANGE / XAUTOCLAIM's entry list.
pub fn entries_of_read(reply: &Value) -> Vec<Entry> {
    // XREADGROUP: [[key, [entries...]]] (RESP2) or {key: [entries...]} (RESP3); nil when empty.
    match reply {
        Value::Array(streams) => streams
            .iter()
            .filter_map(|s| match s {
                Value::Array(pair) if pair.len() == 2 => Some(entry_list(&pair[1])),
                _ => None,
            })
            .flatten()
            .collect(),
        Value::Map(streams) => streams.iter().flat_map(|(_, v)| entry_list(v)).collect(),
        _ => Vec::new(),
    }
}

/// Parse a list of entries: `[[id, [f, v, ...]], ...]`.
pub fn entry_list(list: &Value) -> Vec<Entry> {
    let Value::Array(items) = list else { return Vec::new() };
    items
        .iter()
        .filter_map(|item| {
            let Value::Array(parts) = item else { return None };
            let id = text(parts.first()?)?;
            let fields = match parts.get(1) {
                Some(Value::Array(flat)) => Some(
                    flat.chunks(2)
                        .filter_map(|kv| Some((bytes(kv.first()?)?, bytes(kv.get(1)?)?)))
                        .collect(),
                ),
                Some(Value::Map(pairs)) => {
                    Some(pairs.iter().filter_map(|(k, v)| Some((bytes(k)?, bytes(v)?))).collect())
                }
                _ => None,
            };
            Some(Entry { id, fields })
        })
        .collect()
}

fn bytes(v: &Value) -> Option<Vec<u8>> {
    match v {
        Value::BulkString(b) => Some(b.clone()),
        Value::SimpleString(s) => Some(s.clone().into_bytes()),
        Value::Int(i) => Some(i.to_string().into_bytes()),
        _ => None,
    }
}

/// A reply value as text.
pub fn text(v: &Value) -> Option<String> {
    bytes(v).map(|b| String::from_utf8_lossy(&b).into_owned())
}

/// Compare stream ids (`ms-seq`) numerically.
pub fn id_le(a: &str, b: &str) -> bool {
    let parse = |s: &str| {
        let (ms, seq) = s.split_once('-').unwrap_or((s, "0"));
        (
            ms.parse::<u64>().unwrap_or(u64::MAX),
            seq.parse::<u64>().unwrap_or(u64::MAX),
        )
    };
    parse(a) <= parse(b)
}

/// What a Redis source keeps of an entry for a Redis sink.
#[derive(Debug)]
pub struct RedisNative {
    /// The field the body came from.
    pub body_field: String,
    /// The dead-letter fields the entry had (error, failed_at, attempts, original_stream).
    pub dead_letter_fields: Vec<String>,
}

/// Turn an entry into an envelope, or say why it is not a message.
pub fn envelope(entry: &Entry, stream: &str, names: &FieldNames) -> Result<Envelope, String> {
    let Some(fields) = &entry.fields else {
        return Err("the entry was deleted while pending".into());
    };
    let mut notes = Vec::new();
    let as_text = |name: &[u8], value: &[u8], notes: &mut Vec<String>| match std::str::from_utf8(value) {
        Ok(t) => t.to_owned(),
        Err(_) => {
            notes.push(format!(
                "field `{}` is not UTF-8; shown as base64",
                String::from_utf8_lossy(name)
            ));
            base64::engine::general_purpose::STANDARD.encode(value)
        }
    };
    let body_at = names
        .body
        .iter()
        .find_map(|b| fields.iter().position(|(k, _)| k == b.as_bytes()));
    let Some(body_at) = body_at else {
        let present: Vec<String> = fields
            .iter()
            .map(|(k, _)| String::from_utf8_lossy(k).into_owned())
            .collect();
        return Err(format!(
            "entry {} has no {} field (fields: {}); set body_field= in the URL",
            entry.id,
            names.body.join(" or "),
            present.join(", ")
        ));
    };
    let body_field = String::from_utf8_lossy(&fields[body_at].0).into_owned();
    let mut attributes = Vec::with_capacity(fields.len());
    let mut dead_letter_fields = Vec::new();
    let mut failure = FailureContext::default();
    let mut original = None;
    for (i, (k, v)) in fields.iter().enumerate() {
        if i == body_at {
            continue;
        }
        let name = String::from_utf8_lossy(k).into_owned();
        let value = as_text(k, v, &mut notes);
        if name == names.error {
            failure.error_text = Some(value.clone());
        } else if name == names.failed_at {
            match parse_time(&value) {
                Some(t) => failure.last_failed_at = Some(t),
                None => notes.push(format!("{name} {value:?} is not a time (RFC 3339 or Unix seconds/ms)")),
            }
        } else if name == names.attempts {
            match value.trim().parse() {
                Ok(n) => failure.receive_count = Some(n),
                Err(_) => notes.push(format!("{name} {value:?} is not a number")),
            }
        } else if name == names.origin {
            original = Some(value.clone());
        }
        if names.dead_letter().contains(&name.as_str()) {
            dead_letter_fields.push(name.clone());
        }
        attributes.push((name, value));
    }
    let replay_count = match attributes.iter().find(|(k, _)| k == REPLAY_COUNT_ATTRIBUTE) {
        Some((_, v)) => v.trim().parse().unwrap_or_else(|_| {
            notes.push(format!("{REPLAY_COUNT_ATTRIBUTE} is not a number ({v}); taken as 0"));
            0
        }),
        None => 0,
    };
    Ok(Envelope {
        id: entry.id.clone(),
        body: fields[body_at].1.clone(),
        attributes,
        origin: Origin {
            system: "redis".into(),
            dlq: stream.to_owned(),
            original_queue: original,
        },
        failure,
        replay_count,
        notes,
        native: Native::new(RedisNative {
            body_field,
            dead_letter_fields,
        }),
        id_unique_per_send: true,
    })
}

fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text.trim()) {
        return Some(t.with_timezone(&Utc));
    }
    let n: i64 = text.trim().parse().ok()?;
    // Seconds until the year 5138; milliseconds after.
    if n < 100_000_000_000 {
        DateTime::from_timestamp(n, 0)
    } else {
        DateTime::from_timestamp_millis(n)
    }
}

/// The fields to XADD for an envelope: the body first, then its attributes (dead-letter fields renamed
/// unless `death=keep`; broker properties (`amqp.*`, `kafka.*`, ...) left out).
pub fn outgoing_fields(env: &Envelope, death: DeathFields, default_body_field: &str) -> Vec<(String, Vec<u8>)> {
    let native = env.native.get::<RedisNative>();
    let body_field = native.map_or(default_body_field, |n| n.body_field.as_str());
    let mut fields = Vec::with_capacity(env.attributes.len() + 1);
    fields.push((body_field.to_owned(), env.body.clone()));
    for (name, value) in &env.attributes {
        if is_broker_property(name) || name == body_field {
            continue;
        }
        let dead_letter = native.is_some_and(|n| n.dead_letter_fields.contains(name));
        let name = if dead_letter && death == DeathFields::Move {
            format!("{MOVED_ATTRIBUTE_PREFIX}{name}")
        } else {
            name.clone()
        };
        fields.push((name, value.clone().into_bytes()));
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(fields: &[(&str, &str)]) -> Entry {
        Entry {
            id: "1700000000000-0".into(),
            fields: Some(
                fields
                    .iter()
                    .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
                    .collect(),
            ),
        }
    }

    #[test]
    fn parses_urls_and_refuses_mistakes() {
        let u = RedisUrl::parse("redis://:pw@127.0.0.1:6379/2?stream=orders:dlq&consumer=w1&ack=ack&claim=5m").unwrap();
        assert_eq!(u.stream, "orders:dlq");
        assert_eq!(u.server, "redis://127.0.0.1:6379/2");
        assert_eq!((u.consumer.as_str(), u.ack), ("w1", AckMode::Ack));
        assert_eq!(u.claim, Some(Duration::from_secs(300)));
        assert!(!u.describe().contains("pw"));
        for (text, expect) in [
            ("redis://h", "name the stream"),
            ("redis://h?stream=s&ack=maybe", "`delete`"),
            ("redis://h?stream=s&colour=red", "unknown option"),
            ("rediss://h?stream=s", "TLS"),
        ] {
            let err = RedisUrl::parse(text).unwrap_err().to_string();
            assert!(err.contains(expect), "{text}: {err}");
        }
    }

    #[test]
    fn maps_fields_to_the_envelope_and_back() {
        let e = entry(&[
            ("tenant", "acme"),
            ("payload", r#"{"order":1}"#),
            ("error", "timeout"),
            ("failed_at", "1763900000"),
            ("attempts", "3"),
            ("original_stream", "orders"),
            (REPLAY_COUNT_ATTRIBUTE, "2"),
        ]);
        let mut env = envelope(&e, "orders:dlq", &FieldNames::default()).unwrap();
        assert_eq!(env.body, br#"{"order":1}"#);
        assert_eq!(env.failure.error_text.as_deref(), Some("timeout"));
        assert_eq!(env.failure.receive_count, Some(3));
        assert_eq!(env.failure.last_failed_at.unwrap().timestamp(), 1_763_900_000);
        assert_eq!(env.origin.original_queue.as_deref(), Some("orders"));
        assert_eq!(env.replay_count, 2);
        // Another broker's properties (a message that came from Kafka, say) are not written as fields.
        env.attributes.push(("kafka.partition".into(), "2".into()));
        env.attributes.push(("pubsub.ordering_key".into(), "k".into()));
        let out = outgoing_fields(&env, DeathFields::Move, "payload");
        let names: Vec<&str> = out.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            names,
            vec![
                "payload",
                "tenant",
                "x-redrive-original-error",
                "x-redrive-original-failed_at",
                "x-redrive-original-attempts",
                "x-redrive-original-original_stream",
                REPLAY_COUNT_ATTRIBUTE
            ]
        );
        let kept = outgoing_fields(&env, DeathFields::Keep, "payload");
        assert_eq!(kept[2].0, "error");
        let missing = envelope(&entry(&[("x", "1")]), "s", &FieldNames::default()).unwrap_err();
        assert!(missing.contains("no payload or body field (fields: x)"), "{missing}");
    }

    #[test]
    fn stream_ids_compare_numerically() {
        assert!(id_le("9-0", "10-0"));
        assert!(id_le("10-2", "10-10"));
        assert!(!id_le("11-0", "10-99"));
    }
}
