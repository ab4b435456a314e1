//! End-to-end tests against the Google Cloud Pub/Sub emulator (127.0.0.1:8085, started by
//! scripts/services.sh; REDRIVE_TEST_PUBSUB overrides HOST:PORT). Each test makes its own topics and
//! subscriptions, and a real dead-letter queue the way Pub/Sub makes one: messages published to a topic whose
//! subscription has a dead-letter policy (5 delivery attempts), nacked until the service moves them to the
//! dead-letter topic with its `CloudPubSubDeadLetterSource*` attributes.

mod common;
mod kit;

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{module, redrive, run};
use gcloud_googleapis::pubsub::v1::{DeadLetterPolicy, ModifyAckDeadlineRequest, PubsubMessage, PullRequest};
use gcloud_pubsub::client::{Client, ClientConfig};
use gcloud_pubsub::subscription::SubscriptionConfig;
use kit::{body_of, error_of, is_test_traffic, order_of_body};

const PROJECT: &str = "redrive-test";

fn emulator() -> String {
    std::env::var("REDRIVE_TEST_PUBSUB").unwrap_or_else(|_| "127.0.0.1:8085".into())
}

/// A message read back from a subscription.
#[derive(Clone)]
struct Seen {
    body: String,
    attributes: HashMap<String, String>,
    ordering_key: String,
}

/// One test's topics and subscriptions on the emulator: `orders` (the application's topic) with `orders-sub`
/// (dead-letter policy to `dlq`), `dlq` with `dlq-sub` (what redrive reads), `staging` with `staging-sub`
/// (a destination), and `orders-watch` on `orders` (to see what `--to origin` sends back).
struct PubSub {
    rt: tokio::runtime::Runtime,
    client: Client,
    prefix: String,
}

