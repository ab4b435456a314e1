//! The filter engine benchmark (issue 3): time per message on a 1 KiB JSON body.
//!
//! Run it with `scripts/bench-engine.sh` (builds the filters to wasm first), or
//! `cargo bench -p redrive --bench engine` once `build/filters/*.wasm` exist.
//!
//! Rows, all on the same dead letter (an order, dead-lettered with "upstream timeout after 30s"):
//! - `native-decide`: `route_by_error::RouteByError::decide` called natively on a prebuilt
//!   `redrive_guest::Message` (plus draining its one log line);
//! - `native`: the same, but building the `Message` from the `Envelope` per message, as the host
//!   does for a module — the baseline of the "× native" column;
//! - `sha256-1k`: the audit hash of the body (`sha256_hex`), which every chain run computes;
//! - `wasm-reuse` / `wasm-fresh`: `route-by-error.wasm` through `ChainRunner::decide`, instance
//!   reused (default) or `?redrive.instance=fresh` (a new instance per message, started from the
//!   snapshot taken after `init`); `wasm-fresh-init`: fresh, running `init` per message instead
//!   (`FreshStart::CallInit`, what the snapshot is measured against);
//! - `native-chain3` / `wasm-chain3`: route-by-error → repair-json → drop-test-traffic, all replay;
//! - `start/*`: `FilterChain::load` of the 3 modules with an empty cache dir (compile) and a warm
//!   one (deserialize), and `FilterChain::runner` (one worker's 3 instances + `init`).
//!
//! After criterion's own report, a compact table is printed from criterion's estimates (median) and
//! saved to `<target>/criterion/engine-summary.txt`. Figures and their reading: BENCHMARKS.md.
//!
//! Environment: `REDRIVE_BENCH_FILTERS` (directory of the `.wasm` modules, default `build/filters`),
//! `REDRIVE_BENCH_SPLIT=1` (also run the fresh-instance experiment at the end of this file).

use std::fmt::Write as _;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use criterion::{BatchSize, Criterion, SamplingMode};
use redrive::core::envelope::{Envelope, Outcome};
use redrive::core::ids::sha256_hex;
use redrive::filter::{EngineSettings, FilterChain, FreshStart, ModuleSettings, ModuleSpec};
use redrive_guest::Filter as _;

#[path = "common/cpu.rs"]
mod cpu;
#[path = "common/direct.rs"]
mod direct;
use direct::guest_message;
#[path = "common/order.rs"]
mod order;
use order::envelope;

/// The example filters, in chain order.
const CHAIN: [&str; 3] = ["route-by-error", "repair-json", "drop-test-traffic"];
/// Criterion group of the per-message rows.
const GROUP: &str = "engine";
/// Criterion group of the start-up rows.
const START_GROUP: &str = "start";

fn main() {
    let started = SystemTime::now();
    let filters = filters_dir();
    let env = envelope();
    let out_dir = criterion_dir();
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(50)
        .output_directory(&out_dir)
        .configure_from_args();

    check_decisions(&filters, &env);
    per_message(&mut c, &filters, &env);
    start_up(&mut c, &filters);
    c.final_summary();

    if benchmarking() {
        let mut table = summary_table(&out_dir, started);
        if filter_selects(&["engine/wasm-fresh", "engine/wasm-fresh-init"]) {
            table = format!("{table}\n{}", fresh_cpu(&filters, &env));
        }
        println!("\n{table}");
        let path = out_dir.join("engine-summary.txt");
        match std::fs::write(&path, &table) {
            Ok(()) => println!("(table saved to {})", path.display()),
            Err(e) => eprintln!("cannot save the table to {}: {e}", path.display()),
        }
        if std::env::var_os("REDRIVE_BENCH_SPLIT").is_some_and(|v| v == "1") {
            println!("\n{}", split::report(&filters, &env));
        }
    }
}

