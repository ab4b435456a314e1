#!/usr/bin/env bash
# AssemblyScript guest filters (command profile): npm assemblyscript and @assemblyscript/wasi-shim, pinned,
# installed into a prefix under the tools dir. Idempotent: a second run only checks.
#
#   scripts/toolchains/assemblyscript.sh           # install if missing; print the prefix (node_modules inside)
#   scripts/toolchains/assemblyscript.sh --print   # print it only if installed (exit 1 otherwise)
set -euo pipefail
assemblyscript=0.28.20
wasi_shim=0.1.0
tools="${REDRIVE_TOOLS_DIR:-/var/tmp/redrive-tools}"
prefix="$tools/assemblyscript-$assemblyscript"
installed() {
    [ -x "$prefix/node_modules/.bin/asc" ] && [ -f "$prefix/node_modules/@assemblyscript/wasi-shim/asconfig.json" ] &&
        grep -q "\"version\": \"$wasi_shim\"" "$prefix/node_modules/@assemblyscript/wasi-shim/package.json" &&
        "$prefix/node_modules/.bin/asc" --version 2>/dev/null | grep -q "$assemblyscript"
}
if [ "${1:-}" = --print ]; then
    installed && echo "$prefix" && exit 0
    exit 1
fi
if ! installed; then
    # Node.js trusts only its own CA list; where the system's bundle holds an extra CA (a TLS-inspecting proxy
    # in front of the registry), npm fails with SELF_SIGNED_CERT_IN_CHAIN unless it is added.
    if [ -z "${NODE_EXTRA_CA_CERTS:-}" ] && [ -r /etc/ssl/certs/ca-certificates.crt ]; then
        export NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt
    fi
    command -v npm >/dev/null 2>&1 || { echo "toolchains/assemblyscript: npm is needed (Node.js 18 or later)" >&2; exit 1; }
    echo "toolchains/assemblyscript: installing assemblyscript@$assemblyscript and @assemblyscript/wasi-shim@$wasi_shim (npm) into $prefix" >&2
    rm -rf "$prefix"
    mkdir -p "$prefix"
    printf '{"name":"redrive-as-tools","private":true}\n' >"$prefix/package.json"
    npm install --prefix "$prefix" --no-audit --no-fund --silent \
        "assemblyscript@$assemblyscript" "@assemblyscript/wasi-shim@$wasi_shim" || {
        echo "toolchains/assemblyscript: npm could not install the packages (is the registry reachable?)" >&2
        exit 1
    }
fi
echo "toolchains/assemblyscript: $("$prefix/node_modules/.bin/asc" --version)" >&2
echo "$prefix"
