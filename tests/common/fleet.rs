//! A fleet for the end-to-end tests: its coordinating Redis (one of the test's own, so it can be restarted)
//! and its name, `redrive fleet …` against it, and what the fleet tests read from a worker's output.

use std::time::{Duration, Instant};

use super::own_redis::OwnRedis;
use super::{redrive, run};

/// A fleet: its Redis (of this test's own) and its name.
pub struct Fleet {
    /// The fleet's Redis.
    pub redis: OwnRedis,
    /// The fleet's name.
    pub name: String,
}

impl Fleet {
    /// A fleet named after `test` and this process, on a Redis of its own.
    pub fn new(test: &str) -> Self {
        Fleet {
            redis: OwnRedis::start(),
            name: format!("{test}-{}", std::process::id()),
        }
    }

    /// Its `--fleet` URL.
    pub fn url(&self) -> String {
        format!("{}?name={}", self.redis.url(), self.name)
    }

    /// `redrive fleet ARGS NAME --redis URL`.
    pub fn command(&self, tmp: &std::path::Path, verb: &str, extra: &[&str]) -> (i32, String, String) {
        run(redrive(tmp)
            .args(["fleet", verb, &self.name, "--redis", &self.redis.url()])
            .args(extra))
    }

    /// `redrive fleet status NAME -o json`, read.
    pub fn status(&self, tmp: &std::path::Path) -> serde_json::Value {
        let (code, out, err) = self.command(tmp, "status", &["-o", "json"]);
        assert_eq!(code, 0, "{out}\n{err}");
        serde_json::from_str(out.trim()).unwrap()
    }
}

/// The `replayed` count of a run's summary.
pub fn replayed_in(stdout: &str) -> u64 {
    stdout
        .lines()
        .find_map(|l| l.trim_start().strip_prefix("replayed"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no replayed count in {stdout}"))
}

/// Wait until `done`, at most `limit`.
pub fn wait_for(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
