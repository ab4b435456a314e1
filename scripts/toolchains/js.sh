#!/usr/bin/env bash
# JavaScript and TypeScript guest filters (component profile): npm @bytecodealliance/componentize-js and
# typescript, pinned, installed into a prefix under the tools dir. Idempotent: a second run only checks.
#
#   scripts/toolchains/js.sh           # install if missing; print the directory holding componentize-js and tsc
#   scripts/toolchains/js.sh --print   # print it only if installed (exit 1 otherwise)
set -euo pipefail
componentize_js=0.23.0
typescript=5.9.3
tools="${REDRIVE_TOOLS_DIR:-/var/tmp/redrive-tools}"
prefix="$tools/componentize-js-$componentize_js"
bin="$prefix/node_modules/.bin"
installed() {
    [ -x "$bin/componentize-js" ] && [ -x "$bin/tsc" ] &&
        [ "$("$bin/componentize-js" --version 2>/dev/null)" = "$componentize_js" ] &&
        "$bin/tsc" --version 2>/dev/null | grep -q " $typescript"
}
if [ "${1:-}" = --print ]; then
    installed && echo "$bin" && exit 0
    exit 1
fi
if ! installed; then
    # Node.js trusts only its own CA list; where the system's bundle holds an extra CA (a TLS-inspecting proxy
    # in front of the registry), npm fails with SELF_SIGNED_CERT_IN_CHAIN unless it is added.
    if [ -z "${NODE_EXTRA_CA_CERTS:-}" ] && [ -r /etc/ssl/certs/ca-certificates.crt ]; then
        export NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt
    fi
    command -v npm >/dev/null 2>&1 || { echo "toolchains/js: npm is needed (Node.js 18 or later)" >&2; exit 1; }
    echo "toolchains/js: installing @bytecodealliance/componentize-js@$componentize_js and typescript@$typescript (npm) into $prefix" >&2
    rm -rf "$prefix"
    mkdir -p "$prefix"
    printf '{"name":"redrive-js-tools","private":true}\n' >"$prefix/package.json"
    npm install --prefix "$prefix" --no-audit --no-fund --silent \
        "@bytecodealliance/componentize-js@$componentize_js" "typescript@$typescript" || {
        echo "toolchains/js: npm could not install the packages (is the registry reachable?)" >&2
        exit 1
    }
fi
echo "toolchains/js: componentize-js $("$bin/componentize-js" --version), $("$bin/tsc" --version)" >&2
echo "$bin"
