//! One wasmtime `Engine` per process (set up as `options.rs` says), the epoch ticker, and loading modules into
//! ready-to-instantiate [`LoadedModule`]s.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::{Component, Linker};

use super::blocking;
use super::cache::{ArtifactCache, CacheUse};
use super::command::{self, CommandState};
use super::compile::{self, COMPONENTS, Kind, MODULES};
use super::component::{self, FilterPre};
use super::error::{FilterError, error_chain};
use super::limits::{EPOCH_TICK, InstancePolicy, Limits, ModuleSettings, deadline_ticks};
use super::options::{EngineOptions, FuelMetering, InstanceAllocation, engine_config};
use super::sandbox::GuestState;
use super::snapshot::{self, FreshStart, Refusal};
use super::spec::ModuleSpec;

/// The process's WebAssembly engine, shared by every module and worker.
#[derive(Clone)]
pub struct FilterEngine {
    inner: Arc<EngineInner>,
}

struct EngineInner {
    engine: Engine,
    linker: Linker<GuestState>,
    core_linker: wasmtime::Linker<CommandState>,
    cache: ArtifactCache,
    stop_ticker: Arc<AtomicBool>,
    /// Whether the epoch ticker runs: it starts with the first module loaded, so a run without filters
    /// (`--no-filter`) has no thread waking a hundred times a second for nothing.
    ticker_started: std::sync::Mutex<bool>,
    options: EngineOptions,
    /// Set by [`FilterEngine::interrupt`]: blocking host calls end at once.
    stopping: Arc<AtomicBool>,
    /// The longest per-call deadline of any module loaded, in epoch ticks.
    max_deadline_ticks: std::sync::atomic::AtomicU64,
}

impl Drop for EngineInner {
    fn drop(&mut self) {
        self.stop_ticker.store(true, Ordering::Relaxed);
    }
}

/// A module compiled, linked and ready to instantiate.
pub struct LoadedModule {
    /// Display name.
    pub name: String,
    /// Where it was loaded from.
    pub path: PathBuf,
    /// sha256 of the wasm bytes, hex.
    pub sha256: String,
    /// Configuration passed to `init`.
    pub config: Vec<(String, String)>,
    /// Host settings.
    pub settings: ModuleSettings,
    /// Whether the compiled artifact came from the cache.
    pub cache_use: CacheUse,
    /// Time spent compiling or loading the artifact.
    pub load_time: Duration,
    /// Keeps the engine, and so its epoch ticker, alive as long as the module is.
    pub(crate) engine: FilterEngine,
    pub(crate) kind: ModuleKind,
}

/// The two profiles of the filter contract.
pub(crate) enum ModuleKind {
    /// A component implementing the `redrive:filter` WIT world.
    Component(ComponentModule),
    /// A WASI preview-1 command speaking JSON lines (`command.schema.json`).
    Command(wasmtime::InstancePre<CommandState>),
}

/// A component ready to instantiate, and how its instances start.
pub(crate) struct ComponentModule {
    pub(crate) pre: FilterPre<GuestState>,
    pub(crate) start: ComponentStart,
}

/// How a component's instances get ready to decide.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ComponentStart {
    /// The component as written: each instance runs `init` with the configuration.
    CallInit,
    /// The component holds the state `init` left on this configuration (`snapshot.rs`): instances start ready.
    /// Only under the `fresh` policy, and only where the snapshot is faithful.
    PreInitialised,
}

impl LoadedModule {
    /// Whether fresh instances of this module start from a snapshot taken after `init`, rather than running it.
    pub fn pre_initialised(&self) -> bool {
        matches!(&self.kind, ModuleKind::Component(c) if c.start == ComponentStart::PreInitialised)
    }

    /// `component` or `command`: which profile of the contract the module implements.
    pub fn profile(&self) -> &'static str {
        match self.kind {
            ModuleKind::Component(_) => "component",
            ModuleKind::Command(_) => "command",
        }
    }
}

impl std::fmt::Debug for LoadedModule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedModule")
            .field("name", &self.name)
            .field("path", &self.path)
            .field("sha256", &self.sha256)
            .finish_non_exhaustive()
    }
}

