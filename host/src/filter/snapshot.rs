//! Pre-initialised components, for the `fresh` instance policy.
//!
//! With a fresh instance per message, every message used to pay for the module's `init` as well as its
//! `decide`: about 12 µs of the ~28 µs a fresh instance of route-by-error costs (BENCHMARKS.md, "Where a fresh
//! instance's time goes"). Instead, when the module is loaded, the component is instantiated once, `init` runs
//! with the module's configuration under the module's limits, and the state it leaves (every core module's
//! linear memories and mutable globals) is written into a new component by wasmtime's pre-initialiser
//! (`wasmtime-wizer`). Each message then gets a new instance of that component, which starts in the state a
//! fresh `init` leaves, without running it. Isolation is unchanged: no instance sees what another one did.
//!
//! The snapshot is only taken when it is faithful; otherwise the module runs `init` per message as before and
//! [`Refusal`] says why (logged at debug level):
//! - the pre-initialiser cannot take the component apart (a shape it does not support), or its instrumented
//!   form does not compile or instantiate;
//! - `init` left host resources open (a stream, a clock's pollable): their handles, kept in the guest's memory,
//!   would mean nothing in another instance;
//! - `init` read the clock or random bytes (`watched.rs`): the snapshot would freeze what it read and every
//!   instance would share it.
//!
//! When `init` itself traps, runs out of time or fuel, or refuses its configuration, that is the module's start-up
//! error ([`Refusal::Init`]), worded as the runner words it: `init` does not run a second time to find it again.
//!
//! What differs from running `init` per message: anything `init` logged goes to the debug log once, when the
//! module is loaded, not into every message's audit record; and the seed of `wasi:random/insecure-seed` (the
//! keys of Rust's `HashMap`), if `init` asked for it, is the same in every instance.

use futures_util::FutureExt;
use sha2::{Digest, Sha256};
use wasmtime::Store;
use wasmtime::component::{Component, Instance, Lift, WasmList};
use wasmtime_wizer::{ComponentContext, ComponentInstanceState, Wizer};

use super::cache::CacheUse;
use super::compile::COMPONENTS;
use super::component::{Filter, FilterPre};
use super::engine::FilterEngine;
use super::error::{FilterError, error_chain};
use super::limits::Limits;
use super::runner::{self, StartFailure};
use super::sandbox::GuestState;
use super::spec::ModuleSpec;
use super::watched::ReadFlag;

/// How a fresh instance of a component starts (the `fresh` instance policy).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FreshStart {
    /// From a snapshot taken after `init`, where that is faithful (docs/writing-filters.md, "Fresh instances start
    /// after `init`", says when it is not); otherwise `init` runs for every message.
    #[default]
    Snapshot,
    /// `init` runs for every message: what the snapshot is measured against (the engine bench's
    /// `wasm-fresh-init` row).
    CallInit,
}

/// Why a component was not pre-initialised: it then runs `init` for every message, as before.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The pre-initialiser does not support the component's shape.
    Unsupported(String),
    /// The instrumented component could not be compiled or linked.
    Compile(String),
    /// The instrumented component could not be instantiated (the component as written may still be: its own
    /// start reports what fails there).
    Instantiate(String),
    /// `init` could not run to the end, or refused its configuration: not a refusal to snapshot but the module's
    /// start-up error ([`StartFailure::into_error`]).
    Init(StartFailure),
    /// `init` left host resources (streams, pollables) open.
    ResourcesOpen,
    /// `init` read the clock or random bytes, which the snapshot would freeze for every instance.
    ReadTimeOrRandom,
    /// Reading the instance's state failed.
    Snapshot(String),
    /// An earlier load of the same module, configuration and limits was refused for this reason.
    Remembered(String),
}

