//! The adapter kit: one suite every broker adapter passes against its real server.
//!
//! A broker's test file implements [`Broker`] for its server (a uniquely named DLQ and destination, seeded
//! the way the broker's users get dead letters there) and lists the kit's cases with [`suite!`]. The cases:
//!
//! - `reconciles`: a 500-message DLQ through the example chain; every message ends in exactly one place
//!   (replayed at the destination, still in the DLQ, or in the discard archive), each where its fate says;
//! - `plan_changes_nothing`: `redrive plan` and `redrive inspect` (every message listed, a `--grep` finding
//!   exactly the matching ones) leave every message in the DLQ and send nothing;
//! - `dropped_connection`: redrive's connections are cut mid-run; the run recovers (or a second run finishes
//!   it): nothing lost, and no copy beyond what the broker's promise allows, each with the same replay id;
//! - `stalled_connection`: the same when redrive's connections hang (half-open) instead of closing: the
//!   run notices within its timeouts instead of hanging;
//! - `broker_restarted`: the same when the server itself restarts mid-run;
//! - `slow_connection`: a slow network (latency on every chunk): slower, nothing lost or doubled;
//! - `kill_9_then_resume`: the same across a kill -9 and a resumed run;
//! - `kill_9_at_random_points`: the same across dozens of kill -9s at random moments of a 2 000-message
//!   replay (200 across the file, RabbitMQ, SQS and Redis suites);
//! - `crash_at_each_step`: the run kills itself exactly between two durable writes (about to send, sent but
//!   not journaled, confirmed but not acked, archived but not journaled, acked but not journaled); the next
//!   run finishes with nothing lost and no copy beyond the promise;
//! - `to_origin`: `--to origin` puts every message back where it was dead-lettered from;
//! - `mistakes_are_exit_2`: a missing queue/stream/table/file, wrong credentials, a closed port: exit 2
//!   with a message that says so, and the password never printed;
//! - `returning_replays_trip_the_breaker`: the destination's consumer fails every replay again; the
//!   re-poison breaker stops the run (exit 5) and nothing is lost;
//! - `password_never_printed`: a successful run with a password in the URL; no output, journal or audit
//!   file shows it.
//!
//! A broker runs the cases that apply to it; its test file says why the others do not.

#![allow(dead_code)]

use std::any::Any;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{json_lines, jsonl_values, module, output_within, redrive, run};

/// What becomes of seeded dead letter `order` with the kit's chain (route-by-error, drop-test-traffic).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Fate {
    /// A transient error: replayed.
    Replay,
    /// A permanent error, or none recorded: left in the DLQ.
    Skip,
    /// Test traffic: archived and removed.
    Discard,
}

/// The fate of seeded dead letter `order`: by `order % 5`, 0 and 1 time out (replay), 2 fails validation and
/// 4 has no error (skip), 3 is test traffic that timed out (discard).
pub fn fate(order: u64) -> Fate {
    match order % 5 {
        0 | 1 => Fate::Replay,
        3 => Fate::Discard,
        _ => Fate::Skip,
    }
}

/// The error a seeded dead letter failed with (`None`: none recorded).
pub fn error_of(order: u64) -> Option<&'static str> {
    match order % 5 {
        0 | 1 | 3 => Some("timeout calling billing"),
        2 => Some("validation failed: sku missing"),
        _ => None,
    }
}

/// Whether a seeded dead letter is test traffic (attribute `x-test: true`, or body field `"test": true`).
pub fn is_test_traffic(order: u64) -> bool {
    order % 5 == 3
}

