#!/usr/bin/env bash
# RabbitMQ benchmark: N persistent 1 KiB messages in a DLQ, moved to a staging queue, three ways in one run:
#   1. redrive run with the 3-module chain (the example filters)
#   2. redrive run with no filter: without --filter if `run` accepts that, else with --no-filter (the refusal of
#      the plain form is printed); if both are refused, with SUBSTITUTE=1 (default) the closest thing is timed
#      instead: one module, route-by-error?default=replay
#   3. a dynamic shovel (rabbitmqctl set_parameter shovel ..., ack-mode on-confirm, src-delete-after queue-length)
# Prints msg/s for each and the ratio to the shovel.
#
#   bench/rabbitmq/run.sh                 # N=100000
#   N=20000 bench/rabbitmq/run.sh         # a quick run
#
# For each mover: delete and declare durable classic queues redrive-bench.dlq and redrive-bench.staging, fill the
# DLQ with N persistent JSON bodies of SIZE bytes (bench/rabbitmq/mq.py fill, pika, then wait for depth N), let the
# broker settle SETTLE seconds, then time from starting the mover until the DLQ has nothing ready and no consumer
# (so nothing unacknowledged either) and staging holds N. Polling is a passive queue.declare on one open AMQP
# connection every POLL_MS ms (~1-50 ms per poll; rabbitmqctl would take ~1 s per call). After each mover the counts
# are checked again with rabbitmqctl (messages incl. unacknowledged): any loss or duplicate fails the run.
#
# Before each move the script waits (up to IDLE_WAIT s, default 900) for the machine's CPUs to be under IDLE_PCT %
# (default 15) busy for 3 s; the table's "other CPU s" is CPU used by anything but the broker, the mover and the
# poller during the move (should be ~0): when it is above OTHER_MAX (default 0.05) of the machine's busy CPU, the
# mover is measured again, up to TRIES (default 3) times, and the last try is reported.
#
# Environment: N (default 100000), SIZE (1024), POLL_MS (100), SETTLE (5 s), IDLE_PCT, IDLE_WAIT, AMQP_URL (default
# amqp://guest:guest@127.0.0.1:5672/%2f), BENCH_DIR (default /var/tmp/redrive-bench-rabbitmq: the Python venv with
# pika, and each run's audit output), REDRIVE_BIN (default $CARGO_TARGET_DIR or target, /release/redrive),
# SUBSTITUTE=0|1, TRIES, OTHER_MAX, REDRIVE_ARGS (more flags for the redrive rows). redrive's audit output is deleted after each move (~1 KB per message and
# module); its summary and stderr stay in the run directory.
# The shovel's URIs are amqp://guest:guest@127.0.0.1 (the broker rabbitmqctl talks to), whatever AMQP_URL says.
# Needs root for rabbitmqctl. Runs scripts/services.sh if the broker or the shovel plugin is not up.
set -euo pipefail

N="${N:-100000}"
SIZE="${SIZE:-1024}"
SETTLE="${SETTLE:-5}"
IDLE_PCT="${IDLE_PCT:-15}"
IDLE_WAIT="${IDLE_WAIT:-900}"
TRIES="${TRIES:-3}"
OTHER_MAX="${OTHER_MAX:-0.05}"
export POLL_MS="${POLL_MS:-100}"
export AMQP_URL="${AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/%2f}"
substitute="${SUBSTITUTE:-1}"
case "$N" in '' | *[!0-9]* | 0) echo "run.sh: N must be a positive integer" >&2; exit 2 ;; esac

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
redrive="${REDRIVE_BIN:-${CARGO_TARGET_DIR:-$repo/target}/release/redrive}"
work="${BENCH_DIR:-/var/tmp/redrive-bench-rabbitmq}"
dlq=redrive-bench.dlq
staging=redrive-bench.staging
shovel=redrive-bench
started=$SECONDS
# shellcheck source=../common.sh
. "$repo/bench/common.sh"

