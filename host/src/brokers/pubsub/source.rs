use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use gcloud_gax::grpc::{Code, Status};
use gcloud_googleapis::pubsub::v1::{
    AcknowledgeRequest, GetSubscriptionRequest, ModifyAckDeadlineRequest, PullRequest,
};
use gcloud_pubsub::apiv1::subscriber_client::SubscriberClient;

use super::url::{PubSubUrl, Resource};
use super::{connect, message, status_error, transient};
use crate::core::adapter::{AckToken, Acker, AdapterError, Arrivals, Delivery, PassSize, Received, Source, SourceMode};
use crate::core::backoff::Backoff;
use crate::core::envelope::Envelope;

/// Most ack ids in one acknowledge or modify-deadline request (the service's limit is about 2 500 and
/// 512 KB).
const IDS_PER_REQUEST: usize = 1000;
/// Consecutive empty pulls, a quarter second apart, that end a pass.
const EMPTY_PULLS_TO_END: u32 = 3;
/// Most late arrivals kept between two looks of the re-poison breaker.
const MOST_ARRIVALS_KEPT: usize = 10_000;

/// Messages published to the dead-letter topic after the pass began, as the pass's pulls meet them (a
/// subscription cannot be looked at without pulling; they are held for the next pass either way).
struct PubSubArrivals {
    shared: Arc<Shared>,
}

#[async_trait]
impl Arrivals for PubSubArrivals {
    async fn poll(&mut self) -> Result<Vec<Envelope>, AdapterError> {
        Ok(std::mem::take(&mut self.shared.lock().arrivals))
    }
}

/// What the source, its acker and its lease keeper share.
struct Shared {
    url: PubSubUrl,
    /// `pubsub://projects/P/subscriptions/S`.
    identity: String,
    subscription: String,
    /// Replaced by a new connection when a call got no answer in time ([`Shared::retrying`]).
    client: Mutex<SubscriberClient>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Handed out and not settled: message id → its latest ack id.
    open: HashMap<String, String>,
    /// Staying in the DLQ, held until the pass ends so that this pass does not meet them again: released,
    /// or arrived after the pass began. Message id → its latest ack id.
    kept: HashMap<String, String>,
    /// Message ids this pass has met (a redelivery of one is not handed out again).
    seen: HashSet<String>,
    /// Of `kept`, how many arrived after the pass began.
    arrived_late: usize,
    /// Late arrivals not yet shown to the re-poison breaker (at most [`MOST_ARRIVALS_KEPT`]).
    arrivals: Vec<Envelope>,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The current client (a cheap handle on its connections).
    fn client(&self) -> SubscriberClient {
        self.client
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Replace the client's connections: after a call that got no answer in time, they may hang for good
    /// (half-open: a peer or a middlebox that froze, a silent partition) and every later call on them with
    /// them. Returns whether a new client is in place.
    async fn reconnect(&self) -> bool {
        match connect(&self.url).await {
            Ok(client) => {
                *self.client.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) =
                    client.subscription(&self.subscription).get_client();
                tracing::info!(
                    "{}: a call got no answer in time; opened new connections",
                    self.identity
                );
                true
            }
            Err(e) => {
                tracing::debug!("{}: reconnecting: {e}", self.identity);
                false
            }
        }
    }

    /// Set the ack deadline of `ack_ids` (0: give them back now), retrying while the service is away.
    async fn modify_deadline(&self, ack_ids: Vec<String>, seconds: i32) -> Result<(), AdapterError> {
        for chunk in ack_ids.chunks(IDS_PER_REQUEST) {
            let request = ModifyAckDeadlineRequest {
                subscription: self.subscription.clone(),
                ack_ids: chunk.to_vec(),
                ack_deadline_seconds: seconds,
            };
            self.retrying("changing ack deadlines", |client| {
                let request = request.clone();
                async move { client.modify_ack_deadline(request, None).await }
            })
            .await?;
        }
        Ok(())
    }

    /// Run `call` on the client until it succeeds, retrying transient failures for up to `reconnect=`. A
    /// call that got no answer in time is tried again on new connections, at once, even when that time used
    /// up `reconnect=` (once per such call: a new connection that hangs too waits for the backoff).
    async fn retrying<T, F, Fut>(&self, what: &str, call: F) -> Result<T, AdapterError>
    where
        F: Fn(SubscriberClient) -> Fut,
        Fut: std::future::Future<Output = Result<T, Status>>,
    {
        let mut backoff = Backoff::new(self.url.reconnect_for);
        let mut on_new_connections = false;
        loop {
            match call(self.client()).await {
                Ok(value) => return Ok(value),
                Err(status) if transient(&status) => {
                    let unanswered = matches!(status.code(), Code::Cancelled | Code::DeadlineExceeded);
                    if unanswered && !on_new_connections && self.reconnect().await {
                        on_new_connections = true;
                        continue;
                    }
                    on_new_connections = false;
                    let error = status_error(&format!("{}: {what}", self.url.describe()), &status);
                    if !backoff.wait(&self.url.describe(), &error).await {
                        return Err(AdapterError::Broker(format!(
                            "{error}; gave up after {}. Nothing is lost: what was not acknowledged comes back to \
                             the subscription when its ack deadline passes, and the run journal lets the same \
                             command resume",
                            humantime::format_duration(self.url.reconnect_for)
                        )));
                    }
                }
                Err(status) => return Err(status_error(&format!("{}: {what}", self.url.describe()), &status)),
            }
        }
    }
}

