//! End-to-end tests against a real Redis (127.0.0.1:6379, started by scripts/services.sh;
//! REDRIVE_TEST_REDIS overrides). The application side is played for real: a consumer group on the
//! work stream, a consumer that fails entries and, after three attempts, moves them to the DLQ stream
//! with their error (XADD + XACK), as job libraries do. Each test uses its own keys and deletes them.

mod common;
mod kit;

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{module, redrive, run};
use redis::{Commands, Value};

fn server() -> String {
    std::env::var("REDRIVE_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379/0".into())
}

fn connect(server: &str) -> redis::Connection {
    redis::Client::open(server)
        .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(3)))
        .unwrap_or_else(|e| {
            panic!("no Redis at {server}: {e}. Start it with scripts/services.sh, or set REDRIVE_TEST_REDIS")
        })
}

/// One test's streams, deleted on drop.
struct Streams {
    server: String,
    prefix: String,
    con: redis::Connection,
}

impl Streams {
    fn new(test: &str) -> Self {
        Self::on(&server(), test)
    }

    fn on(server: &str, test: &str) -> Self {
        Streams {
            server: server.to_owned(),
            prefix: format!("rdt:{test}:{}", std::process::id()),
            con: connect(server),
        }
    }

    fn key(&self, part: &str) -> String {
        format!("{}:{part}", self.prefix)
    }

    fn url(&self, stream: &str, query: &str) -> String {
        format!("{}?stream={}{query}", self.server, self.key(stream))
    }

    /// The application: N orders into `orders` (consumer group `app`), failed three times each and
    /// moved to `dlq`. i % 5: 0, 1 time out; 2 fails validation; 3 is test traffic (times out); 4 has
    /// no error field.
    fn seed(&mut self, n: usize) {
        let (orders, dlq) = (self.key("orders"), self.key("dlq"));
        let _: () = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&orders)
            .arg("app")
            .arg("$")
            .arg("MKSTREAM")
            .query(&mut self.con)
            .unwrap();
        for i in 0..n {
            let mut fields = vec![
                ("payload", format!(r#"{{"order":{i},"quantity":2}}"#)),
                ("tenant", format!("t{i}")),
            ];
            if i % 5 == 3 {
                fields.push(("x-test", "true".into()));
            }
            let _: String = self.con.xadd(&orders, "*", &fields).unwrap();
        }
        let mut attempts: HashMap<String, u32> = HashMap::new();
        loop {
            // Read new entries, then our own pending ones again (the retries).
            let mut read: Value = redis::cmd("XREADGROUP")
                .arg("GROUP")
                .arg("app")
                .arg("worker")
                .arg("COUNT")
                .arg(50)
                .arg("STREAMS")
                .arg(&orders)
                .arg(">")
                .query(&mut self.con)
                .unwrap();
            if matches!(&read, Value::Nil) || redrive::brokers::redis::entries_of_read(&read).is_empty() {
                read = redis::cmd("XREADGROUP")
                    .arg("GROUP")
                    .arg("app")
                    .arg("worker")
                    .arg("COUNT")
                    .arg(50)
                    .arg("STREAMS")
                    .arg(&orders)
                    .arg("0")
                    .query(&mut self.con)
                    .unwrap();
            }
            let entries = redrive::brokers::redis::entries_of_read(&read);
            if entries.is_empty() {
                break;
            }
            for e in entries {
                let tries = attempts.entry(e.id.clone()).or_default();
                *tries += 1;
                if *tries < 3 {
                    continue; // failed: stays pending, retried
                }
                let fields = e.fields.unwrap();
                let get = |k: &str| {
                    fields
                        .iter()
                        .find(|(f, _)| f == k.as_bytes())
                        .map(|(_, v)| String::from_utf8(v.clone()).unwrap())
                };
                let order: u64 = serde_json::from_str::<serde_json::Value>(&get("payload").unwrap()).unwrap()["order"]
                    .as_u64()
                    .unwrap();
                let mut moved: Vec<(String, String)> = fields
                    .iter()
                    .map(|(k, v)| {
                        (
                            String::from_utf8(k.clone()).unwrap(),
                            String::from_utf8(v.clone()).unwrap(),
                        )
                    })
                    .collect();
                match order % 5 {
                    0 | 1 | 3 => moved.push(("error".into(), "timeout calling billing".into())),
                    2 => moved.push(("error".into(), "validation failed: sku missing".into())),
                    _ => {}
                }
                moved.push(("attempts".into(), "3".into()));
                moved.push(("failed_at".into(), "2026-11-20T08:00:00Z".into()));
                moved.push(("original_stream".into(), orders.clone()));
                let _: String = self.con.xadd(&dlq, "*", &moved).unwrap();
                let _: i64 = self.con.xack(&orders, "app", &[&e.id]).unwrap();
            }
        }
        assert_eq!(self.len("dlq"), n, "every order ends in the DLQ");
    }

    fn len(&mut self, part: &str) -> usize {
        self.con.xlen(self.key(part)).unwrap()
    }

    fn create(&mut self, part: &str) {
        let _: () = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(self.key(part))
            .arg("consumers")
            .arg("$")
            .arg("MKSTREAM")
            .query(&mut self.con)
            .unwrap();
    }

    /// (order, fields) of every entry in a stream.
    fn entries(&mut self, part: &str) -> Vec<(u64, HashMap<String, String>)> {
        let reply: Value = redis::cmd("XRANGE")
            .arg(self.key(part))
            .arg("-")
            .arg("+")
            .query(&mut self.con)
            .unwrap();
        redrive::brokers::redis::entry_list(&reply)
            .into_iter()
            .map(|e| {
                let fields: HashMap<String, String> = e
                    .fields
                    .unwrap()
                    .into_iter()
                    .map(|(k, v)| (String::from_utf8(k).unwrap(), String::from_utf8(v).unwrap()))
                    .collect();
                let order = serde_json::from_str::<serde_json::Value>(&fields["payload"]).unwrap()["order"]
                    .as_u64()
                    .unwrap();
                (order, fields)
            })
            .collect()
    }

    fn orders(&mut self, part: &str) -> Vec<u64> {
        let mut o: Vec<u64> = self.entries(part).into_iter().map(|(o, _)| o).collect();
        o.sort_unstable();
        o
    }
}

impl Drop for Streams {
    fn drop(&mut self) {
        common::own_redis::delete_test_keys(&mut self.con, &self.prefix);
    }
}

fn expected(n: u64, keep: impl Fn(u64) -> bool) -> Vec<u64> {
    (0..n).filter(|i| keep(*i)).collect()
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

fn audit<'a>(cmd: &'a mut Command, dir: &std::path::Path) -> &'a mut Command {
    cmd.arg("--audit-dir").arg(dir).arg("--no-progress")
}