impl PubSub {
    fn new(test: &str) -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let client = rt.block_on(async {
            let config = ClientConfig {
                project_id: Some(PROJECT.into()),
                environment: gcloud_gax::conn::Environment::Emulator(emulator()),
                ..Default::default()
            };
            Client::new(config).await.unwrap_or_else(|e| {
                panic!(
                    "no Pub/Sub emulator at {}: {e}. Start it with scripts/services.sh, or set REDRIVE_TEST_PUBSUB",
                    emulator()
                )
            })
        });
        let p = PubSub {
            rt,
            client,
            prefix: format!("{test}-{}", std::process::id()),
        };
        for topic in ["orders", "dlq", "staging"] {
            let id = p.name(topic);
            p.rt.block_on(p.client.create_topic(&id, None, None)).unwrap();
        }
        let dead_letter = SubscriptionConfig {
            ack_deadline_seconds: 10,
            dead_letter_policy: Some(DeadLetterPolicy {
                dead_letter_topic: p.path("topics", "dlq"),
                max_delivery_attempts: 5,
            }),
            ..Default::default()
        };
        p.subscribe("orders-sub", "orders", dead_letter);
        for (sub, topic) in [("dlq-sub", "dlq"), ("staging-sub", "staging")] {
            p.subscribe(
                sub,
                topic,
                SubscriptionConfig {
                    ack_deadline_seconds: 10,
                    ..Default::default()
                },
            );
        }
        p
    }

    fn name(&self, short: &str) -> String {
        format!("{}-{short}", self.prefix)
    }

    fn path(&self, kind: &str, short: &str) -> String {
        format!("projects/{PROJECT}/{kind}/{}", self.name(short))
    }

    fn subscribe(&self, sub: &str, topic: &str, config: SubscriptionConfig) {
        let (sub, topic) = (self.name(sub), self.name(topic));
        self.rt
            .block_on(self.client.create_subscription(&sub, &topic, config, None))
            .unwrap();
    }

    fn publish(&self, topic: &str, messages: Vec<PubsubMessage>) {
        // The publisher starts its tasks on the runtime it is made in.
        let _runtime = self.rt.enter();
        let publisher = self.client.topic(&self.name(topic)).new_publisher(None);
        for chunk in messages.chunks(500) {
            self.rt
                .block_on(publisher.publish_immediately(chunk.to_vec(), None))
                .unwrap();
        }
    }

    /// Pull whatever is available now from `sub`: (ack id, message, delivery attempt).
    fn pull(&self, sub: &str) -> Vec<(String, PubsubMessage, i32)> {
        #[allow(deprecated)]
        let request = PullRequest {
            subscription: self.path("subscriptions", sub),
            return_immediately: true,
            max_messages: 1000,
        };
        let client = self.client.subscription(&self.path("subscriptions", sub)).get_client();
        let response = self.rt.block_on(client.pull(request, None)).unwrap().into_inner();
        response
            .received_messages
            .into_iter()
            .filter_map(|m| Some((m.ack_id, m.message?, m.delivery_attempt)))
            .collect()
    }

    fn set_deadline(&self, sub: &str, ack_ids: Vec<String>, seconds: i32) {
        if ack_ids.is_empty() {
            return;
        }
        let client = self.client.subscription(&self.path("subscriptions", sub)).get_client();
        let request = ModifyAckDeadlineRequest {
            subscription: self.path("subscriptions", sub),
            ack_ids,
            ack_deadline_seconds: seconds,
        };
        self.rt.block_on(client.modify_ack_deadline(request, None)).unwrap();
    }

    /// Every message `sub` holds now, without taking any: pull until nothing comes, then give all back.
    fn scan(&self, sub: &str) -> Vec<Seen> {
        let mut seen = Vec::new();
        let mut ack_ids = Vec::new();
        let mut empty = 0;
        while empty < 2 {
            let got = self.pull(sub);
            if got.is_empty() {
                empty += 1;
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
            empty = 0;
            for (ack_id, m, _) in got {
                ack_ids.push(ack_id);
                seen.push(Seen {
                    body: String::from_utf8_lossy(&m.data).into_owned(),
                    attributes: m.attributes,
                    ordering_key: m.ordering_key,
                });
            }
        }
        self.set_deadline(sub, ack_ids, 0);
        seen
    }

    /// Take every message `sub` holds now (acknowledged): for destinations, read as they fill.
    fn drain(&self, sub: &str) -> Vec<Seen> {
        let mut seen = Vec::new();
        let mut empty = 0;
        while empty < 2 {
            let got = self.pull(sub);
            if got.is_empty() {
                empty += 1;
                std::thread::sleep(Duration::from_millis(20));
                continue;
            }
            empty = 0;
            let ack_ids: Vec<String> = got.iter().map(|(ack_id, _, _)| ack_id.clone()).collect();
            for (_, m, _) in got {
                seen.push(Seen {
                    body: String::from_utf8_lossy(&m.data).into_owned(),
                    attributes: m.attributes,
                    ordering_key: m.ordering_key,
                });
            }
            let client = self.client.subscription(&self.path("subscriptions", sub)).get_client();
            let request = gcloud_googleapis::pubsub::v1::AcknowledgeRequest {
                subscription: self.path("subscriptions", sub),
                ack_ids,
            };
            self.rt.block_on(client.acknowledge(request, None)).unwrap();
        }
        seen
    }

    fn orders(&self, sub: &str) -> Vec<u64> {
        let mut orders: Vec<u64> = self.scan(sub).iter().filter_map(|s| order_of_body(&s.body)).collect();
        orders.sort_unstable();
        orders
    }

    /// Dead letters `0..n`, made the way Pub/Sub makes them: published to `orders` with the consumer's error
    /// as an attribute, then nacked on `orders-sub` until the service moves each to `dlq`.
    fn seed(&self, n: u64) {
        let messages = (0..n)
            .map(|order| {
                let mut attributes = HashMap::from([("order".to_owned(), order.to_string())]);
                if let Some(error) = error_of(order) {
                    attributes.insert("x-error-message".into(), error.into());
                }
                if is_test_traffic(order) {
                    attributes.insert("x-test".into(), "true".into());
                }
                PubsubMessage {
                    data: body_of(order).into_bytes(),
                    attributes,
                    ordering_key: format!("customer-{}", order % 7),
                    ..Default::default()
                }
            })
            .collect();
        self.publish("orders", messages);
        // The emulator moves a message to the dead-letter topic at the pull after its last nack: keep pulling
        // until `orders-sub` is empty, then check every message arrived there.
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut last_attempts = 0;
        let mut empty = 0;
        while last_attempts < n || empty < 2 {
            assert!(
                Instant::now() < deadline,
                "only {last_attempts} of {n} were delivered 5 times"
            );
            let got = self.pull("orders-sub");
            if got.is_empty() {
                empty += 1;
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
            empty = 0;
            last_attempts += got.iter().filter(|(_, _, attempt)| *attempt >= 5).count() as u64;
            let ack_ids = got.into_iter().map(|(ack_id, _, _)| ack_id).collect();
            self.set_deadline("orders-sub", ack_ids, 0);
        }
        let mut in_dlq = self.orders("dlq-sub").len() as u64;
        while in_dlq < n {
            assert!(
                Instant::now() < deadline,
                "only {in_dlq} of {n} reached the dead-letter topic"
            );
            self.pull("orders-sub");
            std::thread::sleep(Duration::from_millis(100));
            in_dlq = self.orders("dlq-sub").len() as u64;
        }
    }

    fn source_url(&self, query: &str) -> String {
        format!(
            "pubsub://{}?emulator={}{query}",
            self.path("subscriptions", "dlq-sub"),
            emulator()
        )
    }

    fn staging_url(&self) -> String {
        format!("pubsub://{}?emulator={}", self.path("topics", "staging"), emulator())
    }
}

fn audit<'a>(cmd: &'a mut Command, dir: &Path) -> &'a mut Command {
    cmd.arg("--audit-dir").arg(dir).arg("--no-progress")
}

