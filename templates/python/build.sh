#!/usr/bin/env bash
# Build {{name}}.wasm (a WebAssembly component) from this project.
#   ./build.sh      then: redrive filter test {{name}}.wasm --input sample/input.jsonl --expect sample/expected.jsonl
# Needs componentize-py 0.25: on PATH, or the one redrive's scripts/toolchains/python.sh installs
# (pip install componentize-py==0.25.1).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
cpy="$(command -v componentize-py || ls "${REDRIVE_TOOLS_DIR:-/var/tmp/redrive-tools}"/componentize-py-*/bin/componentize-py 2>/dev/null | tail -1 || true)"
[ -n "$cpy" ] || { echo "build.sh: componentize-py not found: pip install componentize-py==0.25.1" >&2; exit 1; }
"$cpy" -d wit -w filter componentize app -o {{name}}.wasm >/dev/null
echo "built {{name}}.wasm ($(wc -c <{{name}}.wasm | tr -d ' ') bytes)"
