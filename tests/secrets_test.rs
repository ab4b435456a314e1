//! Passwords never appear in any output: for every scheme that carries one (RabbitMQ, Redis, PostgreSQL),
//! on every error path (closed port, wrong password, missing queue/stream/table, bad option) and on a
//! successful run (summary, JSON summary, verbose logs, journal, audit, archive), with passwords that
//! contain each character a URL gives a meaning to, written raw (a mistake redrive must refuse without
//! echoing it) and percent-encoded. Needs the local RabbitMQ, Redis and PostgreSQL (scripts/services.sh).

mod common;

use std::path::Path;
use std::process::Command;

use common::{redrive, run};

/// Characters that end or split a URL's userinfo when written raw.
const SPECIALS: [char; 9] = ['#', '/', '?', '@', ':', '%', '&', ' ', '='];
/// The two halves of every test password; neither may ever be printed.
const HEAD: &str = "Pz9x";
const TAIL: &str = "Q9zP";

fn password(special: char) -> String {
    format!("{HEAD}{special}{TAIL}")
}

fn encoded(password: &str) -> String {
    form_urlencoded::byte_serialize(password.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

fn assert_no_secret(what: &str, text: &str) {
    for part in [HEAD, TAIL] {
        assert!(!text.contains(part), "{what}: the password shows ({part}):\n{text}");
    }
}

/// Every file under `dir`, as text.
fn files_text(dir: &Path) -> String {
    let mut all = String::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return all;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            all.push_str(&files_text(&path));
        } else if let Ok(bytes) = std::fs::read(&path) {
            all.push_str(&String::from_utf8_lossy(&bytes));
        }
    }
    all
}

/// Run a failing command with `url` as the source, the destination or the park destination, in table and
/// JSON form and verbose; nothing may show the password.
fn check_error_paths(label: &str, url: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let dlq = tmp.path().join("dlq.jsonl");
    std::fs::write(&dlq, "{\"id\":\"a\",\"body\":\"{}\"}\n").unwrap();
    let file_source = format!("file:{}", dlq.display());
    let staging = format!("file:{}", tmp.path().join("staging.jsonl").display());
    let audit = tmp.path().join("audit").display().to_string();
    let to_staging = ["--to", staging.as_str(), "--no-filter", "--audit-dir", audit.as_str()];
    let from_file = [
        "--from",
        file_source.as_str(),
        "--no-filter",
        "--audit-dir",
        audit.as_str(),
    ];
    let runs: Vec<Vec<&str>> = vec![
        [&["run", "--from", url][..], &to_staging].concat(),
        [&["run", "-v", "-o", "json", "--from", url][..], &to_staging].concat(),
        vec!["plan", "-vv", "--from", url, "--no-filter", "--audit-dir", &audit],
        [&["run", "--to", url][..], &from_file].concat(),
        [
            &["run", "--to", &staging, "--park", url, "--max-replays", "1"][..],
            &from_file,
        ]
        .concat(),
    ];
    for args in runs {
        let (code, stdout, stderr) = run(redrive(tmp.path()).args(&args));
        let what = format!("{label}: redrive {}", args.join(" ").replace(url, "URL"));
        assert_ne!(code, 0, "{what}: must fail\n{stdout}\n{stderr}");
        assert!(
            !stderr.trim().is_empty() || !stdout.trim().is_empty(),
            "{what}: says why"
        );
        assert_no_secret(&what, &stdout);
        assert_no_secret(&what, &stderr);
    }
    assert_no_secret(&format!("{label}: files"), &files_text(tmp.path()));
}

