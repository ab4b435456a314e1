//! The call-floor experiment (issue 18, "the contract's call cost"): what one `decide` call costs
//! when the host lowers the whole message into the guest (`redrive:filter@0.1.0`, today's
//! contract) against a world where `decide` gets a handle and the filter asks for what it reads
//! (`bench/call-floor/wit/probe.wit`, the shape a `redrive:filter@0.2.0` could take).
//!
//! Run it with `bench/call-floor/run.sh` (builds the modules first). Rows, all on the engine
//! bench's dead letter (1 KiB order, "upstream timeout after 30s"), instance reused, wasmtime
//! called directly on an engine configured as `FilterEngine`'s (`redrive::filter::engine_config`:
//! pooling, epoch deadline, no fuel):
//!
//! - `native route-by-error`: `RouteByError::decide` natively on a prebuilt message, its log
//!   line drained: the baseline of the "× native" column;
//! - `0.1.0 route-by-error.wasm`: the real example filter through the current contract;
//! - `0.1.0 noop`: a filter that replays without reading (`call-floor-eager-noop`): the current
//!   contract's floor, the message lowered and converted by the SDK for nothing;
//! - `probe ...` (`call-floor-lazy`, one module in six modes): nothing read; the three failure
//!   texts read through three getters, or through one; route-by-error's decision made from them
//!   (one getter), with the same patterns, reason and log line; the same without the log line;
//!   the same with a searcher per pattern built at init (memchr) instead of `str::contains`.
//!
//! The host side of the probe moves the envelope into the store's resource table for the call
//! and takes it back after (no copy), as a host implementing such a contract would. Each row is
//! the median over 41 batches of 4 000 calls after a warm-up batch; the rows take turns batch by batch.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::Instant;

use redrive::core::envelope::Envelope;
use redrive::filter::{EngineOptions, engine_config};
use redrive_guest::Filter as _;
use wasmtime::component::{Component, HasSelf, Linker, Resource};
use wasmtime::{Engine, Store};

#[path = "common/direct.rs"]
mod direct;
#[path = "common/order.rs"]
mod order;

use direct::{State, to_wit};

mod lazy {
    wasmtime::component::bindgen!({
        world: "lazy",
        path: "../bench/call-floor/wit",
        with: { "redrive:probe/types.message": ::redrive::core::envelope::Envelope },
    });
}

const BATCHES: usize = 41;
const CALLS: usize = 4_000;

impl lazy::redrive::probe::host::Host for State {
    fn log(&mut self, _level: lazy::redrive::probe::types::LogLevel, text: String) {
        self.logs.push(text);
    }
}

impl lazy::redrive::probe::types::Host for State {}

impl State {
    fn message(&self, msg: &Resource<Envelope>) -> &Envelope {
        self.table.get(msg).expect("the message handle is live during the call")
    }
}

impl lazy::redrive::probe::types::HostMessage for State {
    fn id(&mut self, msg: Resource<Envelope>) -> String {
        self.message(&msg).id.clone()
    }
    fn body(&mut self, msg: Resource<Envelope>) -> Vec<u8> {
        self.message(&msg).body.clone()
    }
    fn attribute(&mut self, msg: Resource<Envelope>, name: String) -> Option<String> {
        let env = self.message(&msg);
        env.attributes.iter().find(|(k, _)| *k == name).map(|(_, v)| v.clone())
    }
    fn reason(&mut self, msg: Resource<Envelope>) -> Option<String> {
        self.message(&msg).failure.reason.clone()
    }
    fn error_text(&mut self, msg: Resource<Envelope>) -> Option<String> {
        self.message(&msg).failure.error_text.clone()
    }
    fn error_class(&mut self, msg: Resource<Envelope>) -> Option<String> {
        self.message(&msg).failure.error_class.clone()
    }
    fn failure(&mut self, msg: Resource<Envelope>) -> lazy::redrive::probe::types::FailureTexts {
        let failure = &self.message(&msg).failure;
        lazy::redrive::probe::types::FailureTexts {
            reason: failure.reason.clone(),
            error_text: failure.error_text.clone(),
            error_class: failure.error_class.clone(),
        }
    }
    fn replay_count(&mut self, msg: Resource<Envelope>) -> u32 {
        self.message(&msg).replay_count
    }
    fn drop(&mut self, _msg: Resource<Envelope>) -> wasmtime::Result<()> {
        // The host owns the message: the guest only ever borrows it.
        Ok(())
    }
}

