//! A Redis server of a test's own (redis-server on a free port, nothing on disk), to restart at will; and
//! the clean-up of a test's keys on a shared one.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A Redis server of a test's own that keeps nothing on disk, as the one on these machines: a restart
/// empties it.
pub struct OwnRedis {
    port: u16,
    child: Option<std::process::Child>,
}

impl OwnRedis {
    /// Start one on a free port.
    pub fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut r = OwnRedis { port, child: None };
        r.up();
        r
    }

    /// Start it (again), and wait until it takes connections.
    pub fn up(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting redis-server: {e}; install Redis (scripts/services.sh does)"));
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "redis-server did not start on {}", self.port);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// kill -9 it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().ok();
            child.wait().ok();
        }
    }

    /// redis://127.0.0.1:PORT/0
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Delete a test's keys (`PREFIX:*`) and the consumer locks redrive took on its streams.
pub fn delete_test_keys(con: &mut redis::Connection, prefix: &str) {
    use redis::Commands;
    let keys: Vec<String> = con.keys(format!("{prefix}:*")).unwrap_or_default();
    let locks: Vec<String> = con.keys(format!("redrive:consumer:{prefix}:*")).unwrap_or_default();
    for k in keys.iter().chain(&locks) {
        let _: Result<(), _> = con.del(k);
    }
}
