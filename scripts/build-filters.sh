#!/usr/bin/env bash
# Build redrive filters (Rust) to WebAssembly components.
#
#   scripts/build-filters.sh [PACKAGE...]
#
# Without arguments: the example filters (filters/route-by-error,
# filters/repair-json, filters/drop-test-traffic), every test fixture in
# tests/fixtures/filters/ (components) and in tests/fixtures/commands/
# (command-profile modules, wasm32-wasip1). Each module is copied to
# build/filters/<package-name>.wasm. Works from any directory; honours
# CARGO_TARGET_DIR (default: <repo>/target).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

target_triple="wasm32-wasip2"
profile="wasm"
target_dir="${CARGO_TARGET_DIR:-$repo/target}"
case "$target_dir" in
    /*) ;;
    *) target_dir="$repo/$target_dir" ;;
esac
out_dir="$repo/build/filters"

die() {
    echo "build-filters: $*" >&2
    exit 1
}

command -v cargo >/dev/null 2>&1 || die "cargo not found: run scripts/setup.sh to install the pinned Rust toolchain"

# The rustc that cargo will use here (rust-toolchain.toml applies from the repo root).
sysroot="$(rustc --print sysroot 2>/dev/null)" ||
    die "rustc is not usable here (is the pinned toolchain installed?): run scripts/setup.sh"
if [ ! -d "$sysroot/lib/rustlib/$target_triple" ]; then
    die "the Rust target $target_triple is not installed for $(rustc --version 2>/dev/null || echo rustc): run scripts/setup.sh (or: rustup target add $target_triple)"
fi

package_name() { # <dir>: the [package] name in <dir>/Cargo.toml
    sed -n 's/^[[:space:]]*name[[:space:]]*=[[:space:]]*"\([^"]*\)".*/\1/p' "$1/Cargo.toml" | head -n 1
}

# Command-profile fixtures (WASI preview-1 programs): built only when building everything.
commands=()
if [ "$#" -eq 0 ]; then
    for dir in "$repo"/tests/fixtures/commands/*/; do
        [ -f "$dir/Cargo.toml" ] || continue
        name="$(package_name "$dir")"
        [ -n "$name" ] || die "no package name in $dir/Cargo.toml"
        commands+=("$name")
    done
fi

packages=()
if [ "$#" -gt 0 ]; then
    packages=("$@")
else
    packages=(route-by-error repair-json drop-test-traffic)
    for dir in "$repo"/tests/fixtures/filters/*/; do
        [ -f "$dir/Cargo.toml" ] || continue
        name="$(package_name "$dir")"
        [ -n "$name" ] || die "no package name in $dir/Cargo.toml"
        packages+=("$name")
    done
fi

cargo_args=()
for pkg in "${packages[@]}"; do
    cargo_args+=(-p "$pkg")
done

echo "build-filters: cargo build --profile $profile --target $target_triple ${cargo_args[*]}" >&2
cargo build --profile "$profile" --target "$target_triple" "${cargo_args[@]}"

command_args=()
for pkg in "${commands[@]}"; do
    command_args+=(-p "$pkg")
done
if [ "${#commands[@]}" -gt 0 ]; then
    [ -d "$sysroot/lib/rustlib/wasm32-wasip1" ] ||
        die "the Rust target wasm32-wasip1 is not installed: run scripts/setup.sh (or: rustup target add wasm32-wasip1)"
    echo "build-filters: cargo build --profile $profile --target wasm32-wasip1 ${command_args[*]}" >&2
    cargo build --profile "$profile" --target wasm32-wasip1 "${command_args[@]}"
fi

mkdir -p "$out_dir"
for pkg in "${commands[@]}"; do
    built="$target_dir/wasm32-wasip1/$profile/$pkg.wasm"
    [ -f "$built" ] || die "$pkg: expected $built (is it a binary crate?)"
    cp "$built" "$out_dir/$pkg.wasm"
    size="$(wc -c <"$out_dir/$pkg.wasm" | tr -d ' ')"
    printf '%s\t%s bytes (%s KiB, command profile)\n' "build/filters/$pkg.wasm" "$size" "$(((size + 1023) / 1024))"
done

have_wasm_tools=false
if command -v wasm-tools >/dev/null 2>&1; then
    have_wasm_tools=true
else
    echo "build-filters: wasm-tools not on PATH, skipping the component check" >&2
fi

for pkg in "${packages[@]}"; do
    crate="${pkg//-/_}"
    built="$target_dir/$target_triple/$profile/$crate.wasm"
    [ -f "$built" ] || die "$pkg: expected $built (is its crate-type \"cdylib\"?)"
    out="$out_dir/$pkg.wasm"
    cp "$built" "$out"
    if $have_wasm_tools; then
        wit="$(wasm-tools component wit "$out" 2>&1)" ||
            die "$pkg: $out is not a WebAssembly component: $wit"
        for export in init decide; do
            grep -q "export $export: func" <<<"$wit" ||
                die "$pkg: $out does not export '$export' (is it built with redrive_guest::export_filter!?)"
        done
    fi
    size="$(wc -c <"$out" | tr -d ' ')"
    printf '%s\t%s bytes (%s KiB)\n' "${out#"$repo"/}" "$size" "$(((size + 1023) / 1024))"
done
