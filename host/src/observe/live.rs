//! The live page of a run (`redrive run --ui`): the progress numbers, the canary and gate, each module's
//! verdicts and the latest decisions, pushed by server-sent events twice a second, with Pause / Resume /
//! Stop buttons ([`RunControl`]).
//!
//! Who may use it: the server binds loopback only; every request must carry the random token printed at
//! start (`?token=` or the `X-Redrive-Token` header), and its `Host` must be the address served (no DNS
//! rebinding); a control request with an `Origin` must come from the page itself. The page's script is
//! allowed by a per-server nonce and writes message text with `textContent` only.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures_util::Stream;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::pipeline::{RunControl, Telemetry};

/// The page, with `{{NONCE}}` where the script nonce goes.
const PAGE: &str = include_str!("live_page.html");

/// What the live page needs.
pub struct Live {
    telemetry: Arc<Telemetry>,
    control: RunControl,
    token: String,
    nonce: String,
    /// `127.0.0.1:8686`: the only `Host` accepted.
    host: String,
    /// Cancelled when the run ended: the event stream says so and closes.
    ended: CancellationToken,
    /// Source → destination, for the heading.
    title: String,
}

/// Why a live page cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    /// Not a loopback address.
    #[error(
        "--ui {0}: the live page binds loopback only (127.0.0.1 or [::1]); to watch from another machine, \
         forward the port over SSH (ssh -L 8686:127.0.0.1:8686 host)"
    )]
    NotLoopback(SocketAddr),
    /// No randomness for the token.
    #[error("--ui: cannot draw a random token: {0}")]
    Random(String),
}

/// A token of 32 hex digits from the operating system's randomness.
fn random_hex() -> Result<String, LiveError> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| LiveError::Random(e.to_string()))?;
    Ok(hex::encode(bytes))
}

impl Live {
    /// The live page of the run writing `telemetry`, to be served on `addr`. `ended` is cancelled when the
    /// run is over.
    pub fn new(
        addr: SocketAddr,
        telemetry: Arc<Telemetry>,
        control: RunControl,
        ended: CancellationToken,
        title: String,
    ) -> Result<Self, LiveError> {
        if !addr.ip().is_loopback() {
            return Err(LiveError::NotLoopback(addr));
        }
        Ok(Live {
            telemetry,
            control,
            token: random_hex()?,
            nonce: random_hex()?,
            host: addr.to_string(),
            ended,
            title,
        })
    }

    /// Set the address actually bound (port 0 asked for a free one).
    pub fn bound(&mut self, addr: SocketAddr) {
        self.host = addr.to_string();
    }

    /// The URL to open, token included.
    pub fn url(&self) -> String {
        format!("http://{}/?token={}", self.host, self.token)
    }

    /// The routes: `/` (the page), `/events` (server-sent events), `POST /pause|/resume|/stop`.
    pub fn router(self) -> Router {
        Router::new()
            .route("/", get(page))
            .route("/events", get(events))
            .route("/pause", post(pause))
            .route("/resume", post(resume))
            .route("/stop", post(stop))
            .with_state(Arc::new(self))
    }

    /// Whether a request may go on: right host, right token, and for controls no foreign origin.
    fn check(&self, headers: &HeaderMap, query: &TokenQuery, control: bool) -> Result<(), Refused> {
        if headers.get(header::HOST).and_then(|h| h.to_str().ok()) != Some(self.host.as_str()) {
            return Err(Refused::WrongHost);
        }
        let given = query
            .token
            .as_deref()
            .or_else(|| headers.get("x-redrive-token").and_then(|h| h.to_str().ok()));
        if !given.is_some_and(|t| same(t.as_bytes(), self.token.as_bytes())) {
            return Err(Refused::Token);
        }
        if control
            && let Some(origin) = headers.get(header::ORIGIN)
            && origin.to_str().ok() != Some(format!("http://{}", self.host).as_str())
        {
            return Err(Refused::ForeignOrigin);
        }
        Ok(())
    }

    /// What the page shows now, as JSON.
    fn state(&self) -> String {
        let s = self.telemetry.snapshot();
        let rate = self.telemetry.replay_rate();
        let modules: Vec<serde_json::Value> = s
            .modules
            .iter()
            .map(|m| {
                serde_json::json!({
                    "name": m.name, "replay": m.replay, "skip": m.skip, "discard": m.discard, "failed": m.failed(),
                })
            })
            .collect();
        serde_json::json!({
            "title": self.title,
            "secs": s.secs,
            "counts": s.counts,
            "done": s.done,
            "pass_size": s.pass_size,
            "remaining": s.remaining(),
            "in_flight": s.in_flight,
            "rate_limit": s.rate_limit,
            "rate": rate,
            "canary": s.canary,
            "paused": s.paused,
            "stopping": self.control.stopping(),
            "ended": self.ended.is_cancelled(),
            "modules": modules,
            "recent": self.telemetry.recent(),
        })
        .to_string()
    }
}

