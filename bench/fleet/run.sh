#!/usr/bin/env bash
# Fleet benchmark: a DLQ of N 1 KiB messages on a local SQS endpoint with DELAY_MS (default 20) added to every API
# call by a delaying proxy (bench/fleet/fleet.py proxy: a real region's round trip), moved to a staging queue by:
#   - a fleet of K redrive workers (--fleet on the machine's Redis, the 3-module chain), for K in WORKERS (1 2 4),
#     no rate limit: how throughput grows with workers;
#   - K copies of the batched boto3 loop (bench/sqs/sqs.py batched: receive 10, SendMessageBatch,
#     DeleteMessageBatch), for K in LOOPS (1 2 4): what a team runs instead;
#   - the largest fleet again at --rate RATE/s (default 100): how close the fleet's one rate limit holds.
# Every row: fresh queues filled directly (not through the proxy), the movers started together, then staging is
# checked (each of the N bodies once, unchanged: sqs.py verify) and the rate read off the messages' SentTimestamp
# (SQS's own clock: first to last, and between the 10th and 90th percentile). Prints a table with msg/s, CPU per
# message of the movers, moto's CPU, and the ratios to one batched loop and to the same number of loops.
#
#   bench/fleet/run.sh                     # N=2000
#   N=500 WORKERS="1 4" bench/fleet/run.sh # quicker
#
# Environment: N (2000), SIZE (1024), DELAY_MS (20), WORKERS ("1 2 4"), LOOPS ("1 2 4"), RATE (100; empty: no rate
# row), MOTO_PORT (9326), PROXY_PORT (9327), FLEET_REDIS (redis://127.0.0.1:6379/0), BENCH_DIR
# (/var/tmp/redrive-bench-fleet), REDRIVE_BIN ($CARGO_TARGET_DIR or target, /release/redrive).
set -euo pipefail

N="${N:-2000}"
SIZE="${SIZE:-1024}"
DELAY_MS="${DELAY_MS:-20}"
WORKERS="${WORKERS:-1 2 4}"
LOOPS="${LOOPS-1 2 4}"
RATE="${RATE-100}"
MOTO_PORT="${MOTO_PORT:-9326}"
PROXY_PORT="${PROXY_PORT:-9327}"
FLEET_REDIS="${FLEET_REDIS:-redis://127.0.0.1:6379/0}"
case "$N" in '' | *[!0-9]* | 0) echo "run.sh: N must be a positive integer" >&2; exit 2 ;; esac
export AWS_ACCESS_KEY_ID="${AWS_ACCESS_KEY_ID:-testing}" AWS_SECRET_ACCESS_KEY="${AWS_SECRET_ACCESS_KEY:-testing}"
export AWS_REGION="${AWS_REGION:-us-east-1}"
unset AWS_PROFILE AWS_ENDPOINT_URL AWS_ENDPOINT_URL_SQS
moto_wanted=5.2.5
boto3_version=1.44.5

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
redrive="${REDRIVE_BIN:-${CARGO_TARGET_DIR:-$repo/target}/release/redrive}"
work="${BENCH_DIR:-/var/tmp/redrive-bench-fleet}"
started=$SECONDS
# shellcheck source=../common.sh
. "$repo/bench/common.sh"

# --- prerequisites --------------------------------------------------------------------------------------------
moto_tools="${REDRIVE_TOOLS_DIR:-/var/tmp/redrive-tools}/moto-$moto_wanted"
redis_port="${FLEET_REDIS#redis://}" redis_port="${redis_port%%/*}" redis_port="${redis_port##*:}"
if [ ! -x "$moto_tools/bin/python" ] || ! port_open "$redis_port"; then
    say "installing / starting the services (scripts/services.sh)"
    "$repo/scripts/services.sh"
fi
[ -x "$moto_tools/bin/python" ] || die "scripts/services.sh did not install moto into $moto_tools"
port_open "$redis_port" || die "no Redis for the fleet at $FLEET_REDIS"
for p in "$MOTO_PORT" "$PROXY_PORT"; do
    ! port_open "$p" || die "127.0.0.1:$p is taken (left by an interrupted run?): set MOTO_PORT / PROXY_PORT"
done
mkdir -p "$work"
py="$(python_venv "$work/venv" "boto3==$boto3_version")"
build_what_is_missing

run_dir="$work/run-$(date -u +%Y%m%dT%H%M%SZ)-$$"
mkdir -p "$run_dir"
cp "$redrive" "$run_dir/redrive"
redrive="$run_dir/redrive"
pids=()
queues=()
direct="http://127.0.0.1:$MOTO_PORT"
proxied="http://127.0.0.1:$PROXY_PORT"
sqs() { SQS_ENDPOINT="$direct" "$py" "$repo/bench/sqs/sqs.py" "$@"; }
cleanup() {
    if [ "${#queues[@]}" -gt 0 ]; then sqs delete "${queues[@]}" >/dev/null 2>&1 || true; fi
    for p in ${pids[@]+"${pids[@]}"}; do kill "$p" 2>/dev/null || true; done
    rm -f "$run_dir/redrive"
}
trap cleanup EXIT