#[test]
fn replays_a_real_dlq_stream_and_every_entry_ends_in_exactly_one_place() {
    let mut s = Streams::new("reconcile");
    let n = 50;
    s.seed(n as usize);
    s.create("staging");
    let tmp = tempfile::tempdir().unwrap();
    let archive = tmp.path().join("archive.jsonl");
    let (code, out, err) = run(audit(
        chain(redrive(tmp.path()).args(["run", "--from", &s.url("dlq", ""), "--to", &s.url("staging", "")]))
            .arg("--archive")
            .arg(&archive),
        &tmp.path().join("audit"),
    ));
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    assert_eq!(s.orders("staging"), expected(n, |i| i % 5 < 2));
    assert_eq!(
        s.orders("dlq"),
        expected(n, |i| i % 5 == 2 || i % 5 == 4),
        "skipped entries stay"
    );
    let archived = std::fs::read_to_string(&archive).unwrap();
    assert_eq!(archived.lines().count(), 10);
    let a: serde_json::Value = serde_json::from_str(archived.lines().next().unwrap()).unwrap();
    assert_eq!(a["failure"]["error_text"], "timeout calling billing");
    assert_eq!(a["failure"]["receive_count"], 3);
    assert_eq!(a["failure"]["last_failed_at"], "2026-11-20T08:00:00Z");
    assert_eq!(a["origin"]["original_queue"], s.key("orders"));
    assert_eq!(a["origin"]["system"], "redis");

    // Replayed: fields kept, dead-letter fields moved aside, replay fields added.
    let (_, f) = s.entries("staging").into_iter().find(|(o, _)| *o == 0).unwrap();
    assert_eq!(f["tenant"], "t0");
    assert_eq!(f["x-redrive-replay-count"], "1");
    assert_eq!(f["x-redrive-replay-id"].len(), 32);
    assert_eq!(f["x-redrive-original-error"], "timeout calling billing");
    assert!(!f.contains_key("error") && !f.contains_key("original_stream"), "{f:?}");

    // Skipped entries stay pending for the consumer; the next pass reads them again (and skips them again).
    let (code, out, err) = run(audit(
        chain(redrive(tmp.path()).args(["run", "--from", &s.url("dlq", ""), "--to", &s.url("staging", "")])),
        &tmp.path().join("audit"),
    ));
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    let skipped = out
        .lines()
        .find(|l| l.trim_start().starts_with("skipped"))
        .unwrap_or("");
    assert_eq!(skipped.split_whitespace().nth(1), Some("20"), "{out}");
    assert_eq!(s.len("staging"), 20, "nothing forwarded twice");
}