/// The engine as `FilterEngine::new` configures it (its own `engine_config`), with room for the
/// eight instances this bench keeps alive.
fn engine() -> Engine {
    let options = EngineOptions {
        max_instances: 16,
        ..EngineOptions::default()
    };
    Engine::new(&engine_config(&options)).expect("engine")
}

fn store(engine: &Engine) -> Store<State> {
    let mut store = Store::new(engine, State::new());
    store.limiter(|s| &mut s.limiter);
    store.set_epoch_deadline(u64::MAX / 2);
    store
}

fn linker(engine: &Engine) -> Linker<State> {
    let mut linker = Linker::<State>::new(engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker).expect("wasi");
    linker
}

/// One 0.1.0 module, instance reused; the message prebuilt once (the conversion is not timed).
struct EagerModule {
    store: Store<State>,
    filter: direct::bindings::Filter,
    msg: direct::wit::Message,
}

impl EagerModule {
    fn new(engine: &Engine, wasm: &Path, env: &Envelope) -> Self {
        let component = Component::from_file(engine, wasm).unwrap_or_else(|e| panic!("{}: {e}", wasm.display()));
        let mut linker = linker(engine);
        direct::bindings::Filter::add_to_linker::<State, HasSelf<State>>(&mut linker, |s| s).expect("link");
        let mut store = store(engine);
        let filter = direct::bindings::Filter::instantiate(&mut store, &component, &linker).expect("instantiate");
        filter.call_init(&mut store, &[]).expect("init").expect("init accepted");
        Self {
            store,
            filter,
            msg: to_wit(env),
        }
    }

    /// (verdict, reason) of one call.
    fn decide(&mut self) -> (String, String) {
        let d = self
            .filter
            .call_decide(&mut self.store, &self.msg)
            .expect("call")
            .expect("decided");
        self.store.data_mut().logs.clear();
        use direct::wit::Verdict;
        let verdict = match d.verdict {
            Verdict::Replay => "replay",
            Verdict::Skip => "skip",
            Verdict::Discard => "discard",
        };
        (verdict.to_string(), d.reason)
    }
}

/// One probe module, instance reused; the envelope lent to it for each call through the table.
struct LazyModule {
    store: Store<State>,
    filter: lazy::Lazy,
    env: Option<Envelope>,
}

impl LazyModule {
    fn new(engine: &Engine, wasm: &Path, env: &Envelope, config: &[(String, String)]) -> Self {
        let component = Component::from_file(engine, wasm).unwrap_or_else(|e| panic!("{}: {e}", wasm.display()));
        let mut linker = linker(engine);
        lazy::Lazy::add_to_linker::<State, HasSelf<State>>(&mut linker, |s| s).expect("link");
        let mut store = store(engine);
        let filter = lazy::Lazy::instantiate(&mut store, &component, &linker).expect("instantiate");
        filter
            .call_init(&mut store, config)
            .expect("init")
            .expect("init accepted");
        Self {
            store,
            filter,
            env: Some(env.clone()),
        }
    }

    fn decide(&mut self) -> (String, String) {
        let env = self.env.take().expect("the envelope is back after each call");
        let handle = self.store.data_mut().table.push(env).expect("table");
        let borrowed = Resource::<Envelope>::new_borrow(handle.rep());
        let d = self
            .filter
            .call_decide(&mut self.store, borrowed)
            .expect("call")
            .expect("decided");
        let state = self.store.data_mut();
        self.env = Some(state.table.delete(handle).expect("the handle is still ours"));
        state.logs.clear();
        use lazy::redrive::probe::types::Verdict;
        let verdict = match d.verdict {
            Verdict::Replay => "replay",
            Verdict::Skip => "skip",
            Verdict::Discard => "discard",
        };
        (verdict.to_string(), d.reason)
    }
}

/// A row: its label and one call.
type Row<'a> = (&'static str, Box<dyn FnMut() + 'a>);

/// Median time per call of each row, in ns. The rows take turns batch by batch, so a noisy
/// stretch of the machine's time falls on all of them alike rather than on one.
fn per_call(rows: &mut [Row<'_>]) -> Vec<f64> {
    let batch = |call: &mut Box<dyn FnMut() + '_>| {
        let start = Instant::now();
        for _ in 0..CALLS {
            call();
        }
        start.elapsed().as_nanos() as f64 / CALLS as f64
    };
    for (_, call) in rows.iter_mut() {
        batch(call); // warm-up
    }
    let mut samples = vec![Vec::with_capacity(BATCHES); rows.len()];
    for _ in 0..BATCHES {
        for ((_, call), row) in rows.iter_mut().zip(&mut samples) {
            row.push(batch(call));
        }
    }
    samples
        .into_iter()
        .map(|mut row| {
            row.sort_by(f64::total_cmp);
            row[BATCHES / 2]
        })
        .collect()
}

