//! The re-poison breaker: while a run replays, it watches the DLQ for its own replays coming back (the
//! consumer failed them again and they were dead-lettered anew; each carries the `x-redrive-replay-id` this
//! run gave it). When more than `--abort-if-returning` of the replays confirmed within `--returning-window`
//! have come back, the fix did not work: the run stops forwarding, drains as a Ctrl-C does (confirmed sends
//! are acked, everything else stays in the DLQ), exits with its own code and says which errors came back.
//!
//! It only looks: the source's [`Arrivals`] show new messages without taking or hiding them, so the
//! returned messages stay in the DLQ for the next run (which gives them a new replay id, as new work).

use std::collections::{HashMap, HashSet, VecDeque};
use std::str::FromStr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::config::StopReason;
use super::groups::error_pattern;
use super::stage::Shared;
use crate::core::adapter::{AdapterError, Arrivals};
use crate::core::envelope::{Envelope, REPLAY_ID_ATTRIBUTE};
use crate::core::ids::replay_digest;

/// How often the DLQ is looked at.
const POLL_EVERY: Duration = Duration::from_secs(1);
/// Fewer returns than this never trip the breaker (one message failing again is not a pattern).
pub const MIN_RETURNS: u64 = 5;
/// Most replays remembered (8 bytes each: about 8 MiB at most); past it the oldest generations are forgotten
/// first, as if their window had passed.
const MAX_TRACKED: usize = 1_000_000;
/// Most replays in one generation (512 KiB of digests).
const GENERATION_MEMBERS: usize = 65_536;
/// A generation spans at most this fraction of the window (see [`Generation`]).
const GENERATIONS_PER_WINDOW: u32 = 16;
/// Most distinct error patterns kept for the report.
const MAX_PATTERNS: usize = 100;

/// When the breaker trips: `--abort-if-returning 5%` within `--returning-window 10m`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ReturnGuard {
    /// Percent of the replays confirmed within the window that may come back (exclusive).
    pub percent: f64,
    /// How long after its confirmation a replay coming back still counts.
    pub window: Duration,
}

impl ReturnGuard {
    /// The default: 5% within 10 minutes.
    pub const DEFAULT: ReturnGuard = ReturnGuard {
        percent: 5.0,
        window: Duration::from_secs(600),
    };
}

/// An `--abort-if-returning` value: a percentage (`5%`, `12.5%`, or a bare number) or `off`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Threshold {
    /// Never trip.
    Off,
    /// Trip above this percent.
    Percent(f64),
}

impl FromStr for Threshold {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text.eq_ignore_ascii_case("off") {
            return Ok(Threshold::Off);
        }
        let number = text.strip_suffix('%').unwrap_or(text).trim();
        match number.parse::<f64>() {
            Ok(p) if (0.0..100.0).contains(&p) => Ok(Threshold::Percent(p)),
            _ => Err(format!(
                "{text:?}: expected a percentage from 0% to below 100% (e.g. 5%), or `off`"
            )),
        }
    }
}

/// The replays this run confirmed within the guard's window, and which of them came back.
pub(super) struct Replays {
    guard: ReturnGuard,
    state: Mutex<Tracked>,
}

/// Replays confirmed over a short stretch of time (at most a sixteenth of the window, at most
/// [`GENERATION_MEMBERS`]): 8 bytes per replay, and one pair of timestamps for all of them. A generation is
/// forgotten as a whole once the window has passed for its newest replay, so a replay is remembered for the
/// window and at most a sixteenth of it longer, never shorter.
struct Generation {
    /// When its oldest and newest replays were confirmed.
    first: Instant,
    last: Instant,
    /// Their replay ids' digests; sorted whenever `sorted` says so (always, once the generation is closed).
    digests: Vec<u64>,
    sorted: bool,
}

impl Generation {
    fn new(now: Instant) -> Self {
        Self {
            first: now,
            last: now,
            digests: Vec::new(),
            sorted: true,
        }
    }

    fn sort(&mut self) {
        if !self.sorted {
            self.digests.sort_unstable();
            self.sorted = true;
        }
    }

    /// Whether `digest` is one of its replays (the generation is sorted).
    fn holds(&self, digest: u64) -> bool {
        self.digests.binary_search(&digest).is_ok()
    }
}