/// Check the error paths of every `(case, url)` that `cases` makes for a password, with every special
/// character, raw and percent-encoded.
fn check_every_password(scheme: &str, cases: impl Fn(&str) -> Vec<(&'static str, String)>) {
    for special in SPECIALS {
        let password = password(special);
        for (form, pw) in [("raw", password.clone()), ("encoded", encoded(&password))] {
            for (case, url) in cases(&pw) {
                check_error_paths(&format!("{scheme} {case}, {form} {special:?}"), &url);
            }
        }
    }
}

#[test]
fn amqp_error_paths_never_show_the_password() {
    check_every_password("amqp", |pw| {
        vec![
            (
                "wrong password",
                format!("amqp://guest:{pw}@127.0.0.1:5672/%2f?queue=redrive-secrets"),
            ),
            ("closed port", format!("amqp://guest:{pw}@127.0.0.1:1/%2f?queue=q")),
            (
                "bad option",
                format!("amqp://guest:{pw}@127.0.0.1:5672/%2f?queue=q&bogus=1"),
            ),
            (
                "amqps, no TLS there",
                format!("amqps://guest:{pw}@127.0.0.1:5672/%2f?queue=q"),
            ),
        ]
    });
}

#[test]
fn redis_error_paths_never_show_the_password() {
    check_every_password("redis", |pw| {
        vec![
            (
                "wrong password",
                format!("redis://default:{pw}@127.0.0.1:6379/0?stream=redrive-secrets"),
            ),
            (
                "password only",
                format!("redis://:{pw}@127.0.0.1:6379/0?stream=redrive-secrets"),
            ),
            ("closed port", format!("redis://u:{pw}@127.0.0.1:1/0?stream=s")),
            (
                "bad option",
                format!("redis://u:{pw}@127.0.0.1:6379/0?stream=s&bogus=1"),
            ),
        ]
    });
}

#[test]
fn postgres_error_paths_never_show_the_password() {
    check_every_password("postgres", |pw| {
        vec![
            (
                "missing table",
                format!("postgres://postgres:{pw}@127.0.0.1:5432/test?table=redrive_no_such_table"),
            ),
            (
                "closed port",
                format!("postgres://postgres:{pw}@127.0.0.1:1/test?table=t"),
            ),
            (
                "password= option",
                format!("postgres://postgres@127.0.0.1:1/test?table=t&password={pw}"),
            ),
            (
                "password= option, missing table",
                format!("postgres://postgres@127.0.0.1:5432/test?password={pw}&table=redrive_no_such_table"),
            ),
            (
                "bad option",
                format!("postgres://postgres:{pw}@127.0.0.1:5432/test?table=t&preset=bogus"),
            ),
            (
                "bad sslmode",
                format!("postgres://postgres:{pw}@127.0.0.1:5432/test?table=t&sslmode=bogus"),
            ),
            (
                "postgresql://",
                format!("postgresql://postgres:{pw}@127.0.0.1:1/test?table=t"),
            ),
        ]
    });
}

/// A successful replay from `from` to `to` (one of them carrying the password); output, journal, audit
/// and archive must not show it.
fn check_success(label: &str, from: &str, to: &str, tmp: &Path) {
    let audit = tmp.join("audit");
    for extra in [vec![], vec!["-v", "-o", "json"]] {
        let (code, stdout, stderr) = run(redrive(tmp)
            .args(["run", "--no-progress", "--from", from, "--to", to, "--no-filter"])
            .arg("--audit-dir")
            .arg(&audit)
            .args(&extra));
        assert_eq!(code, 0, "{label}: {stdout}\n{stderr}");
        assert_no_secret(label, &stdout);
        assert_no_secret(label, &stderr);
    }
    assert_no_secret(&format!("{label}: audit dir"), &files_text(&audit));
}

fn rabbitmqctl(args: &[&str]) {
    let out = Command::new("rabbitmqctl")
        .args(args)
        .output()
        .expect("rabbitmqctl is needed (it ships with rabbitmq-server; scripts/services.sh installs it)");
    assert!(
        out.status.success(),
        "rabbitmqctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_successful_amqp_run_never_shows_the_password() {
    let user = format!("redrive-secret-{}", std::process::id());
    let pw = format!("{HEAD}#/?@:%& ={TAIL}");
    rabbitmqctl(&["add_user", &user, &pw]);
    rabbitmqctl(&["set_permissions", "-p", "/", &user, ".*", ".*", ".*"]);
    let tmp = tempfile::tempdir().unwrap();
    let queue = format!("redrive-secrets.{}", std::process::id());
    let url = format!("amqp://{user}:{}@127.0.0.1:5672/%2f?queue={queue}", encoded(&pw));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        use lapin::options::QueueDeclareOptions;
        let conn = lapin::Connection::connect("amqp://guest:guest@127.0.0.1:5672/%2f", Default::default())
            .await
            .expect("RabbitMQ at 127.0.0.1:5672 (scripts/services.sh)");
        let ch = conn.create_channel().await.unwrap();
        ch.queue_declare(
            queue.as_str().into(),
            QueueDeclareOptions::default(),
            Default::default(),
        )
        .await
        .unwrap();
    });
    let dlq = tmp.path().join("dlq.jsonl");
    std::fs::write(&dlq, "{\"id\":\"a\",\"body\":\"{}\"}\n{\"id\":\"b\",\"body\":\"{}\"}\n").unwrap();
    check_success("amqp destination", &format!("file:{}", dlq.display()), &url, tmp.path());
    let out = tmp.path().join("out.jsonl");
    check_success("amqp source", &url, &format!("file:{}", out.display()), tmp.path());
    assert_eq!(
        std::fs::read_to_string(&out).unwrap().lines().count(),
        2,
        "both went through"
    );
    rt.block_on(async {
        let conn = lapin::Connection::connect("amqp://guest:guest@127.0.0.1:5672/%2f", Default::default())
            .await
            .unwrap();
        let ch = conn.create_channel().await.unwrap();
        let _ = ch.queue_delete(queue.as_str().into(), Default::default()).await;
    });
    rabbitmqctl(&["delete_user", &user]);
}

