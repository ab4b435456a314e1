//! `kafka://host:9092?topic=orders.DLT&group=redrive`: one pass over a dead-letter topic.
//!
//! - **The pass**: every partition of the topic assigned to this worker (the group splits them between
//!   workers), from the group's committed offset (the beginning when it never committed; `from=earliest` or
//!   `from=offset:N` first moves the group there) up to the end of the partition when the pass reached it.
//!   A partition's end is its high watermark when it was assigned, or the end the consumer reached (a record
//!   written after the pass started, at or past that watermark, is left for the next pass).
//! - **ack** moves the group's committed offset, per partition, up to the lowest message not yet settled:
//!   never past a message that stays (skipped, failed, parked), so the next run of the group sees those
//!   again, and its journal acks the settled ones after them without forwarding them again.
//! - **release** holds the partition's commit at that message.
//! - **Rebalance**: before a partition is given to another worker, this one waits (up to 30 s) until the
//!   messages it handed out of it are settled and commits them; messages read but not yet handed out are
//!   dropped, and the new owner reads them.
//! - **The broker away**: librdkafka reconnects; after `reconnect=` (default 60 s) without a broker the
//!   pass stops with an error, and nothing it did not settle was committed.
//! - **`--since` / `--until`**: the pass starts at the first record of the window and stops before the first
//!   record past it, on each partition ([`super::window`]); the records before the window are not read, and
//!   the first of them holds the commit where it is.
//! - `redrive plan` (peek) reads the partitions from the committed offsets without joining the group and
//!   never commits.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tokio::sync::mpsc;

use super::acker::KafkaAcker;
use super::arrivals::{self, KafkaArrivals};
use super::dlq_offsets::DlqGroup;
use super::offsets::Offsets;
use super::reader::{Event, read_loop};
use super::record::{record_id, to_envelope};
use super::url::{KafkaUrl, StartAt};
use super::window::{self, PartitionWindow};
use super::{explain, metadata_partitions};
use crate::core::TimeWindow;
use crate::core::adapter::{AckToken, Acker, AdapterError, Arrivals, Delivery, PassSize, Received, Source, SourceMode};

/// How long a revoked partition's handed-out messages may take to settle before it is let go.
const REVOKE_WAIT: Duration = Duration::from_secs(30);
/// Most messages handed to the pipeline and not yet settled, until the run says otherwise
/// ([`Source::set_open_window`]: two seconds of its rate, or four times its in-flight window). A partition
/// given to another worker waits for its open messages (a rate-limited run settles them slowly), and the whole
/// group waits with it: the window keeps that wait short.
const OPEN_WINDOW: usize = 256;

/// Reads one pass over a Kafka topic.
pub struct KafkaSource {
    identity: String,
    pass_size: PassSize,
    rx: mpsc::Receiver<Event>,
    consumer: Arc<BaseConsumer<PassContext>>,
    acker: Arc<KafkaAcker>,
    thread: Option<std::thread::JoinHandle<()>>,
    seq: u64,
    mode: SourceMode,
    /// Most messages handed out and not settled ([`OPEN_WINDOW`] until the run sets it).
    open_window: usize,
    /// Each partition's end when the pass started: where the re-poison breaker watches from.
    watch_from: Vec<(i32, Offset)>,
}

/// State shared by the consumer thread, its rebalance callbacks, the source and the acker.
pub(super) struct Shared {
    pub(super) url: KafkaUrl,
    pub(super) mode: SourceMode,
    pub(super) state: Mutex<State>,
    /// Signalled when messages are settled (a revocation waits on it).
    pub(super) settled: Condvar,
    /// Set by `finish`: stop reading, do not wait in revocations.
    pub(super) closing: AtomicBool,
    pass_size: PassSize,
    /// `--since` / `--until`: where each partition's pass starts and stops.
    window: TimeWindow,
    /// One commit of the group's offsets at a time (the acker's, or a transaction's with
    /// `dlq_offsets=in-transaction`), so positions only move forward.
    pub(super) commits: tokio::sync::Mutex<()>,
}

