//! What the benches that call a filter through wasmtime directly share (`engine.rs`'s fresh-instance
//! split, `call_floor.rs`): the `redrive:filter@0.1.0` bindings, a store state standing in for the
//! host's `GuestState` (deny-all WASI with captured output, a memory cap, the log lines of the last
//! call), and the envelope as the contract's message and as the SDK's.

use redrive::core::envelope::Envelope;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{ResourceTable, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

/// The bindings of `guest-sdk/wit/filter.wit`, world `filter`.
pub mod bindings {
    wasmtime::component::bindgen!({ world: "filter", path: "../guest-sdk/wit" });
}
pub use bindings::redrive::filter::types as wit;

/// Deny-all WASI with captured output, a resource table, a memory cap, logs.
pub struct State {
    pub wasi: WasiCtx,
    pub table: ResourceTable,
    pub limiter: Cap,
    pub logs: Vec<String>,
}

/// A memory cap in bytes (and a generous table cap), as the host's limiter.
pub struct Cap(pub usize);

impl wasmtime::ResourceLimiter for Cap {
    fn memory_growing(&mut self, _: usize, desired: usize, _: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= self.0)
    }
    fn table_growing(&mut self, _: usize, desired: usize, _: Option<usize>) -> wasmtime::Result<bool> {
        Ok(desired <= 1 << 20)
    }
}

impl State {
    pub fn new() -> Self {
        let wasi = WasiCtxBuilder::new()
            .stdout(MemoryOutputPipe::new(64 << 10))
            .stderr(MemoryOutputPipe::new(64 << 10))
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        Self {
            wasi,
            table: ResourceTable::new(),
            limiter: Cap(64 << 20),
            logs: Vec::new(),
        }
    }
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl bindings::redrive::filter::host::Host for State {
    fn log(&mut self, _level: wit::LogLevel, text: String) {
        self.logs.push(text);
    }
}

impl wit::Host for State {}

/// The envelope as the contract's message, field for field what the host hands a module.
pub fn to_wit(env: &Envelope) -> wit::Message {
    wit::Message {
        id: env.id.clone(),
        body: env.body.clone(),
        attributes: env.attributes.clone(),
        origin: wit::Origin {
            system: env.origin.system.clone(),
            dlq: env.origin.dlq.clone(),
            original_queue: env.origin.original_queue.clone(),
        },
        failure: wit::FailureInfo {
            reason: env.failure.reason.clone(),
            error_text: env.failure.error_text.clone(),
            error_class: env.failure.error_class.clone(),
            receive_count: env.failure.receive_count,
            first_failed_at_ms: env.failure.first_failed_at.map(|t| t.timestamp_millis()),
            last_failed_at_ms: env.failure.last_failed_at.map(|t| t.timestamp_millis()),
        },
        replay_count: env.replay_count,
    }
}

/// The envelope as the guest SDK's `Message` (a native filter's input), field for field what the
/// host hands a module.
pub fn guest_message(env: &Envelope) -> redrive_guest::Message {
    redrive_guest::Message {
        id: env.id.clone(),
        body: env.body.clone(),
        attributes: env.attributes.clone(),
        origin: redrive_guest::Origin {
            system: env.origin.system.clone(),
            dlq: env.origin.dlq.clone(),
            original_queue: env.origin.original_queue.clone(),
        },
        failure: redrive_guest::FailureInfo {
            reason: env.failure.reason.clone(),
            error_text: env.failure.error_text.clone(),
            error_class: env.failure.error_class.clone(),
            receive_count: env.failure.receive_count,
            first_failed_at_ms: env.failure.first_failed_at.map(|t| t.timestamp_millis()),
            last_failed_at_ms: env.failure.last_failed_at.map(|t| t.timestamp_millis()),
        },
        replay_count: env.replay_count,
    }
}
