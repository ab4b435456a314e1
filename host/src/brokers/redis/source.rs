//! `redis://host:port/db?stream=orders:dlq`: a Redis Stream used as a dead-letter queue, read with a
//! consumer group (`group=redrive`, created from the start of the stream when absent) so several
//! workers can share it, each under its own consumer name (`consumer=`, default `redrive`).
//!
//! A pass takes the entries up to the stream's last id when it starts: first the ones already pending
//! for this consumer (left by an earlier pass: skipped, failed, interrupted), then new ones
//! (`XREADGROUP ... >`), then, with `claim=10m`, entries pending for *other* consumers longer than that
//! (XAUTOCLAIM: workers that died). Entries added later wait for the next pass.
//!
//! - **ack**: XDEL then XACK (`ack=delete`, default; a kill between the two leaves a pending entry without
//!   fields, acknowledged by the next pass) or XACK only (`ack=ack`).
//! - **release**: nothing; the entry stays pending for this consumer, and the next pass with the same
//!   consumer name reads it again.
//! - **dropped connection**: reconnect with backoff, then read this consumer's pending entries again from
//!   the start; entries already handed to the pipeline in this pass are recognised and not yielded twice.
//!
//! A consumer name is used by one run at a time: the source holds a small expiring key
//! (`redrive:consumer:<stream>:<group>:<consumer>`) while it runs and refuses to start when another run
//! holds it.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use ::redis::Value;
use async_trait::async_trait;
use tokio::sync::Mutex;
use tokio::task::JoinHandle;

use super::arrivals::RedisArrivals;
use super::{self as redis, AckMode, Entry, RedisUrl, entries_of_read, entry_list, id_le, is_connection_error, text};
use crate::core::adapter::{AckToken, Acker, AdapterError, Arrivals, Delivery, PassSize, Received, Source, SourceMode};
use crate::core::backoff::Backoff;
use crate::core::lock;

/// How long the consumer-name key lives without a refresh.
const LOCK_TTL: Duration = Duration::from_secs(30);

/// Replace the consumer key's holder only if it is still the one that was read: SET key ARGV[2] EX ARGV[3]
/// when GET key == ARGV[1].
const TAKE_OVER_SCRIPT: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then \
     redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3]) return 1 else return 0 end";

/// Reads one pass over a Redis Stream.
pub struct RedisSource {
    link: Arc<Link>,
    identity: String,
    pass_size: PassSize,
    /// The stream's last id when the pass started: later entries belong to the next pass.
    boundary: String,
    phase: Phase,
    cursor: String,
    buffer: VecDeque<Received>,
    /// Entries handed to the pipeline in this pass.
    seen: HashSet<String>,
    seq: u64,
    /// Entries read that were added after the pass started (left pending for the next pass).
    beyond: u64,
    lock_key: String,
    lock_refresh: Option<JoinHandle<()>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// This consumer's pending entries, from `cursor`.
    Pending,
    /// New entries (`>`).
    New,
    /// Entries idle for other consumers (XAUTOCLAIM from `cursor`).
    Claim,
    Done,
}

/// The connection, shared with the acker, re-opened after a drop.
struct Link {
    url: RedisUrl,
    connection: Mutex<Option<::redis::aio::MultiplexedConnection>>,
    /// Set once the source is open: from then on a new connection first checks that the stream and its
    /// group are still there (a Redis restarted without persistence comes back empty, and XACK / XDEL on a
    /// missing stream answer 0 without an error).
    opened: std::sync::atomic::AtomicBool,
}

impl Link {
    /// Run a command, reconnecting and retrying on a dropped connection for up to `reconnect=`.
    /// `retried` tells the caller a connection was lost on the way (a read may have been delivered).
    async fn query(&self, cmd: &::redis::Cmd, what: &str, retried: &mut bool) -> Result<Value, AdapterError> {
        let mut backoff = Backoff::new(self.url.reconnect_for);
        loop {
            let mut connection = {
                let mut slot = self.connection.lock().await;
                match slot.as_ref() {
                    Some(c) => c.clone(),
                    None => match self.url.connect("source").await {
                        Ok(mut c) => {
                            if self.opened.load(std::sync::atomic::Ordering::SeqCst) {
                                self.check_still_there(&mut c).await?;
                            }
                            slot.insert(c).clone()
                        }
                        Err(e) if backoff.wait(&self.url.describe(), &e).await => continue,
                        Err(e) => return Err(self.gave_up(&e.to_string())),
                    },
                }
            };
            match cmd.query_async::<Value>(&mut connection).await {
                Ok(v) => return Ok(v),
                Err(e) if is_connection_error(&e) => {
                    *retried = true;
                    *self.connection.lock().await = None;
                    let error = AdapterError::Broker(self.url.explain(&e, what));
                    if !backoff.wait(&self.url.describe(), &error).await {
                        return Err(self.gave_up(&error.to_string()));
                    }
                }
                Err(e) => return Err(AdapterError::Broker(self.url.explain(&e, what))),
            }
        }
    }