#[derive(Default)]
pub(super) struct State {
    /// Partitions this worker owns (assigned, not being revoked).
    pub(super) owned: BTreeSet<i32>,
    /// Per partition: where the pass ends, and whether it got there.
    pub(super) pass: BTreeMap<i32, PartitionPass>,
    /// Set once the first assignment arrived.
    pub(super) assigned: bool,
    /// Between giving partitions up and being assigned again (a rebalance).
    pub(super) rebalancing: bool,
    /// The pass has ended: partitions assigned later are left for the next pass.
    pub(super) ended: bool,
    /// Handed-out messages, for commits.
    pub(super) offsets: Offsets,
    /// When the broker was last found unreachable, until something worked again.
    pub(super) down_since: Option<(Instant, String)>,
    /// A fatal error from the client.
    pub(super) fatal: Option<String>,
}

#[derive(Clone, Copy, Debug)]
pub(super) struct PartitionPass {
    /// The high watermark when the partition was assigned.
    pub(super) end: i64,
    pub(super) done: bool,
    /// Where `--since` / `--until` start and stop the pass, and what it passed over.
    pub(super) window: PartitionWindow,
}

pub(super) fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The consumer's context: rebalance and error callbacks.
pub(super) struct PassContext {
    shared: Arc<Shared>,
}

impl ClientContext for PassContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, line: &str) {
        match level {
            RDKafkaLogLevel::Debug => tracing::debug!(target: "librdkafka", "{facility} {line}"),
            RDKafkaLogLevel::Info | RDKafkaLogLevel::Notice => {
                tracing::info!(target: "librdkafka", "{facility} {line}")
            }
            _ => tracing::warn!(target: "librdkafka", "{facility} {line}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        let mut state = lock(&self.shared.state);
        match error.rdkafka_error_code() {
            // The end of a partition is news, not trouble: the read loop sees it too.
            Some(RDKafkaErrorCode::PartitionEOF) => {}
            Some(RDKafkaErrorCode::Fatal) => state.fatal = Some(reason.to_owned()),
            _ => {
                if state.down_since.is_none() {
                    state.down_since = Some((Instant::now(), reason.to_owned()));
                }
                tracing::warn!("{}: {reason}", self.shared.url.describe());
            }
        }
    }
}

impl ConsumerContext for PassContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Revoke(list) = rebalance else {
            return;
        };
        let topic = &self.shared.url.topic;
        let revoked: Vec<i32> = list
            .elements()
            .iter()
            .filter(|e| e.topic() == topic)
            .map(|e| e.partition())
            .collect();
        let mut state = lock(&self.shared.state);
        state.rebalancing = true;
        for p in &revoked {
            state.owned.remove(p);
        }
        let deadline = Instant::now() + REVOKE_WAIT;
        while state.offsets.open_in(&revoked) > 0
            && !self.shared.closing.load(Ordering::SeqCst)
            && Instant::now() < deadline
        {
            state = self
                .shared
                .settled
                .wait_timeout(state, Duration::from_millis(100))
                .map(|(s, _)| s)
                .unwrap_or_else(|e| e.into_inner().0);
        }
        let unsettled = state.offsets.open_in(&revoked);
        let commits: Vec<(i32, i64)> = state
            .offsets
            .to_commit()
            .into_iter()
            .filter(|(p, _)| revoked.contains(p))
            .collect();
        for p in &revoked {
            state.offsets.forget(*p);
            state.pass.remove(p);
        }
        drop(state);
        if self.shared.mode == SourceMode::Consume
            && !commits.is_empty()
            && let Err(e) = commit(consumer, topic, &commits)
        {
            tracing::warn!("{}: committing before a rebalance: {e}", self.shared.url.describe());
        }
        if unsettled > 0 {
            tracing::warn!(
                "{}: partitions {revoked:?} went to another worker with {unsettled} messages not yet settled; \
                 that worker reads them again (the ones replayed meanwhile may be replayed twice, with the same \
                 replay id)",
                self.shared.url.describe()
            );
        } else {
            tracing::info!(
                "{}: partitions {revoked:?} went to another worker",
                self.shared.url.describe()
            );
        }
    }

    fn post_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(list) = rebalance {
            let partitions: Vec<i32> = list.elements().iter().map(|e| e.partition()).collect();
            self.assigned(consumer, &partitions);
        }
    }
}

