#!/usr/bin/env bash
# Build {{name}}.wasm (a WebAssembly component) from this project.
#
#   ./build.sh            then: redrive filter test {{name}}.wasm --input sample/input.jsonl --expect sample/expected.jsonl
#
# Needs Rust (rustup) with the wasm32-wasip2 target: rustup target add wasm32-wasip2
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

command -v cargo >/dev/null 2>&1 || { echo "build.sh: cargo not found: install Rust from https://rustup.rs" >&2; exit 1; }
if command -v rustup >/dev/null 2>&1 && ! rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2; then
    echo "build.sh: the Rust target wasm32-wasip2 is missing: run  rustup target add wasm32-wasip2" >&2
    exit 1
fi
cargo build --release --target wasm32-wasip2
target_dir="${CARGO_TARGET_DIR:-target}"
cp "$target_dir/wasm32-wasip2/release/{{name_snake}}.wasm" "{{name}}.wasm"
echo "built {{name}}.wasm ($(wc -c <"{{name}}.wasm" | tr -d ' ') bytes)"
