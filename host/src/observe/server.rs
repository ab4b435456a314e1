//! A small HTTP server that lives as long as a run (axum on the run's Tokio runtime): the metrics endpoint,
//! and the live page when there is one. Bound before any broker is opened, so a taken port stops the run
//! before anything moves.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::metrics::{CONTENT_TYPE, RunMetrics};

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The address cannot be listened on (taken, not local, not allowed).
    #[error("{flag} {addr}: cannot listen there: {source}; pick another address or port")]
    Bind {
        /// The flag that asked for it.
        flag: &'static str,
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// A running server; it stops when dropped or [`Server::stop`]ped.
pub struct Server {
    addr: SocketAddr,
    shutdown: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Server {
    /// Listen on `addr` (the address of flag `flag`, for errors) and serve the router `routes` makes for
    /// the address actually bound (port 0 picks a free one).
    pub async fn start(
        flag: &'static str,
        addr: SocketAddr,
        routes: impl FnOnce(SocketAddr) -> Router,
    ) -> Result<Self, ServeError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| ServeError::Bind { flag, addr, source })?;
        let addr = listener.local_addr().unwrap_or(addr);
        let router = routes(addr);
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        let task = tokio::spawn(async move {
            let served = axum::serve(listener, router)
                .with_graceful_shutdown(async move { stop.cancelled().await })
                .await;
            if let Err(e) = served {
                tracing::warn!("the {flag} server stopped: {e}");
            }
        });
        Ok(Server {
            addr,
            shutdown,
            task: Some(task),
        })
    }

    /// The address it listens on (the real port when 0 was asked for).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stop serving: open connections get their answers, new ones are refused.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(2), task).await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// `GET /metrics`: the run's metrics in the Prometheus text format.
pub fn metrics_router(metrics: Arc<RunMetrics>) -> Router {
    Router::new().route("/metrics", get(scrape)).with_state(metrics)
}

async fn scrape(State(metrics): State<Arc<RunMetrics>>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], metrics.render())
}