#[test]
fn a_successful_redis_run_never_shows_the_password() {
    let mut con = redis::Client::open("redis://127.0.0.1:6379/0")
        .and_then(|c| c.get_connection())
        .expect("Redis at 127.0.0.1:6379 (scripts/services.sh)");
    let user = format!("redrive-secret-{}", std::process::id());
    let pw = format!("{HEAD}#/?@:%& ={TAIL}");
    let stream = format!("redrive-secrets:{}", std::process::id());
    let _: () = redis::cmd("ACL")
        .arg("SETUSER")
        .arg(&user)
        .arg("on")
        .arg(format!(">{pw}"))
        .arg("~*")
        .arg("&*")
        .arg("+@all")
        .query(&mut con)
        .unwrap();
    let _: () = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(&stream)
        .arg("g")
        .arg("$")
        .arg("MKSTREAM")
        .query(&mut con)
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let dlq = tmp.path().join("dlq.jsonl");
    std::fs::write(&dlq, "{\"id\":\"a\",\"body\":\"{}\"}\n").unwrap();
    let url = format!("redis://{user}:{}@127.0.0.1:6379/0?stream={stream}", encoded(&pw));
    check_success(
        "redis destination",
        &format!("file:{}", dlq.display()),
        &url,
        tmp.path(),
    );
    let out = tmp.path().join("out.jsonl");
    check_success("redis source", &url, &format!("file:{}", out.display()), tmp.path());
    let _: () = redis::cmd("DEL").arg(&stream).query(&mut con).unwrap();
    let _: () = redis::cmd("ACL").arg("DELUSER").arg(&user).query(&mut con).unwrap();
}

#[test]
fn a_successful_postgres_run_never_shows_the_password() {
    let table = format!("redrive_secrets_{}", std::process::id());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = rt.block_on(async {
        let (client, connection) =
            tokio_postgres::connect("postgres://postgres@127.0.0.1:5432/test", tokio_postgres::NoTls)
                .await
                .expect("PostgreSQL at 127.0.0.1:5432, database test (scripts/services.sh)");
        tokio::spawn(connection);
        client
    });
    rt.block_on(client.batch_execute(&format!(
        "DROP TABLE IF EXISTS {table}; CREATE TABLE {table} (id bigserial PRIMARY KEY, queue text, \
         payload text NOT NULL, exception text, failed_at timestamp DEFAULT now()); \
         INSERT INTO {table} (queue, payload, exception) VALUES ('q', '{{}}', 'boom'), ('q', '{{}}', 'boom')"
    )))
    .unwrap();
    let pw = format!("{HEAD}#/?@:%& ={TAIL}");
    let tmp = tempfile::tempdir().unwrap();
    for (label, url) in [
        (
            "userinfo",
            format!("postgres://postgres:{}@127.0.0.1:5432/test?table={table}", encoded(&pw)),
        ),
        (
            "password=",
            format!(
                "postgres://postgres@127.0.0.1:5432/test?table={table}&password={}",
                encoded(&pw)
            ),
        ),
    ] {
        let out = tmp.path().join(format!("out-{}.jsonl", label.len()));
        check_success(
            &format!("postgres source ({label})"),
            &url,
            &format!("file:{}", out.display()),
            tmp.path(),
        );
    }
    rt.block_on(client.batch_execute(&format!("DROP TABLE IF EXISTS {table}")))
        .unwrap();
}