#[derive(Default)]
struct Tracked {
    /// Closed generations, oldest first, each sorted.
    closed: VecDeque<Generation>,
    /// The generation replays are added to now.
    open: Option<Generation>,
    /// How many replays all generations hold.
    live: usize,
    /// Those that came back (few, unless the guard is `off`: past its share the run stops).
    returned: HashSet<u64>,
}

impl Replays {
    pub(super) fn new(guard: ReturnGuard) -> Self {
        Self {
            guard,
            state: Mutex::new(Tracked::default()),
        }
    }

    /// Note replays the destination confirmed now (their replay ids' digests; each replay is confirmed once).
    pub(super) fn confirmed(&self, digests: impl IntoIterator<Item = u64>) {
        let span = self.guard.window / GENERATIONS_PER_WINDOW;
        let mut t = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        t.add(Instant::now(), span, digests);
    }

    /// A message carrying this replay id arrived in the DLQ: true when it is one of this run's replays
    /// within the window, seen for the first time.
    fn came_back(&self, digest: u64) -> bool {
        let mut t = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        t.expire(Instant::now(), self.guard.window);
        t.holds(digest) && t.returned.insert(digest)
    }

    /// (came back, confirmed) within the window.
    fn in_window(&self) -> (u64, u64) {
        let mut t = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        t.expire(Instant::now(), self.guard.window);
        (t.returned.len() as u64, t.live as u64)
    }
}

impl Tracked {
    /// Add replays confirmed at `now`, each to the open generation while it spans at most `span` and has
    /// room; then forget the oldest generations while more than [`MAX_TRACKED`] are held.
    fn add(&mut self, now: Instant, span: Duration, digests: impl IntoIterator<Item = u64>) {
        for digest in digests {
            let fits = self
                .open
                .as_ref()
                .is_some_and(|open| open.digests.len() < GENERATION_MEMBERS && now.duration_since(open.first) <= span);
            if !fits {
                self.close_open();
            }
            let open = self.open.get_or_insert_with(|| Generation::new(now));
            open.digests.push(digest);
            open.sorted = false;
            open.last = now;
            self.live += 1;
        }
        while self.live > MAX_TRACKED {
            if self.closed.is_empty() {
                self.close_open();
            }
            self.forget_oldest();
        }
    }

    /// Whether `digest` is one of the replays held.
    fn holds(&mut self, digest: u64) -> bool {
        self.closed.iter().any(|g| g.holds(digest))
            || self.open.as_mut().is_some_and(|open| {
                open.sort();
                open.holds(digest)
            })
    }

    /// Close the open generation (sorted, its spare capacity given back), if there is one.
    fn close_open(&mut self) {
        if let Some(mut open) = self.open.take() {
            open.sort();
            open.digests.shrink_to_fit();
            self.closed.push_back(open);
        }
    }

    /// Forget the generations whose newest replay was confirmed more than `window` ago.
    fn expire(&mut self, now: Instant, window: Duration) {
        if self
            .open
            .as_ref()
            .is_some_and(|open| now.duration_since(open.last) > window)
        {
            self.close_open();
        }
        while self
            .closed
            .front()
            .is_some_and(|oldest| now.duration_since(oldest.last) > window)
        {
            self.forget_oldest();
        }
    }

    /// Forget the oldest closed generation.
    fn forget_oldest(&mut self) {
        let Some(oldest) = self.closed.pop_front() else {
            return;
        };
        self.live -= oldest.digests.len();
        if !self.returned.is_empty() {
            self.returned.retain(|&digest| !oldest.holds(digest));
        }
    }
}

/// Whether `returned` of `replayed` is past the guard.
fn trips(guard: &ReturnGuard, returned: u64, replayed: u64) -> bool {
    returned >= MIN_RETURNS && (returned as f64) * 100.0 > guard.percent * (replayed as f64)
}

/// What came back, for the summary and the report.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ReturnsReport {
    /// Whether the source could be watched; when not, why.
    pub watched: Watch,
    /// The guard, as given (`5% within 10m`).
    pub guard: String,
    /// This run's replays seen back in the DLQ.
    pub came_back: u64,
    /// Whether the breaker stopped the run.
    pub tripped: bool,
    /// The errors they came back with, most frequent first: (normalised error, count, one message id).
    pub errors: Vec<ReturnedError>,
}

/// Whether the DLQ was watched for returns.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(tag = "state", content = "why", rename_all = "snake_case")]
pub enum Watch {
    /// It was.
    #[default]
    Watched,
    /// The source cannot show new messages without taking them.
    Unavailable(String),
}