# --- prerequisites --------------------------------------------------------------------------------------------
[ "$(id -u)" = 0 ] || die "run as root (rabbitmqctl needs it)"
if ! (exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null ||
    ! rabbitmq-plugins list -e -m 2>/dev/null | grep -qx rabbitmq_shovel; then
    say "starting RabbitMQ / enabling the shovel plugin (scripts/services.sh)"
    "$repo/scripts/services.sh"
fi
mkdir -p "$work"
py="$(python_venv "$work/venv" pika)"
mq() { "$py" "$here/mq.py" "$@"; }
build_what_is_missing

run_dir="$work/run-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$run_dir"
# A private copy of the binary: every row runs the same build even if target/ is rebuilt meanwhile.
cp "$redrive" "$run_dir/redrive"
redrive="$run_dir/redrive"
cleanup() {
    rabbitmqctl clear_parameter shovel "$shovel" >/dev/null 2>&1 || true
    mq delete "$dlq" "$staging" >/dev/null 2>&1 || true
    rm -f "$run_dir/redrive"
}
trap cleanup EXIT

broker_pid="$(rabbitmqctl eval 'os:getpid().' 2>/dev/null | tr -dc 0-9)"
export BROKER_PID="$broker_pid"
rabbit_version="$(rabbitmqctl version 2>/dev/null | tail -1)"
say "machine: $(machine_line); RabbitMQ $rabbit_version (broker pid $broker_pid); $("$redrive" --version), binary built $(stat -c %y "${REDRIVE_BIN:-${CARGO_TARGET_DIR:-$repo/target}/release/redrive}" | cut -d. -f1)"

# Warm the compiled-module cache, so no row pays for compiling the modules.
"$redrive" filter test "${modules[@]}" --input "$repo/examples/filters/route-by-error/input.jsonl" >/dev/null ||
    die "redrive filter test failed on the chain"

# How does `redrive run` move without a filter? Plain (no --filter), else `--no-filter`, else not at all. Asked on
# a one-message file DLQ, so the broker is not touched.
probe="$run_dir/probe"
mkdir -p "$probe"
printf '{"id": "probe-1", "body": "{}", "attributes": {}}\n' >"$probe/dlq.jsonl"
probe_run() {
    rm -rf "$probe/audit" "$probe/staging.jsonl" "$probe/archive.jsonl"
    "$redrive" run --from "file:$probe/dlq.jsonl" --to "file:$probe/staging.jsonl" --audit-dir "$probe/audit" \
        --archive "$probe/archive.jsonl" --no-progress "$@" >"$probe/out.txt" 2>"$probe/err.txt"
}
no_filter_ok=1 no_filter_args=() no_filter_error="" no_filter_label="redrive, no filter"
if ! probe_run; then
    no_filter_error="$(tr '\n' ' ' <"$probe/err.txt" | sed 's/ *$//')"
    say "redrive run without --filter: $no_filter_error"
    if probe_run --no-filter; then
        no_filter_args=(--no-filter) no_filter_label="redrive, no filter (--no-filter)"
        say "redrive run --no-filter works: using it for the no-filter row"
    else
        no_filter_ok=0
        say "redrive run --no-filter does not work either: $(tr '\n' ' ' <"$probe/err.txt")"
    fi
fi

# --- one mover ------------------------------------------------------------------------------------------------
labels=() results=()

fill() {
    mq reset "$dlq" "$staging"
    mq fill "$dlq" "$N" "$SIZE"
    sleep "$SETTLE"
    # Other work on the machine (builds) would take CPU from the mover or the broker: wait for a quiet machine.
    mq idle "$IDLE_PCT" "$IDLE_WAIT" || echo "run.sh: WARNING: measuring on a busy machine (see 'other CPU s')" >&2
}

# rabbitmqctl's count (ready + unacknowledged) of a queue
count() { rabbitmqctl list_queues -q --no-table-headers name messages 2>/dev/null | awk -v q="$1" '$1 == q {print $2}'; }

verify() {
    local label="$1" d s
    d="$(count "$dlq")" s="$(count "$staging")"
    [ "$d" = 0 ] && [ "$s" = "$N" ] ||
        die "$label: after the move rabbitmqctl counts $dlq=$d, $staging=$s (want 0 and $N): messages lost or duplicated"
    echo "verified (rabbitmqctl list_queues): $dlq=$d, $staging=$s" >&2
}

field() { "$py" -c 'import json, sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"; }

# move LABEL CHECK CMD...: fill, time CMD, verify the counts, run CHECK (a command, e.g. `true`); retried up to
# TRIES times while other processes took more than OTHER_MAX of the machine's busy CPU during the move
move() {
    local label="$1" check="$2" result="" try other_share
    shift 2
    for try in $(seq 1 "$TRIES"); do
        say "$label: filling $dlq with $N persistent messages of $SIZE B (try $try of $TRIES)"
        fill
        say "$label: moving"
        result="$(mq move "$dlq" "$staging" "$N" -- "$@")" || {
            echo "$result" >&2
            die "$label: the move did not complete (see above)"
        }
        echo "$result" >&2
        verify "$label"
        $check
        other_share="$("$py" -c 'import json, sys; r = json.loads(sys.argv[1]); print(r["other_cpu"] / r["machine_cpu"])' "$result")"
        if "$py" -c 'import sys; sys.exit(float(sys.argv[1]) > float(sys.argv[2]))' "$other_share" "$OTHER_MAX"; then
            break
        fi
        echo "run.sh: WARNING: other processes used $(field "$result" other_cpu) CPU s during the move" \
            "($(awk -v s="$other_share" 'BEGIN {printf "%.0f", 100 * s}') % of the machine's busy CPU)" >&2
        [ "$try" -lt "$TRIES" ] && echo "run.sh: measuring $label again" >&2
    done
    labels+=("$label")
    results+=("$result")
}

# redrive_move LABEL SLUG ARGS...: `redrive run` from the DLQ to staging with ARGS (the filters)
redrive_move() {
    local label="$1" dir="$run_dir/$2"
    shift 2
    check_redrive() {
        sed 's/^/    /' "$dir/summary.txt" >&2
        grep -Eq "replayed +$N " "$dir/summary.txt" || die "$label: redrive did not report $N replayed"
        if [ -s "$dir/stderr.txt" ]; then
            echo "redrive printed on stderr:" >&2
            sed 's/^/    /' "$dir/stderr.txt" | head -20 >&2
        fi
        rm -rf "$dir/audit" "$dir/archive.jsonl" # a retry must not resume from this run's journal
    }
    mkdir -p "$dir"
    rm -rf "$dir/audit" "$dir/archive.jsonl"
    MOVE_STDOUT="$dir/summary.txt" MOVE_STDERR="$dir/stderr.txt" move "$label" check_redrive \
        "$redrive" run --from "$AMQP_URL?queue=$dlq" --to "$AMQP_URL?queue=$staging" "$@" \
        --audit-dir "$dir/audit" --archive "$dir/archive.jsonl" --no-progress ${redrive_extra[@]+"${redrive_extra[@]}"}
}
# REDRIVE_ARGS: more flags for every redrive row (e.g. "--max-in-flight 1000", the shovel's own unconfirmed window).
read -r -a redrive_extra <<<"${REDRIVE_ARGS:-}"

redrive_move "redrive, 3-module chain" chain "${chain_args[@]}"
if [ "$no_filter_ok" = 1 ]; then
    redrive_move "$no_filter_label" none ${no_filter_args[@]+"${no_filter_args[@]}"}
elif [ "$substitute" = 1 ]; then
    redrive_move "redrive, 1 module (route-by-error)" one -f "$filters/route-by-error.wasm?default=replay"
fi
shovel_def='{"src-protocol":"amqp091","src-uri":"amqp://guest:guest@127.0.0.1","src-queue":"'"$dlq"'",'
shovel_def+='"dest-protocol":"amqp091","dest-uri":"amqp://guest:guest@127.0.0.1","dest-queue":"'"$staging"'",'
shovel_def+='"ack-mode":"on-confirm","src-delete-after":"queue-length"}'
rabbitmqctl clear_parameter shovel "$shovel" >/dev/null 2>&1 || true
move "shovel (dynamic, on-confirm)" true rabbitmqctl set_parameter -q shovel "$shovel" "$shovel_def"
rabbitmqctl clear_parameter shovel "$shovel" >/dev/null 2>&1 || true # src-delete-after removes it already
mq delete "$dlq" "$staging"

# --- table ----------------------------------------------------------------------------------------------------
say "results"
printf '%s\n' "${results[@]}" >"$run_dir/results.jsonl"
printf '%s\n' "${labels[@]}" >"$run_dir/labels.txt"
"$py" - "$run_dir" "$N" "$no_filter_ok" "$no_filter_error" <<'EOF' | tee "$run_dir/table.md"
import json, sys
run_dir, n, no_filter_ok, plain_error = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1", sys.argv[4]
labels = open(f"{run_dir}/labels.txt").read().splitlines()
rows = [json.loads(l) for l in open(f"{run_dir}/results.jsonl")]
shovel = next(r for l, r in zip(labels, rows) if l.startswith("shovel"))
base = n / shovel["seconds"]
def after_first(r):
    """msg/s after the first message moved; None when it cannot be told (at a tiny N the whole move can land
    before the first poll, so the two times are equal)."""
    span = r["seconds"] - (r["first_move"] if r["first_move"] is not None else r["seconds"])
    return n / span if span > 0 else None
after_base = after_first(shovel)
print("| tool | messages | seconds | msg/s | ratio vs shovel | first message moved (s) | msg/s after it | ratio | "
      "mover CPU s | broker CPU s | poller CPU s | other CPU s | machine CPU busy |")
print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
if not no_filter_ok:
    print(f"| redrive, no filter | {n} | – | refused | – | | | | | | | | |")
for label, r in zip(labels, rows):
    rate = n / r["seconds"]
    after = after_first(r)
    first = "–" if r["first_move"] is None else f"{r['first_move']:.2f}"
    after_text = "–" if after is None else f"{after:,.0f}"
    ratio = "–" if after is None or after_base is None else f"{after / after_base:.2f}×"
    print(f"| {label} | {n} | {r['seconds']:.2f} | {rate:,.0f} | {rate / base:.2f}× | {first} | "
          f"{after_text} | {ratio} | {r['mover_cpu']:.1f} | {r['broker_cpu']:.1f} | "
          f"{r['poller_cpu']:.1f} | {max(r['other_cpu'], 0.0):.1f} | {100 * r['machine_busy']:.0f} % |")
print()
print("Busiest threads over the move, as a share of one core (the broker's Erlang schedulers; redrive's threads):")
print()
for label, r in zip(labels, rows):
    fmt = lambda d: ", ".join(f"{k} {v:.2f}" for k, v in d.items()) or "–"
    mover = f"; mover: {fmt(r['mover_threads'])}" if r["mover_threads"] else ""
    print(f"- {label}: broker: {fmt(r['broker_threads'])}{mover}")
print()
print("seconds: from starting the mover until the DLQ has nothing ready and no consumer and staging holds N "
      "(the shovel's includes rabbitmqctl set_parameter's own start-up). mover CPU: the mover process "
      "(redrive; for the shovel: the rabbitmqctl call). broker CPU: the RabbitMQ node over the move. "
      f"Polls: passive declares every {__import__('os').environ['POLL_MS']} ms, "
      + ", ".join(f"{r['poll_ms_avg']:.0f} ms" for r in rows) + " per poll on average.")
if plain_error:
    print(f"\n`redrive run` without --filter exits with: {plain_error}"
          + ("" if no_filter_ok else "; `--no-filter` is refused too: the no-filter row is missing"))
EOF
echo "(table saved in $run_dir/table.md; total $((SECONDS - started)) s)" >&2
