#!/usr/bin/env bash
# Build route-by-error (Zig) to a WASI preview-1 command module.
#
#   filters/zig/route-by-error/build.sh OUT.wasm
#
# Zig comes from scripts/toolchains/zig.sh (PyPI ziglang, pinned).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="$(realpath -m "${1:?usage: build.sh OUT.wasm}")"
zig="$(bash "$here/../../../scripts/toolchains/zig.sh" --print-zig 2>/dev/null)" ||
    { echo "build.sh: Zig not found: run scripts/toolchains/zig.sh (or scripts/guest-toolchains.sh zig)" >&2; exit 1; }
mkdir -p "$(dirname "$out")"
export ZIG_GLOBAL_CACHE_DIR="${REDRIVE_TOOLS_DIR:-/var/tmp/redrive-tools}/zig-cache"
cd "$here"
$zig build-exe main.zig -target wasm32-wasi -O ReleaseFast -fstrip --name route-by-error -femit-bin="$out" \
    --cache-dir "$ZIG_GLOBAL_CACHE_DIR/local"
