#!/usr/bin/env bash
# Build {{name}}.wasm (a WASI preview-1 command module) from this project.
#   ./build.sh      then: redrive filter test {{name}}.wasm --input sample/input.jsonl --expect sample/expected.jsonl
# Needs Zig 0.14: `zig` on PATH, or the one redrive's scripts/toolchains/zig.sh installs (pip install ziglang==0.14.1).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
venv="$(ls -d "${REDRIVE_TOOLS_DIR:-/var/tmp/redrive-tools}"/zig-0.14.* 2>/dev/null | tail -1 || true)"
if command -v zig >/dev/null 2>&1; then zig=(zig)
elif [ -n "$venv" ]; then zig=("$venv/bin/python" -m ziglang)
elif python3 -c 'import ziglang' 2>/dev/null; then zig=(python3 -m ziglang)
else echo "build.sh: Zig not found: install it (pip install ziglang==0.14.1)" >&2; exit 1
fi
"${zig[@]}" build-exe main.zig -target wasm32-wasi -O ReleaseFast -fstrip --name {{name}} -femit-bin={{name}}.wasm
echo "built {{name}}.wasm ($(wc -c <{{name}}.wasm | tr -d ' ') bytes)"