/// One error pattern the returned replays carried.
#[derive(Clone, Debug, Serialize)]
pub struct ReturnedError {
    /// The error text, normalised (values replaced by placeholders).
    pub pattern: String,
    /// Returned replays with it.
    pub count: u64,
    /// One of them (its id in the DLQ).
    pub sample_id: String,
}

/// Returned messages grouped by error.
#[derive(Default)]
struct Errors(HashMap<String, ReturnedError>);

impl Errors {
    fn add(&mut self, env: &Envelope) {
        let pattern = error_pattern(env);
        if self.0.len() >= MAX_PATTERNS && !self.0.contains_key(&pattern) {
            return;
        }
        self.0
            .entry(pattern.clone())
            .or_insert_with(|| ReturnedError {
                pattern,
                count: 0,
                sample_id: env.id.clone(),
            })
            .count += 1;
    }

    fn sorted(self) -> Vec<ReturnedError> {
        let mut errors: Vec<ReturnedError> = self.0.into_values().collect();
        errors.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.pattern.cmp(&b.pattern)));
        errors
    }
}

/// Watch the source's `arrivals` until `done` (the run's stages finished) or the run stops; trip the breaker
/// when the guard says so. Without arrivals (the source cannot show them), report that it could not watch.
pub(super) async fn breaker_stage(
    shared: Arc<Shared>,
    arrivals: Option<Box<dyn Arrivals>>,
    done: CancellationToken,
) -> ReturnsReport {
    let Some(replays) = shared.replays.as_ref() else {
        return ReturnsReport::default();
    };
    let guard = replays.guard;
    let mut report = ReturnsReport {
        guard: describe(&guard),
        ..Default::default()
    };
    let Some(mut arrivals) = arrivals else {
        let why = format!(
            "{} cannot show new messages without taking them; replays that come back wait for the next run",
            shared.source_identity
        );
        tracing::info!("the re-poison breaker is off for this source: {why}");
        report.watched = Watch::Unavailable(why);
        return report;
    };
    let mut errors = Errors::default();
    let mut failing = false;
    loop {
        tokio::select! {
            () = done.cancelled() => break,
            () = shared.stop.cancelled() => break,
            () = tokio::time::sleep(POLL_EVERY) => {}
        }
        let arrived = match arrivals.poll().await {
            Ok(arrived) => {
                failing = false;
                arrived
            }
            Err(AdapterError::Config(why)) => {
                // It cannot watch this DLQ at all (how it is set up, or turned off).
                tracing::info!("the re-poison breaker is off for this source: {why}");
                report.watched = Watch::Unavailable(why);
                break;
            }
            Err(e) => {
                if !failing {
                    tracing::warn!("cannot look for replays coming back to the DLQ (trying again): {e}");
                }
                failing = true;
                continue;
            }
        };
        for env in &arrived {
            let ours = env
                .attribute(REPLAY_ID_ATTRIBUTE)
                .and_then(replay_digest)
                .is_some_and(|d| replays.came_back(d));
            if ours {
                report.came_back += 1;
                errors.add(env);
            }
        }
        let (returned, replayed) = replays.in_window();
        if trips(&guard, returned, replayed) {
            report.tripped = true;
            let top = errors
                .0
                .values()
                .max_by_key(|e| e.count)
                .map(|e| format!("; most came back with: {}", e.pattern))
                .unwrap_or_default();
            shared.stop_with(StopReason::Returning(format!(
                "{returned} of the {replayed} messages replayed within {} came back to the DLQ (more than {}%): \
                 the fix did not work{top}",
                humantime::format_duration(guard.window),
                guard.percent
            )));
            break;
        }
    }
    report.errors = errors.sorted();
    report
}