impl Refusal {
    /// Whether loading the same module with the same configuration and limits would be refused again: such a
    /// refusal is remembered in the cache, so that later loads do not instrument and run `init` only to be
    /// refused. `init` failing is not (it may have run out of time on a busy machine; and the run reports it
    /// anyway), nor is a failed compilation (its limits are not part of the key).
    fn lasting(&self) -> bool {
        matches!(
            self,
            Refusal::Unsupported(_) | Refusal::ResourcesOpen | Refusal::ReadTimeOrRandom
        )
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Unsupported(why) => write!(f, "the pre-initialiser cannot take this component apart: {why}"),
            Refusal::Compile(why) => write!(f, "the instrumented component could not be compiled or linked: {why}"),
            Refusal::Instantiate(why) => write!(f, "the instrumented component could not be instantiated: {why}"),
            Refusal::Init(StartFailure::Trap(why)) => write!(f, "`init` did not complete: {why}"),
            Refusal::Init(StartFailure::Init(why)) => write!(f, "filter refused its configuration: {why}"),
            Refusal::ResourcesOpen => f.write_str(
                "`init` left host resources (streams, pollables) open, whose handles would mean nothing in \
                 another instance",
            ),
            Refusal::ReadTimeOrRandom => f.write_str(
                "`init` read the clock or random bytes, which a snapshot would freeze and share between instances",
            ),
            Refusal::Snapshot(why) => write!(f, "reading the instance's state failed: {why}"),
            Refusal::Remembered(why) => write!(f, "{why} (found by an earlier load, remembered in the cache)"),
        }
    }
}

/// What a lasting refusal is remembered under in the cache, beside the snapshot it stands in for.
const REFUSED: &str = "refused";

/// Load the component `wasm` (whose sha256 is `sha256`) of `spec` pre-initialised: instrument it, run `init`
/// on the configuration under the module's limits, write the state into a new component and compile that.
/// The result is cached under [`snapshot_key`], so a later run with the same module, configuration and limits
/// loads it without running `init` at all; the instrumented component is cached under its own sha256, and a
/// [lasting](Refusal::lasting) refusal under the snapshot key too.
/// `limits` are the module's as the engine runs them ([`FilterEngine::fitted`]).
pub(crate) fn pre_initialise(
    engine: &FilterEngine,
    spec: &ModuleSpec,
    wasm: &[u8],
    sha256: &str,
    limits: &Limits,
) -> Result<(FilterPre<GuestState>, CacheUse), Refusal> {
    let key = snapshot_key(sha256, &spec.config, limits);
    if let Some(component) = engine.cached(spec, &key, &COMPONENTS) {
        return Ok((link(engine, &component)?, CacheUse::Hit));
    }
    let cache = engine.artifact_cache();
    if let Some(why) = cache.lookup(engine.wasmtime(), &key, REFUSED) {
        return Err(Refusal::Remembered(String::from_utf8_lossy(&why).into_owned()));
    }
    let made = take(engine, spec, wasm, limits, &key);
    if let Err(refusal) = &made
        && refusal.lasting()
    {
        cache.store(engine.wasmtime(), &key, REFUSED, refusal.to_string().as_bytes());
    }
    made
}

/// Instrument, run `init`, write the snapshot and compile it (cached under `key`).
fn take(
    engine: &FilterEngine,
    spec: &ModuleSpec,
    wasm: &[u8],
    limits: &Limits,
    key: &str,
) -> Result<(FilterPre<GuestState>, CacheUse), Refusal> {
    let compile_failed = |e: FilterError| Refusal::Compile(e.to_string());
    let instrumented = instrument(wasm)?;
    let digest = hex::encode(Sha256::digest(&instrumented.wasm));
    let (component, _) = engine
        .compiled(spec, &instrumented.wasm, &digest, &COMPONENTS)
        .map_err(compile_failed)?;
    let pre = link(engine, &component)?;
    let read = ReadFlag::default();
    let mut store = runner::guest_store(engine.wasmtime(), limits, engine.stopping(), Some(&read));
    let instance = runner::arm(&mut store, limits)
        .and_then(|()| pre.instance_pre().instantiate(&mut store))
        .map_err(|e| Refusal::Instantiate(error_chain(&e)))?;
    let written = snapshot(&instrumented, &mut store, instance, &spec.config, limits, &read)?;
    for line in store.data_mut().take_logs() {
        tracing::debug!(module = %spec.name, level = line.level, "`init` logged: {}", line.text);
    }
    let (component, cache_use) = engine
        .compiled(spec, &written, key, &COMPONENTS)
        .map_err(compile_failed)?;
    Ok((link(engine, &component)?, cache_use))
}

