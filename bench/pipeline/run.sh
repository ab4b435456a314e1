#!/usr/bin/env bash
# The pipeline benchmark (issue 4): a big JSONL DLQ replayed file → file through the three example filters,
# no rate limit, next to the one-off Python script a team would write instead, in the same run.
#
#   bench/pipeline/run.sh [N]          # N messages, default 1000000
#
# Measures, one after the other (never two heavy things at once):
#   1. redrive run, N messages (default settings: workers = CPUs, at most 4; DLQ order kept)
#   2. redrive run, N/10 messages (RSS must not grow with the DLQ's size)
#   3. with VARIANTS=1 (default): redrive run --workers 1 and --allow-reorder, at N/10
#   4. with DIAGNOSE=1 (default), at N/10: redrive run --dry-run (no forwarding, journal or fsync), redrive run with
#      every output on tmpfs, and `redrive filter test` (the chain alone: one thread, no pipeline)
#   5. oneoff_replay.py, N messages
# then prints the side-by-side table, the chain cost, the ratios, the reconciliation and the targets.
#
# Environment: BENCH_DIR (default /var/tmp/redrive-bench-pipeline: the generated DLQs are cached there, and each
# run's outputs go to a fresh directory in it), REDRIVE_BIN (default $CARGO_TARGET_DIR or target, /release/redrive), VARIANTS=0|1,
# DIAGNOSE=0|1, ENGINE_CHAIN_US (the engine benchmark's "wasm chain of 3" per message, when neither BENCHMARKS.md
# nor target/criterion/engine-summary.txt has it), KEEP_OUTPUTS=1 (keep the staging, remainder and audit files;
# they are big: ~3 GB per million messages).
set -euo pipefail

N="${1:-1000000}"
case "$N" in
    '' | *[!0-9]*) echo "usage: $0 [N]" >&2; exit 2 ;;
esac
[ "$N" -ge 10 ] || { echo "run.sh: N must be at least 10" >&2; exit 2; }
SMALL=$((N / 10))

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
redrive="${REDRIVE_BIN:-${CARGO_TARGET_DIR:-$repo/target}/release/redrive}"
filters="$repo/build/filters"
chain=(route-by-error repair-json drop-test-traffic)
work="${BENCH_DIR:-/var/tmp/redrive-bench-pipeline}"
variants="${VARIANTS:-1}"
diagnose="${DIAGNOSE:-1}"
started=$SECONDS

say() { printf '\n== %s (t+%ss)\n' "$*" "$((SECONDS - started))"; }
die() { echo "run.sh: $*" >&2; exit 1; }

# --- prerequisites --------------------------------------------------------------------------------------------
if [ ! -x /usr/bin/time ]; then
    say "installing /usr/bin/time (apt package time)"
    apt-get install -y time >/dev/null || die "/usr/bin/time is missing: apt-get install -y time"
fi
if [ ! -x "$redrive" ]; then
    say "no $redrive: building it (cargo build --release -p redrive)"
    (cd "$repo" && cargo build --release -p redrive)
fi
missing=()
for f in "${chain[@]}"; do [ -f "$filters/$f.wasm" ] || missing+=("$f"); done
if [ "${#missing[@]}" -gt 0 ]; then
    say "building the filters: ${missing[*]}"
    "$repo/scripts/build-filters.sh" "${chain[@]}"
fi
modules=() filter_args=()
for f in "${chain[@]}"; do
    modules+=("$filters/$f.wasm")
    filter_args+=(--filter "$filters/$f.wasm")
done

mkdir -p "$work"
out="$(mktemp -d "$work/run.XXXXXX")"
results="$out/results"
mkdir -p "$results"
cleanup() {
    if [ -n "${case_root:-}" ]; then rm -rf "$case_root"; fi
    if [ "${KEEP_OUTPUTS:-0}" != 1 ]; then
        find "$out" -mindepth 1 -maxdepth 1 ! -name results -exec rm -rf {} +
    fi
}
trap cleanup EXIT

cpus="$(nproc)"
default_workers=$((cpus < 4 ? cpus : 4))
echo "pipeline benchmark: N=$N, $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "machine: $(lscpu | sed -n 's/^Model name:[[:space:]]*//p' | head -n 1), $cpus CPUs," \
    "$(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo), Linux $(uname -r)," \
    "load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "redrive: $("$redrive" --version) ($redrive, built $(date -u -r "$redrive" '+%Y-%m-%d %H:%M UTC');" \
    "repo at $(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$repo" diff --quiet HEAD -- host \
    2>/dev/null || echo ', host/ modified')), $(cd "$repo" && rustc --version 2>/dev/null || echo 'rustc ?')"
echo "results: $results"

# --- the DLQs (cached: the generator's sources are part of the key) --------------------------------------------
gen_key="$(cat "$here/make_big_dlq.py" "$here/qsmodel.py" "$repo/examples/quickstart/make_dlq.py" \
    "$repo/examples/quickstart/fixed_consumer.py" | sha256sum | cut -c1-12)"
dlq_for() { echo "$work/dlq-$1-$gen_key.jsonl"; }
for n in "$N" "$SMALL"; do
    dlq="$(dlq_for "$n")"
    if [ -f "$dlq" ] && [ -f "$dlq.meta.json" ]; then
        echo "DLQ of $n messages: cached, $dlq ($(du -h "$dlq" | cut -f1))"
    else
        say "generating a DLQ of $n messages"
        python3 "$here/make_big_dlq.py" "$n" "$dlq"
    fi
done
big="$(dlq_for "$N")"
small="$(dlq_for "$SMALL")"