impl FilterEngine {
    /// Build the engine: fuel metering, epoch interruption and the pooling allocator. The epoch ticker thread
    /// starts with the first module [`load`](Self::load)ed.
    pub fn new(options: &EngineOptions) -> Result<Self, FilterError> {
        let mut options = options.clone();
        let engine = match Engine::new(&engine_config(&options)) {
            Ok(engine) => engine,
            // The pool is only faster: without its address space (a `ulimit -v`, valgrind), allocate on demand.
            Err(pool) if options.allocation == InstanceAllocation::Pooling => {
                options.allocation = InstanceAllocation::OnDemand;
                let engine = Engine::new(&engine_config(&options)).map_err(|e| {
                    FilterError::Engine(format!(
                        "{} (and without the pool: {})",
                        error_chain(&pool),
                        error_chain(&e)
                    ))
                })?;
                tracing::warn!(
                    "the WebAssembly instance pool could not be set up ({}; is the address space limited, as by \
                     `ulimit -v`?): instances get their memory on demand instead, which makes starting one slower",
                    error_chain(&pool)
                );
                engine
            }
            Err(e) => return Err(FilterError::Engine(error_chain(&e))),
        };
        let options = &options;
        let mut linker = Linker::new(&engine);
        component::add_to_linker(&mut linker)
            .and_then(|()| blocking::bound_component_waits(&mut linker))
            .map_err(|e| FilterError::Engine(error_chain(&e)))?;
        let mut core_linker = wasmtime::Linker::new(&engine);
        command::add_to_linker(&mut core_linker)
            .and_then(|()| blocking::bound_command_waits(&mut core_linker))
            .map_err(|e| FilterError::Engine(error_chain(&e)))?;

        let stop_ticker = Arc::new(AtomicBool::new(false));
        Ok(Self {
            inner: Arc::new(EngineInner {
                engine,
                linker,
                core_linker,
                cache: ArtifactCache::new(options.settings.cache_dir.clone()),
                options: options.clone(),
                stop_ticker,
                ticker_started: std::sync::Mutex::new(false),
                stopping: Arc::new(AtomicBool::new(false)),
                max_deadline_ticks: std::sync::atomic::AtomicU64::new(0),
            }),
        })
    }

    /// The run is stopping: end every blocking host call at once, and every running call at its next
    /// epoch check (the epoch is moved past the longest deadline). The calls fail as `interrupted`;
    /// their messages stay in the DLQ.
    pub fn interrupt(&self) {
        self.inner.stopping.store(true, Ordering::Relaxed);
        let ticks = self.inner.max_deadline_ticks.load(Ordering::Relaxed) + 1;
        for _ in 0..ticks {
            self.inner.engine.increment_epoch();
        }
    }

    /// True once [`interrupt`](Self::interrupt) was called.
    pub fn is_interrupted(&self) -> bool {
        self.inner.stopping.load(Ordering::Relaxed)
    }

    /// The flag blocking host calls watch.
    pub(crate) fn stopping(&self) -> Arc<AtomicBool> {
        self.inner.stopping.clone()
    }

    /// The underlying wasmtime engine.
    pub(crate) fn wasmtime(&self) -> &Engine {
        &self.inner.engine
    }

    /// Link a compiled component with WASI (deny-all) and the `host` interface, checking it implements the
    /// `redrive:filter` world.
    pub(crate) fn link(&self, component: &Component) -> wasmtime::Result<FilterPre<GuestState>> {
        FilterPre::new(self.inner.linker.instantiate_pre(component)?)
    }

    /// The compiled-module cache directory, when enabled.
    pub fn cache_dir(&self) -> Option<&Path> {
        self.inner.cache.dir()
    }

    /// The compiled-module cache.
    pub(crate) fn artifact_cache(&self) -> &ArtifactCache {
        &self.inner.cache
    }

