//! The brokers redrive reads dead letters from and replays them to: one folder each, holding that broker's
//! source, sink and plumbing side by side, depending only on [`crate::core`]. This file is the only place
//! that maps an endpoint's scheme to an adapter.
//!
//! Every broker but the file and Redis ones is a cargo feature named after its scheme (`amqp`, `sqs`,
//! `kafka`, `pubsub`, `postgres`, `mysql`), all in the default build; a URL whose broker this build left out
//! is refused here with how to build it in.
//!
//! Adding a broker: `docs/adapters.md`.

#[cfg(feature = "amqp")]
pub mod amqp;
pub mod file;
#[cfg(feature = "kafka")]
pub mod kafka;
#[cfg(feature = "mysql")]
pub mod mysql;
#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "pubsub")]
pub mod pubsub;
pub mod redis;
#[cfg(feature = "sqs")]
pub mod sqs;

use std::path::PathBuf;
use std::sync::Arc;

use crate::core::adapter::{AdapterError, Sink, Source, SourceMode};
use crate::core::{AwsSettings, Destination, Endpoint, Scheme, TimeWindow};

/// Settings some brokers take besides their URL.
#[derive(Clone, Debug, Default)]
pub struct BrokerOptions {
    /// File sources: where to write what is still in the DLQ at the end (a file cannot delete lines).
    pub remainder: Option<PathBuf>,
    /// Work out the pass size for a progress display, when that costs extra work (counting a file's lines).
    pub count_pass: bool,
    /// SQS: AWS profile, region and endpoint.
    pub aws: AwsSettings,
    /// Database sources: an SQL predicate the operator wrote (`--where`), added to the row selection.
    pub where_clause: Option<String>,
    /// `--since` / `--until`: a source that can seek by time (Kafka) reads only that part of the DLQ; the
    /// pipeline checks every message against it either way.
    pub window: TimeWindow,
    /// A fleet worker's id: destinations that name their producer after what it replays for (a Kafka
    /// transactional id) add it, so two workers on one DLQ never share a name.
    pub worker: Option<String>,
}

/// What a source lends the sinks that replay its messages, handed from [`open_source`] to [`open_sink`] by
/// the command that opens both: today a Kafka source's consumer group, whose offsets an exactly-once Kafka
/// destination on the same cluster commits in its transactions. Opaque to everything else.
#[derive(Clone, Default)]
pub struct SourceLink {
    #[cfg(feature = "kafka")]
    kafka_group: Option<kafka::DlqGroup>,
}

/// The refusal of a URL whose broker this build left out (its cargo feature is the scheme's name).
fn not_built_in(scheme: Scheme) -> AdapterError {
    let feature = scheme.name();
    AdapterError::Config(format!(
        "this redrive was built without the {feature}:// broker (cargo feature `{feature}`, left out of this \
         build, e.g. by `scripts/quickstart.sh`); build every broker in with scripts/setup.sh (or `cargo build \
         --release -p redrive`)"
    ))
}

/// What a sink replays for, without credentials: the source, and the fleet worker if any.
#[cfg(feature = "kafka")]
fn producer_name(source: &Endpoint, options: &BrokerOptions) -> String {
    match &options.worker {
        Some(worker) => format!("{source} worker {worker}"),
        None => source.to_string(),
    }
}

/// Open a source: `file:path/to/dlq.jsonl`, `amqp://user:pass@host/vhost?queue=orders.dlq`,
/// `sqs://orders-dlq` (or an SQS queue URL or ARN), `redis://host:6379/0?stream=orders:dlq`,
/// `postgres://user@host/db?table=failed_jobs`, `mysql://user@host/db?table=failed_jobs`,
/// `kafka://host:9092?topic=orders.DLT`, `pubsub://projects/P/subscriptions/S`. With it, what the sinks
/// replaying its messages may use of it ([`SourceLink`]).
pub async fn open_source(
    endpoint: &Endpoint,
    mode: SourceMode,
    options: &BrokerOptions,
) -> Result<(Box<dyn Source>, SourceLink), AdapterError> {
    if options.where_clause.is_some() && !matches!(endpoint.scheme(), Scheme::Postgres | Scheme::MySql) {
        return Err(AdapterError::Config(
            "--where selects rows of a database table (postgres://... or mysql://...); this source is not one".into(),
        ));
    }
    let url = endpoint.secret_text();
    #[allow(unused_mut, reason = "only a Kafka source lends something")]
    let mut link = SourceLink::default();
    let source: Box<dyn Source> = match endpoint.scheme() {
        Scheme::File => {
            let path = endpoint.file_path().unwrap_or_default();
            Box::new(file::FileSource::open(path, mode, options.remainder.clone(), options.count_pass).await?)
        }
        Scheme::Redis => Box::new(redis::RedisSource::open(url, mode).await?),
        #[cfg(feature = "postgres")]
        Scheme::Postgres => Box::new(postgres::PgSource::open(url, mode, options.where_clause.as_deref()).await?),
        #[cfg(feature = "mysql")]
        Scheme::MySql => Box::new(mysql::MySqlSource::open(url, mode, options.where_clause.as_deref()).await?),
        #[cfg(feature = "amqp")]
        Scheme::Amqp => Box::new(amqp::AmqpSource::open(url, mode).await?),
        #[cfg(feature = "sqs")]
        Scheme::Sqs => Box::new(sqs::SqsSource::open(url, mode, &options.aws).await?),
        #[cfg(feature = "kafka")]
        Scheme::Kafka => {
            let source = kafka::KafkaSource::open(url, mode, options.window).await?;
            link.kafka_group = source.dlq_group();
            Box::new(source)
        }
        #[cfg(feature = "pubsub")]
        Scheme::PubSub => Box::new(pubsub::PubSubSource::open(url, mode).await?),
        #[allow(unreachable_patterns, reason = "reached only by builds that leave a broker out")]
        left_out => return Err(not_built_in(left_out)),
    };
    Ok((source, link))
}

