//! `redis://host:port/db?stream=orders`: XADD replayed messages to a Redis Stream (`maxlen=N` adds
//! `MAXLEN ~ N`); `--to origin` for a Redis source: to the stream named by each entry's
//! `original_stream` field.
//!
//! Each batch goes as one pipeline of XADDs; a reply with an entry id is the confirmation. When the
//! connection drops mid-batch, some XADDs may have been applied: after reconnecting, the sink looks for
//! the batch's replay ids among the stream's newest entries and resends only what is not there, so a
//! dropped connection does not double entries.

use std::collections::HashSet;

use ::redis::Value;
use async_trait::async_trait;
use tokio::sync::Mutex;

use super::{RedisUrl, entry_list, is_connection_error, outgoing_fields, text};
use crate::core::adapter::AdapterError;
use crate::core::adapter::{Redelivery, SendError, Sink};
use crate::core::backoff::Backoff;
use crate::core::envelope::{Envelope, REPLAY_ID_ATTRIBUTE};

/// How many of a stream's newest entries are searched for replay ids that may have arrived before a drop
/// or a crash.
pub const READ_BACK: usize = 10_000;

/// Sends replayed messages to Redis Streams.
pub struct RedisSink {
    url: RedisUrl,
    /// `None`: each message's origin stream.
    stream: Option<String>,
    connection: Mutex<Option<::redis::aio::MultiplexedConnection>>,
}

impl RedisSink {
    /// Open a destination stream; it must exist (a typo would otherwise create a new stream).
    pub async fn open(url: &str) -> Result<Self, AdapterError> {
        let parsed = RedisUrl::parse(url)?;
        let mut connection = parsed.connect("destination").await?;
        let kind: String = ::redis::cmd("TYPE")
            .arg(&parsed.stream)
            .query_async(&mut connection)
            .await
            .map_err(|e| AdapterError::Broker(parsed.explain(&e, "TYPE")))?;
        match kind.as_str() {
            "stream" => {}
            "none" => {
                return Err(AdapterError::Config(format!(
                    "{}: destination stream `{}` does not exist; create it (XGROUP CREATE {} <group> $ MKSTREAM) or \
                     check the name",
                    parsed.server, parsed.stream, parsed.stream
                )));
            }
            other => {
                return Err(AdapterError::Config(format!(
                    "{}: key `{}` is a {other}, not a stream",
                    parsed.server, parsed.stream
                )));
            }
        }
        Ok(Self {
            stream: Some(parsed.stream.clone()),
            url: parsed,
            connection: Mutex::new(Some(connection)),
        })
    }

    /// `--to origin` for the Redis source `source_url`: each entry to its `original_stream`.
    pub async fn origin(source_url: &str) -> Result<Self, AdapterError> {
        let parsed = RedisUrl::parse(source_url)?;
        let connection = parsed.connect("destination").await?;
        Ok(Self {
            url: parsed,
            stream: None,
            connection: Mutex::new(Some(connection)),
        })
    }

    /// The stream `env` goes to: the destination's, or (origin) the one it came from.
    fn stream_of(&self, env: &Envelope) -> Result<String, String> {
        match (&self.stream, &env.origin.original_queue) {
            (Some(s), _) => Ok(s.clone()),
            (None, Some(s)) if env.origin.system == "redis" => Ok(s.clone()),
            (None, _) => Err(format!(
                "no `{}` field: the stream it came from is unknown; replay it with --to redis://...?stream=NAME",
                self.url.fields.origin
            )),
        }
    }

    async fn connection(&self) -> Result<::redis::aio::MultiplexedConnection, AdapterError> {
        let mut slot = self.connection.lock().await;
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        Ok(slot.insert(self.url.connect("destination").await?).clone())
    }