    /// On a new connection: the stream and the group must still be there, or Redis lost them.
    async fn check_still_there(
        &self,
        connection: &mut ::redis::aio::MultiplexedConnection,
    ) -> Result<(), AdapterError> {
        let url = &self.url;
        let groups = ::redis::cmd("XINFO")
            .arg("GROUPS")
            .arg(&url.stream)
            .query_async::<Value>(connection)
            .await;
        let there = match &groups {
            Ok(Value::Array(groups)) => groups
                .iter()
                .any(|g| info_field(g, "name").and_then(text).as_deref() == Some(url.group.as_str())),
            Ok(_) => false,
            Err(e) if is_connection_error(e) => return Ok(()), // the next command tells
            Err(_) => false,                                   // ERR no such key
        };
        if there {
            Ok(())
        } else {
            Err(AdapterError::Gone(url.lost("after reconnecting")))
        }
    }

    fn gave_up(&self, why: &str) -> AdapterError {
        AdapterError::Broker(format!(
            "{why}; gave up after {}. Nothing is lost: unacknowledged entries stay pending for consumer `{}`, and the \
             run journal lets the same command resume",
            humantime::format_duration(self.url.reconnect_for),
            self.url.consumer
        ))
    }
}

impl RedisSource {
    /// Connect, check the stream, create the group if absent, and take the consumer name.
    pub async fn open(url: &str, _mode: SourceMode) -> Result<Self, AdapterError> {
        let parsed = RedisUrl::parse(url)?;
        let link = Arc::new(Link {
            connection: Mutex::new(Some(parsed.connect("source").await?)),
            url: parsed,
            opened: std::sync::atomic::AtomicBool::new(false),
        });
        let url = &link.url;
        let mut lost = false;
        let kind = link
            .query(::redis::cmd("TYPE").arg(&url.stream), "TYPE", &mut lost)
            .await?;
        match text(&kind).as_deref() {
            Some("stream") => {}
            Some("none") => {
                return Err(AdapterError::Config(format!(
                    "{}: stream `{}` does not exist (check the name and the database number)",
                    url.server, url.stream
                )));
            }
            other => {
                return Err(AdapterError::Config(format!(
                    "{}: key `{}` is a {}, not a stream",
                    url.server,
                    url.stream,
                    other.unwrap_or("?")
                )));
            }
        }
        let mut create = ::redis::cmd("XGROUP");
        create.arg("CREATE").arg(&url.stream).arg(&url.group).arg("0");
        match link.query(&create, "XGROUP CREATE", &mut lost).await {
            Ok(_) => tracing::info!("{}: created consumer group `{}`", url.describe(), url.group),
            Err(e) if e.to_string().contains("BUSYGROUP") => {}
            Err(e) => return Err(e),
        }
        let lock_key = format!("redrive:consumer:{}:{}:{}", url.stream, url.group, url.consumer);
        let owner = lock::holder_text();
        let mut take = ::redis::cmd("SET");
        take.arg(&lock_key)
            .arg(&owner)
            .arg("NX")
            .arg("EX")
            .arg(LOCK_TTL.as_secs());
        if link.query(&take, "SET NX", &mut lost).await? == Value::Nil {
            let holder = link.query(::redis::cmd("GET").arg(&lock_key), "GET", &mut lost).await?;
            let holder = text(&holder).unwrap_or_else(|| "unknown".into());
            // A run of this host that died (kill -9) leaves its claim until the key expires: take it over now.
            let taken_over = lock::holder_is_gone(&holder) && {
                let mut swap = ::redis::cmd("EVAL");
                swap.arg(TAKE_OVER_SCRIPT)
                    .arg(1)
                    .arg(&lock_key)
                    .arg(&holder)
                    .arg(&owner)
                    .arg(LOCK_TTL.as_secs());
                link.query(&swap, "taking over a dead run's consumer key", &mut lost)
                    .await?
                    == Value::Int(1)
            };
            if !taken_over {
                return Err(AdapterError::Config(format!(
                    "{}: consumer `{}` of group `{}` is in use by another redrive run ({holder}); give each worker its \
                     own consumer=NAME, or wait until that run ends (a killed run's claim expires within {} s; key \
                     {lock_key})",
                    url.describe(),
                    url.consumer,
                    url.group,
                    LOCK_TTL.as_secs()
                )));
            }
            tracing::info!(
                "{}: took over the consumer key of a run that is gone ({holder})",
                url.describe()
            );
        }
        let info = link
            .query(
                ::redis::cmd("XINFO").arg("STREAM").arg(&url.stream),
                "XINFO STREAM",
                &mut lost,
            )
            .await?;
        let (length, boundary) = stream_info(&info);
        link.opened.store(true, std::sync::atomic::Ordering::SeqCst);
        let pass_size = PassSize::default();
        let _ = pass_size.set(length);
        let refresh = {
            let link = link.clone();
            let (key, owner) = (lock_key.clone(), owner.clone());
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(LOCK_TTL / 3).await;
                    let mut keep = ::redis::cmd("SET");
                    keep.arg(&key).arg(&owner).arg("XX").arg("EX").arg(LOCK_TTL.as_secs());
                    let _ = link.query(&keep, "refreshing the consumer key", &mut false).await;
                }
            })
        };
        Ok(Self {
            identity: format!("{}/{}", link.url.describe(), link.url.group),
            link,
            pass_size,
            boundary,
            phase: Phase::Pending,
            cursor: "0".into(),
            buffer: VecDeque::new(),
            seen: HashSet::new(),
            seq: 0,
            beyond: 0,
            lock_key,
            lock_refresh: Some(refresh),
        })
    }

    /// Read the next batch for the current phase into the buffer; moves through the phases.
    async fn fill(&mut self) -> Result<(), AdapterError> {
        let link = self.link.clone();
        let url = &link.url;
        let mut lost = false;
        let entries = match self.phase {
            Phase::Pending | Phase::New => {
                let start = if self.phase == Phase::Pending {
                    self.cursor.as_str()
                } else {
                    ">"
                };
                let mut read = ::redis::cmd("XREADGROUP");
                read.arg("GROUP")
                    .arg(&url.group)
                    .arg(&url.consumer)
                    .arg("COUNT")
                    .arg(url.count)
                    .arg("STREAMS")
                    .arg(&url.stream)
                    .arg(start);
                let reply = self.link.query(&read, "XREADGROUP", &mut lost).await?;
                entries_of_read(&reply)
            }
            Phase::Claim => {
                let idle = url.claim.unwrap_or_default().as_millis() as u64;
                let mut claim = ::redis::cmd("XAUTOCLAIM");
                claim
                    .arg(&url.stream)
                    .arg(&url.group)
                    .arg(&url.consumer)
                    .arg(idle)
                    .arg(&self.cursor)
                    .arg("COUNT")
                    .arg(url.count);
                let reply = self.link.query(&claim, "XAUTOCLAIM", &mut lost).await?;
                let Value::Array(parts) = reply else {
                    return Err(AdapterError::Broker(format!(
                        "{}: unexpected XAUTOCLAIM reply",
                        url.server
                    )));
                };
                self.cursor = parts.first().and_then(text).unwrap_or_else(|| "0-0".into());
                let entries = parts.get(1).map(entry_list).unwrap_or_default();
                if self.cursor == "0-0" {
                    self.phase = Phase::Done;
                }
                entries
            }
            Phase::Done => return Ok(()),
        };
        if lost {
            // A read may have been delivered to this consumer and lost with the connection: read the
            // consumer's pending entries again from the start (what was yielded already is skipped).
            self.phase = Phase::Pending;
            self.cursor = "0".into();
        }
        let was = self.phase;
        if entries.is_empty() && !lost {
            self.phase = match self.phase {
                Phase::Pending => Phase::New,
                Phase::New if url.claim.is_some() => {
                    self.cursor = "0-0".into();
                    Phase::Claim
                }
                _ => Phase::Done,
            };
            return Ok(());
        }
        let mut deleted = Vec::new();
        for entry in entries {
            if was == Phase::Pending {
                self.cursor.clone_from(&entry.id);
            }
            if !id_le(&entry.id, &self.boundary) {
                // Added after the pass began: it stays pending for this consumer, for the next pass.
                self.beyond += 1;
                if was == Phase::New {
                    self.phase = if url.claim.is_some() { Phase::Claim } else { Phase::Done };
                    self.cursor = "0-0".into();
                }
                continue;
            }
            if !self.seen.insert(entry.id.clone()) {
                continue;
            }
            if entry.fields.is_none() {
                deleted.push(entry.id.clone()); // deleted while pending: nothing to replay
                continue;
            }
            let received = self.received(entry);
            self.buffer.push_back(received);
        }
        if !deleted.is_empty() {
            let mut ack = ::redis::cmd("XACK");
            ack.arg(&url.stream).arg(&url.group).arg(&deleted);
            self.link.query(&ack, "XACK", &mut false).await?;
        }
        Ok(())
    }

    fn received(&mut self, entry: Entry) -> Received {
        self.seq += 1;
        let token = AckToken {
            seq: self.seq,
            key: Some(entry.id.clone()),
        };
        match redis::envelope(&entry, &self.link.url.stream, &self.link.url.fields) {
            Ok(envelope) => Received::Message(Delivery { envelope, token }),
            Err(problem) => Received::Malformed { token, problem },
        }
    }
}