impl PassContext {
    /// Partitions were assigned: note where each one's pass ends.
    fn assigned(&self, consumer: &BaseConsumer<Self>, partitions: &[i32]) {
        let topic = &self.shared.url.topic;
        let mut ends = Vec::with_capacity(partitions.len());
        for p in partitions {
            let end = consumer
                .fetch_watermarks(topic, *p, Duration::from_secs(10))
                .map(|(_, high)| high)
                .unwrap_or(0);
            ends.push((*p, end));
        }
        let window = self.shared.window;
        let bounds = match window.is_open() {
            true => Vec::new(),
            false => window::bounds(consumer, topic, &ends, window).unwrap_or_else(|e| {
                tracing::warn!(
                    "{}: could not look up offsets by time ({}): reading from the committed offsets; \
                     --since/--until still select each message",
                    self.shared.url.describe(),
                    explain(&e, &self.shared.url)
                );
                Vec::new()
            }),
        };
        let bounds_of = |p: i32| {
            bounds
                .iter()
                .find(|(q, _)| *q == p)
                .map(|(_, b)| *b)
                .unwrap_or_default()
        };
        let mut size = 0u64;
        if self.shared.pass_size.get().is_none() {
            let mut list = TopicPartitionList::new();
            for p in partitions {
                list.add_partition(topic, *p);
            }
            if let Ok(committed) = consumer.committed_offsets(list, Duration::from_secs(10)) {
                for (e, (p, end)) in committed.elements().iter().zip(&ends) {
                    let start = match e.offset() {
                        Offset::Offset(n) => n,
                        _ => 0,
                    };
                    let b = bounds_of(*p);
                    let start = b.first.map_or(start, |first| start.max(first));
                    let end = b.stop.map_or(*end, |stop| stop.min(*end));
                    size += (end - start).max(0) as u64;
                }
            }
        }
        let mut state = lock(&self.shared.state);
        state.rebalancing = false;
        let ended = state.ended;
        for (p, end) in ends {
            state.owned.insert(p);
            let window = PartitionWindow::new(window, bounds_of(p));
            state.pass.insert(
                p,
                PartitionPass {
                    end,
                    done: ended || window.empty_before(end),
                    window,
                },
            );
        }
        if !state.assigned {
            state.assigned = true;
            let _ = self.shared.pass_size.set(size);
        }
        tracing::info!("{}: reading partitions {partitions:?}", self.shared.url.describe());
    }
}

/// Commit positions of the topic's partitions.
pub(super) fn commit<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
    positions: &[(i32, i64)],
) -> Result<(), KafkaError> {
    let mut list = TopicPartitionList::new();
    for (p, position) in positions {
        list.add_partition_offset(topic, *p, Offset::Offset(*position))?;
    }
    consumer.commit(&list, CommitMode::Sync)
}

impl KafkaSource {
    /// The consumer group, for an exactly-once destination on this cluster that commits the group's offsets
    /// in its transactions; `None` when the run only peeks (`plan`, `--dry-run`).
    pub fn dlq_group(&self) -> Option<DlqGroup> {
        (self.mode == SourceMode::Consume).then(|| DlqGroup::new(self.consumer.clone(), self.acker.shared_arc()))
    }

