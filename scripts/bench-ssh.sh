#!/usr/bin/env bash
# Per-command overhead of `s.run("true")` over one SSH connection, against
# OpenSSH's own client multiplexed through a ControlMaster, on the same local
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

ensure_labrun_release
BIN=$LABRUN_BIN
work=$(mktemp -d)
export LABRUN_STATE_DIR="$work/state"
LAB=bench-ssh
cleanup() {
    [ -S "$work/cm" ] && ssh -o ControlPath="$work/cm" -O exit x 2>/dev/null || true
    "$BIN" destroy --lab "$LAB" >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

# One instance that lets this machine in on port 22.
cat >"$work/launch.rhai" <<'EOF'
let g = sg::ensure(#{ name: "bench-ssh", description: "ssh benchmark" });
g.allow(#{ port: 22, from: operator_cidr() });
let x = ec2::launch(#{ name: "bench", security_groups: [g] });
ssh::connect(x);
print(`instance ${x.public_ip} ${x.ssh_port} ${x.user}`);
EOF
read -r host port user < <("$BIN" "$work/launch.rhai" --lab "$LAB" --output plain 2>&1 |
    sed -n 's/^instance //p')
key="$LABRUN_STATE_DIR/labs/$LAB/id_ed25519"

SSH=(ssh -i "$key" -p "$port" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null
     -o LogLevel=ERROR -o ControlPath="$work/cm" "$user@$host")
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
let s = ssh::connect(ec2::find("bench"));
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
    "$BIN" "$work/bench.rhai" --lab "$LAB" --output plain 2>&1 | sed -n 's/^ms //p' >>"$work/labrun.ms"
}

for r in $(seq "$ROUNDS"); do
    echo "round $r/$ROUNDS: $N calls each" >&2
    openssh_round
    labrun_round
done
echo
echo "per-command overhead of \`true\` on one connection ($user@$host:$port, same run)"
printf '  %-56s %s\n' "labrun s.run(\"true\") (russh, pooled session)" "$(stats "$work/labrun.ms")"
printf '  %-56s %s\n' "$(ssh -V 2>&1 | cut -d, -f1) ControlMaster client" "$(stats "$work/openssh.ms")"