/// Reads one pass over a Pub/Sub subscription (on a dead-letter topic).
pub struct PubSubSource {
    shared: Arc<Shared>,
    mode: SourceMode,
    /// Messages published to the DLQ after this belong to the next pass.
    started: DateTime<Utc>,
    buffer: VecDeque<Received>,
    empty_pulls: u32,
    done: bool,
    seq: u64,
    lease_keeper: tokio::task::JoinHandle<()>,
}

impl PubSubSource {
    /// Connect and check the subscription exists; nothing is pulled until the first read.
    pub async fn open(url: &str, mode: SourceMode) -> Result<Self, AdapterError> {
        let url = PubSubUrl::parse(url)?;
        let Resource::Subscription(subscription) = url.resource.clone() else {
            return Err(AdapterError::Config(format!(
                "{}: a source is a subscription (pubsub://projects/P/subscriptions/S on the dead-letter topic), \
                 not a topic",
                url.describe()
            )));
        };
        let client = connect(&url).await?.subscription(&subscription).get_client();
        let shared = Arc::new(Shared {
            identity: url.describe(),
            url,
            subscription: subscription.clone(),
            client: Mutex::new(client),
            state: Mutex::new(State::default()),
        });
        let request = GetSubscriptionRequest {
            subscription: subscription.clone(),
        };
        // A missing subscription is a clear error before anything moves. Reading needs only the Subscriber
        // role, which cannot look a subscription up: without the right to, the first pull tells.
        match shared
            .retrying("looking up the subscription", |client| {
                let request = request.clone();
                async move { client.get_subscription(request, None).await }
            })
            .await
        {
            Ok(_) => {}
            Err(AdapterError::Config(e)) if e.contains("permission denied") => {
                tracing::debug!("{e}; going on without the check");
            }
            Err(e) => return Err(e),
        }
        let lease_keeper = tokio::spawn(keep_leases(Arc::downgrade(&shared)));
        Ok(Self {
            shared,
            mode,
            started: Utc::now(),
            buffer: VecDeque::new(),
            empty_pulls: 0,
            done: false,
            seq: 0,
            lease_keeper,
        })
    }

    /// Pull once; queue what belongs to the pass; hold the rest. Returns how many were queued.
    async fn pull(&mut self) -> Result<usize, AdapterError> {
        let shared = self.shared.clone();
        #[allow(
            deprecated,
            reason = "without it an empty pull waits up to 90 s; the end of a pass needs an answer"
        )]
        let request = PullRequest {
            subscription: shared.subscription.clone(),
            return_immediately: true,
            max_messages: shared.url.max_messages,
        };
        let response = shared
            .retrying("pulling", |client| {
                let request = request.clone();
                async move { client.pull(request, None).await }
            })
            .await?
            .into_inner();
        if response.received_messages.is_empty() {
            return Ok(0);
        }
        // Hold everything for the lease first: the subscription's own deadline may be as short as 10 s.
        let ack_ids: Vec<String> = response.received_messages.iter().map(|m| m.ack_id.clone()).collect();
        let lease = lease_seconds(&shared.url);
        shared.modify_deadline(ack_ids, lease).await?;
        let mut queued = 0;
        let mut state = shared.lock();
        for received in response.received_messages {
            let Some(msg) = received.message else { continue };
            let id = msg.message_id.clone();
            if state.seen.contains(&id) {
                // Redelivered while held (a lease lapsed): keep its newest ack id, do not hand it out again.
                if let Some(slot) = state.open.get_mut(&id) {
                    *slot = received.ack_id;
                } else if let Some(slot) = state.kept.get_mut(&id) {
                    *slot = received.ack_id;
                }
                continue;
            }
            state.seen.insert(id.clone());
            let published = message::publish_time(&msg);
            if published.is_some_and(|t| t > self.started) {
                state.kept.insert(id, received.ack_id);
                state.arrived_late += 1;
                if state.arrivals.len() < MOST_ARRIVALS_KEPT {
                    let envelope = message::envelope(&shared.subscription, msg, received.delivery_attempt);
                    state.arrivals.push(envelope);
                }
                continue;
            }
            state.open.insert(id.clone(), received.ack_id);
            self.seq += 1;
            let token = AckToken {
                seq: self.seq,
                key: Some(id),
            };
            let envelope = message::envelope(&shared.subscription, msg, received.delivery_attempt);
            self.buffer.push_back(Received::Message(Delivery { envelope, token }));
            queued += 1;
        }
        Ok(queued)
    }
}