/// `build/filters` (or `$REDRIVE_BENCH_FILTERS`), with every module of the chain in it; exits with
/// instructions otherwise.
fn filters_dir() -> PathBuf {
    let dir = match std::env::var_os("REDRIVE_BENCH_FILTERS") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("host/ has a parent")
            .join("build/filters"),
    };
    let missing: Vec<String> = CHAIN
        .iter()
        .map(|name| dir.join(format!("{name}.wasm")))
        .filter(|path| !path.is_file())
        .map(|path| path.display().to_string())
        .collect();
    if !missing.is_empty() {
        eprintln!(
            "engine bench: missing filter module(s): {}\n\
             Build them first: scripts/build-filters.sh route-by-error repair-json drop-test-traffic\n\
             (scripts/bench-engine.sh does that, then runs this benchmark).",
            missing.join(", ")
        );
        std::process::exit(2);
    }
    dir
}

/// Where criterion writes its results: `$CRITERION_HOME`, else `<target dir>/criterion`, the target
/// dir found from this executable's path (`<target>/<profile>/deps/engine-<hash>`).
fn criterion_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CRITERION_HOME") {
        return PathBuf::from(dir);
    }
    std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.parent()?.to_path_buf()))
        .unwrap_or_else(|| PathBuf::from("target"))
        .join("criterion")
}

/// True when criterion measures (`cargo bench`), false for `--test`, `--list` and `--profile-time`.
fn benchmarking() -> bool {
    let args: Vec<String> = std::env::args().collect();
    let has = |flag: &str| args.iter().any(|a| a == flag || a.starts_with(&format!("{flag}=")));
    has("--bench") && !has("--test") && !has("--list") && !has("--profile-time")
}

/// Whether the criterion filter given on the command line (`cargo bench … -- <filter>`) selects one of `ids`:
/// no filter selects everything; a filter selects the ids it is a part of (criterion reads it as a regex; the
/// sections outside criterion, like the fresh rows' CPU, take the plain words people type).
fn filter_selects(ids: &[&str]) -> bool {
    // Criterion's flags that take a value in the next argument.
    const VALUED: [&str; 17] = [
        "-s",
        "--save-baseline",
        "-b",
        "--baseline",
        "--baseline-lenient",
        "--load-baseline",
        "-c",
        "--color",
        "--sample-size",
        "--warm-up-time",
        "--measurement-time",
        "--nresamples",
        "--noise-threshold",
        "--confidence-level",
        "--significance-level",
        "--output-format",
        "--plotting-backend",
    ];
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut filters = Vec::new();
    let mut skip_value = false;
    for arg in &args {
        if std::mem::take(&mut skip_value) {
            continue;
        }
        match arg.strip_prefix('-') {
            Some(_) => skip_value = VALUED.contains(&arg.as_str()),
            None => filters.push(arg.as_str()),
        }
    }
    filters.is_empty() || filters.iter().any(|f| ids.iter().any(|id| id.contains(f)))
}

fn spec(filters: &Path, name: &str, query: &str) -> ModuleSpec {
    let text = format!("{}{query}", filters.join(format!("{name}.wasm")).display());
    ModuleSpec::parse(&text, &ModuleSettings::default()).unwrap_or_else(|e| panic!("{text}: {e}"))
}

fn chain_specs(filters: &Path) -> Vec<ModuleSpec> {
    CHAIN.iter().map(|name| spec(filters, name, "")).collect()
}

fn load(specs: &[ModuleSpec]) -> FilterChain {
    // No compiled-module cache for the per-message rows: they never measure loading.
    FilterChain::load(specs, 1, &cached_in(None)).unwrap_or_else(|e| panic!("cannot load the chain: {e}"))
}

/// route-by-error with a fresh instance per message, started as `start` says.
fn load_fresh(filters: &Path, start: FreshStart) -> FilterChain {
    let settings = EngineSettings {
        fresh_start: start,
        ..cached_in(None)
    };
    let specs = [spec(filters, "route-by-error", "?redrive.instance=fresh")];
    FilterChain::load(&specs, 1, &settings).unwrap_or_else(|e| panic!("cannot load route-by-error: {e}"))
}

/// The three filters natively, configured as the wasm ones are (no config: their defaults).
struct NativeChain {
    route: route_by_error::RouteByError,
    repair: repair_json::RepairJson,
    drop: drop_test_traffic::DropTestTraffic,
}