#[test]
fn dead_letters_keep_their_context_attributes_and_ordering_keys() {
    let p = PubSub::new("context");
    p.seed(10);
    let tmp = tempfile::tempdir().unwrap();
    let archive = tmp.path().join("archive.jsonl");
    let (code, out, err) = run(audit(
        redrive(tmp.path())
            .args(["run", "--from", &p.source_url(""), "--to", &p.staging_url()])
            .args(["-f", &module("route-by-error"), "-f", &module("drop-test-traffic")])
            .arg("--archive")
            .arg(&archive),
        &tmp.path().join("audit"),
    ));
    assert_eq!(code, 0, "{out}\n{err}");
    let staged = p.scan("staging-sub");
    assert_eq!(staged.len(), 4, "orders 0, 1, 5, 6 time out: replayed");
    let first = staged.iter().find(|s| order_of_body(&s.body) == Some(0)).unwrap();
    assert_eq!(first.ordering_key, "customer-0");
    assert_eq!(first.attributes["order"], "0");
    assert_eq!(first.attributes["x-redrive-replay-count"], "1");
    assert!(first.attributes.contains_key("x-redrive-replay-id"));
    assert_eq!(
        first.attributes["x-redrive-original-CloudPubSubDeadLetterSourceDeliveryCount"],
        "5"
    );
    assert!(!first.attributes.contains_key("CloudPubSubDeadLetterSourceSubscription"));
    assert!(!first.attributes.keys().any(|k| k.starts_with("pubsub.")));
    let archived = std::fs::read_to_string(&archive).unwrap();
    let a: serde_json::Value = serde_json::from_str(archived.lines().next().unwrap()).unwrap();
    assert_eq!(a["origin"]["system"], "pubsub");
    assert_eq!(
        a["origin"]["original_queue"],
        p.path("subscriptions", "orders-sub").as_str()
    );
    assert_eq!(a["failure"]["receive_count"], 5);
    assert_eq!(a["failure"]["error_text"], "timeout calling billing");
    assert_eq!(a["attributes"]["pubsub.ordering_key"], "customer-3");
    assert_eq!(p.orders("dlq-sub"), vec![2, 4, 7, 9], "skipped messages stay");
}

