//! End-to-end tests against a real PostgreSQL (127.0.0.1:5432, trust auth, database `test`, started by
//! scripts/services.sh; REDRIVE_TEST_POSTGRES overrides). Each test creates its own Laravel-style
//! `failed_jobs` table and fills it the way the framework's failer does, then replays it.

mod common;
mod kit;

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{module, redrive, run};
use kit::file_orders as staged;

fn server() -> String {
    std::env::var("REDRIVE_TEST_POSTGRES").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// The restart case stops the server: it runs alone, the other tests share.
static SERVER: std::sync::RwLock<()> = std::sync::RwLock::new(());

fn shared_server() -> std::sync::RwLockReadGuard<'static, ()> {
    SERVER.read().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A connection to the test server, driven on `rt`.
fn connect(rt: &tokio::runtime::Runtime) -> tokio_postgres::Client {
    rt.block_on(async {
        let (client, connection) = tokio_postgres::connect(&server(), tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "no PostgreSQL at {}: {e}. Start it with scripts/services.sh, or set REDRIVE_TEST_POSTGRES",
                    server()
                )
            });
        tokio::spawn(connection);
        client
    })
}

/// One test's table, dropped at the end.
struct Table {
    rt: tokio::runtime::Runtime,
    client: tokio_postgres::Client,
    name: String,
}

impl Table {
    fn new(test: &str) -> Self {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let client = connect(&rt);
        let name = format!("failed_jobs_{test}_{}", std::process::id());
        let t = Table { rt, client, name };
        t.exec(&format!(
            "DROP TABLE IF EXISTS {0}; CREATE TABLE {0} (id bigserial PRIMARY KEY, uuid varchar(255) UNIQUE NOT NULL, \
             connection text NOT NULL, queue text NOT NULL, payload text NOT NULL, exception text NOT NULL, \
             failed_at timestamp NOT NULL DEFAULT current_timestamp, replayed_at timestamp)",
            t.name
        ));
        t
    }

    fn exec(&self, sql: &str) {
        self.rt.block_on(self.client.batch_execute(sql)).unwrap();
    }

    fn query(&self, sql: &str) -> Vec<tokio_postgres::Row> {
        self.rt.block_on(self.client.query(sql, &[])).unwrap()
    }

