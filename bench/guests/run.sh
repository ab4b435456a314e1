#!/usr/bin/env bash
# The guest-language benchmark (issue 7): route-by-error in every guest language — module size, first load
# (compile), cached load, start-up, and time per message on a 1 KiB JSON body with the instance reused and with a
# fresh instance per message. One table, printed at the end (source: host/benches/guests.rs).
#
#   bench/guests/run.sh                 # every language
#   bench/guests/run.sh go python       # only these (rust is always included as the reference)
#
# Installs the toolchains (scripts/guest-toolchains.sh), builds every module from source
# (scripts/build-filters.sh, scripts/build-guest-filters.sh), then runs `cargo bench -p redrive --bench guests`.
# A few minutes once built (the Python and JavaScript modules take seconds each to compile).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$repo"

langs=("$@")
if [ "${#langs[@]}" -eq 0 ]; then
    langs=(c zig go python js ts assemblyscript)
fi
scripts/guest-toolchains.sh "${langs[@]}"
scripts/build-filters.sh route-by-error >/dev/null
scripts/build-guest-filters.sh "${langs[@]}"

echo "machine: $(nproc) CPUs, $(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -1), $(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo); $(uname -sr); $(date -u +%Y-%m-%dT%H:%MZ)"
REDRIVE_BENCH_LANGS="rust ${langs[*]}" cargo bench -p redrive --bench guests
