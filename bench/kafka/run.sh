#!/usr/bin/env bash
# Kafka benchmark: N persistent 1 KiB records (key, two Spring dead-letter headers) in a dead-letter topic of 3
# partitions, moved to a staging topic on the same broker, four ways in one run, each on fresh topics:
#   1. redrive run with the 3-module chain (route-by-error?default=replay, repair-json, drop-test-traffic)
#   2. redrive run --no-filter
#   (chain-eo, none-eo: the same with delivery=exactly-once: a transaction per batch and the replay log, which also
#   commits the DLQ's offsets; none-eo-sep: none-eo with dlq_offsets=separately, the offsets left to the source)
#   3. the consume -> produce -> commit loop a team writes with confluent-kafka in Python (bench/kafka/kafka.py loop:
#      batches of 500, idempotent producer, acks=all, flush, synchronous commit)
#   4. the floor: what `kcat -C | kcat -P` does, in confluent-kafka (bench/kafka/kafka.py pipe: read to the end,
#      produce without waiting for confirmations, flush once, commit nothing). Debian's kcat 1.7 (librdkafka
#      2.0) cannot talk to tansu 0.6 (its ApiVersionRequest fails with "Read underflow"); with KCAT=1 the real
#      kcat pipe is measured instead, for a broker it can talk to.
# Every move is checked afterwards: each of the N bodies exactly once at the destination, unchanged.
# Prints wall time, msg/s, CPU per message (the mover and everything it started, user + system), the broker's
# CPU during the move, the mover's peak RSS, and redrive's ratios to the Python loop and to the floor.
#
#   bench/kafka/run.sh              # N=100000
#   N=20000 bench/kafka/run.sh      # a quicker run
#
# The broker: a private tansu (in-memory storage) on 127.0.0.1:PORT (default 19192), from the venv
# scripts/services.sh installs (/var/tmp/redrive-tools/tansu-0.6.0). Environment: N, SIZE (1024), PORT, REDRIVE_ARGS, TO_QUERY, FROM_QUERY, MOVERS
# (default "chain chain-eo none python floor"; also none-eo, none-eo-sep; KCAT=1 measures a real kcat pipe as the floor), BENCH_DIR (/var/tmp/redrive-bench-kafka: the venv with confluent-kafka and the
# run's output), REDRIVE_BIN (default $CARGO_TARGET_DIR or target, /release/redrive).
set -euo pipefail

N="${N:-100000}"
SIZE="${SIZE:-1024}"
PORT="${PORT:-19192}"
MOVERS="${MOVERS:-chain chain-eo none python floor}"
case "$N" in '' | *[!0-9]* | 0) echo "run.sh: N must be a positive integer" >&2; exit 2 ;; esac
confluent_version=2.16.1

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
bench_dir="${BENCH_DIR:-/var/tmp/redrive-bench-kafka}"
redrive="${REDRIVE_BIN:-${CARGO_TARGET_DIR:-$repo/target}/release/redrive}"
tansu="${REDRIVE_TOOLS_DIR:-/var/tmp/redrive-tools}/tansu-0.6.0/tansu"
die() { echo "run.sh: $*" >&2; exit 1; }

[ -x "$redrive" ] || die "no redrive at $redrive: build it (cargo build --release -p redrive) or set REDRIVE_BIN"
[ -x "$tansu" ] || "$repo/scripts/services.sh"
[ -x "$tansu" ] || die "no tansu at $tansu"
kcat=""
if [ "${KCAT:-0}" = 1 ]; then
    kcat="$(command -v kcat || command -v kafkacat || true)"
    [ -n "$kcat" ] || die "KCAT=1 but kcat is missing: sudo apt-get install kafkacat"
fi
venv="$bench_dir/venv-$confluent_version"
if [ ! -e "$venv/.installed" ]; then
    rm -rf "$venv" && mkdir -p "$bench_dir"
    python3 -m venv "$venv" && "$venv/bin/pip" install --quiet --disable-pip-version-check \
        "confluent-kafka==$confluent_version" || die "could not install confluent-kafka==$confluent_version"
    touch "$venv/.installed"
