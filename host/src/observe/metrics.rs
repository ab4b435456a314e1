//! The run's Prometheus metrics: a [`Collector`] (prometheus-client) that reads the run's [`Telemetry`] at
//! each scrape, so the pipeline keeps plain atomics and pays nothing for metrics nobody reads.
//!
//! Names follow Prometheus' conventions: `redrive_` prefix, `_total` counters, base units (seconds), and
//! labels of bounded cardinality only (module names, outcomes, failure kinds, canary phases: never a
//! message id).

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use crate::pipeline::telemetry::{CanaryPhase, LATENCY_BOUNDS, Snapshot};
use crate::pipeline::{Counts, Telemetry};

/// The `Content-Type` of what [`RunMetrics::render`] writes (Prometheus text format 0.0.4).
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What a run is, for the `redrive_run_info` series (no credentials: identities are redacted).
#[derive(Clone, Debug)]
pub struct RunInfo {
    /// The source's identity.
    pub source: String,
    /// The destination, or `none` (dry run).
    pub destination: String,
    /// `run` or `plan`.
    pub command: &'static str,
    /// In a fleet (`--fleet`), this worker's id: every series then carries it as the `worker` label, so the
    /// workers of one fleet can be told apart and summed.
    pub worker: Option<String>,
}

/// The metrics of one run.
#[derive(Debug)]
pub struct RunMetrics {
    registry: Registry,
}

impl RunMetrics {
    /// Metrics read from `telemetry`.
    pub fn new(telemetry: Arc<Telemetry>, info: RunInfo) -> Self {
        let mut registry = match &info.worker {
            Some(worker) => Registry::with_labels(std::iter::once(("worker".into(), worker.clone().into()))),
            None => Registry::default(),
        };
        registry.register_collector(Box::new(RunCollector { telemetry, info }));
        RunMetrics { registry }
    }

    /// The metrics now, in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail; an error would come from a collector, and ours has none.
        if let Err(e) = prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry) {
            tracing::warn!("encoding the metrics failed: {e}");
        }
        out
    }
}

#[derive(Debug)]
struct RunCollector {
    telemetry: Arc<Telemetry>,
    info: RunInfo,
}

