#!/usr/bin/env bash
# Redis Streams benchmark: N 1 KiB entries in a dead-letter stream (payload, error, failed_at, attempts,
# original_stream: the fields a worker writes when it dead-letters), moved to a staging stream on the same server,
# three ways in one run, each on fresh streams:
#   1. redrive run with the 3-module chain (route-by-error?default=replay, repair-json, drop-test-traffic)
#   2. redrive run --no-filter
#   3. the loop a team writes with redis-py (bench/redis/redis_bench.py loop): XREADGROUP 500, XADD each entry
#      (pipelined; the replies confirm), then XACK + XDEL the batch: at-least-once, as redrive's ack=delete
# Every move is checked afterwards: the DLQ stream empty, each of the N bodies exactly once at the destination,
# unchanged. Prints wall time, msg/s, CPU per message (the mover and everything it started, user + system), the
# server's CPU during the move, the mover's peak RSS, and redrive's ratio to the Python loop.
#
#   bench/redis/run.sh              # N=100000
#   N=20000 bench/redis/run.sh      # a quicker run
#
# Environment: N, SIZE (1024), REDIS_URL (default redis://127.0.0.1:6379/15: a database of its own; the streams are
# named redrive-bench:*), MOVERS (default "chain none python"), REDRIVE_ARGS (more flags for the redrive rows),
# FROM_QUERY / TO_QUERY (more source / destination URL options for the redrive rows, e.g. "&count=500"),
# BENCH_DIR (/var/tmp/redrive-bench-redis: the venv with redis-py and each run's output), REDRIVE_BIN (default
# $CARGO_TARGET_DIR or target, /release/redrive). Runs scripts/services.sh if Redis is not up.
set -euo pipefail

N="${N:-100000}"
SIZE="${SIZE:-1024}"
MOVERS="${MOVERS:-chain none python}"
URL="${REDIS_URL:-redis://127.0.0.1:6379/15}"
case "$N" in '' | *[!0-9]* | 0) echo "run.sh: N must be a positive integer" >&2; exit 2 ;; esac
redis_py_version=5.2.1

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
bench_dir="${BENCH_DIR:-/var/tmp/redrive-bench-redis}"
redrive="${REDRIVE_BIN:-${CARGO_TARGET_DIR:-$repo/target}/release/redrive}"
started=$SECONDS
# shellcheck source=../common.sh
. "$repo/bench/common.sh"

[ -x "$redrive" ] || die "no redrive at $redrive: build it (cargo build --release -p redrive) or set REDRIVE_BIN"
port_open 6379 || "$repo/scripts/services.sh"
port_open 6379 || die "no Redis on 127.0.0.1:6379 (scripts/services.sh did not start it)"
py="$(python_venv "$bench_dir/venv" "redis==$redis_py_version")"
rb() { "$py" "$here/redis_bench.py" "$@"; }
build_what_is_missing

run_dir="$bench_dir/run-$(date +%Y%m%d-%H%M%S)"
mkdir -p "$run_dir"
server_pid="$(rb pid "$URL")"
# Warm the compiled-module cache, so no row pays for compiling the modules.
"$redrive" filter test "${modules[@]}" --input "$repo/examples/filters/route-by-error/input.jsonl" >/dev/null ||
    die "redrive filter test failed on the chain"

declare -A wall cpu rss server_cpu
move() { # name, command... (@DLQ@ and @STAGING@ replaced by the streams' names)
    local name="$1"
    shift
    local dlq="redrive-bench:$name:dlq" staging="redrive-bench:$name:staging"
    rb reset "$URL" "$dlq" "$staging"
    rb fill "$URL" "$dlq" "$N" "$SIZE"
    sleep 1
    local cmd=("${@//@DLQ@/$dlq}")
    cmd=("${cmd[@]//@STAGING@/$staging}")
    say "$name: moving $N entries"
    read -r code w c r s < <("$py" "$repo/bench/measure_move.py" "$server_pid" -- "${cmd[@]}" 2>"$run_dir/$name.err" | tail -1)
    [ "$code" = 0 ] || die "$name exited $code (see $run_dir/$name.err)"
    rb check "$URL" "$dlq" "$staging" "$N" "$SIZE" || die "$name: the destination is wrong"
    rb delete "$URL" "$dlq" "$staging"
    rm -rf "$run_dir/audit-$name"
    wall[$name]=$w cpu[$name]=$c rss[$name]=$r server_cpu[$name]=$s
}
want() { [[ " $MOVERS " == *" $1 "* ]]; }
read -r -a redrive_extra <<<"${REDRIVE_ARGS:-}"
redrive_row() { # name, filter arguments...
    local name="$1"
    shift
    move "$name" bash -c "$(printf '%q ' "$redrive" run --no-progress --audit-dir "$run_dir/audit-$name" \
        --from "$URL?stream=@DLQ@${FROM_QUERY:-}" --to "$URL?stream=@STAGING@${TO_QUERY:-}" "$@" ${redrive_extra[@]+"${redrive_extra[@]}"}) >/dev/null"
}
want chain && redrive_row chain "${chain_args[@]}"
want none && redrive_row none --no-filter
want python && move python "$py" "$here/redis_bench.py" loop "$URL" @DLQ@ @STAGING@ bench-loop

echo
echo "Redis Streams: $N x $SIZE B entries, Redis $(redis-server --version | sed -n 's/.*v=\([^ ]*\).*/\1/p') on 127.0.0.1; $(machine_line); $("$redrive" --version)"
echo
printf '| mover | s | msg/s | CPU µs/msg | Redis CPU s | peak RSS MiB | vs Python loop |\n|---|---:|---:|---:|---:|---:|---:|\n'
for name in chain none python; do
    [ -n "${wall[$name]:-}" ] || continue
    label=$(case $name in chain) echo "redrive, 3-module chain" ;; none) echo "redrive --no-filter" ;; python) echo "Python redis-py loop" ;; esac)
    awk -v l="$label" -v n="$N" -v w="${wall[$name]}" -v c="${cpu[$name]}" -v s="${server_cpu[$name]}" -v r="${rss[$name]}" \
        -v py="${wall[python]:-0}" 'BEGIN {
        vp = py > 0 ? sprintf("%.2f×", py / w) : "-";
        printf "| %s | %.2f | %.0f | %.1f | %.2f | %.0f | %s |\n", l, w, n / w, c * 1e6 / n, s, r, vp }'
done
echo
echo "output kept in $run_dir"
