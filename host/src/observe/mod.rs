//! Seeing a run from outside: its Prometheus metrics while it goes ([`metrics`], served by [`server`]), the
//! live page with pause / resume / stop ([`live`]), and the HTML report of a plan or run ([`report`], drawn
//! with [`charts`]). Everything here reads the run's
//! [`Telemetry`](crate::pipeline::Telemetry) and [`RunReport`](crate::pipeline::RunReport); nothing writes to
//! the pipeline except the live page's pause / resume / stop, through
//! [`RunControl`](crate::pipeline::RunControl).

pub mod charts;
pub mod live;
pub mod metrics;
pub mod push;
pub mod report;
pub mod server;

pub use live::{Live, LiveError};
pub use metrics::{RunInfo, RunMetrics};
pub use push::{PushError, PushTarget};
pub use report::ReportKind;
pub use server::{ServeError, Server};
