#!/usr/bin/env bash
# SQS benchmark: N 1 KiB JSON messages (String attribute error="timeout talking to db") in a DLQ on a local SQS
# endpoint (moto_server), moved to a staging queue, four ways in one run:
#   1. redrive run with the 3-module chain (the example filters; route-by-error?default=replay)
#   2. redrive run --no-filter
#   3. a boto3 "one-by-one" loop: receive 10 (long poll 1 s), SendMessage each, then DeleteMessage each
#   4. a boto3 batched loop: receive 10, SendMessageBatch, DeleteMessageBatch (per-entry Failed lists checked)
# then, for each RECEIVERS:CONCURRENCY pair in SWEEP, redrive with the chain again with
# sqs://dlq?receivers=R and sqs://staging?concurrency=C (the defaults are receivers=4, concurrency=8).
# Prints msg/s for each, and redrive's ratio to the one-by-one loop and to the batched loop.
#
#   bench/sqs/run.sh                  # N=1000
#   N=500 SWEEP= bench/sqs/run.sh     # a quick run, no sweep rows
#   DELAY_MS=20 bench/sqs/run.sh      # each of the movers' API calls 20 ms slower, as in a real region
#
# For each mover: create two fresh queues (rdb-<pid>-<mover>-dlq / -staging), fill the DLQ with SendMessageBatch
# (bench/sqs/sqs.py fill, which waits until the DLQ holds N), wait for a quiet machine, then time from starting
# the mover until the DLQ has no message (ApproximateNumberOfMessages + NotVisible + Delayed == 0) and staging holds
# N. Polling is GetQueueAttributes on the DLQ, then once on staging when the DLQ is empty. moto walks every queued
# message for each GetQueueAttributes (and each ReceiveMessage, and each message sent), so a poll of a full DLQ is
# expensive for it: polls are spaced so that they take ~POLL_SHARE of moto's CPU (rare while the DLQ is full, every
# POLL_MS near the end; see sqs.py cmd_move). After the mover exits, the counts are read again and every message in
# staging is received (not deleted) and checked: each of the N bodies exactly once, unchanged, with its error
# attribute. Any loss, duplicate or change fails the run. The queues are deleted after each mover.
#
# moto is a single Python process: it bounds these figures. The table shows the CPU seconds moto_server used
# during each move (from /proc/<pid>/stat), and an estimate of what the polling cost it (two polls of the full DLQ
# before the move give moto's CPU per poll and queued message).
#
# A mover that fails or leaves messages in the DLQ (checked until EXIT_GRACE s, default 10, after it exits) is
# reported (FAILED, its output kept in the run directory), staging is checked for duplicates, and the mover is
# measured again (TRIES in all); the failures are listed under the table.
#
# The endpoint: by default (MOTO=private) a private moto_server 5.2.5 on 127.0.0.1:MOTO_PORT (default 9329;
# 9325 is the credential-checking endpoint scripts/services.sh starts),
# started and stopped by this script from the venv scripts/services.sh installs (/var/tmp/redrive-tools/moto-5.2.5),
# through scripts/moto-server.py, the launcher the tests use too. It fixes a race (unpatched, overlapping
# DeleteMessageBatch calls report every entry Successful but leave some messages in the queue: redrive left 1, 10 and
# 20 of 1000 in 3 of 3 runs) and the per-message cost of ReceiveMessage that grew with the queue's depth (every mover
# moved ~10 msg/s at N=1000); see BENCHMARKS.md, "## SQS". MOTO=shared uses whatever endpoint is at SQS_ENDPOINT
# (default http://127.0.0.1:9324, started by scripts/services.sh if down).
# A private server also keeps other users' requests out of the CPU figures.
#
# Latency: moto on 127.0.0.1 answers with next to no network time, while a client in a real AWS region waits ~20 ms
# per call. DELAY_MS (default 0: none) > 0 puts bench/sqs/delay_proxy.py in front of the endpoint, on a free port of
# 127.0.0.1: a TCP proxy that holds the first bytes of each response for DELAY_MS, so every API call takes DELAY_MS
# longer (calls on different connections in parallel). Only the movers go through it (redrive's --endpoint-url and
# the boto3 loops' SQS_ENDPOINT); filling, polling and checking stay direct, so the measurement is not slowed. The
# proxy runs at nice NICE; its CPU seconds are not counted in "other CPU s" (they are listed under the table).
#
# The private moto_server and each mover (with the poller) run at nice NICE (default -10 as root, else 0), so that
# builds running on the machine at the same time take less CPU from them; the table's "other CPU s" shows how much
# they still took.
#
# Environment: MOVERS (default "chain none one-by-one batched": which of the four to run), N (default 1000; moto
# slows down sharply with thousands of messages queued), SIZE (1024), SWEEP (default "1:1 8:16"), POLL_MS (100),
# POLL_SHARE (0.02), POLL_MAX_MS (30000), EXIT_GRACE (10), SETTLE (2 s before each move), IDLE_PCT (15), IDLE_WAIT
# (900 s), NICE, DELAY_MS (0), TRIES (3) and OTHER_MAX (0.10): a move during which processes other than moto, the mover and the poller took more than
# OTHER_MAX of the machine's busy CPU is measured again, up to TRIES times (the least disturbed try is reported). MOTO (private|shared), MOTO_PORT,
# SQS_ENDPOINT (for MOTO=shared), BENCH_DIR (default /var/tmp/redrive-bench-sqs: the venv with boto3 and each run's
# output), REDRIVE_BIN (default $CARGO_TARGET_DIR or target, /release/redrive). Credentials default to
# testing/testing, region us-east-1.
set -euo pipefail