"$moto_tools/bin/python" "$repo/scripts/moto-server.py" -H 127.0.0.1 -p "$MOTO_PORT" >"$run_dir/moto.log" 2>&1 &
moto_pid=$!
pids+=("$moto_pid")
"$py" "$here/fleet.py" proxy "$PROXY_PORT" "$MOTO_PORT" "$DELAY_MS" >"$run_dir/proxy.log" 2>&1 &
pids+=("$!")
for _ in $(seq 1 60); do
    port_open "$MOTO_PORT" && port_open "$PROXY_PORT" && break
    kill -0 "$moto_pid" 2>/dev/null || die "scripts/moto-server.py exited: $(tail -5 "$run_dir/moto.log")"
    sleep 0.5
done
port_open "$PROXY_PORT" || die "the delaying proxy did not open port $PROXY_PORT: $(tail -5 "$run_dir/proxy.log")"
export MOTO_PID="$moto_pid"

machine="$(machine_line)"
say "machine: $machine; $("$redrive" --version); moto $moto_wanted (private, port $MOTO_PORT) behind a proxy adding $DELAY_MS ms per call (port $PROXY_PORT); N=$N, SIZE=$SIZE"
"$redrive" filter test "${modules[@]}" --input "$repo/examples/filters/route-by-error/input.jsonl" >/dev/null ||
    die "redrive filter test failed on the chain"

field() { "$py" -c 'import json, sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"; }
rows=()

# row LABEL SLUG K CMD...: fresh queues, K copies of CMD (placeholders @DLQ@, @STAGING@, @I@), checked and timed.
row() {
    local label="$1" slug="$2" k="$3" dlq staging result verify times codes
    shift 3
    dlq="rdf-$$-$slug-dlq" staging="rdf-$$-$slug-staging"
    queues=("$dlq" "$staging")
    local cmd=()
    for a in "$@"; do a="${a//@DLQ@/$dlq}"; cmd+=("${a//@STAGING@/$staging}"); done
    say "$label: filling $dlq with $N messages"
    sqs reset "$dlq" "$staging"
    sqs fill "$dlq" "$N" "$SIZE"
    say "$label: moving ($k at once)"
    result="$(SQS_ENDPOINT="$proxied" "$py" "$here/fleet.py" launch "$k" "$run_dir/$slug" -- "${cmd[@]}")"
    echo "$result" >&2
    codes="$(field "$result" codes)"
    [[ "$codes" =~ ^\[0(,\ 0)*\]$ ]] || {
        tail -5 "$run_dir/$slug"/*.err >&2
        die "$label: a mover failed (exit codes $codes; logs in $run_dir/$slug)"
    }
    [ "$(sqs counts "$dlq" | cut -d' ' -f2-)" = "0 0 0" ] || die "$label: messages left in the DLQ: $(sqs counts "$dlq")"
    times="$(SQS_ENDPOINT="$direct" "$py" "$here/fleet.py" times "$staging" "$N")"
    verify="$(sqs verify "$staging" "$N" "$SIZE")" || { echo "$verify" >&2; die "$label: staging is wrong"; }
    echo "verified: $verify; $times" >&2
    rows+=("$(printf '{"label": "%s", "k": %s, "run": %s, "times": %s}' "$label" "$k" "$result" "$times")")
    sqs delete "$dlq" "$staging"
    queues=()
}

# fleet LABEL SLUG K ARGS...: K redrive workers of one fleet, each with its own audit dir.
fleet() {
    local label="$1" slug="$2" k="$3"
    shift 3
    row "$label" "$slug" "$k" "$redrive" run --from "sqs://@DLQ@" --to "sqs://@STAGING@" --endpoint-url "$proxied" \
        --fleet "$FLEET_REDIS?name=bench-$$-$slug" "$@" --audit-dir "$run_dir/$slug/audit-@I@" --no-progress
}

for k in $WORKERS; do
    fleet "redrive fleet, $k worker(s), 3-module chain" "fleet-$k" "$k" "${chain_args[@]}"
done
for k in $LOOPS; do
    row "boto3 batched loop × $k" "loop-$k" "$k" "$py" "$repo/bench/sqs/sqs.py" batched @DLQ@ @STAGING@
done
largest=1
for k in $WORKERS; do [ "$k" -gt "$largest" ] && largest=$k; done
if [ -n "$RATE" ]; then
    fleet "redrive fleet, $largest workers, --rate $RATE/s" "rate-$largest" "$largest" "${chain_args[@]}" --rate "$RATE/s"
fi

# --- table ----------------------------------------------------------------------------------------------------
say "results"
printf '%s\n' "${rows[@]}" >"$run_dir/rows.jsonl"
"$py" "$here/fleet.py" table "$run_dir/rows.jsonl" "$N" "$machine" "$DELAY_MS" "$RATE" | tee "$run_dir/table.md"
echo "(table saved in $run_dir/table.md; total $((SECONDS - started)) s)" >&2
