#!/usr/bin/env bash
# The quickstart on a fresh machine (issue 18): how long `scripts/quickstart.sh` (no broker clients) takes from a clean clone with
# nothing cached (no Rust toolchain, no crates, no build outputs, no compiled modules), and what building every
# broker in costs after it (`scripts/setup.sh`, what a user runs next to replay from a broker), and, side by
# side, both builds from nothing: files only, and every broker (what scripts/quickstart.sh --every-broker builds).
#
#   bench/first-build/run.sh                  # everything, the toolchain downloaded too (30-50 min on 2 cores)
#   KEEP_TOOLCHAIN=1 bench/first-build/run.sh # use the installed toolchain (the rest still fresh)
#   COMPARE=0 bench/first-build/run.sh        # skip the two comparison builds (~19 min less)
#
# Works in a temporary directory under /var/tmp (several GB, removed at the end) with its own CARGO_HOME,
# RUSTUP_HOME (unless KEEP_TOOLCHAIN=1) and target directory, on a clone of the repository's HEAD; needs the
# network for crates.io (and static.rust-lang.org). Prints each phase's wall time and the machine's CPU time.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
work="$(mktemp -d /var/tmp/redrive-first-build.XXXXXX)"
trap 'rm -rf "$work"' EXIT

git clone -q "$repo" "$work/repo"
# rustup wants itself under CARGO_HOME/bin once it installs a toolchain there (as on a machine set up by rustup-init).
mkdir -p "$work/cargo/bin"
cp "$(command -v rustup)" "$work/cargo/bin/rustup"
rustup_home="$work/rustup"
[ "${KEEP_TOOLCHAIN:-}" = 1 ] && rustup_home="${RUSTUP_HOME:-$HOME/.rustup}"

# Run "$@" in the clone with a clean environment; print "<wall s> <cpu s>" of the whole command tree.
timed() {
    local log="$1"
    shift
    local start end cpu
    start=$(date +%s.%N)
    cpu=$( (cd "$work/repo" && env -i HOME="$HOME" PATH="$PATH" CARGO_HOME="$work/cargo" RUSTUP_HOME="$rustup_home" \
        CARGO_TARGET_DIR="$work/target" REDRIVE_CACHE_DIR="$work/modules" CARGO_INCREMENTAL=0 \
        /usr/bin/time -f '%U %S' -o "$work/time" "$@" </dev/null >"$log" 2>&1) && awk '{ print $1 + $2 }' "$work/time") ||
        { echo "first-build: $* failed; its output:" >&2; tail -30 "$log" >&2; exit 1; }
    end=$(date +%s.%N)
    echo "$(echo "$end - $start" | bc) $cpu"
}

echo "first-build: scripts/quickstart.sh in a fresh clone (toolchain: ${KEEP_TOOLCHAIN:+kept}${KEEP_TOOLCHAIN:-downloaded})" >&2
qs="$(timed "$work/quickstart.log" scripts/quickstart.sh)"
grep -q "replayed" "$work/quickstart.log" || { echo "first-build: the quickstart did not report its run" >&2; exit 1; }
echo "first-build: scripts/setup.sh after it (every broker built in)" >&2
more="$(timed "$work/setup.log" scripts/setup.sh)"
# Crates compiled for redrive by that second build (before it turns to the wasm fixtures): the broker clients it
# adds, plus any shared crate whose features changed (feature-unification/Cargo.toml keeps those out;
# tests/feature_unification_test.rs checks it).
compiled=$(awk '/building the example filters/ { exit } /^ *Compiling / { n++ } END { print n + 0 }' "$work/setup.log")

all="0 0"
min="0 0"
if [ "${COMPARE:-1}" != 0 ]; then
    echo "first-build: for comparison, every broker in one build from nothing (crates and toolchain kept)" >&2
    rm -rf "$work/target"
    all="$(timed "$work/all.log" cargo build --release -p redrive)"
    rm -rf "$work/target"
    min="$(timed "$work/min.log" cargo build --release -p redrive --no-default-features)"
fi
read -r qs_wall qs_cpu <<<"$qs"
read -r more_wall more_cpu <<<"$more"
read -r all_wall all_cpu <<<"$all"
read -r min_wall min_cpu <<<"$min"

echo
echo "machine: $(nproc) CPUs, $(lscpu | sed -n 's/^Model name: *//p'), $(git -C "$repo" rev-parse --short HEAD)"
printf '%-62s %9s %9s\n' "what" "wall s" "CPU s"
printf '%-62s %9.0f %9.0f\n' "scripts/quickstart.sh, fresh (toolchain, crates, ...)" "$qs_wall" "$qs_cpu"
printf '%-62s %9.0f %9.0f\n' "then scripts/setup.sh (the other brokers, all fixtures)" "$more_wall" "$more_cpu"
printf 'crates compiled for redrive by that scripts/setup.sh: %d\n' "$compiled"
printf 'quickstart: %.1f min (target <= 8)\n' "$(echo "$qs_wall / 60" | bc -l)"
if [ "${COMPARE:-1}" != 0 ]; then
    printf '%-62s %9.0f %9.0f\n' "cargo build --release -p redrive --no-default-features" "$min_wall" "$min_cpu"
    printf '%-62s %9.0f %9.0f\n' "cargo build --release -p redrive (every broker)" "$all_wall" "$all_cpu"
    printf "the quickstart's build: %.2fx the every-broker build's wall time\n" "$(echo "$min_wall / $all_wall" | bc -l)"
fi