N="${N:-1000}"
SIZE="${SIZE:-1024}"
SWEEP="${SWEEP-1:1 8:16}"
MOVERS="${MOVERS:-chain none one-by-one batched}"
MOTO="${MOTO:-private}"
MOTO_PORT="${MOTO_PORT:-9329}"
NICE="${NICE:--10}"
[ "$(id -u)" = 0 ] || NICE=0
moto_wanted=5.2.5
case "$MOTO" in private | shared) ;; *) echo "run.sh: MOTO must be private or shared" >&2; exit 2 ;; esac
SETTLE="${SETTLE:-2}"
IDLE_PCT="${IDLE_PCT:-15}"
IDLE_WAIT="${IDLE_WAIT:-900}"
TRIES="${TRIES:-3}"
OTHER_MAX="${OTHER_MAX:-0.10}"
DELAY_MS="${DELAY_MS:-0}"
case "$DELAY_MS" in '' | *[!0-9]*) echo "run.sh: DELAY_MS must be a whole number of milliseconds" >&2; exit 2 ;; esac
DELAY_MS=$((10#$DELAY_MS))
export POLL_MS="${POLL_MS:-100}"
export SQS_ENDPOINT="${SQS_ENDPOINT:-http://127.0.0.1:9324}"
export AWS_ACCESS_KEY_ID="${AWS_ACCESS_KEY_ID:-testing}" AWS_SECRET_ACCESS_KEY="${AWS_SECRET_ACCESS_KEY:-testing}"
export AWS_REGION="${AWS_REGION:-us-east-1}"
unset AWS_PROFILE AWS_ENDPOINT_URL AWS_ENDPOINT_URL_SQS
case "$N" in '' | *[!0-9]* | 0) echo "run.sh: N must be a positive integer" >&2; exit 2 ;; esac
boto3_version=1.44.5

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
redrive="${REDRIVE_BIN:-${CARGO_TARGET_DIR:-$repo/target}/release/redrive}"
work="${BENCH_DIR:-/var/tmp/redrive-bench-sqs}"
started=$SECONDS
# shellcheck source=../common.sh
. "$repo/bench/common.sh"

# --- prerequisites --------------------------------------------------------------------------------------------
moto_tools="${REDRIVE_TOOLS_DIR:-/var/tmp/redrive-tools}/moto-$moto_wanted"
if [ "$MOTO" = private ]; then
    if [ ! -x "$moto_tools/bin/python" ]; then
        say "no moto venv at $moto_tools: installing it (scripts/services.sh)"
        "$repo/scripts/services.sh"
    fi
    [ -x "$moto_tools/bin/python" ] || die "scripts/services.sh did not install moto into $moto_tools"
    export SQS_ENDPOINT="http://127.0.0.1:$MOTO_PORT"
    ! (exec 3<>"/dev/tcp/127.0.0.1/$MOTO_PORT") 2>/dev/null ||
        die "127.0.0.1:$MOTO_PORT is taken (a private moto_server from an interrupted run?): set MOTO_PORT"
else
    hostport="${SQS_ENDPOINT#*://}"
    hostport="${hostport%%/*}"
    if ! (exec 3<>"/dev/tcp/${hostport%:*}/${hostport##*:}") 2>/dev/null; then
        say "nothing listens on $hostport: starting the local SQS endpoint (scripts/services.sh)"
        "$repo/scripts/services.sh"
    fi
fi
mkdir -p "$work"
py="$(python_venv "$work/venv" "boto3==$boto3_version")"
q() { "$py" "$here/sqs.py" "$@"; }
build_what_is_missing

# The moto_server process behind the endpoint, for its CPU time (none if it is not a local moto_server).
moto_pid=""
moto_version=unknown
if [ "$MOTO" != private ]; then
    port="${SQS_ENDPOINT#*://}" port="${port%%/*}" port="${port##*:}"
    moto_pid="$(ss -Htlnp "sport = :$port" 2>/dev/null | grep -o 'pid=[0-9]*' | head -1 | cut -d= -f2 || true)"
    if [ -n "$moto_pid" ] && tr '\0' ' ' <"/proc/$moto_pid/cmdline" | grep -q moto_server; then
        moto_py="$(tr '\0' '\n' <"/proc/$moto_pid/cmdline" | head -1)"
        moto_version="$("$moto_py" -c 'import moto; print(moto.__version__)' 2>/dev/null || echo unknown)"
    else
        echo "run.sh: WARNING: no moto_server process listens on port $port: no endpoint CPU figures" >&2
        moto_pid=""
    fi
fi

run_dir="$work/run-$(date -u +%Y%m%dT%H%M%SZ)-$$"
mkdir -p "$run_dir"
# A private copy of the binary: every row runs the same build even if target/ is rebuilt meanwhile.
cp "$redrive" "$run_dir/redrive"
built="$(stat -c %y "$redrive" | cut -d. -f1)"
redrive="$run_dir/redrive"
queues=()
proxy_pid=""
cleanup() {
    if [ "${#queues[@]}" -gt 0 ]; then q delete "${queues[@]}" >/dev/null 2>&1 || true; fi
    rm -f "$run_dir/redrive"
    if [ -n "$proxy_pid" ]; then kill "$proxy_pid" 2>/dev/null && wait "$proxy_pid" 2>/dev/null || true; fi
    if [ "$MOTO" = private ] && [ -n "$moto_pid" ]; then kill "$moto_pid" 2>/dev/null || true; fi
}
trap cleanup EXIT
if [ "$MOTO" = private ]; then
    nice -n "$NICE" "$moto_tools/bin/python" "$repo/scripts/moto-server.py" -H 127.0.0.1 -p "$MOTO_PORT" >"$run_dir/moto.log" 2>&1 &
    moto_pid=$!
    for _ in $(seq 1 60); do
        (exec 3<>"/dev/tcp/127.0.0.1/$MOTO_PORT") 2>/dev/null && break
        kill -0 "$moto_pid" 2>/dev/null || die "scripts/moto-server.py exited: $(tail -5 "$run_dir/moto.log")"
        sleep 0.5
    done
    (exec 3<>"/dev/tcp/127.0.0.1/$MOTO_PORT") 2>/dev/null || die "scripts/moto-server.py did not open port $MOTO_PORT"
    moto_version="$("$moto_tools/bin/python" -c 'import moto; print(moto.__version__)') (private, through scripts/moto-server.py)"
fi
export MOTO_PID="$moto_pid"

# The movers' endpoint: SQS_ENDPOINT, or with DELAY_MS > 0 the delaying proxy in front of it (on a free port: the
# proxy binds port 0 and prints the one it got).
mover_endpoint="$SQS_ENDPOINT"
if [ "$DELAY_MS" -gt 0 ]; then
    target="${SQS_ENDPOINT#*://}" target="${target%%/*}"
    case "$target" in
        *:*) target_host="${target%:*}" target_port="${target##*:}" ;;
        *) target_host="$target" target_port=80 ;;
    esac
    nice -n "$NICE" "$py" "$here/delay_proxy.py" 0 "$target_host" "$target_port" "$DELAY_MS" >"$run_dir/proxy.log" 2>&1 &
    proxy_pid=$!
    proxy_port=""
    for _ in $(seq 1 50); do
        proxy_port="$(sed -n 's/^listening on 127\.0\.0\.1:\([0-9]*\)$/\1/p' "$run_dir/proxy.log")"
        [ -n "$proxy_port" ] && break
        kill -0 "$proxy_pid" 2>/dev/null || die "bench/sqs/delay_proxy.py exited: $(tail -5 "$run_dir/proxy.log")"
        sleep 0.2
    done
    [ -n "$proxy_port" ] || die "bench/sqs/delay_proxy.py did not start listening: $(tail -5 "$run_dir/proxy.log")"
    mover_endpoint="http://127.0.0.1:$proxy_port"