/// Open a destination: `file:path/to/staging.jsonl`, `amqp://host/vhost?queue=staging`,
/// `amqp://host/vhost?exchange=orders&routing_key=created`, `sqs://orders-staging` (or an SQS queue URL or
/// ARN), `redis://host/db?stream=name`; or `origin`, back where each message of `source` came from.
#[cfg_attr(
    not(feature = "kafka"),
    allow(unused_variables, reason = "only Kafka sinks use the link")
)]
pub async fn open_sink(
    destination: &Destination,
    source: &Endpoint,
    link: &SourceLink,
    options: &BrokerOptions,
) -> Result<Arc<dyn Sink>, AdapterError> {
    let endpoint = match destination {
        Destination::Origin => {
            let url = source.secret_text();
            return match source.scheme() {
                Scheme::Redis => Ok(Arc::new(redis::RedisSink::origin(url).await?)),
                #[cfg(feature = "amqp")]
                Scheme::Amqp => Ok(Arc::new(amqp::AmqpSink::origin(url).await?)),
                #[cfg(feature = "sqs")]
                Scheme::Sqs => Ok(Arc::new(sqs::SqsSink::origin(url, &options.aws).await?)),
                #[cfg(feature = "kafka")]
                Scheme::Kafka => Ok(Arc::new(
                    kafka::KafkaSink::origin(url, &producer_name(source, options), link.kafka_group.clone()).await?,
                )),
                #[cfg(feature = "pubsub")]
                Scheme::PubSub => Ok(Arc::new(pubsub::PubSubSink::origin(url).await?)),
                Scheme::File | Scheme::Postgres | Scheme::MySql => Err(AdapterError::Config(format!(
                    "--to origin needs a broker source that records where each message was dead-lettered from \
                     (amqp://..., sqs://..., redis://..., kafka://... or pubsub://...); {source} does not"
                ))),
                #[allow(unreachable_patterns, reason = "reached only by builds that leave a broker out")]
                left_out => Err(not_built_in(left_out)),
            };
        }
        Destination::To(endpoint) => endpoint,
    };
    let url = endpoint.secret_text();
    match endpoint.scheme() {
        Scheme::File => Ok(Arc::new(
            file::FileSink::open(endpoint.file_path().unwrap_or_default()).await?,
        )),
        Scheme::Redis => Ok(Arc::new(redis::RedisSink::open(url).await?)),
        #[cfg(feature = "amqp")]
        Scheme::Amqp => Ok(Arc::new(amqp::AmqpSink::open(url).await?)),
        #[cfg(feature = "sqs")]
        Scheme::Sqs => Ok(Arc::new(sqs::SqsSink::open(url, &options.aws).await?)),
        #[cfg(feature = "kafka")]
        Scheme::Kafka => Ok(Arc::new(
            kafka::KafkaSink::open(url, &producer_name(source, options), link.kafka_group.clone()).await?,
        )),
        #[cfg(feature = "pubsub")]
        Scheme::PubSub => Ok(Arc::new(pubsub::PubSubSink::open(url).await?)),
        Scheme::Postgres | Scheme::MySql => Err(AdapterError::Config(format!(
            "a {}:// table is a source only; replay to a queue, a stream or a file",
            endpoint.scheme().name()
        ))),
        #[allow(unreachable_patterns, reason = "reached only by builds that leave a broker out")]
        left_out => Err(not_built_in(left_out)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_left_out_broker_is_refused_with_how_to_build_it_in() {
        let AdapterError::Config(text) = not_built_in(Scheme::Kafka) else {
            panic!("a left-out broker is a configuration error (exit 2)");
        };
        assert!(text.contains("kafka://"), "{text}");
        assert!(text.contains("cargo feature `kafka`"), "{text}");
        assert!(text.contains("cargo build --release -p redrive"), "{text}");
    }
}
