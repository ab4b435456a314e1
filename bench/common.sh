# Shared by the broker benchmarks (sourced by bench/sqs/run.sh, bench/rabbitmq/run.sh, bench/fleet/run.sh): messages,
# the redrive binary and the 3-module filter chain, a Python venv of one pinned package, and the machine's line.
# The sourcing script sets `started=$SECONDS`, `repo` (the repository) and `redrive` (the binary's path) first.

say() { printf '\n== %s (t+%ss)\n' "$*" "$((SECONDS - started))" >&2; }
die() { echo "run.sh: $*" >&2; exit 1; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# The chain every benchmark runs: route-by-error (replaying what it does not know), repair-json, drop-test-traffic.
filters="$repo/build/filters"
chain=(route-by-error repair-json drop-test-traffic)
modules=("$filters/route-by-error.wasm?default=replay" "$filters/repair-json.wasm" "$filters/drop-test-traffic.wasm")
chain_args=()
for m in "${modules[@]}"; do chain_args+=(-f "$m"); done

# build_what_is_missing: the release binary at $redrive and the chain's filters, each built only if missing.
build_what_is_missing() {
    if [ ! -x "$redrive" ]; then
        say "no $redrive: building it (cargo build --release -p redrive --bin redrive)"
        (cd "$repo" && cargo build --release -p redrive --bin redrive)
    fi
    local missing=() f
    for f in "${chain[@]}"; do [ -f "$filters/$f.wasm" ] || missing+=("$f"); done
    if [ "${#missing[@]}" -gt 0 ]; then
        say "building the filters: ${missing[*]}"
        "$repo/scripts/build-filters.sh" "${chain[@]}"
    fi
}

# python_venv DIR PACKAGE==VERSION: a venv at DIR holding that package, installed once; prints its python.
python_venv() {
    local dir="$1" package="$2"
    if [ ! -e "$dir/.installed-$package" ]; then
        say "installing $package into $dir"
        rm -rf "$dir"
        python3 -m venv "$dir" >&2 || die "python3 -m venv failed: install python3-venv"
        "$dir/bin/pip" install -q --disable-pip-version-check "$package" >&2 || die "could not install $package"
        touch "$dir/.installed-$package"
    fi
    echo "$dir/bin/python"
}

# machine_line: "CPU model, N CPUs, M GiB" for the tables.
machine_line() {
    local cpu mem
    cpu="$(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -1)"
    mem="$(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo)"
    echo "$cpu, $(nproc) CPUs, $mem"
}