fi

# cpu_s PID: the CPU seconds (user + system) process PID used so far, from /proc (0 if it is gone)
cpu_s() { awk -v t="$(getconf CLK_TCK)" '{ sub(/.*\) /, ""); print ($12 + $13) / t }' "/proc/$1/stat" 2>/dev/null || echo 0; }

machine="$(machine_line)"
say "machine: $machine; moto $moto_version (pid ${moto_pid:-?}) at $SQS_ENDPOINT; $("$redrive" --version) (binary built $built); boto3 $("$py" -c 'import boto3; print(boto3.__version__)'); N=$N, SIZE=$SIZE; DELAY_MS=$DELAY_MS (movers at $mover_endpoint${proxy_pid:+, delay_proxy.py pid $proxy_pid})"

# Warm the compiled-module cache, so no row pays for compiling the modules.
"$redrive" filter test "${modules[@]}" --input "$repo/examples/filters/route-by-error/input.jsonl" >/dev/null ||
    die "redrive filter test failed on the chain"

# --- one mover ------------------------------------------------------------------------------------------------
labels=() results=() verifies=()

# move LABEL SLUG CHECK CMD...: CMD may use the placeholders @DLQ@ and @STAGING@ (queue names)
move() {
    local label="$1" slug="$2" check="$3" result="" try other_share dlq staging best="" best_share=2 best_v=""
    shift 3
    for try in $(seq 1 "$TRIES"); do
        dlq="rdb-$$-$slug-$try-dlq" staging="rdb-$$-$slug-$try-staging"
        queues=("$dlq" "$staging")
        local cmd=()
        for a in "$@"; do a="${a//@DLQ@/$dlq}"; cmd+=("${a//@STAGING@/$staging}"); done
        say "$label: filling $dlq with $N messages of $SIZE B (try $try of $TRIES)"
        q reset "$dlq" "$staging"
        q fill "$dlq" "$N" "$SIZE"
        sleep "$SETTLE"
        q idle "$IDLE_PCT" "$IDLE_WAIT" || echo "run.sh: WARNING: measuring on a busy machine (see 'other CPU s')" >&2
        if [ -n "$proxy_pid" ]; then
            kill -0 "$proxy_pid" 2>/dev/null || die "bench/sqs/delay_proxy.py exited: $(tail -5 "$run_dir/proxy.log")"
        fi
        say "$label: moving"
        local proxy0=0
        [ -z "$proxy_pid" ] || proxy0="$(cpu_s "$proxy_pid")"
        if ! result="$(nice -n "$NICE" "$py" "$here/sqs.py" move "$dlq" "$staging" "$N" -- "${cmd[@]}")" || [ "$(field "$result" rc)" != 0 ]; then
            incomplete "$label" "$try" "$dlq" "$staging" "$result"
            continue
        fi
        if [ -n "$proxy_pid" ]; then
            # the proxy's CPU (over the whole move, up to the mover's exit) is not "other" work on the machine
            result="$("$py" -c 'import json, sys
r = json.loads(sys.argv[1])
r["proxy_cpu"] = float(sys.argv[3]) - float(sys.argv[2])
r["other_cpu"] -= r["proxy_cpu"]
print(json.dumps(r))' "$result" "$proxy0" "$(cpu_s "$proxy_pid")")"
        fi
        echo "$result" >&2
        local dlq_after staging_after
        dlq_after="$(field "$result" dlq_after_exit)" staging_after="$(field "$result" staging_after_exit)"
        [ "$dlq_after" = "[0, 0, 0]" ] && [ "$staging_after" = "[$N, 0, 0]" ] ||
            die "$label: after the mover exited: $dlq (visible, in flight, delayed) $dlq_after, $staging $staging_after (want [0, 0, 0] and [$N, 0, 0]): messages lost or duplicated"
        local v
        v="$(q verify "$staging" "$N" "$SIZE")" || { echo "$v" >&2; die "$label: staging's content is wrong (see above)"; }
        echo "verified: $dlq empty; $staging: $v" >&2
        $check
        q delete "$dlq" "$staging"
        queues=()
        other_share="$("$py" -c 'import json, sys; r = json.loads(sys.argv[1]); print(max(r["other_cpu"], 0) / max(r["machine_cpu"], 1e-9))' "$result")"
        # keep the try that other processes disturbed least
        if "$py" -c 'import sys; sys.exit(float(sys.argv[1]) >= float(sys.argv[2]))' "$other_share" "$best_share"; then
            best="$result" best_share="$other_share" best_v="$v"
        fi
        if "$py" -c 'import sys; sys.exit(float(sys.argv[1]) > float(sys.argv[2]))' "$other_share" "$OTHER_MAX"; then
            break
        fi
        echo "run.sh: WARNING: other processes used $(field "$result" other_cpu) CPU s during the move" \
            "($(awk -v s="$other_share" 'BEGIN {printf "%.0f", 100 * s}') % of the machine's busy CPU)" >&2
        [ "$try" -lt "$TRIES" ] && echo "run.sh: measuring $label again" >&2
    done
    [ -n "$best" ] || die "$label: no complete move"
    labels+=("$label")
    results+=("$best")
    verifies+=("$best_v")
}

