#!/usr/bin/env bash
# Build route-by-error (JavaScript) to a WebAssembly component with componentize-js.
#
#   filters/js/route-by-error/build.sh OUT.wasm
#
# componentize-js comes from scripts/toolchains/js.sh (npm, pinned). The WIT is the repository's guest-sdk/wit/.
# WASI features the filter does not use are disabled, so the component imports only what redrive provides.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="$(realpath -m "${1:?usage: build.sh OUT.wasm}")"
bin="$(bash "$here/../../../scripts/toolchains/js.sh" --print 2>/dev/null)" ||
    { echo "build.sh: componentize-js not found: run scripts/toolchains/js.sh (or scripts/guest-toolchains.sh js)" >&2; exit 1; }
mkdir -p "$(dirname "$out")"
"$bin/componentize-js" "$here/route-by-error.js" --wit "$here/../../../guest-sdk/wit" --world-name filter \
    -d stdio random clocks http fetch-event -o "$out" >/dev/null