fn lease_seconds(url: &PubSubUrl) -> i32 {
    i32::try_from(url.lease.as_secs()).unwrap_or(600)
}

/// Renew the ack deadline of every held message a third of the lease before it lapses, until the source is
/// gone.
async fn keep_leases(shared: std::sync::Weak<Shared>) {
    loop {
        let Some(every) = shared.upgrade().map(|s| s.url.lease / 3) else {
            return;
        };
        tokio::time::sleep(every.max(Duration::from_secs(1))).await;
        let Some(shared) = shared.upgrade() else { return };
        let ack_ids: Vec<String> = {
            let state = shared.lock();
            state.open.values().chain(state.kept.values()).cloned().collect()
        };
        if ack_ids.is_empty() {
            continue;
        }
        if let Err(e) = shared.modify_deadline(ack_ids, lease_seconds(&shared.url)).await {
            tracing::warn!(
                "{e}; messages whose deadline lapses are delivered again, and the run journal keeps this run from \
                 forwarding one twice"
            );
        }
    }
}

#[async_trait]
impl Source for PubSubSource {
    fn identity(&self) -> &str {
        &self.shared.identity
    }

    fn pass_size(&self) -> PassSize {
        // Pub/Sub tells a subscription's backlog only through Cloud Monitoring: unknown here.
        PassSize::default()
    }

    async fn next(&mut self) -> Result<Option<Received>, AdapterError> {
        loop {
            if let Some(r) = self.buffer.pop_front() {
                return Ok(Some(r));
            }
            if self.done {
                return Ok(None);
            }
            if self.pull().await? > 0 {
                self.empty_pulls = 0;
                continue;
            }
            self.empty_pulls += 1;
            if self.empty_pulls >= EMPTY_PULLS_TO_END {
                self.done = true;
            } else {
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    }

    fn acker(&self) -> Arc<dyn Acker> {
        Arc::new(PubSubAcker {
            shared: self.shared.clone(),
            mode: self.mode,
        })
    }

    fn arrivals(&self) -> Option<Box<dyn Arrivals>> {
        (self.mode == SourceMode::Consume).then(|| {
            Box::new(PubSubArrivals {
                shared: self.shared.clone(),
            }) as Box<dyn Arrivals>
        })
    }

    async fn finish(&mut self) -> Result<Vec<String>, AdapterError> {
        self.lease_keeper.abort();
        let (ack_ids, left, late) = {
            let mut state = self.shared.lock();
            let open: Vec<(String, String)> = state.open.drain().collect();
            state.kept.extend(open);
            let ids: Vec<String> = state.kept.values().cloned().collect();
            (ids, state.kept.len() - state.arrived_late, state.arrived_late)
        };
        // Give everything not acknowledged back now, rather than when its deadline passes.
        self.shared.modify_deadline(ack_ids, 0).await?;
        let mut notes = Vec::new();
        if left > 0 {
            notes.push(format!(
                "{left} messages left in the subscription (skipped, failed, parked or not done)"
            ));
        }
        if late > 0 {
            notes.push(format!(
                "{late} messages arrived in the dead-letter topic after the pass began: for the next run"
            ));
        }
        Ok(notes)
    }
}

impl Drop for PubSubSource {
    fn drop(&mut self) {
        self.lease_keeper.abort();
    }
}

/// Acknowledges messages of a [`PubSubSource`]; a release keeps the message held until the pass ends.
struct PubSubAcker {
    shared: Arc<Shared>,
    mode: SourceMode,
}

#[async_trait]
impl Acker for PubSubAcker {
    async fn ack(&self, tokens: &[AckToken]) -> Result<(), AdapterError> {
        if self.mode == SourceMode::Peek || tokens.is_empty() {
            return Ok(());
        }
        let ack_ids: Vec<String> = {
            let state = self.shared.lock();
            tokens
                .iter()
                .filter_map(|t| t.key.as_ref())
                .filter_map(|id| state.open.get(id).cloned())
                .collect()
        };
        for chunk in ack_ids.chunks(IDS_PER_REQUEST) {
            let request = AcknowledgeRequest {
                subscription: self.shared.subscription.clone(),
                ack_ids: chunk.to_vec(),
            };
            self.shared
                .retrying("acknowledging", |client| {
                    let request = request.clone();
                    async move { client.acknowledge(request, None).await }
                })
                .await?;
        }
        let mut state = self.shared.lock();
        for id in tokens.iter().filter_map(|t| t.key.as_ref()) {
            state.open.remove(id);
        }
        Ok(())
    }

    async fn release(&self, tokens: &[AckToken]) -> Result<(), AdapterError> {
        // Kept until the pass ends (a nack now would bring it back into this pass), then given back.
        let mut state = self.shared.lock();
        for id in tokens.iter().filter_map(|t| t.key.as_ref()) {
            if let Some(ack_id) = state.open.remove(id) {
                state.kept.insert(id.clone(), ack_id);
            }
        }
        Ok(())
    }
}
