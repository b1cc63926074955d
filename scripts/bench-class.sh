#!/usr/bin/env bash
# Wall times of classes (reported, not a test), side by side in one run:
# - local classes of N learners with the shipped exercise: `class up`,
#   `class grade` (untouched labs: every check runs and fails) and
#   `class down`, as a ratio to a class of one; the memory one lab takes
#   (its containers' RSS after up), and how many such labs 24 GiB holds;
# - grading time per learner;
# - a class of 30 on moto's EC2 emulator (up, status, down) with the EC2
#   API calls it made, counted by action from moto's own request recording.
# Usage: bash scripts/bench-class.sh [N...]   (default: 1 5 10 max; `max` is
#        the largest class whose labs, solved (MySQL running), fit in 20 of
#        the machine's GiB, measured on the first class's solved lab)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/setup.sh
ensure_rust
ensure_docker
ensure_moto
ensure_labrun_release
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(1 5 10 max)

work=$(mktemp -d)
export LABRUN_STATE_DIR="$work/state"
export LABRUN_COURSE_SECRET="bench-course-secret"
exercise=exercises/mysql_client_server
classes=()
moto_pid=""
cleanup() {
    for c in "${classes[@]}"; do "$LABRUN_BIN" class down "$c" >/dev/null 2>&1 || true; done
    [ -n "$moto_pid" ] && kill "$moto_pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

now() { echo "$EPOCHREALTIME"; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", (b > 0) ? a / b : 0 }'; }
roster() {
    local n=$1 file=$2
    echo "id,name" >"$file"
    for i in $(seq "$n"); do printf 'l%03d,Learner %d\n' "$i" "$i" >>"$file"; done
}
# Resident memory of a lab's containers, in MiB.
lab_mib() {
    local ids
    ids=$(docker ps -q --filter "label=labrun.lab=$1")
    [ -n "$ids" ] || { echo 0; return; }
    docker stats --no-stream --format '{{.MemUsage}}' $ids |
        awk '{ v = $1; u = v; gsub(/[0-9.]/, "", u); gsub(/[A-Za-z]/, "", v);
               m = (u == "GiB") ? v * 1024 : (u == "MiB") ? v : (u == "KiB") ? v / 1024 : v / 1048576;
               s += m } END { printf "%.0f", s }'
}

echo "building (or finding) the images the exercise uses..." >&2
"$LABRUN_BIN" images --build debian-sid >/dev/null
echo "$(nproc) CPUs, $(free -g | awk '/Mem:/ { print $2 }') GiB, load $(cut -d' ' -f1 /proc/loadavg), binary $LABRUN_BIN" >&2

printf '%-9s %-10s %-12s %-10s %-12s %-12s\n' learners "up" "grade" "down" "grade/learner" "ratio up/grade/down"
base_up=0 base_grade=0 base_down=0 per_lab=0 solved_mib=0 max_n=0
for n in "${sizes[@]}"; do
    if [ "$n" = max ]; then
        [ "$max_n" -gt 0 ] || { echo "max: no solved lab was measured" >&2; continue; }
        n=$max_n
    fi
    class="b${n}x$$"
    classes+=("$class")
    roster "$n" "$work/roster-$n.csv"
    t0=$(now)
    "$LABRUN_BIN" class up "$exercise" --roster "$work/roster-$n.csv" --name "$class" --output plain >"$work/up.log" 2>&1 \
        || { cat "$work/up.log" >&2; echo "class up failed" >&2; exit 1; }
    up=$(since "$t0")
    t1=$(now)
    # Untouched labs fail their checks: grade exits 1 by design.
    "$LABRUN_BIN" class grade "$class" --output plain >"$work/grade.log" 2>&1 || true
    grep -q "gradebook" "$work/grade.log" || { cat "$work/grade.log" >&2; echo "class grade failed" >&2; exit 1; }
    grade=$(since "$t1")
    if [ "$per_lab" = 0 ]; then
        per_lab=$(lab_mib "$class.l001")
        # One learner's lab solved: MySQL installed and running.
        "$LABRUN_BIN" exercise solve --class "$class" --learner l001 --output plain >"$work/solve.log" 2>&1 \
            || { cat "$work/solve.log" >&2; echo "exercise solve failed" >&2; exit 1; }
        solved_mib=$(lab_mib "$class.l001")
        [ "$solved_mib" -gt 0 ] && max_n=$(( (20 * 1024) / solved_mib ))
    fi
    t2=$(now)
    "$LABRUN_BIN" class down "$class" >"$work/down.log" 2>&1 \
        || { cat "$work/down.log" >&2; echo "class down failed" >&2; exit 1; }
    down=$(since "$t2")
    if [ "$base_up" = 0 ]; then base_up=$up base_grade=$grade base_down=$down; fi
    per=$(awk -v g="$grade" -v n="$n" 'BEGIN { printf "%.2f", g / n }')
    printf '%-9s %-10s %-12s %-10s %-12s %s / %s / %s\n' "$n" "${up}s" "${grade}s" "${down}s" "${per}s" \
        "$(ratio "$up" "$base_up")" "$(ratio "$grade" "$base_grade")" "$(ratio "$down" "$base_down")"
done
echo
echo "memory of one lab (2 instances, 2 holders): ${per_lab} MiB after class up, ${solved_mib} MiB solved (MySQL running)"
echo "solved labs 20 GiB holds (4 GiB left to the host): ${max_n} (the 'max' row); at their t2.micro limits (1 GiB per instance): 10"

# ------------------------------------------------------------------------
# A class of 30 on moto, with its API calls.
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# moto appends its recording to a file (by default ./moto_recording, kept
# across runs): one of this run's own, emptied before the class starts.
MOTO_ENABLE_RECORDING=True MOTO_RECORDER_FILEPATH="$work/moto-recording" \
    MOTO_AMIS_PATH="$PWD/tests/fixtures/moto-amis.json" \
    "$LABRUN_MOTO_SERVER" -H 127.0.0.1 -p "$port" >"$work/moto.log" 2>&1 &
moto_pid=$!
for _ in $(seq 100); do curl -s "http://127.0.0.1:$port/moto-api/" >/dev/null 2>&1 && break; sleep 0.2; done
curl -s -X POST "http://127.0.0.1:$port/moto-api/recorder/reset-recording" >/dev/null
curl -s -X POST "http://127.0.0.1:$port/moto-api/recorder/start-recording" >/dev/null
aws_env=(env AWS_ENDPOINT_URL="http://127.0.0.1:$port" AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing
         AWS_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true AWS_CONFIG_FILE=/dev/null
         AWS_SHARED_CREDENTIALS_FILE=/dev/null LABRUN_OPERATOR_CIDR=203.0.113.7/32)
fixture="$work/class-ec2"
cp -r tests/fixtures/class-ec2 "$fixture"
# The fixture's deliberately broken learners are not part of this roster.
roster 30 "$work/roster-30.csv"
class="moto30x$$"
t0=$(now)
"${aws_env[@]}" "$LABRUN_BIN" class up "$fixture" --roster "$work/roster-30.csv" --name "$class" --provider aws \
    --output plain >"$work/moto-up.log" 2>&1 || { cat "$work/moto-up.log" >&2; echo "moto class up failed" >&2; exit 1; }
up=$(since "$t0")
t1=$(now)
"${aws_env[@]}" "$LABRUN_BIN" class status "$class" >/dev/null 2>&1
status=$(since "$t1")
t2=$(now)
"${aws_env[@]}" "$LABRUN_BIN" class down "$class" >"$work/moto-down.log" 2>&1 \
    || { cat "$work/moto-down.log" >&2; echo "moto class down failed" >&2; exit 1; }
down=$(since "$t2")
curl -s "http://127.0.0.1:$port/moto-api/recorder/download-recording" >"$work/recording.jsonl"
echo
echo "a class of 30 on moto: up ${up}s, status ${status}s, down ${down}s"
echo "EC2 API calls (all three commands), by action:"
python3 - "$work/recording.jsonl" <<'PY'
import base64, json, sys, urllib.parse, collections
calls = collections.Counter()
for line in open(sys.argv[1]):
    line = line.strip()
    if not line:
        continue
    r = json.loads(line)
    body = r.get("body") or ""
    if r.get("body_encoded"):
        body = base64.b64decode(body).decode("utf-8", "replace")
    action = urllib.parse.parse_qs(body).get("Action", [None])[0]
    if action is None and "/moto-api/" in r.get("url", ""):
        continue
    calls[action or "?"] += 1
for action, n in sorted(calls.items(), key=lambda x: -x[1]):
    print(f"  {action:<36} {n}")
print(f"  {'total':<36} {sum(calls.values())}  ({sum(calls.values()) / 30:.1f} per learner)")
PY
