//! `--since` / `--until` as offsets. A Kafka record's failure time is its timestamp (when the framework wrote
//! it to the dead-letter topic), and the broker keeps a time index: a pass looks up, on each partition, the
//! first offset at or after `--since` and the first at or after `--until` (`offsets_for_times`), seeks to the
//! first and stops at the second, instead of reading every record only to leave the ones outside the window.
//!
//! Nothing is passed over for good: the first record a pass passes over holds the group's commit where it is,
//! as a skipped message would, so a later run without `--since` still reads everything the window left. The
//! records' own times decide as well: a record older than `--since` is never handed on (a producer may set
//! timestamps out of order), and the pass stops at the `--until` offset only on a record that really is that
//! recent. So a broker whose time index is approximate (tansu 0.6 answers the partition's start for any time)
//! costs reading, not correctness; one that cannot answer at all reads from the committed position, and the
//! pipeline's own check of the window applies to every message either way.

use chrono::{DateTime, Utc};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::{Offset, TopicPartitionList};

use super::METADATA_TIMEOUT;
use crate::core::TimeWindow;

/// Where the window starts and stops on one partition.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Bounds {
    /// The first offset at or after `--since` (the partition's end when no record is that recent); `None`
    /// without `--since`.
    pub first: Option<i64>,
    /// The first offset at or after `--until`; `None` without `--until` or when no record is that recent.
    pub stop: Option<i64>,
}

/// Look the window up on each `(partition, high watermark)` of `topic`.
pub fn bounds<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
    partitions: &[(i32, i64)],
    window: TimeWindow,
) -> Result<Vec<(i32, Bounds)>, KafkaError> {
    let mut bounds: Vec<(i32, Bounds)> = partitions.iter().map(|(p, _)| (*p, Bounds::default())).collect();
    if let Some(since) = window.since {
        let found = lookup(consumer, topic, partitions, since)?;
        for ((p, end), (_, b)) in partitions.iter().zip(bounds.iter_mut()) {
            b.first = Some(found.iter().find(|(q, _)| q == p).and_then(|(_, o)| *o).unwrap_or(*end));
        }
    }
    if let Some(until) = window.until {
        let found = lookup(consumer, topic, partitions, until)?;
        for (p, b) in bounds.iter_mut() {
            b.stop = found.iter().find(|(q, _)| q == p).and_then(|(_, o)| *o);
        }
    }
    Ok(bounds)
}

/// Each partition's first offset at or after `at`; `None` where no record is that recent.
fn lookup<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    topic: &str,
    partitions: &[(i32, i64)],
    at: DateTime<Utc>,
) -> Result<Vec<(i32, Option<i64>)>, KafkaError> {
    let mut list = TopicPartitionList::new();
    for (p, _) in partitions {
        list.add_partition_offset(topic, *p, Offset::Offset(at.timestamp_millis()))?;
    }
    let found = consumer.offsets_for_times(list, METADATA_TIMEOUT)?;
    let mut offsets = Vec::with_capacity(partitions.len());
    for e in found.elements() {
        e.error()?;
        let offset = match e.offset() {
            Offset::Offset(n) if n >= 0 => Some(n),
            _ => None,
        };
        offsets.push((e.partition(), offset));
    }
    Ok(offsets)
}

/// What a pass does with a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// In the window (as far as the source can tell): hand it to the pipeline.
    Read,
    /// Older than `--since`: not handed out.
    PassOver {
        /// The first such record of the partition: the group's commit must stop there.
        hold: Option<i64>,
        /// Move the partition's reading to the window's first offset.
        seek: Option<i64>,
    },
    /// At or past `--until`: the partition's pass ends here.
    Stop,
}

/// One partition's window, and what the pass passed over of it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PartitionWindow {
    bounds: Bounds,
    since_ms: Option<i64>,
    until_ms: Option<i64>,
    /// Records passed over (those skipped by the seek counted by their offsets); the first one holds the
    /// commit.
    passed_over: u64,
    /// The seek to `bounds.first` was asked for.
    sought: bool,
}

impl PartitionWindow {
    /// The window on a partition whose lookup gave `bounds`.
    pub fn new(window: TimeWindow, bounds: Bounds) -> Self {
        Self {
            bounds,
            since_ms: window.since.map(|t| t.timestamp_millis()),
            until_ms: window.until.map(|t| t.timestamp_millis()),
            ..Self::default()
        }
    }

