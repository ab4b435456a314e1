#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit tests and end-to-end tests (the real binary, real filters
# built from source, real brokers on 127.0.0.1). Installs and starts what is missing first.
#
#   scripts/test.sh
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

scripts/setup.sh
scripts/services.sh
# Chromium (headless) for the report tests.
scripts/browser.sh
# Guest toolchains (C, Zig, Go, Python, JavaScript/TypeScript, AssemblyScript; pinned, cached under
# /var/tmp/redrive-tools) and route-by-error built from source in each language, for the conformance tests.
scripts/guest-toolchains.sh
scripts/build-guest-filters.sh

echo "test: Kubernetes manifests (deploy/kubernetes)" >&2
scripts/check-manifests.sh

echo "test: cargo fmt --check" >&2
cargo fmt --all -- --check

echo "test: cargo clippy (workspace, all targets, warnings are errors)" >&2
cargo clippy --release --workspace --all-targets -- -D warnings
echo "test: cargo clippy, redrive without the optional brokers (what scripts/quickstart.sh builds)" >&2
cargo clippy --release -p redrive --no-default-features --all-targets -- -D warnings

echo "test: cargo test (workspace)" >&2
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
set +e
cargo test --release --workspace 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
# One closing line for the whole suite (cargo prints one per test binary, the last often a crate's empty doc tests).
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i) ~ /^passed;?$/) p += $(i-1); if ($(i) ~ /^failed;?$/) f += $(i-1) } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
