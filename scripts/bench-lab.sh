#!/usr/bin/env bash
# Wall times of the shipped lab on the local provider (reported, not a
# test): playbooks/mysql_client_server.rhai from nothing (base image cached),
# the converged re-run (must report changed=0), and destroy; per image
# (`--set image=...`: debian-12 MariaDB 10.11, debian-13 MariaDB 11.8,
# debian-sid MySQL).
# Usage: bash scripts/bench-lab.sh [ROUNDS] [PLAYBOOK] [IMAGE...]
#        (defaults: 3, the shipped lab, debian-12)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/setup.sh
ensure_rust
ensure_docker
ensure_labrun_release
rounds="${1:-3}"
playbook="${2:-playbooks/mysql_client_server.rhai}"
images=("${@:3}")
[ ${#images[@]} -gt 0 ] || images=(debian-12)

export LABRUN_STATE_DIR
LABRUN_STATE_DIR=$(mktemp -d)
lab="bench-lab-$$"
cleanup() {
    "$LABRUN_BIN" destroy --lab "$lab" >/dev/null 2>&1 || true
    rm -rf "$LABRUN_STATE_DIR"
}
trap cleanup EXIT

now() { echo "$EPOCHREALTIME"; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }
# The `changed` count of a JSON run's final event.
changed_of() { tail -n 1 "$1" | sed -n 's/.*"changed":\([0-9]*\).*/\1/p'; }

for image in "${images[@]}"; do
    echo "building (or finding) the base image $image..." >&2
    "$LABRUN_BIN" images --build "$image" >/dev/null
done
echo "$playbook, $(nproc) CPUs, load $(cut -d' ' -f1 /proc/loadavg), binary $LABRUN_BIN" >&2

printf '%-12s %-6s %-14s %-22s %-10s\n' image round "full lab" "re-run (changed)" destroy
for image in "${images[@]}"; do
    for r in $(seq "$rounds"); do
        out="$LABRUN_STATE_DIR/run.json"
        t0=$(now)
        "$LABRUN_BIN" run "$playbook" --lab "$lab" --set "image=$image" --output json >"$out" 2>&1 \
            || { cat "$out" >&2; echo "the lab failed" >&2; exit 1; }
        full=$(since "$t0")
        t1=$(now)
        "$LABRUN_BIN" run "$playbook" --lab "$lab" --set "image=$image" --output json >"$out" 2>&1 \
            || { cat "$out" >&2; echo "the re-run failed" >&2; exit 1; }
        rerun=$(since "$t1")
        changed=$(changed_of "$out")
        t2=$(now)
        "$LABRUN_BIN" destroy --lab "$lab" >/dev/null 2>&1
        destroy=$(since "$t2")
        printf '%-12s %-6s %-14s %-22s %-10s\n' "$image" "$r" "${full}s" "${rerun}s (${changed})" "${destroy}s"
        [ "$changed" = 0 ] || { echo "the re-run changed $changed steps" >&2; exit 1; }
    done
done