#[test]
fn held_messages_keep_their_lease_and_go_back_at_the_end() {
    let p = PubSub::new("lease");
    p.seed(40);
    let tmp = tempfile::tempdir().unwrap();
    // 16 replays at 1/s: the pass lasts well past the subscription's 10 s ack deadline.
    let child = audit(
        redrive(tmp.path())
            .args(["run", "--from", &p.source_url("&lease=12s"), "--to", &p.staging_url()])
            .args(["-f", &module("route-by-error"), "--rate", "1/s"]),
        &tmp.path().join("audit"),
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    // Once redrive has pulled them, another consumer of the DLQ subscription gets nothing while it holds them.
    let mut staged = Vec::new();
    let started = Instant::now();
    while staged.is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the replay did not get going"
        );
        staged.extend(p.drain("staging-sub"));
    }
    let watch_until = Instant::now() + Duration::from_secs(13);
    while Instant::now() < watch_until {
        let got = p.pull("dlq-sub");
        let loose = got.len();
        p.set_deadline("dlq-sub", got.into_iter().map(|(ack_id, _, _)| ack_id).collect(), 0);
        assert_eq!(loose, 0, "messages came loose while redrive held them");
        std::thread::sleep(Duration::from_millis(500));
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    staged.extend(p.drain("staging-sub"));
    let staged: Vec<u64> = {
        let mut o: Vec<u64> = staged.iter().filter_map(|s| order_of_body(&s.body)).collect();
        o.sort_unstable();
        o
    };
    assert_eq!(
        staged,
        (0..40).filter(|o| o % 5 < 2 || o % 5 == 3).collect::<Vec<_>>(),
        "each replay once"
    );
    // What was not replayed is back in the subscription at once, not when a deadline passes.
    assert_eq!(
        p.orders("dlq-sub"),
        (0..40).filter(|o| o % 5 == 2 || o % 5 == 4).collect::<Vec<_>>()
    );
}

#[test]
fn messages_dead_lettered_during_a_pass_belong_to_the_next() {
    let p = PubSub::new("late");
    p.seed(20);
    let tmp = tempfile::tempdir().unwrap();
    let child = audit(
        redrive(tmp.path())
            // One message per pull: the pass is still reading when the late one arrives.
            .args(["run", "--from", &p.source_url("&max=1"), "--no-filter", "--rate", "4/s"])
            .args(["--to", &p.staging_url()]),
        &tmp.path().join("audit"),
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    // As soon as the first replay arrives (the pass is still reading), one more message dies.
    let started = Instant::now();
    let mut staged = Vec::new();
    while staged.is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the replay did not get going"
        );
        staged.extend(p.drain("staging-sub"));
    }
    p.publish(
        "dlq",
        vec![PubsubMessage {
            data: body_of(1000).into_bytes(),
            ..Default::default()
        }],
    );
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("after the pass began"), "{stdout}");
    staged.extend(p.drain("staging-sub"));
    let mut orders: Vec<u64> = staged.iter().filter_map(|s| order_of_body(&s.body)).collect();
    orders.sort_unstable();
    assert_eq!(orders, (0..20).collect::<Vec<_>>());
    assert_eq!(p.orders("dlq-sub"), vec![1000]);
}

/// A Pub/Sub dead-letter subscription under the adapter kit, replayed to a topic. redrive reaches the
/// emulator (source and destination) through a TCP proxy whose connections the kit cuts or stalls. Not listed: `password_never_printed`
/// (Pub/Sub URLs carry no password: credentials come from Google's application default credentials).
struct PubSubKit {
    p: PubSub,
    proxy: common::proxy::Proxy,
    /// What arrived at the destination so far (drained from `staging-sub` as it fills).
    arrived: Vec<Seen>,
    /// How many of `arrived` `fail_again` sent back already.
    failed_again: usize,
}

impl PubSubKit {
    fn arrived(&mut self) -> &[Seen] {
        let more = self.p.drain("staging-sub");
        self.arrived.extend(more);
        &self.arrived
    }
}

