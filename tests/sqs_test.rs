//! End-to-end tests against a local SQS endpoint (moto_server on 127.0.0.1:9324, started by
//! scripts/services.sh; REDRIVE_TEST_SQS_ENDPOINT overrides). Each test creates its own queues (a work
//! queue whose RedrivePolicy names a DLQ, a staging queue), fails messages in the work queue until SQS
//! moves them to the DLQ, runs the real binary, and deletes its queues at the end.

mod common;
mod kit;

use std::collections::{BTreeMap, HashMap};
use std::process::Command;
use std::time::{Duration, Instant};

use aws_sdk_sqs::types::{MessageAttributeValue, MessageSystemAttributeName, QueueAttributeName};
use common::sqs::{KEY, Queues, SECRET, auth_endpoint, endpoint, number, order_of, orders, sqs_redrive, string};
use common::{module, redrive, run};

fn expected(n: u64, keep: impl Fn(u64) -> bool) -> Vec<u64> {
    (0..n).filter(|i| keep(*i)).collect()
}

/// Seed `n` orders the way an application would: sent to the work queue, failed until dead-lettered.
/// Every fifth message (i % 5 == 3) is test traffic; i % 5 == 2 failed validation; i % 5 == 4 has no error.
fn seed(q: &Queues, work: &str, dlq: &str, n: u64) {
    for i in 0..n {
        let mut attrs = vec![("tenant", number(i as i64))];
        match i % 5 {
            0 | 1 | 3 => attrs.push(("error", string("timeout calling billing"))),
            2 => attrs.push(("error", string("validation failed: sku missing"))),
            _ => {}
        }
        if i % 5 == 3 {
            attrs.push(("x-test", string("true")));
        }
        q.send(work, &format!(r#"{{"order":{i},"quantity":2}}"#), &attrs, None);
    }
    q.fail_until_dead_lettered(work, dlq, n);
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

fn dlq_url_arg(q: &Queues, part: &str) -> String {
    format!("sqs://{}", q.name(part))
}

#[test]
fn replays_a_real_dlq_and_every_message_ends_in_exactly_one_place() {
    let mut q = Queues::new("reconcile");
    let (work, dlq, staging) = q.topology(false);
    let n = 60;
    seed(&q, &work, &dlq, n);
    let tmp = tempfile::tempdir().unwrap();
    let archive = tmp.path().join("archive.jsonl");
    let (code, out, err) = run(chain(
        sqs_redrive(tmp.path())
            .args([
                "run",
                "--from",
                &dlq_url_arg(&q, "dlq"),
                "--to",
                &dlq_url_arg(&q, "staging"),
            ])
            .arg("--audit-dir")
            .arg(tmp.path().join("audit"))
            .arg("--archive")
            .arg(&archive)
            .arg("--no-progress"),
    ));
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    assert!(
        !out.contains(SECRET) && !err.contains(SECRET),
        "credentials shown:\n{out}\n{err}"
    );

    let replayed = q.drain(&staging);
    assert_eq!(orders(&replayed), expected(n, |i| i % 5 < 2));
    // Skipped ones are back, visible, with their attributes untouched.
    assert_eq!(
        q.counts(&dlq),
        (24, 0),
        "skipped messages are visible again after the pass"
    );
    let kept = q.drain(&dlq);
    assert_eq!(orders(&kept), expected(n, |i| i % 5 == 2 || i % 5 == 4));
    let k = kept.iter().find(|m| order_of(m) == 2).unwrap();
    let ka = k.message_attributes.as_ref().unwrap();
    assert_eq!(
        ka["error"].string_value.as_deref(),
        Some("validation failed: sku missing")
    );
    assert!(!ka.contains_key("x-redrive-replay-id"));
    // Archived: the discarded test traffic, with the failure context read from SQS.
    let archived: Vec<serde_json::Value> = std::fs::read_to_string(&archive)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(archived.len(), 12);
    let a = &archived[0];
    assert_eq!(a["origin"]["system"], "sqs");
    assert_eq!(a["origin"]["dlq"], q.name("dlq"));
    assert_eq!(
        a["origin"]["original_queue"],
        q.name("work"),
        "from ListDeadLetterSourceQueues: {a}"
    );
    assert_eq!(a["failure"]["error_text"], "timeout calling billing");
    assert!(a["failure"]["receive_count"].as_u64().unwrap() >= 2, "{a}");
    assert!(a["failure"]["first_failed_at"].is_string(), "{a}");

    // Replayed: attributes kept with their types, replay attributes added, no sqs.* system attributes.
    let r = replayed.iter().find(|m| order_of(m) == 0).unwrap();
    let ra = r.message_attributes.as_ref().unwrap();
    assert_eq!(ra["tenant"].data_type, "Number");
    assert_eq!(ra["tenant"].string_value.as_deref(), Some("0"));
    assert_eq!(ra["error"].string_value.as_deref(), Some("timeout calling billing"));
    assert_eq!(ra["x-redrive-replay-count"].data_type, "Number");
    assert_eq!(ra["x-redrive-replay-count"].string_value.as_deref(), Some("1"));
    assert_eq!(ra["x-redrive-replay-id"].string_value.as_ref().unwrap().len(), 32);
    assert!(!ra.keys().any(|k| k.starts_with("sqs.")), "{ra:?}");
    assert_eq!(r.body.as_deref(), Some(r#"{"order":0,"quantity":2}"#));
}

#[test]
fn plan_reads_without_removing_anything_and_leaves_messages_visible() {
    let mut q = Queues::new("plan");
    let (work, dlq, _) = q.topology(false);
    let n = 25;
    seed(&q, &work, &dlq, n);
    let tmp = tempfile::tempdir().unwrap();
    let plan = tmp.path().join("plan.json");
    let (code, out, err) = run(chain(
        sqs_redrive(tmp.path())
            .args(["plan", "--from", &dlq_url_arg(&q, "dlq"), "--no-progress"])
            .arg("--audit-dir")
            .arg(tmp.path().join("audit"))
            .arg("--plan-out")
            .arg(&plan),
    ));
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    assert_eq!(q.counts(&dlq), (n, 0));
    let plan: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&plan).unwrap()).unwrap();
    assert_eq!(plan["messages"].as_array().unwrap().len(), n as usize, "{plan}");
}

#[test]
fn to_origin_sends_each_message_back_to_the_queue_it_was_dead_lettered_from() {
    let mut q = Queues::new("origin");
    let (work, dlq, _) = q.topology(false);
    let n = 15;
    seed(&q, &work, &dlq, n);
    let tmp = tempfile::tempdir().unwrap();
    let (code, out, err) = run(sqs_redrive(tmp.path())
        .args([
            "run",
            "--from",
            &dlq_url_arg(&q, "dlq"),
            "--to",
            "origin",
            "--no-filter",
            "--no-progress",
        ])
        .arg("--audit-dir")
        .arg(tmp.path().join("audit")));
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    assert_eq!(q.counts(&dlq), (0, 0));
    assert_eq!(orders(&q.drain(&work)), expected(n, |_| true));

    // A DLQ no queue points at: the origin is unknown, and the messages stay.
    let orphan = q.create("orphan", &[]);
    q.send(&orphan, r#"{"order":1}"#, &[], None);
    let (code, out, err) = run(sqs_redrive(tmp.path())
        .args([
            "run",
            "--from",
            &dlq_url_arg(&q, "orphan"),
            "--to",
            "origin",
            "--no-filter",
            "--no-progress",
        ])
        .arg("--audit-dir")
        .arg(tmp.path().join("audit2")));
    assert_eq!(code, 1, "stdout:\n{out}\nstderr:\n{err}");
    assert!(
        format!("{out}{err}").contains("ListDeadLetterSourceQueues is empty"),
        "{out}\n{err}"
    );
    assert_eq!(q.counts(&orphan), (1, 0));
}

#[test]
fn fifo_keeps_group_order_and_uses_the_replay_id_for_deduplication() {
    let mut q = Queues::new("fifo");
    let (work, dlq, staging) = q.topology(true);
    let n = 20;
    for i in 0..n {
        let group = if i % 2 == 0 { "even" } else { "odd" };
        q.send(
            &work,
            &format!(r#"{{"order":{i}}}"#),
            &[("error", string("timeout"))],
            Some(group),
        );
    }
    q.fail_until_dead_lettered(&work, &dlq, n);
    let tmp = tempfile::tempdir().unwrap();
    let (code, out, err) = run(sqs_redrive(tmp.path())
        .args(["run", "--from", &dlq, "--to", &staging, "--no-filter", "--no-progress"])
        .arg("--audit-dir")
        .arg(tmp.path().join("audit")));
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    let replayed = q.drain(&staging);
    assert_eq!(orders(&replayed), expected(n, |_| true));
    let mut by_group: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for m in &replayed {
        let sys = m.attributes.as_ref().unwrap();
        let group = sys[&MessageSystemAttributeName::MessageGroupId].clone();
        by_group.entry(group).or_default().push(order_of(m));
        let replay_id = m.message_attributes.as_ref().unwrap()["x-redrive-replay-id"]
            .string_value
            .clone()
            .unwrap();
        assert_eq!(sys[&MessageSystemAttributeName::MessageDeduplicationId], replay_id);
    }
    assert_eq!(by_group["even"], expected(n, |i| i % 2 == 0), "order within the group");
    assert_eq!(by_group["odd"], expected(n, |i| i % 2 == 1), "order within the group");
}

#[test]
fn an_oversized_message_fails_alone_and_stays_in_the_dlq() {
    let mut q = Queues::new("oversize");
    let dlq = q.create("dlq", &[]);
    let staging = q.create("staging", &[(QueueAttributeName::MaximumMessageSize, "1024".into())]);
    for i in 0..10 {
        let pad = if i == 4 { "x".repeat(1500) } else { String::new() };
        q.send(&dlq, &format!(r#"{{"order":{i},"pad":"{pad}"}}"#), &[], None);
    }
    let tmp = tempfile::tempdir().unwrap();
    let (code, out, err) = run(sqs_redrive(tmp.path())
        .args(["run", "--from", &dlq, "--to", &staging, "--no-filter", "--no-progress"])
        .arg("--audit-dir")
        .arg(tmp.path().join("audit")));
    assert_eq!(
        code, 1,
        "a message that could not be forwarded is a problem\nstdout:\n{out}\nstderr:\n{err}"
    );
    assert!(format!("{out}{err}").contains("accepts at most 1024"), "{out}\n{err}");
    assert_eq!(orders(&q.drain(&staging)), vec![0, 1, 2, 3, 5, 6, 7, 8, 9]);
    assert_eq!(orders(&q.drain(&dlq)), vec![4]);
}

#[test]
fn a_batch_sqs_refuses_as_a_whole_is_retried_entry_by_entry() {
    let mut q = Queues::new("wholebatch");
    let staging = q.create("staging", &[]);
    let aws = redrive::core::AwsSettings {
        endpoint_url: Some(endpoint()),
        region: Some("us-east-1".into()),
        profile: None,
    };
    // The library takes credentials from the AWS chain, here the environment of this test process.
    // SAFETY: std's own env lock serialises this with the other tests' (Rust) reads of the environment,
    // and every test sets the same values.
    unsafe {
        std::env::set_var("AWS_ACCESS_KEY_ID", KEY);
        std::env::set_var("AWS_SECRET_ACCESS_KEY", SECRET);
    }
    let destination = redrive::core::Destination::parse(&staging).unwrap();
    let no_source = redrive::core::Endpoint::parse("file:unused.jsonl").unwrap();
    let options = redrive::brokers::BrokerOptions {
        aws,
        ..Default::default()
    };
    let sink =
        q.rt.block_on(redrive::brokers::open_sink(
            &destination,
            &no_source,
            &Default::default(),
            &options,
        ))
        .unwrap();
    // The queue's limit drops after the sink read it: SQS (moto) now refuses the whole batch.
    q.rt.block_on(
        q.client
            .set_queue_attributes()
            .queue_url(&staging)
            .attributes(QueueAttributeName::MaximumMessageSize, "1024")
            .send(),
    )
    .unwrap();
    let batch: Vec<redrive::core::Envelope> = (0..5)
        .map(|i| redrive::core::Envelope {
            id: format!("m{i}"),
            body: if i == 2 {
                vec![b'x'; 2000]
            } else {
                format!("{{\"order\":{i}}}").into_bytes()
            },
            ..Default::default()
        })
        .collect();
    let results = q.rt.block_on(sink.send(&batch));
    let ok: Vec<bool> = results.iter().map(Result::is_ok).collect();
    assert_eq!(ok, vec![true, true, false, true, true], "{results:?}");
    assert!(
        results[2]
            .as_ref()
            .unwrap_err()
            .reason
            .contains("InvalidParameterValue"),
        "{results:?}"
    );
    assert_eq!(orders(&q.drain(&staging)), vec![0, 1, 3, 4]);
}

#[test]
fn the_heartbeat_keeps_messages_invisible_while_the_canary_gate_waits() {
    let mut q = Queues::new("heartbeat");
    let dlq = q.create("dlq", &[]);
    let staging = q.create("staging", &[]);
    let n = 20;
    for i in 0..n {
        q.send(&dlq, &format!(r#"{{"order":{i}}}"#), &[], None);
    }
    let tmp = tempfile::tempdir().unwrap();
    let child = sqs_redrive(tmp.path())
        .args([
            "run",
            "--from",
            &format!("{dlq}?visibility=3s&receivers=2"),
            "--to",
            &staging,
        ])
        .args([
            "--no-filter",
            "--no-progress",
            "--canary",
            "3",
            "--verify-cmd",
            "sleep 9",
        ])
        .arg("--audit-dir")
        .arg(tmp.path().join("audit"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for the canary, then be another consumer of the DLQ for longer than two visibility timeouts.
    let deadline = Instant::now() + Duration::from_secs(30);
    while q.counts(&staging).0 < 3 || q.counts(&dlq).0 > 0 {
        assert!(
            Instant::now() < deadline,
            "the canary did not go out: {:?}",
            q.counts(&staging)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let spy_until = Instant::now() + Duration::from_secs(7);
    let mut stolen = Vec::new();
    while Instant::now() < spy_until {
        let out =
            q.rt.block_on(
                q.client
                    .receive_message()
                    .queue_url(&dlq)
                    .max_number_of_messages(10)
                    .visibility_timeout(1)
                    .send(),
            )
            .unwrap();
        stolen.extend(out.messages.unwrap_or_default().iter().map(order_of));
        std::thread::sleep(Duration::from_millis(200));
    }
    let output = child.wait_with_output().unwrap();
    let (out, err) = (
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    assert!(output.status.success(), "stdout:\n{out}\nstderr:\n{err}");
    assert!(
        stolen.is_empty(),
        "messages reappeared while redrive held them: {stolen:?}"
    );
    let replayed = q.drain(&staging);
    assert_eq!(orders(&replayed), expected(n, |_| true), "each exactly once");
    assert_eq!(q.counts(&dlq), (0, 0));
}

#[test]
fn kill_9_mid_run_then_resume_loses_nothing_and_doubles_nothing() {
    let mut q = Queues::new("kill");
    let (work, dlq, _) = q.topology(false);
    // A FIFO staging queue: SQS drops a resend with the same deduplication id (the replay id).
    let staging = q.create("staging.fifo", &[(QueueAttributeName::FifoQueue, "true".into())]);
    let n = 60;
    for i in 0..n {
        q.send(
            &work,
            &format!(r#"{{"order":{i}}}"#),
            &[("error", string("timeout"))],
            None,
        );
    }
    q.fail_until_dead_lettered(&work, &dlq, n);
    let tmp = tempfile::tempdir().unwrap();
    let audit = tmp.path().join("audit");
    let command = |rate: Option<&str>| {
        let mut cmd = sqs_redrive(tmp.path());
        cmd.args(["run", "--from", &format!("{dlq}?visibility=3s"), "--to", &staging])
            .args(["--no-filter", "--no-progress"])
            .arg("--audit-dir")
            .arg(&audit);
        if let Some(r) = rate {
            cmd.args(["--rate", r]);
        }
        cmd
    };
    let mut child = command(Some("20/s"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while q.counts(&staging).0 < 20 {
        assert!(Instant::now() < deadline, "nothing was forwarded");
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    // What the killed run held becomes visible after its visibility timeout.
    let deadline = Instant::now() + Duration::from_secs(20);
    while q.counts(&dlq).1 > 0 {
        assert!(
            Instant::now() < deadline,
            "messages stayed in flight: {:?}",
            q.counts(&dlq)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let (code, out, err) = run(&mut command(None));
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    assert_eq!(q.counts(&dlq), (0, 0), "{out}");
    let replayed = q.drain(&staging);
    let mut seen: HashMap<u64, usize> = HashMap::new();
    for m in &replayed {
        *seen.entry(order_of(m)).or_default() += 1;
    }
    let doubled: Vec<_> = seen.iter().filter(|(_, c)| **c > 1).collect();
    assert!(doubled.is_empty(), "doubled: {doubled:?}");
    assert_eq!(orders(&replayed), expected(n, |_| true), "nothing lost");
}

#[test]
fn mistakes_are_clear_errors_before_anything_moves() {
    let mut q = Queues::new("mistakes");
    let dlq = q.create("dlq", &[]);
    q.send(&dlq, r#"{"order":1}"#, &[], None);
    let tmp = tempfile::tempdir().unwrap();
    let missing = format!("sqs://{}", q.name("nope"));
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec!["--from".into(), missing.clone(), "--to".into(), "file:x.jsonl".into()],
            "does not exist",
        ),
        (
            vec!["--from".into(), dlq.clone(), "--to".into(), missing],
            "destination queue",
        ),
        (
            vec![
                "--from".into(),
                format!("{dlq}?colour=red"),
                "--to".into(),
                "file:x.jsonl".into(),
            ],
            "unknown option",
        ),
        (
            vec![
                "--from".into(),
                format!("{dlq}?group_id=g"),
                "--to".into(),
                "file:x.jsonl".into(),
            ],
            "not an option of an SQS source",
        ),
    ];
    for (args, expect) in cases {
        let (code, out, err) = run(sqs_redrive(tmp.path())
            .arg("run")
            .args(&args)
            .args(["--no-filter", "--no-progress"])
            .arg("--audit-dir")
            .arg(tmp.path().join("audit")));
        assert_eq!(code, 2, "{args:?}\nstdout:\n{out}\nstderr:\n{err}");
        assert!(err.contains(expect), "{args:?}: expected {expect:?} in:\n{err}");
        assert!(!err.contains(SECRET), "{err}");
    }
    // Nothing listens on this port.
    let (code, _, err) = run(redrive(tmp.path())
        .current_dir(tmp.path())
        .env("AWS_ACCESS_KEY_ID", KEY)
        .env("AWS_SECRET_ACCESS_KEY", SECRET)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .args([
            "run",
            "--from",
            "sqs://q",
            "--to",
            "file:x.jsonl",
            "--no-filter",
            "--region",
            "us-east-1",
        ])
        .args(["--endpoint-url", "http://127.0.0.1:9"]));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("cannot reach"), "{err}");
    // No region anywhere.
    let (code, _, err) = run(redrive(tmp.path())
        .current_dir(tmp.path())
        .env_remove("AWS_REGION")
        .env_remove("AWS_DEFAULT_REGION")
        .env("AWS_CONFIG_FILE", tmp.path().join("none"))
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .args(["run", "--from", "sqs://q", "--to", "file:x.jsonl", "--no-filter"]));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no AWS region"), "{err}");
    assert_eq!(q.counts(&dlq), (1, 0), "nothing moved");
}

/// SQS (moto) under the adapter kit: a work queue whose RedrivePolicy moves messages to the DLQ after a
/// consumer fails them, a staging queue; redrive talks to SQS through a TCP proxy whose connections the
/// kit cuts. Not listed: `password_never_printed` (an SQS URL carries no password; the secret key lives in
/// the AWS chain and is checked by `mistakes_are_clear_errors_before_anything_moves`).
struct SqsKit {
    q: Queues,
    work: String,
    dlq: String,
    staging: String,
    proxy: common::proxy::Proxy,
}

impl kit::Broker for SqsKit {
    fn new(test: &str) -> Self {
        let mut q = Queues::new(&format!("kit-{test}"));
        let (work, dlq, staging) = q.topology(false);
        let target = endpoint().trim_start_matches("http://").to_owned();
        SqsKit {
            q,
            work,
            dlq,
            staging,
            proxy: common::proxy::Proxy::start(&target),
        }
    }

    fn seed(&mut self, n: u64) {
        seed(&self.q, &self.work, &self.dlq, n);
    }

    fn source_url(&self) -> String {
        format!("sqs://{}?visibility=3s", self.q.name("dlq"))
    }

    fn destination_url(&self) -> String {
        format!("sqs://{}", self.q.name("staging"))
    }

    fn command(&self, tmp: &std::path::Path) -> Command {
        let mut cmd = sqs_redrive(tmp);
        cmd.env(
            "AWS_ENDPOINT_URL_SQS",
            format!("http://127.0.0.1:{}", self.proxy.port()),
        );
        cmd
    }

    fn destination_count(&mut self) -> usize {
        self.q.counts(&self.staging).0 as usize
    }

    fn at_destination(&mut self) -> Vec<kit::Arrived> {
        self.q
            .drain(&self.staging)
            .iter()
            .map(|m| kit::Arrived {
                order: order_of(m),
                replay_id: m
                    .message_attributes
                    .as_ref()
                    .and_then(|a| a.get("x-redrive-replay-id"))
                    .and_then(|v| v.string_value.clone()),
            })
            .collect()
    }

    fn in_dlq(&mut self) -> Vec<u64> {
        orders(&self.q.drain(&self.dlq))
    }

    fn at_origin(&mut self) -> Vec<u64> {
        orders(&self.q.drain(&self.work))
    }

    fn drop_connections(&mut self, _redrive_pid: u32) {
        self.proxy.cut();
    }

    fn delay_connections(&mut self, by: Duration) {
        self.proxy.delay(by);
    }

    fn stall_connections(&mut self) {
        assert!(self.proxy.stall() > 0, "redrive has no connection through the proxy");
    }

    fn random_kills(&self) -> usize {
        30
    }

    fn fail_again(&mut self) -> Vec<u64> {
        // The staging queue's consumer fails each replay and sends it to the DLQ, attributes kept (as an
        // application that dead-letters by hand does; a RedrivePolicy move keeps them too).
        let out = self
            .q
            .rt
            .block_on(
                self.q
                    .client
                    .receive_message()
                    .queue_url(&self.staging)
                    .max_number_of_messages(10)
                    .visibility_timeout(60)
                    .message_attribute_names("All")
                    .send(),
            )
            .unwrap();
        let mut back = Vec::new();
        for m in out.messages.unwrap_or_default() {
            let order = order_of(&m);
            let mut attributes: Vec<(String, MessageAttributeValue)> = m
                .message_attributes
                .clone()
                .unwrap_or_default()
                .into_iter()
                .filter(|(k, _)| k != "error")
                .collect();
            attributes.push(("error".into(), string(&format!("still failing: sku {order} unknown"))));
            let borrowed: Vec<(&str, MessageAttributeValue)> =
                attributes.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
            self.q.send(&self.dlq, m.body.as_deref().unwrap(), &borrowed, None);
            self.q
                .rt
                .block_on(
                    self.q
                        .client
                        .delete_message()
                        .queue_url(&self.staging)
                        .receipt_handle(m.receipt_handle.clone().unwrap())
                        .send(),
                )
                .unwrap();
            back.push(order);
        }
        back
    }

    fn crash_copies(&self) -> kit::Copies {
        kit::Copies::AtMostPerCrash(DEFAULT_IN_FLIGHT)
    }

    fn after_crash(&mut self) {
        // Nothing in flight, and for longer than the visibility timeout (3 s): a receive the killed run sent
        // just before it died can still be answered afterwards (moto is slow under load), hiding messages
        // from the next run's pass; seen once in CI as a message left in the DLQ by the run to the end.
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut quiet_since = Instant::now();
        while quiet_since.elapsed() < Duration::from_millis(3500) {
            let counts = self.q.counts(&self.dlq);
            if counts.1 > 0 {
                quiet_since = Instant::now();
            }
            assert!(Instant::now() < deadline, "messages stayed in flight: {counts:?}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn mistakes(&self) -> Vec<kit::Mistake> {
        vec![
            kit::Mistake {
                what: "a missing queue",
                url: format!("sqs://{}", self.q.name("nope")),
                says: "does not exist",
            },
            kit::Mistake {
                what: "refused credentials",
                url: format!("{}/123456789012/{}", auth_endpoint(), self.q.name("dlq")),
                says: "did not accept the AWS credentials",
            },
            kit::Mistake {
                what: "a closed port",
                url: "http://127.0.0.1:1/000000000000/nope".into(),
                says: "cannot reach",
            },
        ]
    }
}

/// The in-flight window a run uses when --max-in-flight is not given.
const DEFAULT_IN_FLIGHT: usize = 64;

kit::suite!(SqsKit:
    reconciles,
    plan_changes_nothing,
    dropped_connection,
    stalled_connection,
    slow_connection,
    kill_9_then_resume,
    kill_9_at_random_points,
    crash_at_each_step,
    returning_replays_trip_the_breaker,
    to_origin,
    mistakes_are_exit_2,
);
