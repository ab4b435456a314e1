//! End-to-end tests against a real MariaDB/MySQL (127.0.0.1:3306, root without a password, database `test`,
//! started by scripts/services.sh; REDRIVE_TEST_MYSQL overrides the admin URL). Each test creates its own
//! Laravel-style `failed_jobs` table and its own database user with a password (so redrive's sessions can be
//! found and killed, and the password is a real one), fills the table the way Laravel's failer does, then
//! replays it.

mod common;
mod kit;

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{module, redrive, run};
use kit::file_orders as staged;
use mysql_async::prelude::Queryable;

/// The password of every test user: every character a URL gives a meaning to.
const PASSWORD: &str = "Kit#/?@:%& =Secret";

fn admin_url() -> String {
    std::env::var("REDRIVE_TEST_MYSQL").unwrap_or_else(|_| "mysql://root@127.0.0.1:3306/test".into())
}

/// One test's table and database user, dropped at the end.
struct Table {
    rt: tokio::runtime::Runtime,
    conn: Option<mysql_async::Conn>,
    name: String,
    user: String,
}

impl Table {
    fn new(test: &str) -> Self {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let conn = rt.block_on(async {
            mysql_async::Conn::from_url(admin_url()).await.unwrap_or_else(|e| {
                panic!(
                    "no MariaDB/MySQL at {}: {e}. Start it with scripts/services.sh, or set REDRIVE_TEST_MYSQL",
                    admin_url()
                )
            })
        });
        let name = format!("failed_jobs_{test}_{}", std::process::id());
        let user = format!("rd_{}_{}", &test[..test.len().min(12)], std::process::id());
        let mut t = Table {
            rt,
            conn: Some(conn),
            name,
            user,
        };
        let name = t.name.clone();
        t.exec(&format!(
            "DROP TABLE IF EXISTS {0}; CREATE TABLE {0} (id bigint unsigned AUTO_INCREMENT PRIMARY KEY, \
             uuid varchar(255) NOT NULL UNIQUE, connection text NOT NULL, queue text NOT NULL, \
             payload longtext NOT NULL, exception longtext NOT NULL, \
             failed_at timestamp NOT NULL DEFAULT CURRENT_TIMESTAMP, replayed_at timestamp NULL DEFAULT NULL) \
             ENGINE=InnoDB",
            name
        ));
        let user = t.user.clone();
        t.exec(&format!(
            "DROP USER IF EXISTS '{0}'@'%'; CREATE USER '{0}'@'%' IDENTIFIED BY '{PASSWORD}'; \
             GRANT ALL ON test.* TO '{0}'@'%'",
            user
        ));
        t
    }

    /// Run statements separated by "; ", one by one.
    fn exec(&mut self, sql: &str) {
        for statement in sql.split("; ") {
            let rt = &self.rt;
            let conn = self.conn.as_mut().unwrap();
            rt.block_on(conn.query_drop(statement)).unwrap();
        }
    }

    fn query<T: mysql_async::prelude::FromRow + Send + 'static>(&mut self, sql: &str) -> Vec<T> {
        let sql = sql.to_owned();
        let rt = &self.rt;
        let conn = self.conn.as_mut().unwrap();
        rt.block_on(conn.query(sql)).unwrap()
    }

    /// Laravel's failer: one row per failed job. i % 5: 0, 1 time out; 2 fails validation; 3 is test traffic
    /// (times out); 4 failed with an unknown error. Even jobs ran on `emails`.
    fn seed(&mut self, n: u64) {
        let rows: Vec<(String, &str, String, &str)> = (0..n)
            .map(|i| {
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
                (format!("uuid-{i}"), queue, payload, exception)
            })
            .collect();
        let sql = format!(
            "INSERT INTO {} (uuid, connection, queue, payload, exception) VALUES (?, 'redis', ?, ?, ?)",
            self.name
        );
        let rt = &self.rt;
        let conn = self.conn.as_mut().unwrap();
        rt.block_on(conn.exec_batch(sql, rows)).unwrap();
    }

    fn url(&self, query: &str) -> String {
        let encoded: String = form_urlencoded::byte_serialize(PASSWORD.as_bytes())
            .collect::<String>()
            .replace('+', "%20");
        format!(
            "mysql://{}:{encoded}@127.0.0.1:3306/test?table={}{query}",
            self.user, self.name
        )
    }

    fn remaining(&mut self) -> Vec<u64> {
        let sql = format!("SELECT payload FROM {} WHERE replayed_at IS NULL", self.name);
        let mut o: Vec<u64> = self.query::<String>(&sql).iter().map(|p| order(p)).collect();
        o.sort_unstable();
        o
    }

    /// Kill every session of this test's user (redrive's).
    fn kill_sessions(&mut self) -> usize {
        let sql = format!(
            "SELECT ID FROM information_schema.PROCESSLIST WHERE USER = '{}'",
            self.user
        );
        let ids: Vec<u64> = self.query(&sql);
        for id in &ids {
            // A session may end on its own meanwhile.
            let rt = &self.rt;
            let conn = self.conn.as_mut().unwrap();
            let _ = rt.block_on(conn.query_drop(format!("KILL CONNECTION {id}")));
        }
        ids.len()
    }
}

