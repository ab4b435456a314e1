#!/usr/bin/env bash
# Build {{name}}.wasm (a WebAssembly component) from this project.
#   ./build.sh      then: redrive filter test {{name}}.wasm --input sample/input.jsonl --expect sample/expected.jsonl
# Needs @bytecodealliance/componentize-js 0.23 (npm): on PATH, in ./node_modules, or the one redrive's
# scripts/toolchains/js.sh installs (npm install @bytecodealliance/componentize-js@0.23.0).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
cjs="$(command -v componentize-js || ls node_modules/.bin/componentize-js "${REDRIVE_TOOLS_DIR:-/var/tmp/redrive-tools}"/componentize-js-*/node_modules/.bin/componentize-js 2>/dev/null | tail -1 || true)"
[ -n "$cjs" ] || { echo "build.sh: componentize-js not found: npm install @bytecodealliance/componentize-js@0.23.0" >&2; exit 1; }
# Disable the WASI features the filter does not use, so the component imports only what redrive provides.
"$cjs" filter.js --wit wit --world-name filter -d stdio random clocks http fetch-event -o {{name}}.wasm >/dev/null
echo "built {{name}}.wasm ($(wc -c <{{name}}.wasm | tr -d ' ') bytes)"