/// Link `component` as every filter is linked.
fn link(engine: &FilterEngine, component: &Component) -> Result<FilterPre<GuestState>, Refusal> {
    engine.link(component).map_err(|e| Refusal::Compile(error_chain(&e)))
}

/// The name a snapshot is cached under: what it was made from (the module's sha256, its configuration, and the
/// limits `init` ran under, which decide whether `init` succeeds at all). The snapshot itself is not hashed: the
/// same inputs give the same state, since a module whose `init` reads the clock or random bytes is refused.
fn snapshot_key(sha256: &str, config: &[(String, String)], limits: &Limits) -> String {
    let mut hasher = Sha256::new();
    hasher.update(b"redrive pre-initialised component, 1\n");
    hasher.update(sha256.as_bytes());
    for (key, value) in config {
        for part in [key, value] {
            hasher.update((part.len() as u64).to_le_bytes());
            hasher.update(part.as_bytes());
        }
    }
    hasher.update(limits.memory_bytes.to_le_bytes());
    hasher.update(limits.fuel.unwrap_or(0).to_le_bytes());
    hasher.update([u8::from(limits.fuel.is_some())]);
    hex::encode(hasher.finalize())
}

/// A component instrumented so that its state can be read back after `init`.
struct Instrumented<'a> {
    wizer: Wizer,
    context: ComponentContext<'a>,
    /// The instrumented component: the original with one more exported instance that reads its state.
    wasm: Vec<u8>,
}

/// Instrument `wasm` (a component) for [`snapshot`].
fn instrument(wasm: &[u8]) -> Result<Instrumented<'_>, Refusal> {
    let mut wizer = Wizer::new();
    // `init` stays exported: the snapshot is still a `redrive:filter` component, it just does not need calling.
    wizer.keep_init_func(true);
    let (context, instrumented) = wizer
        .instrument_component(wasm)
        .map_err(|e| Refusal::Unsupported(error_chain(&e)))?;
    Ok(Instrumented {
        wizer,
        context,
        wasm: instrumented,
    })
}

/// Run `init` with `config` on an instance of the instrumented component, then write its state into a new
/// component. `store` carries the module's limits, already armed for one call (fuel, deadline).
fn snapshot(
    instrumented: &Instrumented<'_>,
    store: &mut Store<GuestState>,
    instance: Instance,
    config: &[(String, String)],
    limits: &Limits,
    read: &ReadFlag,
) -> Result<Vec<u8>, Refusal> {
    let filter = Filter::new(&mut *store, &instance).map_err(|e| Refusal::Unsupported(error_chain(&e)))?;
    runner::run_init(&filter, store, config, limits).map_err(Refusal::Init)?;
    if store.data().holds_resources() {
        return Err(Refusal::ResourcesOpen);
    }
    if read.is_set() {
        return Err(Refusal::ReadTimeOrRandom);
    }
    let mut reader = StateReader {
        store,
        instance,
        failure: None,
    };
    let written = instrumented
        .wizer
        .snapshot_component(&instrumented.context, &mut reader)
        .now_or_never()
        .ok_or_else(|| Refusal::Snapshot("the pre-initialiser waited on something".into()))?
        .map_err(|e| Refusal::Snapshot(error_chain(&e)));
    match reader.failure {
        Some(why) => Err(Refusal::Snapshot(why)),
        None => written,
    }
}

