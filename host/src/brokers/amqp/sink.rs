//! `amqp://...?exchange=orders&routing_key=created` or `amqp://...?queue=orders.staging`: publish to
//! RabbitMQ with publisher confirms and `mandatory`, so a message counts as forwarded only when the
//! broker confirmed it *and* routed it to at least one queue. Also `--to origin`: back to the exchange
//! and routing key each message was dead-lettered from (its `x-death` header).

use std::collections::HashSet;

use async_trait::async_trait;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::{Channel, Confirmation, Connection};
use tokio::sync::Mutex;

use super::headers::{self, outgoing_properties};
use super::{AmqpUrl, check_exchange, open_channel, queue_depth};
use crate::core::adapter::AdapterError;
use crate::core::adapter::{SendError, Sink};
use crate::core::backoff::Backoff;
use crate::core::envelope::Envelope;

/// Where each message is published.
#[derive(Clone, Debug)]
enum Route {
    /// One exchange; the routing key is fixed, or the message's original one when not given.
    Fixed {
        exchange: String,
        routing_key: Option<String>,
    },
    /// Back where each message was dead-lettered from.
    Origin,
}

/// Publishes replayed messages to RabbitMQ.
pub struct AmqpSink {
    url: AmqpUrl,
    route: Route,
    describe: String,
    link: Mutex<Link>,
}

/// The connection and confirm-mode channel, re-opened after a drop.
struct Link {
    connection: Option<Connection>,
    channel: Option<Channel>,
    /// Exchanges known to exist (origin mode checks each before its first publish: publishing to a
    /// missing exchange would close the channel).
    exchanges: HashSet<String>,
}

impl AmqpSink {
    /// Open a destination from its URL; checks that the exchange or queue exists before anything moves.
    pub async fn open(url: &str) -> Result<Self, AdapterError> {
        let parsed = AmqpUrl::parse(url)?;
        let route = match (&parsed.queue, &parsed.exchange) {
            (Some(_), Some(_)) => {
                return Err(AdapterError::Config(format!(
                    "{}: give either queue= (publish through the default exchange) or exchange= (with \
                     routing_key=), not both",
                    parsed.server()
                )));
            }
            (Some(queue), None) => Route::Fixed {
                exchange: String::new(),
                routing_key: Some(queue.clone()),
            },
            (None, Some(exchange)) => Route::Fixed {
                exchange: exchange.clone(),
                routing_key: parsed.routing_key.clone(),
            },
            (None, None) => {
                return Err(AdapterError::Config(format!(
                    "{}: an AMQP destination needs queue=NAME or exchange=NAME[&routing_key=KEY]",
                    parsed.server()
                )));
            }
        };
        Self::connect(parsed, route).await
    }

    /// Open the `--to origin` destination for a source URL: the same broker and vhost, each message
    /// published back to the exchange and routing key of its `x-death` header.
    pub async fn origin(source_url: &str) -> Result<Self, AdapterError> {
        let parsed = AmqpUrl::parse(source_url)?;
        Self::connect(parsed, Route::Origin).await
    }

    async fn connect(url: AmqpUrl, route: Route) -> Result<Self, AdapterError> {
        let connection = url.connect("destination").await?;
        let mut exchanges = HashSet::new();
        let describe = match &route {
            Route::Fixed {
                exchange,
                routing_key: Some(key),
            } if exchange.is_empty() => {
                queue_depth(&connection, &url, key).await?; // the queue must exist
                format!("{}?queue={key}", url.server())
            }
            Route::Fixed { exchange, routing_key } => {
                check_exchange(&connection, &url, exchange).await?;
                exchanges.insert(exchange.clone());
                match routing_key {
                    Some(key) => format!("{}?exchange={exchange}&routing_key={key}", url.server()),
                    None => format!("{}?exchange={exchange} (original routing keys)", url.server()),
                }
            }
            Route::Origin => format!(
                "{} (origin: each message's x-death exchange and routing key)",
                url.server()
            ),
        };
        let channel = confirm_channel(&connection, &url).await?;
        Ok(Self {
            url,
            route,
            describe,
            link: Mutex::new(Link {
                connection: Some(connection),
                channel: Some(channel),
                exchanges,
            }),
        })
    }

    /// Where `env` goes: (exchange, routing key).
    fn route_of(&self, env: &Envelope) -> Result<(String, String), SendError> {
        match &self.route {
            Route::Fixed {
                exchange,
                routing_key: Some(key),
            } => Ok((exchange.clone(), key.clone())),
            Route::Fixed {
                exchange,
                routing_key: None,
            } => {
                let key = headers::origin_route(env).map(|(_, key)| key).unwrap_or_default();
                Ok((exchange.clone(), key))
            }
            Route::Origin => headers::origin_route(env).map_err(SendError::refused),
        }
    }