impl kit::Broker for PubSubKit {
    fn new(test: &str) -> Self {
        PubSubKit {
            p: PubSub::new(&format!("kit-{test}")),
            proxy: common::proxy::Proxy::start(&emulator()),
            arrived: Vec::new(),
            failed_again: 0,
        }
    }

    fn seed(&mut self, n: u64) {
        self.p.seed(n);
        // `orders-watch` on `orders`, made after seeding, sees only what `--to origin` sends back.
        self.p
            .subscribe("orders-watch", "orders", SubscriptionConfig::default());
    }

    fn source_url(&self) -> String {
        format!(
            "pubsub://{}?emulator=127.0.0.1:{}&reconnect=30s&lease=10s",
            self.p.path("subscriptions", "dlq-sub"),
            self.proxy.port()
        )
    }

    fn destination_url(&self) -> String {
        self.proxy.route(&self.p.staging_url())
    }

    fn destination_count(&mut self) -> usize {
        self.arrived().len()
    }

    fn at_destination(&mut self) -> Vec<kit::Arrived> {
        self.arrived()
            .iter()
            .map(|s| kit::Arrived {
                order: order_of_body(&s.body).unwrap(),
                replay_id: s.attributes.get("x-redrive-replay-id").cloned(),
            })
            .collect()
    }

    fn in_dlq(&mut self) -> Vec<u64> {
        self.p.orders("dlq-sub")
    }

    fn at_origin(&mut self) -> Vec<u64> {
        self.p.orders("orders-watch")
    }

    fn drop_connections(&mut self, _redrive_pid: u32) {
        self.proxy.cut();
    }

    fn stall_connections(&mut self) {
        assert!(self.proxy.stall() > 0, "redrive has no connection through the proxy");
    }

    fn crash_copies(&self) -> kit::Copies {
        kit::Copies::AtMostPerCrash(64)
    }

    fn mistakes(&self) -> Vec<kit::Mistake> {
        vec![
            kit::Mistake {
                what: "a missing subscription",
                url: self.source_url().replace("dlq-sub", "no-such-sub"),
                says: "does not exist",
            },
            kit::Mistake {
                what: "a topic as the source",
                url: format!("pubsub://{}?emulator={}", self.p.path("topics", "dlq"), emulator()),
                says: "a source is a subscription",
            },
            kit::Mistake {
                what: "a closed port",
                url: format!(
                    "pubsub://{}?emulator=127.0.0.1:9",
                    self.p.path("subscriptions", "dlq-sub")
                ),
                says: "cannot connect",
            },
        ]
    }

    fn fail_again(&mut self) -> Vec<u64> {
        // The staging topic's consumer fails each replay again and its subscription's dead-letter policy moves
        // it to the DLQ topic, attributes kept (the replay id with them). Published there directly here:
        // the emulator's own move takes five nacked deliveries.
        let arrived = self.arrived().len();
        let fresh: Vec<Seen> = self.arrived[self.failed_again..arrived].to_vec();
        self.failed_again = arrived;
        let mut back = Vec::new();
        let messages = fresh
            .into_iter()
            .map(|seen| {
                let order = order_of_body(&seen.body).unwrap();
                back.push(order);
                let mut attributes = seen.attributes;
                attributes.insert("x-error-message".into(), format!("still failing: sku {order} unknown"));
                PubsubMessage {
                    data: seen.body.into_bytes(),
                    attributes,
                    ordering_key: seen.ordering_key,
                    ..Default::default()
                }
            })
            .collect::<Vec<_>>();
        if !messages.is_empty() {
            self.p.publish("dlq", messages);
        }
        back
    }

    fn after_crash(&mut self) {
        // A killed run's leases lapse on their own (`lease=10s`): wait, so the next run meets them again.
        std::thread::sleep(Duration::from_secs(11));
    }
}

kit::suite!(PubSubKit:
    reconciles,
    plan_changes_nothing,
    dropped_connection,
    stalled_connection,
    kill_9_then_resume,
    crash_at_each_step,
    to_origin,
    mistakes_are_exit_2,
    returning_replays_trip_the_breaker,
);