impl NativeChain {
    fn new() -> Self {
        let config = redrive_guest::Config::default();
        Self {
            route: route_by_error::RouteByError::init(&config).unwrap(),
            repair: repair_json::RepairJson::init(&config).unwrap(),
            drop: drop_test_traffic::DropTestTraffic::init(&config).unwrap(),
        }
    }

    /// route-by-error alone, then its log line drained (the host collects a module's logs per call).
    fn route(&mut self, msg: &redrive_guest::Message) -> redrive_guest::Decision {
        let decision = self.route.decide(msg).unwrap();
        black_box(redrive_guest::log::take_native_logs());
        decision
    }

    /// The three filters on one message: the first non-replay ends the chain, as in the host.
    fn chain(&mut self, msg: &redrive_guest::Message) -> Vec<redrive_guest::Decision> {
        let mut decisions = Vec::with_capacity(3);
        for step in 0..3 {
            let decision = match step {
                0 => self.route.decide(msg),
                1 => self.repair.decide(msg),
                _ => self.drop.decide(msg),
            }
            .unwrap();
            let replay = decision.verdict == redrive_guest::Verdict::Replay;
            decisions.push(decision);
            if !replay {
                break;
            }
        }
        black_box(redrive_guest::log::take_native_logs());
        decisions
    }
}

/// The benchmark is only meaningful if every path replays the message through every module and the
/// native and wasm filters agree.
fn check_decisions(filters: &Path, env: &Envelope) {
    let msg = guest_message(env);
    let mut native = NativeChain::new();
    let route = native.route(&msg);
    assert_eq!(route.verdict, redrive_guest::Verdict::Replay, "{route:?}");
    assert_eq!(route.reason, "transient error: matched \"timeout\"");
    let chain = native.chain(&msg);
    assert_eq!(chain.len(), 3, "{chain:?}");
    assert!(
        chain
            .iter()
            .all(|d| d.verdict == redrive_guest::Verdict::Replay && d.body.is_none())
    );

    for query in ["", "?redrive.instance=fresh"] {
        let loaded = load(&[spec(filters, "route-by-error", query)]);
        let mut runner = loaded.runner().unwrap();
        for _ in 0..3 {
            let out = runner.decide(env).unwrap();
            assert_eq!(out.outcome, Outcome::Replay, "{query}: {}", out.reason);
            assert_eq!(out.reason, route.reason, "{query}");
        }
    }
    let loaded = load(&chain_specs(filters));
    let out = loaded.runner().unwrap().decide(env).unwrap();
    assert_eq!(out.outcome, Outcome::Replay, "{}", out.reason);
    assert_eq!(out.records.len(), 3);
    assert!(out.body.is_none());
    let reasons: Vec<&str> = out.records.iter().map(|r| r.reason.as_str()).collect();
    let native_reasons: Vec<&str> = chain.iter().map(|d| d.reason.as_str()).collect();
    assert_eq!(reasons, native_reasons);
}

fn per_message(c: &mut Criterion, filters: &Path, env: &Envelope) {
    let mut group = c.benchmark_group(GROUP);
    let mut native = NativeChain::new();
    let prebuilt = guest_message(env);

    group.bench_function("native-decide", |b| b.iter(|| native.route(black_box(&prebuilt))));
    group.bench_function("native", |b| {
        b.iter(|| {
            let msg = guest_message(black_box(env));
            native.route(&msg)
        })
    });
    group.bench_function("sha256-1k", |b| b.iter(|| sha256_hex(black_box(&env.body))));

    let reuse = load(&[spec(filters, "route-by-error", "")]);
    let mut runner = reuse.runner().unwrap();
    group.bench_function("wasm-reuse", |b| b.iter(|| runner.decide(black_box(env)).unwrap()));
    drop(runner);

    for (id, start) in [
        ("wasm-fresh", FreshStart::Snapshot),
        ("wasm-fresh-init", FreshStart::CallInit),
    ] {
        let fresh = load_fresh(filters, start);
        let mut runner = fresh.runner().unwrap();
        group.bench_function(id, |b| b.iter(|| runner.decide(black_box(env)).unwrap()));
    }

    group.bench_function("native-chain3", |b| {
        b.iter(|| {
            let msg = guest_message(black_box(env));
            native.chain(&msg)
        })
    });
    let chain = load(&chain_specs(filters));
    let mut runner = chain.runner().unwrap();
    group.bench_function("wasm-chain3", |b| b.iter(|| runner.decide(black_box(env)).unwrap()));
    drop(runner);
    group.finish();
}