    /// The confirm channel, reconnecting (with backoff, up to `reconnect=`) when it was lost.
    async fn channel(&self, link: &mut Link) -> Result<Channel, SendError> {
        if let Some(channel) = link.channel.as_ref().filter(|c| c.status().connected()) {
            return Ok(channel.clone());
        }
        link.channel = None;
        let mut backoff = Backoff::new(self.url.reconnect_for);
        loop {
            let attempt = async {
                let connection = match link.connection.take() {
                    Some(c) if c.status().connected() => c,
                    _ => self.url.connect("destination").await?,
                };
                let channel = confirm_channel(&connection, &self.url).await;
                link.connection = Some(connection);
                channel
            };
            match attempt.await {
                Ok(channel) => {
                    link.channel = Some(channel.clone());
                    return Ok(channel);
                }
                Err(e) if backoff.wait(&self.describe, &e).await => link.connection = None,
                Err(e) => return Err(SendError::retryable(format!("destination unreachable: {e}"))),
            }
        }
    }

    /// In origin mode, check an exchange before the first publish to it.
    async fn exchange_exists(&self, link: &mut Link, exchange: &str) -> Result<(), SendError> {
        if exchange.is_empty() || link.exchanges.contains(exchange) {
            return Ok(());
        }
        let Some(connection) = &link.connection else {
            return Err(SendError::retryable("destination unreachable"));
        };
        check_exchange(connection, &self.url, exchange)
            .await
            .map_err(|e| match e {
                AdapterError::Config(problem) => SendError::refused(problem),
                other => SendError::retryable(other.to_string()),
            })?;
        link.exchanges.insert(exchange.to_owned());
        Ok(())
    }
}

async fn confirm_channel(connection: &Connection, url: &AmqpUrl) -> Result<Channel, AdapterError> {
    let channel = open_channel(connection, url).await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .map_err(|e| AdapterError::Broker(url.explain(&e, "cannot enable publisher confirms")))?;
    Ok(channel)
}

#[async_trait]
impl Sink for AmqpSink {
    fn describe(&self) -> String {
        self.describe.clone()
    }

    fn max_batch(&self) -> usize {
        512
    }

    async fn send(&self, batch: &[Envelope]) -> Vec<Result<(), SendError>> {
        let mut link = self.link.lock().await;
        let channel = match self.channel(&mut link).await {
            Ok(c) => c,
            Err(e) => return batch.iter().map(|_| Err(e.clone())).collect(),
        };
        // Publish the whole batch, then collect the confirms: one round trip for many messages.
        let mut pending = Vec::with_capacity(batch.len());
        for env in batch {
            let published = async {
                let (exchange, key) = self.route_of(env)?;
                self.exchange_exists(&mut link, &exchange).await?;
                let properties =
                    outgoing_properties(env, self.url.death, self.url.persistent).map_err(SendError::refused)?;
                let exchange_name = lapin::types::ShortString::try_new(exchange.as_str())
                    .map_err(|_| SendError::refused(format!("exchange name `{exchange}` is longer than 255 bytes")))?;
                let key_name = lapin::types::ShortString::try_new(key.as_str())
                    .map_err(|_| SendError::refused(format!("routing key `{key}` is longer than 255 bytes")))?;
                let options = BasicPublishOptions {
                    mandatory: true,
                    ..Default::default()
                };
                channel
                    .basic_publish(exchange_name, key_name, options, &env.body, properties)
                    .await
                    .map(|confirm| (confirm, exchange, key))
                    .map_err(|e| SendError::retryable(format!("publish failed: {e}")))
            }
            .await;
            pending.push(published);
        }
        let mut results = Vec::with_capacity(batch.len());
        for published in pending {
            let result = match published {
                Err(e) => Err(e),
                Ok((confirm, exchange, key)) => match confirm.await {
                    Ok(Confirmation::Ack(None)) => Ok(()),
                    Ok(Confirmation::Ack(Some(returned))) => Err(SendError::refused(format!(
                        "RabbitMQ returned it as unroutable ({} {}): no queue is bound to exchange `{exchange}` \
                         with routing key `{key}`",
                        returned.reply_code, returned.reply_text
                    ))),
                    // A nack is RabbitMQ failing to take it (an internal error, a disk alarm): try again later.
                    Ok(Confirmation::Nack(_)) => Err(SendError::retryable("RabbitMQ refused it (publisher nack)")),
                    Ok(Confirmation::NotRequested) => {
                        Err(SendError::retryable("no publisher confirm (internal error)"))
                    }
                    Err(e) => Err(SendError::retryable(format!(
                        "no confirm: {e} (it may still have reached the destination; its x-redrive-replay-id \
                         lets consumers drop a second copy)"
                    ))),
                },
            };
            results.push(result);
        }
        results
    }

    async fn close(&self) -> Result<(), AdapterError> {
        let mut link = self.link.lock().await;
        if let Some(channel) = link.channel.take() {
            let _ = channel.close(200, "done".into()).await;
        }
        if let Some(connection) = link.connection.take() {
            let _ = connection.close(200, "done".into()).await;
        }
        Ok(())
    }
}
