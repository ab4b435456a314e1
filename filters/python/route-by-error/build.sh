#!/usr/bin/env bash
# Build route-by-error (Python) to a WebAssembly component with componentize-py.
#
#   filters/python/route-by-error/build.sh OUT.wasm
#
# componentize-py comes from scripts/toolchains/python.sh (PyPI, pinned). The WIT is the repository's
# guest-sdk/wit/; the bindings are generated into the component at build time.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="$(realpath -m "${1:?usage: build.sh OUT.wasm}")"
cpy="$(bash "$here/../../../scripts/toolchains/python.sh" --print 2>/dev/null)" ||
    { echo "build.sh: componentize-py not found: run scripts/toolchains/python.sh (or scripts/guest-toolchains.sh python)" >&2; exit 1; }
mkdir -p "$(dirname "$out")"
cd "$here"
"$cpy" -d "$here/../../../guest-sdk/wit" -w filter componentize app -o "$out" >/dev/null
