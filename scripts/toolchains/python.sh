#!/usr/bin/env bash
# componentize-py for Python guest filters (component profile): PyPI, pinned, in a venv under the tools dir.
# Idempotent: a second run only checks.
#
#   scripts/toolchains/python.sh           # install if missing; print the componentize-py path
#   scripts/toolchains/python.sh --print   # print it only if installed (exit 1 otherwise)
set -euo pipefail
version=0.25.1
tools="${REDRIVE_TOOLS_DIR:-/var/tmp/redrive-tools}"
venv="$tools/componentize-py-$version"
cpy="$venv/bin/componentize-py"
installed() { [ -x "$cpy" ] && "$cpy" --version 2>/dev/null | grep -q " $version"; }
if [ "${1:-}" = --print ]; then
    installed && echo "$cpy" && exit 0
    exit 1
fi
if ! installed; then
    echo "toolchains/python: installing componentize-py==$version (PyPI) into $venv" >&2
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "componentize-py==$version" || {
        echo "toolchains/python: pip could not install componentize-py==$version from PyPI (is the registry reachable?)" >&2
        exit 1
    }
fi
echo "toolchains/python: $("$cpy" --version)" >&2
echo "$cpy"
