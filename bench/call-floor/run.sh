#!/usr/bin/env bash
# The call-floor experiment (issue 18, "the contract's call cost"): what one filter call costs through today's
# contract (redrive:filter@0.1.0, the whole message lowered into the guest) against a probe world where `decide`
# gets a handle to the message and the filter reads only what it asks for (bench/call-floor/wit/probe.wit, the
# shape a redrive:filter@0.2.0 could take). Rows: route-by-error natively (the baseline), route-by-error.wasm,
# a 0.1.0 filter that reads nothing, and the probe module reading nothing, reading the three failure texts, and
# making route-by-error's decision from them. Prints ns per call and the ratio to native.
#
#   bench/call-floor/run.sh
#
# Builds the three modules (scripts/build-filters.sh), then runs `cargo bench -p redrive --bench call_floor`
# (source: host/benches/call_floor.rs). About 30 s once built; the bench profile's first build takes minutes.
# Honours CARGO_TARGET_DIR. Run it on an idle machine: it measures wall time per call.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$repo"

bash scripts/build-filters.sh route-by-error call-floor-eager-noop call-floor-lazy >&2
echo "machine: $(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -1), $(nproc) CPUs; load $(cut -d' ' -f1-3 /proc/loadavg); $(git rev-parse --short HEAD) $(date -u +%Y-%m-%dT%H:%MZ)"
cargo bench -p redrive --bench call_floor