/// CPU per message of a fresh instance, from a snapshot and with `init` per message, in alternating rounds of
/// 20 000 calls: total (precise) and its user / kernel split (10 ms ticks). Half a fresh instance is kernel work
/// (page faults, the memory reset's `madvise`), which a wall-time row mixes with the VM's noise.
fn fresh_cpu(filters: &Path, env: &Envelope) -> String {
    const CALLS: u32 = 20_000;
    let variants = [
        ("snapshot", FreshStart::Snapshot),
        ("init per message", FreshStart::CallInit),
    ];
    let chains: Vec<FilterChain> = variants.iter().map(|(_, start)| load_fresh(filters, *start)).collect();
    let mut runners: Vec<_> = chains.iter().map(|c| c.runner().unwrap()).collect();
    let mut t = format!("CPU per message, fresh instance of route-by-error ({CALLS} calls per round):\n");
    for round in 1..=3 {
        for ((name, _), runner) in variants.iter().zip(&mut runners) {
            let cpu = cpu::per_call(CALLS, || {
                black_box(runner.decide(black_box(env)).unwrap());
            });
            let _ = writeln!(
                t,
                "  round {round}, {name:<17} {:>9} (user {:>9}, kernel {:>9})",
                human(cpu.total.as_nanos() as f64),
                human(cpu.user.as_nanos() as f64),
                human(cpu.system.as_nanos() as f64)
            );
        }
    }
    t
}

fn start_up(c: &mut Criterion, filters: &Path) {
    let specs = chain_specs(filters);
    let warm = tempfile::tempdir().unwrap();
    drop(FilterChain::load(&specs, 1, &cached_in(Some(warm.path()))).unwrap());

    let mut group = c.benchmark_group(START_GROUP);
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(4));
    group.bench_function("load3-compile", |b| {
        b.iter_batched(
            || tempfile::tempdir().unwrap(),
            |empty| {
                let chain = FilterChain::load(&specs, 1, &cached_in(Some(empty.path()))).unwrap();
                (chain, empty)
            },
            BatchSize::PerIteration,
        )
    });
    group.bench_function("load3-cached", |b| {
        b.iter_batched(
            || (),
            |()| FilterChain::load(&specs, 1, &cached_in(Some(warm.path()))).unwrap(),
            BatchSize::PerIteration,
        )
    });
    let chain = FilterChain::load(&specs, 1, &cached_in(Some(warm.path()))).unwrap();
    group.sampling_mode(SamplingMode::Auto).sample_size(30);
    group.bench_function("runner3", |b| {
        b.iter_batched(|| (), |()| chain.runner().unwrap(), BatchSize::PerIteration)
    });
    group.finish();
}

/// One row of the compact table.
struct Row {
    group: &'static str,
    id: &'static str,
    label: &'static str,
    /// The id of the native row this one is compared with.
    baseline: Option<&'static str>,
}

const ROWS: &[Row] = &[
    Row {
        group: GROUP,
        id: "native-decide",
        label: "native route-by-error, decide only (Message prebuilt)",
        baseline: Some("native"),
    },
    Row {
        group: GROUP,
        id: "native",
        label: "native route-by-error, build Message + decide [baseline]",
        baseline: Some("native"),
    },
    Row {
        group: GROUP,
        id: "sha256-1k",
        label: "sha256 of the 1 KiB body (audit hash, in every wasm row)",
        baseline: Some("native"),
    },
    Row {
        group: GROUP,
        id: "wasm-reuse",
        label: "wasm route-by-error, instance reused",
        baseline: Some("native"),
    },
    Row {
        group: GROUP,
        id: "wasm-fresh",
        label: "wasm route-by-error, fresh instance per message",
        baseline: Some("native"),
    },
    Row {
        group: GROUP,
        id: "wasm-fresh-init",
        label: "wasm route-by-error, fresh instance, `init` per message",
        baseline: Some("native"),
    },
    Row {
        group: GROUP,
        id: "native-chain3",
        label: "native chain of 3 [chain baseline]",
        baseline: Some("native-chain3"),
    },
    Row {
        group: GROUP,
        id: "wasm-chain3",
        label: "wasm chain of 3, instances reused",
        baseline: Some("native-chain3"),
    },
    Row {
        group: START_GROUP,
        id: "load3-compile",
        label: "start: load 3 modules, empty cache (compile)",
        baseline: None,
    },
    Row {
        group: START_GROUP,
        id: "load3-cached",
        label: "start: load 3 modules, warm cache (deserialize)",
        baseline: None,
    },
    Row {
        group: START_GROUP,
        id: "runner3",
        label: "start: one worker's 3 instances + init",
        baseline: None,
    },
];