impl Drop for Table {
    fn drop(&mut self) {
        let (name, user) = (self.name.clone(), self.user.clone());
        if let Some(mut conn) = self.conn.take() {
            let _ = self.rt.block_on(async move {
                conn.query_drop(format!("DROP TABLE IF EXISTS {name}")).await?;
                conn.query_drop(format!("DROP USER IF EXISTS '{user}'@'%'")).await?;
                conn.disconnect().await
            });
        }
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

fn audit<'a>(cmd: &'a mut Command, dir: &std::path::Path) -> &'a mut Command {
    cmd.arg("--audit-dir").arg(dir).arg("--no-progress")
}

#[test]
fn replays_a_laravel_failed_jobs_table_with_its_failure_context() {
    let mut t = Table::new("laravel");
    let n = 50;
    t.seed(n);
    let sql = format!(
        "UPDATE {} SET failed_at = '2026-11-20 08:00:00' WHERE uuid = 'uuid-0'",
        t.name
    );
    t.exec(&sql);
    let tmp = tempfile::tempdir().unwrap();
    let staging = tmp.path().join("staging.jsonl");
    let archive = tmp.path().join("archive.jsonl");
    let (code, out, err) = run(audit(
        redrive(tmp.path())
            .args(["run", "--from", &t.url(""), "--to"])
            .arg(format!("file:{}", staging.display()))
            .args(["-f", &module("route-by-error"), "-f", &module("repair-json")])
            .args(["-f", &module("drop-test-traffic")])
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
    let first: serde_json::Value =
        serde_json::from_str(std::fs::read_to_string(&staging).unwrap().lines().next().unwrap()).unwrap();
    assert_eq!(first["attributes"]["uuid"], "uuid-0");
    assert_eq!(first["attributes"]["queue"], "emails");
    assert_eq!(
        first["attributes"]["failed_at"], "2026-11-20 08:00:00",
        "times are read in UTC"
    );
    assert_eq!(first["attributes"]["x-redrive-replay-count"], "1");
    let a: serde_json::Value = serde_json::from_str(archived.lines().next().unwrap()).unwrap();
    assert_eq!(
        a["failure"]["error_text"],
        "Illuminate\\Http\\Client\\ConnectionException: timeout calling billing"
    );
    assert_eq!(a["origin"]["system"], "database");
    assert_eq!(a["origin"]["dlq"], t.name.as_str());
    assert_eq!(a["origin"]["original_queue"], "orders", "order 3 ran on `orders`");
    assert!(a["failure"]["last_failed_at"].is_string(), "{a}");
    assert!(!out.contains(PASSWORD) && !err.contains(PASSWORD));
}

#[test]
fn where_selects_rows_and_mark_keeps_them() {
    let mut t = Table::new("where");
    let n = 20;
    t.seed(n);
    let tmp = tempfile::tempdir().unwrap();
    let staging = tmp.path().join("staging.jsonl");
    let (code, out, err) = run(audit(
        redrive(tmp.path())
            .args(["run", "--from", &t.url("&ack=mark&page=3"), "--no-filter"])
            .args(["--where", "queue = 'emails' AND payload NOT LIKE '%#%'", "--to"])
            .arg(format!("file:{}", staging.display())),
        &tmp.path().join("audit"),
    ));
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    assert_eq!(sorted(staged(&staging)), expected(n, |i| i % 2 == 0));
    let sql = format!("SELECT COUNT(*) FROM {} WHERE replayed_at IS NOT NULL", t.name);
    assert_eq!(t.query::<u64>(&sql), vec![10], "marked, not deleted");
    assert_eq!(t.remaining(), expected(n, |i| i % 2 == 1));

    for (predicate, says) in [
        ("no_such_column = 1", "no_such_column"),
        ("queue = 'emails' # the rest is a comment", "`#` comment"),
        ("queue = 'emails') OR (true", "closes a parenthesis"),
        ("queue = 'it\\' ) OR (1", "not closed"),
        ("queue = 'emails'; DELETE FROM x", "`;`"),
    ] {
        let (code, _, err) = run(audit(
            redrive(tmp.path())
                .args(["run", "--from", &t.url(""), "--no-filter", "--where", predicate])
                .args(["--to", "file:x.jsonl"]),
            &tmp.path().join("audit2"),
        ));
        assert_eq!(code, 2, "{predicate}: {err}");
        assert!(err.contains(says) && err.contains("--where"), "{predicate}: {err}");
    }
    assert_eq!(t.remaining(), expected(n, |i| i % 2 == 1), "nothing moved");
}

#[test]
fn two_workers_share_one_table_and_no_row_is_taken_twice() {
    let mut t = Table::new("workers");
    let n = 1200;
    t.seed(n);
    let tmp = tempfile::tempdir().unwrap();
    let spawn = |name: &str| {
        let mut cmd = redrive(tmp.path());
        audit(
            cmd.args(["run", "--from", &t.url("&page=20"), "--no-filter", "--rate", "400/s"])
                .arg("--to")
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
fn the_application_keeps_failing_jobs_into_the_table_while_a_pass_runs() {
    let mut t = Table::new("inserts");
    let n = 60;
    t.seed(n);
    let tmp = tempfile::tempdir().unwrap();
    let staging = tmp.path().join("staging.jsonl");
    let child = audit(
        redrive(tmp.path())
            .args([
                "run",
                "--from",
                &t.url("&page=100"),
                "--no-filter",
                "--rate",
                "10/s",
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
    // The failer inserts new failed jobs while the pass holds its locks (the last page, read ahead, reached the
    // end of the table): no gap lock makes it wait (at REPEATABLE READ it would wait for the whole pass).
    let started = Instant::now();
    let sql = format!(
        "INSERT INTO {} (uuid, connection, queue, payload, exception) VALUES \
         ('late-1', 'redis', 'emails', '{{\"order\":1001}}', 'Timeout'), \
         ('late-2', 'redis', 'emails', '{{\"order\":1002}}', 'Timeout')",
        t.name
    );
    t.exec(&sql);
    let waited = started.elapsed();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        waited < Duration::from_secs(1),
        "the application's insert waited {waited:?} for redrive's locks"
    );
    assert_eq!(
        sorted(staged(&staging)),
        expected(n, |_| true),
        "rows that arrived during the pass belong to the next pass"
    );
    assert_eq!(t.remaining(), vec![1001, 1002]);
}

#[test]
fn killed_sessions_mid_run_lose_nothing_and_double_nothing() {
    let mut t = Table::new("killed");
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
        if staged(&staging).len() >= 30 * (kills + 1) && t.kill_sessions() > 0 {
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
    assert!(stderr.contains("reconnecting"), "the session was not lost?\n{stderr}");
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
        "every replayed row deleted: {:?}",
        t.remaining()
    );
}

/// A Laravel `failed_jobs` table in MariaDB under the adapter kit, replayed to a file (a table is a source
/// only). Not listed: `to_origin` (a job's queue is on another system, not this database).
struct MySqlKit {
    t: Table,
    tmp: tempfile::TempDir,
}

impl MySqlKit {
    fn staging(&self) -> std::path::PathBuf {
        self.tmp.path().join("staging.jsonl")
    }
}

impl kit::Broker for MySqlKit {
    fn new(test: &str) -> Self {
        MySqlKit {
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
        assert!(self.t.kill_sessions() > 0, "no session of redrive found");
    }

    fn crash_copies(&self) -> kit::Copies {
        kit::Copies::None
    }

    fn mistakes(&self) -> Vec<kit::Mistake> {
        vec![
            kit::Mistake {
                what: "a missing table",
                url: self.t.url("").replace(&self.t.name, "no_such_table"),
                says: "does not exist",
            },
            kit::Mistake {
                what: "a wrong password",
                url: format!("mysql://{}:wrong-s3cret@127.0.0.1:3306/test?table=x", self.t.user),
                says: "Access denied",
            },
            kit::Mistake {
                what: "a closed port",
                url: "mysql://root@127.0.0.1:9/test?table=x".into(),
                says: "cannot connect",
            },
            kit::Mistake {
                what: "no database",
                url: format!("mysql://{}:wrong-s3cret@127.0.0.1:3306?table=x", self.t.user),
                says: "name the database",
            },
        ]
    }

    fn with_password(&mut self) -> (String, String) {
        (self.t.url(""), PASSWORD.to_owned())
    }
}

kit::suite!(MySqlKit:
    reconciles,
    plan_changes_nothing,
    dropped_connection,
    kill_9_then_resume,
    crash_at_each_step,
    mistakes_are_exit_2,
    password_never_printed,
);
