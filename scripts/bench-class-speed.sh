#!/usr/bin/env bash
# Speed at class scale, on the local provider (reported, not a test):
#   1. the shipped lab with an empty package cache (cold), then again on a
#      fresh lab with the cache warm, and without the cache at all;
#   2. the converged re-run (changed=0) of the shipped lab, this labrun
#      against a baseline labrun side by side (each on a lab of its own,
#      alternating rounds): median and best of ROUNDS;
#   3. grading one learner: `labrun exercise check` on a solved lab, median
#      and best of ROUNDS, with both binaries.
# The baseline is LABRUN_BASELINE_BIN, or a release build of the git
# revision LABRUN_BASELINE_REV (a worktree under target/, built there once).
# The cold/warm runs use a cache of their own (LABRUN_APT_CACHE_NAME), so
# the shared one is left as it is; it is removed at the end.
#
# Usage: [ROUNDS=10] [LABRUN_BASELINE_BIN=... | LABRUN_BASELINE_REV=...] \
#        bash scripts/bench-class-speed.sh
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/setup.sh
ensure_rust
ensure_docker
ensure_labrun_release
rounds="${ROUNDS:-10}"
playbook=playbooks/mysql_client_server.rhai
exercise=exercises/mysql_client_server

baseline="${LABRUN_BASELINE_BIN:-}"
if [ -z "$baseline" ] && [ -n "${LABRUN_BASELINE_REV:-}" ]; then
    rev=$(git rev-parse --short "$LABRUN_BASELINE_REV")
    tree="$PWD/target/bench-baseline-$rev"
    if [ ! -x "$tree/target/release/labrun" ]; then
        [ -d "$tree" ] || git worktree add --detach "$tree" "$rev" >&2
        echo "building the baseline labrun ($rev) in $tree..." >&2
        (cd "$tree" && cargo build --release --quiet)
    fi
    baseline="$tree/target/release/labrun"
fi

export LABRUN_STATE_DIR
LABRUN_STATE_DIR=$(mktemp -d)
cache="labrun-apt-cache-bench-$$"
labs=()
cleanup() {
    for lab in "${labs[@]}"; do
        "$LABRUN_BIN" destroy --lab "$lab" >/dev/null 2>&1 || true
    done
    LABRUN_APT_CACHE_NAME="$cache" "$LABRUN_BIN" images --prune >/dev/null 2>&1 || true
    rm -rf "$LABRUN_STATE_DIR"
}
trap cleanup EXIT

now() { echo "$EPOCHREALTIME"; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.3f", b - a }'; }
changed_of() { tail -n 1 "$1" | sed -n 's/.*"changed":\([0-9]*\).*/\1/p'; }
# median and best of the numbers on stdin
stats() { sort -n | awk '{ a[NR] = $1 } END { printf "median %.3fs  best %.3fs", a[int((NR + 1) / 2)], a[1] }'; }

# run LABEL BIN LAB [ENV...]: the shipped lab, timed; fails on a failed run.
run_lab() {
    local bin="$1" lab="$2"
    shift 2
    local out="$LABRUN_STATE_DIR/$lab.json" t0
    t0=$(now)
    env "$@" "$bin" run "$playbook" --lab "$lab" --output json >"$out" 2>&1 \
        || { tail -n 20 "$out" >&2; echo "lab $lab failed" >&2; exit 1; }
    since "$t0"
}

echo "$(nproc) CPUs, load $(cut -d' ' -f1 /proc/loadavg), binary $LABRUN_BIN${baseline:+, baseline $baseline}" >&2
"$LABRUN_BIN" images --build debian-12 >/dev/null

echo "== 1. the shipped lab from nothing: package cache cold, warm, off"
# The cache's image is built (if needed) and its container made, empty.
warmup="bench-cache-warmup-$$"
labs+=("$warmup")
cat > "$LABRUN_STATE_DIR/one.rhai" <<'RHAI'
ec2::launch(#{ name: "box" });
RHAI
LABRUN_APT_CACHE_NAME="$cache" "$LABRUN_BIN" run "$LABRUN_STATE_DIR/one.rhai" --lab "$warmup" >/dev/null 2>&1
"$LABRUN_BIN" destroy --lab "$warmup" >/dev/null 2>&1
for kind in cold warm off; do
    lab="bench-$kind-$$"
    labs+=("$lab")
    case "$kind" in
        off) t=$(run_lab "$LABRUN_BIN" "$lab" LABRUN_APT_CACHE=off) ;;
        *) t=$(run_lab "$LABRUN_BIN" "$lab" LABRUN_APT_CACHE_NAME="$cache") ;;
    esac
    printf '%-6s %ss\n' "$kind" "$t"
    "$LABRUN_BIN" destroy --lab "$lab" >/dev/null 2>&1