/// Criterion's median estimate (ns) and its 95% confidence interval, if this run wrote it.
fn median_ns(out_dir: &Path, group: &str, id: &str, since: SystemTime) -> Option<(f64, f64, f64)> {
    let path = out_dir.join(group).join(id).join("new/estimates.json");
    let fresh = std::fs::metadata(&path).and_then(|m| m.modified()).ok()? >= since;
    if !fresh {
        return None; // filtered out of this run: do not show an old figure
    }
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).ok()?).ok()?;
    let median = &json["median"];
    let ci = &median["confidence_interval"];
    Some((
        median["point_estimate"].as_f64()?,
        ci["lower_bound"].as_f64()?,
        ci["upper_bound"].as_f64()?,
    ))
}

fn human(ns: f64) -> String {
    if ns >= 1e6 {
        format!("{:.2} ms", ns / 1e6)
    } else if ns >= 1e4 {
        format!("{:.1} µs", ns / 1e3)
    } else {
        format!("{ns:.0} ns")
    }
}

fn summary_table(out_dir: &Path, since: SystemTime) -> String {
    let get = |group: &str, id: &str| median_ns(out_dir, group, id, since);
    let mut t = String::new();
    let _ = writeln!(
        t,
        "Filter engine, 1 KiB JSON body (criterion median, 95% CI of the median)"
    );
    let _ = writeln!(
        t,
        "{:<58} {:>12} {:>23} {:>9}",
        "case", "per message", "95% CI", "× native"
    );
    for row in ROWS {
        if row.group == START_GROUP && row.id == "load3-compile" {
            let _ = writeln!(t, "{:<58} {:>12} {:>23}", "", "per start", "");
        }
        let Some((median, lo, hi)) = get(row.group, row.id) else {
            let _ = writeln!(t, "{:<58} {:>12}", row.label, "not run");
            continue;
        };
        let ratio = match row.baseline.and_then(|b| get(GROUP, b)) {
            Some((base, _, _)) => format!("{:.2}×", median / base),
            None => String::new(),
        };
        let ci = format!("{} – {}", human(lo), human(hi));
        let _ = writeln!(t, "{:<58} {:>12} {:>23} {:>9}", row.label, human(median), ci, ratio);
    }

    let _ = writeln!(t, "\nTargets (issue 3):");
    match (get(GROUP, "wasm-reuse"), get(GROUP, "native")) {
        (Some((reuse, ..)), Some((native, ..))) => {
            let ratio = reuse / native;
            let _ = writeln!(
                t,
                "  reuse ≤ 2× native:          {ratio:.2}× → {}",
                if ratio <= 2.0 { "met" } else { "NOT met" }
            );
            if let Some((hash, ..)) = get(GROUP, "sha256-1k") {
                let _ = writeln!(
                    t,
                    "    without the audit hash:   {} ({:.2}× native)",
                    human(reuse - hash),
                    (reuse - hash) / native
                );
            }
        }
        _ => {
            let _ = writeln!(t, "  reuse ≤ 2× native:          not measured in this run");
        }
    }
    match get(GROUP, "wasm-fresh") {
        Some((fresh, ..)) => {
            let _ = writeln!(
                t,
                "  fresh per message ≤ 10 µs:  {} → {}",
                human(fresh),
                if fresh <= 10_000.0 { "met" } else { "NOT met" }
            );
        }
        None => {
            let _ = writeln!(t, "  fresh per message ≤ 10 µs:  not measured in this run");
        }
    }
    t
}

