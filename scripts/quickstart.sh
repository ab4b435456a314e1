#!/usr/bin/env bash
# Set everything up and run the quickstart replay on the embedded default (JSONL files, no broker):
# 600 dead letters from an orders service, a canary of 10 checked by the "fixed consumer", then the rest
# at a ramped rate limit. Output lands in examples/quickstart/out/.
#
#   scripts/quickstart.sh               builds redrive with every broker (scripts/setup.sh)
#   scripts/quickstart.sh --files-only  builds it without the broker clients: about 30 % less to compile,
#                                       but building the brokers in later recompiles most of it
set -euo pipefail

setup_args=()
case "${1:-}" in
    "") ;;
    --files-only) setup_args=(--files-only) ;;
    *) printf 'quickstart: unknown argument %q; use scripts/quickstart.sh [--files-only]\n' "$1" >&2; exit 2 ;;
esac

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
scripts/setup.sh "${setup_args[@]}"

redrive="${CARGO_TARGET_DIR:-$repo/target}/release/redrive"
out=examples/quickstart/out
rm -rf "$out"

echo
echo "== 1. Plan: what would happen, without changing anything"
"$redrive" plan --config examples/quickstart/redrive.toml --plan-out "$out/plan.json" --no-progress

echo
echo "== 2. Run: canary of 10, the fixed consumer checks them, then the rest at a ramped rate limit"
"$redrive" run --config examples/quickstart/redrive.toml

echo
echo "Look at:"
echo "  $out/staging.jsonl           replayed messages (repaired bodies, x-redrive-replay-id / -count)"
echo "  $out/still-in-dlq.jsonl      what is still in the DLQ (skipped, parked)"
echo "  $out/audit/*.jsonl           one audit record per filter per message; discarded.jsonl, the run journal"