    /// XADD one stream's messages; `items` are (index in the batch, envelope).
    async fn add(&self, stream: &str, items: &[(usize, &Envelope)], results: &mut [Result<(), SendError>]) {
        let mut pending: Vec<(usize, &Envelope)> = items.to_vec();
        let mut backoff = Backoff::new(self.url.reconnect_for);
        let body_field = self.url.fields.body.first().map_or("payload", String::as_str);
        while !pending.is_empty() {
            let mut pipe = ::redis::pipe();
            pipe.ignore_errors();
            for (_, env) in &pending {
                let cmd = pipe.cmd("XADD").arg(stream);
                if let Some(n) = self.url.maxlen {
                    cmd.arg("MAXLEN").arg("~").arg(n);
                }
                cmd.arg("*");
                for (name, value) in outgoing_fields(env, self.url.death, body_field) {
                    cmd.arg(name).arg(value);
                }
            }
            let reply = match self.connection().await {
                Ok(mut c) => pipe.query_async::<Vec<::redis::RedisResult<Value>>>(&mut c).await,
                Err(e) => Err(::redis::RedisError::from(std::io::Error::other(e.to_string()))),
            };
            match reply {
                Ok(replies) => {
                    for ((index, _), reply) in pending.iter().zip(replies) {
                        results[*index] = match reply {
                            Ok(_) => Ok(()),
                            // A reply error is Redis refusing this entry (wrong type, out of memory...).
                            Err(e) => Err(SendError::refused(self.url.explain(&e, &format!("XADD to `{stream}`")))),
                        };
                    }
                    return;
                }
                Err(e) if is_connection_error(&e) => {
                    *self.connection.lock().await = None;
                    let error = AdapterError::Broker(self.url.explain(&e, &format!("XADD to `{stream}`")));
                    if !backoff.wait(&self.url.describe(), &error).await {
                        for (index, _) in &pending {
                            results[*index] = Err(SendError::retryable(format!("{error}; not confirmed")));
                        }
                        return;
                    }
                    // Some of the batch may have been added before the connection dropped.
                    match self.already_added(stream, &pending).await {
                        Ok(found) => pending.retain(|(index, env)| {
                            let landed = env.attribute(REPLAY_ID_ATTRIBUTE).is_some_and(|id| found.contains(id));
                            if landed {
                                results[*index] = Ok(());
                            }
                            !landed
                        }),
                        Err(e) => tracing::warn!("{}: cannot check what was added: {e}", self.url.describe()),
                    }
                }
                Err(e) => {
                    for (index, _) in &pending {
                        results[*index] = Err(SendError::refused(self.url.explain(&e, &format!("XADD to `{stream}`"))));
                    }
                    return;
                }
            }
        }
    }

    /// Replay ids among the stream's newest entries: at least [`READ_BACK`], more for a large batch.
    async fn already_added(&self, stream: &str, batch: &[(usize, &Envelope)]) -> Result<HashSet<String>, AdapterError> {
        let mut connection = self.connection().await?;
        let reply: Value = ::redis::cmd("XREVRANGE")
            .arg(stream)
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg((batch.len() * 4).max(READ_BACK))
            .query_async(&mut connection)
            .await
            .map_err(|e| AdapterError::Broker(self.url.explain(&e, "XREVRANGE")))?;
        Ok(entry_list(&reply)
            .into_iter()
            .filter_map(|e| {
                e.fields?
                    .into_iter()
                    .find(|(k, _)| k == REPLAY_ID_ATTRIBUTE.as_bytes())
                    .and_then(|(_, v)| text(&Value::BulkString(v)))
            })
            .collect())
    }
}

#[async_trait]
impl Sink for RedisSink {
    fn describe(&self) -> String {
        match &self.stream {
            Some(_) => self.url.describe(),
            None => format!(
                "{} (origin: each entry's {} field)",
                self.url.server, self.url.fields.origin
            ),
        }
    }

    fn max_batch(&self) -> usize {
        200
    }

    fn redelivery(&self) -> Redelivery {
        Redelivery::Checkable
    }

    async fn delivered(&self, batch: &[Envelope]) -> Result<Vec<bool>, AdapterError> {
        let mut found = vec![false; batch.len()];
        let mut by_stream: Vec<(String, Vec<(usize, &Envelope)>)> = Vec::new();
        for (index, env) in batch.iter().enumerate() {
            let Ok(stream) = self.stream_of(env) else { continue };
            match by_stream.iter_mut().find(|(s, _)| *s == stream) {
                Some((_, items)) => items.push((index, env)),
                None => by_stream.push((stream, vec![(index, env)])),
            }
        }
        for (stream, items) in &by_stream {
            let there = self.already_added(stream, items).await?;
            for (index, env) in items {
                found[*index] = env.attribute(REPLAY_ID_ATTRIBUTE).is_some_and(|id| there.contains(id));
            }
        }
        Ok(found)
    }

    async fn send(&self, batch: &[Envelope]) -> Vec<Result<(), SendError>> {
        let mut results: Vec<Result<(), SendError>> = vec![Err(SendError::retryable("not sent")); batch.len()];
        let mut by_stream: Vec<(String, Vec<(usize, &Envelope)>)> = Vec::new();
        for (index, env) in batch.iter().enumerate() {
            let stream = match self.stream_of(env) {
                Ok(stream) => stream,
                Err(e) => {
                    results[index] = Err(SendError::refused(e));
                    continue;
                }
            };
            match by_stream.iter_mut().find(|(s, _)| *s == stream) {
                Some((_, items)) => items.push((index, env)),
                None => by_stream.push((stream, vec![(index, env)])),
            }
        }
        for (stream, items) in &by_stream {
            self.add(stream, items, &mut results).await;
        }
        results
    }

    async fn close(&self) -> Result<(), AdapterError> {
        Ok(())
    }
}
