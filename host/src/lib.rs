//! redrive replays dead letters safely.
//!
//! It reads messages from a dead-letter queue, runs each one through a chain of user-written
//! WebAssembly filters that decide **replay**, **skip** or **discard** (and may repair the payload),
//! and forwards the replayed ones. This crate is the library behind the `redrive` binary.
//!
//! One direction of flow, one direction of dependencies:
//!
//! - [`core`]: the leaf: envelopes and decisions, the source/acker/sink traits every broker implements,
//!   endpoints, ids, the JSONL format, files and locks.
//! - [`brokers`]: one folder per broker (file, amqp, sqs, redis, postgres), each depending only on `core`.
//! - [`filter`]: the sandboxed WebAssembly engine and filter chains.
//! - [`audit`]: per-module audit logs and the discard archive.
//! - [`pipeline`]: source → filter chain → router → forwarder → sink → ack, one file per stage; sees brokers
//!   only through the `core` traits.
//! - [`fleet`]: several workers on one DLQ sharing a rate limit, a canary, a stop and a view (through Redis).
//! - [`commands`]: one file per command; opens the brokers and runs the pipeline.
//! - [`cli`]: the command line's definitions.

#![warn(missing_docs)]

pub mod audit;
pub mod brokers;
pub mod cli;
pub mod commands;
pub mod core;
// The fuzzing entry points decode every broker's input: built when those brokers are (the default).
#[cfg(all(feature = "amqp", feature = "sqs", feature = "kafka", feature = "pubsub"))]
pub mod decoders;
pub mod filter;
pub mod fleet;
pub mod observe;
pub mod pipeline;
