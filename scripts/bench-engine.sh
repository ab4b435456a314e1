#!/usr/bin/env bash
# The filter engine benchmark (issue 3): time per message on a 1 KiB JSON body for a native Rust
# filter, one wasm module reusing its instance, one with a fresh instance per message, and a chain
# of 3 modules; plus start-up (compile vs cached). Ends with a compact table (also saved to
# target/criterion/engine-summary.txt). Figures and how to read them: BENCHMARKS.md.
#
#   scripts/bench-engine.sh [--split] [CRITERION-ARGS...]
#
#   --split          also run the fresh-instance experiment: where a fresh instance's time goes
#                    (WasiCtx, instantiate, init, decide, memory reset), under alternative
#                    pooling-allocator settings (about 5 s more)
#   CRITERION-ARGS   passed to the bench binary, e.g. a name filter (`wasm-`) or
#                    `--save-baseline before` / `--baseline before` to compare two runs
#
# Builds the example filters to wasm first (scripts/build-filters.sh), then runs
# `cargo bench -p redrive --bench engine`. About 1.5 minutes once built; the first build of the
# bench profile takes several minutes. Works from any directory; honours CARGO_TARGET_DIR.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

split=0
args=()
for arg in "$@"; do
    case "$arg" in
        --split) split=1 ;;
        -h | --help)
            sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'
            exit 0
            ;;
        *) args+=("$arg") ;;
    esac
done

bash scripts/build-filters.sh route-by-error repair-json drop-test-traffic

if [ "$split" = 1 ]; then
    export REDRIVE_BENCH_SPLIT=1
fi
echo "bench-engine: cargo bench -p redrive --bench engine -- ${args[*]}" >&2
cargo bench -p redrive --bench engine -- "${args[@]}"