fi
py="$venv/bin/python"
filters="$repo/build/filters"
chain=(route-by-error repair-json drop-test-traffic)
missing=()
for f in "${chain[@]}"; do [ -f "$filters/$f.wasm" ] || missing+=("$f"); done
[ ${#missing[@]} = 0 ] || "$repo/scripts/build-filters.sh" "${chain[@]}"
chain_args=(-f "$filters/route-by-error.wasm?default=replay" -f "$filters/repair-json.wasm" -f "$filters/drop-test-traffic.wasm")

run_dir="$bench_dir/run-$(date +%Y%m%d-%H%M%S)"
mkdir -p "$run_dir"
brokers="127.0.0.1:$PORT"
# A broker still on the port (an earlier run's tansu shutting down) would answer the readiness probe below and
# then go away: wait for the port to be free first.
for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null || break; sleep 0.1; done
(exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && die "127.0.0.1:$PORT is in use: stop what listens there or set PORT"
"$tansu" broker --listener-url "tcp://$brokers" --advertised-listener-url "tcp://$brokers" \
    --storage-engine memory://tansu/ >"$run_dir/tansu.log" 2>&1 &
tansu_pid=$!
trap 'kill $tansu_pid 2>/dev/null && wait $tansu_pid 2>/dev/null; true' EXIT
for _ in $(seq 1 100); do (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break; sleep 0.1; done

declare -A wall cpu rss broker_cpu
move() { # name, command...
    local name="$1"; shift
    local dlq="bench-$name-$$.DLT" staging="bench-$name-$$-staging"
    "$py" "$here/kafka.py" topics "$brokers" "$dlq" "$staging"
    "$py" "$here/kafka.py" fill "$brokers" "$dlq" "$N" "$SIZE"
    sleep 1
    local cmd=("${@//@DLQ@/$dlq}")
    cmd=("${cmd[@]//@STAGING@/$staging}")
    echo "run.sh: $name ..." >&2
    read -r code w c r b < <("$py" "$repo/bench/measure_move.py" "$tansu_pid" -- "${cmd[@]}" 2>"$run_dir/$name.err" | tail -1)
    [ "$code" = 0 ] || die "$name exited $code (see $run_dir/$name.err)"
    "$py" "$here/kafka.py" check "$brokers" "$staging" "$N" "$SIZE" >&2 || die "$name: the destination is wrong"
    wall[$name]=$w cpu[$name]=$c rss[$name]=$r broker_cpu[$name]=$b
}
want() { [[ " $MOVERS " == *" $1 "* ]]; }
# REDRIVE_ARGS: more options for both redrive rows (e.g. "--max-in-flight 500"); word-split on spaces.
read -r -a redrive_extra <<<"${REDRIVE_ARGS:-}"
redrive_common=(run --no-progress --audit-dir "$run_dir/audit-@DLQ@" ${redrive_extra[@]+"${redrive_extra[@]}"})
# TO_QUERY: more destination URL options for every redrive row (e.g. "&linger.ms=5", a librdkafka property).
to_query="${TO_QUERY:-}"
# FROM_QUERY: more source URL options for every redrive row (e.g. "&fetch.queue.backoff.ms=1000").
from_query="${FROM_QUERY:-}"
to_staging=(--to "kafka://$brokers?topic=@STAGING@$to_query")
to_staging_eo=(--to "kafka://$brokers?topic=@STAGING@&delivery=exactly-once&replay_log=bench-replays-$$$to_query")
to_staging_eo_sep=(--to "kafka://$brokers?topic=@STAGING@&delivery=exactly-once&replay_log=bench-replays-$$&dlq_offsets=separately$to_query")
want chain && move chain bash -c "$(printf '%q ' "$redrive" "${redrive_common[@]}" "${to_staging[@]}" --from "kafka://$brokers?topic=@DLQ@$from_query" "${chain_args[@]}") >/dev/null"
want chain-eo && move chain-eo bash -c "$(printf '%q ' "$redrive" "${redrive_common[@]}" "${to_staging_eo[@]}" --from "kafka://$brokers?topic=@DLQ@$from_query" "${chain_args[@]}") >/dev/null"
want none && move none bash -c "$(printf '%q ' "$redrive" "${redrive_common[@]}" "${to_staging[@]}" --from "kafka://$brokers?topic=@DLQ@$from_query" --no-filter) >/dev/null"
want none-eo-sep && move none-eo-sep bash -c "$(printf '%q ' "$redrive" "${redrive_common[@]}" "${to_staging_eo_sep[@]}" --from "kafka://$brokers?topic=@DLQ@$from_query" --no-filter) >/dev/null"
want none-eo && move none-eo bash -c "$(printf '%q ' "$redrive" "${redrive_common[@]}" "${to_staging_eo[@]}" --from "kafka://$brokers?topic=@DLQ@$from_query" --no-filter) >/dev/null"
want python && move python "$py" "$here/kafka.py" loop "$brokers" @DLQ@ @STAGING@ bench-loop
if [ -n "$kcat" ]; then
    want floor && move floor bash -c "$kcat -C -b $brokers -t @DLQ@ -o beginning -e -q -f '%s\n' | $kcat -P -b $brokers -t @STAGING@"
else
    want floor && move floor "$py" "$here/kafka.py" pipe "$brokers" @DLQ@ @STAGING@ bench-pipe
fi

echo
echo "Kafka: $N x $SIZE B records, 3 partitions, tansu 0.6.0 (memory) on 127.0.0.1; $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo
printf '| mover | s | msg/s | CPU µs/msg | broker CPU s | peak RSS MiB | vs Python loop | vs floor |\n|---|---:|---:|---:|---:|---:|---:|---:|\n'
for name in chain chain-eo none none-eo none-eo-sep python floor; do
    [ -n "${wall[$name]:-}" ] || continue
    label=$(case $name in chain) echo "redrive, 3-module chain";; chain-eo) echo "redrive, 3-module chain, exactly once";; none) echo "redrive --no-filter";; none-eo) echo "redrive --no-filter, exactly once";; none-eo-sep) echo "redrive --no-filter, exactly once, dlq_offsets=separately";; python) echo "Python confluent-kafka loop";; floor) [ -n "$kcat" ] && echo "kcat -C \| kcat -P" || echo "floor: unconfirmed pipe (Python)";; esac)
    awk -v l="$label" -v n="$N" -v w="${wall[$name]}" -v c="${cpu[$name]}" -v b="${broker_cpu[$name]}" -v r="${rss[$name]}" \
        -v py="${wall[python]:-0}" -v kc="${wall[floor]:-0}" 'BEGIN {
        vp = py > 0 ? sprintf("%.2f×", py / w) : "-"; vk = kc > 0 ? sprintf("%.2f×", kc / w) : "-";
        printf "| %s | %.2f | %.0f | %.1f | %.2f | %.0f | %s | %s |\n", l, w, n / w, c * 1e6 / n, b, r, vp, vk }'
done
echo
echo "output kept in $run_dir"
