#!/usr/bin/env bash
# Per-command overhead of `s.run("true")` over one SSH connection, against
# OpenSSH's own client multiplexed through a ControlMaster, on the same
# instance in the same run. Prints the median (and p90) of N calls each, in
# alternating rounds so both see the same machine load.
#
#   bash scripts/bench-ssh.sh            # N=300 calls per round, 2 rounds
#   N=500 ROUNDS=3 bash scripts/bench-ssh.sh
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/setup.sh
ensure_rust
ensure_docker
N=${N:-300}
ROUNDS=${ROUNDS:-2}
IMAGE=${IMAGE:-labrun-base/debian-12:latest}

cargo build --release --quiet
BIN=$PWD/target/release/labrun
work=$(mktemp -d)
container=
cleanup() {
    [ -S "$work/cm" ] && ssh -o ControlPath="$work/cm" -O exit x 2>/dev/null || true
    [ -n "$container" ] && docker rm -f "$container" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

docker image inspect "$IMAGE" >/dev/null 2>&1 || {
    echo "bench-ssh: image $IMAGE is missing" >&2
    exit 1
}
ssh-keygen -q -t ed25519 -N '' -f "$work/key"
container=$(docker run -d --init --label labrun.bench=ssh -p 127.0.0.1::22 \
    -e LABRUN_AUTHORIZED_KEYS="$(cat "$work/key.pub")" "$IMAGE")
port=$(docker port "$container" 22/tcp | head -n 1 | sed 's/.*://')

SSH=(ssh -i "$work/key" -p "$port" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null
     -o LogLevel=ERROR -o ControlPath="$work/cm" ubuntu@127.0.0.1)
for _ in $(seq 100); do "${SSH[@]}" -o ControlMaster=no true 2>/dev/null && break; sleep 0.1; done
"${SSH[@]}" -o ControlMaster=yes -o ControlPersist=600 -fN
"${SSH[@]}" true    # warm

export LC_ALL=C
# stats FILE: median and p90 of milliseconds, one per line.
stats() { sort -n "$1" | awk '{v[NR]=$1} END {printf "median %.2f ms  p90 %.2f ms  (n=%d)", v[int((NR+1)/2)], v[int(NR*0.9)], NR}'; }

openssh_round() {
    for _ in $(seq "$N"); do
        t0=$EPOCHREALTIME
        "${SSH[@]}" true
        t1=$EPOCHREALTIME
        awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.3f\n", (b - a) * 1000}'
    done >>"$work/openssh.ms"
}

cat >"$work/bench.rhai" <<EOF
let s = ssh::connect(#{host: "127.0.0.1", port: $port, key_file: "$work/key"});
s.run("true");
let times = [];
for i in 0..$N {
    let t = timestamp();
    s.run("true");
    times.push(t.elapsed * 1000.0);
}
for t in times { print(\`ms \${t}\`); }
EOF
labrun_round() {
    LABRUN_STATE_DIR="$work/state" "$BIN" "$work/bench.rhai" --lab bench --output plain 2>&1 \
        | sed -n 's/^ms //p' >>"$work/labrun.ms"
}

for r in $(seq "$ROUNDS"); do
    echo "round $r/$ROUNDS: $N calls each" >&2
    openssh_round
    labrun_round
done
echo
echo "per-command overhead of \`true\` on one connection (same instance, same run)"
printf '  %-44s %s\n' "labrun s.run(\"true\") (russh, one session)" "$(stats "$work/labrun.ms")"
printf '  %-44s %s\n' "OpenSSH $(ssh -V 2>&1 | cut -d, -f1) ControlMaster" "$(stats "$work/openssh.ms")"
