//! `kafka://[user:password@]host:port[,host:port]?topic=T&...`: the options redrive reads, and the rest
//! handed to librdkafka as client properties.

use std::time::Duration;

use rdkafka::ClientConfig;

use crate::core::adapter::AdapterError;
use crate::core::endpoint::{duration_option, is_secret_key, non_empty_option};

/// Where a pass starts on each partition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartAt {
    /// The group's committed offsets; the beginning of a partition the group never committed on (default).
    Committed,
    /// The beginning of every partition, whatever the group committed (`from=earliest`).
    Earliest,
    /// This offset on every partition (`from=offset:N`).
    Offset(i64),
}

/// Which partition a replayed message goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Partitioning {
    /// By key, the way Java clients partition (murmur2), so keyed messages keep their order (default).
    ByKey,
    /// The partition the message was dead-lettered from (`partition=original`), when its headers say.
    Original,
}

/// What a replay does with the dead-letter headers (`__connect.errors.*`, `kafka_dlt-*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeathHeaders {
    /// Rename them `x-redrive-original-<name>` (default): consumers see a fresh record, the history stays.
    Move,
    /// Send them unchanged (`death=keep`).
    Keep,
}

/// How a sink's sends become visible to consumers of the destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// An idempotent producer; a crash between a delivery report and the journal's record of it can send a
    /// batch again on resume, at most `--max-in-flight` messages (default).
    AtLeastOnce,
    /// A transactional producer (`delivery=exactly-once`): each batch and a record of its replay ids in the
    /// replay log topic commit together, so a resumed run can tell what an interrupted one delivered.
    ExactlyOnce,
}

/// Whether an exactly-once destination's transactions also commit the dead-letter topic's group offsets
/// (`send_offsets_to_transaction`), when the source is a Kafka topic on the same cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DlqOffsets {
    /// In the transaction (default): a batch's replays and the DLQ position past them commit together, so
    /// even a run that lost its journal does not replay them again.
    InTransaction,
    /// Only by the source's own commits, after the journal (`dlq_offsets=separately`): for a producer whose
    /// user may not commit the group's offsets (it needs READ on the group).
    Separately,
}

/// The replay log topic's default name (`replay_log=` changes it).
pub const DEFAULT_REPLAY_LOG: &str = "redrive.replays";

/// A parsed `kafka://` URL.
#[derive(Clone, Debug)]
pub struct KafkaUrl {
    /// `host:port[,host:port]`.
    pub brokers: String,
    /// `kafka://hosts` without credentials, for messages and identities.
    pub server: String,
    /// The topic (`topic=`), required.
    pub topic: String,
    /// Source: the consumer group (`group=`, default `redrive-<topic>`: one group per dead-letter topic).
    pub group: String,
    /// Source: where the pass starts (`from=committed|earliest|offset:N`).
    pub from: StartAt,
    /// Sink: partition choice (`partition=key|original`).
    pub partition: Partitioning,
    /// Sink: dead-letter headers (`death=move|keep`).
    pub death: DeathHeaders,
    /// Sink: at least once (default) or exactly once (`delivery=at-least-once|exactly-once`).
    pub delivery: Delivery,
    /// Sink, exactly once: the topic recording which replay ids each committed transaction delivered
    /// (`replay_log=`, default `redrive.replays`; created with one partition when missing).
    pub replay_log: String,
    /// Sink, exactly once, Kafka source on the same cluster: where the DLQ's offsets are committed
    /// (`dlq_offsets=in-transaction|separately`).
    pub dlq_offsets: DlqOffsets,
    /// How long to keep trying after the broker went away (`reconnect=`, default 60 s).
    pub reconnect_for: Duration,
    /// Other keys: librdkafka properties (`security.protocol`, `sasl.mechanism`, ...), user and password
    /// from the URL as `sasl.username` / `sasl.password`.
    pub client: Vec<(String, String)>,
}

