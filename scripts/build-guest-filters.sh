#!/usr/bin/env bash
# Build the route-by-error filter in every guest language from source (filters/<lang>/route-by-error/build.sh)
# into build/filters/route-by-error-<lang>.wasm. The toolchains come from scripts/guest-toolchains.sh.
# The Rust version is built by scripts/build-filters.sh (build/filters/route-by-error.wasm).
#
#   scripts/build-guest-filters.sh            # every language
#   scripts/build-guest-filters.sh go zig     # only these
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
all=(c zig go python js ts assemblyscript)
out_dir="$repo/build/filters"
mkdir -p "$out_dir"

langs=("$@")
[ "${#langs[@]}" -gt 0 ] || langs=("${all[@]}")
failed=()
for lang in "${langs[@]}"; do
    build="$repo/filters/$lang/route-by-error/build.sh"
    [ -f "$build" ] || { echo "build-guest-filters: no $build (known: ${all[*]})" >&2; exit 2; }
    out="$out_dir/route-by-error-$lang.wasm"
    rm -f "$out"
    started=$SECONDS
    if bash "$build" "$out" </dev/null >&2 && [ -s "$out" ]; then
        printf '%s\t%s bytes\t%s s\n' "build/filters/route-by-error-$lang.wasm" "$(wc -c <"$out" | tr -d ' ')" "$((SECONDS - started))"
    else
        echo "build-guest-filters: $lang: $build failed (toolchain missing? run scripts/guest-toolchains.sh $lang)" >&2
        failed+=("$lang")
    fi
done
if [ "${#failed[@]}" -gt 0 ]; then
    echo "build-guest-filters: failed: ${failed[*]}" >&2
    exit 1
fi
