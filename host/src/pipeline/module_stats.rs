//! Per-module numbers of a run: each filter module's verdicts, failures by kind, and a call time
//! histogram with fixed bounds, all lock-free (filter threads and the router write them at full speed).

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

use crate::core::envelope::Outcome;
use crate::filter::{AuditRecord, FailureKind};

/// Upper bounds of the module call time histogram, in seconds (10 µs to 5 s).
pub const LATENCY_BOUNDS: [f64; 12] = [
    0.000_01, 0.000_05, 0.000_1, 0.000_5, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0,
];

/// A histogram of call times with fixed bounds ([`LATENCY_BOUNDS`]), lock-free.
#[derive(Debug, Default)]
pub struct Latency {
    /// Calls at or under each bound (not cumulative; the last slot is over the last bound).
    buckets: [AtomicU64; LATENCY_BOUNDS.len() + 1],
    count: AtomicU64,
    sum_us: AtomicU64,
}

/// A [`Latency`] read at one moment.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct LatencySnapshot {
    /// Calls at or under each bound of [`LATENCY_BOUNDS`], cumulative (Prometheus' `le` buckets).
    pub cumulative: Vec<u64>,
    /// All calls.
    pub count: u64,
    /// Their total time, in seconds.
    pub sum_secs: f64,
}

impl Latency {
    fn observe(&self, micros: u64) {
        let secs = micros as f64 / 1e6;
        let slot = LATENCY_BOUNDS
            .iter()
            .position(|bound| secs <= *bound)
            .unwrap_or(LATENCY_BOUNDS.len());
        self.buckets[slot].fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(micros, Ordering::Relaxed);
    }

    /// The histogram now.
    pub fn snapshot(&self) -> LatencySnapshot {
        let mut running = 0;
        let cumulative = self.buckets[..LATENCY_BOUNDS.len()]
            .iter()
            .map(|b| {
                running += b.load(Ordering::Relaxed);
                running
            })
            .collect();
        LatencySnapshot {
            cumulative,
            count: self.count.load(Ordering::Relaxed),
            sum_secs: self.sum_us.load(Ordering::Relaxed) as f64 / 1e6,
        }
    }

    /// The call time under which `q` (0 to 1) of the calls fell, as the upper bound of its bucket; `None`
    /// before any call, or when it lies past the last bound.
    pub fn quantile(snapshot: &LatencySnapshot, q: f64) -> Option<f64> {
        if snapshot.count == 0 {
            return None;
        }
        let wanted = (q * snapshot.count as f64).ceil().max(1.0) as u64;
        snapshot
            .cumulative
            .iter()
            .position(|c| *c >= wanted)
            .map(|i| LATENCY_BOUNDS[i])
    }
}

/// One module of the chain: what it decided, how it failed, how long its calls took.
#[derive(Debug)]
pub struct ModuleTelemetry {
    /// Its name in the chain.
    pub name: String,
    /// Verdicts given: replay, skip, discard.
    verdicts: [AtomicU64; 3],
    /// Failed calls, by [`FailureKind::index`].
    failures: [AtomicU64; FailureKind::ALL.len()],
    /// Call times.
    pub latency: Latency,
}

/// A module's counters at one moment.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct ModuleSnapshot {
    /// Its name.
    pub name: String,
    /// Messages it said replay to (and passed on).
    pub replay: u64,
    /// Messages it said skip to.
    pub skip: u64,
    /// Messages it said discard to.
    pub discard: u64,
    /// Failed calls by kind (only kinds that happened).
    pub failures: Vec<(FailureKind, u64)>,
    /// Call times.
    pub latency: LatencySnapshot,
}

impl ModuleSnapshot {
    /// All failed calls.
    pub fn failed(&self) -> u64 {
        self.failures.iter().map(|(_, n)| n).sum()
    }
}

impl ModuleTelemetry {
    /// Counters for the module `name`.
    pub fn new(name: &str) -> Self {
        ModuleTelemetry {
            name: name.to_owned(),
            verdicts: Default::default(),
            failures: Default::default(),
            latency: Latency::default(),
        }
    }

    /// Count one of its audit records: the verdict or the failure, and the call time.
    pub fn record(&self, record: &AuditRecord) {
        self.latency.observe(record.duration_us);
        let counter = match (record.verdict, record.kind) {
            (Outcome::Replay, _) => &self.verdicts[0],
            (Outcome::Skip, _) => &self.verdicts[1],
            (Outcome::Discard, _) => &self.verdicts[2],
            (Outcome::Failed, kind) => &self.failures[kind.unwrap_or(FailureKind::Trap).index()],
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Its counters now.
    pub fn snapshot(&self) -> ModuleSnapshot {
        let v = |i: usize| self.verdicts[i].load(Ordering::Relaxed);
        ModuleSnapshot {
            name: self.name.clone(),
            replay: v(0),
            skip: v(1),
            discard: v(2),
            failures: FailureKind::ALL
                .iter()
                .map(|k| (*k, self.failures[k.index()].load(Ordering::Relaxed)))
                .filter(|(_, n)| *n > 0)
                .collect(),
            latency: self.latency.snapshot(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_buckets_are_cumulative_and_quantiles_give_the_bucket_bound() {
        let l = Latency::default();
        for us in [5, 40, 40, 900, 7_000_000] {
            l.observe(us);
        }
        let s = l.snapshot();
        assert_eq!(s.count, 5);
        assert_eq!(s.cumulative[0], 1); // <= 10 µs
        assert_eq!(s.cumulative[1], 3); // <= 50 µs
        assert_eq!(*s.cumulative.last().unwrap(), 4, "7 s is past the last bound");
        assert_eq!(Latency::quantile(&s, 0.5), Some(0.000_05));
        assert_eq!(Latency::quantile(&s, 1.0), None);
        assert_eq!(Latency::quantile(&LatencySnapshot::default(), 0.5), None);
    }
}