impl KafkaUrl {
    /// Parse a `kafka://` URL as [`crate::core::Endpoint`] serialised it.
    pub fn parse(text: &str) -> Result<Self, AdapterError> {
        let Some(rest) = text.strip_prefix("kafka://") else {
            return Err(AdapterError::Config("not a kafka:// URL".into()));
        };
        let (base, query) = rest.split_once('?').unwrap_or((rest, ""));
        let base = base.trim_end_matches('/');
        let (user_info, brokers) = match base.rsplit_once('@') {
            Some((user, hosts)) => (Some(user), hosts),
            None => (None, base),
        };
        if brokers.is_empty() {
            return Err(AdapterError::Config(
                "kafka:// needs the bootstrap servers, e.g. kafka://127.0.0.1:9092?topic=orders.DLT".into(),
            ));
        }
        let server = format!("kafka://{brokers}");
        let mut url = KafkaUrl {
            brokers: brokers.to_owned(),
            server,
            topic: String::new(),
            group: String::new(),
            from: StartAt::Committed,
            partition: Partitioning::ByKey,
            death: DeathHeaders::Move,
            delivery: Delivery::AtLeastOnce,
            replay_log: DEFAULT_REPLAY_LOG.to_owned(),
            dlq_offsets: DlqOffsets::InTransaction,
            reconnect_for: Duration::from_secs(60),
            client: Vec::new(),
        };
        if let Some(user_info) = user_info {
            let (user, password) = user_info.split_once(':').unwrap_or((user_info, ""));
            let decode = |part: &str| {
                percent_decode(part)
                    .map_err(|e| AdapterError::Config(format!("{}: user name or password: {e}", url.server)))
            };
            url.client.push(("sasl.username".into(), decode(user)?));
            if !password.is_empty() {
                url.client.push(("sasl.password".into(), decode(password)?));
            }
        }
        for (key, value) in form_urlencoded::parse(query.as_bytes()) {
            url.set(&key, &value)
                .map_err(|e| AdapterError::Config(format!("{}: option `{key}`: {e}", url.server)))?;
        }
        if url.topic.is_empty() {
            return Err(AdapterError::Config(format!(
                "{}: name the topic, e.g. {}?topic=orders.DLT",
                url.server, url.server
            )));
        }
        if url.group.is_empty() {
            url.group = format!("redrive-{}", url.topic);
        }
        Ok(url)
    }

    fn set(&mut self, key: &str, value: &str) -> Result<(), String> {
        let non_empty = || non_empty_option(value);
        match key {
            "topic" => self.topic = non_empty()?,
            "group" | "group.id" => self.group = non_empty()?,
            "from" => {
                self.from = match value {
                    "committed" => StartAt::Committed,
                    "earliest" => StartAt::Earliest,
                    _ => match value.strip_prefix("offset:").map(str::parse::<i64>) {
                        Some(Ok(n)) if n >= 0 => StartAt::Offset(n),
                        _ => {
                            return Err(format!(
                                "expected `committed`, `earliest` or `offset:N` (N ≥ 0), got {value:?}"
                            ));
                        }
                    },
                }
            }
            "partition" => {
                self.partition = match value {
                    "key" => Partitioning::ByKey,
                    "original" => Partitioning::Original,
                    _ => return Err(format!("expected `key` or `original`, got {value:?}")),
                }
            }
            "death" => {
                self.death = match value {
                    "move" => DeathHeaders::Move,
                    "keep" => DeathHeaders::Keep,
                    _ => return Err(format!("expected `move` or `keep`, got {value:?}")),
                }
            }
            "delivery" => {
                self.delivery = match value {
                    "at-least-once" => Delivery::AtLeastOnce,
                    "exactly-once" => Delivery::ExactlyOnce,
                    _ => return Err(format!("expected `at-least-once` or `exactly-once`, got {value:?}")),
                }
            }
            "replay_log" => self.replay_log = non_empty()?,
            "dlq_offsets" => {
                self.dlq_offsets = match value {
                    "in-transaction" => DlqOffsets::InTransaction,
                    "separately" => DlqOffsets::Separately,
                    _ => return Err(format!("expected `in-transaction` or `separately`, got {value:?}")),
                }
            }
            "reconnect" => self.reconnect_for = duration_option(value)?,
            "bootstrap.servers" | "enable.auto.commit" | "enable.auto.offset.store" | "transactional.id" => {
                return Err("redrive sets this one itself".into());
            }
            // Everything else is a librdkafka property; librdkafka refuses the ones it does not know.
            _ => self.client.push((key.to_owned(), value.to_owned())),
        }
        Ok(())
    }

