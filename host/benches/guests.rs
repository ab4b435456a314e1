//! The guest-language benchmark (issue 7): route-by-error written in each language, on one 1 KiB JSON dead
//! letter. Per module: size, first load (compile with cranelift into an empty cache), cached load
//! (deserialize), start (one worker's instance + `init`; for a command module, its session: a thread, the
//! instance, the program's start-up and `init`), and the time per message through `ChainRunner::decide` with
//! the instance reused (a command module: its session) and with a fresh instance per message
//! (`?redrive.instance=fresh`).
//!
//! Run it with `bench/guests/run.sh` (installs the toolchains and builds every module from source first), or
//! `cargo bench -p redrive --bench guests` once `build/filters/route-by-error*.wasm` exist. Every module must
//! replay the message with the reason `transient error: matched "timeout"` before it is timed.
//!
//! Timing: plain wall-clock medians (not criterion: a first load takes up to tens of seconds). Loads: 1 compile,
//! median of 5 cached loads; start: median of 5; per message: median of 5 rounds of at least 1 s (200 messages
//! of warm-up first). Environment: `REDRIVE_BENCH_FILTERS` (default `build/filters`), `REDRIVE_BENCH_LANGS`
//! (default `rust c zig go python js ts assemblyscript`), `REDRIVE_BENCH_ROUND_MS` (default 1000).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use redrive::core::envelope::{Envelope, Outcome};
use redrive::filter::{FilterChain, ModuleSettings, ModuleSpec};

#[path = "common/order.rs"]
mod order;
use order::envelope;

const LANGS: &str = "rust c zig go python js ts assemblyscript";
const REASON: &str = "transient error: matched \"timeout\"";

fn main() {
    let dir = std::env::var_os("REDRIVE_BENCH_FILTERS").map_or_else(
        || {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .parent()
                .expect("host/ has a parent")
                .join("build/filters")
        },
        PathBuf::from,
    );
    let langs = std::env::var("REDRIVE_BENCH_LANGS").unwrap_or_else(|_| LANGS.to_string());
    let round = Duration::from_millis(
        std::env::var("REDRIVE_BENCH_ROUND_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1000),
    );
    let env = envelope();
    let mut rows = Vec::new();
    for lang in langs.split_whitespace() {
        let file = if lang == "rust" {
            "route-by-error.wasm".to_string()
        } else {
            format!("route-by-error-{lang}.wasm")
        };
        let path = dir.join(&file);
        if !path.is_file() {
            eprintln!(
                "guests bench: {} is missing: build it with scripts/guest-toolchains.sh {lang} && \
                 scripts/build-guest-filters.sh {lang} (bench/guests/run.sh does both)",
                path.display()
            );
            rows.push(format!("| {lang} | not built | | | | | | |"));
            continue;
        }
        eprintln!("guests bench: {lang} ({})", path.display());
        rows.push(measure(lang, &path, &env, round));
    }
    let header = "| language | profile | size | first load (compile) | cached load | start (instance + init) | \
                  per message, instance reused | per message, fresh instance |\n\
                  | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |";
    println!("\n{header}");
    for row in rows {
        println!("{row}");
    }
}

fn measure(lang: &str, path: &Path, env: &Envelope, round: Duration) -> String {
    let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    let spec = |query: &str| {
        ModuleSpec::parse(&format!("{}{query}", path.display()), &ModuleSettings::default())
            .unwrap_or_else(|e| panic!("{lang}: {e}"))
    };
    let cache = tempfile::tempdir().expect("a temporary cache directory");
    let load = |specs: &[ModuleSpec]| {
        let started = Instant::now();
        let chain = FilterChain::load(specs, 1, &cached_in(Some(cache.path())))
            .unwrap_or_else(|e| panic!("{lang}: cannot load: {e}"));
        (started.elapsed(), chain)
    };
    let reuse_spec = [spec("")];
    let (compile, chain) = load(&reuse_spec);
    let profile = chain.modules()[0].profile();
    let cached = median((0..5).map(|_| load(&reuse_spec).0).collect());
    let start = median(
        (0..5)
            .map(|_| {
                let started = Instant::now();
                let runner = chain.runner().unwrap_or_else(|e| panic!("{lang}: cannot start: {e}"));
                let took = started.elapsed();
                drop(runner);
                took
            })
            .collect(),
    );
    let reused = per_message(lang, &chain, env, round);
    let (_, fresh_chain) = load(&[spec("?redrive.instance=fresh")]);
    let fresh = per_message(lang, &fresh_chain, env, round);
    format!(
        "| {lang} | {profile} | {} | {} | {} | {} | {} | {} |",
        size_text(size),
        duration_text(compile),
        duration_text(cached),
        duration_text(start),
        duration_text(reused),
        duration_text(fresh),
    )
}

/// Median time per message over 5 rounds of at least `round` each, after a warm-up; checks the decision.
fn per_message(lang: &str, chain: &FilterChain, env: &Envelope, round: Duration) -> Duration {
    let mut runner = chain.runner().unwrap_or_else(|e| panic!("{lang}: cannot start: {e}"));
    let decided = runner.decide(env).unwrap_or_else(|e| panic!("{lang}: {e}"));
    assert!(
        decided.outcome == Outcome::Replay && decided.reason == REASON,
        "{lang}: expected replay ({REASON}), got {:?} ({})",
        decided.outcome,
        decided.reason
    );
    let warm_up = Instant::now();
    while warm_up.elapsed() < round / 5 {
        let _ = runner.decide(env);
    }
    let mut rounds = Vec::new();
    for _ in 0..5 {
        let started = Instant::now();
        let mut n = 0u32;
        while started.elapsed() < round {
            let _ = std::hint::black_box(runner.decide(env));
            n += 1;
        }
        rounds.push(started.elapsed() / n);
    }
    median(rounds)
}

fn median(mut values: Vec<Duration>) -> Duration {
    values.sort_unstable();
    values[values.len() / 2]
}

fn duration_text(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us < 1000.0 {
        format!("{us:.1} µs")
    } else if us < 1e6 {
        format!("{:.1} ms", us / 1000.0)
    } else {
        format!("{:.2} s", us / 1e6)
    }
}

fn size_text(bytes: u64) -> String {
    if bytes < 1 << 20 {
        format!("{:.1} KiB", bytes as f64 / 1024.0)
    } else {
        format!("{:.1} MiB", bytes as f64 / (1 << 20) as f64)
    }
}

/// Engine settings with this cache directory (or none), compiling in this process.
fn cached_in(dir: Option<&std::path::Path>) -> redrive::filter::EngineSettings {
    redrive::filter::EngineSettings {
        cache_dir: dir.map(std::path::Path::to_path_buf),
        ..Default::default()
    }
}