    /// A module's settings as this engine runs them: on an engine that counts fuel, a module without a budget
    /// gets all there is (a store there starts with none), so that its records say what it spent too.
    pub(crate) fn fitted(&self, settings: &ModuleSettings) -> ModuleSettings {
        let mut fitted = settings.clone();
        fitted.limits.fuel = match self.inner.options.fuel {
            FuelMetering::On => Some(settings.limits.fuel.unwrap_or(u64::MAX)),
            FuelMetering::Off => None,
        };
        fitted
    }

    /// Start the epoch ticker unless it runs: every call's deadline counts its ticks.
    fn start_ticker(&self) -> Result<(), FilterError> {
        let mut started = self
            .inner
            .ticker_started
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if !*started {
            spawn_epoch_ticker(self.inner.engine.clone(), self.inner.stop_ticker.clone())?;
            *started = true;
        }
        Ok(())
    }

    /// Read, compile (or load from the cache) and link one module.
    pub fn load(&self, spec: &ModuleSpec) -> Result<LoadedModule, FilterError> {
        let started = Instant::now();
        self.start_ticker()?;
        self.inner
            .max_deadline_ticks
            .fetch_max(deadline_ticks(spec.settings.limits.timeout), Ordering::Relaxed);
        let limit = self.inner.options.settings.max_module_bytes;
        let size = std::fs::metadata(&spec.path)
            .map_err(|source| FilterError::Read {
                path: spec.path.clone(),
                source,
            })?
            .len();
        if size > limit {
            return Err(FilterError::TooLarge {
                module: spec.name.clone(),
                size,
                limit,
            });
        }
        let wasm = std::fs::read(&spec.path).map_err(|source| FilterError::Read {
            path: spec.path.clone(),
            source,
        })?;
        let sha256 = hex::encode(Sha256::digest(&wasm));
        let contract = |e: wasmtime::Error| FilterError::Contract {
            module: spec.name.clone(),
            message: error_chain(&e),
        };
        let settings = self.fitted(&spec.settings);
        let (kind, cache_use) = match wasm_kind(&wasm) {
            WasmKind::Component => {
                let initialised = match spec.settings.policy {
                    InstancePolicy::Fresh if self.inner.options.settings.fresh_start == FreshStart::Snapshot => {
                        self.load_pre_initialised(spec, &wasm, &sha256, &settings.limits)?
                    }
                    InstancePolicy::Fresh | InstancePolicy::Reuse { .. } => None,
                };
                let (pre, start, cache_use) = match initialised {
                    Some((pre, cache_use)) => (pre, ComponentStart::PreInitialised, cache_use),
                    None => {
                        let (component, cache_use) = self.compiled(spec, &wasm, &sha256, &COMPONENTS)?;
                        let pre = self.link(&component).map_err(contract)?;
                        (pre, ComponentStart::CallInit, cache_use)
                    }
                };
                (ModuleKind::Component(ComponentModule { pre, start }), cache_use)
            }
            WasmKind::Core => {
                let (module, cache_use) = self.compiled(spec, &wasm, &sha256, &MODULES)?;
                if !command::is_command(&module) {
                    return Err(FilterError::CoreModule {
                        path: spec.path.clone(),
                    });
                }
                let pre =
                    self.inner
                        .core_linker
                        .instantiate_pre(&module)
                        .map_err(|e| FilterError::CommandContract {
                            module: spec.name.clone(),
                            message: error_chain(&e),
                        })?;
                (ModuleKind::Command(pre), cache_use)
            }
            WasmKind::NotWasm => {
                return Err(FilterError::NotWasm {
                    path: spec.path.clone(),
                });
            }
        };
        let module = LoadedModule {
            name: spec.name.clone(),
            path: spec.path.clone(),
            sha256,
            config: spec.config.clone(),
            settings,
            cache_use,
            load_time: started.elapsed(),
            engine: self.clone(),
            kind,
        };
        tracing::debug!(
            module = %module.name,
            sha256 = %module.sha256,
            cache = ?module.cache_use,
            pre_initialised = module.pre_initialised(),
            load_ms = module.load_time.as_millis() as u64,
            "module loaded"
        );
        Ok(module)
    }
}

