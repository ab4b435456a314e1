//! A fleet of workers on one DLQ (`redrive run --fleet`): one rate limit, one canary, one stop, one view.
//! The DLQ is a Redis Stream on the machine's Redis (127.0.0.1:6379, REDRIVE_TEST_REDIS overrides), read by
//! three workers with their own consumer names; the fleet is coordinated through a Redis of the test's own
//! (redis-server on a free port), so it can be restarted.

mod common;

use std::collections::BTreeSet;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::own_redis::OwnRedis;
use common::{output_within, redrive, run};
use redis::Commands;

fn server() -> String {
    std::env::var("REDRIVE_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379/0".into())
}

/// One test's DLQ and staging streams on the machine's Redis, deleted on drop.
struct Streams {
    prefix: String,
    con: redis::Connection,
}

impl Streams {
    fn new(test: &str) -> Self {
        let con = redis::Client::open(server())
            .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(3)))
            .unwrap_or_else(|e| {
                panic!(
                    "no Redis at {}: {e}. Start it with scripts/services.sh, or set REDRIVE_TEST_REDIS",
                    server()
                )
            });
        Streams {
            prefix: format!("rdt:fleet-{test}:{}", std::process::id()),
            con,
        }
    }

    fn key(&self, part: &str) -> String {
        format!("{}:{part}", self.prefix)
    }

    /// Dead letters `0..n` in the DLQ stream, each with its order number and error; an empty staging stream
    /// (with its consumers' group) to replay to.
    fn seed(&mut self, n: u64) {
        let _: () = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(self.key("staging"))
            .arg("consumers")
            .arg("$")
            .arg("MKSTREAM")
            .query(&mut self.con)
            .unwrap();
        let dlq = self.key("dlq");
        for order in 0..n {
            let payload = format!(r#"{{"order":{order}}}"#);
            let _: String = self
                .con
                .xadd(
                    &dlq,
                    "*",
                    &[("payload", payload.as_str()), ("error", "timeout calling billing")],
                )
                .unwrap();
        }
    }

    /// (entry time in ms, order) of every entry of a stream, in order.
    fn entries(&mut self, part: &str) -> Vec<(u64, u64)> {
        let reply: redis::Value = redis::cmd("XRANGE")
            .arg(self.key(part))
            .arg("-")
            .arg("+")
            .query(&mut self.con)
            .unwrap();
        redrive::brokers::redis::entry_list(&reply)
            .into_iter()
            .map(|e| {
                let ms: u64 = e.id.split('-').next().unwrap().parse().unwrap();
                let fields = e.fields.unwrap();
                let payload = fields.iter().find(|(k, _)| k == b"payload").unwrap();
                let v: serde_json::Value = serde_json::from_slice(&payload.1).unwrap();
                (ms, v["order"].as_u64().unwrap())
            })
            .collect()
    }

    fn len(&mut self, part: &str) -> usize {
        self.con.xlen(self.key(part)).unwrap_or(0)
    }

    fn url(&self, part: &str, query: &str) -> String {
        format!("{}?stream={}{query}", server(), self.key(part))
    }
}

impl Drop for Streams {
    fn drop(&mut self) {
        common::own_redis::delete_test_keys(&mut self.con, &self.prefix);
    }
}

/// A fleet: its Redis (of this test's own) and its name.
struct Fleet {
    redis: OwnRedis,
    name: String,
}

impl Fleet {
    fn new(test: &str) -> Self {
        Fleet {
            redis: OwnRedis::start(),
            name: format!("{test}-{}", std::process::id()),
        }
    }

    fn url(&self) -> String {
        format!("{}?name={}", self.redis.url(), self.name)
    }

    /// `redrive fleet ARGS NAME --redis URL`.
    fn command(&self, tmp: &std::path::Path, verb: &str, extra: &[&str]) -> (i32, String, String) {
        run(redrive(tmp)
            .args(["fleet", verb, &self.name, "--redis", &self.redis.url()])
            .args(extra))
    }

