#!/usr/bin/env bash
# Build route-by-error (TypeScript) to a WebAssembly component: tsc to an ES module, then componentize-js.
#
#   filters/ts/route-by-error/build.sh OUT.wasm
#
# tsc and componentize-js come from scripts/toolchains/js.sh (npm, pinned). The WIT is the repository's
# guest-sdk/wit/.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="$(realpath -m "${1:?usage: build.sh OUT.wasm}")"
bin="$(bash "$here/../../../scripts/toolchains/js.sh" --print 2>/dev/null)" ||
    { echo "build.sh: tsc/componentize-js not found: run scripts/toolchains/js.sh (or scripts/guest-toolchains.sh ts)" >&2; exit 1; }
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
"$bin/tsc" -p "$here/tsconfig.json" --outDir "$work"
mkdir -p "$(dirname "$out")"
"$bin/componentize-js" "$work/route-by-error.js" --wit "$here/../../../guest-sdk/wit" --world-name filter \
    -d stdio random clocks http fetch-event -o "$out" >/dev/null