#[test]
fn to_origin_adds_each_entry_back_to_its_original_stream() {
    let mut s = Streams::new("origin");
    let n = 20;
    s.seed(n as usize);
    let before = s.len("orders");
    let tmp = tempfile::tempdir().unwrap();
    let (code, out, err) = run(audit(
        redrive(tmp.path()).args([
            "run",
            "--from",
            &s.url("dlq", "&ack=ack"),
            "--to",
            "origin",
            "--no-filter",
        ]),
        tmp.path(),
    ));
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    assert_eq!(s.len("orders"), before + n as usize);
    // ack=ack: acknowledged for the group, still in the stream.
    assert_eq!(s.len("dlq"), n as usize);
    let pending: Value = redis::cmd("XPENDING")
        .arg(s.key("dlq"))
        .arg("redrive")
        .query(&mut s.con)
        .unwrap();
    let Value::Array(summary) = pending else {
        panic!("{pending:?}")
    };
    assert_eq!(summary[0], Value::Int(0), "nothing left pending");
}

#[test]
fn two_workers_share_one_dlq_and_no_entry_is_handled_twice() {
    let mut s = Streams::new("workers");
    let n = 200;
    s.seed(n as usize);
    s.create("staging");
    let tmp = tempfile::tempdir().unwrap();
    let spawn = |consumer: &str| {
        let mut cmd = redrive(tmp.path());
        audit(
            cmd.args([
                "run",
                "--from",
                &s.url("dlq", &format!("&consumer={consumer}&count=10")),
            ])
            .args(["--to", &s.url("staging", ""), "--no-filter", "--rate", "300/s"]),
            &tmp.path().join(consumer),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
    };
    let (a, b) = (spawn("w1"), spawn("w2"));
    for child in [a, b] {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(s.orders("staging"), expected(n, |_| true), "each entry exactly once");
    assert_eq!(s.len("dlq"), 0);
}

#[test]
fn a_consumer_name_in_use_is_refused() {
    let mut s = Streams::new("inuse");
    s.seed(5);
    s.create("staging");
    let tmp = tempfile::tempdir().unwrap();
    let mut first = audit(
        redrive(tmp.path())
            .args([
                "run",
                "--from",
                &s.url("dlq", ""),
                "--to",
                &s.url("staging", ""),
                "--no-filter",
            ])
            .args(["--canary", "1", "--verify-cmd", "sleep 4"]),
        &tmp.path().join("a"),
    )
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .spawn()
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while s.len("staging") < 1 {
        assert!(Instant::now() < deadline, "the first run did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    let (code, _, err) = run(audit(
        redrive(tmp.path()).args([
            "run",
            "--from",
            &s.url("dlq", ""),
            "--to",
            &s.url("staging", ""),
            "--no-filter",
        ]),
        &tmp.path().join("b"),
    ));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("is in use by another redrive run"), "{err}");
    assert!(first.wait().unwrap().success());
    assert_eq!(s.orders("staging"), expected(5, |_| true));
}

#[test]
fn client_kill_mid_run_loses_nothing_and_doubles_nothing() {
    let mut s = Streams::new("kill");
    let n = 120;
    s.seed(n as usize);
    s.create("staging");
    let tmp = tempfile::tempdir().unwrap();
    let child = audit(
        redrive(tmp.path())
            .args([
                "run",
                "--from",
                &s.url("dlq", "&count=10"),
                "--to",
                &s.url("staging", ""),
            ])
            .args(["--no-filter", "--rate", "60/s"]),
        tmp.path(),
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut kills = 0;
    while kills < 3 {
        assert!(Instant::now() < deadline, "the run did not make progress");
        if s.len("staging") >= 20 * (kills + 1) {
            // This run's connections only (source and destination), by the name redrive gives them.
            let list: String = redis::cmd("CLIENT").arg("LIST").query(&mut s.con).unwrap();
            let ours = format!("name=redrive-{}-", child.id());
            let ids: Vec<String> = list
                .lines()
                .filter(|l| l.contains(&ours))
                .filter_map(|l| {
                    l.split_whitespace()
                        .find_map(|f| f.strip_prefix("id="))
                        .map(str::to_owned)
                })
                .collect();
            assert!(!ids.is_empty(), "no connection of redrive found:\n{list}");
            for id in ids {
                let _: i64 = redis::cmd("CLIENT")
                    .arg("KILL")
                    .arg("ID")
                    .arg(&id)
                    .query(&mut s.con)
                    .unwrap();
            }
            kills += 1;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    let staged = s.orders("staging");
    let mut doubled = staged.clone();
    doubled.dedup();
    assert_eq!(doubled.len(), staged.len(), "doubled entries: {staged:?}");
    assert_eq!(staged, expected(n, |_| true), "nothing lost\n{stdout}\n{stderr}");
    assert_eq!(s.len("dlq"), 0);
}

#[test]
fn mistakes_are_clear_errors_before_anything_moves() {
    let mut s = Streams::new("mistakes");
    s.seed(3);
    let tmp = tempfile::tempdir().unwrap();
    for (from, to, expect) in [
        (s.url("nope", ""), "file:x.jsonl".to_owned(), "does not exist"),
        (s.url("dlq", ""), s.url("nope", ""), "destination stream"),
        (s.url("dlq", "&ack=later"), "file:x.jsonl".to_owned(), "`delete`"),
        (
            "redis://127.0.0.1:9/0?stream=x".to_owned(),
            "file:x.jsonl".to_owned(),
            "cannot connect",
        ),
    ] {
        let (code, _, err) = run(audit(
            redrive(tmp.path()).args(["run", "--from", &from, "--to", &to, "--no-filter"]),
            tmp.path(),
        ));
        assert_eq!(code, 2, "{from} → {to}: {err}");
        assert!(err.contains(expect), "{from} → {to}: expected {expect:?} in {err}");
    }
    assert_eq!(s.len("dlq"), 3);
}

#[test]
fn kill_9_mid_run_then_resume_doubles_nothing_in_a_stream() {
    let mut s = Streams::new("kill9");
    s.create("staging");
    let tmp = tempfile::tempdir().unwrap();
    let n = 3000u64;
    let dlq = tmp.path().join("dlq.jsonl");
    let lines: String = (0..n)
        .map(|i| format!("{{\"id\":\"m{i}\",\"body\":\"{{\\\"order\\\":{i}}}\"}}\n"))
        .collect();
    std::fs::write(&dlq, lines).unwrap();
    let staging = s.url("staging", "");
    let replay_cmd = || {
        let mut cmd = redrive(tmp.path());
        audit(
            cmd.args(["run", "--from", &format!("file:{}", dlq.display()), "--to", &staging])
                .args(["--no-filter", "--remainder"])
                .arg(tmp.path().join("rest.jsonl")),
            &tmp.path().join("audit"),
        );
        cmd
    };
    let kills = 4;
    for k in 1..=kills {
        let mut child = replay_cmd()
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while s.len("staging") < 500 * k {
            assert!(Instant::now() < deadline, "the replay did not get going");
            std::thread::sleep(Duration::from_millis(2));
        }
        child.kill().unwrap(); // SIGKILL, mid-batch
        child.wait().unwrap();
    }
    let (code, out, err) = run(&mut replay_cmd());
    assert_eq!(code, 0, "{out}\n{err}");
    let staged: Vec<u64> = s.entries("staging").into_iter().map(|(o, _)| o).collect();
    let mut unique = staged.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique, expected(n, |_| true), "nothing lost");
    assert_eq!(
        staged.len(),
        unique.len(),
        "a stream can be read back: a resumed run must not add an entry a killed run already added"
    );
}

/// Redis killed and restarted mid-run with nothing persisted: the DLQ stream is gone with everything it
/// held, which no tool can bring back. What redrive promises: the run stops and names what happened, and
/// every message it recorded as forwarded is at the destination, once.
#[test]
fn a_redis_restart_without_persistence_is_named_and_what_was_forwarded_is_kept() {
    let mut own = common::own_redis::OwnRedis::start();
    let mut s = Streams::on(&own.url(), "restart");
    let n = 300;
    s.seed(n);
    let tmp = tempfile::tempdir().unwrap();
    let staging = tmp.path().join("staging.jsonl");
    let mut cmd = redrive(tmp.path());
    audit(
        chain(cmd.args(["run", "--from", &s.url("dlq", "&reconnect=20s")]))
            .arg("--to")
            .arg(format!("file:{}", staging.display()))
            .args(["--rate", "50/s"]),
        &tmp.path().join("audit"),
    );
    let child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let lines = |path: &std::path::Path| std::fs::read_to_string(path).map_or(0, |t| t.lines().count());
    let deadline = Instant::now() + Duration::from_secs(60);
    while lines(&staging) < 20 {
        assert!(Instant::now() < deadline, "the run did not get going");
        std::thread::sleep(Duration::from_millis(50));
    }
    own.kill();
    std::thread::sleep(Duration::from_millis(500));
    own.up();
    let out = common::output_within(child, Duration::from_secs(90), "the run after the restart");
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        matches!(out.status.code(), Some(1 | 2)),
        "the run stops with an error: {:?}\n{text}",
        out.status.code()
    );
    assert!(text.contains("Redis lost it"), "the error says what happened: {text}");
    assert!(!text.contains("panicked"), "{text}");
    // What could not be settled is not said to be still in the DLQ: there is no DLQ any more.
    assert!(
        !text.contains("still in the DLQ"),
        "the summary does not promise a DLQ that is gone: {text}"
    );
    assert!(
        text.contains("DLQ gone"),
        "the summary counts what went unsettled with it: {text}"
    );
    // Every message the journal records as confirmed is at the destination, once.
    let staged: Vec<serde_json::Value> = std::fs::read_to_string(&staging)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let mut ids: Vec<String> = staged.iter().map(|v| v["id"].as_str().unwrap().to_owned()).collect();
    let all = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), all, "nothing forwarded twice");
    let mut confirmed = 0;
    for entry in std::fs::read_dir(tmp.path().join("audit")).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !(name.starts_with("journal-") && name.ends_with(".jsonl")) {
            continue;
        }
        for line in std::fs::read_to_string(entry.path()).unwrap().lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            if v["event"] == "confirmed" {
                confirmed += 1;
                let id = v["id"].as_str().unwrap();
                let id = id.split('#').next().unwrap_or(id);
                assert!(
                    ids.binary_search(&id.to_owned()).is_ok(),
                    "confirmed {id} is not at the destination"
                );
            }
        }
    }
    assert!(confirmed >= 20, "the journal recorded the forwarded ones: {confirmed}");
}

