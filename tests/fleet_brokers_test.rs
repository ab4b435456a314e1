//! A fleet of workers on the other brokers' DLQs: three workers on one RabbitMQ queue and on one SQS queue
//! (the local endpoint), coordinated through a Redis of the test's own. Each worker takes a share, one runs
//! the canary, and every message ends in exactly one place. The SQS fleet also pushes its metrics to the
//! machine's Pushgateway, each worker under its own `worker` label.

mod common;

use std::collections::BTreeSet;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::fleet::{Fleet, replayed_in};
use common::sqs::{Queues as SqsQueues, orders, sqs_redrive};
use common::{output_within, pushgateway, redrive};

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
            spawn(
                tmp.path(),
                i,
                redrive(tmp.path())
                    .args(["run", "--no-progress", "--no-filter"])
                    .args(["--from", &q.url("dlq", "&prefetch=10")])
                    .args(["--to", &q.url("staging", "")])
                    .args(["--fleet", &fleet.url(), "--canary", "5", "--rate", "60/s"]),
            )
        })
        .collect();
    let (shares, waited, _) = finished(workers);
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

/// Start worker `i`: `cmd` with an audit dir of its own, its output captured.
fn spawn(tmp: &std::path::Path, i: usize, cmd: &mut Command) -> Child {
    cmd.arg("--audit-dir")
        .arg(tmp.join(format!("audit-{i}")))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// What each worker of a fleet printed, once all ended with exit 0: its replayed count, how many waited
/// for another worker's canary verdict, and the warnings they printed.
fn finished(workers: Vec<Child>) -> (Vec<u64>, usize, Vec<String>) {
    let mut shares = Vec::new();
    let mut waited = 0;
    let mut warnings = Vec::new();
    for w in workers {
        let out = output_within(w, Duration::from_secs(180), "a worker");
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
        if stderr.contains("waiting for its verdict") {
            waited += 1;
        }
        warnings.extend(stderr.lines().filter(|l| l.starts_with("warning:")).map(str::to_owned));
        shares.push(replayed_in(&stdout));
    }
    (shares, waited, warnings)
}

/// Three workers of one fleet on an SQS DLQ: SQS's visibility timeout hands each message to one of them;
/// each takes a share, one runs the canary, every message is replayed once. Each worker pushes its metrics
/// to its own Pushgateway group, labelled with its worker id, and they add up to the whole.
#[test]
fn three_workers_share_an_sqs_dlq_and_label_their_metrics() {
    let mut q = SqsQueues::new("fleet");
    let dlq = q.create("dlq", &[]);
    let staging = q.create("staging", &[]);
    let n = 300;
    for order in 0..n {
        q.send(&dlq, &format!(r#"{{"order":{order}}}"#), &[], None);
    }
    let (dlq_name, staging_name) = (q.name("dlq"), q.name("staging"));
    let fleet = Fleet::new("sqs");
    let job = format!("redrive-fleet-test-{}", std::process::id());
    let tmp = tempfile::tempdir().unwrap();
    let workers: Vec<Child> = (0..3)
        .map(|i| {
            spawn(
                tmp.path(),
                i,
                sqs_redrive(tmp.path())
                    .args(["run", "--no-progress", "--no-filter"])
                    .args(["--from", &format!("sqs://{dlq_name}")])
                    .args(["--to", &format!("sqs://{staging_name}")])
                    .args(["--fleet", &fleet.url(), "--canary", "5", "--rate", "60/s"])
                    .args(["--metrics-push", &format!("http://127.0.0.1:9091/metrics/job/{job}")]),
            )
        })
        .collect();
    let (shares, waited, warnings) = finished(workers);
    assert_eq!(waited, 2, "one canary for the fleet");
    assert!(
        !warnings.iter().any(|w| w.contains("pushing the metrics")),
        "every worker pushed its metrics: {warnings:?}"
    );
    assert!(
        shares.iter().all(|share| *share >= n / 10),
        "each worker took a share: {shares:?}"
    );
    let staged = orders(&q.drain(&staging));
    let unique: BTreeSet<u64> = staged.iter().copied().collect();
    assert_eq!(unique.len(), staged.len(), "nothing forwarded twice");
    assert_eq!(unique, (0..n).collect::<BTreeSet<u64>>(), "every message replayed");
    assert!(q.drain(&dlq).is_empty(), "the DLQ is empty");

    // Each worker's metrics: a group of its own, every series labelled with its worker id.
    let (_, body) = pushgateway("GET", "/metrics");
    let replayed: Vec<(String, u64)> = body
        .lines()
        .filter(|l| {
            l.starts_with("redrive_messages_total{")
                && l.contains(&format!("job=\"{job}\""))
                && l.contains("outcome=\"replayed\"")
        })
        .map(|l| {
            let worker = l
                .split("worker=\"")
                .nth(1)
                .and_then(|rest| rest.split('"').next())
                .unwrap_or_else(|| panic!("no worker label: {l}"))
                .to_owned();
            let count = l.rsplit(' ').next().unwrap().parse::<f64>().unwrap() as u64;
            (worker, count)
        })
        .collect();
    let workers: BTreeSet<&str> = replayed.iter().map(|(w, _)| w.as_str()).collect();
    assert_eq!(workers.len(), 3, "three workers, three groups: {replayed:?}");
    assert_eq!(replayed.iter().map(|(_, c)| c).sum::<u64>(), n, "{replayed:?}");
    for worker in workers {
        pushgateway("DELETE", &format!("/metrics/job/{job}/worker/{worker}"));
    }
}