impl FilterEngine {
    /// The component with `init` run on the module's configuration and its state written in, for fresh
    /// instances that start ready (`snapshot.rs`); `None` (logged at debug level) where that is not faithful.
    /// The component as written is then compiled instead, and a module that breaks the contract gets the same
    /// error as without a snapshot. A module whose `init` fails gets its start-up error here, as the runner
    /// words it, rather than running `init` again to find it.
    /// The pre-initialiser runs on untrusted bytes: a panic in it is a refusal too, not the end of the run.
    fn load_pre_initialised(
        &self,
        spec: &ModuleSpec,
        wasm: &[u8],
        sha256: &str,
        limits: &Limits,
    ) -> Result<Option<(FilterPre<GuestState>, CacheUse)>, FilterError> {
        let attempt = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            snapshot::pre_initialise(self, spec, wasm, sha256, limits)
        }));
        match attempt.unwrap_or_else(|_| Err(Refusal::Unsupported("the pre-initialiser panicked".into()))) {
            Ok(ready) => Ok(Some(ready)),
            Err(Refusal::Init(failure)) => Err(failure.into_error(&spec.name)),
            Err(refusal) => {
                tracing::debug!(module = %spec.name, "fresh instances run `init` for every message: {refusal}");
                Ok(None)
            }
        }
    }

    /// The compiled form cached under `digest`, if the cache holds a usable one.
    pub(crate) fn cached<T>(&self, spec: &ModuleSpec, digest: &str, kind: &Kind<T>) -> Option<T> {
        compile::lookup(&self.inner.engine, &self.inner.cache, &spec.name, digest, kind)
    }

    /// The compiled form of `wasm`: from the cache, or compiled (bounded as the settings say) and cached.
    pub(crate) fn compiled<T>(
        &self,
        spec: &ModuleSpec,
        wasm: &[u8],
        digest: &str,
        kind: &Kind<T>,
    ) -> Result<(T, CacheUse), FilterError> {
        let inner = &self.inner;
        compile::cached(
            &inner.engine,
            &inner.cache,
            &inner.options,
            &spec.name,
            wasm,
            digest,
            kind,
        )
    }
}

fn spawn_epoch_ticker(engine: Engine, stop: Arc<AtomicBool>) -> Result<(), FilterError> {
    std::thread::Builder::new()
        .name("redrive-epoch".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(EPOCH_TICK);
                engine.increment_epoch();
            }
        })
        .map(drop)
        .map_err(|e| FilterError::Engine(format!("cannot start the epoch ticker thread: {e}")))
}

enum WasmKind {
    Component,
    Core,
    NotWasm,
}

/// Components and core modules share the `\0asm` magic and differ in the version/layer field.
fn wasm_kind(bytes: &[u8]) -> WasmKind {
    match bytes.get(..8) {
        Some([0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00]) => WasmKind::Core,
        Some([0x00, 0x61, 0x73, 0x6d, _, _, 0x01, 0x00]) => WasmKind::Component,
        _ => WasmKind::NotWasm,
    }
}

#[cfg(test)]
mod tests {
    use super::super::options::EngineSettings;
    use super::*;

    #[test]
    fn recognises_wasm_kinds() {
        assert!(matches!(wasm_kind(b"\0asm\x01\0\0\0rest"), WasmKind::Core));
        assert!(matches!(wasm_kind(b"\0asm\x0d\0\x01\0rest"), WasmKind::Component));
        assert!(matches!(wasm_kind(b"hello world"), WasmKind::NotWasm));
        assert!(matches!(wasm_kind(b""), WasmKind::NotWasm));
    }

    #[test]
    fn the_epoch_ticker_starts_with_the_first_module_once() {
        let ticker_runs = |engine: &FilterEngine| *engine.inner.ticker_started.lock().unwrap();
        let engine = FilterEngine::new(&EngineOptions::for_modules(&[], 1, &EngineSettings::default())).unwrap();
        assert!(!ticker_runs(&engine), "no module, no ticker thread");
        engine.start_ticker().unwrap();
        engine.start_ticker().unwrap();
        assert!(ticker_runs(&engine));
    }
}