/// The connections of the redrive process `pid`, by the names redrive gives them, killed.
fn kill_connections_of(con: &mut redis::Connection, pid: u32) -> usize {
    let list: String = redis::cmd("CLIENT").arg("LIST").query(con).unwrap();
    let ours = format!("name=redrive-{pid}-");
    let ids: Vec<String> = list
        .lines()
        .filter(|l| l.contains(&ours))
        .filter_map(|l| {
            l.split_whitespace()
                .find_map(|f| f.strip_prefix("id="))
                .map(str::to_owned)
        })
        .collect();
    for id in &ids {
        let _: i64 = redis::cmd("CLIENT").arg("KILL").arg("ID").arg(id).query(con).unwrap();
    }
    ids.len()
}

/// Redis Streams under the adapter kit: a DLQ stream an application fills for real (a consumer group that
/// fails entries three times, then moves them with their error), a staging stream. redrive reaches Redis
/// through a TCP proxy the kit can stall.
struct RedisKit {
    s: Streams,
    proxy: common::proxy::Proxy,
    /// An ACL user made for `password_never_printed`, deleted at the end.
    user: Option<String>,
}

impl Drop for RedisKit {
    fn drop(&mut self) {
        if let Some(user) = self.user.take() {
            let _: Result<(), _> = redis::cmd("ACL").arg("DELUSER").arg(&user).query(&mut self.s.con);
        }
    }
}