/// Why a request was refused (403).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Refused {
    /// The `Host` header is not the address served (a DNS-rebinding page, or a proxy).
    WrongHost,
    /// No token, or not this run's.
    Token,
    /// A control request from a page of another origin.
    ForeignOrigin,
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        let why = match self {
            Refused::WrongHost => "wrong Host: use the address redrive printed",
            Refused::Token => "missing or wrong token: open the URL redrive printed at start",
            Refused::ForeignOrigin => "requests from other origins are refused",
        };
        (StatusCode::FORBIDDEN, why).into_response()
    }
}

/// Equal without an early exit on the first differing byte.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[derive(Debug, Deserialize)]
struct TokenQuery {
    token: Option<String>,
}

async fn page(State(live): State<Arc<Live>>, headers: HeaderMap, Query(q): Query<TokenQuery>) -> Response {
    if let Err(refused) = live.check(&headers, &q, false) {
        return refused.into_response();
    }
    let csp = format!(
        "default-src 'none'; script-src 'nonce-{}'; style-src 'unsafe-inline'; connect-src 'self'; \
         form-action 'none'; frame-ancestors 'none'; base-uri 'none'",
        live.nonce
    );
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8".to_owned()),
            (header::CONTENT_SECURITY_POLICY, csp),
            (header::CACHE_CONTROL, "no-store".to_owned()),
            (header::REFERRER_POLICY, "no-referrer".to_owned()),
        ],
        PAGE.replace("{{NONCE}}", &live.nonce),
    )
        .into_response()
}

async fn events(State(live): State<Arc<Live>>, headers: HeaderMap, Query(q): Query<TokenQuery>) -> Response {
    if let Err(refused) = live.check(&headers, &q, false) {
        return refused.into_response();
    }
    Sse::new(updates(live)).keep_alive(KeepAlive::default()).into_response()
}

/// The state twice a second until the run ended, then one `end` event.
fn updates(live: Arc<Live>) -> impl Stream<Item = Result<Event, Infallible>> {
    futures_util::stream::unfold((live, false), |(live, done)| async move {
        if done {
            return None;
        }
        let ended = live.ended.is_cancelled();
        if !ended {
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(500)) => {}
                () = live.ended.cancelled() => {}
            }
        }
        let ended = live.ended.is_cancelled();
        let event = Event::default()
            .event(if ended { "end" } else { "state" })
            .data(live.state());
        Some((Ok(event), (live, ended)))
    })
}

async fn pause(State(live): State<Arc<Live>>, headers: HeaderMap, Query(q): Query<TokenQuery>) -> Response {
    control(&live, &headers, &q, RunControl::pause)
}

async fn resume(State(live): State<Arc<Live>>, headers: HeaderMap, Query(q): Query<TokenQuery>) -> Response {
    control(&live, &headers, &q, RunControl::resume)
}

async fn stop(State(live): State<Arc<Live>>, headers: HeaderMap, Query(q): Query<TokenQuery>) -> Response {
    control(&live, &headers, &q, RunControl::stop)
}

fn control(live: &Live, headers: &HeaderMap, q: &TokenQuery, act: fn(&RunControl)) -> Response {
    if let Err(refused) = live.check(headers, q, true) {
        return refused.into_response();
    }
    act(&live.control);
    StatusCode::NO_CONTENT.into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn live() -> Live {
        let t = Telemetry::new(["a"]);
        let control = RunControl::new(t.clone(), CancellationToken::new());
        Live::new(
            "127.0.0.1:8686".parse().unwrap(),
            t,
            control,
            CancellationToken::new(),
            "x".into(),
        )
        .unwrap()
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn only_loopback_addresses_are_served() {
        let t = Telemetry::new([]);
        let control = RunControl::new(t.clone(), CancellationToken::new());
        let e = Live::new(
            "0.0.0.0:8686".parse().unwrap(),
            t,
            control,
            CancellationToken::new(),
            String::new(),
        );
        assert!(matches!(e, Err(LiveError::NotLoopback(_))));
    }

    #[test]
    fn requests_need_the_host_the_token_and_for_controls_the_page_origin() {
        let l = live();
        let token = TokenQuery {
            token: Some(l.token.clone()),
        };
        let none = TokenQuery { token: None };
        let host = ("host", "127.0.0.1:8686");
        assert!(l.check(&headers(&[host]), &token, false).is_ok());
        assert!(l.check(&headers(&[host]), &none, false).is_err());
        assert!(
            l.check(&headers(&[("host", "evil.example:8686")]), &token, false)
                .is_err()
        );
        let wrong = TokenQuery {
            token: Some("0".repeat(32)),
        };
        assert!(l.check(&headers(&[host]), &wrong, false).is_err());
        let by_header = headers(&[host, ("x-redrive-token", &l.token)]);
        assert!(l.check(&by_header, &none, true).is_ok());
        let foreign = headers(&[host, ("origin", "http://evil.example")]);
        assert_eq!(l.check(&foreign, &token, true), Err(Refused::ForeignOrigin));
        let own = headers(&[host, ("origin", "http://127.0.0.1:8686")]);
        assert!(l.check(&own, &token, true).is_ok());
        assert_eq!(l.token.len(), 32);
        assert_ne!(l.token, l.nonce);
    }
}