fn filters_dir() -> PathBuf {
    let dir = std::env::var_os("REDRIVE_BENCH_FILTERS").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../build/filters"),
        PathBuf::from,
    );
    for name in ["route-by-error", "call-floor-eager-noop", "call-floor-lazy"] {
        if !dir.join(format!("{name}.wasm")).is_file() {
            eprintln!(
                "call-floor bench: {name}.wasm is not in {}: run bench/call-floor/run.sh (it builds the modules)",
                dir.display()
            );
            std::process::exit(2);
        }
    }
    dir
}

fn main() {
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return; // `cargo test --benches` and `--list`: nothing to check without the modules.
    }
    let dir = filters_dir();
    let env = order::envelope();
    let engine = engine();
    let patterns = [
        ("transient", route_by_error::DEFAULT_TRANSIENT),
        ("permanent", route_by_error::DEFAULT_PERMANENT),
    ];
    let route_config = |mode: &str| -> Vec<(String, String)> {
        std::iter::once(("mode".to_string(), mode.to_string()))
            .chain(patterns.iter().map(|(k, v)| (k.to_string(), v.join(","))))
            .collect()
    };
    let mode = |m: &str| vec![("mode".to_string(), m.to_string())];

    let mut native = route_by_error::RouteByError::default();
    let msg = direct::guest_message(&env);
    let mut native_decide = || {
        let d = native.decide(&msg).expect("native decides");
        black_box(redrive_guest::log::take_native_logs());
        (d.verdict.to_string(), d.reason)
    };
    let mut route_v1 = EagerModule::new(&engine, &dir.join("route-by-error.wasm"), &env);
    let mut noop_v1 = EagerModule::new(&engine, &dir.join("call-floor-eager-noop.wasm"), &env);
    let lazy_wasm = dir.join("call-floor-lazy.wasm");
    let mut noop = LazyModule::new(&engine, &lazy_wasm, &env, &mode("noop"));
    let mut read = LazyModule::new(&engine, &lazy_wasm, &env, &mode("read"));
    let mut read1 = LazyModule::new(&engine, &lazy_wasm, &env, &mode("read1"));
    let mut route = LazyModule::new(&engine, &lazy_wasm, &env, &route_config("route"));
    let mut route_nolog = LazyModule::new(&engine, &lazy_wasm, &env, &route_config("route-nolog"));
    let mut route_finder = LazyModule::new(&engine, &lazy_wasm, &env, &route_config("route-finder"));

    // The comparison only holds if the three route-by-errors decide alike.
    let expected = native_decide();
    assert_eq!(route_v1.decide(), expected);
    assert_eq!(route.decide(), expected);
    assert_eq!(route_nolog.decide(), expected);
    assert_eq!(route_finder.decide(), expected);

    let mut rows: Vec<Row<'_>> = vec![
        (
            "native route-by-error (baseline)",
            Box::new(|| drop(black_box(native_decide()))),
        ),
        (
            "0.1.0 route-by-error.wasm",
            Box::new(|| drop(black_box(route_v1.decide()))),
        ),
        (
            "0.1.0 noop (reads nothing)",
            Box::new(|| drop(black_box(noop_v1.decide()))),
        ),
        (
            "probe noop (reads nothing)",
            Box::new(|| drop(black_box(noop.decide()))),
        ),
        ("probe read (3 getters)", Box::new(|| drop(black_box(read.decide())))),
        (
            "probe read1 (1 getter, the same 3 texts)",
            Box::new(|| drop(black_box(read1.decide()))),
        ),
        (
            "probe route (1 getter + route-by-error)",
            Box::new(|| drop(black_box(route.decide()))),
        ),
        (
            "probe route, no log line",
            Box::new(|| drop(black_box(route_nolog.decide()))),
        ),
        (
            "probe route, searchers built at init",
            Box::new(|| drop(black_box(route_finder.decide()))),
        ),
    ];
    let medians = per_call(&mut rows);
    let base = medians[0];
    println!(
        "\ncall floor: one decide per call, instance reused, {} calls × {} batches, median",
        CALLS, BATCHES
    );
    println!("{:<44} {:>10} {:>10}", "row", "per call", "× native");
    for ((name, _), ns) in rows.iter().zip(medians) {
        println!("{name:<44} {:>7.0} ns {:>9.2}×", ns, ns / base);
    }
}
