#!/usr/bin/env bash
# Build {{name}}.wasm (a WebAssembly component) from this project: tsc, then componentize-js.
#   ./build.sh      then: redrive filter test {{name}}.wasm --input sample/input.jsonl --expect sample/expected.jsonl
# Needs typescript 5 and @bytecodealliance/componentize-js 0.23 (npm): on PATH, in ./node_modules, or the ones
# redrive's scripts/toolchains/js.sh installs (npm install typescript@5.9.3 @bytecodealliance/componentize-js@0.23.0).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
find_bin() { command -v "$1" || ls "node_modules/.bin/$1" "${REDRIVE_TOOLS_DIR:-/var/tmp/redrive-tools}"/componentize-js-*/node_modules/.bin/"$1" 2>/dev/null | tail -1 || true; }
tsc="$(find_bin tsc)" cjs="$(find_bin componentize-js)"
[ -n "$tsc" ] && [ -n "$cjs" ] || { echo "build.sh: tsc or componentize-js not found: npm install typescript@5.9.3 @bytecodealliance/componentize-js@0.23.0" >&2; exit 1; }
"$tsc" -p tsconfig.json --outDir build
"$cjs" build/filter.js --wit wit --world-name filter -d stdio random clocks http fetch-event -o {{name}}.wasm >/dev/null
echo "built {{name}}.wasm ($(wc -c <{{name}}.wasm | tr -d ' ') bytes)"