/// Reads an instrumented instance's state through the functions the instrumentation exported. The trait
/// cannot return errors: the first failure is kept in `failure` (the values returned after it are zeros) and
/// turns the snapshot down.
struct StateReader<'a> {
    store: &'a mut Store<GuestState>,
    instance: Instance,
    failure: Option<String>,
}

impl StateReader<'_> {
    fn call<R, T>(&mut self, instance: &str, func: &str, read: impl FnOnce(&Store<GuestState>, R) -> T) -> Option<T>
    where
        R: Lift + Send + Sync + 'static,
    {
        if self.failure.is_some() {
            return None;
        }
        match self.try_call(instance, func, read) {
            Ok(value) => Some(value),
            Err(why) => {
                self.failure = Some(why);
                None
            }
        }
    }

    fn try_call<R, T>(
        &mut self,
        instance: &str,
        func: &str,
        read: impl FnOnce(&Store<GuestState>, R) -> T,
    ) -> Result<T, String>
    where
        R: Lift + Send + Sync + 'static,
    {
        let missing = || format!("the instrumented component has no export {instance}#{func}");
        let (_, exported) = self
            .instance
            .get_export(&mut *self.store, None, instance)
            .ok_or_else(missing)?;
        let (_, index) = self
            .instance
            .get_export(&mut *self.store, Some(&exported), func)
            .ok_or_else(missing)?;
        let typed = self
            .instance
            .get_typed_func::<(), (R,)>(&mut *self.store, index)
            .map_err(|e| error_chain(&e))?;
        let (value,) = typed.call(&mut *self.store, ()).map_err(|e| error_chain(&e))?;
        Ok(read(self.store, value))
    }
}

impl ComponentInstanceState for StateReader<'_> {
    async fn call_func_ret_list_u8(&mut self, instance: &str, func: &str, contents: impl FnOnce(&[u8]) + Send) {
        let mut contents = Some(contents);
        self.call(instance, func, |store, list: WasmList<u8>| {
            if let Some(contents) = contents.take() {
                contents(list.as_le_slice(store));
            }
        });
        if let Some(contents) = contents {
            contents(&[]);
        }
    }

    async fn call_func_ret_s32(&mut self, instance: &str, func: &str) -> i32 {
        self.call(instance, func, |_, value: i32| value).unwrap_or(0)
    }

    async fn call_func_ret_s64(&mut self, instance: &str, func: &str) -> i64 {
        self.call(instance, func, |_, value: i64| value).unwrap_or(0)
    }

    async fn call_func_ret_f32(&mut self, instance: &str, func: &str) -> u32 {
        self.call(instance, func, |_, value: f32| value.to_bits()).unwrap_or(0)
    }

    async fn call_func_ret_f64(&mut self, instance: &str, func: &str) -> u64 {
        self.call(instance, func, |_, value: f64| value.to_bits()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_snapshot_key_changes_with_the_module_the_configuration_and_the_limits() {
        let config = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
        };
        let limits = Limits::default();
        let base = snapshot_key("aa", &config(&[("default", "replay")]), &limits);
        assert_eq!(base, snapshot_key("aa", &config(&[("default", "replay")]), &limits));
        let others = [
            snapshot_key("ab", &config(&[("default", "replay")]), &limits),
            snapshot_key("aa", &config(&[("default", "skip")]), &limits),
            // Pairs are length-prefixed: moving a character from key to value is another configuration.
            snapshot_key("aa", &config(&[("defaul", "treplay")]), &limits),
            snapshot_key("aa", &config(&[]), &limits),
            snapshot_key(
                "aa",
                &config(&[("default", "replay")]),
                &Limits {
                    memory_bytes: 1 << 20,
                    ..limits.clone()
                },
            ),
            snapshot_key(
                "aa",
                &config(&[("default", "replay")]),
                &Limits {
                    fuel: Some(0),
                    ..limits.clone()
                },
            ),
        ];
        for (n, other) in others.iter().enumerate() {
            assert_ne!(&base, other, "variant {n}");
        }
    }
}
