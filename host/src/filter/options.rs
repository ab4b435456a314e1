//! The engine's settings: what the user decides ([`EngineSettings`]), what the modules of a run need
//! ([`EngineOptions`]), and the wasmtime configuration made from them ([`engine_config`]).

use std::path::PathBuf;

use wasmtime::{Config, Enabled, InstanceAllocationStrategy, OptLevel, PoolingAllocationConfig};

use super::cache::ArtifactCache;
use super::compile::{Compilation, DEFAULT_MAX_MODULE_BYTES};
use super::limits::ModuleSettings;
use super::snapshot::FreshStart;
use super::spec::ModuleSpec;

/// What the user decides about the engine, for every module: the cache, how compilation is bounded, and
/// the largest module accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EngineSettings {
    /// Compiled-module cache directory; `None` disables the cache.
    pub cache_dir: Option<PathBuf>,
    /// Where modules are compiled.
    pub compilation: Compilation,
    /// Largest module file accepted, in bytes.
    pub max_module_bytes: u64,
    /// How a fresh instance of a component starts (`--instance fresh`).
    pub fresh_start: FreshStart,
}

impl Default for EngineSettings {
    fn default() -> Self {
        Self {
            cache_dir: ArtifactCache::default_dir(),
            compilation: Compilation::InProcess,
            max_module_bytes: DEFAULT_MAX_MODULE_BYTES,
            fresh_start: FreshStart::default(),
        }
    }
}

/// Engine-wide settings.
#[derive(Clone, Debug)]
pub struct EngineOptions {
    /// Largest memory limit of any module that will run (sizes the pooling allocator's slots).
    pub max_memory_bytes: u64,
    /// Instances that may be alive at once (workers × modules × 2 is plenty).
    pub max_instances: u32,
    /// How instances get their memory; [`FilterEngine::new`](super::FilterEngine::new) falls back to on demand
    /// when the pool's address space cannot be reserved.
    pub allocation: InstanceAllocation,
    /// Whether compiled code counts fuel: only when some module has a fuel budget (counting slows every
    /// call; the per-message deadline stops runaway modules either way).
    pub fuel: FuelMetering,
    /// The user's settings.
    pub settings: EngineSettings,
}

/// How instances get their memories, tables and stacks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum InstanceAllocation {
    /// From a pool reserved once (the fast way: a fresh instance costs tens of microseconds). The pool
    /// reserves tens of GiB of address space (not memory), which a `ulimit -v` or valgrind refuses.
    #[default]
    Pooling,
    /// Each instance maps its own, sized to the module's memory limit: slower to start an instance, but
    /// within a limited address space.
    OnDemand,
}

/// Whether the engine's compiled code counts fuel.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FuelMetering {
    /// No counting: calls are bounded by their deadline alone, and records carry no fuel.
    #[default]
    Off,
    /// Every call counts the instructions it runs: modules with a budget stop at it, and every record says
    /// what the call spent.
    On,
}

impl FuelMetering {
    /// Its name on the compiler process's command line.
    pub(crate) fn arg(self) -> &'static str {
        match self {
            FuelMetering::Off => "off",
            FuelMetering::On => "on",
        }
    }
}

impl Default for EngineOptions {
    fn default() -> Self {
        Self {
            max_memory_bytes: ModuleSettings::default().limits.memory_bytes,
            max_instances: 64,
            allocation: InstanceAllocation::Pooling,
            fuel: FuelMetering::Off,
            settings: EngineSettings::default(),
        }
    }
}

impl EngineOptions {
    /// Options fitting a set of modules run by `workers` workers.
    pub fn for_modules(specs: &[ModuleSpec], workers: usize, settings: &EngineSettings) -> Self {
        let max_memory_bytes = specs
            .iter()
            .map(|s| s.settings.limits.memory_bytes)
            .max()
            .unwrap_or(ModuleSettings::default().limits.memory_bytes);
        let max_instances = (workers.max(1) * specs.len().max(1) * 2 + 4).min(10_000) as u32;
        let fuel = match specs.iter().any(|s| s.settings.limits.fuel.is_some()) {
            true => FuelMetering::On,
            false => FuelMetering::Off,
        };
        Self {
            max_memory_bytes,
            max_instances,
            allocation: InstanceAllocation::Pooling,
            fuel,
            settings: settings.clone(),
        }
    }
}

impl InstanceAllocation {
    /// Its name on the compiler process's command line.
    pub(crate) fn arg(self) -> &'static str {
        match self {
            InstanceAllocation::Pooling => "pooling",
            InstanceAllocation::OnDemand => "on-demand",
        }
    }
}

/// The wasmtime configuration for `options`: fuel metering, epoch interruption, the pooling allocator. Shared with
/// the compiler child process, whose artifacts must fit this engine exactly, and with the benches that call
/// modules through wasmtime directly (`host/benches/call_floor.rs`).
pub fn engine_config(options: &EngineOptions) -> Config {
    let mut config = Config::new();
    config
        .wasm_component_model(true)
        .consume_fuel(options.fuel == FuelMetering::On)
        .epoch_interruption(true)
        .cranelift_opt_level(OptLevel::Speed)
        .parallel_compilation(true);

    let memory_cap = options.max_memory_bytes.next_multiple_of(64 * 1024);
    if options.allocation == InstanceAllocation::OnDemand {
        // Each memory reserves no more address space than its limit (and a small guard), instead of the
        // default 4 GiB + guard: explicit bounds checks, but it fits a limited address space.
        config
            .memory_reservation(memory_cap)
            .memory_guard_size(64 << 10)
            .allocation_strategy(InstanceAllocationStrategy::OnDemand);
        return config;
    }
    let pool = pooling_config(options.max_instances.max(4), memory_cap);
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    config
}

/// The pooling allocator's settings for `slots` component instances whose memories grow to at most
/// `memory_cap` bytes: what [`engine_config`] uses, and what the engine bench's `--split` varies.
pub fn pooling_config(slots: u32, memory_cap: u64) -> PoolingAllocationConfig {
    let mut pool = PoolingAllocationConfig::new();
    pool.total_component_instances(slots)
        .total_core_instances(slots * 16)
        .total_memories(slots * 2)
        .total_tables(slots * 4)
        .total_stacks(slots)
        .max_memory_size(usize::try_from(memory_cap).unwrap_or(usize::MAX))
        // No `linear_memory_keep_resident`: measured on our VMs, rewriting a kept-resident MiB on
        // every instance drop cost 27 µs and saved no page faults (BENCHMARKS.md, engine --split).
        .table_keep_resident(64 << 10)
        .pagemap_scan(Enabled::Auto);
    pool
}
