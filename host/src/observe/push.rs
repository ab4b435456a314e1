//! `--metrics-push URL`: a short run's metrics, pushed once at its end to a Prometheus Pushgateway (HTTP PUT
//! of the text format to `/metrics/job/<job>`), so a run that ends between two scrapes is still seen.
//! Plain `http://` only: a Pushgateway is an internal service; put a TLS proxy in front for anything else.

use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::metrics::CONTENT_TYPE;
use crate::core::endpoint::redact;

/// Where to push.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PushTarget {
    /// `host:port` to connect to.
    authority: String,
    /// The grouping path: `/metrics/job/redrive` unless the URL named one.
    path: String,
    /// The URL as shown (credentials removed).
    shown: String,
}

/// Why a push target is refused or a push failed.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// The URL is not one redrive can push to.
    #[error("--metrics-push {url}: {why}")]
    Url {
        /// The URL (redacted).
        url: String,
        /// Why.
        why: String,
    },
    /// The Pushgateway could not be reached or refused the push.
    #[error("pushing the metrics to {url} failed: {why}")]
    Push {
        /// The URL (redacted).
        url: String,
        /// Why.
        why: String,
    },
}

impl PushTarget {
    /// Parse `http://host:port[/metrics/job/NAME[/label/value...]]`.
    pub fn parse(text: &str) -> Result<Self, PushError> {
        let shown = redact(text);
        let bad = |why: &str| PushError::Url {
            url: shown.clone(),
            why: why.to_owned(),
        };
        let url = url::Url::parse(text).map_err(|e| bad(&format!("{e}; expected e.g. http://pushgateway:9091")))?;
        if url.scheme() != "http" {
            return Err(bad(
                "only http:// is supported (a Pushgateway is internal; put a TLS proxy in front)",
            ));
        }
        let host = url.host_str().ok_or_else(|| bad("no host"))?;
        let port = url.port().unwrap_or(9091);
        let path = match url.path() {
            "" | "/" => "/metrics/job/redrive".to_owned(),
            p if p.starts_with("/metrics/job/") && p.len() > "/metrics/job/".len() => {
                p.trim_end_matches('/').to_owned()
            }
            _ => return Err(bad("the path must be empty or /metrics/job/NAME[/LABEL/VALUE...]")),
        };
        let authority = match url.host() {
            Some(url::Host::Ipv6(ip)) => format!("[{ip}]:{port}"),
            _ => format!("{host}:{port}"),
        };
        Ok(PushTarget { authority, path, shown })
    }

    /// The same target grouped by worker as well (`…/worker/ID`), so the workers of a fleet pushing to one
    /// job do not replace each other's metrics; the Pushgateway labels the group's series `worker="ID"`.
    /// `worker` is a fleet worker id: letters, digits, `.` and `-`.
    pub fn for_worker(&self, worker: &str) -> PushTarget {
        let path = format!("{}/worker/{worker}", self.path);
        PushTarget {
            shown: format!("http://{}{path}", self.authority),
            authority: self.authority.clone(),
            path,
        }
    }

    /// PUT `body` (Prometheus text format) there, within ten seconds.
    pub async fn push(&self, body: String) -> Result<(), PushError> {
        let fail = |why: String| PushError::Push {
            url: self.shown.clone(),
            why,
        };
        let exchange = async {
            let stream = TcpStream::connect(&self.authority)
                .await
                .map_err(|e| fail(format!("cannot connect: {e}")))?;
            let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .map_err(|e| fail(e.to_string()))?;
            let driver = tokio::spawn(connection);
            let request = Request::put(self.path.as_str())
                .header(hyper::header::HOST, self.authority.as_str())
                .header(hyper::header::CONTENT_TYPE, CONTENT_TYPE)
                .body(Full::new(Bytes::from(body)))
                .map_err(|e| fail(e.to_string()))?;
            let response = sender.send_request(request).await.map_err(|e| fail(e.to_string()))?;
            let status = response.status();
            let text = response
                .into_body()
                .collect()
                .await
                .map(|b| String::from_utf8_lossy(&b.to_bytes()).trim().to_owned())
                .unwrap_or_default();
            driver.abort();
            if status.is_success() {
                Ok(())
            } else {
                Err(fail(format!(
                    "the Pushgateway answered {status}: {}",
                    crate::core::text::clip(&text, 300)
                )))
            }
        };
        match tokio::time::timeout(Duration::from_secs(10), exchange).await {
            Ok(result) => result,
            Err(_) => Err(fail("no answer within 10 s".into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_get_a_default_job_and_only_http_is_taken() {
        let t = PushTarget::parse("http://pgw:9091").unwrap();
        assert_eq!(
            (t.authority.as_str(), t.path.as_str()),
            ("pgw:9091", "/metrics/job/redrive")
        );
        let t = PushTarget::parse("http://127.0.0.1/metrics/job/orders/instance/a/").unwrap();
        assert_eq!(
            (t.authority.as_str(), t.path.as_str()),
            ("127.0.0.1:9091", "/metrics/job/orders/instance/a")
        );
        for bad in ["https://pgw", "pgw:9091", "http://pgw/other", "http://pgw/metrics/job/"] {
            assert!(PushTarget::parse(bad).is_err(), "{bad}");
        }
        let e = PushTarget::parse("https://u:s3cret@pgw").unwrap_err().to_string();
        assert!(!e.contains("s3cret"), "{e}");
    }

    #[test]
    fn a_fleet_worker_pushes_to_a_group_of_its_own() {
        let t = PushTarget::parse("http://pgw:9091/metrics/job/orders").unwrap();
        let w = t.for_worker("web-3-4121-0a9f");
        assert_eq!(w.path, "/metrics/job/orders/worker/web-3-4121-0a9f");
        assert_eq!(w.shown, "http://pgw:9091/metrics/job/orders/worker/web-3-4121-0a9f");
    }
}
