#!/usr/bin/env bash
# C guest filters (component profile): wit-bindgen-cli (crates.io, built with `cargo install`, ~7 min the first
# time, then cached under the tools dir) for the C bindings, and Zig (scripts/toolchains/zig.sh) as the C compiler
# for wasm32-wasi. wasm-tools (scripts/setup.sh) makes the component. Idempotent: a second run only checks.
#
#   scripts/toolchains/c.sh           # install if missing; print the wit-bindgen path, then the zig command
#   scripts/toolchains/c.sh --print   # print them only if installed (exit 1 otherwise)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
version=0.63.0
tools="${REDRIVE_TOOLS_DIR:-/var/tmp/redrive-tools}"
root="$tools/wit-bindgen-$version"
bin="$root/bin/wit-bindgen"
installed() { [ -x "$bin" ] && "$bin" --version 2>/dev/null | grep -q " $version"; }
if [ "${1:-}" = --print ]; then
    installed || exit 1
    zig="$(bash "$here/zig.sh" --print-zig)" || exit 1
    printf '%s\n%s\n' "$bin" "$zig"
    exit 0
fi
if ! installed; then
    command -v cargo >/dev/null 2>&1 || { echo "toolchains/c: cargo is needed to build wit-bindgen-cli: run scripts/setup.sh" >&2; exit 1; }
    echo "toolchains/c: building wit-bindgen-cli $version (crates.io) into $root; about 7 minutes on 2 cores" >&2
    CARGO_TARGET_DIR="$tools/wit-bindgen-build" nice -n 10 cargo install wit-bindgen-cli --version "$version" \
        --locked --root "$root" --quiet || {
        echo "toolchains/c: cargo install wit-bindgen-cli $version failed (see above)" >&2
        exit 1
    }
    rm -rf "$tools/wit-bindgen-build"
fi
zig="$(bash "$here/zig.sh")"
echo "toolchains/c: $("$bin" --version), zig $($zig version)" >&2
printf '%s\n%s\n' "$bin" "$zig"