# incomplete LABEL TRY DLQ STAGING RESULT: the mover failed or left messages in the DLQ. Say so loudly, keep its
# output, check that staging holds no duplicate or changed message (else stop), record it, and measure again
# (up to TRIES times in all).
failures=()
incomplete() {
    local label="$1" try="$2" dlq="$3" staging="$4" result="$5" keep v doubled changed d s
    keep="$run_dir/failed-$(echo "$label" | tr -c 'a-zA-Z0-9\n' -)-$try"
    mkdir -p "$keep"
    echo "$result" >"$keep/result.json"
    [ -n "${MOVE_STDOUT:-}" ] && cp "$MOVE_STDOUT" "$keep/" 2>/dev/null
    [ -n "${MOVE_STDERR:-}" ] && cp "$MOVE_STDERR" "$keep/" 2>/dev/null
    d="$(q counts "$dlq" | cut -d' ' -f2-)" s="$(q counts "$staging" | cut -d' ' -f2-)"
    {
        echo
        echo "run.sh: FAILED: $label (try $try): the mover exited with rc=$(field "$result" rc 2>/dev/null || echo ?)" \
            "and left $dlq (visible, in flight, delayed) at $d, $staging at $s"
        echo "$result"
        [ -n "${MOVE_STDOUT:-}" ] && [ -s "$MOVE_STDOUT" ] && sed 's/^/    /' "$MOVE_STDOUT" | tail -20
        [ -n "${MOVE_STDERR:-}" ] && [ -s "$MOVE_STDERR" ] && sed 's/^/    /' "$MOVE_STDERR" | tail -20
        echo "(kept in $keep)"
    } >&2
    v="$(q verify "$staging" "$N" "$SIZE" 2>/dev/null)" || true
    echo "$v" >"$keep/verify.json"
    echo "staging's content: $v" >&2
    doubled="$(field "$v" doubled 2>/dev/null || echo '?')" changed="$(field "$v" bodies_changed 2>/dev/null || echo '?')"
    [ "$doubled" = 0 ] && [ "$changed" = 0 ] ||
        die "$label: staging holds duplicated or changed messages: $v"
    failures+=("$label, try $try: mover rc=$(field "$result" rc 2>/dev/null || echo ?); left in the DLQ (visible, in flight, delayed): $d; staging: $s; staging check: $v")
    q delete "$dlq" "$staging"
    queues=()
    rm -rf "${MOVE_AUDIT:-/nonexistent}"
    [ "$try" -lt "$TRIES" ] || die "$label: incomplete in all $TRIES tries"
    echo "run.sh: measuring $label again" >&2
}

