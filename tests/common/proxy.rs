//! A TCP proxy on 127.0.0.1 between redrive and a server, whose connections a test can cut, slow down or
//! stall mid-run.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// One proxied connection: both sockets, and whether it is stalled.
struct Link {
    streams: [TcpStream; 2],
    stalled: Arc<AtomicBool>,
}

/// Forwards every connection to `target`; [`Proxy::cut`] closes all of them, [`Proxy::stall`] lets
/// them hang (new ones are still taken and forwarded).
pub struct Proxy {
    port: u16,
    /// The `host:port` it forwards to.
    target: String,
    open: Arc<Mutex<Vec<Link>>>,
    stop: Arc<AtomicBool>,
    /// Milliseconds every chunk waits before it is passed on, both ways ([`Proxy::delay`]).
    delay_ms: Arc<AtomicU64>,
}

impl Proxy {
    /// Listen on a free port of 127.0.0.1 and forward to `target` (`host:port`).
    pub fn start(target: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a free port on 127.0.0.1");
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let open: Arc<Mutex<Vec<Link>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let delay_ms = Arc::new(AtomicU64::new(0));
        let (forward_to, tracked, stopping, delay) = (target.to_owned(), open.clone(), stop.clone(), delay_ms.clone());
        std::thread::spawn(move || {
            while !stopping.load(Ordering::Relaxed) {
                let client = match listener.accept() {
                    Ok((client, _)) => client,
                    Err(_) => {
                        std::thread::sleep(Duration::from_millis(5));
                        continue;
                    }
                };
                let Ok(server) = TcpStream::connect(&forward_to) else {
                    continue; // the client sees its connection closed
                };
                client.set_nonblocking(false).ok();
                let stalled = Arc::new(AtomicBool::new(false));
                if let (Ok(c), Ok(s)) = (client.try_clone(), server.try_clone()) {
                    tracked.lock().unwrap_or_else(PoisonError::into_inner).push(Link {
                        streams: [c, s],
                        stalled: stalled.clone(),
                    });
                }
                pipe(
                    client.try_clone().unwrap(),
                    server.try_clone().unwrap(),
                    stalled.clone(),
                    delay.clone(),
                );
                pipe(server, client, stalled, delay.clone());
            }
        });
        Self {
            port,
            target: target.to_owned(),
            open,
            stop,
            delay_ms,
        }
    }

    /// `url`, a URL of the server the proxy forwards to, with its `host:port` replaced by the proxy's.
    pub fn route(&self, url: &str) -> String {
        url.replacen(&self.target, &format!("127.0.0.1:{}", self.port), 1)
    }

    /// The proxy's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Close every connection going through the proxy now.
    pub fn cut(&self) {
        for link in self.open.lock().unwrap_or_else(PoisonError::into_inner).drain(..) {
            for stream in &link.streams {
                let _ = stream.shutdown(Shutdown::Both);
            }
        }
    }

    /// Make every chunk, on every connection, wait this long before it is passed on (a slow, far network).
    pub fn delay(&self, by: Duration) {
        self.delay_ms.store(by.as_millis() as u64, Ordering::Relaxed);
    }

    /// Make every connection open now hang for good: bytes are taken and dropped, nothing is closed (a
    /// half-open connection, a server that froze, a silent network partition). New connections work.
    pub fn stall(&self) -> usize {
        let links = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        for link in links.iter() {
            link.stalled.store(true, Ordering::Relaxed);
        }
        links.len()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.cut();
    }
}

fn pipe(mut from: TcpStream, mut to: TcpStream, stalled: Arc<AtomicBool>, delay_ms: Arc<AtomicU64>) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 16 * 1024];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) if stalled.load(Ordering::Relaxed) => {}
                Ok(n) => {
                    let wait = delay_ms.load(Ordering::Relaxed);
                    if wait > 0 {
                        std::thread::sleep(Duration::from_millis(wait));
                    }
                    if to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        if !stalled.load(Ordering::Relaxed) {
            let _ = to.shutdown(Shutdown::Write);
        }
    });
}

/// The `host:port` of a `scheme://[user:pass@]host:port/...` URL.
pub fn authority(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, rest)| rest);
    rest.split('/').next().unwrap_or(rest)
}