/// (length, last-generated-id) from XINFO STREAM.
/// The value of field `name` in an XINFO reply (RESP2: a flat field list; RESP3: a map).
fn info_field<'a>(info: &'a Value, name: &str) -> Option<&'a Value> {
    match info {
        Value::Array(flat) => flat
            .chunks(2)
            .find(|kv| kv.first().and_then(text).as_deref() == Some(name))
            .and_then(|kv| kv.get(1)),
        Value::Map(pairs) => pairs
            .iter()
            .find(|(k, _)| text(k).as_deref() == Some(name))
            .map(|(_, v)| v),
        _ => None,
    }
}

fn stream_info(info: &Value) -> (u64, String) {
    let get = |name: &str| info_field(info, name);
    let length = match get("length") {
        Some(Value::Int(n)) => u64::try_from(*n).unwrap_or(0),
        _ => 0,
    };
    let last = get("last-generated-id").and_then(text).unwrap_or_else(|| "0-0".into());
    (length, last)
}

#[async_trait]
impl Source for RedisSource {
    fn identity(&self) -> &str {
        &self.identity
    }

    fn pass_size(&self) -> PassSize {
        self.pass_size.clone()
    }

    async fn next(&mut self) -> Result<Option<Received>, AdapterError> {
        loop {
            if let Some(r) = self.buffer.pop_front() {
                return Ok(Some(r));
            }
            if self.phase == Phase::Done {
                return Ok(None);
            }
            self.fill().await?;
        }
    }