field() { "$py" -c 'import json, sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"; }

# redrive_move LABEL SLUG FROM_OPTS TO_OPTS ARGS...: `redrive run` from the DLQ to staging with ARGS
redrive_move() {
    local label="$1" slug="$2" from_opts="$3" to_opts="$4"
    local dir="$run_dir/$slug"
    shift 4
    check_redrive() {
        sed 's/^/    /' "$dir/summary.txt" >&2
        grep -Eq "replayed +$N " "$dir/summary.txt" || die "$label: redrive did not report $N replayed"
        if [ -s "$dir/stderr.txt" ]; then
            echo "redrive printed on stderr:" >&2
            sed 's/^/    /' "$dir/stderr.txt" | head -20 >&2
        fi
        rm -rf "$dir/audit" # ~1 KB per message and module; a retry must not resume from this run's journal
    }
    mkdir -p "$dir"
    rm -rf "$dir/audit"
    MOVE_STDOUT="$dir/summary.txt" MOVE_STDERR="$dir/stderr.txt" MOVE_AUDIT="$dir/audit" move "$label" "$slug" check_redrive \
        "$redrive" run --from "sqs://@DLQ@$from_opts" --to "sqs://@STAGING@$to_opts" --endpoint-url "$mover_endpoint" \
        "$@" --audit-dir "$dir/audit" --no-progress
}

# loop_move LABEL SLUG: one of sqs.py's boto3 movers (at the movers' endpoint; the poller stays at SQS_ENDPOINT)
loop_move() {
    local dir="$run_dir/$2"
    mkdir -p "$dir"
    show_loop() { sed 's/^/    /' "$dir/stderr.txt" >&2; }
    MOVE_STDOUT="$dir/stdout.txt" MOVE_STDERR="$dir/stderr.txt" move "$1" "$2" show_loop \
        env SQS_ENDPOINT="$mover_endpoint" "$py" "$here/sqs.py" "$2" @DLQ@ @STAGING@
}

want() { [[ " $MOVERS " == *" $1 "* ]]; }
want chain && redrive_move "redrive, 3-module chain" chain "" "" "${chain_args[@]}"
want none && redrive_move "redrive --no-filter" none "" "" --no-filter
want one-by-one && loop_move "boto3 loop, one by one" one-by-one
want batched && loop_move "boto3 loop, batched" batched
for pair in $SWEEP; do
    r="${pair%%:*}" c="${pair##*:}"
    redrive_move "redrive, 3-module chain, receivers=$r concurrency=$c" "chain-r$r-c$c" "?receivers=$r" \
        "?concurrency=$c" "${chain_args[@]}"
done

# --- table ----------------------------------------------------------------------------------------------------
say "results"
printf '%s\n' "${results[@]}" >"$run_dir/results.jsonl"
printf '%s\n' "${labels[@]}" >"$run_dir/labels.txt"
printf '%s\n' "${verifies[@]}" >"$run_dir/verify.jsonl"
printf '%s\n' ${failures[@]+"${failures[@]}"} >"$run_dir/failures.txt"
"$py" - "$run_dir" "$N" "$machine" "$moto_version" "$DELAY_MS" <<'EOF' | tee "$run_dir/table.md"
import json, os, sys
run_dir, n, machine, moto_version, delay_ms = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], int(sys.argv[5])
labels = open(f"{run_dir}/labels.txt").read().splitlines()
rows = [json.loads(l) for l in open(f"{run_dir}/results.jsonl")]
by = dict(zip(labels, rows))
one = n / by["boto3 loop, one by one"]["seconds"] if "boto3 loop, one by one" in by else None
batched = n / by["boto3 loop, batched"]["seconds"] if "boto3 loop, batched" in by else None
ratio = lambda a, b: "–" if b is None else f"{a / b:.2f}×"
fmt = lambda v, f: "–" if v is None else format(v, f)
print(f"N = {n} messages of 1 KiB; {machine}; moto {moto_version}; DELAY_MS = {delay_ms} "
      + (f"(every API call of the movers {delay_ms} ms slower, through bench/sqs/delay_proxy.py)" if delay_ms
         else "(no added latency)"))