    /// Connect, check the topic, move the group when `from=` asks, and start reading.
    pub async fn open(url: &str, mode: SourceMode, window: TimeWindow) -> Result<Self, AdapterError> {
        let url = KafkaUrl::parse(url)?;
        let identity = format!("{}?topic={}&group={}", url.server, url.topic, url.group);
        let pass_size = PassSize::default();
        let shared = Arc::new(Shared {
            url: url.clone(),
            mode,
            state: Mutex::new(State::default()),
            settled: Condvar::new(),
            closing: AtomicBool::new(false),
            pass_size: pass_size.clone(),
            window,
            commits: tokio::sync::Mutex::new(()),
        });
        let config = url.client_config(&[
            ("group.id", &url.group),
            ("enable.auto.commit", "false"),
            ("enable.auto.offset.store", "false"),
            ("enable.partition.eof", "true"),
            ("auto.offset.reset", "earliest"),
            // A group joins in ~3 s instead of ~25 s, and a dead worker's partitions move on as quickly.
            ("session.timeout.ms", "6000"),
            // Read ahead at most 16 MiB (RSS stays under 100 MiB). Once that much waits, librdkafka pauses the
            // partition's fetches for fetch.queue.backoff.ms, 1 s by default: the pipeline drains 16 MiB in well
            // under that and then waits for the broker. 10 ms measured 8.4 s -> 6.6-7.0 s for 100k records to a
            // file (BENCHMARKS.md, Kafka).
            ("queued.max.messages.kbytes", "16384"),
            ("fetch.queue.backoff.ms", "10"),
        ]);
        let context = PassContext { shared: shared.clone() };
        let consumer: BaseConsumer<PassContext> = config
            .create_with_context(context)
            .map_err(|e| AdapterError::Config(format!("{}: {}", url.describe(), explain(&e, &url))))?;
        let consumer = Arc::new(consumer);
        let partitions = {
            let consumer = consumer.clone();
            let url = url.clone();
            tokio::task::spawn_blocking(move || metadata_partitions(consumer.client(), &url))
                .await
                .map_err(|e| AdapterError::Broker(e.to_string()))??
        };
        let setup = {
            let consumer = consumer.clone();
            let url = url.clone();
            tokio::task::spawn_blocking(move || {
                start(&consumer, &url, mode, &partitions)?;
                // Where the re-poison breaker starts watching (a plan does not watch).
                Ok::<_, AdapterError>(match mode {
                    SourceMode::Consume => arrivals::ends_now(&consumer, &url, &partitions),
                    SourceMode::Peek => Vec::new(),
                })
            })
            .await
            .map_err(|e| AdapterError::Broker(e.to_string()))?
        };
        let watch_from = setup?;
        let (tx, rx) = mpsc::channel(256);
        let thread = {
            let consumer = consumer.clone();
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("kafka-source".into())
                .spawn(move || read_loop(&consumer, &shared, &tx))
                .map_err(|e| AdapterError::io("starting the Kafka consumer thread", e))?
        };
        let acker = Arc::new(KafkaAcker::new(consumer.clone(), shared));
        Ok(Self {
            identity,
            pass_size,
            rx,
            consumer,
            acker,
            thread: Some(thread),
            seq: 0,
            mode,
            open_window: OPEN_WINDOW,
            watch_from,
        })
    }
}

