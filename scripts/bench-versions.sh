#!/usr/bin/env bash
# The data-path and control-plane benchmarks of two versions of hookd, side
# by side in one run, as root: the checked-out tree against REV (a commit,
# default the one before the redesign, 60106d3).
#   bash scripts/bench-versions.sh [REV [RESULTS_DIR]]
# Both versions' benchmark binaries are built first (REV in a temporary
# worktree); then the runs alternate old, new, old, new, so that the
# machine's load falls on both alike. Each run prints its own ratios to an
# empty program measured in the same process; compare those, not ns.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "$0")/lib.sh"
need_root bench-versions
REV=${1:-60106d3}
OUT=${2:-bench-results/versions-$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
RCU_SAVED=$(cat /sys/kernel/rcu_expedited 2>/dev/null || echo 0)
# HOOKD_OLD_TREE: a checkout of REV to build in (and keep), instead of a
# temporary worktree; its target/ is reused. Made (a worktree of REV) when
# it does not exist yet.
if [ -n "${HOOKD_OLD_TREE:-}" ]; then
    OLD=$HOOKD_OLD_TREE
    [ -e "$OLD" ] || git worktree add -q --detach "$OLD" "$REV"
    cleanup() { echo "$RCU_SAVED" > /sys/kernel/rcu_expedited 2>/dev/null || true; }
else
    OLD=$(mktemp -d /tmp/hookd-bench-old.XXXXXX)
    cleanup() {
        echo "$RCU_SAVED" > /sys/kernel/rcu_expedited 2>/dev/null || true
        git worktree remove --force "$OLD" 2>/dev/null || rm -rf "$OLD"
    }
    git worktree add -q --detach "$OLD" "$REV"
fi
trap cleanup EXIT

# bench_bin DIR NAME: builds benchmark NAME in the tree DIR, prints its path.
bench_bin() {
    (cd "$1" && "$CARGO" bench -q -p hookd --bench "$2" --no-run --message-format=json) \
        | jq -r --arg n "$2" 'select(.executable != null and .target.name == $n) | .executable'
}
declare -A bin
for b in datapath control_plane; do
    echo "bench-versions: building $b (old $REV, new $(git rev-parse --short HEAD))"
    bin[old-$b]=$(bench_bin "$OLD" "$b")
    bin[new-$b]=$(bench_bin "$REPO" "$b")
done
for round in 1 2; do
    for v in old new; do
        echo "bench-versions: datapath, $v, round $round"
        timeout 1200 "${bin[$v-datapath]}" --bench > "$OUT/datapath-$v-$round.txt"
    done
done
for v in old new; do
    echo "bench-versions: control plane, $v"
    timeout 1200 "${bin[$v-control_plane]}" --bench "$OUT/control-plane-$v.md" > /dev/null
done
{
    echo "# hookd $REV against $(git rev-parse --short HEAD), one run, $(date -u +%FT%TZ)"
    echo
    echo "kernel $(uname -r); rcu_expedited $RCU_SAVED"
    for round in 1 2; do
        for v in old new; do
            echo
            echo "## per packet (BPF_PROG_TEST_RUN), $v, round $round"
            echo
            echo '```'
            cat "$OUT/datapath-$v-$round.txt"
            echo '```'
        done
    done
    for v in old new; do
        echo
        echo "## control plane, $v"
        echo
        cat "$OUT/control-plane-$v.md"
    done
} > "$OUT/report.md"
echo "bench-versions: $OUT/report.md"
