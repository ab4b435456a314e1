//! redrive replays dead letters safely.
//!
//! It reads messages from a dead-letter queue, runs each one through a chain of user-written
//! WebAssembly filters that decide **replay**, **skip** or **discard** (and may repair the payload),
//! and forwards the replayed ones. This crate is the library behind the `redrive` binary.
//!
//! - [`message`]: the [`Envelope`](message::Envelope) every broker's messages are normalised into, and decisions.
//! - [`filter`]: the sandboxed WebAssembly engine and filter chains.
//! - [`jsonl`]: the JSONL message format used by files and `redrive filter test`.
//! - [`source`] → [`pipeline`] → [`sink`]: the replay flow, with [`plan`]s for dry runs.
//! - [`amqp`]: RabbitMQ plumbing shared by the `amqp://` source and sink.
//! - [`sqs`]: Amazon SQS plumbing shared by the `sqs://` source and sink.
//! - [`streams`]: Redis Streams plumbing shared by the `redis://` source and sink.
//! - [`audit`]: per-module audit logs and the discard archive.
//! - [`cli`]: the command line.

#![warn(missing_docs)]

pub mod amqp;
pub mod audit;
pub mod cli;
pub mod commands;
pub mod config;
pub mod core;
pub mod filter;
pub mod jsonl;
pub mod message;
pub mod pipeline;
pub mod plan;
pub mod retry;
pub mod sink;
pub mod source;
pub mod sqs;
pub mod streams;
