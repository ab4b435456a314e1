#!/usr/bin/env bash
# Audit trail size (issue 18): the quickstart's run (600 dead letters, the three example filters, canary and
# fixed consumer as in scripts/quickstart.sh) with each given redrive binary, side by side; prints the audit
# bytes per message per module (what the audit files hold / (messages × modules)), per record, and the ratio of
# each binary to the first; and the run journal's bytes per message.
#
#   bench/audit/run.sh                       # the build's redrive
#   bench/audit/run.sh OLD_BIN NEW_BIN       # compare two builds (e.g. one built from an earlier commit)
#
# Each run works in a fresh copy of examples/quickstart under a temporary directory; nothing in the repository
# is written. Needs the example filters (scripts/build-filters.sh route-by-error repair-json drop-test-traffic).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
[ "$#" -gt 0 ] || set -- "${CARGO_TARGET_DIR:-$repo/target}/release/redrive"
for f in route-by-error repair-json drop-test-traffic; do
    [ -f "$repo/build/filters/$f.wasm" ] || "$repo/scripts/build-filters.sh" route-by-error repair-json drop-test-traffic
done
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

first=""
printf '%-50s %12s %10s %14s %8s %16s\n' binary "audit bytes" records "B/msg/module" ratio "journal B/msg"
for bin in "$@"; do
    [ -x "$bin" ] || { echo "run.sh: no redrive binary at $bin" >&2; exit 2; }
    dir="$work/$(date +%s%N)"
    cp -r "$repo/examples/quickstart" "$dir"
    rm -rf "$dir/out"
    sed -i "s#\.\./\.\./build#$repo/build#g" "$dir/redrive.toml"
    (cd "$dir" && "$bin" run --config redrive.toml --no-progress >"$dir/run.log" 2>&1) ||
        { echo "run.sh: $bin failed, its output:" >&2; cat "$dir/run.log" >&2; exit 1; }
    # A plain substitution (not `< <(...)`), so a failing measurement stops the script under set -e instead of
    # printing empty columns.
    measured="$(python3 - "$dir" "$first" <<'PY'
import pathlib, sys
d = pathlib.Path(sys.argv[1])
first = float(sys.argv[2]) if sys.argv[2] else None
modules = ["route-by-error", "repair-json", "drop-test-traffic"]
size = records = 0
for m in modules:
    for line in (d / "out/audit" / f"{m}.jsonl").read_text().splitlines():
        size += len(line) + 1
        records += '"message_id"' in line
messages = sum(1 for _ in (d / "dlq.jsonl").open())
per = size / (messages * len(modules))
journal = sum(p.stat().st_size for p in (d / "out/audit").glob("journal-*.jsonl"))
print(size, records, f"{per:.0f}", f"{per / (first or per):.2f}", f"{journal / messages:.0f}")
PY
)" || { echo "run.sh: measuring the audit files of $bin failed (above)" >&2; exit 1; }
    read -r bytes records per ratio journal <<<"$measured"
    first="${first:-$per}"
    printf '%-50s %12s %10s %14s %7sx %16s\n' "$bin" "$bytes" "$records" "$per" "$ratio" "$journal"
done
echo "target (issue 18): <= 200 B per message per module, same information"
