#!/usr/bin/env bash
# Check the Kubernetes manifests under deploy/ against Kubernetes' own schemas, offline (PyPI
# kubernetes-validate, pinned, in its own venv under /var/tmp/redrive-tools).
#
#   scripts/check-manifests.sh
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tools_dir="${REDRIVE_TOOLS_DIR:-/var/tmp/redrive-tools}"
version=1.37.0
kubernetes_version=1.31.0
venv="$tools_dir/kubernetes-validate-$version"
say() { printf '\033[1mcheck-manifests:\033[0m %s\n' "$*" >&2; }

if [ ! -e "$venv/.installed" ]; then
    say "installing kubernetes-validate==$version into $venv"
    rm -rf "$venv"
    mkdir -p "$tools_dir"
    python3 -m venv "$venv" || { say "python3 -m venv failed: install python3-venv"; exit 1; }
    "$venv/bin/pip" install --quiet --disable-pip-version-check "kubernetes-validate==$version"
    touch "$venv/.installed"
fi
say "deploy/kubernetes/*.yaml against Kubernetes $kubernetes_version (strict: unknown fields are errors)"
"$venv/bin/kubernetes-validate" --strict --kubernetes-version "$kubernetes_version" "$repo"/deploy/kubernetes/*.yaml
