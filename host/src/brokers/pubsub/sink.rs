//! `pubsub://projects/P/topics/T`: replayed messages published to a topic; `--to origin` for a Pub/Sub
//! source: to the topic of the subscription each message was dead-lettered from (looked up once per
//! subscription). A message counts as forwarded when the publish returned its message id. Attributes and
//! ordering key are kept, the `CloudPubSubDeadLetterSource*` attributes renamed `x-redrive-original-…`
//! (`death=keep` sends them as they are), `x-redrive-replay-id` and `x-redrive-replay-count` added.

use std::collections::HashMap;

use async_trait::async_trait;
use gcloud_gax::grpc::{Code, Status};
use gcloud_gax::retry::RetrySetting;
use gcloud_googleapis::pubsub::v1::PubsubMessage;
use gcloud_pubsub::client::Client;
use gcloud_pubsub::publisher::Publisher;
use tokio::sync::Mutex;

use super::url::{PubSubUrl, Resource};
use super::{connect, message, status_error, transient};
use crate::core::adapter::{AdapterError, SendError, Sink};
use crate::core::backoff::Backoff;
use crate::core::envelope::Envelope;

/// Publishes replayed messages to Pub/Sub topics.
pub struct PubSubSink {
    url: PubSubUrl,
    /// Replaced by a new connection when a publish got no answer in time ([`PubSubSink::reconnect`]).
    client: std::sync::Mutex<Client>,
    /// `None`: each message's origin topic.
    topic: Option<String>,
    publishers: Mutex<HashMap<String, Publisher>>,
    /// Dead-letter source subscription → its topic, or why it has none.
    origins: Mutex<HashMap<String, Result<String, String>>>,
}

impl PubSubSink {
    /// A destination topic; it must exist.
    pub async fn open(url: &str) -> Result<Self, AdapterError> {
        let url = PubSubUrl::parse(url)?;
        let Resource::Topic(topic) = url.resource.clone() else {
            return Err(AdapterError::Config(format!(
                "{}: a destination is a topic (pubsub://projects/P/topics/T), not a subscription",
                url.describe()
            )));
        };
        let client = connect(&url).await?;
        let exists = client
            .topic(&topic)
            .exists(None)
            .await
            .map_err(|s| status_error(&url.describe(), &s))?;
        if !exists {
            return Err(AdapterError::Config(format!(
                "{}: the topic does not exist; create it first (gcloud pubsub topics create ...)",
                url.describe()
            )));
        }
        Ok(Self::new(url, client, Some(topic)))
    }

    /// `--to origin` for the Pub/Sub source `source_url`: each message to the topic of the subscription it
    /// was dead-lettered from, in the same service (emulator or Google).
    pub async fn origin(source_url: &str) -> Result<Self, AdapterError> {
        let url = PubSubUrl::parse(source_url)?;
        let client = connect(&url).await?;
        Ok(Self::new(url, client, None))
    }

    fn new(url: PubSubUrl, client: Client, topic: Option<String>) -> Self {
        Self {
            url,
            client: std::sync::Mutex::new(client),
            topic,
            publishers: Mutex::new(HashMap::new()),
            origins: Mutex::new(HashMap::new()),
        }
    }

    /// The topic `env` goes to.
    async fn target(&self, env: &Envelope) -> Result<String, SendError> {
        if let Some(topic) = &self.topic {
            return Ok(topic.clone());
        }
        let subscription = match (env.origin.system.as_str(), &env.origin.original_queue) {
            ("pubsub", Some(s)) => s.clone(),
            _ => {
                return Err(SendError::refused(
                    "no CloudPubSubDeadLetterSourceSubscription attribute: the subscription it died in is unknown; \
                     replay it with --to pubsub://projects/P/topics/T",
                ));
            }
        };
        let mut origins = self.origins.lock().await;
        if let Some(known) = origins.get(&subscription) {
            return known.clone().map_err(SendError::refused);
        }
        match self.client().subscription(&subscription).config(None).await {
            Ok((topic, _)) if topic == "_deleted-topic_" || topic.is_empty() => {
                let why = format!("the topic of {subscription} was deleted; replay with --to pubsub://...");
                origins.insert(subscription, Err(why.clone()));
                Err(SendError::refused(why))
            }
            Ok((topic, _)) => {
                origins.insert(subscription, Ok(topic.clone()));
                Ok(topic)
            }
            Err(status) if status.code() == Code::NotFound => {
                let why = format!(
                    "{subscription}, where it was dead-lettered from, no longer exists: its topic is unknown; \
                     replay with --to pubsub://..."
                );
                origins.insert(subscription, Err(why.clone()));
                Err(SendError::refused(why))
            }
            Err(status) => Err(send_error(&format!("looking up {subscription}"), &status)),
        }
    }

