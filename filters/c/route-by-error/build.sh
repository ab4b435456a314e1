#!/usr/bin/env bash
# Build route-by-error (C) to a WebAssembly component: wit-bindgen's C bindings (generated from the repository's
# guest-sdk/wit/ at build time), `zig cc` for wasm32-wasi as a reactor (no main), then `wasm-tools component new`.
#
#   filters/c/route-by-error/build.sh OUT.wasm
#
# wit-bindgen and Zig come from scripts/toolchains/c.sh; wasm-tools from scripts/setup.sh.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="$(realpath -m "${1:?usage: build.sh OUT.wasm}")"
tools="$(bash "$here/../../../scripts/toolchains/c.sh" --print 2>/dev/null)" ||
    { echo "build.sh: the C toolchain is missing: run scripts/toolchains/c.sh (or scripts/guest-toolchains.sh c)" >&2; exit 1; }
wit_bindgen="$(sed -n 1p <<<"$tools")"
read -r -a zig <<<"$(sed -n 2p <<<"$tools")"
command -v wasm-tools >/dev/null 2>&1 || { echo "build.sh: wasm-tools not found: run scripts/setup.sh" >&2; exit 1; }
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
"$wit_bindgen" c --world filter "$here/../../../guest-sdk/wit" --out-dir "$work" >/dev/null
export ZIG_GLOBAL_CACHE_DIR="${REDRIVE_TOOLS_DIR:-/var/tmp/redrive-tools}/zig-cache"
"${zig[@]}" cc -target wasm32-wasi -O2 -s -mexec-model=reactor -I"$work" \
    "$here/route_by_error.c" "$work/filter.c" "$work/filter_component_type.o" -o "$work/core.wasm"
mkdir -p "$(dirname "$out")"
wasm-tools component new "$work/core.wasm" -o "$out"