    /// True when nothing at or after `--since` had been written when the pass looked (`end`: the partition's
    /// high watermark then): the partition has nothing for this pass.
    pub fn empty_before(&self, end: i64) -> bool {
        self.bounds.first.is_some_and(|first| first >= end)
    }

    /// Records passed over so far.
    pub fn passed_over(&self) -> u64 {
        self.passed_over
    }

    /// Judge the record at `offset`, written at `stamp_ms`. A record with no timestamp has no failure time, so
    /// it is outside any window that has a `--since`.
    pub fn judge(&mut self, offset: i64, stamp_ms: Option<i64>) -> Verdict {
        // The lookup's answer is checked against the record: a broker whose time index is approximate (tansu
        // answers the start of the partition) then stops at the first record that really is that recent.
        if let (Some(stop), Some(until)) = (self.bounds.stop, self.until_ms)
            && offset >= stop
            && stamp_ms.is_some_and(|t| t >= until)
        {
            return Verdict::Stop;
        }
        let before_first = self.bounds.first.filter(|first| offset < *first);
        let too_old = self.since_ms.is_some_and(|since| stamp_ms.is_none_or(|t| t < since));
        if before_first.is_none() && !too_old {
            return Verdict::Read;
        }
        // Every pass-over counts at least one record, so none counted yet means this is the first.
        let hold = (self.passed_over == 0).then_some(offset);
        let seek = match before_first {
            Some(first) if !self.sought => {
                self.sought = true;
                self.passed_over += (first - offset).max(1) as u64;
                Some(first)
            }
            // Read before the seek took effect: counted with it.
            Some(_) => None,
            None => {
                self.passed_over += 1;
                None
            }
        };
        Verdict::PassOver { hold, seek }
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn window(since_ms: Option<i64>, until_ms: Option<i64>) -> TimeWindow {
        let at = |ms: i64| Utc.timestamp_millis_opt(ms).single();
        TimeWindow {
            since: since_ms.and_then(at),
            until: until_ms.and_then(at),
        }
    }

    #[test]
    fn the_pass_seeks_to_since_and_holds_the_commit_at_the_first_record_it_passes_over() {
        let bounds = Bounds {
            first: Some(40),
            stop: None,
        };
        let mut w = PartitionWindow::new(window(Some(1_000), None), bounds);
        assert_eq!(
            w.judge(10, Some(500)),
            Verdict::PassOver {
                hold: Some(10),
                seek: Some(40)
            }
        );
        assert_eq!(
            w.judge(11, Some(600)),
            Verdict::PassOver { hold: None, seek: None },
            "fetched before the seek took effect"
        );
        assert_eq!(w.judge(40, Some(1_000)), Verdict::Read);
        assert_eq!(
            w.judge(41, Some(900)),
            Verdict::PassOver { hold: None, seek: None },
            "out of order, older than --since"
        );
        assert_eq!(w.passed_over(), 31, "10..40 by the seek, then 41");
    }

    #[test]
    fn an_approximate_lookup_still_selects_by_the_records_time() {
        // tansu answers offset 0 for any time.
        let bounds = Bounds {
            first: Some(0),
            stop: Some(0),
        };
        let mut w = PartitionWindow::new(window(Some(1_000), Some(2_000)), bounds);
        assert_eq!(
            w.judge(0, Some(999)),
            Verdict::PassOver {
                hold: Some(0),
                seek: None
            }
        );
        assert_eq!(w.judge(1, Some(1_000)), Verdict::Read);
        assert_eq!(w.judge(2, Some(1_999)), Verdict::Read, "not yet at --until");
        assert_eq!(w.judge(3, Some(2_000)), Verdict::Stop);
        assert_eq!(w.passed_over(), 1);
    }

    #[test]
    fn without_a_lookup_only_since_is_applied_by_the_source() {
        let mut w = PartitionWindow::new(window(Some(1_000), Some(2_000)), Bounds::default());
        assert_eq!(
            w.judge(0, None),
            Verdict::PassOver {
                hold: Some(0),
                seek: None
            },
            "no timestamp: outside a window with --since"
        );
        assert_eq!(
            w.judge(1, Some(5_000)),
            Verdict::Read,
            "past --until, but with no stop offset the pipeline decides"
        );
    }

    #[test]
    fn a_partition_with_nothing_that_recent_is_empty() {
        let w = PartitionWindow::new(
            window(Some(1_000), None),
            Bounds {
                first: Some(50),
                stop: None,
            },
        );
        assert!(w.empty_before(50));
        assert!(!w.empty_before(51));
        assert!(!PartitionWindow::default().empty_before(0));
    }
}
