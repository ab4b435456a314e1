#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit tests and end-to-end tests (the real binary, real filters
# built from source). Installs what is missing first.
#
#   scripts/test.sh
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

scripts/setup.sh

echo "test: cargo fmt --check" >&2
cargo fmt --all -- --check

echo "test: cargo clippy (workspace, all targets, warnings are errors)" >&2
cargo clippy --release --workspace --all-targets -- -D warnings

echo "test: cargo test (workspace)" >&2
cargo test --release --workspace