/// The body of seeded dead letter `order`.
pub fn body_of(order: u64) -> String {
    if is_test_traffic(order) {
        format!(r#"{{"order":{order},"quantity":2,"test":true}}"#)
    } else {
        format!(r#"{{"order":{order},"quantity":2}}"#)
    }
}

/// The order number in a body the kit seeded.
pub fn order_of_body(body: &str) -> Option<u64> {
    serde_json::from_str::<serde_json::Value>(body).ok()?["order"].as_u64()
}

/// The messages in a JSONL file destination, in file order. A line that does not parse is not a message — the
/// last line while the sink is still writing it, or one a killed run left cut short (the next run ends it with a
/// newline) — and is skipped, as a consumer of the file skips it.
pub fn file_arrivals(path: &Path) -> Vec<Arrived> {
    jsonl_values(path)
        .iter()
        .map(|v| Arrived {
            order: order_of_body(v["body"].as_str().expect("a body")).expect("a staged body is the order it was"),
            replay_id: v["attributes"]["x-redrive-replay-id"].as_str().map(str::to_owned),
        })
        .collect()
}

/// The orders in a JSONL file destination, in file order (see [`file_arrivals`]).
pub fn file_orders(path: &Path) -> Vec<u64> {
    file_arrivals(path).into_iter().map(|a| a.order).collect()
}

/// A message found at a destination.
#[derive(Clone, Debug)]
pub struct Arrived {
    /// Its seeded order number.
    pub order: u64,
    /// Its `x-redrive-replay-id`.
    pub replay_id: Option<String>,
}

/// What a crash (or a cut connection) can repeat at a broker's destination (README, "What a crash can
/// repeat").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Copies {
    /// Nothing: the destination is read back.
    None,
    /// At most this many copies per crash, each with the same replay id.
    AtMostPerCrash(usize),
}

/// A URL redrive must refuse with exit 2, and words its message must hold.
pub struct Mistake {
    /// What is wrong, for the test's messages.
    pub what: &'static str,
    /// The source URL to try.
    pub url: String,
    /// Words the error must contain.
    pub says: &'static str,
}

/// Which of a broker's tests may share the server.
pub enum Access {
    /// Alongside other tests.
    Shared,
    /// Alone (it cuts every connection).
    Exclusive,
}

/// A broker under the kit: its real server, one test's uniquely named DLQ and destination.
pub trait Broker: Sized {
    /// A fresh DLQ and destination for the test `test`; fails loudly, with instructions, without a server.
    fn new(test: &str) -> Self;
    /// Put dead letters `0..n` into the DLQ, as the broker's users get them there ([`fate`], [`error_of`],
    /// [`is_test_traffic`], [`body_of`]).
    fn seed(&mut self, n: u64);
    /// The DLQ's URL.
    fn source_url(&self) -> String;
    /// The destination's URL.
    fn destination_url(&self) -> String;
    /// `redrive` set up for this broker (credentials in the environment, ...), with `tmp` as its cache.
    fn command(&self, tmp: &Path) -> Command {
        redrive(tmp)
    }
    /// Extra arguments every run takes (a file source's `--remainder`).
    fn run_args(&self) -> Vec<String> {
        Vec::new()
    }
    /// How many messages are at the destination now (copies included), without taking them.
    fn destination_count(&mut self) -> usize;
    /// The messages at the destination (copies included); the end of a test.
    fn at_destination(&mut self) -> Vec<Arrived>;
    /// The orders still in the DLQ; the end of a test.
    fn in_dlq(&mut self) -> Vec<u64>;
    /// The orders back where they were dead-lettered from, after `--to origin`.
    fn at_origin(&mut self) -> Vec<u64> {
        panic!("this broker has no origin; do not list `to_origin` for it")
    }
    /// Cut the connections the redrive process `redrive_pid` has to the server.
    fn drop_connections(&mut self, redrive_pid: u32) {
        let _ = redrive_pid;
        panic!("this broker has no connection to cut; do not list `dropped_connection` for it")
    }
    /// The destination's consumer fails again: dead-letter what arrived at the destination since the last
    /// call back into the DLQ, the way this broker's applications do (headers kept, so each carries its
    /// replay id, with a new error `still failing: sku <n> unknown`). Returns the orders sent back.
    fn fail_again(&mut self) -> Vec<u64> {
        panic!("this broker cannot send replays back; do not list `returning_replays_trip_the_breaker` for it")
    }
    /// Restart the server (stop it, wait, start it, wait until it serves again); data it keeps durably
    /// survives.
    fn restart_server(&mut self) {
        panic!("this broker cannot be restarted by the test; do not list `broker_restarted` for it")
    }
    /// Add this much latency to every connection redrive has to the server, both ways.
    fn delay_connections(&mut self, by: Duration) {
        let _ = by;
        panic!("this broker's connections cannot be slowed; do not list `slow_connection` for it")
    }
    /// Make every connection redrive has to the server hang (no reply, no close: half-open); new
    /// connections work.
    fn stall_connections(&mut self) {
        panic!("this broker's connections cannot be stalled; do not list `stalled_connection` for it")
    }
    /// What a crash can repeat at the destination.
    fn crash_copies(&self) -> Copies;
    /// How many kill -9s `kill_9_at_random_points` lands (the suite's 200 are shared out among the brokers).
    fn random_kills(&self) -> usize {
        40
    }
    /// True for a log (Kafka): a settled message after one that stays is still in the log, past the
    /// group's committed offset, and [`Broker::in_dlq`] lists it; the kit then counts as "in the DLQ" only
    /// what is not settled elsewhere, and still requires every message that stays to be past the commit.
    fn settled_stay_in_log(&self) -> bool {
        false
    }
    /// After a kill -9 or a disrupted run: wait until what the run held is back in the DLQ (SQS: its
    /// visibility timeout; RabbitMQ: the broker giving up a half-open connection).
    fn after_crash(&mut self) {}
    /// Sources that must be refused with exit 2.
    fn mistakes(&self) -> Vec<Mistake>;
    /// A working source URL with a password in it, and the password.
    fn with_password(&mut self) -> (String, String) {
        panic!("this broker's URLs carry no password; do not list `password_never_printed` for it")
    }
    /// A guard for the test's access to the server (see [`Access`]).
    fn access(_access: Access) -> Box<dyn Any> {
        Box::new(())
    }
}

/// One kit test: the broker, a temporary directory, the audit and archive paths.
pub struct Kit<B: Broker> {
    /// The broker.
    pub broker: B,
    tmp: tempfile::TempDir,
}

impl<B: Broker> Kit<B> {
    fn new(test: &str) -> Self {
        Self {
            broker: B::new(test),
            // REDRIVE_KIT_KEEP=1 keeps each case's directory (journal, audit, archive) for a look afterwards.
            tmp: tempfile::Builder::new()
                .prefix(&format!("redrive-kit-{test}-"))
                .disable_cleanup(std::env::var_os("REDRIVE_KIT_KEEP").is_some())
                .tempdir()
                .unwrap(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    /// `redrive run` from the DLQ to the destination through the kit's chain.
    fn replay(&self) -> Command {
        let mut cmd = self.broker.command(self.tmp.path());
        cmd.args(["run", "--no-progress", "--from", &self.broker.source_url()])
            .args(["--to", &self.broker.destination_url()])
            .args(["-f", &module("route-by-error"), "-f", &module("drop-test-traffic")])
            .arg("--audit-dir")
            .arg(self.path("audit"))
            .arg("--archive")
            .arg(self.path("archive.jsonl"))
            .args(self.broker.run_args());
        cmd
    }

    fn archived(&self) -> Vec<u64> {
        jsonl_values(&self.path("archive.jsonl"))
            .iter()
            .filter_map(|v| order_of_body(v["body"].as_str()?))
            .collect()
    }

    /// Every seeded order is in exactly one place, the one its fate says: at the destination (copies allowed
    /// up to `copies`, each with its message's one replay id), in the DLQ, or in the archive.
    fn assert_reconciled(&mut self, n: u64, copies: usize) {
        let arrived = self.broker.at_destination();
        let in_dlq = self.broker.in_dlq();
        let archived = self.archived();
        let mut replay_ids: BTreeMap<u64, BTreeSet<Option<String>>> = BTreeMap::new();
        for a in &arrived {
            replay_ids.entry(a.order).or_default().insert(a.replay_id.clone());
        }
        let places = |orders: &mut dyn Iterator<Item = u64>| orders.collect::<BTreeSet<u64>>();
        let replayed = places(&mut arrived.iter().map(|a| a.order));
        let discarded = places(&mut archived.iter().copied());
        let log = self.broker.settled_stay_in_log();
        let in_dlq: Vec<u64> = in_dlq
            .into_iter()
            .filter(|o| !log || !(replayed.contains(o) || discarded.contains(o)))
            .collect();
        let left = places(&mut in_dlq.iter().copied());
        for order in 0..n {
            let expected = fate(order);
            let found: Vec<Fate> = [
                (Fate::Replay, &replayed),
                (Fate::Skip, &left),
                (Fate::Discard, &discarded),
            ]
            .into_iter()
            .filter(|(_, set)| set.contains(&order))
            .map(|(fate, _)| fate)
            .collect();
            assert_eq!(
                found,
                vec![expected],
                "order {order} must be in exactly one place, the {expected:?} one"
            );
        }
        assert!(
            replayed.iter().chain(&left).chain(&discarded).all(|o| *o < n),
            "nothing appears that was not seeded"
        );
        assert_eq!(in_dlq.len(), left.len(), "the DLQ holds each message once");
        assert_eq!(archived.len(), discarded.len(), "the archive holds each message once");
        for (order, ids) in &replay_ids {
            assert_eq!(
                ids.len(),
                1,
                "order {order}: every copy carries its one replay id, got {ids:?}"
            );
            assert!(
                ids.iter().all(Option::is_some),
                "order {order} arrived without a replay id"
            );
        }
        let doubled = arrived.len() - replayed.len();
        assert!(
            doubled <= copies,
            "{doubled} copies arrived twice; at most {copies} may"
        );
    }

    /// Start a replay in the background (it is waited for, or killed, by the caller).
    fn spawn(&self, extra: &[&str]) -> std::process::Child {
        self.replay()
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    fn wait_for_destination(&mut self, at_least: usize) {
        let deadline = Instant::now() + Duration::from_secs(120);
        while self.broker.destination_count() < at_least {
            assert!(Instant::now() < deadline, "the replay did not get going");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

fn crash_allowance<B: Broker>(broker: &B, crashes: usize) -> usize {
    match broker.crash_copies() {
        Copies::None => 0,
        Copies::AtMostPerCrash(n) => n * crashes,
    }
}

/// A 500-message DLQ: every message ends in exactly one place.
pub fn reconciles<B: Broker>() {
    let _access = B::access(Access::Shared);
    let mut k = Kit::<B>::new("reconcile");
    let n = 500;
    k.broker.seed(n);
    let (code, stdout, stderr) = run(&mut k.replay());
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    k.assert_reconciled(n, 0);
}

/// `redrive inspect` lists the orders of what it shows, as JSONL.
fn inspect<B: Broker>(k: &Kit<B>, extra: &[&str]) -> Vec<u64> {
    let mut cmd = k.broker.command(k.tmp.path());
    cmd.args([
        "inspect",
        "-o",
        "json",
        "--limit",
        "100000",
        "--from",
        &k.broker.source_url(),
    ])
    .args(extra);
    let (code, stdout, stderr) = run(&mut cmd);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stderr.contains("nothing was changed"), "{stderr}");
    let mut orders: Vec<u64> = json_lines(&stdout)
        .iter()
        .filter_map(|v| order_of_body(v["body"].as_str()?))
        .collect();
    orders.sort_unstable();
    orders
}

/// `redrive plan` and `redrive inspect` take nothing out of the DLQ and send nothing.
pub fn plan_changes_nothing<B: Broker>() {
    let _access = B::access(Access::Shared);
    let mut k = Kit::<B>::new("plan");
    let n = 50;
    k.broker.seed(n);
    let mut cmd = k.broker.command(k.tmp.path());
    cmd.args(["plan", "--no-progress", "--from", &k.broker.source_url()])
        .args(["-f", &module("route-by-error"), "-f", &module("drop-test-traffic")])
        .arg("--audit-dir")
        .arg(k.path("audit"))
        .arg("--plan-out")
        .arg(k.path("plan.json"));
    let (code, stdout, stderr) = run(&mut cmd);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert_eq!(k.broker.destination_count(), 0, "a plan sends nothing");
    assert!(k.archived().is_empty(), "a plan archives nothing");

    // Looking at the DLQ may drain it (RabbitMQ): inspect first, then count what is left, once.
    assert_eq!(
        inspect(&k, &[]),
        (0..n).collect::<Vec<_>>(),
        "inspect lists every message"
    );
    let invalid: Vec<u64> = (0..n)
        .filter(|o| error_of(*o).is_some_and(|e| e.starts_with("validation")))
        .collect();
    assert_eq!(
        inspect(&k, &["--grep", "VALIDATION failed"]),
        invalid,
        "--grep finds exactly those"
    );
    assert_eq!(k.broker.destination_count(), 0, "inspect sends nothing");
    let mut left = k.broker.in_dlq();
    left.sort_unstable();
    assert_eq!(
        left,
        (0..n).collect::<Vec<_>>(),
        "plan and inspect take nothing out of the DLQ"
    );
}

/// Redrive's connections cut mid-run: nothing lost, no copy beyond the promise.
pub fn dropped_connection<B: Broker>() {
    let _access = B::access(Access::Exclusive);
    let mut k = Kit::<B>::new("dropped");
    let n = 300;
    k.broker.seed(n);
    // 120 replays at 25/s: about 5 s, so a slow cut (rabbitmqctl starts an Erlang VM) still lands mid-run.
    let child = k.spawn(&["--rate", "25/s"]);
    k.wait_for_destination(20);
    k.broker.drop_connections(child.id());
    let replays = (0..n).filter(|o| fate(*o) == Fate::Replay).count();
    assert!(
        k.broker.destination_count() < replays,
        "the connections were cut after the run had forwarded everything: make it slower"
    );
    let out = child.wait_with_output().unwrap();
    let code = out.status.code();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        matches!(code, Some(0 | 1)),
        "the run recovers or ends cleanly: {code:?}\n{stderr}"
    );
    // A copy may arrive twice only when the cut took its send's confirmation with it: the run reports
    // each such send, and it stays in the DLQ for the next run or is sent again.
    let in_doubt = copies_reported(&stderr);
    let (code, stdout, stderr) = run(&mut k.replay());
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    k.assert_reconciled(n, in_doubt);
}

/// A paced 300-message run that `disrupt` strikes once 20 replays arrived: the run must recover or end
/// cleanly within 4 minutes (never hang); a second run finishes. Nothing lost; a copy only for a send the
/// run reported in doubt ([`copies_reported`]).
fn disrupted_mid_run<B: Broker>(test: &str, what: &str, disrupt: impl FnOnce(&mut B)) {
    let _access = B::access(Access::Exclusive);
    let mut k = Kit::<B>::new(test);
    let n = 300;
    k.broker.seed(n);
    let child = k.spawn(&["--rate", "25/s"]);
    k.wait_for_destination(20);
    disrupt(&mut k.broker);
    let out = output_within(child, Duration::from_secs(240), &format!("after {what}"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "the run recovers or ends cleanly after {what}: {:?}\n{stderr}",
        out.status.code()
    );
    let in_doubt = copies_reported(&stderr);
    eprintln!("after {what}: the run reported {in_doubt} sends that may arrive twice");
    k.broker.after_crash();
    let (code, stdout, stderr) = run(&mut k.replay());
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    k.assert_reconciled(n, in_doubt);
}

/// How many copies a run said it may have made: each send whose confirmation was lost and left in the DLQ
/// ("a later run tries again"), and each send whose answer was lost and that was tried again ("a copy may
/// arrive twice").
fn copies_reported(stderr: &str) -> usize {
    stderr.matches("a later run tries again").count() + stderr.matches("a copy may arrive twice").count()
}

/// The server restarted mid-run (stopped for a few seconds, then started): the run reconnects and finishes,
/// or stops cleanly; a second run finishes. Nothing lost; a copy only for a send the run reported in doubt.
pub fn broker_restarted<B: Broker>() {
    disrupted_mid_run::<B>("restarted", "the restart", B::restart_server);
}

/// A slow network (100 ms each way on every chunk) from the start: the run is slower and loses and doubles
/// nothing.
pub fn slow_connection<B: Broker>() {
    let _access = B::access(Access::Exclusive);
    let mut k = Kit::<B>::new("slow");
    let n = 200;
    k.broker.seed(n);
    k.broker.delay_connections(Duration::from_millis(100));
    let (code, stdout, stderr) = run(&mut k.replay());
    k.broker.delay_connections(Duration::ZERO);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    k.assert_reconciled(n, 0);
}

/// Redrive's connections hang mid-run (half-open: nothing answers, nothing closes; new connections
/// work): the run notices within its timeouts and recovers, or stops with nothing lost, instead of hanging;
/// a second run finishes.
pub fn stalled_connection<B: Broker>() {
    disrupted_mid_run::<B>("stalled", "stalling its connections", B::stall_connections);
}

/// kill -9 mid-run, three times, each time resuming with the same command; then a run to the end: nothing
/// lost, no copy beyond the promise. No rate limit: the forwarder is always sending, so a kill lands
/// between a send and its journaled confirmation as often as anywhere.
pub fn kill_9_then_resume<B: Broker>() {
    let _access = B::access(Access::Shared);
    let mut k = Kit::<B>::new("kill9");
    let n = 500;
    k.broker.seed(n);
    let kills = 3;
    for kill in 1..=kills {
        let mut child = k.spawn(&[]);
        k.wait_for_destination(40 * kill);
        child.kill().unwrap();
        child.wait().unwrap();
        k.broker.after_crash();
    }
    let (code, stdout, stderr) = run(&mut k.replay());
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let allowance = crash_allowance(&k.broker, kills);
    k.assert_reconciled(n, allowance);
}

/// The re-poison breaker: the destination's consumer fails every replay again and it comes back to the
/// DLQ; the run stops forwarding soon after (exit 5), names the error they came back with, and loses
/// nothing: every seeded message is at the destination, back in the DLQ, still there, or archived.
pub fn returning_replays_trip_the_breaker<B: Broker>() {
    let _access = B::access(Access::Shared);
    let mut k = Kit::<B>::new("returning");
    let n = 400;
    k.broker.seed(n);
    // 160 replays at 20/s: eight seconds, while returns are seen within about a second.
    let mut child = k.spawn(&["--rate", "20/s"]);
    let mut returned = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the breaker did not stop the run");
        returned.extend(k.broker.fail_again());
        std::thread::sleep(Duration::from_millis(100));
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(5), "exit 5: the breaker\n{stdout}\n{stderr}");
    assert!(stdout.contains("came back to the DLQ"), "{stdout}");
    assert!(
        stdout.contains("still failing: sku <n> unknown"),
        "the error they came back with is named: {stdout}"
    );
    let replays: BTreeSet<u64> = (0..n).filter(|o| fate(*o) == Fate::Replay).collect();
    let arrived = k.broker.at_destination();
    let mut forwarded: BTreeSet<u64> = arrived.iter().map(|a| a.order).collect();
    forwarded.extend(&returned);
    assert!(
        returned.len() >= 5 && forwarded.len() < replays.len() / 2,
        "it stopped early: {} of {} replays forwarded, {} came back",
        forwarded.len(),
        replays.len(),
        returned.len()
    );
    assert!(forwarded.is_subset(&replays), "only replays were forwarded");
    let in_dlq: BTreeSet<u64> = k.broker.in_dlq().into_iter().collect();
    let archived: BTreeSet<u64> = k.archived().into_iter().collect();
    for order in 0..n {
        assert!(
            forwarded.contains(&order) || in_dlq.contains(&order) || archived.contains(&order),
            "order {order} is nowhere"
        );
    }
    let mut ids: BTreeMap<u64, BTreeSet<Option<String>>> = BTreeMap::new();
    for a in &arrived {
        ids.entry(a.order).or_default().insert(a.replay_id.clone());
    }
    assert!(
        ids.values().all(|ids| ids.len() == 1),
        "one replay id per message: {ids:?}"
    );
    assert_eq!(arrived.len(), ids.len(), "nothing forwarded twice");
}

/// kill -9 at random moments of a 2 000-message replay, each run resumed by the next: while it starts (the
/// lock, the journal), reads, decides, sends, journals and settles. Then a run to the end: nothing lost, no
/// copy beyond the promise. The seed is printed; `REDRIVE_KILL_SEED=N` repeats a sequence.
pub fn kill_9_at_random_points<B: Broker>() {
    let _access = B::access(Access::Shared);
    let mut k = Kit::<B>::new("randomkill");
    let n = 2000;
    k.broker.seed(n);
    let seed = std::env::var("REDRIVE_KILL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| fastrand::u64(..));
    eprintln!("kill_9_at_random_points: REDRIVE_KILL_SEED={seed}");
    let mut rng = fastrand::Rng::with_seed(seed);
    let kills = k.broker.random_kills();
    // Paced, so the 800 replays spread over many runs and most kills land mid-send: at 50/s the runs (at most
    // 80, each killed within 0.4 s) cannot replay them all, so every run has work left when its kill comes. (At
    // 100/s a quick machine finished the work within the first half of the file kit's 80 runs.)
    let mut finished_early = 0;
    for _ in 0..kills {
        let mut child = k.spawn(&["--rate", "50/s"]);
        std::thread::sleep(Duration::from_millis(rng.u64(0..400)));
        if child.try_wait().unwrap().is_some() {
            finished_early += 1;
        }
        child.kill().ok();
        child.wait().unwrap();
        k.broker.after_crash();
    }
    let (code, stdout, stderr) = run(&mut k.replay());
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(
        finished_early * 2 < kills,
        "{finished_early} of {kills} runs ended before their kill: the kills did not land mid-run"
    );
    let allowance = crash_allowance(&k.broker, kills);
    k.assert_reconciled(n, allowance);
}

/// The steps between two durable writes where a crash is the most dangerous, and on which hit of each a
/// crash is injected: a batch about to be sent, sent and not yet journaled as confirmed, confirmed and not
/// yet acked, archived and not yet journaled, acked and not yet journaled (`REDRIVE_CRASH_AT`, see
/// `pipeline/crash_point.rs`). Discards are archived in one or two batches, hence its first hit.
const CRASH_STEPS: [(&str, std::ops::RangeInclusive<u64>); 5] = [
    ("sending", 2..=4),
    ("sent", 2..=4),
    ("confirmed", 2..=4),
    ("archived", 1..=1),
    ("acked", 2..=3),
];

/// A crash exactly at each step between two durable writes (random kills almost never land in those
/// microsecond windows): the run kills itself there (SIGKILL), the next run with the same command finishes,
/// and nothing is lost or doubled beyond the broker's promise: a crash while a batch is out (`sent`, or
/// another stage's step while the forwarder sends) may repeat that batch, and not even that where the
/// destination is read back; a crash just before a send or just after its journaled confirmation repeats
/// nothing anywhere.
pub fn crash_at_each_step<B: Broker>() {
    let _access = B::access(Access::Shared);
    for (step, hits) in CRASH_STEPS {
        let mut k = Kit::<B>::new(&format!("crash{step}"));
        let n = 200;
        k.broker.seed(n);
        let hit = fastrand::u64(hits);
        let child = k
            .replay()
            .args(["--rate", "200/s"])
            .env("REDRIVE_CRASH_AT", format!("{step}:{hit}"))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let out = output_within(child, Duration::from_secs(120), &format!("a run to crash at `{step}`"));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(&format!("crash point `{step}` reached (hit {hit})")) && out.status.code().is_none(),
            "the run was to kill itself at `{step}` (hit {hit}): {:?}\n{stderr}",
            out.status
        );
        k.broker.after_crash();
        let (code, stdout, stderr) = run(&mut k.replay());
        assert_eq!(code, 0, "the run after a crash at `{step}`:\n{stdout}\n{stderr}");
        // At `sending` and `confirmed` the forwarder itself stops, with nothing else in flight. At `sent` its
        // batch is in doubt; at `archived` and `acked` another stage stops the process while the forwarder may
        // have a batch out: a crash anywhere else, as far as the destination can tell.
        let copies = match step {
            "sending" | "confirmed" => 0,
            _ => crash_allowance(&k.broker, 1),
        };
        eprintln!("crash at `{step}` (hit {hit}), then a run to the end; at most {copies} copies may arrive twice");
        k.assert_reconciled(n, copies);
    }
}

/// `--to origin`: every message back where it was dead-lettered from.
pub fn to_origin<B: Broker>() {
    let _access = B::access(Access::Shared);
    let mut k = Kit::<B>::new("origin");
    let n = 50;
    k.broker.seed(n);
    let replay_all = format!("{}?default=replay&permanent=nothing-matches", module("route-by-error"));
    let mut cmd = k.broker.command(k.tmp.path());
    cmd.args([
        "run",
        "--no-progress",
        "--from",
        &k.broker.source_url(),
        "--to",
        "origin",
    ])
    .args(["-f", &replay_all])
    .arg("--audit-dir")
    .arg(k.path("audit"));
    let (code, stdout, stderr) = run(&mut cmd);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let mut back = k.broker.at_origin();
    back.sort_unstable();
    assert_eq!(
        back,
        (0..n).collect::<Vec<_>>(),
        "every message is back at its origin, once"
    );
    assert!(k.broker.in_dlq().is_empty(), "and none is left in the DLQ");
}

/// Mistakes are exit 2 with a message that says what is wrong; nothing moves.
pub fn mistakes_are_exit_2<B: Broker>() {
    let _access = B::access(Access::Shared);
    let mut k = Kit::<B>::new("mistakes");
    k.broker.seed(3);
    for mistake in k.broker.mistakes() {
        let mut cmd = k.broker.command(k.tmp.path());
        cmd.args(["run", "--no-progress", "--from", &mistake.url, "--no-filter"])
            .args(["--to", &k.broker.destination_url()])
            .arg("--audit-dir")
            .arg(k.path("audit"));
        let (code, stdout, stderr) = run(&mut cmd);
        assert_eq!(code, 2, "{}: exit 2\n{stdout}\n{stderr}", mistake.what);
        if let Some(password) = password_of(&mistake.url) {
            for text in [&stdout, &stderr] {
                assert_no_password(text, &password, mistake.what);
            }
        }
        assert!(
            stderr.contains(mistake.says),
            "{}: the error should say {:?}:\n{stderr}",
            mistake.what,
            mistake.says
        );
        let line = stderr
            .lines()
            .find(|line| line.starts_with("error: "))
            .unwrap_or_default();
        let causes: Vec<&str> = line.split(": ").collect();
        assert!(
            causes.windows(2).all(|pair| pair[0] != pair[1]),
            "{}: a cause said twice:\n{line}",
            mistake.what
        );
    }
    assert_eq!(k.broker.destination_count(), 0, "nothing moved");
    assert_eq!(k.broker.in_dlq().len(), 3, "nothing left the DLQ");
}

/// A successful run with a password in the source URL: no output, journal or audit file shows it.
pub fn password_never_printed<B: Broker>() {
    let _access = B::access(Access::Shared);
    let mut k = Kit::<B>::new("password");
    let n = 10;
    k.broker.seed(n);
    let (url, password) = k.broker.with_password();
    for extra in [&[][..], &["-v", "-o", "json"][..]] {
        let mut cmd = k.broker.command(k.tmp.path());
        cmd.args([
            "run",
            "--no-progress",
            "--from",
            &url,
            "--to",
            &k.broker.destination_url(),
        ])
        .args(["-f", &module("route-by-error"), "-f", &module("drop-test-traffic")])
        .arg("--audit-dir")
        .arg(k.path("audit"))
        .arg("--archive")
        .arg(k.path("archive.jsonl"))
        .args(k.broker.run_args())
        .args(extra);
        let (code, stdout, stderr) = run(&mut cmd);
        assert_eq!(code, 0, "{stdout}\n{stderr}");
        for text in [&stdout, &stderr] {
            assert_no_password(text, &password, "the output");
        }
    }
    let mut files = vec![k.path("archive.jsonl")];
    files.extend(std::fs::read_dir(k.path("audit")).unwrap().map(|e| e.unwrap().path()));
    for file in files {
        let text = String::from_utf8_lossy(&std::fs::read(&file).unwrap_or_default()).into_owned();
        assert_no_password(&text, &password, &file.display().to_string());
    }
}

/// The password in a URL's user-info, decoded; `None` when the user name holds it too (`guest:guest`: the
/// user name may be shown).
pub fn password_of(url: &str) -> Option<String> {
    let parsed = url::Url::parse(url).ok()?;
    let password = parsed.password().filter(|p| !parsed.username().contains(p))?;
    let bytes = password.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = password.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                decoded.push(byte);
                i += 3;
            }
            (byte, _) => {
                decoded.push(byte);
                i += 1;
            }
        }
    }
    Some(String::from_utf8_lossy(&decoded).into_owned())
}

/// Fails when `text` shows `password`, raw or URL-encoded: any of its alphanumeric runs of four or more
/// characters counts (encoding leaves those as they are).
pub fn assert_no_password(text: &str, password: &str, place: &str) {
    assert!(!text.contains(password), "{place} shows the password:\n{text}");
    for run in password.split(|c: char| !c.is_ascii_alphanumeric()) {
        if run.len() >= 4 {
            assert!(
                !text.contains(run),
                "{place} shows part of the password ({run:?}):\n{text}"
            );
        }
    }
}

/// The kit's cases as `#[test]` functions for `$broker`, in a module `kit_suite`: only those listed.
macro_rules! suite {
    ($broker:ty: $($case:ident),+ $(,)?) => {
        mod kit_suite {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[test]
                fn $case() {
                    crate::kit::$case::<$broker>();
                }
            )+
        }
    };
}

pub(crate) use suite;