    fn acker(&self) -> Arc<dyn Acker> {
        Arc::new(RedisAcker {
            link: self.link.clone(),
        })
    }

    fn arrivals(&self) -> Option<Box<dyn Arrivals>> {
        Some(Box::new(RedisArrivals::new(
            self.link.url.clone(),
            self.boundary.clone(),
        )))
    }

    async fn finish(&mut self) -> Result<Vec<String>, AdapterError> {
        if let Some(refresh) = self.lock_refresh.take() {
            refresh.abort();
        }
        let url = &self.link.url;
        let mut notes = Vec::new();
        let _ = self
            .link
            .query(::redis::cmd("DEL").arg(&self.lock_key), "DEL", &mut false)
            .await;
        let mut pending = ::redis::cmd("XPENDING");
        pending
            .arg(&url.stream)
            .arg(&url.group)
            .arg("-")
            .arg("+")
            .arg(1_000_000)
            .arg(&url.consumer);
        if let Ok(Value::Array(items)) = self.link.query(&pending, "XPENDING", &mut false).await
            && !items.is_empty()
        {
            notes.push(format!(
                "{} entries stay pending for consumer `{}` (skipped, failed, parked or not done); the next run with \
                 consumer={} reads them again",
                items.len(),
                url.consumer,
                url.consumer
            ));
        }
        if self.beyond > 0 {
            notes.push(format!(
                "{} entries were added after the pass began; they wait for the next pass",
                self.beyond
            ));
        }
        Ok(notes)
    }
}

/// XACK (+ XDEL) for a [`RedisSource`].
struct RedisAcker {
    link: Arc<Link>,
}

#[async_trait]
impl Acker for RedisAcker {
    async fn ack(&self, tokens: &[AckToken]) -> Result<(), AdapterError> {
        if tokens.is_empty() {
            return Ok(());
        }
        let url = &self.link.url;
        let ids: Vec<&str> = tokens.iter().filter_map(|t| t.key.as_deref()).collect();
        // XDEL before XACK: a run killed between the two leaves a pending entry without fields, which the
        // next pass acknowledges. The other order would leave an entry in the stream that no consumer of
        // the group is ever given again.
        if url.ack == AckMode::Delete {
            let mut del = ::redis::cmd("XDEL");
            del.arg(&url.stream).arg(&ids);
            self.link.query(&del, "XDEL", &mut false).await?;
        }
        let mut ack = ::redis::cmd("XACK");
        ack.arg(&url.stream).arg(&url.group).arg(&ids);
        self.link.query(&ack, "XACK", &mut false).await?;
        Ok(())
    }

    async fn release(&self, _tokens: &[AckToken]) -> Result<(), AdapterError> {
        Ok(()) // the entry stays pending for this consumer
    }
}