done
hits=$(docker exec "$cache" sh -c "grep -c '|O|.*\.deb$' /var/log/apt-cacher-ng/apt-cacher.log" || true)
fetched=$(docker exec "$cache" sh -c "grep -c '|I|.*\.deb$' /var/log/apt-cacher-ng/apt-cacher.log" || true)
echo "cache log: $fetched package files fetched from the mirror, $hits served"

echo "== 2. converged re-run (changed=0), $rounds rounds"
bins=("this=$LABRUN_BIN")
[ -n "$baseline" ] && bins+=("baseline=$baseline")
for entry in "${bins[@]}"; do
    name="${entry%%=*}" bin="${entry#*=}"
    lab="bench-rerun-$name-$$"
    labs+=("$lab")
    run_lab "$bin" "$lab" >/dev/null
    : > "$LABRUN_STATE_DIR/rerun-$name.txt"
done
for r in $(seq "$rounds"); do
    for entry in "${bins[@]}"; do
        name="${entry%%=*}" bin="${entry#*=}"
        lab="bench-rerun-$name-$$"
        t=$(run_lab "$bin" "$lab")
        c=$(changed_of "$LABRUN_STATE_DIR/$lab.json")
        [ "$c" = 0 ] || { echo "$name: the re-run changed $c steps" >&2; exit 1; }
        echo "$t" >> "$LABRUN_STATE_DIR/rerun-$name.txt"
    done
done
for entry in "${bins[@]}"; do
    name="${entry%%=*}"
    printf '%-9s %s\n' "$name" "$(stats < "$LABRUN_STATE_DIR/rerun-$name.txt")"
done

echo "== 3. grading one learner (exercise check on a solved lab), $rounds rounds"
for entry in "${bins[@]}"; do
    name="${entry%%=*}" bin="${entry#*=}"
    lab="bench-grade-$name-$$"
    labs+=("$lab")
    "$bin" exercise start "$exercise" --lab "$lab" >/dev/null 2>&1
    "$bin" exercise solve "$exercise" --lab "$lab" >/dev/null 2>&1
    : > "$LABRUN_STATE_DIR/grade-$name.txt"
done
for r in $(seq "$rounds"); do
    for entry in "${bins[@]}"; do
        name="${entry%%=*}" bin="${entry#*=}"
        lab="bench-grade-$name-$$"
        t0=$(now)
        "$bin" exercise check "$exercise" --lab "$lab" >"$LABRUN_STATE_DIR/grade.out" 2>&1 \
            || { cat "$LABRUN_STATE_DIR/grade.out" >&2; echo "$name: the solved lab does not pass" >&2; exit 1; }
        since "$t0" >> "$LABRUN_STATE_DIR/grade-$name.txt"
        echo >> "$LABRUN_STATE_DIR/grade-$name.txt"
    done
done
for entry in "${bins[@]}"; do
    name="${entry%%=*}"
    printf '%-9s %s\n' "$name" "$(grep . "$LABRUN_STATE_DIR/grade-$name.txt" | stats)"
done
echo "load at the end $(cut -d' ' -f1 /proc/loadavg)" >&2