    /// The framework's failer: one row per failed job. i % 5: 0, 1 time out; 2 fails validation;
    /// 3 is test traffic (times out); 4 failed with an unknown error. Even jobs ran on `emails`.
    fn seed(&self, n: u64) {
        for i in 0..n {
            let exception = match i % 5 {
                0 | 1 | 3 => {
                    "Illuminate\\Http\\Client\\ConnectionException: timeout calling billing\n#0 /app/Job.php(12)"
                }
                2 => "Illuminate\\Validation\\ValidationException: validation failed: sku missing\n#0 ...",
                _ => "RuntimeException: something odd\n#0 ...",
            };
            let payload = if i % 5 == 3 {
                format!(r#"{{"order":{i},"test":true}}"#)
            } else {
                format!(r#"{{"order":{i}}}"#)
            };
            let queue = if i % 2 == 0 { "emails" } else { "orders" };
            self.rt
                .block_on(self.client.execute(
                    &format!(
                        "INSERT INTO {} (uuid, connection, queue, payload, exception) VALUES ($1, 'redis', $2, $3, $4)",
                        self.name
                    ),
                    &[&format!("uuid-{i}"), &queue, &payload, &exception],
                ))
                .unwrap();
        }
    }

    fn url(&self, query: &str) -> String {
        format!("{}?table={}{query}", server(), self.name)
    }

    fn remaining(&self) -> Vec<u64> {
        let mut o: Vec<u64> = self
            .query(&format!("SELECT payload FROM {} WHERE replayed_at IS NULL", self.name))
            .iter()
            .map(|r| order(&r.get::<_, String>(0)))
            .collect();
        o.sort_unstable();
        o
    }
}

impl Drop for Table {
    fn drop(&mut self) {
        let _ = self.rt.block_on(
            self.client
                .batch_execute(&format!("DROP TABLE IF EXISTS {}", self.name)),
        );
    }
}

fn order(body: &str) -> u64 {
    serde_json::from_str::<serde_json::Value>(body).unwrap()["order"]
        .as_u64()
        .unwrap()
}

fn sorted(mut v: Vec<u64>) -> Vec<u64> {
    v.sort_unstable();
    v
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
fn replays_a_failed_jobs_table_and_every_row_ends_in_exactly_one_place() {
    let _shared = shared_server();
    let t = Table::new("reconcile");
    let n = 50;
    t.seed(n);
    let tmp = tempfile::tempdir().unwrap();
    let staging = tmp.path().join("staging.jsonl");
    let archive = tmp.path().join("archive.jsonl");
    let (code, out, err) = run(audit(
        chain(
            redrive(tmp.path())
                .args(["run", "--from", &t.url(""), "--to"])
                .arg(format!("file:{}", staging.display())),
        )
        .arg("--archive")
        .arg(&archive),
        &tmp.path().join("audit"),
    ));
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    assert_eq!(sorted(staged(&staging)), expected(n, |i| i % 5 < 2));
    assert_eq!(
        t.remaining(),
        expected(n, |i| i % 5 == 2 || i % 5 == 4),
        "skipped rows stay"
    );
    let archived = std::fs::read_to_string(&archive).unwrap();
    assert_eq!(archived.lines().count(), 10);
    let a: serde_json::Value = serde_json::from_str(archived.lines().next().unwrap()).unwrap();
    assert_eq!(
        a["failure"]["error_text"],
        "Illuminate\\Http\\Client\\ConnectionException: timeout calling billing"
    );
    assert_eq!(a["origin"]["system"], "database");
    assert_eq!(a["origin"]["dlq"], t.name.as_str());
    assert!(a["failure"]["last_failed_at"].is_string(), "{a}");
    let first: serde_json::Value =
        serde_json::from_str(std::fs::read_to_string(&staging).unwrap().lines().next().unwrap()).unwrap();
    assert_eq!(first["attributes"]["uuid"], "uuid-0");
    assert_eq!(first["attributes"]["queue"], "emails");
    assert_eq!(first["attributes"]["x-redrive-replay-count"], "1");
}

#[test]
fn where_selects_rows_and_mark_keeps_them() {
    let _shared = shared_server();
    let t = Table::new("where");
    let n = 20;
    t.seed(n);
    let tmp = tempfile::tempdir().unwrap();
    let staging = tmp.path().join("staging.jsonl");
    let (code, out, err) = run(audit(
        redrive(tmp.path())
            .args([
                "run",
                "--from",
                &t.url("&ack=mark"),
                "--no-filter",
                "--where",
                "queue = 'emails'",
                "--to",
            ])
            .arg(format!("file:{}", staging.display())),
        &tmp.path().join("audit"),
    ));
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    assert_eq!(sorted(staged(&staging)), expected(n, |i| i % 2 == 0));
    let marked = t.query(&format!(
        "SELECT count(*) FROM {} WHERE replayed_at IS NOT NULL",
        t.name
    ));
    assert_eq!(marked[0].get::<_, i64>(0), 10, "marked, not deleted");
    assert_eq!(t.remaining(), expected(n, |i| i % 2 == 1));

    // A predicate that does not run is a clear error, before anything moves.
    let (code, _, err) = run(audit(
        redrive(tmp.path())
            .args([
                "run",
                "--from",
                &t.url(""),
                "--no-filter",
                "--where",
                "no_such_column = 1",
            ])
            .args(["--to", "file:x.jsonl"]),
        &tmp.path().join("audit2"),
    ));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no_such_column") && err.contains("--where"), "{err}");
}

#[test]
fn two_workers_share_one_table_and_no_row_is_taken_twice() {
    let _shared = shared_server();
    let t = Table::new("workers");
    // More rows than one worker reads ahead (about 1 000 wait for the rate limit), so the second worker gets
    // rows even when it starts late on a loaded machine.
    let n = 1200;
    t.seed(n);
    let tmp = tempfile::tempdir().unwrap();
    let spawn = |name: &str| {
        let mut cmd = redrive(tmp.path());
        audit(
            cmd.args([
                "run",
                "--from",
                &t.url("&page=20"),
                "--no-filter",
                "--rate",
                "400/s",
                "--to",
            ])
            .arg(format!("file:{}", tmp.path().join(format!("{name}.jsonl")).display())),
            &tmp.path().join(name),
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
    let (w1, w2) = (
        staged(&tmp.path().join("w1.jsonl")),
        staged(&tmp.path().join("w2.jsonl")),
    );
    assert!(
        !w1.is_empty() && !w2.is_empty(),
        "both workers took rows: {} and {}",
        w1.len(),
        w2.len()
    );
    let mut all = w1.clone();
    all.extend(&w2);
    assert_eq!(sorted(all), expected(n, |_| true), "each row exactly once");
    assert!(t.remaining().is_empty());
}

#[test]
fn rows_that_arrive_during_a_pass_belong_to_the_next_pass() {
    let _shared = shared_server();
    let t = Table::new("late");
    let n = 60;
    t.seed(n);
    let tmp = tempfile::tempdir().unwrap();
    let staging = tmp.path().join("staging.jsonl");
    let child = audit(
        redrive(tmp.path())
            .args([
                "run",
                "--from",
                &t.url("&page=10"),
                "--no-filter",
                "--rate",
                "40/s",
                "--to",
            ])
            .arg(format!("file:{}", staging.display())),
        &tmp.path().join("audit"),
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while staged(&staging).len() < 15 {
        assert!(Instant::now() < deadline, "the run did not make progress");
        std::thread::sleep(Duration::from_millis(20));
    }
    // A job that fails again while the pass runs: the failer writes a new row.
    t.exec(&format!(
        "INSERT INTO {} (uuid, connection, queue, payload, exception) VALUES \
         ('late-1', 'redis', 'emails', '{{\"order\":1001}}', 'Timeout')",
        t.name
    ));
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        sorted(staged(&staging)),
        expected(n, |_| true),
        "only the rows there at the start"
    );
    assert_eq!(t.remaining(), vec![1001], "the new row waits for the next pass");
}

#[test]
fn pg_terminate_backend_mid_run_loses_nothing_and_doubles_nothing() {
    let _shared = shared_server();
    let t = Table::new("terminate");
    let n = 120;
    t.seed(n);
    let tmp = tempfile::tempdir().unwrap();
    let staging = tmp.path().join("staging.jsonl");
    let child = audit(
        redrive(tmp.path())
            .args([
                "run",
                "--from",
                &t.url("&page=25"),
                "--no-filter",
                "--rate",
                "60/s",
                "--to",
            ])
            .arg(format!("file:{}", staging.display())),
        &tmp.path().join("audit"),
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut kills = 0;
    while kills < 2 {
        assert!(Instant::now() < deadline, "the run did not make progress");
        if staged(&staging).len() >= 30 * (kills + 1) {
            let killed = t.query(&format!(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'redrive' \
                 AND query ILIKE '%{}%'",
                t.name
            ));
            if !killed.is_empty() {
                kills += 1;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(
        stderr.contains("reconnecting"),
        "the connection was not lost?\n{stderr}"
    );
    let got = staged(&staging);
    let mut counts: HashMap<u64, usize> = HashMap::new();
    for o in &got {
        *counts.entry(*o).or_default() += 1;
    }
    let doubled: Vec<_> = counts.iter().filter(|(_, c)| **c > 1).collect();
    assert!(doubled.is_empty(), "doubled: {doubled:?}");
    assert_eq!(sorted(got), expected(n, |_| true), "nothing lost");
    assert!(
        t.remaining().is_empty(),
        "every replayed row deleted: {:?}\n{stdout}",
        t.remaining()
    );
}

#[test]
fn mistakes_are_clear_errors_before_anything_moves() {
    let _shared = shared_server();
    let t = Table::new("mistakes");
    t.seed(3);
    let tmp = tempfile::tempdir().unwrap();
    for (from, expect) in [
        (format!("{}?table=no_such_table", server()), "does not exist"),
        (t.url("&body_column=nope"), "has no column `nope`"),
        (t.url("&preset=symfony"), "presets are"),
        (
            "postgres://postgres@127.0.0.1:9/test?table=x".to_owned(),
            "cannot connect",
        ),
    ] {
        let (code, _, err) = run(audit(
            redrive(tmp.path()).args(["run", "--from", &from, "--no-filter", "--to", "file:x.jsonl"]),
            tmp.path(),
        ));
        assert_eq!(code, 2, "{from}: {err}");
        assert!(err.contains(expect), "{from}: expected {expect:?} in {err}");
    }
    let (code, _, err) = run(audit(
        redrive(tmp.path()).args([
            "run",
            "--from",
            "file:x.jsonl",
            "--where",
            "a = 1",
            "--no-filter",
            "--to",
            "file:y",
        ]),
        tmp.path(),
    ));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--where selects rows of a database table"), "{err}");
    assert_eq!(t.remaining().len(), 3);
}

#[test]
fn a_where_clause_cannot_escape_its_parentheses_or_end_the_statement() {
    let _shared = shared_server();
    let t = Table::new("escape");
    t.seed(5);
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out.jsonl");
    let replay_where = |predicate: &str| {
        run(audit(
            redrive(tmp.path())
                .args(["run", "--from", &t.url(""), "--where", predicate, "--no-filter", "--to"])
                .arg(format!("file:{}", out.display())),
            tmp.path(),
        ))
    };
    for predicate in [
        "queue = 'emails') OR (true",
        "queue = 'emails' -- the rest is a comment",
        "queue = 'emails' /* comment */",
        "queue = 'emails'; DELETE FROM x",
        "(queue = 'emails'",
    ] {
        let (code, out, err) = replay_where(predicate);
        assert_eq!(code, 2, "{predicate:?} must be refused: {out}\n{err}");
        assert!(err.contains("--where"), "{predicate:?}: {err}");
        assert_eq!(t.remaining().len(), 5, "{predicate:?}: nothing moved");
    }
    // Parentheses, quotes and operators inside a well-formed predicate are fine.
    let (code, stdout, err) = replay_where("(queue = 'emails' OR queue = 'a '')(') AND payload NOT LIKE '%--%'");
    assert_eq!(code, 0, "{stdout}\n{err}");
    assert_eq!(sorted(staged(&out)), expected(5, |i| i % 2 == 0));
}

/// A `failed_jobs` table under the adapter kit, filled the way Laravel's failer fills it, replayed to a file
/// (a table is a source only). Not listed: `to_origin` (a job's queue is on another system, not this
/// database).
struct PgKit {
    t: Table,
    tmp: tempfile::TempDir,
}

impl PgKit {
    fn staging(&self) -> std::path::PathBuf {
        self.tmp.path().join("staging.jsonl")
    }
}

impl kit::Broker for PgKit {
    fn new(test: &str) -> Self {
        PgKit {
            t: Table::new(&format!("kit_{test}").replace('-', "_")),
            tmp: tempfile::tempdir().unwrap(),
        }
    }

    fn seed(&mut self, n: u64) {
        self.t.seed(n);
    }

    fn source_url(&self) -> String {
        self.t.url("")
    }

    fn destination_url(&self) -> String {
        format!("file:{}", self.staging().display())
    }

    fn destination_count(&mut self) -> usize {
        staged(&self.staging()).len()
    }

    fn at_destination(&mut self) -> Vec<kit::Arrived> {
        kit::file_arrivals(&self.staging())
    }

    fn in_dlq(&mut self) -> Vec<u64> {
        self.t.remaining()
    }

    fn drop_connections(&mut self, _redrive_pid: u32) {
        // redrive's sessions on this test's table (its queries name it).
        let killed = self.t.query(&format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'redrive' \
             AND query ILIKE '%{}%'",
            self.t.name
        ));
        assert!(!killed.is_empty(), "no session of redrive found");
    }

    fn crash_copies(&self) -> kit::Copies {
        kit::Copies::None
    }

    fn restart_server(&mut self) {
        // This case runs alone (`access`). A fast shutdown ends every session, as a failover or an upgrade
        // would; the data is on disk.
        let mut versions: Vec<String> = std::fs::read_dir("/etc/postgresql")
            .expect(
                "the restart case needs Debian's PostgreSQL cluster (/etc/postgresql), as scripts/services.sh sets up",
            )
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        versions.sort_by_key(|v| v.parse::<u32>().unwrap_or(0));
        let version = versions.last().expect("a PostgreSQL cluster under /etc/postgresql");
        let status = Command::new("pg_ctlcluster")
            .args([
                "--skip-systemctl-redirect",
                version,
                "main",
                "restart",
                "--mode",
                "fast",
            ])
            .status()
            .expect("pg_ctlcluster (Debian's postgresql-common) restarts the server");
        assert!(status.success(), "pg_ctlcluster {version} main restart failed");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ok = self
                .t
                .rt
                .block_on(tokio_postgres::connect(&server(), tokio_postgres::NoTls))
                .is_ok();
            if ok {
                break;
            }
            assert!(Instant::now() < deadline, "PostgreSQL did not come back");
            std::thread::sleep(Duration::from_millis(200));
        }
        self.t.client = connect(&self.t.rt);
    }

    fn access(access: kit::Access) -> Box<dyn std::any::Any> {
        match access {
            kit::Access::Shared => Box::new(shared_server()),
            kit::Access::Exclusive => Box::new(SERVER.write().unwrap_or_else(std::sync::PoisonError::into_inner)),
        }
    }

    fn mistakes(&self) -> Vec<kit::Mistake> {
        vec![
            kit::Mistake {
                what: "a missing table",
                url: format!("{}?table=no_such_table", server()),
                says: "does not exist",
            },
            kit::Mistake {
                what: "an unknown user",
                url: format!(
                    "postgres://no_such_user:wrong-s3cret@127.0.0.1:5432/test?table={}",
                    self.t.name
                ),
                says: "no_such_user",
            },
            kit::Mistake {
                what: "a closed port",
                url: "postgres://postgres@127.0.0.1:9/test?table=x".into(),
                says: "cannot connect",
            },
        ]
    }

    fn with_password(&mut self) -> (String, String) {
        // Trust authentication takes any password: what matters is that none is ever shown.
        let password = "Kit#/?@:%& =Secret".to_owned();
        let encoded: String = form_urlencoded::byte_serialize(password.as_bytes())
            .collect::<String>()
            .replace('+', "%20");
        (
            format!(
                "postgres://postgres:{encoded}@127.0.0.1:5432/test?table={}",
                self.t.name
            ),
            password,
        )
    }
}

kit::suite!(PgKit:
    reconciles,
    plan_changes_nothing,
    dropped_connection,
    kill_9_then_resume,
    crash_at_each_step,
    mistakes_are_exit_2,
    password_never_printed,
    broker_restarted,
);