/// Move the group to `from=`, then subscribe (a replay) or assign every partition (a plan).
fn start(
    consumer: &BaseConsumer<PassContext>,
    url: &KafkaUrl,
    mode: SourceMode,
    partitions: &[i32],
) -> Result<(), AdapterError> {
    let topic = &url.topic;
    let position = |p: i32| -> Result<Option<i64>, AdapterError> {
        Ok(match url.from {
            StartAt::Committed => None,
            StartAt::Offset(n) => Some(n),
            StartAt::Earliest => Some(
                consumer
                    .fetch_watermarks(topic, p, Duration::from_secs(10))
                    .map_err(|e| AdapterError::Broker(format!("{}: {}", url.describe(), explain(&e, url))))?
                    .0,
            ),
        })
    };
    let mut list = TopicPartitionList::new();
    for p in partitions {
        let offset = position(*p)?.map_or(Offset::Stored, Offset::Offset);
        list.add_partition_offset(topic, *p, offset)
            .map_err(|e| AdapterError::Config(e.to_string()))?;
    }
    match mode {
        SourceMode::Peek => {
            consumer
                .assign(&list)
                .map_err(|e| AdapterError::Broker(format!("{}: {}", url.describe(), explain(&e, url))))?;
            consumer.context().assigned(consumer, partitions);
        }
        SourceMode::Consume => {
            if url.from != StartAt::Committed {
                consumer.commit(&list, CommitMode::Sync).map_err(|e| {
                    AdapterError::Broker(format!(
                        "{}: could not move group `{}` to from=...: {}; a group with running members cannot be \
                         moved: stop them first",
                        url.describe(),
                        url.group,
                        explain(&e, url)
                    ))
                })?;
            }
            consumer
                .subscribe(&[topic])
                .map_err(|e| AdapterError::Broker(format!("{}: {}", url.describe(), explain(&e, url))))?;
        }
    }
    Ok(())
}

#[async_trait]
impl Source for KafkaSource {
    fn identity(&self) -> &str {
        &self.identity
    }

    fn pass_size(&self) -> PassSize {
        self.pass_size.clone()
    }

    fn set_open_window(&mut self, messages: usize) {
        self.open_window = messages.max(1);
    }

    async fn next(&mut self) -> Result<Option<Received>, AdapterError> {
        loop {
            let record = match self.rx.recv().await {
                None | Some(Event::End) => return Ok(None),
                Some(Event::Failed(e)) => return Err(e),
                Some(Event::Record(record)) => record,
            };
            while self.mode == SourceMode::Consume
                && lock(&self.acker.shared().state).offsets.open_total() >= self.open_window
            {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            {
                let mut state = lock(&self.acker.shared().state);
                if !state.owned.contains(&record.partition) {
                    // Revoked since it was read: its new owner reads it.
                    continue;
                }
                state.offsets.partition(record.partition).handed_out(record.offset);
            }
            self.seq += 1;
            let key = record_id(record.partition, record.offset);
            return Ok(Some(Received::Message(Delivery {
                envelope: to_envelope(record),
                token: AckToken {
                    seq: self.seq,
                    key: Some(key),
                },
            })));
        }
    }

    fn acker(&self) -> Arc<dyn Acker> {
        self.acker.clone()
    }

    fn arrivals(&self) -> Option<Box<dyn Arrivals>> {
        (self.mode == SourceMode::Consume).then(|| {
            Box::new(KafkaArrivals::new(
                self.acker.shared().url.clone(),
                self.watch_from.clone(),
            )) as Box<dyn Arrivals>
        })
    }

    async fn finish(&mut self) -> Result<Vec<String>, AdapterError> {
        let mut lines = Vec::new();
        let passed_over: u64 = lock(&self.acker.shared().state)
            .pass
            .values()
            .map(|p| p.window.passed_over())
            .sum();
        if passed_over > 0 {
            lines.push(format!(
                "{passed_over} records older than --since were passed over (not read, or not handed on); they \
                 stay in the DLQ: the group's offsets were not moved past them"
            ));
        }
        if self.mode == SourceMode::Consume {
            let mut attempt = 0;
            while let Err(e) = self.acker.commit_settled().await {
                attempt += 1;
                if attempt == 5 {
                    lines.push(format!("offsets not committed: {e}"));
                    break;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
        self.acker.shared().closing.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let consumer = self.consumer.clone();
            let _ = tokio::task::spawn_blocking(move || {
                let _ = thread.join();
                consumer.unsubscribe();
            })
            .await;
        }
        Ok(lines)
    }
}
