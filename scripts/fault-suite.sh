#!/usr/bin/env bash
# The fault suite, long version: tests/integration/faults.rs with its
# `long_` tests included. Faults injected into real runs of the shipped lab
# on the local provider: kill -9 at every step boundary from scratch and at
# ROUNDS random points (inside launch, inside install, anywhere in a run,
# in a converged re-run), sshd killed and frozen mid-install, the engine
# frozen at each step that uses it (through a relay, never the shared
# dockerd), an instance removed mid-run, hostile input. It fails when a
# fault leaves anything behind, corrupts a ledger, leaks a secret or hangs;
# then prints what it injected and what was left.
# Usage: bash scripts/fault-suite.sh [ROUNDS]   (random kills; default 12)
#        LABRUN_FAULT_SEED=N repeats the random points of an earlier run.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/setup.sh
ensure_rust
ensure_docker

rounds="${1:-12}"
tally=$(mktemp)
log=$(mktemp)
trap 'rm -f "$tally" "$log"' EXIT
export LABRUN_FAULT_TALLY="$tally" LABRUN_FAULT_ROUNDS="$rounds"

echo "fault suite: $rounds random kills, $(nproc) CPUs, load $(cut -d' ' -f1 /proc/loadavg)" >&2
t0=$EPOCHREALTIME
status=0
cargo test --test integration -- faults:: --include-ignored --test-threads 2 >"$log" 2>&1 || status=$?
secs=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.0f", b - a }')
if [ "$status" != 0 ]; then
    cat "$log" >&2
    echo "the fault suite FAILED (above)" >&2
fi
grep -E '^test faults::' "$log" >&2 || true

# One line per test: fault-tally test=NAME faults=N left=N leaked=N runs=N destroys=N seconds=N
awk -v secs="$secs" '
/^fault-tally / {
    line = $0; sub(/^fault-tally test=/, "", line)
    name = line; sub(/ faults=.*/, "", name)
    split(substr(line, length(name) + 2), kv, " ")
    for (i in kv) { split(kv[i], p, "="); v[p[1]] = p[2] }
    printf "%-24s %7d %6d %7d %6d %9d %8ds\n", name, v["faults"], v["left"], v["leaked"], v["runs"], v["destroys"], v["seconds"]
    f += v["faults"]; l += v["left"]; k += v["leaked"]; r += v["runs"]; d += v["destroys"]; n++
}
BEGIN { printf "%-24s %7s %6s %7s %6s %9s %9s\n", "test", "faults", "left", "leaked", "runs", "destroys", "time" }
END {
    printf "%-24s %7d %6d %7d %6d %9d %8ds\n", "total (" n " tests)", f, l, k, r, d, secs
    printf "faults injected: %d, resources left: %d, secrets leaked: %d\n", f, l, k
}' "$tally"
exit "$status"