    /// The current client (a cheap handle on its connections).
    fn client(&self) -> Client {
        self.client
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// The publisher for `topic`, on the current client.
    async fn publisher(&self, topic: &str) -> Publisher {
        let mut publishers = self.publishers.lock().await;
        publishers
            .entry(topic.to_owned())
            .or_insert_with(|| self.client().topic(topic).new_publisher(None))
            .clone()
    }

    /// Replace the client's connections and its publishers. Returns whether a new client is in place.
    async fn reconnect(&self) -> bool {
        match connect(&self.url).await {
            Ok(client) => {
                *self.client.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = client;
                let mut publishers = self.publishers.lock().await;
                for (_, mut publisher) in publishers.drain() {
                    publisher.shutdown().await;
                }
                tracing::info!(
                    "{}: a publish got no answer in time; opened new connections",
                    self.url.describe()
                );
                true
            }
            Err(e) => {
                tracing::debug!("{}: reconnecting: {e}", self.url.describe());
                false
            }
        }
    }

    /// Publish `messages` (whose ids are `ids`, for messages) to `topic` in one request: each message's
    /// Pub/Sub id, or the request's error. A request whose answer went missing (a timeout, a broken
    /// connection) may have been published: it is tried again, with a warning per message that a copy may
    /// arrive twice, never silently (the client library's own retry would be silent, so it only retries a
    /// refusal: quota, where nothing was published).
    async fn publish(&self, topic: &str, messages: Vec<PubsubMessage>, ids: &[&str]) -> Result<Vec<String>, Status> {
        let mut publisher = self.publisher(topic).await;
        let mut backoff = Backoff::new(self.url.reconnect_for);
        let mut on_new_connections = false;
        loop {
            let refused_only = RetrySetting {
                codes: vec![Code::ResourceExhausted],
                ..RetrySetting::default()
            };
            match publisher
                .publish_immediately(messages.clone(), Some(refused_only))
                .await
            {
                Ok(published) => return Ok(published),
                Err(status) if outcome_unknown(&status) => {
                    for id in ids {
                        tracing::warn!(
                            id = %id,
                            "no answer to its publish to {topic} ({:?}: {}); it may have arrived, so a copy may arrive \
                             twice (with the same replay id)",
                            status.code(),
                            status.message()
                        );
                    }
                    // No answer in time: the connections may hang for good (half-open); the next attempt goes
                    // out on new ones, at once (once; a new connection that hangs too waits for the backoff).
                    let unanswered = matches!(status.code(), Code::Cancelled | Code::DeadlineExceeded);
                    if unanswered && !on_new_connections && self.reconnect().await {
                        on_new_connections = true;
                        publisher = self.publisher(topic).await;
                        continue;
                    }
                    on_new_connections = false;
                    let error = status_error(&format!("publishing to {topic}"), &status);
                    if !backoff.wait(&self.url.describe(), &error).await {
                        return Err(status);
                    }
                }
                Err(status) => return Err(status),
            }
        }
    }
}

/// Whether a failed publish may still have gone through: the request went out and no answer, or a broken
/// one, came back. Pub/Sub does not deduplicate publishes, so sending it again may make a second copy.
fn outcome_unknown(status: &Status) -> bool {
    matches!(
        status.code(),
        Code::Unavailable | Code::Unknown | Code::Aborted | Code::Cancelled | Code::DeadlineExceeded | Code::Internal
    )
}

/// A failed publish in words; whether sending again may work.
fn send_error(what: &str, status: &Status) -> SendError {
    let reason = format!("{what}: {:?}: {}", status.code(), status.message());
    if transient(status) {
        SendError::retryable(format!("{reason}; not confirmed"))
    } else {
        SendError::refused(reason)
    }
}

#[async_trait]
impl Sink for PubSubSink {
    fn describe(&self) -> String {
        match &self.topic {
            Some(_) => self.url.describe(),
            None => "the topics of the subscriptions the messages died in".to_owned(),
        }
    }

    fn max_batch(&self) -> usize {
        // One publish request per topic and batch: the service takes 1 000 messages or 10 MB.
        200
    }

    async fn send(&self, batch: &[Envelope]) -> Vec<Result<(), SendError>> {
        let mut results: Vec<Result<(), SendError>> = vec![Ok(()); batch.len()];
        let mut by_topic: HashMap<String, Vec<(usize, PubsubMessage)>> = HashMap::new();
        for (index, env) in batch.iter().enumerate() {
            let topic = match self.target(env).await {
                Ok(topic) => topic,
                Err(e) => {
                    results[index] = Err(e);
                    continue;
                }
            };
            match message::outgoing(env, self.url.death) {
                Ok(m) => by_topic.entry(topic).or_default().push((index, m)),
                Err(why) => results[index] = Err(SendError::refused(why)),
            }
        }
        for (topic, entries) in by_topic {
            let (indexes, messages): (Vec<usize>, Vec<PubsubMessage>) = entries.into_iter().unzip();
            let single = messages.len() == 1;
            let ids: Vec<&str> = indexes.iter().map(|&i| batch[i].id.as_str()).collect();
            match self.publish(&topic, messages.clone(), &ids).await {
                Ok(ids) if ids.len() == indexes.len() => {}
                Ok(ids) => {
                    let reason = format!(
                        "publishing to {topic}: {} ids came back for {} messages; not confirmed",
                        ids.len(),
                        indexes.len()
                    );
                    for &i in &indexes {
                        results[i] = Err(SendError::retryable(reason.clone()));
                    }
                }
                // One message may spoil the request (too large, ...): send them one by one to find which.
                Err(status) if status.code() == Code::InvalidArgument && !single => {
                    for (i, m) in indexes.into_iter().zip(messages) {
                        results[i] = match self.publish(&topic, vec![m], &[batch[i].id.as_str()]).await {
                            Ok(_) => Ok(()),
                            Err(status) => Err(send_error(&format!("publishing to {topic}"), &status)),
                        };
                    }
                }
                Err(status) => {
                    let error = send_error(&format!("publishing to {topic}"), &status);
                    for &i in &indexes {
                        results[i] = Err(error.clone());
                    }
                }
            }
        }
        results
    }

    async fn close(&self) -> Result<(), AdapterError> {
        let mut publishers = self.publishers.lock().await;
        for (_, mut publisher) in publishers.drain() {
            publisher.shutdown().await;
        }
        Ok(())
    }
}
