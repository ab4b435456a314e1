#!/usr/bin/env bash
# Fuzz every decoder of outside input (host/src/decoders.rs) with cargo-fuzz (libFuzzer) for a set time each, growing the corpora kept in fuzz/corpus/. Installs what it needs: the nightly
# toolchain (rustup) and cargo-fuzz (pinned, under /var/tmp/redrive-tools).
#
#   scripts/fuzz.sh                 # every target, 60 s each
#   scripts/fuzz.sh 300 endpoint    # one target, 5 minutes
#
# A crash stops the script with libFuzzer's report and the input under fuzz/artifacts/<target>/; turn it
# into a regression test beside the decoder, fix, and run again. At the end each target's corpus is
# minimised (cargo fuzz cmin) so the repository keeps a small one, and a line per target says how long it
# ran, how many runs it made and the corpus size.
set -euo pipefail
# No AddressSanitizer: under it librdkafka's configure cannot link its zstd check (zstd-sys gets built
# instrumented) and the build fails. The decoders are safe Rust, so what finds bugs is libFuzzer's coverage
# guidance with panics and debug assertions (overflow checks), which stay on.
sanitizer=(--sanitizer none)

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
seconds="${1:-60}"
shift || true
tools=/var/tmp/redrive-tools/cargo-fuzz
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/redrive-fuzz/target}"
export RUSTUP_AUTO_INSTALL=0

if ! rustup run nightly rustc --version >/dev/null 2>&1; then
    echo "fuzz: installing the nightly toolchain (cargo-fuzz needs it)" >&2
    rustup toolchain install nightly --profile minimal
fi
if [ ! -x "$tools/bin/cargo-fuzz" ]; then
    echo "fuzz: installing cargo-fuzz 0.13.2 into $tools" >&2
    cargo install --locked --root "$tools" cargo-fuzz --version 0.13.2
fi
export PATH="$tools/bin:$PATH"

cd "$repo/fuzz"
# The main build's versions: the fuzz workspace resolves nothing new but libfuzzer-sys.
[ -f Cargo.lock ] || cp "$repo/Cargo.lock" Cargo.lock
mapfile -t all < <(cargo +nightly fuzz list)
targets=("$@")
[ "${#targets[@]}" -gt 0 ] || targets=("${all[@]}")

echo "fuzz: building ${#targets[@]} targets (the first build compiles redrive with coverage instrumentation)" >&2
cargo +nightly fuzz build "${sanitizer[@]}"

summary=()
for target in "${targets[@]}"; do
    corpus="corpus/$target"
    mkdir -p "$corpus" "artifacts/$target"
    echo "fuzz: $target for ${seconds}s" >&2
    log="$(mktemp)"
    set +e
    cargo +nightly fuzz run "${sanitizer[@]}" "$target" "$corpus" -- -max_total_time="$seconds" -rss_limit_mb=2048 \
        -max_len=65536 -print_final_stats=1 2>&1 | tee "$log" | grep -E "^(#[0-9]+.*(NEW|pulse|DONE)|==|SUMMARY|Done)" | tail -5
    status=${PIPESTATUS[0]}
    set -e
    runs="$(awk '/stat::number_of_executed_units:/ {print $2}' "$log")"
    if [ "$status" -ne 0 ]; then
        tail -60 "$log" >&2
        echo "fuzz: $target FOUND A PROBLEM (exit $status); the input is in fuzz/artifacts/$target/" >&2
        exit 1
    fi
    rm -f "$log"
    cargo +nightly fuzz cmin "${sanitizer[@]}" "$target" "$corpus" >/dev/null 2>&1
    summary+=("$target: ${seconds}s, ${runs:-?} runs, nothing found, corpus $(ls "$corpus" | wc -l) inputs")
done
printf 'fuzz: %s\n' "${summary[@]}"
