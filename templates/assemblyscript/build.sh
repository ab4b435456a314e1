#!/usr/bin/env bash
# Build {{name}}.wasm (a WASI preview-1 command module) from this project.
#   ./build.sh      then: redrive filter test {{name}}.wasm --input sample/input.jsonl --expect sample/expected.jsonl
# Needs assemblyscript 0.28 and @assemblyscript/wasi-shim 0.1 (npm, see package.json): `npm install` here, or
# the ones redrive's scripts/toolchains/assemblyscript.sh installs (used when ./node_modules is missing).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
if [ ! -e node_modules ]; then
    tools="$(ls -d "${REDRIVE_TOOLS_DIR:-/var/tmp/redrive-tools}"/assemblyscript-*/node_modules 2>/dev/null | tail -1 || true)"
    [ -n "$tools" ] || { echo "build.sh: AssemblyScript not installed: run  npm install  here" >&2; exit 1; }
    ln -s "$tools" node_modules
fi
node_modules/.bin/asc assembly/index.ts --config asconfig.json --target release -o {{name}}.wasm
echo "built {{name}}.wasm ($(wc -c <{{name}}.wasm | tr -d ' ') bytes)"
