//! The filter engine: user-written WebAssembly modules that decide what happens to each dead letter.
//!
//! - [`FilterEngine`]: one wasmtime engine per process (epoch deadlines, fuel metering when a module has a
//!   budget, pooling allocator,
//!   compiled-module cache).
//! - [`FilterChain`]: modules loaded from [`ModuleSpec`]s, shared by workers.
//! - [`ChainRunner`]: a worker's instances; [`ChainRunner::decide`] runs the chain on one message and
//!   never lets a guest fault escape: traps, timeouts and limit hits become [`Outcome::Failed`](crate::core::envelope::Outcome).
//!
//! Modules run in a sandbox with no capabilities (no files, network, environment or arguments), a memory
//! cap, a per-message deadline and, when one is set, a fuel budget; see [`Limits`].

mod blocking;
mod cache;
mod chain;
mod command;
mod compile;
mod component;
mod engine;
mod error;
mod failure;
mod limits;
mod options;
mod runner;
mod sandbox;
mod snapshot;
mod spec;
mod watched;

pub use blocking::HostWaitCut;

/// Decode one answer line of a command filter, as an answer to `init` and as a decision, throwing the
/// result away: for the fuzz targets and property tests (`decoders.rs`).
pub fn decode_command_answer(line: &str) {
    let _ = command::parse_init_answer(line);
    let _ = command::parse_decision(line);
}
pub use cache::{ArtifactCache, CacheUse};
pub use chain::{AuditRecord, ChainOutcome, ChainRunner, FilterChain, ModuleDisabled};
pub use compile::{
    ArtifactKind, Compilation, DEFAULT_COMPILE_MEMORY, DEFAULT_COMPILE_TIMEOUT, DEFAULT_MAX_MODULE_BYTES, compile_child,
};
pub use component::CONTRACT;
pub use engine::{FilterEngine, LoadedModule};
pub use error::FilterError;
pub use failure::{CallFailure, FailureKind};
pub use limits::{InstancePolicy, Limits, ModuleSettings, SettingError, format_size, parse_size};
pub use options::{EngineOptions, EngineSettings, FuelMetering, InstanceAllocation, engine_config, pooling_config};
pub use runner::{ModuleCall, ModuleRunner};
pub use sandbox::LogLine;
pub use snapshot::FreshStart;
pub use spec::{HOST_KEY_PREFIX, ModuleSpec, SpecError};
