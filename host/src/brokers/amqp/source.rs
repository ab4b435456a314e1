//! `amqp://user:pass@host:port/vhost?queue=orders.dlq`: a RabbitMQ dead-letter queue.
//!
//! One pass takes as many messages as the queue held when the run started, so messages that fail again
//! and come back during the run wait for the next pass (the re-poison breaker sees them through
//! [`super::arrivals`]). Messages are consumed with manual acks:
//!
//! - **ack** (replayed and confirmed, or archived): `basic.ack`.
//! - **release** (skip, failed, parked, not done): the delivery is *held* unacknowledged until the pass
//!   ends, then the channel closes and RabbitMQ puts every held message back in its original place in the
//!   queue, headers untouched. Nacking at once would put it back at the head and deliver it again in the
//!   same pass. Held deliveries count against the consumer's prefetch, so the source opens a fresh
//!   consumer whenever half the window is held.
//! - **connection lost**: RabbitMQ requeues everything unacknowledged. The source reconnects with backoff
//!   (`reconnect=60s`) and recognises the redeliveries: a message still in the pipeline is settled on its
//!   new delivery tag, one already forwarded is acked without being forwarded again, one already
//!   released is held again. Nothing in flight is lost or forwarded twice.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;
use lapin::options::{BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::{Channel, Connection, Consumer};

use super::arrivals::AmqpArrivals;
use super::{AmqpUrl, headers, open_channel, queue_depth, short_name};
use crate::core::adapter::{AckToken, Acker, AdapterError, Arrivals, Delivery, PassSize, Received, Source, SourceMode};
use crate::core::backoff::Backoff;

/// With nothing delivered for this long, the source checks whether the queue is drained.
const IDLE_CHECK: Duration = Duration::from_secs(2);
/// How many recently acked messages are remembered, to recognise their redelivery after a connection
/// drop (an ack in flight when the connection died may not have reached the broker).
const RECENT_ACKS: usize = 65_536;

/// Reads one pass over a RabbitMQ queue.
pub struct AmqpSource {
    url: AmqpUrl,
    queue: String,
    identity: String,
    pass_size: PassSize,
    pass_total: u64,
    yielded: u64,
    connection: Option<Connection>,
    /// Consumers being read, oldest first: a rotated-out consumer is drained before the next is read.
    consumers: VecDeque<Consumer>,
    consumer_count: u64,
    started: bool,
    state: Arc<Mutex<State>>,
}

/// What the source and its acker share.
struct State {
    mode: SourceMode,
    /// Bumped on every reconnect; delivery tags are only valid on the channel they came from.
    generation: u64,
    channel: Option<Channel>,
    /// Messages handed to the pipeline and not settled yet: content key → (generation, delivery tag).
    in_flight: HashMap<u128, (u64, u64)>,
    /// Messages released in this pass: held until the end, held again if redelivered.
    released: HashSet<u128>,
    /// Releases since the last consumer rotation.
    held_since_rotation: usize,
    /// Delivery tags held on the current channel.
    held_tags: BTreeSet<u64>,
    /// Tags being acked one by one outside the acker (forwarded redeliveries).
    acking_singly: BTreeSet<u64>,
    /// False while a rotated-out consumer is drained: its unread deliveries may have lower tags than
    /// ones already read, so acks must not cover ranges.
    one_consumer: bool,
    /// Forwarded and confirmed, but the ack could not reach the broker: ack on redelivery.
    ack_on_redelivery: HashSet<u128>,
    recently_acked: RecentSet,
}

impl AmqpSource {
    /// Connect, check the queue and read its depth; nothing is consumed until the first [`Source::next`].
    pub async fn open(url: &str, mode: SourceMode) -> Result<Self, AdapterError> {
        let parsed = AmqpUrl::parse(url)?;
        let Some(queue) = parsed.queue.clone() else {
            return Err(AdapterError::Config(format!(
                "{}: an AMQP source needs the queue to read, e.g. {}?queue=orders.dlq",
                parsed.server(),
                parsed.server()
            )));
        };
        if parsed.exchange.is_some() || parsed.routing_key.is_some() {
            return Err(AdapterError::Config(format!(
                "{}: exchange= and routing_key= are destination options; a source reads queue={queue}",
                parsed.server()
            )));
        }
        let connection = parsed.connect("source").await?;
        let depth = queue_depth(&connection, &parsed, &queue).await?;
        let pass_size = PassSize::default();
        let _ = pass_size.set(depth);
        Ok(Self {
            identity: format!("{}?queue={queue}", parsed.server()),
            url: parsed,
            queue,
            pass_size,
            pass_total: depth,
            yielded: 0,
            connection: Some(connection),
            consumers: VecDeque::new(),
            consumer_count: 0,
            started: false,
            state: Arc::new(Mutex::new(State {
                mode,
                generation: 0,
                channel: None,
                in_flight: HashMap::new(),
                released: HashSet::new(),
                held_since_rotation: 0,
                held_tags: BTreeSet::new(),
                acking_singly: BTreeSet::new(),
                one_consumer: true,
                ack_on_redelivery: HashSet::new(),
                recently_acked: RecentSet::default(),
            })),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Open a channel with the prefetch window and start the first consumer.
    async fn start_consuming(&mut self) -> Result<(), AdapterError> {
        let connection = match &self.connection {
            Some(c) if c.status().connected() => c,
            _ => self.connection.insert(self.url.connect("source").await?),
        };
        let channel = open_channel(connection, &self.url).await?;
        channel
            .basic_qos(self.url.prefetch, BasicQosOptions::default())
            .await
            .map_err(|e| AdapterError::Broker(self.url.explain(&e, "cannot set the prefetch")))?;
        self.lock().channel = Some(channel.clone());
        let consumer = self.consume(&channel).await?;
        self.consumers.push_back(consumer);
        Ok(())
    }

    async fn consume(&mut self, channel: &Channel) -> Result<Consumer, AdapterError> {
        self.consumer_count += 1;
        let tag = format!("redrive-{}-{}", std::process::id(), self.consumer_count);
        channel
            .basic_consume(
                short_name("queue", &self.queue)?,
                tag.into(),
                BasicConsumeOptions::default(),
                Default::default(),
            )
            .await
            .map_err(|e| {
                AdapterError::Broker(
                    self.url
                        .explain(&e, &format!("cannot consume from queue `{}`", self.queue)),
                )
            })
    }

    /// Reconnect after a dropped connection or closed channel, with backoff, for up to `reconnect=`.
    async fn reconnect(&mut self, why: &str) -> Result<(), AdapterError> {
        self.consumers.clear();
        self.connection = None;
        {
            let mut state = self.lock();
            state.generation += 1;
            state.channel = None;
            state.held_since_rotation = 0;
            state.held_tags.clear();
            state.acking_singly.clear();
            state.one_consumer = true;
        }
        tracing::warn!("{}: {why}; reconnecting", self.identity);
        let mut backoff = Backoff::new(self.url.reconnect_for);
        loop {
            match self.start_consuming().await {
                Ok(()) => {
                    tracing::info!("{}: reconnected", self.identity);
                    return Ok(());
                }
                Err(e) if backoff.wait(&self.identity, &e).await => {}
                Err(e) => {
                    return Err(AdapterError::Broker(format!(
                        "lost the connection to {} ({why}) and could not reconnect within {}: {e}. \
                         Nothing unacknowledged is lost: RabbitMQ keeps it in the queue, and the run journal \
                         lets a new run pick up where this one stopped",
                        self.url.server(),
                        humantime::format_duration(self.url.reconnect_for)
                    )));
                }
            }
        }
    }

    /// When half the prefetch window is held by released messages, read on with a fresh consumer; the
    /// old one is cancelled and drained first (its held deliveries stay unacknowledged on the channel).
    async fn rotate_if_held(&mut self) -> Result<(), AdapterError> {
        let threshold = usize::from(self.url.prefetch / 2).max(1);
        let channel = {
            let mut state = self.lock();
            if state.held_since_rotation < threshold || self.consumers.len() > 1 {
                return Ok(());
            }
            state.held_since_rotation = 0;
            state.one_consumer = false;
            state.channel.clone()
        };
        let (Some(channel), Some(old)) = (channel, self.consumers.back()) else {
            return Ok(());
        };
        let old_tag = old.tag();
        let fresh = self.consume(&channel).await?;
        self.consumers.push_back(fresh);
        if let Err(e) = channel.basic_cancel(old_tag, BasicCancelOptions::default()).await {
            tracing::debug!("cancelling a held consumer: {e}");
        }
        Ok(())
    }

    /// True when the queue has no ready messages left (checked on a separate channel).
    async fn drained(&mut self) -> Result<bool, AdapterError> {
        let Some(connection) = &self.connection else {
            return Ok(false);
        };
        Ok(queue_depth(connection, &self.url, &self.queue).await? == 0)
    }

    /// Forwarded messages whose ack was lost with the connection are still in the queue: reconnect, take
    /// their redeliveries (at the head of the queue) and ack them, so the pass ends clean. Anything else
    /// delivered meanwhile is not touched and goes back when the channel closes.
    async fn ack_after_reconnect(&mut self) {
        let pending = {
            let state = self.lock();
            if state.mode == SourceMode::Peek {
                return;
            }
            state.ack_on_redelivery.len()
        };
        if pending == 0 {
            return;
        }
        let why = format!("{pending} forwarded messages still need their ack");
        if let Err(e) = self.reconnect(&why).await {
            tracing::warn!("{e}");
            return;
        }
        while !self.lock().ack_on_redelivery.is_empty() {
            let Some(consumer) = self.consumers.front_mut() else {
                break;
            };
            match tokio::time::timeout(IDLE_CHECK, consumer.next()).await {
                Ok(Some(Ok(delivery))) => {
                    // Forwarded ones are acked here; anything else stays unacknowledged until the close.
                    let _ = self.admit(delivery).await;
                }
                _ => break,
            }
        }
    }

    /// Decide what a delivery is: a message for the pipeline, or a redelivery this pass already knows.
    async fn admit(&mut self, delivery: lapin::message::Delivery) -> Result<Option<Received>, AdapterError> {
        let attributes = headers::attributes(&delivery.properties);
        let digest = headers::content_digest(&attributes, &delivery.data);
        let key = u128::from_str_radix(&digest, 16).unwrap_or_default();
        let tag = delivery.delivery_tag;
        let ack_now = {
            let mut state = self.lock();
            let generation = state.generation;
            if let Some(slot) = state.in_flight.get_mut(&key) {
                // Redelivered after a reconnect while the pipeline still has it (or an identical copy):
                // settle this delivery when the pipeline settles the message.
                *slot = (generation, tag);
                return Ok(None);
            }
            if state.released.contains(&key) {
                state.held_since_rotation += 1;
                state.held_tags.insert(tag);
                return Ok(None); // stays in the DLQ: hold it again
            }
            let forwarded =
                delivery.redelivered && (state.ack_on_redelivery.remove(&key) || state.recently_acked.contains(key));
            if forwarded {
                state.acking_singly.insert(tag);
            } else {
                state.in_flight.insert(key, (generation, tag));
            }
            forwarded.then(|| state.channel.clone()).flatten()
        };
        if let Some(channel) = ack_now {
            // Forwarded before the connection dropped; only the ack was lost.
            if let Err(e) = channel.basic_ack(tag, BasicAckOptions::default()).await {
                tracing::warn!(
                    "{}: ack of a redelivered, already forwarded message failed: {e}",
                    self.identity
                );
                self.lock().ack_on_redelivery.insert(key);
            }
            return Ok(None);
        }
        let envelope = headers::envelope(&self.queue, &delivery.properties, attributes, delivery.data, &digest);
        Ok(Some(Received::Message(Delivery {
            envelope,
            token: AckToken {
                seq: tag,
                key: Some(digest),
            },
        })))
    }
}

#[async_trait]
impl Source for AmqpSource {
    fn identity(&self) -> &str {
        &self.identity
    }

    fn pass_size(&self) -> PassSize {
        self.pass_size.clone()
    }

    async fn next(&mut self) -> Result<Option<Received>, AdapterError> {
        loop {
            if self.yielded >= self.pass_total {
                return Ok(None);
            }
            if !self.started {
                self.started = true;
                self.start_consuming().await?;
            }
            self.rotate_if_held().await?;
            let Some(consumer) = self.consumers.front_mut() else {
                self.reconnect("no consumer").await?;
                continue;
            };
            let delivery = match tokio::time::timeout(IDLE_CHECK, consumer.next()).await {
                Err(_idle) => {
                    if self.drained().await.unwrap_or(false) {
                        tracing::info!(
                            "{}: queue drained after {} of {} messages (others took the rest)",
                            self.identity,
                            self.yielded,
                            self.pass_total
                        );
                        return Ok(None);
                    }
                    continue;
                }
                Ok(Some(Ok(delivery))) => delivery,
                Ok(Some(Err(e))) => {
                    let why = self.url.explain(&e, "the connection broke");
                    self.reconnect(&why).await?;
                    continue;
                }
                Ok(None) => {
                    // A rotated-out consumer is drained; otherwise the broker cancelled us or the channel died.
                    self.consumers.pop_front();
                    if self.consumers.is_empty() {
                        self.reconnect("the broker ended the consumer").await?;
                    } else if self.consumers.len() == 1 {
                        self.lock().one_consumer = true;
                    }
                    continue;
                }
            };
            if let Some(received) = self.admit(delivery).await? {
                self.yielded += 1;
                return Ok(Some(received));
            }
        }
    }

    fn arrivals(&self) -> Option<Box<dyn Arrivals>> {
        (self.lock().mode == SourceMode::Consume)
            .then(|| Box::new(AmqpArrivals::new(self.url.clone(), self.queue.clone())) as Box<dyn Arrivals>)
    }

    fn acker(&self) -> Arc<dyn Acker> {
        Arc::new(AmqpAcker {
            state: self.state.clone(),
        })
    }

    async fn finish(&mut self) -> Result<Vec<String>, AdapterError> {
        self.ack_after_reconnect().await;
        // Closing the channel returns every held delivery to its place in the queue.
        self.consumers.clear();
        let (channel, released, unacked) = {
            let mut state = self.lock();
            (
                state.channel.take(),
                state.released.len(),
                state.ack_on_redelivery.len() + state.in_flight.len(),
            )
        };
        if let Some(channel) = channel {
            let _ = channel.close(200, "pass complete".into()).await;
        }
        if let Some(connection) = self.connection.take() {
            let _ = connection.close(200, "pass complete".into()).await;
        }
        let mut notes = Vec::new();
        if released > 0 {
            notes.push(format!(
                "{released} messages stay in {} (returned to their place in the queue)",
                self.identity
            ));
        }
        if unacked > 0 {
            notes.push(format!(
                "{unacked} forwarded messages could not be removed from {} (the connection dropped before \
                 the ack); the run journal marks them: run the same command again to remove them without \
                 forwarding them twice",
                self.identity
            ));
        }
        Ok(notes)
    }
}

impl State {
    /// The lowest delivery tag on the current channel that must stay unacknowledged: in the pipeline,
    /// held, or being acked elsewhere. Acks below it may use `multiple`. 0 (no range acks) while two
    /// consumers share the channel.
    fn range_ack_floor(&self) -> u64 {
        if !self.one_consumer {
            return 0;
        }
        let in_flight = self
            .in_flight
            .values()
            .filter(|(generation, _)| *generation == self.generation)
            .map(|(_, tag)| *tag)
            .min();
        [
            in_flight,
            self.held_tags.first().copied(),
            self.acking_singly.first().copied(),
        ]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(u64::MAX)
    }
}

/// Settles deliveries: acks on the channel they belong to, holds releases until the pass ends.
struct AmqpAcker {
    state: Arc<Mutex<State>>,
}

impl AmqpAcker {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn token_key(token: &AckToken) -> u128 {
    token
        .key
        .as_deref()
        .and_then(|key| u128::from_str_radix(key, 16).ok())
        .unwrap_or_default()
}

#[async_trait]
impl Acker for AmqpAcker {
    async fn ack(&self, tokens: &[AckToken]) -> Result<(), AdapterError> {
        if self.lock().mode == SourceMode::Peek {
            return self.release(tokens).await; // a plan never removes anything
        }
        let (channel, mut tags, floor) = {
            let mut state = self.lock();
            let mut tags = Vec::with_capacity(tokens.len());
            for token in tokens {
                let key = token_key(token);
                match state.in_flight.remove(&key) {
                    Some((generation, tag)) if generation == state.generation && state.channel.is_some() => {
                        tags.push((key, tag));
                    }
                    // Its channel is gone: RabbitMQ will redeliver it, and then it is acked.
                    Some(_) => {
                        state.ack_on_redelivery.insert(key);
                    }
                    None => {}
                }
            }
            (state.channel.clone(), tags, state.range_ack_floor())
        };
        let Some(channel) = channel else {
            return Ok(());
        };
        // Everything below `floor` that is still unacknowledged is in this batch: one ack with
        // `multiple` covers it. The rest is acked one by one.
        tags.sort_unstable_by_key(|(_, tag)| *tag);
        let below = tags.partition_point(|(_, tag)| *tag < floor);
        let mut failed = Vec::new();
        let mut done = Vec::with_capacity(tags.len());
        if below > 1 {
            let top = tags[below - 1].1;
            let range = tags.drain(..below).map(|(key, _)| key);
            match channel.basic_ack(top, BasicAckOptions { multiple: true }).await {
                Ok(()) => done.extend(range),
                Err(_) => failed.extend(range),
            }
        }
        for (key, tag) in tags {
            match channel.basic_ack(tag, BasicAckOptions::default()).await {
                Ok(()) => done.push(key),
                Err(_) => failed.push(key),
            }
        }
        let mut state = self.lock();
        for key in done {
            state.recently_acked.insert(key);
        }
        if !failed.is_empty() {
            if state.ack_on_redelivery.is_empty() {
                tracing::warn!(
                    "acks did not reach RabbitMQ (channel closed): those messages are acked after reconnecting, \
                     not forwarded again"
                );
            }
            state.ack_on_redelivery.extend(failed);
        }
        Ok(())
    }

    async fn release(&self, tokens: &[AckToken]) -> Result<(), AdapterError> {
        let mut state = self.lock();
        for token in tokens {
            let key = token_key(token);
            if let Some((generation, tag)) = state.in_flight.remove(&key) {
                state.released.insert(key);
                if generation == state.generation {
                    state.held_since_rotation += 1;
                    state.held_tags.insert(tag);
                }
            }
        }
        Ok(())
    }
}

/// A bounded set of the most recent keys.
#[derive(Default)]
struct RecentSet {
    order: VecDeque<u128>,
    keys: HashSet<u128>,
}

impl RecentSet {
    fn insert(&mut self, key: u128) {
        if self.keys.insert(key) {
            self.order.push_back(key);
            if self.order.len() > RECENT_ACKS
                && let Some(old) = self.order.pop_front()
            {
                self.keys.remove(&old);
            }
        }
    }

    fn contains(&self, key: u128) -> bool {
        self.keys.contains(&key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recent_set_forgets_the_oldest() {
        let mut set = RecentSet::default();
        for k in 0..(RECENT_ACKS as u128 + 10) {
            set.insert(k);
        }
        assert!(!set.contains(0));
        assert!(set.contains(RECENT_ACKS as u128 + 9));
        assert_eq!(set.keys.len(), RECENT_ACKS);
    }
}