    /// The client configuration: bootstrap servers, redrive's defaults, then the URL's properties.
    pub fn client_config(&self, defaults: &[(&str, &str)]) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.brokers);
        config.set("client.id", "redrive");
        // Errors come back through the API; librdkafka's own log lines would repeat them on stderr.
        config.set("log_level", "3");
        for (key, value) in defaults {
            config.set(*key, *value);
        }
        for (key, value) in &self.client {
            config.set(key, value);
        }
        config
    }

    /// The URL's librdkafka properties with secret values masked, for messages.
    pub fn shown_properties(&self) -> String {
        self.client
            .iter()
            .map(|(k, v)| {
                if is_secret_key(k) {
                    format!("{k}=***")
                } else {
                    format!("{k}={v}")
                }
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// `kafka://hosts` and the topic, for messages.
    pub fn describe(&self) -> String {
        format!("{}?topic={}", self.server, self.topic)
    }
}

fn percent_decode(text: &str) -> Result<String, String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3).ok_or("a `%` not followed by two hex digits")?;
            let hex = std::str::from_utf8(hex).map_err(|_| "a `%` not followed by two hex digits")?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| "a `%` not followed by two hex digits")?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "not UTF-8 once decoded".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_and_properties() {
        let url = KafkaUrl::parse(
            "kafka://alice:p%40ss@b1:9092,b2:9092?topic=orders.DLT&group=g&from=offset:5&\
             security.protocol=SASL_SSL&sasl.mechanism=SCRAM-SHA-256",
        )
        .unwrap();
        assert_eq!(url.brokers, "b1:9092,b2:9092");
        assert_eq!(url.server, "kafka://b1:9092,b2:9092");
        assert_eq!(url.topic, "orders.DLT");
        assert_eq!(url.group, "g");
        assert_eq!(
            KafkaUrl::parse("kafka://h:1?topic=t.DLT").unwrap().group,
            "redrive-t.DLT"
        );
        assert_eq!(url.from, StartAt::Offset(5));
        assert!(url.client.contains(&("sasl.password".into(), "p@ss".into())));
        assert!(url.client.contains(&("sasl.mechanism".into(), "SCRAM-SHA-256".into())));
        assert!(!url.shown_properties().contains("p@ss"));
        assert!(url.shown_properties().contains("sasl.password=***"));
    }

    #[test]
    fn mistakes_are_named() {
        let err = |text: &str| KafkaUrl::parse(text).unwrap_err().to_string();
        assert!(err("kafka://h:9092").contains("name the topic"));
        assert!(err("kafka://h:9092?topic=t&from=latest").contains("`from`"));
        assert!(err("kafka://h:9092?topic=t&enable.auto.commit=true").contains("sets this one itself"));
        assert!(err("kafka://h:9092?topic=t&transactional.id=x").contains("sets this one itself"));
        assert!(err("kafka://h:9092?topic=t&delivery=once").contains("`exactly-once`"));
        assert!(err("kafka://h:9092?topic=t&replay_log=").contains("`replay_log`"));
        assert!(err("kafka://h:9092?topic=t&dlq_offsets=later").contains("`separately`"));
    }

    #[test]
    fn delivery_defaults_to_at_least_once() {
        let url = KafkaUrl::parse("kafka://h:9092?topic=t").unwrap();
        assert_eq!(url.delivery, Delivery::AtLeastOnce);
        assert_eq!(url.replay_log, DEFAULT_REPLAY_LOG);
        let url = KafkaUrl::parse("kafka://h:9092?topic=t&delivery=exactly-once&replay_log=ops.replays").unwrap();
        assert_eq!(url.delivery, Delivery::ExactlyOnce);
        assert_eq!(url.dlq_offsets, DlqOffsets::InTransaction);
        assert_eq!(url.replay_log, "ops.replays");
        let url = KafkaUrl::parse("kafka://h:9092?topic=t&delivery=exactly-once&dlq_offsets=separately").unwrap();
        assert_eq!(url.dlq_offsets, DlqOffsets::Separately);
    }
}