/// Each outcome counter with its label value.
fn outcomes(c: &Counts) -> [(&'static str, u64); 12] {
    [
        ("replayed", c.replayed),
        ("skipped", c.skipped),
        ("discarded", c.discarded),
        ("failed", c.failed),
        ("parked", c.parked),
        ("malformed", c.malformed),
        ("resumed", c.resumed),
        ("not_done", c.not_done),
        ("send_failed", c.send_failed),
        ("out_of_window", c.out_of_window),
        ("not_in_plan", c.not_in_plan),
        ("plan_drift", c.plan_drift),
    ]
}

impl Collector for RunCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s: Snapshot = self.telemetry.snapshot();
        {
            let mut m = encoder.encode_descriptor(
                "redrive_run",
                "The run: its source, destination and command (always 1).",
                None,
                MetricType::Info,
            )?;
            m.encode_info(&[
                ("source", self.info.source.as_str()),
                ("destination", self.info.destination.as_str()),
                ("command", self.info.command),
                ("version", env!("CARGO_PKG_VERSION")),
            ])?;
        }
        {
            let mut m = encoder.encode_descriptor(
                "redrive_messages_read",
                "Messages read from the DLQ in this pass.",
                None,
                MetricType::Counter,
            )?;
            m.encode_counter::<NoLabelSet, _, u64>(&s.counts.read, None)?;
        }
        {
            let mut m = encoder.encode_descriptor(
                "redrive_messages",
                "Messages settled in this pass, by outcome (replayed: confirmed by the destination and removed \
                 from the DLQ; skipped, failed, malformed, send_failed, ...: left in the DLQ).",
                None,
                MetricType::Counter,
            )?;
            for (outcome, n) in outcomes(&s.counts) {
                m.encode_family(&[("outcome", outcome)])?
                    .encode_counter::<NoLabelSet, _, u64>(&n, None)?;
            }
        }
        {
            let mut m = encoder.encode_descriptor(
                "redrive_settle_failures",
                "Messages whose ack or release failed (still in the DLQ; a resumed run settles them).",
                None,
                MetricType::Counter,
            )?;
            m.encode_counter::<NoLabelSet, _, u64>(&s.counts.settle_failed, None)?;
        }
        {
            let mut m = encoder.encode_descriptor(
                "redrive_module_decisions",
                "Verdicts given by each filter module.",
                None,
                MetricType::Counter,
            )?;
            for module in &s.modules {
                for (verdict, n) in [
                    ("replay", module.replay),
                    ("skip", module.skip),
                    ("discard", module.discard),
                ] {
                    m.encode_family(&[("module", module.name.as_str()), ("verdict", verdict)])?
                        .encode_counter::<NoLabelSet, _, u64>(&n, None)?;
                }
            }
        }
        {
            let mut m = encoder.encode_descriptor(
                "redrive_module_failures",
                "Failed filter calls by module and kind (trap, timeout, out_of_fuel, memory_refused, \
                 filter_error, bad_output, could_not_start, interrupted); the message stays in the DLQ.",
                None,
                MetricType::Counter,
            )?;
            for module in &s.modules {
                for (kind, n) in &module.failures {
                    m.encode_family(&[("module", module.name.as_str()), ("kind", kind.as_str())])?
                        .encode_counter::<NoLabelSet, _, u64>(n, None)?;
                }
            }
        }
        {
            let mut m = encoder.encode_descriptor(
                "redrive_module_call_duration_seconds",
                "Wall time of one filter call, by module.",
                None,
                MetricType::Histogram,
            )?;
            for module in &s.modules {
                let l = &module.latency;
                let mut previous = 0;
                let buckets: Vec<(f64, u64)> = LATENCY_BOUNDS
                    .iter()
                    .zip(&l.cumulative)
                    .map(|(bound, cumulative)| {
                        let in_bucket = cumulative - previous;
                        previous = *cumulative;
                        (*bound, in_bucket)
                    })
                    .collect();
                m.encode_family(&[("module", module.name.as_str())])?
                    .encode_histogram::<NoLabelSet>(l.sum_secs, l.count, &buckets, None)?;
            }
        }
        gauge(
            &mut encoder,
            "redrive_forward_in_flight",
            "Messages sent to the destination and not yet confirmed.",
            s.in_flight as f64,
        )?;
        gauge(
            &mut encoder,
            "redrive_message_memory_bytes",
            "Bytes of the messages held now: read, and not yet sent, archived or skipped. When it stays near \
             redrive_message_memory_limit_bytes, the reader waits for room.",
            s.message_bytes as f64,
        )?;
        gauge(
            &mut encoder,
            "redrive_message_memory_limit_bytes",
            "What the messages held may take at most (--message-memory).",
            s.message_memory as f64,
        )?;
        if let Some(rate) = s.rate_limit {
            gauge(
                &mut encoder,
                "redrive_forward_rate_limit",
                "The forwarding rate limit now, in messages per second (absent when unlimited).",
                rate,
            )?;
        }
        gauge(
            &mut encoder,
            "redrive_paused",
            "1 while forwarding is paused from the live page.",
            if s.paused { 1.0 } else { 0.0 },
        )?;
        {
            let mut m = encoder.encode_descriptor(
                "redrive_canary_phase",
                "1 for the canary's current phase (off, running, verifying, passed, failed), 0 for the others.",
                None,
                MetricType::Gauge,
            )?;
            for phase in CanaryPhase::ALL {
                let value: i64 = (phase == s.canary).into();
                m.encode_family(&[("phase", phase.as_str())])?.encode_gauge(&value)?;
            }
        }
        if let Some(total) = s.pass_size {
            gauge(
                &mut encoder,
                "redrive_pass_messages",
                "Messages in this pass (known once the source has counted them).",
                total as f64,
            )?;
        }
        if let Some(left) = s.remaining() {
            gauge(
                &mut encoder,
                "redrive_pass_remaining_messages",
                "Messages of this pass not settled yet.",
                left as f64,
            )?;
        }
        {
            let mut m = encoder.encode_descriptor(
                "redrive_broker_retries",
                "Broker operations retried after an error (reconnects, resent batches), all brokers.",
                None,
                MetricType::Counter,
            )?;
            m.encode_counter::<NoLabelSet, _, u64>(&s.retries, None)?;
        }
        gauge(
            &mut encoder,
            "redrive_run_elapsed_seconds",
            "Seconds since the run started.",
            s.secs,
        )?;
        Ok(())
    }
}

fn gauge(encoder: &mut DescriptorEncoder, name: &str, help: &str, value: f64) -> Result<(), std::fmt::Error> {
    encoder
        .encode_descriptor(name, help, None, MetricType::Gauge)?
        .encode_gauge(&value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_family_with_bounded_labels() {
        let t = Telemetry::new(["route-by-error", "repair-json"]);
        crate::pipeline::Stats::add(&t.stats.replayed, 3);
        let m = RunMetrics::new(
            t,
            RunInfo {
                source: "file:dlq.jsonl".into(),
                destination: "file:out.jsonl".into(),
                command: "run",
                worker: None,
            },
        );
        let text = m.render();
        for line in [
            "redrive_messages_total{outcome=\"replayed\"} 3",
            "redrive_module_decisions_total{module=\"repair-json\",verdict=\"skip\"} 0",
            "redrive_module_call_duration_seconds_bucket{module=\"route-by-error\",le=\"+Inf\"} 0",
            "redrive_canary_phase{phase=\"off\"} 1",
            "redrive_forward_in_flight 0",
            "redrive_message_memory_bytes 0",
            "redrive_run_info{source=\"file:dlq.jsonl\"",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
        assert!(!text.contains("redrive_forward_rate_limit"), "no limit, no series");
        assert!(!text.contains("worker="), "no fleet, no worker label");
    }

    #[test]
    fn a_fleet_worker_labels_every_series_with_its_id() {
        let t = Telemetry::new(["route-by-error"]);
        let m = RunMetrics::new(
            t,
            RunInfo {
                source: "file:dlq.jsonl".into(),
                destination: "file:out.jsonl".into(),
                command: "run",
                worker: Some("web-3-4121-0a9f".into()),
            },
        );
        let text = m.render();
        let series: Vec<&str> = text.lines().filter(|l| !l.starts_with('#') && !l.is_empty()).collect();
        assert!(!series.is_empty());
        for line in series {
            assert!(line.contains(r#"worker="web-3-4121-0a9f""#), "{line}");
        }
    }
}
