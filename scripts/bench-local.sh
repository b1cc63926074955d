#!/usr/bin/env bash
# Wall times of the local provider (reported, not a test): launching 1, 2
# and 10 instances from the cached base image, until they run with their
# security groups applied and until each answers SSH (systemd booted); an
# idempotent relaunch; destroy.
#
# Side by side with another labrun binary when LABRUN_BASELINE_BIN names
# one (e.g. one built from before instances booted systemd, whose instances
# ran sshd as PID 1): each row is measured with both, in turn.
#
# Usage: [LABRUN_BASELINE_BIN=...] [ROUNDS=3] bash scripts/bench-local.sh [COUNTS...]
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/setup.sh
ensure_rust
ensure_docker
ensure_labrun_release
counts=("$@")
[ ${#counts[@]} -gt 0 ] || counts=(1 2 10)
rounds="${ROUNDS:-3}"
bins=("this=$LABRUN_BIN")
[ -n "${LABRUN_BASELINE_BIN:-}" ] && bins+=("baseline=$LABRUN_BASELINE_BIN")

export LABRUN_STATE_DIR
LABRUN_STATE_DIR=$(mktemp -d)
work=$(mktemp -d)
labs=()
cleanup() {
    for entry in "${bins[@]}"; do
        for lab in "${labs[@]}"; do "${entry#*=}" destroy --lab "$lab" >/dev/null 2>&1 || true; done
    done
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

for entry in "${bins[@]}"; do
    echo "building (or finding) the base image of ${entry%%=*}..." >&2
    "${entry#*=}" images --build debian-12 >/dev/null
done
echo "$(nproc) CPUs, load $(cut -d' ' -f1 /proc/loadavg), $rounds rounds" >&2

printf '%-9s %-10s %-6s %-10s %-12s %-10s %-10s\n' binary instances round launch "all ssh" relaunch destroy
for n in "${counts[@]}"; do
    for r in $(seq "$rounds"); do
        for entry in "${bins[@]}"; do
            name="${entry%%=*}" bin="${entry#*=}"
            lab="bench-$name-$n-$r-$$"
            labs+=("$lab")
            key="$LABRUN_STATE_DIR/labs/$lab/id_ed25519"
            t0=$(now)
            out=$("$bin" run "$work/launch.rhai" --lab "$lab" --set "n=$n" --output plain 2>&1)
            launch=$(since "$t0")
            for port in $(printf '%s\n' "$out" | awk '$1 == "port" { print $2 }'); do
                until ssh -i "$key" -p "$port" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
                    -o BatchMode=yes -o LogLevel=ERROR -o ConnectTimeout=5 ubuntu@127.0.0.1 true 2>/dev/null; do
                    sleep 0.05
                done
            done
            ssh_all=$(since "$t0")
            t1=$(now)
            "$bin" run "$work/launch.rhai" --lab "$lab" --set "n=$n" --output plain >/dev/null 2>&1
            relaunch=$(since "$t1")
            t2=$(now)
            "$bin" destroy --lab "$lab" >/dev/null 2>&1
            destroy=$(since "$t2")
            printf '%-9s %-10s %-6s %-10s %-12s %-10s %-10s\n' "$name" "$n" "$r" "${launch}s" \
                "${ssh_all}s" "${relaunch}s" "${destroy}s"
        done
    done
done
