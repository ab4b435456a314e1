//! A fleet: several redrive processes on one DLQ that share one rate limit, one canary, one stop and one
//! view, coordinated through Redis (`--fleet redis://HOST:PORT/DB?name=NAME`).
//!
//! The brokers already give each message to one worker (SQS visibility, RabbitMQ consumers, Redis consumer
//! groups, `SKIP LOCKED`, Kafka consumer groups) and each worker's journal keeps it from forwarding one
//! twice; the fleet adds what the workers did not share:
//!
//! - [`url`]: the `--fleet` URL.
//! - [`store`]: the connection to the fleet's Redis.
//! - [`run`]: the fleet's run (its id, control state and workers' status records).
//! - [`rate`]: one GCRA bucket for the whole fleet.
//! - [`canary`]: one canary lease and verdict.
//! - [`worker`]: one worker's membership: ticks, control, status, and the pipeline's
//!   [`FleetLink`](crate::core::fleet::FleetLink).
//!
//! Losing the fleet's Redis mid-run loses and doubles nothing: forwarding holds until it is back.

pub mod canary;
pub mod rate;
pub mod run;
pub mod store;
pub mod url;
pub mod worker;

pub use store::{Store, StoreError};
pub use url::FleetUrl;
pub use worker::{Member, Worker, new_worker_id};