impl kit::Broker for RedisKit {
    fn new(test: &str) -> Self {
        let mut s = Streams::new(&format!("kit-{test}"));
        s.create("staging");
        let proxy = common::proxy::Proxy::start(common::proxy::authority(&s.server));
        RedisKit { s, proxy, user: None }
    }

    fn seed(&mut self, n: u64) {
        self.s.seed(n as usize);
    }

    fn source_url(&self) -> String {
        self.proxy.route(&self.s.url("dlq", ""))
    }

    fn destination_url(&self) -> String {
        self.proxy.route(&self.s.url("staging", ""))
    }

    fn destination_count(&mut self) -> usize {
        self.s.len("staging")
    }

    fn at_destination(&mut self) -> Vec<kit::Arrived> {
        self.s
            .entries("staging")
            .into_iter()
            .map(|(order, fields)| kit::Arrived {
                order,
                replay_id: fields.get("x-redrive-replay-id").cloned(),
            })
            .collect()
    }

    fn in_dlq(&mut self) -> Vec<u64> {
        self.s.orders("dlq")
    }

    fn at_origin(&mut self) -> Vec<u64> {
        // The originals stay in the work stream (the application acked them); the replays carry a replay id.
        self.s
            .entries("orders")
            .into_iter()
            .filter(|(_, fields)| fields.contains_key("x-redrive-replay-id"))
            .map(|(order, _)| order)
            .collect()
    }