/// `5% within 10m`.
pub fn describe(guard: &ReturnGuard) -> String {
    format!("{}% within {}", guard.percent, humantime::format_duration(guard.window))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_parse_and_bad_ones_say_what_is_expected() {
        assert_eq!("5%".parse::<Threshold>(), Ok(Threshold::Percent(5.0)));
        assert_eq!(" 12.5 % ".parse::<Threshold>(), Ok(Threshold::Percent(12.5)));
        assert_eq!("0".parse::<Threshold>(), Ok(Threshold::Percent(0.0)));
        assert_eq!("OFF".parse::<Threshold>(), Ok(Threshold::Off));
        for bad in ["100%", "-1%", "five", "", "5%%"] {
            let e = bad.parse::<Threshold>().unwrap_err();
            assert!(e.contains("percentage"), "{bad}: {e}");
        }
    }

    #[test]
    fn a_few_returns_never_trip_and_a_share_above_the_threshold_does() {
        let guard = ReturnGuard::DEFAULT;
        assert!(
            !trips(&guard, MIN_RETURNS - 1, MIN_RETURNS - 1),
            "4 of 4 is not a pattern yet"
        );
        assert!(trips(&guard, MIN_RETURNS, MIN_RETURNS));
        assert!(!trips(&guard, 5, 100), "exactly 5% is not more than 5%");
        assert!(trips(&guard, 6, 100));
        let zero = ReturnGuard { percent: 0.0, ..guard };
        assert!(trips(&zero, MIN_RETURNS, 1_000_000));
    }

    #[test]
    fn only_this_runs_replays_count_each_once_and_only_within_the_window() {
        let replays = Replays::new(ReturnGuard {
            window: Duration::from_millis(200),
            ..ReturnGuard::DEFAULT
        });
        replays.confirmed([1, 2, 3]);
        assert!(replays.came_back(1));
        assert!(!replays.came_back(1), "the same return counts once");
        assert!(!replays.came_back(99), "not one of this run's replays");
        assert_eq!(replays.in_window(), (1, 3));
        std::thread::sleep(Duration::from_millis(250));
        replays.confirmed([4]);
        assert_eq!(replays.in_window(), (0, 1), "the window passed for 1, 2 and 3");
        assert!(!replays.came_back(2), "too late to count");
        assert!(replays.came_back(4));
        assert_eq!(replays.in_window(), (1, 1));
    }

    #[test]
    fn a_replay_is_remembered_for_the_window_and_at_most_a_sixteenth_longer() {
        let window = Duration::from_secs(160);
        let span = window / GENERATIONS_PER_WINDOW;
        let t0 = Instant::now();
        let at = |secs: u64| t0 + Duration::from_secs(secs);
        let mut t = Tracked::default();
        t.add(at(0), span, [1]);
        t.add(at(10), span, [2]);
        t.add(at(11), span, [3]);
        assert_eq!(
            t.closed.len() + usize::from(t.open.is_some()),
            2,
            "2 joined 1 (10 s span), 3 did not"
        );
        t.expire(at(160), window);
        assert!(t.holds(1) && t.holds(2) && t.holds(3), "within the window of all three");
        t.expire(at(169), window);
        assert!(
            t.holds(1),
            "1 stays with 2, whose window has not passed: 9 s longer than its own"
        );
        t.expire(at(171), window);
        assert!(
            !t.holds(1) && !t.holds(2),
            "the window passed for the newest of their generation"
        );
        assert!(t.holds(3));
        assert_eq!(t.live, 1);
        t.expire(at(172), window);
        assert!(!t.holds(3) && t.live == 0, "and then for 3");
    }

    #[test]
    fn memory_stays_bounded_by_forgetting_the_oldest() {
        let replays = Replays::new(ReturnGuard {
            window: Duration::from_secs(3600),
            ..ReturnGuard::DEFAULT
        });
        replays.confirmed(0..(MAX_TRACKED as u64 + 10));
        let (_, replayed) = replays.in_window();
        assert_eq!(
            replayed,
            (MAX_TRACKED + 10 - GENERATION_MEMBERS) as u64,
            "the oldest generation was forgotten whole"
        );
        assert!(!replays.came_back(0), "the oldest was forgotten");
        assert!(!replays.came_back(GENERATION_MEMBERS as u64 - 1));
        assert!(
            replays.came_back(GENERATION_MEMBERS as u64),
            "the second generation is kept"
        );
        assert!(replays.came_back(MAX_TRACKED as u64 + 9));
    }

    #[test]
    fn returned_errors_group_by_pattern() {
        let mut errors = Errors::default();
        for (id, text) in [("a", "timeout after 30s"), ("b", "timeout after 45s"), ("c", "bad sku")] {
            let mut env = Envelope {
                id: id.into(),
                ..Default::default()
            };
            env.failure.error_text = Some(text.into());
            errors.add(&env);
        }
        let sorted = errors.sorted();
        assert_eq!(sorted[0].count, 2);
        assert_eq!(sorted[0].sample_id, "a");
        assert_eq!(sorted[1].pattern, "bad sku");
    }
}
