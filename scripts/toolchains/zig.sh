#!/usr/bin/env bash
# Zig for guest filters (command profile, wasm32-wasi): PyPI `ziglang`, pinned, in a venv under the tools dir.
# Idempotent: a second run only checks.
#
#   scripts/toolchains/zig.sh               # install if missing; print the command that runs zig
#   scripts/toolchains/zig.sh --print-zig   # print it only if installed (exit 1 otherwise)
set -euo pipefail
version=0.14.1
tools="${REDRIVE_TOOLS_DIR:-/var/tmp/redrive-tools}"
venv="$tools/zig-$version"
zig="$venv/bin/python -m ziglang"
installed() { [ -x "$venv/bin/python" ] && [ "$($zig version 2>/dev/null)" = "$version" ]; }
if [ "${1:-}" = --print-zig ]; then
    installed && echo "$zig" && exit 0
    exit 1
fi
if ! installed; then
    echo "toolchains/zig: installing ziglang==$version (PyPI) into $venv" >&2
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "ziglang==$version" || {
        echo "toolchains/zig: pip could not install ziglang==$version from PyPI (is the registry reachable?)" >&2
        exit 1
    }
fi
echo "toolchains/zig: zig $($zig version)" >&2
echo "$zig"