# --- warm the compiled-module cache ----------------------------------------------------------------------------
cache="$work/module-cache"
export REDRIVE_CACHE_DIR="$cache"
say "warming the compiled-module cache ($cache)"
head -n 1 "$repo/examples/quickstart/dlq.jsonl" >"$out/one.jsonl"
"$redrive" filter test "${modules[@]}" --input "$out/one.jsonl" >/dev/null
cached_files() { find "$cache" -name '*.cwasm' 2>/dev/null | wc -l; }
echo "cache: $(cached_files) compiled modules"

# --- the measured runs -------------------------------------------------------------------------------------------
problems=0
run_redrive() { # NAME LABEL N DLQ DEFAULT(0|1) WORKERS [extra redrive args...]; outputs under $case_root
    local name="$1" label="$2" n="$3" dlq="$4" default="$5" workers="$6"
    shift 6
    local dir="${case_root:-$out}/$name" before status=0 extra=()
    mkdir -p "$dir"
    [ "$default" = 1 ] && extra+=(--default)
    case "$name" in main | small-w1) extra+=(--chain-cost) ;; esac
    say "$label"
    cat "$dlq" >/dev/null # the DLQ in the page cache, as for every case
    before="$(cached_files)"
    python3 "$here/measure.py" "$results/$name.json" --watch "$dir/staging.jsonl" -- \
        "$redrive" run --from "file:$dlq" --to "file:$dir/staging.jsonl" "${filter_args[@]}" \
        --audit-dir "$dir/audit" --remainder "$dir/remainder.jsonl" --no-progress --output json "$@" || status=$?
    [ "$(cached_files)" = "$before" ] || echo "note: this run compiled a module (cache miss)"
    if [ -s "$results/$name.stderr" ]; then
        echo "stderr of redrive (last lines):"
        tail -n 5 "$results/$name.stderr" | sed 's/^/  /'
    fi
    python3 "$here/analyze.py" case "$name" "$results" --tool redrive --n "$n" --label "$label" \
        --workers "$workers" --staging "$dir/staging.jsonl" --remainder "$dir/remainder.jsonl" \
        --archive "$dir/audit/discarded.jsonl" --audit-dir "$dir/audit" --meta "$dlq.meta.json" "${extra[@]}" ||
        status=1
    [ "$status" = 0 ] || problems=$((problems + 1))
    if [ "${KEEP_OUTPUTS:-0}" != 1 ]; then rm -rf "$dir"; fi # free the disk before the next case
}

run_redrive main "redrive run, $default_workers workers (default)" "$N" "$big" 1 "$default_workers"
run_redrive small "redrive run, $default_workers workers (default), N/10" "$SMALL" "$small" 1 "$default_workers"
if [ "$variants" = 1 ]; then
    run_redrive small-w1 "redrive run --workers 1, N/10" "$SMALL" "$small" 0 1 --workers 1
    run_redrive small-reorder "redrive run --allow-reorder, N/10" "$SMALL" "$small" 0 "$default_workers" \
        --allow-reorder
fi
if [ "$diagnose" = 1 ]; then
    # Where the time goes: without forwarding (no sink, journal, archive, fsync), and with every output on tmpfs.
    run_redrive small-dry "redrive run --dry-run, N/10" "$SMALL" "$small" 0 "$default_workers" --dry-run
    if [ -d /dev/shm ] && [ -w /dev/shm ]; then
        case_root="$(mktemp -d /dev/shm/redrive-bench.XXXXXX)"
        run_redrive small-tmpfs "redrive run, outputs on tmpfs, N/10" "$SMALL" "$small" 0 "$default_workers"
        rm -rf "$case_root"
        unset case_root
    fi
    # The chain alone on the same messages, one thread, no pipeline: redrive filter test.
    say "redrive filter test (the chain alone, 1 thread, no pipeline), N/10"
    cat "$small" >/dev/null
    status=0
    python3 "$here/measure.py" "$results/chain.json" -- \
        "$redrive" filter test "${modules[@]}" --input "$small" --output json || status=$?
    tail -n 1 "$results/chain.stdout" >"$results/chain.summary" && mv "$results/chain.summary" "$results/chain.stdout"
    python3 "$here/analyze.py" case chain "$results" --tool chain --n "$SMALL" --workers 1 \
        --label "redrive filter test (chain only), N/10" --meta "$small.meta.json" || status=1
    [ "$status" = 0 ] || problems=$((problems + 1))
fi

say "oneoff_replay.py (the script a team would write instead), $N messages"
dir="$out/oneoff"
mkdir -p "$dir"
cat "$big" >/dev/null
status=0
python3 "$here/measure.py" "$results/oneoff.json" --watch "$dir/staging.jsonl" -- \
    python3 "$here/oneoff_replay.py" "$big" "$dir/staging.jsonl" "$dir/remainder.jsonl" || status=$?
python3 "$here/analyze.py" case oneoff "$results" --tool oneoff --n "$N" --label "python3 oneoff_replay.py" \
    --workers 1 --staging "$dir/staging.jsonl" --remainder "$dir/remainder.jsonl" --meta "$big.meta.json" ||
    status=1
[ "$status" = 0 ] || problems=$((problems + 1))
if [ "${KEEP_OUTPUTS:-0}" != 1 ]; then rm -rf "$dir"; fi

# --- the table ---------------------------------------------------------------------------------------------------
say "results"
python3 "$here/analyze.py" table "$results" --repo "$repo" || problems=$((problems + 1))
echo
echo "total: $((SECONDS - started)) s; load average now $(cut -d' ' -f1-3 /proc/loadavg); results kept in $results;" \
    "the DLQs stay cached in $work"
[ "$problems" = 0 ] || die "$problems case(s) had problems (see above)"
