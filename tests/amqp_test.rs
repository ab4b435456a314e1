//! End-to-end tests against a real RabbitMQ (127.0.0.1:5672, guest/guest, or `REDRIVE_TEST_AMQP_URL`).
//!
//! Every test declares its own uniquely named topology — a work exchange and queue whose dead letters go
//! through a DLX to a DLQ, and a staging queue — seeds the DLQ for real (a consumer rejects the messages
//! so RabbitMQ dead-letters them with `x-death`), runs the `redrive` binary, and then reconciles what
//! is in each queue. The topology is deleted afterwards, also when the test fails.
//! Without a reachable broker the tests fail with instructions; they never pass silently.

mod common;
mod kit;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{module, redrive, run};
use futures_util::StreamExt;
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};

/// The kill test closes every connection on the broker: it runs alone, the other tests share.
static BROKER: std::sync::RwLock<()> = std::sync::RwLock::new(());

fn shared_broker() -> std::sync::RwLockReadGuard<'static, ()> {
    BROKER.read().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn broker_url() -> String {
    std::env::var("REDRIVE_TEST_AMQP_URL").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

async fn connect() -> Connection {
    match Connection::connect(&broker_url(), ConnectionProperties::default()).await {
        Ok(c) => c,
        Err(e) => panic!(
            "RabbitMQ is not reachable at {} ({e}).\nThese tests need a real broker: start it with \
             `rabbitmq-server -detached` (or scripts/services.sh), or point REDRIVE_TEST_AMQP_URL at one.",
            broker_url()
        ),
    }
}

/// One test's queues and exchanges: `<p>.x` → `<p>.work` (dead-letters via `<p>.dlx`) → `<p>.dlq`;
/// `<p>.staging` for replays.
struct Topology {
    prefix: String,
}

impl Topology {
    fn new(test: &str) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        Topology {
            prefix: format!("redrive-test.{test}.{}.{nanos}", std::process::id()),
        }
    }
    fn name(&self, part: &str) -> String {
        format!("{}.{part}", self.prefix)
    }
    fn url(&self, query: &str) -> String {
        format!("{}?{query}", broker_url())
    }
    fn dlq_url(&self) -> String {
        self.url(&format!("queue={}", self.name("dlq")))
    }
    fn staging_url(&self) -> String {
        self.url(&format!("queue={}", self.name("staging")))
    }

    /// Declare the topology and seed the DLQ; returns a channel for inspecting the queues.
    fn seeded(&self, rt: &tokio::runtime::Runtime, messages: &[(String, Vec<u8>, FieldTable)]) -> Inspector {
        rt.block_on(async {
            let conn = connect().await;
            let ch = conn.create_channel().await.unwrap();
            self.declare(&ch).await;
            self.seed(&ch, messages).await;
            Inspector { _conn: conn, ch }
        })
    }

    async fn declare(&self, ch: &Channel) {
        let durable = QueueDeclareOptions {
            durable: true,
            ..Default::default()
        };
        let ex = ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        };
        ch.exchange_declare(self.name("x").into(), ExchangeKind::Direct, ex, FieldTable::default())
            .await
            .unwrap();
        ch.exchange_declare(self.name("dlx").into(), ExchangeKind::Fanout, ex, FieldTable::default())
            .await
            .unwrap();
        let mut args = FieldTable::default();
        args.insert(
            "x-dead-letter-exchange".into(),
            AMQPValue::LongString(self.name("dlx").into()),
        );
        for (queue, args) in [
            ("work", args),
            ("dlq", FieldTable::default()),
            ("staging", FieldTable::default()),
        ] {
            ch.queue_declare(self.name(queue).into(), durable, args).await.unwrap();
        }
        ch.queue_bind(
            self.name("work").into(),
            self.name("x").into(),
            "orders.created".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
        ch.queue_bind(
            self.name("dlq").into(),
            self.name("dlx").into(),
            "".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    }

    /// Publish `messages` to the work exchange, then reject each one from the work queue so RabbitMQ
    /// dead-letters it into the DLQ, as a failing consumer would.
    async fn seed(&self, ch: &Channel, messages: &[(String, Vec<u8>, FieldTable)]) {
        ch.confirm_select(ConfirmSelectOptions::default()).await.ok();
        for (id, body, headers) in messages {
            let props = BasicProperties::default()
                .with_message_id(id.as_str().into())
                .with_content_type("application/json".into())
                .with_delivery_mode(2)
                .with_headers(headers.clone());
            ch.basic_publish(
                self.name("x").into(),
                "orders.created".into(),
                BasicPublishOptions::default(),
                body,
                props,
            )
            .await
            .unwrap()
            .await
            .unwrap();
        }
        let mut consumer = ch
            .basic_consume(
                self.name("work").into(),
                "failing-consumer".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .unwrap();
        for _ in messages {
            let delivery = tokio::time::timeout(Duration::from_secs(10), consumer.next())
                .await
                .expect("work queue delivery")
                .unwrap()
                .unwrap();
            delivery.reject(BasicRejectOptions { requeue: false }).await.unwrap();
        }
        ch.basic_cancel("failing-consumer".into(), BasicCancelOptions::default())
            .await
            .unwrap();
        self.wait_depth(ch, "dlq", messages.len() as u32).await;
    }

    /// Declare the topology and seed the DLQ on a connection of its own, closed afterwards.
    fn seed_and_close(&self, rt: &tokio::runtime::Runtime, messages: &[(String, Vec<u8>, FieldTable)]) {
        rt.block_on(async {
            let conn = connect().await;
            let ch = conn.create_channel().await.unwrap();
            self.declare(&ch).await;
            self.seed(&ch, messages).await;
            let _ = conn.close(200, "seeded".into()).await;
        });
    }

    /// The queue as the broker sees it now (a passive declare).
    async fn looked_up(&self, ch: &Channel, queue: &str) -> lapin::Queue {
        ch.queue_declare(
            self.name(queue).into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap()
    }

    async fn depth(&self, ch: &Channel, queue: &str) -> u32 {
        self.looked_up(ch, queue).await.message_count()
    }

    async fn consumers(&self, ch: &Channel, queue: &str) -> u32 {
        self.looked_up(ch, queue).await.consumer_count()
    }

    async fn wait_depth(&self, ch: &Channel, queue: &str, want: u32) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let depth = self.depth(ch, queue).await;
            if depth == want {
                return;
            }
            assert!(Instant::now() < deadline, "{queue}: depth {depth}, expected {want}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Take every message from `queue`, in order: (message id, headers, body, delivery mode).
    async fn drain(&self, ch: &Channel, queue: &str) -> Vec<Taken> {
        let mut out = Vec::new();
        while let Some(got) = ch
            .basic_get(self.name(queue).into(), BasicGetOptions { no_ack: true })
            .await
            .unwrap()
        {
            let props = &got.delivery.properties;
            out.push(Taken {
                id: props.message_id().as_ref().map(|s| s.to_string()).unwrap_or_default(),
                headers: props.headers().clone().unwrap_or_default(),
                body: got.delivery.data.clone(),
                persistent: *props.delivery_mode() == Some(2),
            });
        }
        out
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        let names: Vec<(String, bool)> = ["work", "dlq", "staging"]
            .iter()
            .map(|q| (self.name(q), true))
            .chain(["x", "dlx"].iter().map(|x| (self.name(x), false)))
            .collect();
        // Runs on its own thread: Drop may run inside a test's runtime.
        let _ = std::thread::spawn(move || {
            runtime().block_on(async {
                let Ok(conn) = Connection::connect(&broker_url(), ConnectionProperties::default()).await else {
                    return;
                };
                let Ok(ch) = conn.create_channel().await else { return };
                for (name, is_queue) in names {
                    if is_queue {
                        let _ = ch.queue_delete(name.into(), QueueDeleteOptions::default()).await;
                    } else {
                        let _ = ch.exchange_delete(name.into(), ExchangeDeleteOptions::default()).await;
                    }
                }
                let _ = conn.close(200, "cleanup".into()).await;
            })
        })
        .join();
    }
}

/// A connection kept open with a channel for looking into the queues.
struct Inspector {
    _conn: Connection,
    ch: Channel,
}

impl std::ops::Deref for Inspector {
    type Target = Channel;
    fn deref(&self) -> &Channel {
        &self.ch
    }
}

struct Taken {
    id: String,
    headers: FieldTable,
    body: Vec<u8>,
    persistent: bool,
}

/// Test DLQ contents: by i % 5 — 0, 1: transient error (replay); 2: validation error (skip); 3: test
/// traffic with a transient error (discard); 4: no error recorded (skip, the default).
fn orders(n: usize) -> Vec<(String, Vec<u8>, FieldTable)> {
    (0..n)
        .map(|i| {
            let mut h = FieldTable::default();
            h.insert("tenant".into(), AMQPValue::LongInt(i as i32));
            let error = match i % 5 {
                0 | 1 | 3 => Some("timeout calling billing"),
                2 => Some("validation failed: sku missing"),
                _ => None,
            };
            if let Some(e) = error {
                h.insert("x-exception-message".into(), AMQPValue::LongString(e.into()));
            }
            if i % 5 == 3 {
                h.insert("x-test".into(), AMQPValue::LongString("true".into()));
            }
            let body = format!(r#"{{"order":{i},"quantity":2}}"#).into_bytes();
            (format!("m{i:04}"), body, h)
        })
        .collect()
}

fn chain(cmd: &mut Command) -> &mut Command {
    cmd.args([
        "-f",
        &module("route-by-error"),
        "-f",
        &module("repair-json"),
        "-f",
        &module("drop-test-traffic"),
    ])
}

/// The replay ids each message id arrived with.
fn replay_ids(taken: &[Taken]) -> BTreeMap<String, BTreeSet<String>> {
    let mut by_id: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for t in taken {
        let Some(AMQPValue::LongString(rid)) = t.headers.inner().get("x-redrive-replay-id") else {
            panic!("no replay id on {}", t.id)
        };
        by_id
            .entry(t.id.clone())
            .or_default()
            .insert(String::from_utf8_lossy(rid.as_bytes()).into());
    }
    by_id
}

fn ids(taken: &[Taken]) -> Vec<String> {
    taken.iter().map(|t| t.id.clone()).collect()
}

fn expected(n: usize, keep: impl Fn(usize) -> bool) -> Vec<String> {
    (0..n).filter(|i| keep(*i)).map(|i| format!("m{i:04}")).collect()
}

fn archive_ids(path: &Path) -> Vec<String> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    text.lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect()
}

#[test]
fn replays_a_real_dlq_and_every_message_ends_in_exactly_one_place() {
    let _shared = shared_broker();
    let rt = runtime();
    let topo = Topology::new("reconcile");
    let tmp = tempfile::tempdir().unwrap();
    let n = 100;
    let ch = topo.seeded(&rt, &orders(n));

    let archive = tmp.path().join("archive.jsonl");
    let (code, out, err) = run(chain(
        redrive(tmp.path())
            .args(["run", "--from", &topo.dlq_url(), "--to", &topo.staging_url()])
            .arg("--audit-dir")
            .arg(tmp.path().join("audit"))
            .arg("--archive")
            .arg(&archive),
    ));
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    assert!(
        !out.contains("guest:guest") && !err.contains("guest:guest"),
        "credentials shown:\n{out}\n{err}"
    );

    let (staging, dlq) = rt.block_on(async { (topo.drain(&ch, "staging").await, topo.drain(&ch, "dlq").await) });
    // Every message in exactly one place; skipped ones still in the DLQ, in their original order.
    assert_eq!(ids(&staging), expected(n, |i| i % 5 < 2));
    assert_eq!(archive_ids(&archive), expected(n, |i| i % 5 == 3));
    assert_eq!(ids(&dlq), expected(n, |i| i % 5 == 2 || i % 5 == 4));

    // Replayed: typed headers kept, replay headers added, x-death moved aside, persistent.
    let first = &staging[0];
    let h = first.headers.inner();
    assert_eq!(h.get("tenant"), Some(&AMQPValue::LongInt(0)));
    assert_eq!(h.get("x-redrive-replay-count"), Some(&AMQPValue::LongLongInt(1)));
    assert!(matches!(h.get("x-redrive-replay-id"), Some(AMQPValue::LongString(id)) if id.len() == 32));
    assert!(h.get("x-death").is_none(), "x-death is moved aside by default");
    let Some(AMQPValue::FieldTable(death)) = h.get("x-redrive-original-death") else {
        panic!("x-redrive-original-death missing: {h:?}")
    };
    assert!(death.contains_key("x-death"));
    assert!(first.persistent);
    assert_eq!(first.body, br#"{"order":0,"quantity":2}"#);

    // Still in the DLQ: headers untouched (x-death as RabbitMQ wrote it).
    let kept = dlq[0].headers.inner();
    assert!(
        matches!(kept.get("x-death"), Some(AMQPValue::FieldArray(_))),
        "{kept:?}"
    );
    assert!(kept.get("x-redrive-replay-id").is_none());

    // x-death was read into the failure context and origin.
    let archived: serde_json::Value =
        serde_json::from_str(std::fs::read_to_string(&archive).unwrap().lines().next().unwrap()).unwrap();
    assert_eq!(archived["failure"]["reason"], "rejected", "{archived}");
    assert_eq!(archived["failure"]["error_text"], "timeout calling billing");
    assert_eq!(archived["origin"]["original_queue"], topo.name("work"));
    assert_eq!(archived["origin"]["system"], "rabbitmq");
    assert!(archived["failure"]["last_failed_at"].is_string());
}

/// Where the re-poison breaker cannot watch a queue, the summary says why, and the run goes on.
#[test]
fn the_breaker_says_why_it_cannot_watch_a_queue() {
    let _shared = shared_broker();
    let rt = runtime();
    let topo = Topology::new("watchless");
    let tmp = tempfile::tempdir().unwrap();
    let ch = topo.seeded(&rt, &[]);
    let dlq = topo.dlq_url();
    // The staging queue is bound only to the default exchange: no copy of what reaches it can be bound.
    let cases = [
        (format!("{dlq}&watch=off"), "turned off by watch=off"),
        (
            format!("{dlq}&watch=http://127.0.0.1:9"),
            "management API at http://127.0.0.1:9",
        ),
        (format!("{dlq}&watch=exchange:no-such-exchange"), "no-such-exchange"),
        (topo.staging_url(), "bound to no exchange but the default one"),
    ];
    for (i, (from, says)) in cases.iter().enumerate() {
        rt.block_on(async {
            let queue = if from.contains("staging") { "staging" } else { "dlq" };
            for (id, body, _) in orders(12) {
                ch.basic_publish(
                    "".into(),
                    topo.name(queue).into(),
                    BasicPublishOptions::default(),
                    &body,
                    BasicProperties::default().with_message_id(id.as_str().into()),
                )
                .await
                .unwrap()
                .await
                .unwrap();
            }
        });
        let out_file = tmp.path().join(format!("out-{i}.jsonl"));
        let (code, out, err) = run(redrive(tmp.path())
            .args([
                "run",
                "--no-progress",
                "--no-filter",
                "--rate",
                "4/s",
                "--from",
                from,
                "--to",
            ])
            .arg(format!("file:{}", out_file.display()))
            .arg("--audit-dir")
            .arg(tmp.path().join(format!("audit-{i}"))));
        assert_eq!(code, 0, "{from}: {out}\n{err}");
        assert!(
            out.contains("not watched") && out.contains(says),
            "{from}: the summary says why it could not watch ({says}):\n{out}"
        );
        assert!(!out.contains("guest:guest") && !err.contains("guest:guest"));
    }
}

#[test]
fn plan_reads_without_removing_anything() {
    let _shared = shared_broker();
    let rt = runtime();
    let topo = Topology::new("plan");
    let tmp = tempfile::tempdir().unwrap();
    let n = 30;
    let ch = topo.seeded(&rt, &orders(n));
    let (code, out, err) = run(chain(
        redrive(tmp.path())
            .args(["plan", "--from", &topo.dlq_url()])
            .arg("--plan-out")
            .arg(tmp.path().join("plan.json"))
            .arg("--audit-dir")
            .arg(tmp.path().join("audit")),
    ));
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    assert!(out.contains("replay"), "{out}");
    let dlq = rt.block_on(topo.drain(&ch, "dlq"));
    assert_eq!(
        ids(&dlq),
        expected(n, |_| true),
        "a plan leaves every message, in order"
    );
}

#[test]
fn to_origin_publishes_back_to_the_exchange_and_routing_key_of_x_death() {
    let _shared = shared_broker();
    let rt = runtime();
    let topo = Topology::new("origin");
    let tmp = tempfile::tempdir().unwrap();
    let n = 10;
    let ch = topo.seeded(&rt, &orders(n));
    let (code, out, err) = run(redrive(tmp.path())
        .args(["run", "--from", &topo.dlq_url(), "--to", "origin"])
        .args([
            "-f",
            &format!("{}?default=replay&permanent=nothing-matches", module("route-by-error")),
        ])
        .arg("--audit-dir")
        .arg(tmp.path().join("audit")));
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    let (work, dlq) = rt.block_on(async { (topo.drain(&ch, "work").await, topo.drain(&ch, "dlq").await) });
    assert_eq!(
        ids(&work),
        expected(n, |_| true),
        "routed through the original exchange and key"
    );
    assert!(dlq.is_empty());
}

#[test]
fn an_unroutable_destination_leaves_messages_in_the_dlq() {
    let _shared = shared_broker();
    let rt = runtime();
    let topo = Topology::new("unroutable");
    let tmp = tempfile::tempdir().unwrap();
    let n = 10;
    let ch = topo.seeded(&rt, &orders(n));
    let to = topo.url(&format!("exchange={}&routing_key=nowhere", topo.name("x")));
    let (code, out, err) = run(redrive(tmp.path())
        .args(["run", "--from", &topo.dlq_url(), "--to", &to])
        .args(["-f", &format!("{}?default=replay", module("route-by-error"))])
        .arg("--audit-dir")
        .arg(tmp.path().join("audit")));
    assert_eq!(
        code, 1,
        "send failures make exit code 1\nstdout:\n{out}\nstderr:\n{err}"
    );
    assert!(err.contains("unroutable"), "{err}");
    let (dlq, work) = rt.block_on(async { (topo.drain(&ch, "dlq").await, topo.drain(&ch, "work").await) });
    assert_eq!(
        ids(&dlq),
        expected(n, |_| true),
        "returned messages stay in the DLQ, in order"
    );
    assert!(work.is_empty());
}

#[test]
fn broker_and_topology_mistakes_are_clear_errors_before_anything_moves() {
    let _shared = shared_broker();
    let rt = runtime();
    let topo = Topology::new("errors");
    let tmp = tempfile::tempdir().unwrap();
    let n = 5;
    let ch = topo.seeded(&rt, &orders(n));
    let wrong_password = broker_url().replace("guest:guest", "guest:wrong-s3cret");
    let cases = [
        (
            topo.url("queue=no-such-queue"),
            topo.staging_url(),
            "queue `no-such-queue` does not exist",
        ),
        (
            topo.dlq_url(),
            topo.url("exchange=no-such-exchange"),
            "exchange `no-such-exchange` does not exist",
        ),
        (
            topo.dlq_url(),
            topo.url("queue=no-such-staging"),
            "queue `no-such-staging` does not exist",
        ),
        (
            format!("{wrong_password}?queue={}", topo.name("dlq")),
            topo.staging_url(),
            "refused the login of user `guest`",
        ),
        (
            broker_url().replace("/%2f", "/no-such-vhost") + "?queue=q",
            topo.staging_url(),
            "no-such-vhost",
        ),
        (
            "amqp://guest:guest@127.0.0.1:1/%2f?queue=q".into(),
            topo.staging_url(),
            "refused",
        ),
    ];
    for (from, to, want) in cases {
        let (code, out, err) = run(redrive(tmp.path())
            .args(["run", "--from", &from, "--to", &to])
            .args(["-f", &module("route-by-error")])
            .arg("--audit-dir")
            .arg(tmp.path().join("audit")));
        assert_eq!(code, 2, "{from} -> {to}\nstdout:\n{out}\nstderr:\n{err}");
        assert!(err.contains(want), "{from} -> {to}: expected `{want}` in:\n{err}");
        assert!(
            !err.contains("wrong-s3cret") && !out.contains("wrong-s3cret"),
            "password shown:\n{err}"
        );
    }
    let dlq = rt.block_on(topo.drain(&ch, "dlq"));
    assert_eq!(ids(&dlq), expected(n, |_| true), "nothing moved");
}

/// Close every client connection on the broker (redrive's and this test's) with rabbitmqctl.
fn kill_connections() {
    let status = Command::new("rabbitmqctl")
        .args(["close_all_connections", "redrive test: connection killed mid-run"])
        .stdout(std::process::Stdio::null())
        .status()
        .expect("rabbitmqctl is needed to kill connections (it ships with rabbitmq-server)");
    assert!(status.success(), "rabbitmqctl close_all_connections failed");
}

#[test]
fn a_connection_killed_mid_run_loses_nothing_and_doubles_nothing() {
    let _alone = BROKER.write().unwrap_or_else(std::sync::PoisonError::into_inner);
    let rt = runtime();
    let topo = Topology::new("kill");
    let tmp = tempfile::tempdir().unwrap();
    let n = 300;
    topo.seed_and_close(&rt, &orders(n));
    let audit = tmp.path().join("audit");
    let replay = format!("{}?default=replay&permanent=nothing-matches", module("route-by-error"));
    // A small prefetch keeps the source reading when the connection dies (reconnect mid-pass).
    let from = format!("{}&prefetch=20", topo.dlq_url());
    let child = redrive(tmp.path())
        .args(["run", "--from", &from, "--to", &topo.staging_url(), "--rate", "100/s"])
        .args(["-f", &replay])
        .arg("--audit-dir")
        .arg(&audit)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Kill the connections once the replay is well under way (about a third of the pass at 100/s).
    rt.block_on(async {
        let conn = connect().await;
        let ch = conn.create_channel().await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while topo.depth(&ch, "staging").await < 60 {
            assert!(Instant::now() < deadline, "the replay did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = conn.close(200, "watched".into()).await;
    });
    kill_connections();
    let output = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(err.contains("reconnect"), "the run should have reconnected:\n{err}");
    let code = output.status.code();
    assert!(matches!(code, Some(0 | 1)), "exit {code:?}\n{err}");
    let in_doubt = err.matches("no confirm").count();
    // Left in the DLQ: the sends in doubt and those that failed outright on the dead channel (never sent), each
    // named in a warning.
    let not_forwarded = err.matches("not forwarded, left in the DLQ").count();
    let left = rt.block_on(async {
        let conn = connect().await;
        let ch = conn.create_channel().await.unwrap();
        topo.depth(&ch, "dlq").await as usize
    });
    assert!(
        left <= not_forwarded,
        "{left} messages left after the first run, {not_forwarded} reported not forwarded:\n{err}"
    );
    // Whatever a send lost its confirm for stayed in the DLQ: a second run (same journal) finishes it.
    let (code, out, err2) = run(redrive(tmp.path())
        .args(["run", "--from", &topo.dlq_url(), "--to", &topo.staging_url()])
        .args(["-f", &replay])
        .arg("--audit-dir")
        .arg(&audit));
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err2}");

    let (staging, dlq) = rt.block_on(async {
        let conn = connect().await;
        let ch = conn.create_channel().await.unwrap();
        (topo.drain(&ch, "staging").await, topo.drain(&ch, "dlq").await)
    });
    assert!(dlq.is_empty(), "left in the DLQ: {:?}", ids(&dlq));
    let unique: BTreeSet<String> = ids(&staging).into_iter().collect();
    assert_eq!(unique, expected(n, |_| true).into_iter().collect(), "nothing lost");
    // A copy can only be doubled when its confirm was lost with the connection; it then carries the
    // same replay id, so consumers can drop it.
    assert!(
        replay_ids(&staging).values().all(|rids| rids.len() == 1),
        "one replay id per message"
    );
    let doubled = staging.len() - unique.len();
    assert!(
        doubled <= in_doubt,
        "{doubled} copies doubled but only {in_doubt} confirms were lost:\n{err}"
    );
}

#[test]
fn the_canary_gate_waits_for_a_fixed_consumer() {
    let _shared = shared_broker();
    let rt = runtime();
    let topo = Topology::new("canary");
    let tmp = tempfile::tempdir().unwrap();
    let n = 30;
    let ch = topo.seeded(&rt, &orders(n));
    let replay = format!("{}?default=replay&permanent=nothing-matches", module("route-by-error"));
    let audit = tmp.path().join("audit");

    // A gate that fails: only the canary leaves the DLQ.
    let (code, out, err) = run(redrive(tmp.path())
        .args(["run", "--from", &topo.dlq_url(), "--to", &topo.staging_url()])
        .args(["-f", &replay, "--canary", "5", "--verify-cmd", "exit 1"])
        .arg("--audit-dir")
        .arg(&audit));
    assert_eq!(code, 4, "stdout:\n{out}\nstderr:\n{err}");
    let (staging, dlq) = rt.block_on(async { (topo.drain(&ch, "staging").await, topo.drain(&ch, "dlq").await) });
    assert_eq!(ids(&staging), expected(n, |i| i < 5));
    assert_eq!(ids(&dlq).len(), n - 5);
    // Put them back for the second half of the test.
    rt.block_on(async {
        for t in dlq {
            let props = BasicProperties::default()
                .with_message_id(t.id.as_str().into())
                .with_headers(t.headers);
            ch.basic_publish(
                "".into(),
                topo.name("dlq").into(),
                BasicPublishOptions::default(),
                &t.body,
                props,
            )
            .await
            .unwrap();
        }
        topo.wait_depth(&ch, "dlq", (n - 5) as u32).await;
    });

    // A fixed consumer on the staging queue: it processes what arrives and marks the canary good once
    // five messages parsed; the gate waits for that mark.
    let mark = tmp.path().join("canary-ok");
    let consumer = {
        let (mark, queue) = (mark.clone(), topo.name("staging"));
        rt.spawn(async move {
            let conn = connect().await;
            let ch = conn.create_channel().await.unwrap();
            let mut consumer = ch
                .basic_consume(
                    queue.into(),
                    "fixed".into(),
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await
                .unwrap();
            let mut processed = Vec::new();
            while let Ok(Some(Ok(d))) = tokio::time::timeout(Duration::from_secs(5), consumer.next()).await {
                let ok = serde_json::from_slice::<serde_json::Value>(&d.data).is_ok();
                d.ack(BasicAckOptions::default()).await.unwrap();
                if ok {
                    processed.push(
                        d.properties
                            .message_id()
                            .as_ref()
                            .map(|s| s.to_string())
                            .unwrap_or_default(),
                    );
                }
                if processed.len() == 5 {
                    std::fs::write(&mark, "ok").unwrap();
                }
            }
            processed
        })
    };
    let gate = format!(
        "for i in $(seq 100); do [ -f '{}' ] && exit 0; sleep 0.1; done; exit 1",
        mark.display()
    );
    let (code, out, err) = run(redrive(tmp.path())
        .args(["run", "--from", &topo.dlq_url(), "--to", &topo.staging_url()])
        .args(["-f", &replay, "--canary", "5", "--verify-cmd", &gate])
        .arg("--audit-dir")
        .arg(&audit));
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    let processed = rt.block_on(consumer).unwrap();
    assert_eq!(
        processed.len(),
        n - 5,
        "the fixed consumer got every replay once: {processed:?}"
    );
    let dlq = rt.block_on(topo.drain(&ch, "dlq"));
    assert!(dlq.is_empty());
}

/// The in-flight window a run uses when --max-in-flight is not given (README: "What a crash can repeat").
const DEFAULT_IN_FLIGHT: usize = 64;

#[test]
fn kill_9_mid_run_repeats_at_most_the_in_flight_window_each_with_its_replay_id() {
    let _shared = shared_broker();
    let rt = runtime();
    let topo = Topology::new("kill9");
    let tmp = tempfile::tempdir().unwrap();
    let n = 2000;
    topo.seed_and_close(&rt, &orders(n));
    let audit = tmp.path().join("audit");
    let replay = format!("{}?default=replay&permanent=nothing-matches", module("route-by-error"));
    let replay_cmd = || {
        let mut cmd = redrive(tmp.path());
        cmd.args([
            "run",
            "--no-progress",
            "--from",
            &topo.dlq_url(),
            "--to",
            &topo.staging_url(),
        ])
        .args(["-f", &replay])
        .arg("--audit-dir")
        .arg(&audit);
        cmd
    };
    // kill -9 whenever another 400 have arrived, three times, resuming each time.
    let kills = 3;
    for k in 1..=kills {
        let mut child = replay_cmd()
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        rt.block_on(async {
            let conn = connect().await;
            let ch = conn.create_channel().await.unwrap();
            let deadline = Instant::now() + Duration::from_secs(60);
            while (topo.depth(&ch, "staging").await as usize) < 400 * k {
                assert!(Instant::now() < deadline, "the replay did not get going");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            let _ = conn.close(200, "watched".into()).await;
        });
        child.kill().unwrap(); // SIGKILL, mid-batch
        child.wait().unwrap();
    }
    let (code, out, err) = run(&mut replay_cmd());
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    let (staging, dlq) = rt.block_on(async {
        let conn = connect().await;
        let ch = conn.create_channel().await.unwrap();
        (topo.drain(&ch, "staging").await, topo.drain(&ch, "dlq").await)
    });
    assert!(dlq.is_empty(), "left in the DLQ: {}", dlq.len());
    let unique: BTreeSet<String> = ids(&staging).into_iter().collect();
    assert_eq!(unique.len(), n, "nothing lost");
    assert!(
        replay_ids(&staging).values().all(|r| r.len() == 1),
        "every copy of a message carries its one replay id"
    );
    let doubled = staging.len() - unique.len();
    assert!(
        doubled <= kills * DEFAULT_IN_FLIGHT,
        "{doubled} copies forwarded twice after {kills} kills: at most {DEFAULT_IN_FLIGHT} per kill may be"
    );
}

/// RabbitMQ under the adapter kit: a real DLQ (dead-lettered through a DLX by a consumer that rejects),
/// a staging queue.
struct AmqpKit {
    rt: tokio::runtime::Runtime,
    topo: Topology,
    /// Between redrive and the broker, for `stalled_connection`.
    proxy: common::proxy::Proxy,
    inspector: Inspector,
    /// A user made for `password_never_printed`, deleted at the end.
    user: Option<String>,
}

impl AmqpKit {
    fn rabbitmqctl(args: &[&str]) {
        let out = Command::new("rabbitmqctl")
            .args(args)
            .output()
            .expect("rabbitmqctl is needed (it ships with rabbitmq-server)");
        assert!(
            out.status.success(),
            "rabbitmqctl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl AmqpKit {
    /// `url` through the kit's proxy, with a 5 s heartbeat: a hung connection is noticed after two missed
    /// heartbeats instead of the broker's default two minutes.
    fn through_proxy(&self, url: String) -> String {
        self.proxy.route(&url).replacen('?', "?heartbeat=5&", 1)
    }
}

impl Drop for AmqpKit {
    fn drop(&mut self) {
        if let Some(user) = self.user.take() {
            let _ = Command::new("rabbitmqctl").args(["delete_user", &user]).output();
        }
    }
}

impl kit::Broker for AmqpKit {
    fn new(test: &str) -> Self {
        let rt = runtime();
        let topo = Topology::new(&format!("kit-{test}"));
        let inspector = rt.block_on(async {
            let conn = connect().await;
            let ch = conn.create_channel().await.unwrap();
            topo.declare(&ch).await;
            Inspector { _conn: conn, ch }
        });
        let proxy = common::proxy::Proxy::start(common::proxy::authority(&broker_url()));
        AmqpKit {
            rt,
            topo,
            proxy,
            inspector,
            user: None,
        }
    }

    fn seed(&mut self, n: u64) {
        self.rt.block_on(self.topo.seed(&self.inspector, &orders(n as usize)));
    }

    fn source_url(&self) -> String {
        // A small prefetch keeps the source reading through the pass: a cut connection then meets
        // redeliveries mid-pass.
        format!("{}&prefetch=20", self.through_proxy(self.topo.dlq_url()))
    }

    fn destination_url(&self) -> String {
        self.through_proxy(self.topo.staging_url())
    }

    fn stall_connections(&mut self) {
        assert!(self.proxy.stall() > 0, "redrive has no connection through the proxy");
    }

    fn after_crash(&mut self) {
        // A connection left half-open keeps its unacked messages until the broker gives it up (two missed
        // heartbeats); a killed process's connection is closed at once.
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.rt.block_on(self.topo.consumers(&self.inspector, "dlq")) > 0 {
            assert!(
                Instant::now() < deadline,
                "the broker kept a consumer on the DLQ for 60 s"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn destination_count(&mut self) -> usize {
        self.rt.block_on(self.topo.depth(&self.inspector, "staging")) as usize
    }

    fn at_destination(&mut self) -> Vec<kit::Arrived> {
        let taken = self.rt.block_on(self.topo.drain(&self.inspector, "staging"));
        let ids = replay_ids(&taken);
        taken
            .iter()
            .map(|t| kit::Arrived {
                order: kit::order_of_body(&String::from_utf8_lossy(&t.body)).unwrap(),
                replay_id: ids.get(&t.id).and_then(|r| r.iter().next().cloned()),
            })
            .collect()
    }

    fn in_dlq(&mut self) -> Vec<u64> {
        let taken = self.rt.block_on(self.topo.drain(&self.inspector, "dlq"));
        taken
            .iter()
            .map(|t| kit::order_of_body(&String::from_utf8_lossy(&t.body)).unwrap())
            .collect()
    }

    fn at_origin(&mut self) -> Vec<u64> {
        let taken = self.rt.block_on(self.topo.drain(&self.inspector, "work"));
        taken
            .iter()
            .map(|t| kit::order_of_body(&String::from_utf8_lossy(&t.body)).unwrap())
            .collect()
    }

    fn drop_connections(&mut self, _redrive_pid: u32) {
        // Every connection on the broker: this case runs alone (`access`).
        kill_connections();
        // The inspector's own connection went too.
        self.inspector = self.rt.block_on(async {
            let conn = connect().await;
            let ch = conn.create_channel().await.unwrap();
            Inspector { _conn: conn, ch }
        });
    }

    fn fail_again(&mut self) -> Vec<u64> {
        // The staging queue's consumer fails each replay again and republishes it to the dead-letter exchange
        // with the new error (as Spring AMQP's RepublishMessageRecoverer does): headers kept, so the replay id
        // comes back with it.
        let taken = self.rt.block_on(self.topo.drain(&self.inspector, "staging"));
        self.rt.block_on(async {
            for t in &taken {
                let order = kit::order_of_body(&String::from_utf8_lossy(&t.body)).unwrap();
                let mut headers = t.headers.clone();
                headers.insert(
                    "x-exception-message".into(),
                    AMQPValue::LongString(format!("still failing: sku {order} unknown").into()),
                );
                let props = BasicProperties::default()
                    .with_message_id(t.id.as_str().into())
                    .with_delivery_mode(2)
                    .with_headers(headers);
                self.inspector
                    .ch
                    .basic_publish(
                        self.topo.name("dlx").into(),
                        "".into(),
                        BasicPublishOptions::default(),
                        &t.body,
                        props,
                    )
                    .await
                    .unwrap()
                    .await
                    .unwrap();
            }
        });
        taken
            .iter()
            .map(|t| kit::order_of_body(&String::from_utf8_lossy(&t.body)).unwrap())
            .collect()
    }

    fn restart_server(&mut self) {
        // Durable queues and persistent messages survive it. This case runs alone (`access`).
        Self::rabbitmqctl(&["stop_app"]);
        std::thread::sleep(Duration::from_secs(3));
        Self::rabbitmqctl(&["start_app"]);
        Self::rabbitmqctl(&["await_startup"]);
        self.inspector = self.rt.block_on(async {
            let conn = connect().await;
            let ch = conn.create_channel().await.unwrap();
            Inspector { _conn: conn, ch }
        });
    }

    fn crash_copies(&self) -> kit::Copies {
        kit::Copies::AtMostPerCrash(DEFAULT_IN_FLIGHT)
    }

    fn mistakes(&self) -> Vec<kit::Mistake> {
        let wrong_password = broker_url().replace("guest:guest", "guest:wrong-s3cret");
        vec![
            kit::Mistake {
                what: "a missing queue",
                url: self.topo.url("queue=no-such-queue"),
                says: "queue `no-such-queue` does not exist",
            },
            kit::Mistake {
                what: "a wrong password",
                url: format!("{wrong_password}?queue={}", self.topo.name("dlq")),
                says: "refused the login of user `guest`",
            },
            kit::Mistake {
                what: "a closed port",
                url: "amqp://guest:guest@127.0.0.1:1/%2f?queue=q".into(),
                says: "refused",
            },
        ]
    }

    fn with_password(&mut self) -> (String, String) {
        let user = format!("redrive-kit-{}", std::process::id());
        let password = "Kit#/?@:%& =Secret".to_owned();
        Self::rabbitmqctl(&["add_user", &user, &password]);
        Self::rabbitmqctl(&["set_permissions", "-p", "/", &user, ".*", ".*", ".*"]);
        self.user = Some(user.clone());
        let encoded: String = form_urlencoded::byte_serialize(password.as_bytes())
            .collect::<String>()
            .replace('+', "%20");
        let url = format!(
            "amqp://{user}:{encoded}@127.0.0.1:5672/%2f?queue={}",
            self.topo.name("dlq")
        );
        (url, password)
    }

    fn access(access: kit::Access) -> Box<dyn std::any::Any> {
        match access {
            kit::Access::Shared => Box::new(shared_broker()),
            kit::Access::Exclusive => Box::new(BROKER.write().unwrap_or_else(std::sync::PoisonError::into_inner)),
        }
    }
}

kit::suite!(AmqpKit:
    reconciles,
    plan_changes_nothing,
    dropped_connection,
    stalled_connection,
    broker_restarted,
    kill_9_then_resume,
    kill_9_at_random_points,
    crash_at_each_step,
    to_origin,
    mistakes_are_exit_2,
    password_never_printed,
    returning_replays_trip_the_breaker,
);