print()
print("| mover | seconds | msg/s | vs one-by-one | vs batched | mover exit (s) | mover CPU s | "
      "moto CPU s (of it polling, est.) | moto CPU ms/msg | other CPU s | machine busy |")
print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
for label, r in zip(labels, rows):
    rate = n / r["seconds"]
    moto = r["moto_cpu"]
    print(f"| {label} | {r['seconds']:.2f} | {rate:,.1f} | {ratio(rate, one)} | {ratio(rate, batched)} | "
          f"{r['exit']:.2f} | {r['mover_cpu']:.2f} | "
          f"{fmt(moto, '.2f')} ({fmt(r['moto_poll_cpu'], '.2f')}) | "
          f"{fmt(None if moto is None else 1000 * moto / n, '.1f')} | {max(r['other_cpu'], 0.0):.2f} | "
          f"{100 * r['machine_busy']:.0f} % |")
print()
print("seconds: from starting the mover until the DLQ reports no message (visible, in flight or delayed) and "
      "staging holds N. mover exit: when the "
      "mover process ended (redrive ends a pass after an empty long poll, 2 s by default; the loops after an empty "
      "1 s receive). moto CPU: the moto_server process from the mover's start until done; in brackets the "
      "estimated share of the polling (" + ", ".join(str(r["polls"]) for r in rows) + " polls). "
      "other CPU: the machine's busy CPU less moto, the mover and the poller" +
      ("" if not delay_ms else ", and less the delaying proxy (CPU s: " +
       ", ".join(f"{r.get('proxy_cpu', 0):.2f}" for r in rows) + ")") + ".")
failures = [l for l in open(f"{run_dir}/failures.txt").read().splitlines() if l]
if failures:
    print()
    print("Incomplete moves (measured again):")
    print()
    for f in failures:
        print(f"- {f}")
EOF
echo "(table saved in $run_dir/table.md; total $((SECONDS - started)) s)" >&2