/// Where a fresh instance's time goes: an experiment, run with `REDRIVE_BENCH_SPLIT=1`
/// (`scripts/bench-engine.sh --split`).
///
/// `ChainRunner` does not expose its phases, so this replicates, with wasmtime directly, what
/// `ModuleRunner::start` + `decide` + dropping the store do for `route-by-error.wasm` under the engine
/// settings of `FilterEngine::new` (copied here: keep them in step), and times each phase per cycle.
/// It then repeats the whole cycle under alternative pooling settings, to show what each one buys.
mod split {
    use std::path::Path;
    use std::time::Instant;

    use wasmtime::component::{HasSelf, Linker};
    use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, OptLevel, Store};

    use redrive::core::envelope::Envelope;

    use super::direct::bindings::{Filter, FilterPre};
    use super::direct::{State, to_wit, wit};

    /// Pooling settings to compare; `None` is the on-demand allocator.
    struct Variant {
        name: &'static str,
        pooling: Option<(usize, Enabled)>,
        /// `Config::memory_init_cow` (wasmtime's default: true).
        cow: bool,
        /// `Config::consume_fuel` (FilterEngine: only when a module has a fuel budget).
        fuel: bool,
    }

    const VARIANTS: &[Variant] = &[
        Variant {
            name: "as FilterEngine (no fuel metering): pooling, keep_resident 0, pagemap_scan auto",
            pooling: Some((0, Enabled::Auto)),
            cow: true,
            fuel: false,
        },
        Variant {
            name: "pooling, keep_resident 1 MiB, pagemap_scan auto (FilterEngine before 2026-11-23)",
            pooling: Some((1 << 20, Enabled::Auto)),
            cow: true,
            fuel: false,
        },
        Variant {
            name: "pooling, keep_resident 2 MiB, pagemap_scan auto",
            pooling: Some((2 << 20, Enabled::Auto)),
            cow: true,
            fuel: false,
        },
        Variant {
            name: "pooling, keep_resident 64 KiB, pagemap_scan auto",
            pooling: Some((64 << 10, Enabled::Auto)),
            cow: true,
            fuel: false,
        },
        Variant {
            name: "pooling, keep_resident 1 MiB, pagemap_scan off",
            pooling: Some((1 << 20, Enabled::No)),
            cow: true,
            fuel: false,
        },
        Variant {
            name: "on-demand allocator (no pooling)",
            pooling: None,
            cow: true,
            fuel: false,
        },
        Variant {
            name: "pooling, keep_resident 2 MiB, pagemap_scan auto, memory_init_cow off",
            pooling: Some((2 << 20, Enabled::Auto)),
            cow: false,
            fuel: false,
        },
        Variant {
            name: "pooling, keep_resident 0, memory_init_cow off",
            pooling: Some((0, Enabled::Auto)),
            cow: false,
            fuel: false,
        },
        Variant {
            name: "as FilterEngine with fuel metering (a module with a fuel budget, --fuel)",
            pooling: Some((0, Enabled::Auto)),
            cow: true,
            fuel: true,
        },
    ];

    fn engine(variant: &Variant) -> Engine {
        let mut config = Config::new();
        config
            .wasm_component_model(true)
            .consume_fuel(variant.fuel)
            .epoch_interruption(true)
            .cranelift_opt_level(OptLevel::Speed)
            .parallel_compilation(true)
            .memory_init_cow(variant.cow);
        if let Some((keep_resident, pagemap)) = variant.pooling {
            // FilterEngine::new's pool for 1 worker × 1 module (6 slots, 64 MiB memories), with this variant's
            // keep-resident size and pagemap scan.
            let mut pool = redrive::filter::pooling_config(6, 64 << 20);
            pool.linear_memory_keep_resident(keep_resident).pagemap_scan(pagemap);
            config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
        }
        Engine::new(&config).expect("engine")
    }

    const PHASES: [&str; 8] = [
        "WasiCtx + state",
        "Store::new + limiter + fuel",
        "instantiate",
        "init",
        "first decide",
        "drop store (reset memory)",
        "second decide (reused)",
        "decide (reused), bare message",
    ];

    /// Times each phase of `cycles` fresh-instance cycles; medians in ns, per phase.
    fn phases(engine: &Engine, pre: &FilterPre<State>, env: &Envelope, fuel: bool, cycles: usize) -> Vec<f64> {
        let config: Vec<(String, String)> = Vec::new();
        let mut samples = vec![Vec::with_capacity(cycles); PHASES.len()];
        for _ in 0..cycles {
            let msg = to_wit(env);
            let msg2 = to_wit(env);
            // Same failure context (so the same verdict and guest work), nothing else: 4 strings to
            // lower instead of 15.
            let bare = wit::Message {
                id: env.id.clone(),
                body: Vec::new(),
                attributes: Vec::new(),
                origin: wit::Origin {
                    system: String::new(),
                    dlq: String::new(),
                    original_queue: None,
                },
                ..to_wit(env)
            };
            let t0 = Instant::now();
            let state = State::new();
            let t1 = Instant::now();
            let mut store = Store::new(engine, state);
            store.limiter(|s| &mut s.limiter);
            if fuel {
                store.set_fuel(1_000_000_000).unwrap();
            }
            store.set_epoch_deadline(100);
            let t2 = Instant::now();
            let filter: Filter = pre.instantiate(&mut store).unwrap();
            let t3 = Instant::now();
            filter.call_init(&mut store, &config).unwrap().unwrap();
            let t4 = Instant::now();
            let first = filter.call_decide(&mut store, &msg).unwrap().unwrap();
            let t5 = Instant::now();
            let second = filter.call_decide(&mut store, &msg2).unwrap().unwrap();
            let t6 = Instant::now();
            let third = filter.call_decide(&mut store, &bare).unwrap().unwrap();
            let t6b = Instant::now();
            drop(store);
            let t7 = Instant::now();
            std::hint::black_box((first, second, third));
            let d = |a: Instant, b: Instant| (b - a).as_nanos() as f64;
            for (i, ns) in [
                d(t0, t1),
                d(t1, t2),
                d(t2, t3),
                d(t3, t4),
                d(t4, t5),
                d(t6b, t7),
                d(t5, t6),
                d(t6, t6b),
            ]
            .into_iter()
            .enumerate()
            {
                samples[i].push(ns);
            }
        }
        samples
            .into_iter()
            .map(|mut s| {
                s.sort_by(f64::total_cmp);
                s[s.len() / 2]
            })
            .collect()
    }

    /// Runs the experiment and returns its report.
    pub fn report(filters: &Path, env: &Envelope) -> String {
        use std::fmt::Write as _;
        let wasm = std::fs::read(filters.join("route-by-error.wasm")).expect("route-by-error.wasm");
        let mut t = String::new();
        let _ = writeln!(
            t,
            "Fresh instance, where the time goes (route-by-error.wasm, wasmtime directly, median of 2000 cycles)"
        );
        for variant in VARIANTS {
            let engine = engine(variant);
            let component = wasmtime::component::Component::new(&engine, &wasm).expect("compile");
            let mut linker = Linker::<State>::new(&engine);
            wasmtime_wasi::p2::add_to_linker_sync(&mut linker).unwrap();
            Filter::add_to_linker::<State, HasSelf<State>>(&mut linker, |s| s).unwrap();
            let pre = FilterPre::new(linker.instantiate_pre(&component).unwrap()).unwrap();
            phases(&engine, &pre, env, variant.fuel, 200); // warm-up
            let medians = phases(&engine, &pre, env, variant.fuel, 2000);
            // A fresh message pays every phase but the second decide.
            let fresh: f64 = medians[..6].iter().sum();
            let _ = writeln!(t, "\n  {}", variant.name);
            for (phase, ns) in PHASES.iter().zip(&medians) {
                let _ = writeln!(t, "    {phase:<32} {:>9}", super::human(*ns));
            }
            let _ = writeln!(
                t,
                "    {:<32} {:>9}",
                "= fresh instance per message",
                super::human(fresh)
            );
        }
        t
    }
}

/// Engine settings with this cache directory (or none), compiling in this process.
fn cached_in(dir: Option<&std::path::Path>) -> EngineSettings {
    EngineSettings {
        cache_dir: dir.map(std::path::Path::to_path_buf),
        ..Default::default()
    }
}
