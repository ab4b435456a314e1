#!/usr/bin/env bash
# Set everything up and run the quickstart replay on the embedded default (JSONL files, no broker):
# 600 dead letters from an orders service, a canary of 10 checked by the "fixed consumer", then the rest
# at a ramped rate limit. Output lands in examples/quickstart/out/.
#
#   scripts/quickstart.sh                 builds redrive without the broker clients (scripts/setup.sh
#                                         --files-only): the quickstart needs none, and it is about 45 % less
#                                         to compile. scripts/setup.sh adds them later, compiling only them.
#   scripts/quickstart.sh --every-broker  builds every broker in first (scripts/setup.sh)
set -euo pipefail

setup_args=(--files-only)
case "${1:-}" in
    "") ;;
    --every-broker) setup_args=() ;;
    *) printf 'quickstart: unknown argument %q; use scripts/quickstart.sh [--every-broker]\n' "$1" >&2; exit 2 ;;
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
