#!/usr/bin/env bash
# Wall times of the local provider (reported, not a test): launching 2 and
# 10 instances from the cached base image, until they run with their
# security groups applied and until each answers SSH; an idempotent
# relaunch; destroy. Usage: bash scripts/bench-local.sh [COUNTS...]
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/setup.sh
ensure_rust
ensure_docker
ensure_labrun_release
counts=("$@")
[ ${#counts[@]} -gt 0 ] || counts=(2 10)

export LABRUN_STATE_DIR
LABRUN_STATE_DIR=$(mktemp -d)
work=$(mktemp -d)
labs=()
cleanup() {
    for lab in "${labs[@]}"; do "$LABRUN_BIN" destroy --lab "$lab" >/dev/null 2>&1 || true; done
    rm -rf "$LABRUN_STATE_DIR" "$work"
}
trap cleanup EXIT

cat > "$work/launch.rhai" <<'RHAI'
let p = params(#{ n: 2 });
let g = sg::ensure(#{ name: "ssh" });
g.allow(#{ port: 22, from: operator_cidr() });
let specs = [];
for i in 1..=p.n { specs.push(#{ name: `i${i}`, security_groups: [g] }); }
for x in ec2::launch(specs) { print(`port ${x.ssh_port}`); }
RHAI

now() { echo "$EPOCHREALTIME"; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }

echo "building (or finding) the base image..." >&2
"$LABRUN_BIN" images --build debian-12 >/dev/null

printf '%-10s %-12s %-12s %-12s %-10s\n' instances launch "all ssh" relaunch destroy
for n in "${counts[@]}"; do
    lab="bench-$n-$$"
    labs+=("$lab")
    key="$LABRUN_STATE_DIR/labs/$lab/id_ed25519"
    t0=$(now)
    out=$("$LABRUN_BIN" run "$work/launch.rhai" --lab "$lab" --set "n=$n" --output plain 2>&1)
    launch=$(since "$t0")
    for port in $(printf '%s\n' "$out" | awk '$1 == "port" { print $2 }'); do
        until ssh -i "$key" -p "$port" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
            -o BatchMode=yes -o LogLevel=ERROR -o ConnectTimeout=5 ubuntu@127.0.0.1 true 2>/dev/null; do
            sleep 0.05
        done
    done
    ssh_all=$(since "$t0")
    t1=$(now)
    "$LABRUN_BIN" run "$work/launch.rhai" --lab "$lab" --set "n=$n" --output plain >/dev/null 2>&1
    relaunch=$(since "$t1")
    t2=$(now)
    "$LABRUN_BIN" destroy --lab "$lab" >/dev/null 2>&1
    destroy=$(since "$t2")
    printf '%-10s %-12s %-12s %-12s %-10s\n' "$n" "${launch}s" "${ssh_all}s" "${relaunch}s" "${destroy}s"
done