    fn drop_connections(&mut self, redrive_pid: u32) {
        assert!(
            kill_connections_of(&mut self.s.con, redrive_pid) > 0,
            "no connection of redrive found"
        );
    }

    fn random_kills(&self) -> usize {
        50
    }

    fn stall_connections(&mut self) {
        assert!(self.proxy.stall() > 0, "redrive has no connection through the proxy");
    }

    fn fail_again(&mut self) -> Vec<u64> {
        // The staging stream's consumers read each replay, fail it and move it to the DLQ with its fields.
        let (staging, dlq) = (self.s.key("staging"), self.s.key("dlq"));
        let read: Value = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg("consumers")
            .arg("worker")
            .arg("COUNT")
            .arg(500)
            .arg("STREAMS")
            .arg(&staging)
            .arg(">")
            .query(&mut self.s.con)
            .unwrap();
        let mut back = Vec::new();
        for e in redrive::brokers::redis::entries_of_read(&read) {
            let mut fields: Vec<(String, String)> = e
                .fields
                .unwrap()
                .into_iter()
                .map(|(k, v)| (String::from_utf8(k).unwrap(), String::from_utf8(v).unwrap()))
                .filter(|(k, _)| k != "error")
                .collect();
            let payload = &fields.iter().find(|(k, _)| k == "payload").unwrap().1;
            let order = kit::order_of_body(payload).unwrap();
            fields.push(("error".into(), format!("still failing: sku {order} unknown")));
            let _: String = self.s.con.xadd(&dlq, "*", &fields).unwrap();
            let _: i64 = self.s.con.xack(&staging, "consumers", &[&e.id]).unwrap();
            back.push(order);
        }
        back
    }

    fn crash_copies(&self) -> kit::Copies {
        kit::Copies::None
    }

    fn mistakes(&self) -> Vec<kit::Mistake> {
        vec![
            kit::Mistake {
                what: "a missing stream",
                url: self.s.url("nope", ""),
                says: "does not exist",
            },
            kit::Mistake {
                what: "a wrong password",
                url: format!(
                    "redis://nobody:wrong-s3cret@127.0.0.1:6379/0?stream={}",
                    self.s.key("dlq")
                ),
                says: "check the user and password",
            },
            kit::Mistake {
                what: "a closed port",
                url: "redis://127.0.0.1:9/0?stream=x".into(),
                says: "cannot connect",
            },
        ]
    }

    fn with_password(&mut self) -> (String, String) {
        let user = format!("redrive-kit-{}", std::process::id());
        let password = "Kit#/?@:%& =Secret".to_owned();
        let _: () = redis::cmd("ACL")
            .arg("SETUSER")
            .arg(&user)
            .arg("on")
            .arg(format!(">{password}"))
            .arg("~*")
            .arg("&*")
            .arg("+@all")
            .query(&mut self.s.con)
            .unwrap();
        self.user = Some(user.clone());
        let encoded: String = form_urlencoded::byte_serialize(password.as_bytes())
            .collect::<String>()
            .replace('+', "%20");
        (
            format!("redis://{user}:{encoded}@127.0.0.1:6379/0?stream={}", self.s.key("dlq")),
            password,
        )
    }
}

kit::suite!(RedisKit:
    reconciles,
    plan_changes_nothing,
    dropped_connection,
    stalled_connection,
    kill_9_then_resume,
    kill_9_at_random_points,
    crash_at_each_step,
    returning_replays_trip_the_breaker,
    to_origin,
    mistakes_are_exit_2,
    password_never_printed,
);