    fn status(&self, tmp: &std::path::Path) -> serde_json::Value {
        let (code, out, err) = self.command(tmp, "status", &["-o", "json"]);
        assert_eq!(code, 0, "{out}\n{err}");
        serde_json::from_str(out.trim()).unwrap()
    }
}

/// Start worker `i` of the fleet on the DLQ, replaying everything to the staging stream.
fn worker(tmp: &std::path::Path, s: &Streams, fleet: &Fleet, i: usize, rate: &str) -> Child {
    worker_with(tmp, s, fleet, i, &["--rate", rate])
}

fn worker_with(tmp: &std::path::Path, s: &Streams, fleet: &Fleet, i: usize, extra: &[&str]) -> Child {
    redrive(tmp)
        .args(["run", "--no-progress", "--no-filter"])
        .args(["--from", &s.url("dlq", &format!("&consumer=w{i}&reconnect=30s"))])
        .args(["--to", &s.url("staging", "")])
        .args(["--fleet", &fleet.url(), "--canary", "5"])
        .args(extra)
        .arg("--audit-dir")
        .arg(tmp.join(format!("audit-{i}")))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// The fleet's canary gate says no: the worker that ran it and the ones waiting for it all stop (exit 4),
/// and nothing past the canary was forwarded.
#[test]
fn a_failed_fleet_canary_stops_every_worker() {
    let mut s = Streams::new("gate");
    let fleet = Fleet::new("gate");
    let n = 300;
    s.seed(n);
    let tmp = tempfile::tempdir().unwrap();
    let workers: Vec<Child> = (0..3)
        .map(|i| worker_with(tmp.path(), &s, &fleet, i, &["--rate", "50/s", "--verify-cmd", "exit 1"]))
        .collect();
    for w in workers {
        let out = output_within(w, Duration::from_secs(60), "a worker after the canary failed");
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        assert_eq!(out.status.code(), Some(4), "the gate said no: {stdout}\n{stderr}");
    }
    assert_eq!(s.len("staging"), 5, "only the one canary was forwarded");
    assert_reconciled(&mut s, n);
}

/// Every order at the destination once, or still in the DLQ: nothing lost, nothing doubled.
fn assert_reconciled(s: &mut Streams, n: u64) {
    let staged: Vec<u64> = s.entries("staging").into_iter().map(|(_, o)| o).collect();
    let unique: BTreeSet<u64> = staged.iter().copied().collect();
    assert_eq!(unique.len(), staged.len(), "nothing forwarded twice");
    let left: BTreeSet<u64> = s.entries("dlq").into_iter().map(|(_, o)| o).collect();
    for order in 0..n {
        assert!(
            unique.contains(&order) || left.contains(&order),
            "order {order} is neither at the destination nor in the DLQ"
        );
    }
}

/// The `replayed` count of a run's summary.
fn replayed_in(stdout: &str) -> u64 {
    stdout
        .lines()
        .find_map(|l| l.trim_start().strip_prefix("replayed"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no replayed count in {stdout}"))
}

fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Three workers on one DLQ at `--rate 50/s`: the fleet together goes at 50/s (within 5%), one of them
/// runs the canary and the others wait for its verdict, and every message is replayed once.
#[test]
fn three_workers_share_one_rate_and_one_canary() {
    let mut s = Streams::new("rate");
    let fleet = Fleet::new("rate");
    let n = 600;
    s.seed(n);
    let tmp = tempfile::tempdir().unwrap();
    let workers: Vec<Child> = (0..3).map(|i| worker(tmp.path(), &s, &fleet, i, "50/s")).collect();
    let outputs: Vec<_> = workers
        .into_iter()
        .map(|w| output_within(w, Duration::from_secs(120), "a worker"))
        .collect();
    let mut waited = 0;
    let mut shares = Vec::new();
    for out in &outputs {
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
        if stderr.contains("another worker of the fleet runs it; waiting for its verdict") {
            waited += 1;
        }
        shares.push(replayed_in(&stdout));
    }
    assert_eq!(
        waited, 2,
        "one worker ran the canary, the other two waited for its verdict"
    );
    assert!(
        shares.iter().all(|share| *share >= n / 10),
        "the workers shared the DLQ (none read it all ahead of the others): {shares:?}"
    );
    assert_reconciled(&mut s, n);
    let staged = s.entries("staging");
    assert_eq!(staged.len() as u64, n, "every message replayed");
    // The fleet's rate, between the 50th and the 550th replay (the stream's ids are its clock).
    let (first, last) = (staged[50].0, staged[550].0);
    let rate = 500.0 / ((last - first) as f64 / 1000.0);
    eprintln!("fleet rate: {rate:.2}/s for --rate 50/s over three workers");
    assert!(
        (47.5..=52.5).contains(&rate),
        "the fleet's rate is within 5% of --rate 50/s: {rate:.2}/s"
    );
}

/// `redrive fleet status`, `pause`, `resume` and `stop` reach every worker: paused, nothing more goes out;
/// resumed, it goes on; stopped, every worker drains as Ctrl-C does (exit 130), and nothing is lost.
#[test]
fn one_stop_one_pause_one_view_for_the_fleet() {
    let mut s = Streams::new("control");
    let fleet = Fleet::new("control");
    let n = 600;
    s.seed(n);
    let tmp = tempfile::tempdir().unwrap();
    let workers: Vec<Child> = (0..3).map(|i| worker(tmp.path(), &s, &fleet, i, "30/s")).collect();
    wait_for("the first replays", Duration::from_secs(60), || s.len("staging") >= 30);

    let status = fleet.status(tmp.path());
    let listed = status["workers"].as_array().unwrap();
    assert_eq!(listed.len(), 3, "{status}");
    assert!(
        listed
            .iter()
            .all(|w| w["gone"] == false && w["host"].is_string() && w["pid"].is_u64()),
        "{status}"
    );

    let (code, out, err) = fleet.command(tmp.path(), "pause", &[]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("live workers: 3"), "{out}");
    std::thread::sleep(Duration::from_millis(1500));
    let held = s.len("staging");
    std::thread::sleep(Duration::from_secs(2));
    let after = s.len("staging");
    assert!(after - held <= 9, "paused: {held} then {after}");
    let status = fleet.status(tmp.path());
    assert_eq!(status["control"], "pause", "{status}");
    assert!(
        status["workers"]
            .as_array()
            .unwrap()
            .iter()
            .all(|w| w["state"] == "paused"),
        "{status}"
    );

    let (code, out, err) = fleet.command(tmp.path(), "resume", &[]);
    assert_eq!(code, 0, "{out}\n{err}");
    wait_for("forwarding after resume", Duration::from_secs(5), || {
        s.len("staging") > after + 10
    });

    let (code, out, err) = fleet.command(tmp.path(), "stop", &[]);
    assert_eq!(code, 0, "{out}\n{err}");
    let stopped_at = Instant::now();
    for w in workers {
        let out = output_within(w, Duration::from_secs(30), "a worker after `redrive fleet stop`");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(130), "drained as Ctrl-C does: {stdout}");
        assert!(stdout.contains("interrupted"), "{stdout}");
    }
    assert!(
        stopped_at.elapsed() < Duration::from_secs(10),
        "every worker stopped promptly"
    );
    assert!(s.len("staging") < n as usize, "stopped before the end");
    assert_reconciled(&mut s, n);
    let status = fleet.status(tmp.path());
    assert!(
        status["workers"]
            .as_array()
            .unwrap()
            .iter()
            .all(|w| w["state"] == "finished"),
        "{status}"
    );
    let totals = status["totals"]["replayed"].as_u64().unwrap();
    assert_eq!(totals as usize, s.len("staging"), "the totals add up: {status}");
}

/// The fleet's Redis killed mid-run and started again (empty): the workers hold forwarding while it is
/// away, go on when it is back, and every message is replayed once.
#[test]
fn losing_the_fleets_redis_holds_forwarding_and_loses_nothing() {
    let mut s = Streams::new("lost");
    let mut fleet = Fleet::new("lost");
    let n = 400;
    s.seed(n);
    let tmp = tempfile::tempdir().unwrap();
    let workers: Vec<Child> = (0..3).map(|i| worker(tmp.path(), &s, &fleet, i, "40/s")).collect();
    wait_for("the first replays", Duration::from_secs(60), || s.len("staging") >= 40);
    fleet.redis.kill();
    std::thread::sleep(Duration::from_millis(1500));
    let held = s.len("staging");
    std::thread::sleep(Duration::from_secs(2));
    let after = s.len("staging");
    assert!(
        after - held <= 12,
        "held while the fleet's Redis is away: {held} then {after}"
    );
    fleet.redis.up();
    let mut stderr_all = String::new();
    for w in workers {
        let out = output_within(
            w,
            Duration::from_secs(120),
            "a worker after the fleet's Redis came back",
        );
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
        stderr_all.push_str(&stderr);
    }
    assert!(stderr_all.contains("forwarding holds until it is back"), "{stderr_all}");
    assert!(stderr_all.contains("its Redis is back"), "{stderr_all}");
    assert_reconciled(&mut s, n);
    assert_eq!(s.len("staging") as u64, n, "every message replayed once");
}

/// Mistakes in `--fleet` and in `redrive fleet` are clear errors (exit 2), and nothing moves.
#[test]
fn fleet_mistakes_are_clear_errors() {
    let mut s = Streams::new("mistakes");
    s.seed(5);
    let tmp = tempfile::tempdir().unwrap();
    for (fleet, says) in [
        ("redis://127.0.0.1:9/0?name=x", "cannot reach the fleet's Redis"),
        ("redis://127.0.0.1:6379/0", "the fleet needs a name"),
        ("redis://127.0.0.1:6379/0?name=a%20b", "letters, digits"),
        ("amqp://127.0.0.1/?name=x", "through Redis"),
    ] {
        let (code, out, err) = run(redrive(tmp.path())
            .args(["run", "--no-progress", "--no-filter", "--from", &s.url("dlq", "")])
            .args(["--to", &s.url("staging", ""), "--fleet", fleet])
            .arg("--audit-dir")
            .arg(tmp.path().join("audit")));
        assert_eq!(code, 2, "{fleet}: {out}\n{err}");
        assert!(err.contains(says), "{fleet}: {err}");
    }
    assert_eq!(s.len("staging"), 0, "nothing moved");
    assert_eq!(s.len("dlq"), 5);
    let (code, out, err) = run(Command::new(env!("CARGO_BIN_EXE_redrive")).args([
        "fleet",
        "status",
        "no-such-fleet",
        "--redis",
        &server(),
    ]));
    assert_eq!(code, 2, "{out}\n{err}");
    assert!(err.contains("no run is alive"), "{err}");
}

fn amqp_url() -> String {
    std::env::var("REDRIVE_TEST_AMQP_URL").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

/// A RabbitMQ DLQ and staging queue of one test, deleted on drop.
struct Queues {
    rt: tokio::runtime::Runtime,
    channel: lapin::Channel,
    _connection: lapin::Connection,
    prefix: String,
}

impl Queues {
    fn new(test: &str) -> Self {
        use lapin::options::QueueDeclareOptions;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let prefix = format!("redrive-test.fleet-{test}.{}", std::process::id());
        let (connection, channel) = rt.block_on(async {
            let connection = lapin::Connection::connect(&amqp_url(), lapin::ConnectionProperties::default())
                .await
                .unwrap_or_else(|e| {
                    panic!(
                        "RabbitMQ is not reachable at {} ({e}): start it with scripts/services.sh",
                        amqp_url()
                    )
                });
            let channel = connection.create_channel().await.unwrap();
            for q in ["dlq", "staging"] {
                let options = QueueDeclareOptions {
                    durable: true,
                    ..Default::default()
                };
                channel
                    .queue_declare(format!("{prefix}.{q}").as_str().into(), options, Default::default())
                    .await
                    .unwrap();
            }
            (connection, channel)
        });
        Queues {
            rt,
            channel,
            _connection: connection,
            prefix,
        }
    }

    fn url(&self, q: &str, query: &str) -> String {
        format!("{}?queue={}.{q}{query}", amqp_url(), self.prefix)
    }

    fn seed(&self, n: u64) {
        use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
        self.rt.block_on(async {
            self.channel
                .confirm_select(ConfirmSelectOptions::default())
                .await
                .unwrap();
            for order in 0..n {
                let body = format!(r#"{{"order":{order}}}"#);
                let properties = lapin::BasicProperties::default()
                    .with_message_id(format!("m{order}").as_str().into())
                    .with_delivery_mode(2);
                self.channel
                    .basic_publish(
                        "".into(),
                        format!("{}.dlq", self.prefix).as_str().into(),
                        BasicPublishOptions::default(),
                        body.as_bytes(),
                        properties,
                    )
                    .await
                    .unwrap()
                    .await
                    .unwrap();
            }
        });
    }

    /// The orders in a queue, taken out of it.
    fn drain(&self, q: &str) -> Vec<u64> {
        use lapin::options::BasicGetOptions;
        self.rt.block_on(async {
            let mut orders = Vec::new();
            while let Some(got) = self
                .channel
                .basic_get(
                    format!("{}.{q}", self.prefix).as_str().into(),
                    BasicGetOptions { no_ack: true },
                )
                .await
                .unwrap()
            {
                let v: serde_json::Value = serde_json::from_slice(&got.delivery.data).unwrap();
                orders.push(v["order"].as_u64().unwrap());
            }
            orders
        })
    }
}

impl Drop for Queues {
    fn drop(&mut self) {
        use lapin::options::QueueDeleteOptions;
        self.rt.block_on(async {
            for q in ["dlq", "staging"] {
                let _ = self
                    .channel
                    .queue_delete(
                        format!("{}.{q}", self.prefix).as_str().into(),
                        QueueDeleteOptions::default(),
                    )
                    .await;
            }
        });
    }
}

/// Three workers of one fleet on a RabbitMQ DLQ (a small prefetch, so the broker does not push the queue to
/// the first consumer): each takes a share, one canary, every message replayed once.
#[test]
fn three_workers_share_a_rabbitmq_dlq() {
    let q = Queues::new("amqp");
    let fleet = Fleet::new("amqp");
    let n = 300;
    q.seed(n);
    let tmp = tempfile::tempdir().unwrap();
    let workers: Vec<Child> = (0..3)
        .map(|i| {
            redrive(tmp.path())
                .args(["run", "--no-progress", "--no-filter"])
                .args(["--from", &q.url("dlq", "&prefetch=10")])
                .args(["--to", &q.url("staging", "")])
                .args(["--fleet", &fleet.url(), "--canary", "5", "--rate", "60/s"])
                .arg("--audit-dir")
                .arg(tmp.path().join(format!("audit-{i}")))
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut shares = Vec::new();
    let mut waited = 0;
    for w in workers {
        let out = output_within(w, Duration::from_secs(120), "a worker");
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
        if stderr.contains("waiting for its verdict") {
            waited += 1;
        }
        shares.push(replayed_in(&stdout));
    }
    assert_eq!(waited, 2, "one canary for the fleet");
    assert!(
        shares.iter().all(|share| *share >= n / 10),
        "each worker took a share: {shares:?}"
    );
    let staged = q.drain("staging");
    let unique: BTreeSet<u64> = staged.iter().copied().collect();
    assert_eq!(unique.len(), staged.len(), "nothing forwarded twice");
    assert_eq!(unique, (0..n).collect::<BTreeSet<u64>>(), "every message replayed");
    assert!(q.drain("dlq").is_empty());
}
