#!/usr/bin/env bash
# Build route-by-error (AssemblyScript) to a WASI preview-1 command module.
#
#   filters/assemblyscript/route-by-error/build.sh OUT.wasm
#
# asc and @assemblyscript/wasi-shim come from scripts/toolchains/assemblyscript.sh (npm, pinned).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="$(realpath -m "${1:?usage: build.sh OUT.wasm}")"
prefix="$(bash "$here/../../../scripts/toolchains/assemblyscript.sh" --print 2>/dev/null)" ||
    { echo "build.sh: AssemblyScript not found: run scripts/toolchains/assemblyscript.sh (or scripts/guest-toolchains.sh assemblyscript)" >&2; exit 1; }
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# asc resolves "extends" and the shim through node_modules next to the config: build in a scratch copy. The JSON
# reader and the stdin loop are the `redrive filter new` template's (templates/assemblyscript/assembly/).
cp -r "$here/assembly" "$here/asconfig.json" "$work/"
cp "$here/../../../templates/assemblyscript/assembly/json.ts" "$here/../../../templates/assemblyscript/assembly/lines.ts" "$work/assembly/"
ln -s "$prefix/node_modules" "$work/node_modules"
mkdir -p "$(dirname "$out")"
(cd "$work" && "$prefix/node_modules/.bin/asc" assembly/index.ts --config asconfig.json --target release -o "$out")
