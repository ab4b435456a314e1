//! The consumer thread of a [`KafkaSource`](super::source::KafkaSource): polls, notes where each partition's
//! pass ends, hands records to the source through a bounded channel, and keeps serving the group (heartbeats,
//! rebalances) while the pipeline is behind.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rdkafka::Offset;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::types::RDKafkaErrorCode;
use tokio::sync::mpsc;

use super::explain;
use super::record::Record;
use super::source::{PassContext, Shared, lock};
use super::window::Verdict;
use crate::core::adapter::AdapterError;

/// Records read ahead of the pipeline: when this many wait, the consumer stops polling for a while.
const READ_AHEAD: usize = 1000;
/// How long the read-ahead may stay full before the partitions are paused. Pausing a partition drops what
/// librdkafka fetched ahead for it (a resume fetches it again, a round trip to the broker), so a pipeline that
/// is only briefly behind is waited for without polling (librdkafka's own prefetch bound, 16 MiB, keeps
/// memory flat); one that stays behind (a rate limit, a canary) is paused, so polling can go on serving the
/// group's heartbeats and rebalances.
const PAUSE_AFTER: Duration = Duration::from_millis(500);
/// How long one poll lasts once the pass is read and handed on, while the pipeline finishes: `finish` waits up to
/// this for the thread to notice it is closing.
const ENDED_POLL: Duration = Duration::from_millis(10);
/// How long a seek to `--since` may take.
const SEEK_TIMEOUT: Duration = Duration::from_secs(5);
/// What the consumer thread hands to `KafkaSource::next`.
pub(super) enum Event {
    Record(Record),
    End,
    Failed(AdapterError),
}

/// The consumer thread: polls, notes partition ends, hands records on, serves rebalances.
pub(super) fn read_loop(consumer: &BaseConsumer<PassContext>, shared: &Shared, tx: &mpsc::Sender<Event>) {
    let started_ms = chrono::Utc::now().timestamp_millis();
    let mut pending: VecDeque<Event> = VecDeque::new();
    let mut paused = false;
    let mut full_since: Option<Instant> = None;
    let mut ended = false;
    let joined_by = Instant::now() + Duration::from_secs(60);
    while !shared.closing.load(Ordering::SeqCst) {
        while let Some(event) = pending.pop_front() {
            match tx.try_send(event) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(event)) => {
                    pending.push_front(event);
                    break;
                }
                Err(mpsc::error::TrySendError::Closed(_)) => return,
            }
        }
        // All handed on, the end included: only short polls from here (one more 100 ms poll for records here
        // held up every run's `finish` by a tenth of a second).
        if ended && pending.is_empty() {
            // Keep serving rebalances and heartbeats until `finish`.
            while !shared.closing.load(Ordering::SeqCst) {
                if let Some(Ok(m)) = consumer.poll(ENDED_POLL) {
                    let _ = m; // past the pass: left for the next one
                }
            }
            return;
        }
        let full = pending.len() >= READ_AHEAD;
        match (full, paused) {
            (true, false) => {
                let since = *full_since.get_or_insert_with(Instant::now);
                if since.elapsed() < PAUSE_AFTER {
                    std::thread::sleep(Duration::from_millis(1));
                    continue;
                }
                if let Ok(assignment) = consumer.assignment() {
                    let _ = consumer.pause(&assignment);
                }
                paused = true;
            }
            // Resumed once half the read-ahead went, so a slow pipeline does not pause and resume per record.
            (false, true) if pending.len() <= READ_AHEAD / 2 => {
                if let Ok(assignment) = consumer.assignment() {
                    let _ = consumer.resume(&assignment);
                }
                paused = false;
                full_since = None;
            }
            (false, false) => full_since = None,
            _ => {}
        }
        let polled = consumer.poll(Duration::from_millis(if pending.is_empty() { 100 } else { 10 }));
        let mut state = lock(&shared.state);
        let mut seek_to = None;
        match polled {
            None => {}
            Some(Ok(m)) => {
                state.down_since = None;
                let (p, offset) = (m.partition(), m.offset());
                let mut hold = None;
                match state.pass.get_mut(&p) {
                    Some(part) if !part.done => {
                        let stamp = m.timestamp().to_millis();
                        match part.window.judge(offset, stamp) {
                            // Past --until: a later run reads it.
                            Verdict::Stop => part.done = true,
                            // Before --since: not handed out. The first such record holds the group's commit,
                            // as a skipped one would; the partition is sought to the window once it fetches.
                            Verdict::PassOver { hold: first, seek } => {
                                hold = first;
                                seek_to = seek.map(|first| (p, first));
                            }
                            Verdict::Read if offset >= part.end && stamp.is_none_or(|t| t >= started_ms) => {
                                // Written after the pass started: the next pass reads it.
                                part.done = true;
                            }
                            Verdict::Read => pending.push_back(Event::Record(Record::read(&m))),
                        }
                    }
                    _ => {}
                }
                if let Some(offset) = hold {
                    state.offsets.partition(p).hold(offset);
                }
            }
            Some(Err(KafkaError::PartitionEOF(p))) => {
                state.down_since = None;
                if let Some(part) = state.pass.get_mut(&p) {
                    part.done = true;
                }
            }
            Some(Err(e)) => {
                let code = e.rdkafka_error_code();
                if matches!(
                    code,
                    Some(RDKafkaErrorCode::UnknownTopicOrPartition | RDKafkaErrorCode::UnknownTopic)
                ) {
                    pending.push_back(Event::Failed(AdapterError::Config(format!(
                        "{}: {}",
                        shared.url.describe(),
                        explain(&e, &shared.url)
                    ))));
                    ended = true;
                } else if state.down_since.is_none() {
                    state.down_since = Some((Instant::now(), explain(&e, &shared.url)));
                }
            }
        }
        if !ended {
            if let Some(reason) = state.fatal.take() {
                pending.push_back(Event::Failed(AdapterError::Broker(format!(
                    "{}: {reason}",
                    shared.url.describe()
                ))));
                ended = true;
            } else if let Some((since, why)) = &state.down_since
                && since.elapsed() > shared.url.reconnect_for
            {
                pending.push_back(Event::Failed(AdapterError::Broker(format!(
                    "{}: {why}; gave up after {}. Nothing is lost: the group's committed offsets never passed a \
                     message that was not settled, and the same command resumes",
                    shared.url.describe(),
                    humantime::format_duration(shared.url.reconnect_for)
                ))));
                ended = true;
            } else if state.assigned && !state.rebalancing && state.pass.values().all(|p| p.done) {
                pending.push_back(Event::End);
                state.ended = true;
                ended = true;
            } else if !state.assigned && Instant::now() > joined_by {
                pending.push_back(Event::Failed(AdapterError::Broker(format!(
                    "{}: no partitions were assigned to this worker within 60 s of joining group `{}`",
                    shared.url.describe(),
                    shared.url.group
                ))));
                ended = true;
            }
        }
        drop(state);
        if let Some((p, first)) = seek_to
            && let Err(e) = consumer.seek(&shared.url.topic, p, Offset::Offset(first), SEEK_TIMEOUT)
        {
            // Reading on is slower but as right: records before the window are still not handed out.
            tracing::debug!("{}: seeking partition {p} to {first}: {e}", shared.url.describe());
        }
    }
}
